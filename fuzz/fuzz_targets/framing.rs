//! Fuzz the streaming framer: any bytes, cut into chunks at fuzzer-chosen sizes, must frame
//! the same way as the whole input at once, cover every byte, and never panic.
#![no_main]

use decode::framing::{Framer, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let framing = match sel % 6 {
        0 => Framing::Lines,
        1 => Framing::JsonArray,
        2 => Framing::Blocks,
        3 => Framing::Terminated(b"..."),
        4 => Framing::Xml,
        _ => Framing::ScimList,
    };
    let chunk = usize::from(sel / 6).max(1);
    let run = |step: usize| {
        let mut f = Framer::new(framing);
        let mut out = Vec::new();
        for c in rest.chunks(step) {
            f.push(c, &mut out);
        }
        f.finish(&mut out);
        assert_eq!(f.framed_offset(), rest.len() as u64);
        out
    };
    let whole = run(rest.len().max(1));
    let pieces = run(chunk);
    assert_eq!(whole, pieces);
});
