//! Fuzz the Neutron notification decoder (issue 12): the first byte picks a resource and a
//! verb, the rest is the payload, sent three ways: inside a `{"event_type", "payload"}`
//! notification, in the oslo.messaging envelope (as a JSON string), and as the whole record.
//! Never a panic; the raw bytes kept; addresses the decoder keeps always parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Origin, Received, fields};

const TYPES: &[&str] = &[
    "port.create.end",
    "port.update.end",
    "port.delete.end",
    "floatingip.create.end",
    "floatingip.update.end",
    "floatingip.delete.end",
    "router.create.end",
    "router.update.end",
    "router.delete.end",
    "port.create.start",
    "floatingip.frobnicate.end",
];

fn check(raw: Vec<u8>) {
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: Format::OpenstackNotification.default_observer(),
        format: Format::OpenstackNotification,
        hints: DecodeHints::default(),
        origin: Origin::File { path: "fuzz".into(), line: 1 },
        raw: raw.clone(),
    };
    let event = decode::decode(&env);
    assert_eq!(event.raw, raw);
    for key in [fields::FLOATING_IP, fields::FIP_FIXED_IP] {
        if let Some(a) = event.field(key) {
            assert!(a.parse::<std::net::IpAddr>().is_ok(), "{key}={a}");
        }
    }
    for key in [fields::PORT_IPS, fields::GATEWAY_IPS] {
        if let Some(list) = event.field(key) {
            for a in list.split(',') {
                assert!(a.parse::<std::net::IpAddr>().is_ok(), "{key}={a}");
            }
        }
    }
}

/// `s` as the inside of a JSON string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (sel, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let ty = TYPES[usize::from(sel) % TYPES.len()];
    let payload = String::from_utf8_lossy(rest);
    let note = format!(
        "{{\"event_type\": \"{ty}\", \"publisher_id\": \"network.fuzz\", \"timestamp\": \"2026-10-14 09:00:00.123456\", \"payload\": {payload}}}"
    );
    let wrapped = format!("{{\"oslo.version\": \"2.0\", \"oslo.message\": \"{}\"}}", escape(&note));
    check(note.into_bytes());
    check(wrapped.into_bytes());
    check(rest.to_vec());
});
