//! Fuzz the syslog decoder and classifier: any bytes, any hints → an Event, never a panic,
//! and the raw bytes always kept exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Observer, Origin, Received, YearRule};

fuzz_target!(|data: &[u8]| {
    // First byte picks hints so the year-rule and zone paths are fuzzed too.
    let (sel, raw) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let year = match sel % 3 {
        0 => YearRule::FromReceived,
        1 => YearRule::Fixed(i16::from(sel) * 37 - 4000),
        _ => YearRule::Reference(jiff::Timestamp::from_second(i64::from(sel) * 100_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)),
    };
    let tz = match sel % 4 {
        0 => None,
        1 => Some("Europe/Zurich".to_string()),
        2 => Some("+05:30".to_string()),
        _ => Some(String::from_utf8_lossy(&raw[..raw.len().min(8)]).into_owned()),
    };
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: Observer::Vm,
        format: if sel & 0x80 == 0 { Format::Syslog } else { Format::Raw },
        hints: DecodeHints { year, tz },
        origin: Origin::File { path: "fuzz".into(), line: 1 },
        raw: raw.to_vec(),
    };
    let event = decode::decode(&env);
    assert_eq!(event.raw, raw);
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    let _ = decode::detect(&lines);
});
