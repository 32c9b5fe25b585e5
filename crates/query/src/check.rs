//! `check`: the sources held against each other (issue 5 "Cross-checks"). No one source is
//! trusted in itself; a VM's own syslog (forgeable by whoever is root in it) is checked against
//! the cloud's leases and the hypervisor's and network's view of its traffic, and every
//! sender's clock against the collector's.
//!
//! Findings, each with its kind, the entities, the time and the evidence on both sides:
//! - `forged_hostname`: VM syslog from an address whose lease then belongs to a VM with
//!   another hostname (live senders), or claiming a hostname no VM held then;
//! - `uuid_mismatch`: VM syslog claiming an instance UUID (the site kit's
//!   `[pugmark@32473 vm_uuid=…]`) while another VM held the sender's address: both VMs, the
//!   address and the record;
//! - `silent_vm`: a VM that logged, then fell silent while alive, while the hypervisor or the
//!   network still saw its address active. Only records *attributed* to the VM
//!   ([`crate::attrib`]) count as its logging: a same-named twin's lines, or lines that could
//!   be either twin's (ambiguous), keep neither alive;
//! - `unknown_host`: hypervisor or network connections (and flows) from a site address no VM
//!   held then; records stored under another observer (a sender the collector's sender map
//!   did not vouch for) are no such evidence;
//! - `clock_skew`, `clock_backwards`, `clock_future`, `clock_jump`: per sender;
//! - `spoofed_source`: a hypervisor connection that came out of a VM's tap device
//!   (`PHYSIN`/`IN`, [`crate::attrib`] rule 3) with a source address that VM did not hold then
//!   (unspecified and link-local sources aside): the tap's VM, the address, and the VMs that
//!   held it then (or none), folded per (VM, address);
//! - `orphan_payload`: a VO payload run on an address no VM held at its start;
//! - `conflict`: sources disagreeing on a fact (owner, lifecycle — [`crate::who::conflicts`] —
//!   and one address leased to two VMs at once);
//! - `custody_failed`: the image quarantine recorded that it could not keep (or purge) a VM's
//!   disk, and has not kept it since (issue 13: a full volume, refused input, storage down).
//!
//! Time of VM-internal events: a live sender's events are placed by the received time (the
//! collector's clock, which the VM cannot set), with the reported time shown beside it; so are
//! the lines of a central logger's archive (`relay_received`, `relay_from`: that logger's clock
//! and the peer address it saw). Other file imports have no trustworthy receipt time (it is the
//! import's), so they use the reported time, and have no sender address to hold a hostname to.
//! Findings of one kind about one entity are folded into one finding with a count, the first
//! and last occurrences as evidence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{Event, EventClass, Observer, Origin};
use serde::Serialize;
use views::SearchIndex;
use views::facts::FactStore;

use crate::attrib::{Held, Site, TapDir, canonical, obs_json, short};
use crate::lang::{self, Expr, Net};
use crate::search::{Fetch, SearchRequest};
use crate::who::{EvidenceJson, conflicts, rfc3339, ts_ns as ns};

/// What to check and how strictly.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Clock skew (reported vs received) and backwards steps beyond this are findings.
    pub tolerance: SignedDuration,
    /// A VM that logged nothing for this long while its address was active is silent.
    pub silence: SignedDuration,
    /// The site's address space for `unknown_host`. Empty: every /24 (IPv4) or /64 (IPv6)
    /// holding an address some VM ever leased.
    pub site_nets: Vec<Net>,
    /// Read flows and connections by fetching and decoding every event from the ledger
    /// instead of from the index's fast columns: slower by orders of magnitude, same answer
    /// (the oracle the fast path is tested against).
    pub net_from_events: bool,
}

impl Default for CheckRequest {
    fn default() -> Self {
        CheckRequest {
            from: None,
            to: None,
            tolerance: SignedDuration::from_mins(5),
            silence: SignedDuration::from_mins(30),
            site_nets: Vec::new(),
            net_from_events: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    /// RFC 3339, the first occurrence.
    pub time: String,
    /// The VMs, addresses, hostnames, senders or jobs involved.
    pub entities: Vec<String>,
    pub summary: String,
    /// Occurrences folded into this finding.
    pub count: u64,
    /// Records on each side (first and last occurrence, and what contradicts them).
    pub evidence: Vec<EvidenceJson>,
}

impl Finding {
    /// The VMs this finding suspects of having done it (what the quarantine holds: `check`
    /// with a quarantine store): the tap's VM of a `spoofed_source` (not the VMs whose address
    /// it used), the VMs that held the sender's address of a `forged_hostname` or
    /// `uuid_mismatch` (not the VM whose identity was claimed), the VM of a `silent_vm`.
    /// Other kinds name no suspect VM (senders, jobs, addresses no VM held, disagreeing
    /// sources).
    pub fn suspects(&self) -> Vec<&str> {
        let from = match self.kind {
            "spoofed_source" | "silent_vm" => {
                return self.entities.iter().take(1).map(String::as_str).collect();
            }
            "forged_hostname" | "uuid_mismatch" => 2,
            _ => return Vec::new(),
        };
        self.entities
            .iter()
            .skip(from)
            .map(String::as_str)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub from: Option<String>,
    pub to: Option<String>,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub findings: Vec<Finding>,
    /// Events examined, by what they were examined for.
    pub examined: BTreeMap<&'static str, u64>,
}

fn ev_json(seq: u64, e: &Event, time_ns: i64) -> EvidenceJson {
    let mut summary = match &e.host {
        Some(h) => format!("{h}: {}", e.message),
        None => e.message.clone(),
    };
    if summary.len() > 200 {
        let mut cut = 200;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    // Placed by one clock, the other shown beside it.
    if let Some(rep) = e.reported.time
        && ns(rep) != time_ns
    {
        summary.push_str(&format!(" [reported {rep}]"));
    }
    EvidenceJson {
        time: rfc3339(time_ns),
        seq,
        observer: e.observer,
        source: e.source_kind.clone(),
        summary,
    }
}

/// The sender's address of a live record, or of a record from a central logger's archive
/// (the `relay_from` its logger wrote; see decode's syslog module): [`Event::sender_ip`].
fn peer_ip(e: &Event) -> Option<IpAddr> {
    e.sender_ip()
}

/// When a collector received the record ([`Event::collected`]), in nanoseconds.
fn collected_at(e: &Event) -> Option<i64> {
    e.collected().map(ns)
}

/// Where a VM-internal event stands in time (see the module docs).
fn vm_time(e: &Event) -> i64 {
    ns(e.placed())
}

/// Folds occurrences of one (kind, key) into one finding: the first occurrence with its
/// counter-evidence, and the latest one.
#[derive(Default)]
struct Folder {
    open: BTreeMap<(&'static str, String), (Finding, usize)>,
}

impl Folder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: &'static str,
        key: String,
        time_ns: i64,
        entities: impl FnOnce() -> Vec<String>,
        summary: impl FnOnce() -> String,
        this: EvidenceJson,
        other: impl FnOnce() -> Vec<EvidenceJson>,
    ) {
        match self.open.get_mut(&(kind, key.clone())) {
            Some((f, first_len)) => {
                f.count += 1;
                f.evidence.truncate(*first_len);
                f.evidence.push(this);
            }
            None => {
                let mut evidence = vec![this];
                evidence.extend(other());
                let first_len = evidence.len();
                self.open.insert(
                    (kind, key),
                    (
                        Finding {
                            kind,
                            time: rfc3339(time_ns),
                            entities: entities(),
                            summary: summary(),
                            count: 1,
                            evidence,
                        },
                        first_len,
                    ),
                );
            }
        }
    }

    fn push(&mut self, f: Finding) {
        let key = (f.kind, format!("{}#{}", f.entities.join(","), f.time));
        let n = f.evidence.len();
        self.open.entry(key).or_insert((f, n));
    }
}

/// The ledger positions of the events matching `query` (and `class`) in the window widened by
/// `slack`, in ledger order, with the expression to confirm candidates when the index alone is
/// not exact. Only positions are held: events are fetched one at a time while walking, so a
/// day of millions of events is walked in bounded memory (the ledger reader keeps the current
/// block, so walking in ledger order decompresses each block once).
fn positions(
    index: &SearchIndex,
    fetch: &mut dyn Fetch,
    query: &str,
    class: Option<EventClass>,
    req: &CheckRequest,
    slack: SignedDuration,
) -> anyhow::Result<(Vec<u64>, Option<Expr>)> {
    let sreq = SearchRequest {
        query: query.to_string(),
        from: req.from.and_then(|f| f.checked_sub(slack).ok()),
        to: req.to.and_then(|t| t.checked_add(slack).ok()),
        class,
        ..SearchRequest::default()
    };
    let expr = sreq.expr()?;
    let (iq, exact) = lang::lower(&expr);
    let iq = crate::flows::index_part(index, iq)?;
    let mut seqs: Vec<u64> = index.all_by_time(&iq)?.into_iter().map(|k| k.seq).collect();
    // Flows from the flow store: already exact, so confirming them again is harmless.
    let cap = index.flows_cap();
    crate::flows::scan(index, &expr, cap, fetch, &mut |f| seqs.push(f.key.seq))?;
    seqs.sort_unstable();
    Ok((seqs, (!exact).then_some(expr)))
}

/// One kind of occurrence folded: the first and last in walk order (walk, seq, time) and how
/// many. Order-independent, so rows may arrive in any order (the index's segments) and the
/// answer is still what a walk in ledger order gives.
#[derive(Clone, Copy)]
struct Occ {
    first: (u8, u64, i64),
    last: (u8, u64, i64),
    count: u64,
}

impl Occ {
    fn new(at: (u8, u64, i64)) -> Occ {
        Occ {
            first: at,
            last: at,
            count: 1,
        }
    }

    fn add(&mut self, at: (u8, u64, i64)) {
        if (at.0, at.1) < (self.first.0, self.first.1) {
            self.first = at;
        }
        if (at.0, at.1) > (self.last.0, self.last.1) {
            self.last = at;
        }
        self.count += 1;
    }
}

/// Cross-checks 2 and 3 over flows and connections, one row at a time.
struct NetAgg<'a> {
    /// Per address: the leases, each with the time after which its VM counts as silent
    /// (`None`: the VM never logged).
    holders: HashMap<IpAddr, Vec<(&'a Held, Option<i64>)>>,
    nets: &'a [Net],
    /// Site addresses nobody held, per address.
    unknown: HashMap<IpAddr, Occ>,
    /// Activity on a VM's address after it fell silent, per VM.
    active: HashMap<&'a str, Occ>,
    n: u64,
}

impl NetAgg<'_> {
    fn note(&mut self, walk: u8, seq: u64, t: i64, src: Option<IpAddr>) {
        self.n += 1;
        let Some(src) = src else { return };
        let at = (walk, seq, t);
        let mut held = false;
        for (h, quiet_from) in self.holders.get(&src).map(Vec::as_slice).unwrap_or(&[]) {
            if !h.lease.covers(t) {
                continue;
            }
            held = true;
            if quiet_from.is_some_and(|q| t > q) {
                self.active
                    .entry(h.uuid.as_str())
                    .and_modify(|o| o.add(at))
                    .or_insert_with(|| Occ::new(at));
            }
        }
        if !held && self.nets.iter().any(|n| n.contains(src)) {
            self.unknown
                .entry(src)
                .and_modify(|o| o.add(at))
                .or_insert_with(|| Occ::new(at));
        }
    }
}

/// Per-sender clock state while walking its records in ledger order.
#[derive(Default)]
struct Clock {
    /// The latest reported time so far, and where.
    high: Option<(i64, u64)>,
    last_skew: Option<i64>,
}

fn sender_key(e: &Event) -> String {
    match &e.origin {
        Origin::Peer { addr, listener } => format!(
            "{}@{listener}",
            peer_ip(e)
                .map(|i| i.to_string())
                .unwrap_or_else(|| addr.clone())
        ),
        // A TLS client is known by its certificate, whatever address it comes from.
        Origin::AuthenticatedPeer {
            identity, listener, ..
        } => format!("{identity}@{listener}"),
        // An archive line is known by the address its logger saw, whichever file holds it.
        Origin::File { .. } if e.field(model::fields::RELAY_FROM).is_some() => format!(
            "{}@archive",
            peer_ip(e)
                .map(|i| i.to_string())
                .or_else(|| e.field(model::fields::RELAY_FROM).map(str::to_string))
                .unwrap_or_default()
        ),
        Origin::File { path, .. } => format!("{}@{path}", e.host.as_deref().unwrap_or("-")),
        // A per-host file is known by the address its path names.
        Origin::FileFromSender { sender, .. } => format!(
            "{}@archive",
            peer_ip(e)
                .map(|i| i.to_string())
                .unwrap_or_else(|| sender.clone())
        ),
    }
}

/// Run every cross-check over `[from, to)`.
pub fn check(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    req: &CheckRequest,
) -> anyhow::Result<CheckReport> {
    let site = Site::load(store)?;
    let in_range =
        |t: i64| req.from.is_none_or(|f| t >= ns(f)) && req.to.is_none_or(|to| t < ns(to));
    let tol = i64::try_from(req.tolerance.as_nanos()).unwrap_or(i64::MAX);
    // VM-internal events may be placed by their received time while the index orders by the
    // reported one: widen the window and filter exactly afterwards.
    let slack = req
        .tolerance
        .checked_add(SignedDuration::from_hours(24))
        .unwrap_or(req.tolerance);
    let mut folder = Folder::default();
    let mut examined: BTreeMap<&'static str, u64> = BTreeMap::new();

    // 1. VM syslog against the leases; 4. every sender's clock.
    let (vm_seqs, vm_expr) = positions(index, fetch, "observer:vm", None, req, slack)?;
    let mut n_vm = 0u64;
    // Last VM-internal record per VM (time, seq), for silence.
    let mut last_said: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    let mut clocks: BTreeMap<String, Clock> = BTreeMap::new();
    for seq in vm_seqs {
        let e = fetch.fetch(seq)?;
        if vm_expr.as_ref().is_some_and(|x| !x.matches(&e)) {
            continue;
        }
        let t = vm_time(&e);
        if !in_range(t) {
            continue;
        }
        n_vm += 1;
        // A sender is its address (or certificate), and an address passes from VM to VM
        // all day: each holder's clock is its own, so clock state is per (sender, holder).
        // (Not per attributed VM: without a sender address a record is placed by its own
        // clock, and a hostname lease looked up at a wrong time would split one clock.)
        let peer = peer_ip(&e);
        let holders: Vec<&Held> = peer.map(|ip| site.ip_at(ip, t)).unwrap_or_default();
        let holder = match holders.as_slice() {
            [one] => Some(one.uuid.as_str()),
            _ => None,
        };
        let sender = sender_key(&e);
        let key = format!("{sender}#{}", holder.unwrap_or(""));
        let state = clocks.entry(key.clone()).or_default();
        clock(&mut folder, state, seq, &e, t, tol, (&sender, &key, holder));
        // Only the VM a record is attributed to is alive by it: a twin's lines under the
        // same claimed name, or a line that could be either twin's, keep nobody alive.
        let attributed = site.attribute_at(&e, t);
        if let Some(uuid) = attributed.vm.as_deref() {
            let l = last_said.entry(uuid.to_string()).or_insert((t, seq));
            if t >= l.0 {
                *l = (t, seq);
            }
        }
        if let Some(m) = &attributed.uuid_mismatch {
            folder.add(
                "uuid_mismatch",
                format!("{}|{}", m.address, m.claimed),
                t,
                || {
                    let mut v = vec![m.address.clone(), m.claimed.clone()];
                    v.extend(m.holders.iter().cloned());
                    v
                },
                || {
                    format!(
                        "syslog from {} claims to be VM {}, but {} was leased to {}",
                        m.address,
                        m.claimed,
                        m.address,
                        m.holders.join(", ")
                    )
                },
                ev_json(seq, &e, t),
                || {
                    let mut v: Vec<EvidenceJson> = holders
                        .iter()
                        .filter_map(|h| site.evidence_for(h))
                        .collect();
                    if let Some(o) = site.observations(&m.claimed).first() {
                        v.push(obs_json(o));
                    }
                    v
                },
            );
        }
        let Some(claimed) = e.host.as_deref() else {
            continue;
        };
        let by_host = site.host_at(claimed, t);
        if let Some(ip) = peer {
            let real: Vec<(&Held, Option<&str>)> = holders
                .iter()
                .map(|h| (*h, site.hostname_of(&h.uuid, t)))
                .collect();
            if !real.is_empty()
                && !real
                    .iter()
                    .any(|(_, name)| name.is_some_and(|n| short(n) == short(claimed)))
            {
                let names: Vec<String> = real
                    .iter()
                    .map(|(h, n)| format!("{} ({})", h.uuid, n.unwrap_or("no hostname")))
                    .collect();
                folder.add(
                    "forged_hostname",
                    format!("{ip}|{}", short(claimed)),
                    t,
                    || {
                        let mut v = vec![ip.to_string(), claimed.to_string()];
                        v.extend(real.iter().map(|(h, _)| h.uuid.clone()));
                        v
                    },
                    || {
                        format!(
                            "syslog from {ip} claims to be {claimed}, but {ip} was leased to {}",
                            names.join(", ")
                        )
                    },
                    ev_json(seq, &e, t),
                    || {
                        real.iter()
                            .filter_map(|(h, _)| site.evidence_for(h))
                            .collect()
                    },
                );
                continue;
            }
        }
        if by_host.is_empty() && peer.is_none_or(|ip| site.ip_at(ip, t).is_empty()) {
            folder.add(
                "forged_hostname",
                format!("|{}", short(claimed)),
                t,
                || vec![claimed.to_string()],
                || format!("VM syslog claims hostname {claimed}, which no VM held at that time"),
                ev_json(seq, &e, t),
                Vec::new,
            );
        }
    }
    examined.insert("vm_syslog", n_vm);

    // 2, 3. What the hypervisors and the network saw.
    let nets = if req.site_nets.is_empty() {
        site.default_nets()
    } else {
        req.site_nets.clone()
    };
    let silence = i64::try_from(req.silence.as_nanos()).unwrap_or(i64::MAX);
    // Who held each address, and from when on each VM counts as silent.
    let mut holders: HashMap<IpAddr, Vec<(&Held, Option<i64>)>> = HashMap::new();
    for (ip, held) in &site.ip {
        holders.insert(
            *ip,
            held.iter()
                .map(|h| {
                    let quiet_from = last_said
                        .get(&h.uuid)
                        .map(|&(said, _)| said.saturating_add(silence));
                    (h, quiet_from)
                })
                .collect(),
        );
    }
    let mut agg = NetAgg {
        holders,
        nets: &nets,
        unknown: HashMap::new(),
        active: HashMap::new(),
        n: 0,
    };
    let mut walks = vec![(
        "observer:hypervisor OR observer:network",
        Some(EventClass::NetConnection),
    )];
    // NetFlow records, where this build knows them; only flows from exporters the sender
    // map trusts (a flow stored as `vm` came from a sender nobody vouched for).
    if let Ok(flow) = "net.flow".parse::<EventClass>() {
        walks.push(("observer:network OR observer:hypervisor", Some(flow)));
    }
    for (walk, (query, class)) in walks.into_iter().enumerate() {
        let walk = u8::try_from(walk).unwrap_or(u8::MAX);
        let sreq = SearchRequest {
            query: query.to_string(),
            from: req.from,
            to: req.to,
            class,
            ..SearchRequest::default()
        };
        let expr = sreq.expr()?;
        let (iq, exact) = lang::lower(&expr);
        let iq = crate::flows::index_part(index, iq)?;
        // Flows from the flow store (exact): seq, placed time and source from the rows.
        let cap = index.flows_cap();
        crate::flows::scan(index, &expr, cap, fetch, &mut |f| {
            let t = ns(f.key.time);
            if in_range(t) {
                agg.note(walk, f.key.seq, t, f.src.map(canonical));
            }
        })?;
        if exact && !req.net_from_events {
            // The fast path: seq, time and source address from the index's fast columns.
            index.scan_src(&iq, &mut |row| {
                if in_range(row.time_ns) {
                    agg.note(walk, row.seq, row.time_ns, row.src.map(canonical));
                }
            })?;
        } else {
            // Every event fetched and decoded (the oracle for the fast path, and the way for
            // queries the index cannot answer exactly).
            let mut seqs: Vec<u64> = index.all_by_time(&iq)?.into_iter().map(|k| k.seq).collect();
            seqs.sort_unstable();
            for seq in seqs {
                let e = fetch.fetch(seq)?;
                if !exact && !expr.matches(&e) {
                    continue;
                }
                let t = ns(e.placed());
                if !in_range(t) {
                    continue;
                }
                let src = e
                    .field(model::fields::SRC_IP)
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .map(canonical);
                agg.note(walk, seq, t, src);
            }
        }
    }
    examined.insert("connections", agg.n);
    let mut unknown: Vec<(IpAddr, Occ)> = agg.unknown.into_iter().collect();
    unknown.sort_by_key(|(ip, _)| *ip);
    for (src, occ) in unknown {
        let (_, seq, t) = occ.first;
        let e = fetch.fetch(seq)?;
        let mut evidence = vec![ev_json(seq, &e, t)];
        if occ.count > 1 {
            let (_, lseq, lt) = occ.last;
            evidence.push(ev_json(lseq, &fetch.fetch(lseq)?, lt));
        }
        folder.open.insert(
            ("unknown_host", src.to_string()),
            (
                Finding {
                    kind: "unknown_host",
                    time: rfc3339(t),
                    entities: vec![src.to_string()],
                    summary: format!(
                        "{} saw traffic from site address {src}, which no VM held at that time",
                        e.observer
                    ),
                    count: occ.count,
                    evidence,
                },
                1,
            ),
        );
    }
    let active_after: BTreeMap<String, (u64, i64, u64)> = agg
        .active
        .into_iter()
        .map(|(uuid, occ)| (uuid.to_string(), (occ.first.1, occ.first.2, occ.count)))
        .collect();
    for (uuid, (seq, t, n)) in active_after {
        let (said, said_seq) = last_said.get(&uuid).copied().unwrap_or((0, 0));
        let mut evidence = Vec::new();
        if let Ok(e) = fetch.fetch(seq) {
            evidence.push(ev_json(seq, &e, t));
        }
        if let Ok(e) = fetch.fetch(said_seq) {
            evidence.push(ev_json(said_seq, &e, said));
        }
        folder.push(Finding {
            kind: "silent_vm",
            time: rfc3339(t),
            entities: vec![uuid.clone()],
            summary: format!(
                "VM {uuid} last logged at {}, but its address was active {n} times more than {:#} later",
                rfc3339(said),
                req.silence
            ),
            count: n,
            evidence,
        });
    }

    // 5. Payload runs with no VM under them.
    let jobs = store.all_jobs()?;
    examined.insert("jobs", jobs.len() as u64);
    let mut seen_jobs = BTreeSet::new();
    for j in &jobs {
        let (Some(ip), Some(start)) = (&j.exec_ip, j.start_ns) else {
            continue;
        };
        if !in_range(start) || !seen_jobs.insert(j.job_id.clone()) {
            continue;
        }
        let Ok(addr) = ip.parse::<IpAddr>() else {
            continue;
        };
        if site.ip_at(addr, start).is_empty() {
            folder.push(Finding {
                kind: "orphan_payload",
                time: rfc3339(start),
                entities: vec![j.job_id.clone(), ip.clone()],
                summary: format!(
                    "job {} of {} ran on {ip} at {}, an address no VM held then",
                    j.job_id,
                    j.dn.as_deref().or(j.owner.as_deref()).unwrap_or("unknown"),
                    rfc3339(start)
                ),
                count: 1,
                evidence: vec![EvidenceJson {
                    time: rfc3339(j.time_ns),
                    seq: j.seq,
                    observer: Observer::Vo,
                    source: "job".into(),
                    summary: j.summary.clone(),
                }],
            });
        }
    }

    // 6. Conflicts: a VM's own records, and one address leased to two VMs at once.
    for (uuid, obs) in &site.obs {
        for c in conflicts(obs) {
            let first = obs
                .iter()
                .filter(|o| c.seqs.contains(&o.seq))
                .map(|o| o.time_ns)
                .max();
            let t = first.unwrap_or(0);
            if !in_range(t) {
                continue;
            }
            folder.push(Finding {
                kind: "conflict",
                time: rfc3339(t),
                entities: vec![uuid.clone(), c.kind.clone()],
                summary: format!("VM {uuid}: {}", c.summary),
                count: 1,
                evidence: obs
                    .iter()
                    .filter(|o| c.seqs.contains(&o.seq))
                    .map(obs_json)
                    .collect(),
            });
        }
    }
    for (ip, held) in &site.ip {
        for (i, a) in held.iter().enumerate() {
            for b in &held[i + 1..] {
                if a.uuid == b.uuid {
                    continue;
                }
                let start = a.lease.from.max(b.lease.from);
                let end = match (a.lease.to, b.lease.to) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                if end.is_some_and(|e| e <= start) || !in_range(start) {
                    continue;
                }
                folder.push(Finding {
                    kind: "conflict",
                    time: rfc3339(start),
                    entities: vec![ip.to_string(), a.uuid.clone(), b.uuid.clone()],
                    summary: format!(
                        "{ip} leased to two VMs at once from {}: {} and {}",
                        rfc3339(start),
                        a.uuid,
                        b.uuid
                    ),
                    count: 1,
                    evidence: [a, b]
                        .into_iter()
                        .filter_map(|h| site.evidence_for(h))
                        .collect(),
                });
            }
        }
    }

    // 7. Spoofed sources: a VM's tap sending from an address the VM did not hold.
    if !site.tap.is_empty() {
        spoofed_sources(
            index,
            fetch,
            &site,
            req,
            &in_range,
            &mut folder,
            &mut examined,
        )?;
    }

    // 8. OpenNebula networks' leases (`onevnet show -x`) naming a VM no cloud record knows.
    let (vnet_seqs, vnet_expr) = positions(
        index,
        fetch,
        "source:opennebula-vnet",
        None,
        req,
        SignedDuration::ZERO,
    )?;
    examined.insert("opennebula_vnets", vnet_seqs.len() as u64);
    for seq in vnet_seqs {
        let e = fetch.fetch(seq)?;
        if vnet_expr.as_ref().is_some_and(|x| !x.matches(&e)) {
            continue;
        }
        let t = ns(e.placed());
        if !in_range(t) {
            continue;
        }
        for (addrs, holder) in e
            .field("one_leases")
            .unwrap_or("")
            .split(',')
            .filter_map(|l| l.rsplit_once('='))
        {
            if !holder.starts_with("one-") || site.obs.contains_key(holder) {
                continue;
            }
            folder.add(
                "unknown_lease_holder",
                format!("{holder}|{addrs}"),
                t,
                || vec![holder.to_string(), addrs.to_string()],
                || {
                    format!(
                        "OpenNebula network {} leases {addrs} to VM {holder}, of which no VM record exists",
                        e.field("one_vnet_name").or(e.field("one_vnet_id")).unwrap_or("?")
                    )
                },
                ev_json(seq, &e, t),
                Vec::new,
            );
        }
    }

    // 9. The quarantine's failures (issue 13): a VM disk that could not be kept (a full
    // volume, refused input, storage down and given up) or purged, and not kept (purged)
    // since: evidence the site meant to keep and does not have.
    custody_failures(index, fetch, req, &in_range, &mut folder, &mut examined)?;

    let mut findings: Vec<Finding> = folder.open.into_values().map(|(f, _)| f).collect();
    findings.sort_by(|a, b| (&a.time, a.kind, &a.entities).cmp(&(&b.time, b.kind, &b.entities)));
    let mut by_kind = BTreeMap::new();
    for f in &findings {
        *by_kind.entry(f.kind).or_insert(0) += 1;
    }
    Ok(CheckReport {
        from: req.from.map(|t| t.to_string()),
        to: req.to.map(|t| t.to_string()),
        by_kind,
        findings,
        examined,
    })
}

/// Cross-check 9: custody records (class `vm.custody`, only ever from pugmark or a hypervisor)
/// whose step `failed` for a VM and source with no later `captured` or `purged` of the same:
/// one `custody_failed` finding per (VM, source), the last failure's detail in its summary.
fn custody_failures(
    index: &SearchIndex,
    fetch: &mut dyn Fetch,
    req: &CheckRequest,
    in_range: &dyn Fn(i64) -> bool,
    folder: &mut Folder,
    examined: &mut BTreeMap<&'static str, u64>,
) -> anyhow::Result<()> {
    let (seqs, expr) = positions(
        index,
        fetch,
        "class:vm.custody",
        None,
        req,
        SignedDuration::ZERO,
    )?;
    examined.insert("custody", seqs.len() as u64);
    // (VM, source) → the failures since the last success: (seq, time, event), in order.
    type Failures = Vec<(u64, i64, Event)>;
    let mut open: BTreeMap<(String, String), Failures> = BTreeMap::new();
    for seq in seqs {
        let e = fetch.fetch(seq)?;
        if expr.as_ref().is_some_and(|x| !x.matches(&e)) || e.class != EventClass::VmCustody {
            continue;
        }
        let t = ns(e.placed());
        if !in_range(t) {
            continue;
        }
        let (Some(vm), Some(step)) = (e.field("vm_uuid"), e.field("custody_step")) else {
            continue;
        };
        let key = (
            vm.to_string(),
            e.field("custody_source").unwrap_or("-").to_string(),
        );
        match step {
            "failed" => open.entry(key).or_default().push((seq, t, e)),
            "captured" | "purged" => {
                open.remove(&key);
            }
            _ => {}
        }
    }
    for ((vm, source), fails) in open {
        let (Some((fseq, ft, first)), Some((lseq, lt, last))) = (fails.first(), fails.last())
        else {
            continue;
        };
        // The record's own words: `detail` of the custody JSON.
        let detail = last
            .message
            .find('{')
            .and_then(|i| serde_json::from_str::<serde_json::Value>(&last.message[i..]).ok())
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
            .unwrap_or_else(|| "no detail".into());
        let mut evidence = vec![ev_json(*fseq, first, *ft)];
        if lseq != fseq {
            evidence.push(ev_json(*lseq, last, *lt));
        }
        folder.open.insert(
            ("custody_failed", format!("{vm}|{source}")),
            (
                Finding {
                    kind: "custody_failed",
                    time: rfc3339(*ft),
                    entities: vec![vm.clone(), source.clone()],
                    summary: format!(
                        "the quarantine did not keep VM {vm}'s disk {source} ({} failure(s), none kept since): {detail}",
                        fails.len()
                    ),
                    count: fails.len() as u64,
                    evidence,
                },
                1,
            ),
        );
    }
    Ok(())
}

/// A hypervisor record that came out of a VM's tap (`PHYSIN`/`IN`, [`Site::tap_of`]) with a
/// source address that VM did not hold then: (tap, the VM, the address, who held it).
/// Unspecified and link-local sources (DHCP, IPv6 neighbour discovery) are no claim to an
/// address and are left out.
fn spoof_of(site: &Site, e: &Event, t: i64) -> Option<Spoof> {
    let (tap, vm) = tapped(site, e, t)?;
    let src = e
        .field(model::fields::SRC_IP)?
        .trim()
        .parse::<IpAddr>()
        .ok()?;
    let (src, holders) = spoofed(site, &vm, src, t)?;
    Some((tap, vm, src, holders))
}

/// Whether VM `vm` sending from `src` at `t` used an address it did not hold (unspecified,
/// link-local and broadcast sources claim nothing): the canonical address and the VMs that
/// held it then.
fn spoofed(site: &Site, vm: &str, src: IpAddr, t: i64) -> Option<(IpAddr, Vec<String>)> {
    let src = canonical(src);
    let no_claim = match src {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if no_claim {
        return None;
    }
    let mut holders: Vec<String> = site.ip_at(src, t).iter().map(|h| h.uuid.clone()).collect();
    if holders.iter().any(|h| h == vm) {
        return None;
    }
    holders.sort();
    holders.dedup();
    Some((src, holders))
}

/// A hypervisor connection that came out of exactly one VM's tap: (tap, VM).
fn tapped(site: &Site, e: &Event, t: i64) -> Option<(String, String)> {
    if e.observer != Observer::Hypervisor || e.class != EventClass::NetConnection {
        return None;
    }
    let (dir, tap, vms) = site.tap_of(e, t)?;
    let [vm] = <[String; 1]>::try_from(vms).ok()?;
    (dir == TapDir::FromVm).then_some((tap, vm))
}

/// A hypervisor connection the index says crossed a known tap as its input device.
struct TapRow<'a> {
    t: i64,
    src: Option<IpAddr>,
    /// The known taps its `phys_in` / `in_if` fields name (one each, unless the record is odd).
    phys_in: Vec<&'a str>,
    in_if: Vec<&'a str>,
}

/// `query` over the network connections of the checked window.
fn window_expr(req: &CheckRequest, query: &str) -> anyhow::Result<Expr> {
    SearchRequest {
        query: query.to_string(),
        from: req.from,
        to: req.to,
        class: Some(EventClass::NetConnection),
        ..SearchRequest::default()
    }
    .expr()
}

/// The ledger positions of the network connections `query` matches in the checked window:
/// index documents and NAT records (rows of the fact store, not documents: issue 12).
fn candidates(
    index: &SearchIndex,
    req: &CheckRequest,
    query: &str,
) -> anyhow::Result<BTreeSet<u64>> {
    let expr = window_expr(req, query)?;
    let mut seqs: BTreeSet<u64> = index
        .all_by_time(&lang::lower(&expr).0)?
        .into_iter()
        .map(|k| k.seq)
        .collect();
    crate::natrows::scan(index, &expr, index.nat_cap(), &mut |f| {
        seqs.insert(f.key.seq);
    })?;
    Ok(seqs)
}

/// A spoofed source: (tap, the VM, the address, who held it).
type Spoof = (String, String, IpAddr, Vec<String>);

/// A fetched hypervisor connection as cross-check 7 examines it: `None` when it crossed no
/// tap the site knows (not examined), else its spoof if it is one.
fn tap_connection(site: &Site, e: &Event, t: i64) -> Option<Option<Spoof>> {
    tapped(site, e, t)?;
    Some(spoof_of(site, e, t))
}

/// Cross-check 7, `spoofed_source`. The fast path fetches only the hypervisor connections the
/// index says crossed a known tap as input device (`phys_in`/`in_if` terms); `--from-events`
/// fetches every hypervisor connection. Both decide with [`spoof_of`] and fold the occurrences
/// per (VM, address) order-independently, so they give the same findings.
#[allow(clippy::too_many_arguments)]
fn spoofed_sources(
    index: &SearchIndex,
    fetch: &mut dyn Fetch,
    site: &Site,
    req: &CheckRequest,
    in_range: &dyn Fn(i64) -> bool,
    folder: &mut Folder,
    examined: &mut BTreeMap<&'static str, u64>,
) -> anyhow::Result<()> {
    // (VM, address) → the occurrences, and the tap and holders at the first.
    let mut found: BTreeMap<(String, IpAddr), (Occ, String, Vec<String>)> = BTreeMap::new();
    let mut n = 0u64;
    let mut note =
        |seq: u64, t: i64, (tap, vm, src, holders): (String, String, IpAddr, Vec<String>)| {
            let at = (0, seq, t);
            found
                .entry((vm, src))
                .and_modify(|(o, ..)| o.add(at))
                .or_insert_with(|| (Occ::new(at), tap, holders));
        };
    if req.net_from_events {
        // The oracle: every hypervisor connection fetched and decided by `spoof_of`.
        for seq in candidates(index, req, "observer:hypervisor")? {
            let e = fetch.fetch(seq)?;
            let t = ns(e.placed());
            if !in_range(t) {
                continue;
            }
            if let Some(spoof) = tap_connection(site, &e, t) {
                n += 1;
                if let Some(s) = spoof {
                    note(seq, t, s);
                }
            }
        }
    } else {
        // The index says which known tap each record names as `phys_in` and as `in_if` (one
        // query per tap and field), and gives its time and source from the fast columns: the
        // same decision as `tapped` + `spoof_of` without fetching anything. A record the
        // columns cannot decide alone (two taps in one field, no parsable source column) is
        // fetched and decided on the event.
        // (seq, time, source, the tap and whether it was `phys_in`), grouped by seq after.
        let mut hits: Vec<(u64, i64, Option<IpAddr>, &str, bool)> = Vec::new();
        for tap in site.tap.keys() {
            for (field, phys) in [("phys_in", true), ("in_if", false)] {
                let quoted = tap.replace('\\', "\\\\").replace('"', "\\\"");
                let expr = window_expr(req, &format!("observer:hypervisor {field}:\"{quoted}\""))?;
                index.scan_src(&lang::lower(&expr).0, &mut |r| {
                    hits.push((r.seq, r.time_ns, r.src, tap.as_str(), phys));
                })?;
                // NAT records, judged exactly on their rows (issue 12).
                crate::natrows::scan(index, &expr, index.nat_cap(), &mut |f| {
                    hits.push((f.key.seq, ns(f.key.time), f.src, tap.as_str(), phys));
                })?;
            }
        }
        hits.sort_unstable_by_key(|h| h.0);
        let rows = hits.chunk_by(|a, b| a.0 == b.0).map(|g| {
            let (seq, t, src, ..) = g[0];
            let pick = |phys: bool| g.iter().filter(|h| h.4 == phys).map(|h| h.3).collect();
            (
                seq,
                TapRow {
                    t,
                    src,
                    phys_in: pick(true),
                    in_if: pick(false),
                },
            )
        });
        for (seq, row) in rows {
            let t = row.t;
            if !in_range(t) {
                continue;
            }
            let (Some(src), true) = (row.src, row.phys_in.len() <= 1 && row.in_if.len() <= 1)
            else {
                if let Some(spoof) = tap_connection(site, &fetch.fetch(seq)?, t) {
                    n += 1;
                    if let Some(s) = spoof {
                        note(seq, t, s);
                    }
                }
                continue;
            };
            // `Site::tap_of`'s order: the input device first, the first naming a VM decides.
            let Some((tap, vms)) = row.phys_in.iter().chain(&row.in_if).find_map(|dev| {
                let vms = site.vms_on_tap(dev, t);
                (!vms.is_empty()).then_some((dev, vms))
            }) else {
                continue;
            };
            let [vm] = vms[..] else {
                continue;
            };
            n += 1;
            if let Some((src, holders)) = spoofed(site, vm, src, t) {
                note(seq, t, (tap.to_string(), vm.to_string(), src, holders));
            }
        }
    }
    examined.insert("tap_connections", n);
    for ((vm, src), (occ, tap, holders)) in found {
        let (_, seq, t) = occ.first;
        let e = fetch.fetch(seq)?;
        let mut evidence = vec![ev_json(seq, &e, t)];
        if occ.count > 1 {
            let (_, lseq, lt) = occ.last;
            evidence.push(ev_json(lseq, &fetch.fetch(lseq)?, lt));
        }
        // The record that made the tap the VM's, and those that leased the address.
        if let Some(h) = site.tap_at(&tap, t).into_iter().find(|h| h.uuid == vm)
            && let Some(o) = site
                .observations(&vm)
                .iter()
                .find(|o| o.seq == h.lease.opened_by)
        {
            evidence.push(obs_json(o));
        }
        evidence.extend(
            site.ip_at(src, t)
                .into_iter()
                .filter_map(|h| site.evidence_for(h)),
        );
        let held_by = if holders.is_empty() {
            "no VM".to_string()
        } else {
            format!("VM {}", holders.join(", VM "))
        };
        let mut entities = vec![vm.clone(), src.to_string()];
        entities.extend(holders.iter().cloned());
        folder.open.insert(
            ("spoofed_source", format!("{vm}|{src}")),
            (
                Finding {
                    kind: "spoofed_source",
                    time: rfc3339(t),
                    entities,
                    summary: format!(
                        "VM {vm} sent from {src} through its tap {tap}, an address held by {held_by} at that time"
                    ),
                    count: occ.count,
                    evidence,
                },
                1,
            ),
        );
    }
    Ok(())
}

/// Cross-check 4: one record of a sender against its clock state (reported in the future, going
/// backwards, and for live senders, whose received time is the collector's clock, skew and jumps).
/// `who`: the sender ([`sender_key`]), the key of its clock state, and the VM that held the
/// sender's address then (named in the findings beside the sender).
fn clock(
    folder: &mut Folder,
    c: &mut Clock,
    seq: u64,
    e: &Event,
    t: i64,
    tol: i64,
    (sender, key, vm): (&str, &str, Option<&str>),
) {
    let Some(rep) = e.reported.time.map(ns) else {
        return;
    };
    let entities = || {
        let mut v = vec![sender.to_string()];
        v.extend(vm.map(str::to_string));
        v
    };
    let collected = collected_at(e);
    let rec = collected.unwrap_or_else(|| ns(e.received.timestamp()));
    if rep > rec.saturating_add(tol) {
        folder.add(
            "clock_future",
            key.to_string(),
            t,
            entities,
            || {
                format!(
                    "{sender} reports {} — later than pugmark received it ({})",
                    rfc3339(rep),
                    rfc3339(rec)
                )
            },
            ev_json(seq, e, t),
            Vec::new,
        );
    }
    if let Some((h, hseq)) = c.high
        && rep < h.saturating_sub(tol)
    {
        folder.add(
            "clock_backwards",
            key.to_string(),
            t,
            entities,
            || {
                format!(
                    "{sender}'s time goes backwards: {} after {} (#{hseq})",
                    rfc3339(rep),
                    rfc3339(h)
                )
            },
            ev_json(seq, e, t),
            Vec::new,
        );
    }
    c.high = Some(match c.high {
        Some((h, s)) if h >= rep => (h, s),
        _ => (rep, seq),
    });
    if collected.is_some() {
        let skew = rep.saturating_sub(rec);
        if skew.abs() > tol {
            folder.add(
                "clock_skew",
                key.to_string(),
                t,
                entities,
                || {
                    format!(
                        "{sender}'s clock is {}s off the collector's",
                        skew / 1_000_000_000
                    )
                },
                ev_json(seq, e, t),
                Vec::new,
            );
        }
        if let Some(prev) = c.last_skew
            && (skew - prev).abs() > tol
        {
            folder.add(
                "clock_jump",
                key.to_string(),
                t,
                entities,
                || {
                    format!(
                        "{sender}'s skew jumps from {}s to {}s (a reset or a tampered clock)",
                        prev / 1_000_000_000,
                        skew / 1_000_000_000
                    )
                },
                ev_json(seq, e, t),
                Vec::new,
            );
        }
        c.last_skew = Some(skew);
    }
}
