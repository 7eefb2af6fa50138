//! A peer's byte stream, as each end of a signaling link reads it: the HLR waiting for an
//! identity, a VLR answering the HLR's ID_GET, and a reader taking GSUP frames (answering
//! pings). Whatever the stream holds, each returns, and a GSUP payload it hands over came
//! from a frame that was in the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamlab::agents::signaling::{claimed_identity, identify, next_gsup, Sender};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut reader = data;
        let _ = claimed_identity(&mut reader).await;

        let mut reader = data;
        let sender = Sender::new(tokio::io::sink());
        let _ = identify(&mut reader, &sender, "visited").await;

        let mut reader = data;
        while let Ok(payload) = next_gsup(&mut reader, &sender).await {
            assert!(payload.len() < data.len());
        }
    });
});
