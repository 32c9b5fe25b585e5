//! Fuzz the live collector's syslog stream framer (octet counting / LF, decided per frame):
//! any bytes, in fuzzer-chosen chunks, frame exactly as the whole input does, every byte is
//! accounted for (frame content plus framing), no frame exceeds the cap, never a panic.
//!
//! The file is included by path rather than by depending on the `serve` crate: the framer is
//! sans I/O (memchr only) and this keeps tokio, rustls and axum out of the sanitizer build.
#![no_main]

#[path = "../../crates/serve/src/framing.rs"]
#[allow(dead_code)]
mod framing;

use framing::{MAX_FRAME, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let step = usize::from(sel).max(1);
    let run = |step: usize| {
        let mut f = StreamFramer::new();
        let mut out = Vec::new();
        let mut wire = 0;
        for c in rest.chunks(step) {
            f.push(c);
            while let Some(fr) = f.next_frame() {
                assert!(fr.data.len() <= MAX_FRAME);
                assert!(fr.wire_bytes >= fr.data.len());
                wire += fr.wire_bytes;
                out.push(fr);
            }
        }
        if let Some(fr) = f.finish() {
            wire += fr.wire_bytes;
            out.push(fr);
        }
        assert_eq!(wire, rest.len());
        out
    };
    assert_eq!(run(rest.len().max(1)), run(step));
});
