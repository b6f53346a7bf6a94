//! Message mode: senders and receivers, loss, order and latency.

use super::*;

/// What the plaintext of every message starts with.
pub(crate) struct Stamp {
    pub(crate) run: u32,
    pub(crate) sender: u32,
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
}

pub(crate) fn compose(stamp: &Stamp, size: usize) -> String {
    let mut text = format!(
        "{:08x} {} {} {} ",
        stamp.run, stamp.sender, stamp.seq, stamp.sent_us
    );
    while text.len() < size {
        text.push('x');
    }
    text
}

pub(crate) fn parse_stamp(text: &str) -> Option<Stamp> {
    let mut parts = text.split(' ');
    Some(Stamp {
        run: u32::from_str_radix(parts.next()?, 16).ok()?,
        sender: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sent_us: parts.next()?.parse().ok()?,
    })
}

/// State shared by every task of a message run.
pub(crate) struct Run {
    pub(crate) run: u32,
    pub(crate) start: Instant,
    pub(crate) receivers: u64,
    /// Messages each sender sends.
    pub(crate) quota: Vec<u64>,
    pub(crate) window: u64,
    pub(crate) size: usize,
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Woken as deliveries progress, for senders waiting on the window.
    pub(crate) progress: Notify,
    /// Set when the first message goes out.
    pub(crate) first_send_us: AtomicU64,
    pub(crate) last_delivery_us: AtomicU64,
    /// Sessions that ended early (kicked, errors).
    pub(crate) broken: AtomicUsize,
    pub(crate) first_error: Mutex<Option<String>>,
}

impl Run {
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub(crate) fn expected_per_receiver(&self) -> u64 {
        self.quota.iter().sum()
    }

    /// Whether a sender may send now (closed loop).
    pub(crate) fn window_open(&self) -> bool {
        let sent = self.sent.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        sent * self.receivers <= delivered + self.receivers * self.window
    }

    pub(crate) fn broke(&self, what: String) {
        self.broken.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// One receiver's bookkeeping.
#[derive(Default)]
pub(crate) struct Track {
    /// Per sender: which sequence numbers arrived.
    pub(crate) seen: Vec<Vec<u64>>,
    /// Per sender: highest sequence number so far.
    pub(crate) highest: Vec<Option<u64>>,
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) delivered: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
}

impl Track {
    pub(crate) fn new(quota: &[u64]) -> Self {
        Self {
            seen: quota
                .iter()
                .map(|q| vec![0u64; q.div_ceil(64) as usize])
                .collect(),
            highest: vec![None; quota.len()],
            ..Self::default()
        }
    }

    /// Records one delivered plaintext; false if it is not from this run.
    pub(crate) fn record(&mut self, run: &Run, text: &str) -> bool {
        let Some(stamp) = parse_stamp(text) else {
            return false;
        };
        let sender = stamp.sender as usize;
        if stamp.run != run.run || sender >= self.seen.len() {
            return false;
        }
        let now = run.now_us();
        let bits = &mut self.seen[sender];
        let (word, bit) = ((stamp.seq / 64) as usize, stamp.seq % 64);
        if word >= bits.len() {
            return false;
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicated += 1;
            return true;
        }
        bits[word] |= 1 << bit;
        if self.highest[sender].is_some_and(|h| stamp.seq < h) {
            self.reordered += 1;
        } else {
            self.highest[sender] = Some(stamp.seq);
        }
        self.latencies_us
            .push(now.saturating_sub(stamp.sent_us).min(u32::MAX as u64) as u32);
        self.delivered += 1;
        run.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        if run
            .delivered
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(16)
        {
            run.progress.notify_waiters();
        }
        true
    }
}

/// A member that receives, whatever the mode.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Receiver {
    Native(Client),
    Lean {
        reader: FrameReader<OwnedReadHalf>,
        /// Held so the connection stays open: dropping it would end the session.
        _writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
    },
    Bare {
        reader: FrameReader<OwnedReadHalf>,
        _writer: OwnedWriteHalf,
        cipher: RoomCipher,
    },
}

/// A member that sends, whatever the mode. Few exist, so their size is no concern.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sender {
    Native(Client),
    Lean {
        writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
        drain: tokio::task::JoinHandle<()>,
    },
    Bare {
        writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
        drain: tokio::task::JoinHandle<()>,
    },
}

pub(crate) fn native_config(addr: SocketAddr, name: String, password: &Password) -> ClientConfig {
    ClientConfig {
        server: addr.to_string(),
        username: name,
        password: password.clone(),
        allow_legacy: false,
    }
}

/// Reads and throws away everything a socket receives (senders' inbound copies).
pub(crate) fn discard(mut read: OwnedReadHalf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    })
}

pub(crate) async fn join_receiver(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<Receiver, BoxError> {
    Ok(match mode {
        Mode::Native => {
            Receiver::Native(Client::connect(native_config(addr, name, password)).await?)
        }
        Mode::Legacy => {
            let lean = lean_login(addr, &name, password, true, cache).await?;
            Receiver::Lean {
                reader: lean.reader,
                _writer: lean.writer,
                cipher: lean.cipher,
            }
        }
        Mode::Bare => {
            let (read, write) = bare_connect(addr).await?;
            Receiver::Bare {
                reader: FrameReader::new(read, CLIENT_MAX_LINE),
                _writer: write,
                cipher: bare_cipher(password),
            }
        }
    })
}

pub(crate) async fn join_sender(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<Sender, BoxError> {
    Ok(match mode {
        Mode::Native => Sender::Native(Client::connect(native_config(addr, name, password)).await?),
        Mode::Legacy => {
            let lean = lean_login(addr, &name, password, true, cache).await?;
            let drain = discard(lean.reader.into_inner());
            Sender::Lean {
                writer: lean.writer,
                cipher: lean.cipher,
                drain,
            }
        }
        Mode::Bare => {
            let (read, write) = bare_connect(addr).await?;
            Sender::Bare {
                writer: FrameWriter::new(write),
                cipher: bare_cipher(password),
                drain: discard(read),
            }
        }
    })
}

/// A member that joins and then never reads: its socket stays open until the end.
pub(crate) async fn join_stalled(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), BoxError> {
    Ok(match mode {
        Mode::Native | Mode::Legacy => {
            let lean = lean_login(addr, &name, password, mode == Mode::Legacy, cache).await?;
            (lean.reader.into_inner(), lean.writer.into_inner())
        }
        Mode::Bare => bare_connect(addr).await?,
    })
}

/// Joins `n` members `concurrency` at a time, each with `join(i)`.
pub(crate) async fn join_all<T, F, Fut>(
    n: usize,
    concurrency: usize,
    deadline: Instant,
    what: &str,
    join: F,
) -> Result<Vec<T>, BoxError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let fut = join(i);
        tasks.push(tokio::spawn(async move {
            let result = fut.await;
            drop(permit);
            result
        }));
        if i % 100 == 99 {
            eprint!("\r[loadgen] joining {what}: {}/{n}   ", i + 1);
        }
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let joined = tokio::time::timeout(left, task)
            .await
            .map_err(|_| err(format!("joining {what} took longer than --timeout")))??;
        out.push(joined.map_err(|e| err(format!("joining {what}: {e}")))?);
    }
    Ok(out)
}

pub(crate) async fn send_one(
    run: &Run,
    sender: &mut Sender,
    index: u32,
    seq: u64,
) -> Result<(), BoxError> {
    let stamp = Stamp {
        run: run.run,
        sender: index,
        seq,
        sent_us: run.now_us(),
    };
    let text = compose(&stamp, run.size);
    let _ = run.first_send_us.compare_exchange(
        u64::MAX,
        stamp.sent_us,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    match sender {
        Sender::Native(client) => {
            client.send(&text).await?;
        }
        Sender::Lean { writer, cipher, .. } => {
            writer
                .write(&ClientFrame::Message {
                    text: cipher.encrypt(&text),
                    reference: None,
                })
                .await?;
            writer.flush().await?;
        }
        Sender::Bare { writer, cipher, .. } => {
            writer.write_text(&cipher.encrypt(&text)).await?;
            writer.flush().await?;
        }
    }
    run.sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads whatever a native sender has received without waiting.
pub(crate) fn drain_ready(sender: &mut Sender) -> Result<(), BoxError> {
    if let Sender::Native(client) = sender {
        while let Some(event) = client.next_event().now_or_never() {
            event?;
        }
    }
    Ok(())
}

pub(crate) async fn run_sender(
    run: Arc<Run>,
    mut sender: Sender,
    index: u32,
    rate: Option<f64>,
    senders: usize,
    stop: watch::Receiver<bool>,
) {
    let quota = run.quota[index as usize];
    // Rate mode: sender `index` owns every `senders`-th slot of the global schedule.
    let interval = rate.map(|r| Duration::from_secs_f64(senders as f64 / r));
    let offset = rate.map(|r| Duration::from_secs_f64(index as f64 / r));
    let begin = tokio::time::Instant::now();
    let mut seq = 0;
    let mut stop_rx = stop.clone();
    let result: Result<(), BoxError> = async {
        while seq < quota {
            if *stop.borrow() {
                return Ok(());
            }
            let due = interval.map(|i| begin + offset.unwrap_or_default() + i * seq as u32);
            let ready = match due {
                Some(due) => tokio::time::Instant::now() >= due,
                None => run.window_open(),
            };
            if ready {
                send_one(&run, &mut sender, index, seq).await?;
                seq += 1;
                drain_ready(&mut sender)?;
                continue;
            }
            let progress = run.progress.notified();
            let wait = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => {
                        // Wake on progress, and now and then regardless.
                        let _ = tokio::time::timeout(Duration::from_millis(2), progress).await;
                    }
                }
            };
            match &mut sender {
                Sender::Native(client) => {
                    tokio::select! {
                        event = client.next_event() => { event?; }
                        () = wait => {}
                        _ = stop_rx.changed() => {}
                    }
                }
                _ => {
                    tokio::select! {
                        () = wait => {}
                        _ = stop_rx.changed() => {}
                    }
                }
            }
        }
        // Keep reading our own copies until the run ends, so the server never
        // sees this member as stalled.
        if let Sender::Native(client) = &mut sender {
            loop {
                tokio::select! {
                    event = client.next_event() => { event?; }
                    _ = stop_rx.changed() => return Ok(()),
                }
            }
        } else {
            let _ = stop_rx.changed().await;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.broke(format!("sender {index}: {e}"));
    }
    match sender {
        Sender::Native(client) => {
            let _ = client.leave().await;
        }
        Sender::Lean { drain, .. } | Sender::Bare { drain, .. } => drain.abort(),
    }
}

pub(crate) async fn run_receiver(
    run: Arc<Run>,
    mut receiver: Receiver,
    mut stop: watch::Receiver<bool>,
) -> Track {
    let mut track = Track::new(&run.quota);
    let expected = run.expected_per_receiver();
    let result: Result<(), BoxError> = async {
        while track.delivered < expected {
            let text = tokio::select! {
                text = next_text(&mut receiver) => text?,
                _ = stop.changed() => return Ok(()),
            };
            if let Some(text) = text {
                track.record(&run, &text);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.broke(format!("receiver: {e}"));
    }
    if let Receiver::Native(client) = receiver {
        // Stay until every receiver is done, so departures don't disturb the run.
        let _ = stop.wait_for(|s| *s).await;
        let _ = client.leave().await;
    } else {
        let _ = stop.wait_for(|s| *s).await;
    }
    track
}

/// The next chat message's plaintext (`None` for anything else). Cancel-safe.
pub(crate) async fn next_text(receiver: &mut Receiver) -> Result<Option<String>, BoxError> {
    match receiver {
        Receiver::Native(client) => match client.next_event().await? {
            Event::Message(m) if !m.history => Ok(Some(m.text.clone())),
            _ => Ok(None),
        },
        Receiver::Lean { reader, cipher, .. } => match reader.read_server_frame().await? {
            Some(ServerFrame::Event(ServerEvent::Message { data })) => {
                Ok(cipher.decrypt(&data.text).ok())
            }
            Some(_) => Ok(None),
            None => Err(err("the server closed the connection")),
        },
        Receiver::Bare { reader, cipher, .. } => match reader.read_text().await? {
            Some(line) => Ok(cipher.decrypt(&line).ok()),
            None => Err(err("the relay closed the connection")),
        },
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) async fn message_mode(
    args: &Args,
    addr: SocketAddr,
) -> Result<serde_json::Value, BoxError> {
    let mode = mode(args);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    let senders = args.senders.max(1);
    let run = new_run(args, senders);
    let tag = format!("{}{:x}", args.name_prefix, run.run & 0xffff);

    let join = |role: &'static str| {
        let password = password.clone();
        let cache = Arc::clone(&cache);
        let tag = tag.clone();
        move |i: usize| {
            let password = password.clone();
            let cache = Arc::clone(&cache);
            let name = format!("{tag}-{role}{i}");
            async move {
                match role {
                    "r" => join_receiver(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Receiver),
                    "s" => join_sender(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Sender),
                    _ => join_stalled(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Stalled),
                }
            }
        }
    };
    let receivers = join_all(
        args.receivers,
        args.concurrency,
        deadline,
        "receivers",
        join("r"),
    )
    .await?;
    let senders_joined =
        join_all(senders, args.concurrency, deadline, "senders", join("s")).await?;
    let stalled = join_all(
        args.stalled,
        args.concurrency,
        deadline,
        "stalled members",
        join("x"),
    )
    .await?;
    eprintln!(
        "\r[loadgen] {} receivers, {} senders, {} stalled joined ({mode:?})",
        receivers.len(),
        senders_joined.len(),
        stalled.len()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mark = CpuMark::now(args.server_pid);
    let mut receiver_tasks = Vec::new();
    for joined in receivers {
        let Joined::Receiver(r) = joined else {
            unreachable!()
        };
        receiver_tasks.push(tokio::spawn(run_receiver(
            Arc::clone(&run),
            r,
            stop_rx.clone(),
        )));
    }
    let mut sender_tasks = Vec::new();
    for (i, joined) in senders_joined.into_iter().enumerate() {
        let Joined::Sender(s) = joined else {
            unreachable!()
        };
        sender_tasks.push(tokio::spawn(run_sender(
            Arc::clone(&run),
            s,
            i as u32,
            args.rate,
            senders,
            stop_rx.clone(),
        )));
    }

    let expected_total = run.expected_per_receiver() * run.receivers;
    let cut_short = await_end(args, &run, &receiver_tasks, deadline).await;
    let (server_ms, own_ms, _) = mark.since(args.server_pid);
    let memory = args.server_pid.and_then(memory_kib);
    let _ = stop_tx.send(true);
    eprintln!();

    let mut tracks = Vec::new();
    for task in receiver_tasks {
        if let Ok(Ok(track)) = tokio::time::timeout(Duration::from_secs(10), task).await {
            tracks.push(track);
        }
    }
    for task in sender_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let stalled_dropped = dropped(stalled).await;
    let (all, latencies) = merge(tracks);
    let (span_s, per_sec) = throughput(&run, all.delivered);
    Ok(json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "receivers": args.receivers,
        "senders": senders,
        "messages": args.messages,
        "rate": args.rate,
        "stalled": args.stalled,
        "size": run.size,
        "window": if args.rate.is_none() { Some(run.window) } else { None },
        "sent": run.sent.load(Ordering::Relaxed),
        "expected": expected_total,
        "deliveries": all.delivered,
        "deliveries_per_sec": per_sec.round(),
        "duration_s": round3(span_s),
        "p50_ms": round3(percentile(&latencies, 50.0)),
        "p90_ms": round3(percentile(&latencies, 90.0)),
        "p99_ms": round3(percentile(&latencies, 99.0)),
        "max_ms": round3(percentile(&latencies, 100.0)),
        "lost": expected_total.saturating_sub(all.delivered),
        "duplicated": all.duplicated,
        "reordered": all.reordered,
        "cut_short": cut_short,
        "sessions_broken": run.broken.load(Ordering::Relaxed),
        "first_error": run.first_error.lock().unwrap().clone(),
        "stalled_disconnected": stalled_dropped,
        "server_cpu_ms": server_ms,
        "server_cpu_us_per_delivery": server_ms.filter(|_| all.delivered > 0).map(|ms| round3(ms * 1000.0 / all.delivered as f64)),
        "server_rss_kib": memory.map(|m| m.0),
        "server_hwm_kib": memory.map(|m| m.1),
        "loadgen_cpu_ms": own_ms,
    }))
}

/// The shared state of a message run: each sender's quota, the counters.
fn new_run(args: &Args, senders: usize) -> Arc<Run> {
    let quota: Vec<u64> = (0..senders as u64)
        .map(|s| args.messages / senders as u64 + u64::from(s < args.messages % senders as u64))
        .collect();
    Arc::new(Run {
        run: rand::random(),
        start: Instant::now(),
        receivers: args.receivers.max(1) as u64,
        quota,
        window: args.window.max(1),
        size: args.size.max(40),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        progress: Notify::new(),
        first_send_us: AtomicU64::new(u64::MAX),
        last_delivery_us: AtomicU64::new(0),
        broken: AtomicUsize::new(0),
        first_error: Mutex::new(None),
    })
}

/// Shows progress until everything is delivered (false) or the run is cut
/// short (true): the deadline, or nothing moving for 5 s once all is sent.
async fn await_end(
    args: &Args,
    run: &Run,
    receiver_tasks: &[tokio::task::JoinHandle<Track>],
    deadline: Instant,
) -> bool {
    let expected_total = run.expected_per_receiver() * run.receivers;
    let mut last = (Instant::now(), 0u64);
    let mut stalled_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let delivered = run.delivered.load(Ordering::Relaxed);
        let sent = run.sent.load(Ordering::Relaxed);
        if last.0.elapsed() >= Duration::from_secs(1) {
            let rate = (delivered - last.1) as f64 / last.0.elapsed().as_secs_f64();
            eprint!(
                "\r[loadgen] sent {sent}/{} delivered {delivered}/{expected_total} ({:.0}/s)     ",
                args.messages, rate
            );
            last = (Instant::now(), delivered);
        }
        let all_receivers_done = receiver_tasks.iter().all(|t| t.is_finished());
        if delivered >= expected_total || all_receivers_done {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        let stuck = sent >= args.messages && delivered == last.1;
        match (stuck, stalled_since) {
            (true, None) => stalled_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(5) => return true,
            (false, _) => stalled_since = None,
            _ => {}
        }
    }
}

/// How many of the stalled members the server (or relay) let go.
async fn dropped(stalled: Vec<Joined>) -> usize {
    let mut dropped = 0;
    for joined in stalled {
        let Joined::Stalled((mut read, _write)) = joined else {
            unreachable!()
        };
        let mut buf = vec![0u8; 256 * 1024];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        dropped += usize::from(closed);
    }
    dropped
}

/// All receivers' counts together, and their latencies sorted.
fn merge(tracks: Vec<Track>) -> (Track, Vec<u32>) {
    let mut all = Track::default();
    let mut latencies = Vec::new();
    for mut t in tracks {
        all.delivered += t.delivered;
        all.duplicated += t.duplicated;
        all.reordered += t.reordered;
        latencies.append(&mut t.latencies_us);
    }
    latencies.sort_unstable();
    (all, latencies)
}

/// From the first send to the last delivery: seconds, and deliveries per second.
fn throughput(run: &Run, delivered: u64) -> (f64, f64) {
    let first = run.first_send_us.load(Ordering::Relaxed);
    let last_delivery = run.last_delivery_us.load(Ordering::Relaxed);
    let span_s = if first == u64::MAX || last_delivery <= first {
        0.0
    } else {
        (last_delivery - first) as f64 / 1e6
    };
    let per_sec = if span_s > 0.0 {
        delivered as f64 / span_s
    } else {
        0.0
    };
    (span_s, per_sec)
}

pub(crate) enum Joined {
    Receiver(Receiver),
    Sender(Sender),
    Stalled((OwnedReadHalf, OwnedWriteHalf)),
}
