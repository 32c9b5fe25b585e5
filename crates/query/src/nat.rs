//! NAT translations: which inside address and port a public address and port stood for at a
//! moment (issue 12), derived on read from the fact store's `nat_obs` records.
//!
//! Records are grouped per connection — protocol, public, inside and peer address and port,
//! conntrack id — and each group is walked in an order that does not depend on arrival (time,
//! then NEW < UPDATE/flow < DESTROY, then ledger position), so a DESTROY stored before its NEW,
//! a record ingested twice, or conntrack and ulogd2 reporting the same entry give one
//! translation. A translation opens at its NEW (or at the connection start a record states —
//! ulogd's `flow.start` —, else at the first record seen) and closes:
//! - at its DESTROY (`end`: `destroy`), or at the flow's last packet for NetFlow/IPFIX records
//!   (`flow_end`, half-open one millisecond after it);
//! - without a DESTROY, at the last record's time plus the timeout conntrack printed on it
//!   (`timeout`: the kernel drops an entry that long after its last update unless traffic
//!   renews it, which an UPDATE would show; with the site kit's `--event-mask NEW,DESTROY`
//!   a lost DESTROY therefore shortens a long TCP connection to its SYN timeout — a missing
//!   answer, never a wrong one);
//! - at the next translation of the same reply tuple (protocol, public and peer address and
//!   port: conntrack keeps that tuple unique at any moment), whichever comes first
//!   (`next_translation`);
//! - else never (`open`: a NEW from ulogd2 whose DESTROY has not arrived).
//!
//! A DESTROY with no NEW opens at the start the record states (ulogd's `flow.start`), else at
//! its time less conntrack's `delta-time` and one second (delta-time is whole seconds, cut
//! down), else at its own time.

use std::collections::HashMap;

use views::facts::NatObs;

/// How a translation's interval ends.
pub const END_DESTROY: &str = "destroy";
pub const END_FLOW: &str = "flow_end";
pub const END_TIMEOUT: &str = "timeout";
pub const END_NEXT: &str = "next_translation";
pub const END_OPEN: &str = "open";

/// One NAT translation, half-open `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub kind: String,
    pub proto: Option<String>,
    pub public_ip: String,
    pub public_port: Option<u16>,
    pub inside_ip: String,
    pub inside_port: Option<u16>,
    pub peer_ip: Option<String>,
    pub peer_port: Option<u16>,
    pub ct_id: Option<String>,
    pub from: i64,
    pub to: Option<i64>,
    /// One of the `END_*` names.
    pub end: &'static str,
    /// The records behind it, in walk order.
    pub records: Vec<NatObs>,
}

impl Translation {
    pub fn covers(&self, t: i64) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}

/// A connection's identity: the records of one key are one conntrack entry's life.
type Key<'a> = (
    Option<&'a str>,
    &'a str,
    Option<u16>,
    &'a str,
    Option<u16>,
    Option<&'a str>,
    Option<u16>,
    Option<&'a str>,
);

fn key(o: &NatObs) -> Key<'_> {
    (
        o.proto.as_deref(),
        &o.public_ip,
        o.public_port,
        &o.inside_ip,
        o.inside_port,
        o.peer_ip.as_deref(),
        o.peer_port,
        o.ct_id.as_deref(),
    )
}

/// The reply tuple conntrack keeps unique at any moment: protocol, public and peer address
/// and port.
type Reply<'a> = (
    Option<&'a str>,
    &'a str,
    Option<u16>,
    Option<&'a str>,
    Option<u16>,
);

/// A translation while it is worked out: the records borrowed, so that pairing the hundreds
/// of thousands of records of a busy gateway address (`who --ip PUBLIC` without `--port`)
/// copies only what the answer keeps. (Owned keys and records were three quarters of that
/// query's 2 s: string copies, their frees, and sorts moving 200-byte records.)
struct Draft<'a> {
    /// The group's first record, which names the connection.
    first: &'a NatObs,
    from: i64,
    to: Option<i64>,
    end: &'static str,
    records: Vec<&'a NatObs>,
}

impl<'a> Draft<'a> {
    fn new(first: &'a NatObs, from: i64) -> Draft<'a> {
        Draft {
            first,
            from,
            to: None,
            end: END_OPEN,
            records: Vec::new(),
        }
    }

    fn covers(&self, t: i64) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }

    fn reply(&self) -> Reply<'a> {
        let f = self.first;
        (
            f.proto.as_deref(),
            &f.public_ip,
            f.public_port,
            f.peer_ip.as_deref(),
            f.peer_port,
        )
    }

    fn translation(self) -> Translation {
        let f = self.first;
        Translation {
            kind: f.kind.clone(),
            proto: f.proto.clone(),
            public_ip: f.public_ip.clone(),
            public_port: f.public_port,
            inside_ip: f.inside_ip.clone(),
            inside_port: f.inside_port,
            peer_ip: f.peer_ip.clone(),
            peer_port: f.peer_port,
            ct_id: f.ct_id.clone(),
            from: self.from,
            to: self.to,
            end: self.end,
            records: self.records.into_iter().cloned().collect(),
        }
    }
}

fn rank(o: &NatObs) -> u8 {
    match o.event.as_str() {
        "new" => 0,
        "destroy" => 2,
        _ => 1,
    }
}

const SECOND: i64 = 1_000_000_000;
const MILLI: i64 = 1_000_000;

/// Every translation the records show (any order, duplicates allowed), sorted by start.
pub fn translations(obs: &[NatObs]) -> Vec<Translation> {
    drafts(obs).into_iter().map(Draft::translation).collect()
}

/// The translations that covered instant `t` (ns): [`translations`] filtered by
/// [`Translation::covers`], in the same order, without copying the others.
pub fn translations_at(obs: &[NatObs], t: i64) -> Vec<Translation> {
    drafts(obs)
        .into_iter()
        .filter(|d| d.covers(t))
        .map(Draft::translation)
        .collect()
}

fn drafts(obs: &[NatObs]) -> Vec<Draft<'_>> {
    // Hashed: the order groups are visited in does not reach the answer (the list is sorted
    // by reply tuple and start below, then by start, first record and key: a total order).
    let mut groups: HashMap<Key<'_>, Vec<&NatObs>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(obs.len() / 2, foldhash::fast::RandomState::default());
    for o in obs {
        groups.entry(key(o)).or_default().push(o);
    }
    let mut out: Vec<Draft<'_>> = Vec::new();
    for (_, mut list) in groups {
        list.sort_by_key(|o| (o.time_ns, rank(o), o.seq));
        list.dedup_by_key(|o| o.seq);
        let first = list[0];
        let blank = |from: i64| Draft::new(first, from);
        // The open translation and the instant its last record's timeout runs out.
        let mut open: Option<(Draft<'_>, Option<i64>)> = None;
        let mut done: Vec<Draft<'_>> = Vec::new();
        for o in list {
            let expiry = o.timeout_s.map(|s| o.time_ns.saturating_add(s * SECOND));
            match o.event.as_str() {
                "flow" => {
                    let from = o.start_ns.unwrap_or(o.time_ns);
                    let to = o.end_ns.unwrap_or(from).max(from) + MILLI;
                    let mut t = blank(from);
                    t.to = Some(to);
                    t.end = END_FLOW;
                    t.records.push(o);
                    if let Some(same) = done
                        .iter_mut()
                        .find(|d| d.end == END_FLOW && d.from == from && d.to == Some(to))
                    {
                        same.records.push(o);
                    } else {
                        done.push(t);
                    }
                }
                "new" => {
                    if let Some((mut t, exp)) = open.take() {
                        let duplicate = t.records.iter().all(|r| r.event == "new")
                            && t.records.first().is_some_and(|r| r.time_ns == o.time_ns);
                        if duplicate {
                            t.records.push(o);
                            open = Some((t, exp));
                            continue;
                        }
                        // The entry ended unseen before this one began.
                        close_unseen(&mut t, exp, o.time_ns);
                        done.push(t);
                    }
                    let mut t = blank(o.start_ns.unwrap_or(o.time_ns).min(o.time_ns));
                    t.records.push(o);
                    open = Some((t, expiry));
                }
                "destroy" => {
                    let to = o.end_ns.unwrap_or(o.time_ns);
                    if let Some((mut t, _)) = open.take() {
                        t.from = t.from.min(o.start_ns.unwrap_or(t.from));
                        t.to = Some(to.max(t.from));
                        t.end = END_DESTROY;
                        t.records.push(o);
                        done.push(t);
                    } else if let Some(prev) = done
                        .iter_mut()
                        .rev()
                        .find(|d| d.end == END_DESTROY && d.to == Some(to))
                    {
                        prev.records.push(o);
                    } else {
                        let from = o
                            .start_ns
                            .or_else(|| {
                                o.lifetime_s
                                    .map(|l| to.saturating_sub((l + 1).saturating_mul(SECOND)))
                            })
                            .unwrap_or(to)
                            .min(to);
                        let mut t = blank(from);
                        t.to = Some(to);
                        t.end = END_DESTROY;
                        t.records.push(o);
                        done.push(t);
                    }
                }
                _ => match &mut open {
                    Some((t, exp)) => {
                        t.records.push(o);
                        if expiry.is_some() {
                            *exp = expiry;
                        }
                    }
                    None => {
                        let mut t = blank(o.start_ns.unwrap_or(o.time_ns).min(o.time_ns));
                        t.records.push(o);
                        open = Some((t, expiry));
                    }
                },
            }
        }
        if let Some((mut t, exp)) = open {
            if let Some(e) = exp {
                t.to = Some(e.max(t.from));
                t.end = END_TIMEOUT;
            }
            done.push(t);
        }
        out.extend(done);
    }
    // Conntrack keeps a reply tuple unique: a translation not closed by its own DESTROY or
    // flow end ends where the next one of the same reply tuple begins.
    out.sort_by_key(|a| (a.reply(), a.from));
    for i in 0..out.len() {
        if matches!(out[i].end, END_DESTROY | END_FLOW) {
            continue;
        }
        let tuple = out[i].reply();
        let from = out[i].from;
        // Sorted by reply tuple: the search ends with the tuple's run (it scanned to the end
        // of the list for every translation without a successor, quadratic in a gateway's
        // records when conntrack logs no DESTROY).
        let next = out[i + 1..]
            .iter()
            .take_while(|n| n.reply() == tuple)
            .find(|n| n.from > from)
            .map(|n| n.from);
        if let Some(n) = next
            && out[i].to.is_none_or(|to| n < to)
        {
            out[i].to = Some(n);
            out[i].end = END_NEXT;
        }
    }
    // By start and first record; the connection's key breaks a tie (a connection's records
    // are deduplicated by position, so within one the first record tells drafts apart): the
    // order is total even where two connections' records share a position (a merged store, a
    // test's generator) and does not depend on the hashed group order above.
    out.sort_by(|a, b| {
        (a.from, a.records.first().map_or(0, |r| r.seq))
            .cmp(&(b.from, b.records.first().map_or(0, |r| r.seq)))
            .then_with(|| key(a.first).cmp(&key(b.first)))
    });
    out
}

/// An open translation superseded by a NEW at `next`: it ended at its timeout if that came
/// first, else where the next began.
fn close_unseen(t: &mut Draft<'_>, expiry: Option<i64>, next: i64) {
    match expiry {
        Some(e) if e <= next => {
            t.to = Some(e.max(t.from));
            t.end = END_TIMEOUT;
        }
        _ => {
            t.to = Some(next.max(t.from));
            t.end = END_NEXT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Observer;

    fn rec(seq: u64, t: i64, event: &str, inside_port: u16, timeout: Option<i64>) -> NatObs {
        NatObs {
            seq,
            time_ns: t * SECOND,
            observer: Observer::Network,
            sender: "192.0.2.1".into(),
            source: "conntrack".into(),
            event: event.into(),
            kind: "snat".into(),
            proto: Some("tcp".into()),
            public_ip: "192.0.2.254".into(),
            public_port: Some(40001),
            inside_ip: "10.0.0.5".into(),
            inside_port: Some(inside_port),
            peer_ip: Some("198.51.100.1".into()),
            peer_port: Some(443),
            ct_id: Some("7".into()),
            start_ns: None,
            end_ns: None,
            timeout_s: timeout,
            lifetime_s: None,
            summary: String::new(),
        }
    }

    fn spans(obs: &[NatObs]) -> Vec<(i64, Option<i64>, &'static str, usize)> {
        translations(obs)
            .into_iter()
            .map(|t| {
                (
                    t.from / SECOND,
                    t.to.map(|x| x / SECOND),
                    t.end,
                    t.records.len(),
                )
            })
            .collect()
    }

    proptest::proptest! {
        /// `translations_at` is `translations` filtered by `covers`, in the same order, over
        /// records of a few connections sharing reply tuples (so `next_translation` closes
        /// some), in any order, with duplicates, some events missing, and no timeouts.
        #[test]
        fn translations_at_is_translations_filtered(
            recs in proptest::collection::vec(
                (0u64..40, 0i64..400, 0usize..4, 0u16..3, 0u16..2, proptest::option::of(1i64..200)),
                1..40,
            ),
            at in proptest::collection::vec(0i64..700, 1..8),
        ) {
            let events = ["new", "update", "destroy", "flow"];
            let obs: Vec<NatObs> = recs
                .iter()
                .map(|&(seq, t, ev, inside, peer, timeout)| {
                    let mut r = rec(seq, t, events[ev], 5000 + inside, timeout);
                    r.peer_port = Some(443 + peer);
                    r.ct_id = Some(format!("{inside}"));
                    if ev == 3 {
                        r.end_ns = Some((t + 5) * SECOND);
                    }
                    r
                })
                .collect();
            let all = translations(&obs);
            for t in at {
                let t = t * SECOND;
                let want: Vec<Translation> = all.iter().filter(|x| x.covers(t)).cloned().collect();
                proptest::prop_assert_eq!(translations_at(&obs, t), want);
            }
        }
    }

    /// Two connections starting at one instant with records at one position (as a merged
    /// store or proptest's generator makes) come out in one order, whatever the hashed
    /// grouping visits first: `translations_at` once disagreed with `translations` on it.
    #[test]
    fn ties_in_start_and_first_record_are_broken_by_the_connection() {
        let mut a = rec(11, 81, "new", 5000, None);
        a.ct_id = Some("0".into());
        let mut b = rec(11, 81, "new", 5001, Some(80));
        b.ct_id = Some("1".into());
        let obs = vec![a, b];
        let first = translations(&obs);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].inside_port, Some(5000));
        // Each call hashes with a fresh random state: 32 calls would see both orders.
        for _ in 0..32 {
            assert_eq!(translations(&obs), first);
            assert_eq!(translations_at(&obs, 81 * SECOND), first);
        }
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let a = vec![
            rec(1, 100, "new", 5000, Some(120)),
            rec(2, 101, "update", 5000, Some(432000)),
            rec(3, 200, "destroy", 5000, None),
        ];
        let mut b = a.clone();
        b.reverse();
        b.push(rec(4, 100, "new", 5000, Some(120)));
        b.push(rec(5, 200, "destroy", 5000, None));
        assert_eq!(spans(&a), [(100, Some(200), END_DESTROY, 3)]);
        assert_eq!(spans(&b), [(100, Some(200), END_DESTROY, 5)]);
    }

    #[test]
    fn without_destroy_the_timeout_or_the_next_translation_ends_it() {
        // NEW with a 120 s timeout, nothing else.
        assert_eq!(
            spans(&[rec(1, 100, "new", 5000, Some(120))]),
            [(100, Some(220), END_TIMEOUT, 1)]
        );
        // ulogd NEW (no timeout), then another VM's connection on the same reply tuple.
        let mut other = rec(2, 150, "new", 6000, None);
        other.inside_ip = "10.0.0.9".into();
        other.ct_id = Some("8".into());
        assert_eq!(
            spans(&[rec(1, 100, "new", 5000, None), other]),
            [(100, Some(150), END_NEXT, 1), (150, None, END_OPEN, 1)]
        );
        // A DESTROY alone: its lifetime, one second widened.
        let mut d = rec(1, 100, "destroy", 5000, None);
        d.lifetime_s = Some(30);
        assert_eq!(spans(&[d]), [(69, Some(100), END_DESTROY, 1)]);
    }
}
