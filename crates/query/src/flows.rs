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

use flowstore::{Cols, FlowRow, Part, PartError, PartMeta, PartSummary, Prune, RowSet};
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
            Expr::And(xs) => return kleene(xs, false, |x| self.eval(x)),
            Expr::Or(xs) => return kleene(xs, true, |x| self.eval(x)),
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
    walk(index, expr, cap, fetch, Some(visit), true, None).map(|_| ())
}

/// [`scan`], or with `visit` `None` a count only: then a partition whose every row matches
/// (`class:net.flow`, `*`, a window around it) is counted from the manifest unopened, and
/// rows the address index and time column decide are counted without being decoded.
/// Returns the flows counted without a visit. With `want_src` false, keys of rows the index
/// decides carry no source address (`first`'s callers order and fetch, never walk sources).
/// `later`, when it gives a time, says the caller wants no key placed after it (it holds
/// enough earlier ones): the matches of a partition whose rows all stand later are counted
/// without building their keys.
#[allow(clippy::too_many_arguments)] // one walk, each a way its callers use it
fn walk(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    fetch: &mut dyn Fetch,
    mut visit: Option<&mut dyn FnMut(FlowKey)>,
    want_src: bool,
    later: Option<&dyn Fn() -> Option<Timestamp>>,
) -> anyhow::Result<u64> {
    // NAT records are not documents either (issue 12): every reader of flows gets them here,
    // and a count counts them.
    let mut nat = 0u64;
    match visit.as_mut() {
        Some(v) => crate::natrows::scan(index, expr, index.nat_cap(), &mut **v)?,
        None => crate::natrows::scan(index, expr, index.nat_cap(), &mut |_| nat += 1)?,
    }
    let Some(store) = index.flows() else {
        return Ok(nat);
    };
    if !possible(expr) {
        return Ok(nat);
    }
    let prune = ExprPrune::new(expr, cap);
    let mut counted = nat;
    let mut unsure = Vec::new();
    for meta in store.partitions() {
        if !prune.meta(meta) {
            continue;
        }
        let whole = cap.is_none_or(|c| meta.last_seq <= c);
        match const_eval(expr, meta) {
            Some(false) => continue,
            Some(true) if visit.is_none() && whole => {
                counted += meta.rows;
                continue;
            }
            _ => {}
        }
        if prune.wants_summary() && !prune.summary(&*store.summary(meta)?) {
            continue;
        }
        let file = store.part_file(meta)?;
        let perr = |e| store.part_error(meta, e);
        let part = flowstore::Part::open_file(&file).map_err(perr)?;
        let cols = Cols::new(&part);
        if let Some(set) = exact_rows(expr, meta, &cols).map_err(perr)? {
            let all_later = meta.placed_is_start
                && later.and_then(|f| f()).is_some_and(|t| {
                    Timestamp::from_millisecond(meta.min_ms).is_ok_and(|first| first > t)
                });
            let visit = match visit.as_mut() {
                Some(v) if !all_later => Some(v),
                _ => None,
            };
            let Some(visit) = visit else {
                if whole {
                    counted += set.len();
                } else {
                    let seqs = cols.seqs().map_err(perr)?;
                    counted += set
                        .iter()
                        .filter(|&i| seqs.get(i).is_some_and(|&q| cap.is_none_or(|c| q <= c)))
                        .count() as u64;
                }
                continue;
            };
            let seqs = cols.seqs().map_err(perr)?;
            // A row's key: its ledger seq, or a derived flow's position; `cap` is a ledger
            // position, compared with the seq (a derived flow's emitting datagram).
            let positions = cols.positions().map_err(perr)?;
            for i in set.iter() {
                let (Some(&seq), Some(&pos)) = (seqs.get(i), positions.get(i)) else {
                    continue;
                };
                if cap.is_some_and(|c| seq > c) {
                    continue;
                }
                let placed = if meta.placed_is_start {
                    cols.start_ms(i).map_err(perr)?
                } else {
                    let forgeable = cols
                        .observer(i)
                        .map_err(perr)?
                        .parse::<Observer>()
                        .map_or(true, |o| o.forgeable_by_vm_user());
                    if forgeable {
                        None
                    } else {
                        cols.start_ms(i).map_err(perr)?
                    }
                }
                .and_then(|m| Timestamp::from_millisecond(m).ok());
                match placed {
                    Some(time) => visit(FlowKey {
                        key: DocKey { time, seq: pos },
                        src: if want_src {
                            cols.src(i).map_err(perr)?
                        } else {
                            None
                        },
                    }),
                    None => unsure.push(pos),
                }
            }
            continue;
        }
        // Rows the index cannot decide: decoded (only those a conjunct's address or window
        // admits) and judged one by one.
        let cand = candidates(expr, meta, &cols).map_err(perr)?;
        if cand.as_ref().is_some_and(RowSet::is_empty) {
            continue;
        }
        for row in cols.decode(cand.as_ref()).map_err(perr)? {
            if cap.is_some_and(|c| row.seq > c) {
                continue;
            }
            let pos = row.position().ok_or_else(|| {
                perr(flowstore::PartError::Column(
                    flowstore::C_SUB,
                    "a derived row no flow position can hold".into(),
                ))
            })?;
            let mut ev = RowEval::new(&row);
            match (ev.eval(expr), ev.placed) {
                (Some(true), Some(t)) => match visit.as_mut() {
                    Some(v) => v(FlowKey {
                        key: DocKey { time: t, seq: pos },
                        src: row.rec.src,
                    }),
                    None => counted += 1,
                },
                (Some(false), _) => {}
                _ => unsure.push(pos),
            }
        }
    }
    // Rows whose placed time only their envelope knows: judged on the ledger's event.
    for seq in unsure {
        let e = fetch.fetch(seq)?;
        if expr.matches(&e) {
            let src = e
                .field(model::fields::SRC_IP)
                .and_then(|s| s.parse::<IpAddr>().ok());
            match visit.as_mut() {
                Some(v) => v(FlowKey {
                    key: DocKey {
                        time: e.placed(),
                        seq,
                    },
                    src,
                }),
                None => counted += 1,
            }
        }
    }
    Ok(counted)
}

/// Three-valued AND (`decisive` false) or OR (`decisive` true) of `xs` under `eval`: the first
/// part that is `decisive` decides; else unknown (`None`) if any part is; else `!decisive`.
fn kleene(
    xs: &[Expr],
    decisive: bool,
    mut eval: impl FnMut(&Expr) -> Option<bool>,
) -> Option<bool> {
    let mut unknown = false;
    for x in xs {
        match eval(x) {
            Some(b) if b == decisive => return Some(decisive),
            None => unknown = true,
            Some(_) => {}
        }
    }
    (!unknown).then_some(!decisive)
}

/// What `expr` is on every row of partition `m`, when its manifest entry alone says: the
/// class, app and source leaves, words every flow's text holds, leaves no flow can match, and
/// a window around or apart from a partition whose rows stand at their first packet.
fn const_eval(expr: &Expr, m: &PartMeta) -> Option<bool> {
    match expr {
        Expr::All => Some(true),
        Expr::And(xs) => kleene(xs, false, |x| const_eval(x, m)),
        Expr::Or(xs) => kleene(xs, true, |x| const_eval(x, m)),
        Expr::Not(x) => const_eval(x, m).map(|b| !b),
        leaf if !possible(leaf) => Some(false),
        Expr::Keyword(Keyword::Class | Keyword::App | Keyword::Source, _) => Some(true),
        Expr::Word(w)
            if crate::lang::is_clean_token(w) && matches!(flow_word(w), Some(FlowWord::Always)) =>
        {
            Some(true)
        }
        Expr::Time { from, to } if m.placed_is_start => {
            let lo = Timestamp::from_millisecond(m.min_ms).ok()?;
            let hi = Timestamp::from_millisecond(m.max_ms).ok()?;
            let inside = |t: Timestamp| from.is_none_or(|f| t >= f) && to.is_none_or(|x| t < x);
            if inside(lo) && inside(hi) {
                Some(true)
            } else if from.is_some_and(|f| hi < f) || to.is_some_and(|x| lo >= x) {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The rows of partition `m` that `expr` matches, when the manifest, the address index and
/// the time column decide every row (`None`: some leaf needs the row or its event).
fn exact_rows(expr: &Expr, m: &PartMeta, cols: &Cols<'_, '_>) -> Result<Option<RowSet>, PartError> {
    let n = cols.rows();
    if let Some(b) = const_eval(expr, m) {
        return Ok(Some(if b { RowSet::all(n) } else { RowSet::none(n) }));
    }
    Ok(match expr {
        Expr::And(xs) | Expr::Or(xs) => {
            let and = matches!(expr, Expr::And(_));
            let mut acc = if and { RowSet::all(n) } else { RowSet::none(n) };
            for x in xs {
                let Some(s) = exact_rows(x, m, cols)? else {
                    return Ok(None);
                };
                if and {
                    acc.and(&s);
                } else {
                    acc.or(&s);
                }
            }
            Some(acc)
        }
        Expr::Not(x) => exact_rows(x, m, cols)?.map(|mut s| {
            s.not();
            s
        }),
        Expr::Ip(net) => ip_rows(*net, cols)?,
        // Protocol words and the port and protocol fields, from their columns exactly as
        // `RowEval` judges them on the row.
        Expr::Word(w) if crate::lang::is_clean_token(w) && flow_word(w).is_some() => {
            let protos = cols.protos()?;
            let hit: Vec<bool> = (0..=255u8)
                .map(|p| w.eq_ignore_ascii_case(&proto_name(p)))
                .collect();
            let mut s = RowSet::none(n);
            for (i, &p) in protos.iter().enumerate() {
                if hit[usize::from(p)] {
                    s.insert(i);
                }
            }
            Some(s)
        }
        Expr::Field { name, value }
            if matches!(
                name.to_lowercase().as_str(),
                "proto" | "src_port" | "dst_port"
            ) =>
        {
            let name = name.to_lowercase();
            let value = value.to_lowercase();
            let protos = cols.protos()?;
            let sports = cols.src_ports()?;
            let mut s = RowSet::none(n);
            if name == "proto" {
                let hit: Vec<bool> = (0..=255u8)
                    .map(|p| proto_name(p).to_lowercase() == value)
                    .collect();
                for (i, &p) in protos.iter().enumerate() {
                    if hit[usize::from(p)] {
                        s.insert(i);
                    }
                }
                return Ok(Some(s));
            }
            // The port's decimal text is the value, or no row has it.
            let Some(want) = value.parse::<u16>().ok().filter(|p| p.to_string() == value) else {
                return Ok(Some(s));
            };
            let ports = if name == "src_port" {
                sports
            } else {
                cols.dst_ports()?
            };
            for (i, (&p, &sp)) in protos.iter().zip(sports).enumerate() {
                let icmp = p == 1 || p == 58;
                let has = !icmp && (p == 6 || p == 17 || p == 132 || sp as u16 != 0);
                if has && ports.get(i).is_some_and(|&x| x as u16 == want) {
                    s.insert(i);
                }
            }
            Some(s)
        }
        Expr::Time { from, to } if m.placed_is_start => {
            let mut s = RowSet::none(n);
            for i in 0..n {
                let Some(t) = cols
                    .start_ms(i)?
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                else {
                    return Ok(None);
                };
                if from.is_none_or(|f| t >= f) && to.is_none_or(|x| t < x) {
                    s.insert(i);
                }
            }
            Some(s)
        }
        _ => None,
    })
}

/// Rows of the partition that may match `expr` (a superset; `None`: every row): the exact
/// rows of its conjuncts that the index decides.
fn candidates(expr: &Expr, m: &PartMeta, cols: &Cols<'_, '_>) -> Result<Option<RowSet>, PartError> {
    if let Some(s) = exact_rows(expr, m, cols)? {
        return Ok(Some(s));
    }
    Ok(match expr {
        Expr::And(xs) => {
            let mut acc: Option<RowSet> = None;
            for x in xs {
                if let Some(s) = candidates(x, m, cols)? {
                    match acc.as_mut() {
                        Some(a) => a.and(&s),
                        None => acc = Some(s),
                    }
                }
            }
            acc
        }
        Expr::Or(xs) => {
            let mut acc = RowSet::none(cols.rows());
            for x in xs {
                match candidates(x, m, cols)? {
                    Some(s) => acc.or(&s),
                    None => return Ok(None),
                }
            }
            Some(acc)
        }
        _ => None,
    })
}

/// The rows whose source, destination or exporter lies in `net` (what [`RowEval`] judges an
/// address leaf on), from the address index; `None` for a partition without postings or with
/// an IPv4-mapped or -compatible IPv6 end (judged on its event).
fn ip_rows(net: Net, cols: &Cols<'_, '_>) -> Result<Option<RowSet>, PartError> {
    let Some(ix) = cols.addr_index()? else {
        return Ok(None);
    };
    if ix
        .addr6
        .iter()
        .any(|a| std::net::Ipv6Addr::from(*a).to_ipv4().is_some())
    {
        return Ok(None);
    }
    const MAPPED: u128 = 0xffff << 32;
    let wide = |ip: IpAddr| match ip {
        IpAddr::V4(a) => MAPPED | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let (lo, hi) = net.range();
    let (l, h) = (wide(lo), wide(hi));
    let mut s = RowSet::none(cols.rows());
    let (a, b) = (l.max(MAPPED), h.min(MAPPED | 0xffff_ffff));
    if a <= b {
        let (a, b) = (a as u32, b as u32);
        let first = ix.addr4.partition_point(|&x| x < a);
        for (k, &x) in ix.addr4.iter().enumerate().skip(first) {
            if x > b {
                break;
            }
            ix.post4
                .rows_of(k)?
                .iter()
                .for_each(|&r| s.insert(r as usize));
        }
    }
    let first = ix.addr6.partition_point(|x| u128::from_be_bytes(*x) < l);
    for (k, x) in ix.addr6.iter().enumerate().skip(first) {
        if u128::from_be_bytes(*x) > h {
            break;
        }
        ix.post6
            .rows_of(k)?
            .iter()
            .for_each(|&r| s.insert(r as usize));
    }
    let (idx, dict) = cols.exporters()?;
    let hit: Vec<u64> = dict
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_some_and(|e| net.contains(e.ip())))
        .map(|(k, _)| k as u64 + 1)
        .collect();
    if !hit.is_empty() {
        for (i, e) in idx.iter().enumerate() {
            if hit.contains(e) {
                s.insert(i);
            }
        }
    }
    Ok(Some(s))
}

/// How many flows `expr` matches ([`scan`]) and the first `limit` of them in time order (ties
/// by seq): a day of millions of flows is counted without holding their keys. The keys' `src`
/// may be `None` where the flow has one (what [`scan`] gives `check`; callers of `first` only
/// order and fetch).
pub fn first(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    fetch: &mut dyn Fetch,
    limit: usize,
) -> anyhow::Result<(u64, Vec<FlowKey>)> {
    if limit == 0 {
        return Ok((
            walk(index, expr, cap, fetch, None, false, None)?,
            Vec::new(),
        ));
    }
    let mut total = 0u64;
    // The `limit` earliest so far; the heap's top is the latest of them.
    let mut heap: std::collections::BinaryHeap<(DocKey, Option<IpAddr>)> =
        std::collections::BinaryHeap::new();
    // The latest of the `limit` kept, once there are `limit`: later rows need no key.
    let full_at = std::cell::Cell::new(None::<Timestamp>);
    let mut visit = |k: FlowKey| {
        total += 1;
        if heap.len() < limit {
            heap.push((k.key, k.src));
        } else if heap.peek().is_some_and(|top| k.key < top.0) {
            heap.pop();
            heap.push((k.key, k.src));
        }
        if heap.len() >= limit {
            full_at.set(heap.peek().map(|top| top.0.time));
        }
    };
    let later = || full_at.get();
    total += walk(
        index,
        expr,
        cap,
        fetch,
        Some(&mut visit),
        false,
        Some(&later),
    )?;
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
            let row = FlowRow::legacy(100 + i, observer.as_str().to_string(), r);
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

    /// What the address index, the time column and the manifest decide (`exact_rows`,
    /// `candidates`, `const_eval`) agrees with `Expr::matches` on each row's ledger event: in
    /// a partition with IPv4-mapped ends (addresses judged on events), one without, and one
    /// whose rows all stand at their first packet (windows decided from the columns).
    #[test]
    fn the_index_decides_rows_as_their_events() {
        let texts = [
            "*",
            "class:net.flow",
            "class:auth.login",
            "app:netflow",
            "observer:network",
            "198.51.100.7",
            "ip:198.51.100.0/28",
            "::ffff:198.51.100.7",
            "ip:::/0",
            "ip:::ffff:0:0/96",
            "10.0.0.3",
            "2001:db8::/32",
            "192.0.2.2",
            "ip:192.0.2.0/24",
            "tcp",
            "packets",
            "10.0.0.3 tcp",
            "10.0.0.3 OR 198.51.100.4",
            "10.0.0.3 OR tcp",
            "-10.0.0.3",
            "NOT (observer:network OR 198.51.100.7)",
            "class:net.flow 10.0.0.0/30",
            "dst_port:443 198.51.100.0/30",
            "udp OR icmp",
            "TCP",
            "icmpv6",
            "src_port:40001",
            "proto:udp",
            "proto:UDP",
            "proto:icmpv6",
            "src_port:0",
            "dst_port:2048",
            "dst_port:0443",
            "dst_port:+443",
            "-tcp 10.0.0.1",
        ];
        let window = Expr::Time {
            from: Some("2026-10-14T09:45:00Z".parse().unwrap()),
            to: Some("2026-10-14T10:00:00Z".parse().unwrap()),
        };
        let mut exprs: Vec<Expr> = texts
            .iter()
            .map(|t| crate::lang::parse(t).unwrap())
            .collect();
        for x in exprs.clone() {
            exprs.push(Expr::And(vec![window.clone(), x]));
        }
        exprs.push(window.clone());
        exprs.push(Expr::Time {
            from: None,
            to: Some("2030-01-01T00:00:00Z".parse().unwrap()),
        });
        let plain = |a: Option<IpAddr>| match a {
            Some(IpAddr::V6(v6)) => v6.to_ipv4().is_none(),
            _ => true,
        };
        type Keep<'k> = &'k dyn Fn(u64, &FlowRecord) -> bool;
        let sets: [Keep<'_>; 3] = [
            &|_, _| true,
            &|_, r| plain(r.src) && plain(r.dst),
            &|i, r| plain(r.src) && plain(r.dst) && r.start_ms.is_some() && i % 7 != 6,
        ];
        let (mut decided, mut kept) = (0, 0);
        for keep in sets {
            let mut rows = Vec::new();
            let mut events = Vec::new();
            for i in 0..200u64 {
                let r = rec(i);
                if !keep(i, &r) {
                    continue;
                }
                let observer = if i % 7 == 6 {
                    Observer::Vm
                } else {
                    Observer::Network
                };
                events.push(ledger_event(&r, observer, i));
                rows.push(FlowRow::legacy(100 + i, observer.as_str().to_string(), r));
            }
            let bytes = flowstore::encode(&rows).unwrap();
            let part = Part::open(&bytes).unwrap();
            let cols = Cols::new(&part);
            let times: Vec<i64> = rows.iter().map(FlowRow::time_ms).collect();
            let meta = PartMeta {
                file: String::new(),
                rows: rows.len() as u64,
                first_seq: rows[0].seq,
                last_seq: rows[rows.len() - 1].seq,
                min_ms: *times.iter().min().unwrap(),
                max_ms: *times.iter().max().unwrap(),
                bytes: 0,
                placed_is_start: rows
                    .iter()
                    .all(|r| r.rec.start_ms.is_some() && r.observer == Observer::Network.as_str()),
                min_dseq: None,
                derived: false,
            };
            for x in &exprs {
                let want: Vec<bool> = events.iter().map(|e| x.matches(e)).collect();
                if let Some(b) = const_eval(x, &meta) {
                    assert!(want.iter().all(|&w| w == b), "{x}: const {b}");
                }
                if let Some(set) = exact_rows(x, &meta, &cols).unwrap() {
                    decided += 1;
                    for (i, &w) in want.iter().enumerate() {
                        assert_eq!(set.contains(i), w, "{x} exact, row {i}: {:?}", events[i]);
                    }
                }
                if let Some(set) = candidates(x, &meta, &cols).unwrap() {
                    kept += 1;
                    for (i, &w) in want.iter().enumerate() {
                        assert!(!w || set.contains(i), "{x} candidates miss row {i}");
                    }
                }
                // Rows decoded for a selection are the rows themselves.
                let cand = candidates(x, &meta, &cols).unwrap();
                let got = cols.decode(cand.as_ref()).unwrap();
                let want_rows: Vec<&FlowRow> = rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| cand.as_ref().is_none_or(|s| s.contains(*i)))
                    .map(|(_, r)| r)
                    .collect();
                assert_eq!(got.iter().collect::<Vec<_>>(), want_rows, "{x}");
            }
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(cols.seqs().unwrap()[i], r.seq);
                assert_eq!(cols.src(i).unwrap(), r.rec.src);
                assert_eq!(cols.start_ms(i).unwrap(), r.rec.start_ms);
                assert_eq!(cols.observer(i).unwrap(), r.observer);
            }
        }
        // Most queries are decided by the index in the plain partitions.
        assert!(decided >= 50 && kept > decided, "{decided} {kept}");
    }

    /// `first` and `scan` over a store of several partitions (some whose rows all stand at
    /// their first packet, some not; a cap inside the last) give the counts and first keys of
    /// brute force over the ledger's events: manifest counts, index-decided rows, partitions
    /// whose keys are not built once enough earlier ones are held, and row judgement.
    #[test]
    fn first_and_scan_over_partitions_equal_brute_force() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = flowstore::FlowStore::open(dir.path().join("flows")).unwrap();
        let mut events = std::collections::HashMap::new();
        let mut seq = 10u64;
        for part in 0..6u64 {
            for i in 0..150u64 {
                let k = part * 150 + i;
                let mut r = rec(k);
                // Partitions 1, 3 and 5: every row placed at its first packet.
                let plain = part % 2 == 1;
                if plain {
                    // No IPv4-mapped end either: addresses decided by the postings.
                    r.start_ms = Some(1_791_970_800_000 + k as i64 * 61_000);
                    if r.dst.is_some_and(|d| d.is_ipv6()) {
                        r.dst = Some("198.51.100.7".parse().unwrap());
                    }
                }
                let observer = if !plain && k % 7 == 6 {
                    Observer::Vm
                } else {
                    Observer::Network
                };
                seq += 1 + k % 3;
                events.insert(seq, ledger_event(&r, observer, k));
                store.add(seq, observer.as_str().to_string(), r).unwrap();
            }
            store.commit_at(seq, None).unwrap();
        }
        assert_eq!(store.partitions().len(), 6);
        assert!(
            store
                .partitions()
                .iter()
                .filter(|p| p.placed_is_start)
                .count()
                >= 3
        );
        let cap = seq - 40;
        let index = views::SearchIndex::open_or_create(dir.path().join("index")).unwrap();
        let mut index = index;
        let reader = flowstore::FlowStore::open_read(dir.path().join("flows")).unwrap();
        index.attach_flows(reader, Some(cap));
        let mut fetch = |s: u64| -> anyhow::Result<Event> {
            events
                .get(&s)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no #{s}"))
        };
        for text in [
            "*",
            "class:net.flow",
            "198.51.100.7",
            "ip:198.51.100.0/28",
            "10.0.0.3",
            "10.0.0.3 tcp",
            "dst_port:443",
            "udp OR 10.0.0.4",
            "-tcp",
            "packets observer:network",
            "192.0.2.1",
        ] {
            let expr = crate::lang::parse(text).unwrap();
            let mut want: Vec<DocKey> = events
                .iter()
                .filter(|(s, e)| **s <= cap && expr.matches(e))
                .map(|(s, e)| DocKey {
                    time: e.placed(),
                    seq: *s,
                })
                .collect();
            want.sort();
            for limit in [0, 1, 7, 100, 2000] {
                let (n, keys) = first(&index, &expr, Some(cap), &mut fetch, limit).unwrap();
                assert_eq!(n, want.len() as u64, "{text} limit {limit}");
                let got: Vec<DocKey> = keys.iter().map(|k| k.key).collect();
                let w: Vec<DocKey> = want.iter().take(limit).copied().collect();
                assert_eq!(got, w, "{text} limit {limit}");
            }
            let mut all = Vec::new();
            scan(&index, &expr, Some(cap), &mut fetch, &mut |k| all.push(k)).unwrap();
            all.sort_by_key(|k| k.key);
            assert_eq!(
                all.iter().map(|k| k.key).collect::<Vec<_>>(),
                want,
                "{text}"
            );
            for k in all {
                let src = events[&k.key.seq]
                    .field(model::fields::SRC_IP)
                    .and_then(|s| s.parse::<IpAddr>().ok());
                assert_eq!(k.src, src, "{text} #{}", k.key.seq);
            }
        }
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
