//! netfilter LOG lines (iptables `-j LOG`, nftables `log`, ufw, firewalld, SuSEfirewall2,
//! OpenWRT, Proxmox pve-firewall) → `net.connection` events.
//!
//! [`classify`] runs on every syslog event after the syslog parse and the auth rules, and acts
//! only when the message has netfilter's shape: `[prefix] IN=… OUT=… [PHYSIN=… PHYSOUT=…]
//! [MAC=…] SRC=… DST=… … PROTO=… [SPT=… DPT=…] [flags]`. Whatever precedes the key-value block
//! is the log prefix (`IPTABLES-DROP:`, `[UFW BLOCK]`, OpenWRT's `DROP(src wan)` glued to
//! `IN=`), after the kernel's `[12345.678]` uptime stamp, which is dropped. Keys are read
//! tolerantly: any `KEY=value` token is accepted (`XX=enp1s0` is ignored, `IN=enp.1s0` kept as
//! written); the first SRC / DST / PROTO / ports win, so the quoted packet inside an ICMP
//! error (`[SRC=… DST=…]`) never overwrites the outer one.
//!
//! pve-firewall's own log (`VMID LEVEL CHAIN dd/Mon/yyyy:HH:MM:SS +0200 [ACTION:] IN=…`) is
//! not syslog: the syslog parse leaves it as a raw line with a `not_syslog` issue. When the
//! whole line has that shape, we read it here (source kind `pve-firewall`, reported time from
//! its stamp, the issue dropped since the line is understood), so no change in the dispatch
//! is needed. Other netfilter lines that are not syslog (bare `dmesg` output) are classified
//! too, keeping their syslog issue.
//!
//! Fields: SRC_IP, DST_IP, SRC_PORT, DST_PORT, PROTO (lower case), IN_IF, OUT_IF, PHYS_IN,
//! PHYS_OUT, MAC_HEADER, LOG_PREFIX, TCP_FLAGS, `action` (drop / reject / block / accept, when
//! the prefix says), `icmp_type` / `icmp_code`, and for pve-firewall `vmid` and `fw_chain`.
//! The observer stays what the source was configured as (a hypervisor's feed → hypervisor).

use std::net::IpAddr;

use model::{Event, EventClass, ParseIssue, Reported, fields};

/// Field names this decoder sets (the vocabulary lives in `model::fields`).
pub use model::fields::{FW_CHAIN, ICMP_CODE, ICMP_TYPE, VMID};

const KIND_PVE: &str = "pve-firewall";

/// TCP flags as the LOG target prints them.
const TCP_FLAG_NAMES: [&str; 8] = ["CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN"];

/// Classify a syslog event whose message is a netfilter LOG line; leaves others alone.
pub fn classify(ev: &mut Event) {
    if ev.class != EventClass::Other {
        return;
    }
    let msg = ev.message.as_bytes();
    // Cheap gate first: every LOG line has both.
    if !crate::text::contains!(msg, b"SRC=") || !crate::text::contains!(msg, b"DST=") {
        return;
    }
    let Some(kv_start) = kv_start(msg) else {
        return;
    };
    let msg = ev.message.clone();
    let base = crate::text::message_offset(&ev.raw, msg.as_bytes()).unwrap_or(0);
    let mut prefix = &msg[..kv_start];
    let pve = pve_header(prefix);
    if let Some(p) = &pve {
        prefix = &prefix[p.prefix_start..];
    }
    let parsed = parse_kv(&msg[kv_start..]);
    let (Some(src), Some(dst)) = (parsed.src, parsed.dst) else {
        return;
    };
    if src.1.is_empty() || dst.1.is_empty() {
        return;
    }
    if !parsed.has_if && parsed.proto.is_none() {
        return;
    }
    let mut issues = Vec::new();
    let mut put_ip =
        |ev: &mut Event, name: &str, (at, text): (usize, &str)| match text.parse::<IpAddr>() {
            Ok(ip) => {
                ev.fields.insert(name.to_string(), ip.to_string());
            }
            Err(_) => issues.push((base + kv_start + at, "an IP address")),
        };
    put_ip(ev, fields::SRC_IP, src);
    put_ip(ev, fields::DST_IP, dst);
    for (name, value) in [
        (fields::SRC_PORT, parsed.spt),
        (fields::DST_PORT, parsed.dpt),
    ] {
        if let Some((at, text)) = value {
            match text.parse::<u16>() {
                Ok(p) => {
                    ev.fields.insert(name.to_string(), p.to_string());
                }
                Err(_) => issues.push((base + kv_start + at, "a port number 0..=65535")),
            }
        }
    }
    for (at, expected) in issues {
        ev.issues
            .push(ParseIssue::new(&ev.raw, at, "bad_netfilter", expected));
    }
    let mut set = |name: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ev.fields.insert(name.to_string(), v.to_string());
        }
    };
    set(
        fields::PROTO,
        parsed.proto.map(|(_, p)| p.to_ascii_lowercase()).as_deref(),
    );
    set(fields::IN_IF, parsed.in_if);
    set(fields::OUT_IF, parsed.out_if);
    set(fields::PHYS_IN, parsed.phys_in);
    set(fields::PHYS_OUT, parsed.phys_out);
    set(fields::MAC_HEADER, parsed.mac);
    set(ICMP_TYPE, parsed.icmp_type);
    set(ICMP_CODE, parsed.icmp_code);
    let flags = parsed.flags.join(" ");
    set(fields::TCP_FLAGS, Some(&flags));
    let prefix = clean_prefix(prefix);
    set(fields::LOG_PREFIX, Some(prefix));
    set(fields::ACTION, action(prefix));
    if let Some(p) = &pve {
        set(VMID, Some(p.vmid));
        set(FW_CHAIN, Some(p.chain));
    }
    if let Some(p) = pve {
        ev.source_kind = KIND_PVE.to_string();
        ev.app = Some(KIND_PVE.to_string());
        ev.severity = p.level;
        ev.reported = Reported::new(p.time, p.stamp);
        if p.time.is_none() {
            ev.issues.push(ParseIssue::new(
                &ev.raw,
                base + p.stamp_at,
                "bad_timestamp",
                "dd/Mon/yyyy:HH:MM:SS ±hhmm",
            ));
        }
        ev.issues.retain(|i| i.kind != "not_syslog");
    }
    ev.class = EventClass::NetConnection;
}

/// Start of the key-value block: the first `IN=` / `OUT=` at a token start (or glued after
/// `)` / `]`, as OpenWRT writes), moved back over `KEY=value` tokens just before it.
fn kv_start(msg: &[u8]) -> Option<usize> {
    let mut first = None;
    for key in [&b"IN="[..], b"OUT="] {
        for at in memchr::memmem::find_iter(msg, key) {
            let ok = at == 0 || matches!(msg[at - 1], b' ' | b')' | b']' | b':');
            if ok {
                first = Some(first.map_or(at, |f: usize| f.min(at)));
                break;
            }
        }
    }
    let mut start = first?;
    // Walk back over `KEY=value` tokens (`XX=enp1s0 OUT=`).
    while start > 1 && msg[start - 1] == b' ' {
        let tok_end = start - 1;
        let tok_start = msg[..tok_end]
            .iter()
            .rposition(|b| *b == b' ')
            .map_or(0, |i| i + 1);
        let tok = &msg[tok_start..tok_end];
        let is_kv = tok
            .iter()
            .position(|b| *b == b'=')
            .is_some_and(|eq| eq > 0 && tok[..eq].iter().all(u8::is_ascii_uppercase));
        if !is_kv {
            break;
        }
        start = tok_start;
    }
    Some(start)
}

#[derive(Default)]
struct Kv<'a> {
    src: Option<(usize, &'a str)>,
    dst: Option<(usize, &'a str)>,
    spt: Option<(usize, &'a str)>,
    dpt: Option<(usize, &'a str)>,
    proto: Option<(usize, &'a str)>,
    in_if: Option<&'a str>,
    out_if: Option<&'a str>,
    phys_in: Option<&'a str>,
    phys_out: Option<&'a str>,
    mac: Option<&'a str>,
    icmp_type: Option<&'a str>,
    icmp_code: Option<&'a str>,
    has_if: bool,
    flags: Vec<&'a str>,
}

/// Read `KEY=value` tokens and bare flags; stop at a `[` (the packet quoted by an ICMP error).
fn parse_kv(s: &str) -> Kv<'_> {
    fn first<'a>(slot: &mut Option<(usize, &'a str)>, v: (usize, &'a str)) {
        if slot.is_none() {
            *slot = Some(v);
        }
    }
    let mut kv = Kv::default();
    let mut at = 0;
    for tok in s.split(' ') {
        let here = at;
        at += tok.len() + 1;
        if tok.is_empty() {
            continue;
        }
        if tok.starts_with('[') {
            break;
        }
        let Some((key, value)) = tok.split_once('=') else {
            if TCP_FLAG_NAMES.contains(&tok) && !kv.flags.contains(&tok) {
                kv.flags.push(tok);
            }
            continue;
        };
        let vat = here + key.len() + 1;
        match key {
            "SRC" => first(&mut kv.src, (vat, value)),
            "DST" => first(&mut kv.dst, (vat, value)),
            "SPT" => first(&mut kv.spt, (vat, value)),
            "DPT" => first(&mut kv.dpt, (vat, value)),
            "PROTO" => first(&mut kv.proto, (vat, value)),
            "IN" => {
                kv.has_if = true;
                kv.in_if.get_or_insert(value);
            }
            "OUT" => {
                kv.has_if = true;
                kv.out_if.get_or_insert(value);
            }
            "PHYSIN" => {
                kv.phys_in.get_or_insert(value);
            }
            "PHYSOUT" => {
                kv.phys_out.get_or_insert(value);
            }
            "MAC" => {
                kv.mac.get_or_insert(value);
            }
            "TYPE" => {
                kv.icmp_type.get_or_insert(value);
            }
            "CODE" => {
                kv.icmp_code.get_or_insert(value);
            }
            _ => {}
        }
    }
    if kv.proto.is_none_or(|(_, p)| !p.eq_ignore_ascii_case("tcp")) {
        kv.flags.clear();
    }
    kv
}

/// The prefix without the kernel's `[ 1234.5678]` uptime stamp and surrounding spaces.
fn clean_prefix(p: &str) -> &str {
    let t = p.trim();
    if let Some(rest) = t.strip_prefix('[')
        && let Some((inside, after)) = rest.split_once(']')
        && !inside.trim().is_empty()
        && inside
            .trim()
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
    {
        return after.trim();
    }
    t
}

/// What the prefix says was done with the packet.
fn action(prefix: &str) -> Option<&'static str> {
    let p = prefix.to_ascii_lowercase();
    [
        ("reject", "reject"),
        ("drop", "drop"),
        ("block", "block"),
        ("deny", "drop"),
        ("accept", "accept"),
        ("allow", "accept"),
    ]
    .into_iter()
    .find(|(word, _)| p.contains(word))
    .map(|(_, a)| a)
}

/// The head of a pve-firewall line.
struct Pve<'a> {
    vmid: &'a str,
    level: Option<u8>,
    chain: &'a str,
    stamp: &'a str,
    stamp_at: usize,
    time: Option<jiff::Timestamp>,
    /// Where the action (`policy DROP:`, `ACCEPT:`) starts in the text before the key-values.
    prefix_start: usize,
}

/// `VMID LEVEL CHAIN dd/Mon/yyyy:HH:MM:SS +hhmm ` at the start of the text before `IN=`.
fn pve_header(p: &str) -> Option<Pve<'_>> {
    let mut parts = p.splitn(6, ' ');
    let vmid = parts.next()?;
    let level = parts.next()?;
    let chain = parts.next()?;
    let date = parts.next()?;
    let zone = parts.next()?;
    if vmid.is_empty() || !vmid.bytes().all(|b| b.is_ascii_digit()) || chain.is_empty() {
        return None;
    }
    let level_num = level.parse::<u8>().ok().filter(|l| *l <= 7);
    if level_num.is_none() && level != "nolog" {
        return None;
    }
    let d = date.as_bytes();
    if d.len() != 20 || d[2] != b'/' || d[6] != b'/' || d[11] != b':' {
        return None;
    }
    let zb = zone.as_bytes();
    if zb.len() != 5 || !matches!(zb[0], b'+' | b'-') {
        return None;
    }
    let stamp_at = vmid.len() + level.len() + chain.len() + 3;
    let prefix_start = (stamp_at + date.len() + zone.len() + 2).min(p.len());
    let stamp = &p[stamp_at..stamp_at + date.len() + 1 + zone.len()];
    let time = jiff::Timestamp::strptime("%d/%b/%Y:%H:%M:%S %z", stamp).ok();
    Some(Pve {
        vmid,
        level: level_num,
        chain,
        stamp,
        stamp_at,
        time,
        prefix_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_start_variants() {
        fn at(s: &str) -> Option<&str> {
            kv_start(s.as_bytes()).map(|i| &s[i..i + 6])
        }
        assert_eq!(at("[1.2] IN=eth0 OUT= SRC=1"), Some("IN=eth"));
        assert_eq!(at("DROP(src wan)IN=eth0 OUT= SRC"), Some("IN=eth"));
        assert_eq!(at("[1] XX=enp1s0 OUT= MAC="), Some("XX=enp"));
        assert_eq!(at("x PHYSIN=a OUT=b"), Some("PHYSIN"));
        assert_eq!(at("LOGIN=a OUTPUT=b"), None);
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            clean_prefix(" [  203.842973] IPTABLES-DROP: "),
            "IPTABLES-DROP:"
        );
        assert_eq!(clean_prefix("[ 3529.289825] [UFW BLOCK] "), "[UFW BLOCK]");
        assert_eq!(clean_prefix("[UFW ALLOW]"), "[UFW ALLOW]");
        assert_eq!(action("[UFW BLOCK]"), Some("block"));
        assert_eq!(action("SFW2-INext-DROP-DEFLT"), Some("drop"));
        assert_eq!(action("PVEFW-reject:"), Some("reject"));
        assert_eq!(action("FIREWALL_OUT"), None);
    }

    #[test]
    fn pve_head() {
        let p = pve_header("101 1 tap101i0-IN 20/Jun/2022:13:13:32 +0200 PVEFW-reject: ").unwrap();
        assert_eq!((p.vmid, p.level, p.chain), ("101", Some(1), "tap101i0-IN"));
        assert_eq!(
            p.time.map(|t| t.to_string()).as_deref(),
            Some("2022-06-20T11:13:32Z")
        );
        assert_eq!(
            &"101 1 tap101i0-IN 20/Jun/2022:13:13:32 +0200 PVEFW-reject: "[p.prefix_start..],
            "PVEFW-reject: "
        );
        assert!(pve_header("0 5 GROUP-x-IN 20/Jun/2022:15:52:26 +0200 ").is_some());
        assert!(pve_header("Jun  8 14:34:33 sd kernel: ").is_none());
    }
}
