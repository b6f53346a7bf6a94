//! The server's handshake state machine and member loop, fed arbitrary bytes
//! through an in-memory pipe. Whatever arrives, the server answers or closes;
//! it never panics and never hangs.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use cmd_chat::crypto::Password;
use cmd_chat::crypto::kdf::KdfParams;
use cmd_chat::server::{Server, ServerConfig};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
});

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let config = ServerConfig {
            allow_legacy: true,
            // The lightest stretch a client accepts: the server refuses less.
            kdf: KdfParams::CLIENT_MIN,
            ..ServerConfig::default()
        };
        Server::bind("127.0.0.1:0", config, Password::new("fuzz".into()))
            .await
            .unwrap()
    })
});

fuzz_target!(|data: &[u8]| {
    let server = &*SERVER;
    RUNTIME.block_on(async {
        let (mut client, server_side) = tokio::io::duplex(1 << 16);
        let peer = "127.0.0.1:9".parse().unwrap();
        let serving = server.serve_stream(server_side, peer);
        let talking = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        let both = async { tokio::join!(serving, talking) };
        tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .expect("the server hung");
    });
});
