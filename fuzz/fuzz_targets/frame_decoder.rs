//! The line reader, clear and sealed: arbitrary bytes must give frames or
//! errors, never a panic, and never more than the line limit in one frame.
//! In the third mode the bytes are the plaintext of sealed records (split at
//! 0xFF), sealed here with the reader's key, so that splitting a record into
//! frames is fuzzed too: frames come out non-empty and without newlines.
#![no_main]

use std::sync::LazyLock;

use cmd_chat::crypto::Key32;
use cmd_chat::crypto::transport::{Side, derive_keys};
use cmd_chat::protocol::FrameReader;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
});

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    RUNTIME.block_on(async {
        let key = Key32::new([mode; 32]);
        let sealed_records;
        let input: &[u8] = if mode & 2 == 2 {
            let (mut sealer, _) = derive_keys(&key, Side::Client);
            let mut lines = Vec::new();
            for record in bytes.split(|&b| b == 0xFF) {
                let sealed = sealer.seal(record).expect("nonces last");
                lines.extend_from_slice(b"{\"sealed\":\"");
                lines.extend_from_slice(STANDARD.encode(sealed).as_bytes());
                lines.extend_from_slice(b"\"}\n");
            }
            sealed_records = lines;
            &sealed_records
        } else {
            bytes
        };
        let mut reader = FrameReader::new(input, LIMIT);
        if mode & 3 != 0 {
            let (_, opener) = derive_keys(&key, Side::Server);
            reader.seal(opener);
        }
        // Each read consumes input, so this ends; errors end it early.
        while let Ok(Some(text)) = reader.read_text().await {
            assert!(text.len() <= LIMIT);
            if mode & 2 == 2 {
                assert!(!text.is_empty() && !text.contains('\n'));
            }
        }
    });
});
