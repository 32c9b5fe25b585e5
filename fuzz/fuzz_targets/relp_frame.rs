//! Fuzz the RELP frame parser: any bytes, in fuzzer-chosen chunks, parse to the same frames
//! and the same error as the whole input; frames re-encode to the bytes they came from.
//!
//! Included by path (sans I/O, thiserror only) to keep the network stack out of the
//! sanitizer build; see serve_framing.rs.
#![no_main]

#[path = "../../crates/serve/src/relp_frame.rs"]
#[allow(dead_code)]
mod relp_frame;

use libfuzzer_sys::fuzz_target;
use relp_frame::{RelpParser, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let step = usize::from(sel).max(1);
    let run = |step: usize| {
        let mut p = RelpParser::new();
        let mut frames = Vec::new();
        for c in rest.chunks(step) {
            p.push(c);
            loop {
                match p.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    };
    let whole = run(rest.len().max(1));
    assert_eq!(whole, run(step));
    // Frames without leading zeros re-encode byte for byte (a number starts the input or
    // follows a space or the previous frame's trailing LF).
    let mut again = Vec::new();
    for f in &whole.0 {
        encode(&mut again, f.txnr, &f.command, &f.data);
    }
    if whole.1.is_none() && !rest.windows(2).any(|w| matches!(w[0], b' ' | b'\n') && w[1] == b'0') && !rest.starts_with(b"0") {
        assert!(rest.starts_with(&again));
    }
});
