//! Lean clients: login by hand (through the shared handshake state
//! machine), for legacy, stalled, idle and handshake members.

use super::*;

/// A stretch computed once per room and reused: it depends only on the
/// password and the room's parameters, and costs tens of milliseconds.
#[derive(Default)]
pub(crate) struct StretchCache(Mutex<Option<(Vec<u8>, KdfParams, Password)>>);

impl StretchCache {
    pub(crate) async fn get(
        &self,
        password: &Password,
        salt: Vec<u8>,
        params: KdfParams,
    ) -> Result<Password, BoxError> {
        if let Some((s, p, pw)) = self.0.lock().unwrap().as_ref()
            && *s == salt
            && *p == params
        {
            return Ok(pw.clone());
        }
        let password = password.clone();
        let salt2 = salt.clone();
        let stretched =
            tokio::task::spawn_blocking(move || kdf::stretch(&password, &salt2, params)).await??;
        *self.0.lock().unwrap() = Some((salt, params, stretched.clone()));
        Ok(stretched)
    }
}

/// A logged-in lean member.
pub(crate) struct Lean {
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    pub(crate) writer: FrameWriter<OwnedWriteHalf>,
    pub(crate) cipher: RoomCipher,
}

/// The server refused a login because too many are in progress (more than
/// its per-address allowance: every loadgen member comes from 127.0.0.1).
#[derive(Debug)]
pub(crate) struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server is busy with other logins")
    }
}

impl std::error::Error for Busy {}

/// SRP by hand, natively sealed unless `legacy`, up to and including `init`.
/// Like cmd-chat's own client, waits out a server busy with other logins.
pub(crate) async fn lean_login(
    addr: SocketAddr,
    name: &str,
    password: &Password,
    legacy: bool,
    cache: &StretchCache,
) -> Result<Lean, BoxError> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..60 {
        match lean_login_once(addr, name, password, legacy, cache).await {
            Err(e) if e.is::<Busy>() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            outcome => return outcome,
        }
    }
    Err(Box::new(Busy))
}

pub(crate) async fn lean_login_once(
    addr: SocketAddr,
    name: &str,
    password: &Password,
    legacy: bool,
    cache: &StretchCache,
) -> Result<Lean, BoxError> {
    let stream = dial(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, CLIENT_MAX_LINE);
    let mut writer = FrameWriter::new(write);
    let (hello, init) = tokio::task::spawn_blocking({
        let name = name.to_owned();
        move || {
            // Legacy members stand in for cmd-chat 1.x clients.
            let options = HelloOptions {
                allow_legacy: legacy,
                as_1x: legacy,
                ..HelloOptions::default()
            };
            ClientHello::start_with(&name, options)
        }
    })
    .await?;
    writer.write(&init).await?;
    writer.flush().await?;
    let challenge = match reader.read::<Reply<Challenge>>().await? {
        Some(Reply::Error(e)) if e.code == Some(ErrorCode::Busy) => return Err(Box::new(Busy)),
        Some(reply) => reply,
        None => return Err(err("closed during login")),
    };
    let respond = hello.read_challenge(challenge)?;
    if respond.legacy() != legacy {
        return Err(err("the server answered in the other protocol"));
    }
    let password = match respond.stretch() {
        Some((salt, params)) => cache.get(password, salt.to_vec(), params).await?,
        None => password.clone(),
    };
    let (awaiting, verify) =
        tokio::task::spawn_blocking(move || respond.respond_stretched(password)).await??;
    writer.write(&verify).await?;
    writer.flush().await?;
    let welcome = reader
        .read::<Reply<Welcome>>()
        .await?
        .ok_or_else(|| err("closed during login"))?;
    let established = awaiting.read_welcome(welcome)?;
    let sealed = established.keys.is_some();
    if let Some((sealer, opener)) = established.keys {
        writer.seal(sealer);
        reader.seal(opener);
    }
    let room_salt = match reader.read_server_frame().await? {
        Some(ServerFrame::Event(ServerEvent::Init { room_salt, .. })) if sealed => room_salt,
        Some(ServerFrame::Event(ServerEvent::Init { .. })) => established.legacy_room_salt,
        Some(ServerFrame::Error(e)) => return Err(err(format!("refused: {}", e.error))),
        _ => return Err(err("expected init")),
    }
    .ok_or_else(|| err("no room salt"))?;
    let cipher = RoomCipher::from_password(&established.password, &STANDARD.decode(room_salt)?);
    Ok(Lean {
        reader,
        writer,
        cipher,
    })
}

/// The bare relay has no login; its "room key" comes from the password alone.
pub(crate) fn bare_cipher(password: &Password) -> RoomCipher {
    RoomCipher::from_password(password, b"bare relay salt.")
}

pub(crate) async fn bare_connect(
    addr: SocketAddr,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), BoxError> {
    let stream = dial(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream.into_split())
}
