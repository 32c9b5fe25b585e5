//! Fuzz the NAT record decoders (issue 12: conntrack events, ulogd2 NFCT JSON and LOGEMU
//! text): the input is one line, decoded bare, behind a syslog header (as rsyslog forwards
//! hv-conntrack.service's lines) and behind a conntrack stamp; and, as a flow record with NAT
//! fields, the first 64 bytes. Never a panic; the raw bytes kept; a translation is only ever
//! made of addresses and ports that parse. Differential: whatever the indexer's fast path
//! (`decode::nat::conntrack_line`) reads of a line is what `decode` makes of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Observer, Origin, Received, fields};

fn check(format: Format, raw: Vec<u8>) {
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: Observer::Network,
        format,
        hints: DecodeHints::default(),
        origin: Origin::File { path: "fuzz".into(), line: 1 },
        raw: raw.clone(),
    };
    let event = decode::decode(&env);
    assert_eq!(event.raw, raw);
    for key in [fields::NAT_IP, fields::NAT_INSIDE_IP, fields::NAT_PEER_IP] {
        if let Some(a) = event.field(key) {
            assert!(a.parse::<std::net::IpAddr>().is_ok(), "{key}={a}");
        }
    }
    for key in [fields::NAT_PORT, fields::NAT_INSIDE_PORT, fields::NAT_PEER_PORT] {
        if let Some(p) = event.field(key) {
            assert!(p.parse::<u16>().is_ok(), "{key}={p}");
        }
    }
    if event.field(fields::NAT_IP).is_some() {
        assert!(event.field(fields::NAT_INSIDE_IP).is_some());
    }
    for i in &event.issues {
        assert!(i.offset <= raw.len(), "{i:?}");
    }
    if format == Format::Syslog
        && let Some(ct) = decode::nat::conntrack_line(&raw)
    {
        assert_eq!(event.message, ct.message);
        assert!(event.host.is_none() && event.app.is_none(), "{event:?}");
        assert!(event.issues.is_empty(), "{:?}", event.issues);
        assert_eq!(event.fields, decode::nat::conntrack_fields(ct.message));
        assert_eq!(event.ips, ct.ips);
        let reported = ct.reported.map_or((None, String::new()), |(t, text)| (t, text.to_string()));
        assert_eq!((event.reported.time, event.reported.text.clone()), reported);
        let s = |ip: std::net::IpAddr| model::text::ip_string(ip);
        assert_eq!(event.field(fields::NAT_IP), Some(s(ct.public.0).as_str()));
        assert_eq!(event.field(fields::NAT_INSIDE_IP), Some(s(ct.inside.0).as_str()));
        assert_eq!(event.field(fields::NAT_KIND), Some(ct.kind));
        assert_eq!(event.field(fields::NAT_EVENT), Some(ct.event));
    }
}

fuzz_target!(|data: &[u8]| {
    check(Format::Syslog, data.to_vec());
    let mut wrapped = b"Dec  6 06:50:57 netnode-1 pugmark-conntrack[812]: [1796539857.837620]#011".to_vec();
    wrapped.extend_from_slice(data);
    check(Format::Syslog, wrapped);
    let mut stamped = b"[1796539857.837620]\t    [NEW] ipv4     2 ".to_vec();
    stamped.extend_from_slice(data);
    check(Format::Syslog, stamped);
    check(Format::NetflowRecord, data.to_vec());
});
