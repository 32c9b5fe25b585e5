//! `timeline`: everything known about one VM, address, hostname or user, all sources merged in
//! time order, each line marked with the observer that backs it.
//!
//! Two kinds of line: **events** (ledger records found through the search index, each with
//! its seq) and **facts** (intervals derived from the fact store: a VM holding an address, a
//! VM on a hypervisor). For a VM the events are those naming its UUID plus those mentioning
//! its addresses *while it held them* and those from its hostname while it existed: an
//! address reused by another VM later does not leak into this VM's timeline.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use model::Observer;
use serde::Serialize;
use views::SearchIndex;
use views::facts::{FactStore, VmObs};

use crate::search::{Fetch, SearchRequest, run};
use crate::who::{AddrKind, Lease, conflicts, leases};

/// Whose timeline.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Subject {
    Vm(String),
    Ip(IpAddr),
    Host(String),
    /// A user id, a directory name, a local account or a DN.
    User(String),
}

#[derive(Debug, Clone)]
pub struct TimelineRequest {
    pub subject: Subject,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// At most this many events per underlying search.
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub observer: Observer,
    /// `event` (a ledger record) or `fact` (an interval derived from several).
    pub kind: &'static str,
    /// The ledger record, or for a fact the record that opened it.
    pub seq: u64,
    pub source: String,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub query: Subject,
    pub from: Option<String>,
    pub to: Option<String>,
    pub entries: Vec<Entry>,
    /// True when an underlying search hit its limit: there is more than shown.
    pub truncated: bool,
}

fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn ts(ns: i64) -> Option<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns)).ok()
}

struct Builder<'a> {
    index: &'a SearchIndex,
    fetch: &'a mut dyn Fetch,
    req: &'a TimelineRequest,
    /// Keyed by (time, seq, kind, summary) so the output is in time order, events are not
    /// repeated, and several facts opened by one record all stay.
    entries: BTreeMap<(String, u64, &'static str, String), Entry>,
    truncated: bool,
}

impl Builder<'_> {
    /// Add the events of `query` inside `[from, to)` intersected with the request's window.
    fn events(
        &mut self,
        query: String,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> anyhow::Result<()> {
        let from = match (from, self.req.from) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let to = match (to, self.req.to) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Ok(());
        }
        // The index places events where every query does (`Event::placed`: the collector's
        // time where one exists), so the window is the search's window.
        let out = run(
            self.index,
            &SearchRequest {
                query,
                from,
                to,
                limit: self.req.limit,
                ..SearchRequest::default()
            },
            self.fetch,
        )?;
        self.truncated |= out.truncated;
        for h in out.hits {
            let e = &h.event;
            let mut summary = match (&e.host, &e.app) {
                (Some(host), Some(app)) => format!("{host} {app}: {}", e.message),
                (Some(host), None) => format!("{host}: {}", e.message),
                (None, Some(app)) => format!("{app}: {}", e.message),
                (None, None) => e.message.clone(),
            };
            // A source's own clock is its operator's to set (a VM's is its user's): where a
            // collector's receive time exists, events stand there, with the claim beside it.
            let placed = e.placed();
            if let Some(rep) = e.reported_aside() {
                summary.push_str(&format!(" [reported {rep}]"));
            }
            if from.is_some_and(|f| placed < f) || to.is_some_and(|t| placed >= t) {
                continue;
            }
            let time = placed.to_string();
            self.entries.insert(
                (time.clone(), h.seq, "event", String::new()),
                Entry {
                    time,
                    observer: e.observer,
                    kind: "event",
                    seq: h.seq,
                    source: e.source_kind.clone(),
                    summary,
                },
            );
        }
        Ok(())
    }

    fn fact(&mut self, time_ns: i64, seq: u64, source: &str, summary: String) {
        let in_window = ts(time_ns).is_some_and(|t| {
            self.req.from.is_none_or(|f| t >= f) && self.req.to.is_none_or(|to| t < to)
        });
        if !in_window {
            return;
        }
        let time = rfc3339(time_ns);
        self.entries.insert(
            (time.clone(), seq, "fact", summary.clone()),
            Entry {
                time,
                observer: Observer::Cloud,
                kind: "fact",
                seq,
                source: source.to_string(),
                summary,
            },
        );
    }

    /// Facts and events of one VM: its leases, placements, and what was seen on its addresses
    /// while it held them.
    fn vm(&mut self, store: &FactStore, uuid: &str) -> anyhow::Result<()> {
        let obs = store.vm_observations(uuid)?;
        self.events(format!("vm_uuid:\"{uuid}\""), None, None)?;
        let mut ips: Vec<String> = obs.iter().flat_map(|o| o.ips.clone()).collect();
        ips.sort();
        ips.dedup();
        for ip in ips {
            for l in leases(&obs, AddrKind::Ip, &ip) {
                self.lease_fact(uuid, "ip", &ip, &l);
                self.events(format!("ip:{ip}"), ts(l.from), l.to.and_then(ts))?;
            }
        }
        let mut hostnames: Vec<String> = obs.iter().filter_map(|o| o.hostname.clone()).collect();
        hostnames.sort();
        hostnames.dedup();
        for h in hostnames {
            for l in leases(&obs, AddrKind::Host, &h) {
                self.lease_fact(uuid, "hostname", &h, &l);
                self.events(format!("host:\"{h}\""), ts(l.from), l.to.and_then(ts))?;
            }
        }
        self.placements(uuid, &obs);
        // Disagreements are facts too: shown where the later of their records stands.
        for c in conflicts(&obs) {
            if let Some(o) = obs
                .iter()
                .filter(|o| c.seqs.contains(&o.seq))
                .max_by_key(|o| (o.time_ns, o.seq))
            {
                self.fact(
                    o.time_ns,
                    o.seq,
                    "conflict",
                    format!("CONFLICT ({}) on VM {uuid}: {}", c.kind, c.summary),
                );
            }
        }
        Ok(())
    }

    fn lease_fact(&mut self, uuid: &str, what: &str, value: &str, l: &Lease) {
        let to = l.to.map(rfc3339).unwrap_or_else(|| "now".into());
        self.fact(
            l.from,
            l.opened_by,
            "lease",
            format!("VM {uuid} holds {what} {value} until {to}"),
        );
    }

    fn placements(&mut self, uuid: &str, obs: &[VmObs]) {
        let mut current: Option<&str> = None;
        for o in obs {
            if let Some(h) = o.hypervisor.as_deref()
                && current != Some(h)
            {
                let summary = match current {
                    None => format!("VM {uuid} on hypervisor {h}"),
                    Some(old) => format!("VM {uuid} moves from hypervisor {old} to {h}"),
                };
                self.fact(o.time_ns, o.seq, "placement", summary);
                current = Some(h);
            }
        }
    }
}

/// Build the timeline.
pub fn timeline(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    req: &TimelineRequest,
) -> anyhow::Result<Timeline> {
    let mut b = Builder {
        index,
        fetch,
        req,
        entries: BTreeMap::new(),
        truncated: false,
    };
    match &req.subject {
        Subject::Vm(uuid) => b.vm(store, &uuid.to_lowercase())?,
        Subject::Ip(ip) => {
            let ip_s = ip.to_string();
            b.events(format!("ip:{ip_s}"), None, None)?;
            for uuid in store.vms_with("ip", &ip_s)? {
                let obs = store.vm_observations(&uuid)?;
                for l in leases(&obs, AddrKind::Ip, &ip_s) {
                    b.lease_fact(&uuid, "ip", &ip_s, &l);
                }
            }
        }
        Subject::Host(h) => {
            b.events(format!("host:\"{h}\""), None, None)?;
            for uuid in store.vms_with("hostname", h)? {
                let obs = store.vm_observations(&uuid)?;
                for l in leases(&obs, AddrKind::Host, h) {
                    b.lease_fact(&uuid, "hostname", h, &l);
                }
            }
        }
        Subject::User(u) => {
            let mut ids = store.user_ids_named(u)?;
            ids.push(u.clone());
            ids.sort();
            ids.dedup();
            let quoted = u.replace('"', "");
            let mut terms = vec![
                format!("user:\"{quoted}\""),
                format!("dn:\"{quoted}\""),
                format!("job_owner:\"{quoted}\""),
            ];
            for id in &ids {
                let id = id.replace('"', "");
                terms.push(format!("user_id:\"{id}\""));
            }
            b.events(terms.join(" OR "), None, None)?;
            for id in &ids {
                for uuid in store.vms_owned_by(id)? {
                    let obs = store.vm_observations(&uuid)?;
                    if let Some(first) = obs.first() {
                        b.fact(
                            first.time_ns,
                            first.seq,
                            "owner",
                            format!("VM {uuid} owned by user {id}"),
                        );
                    }
                }
            }
        }
    }
    let truncated = b.truncated;
    Ok(Timeline {
        query: req.subject.clone(),
        from: req.from.map(|t| t.to_string()),
        to: req.to.map(|t| t.to_string()),
        entries: b.entries.into_values().collect(),
        truncated,
    })
}
