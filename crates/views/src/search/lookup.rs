//! Running index queries: [`IndexQuery`] (the tree crate `query` lowers its language to) is
//! turned into a tantivy query here, and results leave as [`DocKey`]s (event time, ledger
//! position) in time order.
//!
//! Three shapes of answer, picked by the caller: a count, the first `limit` keys in time order
//! plus the total (a top-k on the `(time, seq)` fast columns: a `*` query with a limit never
//! materialises every match), or every matching key in time order (for callers that must check
//! each candidate against its event).

use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::ColumnValues;
use tantivy::query::{AllQuery, BooleanQuery, EmptyQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DateTime, DocId, Order, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

use super::SearchIndex;
use super::schema::{
    PLACED, has_kv_term, ip_key, keyword_term, kv_term, phrase_terms, text_tokens,
};
use super::writer::date;
use crate::error::{Result, SearchError};

/// The exact-term fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    Host,
    App,
    /// `EventClass::as_str()` (`auth.login`).
    Class,
    /// `Observer::as_str()` (`vm`).
    Observer,
    /// `Event::source_kind` (`syslog-rfc3164`).
    Source,
}

/// A query on the index. Leaves say what the index can answer; crate `query` decides which of
/// them are exact and which are candidates to check on the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexQuery {
    /// Every document.
    All,
    /// No document.
    Nothing,
    /// Documents whose `text` holds every token of this string ([`super::text_tokens`]). A
    /// string with no token at all matches every document.
    Text(String),
    /// Candidates for a phrase matched as a case-insensitive substring that begins at a word
    /// start: every token of the string, the last one as a prefix when the string ends inside
    /// a word (`"authentication failure"` also finds `failures`), except edge words that might
    /// be address parts in the text (`"port 22"` needs only `port`). A superset: crate `query`
    /// checks each candidate.
    TextPhrase(String),
    /// An exact keyword value (compared lower-cased, cut to [`super::KEYWORD_MAX_BYTES`]).
    Keyword(Keyword, String),
    /// A normalised field with this exact value (lower-cased, cut like keywords). Exact for
    /// fields with `kv` terms ([`super::has_kv_term`]); for the others a superset: events
    /// mentioning the address (a value that parses as one) or holding the value as a phrase.
    Field {
        name: String,
        value: String,
    },
    /// Events mentioning this address.
    Ip(IpAddr),
    /// Events mentioning an address in `first..=last` (both of one family).
    IpRange {
        first: IpAddr,
        last: IpAddr,
    },
    /// Events placed (`Event::placed()`) in `[from, to)`; an absent bound is open.
    Time {
        from: Option<jiff::Timestamp>,
        to: Option<jiff::Timestamp>,
    },
    And(Vec<IndexQuery>),
    Or(Vec<IndexQuery>),
    Not(Box<IndexQuery>),
}

/// One matching event as the fast columns know it, for scans over millions of events that
/// need no more than this ([`SearchIndex::scan_src`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrcRow {
    pub seq: u64,
    /// `Event::placed()` in ns since the epoch, as indexed.
    pub time_ns: i64,
    /// The event's `src_ip` field (IPv4-mapped IPv6 turned back into IPv4).
    pub src: Option<IpAddr>,
}

/// Where one matching event sits: its time (`Event::placed()`, as indexed) and position — a
/// ledger position, or a derived flow's position (`model::flow::flow_pos`). Ordered by time,
/// then [`model::flow::order_key`] of the position: ledger positions in their order, a derived
/// flow right after the datagram that emitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocKey {
    pub time: jiff::Timestamp,
    pub seq: u64,
}

impl Ord for DocKey {
    fn cmp(&self, other: &DocKey) -> std::cmp::Ordering {
        (self.time, model::flow::order_key(self.seq))
            .cmp(&(other.time, model::flow::order_key(other.seq)))
    }
}

impl PartialOrd for DocKey {
    fn partial_cmp(&self, other: &DocKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn key(time: DateTime, seq: u64) -> DocKey {
    let time = jiff::Timestamp::from_nanosecond(i128::from(time.into_timestamp_nanos()))
        .unwrap_or(jiff::Timestamp::MIN);
    DocKey { time, seq }
}

/// Host and app names as the index holds them (lower-cased `host` / `app` terms), for the
/// words of names the `text` field does not hold (see `writer.rs`: an ASCII host or app name
/// is indexed once, as its keyword term, not again as words of every record).
pub(crate) struct Names {
    host: Vec<String>,
    app: Vec<String>,
}

/// One query being lowered against one searcher; the host and app names are read from the
/// term dictionaries when a word first needs them, once per searcher generation.
struct Lowering<'a> {
    index: &'a SearchIndex,
    searcher: &'a Searcher,
    names: std::cell::OnceCell<Arc<Names>>,
}

/// Every term of `field` in any segment of `searcher`, each once.
fn field_terms(searcher: &Searcher, field: Field) -> Result<Vec<String>> {
    let mut out = std::collections::BTreeSet::new();
    for reader in searcher.segment_readers() {
        let inv = reader
            .inverted_index(field)
            .map_err(SearchError::engine("term dictionary"))?;
        let mut stream = inv
            .terms()
            .stream()
            .map_err(|e| SearchError::engine("term dictionary")(e.into()))?;
        while stream.advance() {
            if let Ok(t) = std::str::from_utf8(stream.key()) {
                out.insert(t.to_string());
            }
        }
    }
    Ok(out.into_iter().collect())
}

impl Lowering<'_> {
    fn names(&self) -> Result<&Names> {
        if let Some(n) = self.names.get() {
            return Ok(n);
        }
        let generation = self.searcher.generation().generation_id();
        let cache = &self.index.names;
        let cached = cache.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, n)| n.clone())
        });
        let n = match cached {
            Some(n) => n,
            None => {
                let f = &self.index.fields;
                let n = Arc::new(Names {
                    host: field_terms(self.searcher, f.host)?,
                    app: field_terms(self.searcher, f.app)?,
                });
                if let Ok(mut c) = cache.lock() {
                    *c = Some((generation, n.clone()));
                }
                n
            }
        };
        Ok(self.names.get_or_init(|| n))
    }

    /// Host and app terms with a word token for which `want` holds; `needle` (lower-cased) is
    /// a substring every such name must contain (a cheap test before tokenizing).
    fn names_with(
        &self,
        needle: &str,
        want: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(Field, &String)>> {
        let f = &self.index.fields;
        let names = self.names()?;
        let mut out = Vec::new();
        for (field, terms) in [(f.host, &names.host), (f.app, &names.app)] {
            for t in terms {
                if t.contains(needle) && text_tokens(t).iter().any(|w| want(w)) {
                    out.push((field, t));
                }
            }
        }
        Ok(out)
    }

    /// Records holding the word `t` (lower-cased): in their text, or as a word of their host
    /// or app name.
    fn word(&self, t: &str) -> Result<Box<dyn Query>> {
        let f = &self.index.fields;
        let mut parts = vec![term_query(Term::from_field_text(f.text, t))];
        for (field, name) in self.names_with(t, &|w| w == t)? {
            parts.push(keyword_query(field, name));
        }
        Ok(union(parts))
    }

    /// Records holding a word that starts with `p` (lower-cased).
    fn word_prefix(&self, p: &str) -> Result<Box<dyn Query>> {
        let f = &self.index.fields;
        // Every token extending `p` sorts in [p, p + U+10FFFF): U+10FFFF is the
        // largest scalar value, so its UTF-8 bytes are above any continuation.
        let upper = format!("{p}\u{10FFFF}");
        let mut parts: Vec<Box<dyn Query>> = vec![Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_text(f.text, p)),
            Bound::Excluded(Term::from_field_text(f.text, &upper)),
        ))];
        for (field, name) in self.names_with(p, &|w| w.starts_with(p))? {
            parts.push(keyword_query(field, name));
        }
        Ok(union(parts))
    }

    /// Candidates for a phrase: its safe whole tokens ([`phrase_terms`]) and, when it ends
    /// inside a word, every token extending that word.
    fn phrase(&self, s: &str) -> Result<Box<dyn Query>> {
        let (tokens, prefix) = phrase_terms(s);
        let mut parts = Vec::new();
        for t in &tokens {
            parts.push(self.word(t)?);
        }
        if let Some(p) = prefix {
            parts.push(self.word_prefix(&p)?);
        }
        Ok(intersection(parts))
    }

    fn lower(&self, q: &IndexQuery) -> Result<Box<dyn Query>> {
        let f = &self.index.fields;
        Ok(match q {
            IndexQuery::All => Box::new(AllQuery),
            IndexQuery::Nothing => Box::new(EmptyQuery),
            IndexQuery::Text(s) => {
                let mut terms = Vec::new();
                for t in text_tokens(s) {
                    terms.push(self.word(&t)?);
                }
                intersection(terms)
            }
            IndexQuery::TextPhrase(s) => self.phrase(s)?,
            IndexQuery::Keyword(k, v) => {
                let field = match k {
                    Keyword::Host => f.host,
                    Keyword::App => f.app,
                    Keyword::Class => f.class,
                    Keyword::Observer => f.observer,
                    Keyword::Source => f.source,
                };
                keyword_query(field, &keyword_term(v))
            }
            IndexQuery::Field { name, value } => {
                if has_kv_term(name) {
                    keyword_query(f.kv, &kv_term(name, value))
                } else if let Ok(ip) = value.trim().parse::<IpAddr>() {
                    term_query(Term::from_field_ip_addr(f.ip, ip_key(ip)))
                } else {
                    self.phrase(value)?
                }
            }
            IndexQuery::Ip(ip) => term_query(Term::from_field_ip_addr(f.ip, ip_key(*ip))),
            IndexQuery::IpRange { first, last } => Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_ip_addr(f.ip, ip_key(*first))),
                Bound::Included(Term::from_field_ip_addr(f.ip, ip_key(*last))),
            )),
            IndexQuery::Time { from, to } => {
                let lower = match from {
                    Some(t) => Bound::Included(Term::from_field_date(f.placed, date(*t))),
                    None => Bound::Unbounded,
                };
                let upper = match to {
                    Some(t) => Bound::Excluded(Term::from_field_date(f.placed, date(*t))),
                    None => Bound::Unbounded,
                };
                if lower == Bound::Unbounded && upper == Bound::Unbounded {
                    Box::new(AllQuery)
                } else {
                    Box::new(RangeQuery::new(lower, upper))
                }
            }
            IndexQuery::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for p in parts {
                    match p {
                        IndexQuery::All => {}
                        IndexQuery::Not(inner) => {
                            clauses.push((Occur::MustNot, self.lower(inner)?))
                        }
                        other => clauses.push((Occur::Must, self.lower(other)?)),
                    }
                }
                with_positive_clause(clauses)
            }
            IndexQuery::Or(parts) => {
                if parts.iter().any(|p| matches!(p, IndexQuery::All)) {
                    return Ok(Box::new(AllQuery));
                }
                let mut qs = Vec::new();
                for p in parts {
                    qs.push(self.lower(p)?);
                }
                Box::new(BooleanQuery::union(qs))
            }
            IndexQuery::Not(inner) => {
                with_positive_clause(vec![(Occur::MustNot, self.lower(inner)?)])
            }
        })
    }
}

impl SearchIndex {
    /// `q` as a tantivy query on `searcher`'s segments.
    fn lower(&self, searcher: &Searcher, q: &IndexQuery) -> Result<Box<dyn Query>> {
        Lowering {
            index: self,
            searcher,
            names: std::cell::OnceCell::new(),
        }
        .lower(q)
    }

    /// Number of matching events.
    pub fn count(&self, q: &IndexQuery) -> Result<u64> {
        let searcher = self.reader.searcher();
        if *q == IndexQuery::All {
            return Ok(searcher.num_docs());
        }
        let n = searcher
            .search(self.lower(&searcher, q)?.as_ref(), &Count)
            .map_err(SearchError::engine("search"))?;
        Ok(n as u64)
    }

    /// The first `limit` matches in time order (ties by seq) and the total number of matches.
    pub fn first_by_time(&self, q: &IndexQuery, limit: usize) -> Result<(u64, Vec<DocKey>)> {
        if limit == 0 {
            return Ok((self.count(q)?, Vec::new()));
        }
        let searcher = self.reader.searcher();
        // tantivy's top-N buffer is twice the limit: a huge `--limit` (or "all") would
        // overflow it. More than the number of documents never changes the answer.
        let docs_here = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
        let limit = limit.min(docs_here.max(1));
        let top = TopDocs::with_limit(limit).order_by((
            (
                SortByStaticFastValue::<DateTime>::for_field(PLACED),
                Order::Asc,
            ),
            (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
        ));
        let (total, docs) = searcher
            .search(self.lower(&searcher, q)?.as_ref(), &(Count, top))
            .map_err(SearchError::engine("search"))?;
        let keys = docs
            .into_iter()
            .map(|((time, seq), _addr)| {
                key(
                    time.unwrap_or_else(|| DateTime::from_timestamp_nanos(i64::MIN)),
                    seq.unwrap_or(0),
                )
            })
            .collect();
        Ok((total as u64, keys))
    }

    /// Whether `q` may match any document, from the term dictionaries alone (no posting list
    /// is read): `false` means certainly no match. Addresses, networks and phrase tokens are
    /// looked up; every other leaf counts as "may match". What `hunt` uses to drop the many
    /// indicators a site never saw for the cost of a dictionary lookup per segment.
    pub fn may_match(&self, q: &IndexQuery) -> Result<bool> {
        let f = &self.fields;
        let searcher = self.reader.searcher();
        // Some segment holds a term of `field` in `[lo, hi]` (or exactly `lo` when `hi` is None).
        let any_term = |field: Field, lo: &Term, hi: Option<&Term>| -> Result<bool> {
            for reader in searcher.segment_readers() {
                let inv = reader
                    .inverted_index(field)
                    .map_err(SearchError::engine("term dictionary"))?;
                let found = match hi {
                    None => inv
                        .terms()
                        .get(lo.serialized_value_bytes())
                        .map_err(|e| SearchError::engine("term dictionary")(e.into()))?
                        .is_some(),
                    Some(hi) => inv
                        .terms()
                        .range()
                        .ge(lo.serialized_value_bytes())
                        .le(hi.serialized_value_bytes())
                        .into_stream()
                        .map_err(|e| SearchError::engine("term dictionary")(e.into()))?
                        .advance(),
                };
                if found {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        Ok(match q {
            IndexQuery::Nothing => false,
            IndexQuery::Ip(ip) => {
                any_term(f.ip, &Term::from_field_ip_addr(f.ip, ip_key(*ip)), None)?
            }
            IndexQuery::IpRange { first, last } => any_term(
                f.ip,
                &Term::from_field_ip_addr(f.ip, ip_key(*first)),
                Some(&Term::from_field_ip_addr(f.ip, ip_key(*last))),
            )?,
            IndexQuery::TextPhrase(s) => {
                let (tokens, prefix) = phrase_terms(s);
                let names = Lowering {
                    index: self,
                    searcher: &searcher,
                    names: std::cell::OnceCell::new(),
                };
                for t in &tokens {
                    if !any_term(f.text, &Term::from_field_text(f.text, t), None)?
                        && names.names_with(t, &|w| w == t)?.is_empty()
                    {
                        return Ok(false);
                    }
                }
                match prefix {
                    Some(p) => {
                        any_term(
                            f.text,
                            &Term::from_field_text(f.text, &p),
                            Some(&Term::from_field_text(f.text, &format!("{p}\u{10FFFF}"))),
                        )? || !names.names_with(&p, &|w| w.starts_with(&p))?.is_empty()
                    }
                    None => true,
                }
            }
            IndexQuery::And(parts) => {
                for p in parts {
                    if !matches!(p, IndexQuery::Not(_)) && !self.may_match(p)? {
                        return Ok(false);
                    }
                }
                true
            }
            IndexQuery::Or(parts) => {
                for p in parts {
                    if self.may_match(p)? {
                        return Ok(true);
                    }
                }
                false
            }
            _ => true,
        })
    }

    /// Calls `f` for every match with its seq, time and source address, read from the fast
    /// columns: no event is fetched and nothing is collected, so memory stays flat however
    /// many events match. Order: segment by segment, doc id order inside a segment (not
    /// time or seq order); callers that need an order-independent answer aggregate.
    pub fn scan_src(&self, q: &IndexQuery, f: &mut dyn FnMut(SrcRow)) -> Result<()> {
        let searcher = self.reader.searcher();
        let query = self.lower(&searcher, q)?;
        let weight = query
            .weight(tantivy::query::EnableScoring::disabled_from_searcher(
                &searcher,
            ))
            .map_err(SearchError::engine("search"))?;
        for reader in searcher.segment_readers() {
            let ff = reader.fast_fields();
            let time = ff
                .date(PLACED)
                .map_err(SearchError::engine("fast field placed"))?
                .first_or_default_col(DateTime::from_timestamp_nanos(i64::MIN));
            let seq = ff
                .u64("seq")
                .map_err(SearchError::engine("fast field seq"))?
                .first_or_default_col(0);
            let src = ff.ip_addr("src").ok();
            let alive = reader.alive_bitset();
            weight
                .for_each_no_score(reader, &mut |docs: &[DocId]| {
                    for &doc in docs {
                        if alive.is_some_and(|a| !a.is_alive(doc)) {
                            continue;
                        }
                        let src = src.as_ref().and_then(|c| c.first(doc)).map(|v6| {
                            v6.to_ipv4_mapped()
                                .map(IpAddr::V4)
                                .unwrap_or(IpAddr::V6(v6))
                        });
                        f(SrcRow {
                            seq: seq.get_val(doc),
                            time_ns: time.get_val(doc).into_timestamp_nanos(),
                            src,
                        });
                    }
                })
                .map_err(SearchError::engine("search"))?;
        }
        Ok(())
    }

    /// Every match, in time order (ties by seq).
    pub fn all_by_time(&self, q: &IndexQuery) -> Result<Vec<DocKey>> {
        let searcher = self.reader.searcher();
        let mut keys = searcher
            .search(self.lower(&searcher, q)?.as_ref(), &KeysCollector)
            .map_err(SearchError::engine("search"))?;
        keys.sort_unstable();
        Ok(keys)
    }
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn keyword_query(field: Field, value: &str) -> Box<dyn Query> {
    term_query(Term::from_field_text(field, value))
}

/// Any of `parts` (one part as itself).
fn union(mut parts: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match parts.len() {
        0 => Box::new(EmptyQuery),
        1 => parts.pop().unwrap_or_else(|| Box::new(EmptyQuery)),
        _ => Box::new(BooleanQuery::union(parts)),
    }
}

/// All of `parts`; no part at all matches every document.
fn intersection(mut parts: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match parts.len() {
        0 => Box::new(AllQuery),
        1 => parts.pop().unwrap_or_else(|| Box::new(AllQuery)),
        _ => Box::new(BooleanQuery::intersection(parts)),
    }
}

/// A boolean query made only of `MustNot` clauses matches nothing in tantivy; give it `All`.
fn with_positive_clause(mut clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    if clauses.is_empty() {
        return Box::new(AllQuery);
    }
    if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    if clauses.len() == 1
        && clauses[0].0 == Occur::Must
        && let Some((_, q)) = clauses.pop()
    {
        return q;
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Collects the `(time, seq)` of every match from the fast columns.
struct KeysCollector;

struct KeysSegment {
    time: std::sync::Arc<dyn ColumnValues<DateTime>>,
    seq: std::sync::Arc<dyn ColumnValues<u64>>,
    keys: Vec<DocKey>,
}

impl Collector for KeysCollector {
    type Fruit = Vec<DocKey>;
    type Child = KeysSegment;

    fn for_segment(
        &self,
        _ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<KeysSegment> {
        let ff = reader.fast_fields();
        Ok(KeysSegment {
            time: ff
                .date(PLACED)?
                .first_or_default_col(DateTime::from_timestamp_nanos(i64::MIN)),
            seq: ff.u64("seq")?.first_or_default_col(0),
            keys: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<DocKey>>) -> tantivy::Result<Vec<DocKey>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for KeysSegment {
    type Fruit = Vec<DocKey>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.keys
            .push(key(self.time.get_val(doc), self.seq.get_val(doc)));
    }

    fn harvest(self) -> Vec<DocKey> {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::DocKey;
    use model::flow::flow_pos;

    fn at(ns: i64, seq: u64) -> DocKey {
        DocKey {
            time: jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::MIN),
            seq,
        }
    }

    /// Ledger positions keep the (time, seq) order; a derived flow at the same instant sorts
    /// right after the datagram that emitted it, and time still comes first.
    #[test]
    fn keys_order_by_time_then_where_the_record_stands() {
        let flow = |e, k| flow_pos(e, k).unwrap_or(0);
        let mut keys = [
            at(5, 11),
            at(5, flow(10, 1)),
            at(5, 10),
            at(5, flow(10, 0)),
            at(4, flow(99, 0)),
            at(5, 9),
            at(6, 1),
        ];
        keys.sort();
        let seqs: Vec<u64> = keys.iter().map(|k| k.seq).collect();
        assert_eq!(
            seqs,
            vec![flow(99, 0), 9, 10, flow(10, 0), flow(10, 1), 11, 1]
        );
        // For ledger positions alone: exactly the derived (time, seq) order.
        let mut real = [at(3, 7), at(1, 9), at(3, 2), at(1, 1)];
        let mut by_tuple = real;
        real.sort();
        by_tuple.sort_by_key(|k| (k.time, k.seq));
        assert_eq!(real, by_tuple);
    }
}
