//! `timeline`: everything known about one VM, address, hostname or user, all sources merged in
//! time order, each line marked with the observer that backs it.
//!
//! Two kinds of line: **events** (ledger records found through the search index, each with
//! its seq) and **facts** (intervals derived from the fact store: a VM holding an address, a
//! VM on a hypervisor). For a VM the events are those naming its UUID plus those mentioning
//! its addresses *while it held them* and those from its hostname while it existed: an
//! address reused by another VM later does not leak into this VM's timeline.
//!
//! Every entry carries its [`Attribution`] ([`crate::attrib`]): the VM it belongs to and how
//! that is known. A VM's own records (observer `vm`) enter a VM's timeline only when they are
//! attributed to it (or could be it: ambiguous, shown with every candidate), or when they
//! name its address (another VM's line about it, kept with that VM's tag): a same-named
//! twin's lines never do. `--ip` and `--host` mark each lease: when one VM's hold begins and
//! ends, with its owner. `--host NAME` follows the *held* name by default (what the cloud
//! says: the VMs that held NAME, and what was attributed to them while they did — the same
//! leases `who --host` answers from), or the *claimed* name (every record that says NAME,
//! each tagged with the VM it is attributed to).

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use model::Observer;
use serde::Serialize;
use views::SearchIndex;
use views::facts::{FactStore, VmObs};

use crate::attrib::{Attribution, How, Site};
use crate::search::{Fetch, SearchRequest, run};
use crate::who::{AddrKind, Lease, conflicts, leases, ts_ns};

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
    /// `--host`: follow the name records claim instead of the name the cloud gave.
    pub claimed: bool,
    /// `--lanes N`: also count, per observer, every record the searches match over the whole
    /// window in N time slices ([`Lanes`]), whatever `limit` fetched. 0: no lanes.
    pub lanes: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub observer: Observer,
    /// `event` (a ledger record) or `fact` (an interval derived from several).
    pub kind: &'static str,
    /// The ledger record, or for a fact the record that opened it (for a derived flow, the
    /// datagram holding it).
    pub seq: u64,
    /// A derived flow's place in the datagram at `seq` (`crate::cite`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<crate::cite::FlowJson>,
    pub source: String,
    pub summary: String,
    /// The VM this entry belongs to and how that is known (absent for a fact about no VM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// The decoded record behind an `event` entry (not serialised: the JSON shape stays the
    /// timeline contract); exports (`crate::export`) and reports read its fields.
    #[serde(skip)]
    pub event: Option<Box<model::Event>>,
    /// A connection's or flow's endpoints (`src_ip`, `src_port`, `dst_ip`, `dst_port`,
    /// `proto`), as keys of the entry itself: an extension of the contract (issue 14), absent
    /// for other records.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

/// The endpoints of a connection or flow record, from its normalised fields.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Connection {
    pub src_ip: Option<String>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u16>,
    pub proto: Option<String>,
}

impl Connection {
    /// The endpoints of `e` when it is a connection or a flow (or any record naming both a
    /// source and a destination address).
    pub fn of(e: &model::Event) -> Option<Connection> {
        use model::fields::{DST_IP, DST_PORT, PROTO, SRC_IP, SRC_PORT};
        let net = matches!(
            e.class,
            model::EventClass::NetConnection | model::EventClass::NetFlow
        );
        if !net && (e.field(SRC_IP).is_none() || e.field(DST_IP).is_none()) {
            return None;
        }
        let port = |k| e.field(k).and_then(|p: &str| p.parse().ok());
        Some(Connection {
            src_ip: e.field(SRC_IP).map(str::to_string),
            src_port: port(SRC_PORT),
            dst_ip: e.field(DST_IP).map(str::to_string),
            dst_port: port(DST_PORT),
            proto: e.field(PROTO).map(str::to_string),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub query: Subject,
    /// For `--host`: `held` (the cloud's name, the default) or `claimed` (the records' name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<&'static str>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub entries: Vec<Entry>,
    /// True when an underlying search hit its limit: there is more than shown.
    pub truncated: bool,
    /// With `--lanes N`: how many records each observer has in each slice of the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<Lanes>,
}

/// Per observer, the records a timeline's searches match in each of `slices` equal slices of
/// `[first, last]`, over the whole window and not only the entries fetched: read from the
/// index's fast columns and the flow store, nothing from the ledger, so a busy VM's day is
/// drawn whole while its first entries are listed. Counted before attribution: a record the
/// entries leave out as another VM's (a line under a reused name) is counted here. Each
/// record once, though several searches find it. Facts are not counted (they are entries).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lanes {
    /// The earliest and latest record counted (RFC 3339); absent when none is.
    pub first: Option<String>,
    pub last: Option<String>,
    pub slices: usize,
    /// Observer → records per slice (observers with none left out).
    pub counts: BTreeMap<String, Vec<u64>>,
    /// Records counted.
    pub total: u64,
    /// False when a search's matches could be counted only from its fetched entries (a
    /// phrase the index answers as a superset, or more than 2 million records in all): there
    /// may be more than counted.
    pub complete: bool,
}

fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn ts(ns: i64) -> Option<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns)).ok()
}

/// Which events of a search enter the timeline, by their attribution.
#[derive(Clone, Copy)]
enum Keep<'a> {
    /// Everything found.
    All,
    /// A VM's timeline, searching by something that identifies the VM (its UUID, its
    /// address): a VM's own records only when attributed to it (or ambiguous with it among the
    /// candidates) or, when `names_it`, naming it (another VM's line about its address).
    Vm { uuid: &'a str, names_it: bool },
    /// Records attributed to one of these VMs (or ambiguous among them), whatever the
    /// observer: the held-name timeline.
    Held(&'a [String]),
}

/// Most records a timeline's lanes count: each is held (seq → time, observer) while counted, a
/// few tens of bytes, in a server answering pages; past it a search adds only its fetched
/// entries and the lanes say `complete: false`.
const LANES_MAX: u64 = 2_000_000;

/// Where an entry stands: by time, then `model::flow::order_key` of its position (a derived
/// flow right after the datagram that emitted it), kind and summary.
type EntryKey = (String, (u64, u64), &'static str, String);

/// Records counted for [`Lanes`]: seq → (placed ns, observer).
type Counted = std::collections::HashMap<u64, (i64, Observer)>;

struct Builder<'a> {
    index: &'a SearchIndex,
    fetch: &'a mut dyn Fetch,
    req: &'a TimelineRequest,
    site: &'a Site,
    /// Keyed by (time, seq, kind, summary) so the output is in time order, events are not
    /// repeated, and several facts opened by one record all stay.
    entries: BTreeMap<EntryKey, Entry>,
    truncated: bool,
    /// With `--lanes`: every record the searches match (seq → placed ns, observer), and
    /// whether each search could be counted whole.
    density: Option<(Counted, bool)>,
}

impl Builder<'_> {
    /// Add the events of `query` inside `[from, to)` intersected with the request's window,
    /// those `keep` lets in.
    fn events(
        &mut self,
        query: String,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        keep: Keep<'_>,
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
        let sreq = SearchRequest {
            query,
            from,
            to,
            limit: self.req.limit,
            ..SearchRequest::default()
        };
        let out = run(self.index, &sreq, self.fetch)?;
        self.truncated |= out.truncated;
        if let Some((seen, complete)) = &mut self.density {
            // A search that was not cut fetched every match already; one whose matches would
            // take the count past LANES_MAX adds only its fetched hits (lanes incomplete).
            let keys = if seen.len() as u64 + out.total > LANES_MAX {
                None
            } else if out.truncated {
                crate::search::keys_by_observer(self.index, &sreq, self.fetch)?
            } else {
                Some(
                    out.hits
                        .iter()
                        .map(|h| {
                            let key = views::search::DocKey {
                                time: h.event.placed(),
                                seq: h.seq,
                            };
                            (key, h.event.observer)
                        })
                        .collect(),
                )
            };
            match keys {
                Some(keys) => {
                    seen.extend(keys.into_iter().map(|(k, o)| (k.seq, (ts_ns(k.time), o))))
                }
                None => {
                    *complete = false;
                    seen.extend(
                        out.hits
                            .iter()
                            .map(|h| (h.seq, (ts_ns(h.event.placed()), h.event.observer))),
                    );
                }
            }
        }
        for h in out.hits {
            let e = &h.event;
            let placed = e.placed();
            if from.is_some_and(|f| placed < f) || to.is_some_and(|t| placed >= t) {
                continue;
            }
            let a = self.site.attribute(e);
            let admitted = match keep {
                Keep::All => true,
                Keep::Vm { uuid, names_it } => {
                    e.observer != Observer::Vm || a.is(uuid) || a.may_be(uuid) || names_it
                }
                Keep::Held(vms) => {
                    vms.iter().any(|v| a.is(v)) || a.candidates.iter().any(|c| vms.contains(c))
                }
            };
            if !admitted {
                continue;
            }
            let mut summary = match (&e.host, &e.app) {
                (Some(host), Some(app)) => format!("{host} {app}: {}", e.message),
                (Some(host), None) => format!("{host}: {}", e.message),
                (None, Some(app)) => format!("{app}: {}", e.message),
                (None, None) => e.message.clone(),
            };
            // A source's own clock is its operator's to set (a VM's is its user's): where a
            // collector's receive time exists, events stand there, with the claim beside it.
            if let Some(rep) = e.reported_aside() {
                summary.push_str(&format!(" [reported {rep}]"));
            }
            let time = placed.to_string();
            // A derived flow is cited by its datagram (its position never leaves the process).
            let cite = crate::cite::of(h.seq, e);
            self.entries.insert(
                (
                    time.clone(),
                    model::flow::order_key(h.seq),
                    "event",
                    String::new(),
                ),
                Entry {
                    time,
                    observer: e.observer,
                    kind: "event",
                    seq: cite.map_or(h.seq, |c| c.seq),
                    flow: cite.and_then(|c| c.flow).map(crate::cite::FlowJson::from),
                    source: e.source_kind.clone(),
                    summary,
                    attribution: Some(a),
                    connection: Connection::of(&h.event),
                    event: Some(Box::new(h.event)),
                },
            );
        }
        Ok(())
    }

    fn fact(&mut self, time_ns: i64, seq: u64, source: &str, summary: String, vm: Option<&str>) {
        let in_window = ts(time_ns).is_some_and(|t| {
            self.req.from.is_none_or(|f| t >= f) && self.req.to.is_none_or(|to| t < to)
        });
        if !in_window {
            return;
        }
        let time = rfc3339(time_ns);
        self.entries.insert(
            (
                time.clone(),
                model::flow::order_key(seq),
                "fact",
                summary.clone(),
            ),
            Entry {
                time,
                observer: Observer::Cloud,
                kind: "fact",
                seq,
                flow: None,
                source: source.to_string(),
                summary,
                attribution: vm.map(|v| Attribution {
                    how: How::Uuid,
                    vm: Some(v.to_string()),
                    candidates: Vec::new(),
                    uuid_mismatch: None,
                }),
                event: None,
                connection: None,
            },
        );
    }

    /// Facts and events of one VM: its leases, placements, and what was seen on its addresses
    /// while it held them.
    fn vm(&mut self, store: &FactStore, uuid: &str) -> anyhow::Result<()> {
        let obs = store.vm_observations(uuid)?;
        let this = Keep::Vm {
            uuid,
            names_it: false,
        };
        self.events(format!("vm_uuid:\"{uuid}\""), None, None, this)?;
        // Records claiming to be this VM (the site kit's UUID): its own, and any impostor's,
        // tagged with the VM they are attributed to.
        self.events(
            format!("claimed_vm_uuid:\"{uuid}\""),
            None,
            None,
            Keep::Vm {
                uuid,
                names_it: true,
            },
        )?;
        let mut ips: Vec<String> = obs.iter().flat_map(|o| o.ips.clone()).collect();
        ips.sort();
        ips.dedup();
        // Neutron floating IPs associated to the VM's ports (`Site::insert_floating`) that
        // nova's records do not list: the same searches over each association.
        let floating: Vec<(String, Lease)> = self
            .site
            .ip
            .iter()
            .filter(|(ip, _)| !ips.contains(&ip.to_string()))
            .flat_map(|(ip, held)| {
                held.iter()
                    .filter(|h| h.uuid == uuid)
                    .map(move |h| (ip.to_string(), h.lease))
            })
            .collect();
        for (ip, l) in &floating {
            self.lease_fact(store, uuid, &obs, "floating ip", ip, l)?;
            let names_it = Keep::Vm {
                uuid,
                names_it: true,
            };
            self.events(format!("ip:{ip}"), ts(l.from), l.to.and_then(ts), names_it)?;
        }
        for ip in ips {
            for l in leases(&obs, AddrKind::Ip, &ip) {
                self.lease_fact(store, uuid, &obs, "ip", &ip, &l)?;
                // The VM's own lines from this address, and records naming the address (a
                // hypervisor's connection, another VM's login from it).
                let names_it = Keep::Vm {
                    uuid,
                    names_it: true,
                };
                self.events(format!("ip:{ip}"), ts(l.from), l.to.and_then(ts), names_it)?;
            }
        }
        // What crossed the VM's tap devices while they were its (attribution rule 3): traffic
        // from an address it did not hold, which the address searches above cannot find.
        let me = [uuid.to_string()];
        let taps: Vec<(String, Option<i64>, Option<i64>)> = self
            .site
            .tap
            .iter()
            .flat_map(|(tap, held)| {
                held.iter()
                    .filter(|h| h.uuid == uuid)
                    .map(move |h| (tap.clone(), Some(h.lease.from), h.lease.to))
            })
            .collect();
        for (tap, from, to) in taps {
            let q = ["phys_in", "in_if", "phys_out", "out_if"]
                .map(|f| format!("{f}:\"{tap}\""))
                .join(" OR ");
            self.events(q, from.and_then(ts), to.and_then(ts), Keep::Held(&me))?;
        }
        let mut hostnames: Vec<String> = obs.iter().filter_map(|o| o.hostname.clone()).collect();
        hostnames.sort();
        hostnames.dedup();
        for h in hostnames {
            for l in leases(&obs, AddrKind::Host, &h) {
                self.lease_fact(store, uuid, &obs, "hostname", &h, &l)?;
                // A name says nothing about which VM sent a line: only lines attributed here.
                self.events(format!("host:\"{h}\""), ts(l.from), l.to.and_then(ts), this)?;
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
                    Some(uuid),
                );
            }
        }
        Ok(())
    }

    /// A lease's two boundaries: where the VM's hold begins (with its owner and until when)
    /// and where it ends.
    fn lease_fact(
        &mut self,
        store: &FactStore,
        uuid: &str,
        obs: &[VmObs],
        what: &str,
        value: &str,
        l: &Lease,
    ) -> anyhow::Result<()> {
        let to = l.to.map(rfc3339).unwrap_or_else(|| "now".into());
        let owner = owner_text(store, obs, l.from)?;
        self.fact(
            l.from,
            l.opened_by,
            "lease",
            format!("VM {uuid} holds {what} {value} until {to} (owner {owner})"),
            Some(uuid),
        );
        if let (Some(end), Some(by)) = (l.to, l.closed_by) {
            self.fact(
                end,
                by,
                "lease",
                format!(
                    "VM {uuid} no longer holds {what} {value} (held since {}, owner {owner})",
                    rfc3339(l.from)
                ),
                Some(uuid),
            );
        }
        Ok(())
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
                self.fact(o.time_ns, o.seq, "placement", summary, Some(uuid));
                current = Some(h);
            }
        }
    }
}

/// `user USER_ID (NAME) / project PROJECT_ID (NAME)` as of `t` (the last ids at or before it,
/// else the first known), names through the directory; `unknown` where nothing says.
fn owner_text(store: &FactStore, obs: &[VmObs], t: i64) -> anyhow::Result<String> {
    let pick = |get: fn(&VmObs) -> Option<&String>| {
        obs.iter()
            .rfind(|o| o.time_ns <= t && get(o).is_some())
            .or_else(|| obs.iter().find(|o| get(o).is_some()))
            .and_then(get)
            .cloned()
    };
    let user = pick(|o| o.user_id.as_ref());
    let project = pick(|o| o.project_id.as_ref());
    let named = |id: Option<String>, name: Option<String>| match (id, name) {
        (Some(id), Some(n)) => format!("{id} ({n})"),
        (Some(id), None) => id,
        _ => "unknown".to_string(),
    };
    let uname = match &user {
        Some(id) => store.user(id)?.and_then(|d| d.name),
        None => None,
    };
    let pname = match &project {
        Some(id) => store.project(id)?.and_then(|d| d.name),
        None => None,
    };
    Ok(format!(
        "user {} / project {}",
        named(user, uname),
        named(project, pname)
    ))
}

/// Build the timeline (loads the site's leases for attribution).
pub fn timeline(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    req: &TimelineRequest,
) -> anyhow::Result<Timeline> {
    let site = Site::load(store)?;
    timeline_in(index, store, &site, fetch, req)
}

/// A VM's image custody (class `vm.custody`: captured, held, exported, purged, …) at any
/// time, not only inside a window: what `report` shows beside the VM's life, since a disk is
/// kept (and purged) long after the moment asked about.
pub fn custody_in(
    index: &SearchIndex,
    site: &Site,
    fetch: &mut dyn Fetch,
    uuid: &str,
    limit: usize,
) -> anyhow::Result<(Vec<Entry>, bool)> {
    let uuid = uuid.to_lowercase();
    let req = TimelineRequest {
        subject: Subject::Vm(uuid.clone()),
        from: None,
        to: None,
        limit,
        claimed: false,
        lanes: 0,
    };
    let mut b = Builder {
        index,
        fetch,
        req: &req,
        site,
        entries: BTreeMap::new(),
        truncated: false,
        density: None,
    };
    b.events(
        format!("class:vm.custody vm_uuid:\"{uuid}\""),
        None,
        None,
        Keep::All,
    )?;
    Ok((b.entries.into_values().collect(), b.truncated))
}

/// A timeline's searches overlap (a VM's line carries its UUID, its address and its name):
/// each record is read and decoded from the ledger once per timeline, then cloned.
struct Memo<'a> {
    inner: &'a mut dyn Fetch,
    seen: std::collections::HashMap<u64, model::Event>,
}

impl Fetch for Memo<'_> {
    fn fetch(&mut self, seq: u64) -> anyhow::Result<model::Event> {
        if let Some(e) = self.seen.get(&seq) {
            return Ok(e.clone());
        }
        let e = self.inner.fetch(seq)?;
        self.seen.insert(seq, e.clone());
        Ok(e)
    }

    fn fetch_many(&mut self, seqs: &[u64]) -> Vec<anyhow::Result<model::Event>> {
        let missing: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|s| !self.seen.contains_key(s))
            .collect();
        let mut failed = std::collections::HashMap::new();
        for (seq, e) in missing.iter().zip(self.inner.fetch_many(&missing)) {
            match e {
                Ok(e) => {
                    self.seen.insert(*seq, e);
                }
                Err(e) => {
                    failed.insert(*seq, e);
                }
            }
        }
        seqs.iter()
            .map(|s| match failed.remove(s) {
                Some(e) => Err(e),
                None => self
                    .seen
                    .get(s)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("ledger record #{s} not read")),
            })
            .collect()
    }
}

/// Build the timeline with a site already loaded (a report asks for several).
pub fn timeline_in(
    index: &SearchIndex,
    store: &FactStore,
    site: &Site,
    fetch: &mut dyn Fetch,
    req: &TimelineRequest,
) -> anyhow::Result<Timeline> {
    let mut memo = Memo {
        inner: fetch,
        seen: std::collections::HashMap::new(),
    };
    let mut b = Builder {
        index,
        fetch: &mut memo,
        req,
        site,
        entries: BTreeMap::new(),
        truncated: false,
        density: (req.lanes > 0).then(|| (std::collections::HashMap::new(), true)),
    };
    let mut follows = None;
    match &req.subject {
        Subject::Vm(uuid) => b.vm(store, &uuid.to_lowercase())?,
        Subject::Ip(ip) => {
            let ip_s = ip.to_string();
            b.events(format!("ip:{ip_s}"), None, None, Keep::All)?;
            for uuid in store.vms_with("ip", &ip_s)? {
                let obs = store.vm_observations(&uuid)?;
                for l in leases(&obs, AddrKind::Ip, &ip_s) {
                    b.lease_fact(store, &uuid, &obs, "ip", &ip_s, &l)?;
                }
            }
        }
        Subject::Host(h) => {
            follows = Some(if req.claimed { "claimed" } else { "held" });
            let holders = store.vms_with("hostname", h)?;
            if req.claimed {
                b.events(format!("host:\"{h}\""), None, None, Keep::All)?;
            }
            for uuid in &holders {
                let obs = store.vm_observations(uuid)?;
                for l in leases(&obs, AddrKind::Host, h) {
                    b.lease_fact(store, uuid, &obs, "hostname", h, &l)?;
                    if req.claimed {
                        continue;
                    }
                    // What the VM did while it held the name: lines under the name and
                    // from its addresses, kept when attributed to it.
                    let (from, to) = (ts(l.from), l.to.and_then(ts));
                    let me = std::slice::from_ref(uuid);
                    b.events(format!("host:\"{h}\""), from, to, Keep::Held(me))?;
                    let mut ips: Vec<&String> = obs.iter().flat_map(|o| &o.ips).collect();
                    ips.sort();
                    ips.dedup();
                    for ip in ips {
                        for il in leases(&obs, AddrKind::Ip, ip) {
                            let f = il.from.max(l.from);
                            let t = match (il.to, l.to) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                            if t.is_some_and(|t| t <= f) {
                                continue;
                            }
                            b.events(format!("ip:{ip}"), ts(f), t.and_then(ts), Keep::Held(me))?;
                        }
                    }
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
            b.events(terms.join(" OR "), None, None, Keep::All)?;
            for id in &ids {
                for uuid in store.vms_owned_by(id)? {
                    let obs = store.vm_observations(&uuid)?;
                    if let Some(first) = obs.first() {
                        b.fact(
                            first.time_ns,
                            first.seq,
                            "owner",
                            format!("VM {uuid} owned by user {id}"),
                            Some(&uuid),
                        );
                    }
                }
            }
        }
    }
    let truncated = b.truncated;
    let lanes = b
        .density
        .take()
        .map(|(seen, complete)| lanes(&seen, req.lanes, complete));
    Ok(Timeline {
        query: req.subject.clone(),
        follows,
        from: req.from.map(|t| t.to_string()),
        to: req.to.map(|t| t.to_string()),
        entries: b.entries.into_values().collect(),
        truncated,
        lanes,
    })
}

/// The records counted for [`Lanes`], sliced.
fn lanes(seen: &Counted, slices: usize, complete: bool) -> Lanes {
    let lo = seen.values().map(|v| v.0).min();
    let hi = seen.values().map(|v| v.0).max();
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    if let (Some(lo), Some(hi)) = (lo, hi) {
        // Slice i is [lo + i·w, lo + (i+1)·w); the latest record falls in the last.
        let span = i128::from(hi) - i128::from(lo) + 1;
        for &(t, o) in seen.values() {
            let i = ((i128::from(t) - i128::from(lo)) * slices as i128 / span) as usize;
            counts
                .entry(o.as_str().to_string())
                .or_insert_with(|| vec![0; slices])[i.min(slices - 1)] += 1;
        }
    }
    Lanes {
        first: lo.map(rfc3339),
        last: hi.map(rfc3339),
        slices,
        counts,
        total: seen.len() as u64,
        complete,
    }
}

/// Nanoseconds of a timestamp (for callers holding [`Entry::time`] parsed back).
pub fn entry_ns(t: Timestamp) -> i64 {
    ts_ns(t)
}
