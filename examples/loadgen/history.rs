//! History mode: a joiner's replay of a long history.

use super::*;

pub(crate) async fn history_mode(
    args: &Args,
    addr: SocketAddr,
    n: u64,
) -> Result<serde_json::Value, BoxError> {
    if args.bare || args.legacy {
        return Err(err("--history-join measures native joins"));
    }
    let password = Password::new(args.password.clone());
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut poster =
        Client::connect(native_config(addr, format!("{tag}-poster"), &password)).await?;
    poster.clear().await?;
    let join = |k: usize| {
        let config = native_config(addr, format!("{tag}-j{k}"), &password);
        async move {
            let t0 = Instant::now();
            let mut client = Client::connect(config).await?;
            let login = t0.elapsed();
            let mut replayed = 0;
            for _ in 0..client.history_count() {
                if let Event::Message(m) = client.next_event().await?
                    && m.history
                {
                    replayed += 1;
                }
            }
            let total = t0.elapsed();
            let _ = client.leave().await;
            Ok::<_, BoxError>((login, total, replayed))
        }
    };
    const REPS: usize = 5;
    let mut empty = Vec::new();
    for k in 0..REPS {
        empty.push(join(k).await?.1);
    }
    // Post n messages, keeping at most 200 unechoed.
    let cipher_text = "x".repeat(args.size.max(40));
    let (mut sent, mut echoed) = (0u64, 0u64);
    while echoed < n {
        if Instant::now() >= deadline {
            return Err(err(format!(
                "posting history: only {echoed}/{n} in --timeout"
            )));
        }
        if sent < n && sent - echoed < 200 {
            poster.send(&cipher_text).await?;
            sent += 1;
            continue;
        }
        if let Event::Message(_) = poster.next_event().await? {
            echoed += 1;
            if echoed % 1000 == 0 {
                eprint!("\r[loadgen] history posted {echoed}/{n}   ");
            }
        }
    }
    eprintln!();
    let mut full = Vec::new();
    let mut logins = Vec::new();
    let mut replayed = 0;
    for k in 0..REPS {
        let (login, total, r) = join(REPS + k).await?;
        logins.push(login);
        full.push(total);
        replayed = r;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let (empty_ms, full_ms, login_ms) =
        (median(&mut empty), median(&mut full), median(&mut logins));
    let _ = poster.leave().await;
    Ok(json!({
        "history": n,
        "replayed": replayed,
        "repetitions": REPS,
        "join_empty_room_ms": round3(empty_ms),
        "join_with_history_ms": round3(full_ms),
        "connect_returned_ms": round3(login_ms),
        "history_cost_ms": round3(full_ms - empty_ms),
    }))
}
