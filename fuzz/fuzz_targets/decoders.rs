//! Fuzz every decoder through `decode::decode`: the first byte picks the format, the rest is
//! the record. Never a panic; the raw bytes always kept exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Observer, Origin, Received};

fuzz_target!(|data: &[u8]| {
    let (sel, raw) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let format = Format::KNOWN[usize::from(sel) % Format::KNOWN.len()];
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: format.default_observer(),
        format,
        hints: DecodeHints::default(),
        origin: Origin::File { path: "fuzz".into(), line: 1 },
        raw: raw.to_vec(),
    };
    let event = decode::decode(&env);
    assert_eq!(event.raw, raw);
    let _ = event.observer == Observer::Vm;
});
