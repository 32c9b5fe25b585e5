//! NetFlow / IPFIX records → `net.flow` events, and export datagrams → summary events.
//!
//! Both are stateless: a `netflow-record` holds one flow already normalised at ingest by
//! crate `flow` (which needed the exporter's templates) in `model::flow`'s compact encoding,
//! and names the datagram it came from; a `netflow-datagram` is the evidence itself, of which
//! only the header is read here (version, count or length, export time, sequence, source id).
//!
//! Flow fields: SRC_IP, DST_IP, SRC_PORT, DST_PORT, PROTO, TCP_FLAGS (names, as netfilter
//! prints them), PACKETS and BYTES (sampling applied), SAMPLING_RATE (when > 1), FLOW_START,
//! FLOW_END, EXPORTER, OBSERVATION_DOMAIN, FLOW_VERSION, IN_IF / OUT_IF (SNMP indexes),
//! DATAGRAM_SEQ and DATAGRAM_RECORD; ICMP type and code as netfilter's `icmp_type` /
//! `icmp_code`. The reported time is the flow's first packet.

use jiff::Timestamp;
use model::flow::{FlowRecord, proto_name};
use model::{Event, EventClass, Origin, ParseIssue, Reported, fields};

use crate::netfilter::{ICMP_CODE, ICMP_TYPE};

const TCP_FLAG_NAMES: [(u8, &str); 8] = [
    (0x80, "CWR"),
    (0x40, "ECE"),
    (0x20, "URG"),
    (0x10, "ACK"),
    (0x08, "PSH"),
    (0x04, "RST"),
    (0x02, "SYN"),
    (0x01, "FIN"),
];

fn rfc3339_ms(ms: i64) -> Option<String> {
    Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
}

fn set(ev: &mut Event, name: &str, value: impl ToString) {
    ev.fields.insert(name.to_string(), value.to_string());
}

/// A `netflow-record`: one flow.
pub fn record_into(ev: &mut Event) {
    ev.source_kind = "netflow".to_string();
    let r = match FlowRecord::decode(&ev.raw) {
        Ok(r) => r,
        Err(e) => {
            ev.message = format!("undecodable flow record: {e}");
            ev.issues.push(ParseIssue::new(
                &ev.raw,
                0,
                "bad_flow_record",
                "a flow record encoding",
            ));
            return;
        }
    };
    ev.class = EventClass::NetFlow;
    ev.app = Some("netflow".to_string());
    let proto = proto_name(r.proto);
    let icmp = r.proto == 1 || r.proto == 58;
    let ip = |a: Option<std::net::IpAddr>| a.map_or("-".to_string(), |a| a.to_string());
    let (src, dst) = (ip(r.src), ip(r.dst));
    let mut msg = if icmp {
        format!(
            "{proto} {src} -> {dst} type {} code {}",
            r.dst_port >> 8,
            r.dst_port & 0xff
        )
    } else {
        format!("{proto} {src}:{} -> {dst}:{}", r.src_port, r.dst_port)
    };
    msg.push_str(&format!(
        " packets={} bytes={}",
        r.packets_scaled(),
        r.bytes_scaled()
    ));
    if r.sampling > 1 {
        msg.push_str(&format!(" sampling=1/{}", r.sampling));
    }
    ev.message = msg;
    if let Some(a) = r.src {
        set(ev, fields::SRC_IP, a);
    }
    if let Some(a) = r.dst {
        set(ev, fields::DST_IP, a);
    }
    if icmp {
        set(ev, ICMP_TYPE, r.dst_port >> 8);
        set(ev, ICMP_CODE, r.dst_port & 0xff);
    } else if r.proto == 6 || r.proto == 17 || r.proto == 132 || r.src_port != 0 {
        set(ev, fields::SRC_PORT, r.src_port);
        set(ev, fields::DST_PORT, r.dst_port);
    }
    set(ev, fields::PROTO, &proto);
    if r.proto == 6 && r.tcp_flags != 0 {
        let names: Vec<&str> = TCP_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| r.tcp_flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        set(ev, fields::TCP_FLAGS, names.join(" "));
    }
    set(ev, fields::PACKETS, r.packets_scaled());
    set(ev, fields::BYTES, r.bytes_scaled());
    if r.sampling > 1 {
        set(ev, fields::SAMPLING_RATE, r.sampling);
    }
    if let Some(t) = r.start_ms.and_then(rfc3339_ms) {
        set(ev, fields::FLOW_START, &t);
        ev.reported = Reported::new(Timestamp::from_millisecond(r.start_ms.unwrap_or(0)).ok(), t);
    }
    if let Some(t) = r.end_ms.and_then(rfc3339_ms) {
        set(ev, fields::FLOW_END, t);
    }
    if let Some(e) = r.exporter {
        set(ev, fields::EXPORTER, e);
        ev.host = Some(e.ip().to_string());
    }
    set(ev, fields::OBSERVATION_DOMAIN, r.domain);
    set(ev, fields::FLOW_VERSION, r.version);
    if r.in_if != 0 {
        set(ev, fields::IN_IF, r.in_if);
    }
    if r.out_if != 0 {
        set(ev, fields::OUT_IF, r.out_if);
    }
    if let Some(n) = &r.nat {
        nat_fields(ev, &r, n);
    }
    set(ev, fields::DATAGRAM_SEQ, r.datagram_seq);
    set(
        ev,
        fields::DATAGRAM_RECORD,
        format!("{}.{}", r.flowset, r.record),
    );
}

/// A NAT gateway's flow (IPFIX / v9 NAT elements): a post-NAT source that differs from the
/// source is a source translation (public = post-NAT source and port, inside = the source);
/// else a post-NAT destination that differs is a destination translation (public = the
/// destination, inside = the post-NAT destination). The elements are kept as fields either
/// way (`nat_src_ip` …, `nat_event`: natEvent's number, RFC 8158).
fn nat_fields(ev: &mut Event, r: &FlowRecord, n: &model::flow::FlowNat) {
    if let Some(a) = n.src {
        set(ev, "post_nat_src_ip", a);
    }
    if let Some(a) = n.dst {
        set(ev, "post_nat_dst_ip", a);
    }
    if let Some(p) = n.src_port {
        set(ev, "post_nat_src_port", p);
    }
    if let Some(p) = n.dst_port {
        set(ev, "post_nat_dst_port", p);
    }
    if let Some(e) = n.event {
        set(ev, "nat_event_code", e);
    }
    set(ev, fields::NAT_EVENT, "flow");
    let ports = r.proto == 6 || r.proto == 17 || r.proto == 132;
    let port = |p: Option<u16>, fallback: u16| if ports { p.or(Some(fallback)) } else { None };
    let snat = n.src.is_some_and(|s| Some(s) != r.src)
        || (n.src.is_some() && n.src_port.is_some_and(|p| p != r.src_port));
    let dnat = n.dst.is_some_and(|d| Some(d) != r.dst)
        || (n.dst.is_some() && n.dst_port.is_some_and(|p| p != r.dst_port));
    let (kind, public, pport, inside, iport, peer, peer_port) = if snat {
        (
            "snat",
            n.src,
            port(n.src_port, r.src_port),
            r.src,
            port(None, r.src_port),
            n.dst.or(r.dst),
            port(n.dst_port, r.dst_port),
        )
    } else if dnat {
        (
            "dnat",
            r.dst,
            port(None, r.dst_port),
            n.dst,
            port(n.dst_port, r.dst_port),
            r.src,
            port(None, r.src_port),
        )
    } else {
        return;
    };
    let (Some(public), Some(inside)) = (public, inside) else {
        return;
    };
    set(ev, fields::NAT_KIND, kind);
    set(ev, fields::NAT_IP, public);
    set(ev, fields::NAT_INSIDE_IP, inside);
    if let Some(p) = pport {
        set(ev, fields::NAT_PORT, p);
    }
    if let Some(p) = iport {
        set(ev, fields::NAT_INSIDE_PORT, p);
    }
    if let Some(a) = peer {
        set(ev, fields::NAT_PEER_IP, a);
    }
    if let Some(p) = peer_port {
        set(ev, fields::NAT_PEER_PORT, p);
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A `netflow-datagram`: the header only (its flows are the records stored beside it).
pub fn datagram_into(ev: &mut Event) {
    ev.source_kind = "netflow-datagram".to_string();
    ev.app = Some("netflow".to_string());
    if let Origin::Peer { addr, .. } = &ev.origin {
        let addr = addr.clone();
        ev.host = addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip().to_string());
        set(ev, fields::EXPORTER, addr);
    }
    let d = &ev.raw;
    let len = d.len();
    let header = match be16(d, 0) {
        Some(5) if len >= 24 => be16(d, 2)
            .zip(be32(d, 8))
            .zip(be32(d, 16))
            .map(|((c, t), s)| {
                (
                    5u16,
                    format!("{c} records"),
                    t,
                    s,
                    u32::from(be16(d, 20).unwrap_or(0)),
                )
            }),
        Some(9) if len >= 20 => be16(d, 2)
            .zip(be32(d, 8))
            .zip(be32(d, 12))
            .zip(be32(d, 16))
            .map(|(((c, t), s), dom)| (9u16, format!("{c} records"), t, s, dom)),
        Some(10) if len >= 16 => be16(d, 2)
            .zip(be32(d, 4))
            .zip(be32(d, 8))
            .zip(be32(d, 12))
            .map(|(((l, t), s), dom)| (10u16, format!("{l} bytes of {len}"), t, s, dom)),
        _ => None,
    };
    let Some((version, count, secs, sequence, domain)) = header else {
        ev.message = format!("not a NetFlow/IPFIX export datagram ({len} bytes)");
        ev.issues.push(ParseIssue::new(
            &ev.raw,
            0,
            "not_netflow",
            "a NetFlow v5/v9 or IPFIX header",
        ));
        return;
    };
    let name = if version == 10 {
        "IPFIX".to_string()
    } else {
        format!("NetFlow v{version}")
    };
    ev.message = format!(
        "{name} export datagram: {count}, sequence {sequence}, domain {domain}, {len} bytes"
    );
    if let Ok(t) = Timestamp::from_second(i64::from(secs)) {
        ev.reported = Reported::new(Some(t), t.to_string());
    }
    set(ev, fields::FLOW_VERSION, version);
    set(ev, fields::OBSERVATION_DOMAIN, domain);
}

/// A flow's searchable addresses are its endpoints only: the exporter (a router) is in the
/// `exporter` field, and an IP search or a VM's timeline must not list every flow a router
/// exported.
pub fn keep_flow_ips(ev: &mut Event) {
    let src = ev.field(fields::SRC_IP).and_then(|s| s.parse().ok());
    let dst = ev.field(fields::DST_IP).and_then(|s| s.parse().ok());
    ev.ips.retain(|ip| Some(*ip) == src || Some(*ip) == dst);
}
