//! NAT records (issue 12): the lines real conntrack 1.4.7 and ulogd 2.0.8 wrote in a network
//! namespace doing nftables SNAT (`testdata/nat/`, made by the recipe in PEERS.md and by
//! crates/pugmark/tests/nat.rs), decoded and held against what the test sent: inside
//! 10.20.0.5 (and fd00:20::5) ports 40001–40003, public 192.0.2.254 (2001:db8::fe), peer
//! 192.0.2.10 (2001:db8::10). Plus the shapes a site meets (syslog-forwarded with `#011`,
//! without `-o extended`, ICMP, DNAT) and bad input.

use std::path::PathBuf;

use model::envelope::{DecodeHints, Format, RecordEnvelope, YearRule};
use model::{Event, EventClass, Observer, Origin, Received, fields};

fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/nat")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn dec(line: &str) -> Event {
    decode::decode(&RecordEnvelope {
        received: Received::from_stored(1_796_600_000_000_000_000),
        observer: Observer::Network,
        format: Format::Syslog,
        hints: DecodeHints {
            year: YearRule::Fixed(2026),
            tz: None,
        },
        origin: Origin::File {
            path: "test".into(),
            line: 1,
        },
        raw: line.as_bytes().to_vec(),
    })
}

/// (event, proto, public ip, public port, inside ip, inside port, peer ip, peer port).
fn nat(e: &Event) -> Vec<Option<&str>> {
    [
        fields::NAT_EVENT,
        fields::PROTO,
        fields::NAT_IP,
        fields::NAT_PORT,
        fields::NAT_INSIDE_IP,
        fields::NAT_INSIDE_PORT,
        fields::NAT_PEER_IP,
        fields::NAT_PEER_PORT,
    ]
    .iter()
    .map(|k| e.field(k))
    .collect()
}

fn lines(name: &str) -> Vec<String> {
    testdata(name)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("conntrack v"))
        .map(str::to_string)
        .collect()
}

#[test]
fn conntrack_extended_output_of_a_real_snat() {
    let all = lines("conntrack-extended.log");
    assert_eq!(all.len(), 17);
    let refs: Vec<&[u8]> = all.iter().map(|l| l.as_bytes()).collect();
    assert_eq!(decode::detect(&refs), Format::Syslog);
    let events: Vec<Event> = all.iter().map(|l| dec(l)).collect();
    for e in &events {
        assert!(e.issues.is_empty(), "{:?}", e.issues);
        assert_eq!(e.class, EventClass::NetConnection);
        assert_eq!(e.source_kind, "conntrack");
        assert!(e.reported.time.is_some());
        assert_eq!(e.field(fields::NAT_KIND), Some("snat"));
    }
    let first = &events[0];
    assert_eq!(
        nat(first),
        [
            Some("new"),
            Some("tcp"),
            Some("192.0.2.254"),
            Some("40001"),
            Some("10.20.0.5"),
            Some("40001"),
            Some("192.0.2.10"),
            Some("8080")
        ]
    );
    assert_eq!(first.field(fields::CT_ID), Some("3170591755"));
    assert_eq!(first.field(fields::CT_TIMEOUT), Some("120"));
    assert_eq!(first.field(fields::CT_STATE), Some("SYN_SENT"));
    assert_eq!(
        first.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-12-06T06:50:57.83762Z")
    );
    // UDP, IPv6, and the DESTROY from `conntrack -F` with its lifetime and [USERSPACE] tail.
    assert_eq!(
        nat(&events[6])[..6],
        [
            Some("new"),
            Some("udp"),
            Some("192.0.2.254"),
            Some("40002"),
            Some("10.20.0.5"),
            Some("40002")
        ]
    );
    assert_eq!(events[8].field(fields::NAT_IP), Some("2001:db8::fe"));
    assert_eq!(events[8].field(fields::NAT_INSIDE_IP), Some("fd00:20::5"));
    let destroy = &events[16];
    assert_eq!(destroy.field(fields::NAT_EVENT), Some("destroy"));
    assert_eq!(destroy.field(fields::CT_ID), Some("3170591755"));
    assert_eq!(destroy.field(fields::CT_LIFETIME), Some("5"));
    assert_eq!(destroy.field(fields::NAT_INSIDE_PORT), Some("40001"));
}

#[test]
fn conntrack_without_timestamp_or_extended_output() {
    for l in lines("conntrack-plain.log") {
        let e = dec(&l);
        assert!(e.issues.is_empty(), "{l}: {:?}", e.issues);
        assert_eq!(e.source_kind, "conntrack");
        assert_eq!(e.field(fields::NAT_KIND), Some("snat"), "{l}");
        assert!(e.field(fields::CT_ID).is_none());
        assert!(e.reported.time.is_none(), "no stamp, no reported time");
    }
}

#[test]
fn conntrack_forwarded_by_rsyslog_keeps_the_syslog_header_and_reads_the_escaped_tab() {
    // What hv-conntrack.service (`--output timestamp,id`) becomes in a traditional rsyslog
    // file: the tab after the stamp escaped as #011.
    let l = "Dec  6 06:50:57 netnode-1 pugmark-conntrack[812]: [1796539857.837620]#011    [NEW] tcp      6 120 SYN_SENT src=10.20.0.5 dst=192.0.2.10 sport=40001 dport=8080 [UNREPLIED] src=192.0.2.10 dst=192.0.2.254 sport=8080 dport=40001 id=3170591755";
    let e = dec(l);
    assert!(e.issues.is_empty(), "{:?}", e.issues);
    assert_eq!(e.host.as_deref(), Some("netnode-1"));
    assert_eq!(e.app.as_deref(), Some("pugmark-conntrack"));
    assert_eq!(e.field(fields::NAT_IP), Some("192.0.2.254"));
    assert_eq!(e.field(fields::CT_ID), Some("3170591755"));
    // The conntrack stamp, not the syslog one, is the event's time.
    assert_eq!(
        e.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-12-06T06:50:57.83762Z")
    );
}

#[test]
fn icmp_tuple_ids_are_not_the_entry_id_and_dnat_is_read() {
    let l = "[1796539857.100000]\t    [NEW] ipv4     2 icmp     1 30 src=10.20.0.5 dst=192.0.2.10 type=8 code=0 id=77 [UNREPLIED] src=192.0.2.10 dst=192.0.2.254 type=0 code=0 id=77 id=123456";
    let e = dec(l);
    assert!(e.issues.is_empty(), "{:?}", e.issues);
    assert_eq!(e.field(fields::CT_ID), Some("123456"));
    assert_eq!(e.field(fields::NAT_IP), Some("192.0.2.254"));
    assert_eq!(e.field(fields::NAT_PORT), None);
    // A floating IP's inbound side: the destination is rewritten.
    let l = "[1796539857.200000]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=198.51.100.7 dst=203.0.113.20 sport=51000 dport=22 [UNREPLIED] src=10.0.0.12 dst=198.51.100.7 sport=22 dport=51000 id=42";
    let e = dec(l);
    assert_eq!(
        nat(&e),
        [
            Some("new"),
            Some("tcp"),
            Some("203.0.113.20"),
            Some("22"),
            Some("10.0.0.12"),
            Some("22"),
            Some("198.51.100.7"),
            Some("51000")
        ]
    );
    assert_eq!(e.field(fields::NAT_KIND), Some("dnat"));
    // No rewrite: a connection, no translation.
    let l = "    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1";
    let e = dec(l);
    assert_eq!(e.class, EventClass::NetConnection);
    assert_eq!(e.field(fields::NAT_KIND), None);
}

#[test]
fn ulogd_json_of_a_real_snat() {
    let all = lines("ulogd-nfct.json");
    assert_eq!(all.len(), 6);
    let refs: Vec<&[u8]> = all.iter().map(|l| l.as_bytes()).collect();
    assert_eq!(decode::detect(&refs), Format::Syslog);
    let events: Vec<Event> = all.iter().map(|l| dec(l)).collect();
    for e in &events {
        assert!(e.issues.is_empty(), "{:?}", e.issues);
        assert_eq!(e.source_kind, "ulogd-json");
        assert_eq!(e.class, EventClass::NetConnection);
    }
    assert_eq!(
        nat(&events[0]),
        [
            Some("new"),
            Some("tcp"),
            Some("192.0.2.254"),
            Some("40001"),
            Some("10.20.0.5"),
            Some("40001"),
            Some("192.0.2.10"),
            Some("8080")
        ]
    );
    assert_eq!(events[0].field(fields::CT_ID), Some("3170591755"));
    assert_eq!(
        events[0].reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-12-06T06:50:57.8375Z")
    );
    let d = &events[5];
    assert_eq!(d.field(fields::NAT_EVENT), Some("destroy"));
    assert_eq!(
        d.field(fields::FLOW_START),
        Some("2026-12-06T06:50:57.83666Z")
    );
    assert_eq!(
        d.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-12-06T06:51:02.381411Z")
    );
    assert_eq!(events[2].field(fields::NAT_IP), Some("2001:db8::fe"));
    assert_eq!(events[1].field(fields::PROTO), Some("udp"));
}

#[test]
fn ulogd_logemu_text_of_a_real_snat() {
    let all = lines("ulogd-logemu.log");
    assert_eq!(all.len(), 6);
    for l in &all {
        let e = dec(l);
        assert!(e.issues.is_empty(), "{l}: {:?}", e.issues);
        assert_eq!(e.source_kind, "ulogd-logemu");
        assert_eq!(e.host.as_deref(), Some("vm"));
        assert_eq!(e.field(fields::NAT_KIND), Some("snat"));
        assert!(e.reported.time.is_some());
    }
    let e = dec(&all[3]);
    assert_eq!(
        nat(&e),
        [
            Some("destroy"),
            Some("udp"),
            Some("192.0.2.254"),
            Some("40002"),
            Some("10.20.0.5"),
            Some("40002"),
            Some("192.0.2.10"),
            Some("5353")
        ]
    );
}

/// Words another decoder looks for, inside a conntrack line (the fuzz target `nat` found
/// this one): the line stays a NAT record, with the fast path's fields and no other
/// decoder's fields or issues.
#[test]
fn another_decoders_words_in_a_conntrack_line_do_not_reclassify_it() {
    let line = "[DESTROY] tcp      6 115 TIME_WAIT src=10.20.0.5 dst=192.0.2.10 sport=40001 dport=8080 src=192.0.2.10 dst=192.0.2.254 sport=8080 dport=40001 [ASSURED] -elta-time=5 [USERSPLCMAPS CRED FINALACE] portid=23999 progname=conntrack";
    let e = dec(line);
    assert_eq!(e.class, EventClass::NetConnection, "{e:?}");
    assert!(e.issues.is_empty(), "{:?}", e.issues);
    assert!(e.field(fields::PAYLOAD_SOURCE).is_none(), "{e:?}");
    let ct = decode::nat::conntrack_line(line.as_bytes()).expect("the fast path reads it");
    assert_eq!(e.fields, decode::nat::conntrack_fields(ct.message));
    // A glexec line is still one.
    let g = dec(
        "Dec  6 10:00:00 wn-1 glexec[42]: LCMAPS CRED FINAL: DN:\"/DC=ch/CN=x\" mapped uid:501",
    );
    assert_eq!(g.field(fields::PAYLOAD_SOURCE), Some("glexec"), "{g:?}");
}

#[test]
fn bad_input_is_kept_with_an_issue_and_no_translation() {
    let bad = [
        // The reply tuple is missing.
        "[1796539857.1]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.20.0.5 dst=192.0.2.10 sport=40001 dport=8080 [UNREPLIED]",
        // An IPv6 zone id.
        "    [NEW] tcp      6 120 SYN_SENT src=fe80::1%eth0 dst=fe80::2 sport=1 dport=2 [UNREPLIED] src=fe80::2 dst=fe80::9 sport=2 dport=1",
        // A port out of range.
        "    [NEW] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=99999 dport=2 src=10.0.0.2 dst=192.0.2.1 sport=2 dport=5",
        // Truncated (the last one before the protocol: not recognised, kept as a raw line).
        "[1796539857.1]\t [DESTROY] ipv4     2 tcp      6 src=10.20.0.5 dst=192.0.2.1",
        "[1796539857.1]\t    [NEW] ipv4     2 src=",
        // ulogd: not JSON, no reply addresses, a zone id.
        "{\"ct.event\": 1, \"orig.l4.sport\": 5, ",
        "{\"ct.event\": 1, \"orig.l4.sport\": 5, \"src_ip\": \"10.0.0.1\", \"dest_ip\": \"192.0.2.1\"}",
        "{\"ct.event\": 1, \"orig.l4.sport\": 5, \"src_ip\": \"fe80::1%eth0\", \"dest_ip\": \"fe80::2\", \"reply.ip.saddr.str\": \"fe80::2\", \"reply.ip.daddr.str\": \"fe80::3\"}",
        "Dec  6 06:50:57 vm [NEW] ORIG: SRC=10.20.0.5 DST=192.0.2.10 PROTO=TCP SPT=40001 , REPLY: SRC=192.0.2.10",
    ];
    for l in bad {
        let e = dec(l);
        assert_eq!(e.raw, l.as_bytes());
        assert!(
            e.issues.iter().any(|i| matches!(
                i.kind.as_str(),
                "bad_conntrack" | "bad_ulogd" | "not_syslog"
            )),
            "{l}: {:?}",
            e.issues
        );
        assert!(e.field(fields::NAT_IP).is_none(), "{l}");
        for i in &e.issues {
            assert!(i.offset <= l.len(), "{l}: {i:?}");
        }
    }
    // Look-alikes stay what they were.
    for l in [
        "Dec  6 06:50:57 host app: [NEW] something src=x",
        "[NEW] release notes",
        "{\"event_type\": \"port.create.end\"}",
    ] {
        let e = dec(l);
        assert_ne!(e.source_kind, "conntrack", "{l}");
        assert!(e.field(fields::NAT_EVENT).is_none(), "{l}");
    }
}

#[test]
fn any_bytes_decode_without_panic() {
    // A cheap sweep over truncations of every sample (the fuzz target `nat` does more).
    for name in [
        "conntrack-extended.log",
        "ulogd-nfct.json",
        "ulogd-logemu.log",
    ] {
        for l in lines(name) {
            for cut in 0..l.len() {
                if l.is_char_boundary(cut) {
                    let _ = dec(&l[..cut]);
                }
            }
        }
    }
}

#[test]
fn ipfix_nat_fields_become_a_translation() {
    use model::flow::{FlowNat, FlowRecord};
    let mut r = FlowRecord {
        version: 10,
        exporter: Some("192.0.2.1:4739".parse().unwrap()),
        domain: 1,
        datagram_seq: 9,
        flowset: 0,
        record: 0,
        template: 256,
        src: Some("10.0.0.12".parse().unwrap()),
        dst: Some("198.51.100.7".parse().unwrap()),
        src_port: 40001,
        dst_port: 443,
        proto: 6,
        tcp_flags: 0,
        tos: 0,
        packets: 3,
        bytes: 180,
        sampling: 1,
        start_ms: Some(1_796_539_857_000),
        end_ms: Some(1_796_539_860_000),
        export_ms: 1_796_539_861_000,
        in_if: 1,
        out_if: 2,
        nat: Some(FlowNat {
            src: Some("203.0.113.9".parse().unwrap()),
            dst: None,
            src_port: Some(61000),
            dst_port: None,
            event: Some(1),
        }),
    };
    let dec = |r: &FlowRecord| {
        decode::decode(&RecordEnvelope {
            received: Received::from_stored(1_796_600_000_000_000_000),
            observer: Observer::Network,
            format: Format::NetflowRecord,
            hints: DecodeHints::default(),
            origin: Origin::File {
                path: "test".into(),
                line: 1,
            },
            raw: r.encode(),
        })
    };
    let e = dec(&r);
    assert_eq!(
        nat(&e),
        [
            Some("flow"),
            Some("tcp"),
            Some("203.0.113.9"),
            Some("61000"),
            Some("10.0.0.12"),
            Some("40001"),
            Some("198.51.100.7"),
            Some("443")
        ]
    );
    assert_eq!(e.field("nat_event_code"), Some("1"));
    // Identity (the ASA samples): elements kept, no translation.
    r.nat = Some(FlowNat {
        src: r.src,
        src_port: Some(r.src_port),
        ..FlowNat::default()
    });
    let e = dec(&r);
    assert_eq!(e.field(fields::NAT_IP), None);
    assert_eq!(e.field("post_nat_src_ip"), Some("10.0.0.12"));
}

/// A LOG rule in a Neutron router namespace (`qrouter-…`: internal ports `qr-…`, gateway port
/// `qg-…`) logs one packet as it is at that hook: before SNAT in POSTROUTING, after DNAT in
/// FORWARD. It shows the inside address talking to the peer through the router, not the
/// public address or port it was given: a connection (attributed by its source address like
/// any other), never a translation.
#[test]
fn a_router_namespace_log_line_is_a_connection_not_a_translation() {
    let l = "Dec  6 06:50:57 netnode-1 kernel: [1234.5] neutron-l3-FWD IN=qr-7f3a2b1c-9d OUT=qg-1e2d3c4b-5a MAC=fa:16:3e:11:22:33:fa:16:3e:44:55:66:08:00 SRC=10.0.0.12 DST=198.51.100.7 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=40001 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0";
    let e = dec(l);
    assert_eq!(e.class, EventClass::NetConnection);
    assert_eq!(e.field(fields::SRC_IP), Some("10.0.0.12"));
    assert_eq!(e.field(fields::OUT_IF), Some("qg-1e2d3c4b-5a"));
    assert_eq!(e.field(fields::NAT_IP), None);
    assert_eq!(e.field(fields::NAT_EVENT), None);
}

/// Found by the `nat` fuzz target: a conntrack line with a byte that is not UTF-8 is decoded
/// through its lossy rendering (one U+FFFD, 3 bytes, for the 1 bad byte), and its issues must
/// still point into the raw bytes — at the place they name, not past the record's end.
#[test]
fn issues_in_a_line_that_is_not_utf8_point_into_the_raw_bytes() {
    let mut raw =
        b"[1796539862.381594]\t[DESTROY] ipv4     2 tcp      6 115 TIME_WAIT src=10.20.0.5"
            .to_vec();
    raw.push(0xff);
    raw.extend_from_slice(b" dst=192.0.2.10 sport=40001 dport=8 80 src=192.0.2.10 dst=192.0.2.254 sport=8080 dport=40001 [ASSURED] delta-time=5 id=3170591755 [USERSPACE] portid=23999 progname=conntrack");
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: Observer::Network,
        format: Format::Syslog,
        hints: DecodeHints::default(),
        origin: Origin::File {
            path: "fuzz".into(),
            line: 1,
        },
        raw: raw.clone(),
    };
    let e = decode::decode(&env);
    assert_eq!(e.raw, raw);
    assert!(!e.issues.is_empty());
    for i in &e.issues {
        assert!(i.offset <= raw.len(), "{i:?}");
    }
    // The bad source address is named where it stands in the raw bytes.
    let src = e
        .issues
        .iter()
        .find(|i| i.kind == "bad_conntrack" && i.expected.contains("IP"))
        .expect("the bad address is an issue");
    assert!(raw[src.offset..].starts_with(b"10.20.0.5\xff"), "{src:?}");
}
