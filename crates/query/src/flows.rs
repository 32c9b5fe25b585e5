//! `net.flow` events for every reader, from the columnar flow store (issue 16) instead of the
//! search index: the index no longer holds a document per flow (the pipeline sends flows to
//! the flow store only), so a query that may match flows gets them here and merges them with
//! the index's answer.
//!
//! Exact, like [`Expr::matches`] on the decoded event: each flow row is judged leaf by leaf —
//! class, observer, source, app, host (the exporter), addresses, the time window, protocol
//! words and the port/protocol/address fields straight from the row; every other leaf (other
//! words, phrases, fields) on the event the row decodes to
//! (`decode` of the row's own `netflow-record` bytes: the same message, host and fields as
//! the ledger's record, since they depend on nothing else of the envelope). Only a flow's
//! placed time may depend on its envelope (a flow without a first packet, or one stored under
//! an observer a VM's user may forge, stands at its receive time): such a row's event is read
//! from the ledger through [`Fetch`].
//!
//! A query that cannot match a flow at all (another class, a word no flow's text holds, a
//! field no flow has) reads no partition. Partitions are skipped by the window when their
//! rows stand at their first packet (`PartMeta::placed_is_start`), and by the address index
//! and exporters when the query needs an address.
//!
//! A store built before flows left the index still holds flow documents: the index's part of
//! every query then excludes class `net.flow` ([`index_part`]), so each flow is counted once,
//! from the flow store, without a `reindex`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use flowstore::{FlowRow, Part, PartError, PartMeta, PartSummary, Prune};
use jiff::Timestamp;
use model::envelope::RecordEnvelope;
use model::flow::proto_name;
use model::{Event, EventClass, Observer, Origin, Received};
use views::search::{DocKey, IndexQuery, Keyword, SearchIndex};

use crate::lang::{Expr, Net};
use crate::search::Fetch;

/// Words of a flow's text: its message (protocol names, `packets=`, `bytes=`, `sampling=`,
/// ICMP's `type`/`code`) and app; everything else in it is digits, addresses and punctuation.
const FLOW_WORDS: &[&str] = &[
    "icmp", "igmp", "tcp", "udp", "gre", "esp", "ah", "icmpv6", "sctp", "type", "code", "packets",
    "bytes", "sampling", "netflow",
];

/// The fields `decode` may give a flow (crate decode, `netflow.rs`).
const FLOW_FIELDS: &[&str] = &[
    model::fields::SRC_IP,
    model::fields::DST_IP,
    model::fields::SRC_PORT,
    model::fields::DST_PORT,
    model::fields::PROTO,
    model::fields::TCP_FLAGS,
    model::fields::PACKETS,
    model::fields::BYTES,
    model::fields::SAMPLING_RATE,
    model::fields::FLOW_START,
    model::fields::FLOW_END,
    model::fields::EXPORTER,
    model::fields::OBSERVATION_DOMAIN,
    model::fields::FLOW_VERSION,
    model::fields::IN_IF,
    model::fields::OUT_IF,
    model::fields::ICMP_TYPE,
    model::fields::ICMP_CODE,
    model::fields::DATAGRAM_SEQ,
    model::fields::DATAGRAM_RECORD,
    model::fields::NAT_EVENT,
    model::fields::NAT_KIND,
    model::fields::NAT_IP,
    model::fields::NAT_INSIDE_IP,
    model::fields::NAT_PORT,
    model::fields::NAT_INSIDE_PORT,
    model::fields::NAT_PEER_IP,
    model::fields::NAT_PEER_PORT,
    "post_nat_src_ip",
    "post_nat_dst_ip",
    "post_nat_src_port",
    "post_nat_dst_port",
    "nat_event_code",
];

/// Whether some text of a flow may hold `s` (a word or phrase, compared lower-cased): every
/// run of letters in it must be hexadecimal (an IPv6 address) or part of a word a flow's
/// text has. A superset: rows are then judged on their events.
fn text_possible(s: &str) -> bool {
    let s = s.to_lowercase();
    if !s.is_ascii() {
        return false;
    }
    s.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|run| !run.is_empty())
        .all(|run| {
            run.bytes().all(|b| (b'a'..=b'f').contains(&b))
                || FLOW_WORDS.iter().any(|w| w.contains(run))
        })
}

/// Whether `expr` may match some `net.flow` event (false: the flow store is not read).
pub fn possible(expr: &Expr) -> bool {
    match expr {
        Expr::All | Expr::Ip(_) | Expr::Time { .. } | Expr::Not(_) => true,
        Expr::Word(s) | Expr::Phrase(s) => text_possible(s),
        Expr::Keyword(k, v) => {
            let v = v.to_lowercase();
            match k {
                Keyword::Class => v == EventClass::NetFlow.as_str(),
                Keyword::App | Keyword::Source => v == "netflow",
                Keyword::Host => v.parse::<IpAddr>().is_ok(),
                Keyword::Observer => true,
            }
        }
        Expr::Field { name, .. } | Expr::FieldNet { name, .. } => {
            let n = name.to_lowercase();
            FLOW_FIELDS.contains(&n.as_str())
        }
        Expr::And(xs) => xs.iter().all(possible),
        Expr::Or(xs) => xs.iter().any(possible),
    }
}

/// What a scan of the store may skip: the window (on partitions whose rows stand at their
/// first packet), the ledger range past `cap`, and partitions without any address of a
/// required network (source, destination or exporter).
struct ExprPrune {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    /// Each a network some address of a matching flow must lie in (conjuncts of the query).
    nets: Vec<Net>,
    cap: Option<u64>,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl ExprPrune {
    fn new(expr: &Expr, cap: Option<u64>) -> ExprPrune {
        let mut p = ExprPrune {
            from_ms: None,
            to_ms: None,
            nets: Vec::new(),
            cap,
        };
        p.collect(expr);
        p
    }

    fn collect(&mut self, expr: &Expr) {
        match expr {
            Expr::And(xs) => xs.iter().for_each(|x| self.collect(x)),
            Expr::Ip(net) => self.nets.push(*net),
            Expr::Time { from, to } => {
                // Placed times are ns; a flow's first packet is whole ms: a flow at ms m is
                // inside [from, to) iff m*1e6 >= from and m*1e6 < to.
                if let Some(f) = from {
                    let f = ms(*f) - 1;
                    self.from_ms = Some(self.from_ms.map_or(f, |x| x.max(f)));
                }
                if let Some(t) = to {
                    let t = ms(*t) + 1;
                    self.to_ms = Some(self.to_ms.map_or(t, |x| x.min(t)));
                }
            }
            _ => {}
        }
    }
}

impl Prune for ExprPrune {
    fn meta(&self, m: &PartMeta) -> bool {
        if self.cap.is_some_and(|c| m.first_seq > c) {
            return false;
        }
        if !m.placed_is_start {
            return true;
        }
        self.from_ms.is_none_or(|f| m.max_ms >= f) && self.to_ms.is_none_or(|t| m.min_ms <= t)
    }

    fn part(&self, _p: &Part<'_>) -> Result<bool, PartError> {
        Ok(true)
    }

    fn wants_summary(&self) -> bool {
        !self.nets.is_empty()
    }

    fn summary(&self, s: &PartSummary) -> bool {
        self.nets.iter().all(|n| may_hold(*n, s))
    }
}

/// Whether a partition with summary `s` may hold an address inside `n` (source, destination
/// or exporter). IPv4 and IPv4-mapped IPv6 are one address to a query ([`Net::contains`]), so
/// both families are looked up, in the mapped space.
fn may_hold(n: Net, s: &PartSummary) -> bool {
    const MAPPED: u128 = 0xffff << 32;
    let wide = |ip: IpAddr| match ip {
        IpAddr::V4(a) => MAPPED | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let (lo, hi) = n.range();
    let (l, h) = (wide(lo), wide(hi));
    let v6 = s.has_addr_in(IpAddr::V6(l.into()), IpAddr::V6(h.into()));
    let (a, b) = (l.max(MAPPED), h.min(MAPPED | 0xffff_ffff));
    let v4 = a <= b && s.has_addr_in(IpAddr::V4((a as u32).into()), IpAddr::V4((b as u32).into()));
    v6 || v4 || s.exporters.iter().any(|e| n.contains(*e))
}

/// One flow row being judged: its event decoded when a leaf first needs it.
struct RowEval<'a> {
    row: &'a FlowRow,
    event: Option<Event>,
    /// Where the row is placed, when the row alone says (see the module doc).
    placed: Option<Timestamp>,
}

impl RowEval<'_> {
    fn new(row: &FlowRow) -> RowEval<'_> {
        let forgeable = row
            .observer
            .parse::<Observer>()
            .map_or(true, |o| o.forgeable_by_vm_user());
        let placed = if forgeable {
            None
        } else {
            row.rec
                .start_ms
                .and_then(|m| Timestamp::from_millisecond(m).ok())
        };
        RowEval {
            row,
            event: None,
            placed,
        }
    }

    /// The event this row's record decodes to (its envelope's time and origin aside, which
    /// no leaf judged on it reads).
    fn event(&mut self) -> &Event {
        let row = self.row;
        self.event.get_or_insert_with(|| {
            decode::decode(&RecordEnvelope {
                received: Received::from_stored(0),
                observer: row.observer.parse().unwrap_or(Observer::Network),
                format: model::envelope::Format::NetflowRecord,
                hints: model::envelope::DecodeHints::default(),
                origin: Origin::File {
                    path: String::new(),
                    line: 0,
                },
                raw: row.rec.encode(),
            })
        })
    }

    /// `Some(matches)`, or `None` when only the ledger's event can say (the placed time).
    fn eval(&mut self, expr: &Expr) -> Option<bool> {
        let r = &self.row.rec;
        Some(match expr {
            Expr::All => true,
            Expr::Keyword(k, v) => {
                let v = v.to_lowercase();
                match k {
                    Keyword::Class => v == EventClass::NetFlow.as_str(),
                    Keyword::App | Keyword::Source => v == "netflow",
                    Keyword::Observer => self.row.observer == v,
                    Keyword::Host => r
                        .exporter
                        .is_some_and(|e| e.ip().to_string().to_lowercase() == v),
                }
            }
            // The event's `ips` are the addresses `decode` finds in its text and fields: for
            // IPv4 and plain IPv6 ends that is each end; an IPv4-mapped or -compatible end is
            // judged on the event itself.
            Expr::Ip(net) => {
                let plain = |a: Option<IpAddr>| match a {
                    Some(IpAddr::V6(v6)) => v6.to_ipv4().is_none(),
                    _ => true,
                };
                if !plain(r.src) || !plain(r.dst) {
                    return Some(expr.matches(self.event()));
                }
                [r.src, r.dst, r.exporter.map(|e| e.ip())]
                    .into_iter()
                    .flatten()
                    .any(|ip| net.contains(ip))
            }
            Expr::Time { from, to } => {
                let t = self.placed?;
                from.is_none_or(|f| t >= f) && to.is_none_or(|x| t < x)
            }
            Expr::And(xs) => {
                let mut unknown = false;
                for x in xs {
                    match self.eval(x) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown {
                    return None;
                }
                true
            }
            Expr::Or(xs) => {
                let mut unknown = false;
                for x in xs {
                    match self.eval(x) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    return None;
                }
                false
            }
            Expr::Not(x) => !self.eval(x)?,
            // The commonest leaves straight from the row (the event costs microseconds a
            // flow): a protocol name or a word every flow's text holds, and the port, protocol
            // and address fields, exactly as `decode` sets them (unit tests hold both to the
            // event).
            Expr::Word(w) if crate::lang::is_clean_token(w) && flow_word(w).is_some() => {
                match flow_word(w) {
                    Some(FlowWord::Always) => true,
                    _ => w.eq_ignore_ascii_case(&proto_name(r.proto)),
                }
            }
            Expr::Field { name, value } if row_field(r, name).is_some() => row_field(r, name)
                .is_some_and(|f| f.is_some_and(|f| f.to_lowercase() == value.to_lowercase())),
            leaf @ (Expr::Word(_)
            | Expr::Phrase(_)
            | Expr::Field { .. }
            | Expr::FieldNet { .. }) => leaf.matches(self.event()),
        })
    }
}

enum FlowWord {
    /// In every flow's text (`packets=`, `bytes=`, the app `netflow`).
    Always,
    /// A protocol name: in the text of the flows of that protocol only.
    Proto,
}

/// What a whole word is to a flow's text, when that is known without its event.
fn flow_word(w: &str) -> Option<FlowWord> {
    match w.to_ascii_lowercase().as_str() {
        "packets" | "bytes" | "netflow" => Some(FlowWord::Always),
        "tcp" | "udp" | "icmp" | "igmp" | "gre" | "esp" | "ah" | "sctp" => Some(FlowWord::Proto),
        _ => None,
    }
}

/// `Some(value)` of field `name` on the flow (`Some(None)`: the flow has no such field), for
/// the fields read from the row; `None` for the others (judged on the event).
fn row_field(r: &model::flow::FlowRecord, name: &str) -> Option<Option<String>> {
    let icmp = r.proto == 1 || r.proto == 58;
    let ports = !icmp && (r.proto == 6 || r.proto == 17 || r.proto == 132 || r.src_port != 0);
    Some(match name.to_lowercase().as_str() {
        "src_port" => ports.then(|| r.src_port.to_string()),
        "dst_port" => ports.then(|| r.dst_port.to_string()),
        "proto" => Some(proto_name(r.proto)),
        "src_ip" => r.src.map(|a| a.to_string()),
        "dst_ip" => r.dst.map(|a| a.to_string()),
        _ => return None,
    })
}

/// One matching flow: where it stands and its source address (what `check` walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub key: DocKey,
    pub src: Option<IpAddr>,
}

/// Every flow of the index's attached flow store that `expr` matches, at ledger positions up
/// to `cap` (the index's position, so a search's ledger tail does not count a flow twice), to
/// `visit`, in no particular order. Nothing without a store or when no flow can match.
pub fn scan(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    fetch: &mut dyn Fetch,
    visit: &mut dyn FnMut(FlowKey),
) -> anyhow::Result<()> {
    // NAT records are not documents either (issue 12): every reader of flows gets them here.
    crate::natrows::scan(index, expr, index.nat_cap(), visit)?;
    let Some(store) = index.flows() else {
        return Ok(());
    };
    if !possible(expr) {
        return Ok(());
    }
    let prune = ExprPrune::new(expr, cap);
    let mut unsure = Vec::new();
    store.scan_rows(&prune, &mut |row| {
        if cap.is_some_and(|c| row.seq > c) {
            return;
        }
        let mut ev = RowEval::new(row);
        match (ev.eval(expr), ev.placed) {
            (Some(true), Some(t)) => visit(FlowKey {
                key: DocKey {
                    time: t,
                    seq: row.seq,
                },
                src: row.rec.src,
            }),
            (Some(false), _) => {}
            _ => unsure.push(row.seq),
        }
    })?;
    // Rows whose placed time only their envelope knows: judged on the ledger's event.
    for seq in unsure {
        let e = fetch.fetch(seq)?;
        if expr.matches(&e) {
            let src = e
                .field(model::fields::SRC_IP)
                .and_then(|s| s.parse::<IpAddr>().ok());
            visit(FlowKey {
                key: DocKey {
                    time: e.placed(),
                    seq,
                },
                src,
            });
        }
    }
    Ok(())
}

/// How many flows `expr` matches ([`scan`]) and the first `limit` of them in time order (ties
/// by seq): a day of millions of flows is counted without holding their keys.
pub fn first(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    fetch: &mut dyn Fetch,
    limit: usize,
) -> anyhow::Result<(u64, Vec<FlowKey>)> {
    let mut total = 0u64;
    // The `limit` earliest so far; the heap's top is the latest of them.
    let mut heap: std::collections::BinaryHeap<(DocKey, Option<IpAddr>)> =
        std::collections::BinaryHeap::new();
    scan(index, expr, cap, fetch, &mut |k| {
        total += 1;
        if limit == 0 {
            return;
        }
        if heap.len() < limit {
            heap.push((k.key, k.src));
        } else if heap.peek().is_some_and(|top| k.key < top.0) {
            heap.pop();
            heap.push((k.key, k.src));
        }
    })?;
    let keys = heap
        .into_sorted_vec()
        .into_iter()
        .map(|(key, src)| FlowKey { key, src })
        .collect();
    Ok((total, keys))
}

/// The index's part of a query: `iq` as is, or without class `net.flow` when the index was
/// built before flows left it and a flow store answers them (each flow counted once).
pub fn index_part(index: &SearchIndex, iq: IndexQuery) -> anyhow::Result<IndexQuery> {
    if index.flows().is_none() {
        return Ok(iq);
    }
    let flow_class = IndexQuery::Keyword(Keyword::Class, EventClass::NetFlow.as_str().into());
    if !index.may_match(&flow_class)? {
        return Ok(iq);
    }
    Ok(IndexQuery::And(vec![
        iq,
        IndexQuery::Not(Box::new(flow_class)),
    ]))
}

/// Merges the index's keys (in time order) with flow keys (in time order): the first `limit`
/// of both.
pub fn merge_first(index_keys: Vec<DocKey>, flows: &[FlowKey], limit: usize) -> Vec<DocKey> {
    let mut all: BTreeSet<DocKey> = index_keys.into_iter().collect();
    all.extend(flows.iter().take(limit).map(|f| f.key));
    all.into_iter().take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::flow::{FlowNat, FlowRecord};

    fn rec(i: u64) -> FlowRecord {
        let v6 = i % 5 == 3;
        FlowRecord {
            version: [5, 9, 10][(i % 3) as usize],
            exporter: (!i.is_multiple_of(4))
                .then(|| format!("192.0.2.{}:2055", i % 3).parse().unwrap()),
            domain: 7,
            datagram_seq: 40 + i,
            flowset: 1,
            record: (i % 7) as u16,
            template: 256,
            src: Some(if v6 {
                "2001:db8::7".parse().unwrap()
            } else {
                format!("10.0.0.{}", i % 9).parse().unwrap()
            }),
            dst: (i % 11 != 5).then(|| {
                if i % 6 == 1 {
                    "::ffff:198.51.100.7".parse().unwrap()
                } else {
                    format!("198.51.100.{}", i % 13).parse().unwrap()
                }
            }),
            src_port: 40000 + (i % 3) as u16,
            dst_port: [22, 443, 0x0800, 53][(i % 4) as usize],
            proto: [6, 17, 1, 6, 58][(i % 5) as usize],
            tcp_flags: 0x1b,
            tos: 0,
            packets: 1 + i % 4,
            bytes: 60 * (1 + i % 50),
            sampling: if i.is_multiple_of(8) { 10 } else { 1 },
            start_ms: (i % 10 != 9).then_some(1_791_970_800_000 + i as i64 * 61_000),
            end_ms: i
                .is_multiple_of(2)
                .then_some(1_791_970_800_000 + i as i64 * 61_000 + 500),
            export_ms: 1_791_970_900_000,
            in_if: (i % 3) as u32,
            out_if: 2,
            nat: (i % 17 == 2).then(|| FlowNat {
                src: Some("203.0.113.5".parse().unwrap()),
                dst: None,
                src_port: Some(61000),
                dst_port: None,
                event: Some(1),
            }),
        }
    }

    /// The event the ledger's record decodes to, with an envelope of its own.
    fn ledger_event(r: &FlowRecord, observer: Observer, i: u64) -> Event {
        decode::decode(&RecordEnvelope {
            received: Received::from_stored(1_791_980_000_000_000_000 + i128::from(i)),
            observer,
            format: model::envelope::Format::NetflowRecord,
            hints: model::envelope::DecodeHints::default(),
            origin: if i.is_multiple_of(2) {
                Origin::Peer {
                    addr: "192.0.2.1:2055".into(),
                    listener: "netflow".into(),
                }
            } else {
                Origin::Peer {
                    addr: "192.0.2.1:2055".into(),
                    listener: "pcap:/tmp/x.pcap#1".into(),
                }
            },
            raw: r.encode(),
        })
    }

    /// Judging a row leaf by leaf agrees with `Expr::matches` on the ledger's event, and a
    /// query `possible` rules out matches no flow.
    #[test]
    fn rows_are_judged_as_their_events() {
        let texts = [
            "*",
            "class:net.flow",
            "class:auth.login",
            "observer:network",
            "observer:vm",
            "app:netflow",
            "source:netflow",
            "host:192.0.2.1",
            "198.51.100.7",
            "ip:198.51.100.0/28",
            "::ffff:198.51.100.7",
            "ip:::/0",
            "ip:::ffff:0:0/96",
            "10.0.0.3",
            "2001:db8::/32",
            "192.0.2.2",
            "tcp",
            "udp OR icmp",
            "icmpv6",
            "TCP",
            "gre",
            "sctp",
            "packets",
            "Bytes",
            "esp",
            "type",
            "\"packets=1 \"",
            "\"bytes=6\"",
            "sampling",
            "netflow",
            "failed password",
            "evil.example.org",
            "db8",
            "dst_port:443",
            "src_port:40001",
            "proto:udp",
            "proto:UDP",
            "proto:icmpv6",
            "src_port:0",
            "dst_port:2048",
            "src_ip:10.0.0.3",
            "dst_ip:::ffff:198.51.100.7",
            "dst_ip:198.51.100.7",
            "tcp_flags:\"ACK PSH SYN FIN\"",
            "icmp_type:8",
            "exporter:192.0.2.1:2055",
            "nat_kind:snat",
            "nat_ip:203.0.113.5",
            "src_ip:10.0.0.0/29",
            "dst_ip:198.51.100.7",
            "user:alice",
            "flow_version:9",
            "-tcp 10.0.0.1",
            "NOT (observer:network OR 198.51.100.7)",
        ];
        let times = [
            Expr::Time {
                from: Some("2026-10-14T09:45:00Z".parse().unwrap()),
                to: Some("2026-10-14T10:00:00Z".parse().unwrap()),
            },
            Expr::Time {
                from: None,
                to: Some("2026-10-14T09:50:00.5Z".parse().unwrap()),
            },
        ];
        let mut exprs: Vec<Expr> = texts
            .iter()
            .map(|t| crate::lang::parse(t).unwrap())
            .collect();
        for t in &times {
            exprs.push(t.clone());
            exprs.push(Expr::And(vec![t.clone(), exprs[8].clone()]));
            exprs.push(Expr::Or(vec![t.clone(), exprs[16].clone()]));
            exprs.push(Expr::Not(Box::new(t.clone())));
        }
        let mut matched = 0;
        for i in 0..120u64 {
            let r = rec(i);
            let observer = if i % 7 == 6 {
                Observer::Vm
            } else {
                Observer::Network
            };
            let e = ledger_event(&r, observer, i);
            assert_eq!(e.class, EventClass::NetFlow);
            let row = FlowRow {
                seq: 100 + i,
                observer: observer.as_str().to_string(),
                rec: r,
            };
            for x in &exprs {
                let want = x.matches(&e);
                matched += usize::from(want);
                if want {
                    assert!(possible(x), "{x} matches {e:?} but is judged impossible");
                }
                let mut ev = RowEval::new(&row);
                if let Some(p) = ev.placed {
                    assert_eq!(p, e.placed(), "{e:?}");
                }
                if let Some(got) = ev.eval(x) {
                    assert_eq!(got, want, "{x} on {e:?}");
                }
            }
        }
        assert!(matched > 1000, "{matched}");
    }

    #[test]
    fn a_partition_summary_admits_every_address_a_query_may_match() {
        let s = PartSummary {
            addr4: vec![0x0a00_0001, 0xc633_6407],
            // Sorted, as the writer leaves them.
            addr6: vec![
                "::ffff:203.0.113.9"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8::7"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ],
            exporters: vec!["192.0.2.1".parse().unwrap()],
        };
        let yes = [
            "10.0.0.1",
            "10.0.0.0/8",
            "198.51.100.7",
            "::ffff:198.51.100.7",
            "::ffff:0:0/96",
            "::/0",
            "2001:db8::/32",
            "203.0.113.9",
            "203.0.113.0/24",
            "192.0.2.1",
        ];
        let no = [
            "10.0.0.2",
            "198.51.100.0/30",
            "2001:db9::/32",
            "192.0.2.2",
            "0.0.0.0/5",
        ];
        for (list, want) in [(&yes[..], true), (&no[..], false)] {
            for t in list {
                let n = Net::parse(t).unwrap();
                assert_eq!(may_hold(n, &s), want, "{t}");
            }
        }
    }
}
