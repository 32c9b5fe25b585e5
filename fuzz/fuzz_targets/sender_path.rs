//! Fuzz `ingest --sender-from-path`: any pattern and any path → a sender address, no match, or
//! a one-line error; never a panic (the matcher slices the path at found offsets).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, paths) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(p) = model::sender_path::SenderPattern::parse(pattern) {
        for path in paths.lines() {
            if let Some(ip) = p.sender(path) {
                // What matched is an address the path holds (IPv4-mapped shown as IPv4).
                assert!(!ip.to_string().is_empty());
            }
        }
    }
});
