//! Idle mode: memory per idle member.

use super::*;

pub(crate) async fn idle_mode(
    args: &Args,
    addr: SocketAddr,
    n: usize,
) -> Result<serde_json::Value, BoxError> {
    let mode = mode(args);
    if mode == Mode::Bare {
        return Err(err("--idle needs a cmd-chat server"));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let before = args.server_pid.and_then(memory_kib);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let members = join_all(n, args.concurrency, deadline, "idle members", |i| {
        let (password, cache, name) = (password.clone(), Arc::clone(&cache), format!("{tag}-i{i}"));
        let stop = stop_rx.clone();
        async move {
            let lean = lean_login(addr, &name, &password, mode == Mode::Legacy, &cache).await?;
            // Idle, but alive: read (and drop) what the room sends, answer pings blindly.
            Ok(tokio::spawn(idle_member(lean, mode == Mode::Legacy, stop)))
        }
    })
    .await?;
    let join_s = started.elapsed().as_secs_f64();
    eprintln!("\r[loadgen] {n} idle members joined in {join_s:.1} s; settling");
    // Let the join notices drain before reading the server's memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = args.server_pid.and_then(memory_kib);
    let alive = members.iter().filter(|m| !m.is_finished()).count();
    eprintln!("[loadgen] holding for {} s", args.hold);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let _ = stop_tx.send(true);
    for m in members {
        let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
    }
    let per_member = before
        .zip(after)
        .map(|(b, a)| round3((a.0 as f64 - b.0 as f64) / n as f64));
    Ok(json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "idle_members": n,
        "alive_after_join": alive,
        "join_s": round3(join_s),
        "server_rss_before_kib": before.map(|m| m.0),
        "server_rss_after_kib": after.map(|m| m.0),
        "server_hwm_kib": after.map(|m| m.1),
        "server_kib_per_idle_member": per_member,
    }))
}

pub(crate) async fn idle_member(lean: Lean, legacy: bool, mut stop: watch::Receiver<bool>) {
    let Lean {
        reader, mut writer, ..
    } = lean;
    let mut read = reader.into_inner();
    let mut buf = vec![0u8; 4096];
    let mut pong = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            r = read.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { return },
            _ = pong.tick(), if !legacy => {
                if writer.write(&ClientFrame::Pong).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => {
                if !legacy {
                    let _ = writer.write(&ClientFrame::Leave).await;
                }
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}
