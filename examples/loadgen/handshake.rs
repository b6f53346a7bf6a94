//! Handshake mode: complete SRP logins, as fast as the server takes them.

use super::*;

pub(crate) async fn handshake_mode(
    args: &Args,
    addr: SocketAddr,
    n: u64,
) -> Result<serde_json::Value, BoxError> {
    if args.bare {
        return Err(err(
            "--handshakes needs a cmd-chat server (the bare relay has no login)",
        ));
    }
    let legacy = args.legacy;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    // Warm the stretch cache (native-only rooms) so it is not in the figures.
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let warm = lean_login(addr, &format!("{tag}-warm"), &password, legacy, &cache).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let timed_out = Arc::new(AtomicBool::new(false));
    let mark = CpuMark::now(args.server_pid);
    // With --rate, login i starts no earlier than i / rate seconds in (still
    // at most --concurrency in flight), so the server's CPU per login can be
    // read at a given load as well as at full rate.
    let start = tokio::time::Instant::now();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, done, failed, first_error, timed_out) = (
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&first_error),
            Arc::clone(&timed_out),
        );
        let (password, cache, tag) = (password.clone(), Arc::clone(&cache), tag.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if let Some(pace) = pace {
                    tokio::time::sleep_until(start + pace.mul_f64(i as f64)).await;
                }
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    break;
                }
                let t0 = Instant::now();
                let left = deadline.saturating_duration_since(t0);
                let outcome = tokio::time::timeout(
                    left,
                    lean_login(addr, &format!("{tag}-h{i}"), &password, legacy, &cache),
                )
                .await;
                match outcome {
                    Ok(Ok(mut lean)) => {
                        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        done.fetch_add(1, Ordering::Relaxed);
                        if !legacy {
                            let _ = lean.writer.write(&ClientFrame::Leave).await;
                        }
                        let _ = lean.writer.shutdown().await;
                    }
                    Ok(Err(e)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        timed_out.store(true, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let progress = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let d = done.load(Ordering::Relaxed);
                eprint!(
                    "\r[loadgen] handshakes {d}/{n} ({:.0}/s)     ",
                    (d - last.1) as f64 / last.0.elapsed().as_secs_f64()
                );
                last = (Instant::now(), d);
            }
        })
    };
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.append(&mut task.await?);
    }
    let (server_ms, own_ms, wall) = mark.since(args.server_pid);
    progress.abort();
    eprintln!();
    latencies.sort_unstable();
    let ok = done.load(Ordering::Relaxed);
    Ok(json!({
        "mode": if legacy { "legacy" } else { "native" },
        "handshakes": ok,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "handshakes_per_sec": (ok as f64 / wall).round(),
        "duration_s": round3(wall),
        "p50_ms": round3(percentile(&latencies, 50.0)),
        "p90_ms": round3(percentile(&latencies, 90.0)),
        "p99_ms": round3(percentile(&latencies, 99.0)),
        "max_ms": round3(percentile(&latencies, 100.0)),
        "failed": failed.load(Ordering::Relaxed),
        "first_error": first_error.lock().unwrap().clone(),
        "cut_short": timed_out.load(Ordering::Relaxed),
        "server_cpu_ms": server_ms,
        "server_cpu_ms_per_handshake": server_ms.filter(|_| ok > 0).map(|ms| round3(ms / ok as f64)),
        "loadgen_cpu_ms": own_ms,
    }))
}
