//! `report`: the incident answer for an address at a moment, written for the responder who
//! must act on it (issue 14). In this order, in every format (Markdown, JSON, HTML):
//!
//! 1. **The answer** ([`Answer`]): who (owner and e-mail, project, VO, payload identity),
//!    where (VM, hypervisor, address and its lease);
//! 2. **the decisive evidence** ([`VmReport::decisive`]): the records that match the question
//!    — naming the address (or sent under the hostname) within [`DECISIVE`] of the moment,
//!    else the nearest one on each side — highlighted again in the timeline;
//! 3. **what to do**: the containment of [`crate::contain`] (VM to suspend on which
//!    hypervisor, identities to ban at which VO, accounts to disable, whom to notify) and the
//!    EGI CSIRT procedure's steps and deadlines ([`crate::egi`], [`Procedure`]);
//! 4. **destinations** ([`Destination`]): the VM's connections summarised by peer address,
//!    port and protocol (count, first, last), the ones outside the site first;
//! 5. **the supporting timeline, filtered** ([`FilteredTimeline`]): routine cron and
//!    session-open/close lines and connections inside the site are left out unless they
//!    stand within [`DECISIVE`] of the moment; what was left out is counted by reason;
//! 6. **integrity**: how many records back the answer per observer; the binary appends the
//!    ledger checkpoint and each cited record's inclusion proof (`integrity`).
//!
//! The JSON keeps every key of the earlier contract (`who`, `vms[].{uuid, observers,
//! sessions, connections, ambiguous, jobs, lifecycle, other}`, `window`; sessions and
//! connections unfiltered — the challenge scores them) and adds `answer`, `procedure`,
//! `vms[].{decisive, destinations, timeline}`; connection entries carry `src_ip`,
//! `src_port`, `dst_ip`, `dst_port`, `proto` ([`crate::timeline::Connection`]).
//!
//! Built from the same parts as the CLI's `who` and `timeline`, so the three never disagree:
//! [`crate::who::who`] picks the VMs, [`crate::timeline::timeline`] gives each VM's events
//! inside its lease, restricted to a window around the moment.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{EventClass, Observer, escape_controls};
use serde::Serialize;
use views::SearchIndex;
use views::facts::FactStore;

use crate::attrib::Site;
use crate::egi::{self, Step};
use crate::search::Fetch;
use crate::timeline::{Entry, Subject, TimelineRequest, timeline_in};
use crate::who::{AddrKind, Match, WhoAnswer, WhoQuery, who};

/// How far around the moment the "what" section looks.
pub const WINDOW: SignedDuration = SignedDuration::from_secs(3600);
/// How close to the moment a record naming the address must be to be decisive (and how
/// close routine lines must be to stay in the filtered timeline).
pub const DECISIVE: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub who: WhoAnswer,
    pub vms: Vec<VmReport>,
    pub window: Window,
    /// One per VM, in the order of `who.matches`: the answer in a few fields.
    pub answer: Vec<Answer>,
    /// The EGI CSIRT procedure's steps with their deadlines.
    pub procedure: Procedure,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from: String,
    pub to: String,
}

/// Who and where, for one VM that held the address.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub vm: String,
    pub vm_name: Option<String>,
    pub hostname: Option<String>,
    pub hypervisor: Option<String>,
    /// The address (or hostname) asked about and the VM's hold on it.
    pub address: String,
    pub lease_from: String,
    pub lease_to: Option<String>,
    pub owner_user_id: Option<String>,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// The VOs of the payloads that ran on the VM during the lease.
    pub vos: Vec<String>,
    /// Each payload identity in words (issuer and subject, or DN; VO; person).
    pub payload_identities: Vec<String>,
    /// True when another VM could also be the answer (`who` ambiguity).
    pub ambiguous: bool,
    pub conflicts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Procedure {
    pub name: &'static str,
    pub url: &'static str,
    /// When the incident was discovered (`--discovered`), from which steps 1 and 2 count.
    pub discovered: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmReport {
    pub uuid: String,
    /// Observers whose records back this answer, and what each says.
    pub observers: Vec<ObserverNote>,
    /// The VM's own records (observer `vm`) attributed to it ([`crate::attrib`]).
    pub sessions: Vec<Entry>,
    pub connections: Vec<Entry>,
    /// VM records that could be this VM's or another's (a hostname two VMs held): shown
    /// with every candidate, counted as no one's.
    pub ambiguous: Vec<Entry>,
    pub jobs: Vec<Entry>,
    pub lifecycle: Vec<Entry>,
    pub other: Vec<Entry>,
    /// The VM's image custody (issue 13: captured, held, exported, purged, …) at any time,
    /// beside its life: a disk is kept long after the moment asked about.
    pub custody: Vec<Entry>,
    /// The records that match the question (see the module doc), nearest the moment first.
    pub decisive: Vec<Decisive>,
    /// Connections by peer, outside the site first.
    pub destinations: Vec<Destination>,
    /// The supporting timeline with routine lines left out, and what was left out.
    pub timeline: FilteredTimeline,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObserverNote {
    pub observer: Observer,
    pub forgeable_by_vm_user: bool,
    pub records: usize,
}

/// A record that matches the question.
#[derive(Debug, Clone, Serialize)]
pub struct Decisive {
    #[serde(flatten)]
    pub entry: Entry,
    /// Seconds from the moment asked about (negative: before).
    pub offset_s: i64,
    pub why: String,
}

/// The VM's connections with one peer address, port and protocol.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Destination {
    /// `out` (the VM connected to the peer) or `in` (the peer connected to the VM).
    pub direction: &'static str,
    pub address: String,
    pub port: Option<u16>,
    pub proto: Option<String>,
    /// Outside the site: not an address any VM held, not in a site network, not private,
    /// loopback or link-local.
    pub outside: bool,
    pub count: usize,
    pub first: String,
    pub last: String,
    pub first_seq: u64,
    /// The first connection's place in its datagram when it is a derived flow (`first_seq` is
    /// then the datagram): two flows of one datagram are told apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_flow: Option<crate::cite::FlowJson>,
    pub last_seq: u64,
    /// As `first_flow`, for the last connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_flow: Option<crate::cite::FlowJson>,
}

impl Destination {
    /// The first connection as a report cites it: `SEQ`, or `SEQ/F.R` (after a `#`).
    pub fn first_cite(&self) -> String {
        seq_text(self.first_seq, self.first_flow)
    }

    /// The last connection as a report cites it.
    pub fn last_cite(&self) -> String {
        seq_text(self.last_seq, self.last_flow)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FilteredTimeline {
    pub entries: Vec<TimelineLine>,
    /// What was left out, by reason, with how many records.
    pub filtered: Vec<FilteredCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineLine {
    /// `session`, `connection`, `ambiguous`, `job`, `lifecycle` or `other`.
    pub section: &'static str,
    /// One of the decisive records.
    pub decisive: bool,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilteredCount {
    pub reason: &'static str,
    pub count: usize,
}

/// How to build a report beyond the question.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// When the incident was discovered: the EGI deadlines count from it.
    pub discovered: Option<Timestamp>,
}

/// Build the report for `q`.
pub fn report(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    q: &WhoQuery,
) -> anyhow::Result<Report> {
    report_with(index, store, fetch, q, &ReportOptions::default())
}

/// Build the report for `q` with `opts`.
pub fn report_with(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    q: &WhoQuery,
    opts: &ReportOptions,
) -> anyhow::Result<Report> {
    let answer = who(store, q)?;
    let site = Site::load(store)?;
    let from = q.at.checked_sub(WINDOW).unwrap_or(q.at);
    let to = q.at.checked_add(WINDOW).unwrap_or(q.at);
    let mut vms = Vec::new();
    for m in &answer.matches {
        vms.push(vm_report(index, store, &site, fetch, m, q, from, to)?);
    }
    let answers: Vec<Answer> = answer
        .matches
        .iter()
        .map(|m| answer_of(m, &q.value))
        .collect();
    let procedure = procedure(&answer.matches, opts.discovered);
    Ok(Report {
        who: answer,
        vms,
        window: Window {
            from: from.to_string(),
            to: to.to_string(),
        },
        answer: answers,
        procedure,
    })
}

/// The EGI procedure's steps for the VMs of `matches`: whom to notify (project owners, the
/// payloads' VOs) and which VMs to suspend where. A report cut to a VO's VMs rebuilds it
/// from its matches, so that no step names another VO's VM.
pub fn procedure(matches: &[Match], discovered: Option<Timestamp>) -> Procedure {
    let mut notify = BTreeSet::new();
    let mut suspend = Vec::new();
    for m in matches {
        if let Some(e) = &m.contain.project.owner_email {
            notify.insert(format!("the project owner <{e}>"));
        }
        for p in &m.contain.payloads {
            if let Some(vo) = &p.vo {
                notify.insert(format!("VO {vo}'s security contact"));
            }
        }
        suspend.push(format!(
            "suspend VM {} on hypervisor {}",
            m.contain.vm.uuid,
            m.contain.vm.hypervisor.as_deref().unwrap_or("unknown")
        ));
    }
    let notify: Vec<String> = notify.into_iter().collect();
    Procedure {
        name: "EGI CSIRT Security Incident Response Procedure (EGI-CSIRT SEC01)",
        url: egi::PROCEDURE_URL,
        discovered: discovered.map(|t| t.to_string()),
        steps: egi::steps(discovered, &notify, &suspend),
    }
}

fn answer_of(m: &Match, address: &str) -> Answer {
    let mut vos: Vec<String> = m
        .payload_users
        .iter()
        .filter_map(|p| p.vo.clone())
        .collect();
    vos.sort();
    vos.dedup();
    Answer {
        vm: m.vm.uuid.clone(),
        vm_name: m.vm.name.clone(),
        hostname: m.vm.hostname.clone(),
        hypervisor: m.vm.hypervisor.clone(),
        address: address.to_string(),
        lease_from: m.lease.from.clone(),
        lease_to: m.lease.to.clone(),
        owner_user_id: m.owner.user_id.clone(),
        owner_name: m.owner.user_name.clone(),
        owner_email: m.contain.project.owner_email.clone(),
        project_id: m.owner.project_id.clone(),
        project_name: m.owner.project_name.clone(),
        vos,
        payload_identities: m
            .payload_users
            .iter()
            .map(crate::contain::payload_identity_text)
            .collect(),
        ambiguous: m.ambiguous,
        conflicts: m.conflicts.len(),
    }
}

#[allow(clippy::too_many_arguments)]
fn vm_report(
    index: &SearchIndex,
    store: &FactStore,
    site: &Site,
    fetch: &mut dyn Fetch,
    m: &Match,
    q: &WhoQuery,
    from: Timestamp,
    to: Timestamp,
) -> anyhow::Result<VmReport> {
    let t = timeline_in(
        index,
        store,
        site,
        fetch,
        &TimelineRequest {
            subject: Subject::Vm(m.vm.uuid.clone()),
            from: Some(from),
            to: Some(to),
            limit: 2000,
            claimed: false,
            lanes: 0,
        },
    )?;
    let mut r = VmReport {
        uuid: m.vm.uuid.clone(),
        observers: Vec::new(),
        sessions: Vec::new(),
        connections: Vec::new(),
        ambiguous: Vec::new(),
        jobs: Vec::new(),
        lifecycle: Vec::new(),
        other: Vec::new(),
        custody: crate::timeline::custody_in(index, site, fetch, &m.vm.uuid, 2000)?.0,
        decisive: Vec::new(),
        destinations: Vec::new(),
        timeline: FilteredTimeline {
            entries: Vec::new(),
            filtered: Vec::new(),
        },
    };
    let mut seen: BTreeSet<(Observer, u64)> =
        m.evidence.iter().map(|e| (e.observer, e.seq)).collect();
    for e in t.entries {
        seen.insert((e.observer, e.seq));
        if r.custody.iter().any(|c| c.seq == e.seq) {
            continue;
        }
        let bucket = match e.source.as_str() {
            s if s.starts_with("condor") => &mut r.jobs,
            "openstack-notification"
            | "oslo-log"
            | "lease"
            | "placement"
            | "owner"
            | "conflict" => &mut r.lifecycle,
            // NetFlow / IPFIX flows (net.flow) are connections too, seen by the network.
            "netflow" => &mut r.connections,
            _ if e.summary.contains("SRC=") || e.observer == Observer::Hypervisor => {
                &mut r.connections
            }
            // A VM's own records: its sessions when attributed to it; ambiguous ones apart;
            // another VM's line naming this VM's address is that VM's, shown as other.
            _ if e.observer == Observer::Vm => match &e.attribution {
                Some(a) if a.is(&m.vm.uuid) => &mut r.sessions,
                Some(a) if a.may_be(&m.vm.uuid) => &mut r.ambiguous,
                _ => &mut r.other,
            },
            _ => &mut r.other,
        };
        bucket.push(e);
    }
    for o in Observer::ALL {
        let records = seen.iter().filter(|(ob, _)| *ob == o).count();
        if records > 0 {
            r.observers.push(ObserverNote {
                observer: o,
                forgeable_by_vm_user: o.forgeable_by_vm_user(),
                records,
            });
        }
    }
    r.decisive = decisive(&r, q);
    r.destinations = destinations(&r.connections, site, &m.vm.uuid);
    r.timeline = filtered(&r, q, site);
    Ok(r)
}

/// Does `e` name the question's address (or come under its hostname)?
fn names_question(e: &Entry, q: &WhoQuery) -> bool {
    let Some(ev) = &e.event else { return false };
    match q.kind {
        AddrKind::Ip => q
            .value
            .parse::<IpAddr>()
            .is_ok_and(|ip| ev.ips.contains(&ip)),
        AddrKind::Host => ev
            .host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&q.value)),
        AddrKind::Mac => ev.raw_text_contains(&q.value),
    }
}

trait RawText {
    fn raw_text_contains(&self, needle: &str) -> bool;
}

impl RawText for model::Event {
    fn raw_text_contains(&self, needle: &str) -> bool {
        let n = needle.to_ascii_lowercase();
        self.message.to_ascii_lowercase().contains(&n)
            || self
                .fields
                .values()
                .any(|v| v.to_ascii_lowercase().contains(&n))
    }
}

fn offset_s(e: &Entry, at: Timestamp) -> Option<i64> {
    let t: Timestamp = e.time.parse().ok()?;
    Some(t.duration_since(at).as_secs())
}

fn sections(r: &VmReport) -> [(&'static str, &Vec<Entry>); 6] {
    [
        ("session", &r.sessions),
        ("connection", &r.connections),
        ("ambiguous", &r.ambiguous),
        ("job", &r.jobs),
        ("lifecycle", &r.lifecycle),
        ("other", &r.other),
    ]
}

/// Records naming the question at the moment itself (within a second); else within
/// [`DECISIVE`] of it; else the nearest before and the nearest after. Routine lines (cron,
/// session open/close) count only when nothing else names the question.
fn decisive(r: &VmReport, q: &WhoQuery) -> Vec<Decisive> {
    let none = BTreeSet::new();
    let mut all: Vec<(i64, &Entry, bool)> = Vec::new();
    for (section, list) in sections(r) {
        for e in list {
            if e.kind == "event"
                && names_question(e, q)
                && let Some(off) = offset_s(e, q.at)
            {
                let routine = section != "connection" && routine(section, e, &none).is_some();
                all.push((off, e, routine));
            }
        }
    }
    let cands: Vec<(i64, &Entry)> = if all.iter().any(|(_, _, r)| !r) {
        all.iter()
            .filter(|(_, _, r)| !r)
            .map(|(o, e, _)| (*o, *e))
            .collect()
    } else {
        all.iter().map(|(o, e, _)| (*o, *e)).collect()
    };
    let near = DECISIVE.as_secs();
    let mut picked: Vec<(i64, &Entry, String)> = Vec::new();
    for (limit, why) in [
        (1, format!("names {} at the moment asked about", q.value)),
        (
            near,
            format!("names {} within {near} s of the moment", q.value),
        ),
    ] {
        picked = cands
            .iter()
            .filter(|(o, _)| o.abs() <= limit)
            .map(|(o, e)| (*o, *e, why.clone()))
            .collect();
        if !picked.is_empty() {
            break;
        }
    }
    if picked.is_empty() {
        let before = cands
            .iter()
            .filter(|(o, _)| *o < 0)
            .max_by_key(|(o, e)| (*o, e.seq));
        let after = cands
            .iter()
            .filter(|(o, _)| *o >= 0)
            .min_by_key(|(o, e)| (*o, e.seq));
        for (o, e) in before.into_iter().chain(after) {
            picked.push((
                *o,
                *e,
                format!("the nearest record naming {} to the moment", q.value),
            ));
        }
    }
    picked.sort_by_key(|(o, e, _)| (o.abs(), key(e)));
    picked.dedup_by_key(|(_, e, _)| key(e));
    picked
        .into_iter()
        .map(|(o, e, why)| Decisive {
            entry: e.clone(),
            offset_s: o,
            why,
        })
        .collect()
}

fn is_special(ip: IpAddr) -> bool {
    match crate::attrib::canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, shared address space (RFC 6598).
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

fn in_site(ip: IpAddr, site: &Site, nets: &[crate::lang::Net]) -> bool {
    if !site.ip_leases(ip).is_empty() {
        return true;
    }
    let ip = crate::attrib::canonical(ip);
    nets.iter().any(|n| {
        let (lo, hi) = n.range();
        lo <= ip && ip <= hi
    })
}

/// The peers of a VM's connections, outside the site first, then by count.
fn destinations(conns: &[Entry], site: &Site, vm: &str) -> Vec<Destination> {
    let nets = site.default_nets();
    let mine = |ip: &str| {
        ip.parse::<IpAddr>()
            .is_ok_and(|a| site.ip_leases(a).iter().any(|h| h.uuid == vm))
    };
    type Key = (&'static str, String, Option<u16>, Option<String>);
    let mut by: BTreeMap<Key, Destination> = BTreeMap::new();
    for e in conns {
        let Some(c) = &e.connection else { continue };
        let (Some(src), Some(dst)) = (&c.src_ip, &c.dst_ip) else {
            continue;
        };
        // The VM's side: the source it held (or, traffic into it, the destination); traffic
        // out of its tap with another source is still its own, outbound.
        let (direction, peer, port) = if !mine(src) && mine(dst) {
            ("in", src.clone(), c.dst_port)
        } else {
            ("out", dst.clone(), c.dst_port)
        };
        let outside = peer
            .parse::<IpAddr>()
            .is_ok_and(|a| !is_special(a) && !in_site(a, site, &nets));
        let d = by
            .entry((direction, peer.clone(), port, c.proto.clone()))
            .or_insert_with(|| Destination {
                direction,
                address: peer,
                port,
                proto: c.proto.clone(),
                outside,
                count: 0,
                first: e.time.clone(),
                last: e.time.clone(),
                first_seq: e.seq,
                first_flow: e.flow,
                last_seq: e.seq,
                last_flow: e.flow,
            });
        d.count += 1;
        // Entries come in time order: the first stays, the last moves.
        d.last = e.time.clone();
        d.last_seq = e.seq;
        d.last_flow = e.flow;
    }
    let mut v: Vec<Destination> = by.into_values().collect();
    v.sort_by(|a, b| {
        b.outside
            .cmp(&a.outside)
            .then(b.count.cmp(&a.count))
            .then(a.address.cmp(&b.address))
            .then(a.port.cmp(&b.port))
    });
    v
}

/// Why a timeline entry is routine (left out of the filtered timeline), if it is.
fn routine(
    section: &str,
    e: &Entry,
    outside: &BTreeSet<(String, Option<u16>)>,
) -> Option<&'static str> {
    if section == "connection" {
        let c = e.connection.as_ref()?;
        let key_dst = (c.dst_ip.clone().unwrap_or_default(), c.dst_port);
        let key_src = (c.src_ip.clone().unwrap_or_default(), c.dst_port);
        return (!outside.contains(&key_dst) && !outside.contains(&key_src))
            .then_some("connections inside the site (summarised under Destinations)");
    }
    let ev = e.event.as_ref()?;
    let app = ev.app.as_deref().unwrap_or_default().to_ascii_lowercase();
    let msg = ev.message.to_ascii_lowercase();
    if matches!(app.as_str(), "crond" | "cron" | "anacron" | "run-parts")
        || msg.contains("(crond:session)")
        || msg.contains("(cron:session)")
    {
        return Some("cron jobs (CROND/cron lines)");
    }
    if ev.class == EventClass::AuthSession {
        return Some("session opened/closed lines (the logins themselves are kept)");
    }
    None
}

/// What tells two entries apart: the record, and for a derived flow its place in the datagram
/// (two flows of one datagram are two entries).
fn key(e: &Entry) -> (u64, Option<(u16, u16)>) {
    (e.seq, e.flow.map(|f| (f.flowset, f.record)))
}

/// How a report cites an entry: `SEQ`, or `SEQ/F.R` for a derived flow (after a `#`).
fn cite(e: &Entry) -> String {
    seq_text(e.seq, e.flow)
}

fn seq_text(seq: u64, flow: Option<crate::cite::FlowJson>) -> String {
    match flow {
        Some(f) => format!("{seq}/{}.{}", f.flowset, f.record),
        None => seq.to_string(),
    }
}

fn filtered(r: &VmReport, q: &WhoQuery, _site: &Site) -> FilteredTimeline {
    let decisive: BTreeSet<(u64, Option<(u16, u16)>)> =
        r.decisive.iter().map(|d| key(&d.entry)).collect();
    let outside: BTreeSet<(String, Option<u16>)> = r
        .destinations
        .iter()
        .filter(|d| d.outside)
        .map(|d| (d.address.clone(), d.port))
        .collect();
    let mut lines = Vec::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (section, list) in sections(r) {
        for e in list {
            let near = offset_s(e, q.at).is_some_and(|o| o.abs() <= DECISIVE.as_secs());
            let is_decisive = decisive.contains(&key(e));
            if !is_decisive
                && !near
                && let Some(why) = routine(section, e, &outside)
            {
                *counts.entry(why).or_default() += 1;
                continue;
            }
            lines.push(TimelineLine {
                section,
                decisive: is_decisive,
                entry: e.clone(),
            });
        }
    }
    lines.sort_by(|a, b| {
        (a.entry.time.as_str(), key(&a.entry)).cmp(&(b.entry.time.as_str(), key(&b.entry)))
    });
    FilteredTimeline {
        entries: lines,
        filtered: counts
            .into_iter()
            .map(|(reason, count)| FilteredCount { reason, count })
            .collect(),
    }
}

/// A value from the records, for text: control characters escaped ([`escape_controls`]).
fn or_unknown(v: &Option<String>) -> Cow<'_, str> {
    escape_controls(v.as_deref().unwrap_or("unknown"))
}

fn esc(s: &str) -> Cow<'_, str> {
    escape_controls(s)
}

/// The attribution tag of an event line (` → 1ce2f9af (address)`).
fn tag(e: &Entry) -> String {
    e.attribution
        .as_ref()
        .filter(|_| e.kind == "event")
        .map(|a| format!(" {}", a.text()))
        .unwrap_or_default()
}

/// An entry as the report shows it: a connection as its endpoints (the full line is in the
/// JSON and the ledger), anything else as its summary.
fn display(e: &Entry) -> String {
    match &e.connection {
        Some(c) => {
            let end = |ip: &Option<String>, port: Option<u16>| {
                format!(
                    "{}{}",
                    ip.as_deref().unwrap_or("?"),
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                )
            };
            let host = e
                .event
                .as_ref()
                .and_then(|ev| ev.host.clone())
                .map(|h| format!("{h}: "))
                .unwrap_or_default();
            format!(
                "{host}{} → {} {}",
                end(&c.src_ip, c.src_port),
                end(&c.dst_ip, c.dst_port),
                c.proto.as_deref().unwrap_or("?").to_uppercase()
            )
        }
        None => e.summary.clone(),
    }
}

fn observers_text(v: &VmReport) -> String {
    v.observers
        .iter()
        .map(|o| {
            format!(
                "{} ({} records{})",
                o.observer,
                o.records,
                if o.forgeable_by_vm_user {
                    ", forgeable by the VM's root"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Markdown rendering. Every value that came from a record (names, summaries, sources) is
/// written with its control characters escaped ([`escape_controls`]): Markdown is read in a
/// terminal too.
pub fn to_markdown(r: &Report) -> String {
    let mut s = String::new();
    let q = &r.who.query;
    let _ = writeln!(
        s,
        "# Incident report: {} {} at {}\n",
        q.kind_name(),
        esc(&q.value),
        q.at
    );
    if r.who.matches.is_empty() {
        let _ = writeln!(
            s,
            "No VM held {} at {}: no lease covers that moment in the evidence.",
            esc(&q.value),
            q.at
        );
        return s;
    }
    // 1. The answer.
    let _ = writeln!(s, "## Answer\n");
    if r.who.matches.len() > 1 {
        let _ = writeln!(
            s,
            "**Ambiguous:** {} VMs held {} at that moment; all are reported.\n",
            r.who.matches.len(),
            esc(&q.value)
        );
    }
    for (a, m) in r.answer.iter().zip(&r.who.matches) {
        if r.answer.len() > 1 {
            let _ = writeln!(s, "### VM {}\n", esc(&m.vm.uuid));
        }
        let _ = writeln!(
            s,
            "- **Who**: user {} ({}) <{}>, project {} ({}); VO {}",
            or_unknown(&a.owner_user_id),
            or_unknown(&a.owner_name),
            or_unknown(&a.owner_email),
            or_unknown(&a.project_id),
            or_unknown(&a.project_name),
            if a.vos.is_empty() {
                "none known".to_string()
            } else {
                esc(&a.vos.join(", ")).into_owned()
            }
        );
        for p in &m.payload_users {
            let _ = writeln!(
                s,
                "- **Payload**: job {} of {} — {} ({} to {})",
                esc(&p.job_id),
                or_unknown(&p.owner),
                or_unknown(&p.dn),
                or_unknown(&p.from),
                or_unknown(&p.to)
            );
            let _ = writeln!(
                s,
                "  - identity: {}",
                esc(&crate::contain::payload_identity_text(p))
            );
        }
        let _ = writeln!(
            s,
            "- **Where**: VM {} ({}), hostname {}, hypervisor {}, image {}",
            esc(&m.vm.uuid),
            or_unknown(&m.vm.name),
            or_unknown(&m.vm.hostname),
            or_unknown(&m.vm.hypervisor),
            or_unknown(&m.vm.image)
        );
        let _ = writeln!(
            s,
            "- **When**: held {} from {} to {}",
            esc(&q.value),
            m.lease.from,
            m.lease.to.as_deref().unwrap_or("now")
        );
        for c in &m.conflicts {
            let _ = writeln!(
                s,
                "- **CONFLICT** ({}): {} — the sources disagree; both are kept",
                esc(&c.kind),
                esc(&c.summary)
            );
        }
        if r.answer.len() > 1 {
            let _ = writeln!(s);
        }
    }
    let _ = writeln!(s);
    let many = r.vms.len() > 1;
    let vm_head = |s: &mut String, m: &Match| {
        if many {
            let _ = writeln!(s, "### VM {}\n", esc(&m.vm.uuid));
        }
    };
    // 2. Decisive evidence.
    let _ = writeln!(s, "## Decisive evidence\n");
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut s, m);
        if v.decisive.is_empty() {
            let _ = writeln!(
                s,
                "No record in the window names {}; the answer rests on the cloud's records below.\n",
                esc(&q.value)
            );
        }
        for d in &v.decisive {
            let _ = writeln!(
                s,
                "- **#{} {} [{}] {}**{} ({:+} s: {})",
                cite(&d.entry),
                d.entry.time,
                d.entry.observer,
                esc(&display(&d.entry)),
                esc(&tag(&d.entry)),
                d.offset_s,
                esc(&d.why)
            );
        }
        let _ = writeln!(s, "\nWhy this VM (the lease and owner records):\n");
        for e in &m.evidence {
            let _ = writeln!(
                s,
                "- #{} [{}] {} {}: {}",
                e.seq,
                e.observer,
                e.time,
                esc(&e.source),
                esc(&e.summary)
            );
        }
        let _ = writeln!(s, "- **Backed by**: {}\n", observers_text(v));
    }
    // 3. What to do: containment, then the procedure.
    let _ = writeln!(s, "## What to do\n");
    for m in &r.who.matches {
        let _ = writeln!(
            s,
            "### Containment{}\n",
            if many {
                format!(" of VM {}", esc(&m.vm.uuid))
            } else {
                String::new()
            }
        );
        for line in crate::contain::text_lines(&m.contain) {
            let _ = writeln!(s, "- {}", esc(&line));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "### {}\n", r.procedure.name);
    let _ = writeln!(
        s,
        "{}{}\n",
        r.procedure.url,
        r.procedure
            .discovered
            .as_deref()
            .map(|d| format!(" — deadlines counted from the discovery at {d}"))
            .unwrap_or_else(|| {
                " — deadlines count from the discovery (give `--discovered` to date them)".into()
            })
    );
    for st in &r.procedure.steps {
        let _ = writeln!(
            s,
            "{}. {}{}",
            st.step,
            esc(&st.action),
            match (st.deadline, &st.due) {
                (Some(d), Some(due)) => format!(" — **{d}: by {due}**"),
                (Some(d), None) => format!(" — **{d}**"),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(s);
    // 4. Destinations.
    let _ = writeln!(s, "## Destinations\n");
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut s, m);
        if v.destinations.is_empty() {
            let _ = writeln!(s, "No connection of this VM in the window.\n");
            continue;
        }
        let _ = writeln!(
            s,
            "| where | peer | port | proto | count | first | last |\n|---|---|---|---|---|---|---|"
        );
        for d in &v.destinations {
            let _ = writeln!(
                s,
                "| {} {} | {} | {} | {} | {} | {} (#{}) | {} (#{}) |",
                if d.outside { "**outside**" } else { "site" },
                d.direction,
                esc(&d.address),
                d.port.map(|p| p.to_string()).unwrap_or_default(),
                esc(d.proto.as_deref().unwrap_or("")),
                d.count,
                d.first,
                d.first_cite(),
                d.last,
                d.last_cite()
            );
        }
        let _ = writeln!(s);
    }
    // 5. Supporting timeline, filtered.
    let _ = writeln!(
        s,
        "## Supporting timeline ({} to {})\n",
        r.window.from, r.window.to
    );
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut s, m);
        for l in &v.timeline.entries {
            let e = &l.entry;
            let line = format!(
                "{} [{}] {} #{} {}{}",
                e.time,
                e.observer,
                l.section,
                cite(e),
                esc(&display(e)),
                esc(&tag(e))
            );
            if l.decisive {
                let _ = writeln!(s, "- **{line}** ← decisive");
            } else {
                let _ = writeln!(s, "- {line}");
            }
        }
        if !v.timeline.filtered.is_empty() {
            let total: usize = v.timeline.filtered.iter().map(|f| f.count).sum();
            let _ = writeln!(
                s,
                "\nLeft out as routine ({total} records, all in the JSON report's lists and in `pugmark timeline`):\n"
            );
            for f in &v.timeline.filtered {
                let _ = writeln!(s, "- {}: {}", f.reason, f.count);
            }
        }
        let _ = writeln!(s);
    }
    // The disks' custody (issue 13), at any time: a disk is kept, and purged, long after the
    // moment asked about. Only when there is some.
    if r.vms.iter().any(|v| !v.custody.is_empty()) {
        let _ = writeln!(s, "## Image custody (quarantine, any time)\n");
        for (m, v) in r.who.matches.iter().zip(&r.vms) {
            if v.custody.is_empty() {
                continue;
            }
            vm_head(&mut s, m);
            for e in &v.custody {
                let _ = writeln!(
                    s,
                    "- {} [{}] #{} {}",
                    e.time,
                    e.observer,
                    e.seq,
                    esc(&e.summary)
                );
            }
            let _ = writeln!(s);
        }
    }
    // 6. Integrity (the binary appends the checkpoint and proofs).
    let _ = writeln!(s, "## Integrity\n");
    let _ = writeln!(s, "{}\n", integrity_counts(r));
    s
}

/// Record counts behind the report, one sentence.
pub fn integrity_counts(r: &Report) -> String {
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    let mut shown = 0;
    let mut filtered = 0;
    for v in &r.vms {
        for o in &v.observers {
            *per.entry(o.observer.to_string()).or_default() += o.records;
        }
        shown += v.timeline.entries.len();
        filtered += v.timeline.filtered.iter().map(|f| f.count).sum::<usize>();
    }
    let total: usize = per.values().sum();
    format!(
        "This report rests on {total} ledger records ({}); the timeline shows {shown} and leaves out {filtered} routine ones. Every record is cited by its ledger position (#seq).",
        per.iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn h(t: &str) -> String {
    escape_controls(t)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = "
:root{--fg:#1b1b1b;--muted:#5a5a5a;--line:#d8d8d8;--hl:#fff3b0;--warn:#b00020;--out:#8a1c00}
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);max-width:72em;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:2px solid var(--line);padding-bottom:.15em;margin-top:1.6em}
h3{font-size:1.05em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid var(--line);padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right}
.card{border:1px solid var(--line);border-left:5px solid #2b6cb0;padding:.6em 1em;margin:.6em 0;border-radius:4px}
.card dl{display:grid;grid-template-columns:9em 1fr;gap:.2em .8em;margin:0}.card dt{font-weight:600;color:var(--muted)}
.decisive,tr.decisive td{background:var(--hl)}.outside{color:var(--out);font-weight:600}
.conflict{color:var(--warn);font-weight:600}.muted{color:var(--muted)}.mono,td.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.86em;word-break:break-all}
ol.steps li{margin:.3em 0}.deadline{font-weight:600}
@media print{body{margin:0;max-width:none;font-size:10.5pt}h2{break-after:avoid}tr,li,.card{break-inside:avoid}a{color:inherit}.noprint{display:none}}
";

/// A self-contained HTML page (embedded CSS, no script but the proofs the binary embeds):
/// the same sections as the Markdown, for reading and printing.
pub fn to_html(r: &Report) -> String {
    let q = &r.who.query;
    let mut o = String::new();
    let title = format!("Incident report: {} {} at {}", q.kind_name(), q.value, q.at);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        h(&title),
        h(&title)
    );
    if r.who.matches.is_empty() {
        let _ = writeln!(
            o,
            "<p>No VM held {} at {}: no lease covers that moment in the evidence.</p>\n</body></html>",
            h(&q.value),
            q.at
        );
        return o;
    }
    let _ = writeln!(o, "<h2>Answer</h2>");
    if r.who.matches.len() > 1 {
        let _ = writeln!(
            o,
            "<p class=\"conflict\">Ambiguous: {} VMs held {} at that moment; all are reported.</p>",
            r.who.matches.len(),
            h(&q.value)
        );
    }
    let opt = |v: &Option<String>| h(v.as_deref().unwrap_or("unknown"));
    for (a, m) in r.answer.iter().zip(&r.who.matches) {
        let _ = writeln!(o, "<div class=\"card\"><dl>");
        let _ = writeln!(
            o,
            "<dt>Who</dt><dd>user {} ({}) &lt;{}&gt;</dd><dt>Project</dt><dd>{} ({})</dd><dt>VO</dt><dd>{}</dd>",
            opt(&a.owner_user_id),
            opt(&a.owner_name),
            opt(&a.owner_email),
            opt(&a.project_id),
            opt(&a.project_name),
            if a.vos.is_empty() {
                "none known".into()
            } else {
                h(&a.vos.join(", "))
            }
        );
        for p in &a.payload_identities {
            let _ = writeln!(o, "<dt>Payload</dt><dd>{}</dd>", h(p));
        }
        let _ = writeln!(
            o,
            "<dt>Where</dt><dd>VM <span class=\"mono\">{}</span> ({}), hostname {}, hypervisor <b>{}</b>, image {}</dd><dt>When</dt><dd>held {} from {} to {}</dd>",
            h(&m.vm.uuid),
            opt(&m.vm.name),
            opt(&m.vm.hostname),
            opt(&m.vm.hypervisor),
            opt(&m.vm.image),
            h(&q.value),
            h(&m.lease.from),
            h(m.lease.to.as_deref().unwrap_or("now"))
        );
        for c in &m.conflicts {
            let _ = writeln!(
                o,
                "<dt class=\"conflict\">CONFLICT</dt><dd class=\"conflict\">({}) {} — the sources disagree; both are kept</dd>",
                h(&c.kind),
                h(&c.summary)
            );
        }
        let _ = writeln!(o, "</dl></div>");
    }
    let many = r.vms.len() > 1;
    let vm_head = |o: &mut String, m: &Match| {
        if many {
            let _ = writeln!(
                o,
                "<h3>VM <span class=\"mono\">{}</span></h3>",
                h(&m.vm.uuid)
            );
        }
    };
    let _ = writeln!(o, "<h2>Decisive evidence</h2>");
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut o, m);
        if v.decisive.is_empty() {
            let _ = writeln!(
                o,
                "<p>No record in the window names {}; the answer rests on the cloud's records below.</p>",
                h(&q.value)
            );
        } else {
            let _ = writeln!(
                o,
                "<table><tr><th>#</th><th>time</th><th>observer</th><th>record</th><th>why</th></tr>"
            );
            for d in &v.decisive {
                let _ = writeln!(
                    o,
                    "<tr class=\"decisive\"><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}{}</td><td>{:+} s: {}</td></tr>",
                    cite(&d.entry),
                    h(&d.entry.time),
                    d.entry.observer,
                    h(&display(&d.entry)),
                    h(&tag(&d.entry)),
                    d.offset_s,
                    h(&d.why)
                );
            }
            let _ = writeln!(o, "</table>");
        }
        let _ = writeln!(o, "<p>Why this VM (the lease and owner records):</p><ul>");
        for e in &m.evidence {
            let _ = writeln!(
                o,
                "<li>#{} [{}] {} {}: <span class=\"mono\">{}</span></li>",
                e.seq,
                e.observer,
                h(&e.time),
                h(&e.source),
                h(&e.summary)
            );
        }
        let _ = writeln!(
            o,
            "</ul><p class=\"muted\">Backed by: {}</p>",
            h(&observers_text(v))
        );
    }
    let _ = writeln!(o, "<h2>What to do</h2>");
    for m in &r.who.matches {
        let _ = writeln!(
            o,
            "<h3>Containment{}</h3><ul>",
            if many {
                format!(" of VM {}", h(&m.vm.uuid))
            } else {
                String::new()
            }
        );
        for line in crate::contain::text_lines(&m.contain) {
            let _ = writeln!(o, "<li>{}</li>", h(&line));
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(
        o,
        "<h3>{}</h3><p><a href=\"{}\">{}</a>{}</p><ol class=\"steps\">",
        h(r.procedure.name),
        h(r.procedure.url),
        h(r.procedure.url),
        h(&r.procedure
            .discovered
            .as_deref()
            .map(|d| format!(" — deadlines counted from the discovery at {d}"))
            .unwrap_or_else(|| {
                " — deadlines count from the discovery (give --discovered to date them)".into()
            }))
    );
    for st in &r.procedure.steps {
        let _ = writeln!(
            o,
            "<li value=\"{}\">{}{}</li>",
            st.step,
            h(&st.action),
            match (st.deadline, &st.due) {
                (Some(d), Some(due)) =>
                    format!(" — <span class=\"deadline\">{}: by {}</span>", h(d), h(due)),
                (Some(d), None) => format!(" — <span class=\"deadline\">{}</span>", h(d)),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(o, "</ol>");
    let _ = writeln!(o, "<h2>Destinations</h2>");
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut o, m);
        if v.destinations.is_empty() {
            let _ = writeln!(o, "<p>No connection of this VM in the window.</p>");
            continue;
        }
        let _ = writeln!(
            o,
            "<table><tr><th>where</th><th>direction</th><th>peer</th><th>port</th><th>proto</th><th>count</th><th>first</th><th>last</th></tr>"
        );
        for d in &v.destinations {
            let _ = writeln!(
                o,
                "<tr><td{}>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{} (#{})</td><td>{} (#{})</td></tr>",
                if d.outside { " class=\"outside\"" } else { "" },
                if d.outside { "outside" } else { "site" },
                d.direction,
                h(&d.address),
                d.port.map(|p| p.to_string()).unwrap_or_default(),
                h(d.proto.as_deref().unwrap_or("")),
                d.count,
                h(&d.first),
                d.first_cite(),
                h(&d.last),
                d.last_cite()
            );
        }
        let _ = writeln!(o, "</table>");
    }
    let _ = writeln!(
        o,
        "<h2>Supporting timeline <span class=\"muted\">({} to {})</span></h2>",
        h(&r.window.from),
        h(&r.window.to)
    );
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        vm_head(&mut o, m);
        let _ = writeln!(
            o,
            "<table><tr><th>time</th><th>observer</th><th>section</th><th>#</th><th>record</th></tr>"
        );
        for l in &v.timeline.entries {
            let e = &l.entry;
            let _ = writeln!(
                o,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}{}</td></tr>",
                if l.decisive {
                    " class=\"decisive\""
                } else {
                    ""
                },
                h(&e.time),
                e.observer,
                l.section,
                cite(e),
                h(&display(e)),
                h(&tag(e))
            );
        }
        let _ = writeln!(o, "</table>");
        if !v.timeline.filtered.is_empty() {
            let total: usize = v.timeline.filtered.iter().map(|f| f.count).sum();
            let _ = writeln!(
                o,
                "<p>Left out as routine ({total} records, all in the JSON report's lists and in <code>pugmark timeline</code>):</p><ul>"
            );
            for f in &v.timeline.filtered {
                let _ = writeln!(o, "<li>{}: {}</li>", h(f.reason), f.count);
            }
            let _ = writeln!(o, "</ul>");
        }
    }
    let _ = writeln!(o, "<h2>Integrity</h2><p>{}</p>", h(&integrity_counts(r)));
    o.push_str("</body></html>\n");
    o
}
