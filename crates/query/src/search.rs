//! `pugmark search`: run a query on the search index, in time order, each hit with its ledger
//! position and its event.
//!
//! Input: a [`SearchRequest`] (the query text plus the CLI's filters), the index, and a
//! [`Fetch`] that reads events back from the ledger by seq. Output: a [`SearchOutcome`], which
//! renders as text lines ([`render_line`]) or JSON ([`SearchOutcome::to_json`]).
//!
//! When the index answers the query exactly (words, fields, IPs, time), counts come straight
//! from the index and only the hits shown are fetched. Phrases and punctuated words are
//! answered by the index as a superset; every candidate is then fetched and checked, so totals
//! and `--count` stay exact (at the cost of reading each candidate from the ledger).

use std::collections::BTreeMap;

use anyhow::Context;
use model::{Event, EventClass, Origin, escape_controls};
use serde::Serialize;
use views::search::{DocKey, Keyword, SearchIndex};

use crate::flows;
use crate::lang::{self, Expr};

pub use crate::lang::QUERY_SYNTAX_HELP;

/// Reads the event recorded at a ledger position.
pub trait Fetch {
    fn fetch(&mut self, seq: u64) -> anyhow::Result<Event>;

    /// The events at `seqs`, answers in the order asked. A reader may read them in another
    /// order or on several threads (the ledger's does: hits of a day lie in thousands of
    /// compressed blocks).
    fn fetch_many(&mut self, seqs: &[u64]) -> Vec<anyhow::Result<Event>> {
        seqs.iter().map(|&s| self.fetch(s)).collect()
    }
}

/// Candidates fetched at a time when they must all be read to be judged (bounded memory).
const FETCH_CHUNK: usize = 4096;

impl<F: FnMut(u64) -> anyhow::Result<Event>> Fetch for F {
    fn fetch(&mut self, seq: u64) -> anyhow::Result<Event> {
        self(seq)
    }
}

/// One search, as the CLI or HTTP API asks it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Query text ([`QUERY_SYNTAX_HELP`]); `*` for everything.
    pub query: String,
    /// Only events placed (`Event::placed()`: the collector's time where one exists, else the
    /// reported time) in `[from, to)`.
    pub from: Option<jiff::Timestamp>,
    pub to: Option<jiff::Timestamp>,
    /// Exact host / app (case-insensitive), class.
    pub host: Option<String>,
    pub app: Option<String>,
    pub class: Option<EventClass>,
    /// Normalised fields that must equal these values (case-insensitive).
    pub fields: Vec<(String, String)>,
    /// At most this many hits, the earliest first.
    pub limit: usize,
    /// Only count: no hits are fetched unless needed to decide matches.
    pub count_only: bool,
}

impl SearchRequest {
    /// The query text and filters as one expression.
    pub fn expr(&self) -> anyhow::Result<Expr> {
        let mut parts = vec![lang::parse(&self.query)?];
        if self.from.is_some() || self.to.is_some() {
            parts.push(Expr::Time {
                from: self.from,
                to: self.to,
            });
        }
        if let Some(h) = &self.host {
            parts.push(Expr::Keyword(Keyword::Host, h.clone()));
        }
        if let Some(a) = &self.app {
            parts.push(Expr::Keyword(Keyword::App, a.clone()));
        }
        if let Some(c) = self.class {
            parts.push(Expr::Keyword(Keyword::Class, c.as_str().to_string()));
        }
        for (name, value) in &self.fields {
            parts.push(Expr::Field {
                name: name.to_lowercase(),
                value: value.clone(),
            });
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }
}

/// One hit: the ledger position (the evidence) and the event recorded there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub seq: u64,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOutcome {
    /// Number of matching events (all of them, not only those in `hits`).
    pub total: u64,
    /// The first `limit` matches in time order (ties by seq); empty for count-only requests.
    pub hits: Vec<Hit>,
    /// `total` exceeds the hits returned because of the limit.
    pub truncated: bool,
}

/// The events the ledger holds past the index's last position: a live server acknowledges
/// a record once it is durable, and its index trails (BENCHMARKS.md reports the lag). A search
/// that also scans this tail finds every acknowledged record, only more slowly while the
/// index is behind.
pub trait Tail {
    /// Calls `visit(seq, event)` for every event past the index, in ledger order. With
    /// `decode` false the caller only counts (the query matches everything) and `event` is
    /// `None`: records are not decoded.
    fn scan(
        &mut self,
        decode: bool,
        visit: &mut dyn FnMut(u64, Option<Event>),
    ) -> anyhow::Result<()>;
}

/// Runs `req` on `index`, reading events through `fetch`.
pub fn run(
    index: &SearchIndex,
    req: &SearchRequest,
    fetch: &mut dyn Fetch,
) -> anyhow::Result<SearchOutcome> {
    run_with_tail(index, req, fetch, None)
}

/// [`run`], plus the events of `tail` (those the index does not hold yet), checked one by
/// one with the query's exact meaning ([`Expr::matches`]) and merged in time order.
pub fn run_with_tail(
    index: &SearchIndex,
    req: &SearchRequest,
    fetch: &mut dyn Fetch,
    tail: Option<&mut dyn Tail>,
) -> anyhow::Result<SearchOutcome> {
    let expr = req.expr()?;
    let mut out = run_index(index, req, &expr, fetch)?;
    let Some(tail) = tail else {
        return Ok(out);
    };
    let limit = if req.count_only { 0 } else { req.limit };
    let everything = matches!(expr, Expr::All);
    let mut extra = 0u64;
    let mut more = Vec::new();
    tail.scan(
        !(everything && req.count_only),
        &mut |seq, event| match event {
            None => extra += 1,
            Some(e) if expr.matches(&e) => {
                extra += 1;
                if limit > 0 {
                    more.push(Hit { seq, event: e });
                }
            }
            Some(_) => {}
        },
    )?;
    if !more.is_empty() {
        out.hits.extend(more);
        // `order_key`: a derived flow right after the datagram that emitted it (as `DocKey`).
        out.hits
            .sort_by_key(|h| (h.event.placed(), model::flow::order_key(h.seq)));
        out.hits.truncate(limit);
    }
    out.total += extra;
    out.truncated = !req.count_only && out.total > out.hits.len() as u64;
    Ok(out)
}

fn run_index(
    index: &SearchIndex,
    req: &SearchRequest,
    expr: &Expr,
    fetch: &mut dyn Fetch,
) -> anyhow::Result<SearchOutcome> {
    let (iq, exact) = lang::lower(expr);
    let iq = flows::index_part(index, iq)?;
    // Flows come from the flow store, already judged exactly (`flows`), up to the index's
    // position: a search's ledger tail starts there.
    let cap = index.flows_cap();
    let limit = if req.count_only { 0 } else { req.limit };
    // Only the first `limit` flows can be among the first `limit` hits.
    let (n_flows, flow_keys) = flows::first(index, expr, cap, fetch, limit)?;
    let mut hits = Vec::new();
    let total;
    if exact {
        if req.count_only {
            total = index.count(&iq)? + n_flows;
        } else {
            let (n, keys) = index.first_by_time(&iq, limit)?;
            total = n + n_flows;
            let seqs: Vec<u64> = flows::merge_first(keys, &flow_keys, limit)
                .iter()
                .map(|k| k.seq)
                .collect();
            for (seq, event) in seqs.iter().zip(fetch.fetch_many(&seqs)) {
                let event = event.with_context(|| format!("fetching hit #{seq}"))?;
                hits.push(Hit { seq: *seq, event });
            }
        }
    } else {
        let mut n = n_flows;
        let mut candidates: Vec<(DocKey, bool)> = index
            .all_by_time(&iq)?
            .into_iter()
            .map(|k| (k, false))
            .collect();
        if !flow_keys.is_empty() {
            candidates.extend(flow_keys.iter().map(|f| (f.key, true)));
            candidates.sort_unstable();
        }
        for chunk in candidates.chunks(FETCH_CHUNK) {
            // Flows past the first `limit` hits are not read (hits only grow: a flow left out
            // here is left out below too).
            let seqs: Vec<u64> = chunk
                .iter()
                .filter(|(_, is_flow)| !(*is_flow && hits.len() >= limit))
                .map(|(k, _)| k.seq)
                .collect();
            let mut events: std::collections::HashMap<u64, anyhow::Result<Event>> =
                seqs.iter().copied().zip(fetch.fetch_many(&seqs)).collect();
            for &(k, is_flow) in chunk {
                if is_flow && hits.len() >= limit {
                    continue;
                }
                let event = match events.remove(&k.seq) {
                    Some(e) => e,
                    None => fetch.fetch(k.seq),
                }
                .with_context(|| format!("fetching candidate #{}", k.seq))?;
                if is_flow {
                    hits.push(Hit { seq: k.seq, event });
                } else if expr.matches(&event) {
                    n += 1;
                    if hits.len() < limit {
                        hits.push(Hit { seq: k.seq, event });
                    }
                }
            }
        }
        total = n;
    }
    let truncated = !req.count_only && total > hits.len() as u64;
    Ok(SearchOutcome {
        total,
        hits,
        truncated,
    })
}

/// Every match of `req` in its window, whatever its limit, as the index's fast columns and the
/// flow store know it (placed time, seq) with its observer: nothing is read from the ledger.
/// What a timeline's lanes are drawn from over a whole window while only its first entries
/// are fetched. `None` when the index answers the query only as a superset (a phrase): its
/// matches are known only by reading every candidate.
pub fn keys_by_observer(
    index: &SearchIndex,
    req: &SearchRequest,
    fetch: &mut dyn Fetch,
) -> anyhow::Result<Option<Vec<(DocKey, model::Observer)>>> {
    let expr = req.expr()?;
    let cap = index.flows_cap();
    let mut out = Vec::new();
    // The observer is an indexed term, not a fast column: one pass per observer (each an
    // intersection driven by the narrow query's postings).
    for obs in model::Observer::ALL {
        let e = Expr::And(vec![
            expr.clone(),
            Expr::Keyword(Keyword::Observer, obs.as_str().into()),
        ]);
        let (iq, exact) = lang::lower(&e);
        if !exact {
            return Ok(None);
        }
        let iq = flows::index_part(index, iq)?;
        out.extend(index.all_by_time(&iq)?.into_iter().map(|k| (k, obs)));
        let (_, flow_keys) = flows::first(index, &e, cap, fetch, usize::MAX)?;
        out.extend(flow_keys.into_iter().map(|f| (f.key, obs)));
    }
    Ok(Some(out))
}

/// One hit as a text line: `#SEQ TIME [observer] host app[pid]: message`, TIME being where
/// the event is placed (`Event::placed()`), followed by ` [reported …]` when the source's own
/// time differs from it. Host, app, pid and message come from the record: control characters
/// are shown escaped ([`model::escape_controls`]), never sent to the terminal.
pub fn render_line(hit: &Hit) -> String {
    let e = &hit.event;
    let esc = |s: &str| escape_controls(s).into_owned();
    let app = match (&e.app, &e.pid) {
        (Some(a), Some(p)) => format!("{}[{}]", esc(a), esc(p)),
        (Some(a), None) => esc(a),
        (None, _) => "-".to_string(),
    };
    let cite =
        crate::cite::of(hit.seq, e).map_or_else(|| "#?".to_string(), |c| crate::cite::text(&c));
    let mut line = format!(
        "{} {} [{}] {} {}: {}",
        cite,
        e.placed(),
        e.observer,
        e.host.as_deref().map_or_else(|| "-".to_string(), esc),
        app,
        escape_controls(&e.message)
    );
    if let Some(rep) = e.reported_aside() {
        line.push_str(&format!(" [reported {rep}]"));
    }
    line
}

/// `--json` output: `{"total": N, "truncated": bool, "hits": [HitJson, …]}`.
#[derive(Debug, Serialize)]
pub struct SearchJson<'a> {
    pub total: u64,
    pub truncated: bool,
    pub hits: Vec<HitJson<'a>>,
}

/// One hit in `--json` output. Times are RFC 3339; `time` is the ordering time, where the hit
/// is placed (`Event::placed()`: `collected` when there is one, else `reported.time` when the
/// source gave a parsable one, else `received`); `reported.time` keeps the source's claim.
#[derive(Debug, Serialize)]
pub struct HitJson<'a> {
    /// Ledger position: the evidence to cite (for a derived flow, the datagram holding it).
    pub seq: u64,
    /// A derived flow's place in the datagram at `seq` (`crate::cite`); absent for every
    /// other record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<crate::cite::FlowJson>,
    pub time: jiff::Timestamp,
    pub received: jiff::Timestamp,
    /// When a collector the site controls received the record (`Event::collected()`): ours
    /// for live records, the central logger's for archive lines; null for other imports.
    pub collected: Option<jiff::Timestamp>,
    /// `{"time": RFC 3339 or null, "text": as it appeared}`.
    pub reported: &'a model::Reported,
    pub observer: model::Observer,
    pub source_kind: &'a str,
    /// `{"kind": "file", "path", "line"}` or `{"kind": "peer", "addr", "listener"}`.
    pub origin: &'a Origin,
    pub host: Option<&'a str>,
    pub app: Option<&'a str>,
    pub pid: Option<&'a str>,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub class: EventClass,
    pub message: &'a str,
    pub fields: &'a BTreeMap<String, String>,
    pub ips: &'a [std::net::IpAddr],
    /// What the parser could not understand (empty for a clean parse).
    pub issues: &'a [model::ParseIssue],
    /// The bytes exactly as received: a string when they are UTF-8, else `{"hex": "…"}`.
    #[serde(serialize_with = "serialize_raw")]
    pub raw: &'a [u8],
}

fn serialize_raw<S: serde::Serializer>(raw: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match std::str::from_utf8(raw) {
        Ok(text) => s.serialize_str(text),
        Err(_) => {
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("hex", &hex)?;
            m.end()
        }
    }
}

impl<'a> HitJson<'a> {
    pub fn new(hit: &'a Hit) -> HitJson<'a> {
        let e = &hit.event;
        // A derived flow is cited by its datagram; its position (internal) never leaves. An
        // event that cannot say which (damage) keeps the position for `cite::externalize` to
        // resolve through the flow store, or refuse.
        let cite = crate::cite::of(hit.seq, e);
        HitJson {
            seq: cite.map_or(hit.seq, |c| c.seq),
            flow: cite.and_then(|c| c.flow).map(crate::cite::FlowJson::from),
            time: e.placed(),
            received: e.received.timestamp(),
            collected: e.collected(),
            reported: &e.reported,
            observer: e.observer,
            source_kind: &e.source_kind,
            origin: &e.origin,
            host: e.host.as_deref(),
            app: e.app.as_deref(),
            pid: e.pid.as_deref(),
            facility: e.facility,
            severity: e.severity,
            class: e.class,
            message: &e.message,
            fields: &e.fields,
            ips: &e.ips,
            issues: &e.issues,
            raw: &e.raw,
        }
    }
}

impl SearchOutcome {
    pub fn to_json(&self) -> SearchJson<'_> {
        SearchJson {
            total: self.total,
            truncated: self.truncated,
            hits: self.hits.iter().map(HitJson::new).collect(),
        }
    }
}
