//! Fuzz the query audit records' decoder (issue 14): a `pugmark-audit` syslog line with
//! `audit {JSON}` decoded as each observer would send it. Never a panic; raw bytes kept; only
//! the collector's records become class `audit.query`, always with a verb.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, EventClass, Format, Observer, Origin, Received};

fuzz_target!(|data: &[u8]| {
    let mut raw = b"<110>1 2026-12-06T07:00:00Z - pugmark-audit - - - audit ".to_vec();
    raw.extend_from_slice(data);
    for observer in [Observer::Collector, Observer::Vm] {
        let env = RecordEnvelope {
            received: Received::from_stored(1_760_000_000_000_000_000),
            observer,
            format: Format::Syslog,
            hints: DecodeHints::default(),
            origin: Origin::File { path: "<pugmark api>".into(), line: 1 },
            raw: raw.clone(),
        };
        let e = decode::decode(&env);
        assert_eq!(e.raw, raw);
        if e.class == EventClass::AuditQuery {
            assert_eq!(observer, Observer::Collector);
            assert!(e.field("audit_verb").is_some());
        }
    }
});
