//! NAT records (conntrack and ulogd2 events) for every reader, from the fact store's NAT
//! blocks (issue 12) instead of the search index: the pipeline writes each such record as a
//! row there and not as a document, so a query that may match one gets it here; [`scan`] is
//! called by [`crate::flows::scan`], which every reader of flows calls, and its matches join
//! the flows'.
//!
//! Exact, like [`Expr::matches`] on the decoded event: a row keeps everything a leaf reads —
//! the message, host, app, class (`net.connection`), observer, source, fields and addresses —
//! and its placed time, so each leaf is judged as on the event the row rebuilds (time leaves
//! on the placed time), on the parts it reads and no whole event (`Expr::matches_text`,
//! `Expr::matches_fields`: building one per row was most of a word search over a gateway's
//! million rows). Flushes are skipped by their placed-time range, by the ledger range past
//! the cap, by their address set, by the letter runs of their texts (a word none of their
//! texts holds) and by their rows' field names; a flush's text (message and fields) is
//! decompressed only for a query with a word, phrase or field leaf.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use model::EventClass;
use views::facts::{NatFlush, NatRow, nat_wide};
use views::search::{DocKey, Keyword, SearchIndex};

use crate::flows::FlowKey;
use crate::lang::{Expr, Net};

fn ns(t: Timestamp) -> i128 {
    t.as_nanosecond()
}

/// Whether flush `f` may hold a record `expr` matches (a superset).
fn possible(expr: &Expr, f: &NatFlush) -> bool {
    match expr {
        Expr::All | Expr::Not(_) => true,
        Expr::Field { .. } | Expr::FieldNet { .. } => {
            f.field_possible(&expr.field_name().unwrap_or_default().to_lowercase())
        }
        Expr::Time { from, to } => {
            from.is_none_or(|x| ns(x) <= i128::from(f.max_placed_ns))
                && to.is_none_or(|x| ns(x) > i128::from(f.min_placed_ns))
        }
        Expr::Ip(net) => {
            let (lo, hi) = net.range();
            f.has_addr_in(nat_wide(lo), nat_wide(hi))
        }
        Expr::Word(s) | Expr::Phrase(s) => f.text_possible(s),
        Expr::Keyword(Keyword::Class, v) => v.to_lowercase() == EventClass::NetConnection.as_str(),
        Expr::Keyword(..) => true,
        Expr::And(xs) => xs.iter().all(|x| possible(x, f)),
        Expr::Or(xs) => xs.iter().any(|x| possible(x, f)),
    }
}

/// Address ranges one of which a row must mention (an address of the event, or a host that
/// is one: what an `ip:` leaf reads) for `expr` to match it; `None` when a row need not.
fn required_nets(expr: &Expr) -> Option<Vec<Net>> {
    match expr {
        Expr::Ip(net) => Some(vec![*net]),
        // Any conjunct's requirement is the whole's; the narrowest is kept.
        Expr::And(xs) => xs.iter().filter_map(required_nets).min_by_key(Vec::len),
        Expr::Or(xs) => {
            let mut all = Vec::new();
            for x in xs {
                all.extend(required_nets(x)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// What an `ip:` leaf reads of a row: one of its addresses, or a host that is one, in `net`
/// (as `Expr::matches` reads the event's `ips` and host).
fn mentions(net: &Net, ips: &[IpAddr], host: Option<&str>) -> bool {
    ips.iter().any(|ip| net.contains(*ip))
        || host
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(|ip| net.contains(ip))
}

/// Whether judging `expr` needs a row's text (message and fields).
fn needs_text(expr: &Expr) -> bool {
    match expr {
        Expr::Word(_) | Expr::Phrase(_) | Expr::Field { .. } | Expr::FieldNet { .. } => true,
        Expr::All | Expr::Time { .. } | Expr::Ip(_) | Expr::Keyword(..) => false,
        Expr::Not(x) => needs_text(x),
        Expr::And(xs) | Expr::Or(xs) => xs.iter().any(needs_text),
    }
}

/// One row being judged, leaf by leaf on what the row keeps (no event built): what
/// `Expr::matches` reads of the NAT record's decoded event.
struct RowEval<'a> {
    row: &'a NatRow,
    /// The fields of a row that keeps them in its message (a conntrack line), once rebuilt.
    fields: Option<BTreeMap<String, String>>,
}

impl RowEval<'_> {
    fn eval(&mut self, expr: &Expr) -> bool {
        let r = self.row;
        match expr {
            Expr::All => true,
            Expr::Time { from, to } => {
                let t = i128::from(r.placed_ns);
                from.is_none_or(|f| t >= ns(f)) && to.is_none_or(|x| t < ns(x))
            }
            Expr::And(xs) => xs.iter().all(|x| self.eval(x)),
            Expr::Or(xs) => xs.iter().any(|x| self.eval(x)),
            Expr::Not(x) => !self.eval(x),
            // What `Expr::matches` reads, from the row (no event built).
            Expr::Keyword(k, v) => {
                let v = v.to_lowercase();
                match k {
                    Keyword::Host => r.host.as_deref().is_some_and(|h| h.to_lowercase() == v),
                    Keyword::App => r.app.as_deref().is_some_and(|a| a.to_lowercase() == v),
                    Keyword::Class => EventClass::NetConnection.as_str() == v,
                    Keyword::Observer => r.obs.observer.as_str() == v,
                    Keyword::Source => r.obs.source.to_lowercase() == v,
                }
            }
            Expr::Ip(net) => mentions(net, &r.ips, r.host.as_deref()),
            // On the fields alone, not a whole event. A row whose fields are its conntrack
            // line's has none but `CONNTRACK_FIELDS`: any other (a report's `vm_uuid:` over
            // a gateway's million rows) is absent without parsing the line.
            leaf @ (Expr::Field { .. } | Expr::FieldNet { .. }) => {
                let Some(t) = r.text.as_ref() else {
                    return false;
                };
                if !t.fields_from_message() {
                    return leaf.matches_fields(&t.fields).unwrap_or(false);
                }
                let name = leaf.field_name().unwrap_or_default();
                if !decode::nat::CONNTRACK_FIELDS.contains(&name.as_str()) {
                    return false;
                }
                let f = self
                    .fields
                    .get_or_insert_with(|| decode::nat::conntrack_fields(&t.message));
                leaf.matches_fields(f).unwrap_or(false)
            }
            // On the message, host and app alone, as `Expr::matches` reads them.
            leaf @ (Expr::Word(_) | Expr::Phrase(_)) => match r.text.as_ref() {
                Some(t) => leaf
                    .matches_text(
                        std::iter::once(t.message.as_str())
                            .chain(r.host.as_deref())
                            .chain(r.app.as_deref()),
                    )
                    .unwrap_or(false),
                // Rows are read with their text whenever the query has such a leaf.
                None => false,
            },
        }
    }
}

/// Every NAT record of the index's attached fact store that `expr` matches, at ledger
/// positions up to `cap`, to `visit` (in no particular order); nothing when none is attached.
pub fn scan(
    index: &SearchIndex,
    expr: &Expr,
    cap: Option<u64>,
    visit: &mut dyn FnMut(FlowKey),
) -> anyhow::Result<()> {
    let Some(nat) = index.nat() else {
        return Ok(());
    };
    let text = needs_text(expr);
    // A query that needs an address: rows that mention none of its ranges are passed over
    // before they are built (an inside address's search over a gateway's million rows).
    let nets = required_nets(expr);
    let keep = |ips: &[IpAddr], host: Option<&str>| {
        nets.as_ref()
            .is_none_or(|nets| nets.iter().any(|net| mentions(net, ips, host)))
    };
    for f in nat.flushes()?.iter() {
        if cap.is_some_and(|c| f.first_seq > c) || !possible(expr, f) {
            continue;
        }
        let rows = if nets.is_some() {
            nat.rows_where(f.id, text, &keep)?
        } else {
            nat.rows(f.id, text)?
        };
        for row in rows {
            if cap.is_some_and(|c| row.obs.seq > c) {
                continue;
            }
            let mut ev = RowEval {
                row: &row,
                fields: None,
            };
            if ev.eval(expr) {
                let time =
                    Timestamp::from_nanosecond(i128::from(row.placed_ns)).unwrap_or(Timestamp::MIN);
                visit(FlowKey {
                    key: DocKey {
                        time,
                        seq: row.obs.seq,
                    },
                    src: row.src,
                });
            }
        }
    }
    Ok(())
}
