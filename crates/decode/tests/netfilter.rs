//! netfilter LOG lines against the crowdsec parser tests (every `Parsed[...]` / `Meta[...]`
//! assertion about something we model, read from the `*__parser.assert` files), the wazuh
//! iptables rule tests (every `log N pass = …` line), the 49-line port scan, and hand-written
//! variants (ICMP errors quoting a packet, IPv6, bare dmesg lines, look-alikes that are not
//! netfilter). One test binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use model::envelope::{DecodeHints, Format, RecordEnvelope, YearRule};
use model::{Event, EventClass, Observer, Origin, Received};

fn corpus(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn dec(line: &str) -> Event {
    decode::decode(&RecordEnvelope {
        received: Received::from_stored(1_780_000_000_000_000_000),
        observer: Observer::Hypervisor,
        format: Format::Syslog,
        hints: DecodeHints {
            year: YearRule::Fixed(2022),
            tz: None,
        },
        origin: Origin::File {
            path: "test".into(),
            line: 1,
        },
        raw: line.as_bytes().to_vec(),
    })
}

/// One crowdsec assertion: `results["stage"]["parser"][N].Evt.Parsed["key"] == "value"`.
#[derive(Debug)]
struct Assertion {
    line: usize,
    map: String,
    key: String,
    value: String,
}

/// The assertions with a string value, and the line indexes crowdsec's parser failed on.
/// Only the stages whose index is the line number: `s00-raw` and `s01-parse` (later stages
/// drop failed lines and renumber).
fn read_asserts(text: &str) -> (Vec<Assertion>, BTreeSet<usize>) {
    let mut out = Vec::new();
    let mut failed = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l
            .strip_prefix("results[\"s00-raw\"][\"")
            .or_else(|| l.strip_prefix("results[\"s01-parse\"][\""))
        else {
            continue;
        };
        // `parser"][N]…`
        let Some((_, rest)) = rest.split_once("\"][") else {
            continue;
        };
        let Some(close) = rest.find(']') else {
            continue;
        };
        let Ok(line) = rest[..close].parse::<usize>() else {
            continue;
        };
        let rest = &rest[close + 1..];
        if rest.starts_with(".Success == false") {
            failed.insert(line);
            continue;
        }
        let Some(rest) = rest.strip_prefix(".Evt.") else {
            continue;
        };
        let Some((map, rest)) = rest.split_once("[\"") else {
            continue;
        };
        let Some((key, rest)) = rest.split_once("\"]") else {
            continue;
        };
        let Some(value) = rest
            .strip_prefix(" == \"")
            .and_then(|v| v.strip_suffix('"'))
        else {
            continue;
        };
        out.push(Assertion {
            line,
            map: map.to_string(),
            key: key.to_string(),
            value: value.replace("\\\"", "\""),
        });
    }
    (out, failed)
}

/// What we hold for a crowdsec key, or None when we do not model it.
fn ours(ev: &Event, map: &str, key: &str, pve: bool) -> Option<Option<String>> {
    let f = |name: &str| Some(ev.field(name).map(str::to_string));
    match (map, key) {
        ("Parsed", "src_ip") | ("Meta", "source_ip") => f("src_ip"),
        ("Parsed", "dst_ip") => f("dst_ip"),
        ("Parsed", "src_port") => f("src_port"),
        ("Parsed", "dst_port") => f("dst_port"),
        ("Parsed", "proto") => Some(ev.field("proto").map(str::to_ascii_uppercase)),
        ("Parsed", "int_eth") if !pve => f("in_if"),
        ("Parsed", "iface") => f("in_if"),
        ("Parsed", "oface") => f("out_if"),
        ("Parsed", "physin") => f("phys_in"),
        ("Parsed", "physout") => f("phys_out"),
        ("Parsed", "tcp_flags") => f("tcp_flags"),
        ("Parsed", "vmid") => f("vmid"),
        ("Parsed", "loglevel") => Some(ev.severity.map(|s| s.to_string())),
        ("Parsed", "logdate" | "timestamp") => Some(Some(ev.reported.text.clone())),
        ("Parsed", "program") => Some(ev.app.clone()),
        ("Parsed", "message") => Some(Some(ev.message.clone())),
        ("Meta", "machine") => Some(ev.host.clone()),
        _ => None,
    }
}

fn crowdsec(log: &str, asserts: &str, pve: bool) -> (usize, BTreeMap<String, usize>) {
    let lines: Vec<String> = corpus(log).lines().map(str::to_string).collect();
    let evs: Vec<Event> = lines.iter().map(|l| dec(l)).collect();
    for (l, ev) in lines.iter().zip(&evs) {
        assert_eq!(ev.class, EventClass::NetConnection, "{l}");
    }
    let (asserts, _) = read_asserts(&corpus(asserts));
    let mut checked = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for a in &asserts {
        let ev = &evs[a.line];
        if a.key == "action" {
            // PVE's verdict word; ours is normalised lower case.
            let want = a.value.to_ascii_lowercase();
            let got = ev.field("action").unwrap_or("none");
            assert!(
                want.contains(got),
                "line {}: action {got} vs {want}",
                a.line
            );
            checked += 1;
            continue;
        }
        if a.key == "dst_mac" {
            let mac = ev.field("mac_header").unwrap_or_default();
            assert!(
                mac.starts_with(&a.value),
                "line {}: {mac} vs {}",
                a.line,
                a.value
            );
            checked += 1;
            continue;
        }
        match ours(ev, &a.map, &a.key, pve) {
            Some(got) => {
                assert_eq!(
                    got.as_deref(),
                    Some(a.value.as_str()),
                    "line {} {}[{}]",
                    a.line,
                    a.map,
                    a.key
                );
                checked += 1;
            }
            None => *skipped.entry(format!("{}[{}]", a.map, a.key)).or_default() += 1,
        }
    }
    (checked, skipped)
}

#[test]
fn crowdsec_iptables_logs() {
    let (checked, skipped) = crowdsec(
        "firewall/crowdsec/iptables-logs__iptables-logs.log",
        "firewall/crowdsec/iptables-logs__parser.assert",
        false,
    );
    assert_eq!(checked, 49, "skipped: {skipped:?}");
    // crowdsec fails line 2 (`XX=enp1s0`); we read it, without an input interface.
    let ev = dec(corpus("firewall/crowdsec/iptables-logs__iptables-logs.log")
        .lines()
        .nth(2)
        .unwrap());
    assert_eq!(ev.field("in_if"), None);
    assert_eq!(ev.field("src_ip"), Some("195.54.160.107"));
    let (_, failed) = read_asserts(&corpus("firewall/crowdsec/iptables-logs__parser.assert"));
    assert_eq!(failed, BTreeSet::from([2]));
    // line 3: prefix, UDP, no flags.
    let ev = dec(corpus("firewall/crowdsec/iptables-logs__iptables-logs.log")
        .lines()
        .nth(3)
        .unwrap());
    assert_eq!(ev.field("log_prefix"), Some("IPTABLES-DROP:"));
    assert_eq!(ev.field("action"), Some("drop"));
    assert_eq!(ev.field("tcp_flags"), None);
}

#[test]
fn crowdsec_proxmox() {
    let (checked, skipped) = crowdsec(
        "firewall/crowdsec/proxmox-iptables-logs__proxmox-iptables.log",
        "firewall/crowdsec/proxmox-iptables-logs__parser.assert",
        true,
    );
    assert_eq!(checked, 103, "skipped: {skipped:?}");
    let lines = corpus("firewall/crowdsec/proxmox-iptables-logs__proxmox-iptables.log");
    for l in lines.lines() {
        let ev = dec(l);
        assert!(ev.issues.is_empty(), "{l}: {:?}", ev.issues);
        assert_eq!(ev.source_kind, "pve-firewall");
        assert!(ev.reported.time.is_some());
    }
    let ev = dec(lines.lines().nth(3).unwrap());
    assert_eq!(ev.field("phys_out"), Some("tap101i0"));
    assert_eq!(ev.field("fw_chain"), Some("tap101i0-IN"));
    assert_eq!(ev.field("log_prefix"), Some("REJECT:"));
    assert_eq!(
        ev.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2022-06-20T11:12:46Z")
    );
    // GROUP line: no verdict word.
    let ev = dec(lines.lines().nth(8).unwrap());
    assert_eq!(ev.field("action"), None);
    assert_eq!(ev.field("log_prefix"), None);
}

/// Every `log N pass = …` line of wazuh's iptables tests is a net.connection with the line's
/// SRC and DST (and ports when it has them).
#[test]
fn wazuh_iptables() {
    let text = corpus("firewall/wazuh/wazuh_iptables.ini");
    let mut n = 0;
    for l in text.lines() {
        let Some((head, line)) = l.split_once(" = ") else {
            continue;
        };
        if !head.starts_with("log ") {
            continue;
        }
        let ev = dec(line);
        assert_eq!(ev.class, EventClass::NetConnection, "{line}");
        let tok = |k: &str| {
            line.split(' ')
                .find_map(|t| t.strip_prefix(k))
                .map(str::to_string)
        };
        assert_eq!(
            ev.field("src_ip").map(str::to_string),
            tok("SRC="),
            "{line}"
        );
        assert_eq!(
            ev.field("dst_ip").map(str::to_string),
            tok("DST="),
            "{line}"
        );
        assert_eq!(
            ev.field("src_port").map(str::to_string),
            tok("SPT="),
            "{line}"
        );
        assert_eq!(
            ev.field("dst_port").map(str::to_string),
            tok("DPT="),
            "{line}"
        );
        assert!(ev.issues.is_empty(), "{line}: {:?}", ev.issues);
        n += 1;
    }
    assert_eq!(n, 43);
    let one = |needle: &str| {
        let line = text.lines().find(|l| l.contains(needle)).unwrap();
        dec(line.split_once(" = ").unwrap().1)
    };
    let ev = one("DROP(src wan)");
    assert_eq!(ev.field("log_prefix"), Some("DROP(src wan)"));
    assert_eq!(ev.field("in_if"), Some("eth0"));
    assert_eq!(ev.field("action"), Some("drop"));
    let ev = one("SFW2-INext-DROP-DEFLT");
    assert_eq!(ev.field("proto"), Some("icmp"));
    assert_eq!(ev.field("icmp_type"), Some("8"));
    assert_eq!(ev.field("icmp_code"), Some("0"));
    let ev = one("CWR ECE SYN");
    assert_eq!(ev.field("tcp_flags"), Some("CWR ECE SYN"));
    assert_eq!(ev.field("log_prefix"), Some("[UFW BLOCK]"));
    assert_eq!(ev.field("action"), Some("block"));
    let ev = one("ACK PSH FIN");
    assert_eq!(ev.field("tcp_flags"), Some("ACK PSH FIN"));
    assert_eq!(ev.field("out_if"), Some("wlan0"));
    assert_eq!(ev.field("in_if"), None);
}

#[test]
fn port_scan() {
    let text = corpus("firewall/crowdsec/iptables-scan-multi-port__iptables-scan-multi-port.log");
    // Per source: the set of destination ports we read = the DPT= tokens of its lines.
    let mut ports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut n = 0;
    for l in text.lines() {
        let ev = dec(l);
        assert_eq!(ev.class, EventClass::NetConnection);
        let src = ev.field("src_ip").unwrap().to_string();
        if src == "62.34.17.168" {
            assert_eq!(ev.field("tcp_flags"), Some("SYN"));
        } else {
            let want = match ev.field("log_prefix") {
                Some("[UFW AUDIT]") => None, // audit is no verdict
                Some("[UFW BLOCK]") => Some("block"),
                other => panic!("prefix {other:?}"),
            };
            assert_eq!(ev.field("action"), want);
        }
        let dpt = ev.field("dst_port").unwrap().to_string();
        ports.entry(src).or_default().insert(dpt);
        let tok = |k: &str| {
            l.split(' ')
                .find_map(|t| t.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        want.entry(tok("SRC=")).or_default().insert(tok("DPT="));
        n += 1;
    }
    assert_eq!(n, 49);
    assert_eq!(ports, want);
    assert_eq!(ports["62.34.17.168"].len(), 17, "{ports:?}");
}

fn check(line: &str, class: EventClass, expected: &[(&str, &str)]) -> Event {
    let ev = dec(line);
    assert_eq!(ev.class, class, "{line}: {ev:?}");
    for (k, v) in expected {
        assert_eq!(ev.field(k), Some(*v), "{k} of {line}: {:?}", ev.fields);
    }
    assert_eq!(ev.raw, line.as_bytes());
    ev
}

#[test]
fn hand_written() {
    // ICMP error quoting the offending packet: the outer addresses win.
    check(
        "Oct 14 08:00:01 hv1 kernel: [ 12.5] FWD-REJECT: IN=br0 OUT=tap1 SRC=10.0.0.1 DST=10.0.0.9 LEN=88 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.9 DST=8.8.8.8 LEN=60 PROTO=UDP SPT=5353 DPT=53 LEN=40 ] ",
        EventClass::NetConnection,
        &[
            ("src_ip", "10.0.0.1"),
            ("dst_ip", "10.0.0.9"),
            ("proto", "icmp"),
            ("icmp_type", "3"),
            ("action", "reject"),
            ("out_if", "tap1"),
        ],
    );
    // IPv6 with TC / HOPLIMIT / FLOWLBL, bridge ports.
    let ev = check(
        "<4>Oct 14 08:00:01 hv1 kernel: IN=br0 OUT=br0 PHYSIN=eno1 PHYSOUT=tap42i0 MAC=52:54:00:aa:bb:cc:52:54:00:dd:ee:ff:86:dd SRC=2001:0db8::0001 DST=2001:db8::2 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=TCP SPT=40000 DPT=443 WINDOW=1 RES=0x00 SYN ACK URGP=0",
        EventClass::NetConnection,
        &[
            ("src_ip", "2001:db8::1"),
            ("phys_out", "tap42i0"),
            ("tcp_flags", "SYN ACK"),
            ("dst_port", "443"),
        ],
    );
    assert_eq!(ev.field("log_prefix"), None);
    // Nova's hybrid OVS plug: the VM's tap (`tap` + 11 characters of the port id) is the
    // bridge port its packets come in on; both devices kept for attribution rule 3.
    check(
        "<4>Oct 14 08:00:01 cmp1 kernel: [ 812.000001] IN=qbr1a2b3c4d-5e OUT=qbr1a2b3c4d-5e PHYSIN=tap1a2b3c4d-5e PHYSOUT=qvb1a2b3c4d-5e MAC=fa:16:3e:00:00:02:fa:16:3e:00:00:01:08:00 SRC=10.20.0.111 DST=203.0.113.6 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=3 DF PROTO=TCP SPT=40003 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
        EventClass::NetConnection,
        &[
            ("in_if", "qbr1a2b3c4d-5e"),
            ("phys_in", "tap1a2b3c4d-5e"),
            ("phys_out", "qvb1a2b3c4d-5e"),
            ("src_ip", "10.20.0.111"),
        ],
    );
    // Bare dmesg output: not syslog, still a connection; the syslog issue stays.
    let ev = check(
        "[50028442.088484] IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=40 PROTO=UDP SPT=1 DPT=2",
        EventClass::NetConnection,
        &[("src_ip", "192.0.2.1"), ("proto", "udp")],
    );
    assert_eq!(ev.issues.len(), 1);
    // nftables `log prefix` without a space before IN=? It always has one; a glued `:` works.
    check(
        "Oct 14 08:00:01 fw kernel: nft-drop:IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 PROTO=TCP SPT=1 DPT=2",
        EventClass::NetConnection,
        &[("log_prefix", "nft-drop:"), ("action", "drop")],
    );
    // Bad values: issues, not panics; the rest is still read.
    let ev = check(
        "Oct 14 08:00:01 fw kernel: IN=eth0 OUT= SRC=300.1.1.1 DST=192.0.2.2 PROTO=TCP SPT=99999 DPT=22",
        EventClass::NetConnection,
        &[("dst_ip", "192.0.2.2"), ("dst_port", "22")],
    );
    let kinds: Vec<&str> = ev.issues.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["bad_netfilter", "bad_netfilter"]);
    let at = ev.issues[0].offset;
    assert!(ev.raw[at..].starts_with(b"300.1.1.1"));
    // Look-alikes are left alone.
    for line in [
        "Oct 14 08:00:01 h rsync[1]: copy SRC=/a DST=/b",
        "Oct 14 08:00:01 h app: LOGIN=x SRC=1.2.3.4 DST=1.2.3.5",
        "Oct 14 08:00:01 h sshd[1]: Accepted password for root from 1.2.3.4 port 22 ssh2",
        "Oct 14 08:00:01 h kernel: IN= OUT= SRC= DST=",
        "IN=",
        "",
    ] {
        let ev = dec(line);
        assert_ne!(ev.class, EventClass::NetConnection, "{line}");
        assert_eq!(ev.field("log_prefix"), None);
    }
}
