//! The line reader, clear and sealed: arbitrary bytes must give frames or
//! errors, never a panic, and never more than the line limit in one frame.
#![no_main]

use std::sync::LazyLock;

use cmd_chat::crypto::Key32;
use cmd_chat::crypto::transport::{Side, derive_keys};
use cmd_chat::protocol::FrameReader;
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
        let mut reader = FrameReader::new(bytes, LIMIT);
        if mode & 1 == 1 {
            let (_, opener) = derive_keys(&Key32::new([mode; 32]), Side::Server);
            reader.seal(opener);
        }
        // Each read consumes input, so this ends; errors end it early.
        while let Ok(Some(text)) = reader.read_text().await {
            assert!(text.len() <= LIMIT);
        }
    });
});
