//! `net.flow` events for every reader, from the columnar flow store (issue 16) instead of the
//! search index: the index no longer holds a document per flow (the pipeline sends flows to
//! the flow store only), so a query that may match flows gets them here and merges them with
//! the index's answer.
//!
//! Exact, like [`Expr::matches`] on the decoded event: each flow row is judged leaf by leaf —
//! class, observer, source, app, host (the exporter), addresses and the time window straight
//! from the row; every other leaf (words, phrases, fields) on the event the row decodes to
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

use flowstore::{FlowRow, Part, PartError, PartMeta, Prune};
use jiff::Timestamp;
use model::envelope::RecordEnvelope;
use model::{Event, EventClass, Observer, Origin, Received};
use views::search::{DocKey, IndexQuery, Keyword, SearchIndex};

use crate::lang::{Expr, Net};
use crate::search::Fetch;

/// Words of a flow's text: its message (protocol names, `packets=`, `bytes=`, `sampling=`,
/// ICMP's `type`/`code`) and app; everything else in it is digits, addresses and punctuation.
const FLOW_WORDS: &[&str] = &[
    "icmp", "igmp", "tcp", "udp", "gre", "esp", "ah", "icmpv6", "sctp", "type", "code",
    "packets", "bytes", "sampling", "netflow",
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

    fn part(&self, p: &Part<'_>) -> Result<bool, PartError> {
        if self.nets.is_empty() {
            return Ok(true);
        }
        let exporters = p.exporters()?;
        for n in &self.nets {
            let (lo, hi) = n.range();
            let (lo, hi) = (canonical(lo), canonical(hi));
            let held = if lo == hi {
                p.has_addr(lo)?
            } else {
                p.has_addr_in(lo, hi)?
            };
            if !held && !exporters.iter().any(|e| n.contains(*e)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
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
            Expr::Ip(net) => [r.src, r.dst, r.exporter.map(|e| e.ip())]
                .into_iter()
                .flatten()
                .any(|ip| net.contains(ip)),
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
            leaf @ (Expr::Word(_) | Expr::Phrase(_) | Expr::Field { .. } | Expr::FieldNet { .. }) => {
                leaf.matches(self.event())
            }
        })
    }
}

/// One matching flow: where it stands and its source address (what `check` walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub key: DocKey,
    pub src: Option<IpAddr>,
}

/// Every flow of the index's attached flow store that `expr` matches, at ledger positions up
/// to `cap` (the index's position, so a search's ledger tail does not count a flow twice), in
/// time order (ties by seq). Empty without a store or when no flow can match.
pub fn flow_keys(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    fetch: &mut dyn Fetch,
) -> anyhow::Result<Vec<FlowKey>> {
    let Some(store) = index.flows() else {
        return Ok(Vec::new());
    };
    if !possible(expr) {
        return Ok(Vec::new());
    }
    let prune = ExprPrune::new(expr, cap);
    let mut out = Vec::new();
    let mut unsure = Vec::new();
    store.scan_rows(&prune, &mut |row| {
        if cap.is_some_and(|c| row.seq > c) {
            return;
        }
        let mut ev = RowEval::new(row);
        match (ev.eval(expr), ev.placed) {
            (Some(true), Some(t)) => out.push(FlowKey {
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
    for seq in unsure {
        let e = fetch.fetch(seq)?;
        if expr.matches(&e) {
            let src = e
                .field(model::fields::SRC_IP)
                .and_then(|s| s.parse::<IpAddr>().ok());
            out.push(FlowKey {
                key: DocKey {
                    time: e.placed(),
                    seq,
                },
                src,
            });
        }
    }
    out.sort_by_key(|k| k.key);
    Ok(out)
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
