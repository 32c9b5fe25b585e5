//! `who`: which VM held an address (IP, MAC or hostname) at a moment, who owned it, whose
//! payload ran there, on which hypervisor — with the evidence, and without ever guessing.
//!
//! Intervals are derived here from the fact store's observations (DESIGN.md "Events and
//! facts"): walking one VM's observations in time order, a lease of the address opens at the
//! first observation that lists it and closes at the first later one whose (non-empty) list
//! no longer has it, or at the VM's deletion. A VM deleted before the moment or created after
//! it therefore never matches. Placement is the hypervisor of the last observation at or
//! before the moment; owner the last user/project at or before it, named through the
//! directory whenever a directory entry exists (whenever it arrived). Payload runs are the
//! VO's jobs that executed on the address and started inside the lease. Several VMs holding
//! the address at once are all returned, marked ambiguous. Unknown → null, never a guess.
//!
//! The JSON shape of [`WhoAnswer`] is a contract (issue 3): keep the names.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use jiff::Timestamp;
use model::Observer;
use serde::Serialize;
use views::facts::{DirEntry, FactStore, JobObs, NatObs, NetObs, ScimEntry, VmObs};

use crate::contain::{self, ContainJson};
use crate::nat::{Translation, translations_at};

/// What is asked: an address of one kind, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct WhoQuery {
    /// `ip`, `mac` or `host`.
    pub kind: AddrKind,
    pub value: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrKind {
    Ip,
    Mac,
    Host,
}

impl AddrKind {
    fn store_kind(self) -> &'static str {
        match self {
            AddrKind::Ip => "ip",
            AddrKind::Mac => "mac",
            AddrKind::Host => "hostname",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WhoAnswer {
    pub query: QueryJson,
    pub matches: Vec<Match>,
    /// Floating-IP associations covering the moment that no record ties to a live VM (a port
    /// nobody created, a port whose instance was deleted, …): "unknown", with the reason and
    /// the records, never a guess. Absent from the JSON when empty (an addition to issue 3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<UnresolvedJson>,
}

/// Through which Neutron floating IP a match holds the asked address (issue 12).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FloatingJson {
    /// The floating IP's Neutron id.
    pub id: String,
    /// The port it was associated to, the VM's.
    pub port_id: String,
    /// The private address it was NATed to, as Neutron said.
    pub fixed_ip: Option<String>,
}

/// How a VM sits behind a router whose gateway address was asked (issue 12).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BehindRouterJson {
    pub router_id: String,
    /// The router's gateway address (the asked one).
    pub gateway_ip: String,
    /// The router's interface subnets the VM's port was in.
    pub subnet_ids: Vec<String>,
    /// The VM's port and its address in those subnets (the pre-NAT source).
    pub port_id: String,
    pub inside_ip: String,
    /// The router interface and port records that put the VM there.
    pub seqs: Vec<u64>,
}

/// A floating-IP association that covers the moment but leads to no VM.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnresolvedJson {
    /// `floating_ip` (an association leading to no VM) or `router_gateway` (the SNAT address
    /// of a Neutron router: the VMs behind it share it, and only a NAT translation record
    /// names one).
    pub kind: String,
    pub floating_ip_id: Option<String>,
    pub port_id: Option<String>,
    pub router_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub from: String,
    pub to: Option<String>,
    /// Why no VM: what is missing or contradicts.
    pub reason: String,
    pub evidence: Vec<EvidenceJson>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueryJson {
    pub kind: AddrKind,
    pub value: String,
    pub at: String,
    /// `--port`: the public port of a NAT translation (issue 12; absent when not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `--peer`: the outside peer, `IP` or `IP:PORT` (`[v6]:port`), as asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `--proto`: the transport protocol of the connection (`tcp`, `udp`, …), as normalised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
}

/// What narrows the NAT path of `who --ip` (issue 12): the public port and the outside peer.
/// The default (nothing) lists every VM with a translation of the address at the moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatFilter {
    pub port: Option<u16>,
    pub peer_ip: Option<String>,
    pub peer_port: Option<u16>,
    /// The protocol, lower-case name as the decoders write it (`tcp`, `udp`, `icmp`, or the
    /// number): a NAT gives the same public port to a TCP and a UDP connection at once.
    /// A translation whose protocol no record gives is kept (it cannot be excluded).
    pub proto: Option<String>,
}

impl NatFilter {
    fn peer_text(&self) -> Option<String> {
        let ip = self.peer_ip.as_ref()?;
        Some(match (self.peer_port, ip.contains(':')) {
            (Some(p), true) => format!("[{ip}]:{p}"),
            (Some(p), false) => format!("{ip}:{p}"),
            (None, _) => ip.clone(),
        })
    }

    fn admits(&self, t: &Translation) -> bool {
        self.peer_ip
            .as_ref()
            .is_none_or(|p| t.peer_ip.as_deref() == Some(p.as_str()))
            && self.peer_port.is_none_or(|p| t.peer_port == Some(p))
            && self
                .proto
                .as_ref()
                .is_none_or(|p| t.proto.as_deref().is_none_or(|tp| tp == p))
    }
}

/// The NAT translation through which a match holds a public address and port (issue 12):
/// the network node's record of the connection, cited by `seqs`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NatJson {
    /// `snat` (the VM's source rewritten) or `dnat` (a public destination rewritten to it).
    pub kind: String,
    pub proto: Option<String>,
    pub public_ip: String,
    pub public_port: Option<u16>,
    pub inside_ip: String,
    pub inside_port: Option<u16>,
    pub peer_ip: Option<String>,
    pub peer_port: Option<u16>,
    pub from: String,
    /// Null while open.
    pub to: Option<String>,
    /// How it ends: `destroy`, `flow_end`, `timeout`, `next_translation` or `open`
    /// (query::nat explains each).
    pub end: String,
    pub ct_id: Option<String>,
    /// Who reported it (exporters, senders' addresses or host names) and in which format.
    pub senders: Vec<String>,
    pub sources: Vec<String>,
    /// The record that opened it (first in walk order) and the one that closed it.
    pub seq: u64,
    pub seqs: Vec<u64>,
    /// How many records the translation is made of (UPDATEs, duplicates, both sources).
    pub records: usize,
    /// Other translations of the same VM covering the moment, when no `--port` was given.
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl QueryJson {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            AddrKind::Ip => "IP",
            AddrKind::Mac => "MAC",
            AddrKind::Host => "host",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Match {
    pub vm: VmJson,
    pub owner: OwnerJson,
    pub payload_users: Vec<PayloadJson>,
    pub lease: LeaseJson,
    pub evidence: Vec<EvidenceJson>,
    pub ambiguous: bool,
    /// Where this VM's sources disagree (two owners, a deletion before the creation, …):
    /// kept and shown, never resolved silently. An extension of the issue-3 contract; empty
    /// when the sources agree.
    pub conflicts: Vec<ConflictJson>,
    /// Set when the address is a Neutron floating IP associated to this VM's port at the
    /// moment (absent from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floating_ip: Option<FloatingJson>,
    /// Set when the VM is named through a NAT translation of the asked public address (and
    /// port) at the moment (issue 12; absent from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatJson>,
    /// Set when the asked address is a Neutron router's gateway (SNAT) address and this VM
    /// sat behind the router at the moment (a port in one of the subnets the router had an
    /// interface on) with no NAT translation record to say which VM it was: a candidate,
    /// always ambiguous when the router routes more than one VM (issue 12; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_router: Option<BehindRouterJson>,
    /// What to do with what the evidence supports (issue 12, "Containment, answered"):
    /// [`crate::contain`].
    pub contain: ContainJson,
}

/// Two records about one VM that cannot both be right.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConflictJson {
    /// `owner` (two user ids), `project` (two project ids), `lifecycle` (deleted before
    /// created, or seen alive after its deletion).
    pub kind: String,
    pub summary: String,
    /// Ledger positions of the records on each side.
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VmJson {
    pub uuid: String,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// The compute host as the cloud names it (the notification's `host`).
    pub hypervisor: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OwnerJson {
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PayloadJson {
    pub dn: Option<String>,
    pub owner: Option<String>,
    pub job_id: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The token behind the payload (issue 12): the person is issuer + subject.
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// The VO (`x509UserProxyVOName`, glexec's `Used VO`, a proxy's VO, a token's groups).
    pub vo: Option<String>,
    /// Which records say so: `htcondor` (job ads, userlogs), `glexec`, `arc`, `ce-audit`.
    pub source: String,
    /// The person, named through the SCIM directory (an IAM's own token or a linked OIDC
    /// identity, else a certificate subject), when exactly one entry says so; null otherwise.
    pub person: Option<PersonJson>,
    /// Every directory entry that matches, when more than one does (never a guess).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub person_candidates: Vec<String>,
    /// Ledger positions of the payload's records (and the identity lines joined to them).
    pub seqs: Vec<u64>,
}

/// A person as a SCIM directory (INDIGO IAM) knows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PersonJson {
    pub scim_id: String,
    pub user_name: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    /// The directory records that name them (the entry, the linked identity).
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseJson {
    pub from: String,
    /// Null while the lease is still open.
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvidenceJson {
    pub time: String,
    pub seq: u64,
    pub observer: Observer,
    pub source: String,
    pub summary: String,
}

/// A half-open interval in nanoseconds; `to == None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub from: i64,
    pub to: Option<i64>,
    /// Ledger positions of the observations that opened and closed it.
    pub opened_by: u64,
    pub closed_by: Option<u64>,
}

impl Lease {
    pub fn covers(&self, t: i64) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}

fn is_deletion(o: &VmObs) -> bool {
    let ty = o.event_type.as_deref().unwrap_or("");
    ty.ends_with("delete.end") || o.state.as_deref() == Some("deleted")
}

fn values_of(o: &VmObs, kind: AddrKind) -> Vec<&str> {
    match kind {
        AddrKind::Ip => o.ips.iter().map(String::as_str).collect(),
        AddrKind::Mac => o.macs.iter().map(String::as_str).collect(),
        AddrKind::Host => o.hostname.as_deref().into_iter().collect(),
    }
}

/// The intervals during which one VM held `value`, from its observations in time order.
pub fn leases(obs: &[VmObs], kind: AddrKind, value: &str) -> Vec<Lease> {
    let value = value.to_lowercase();
    let mut out = Vec::new();
    let mut open: Option<(i64, u64)> = None;
    for o in obs {
        if is_deletion(o) {
            if let Some((from, by)) = open.take() {
                out.push(Lease {
                    from,
                    to: Some(o.time_ns),
                    opened_by: by,
                    closed_by: Some(o.seq),
                });
            }
            continue;
        }
        let values = values_of(o, kind);
        if values.is_empty() {
            continue;
        }
        let holds = values.iter().any(|v| v.eq_ignore_ascii_case(&value));
        match (holds, open) {
            (true, None) => open = Some((o.time_ns, o.seq)),
            (false, Some((from, by))) => {
                out.push(Lease {
                    from,
                    to: Some(o.time_ns),
                    opened_by: by,
                    closed_by: Some(o.seq),
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some((from, by)) = open {
        out.push(Lease {
            from,
            to: None,
            opened_by: by,
            closed_by: None,
        });
    }
    out
}

pub(crate) fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(crate) fn ts_ns(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

fn evidence(o: &VmObs) -> EvidenceJson {
    EvidenceJson {
        time: rfc3339(o.time_ns),
        seq: o.seq,
        observer: o.observer,
        source: o.event_type.clone().unwrap_or_else(|| "vm".into()),
        summary: o.summary.clone(),
    }
}

fn is_creation(o: &VmObs) -> bool {
    let ty = o.event_type.as_deref().unwrap_or("");
    ty.contains("create.")
}

/// Disagreements among one VM's observations. A VM has one owner for its whole life in
/// OpenStack, so two user (or project) ids are a conflict whatever their times; a deletion
/// earlier than a creation, or a cloud record showing the VM alive after its deletion, is a
/// lifecycle conflict. Deterministic: ordered by kind, then by the first record involved.
pub fn conflicts(obs: &[VmObs]) -> Vec<ConflictJson> {
    let mut out = Vec::new();
    for (kind, get) in [
        (
            "owner",
            (|o: &VmObs| o.user_id.as_deref()) as fn(&VmObs) -> Option<&str>,
        ),
        ("project", |o: &VmObs| o.project_id.as_deref()),
    ] {
        // First record naming each distinct value, in time order.
        let mut firsts: Vec<(&str, &VmObs)> = Vec::new();
        for o in obs {
            if let Some(v) = get(o)
                && !firsts.iter().any(|(f, _)| *f == v)
            {
                firsts.push((v, o));
            }
        }
        if firsts.len() > 1 {
            let said: Vec<String> = firsts
                .iter()
                .map(|(v, o)| format!("{v} (#{} at {})", o.seq, rfc3339(o.time_ns)))
                .collect();
            out.push(ConflictJson {
                kind: kind.into(),
                summary: format!("sources name {} {kind}s: {}", firsts.len(), said.join(", ")),
                seqs: firsts.iter().map(|(_, o)| o.seq).collect(),
            });
        }
    }
    if let Some(del) = obs.iter().find(|o| is_deletion(o)) {
        let late_create = obs
            .iter()
            .find(|o| is_creation(o) && o.time_ns > del.time_ns);
        let alive_after = obs.iter().find(|o| {
            o.time_ns > del.time_ns
                && !is_deletion(o)
                && o.state
                    .as_deref()
                    .is_some_and(|s| s == "active" || s == "running")
        });
        if let Some(c) = late_create {
            out.push(ConflictJson {
                kind: "lifecycle".into(),
                summary: format!(
                    "deleted at {} (#{}) before created at {} (#{})",
                    rfc3339(del.time_ns),
                    del.seq,
                    rfc3339(c.time_ns),
                    c.seq
                ),
                seqs: vec![del.seq, c.seq],
            });
        } else if let Some(a) = alive_after {
            out.push(ConflictJson {
                kind: "lifecycle".into(),
                summary: format!(
                    "deleted at {} (#{}) but {} at {} (#{})",
                    rfc3339(del.time_ns),
                    del.seq,
                    a.state.as_deref().unwrap_or("alive"),
                    rfc3339(a.time_ns),
                    a.seq
                ),
                seqs: vec![del.seq, a.seq],
            });
        }
    }
    out
}

/// The last non-empty value of `get` among observations at or before `t`.
fn last_at(obs: &[VmObs], t: i64, get: impl Fn(&VmObs) -> Option<&String>) -> Option<&VmObs> {
    obs.iter().rfind(|o| o.time_ns <= t && get(o).is_some())
}

/// What [`who`] reads from the fact store. [`FactCache`] memoises it for callers that ask
/// thousands of times about a few hundred addresses (`hunt`); the answer is the same.
pub trait Facts {
    fn vms_with(&mut self, kind: &str, value: &str) -> anyhow::Result<Vec<String>>;
    fn vm_observations(&mut self, uuid: &str) -> anyhow::Result<Rc<Vec<VmObs>>>;
    fn user(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>>;
    fn project(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>>;
    fn jobs_at(&mut self, ip: Option<&str>, host: Option<&str>) -> anyhow::Result<Vec<JobObs>>;
    /// Observations of the floating IPs that ever had this address.
    fn floating_ip_observations(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>>;
    /// Observations of the routers whose gateway addresses ever included this address.
    fn routers_with_gateway(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>>;
    /// Observations of one Neutron resource.
    fn net_observations(&mut self, resource: &str, id: &str) -> anyhow::Result<Vec<NetObs>>;
    /// NAT translation records of a public address (and port); with their summaries when
    /// `text`, else [`Facts::fill_nat_summaries`] adds them to the records an answer cites.
    fn nat_observations(
        &mut self,
        address: &str,
        port: Option<u16>,
        text: bool,
    ) -> anyhow::Result<Vec<NatObs>>;
    fn fill_nat_summaries(&mut self, obs: &mut [&mut NatObs]) -> anyhow::Result<()> {
        Ok(self.store().fill_nat_summaries(obs)?)
    }
    /// Issue 12: the store itself, for the identity and payload reads (never memoised: a
    /// few per match).
    fn store(&self) -> &FactStore;
}

impl Facts for &FactStore {
    fn vms_with(&mut self, kind: &str, value: &str) -> anyhow::Result<Vec<String>> {
        Ok(FactStore::vms_with(self, kind, value)?)
    }
    fn vm_observations(&mut self, uuid: &str) -> anyhow::Result<Rc<Vec<VmObs>>> {
        Ok(Rc::new(FactStore::vm_observations(self, uuid)?))
    }
    fn user(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>> {
        Ok(FactStore::user(self, id)?)
    }
    fn project(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>> {
        Ok(FactStore::project(self, id)?)
    }
    fn jobs_at(&mut self, ip: Option<&str>, host: Option<&str>) -> anyhow::Result<Vec<JobObs>> {
        Ok(FactStore::jobs_at(self, ip, host)?)
    }
    fn floating_ip_observations(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>> {
        Ok(FactStore::floating_ip_observations(self, address)?)
    }
    fn net_observations(&mut self, resource: &str, id: &str) -> anyhow::Result<Vec<NetObs>> {
        Ok(FactStore::net_observations(self, resource, id)?)
    }
    fn routers_with_gateway(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>> {
        Ok(FactStore::routers_with_gateway(self, address)?)
    }
    fn nat_observations(
        &mut self,
        address: &str,
        port: Option<u16>,
        text: bool,
    ) -> anyhow::Result<Vec<NatObs>> {
        Ok(FactStore::nat_observations_with(self, address, port, text)?)
    }
    fn store(&self) -> &FactStore {
        self
    }
}

/// The fact store's answers, kept for the life of one query (the store does not change under
/// a reader). Memory grows with the distinct addresses, VMs and jobs asked about.
pub struct FactCache<'a> {
    store: &'a FactStore,
    vms: HashMap<(String, String), Vec<String>>,
    obs: HashMap<String, Rc<Vec<VmObs>>>,
    users: HashMap<String, Option<DirEntry>>,
    projects: HashMap<String, Option<DirEntry>>,
    jobs: HashMap<(Option<String>, Option<String>), Vec<JobObs>>,
    /// Neutron and NAT answers by their question (floating, ports, routers, conntrack):
    /// a hunt asks them again for every hit on one address.
    floating: HashMap<String, Vec<NetObs>>,
    net: HashMap<(String, String), Vec<NetObs>>,
    routers: HashMap<String, Vec<NetObs>>,
    nat: HashMap<(String, Option<u16>, bool), Vec<NatObs>>,
}

impl<'a> FactCache<'a> {
    pub fn new(store: &'a FactStore) -> FactCache<'a> {
        FactCache {
            store,
            vms: HashMap::new(),
            obs: HashMap::new(),
            users: HashMap::new(),
            projects: HashMap::new(),
            jobs: HashMap::new(),
            floating: HashMap::new(),
            net: HashMap::new(),
            routers: HashMap::new(),
            nat: HashMap::new(),
        }
    }
}

/// The cached answer for `key`, or `load`'s (kept for the next time).
fn memo<K: std::hash::Hash + Eq, V: Clone>(
    map: &mut HashMap<K, V>,
    key: K,
    load: impl FnOnce() -> anyhow::Result<V>,
) -> anyhow::Result<V> {
    if let Some(v) = map.get(&key) {
        return Ok(v.clone());
    }
    let v = load()?;
    map.insert(key, v.clone());
    Ok(v)
}

impl Facts for FactCache<'_> {
    fn vms_with(&mut self, kind: &str, value: &str) -> anyhow::Result<Vec<String>> {
        let store = self.store;
        memo(&mut self.vms, (kind.into(), value.into()), || {
            Ok(store.vms_with(kind, value)?)
        })
    }
    fn vm_observations(&mut self, uuid: &str) -> anyhow::Result<Rc<Vec<VmObs>>> {
        let store = self.store;
        memo(&mut self.obs, uuid.into(), || {
            Ok(Rc::new(store.vm_observations(uuid)?))
        })
    }
    fn user(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>> {
        let store = self.store;
        memo(&mut self.users, id.into(), || Ok(store.user(id)?))
    }
    fn project(&mut self, id: &str) -> anyhow::Result<Option<DirEntry>> {
        let store = self.store;
        memo(&mut self.projects, id.into(), || Ok(store.project(id)?))
    }
    fn jobs_at(&mut self, ip: Option<&str>, host: Option<&str>) -> anyhow::Result<Vec<JobObs>> {
        let store = self.store;
        let key = (ip.map(str::to_string), host.map(str::to_string));
        memo(&mut self.jobs, key, || Ok(store.jobs_at(ip, host)?))
    }
    fn floating_ip_observations(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>> {
        let store = self.store;
        memo(&mut self.floating, address.into(), || {
            Ok(store.floating_ip_observations(address)?)
        })
    }
    fn net_observations(&mut self, resource: &str, id: &str) -> anyhow::Result<Vec<NetObs>> {
        let store = self.store;
        memo(&mut self.net, (resource.into(), id.into()), || {
            Ok(store.net_observations(resource, id)?)
        })
    }
    fn routers_with_gateway(&mut self, address: &str) -> anyhow::Result<Vec<NetObs>> {
        let store = self.store;
        memo(&mut self.routers, address.into(), || {
            Ok(store.routers_with_gateway(address)?)
        })
    }
    fn nat_observations(
        &mut self,
        address: &str,
        port: Option<u16>,
        text: bool,
    ) -> anyhow::Result<Vec<NatObs>> {
        let store = self.store;
        memo(&mut self.nat, (address.into(), port, text), || {
            Ok(store.nat_observations_with(address, port, text)?)
        })
    }
    fn store(&self) -> &FactStore {
        self.store
    }
}

/// Answer `who`.
pub fn who(store: &FactStore, q: &WhoQuery) -> anyhow::Result<WhoAnswer> {
    who_in(&mut &*store, q)
}

/// Answer `who` from any [`Facts`] (the store itself, or a [`FactCache`] over it).
pub fn who_in(store: &mut dyn Facts, q: &WhoQuery) -> anyhow::Result<WhoAnswer> {
    who_with(store, q, &NatFilter::default())
}

/// [`who_in`] with the NAT path narrowed by a public port and an outside peer (`who --ip
/// PUBLIC --port P [--peer IP[:PORT]]`).
pub fn who_with(
    store: &mut dyn Facts,
    q: &WhoQuery,
    nat_filter: &NatFilter,
) -> anyhow::Result<WhoAnswer> {
    let t = ts_ns(q.at);
    let mut matches = Vec::new();
    for uuid in store.vms_with(q.kind.store_kind(), &q.value)? {
        let obs = store.vm_observations(&uuid)?;
        let Some(lease) = leases(&obs, q.kind, &q.value)
            .into_iter()
            .find(|l| l.covers(t))
        else {
            continue;
        };
        matches.push(vm_match(store, q, &uuid, &obs, &lease, Vec::new())?);
    }
    let mut unresolved = Vec::new();
    if q.kind == AddrKind::Ip {
        floating(store, q, &mut matches, &mut unresolved)?;
        nat(store, q, nat_filter, &mut matches, &mut unresolved)?;
    }
    let ambiguous = matches.len() > 1;
    for m in &mut matches {
        m.ambiguous = ambiguous;
    }
    Ok(WhoAnswer {
        query: QueryJson {
            kind: q.kind,
            value: q.value.clone(),
            at: q.at.to_string(),
            port: nat_filter.port,
            peer: nat_filter.peer_text(),
            proto: nat_filter.proto.clone(),
        },
        matches,
        unresolved,
    })
}

/// The match for one VM holding the address through `lease` (its own observations `obs`),
/// with `extra` evidence (the Neutron records of a floating IP).
fn vm_match(
    store: &mut dyn Facts,
    q: &WhoQuery,
    uuid: &str,
    obs: &[VmObs],
    lease: &Lease,
    extra: Vec<EvidenceJson>,
) -> anyhow::Result<Match> {
    let t = ts_ns(q.at);
    {
        let mut ev: BTreeMap<u64, EvidenceJson> = BTreeMap::new();
        for e in extra {
            ev.insert(e.seq, e);
        }
        for seq in std::iter::once(lease.opened_by).chain(lease.closed_by) {
            if let Some(o) = obs.iter().find(|o| o.seq == seq) {
                ev.insert(o.seq, evidence(o));
            }
        }
        let mut pick = |get: fn(&VmObs) -> Option<&String>| {
            let o = last_at(obs, t, get);
            if let Some(o) = o {
                ev.insert(o.seq, evidence(o));
            }
            (o.and_then(get).cloned(), o.map(|o| o.seq))
        };
        let (hypervisor, hypervisor_seq) = pick(|o| o.hypervisor.as_ref());
        let (name, _) = pick(|o| o.name.as_ref());
        let (hostname, _) = pick(|o| o.hostname.as_ref());
        let (image, _) = pick(|o| o.image.as_ref());
        let (user_id, user_seq) = pick(|o| o.user_id.as_ref());
        let (project_id, project_seq) = pick(|o| o.project_id.as_ref());
        let user = match &user_id {
            Some(id) => store.user(id)?,
            None => None,
        };
        let project = match &project_id {
            Some(id) => store.project(id)?,
            None => None,
        };
        // Payload runs: jobs that executed on this address (or this VM's hostname) and started
        // inside the lease, running at `t`.
        let ip = (q.kind == AddrKind::Ip).then_some(q.value.as_str());
        let mut jobs = store.jobs_at(ip, hostname.as_deref())?;
        join_userlog_ids(&mut jobs);
        // A job whose ad names its execution address ran on the VM holding that address when
        // it started, whatever its hostname: same-named VMs must not get each other's payloads.
        let foreign: std::collections::BTreeSet<String> = jobs
            .iter()
            .filter(|j| match (&j.exec_ip, j.start_ns) {
                (Some(ip), Some(s)) => !leases(obs, AddrKind::Ip, ip).iter().any(|l| l.covers(s)),
                _ => false,
            })
            .map(|j| j.job_id.clone())
            .collect();
        let mut jobs: Vec<JobObs> = jobs
            .into_iter()
            .filter(|j| !foreign.contains(&j.job_id))
            .collect();
        // Issue 12: payload records from inside the VM (glexec) tied to it by the one
        // attribution rule, and the CE's audit records of the same jobs (by cluster.proc).
        jobs.extend(crate::contain::attributed_payloads(
            store.store(),
            uuid,
            obs,
            t,
        )?);
        jobs.extend(crate::contain::audit_rows_of(store.store(), &jobs)?);
        join_userlog_ids(&mut jobs);
        store.store().fill_identities(&mut jobs)?;
        let mut payload_users = payload_runs(&jobs, lease, t);
        for p in &mut payload_users {
            crate::contain::name_person(store.store(), p)?;
        }
        let mut evidence_list: Vec<EvidenceJson> = ev.into_values().collect();
        for j in jobs
            .iter()
            .filter(|j| payload_users.iter().any(|p| p.job_id == j.job_id))
        {
            evidence_list.push(EvidenceJson {
                time: rfc3339(j.time_ns),
                seq: j.seq,
                observer: Observer::Vo,
                source: "job".into(),
                summary: j.summary.clone(),
            });
        }
        for d in [&user, &project].into_iter().flatten() {
            evidence_list.push(EvidenceJson {
                time: String::new(),
                seq: d.seq,
                observer: Observer::Cloud,
                source: "directory".into(),
                summary: format!("{} is {}", d.id, d.name.clone().unwrap_or_default()),
            });
        }
        evidence_list.sort_by_key(|e| e.seq);
        let contain = contain::contain(
            store.store(),
            &contain::VmFacts {
                uuid,
                hypervisor: hypervisor.as_deref(),
                hypervisor_seq,
                lease_seq: lease.opened_by,
                user_id: user_id.as_deref(),
                user_seq,
                user: user.as_ref(),
                project_id: project_id.as_deref(),
                project_seq,
                project: project.as_ref(),
            },
            &payload_users,
        )?;
        Ok(Match {
            vm: VmJson {
                uuid: uuid.to_string(),
                name,
                hostname,
                hypervisor,
                image,
            },
            owner: OwnerJson {
                user_id,
                user_name: user.and_then(|u| u.name),
                project_id,
                project_name: project.and_then(|p| p.name),
            },
            payload_users,
            lease: LeaseJson {
                from: rfc3339(lease.from),
                to: lease.to.map(rfc3339),
            },
            evidence: evidence_list,
            ambiguous: false,
            conflicts: conflicts(obs),
            floating_ip: None,
            nat: None,
            behind_router: None,
            contain,
        })
    }
}

/// One association of a Neutron floating IP with a port, half-open `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub fip_id: String,
    pub port_id: String,
    pub fixed_ip: Option<String>,
    pub lease: Lease,
}

/// Order of observations at one instant that does not depend on arrival: creation, then
/// updates (by the port they name), then deletion; ledger position last.
fn net_key(o: &NetObs) -> (i64, u8, String, u64) {
    let rank = match o.action.as_str() {
        "create" => 0,
        "update" => 1,
        _ => 2,
    };
    (
        o.time_ns,
        rank,
        o.fip_port.clone().unwrap_or_default(),
        o.seq,
    )
}

/// A floating IP's associations with ports, from its observations (any order, duplicates
/// allowed): one opens at the notification that sets `port_id` to a port, and closes at the
/// one that sets another port or null, drops the address, or deletes the floating IP. A
/// notification that does not say `port_id` changes nothing.
pub fn associations(obs: &[NetObs], address: &str) -> Vec<Association> {
    let mut by_id: BTreeMap<&str, Vec<&NetObs>> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.resource == "floatingip") {
        by_id.entry(o.id.as_str()).or_default().push(o);
    }
    let mut out = Vec::new();
    for (id, mut list) in by_id {
        list.sort_by_key(|o| net_key(o));
        let mut open: Option<(String, Option<String>, i64, u64)> = None;
        for o in list {
            let other_address = o.floating_ip.as_deref().is_some_and(|a| a != address);
            let next: Option<Option<&str>> = if o.action == "delete" || other_address {
                Some(None)
            } else {
                match o.fip_port.as_deref() {
                    None => None,
                    Some("-") => Some(None),
                    Some(p) => Some(Some(p)),
                }
            };
            let Some(next) = next else { continue };
            if open.as_ref().map(|(p, ..)| p.as_str()) == next {
                continue;
            }
            if let Some((port, fixed, from, by)) = open.take() {
                out.push(Association {
                    fip_id: id.to_string(),
                    port_id: port,
                    fixed_ip: fixed,
                    lease: Lease {
                        from,
                        to: Some(o.time_ns),
                        opened_by: by,
                        closed_by: Some(o.seq),
                    },
                });
            }
            if let Some(p) = next {
                open = Some((p.to_string(), o.fixed_ip.clone(), o.time_ns, o.seq));
            }
        }
        if let Some((port, fixed, from, by)) = open {
            out.push(Association {
                fip_id: id.to_string(),
                port_id: port,
                fixed_ip: fixed,
                lease: Lease {
                    from,
                    to: None,
                    opened_by: by,
                    closed_by: None,
                },
            });
        }
    }
    out
}

pub(crate) fn net_evidence(o: &NetObs) -> EvidenceJson {
    EvidenceJson {
        time: rfc3339(o.time_ns),
        seq: o.seq,
        observer: Observer::Cloud,
        source: format!("{}.{}.end", o.resource, o.action),
        summary: o.summary.clone(),
    }
}

/// The VMs holding `q.value` as a Neutron floating IP at the moment: the association that
/// covers it (cut short by the port's deletion), the port's instance as of the moment (the
/// last port record at or before it), that instance's nova records. Whatever is missing or
/// contradicts (no record of the port, no instance on it, an instance with no nova record or
/// deleted before the moment) goes to `unresolved` with the reason: never a guess.
fn floating(
    store: &mut dyn Facts,
    q: &WhoQuery,
    matches: &mut Vec<Match>,
    unresolved: &mut Vec<UnresolvedJson>,
) -> anyhow::Result<()> {
    let t = ts_ns(q.at);
    gateway(store, q, matches, unresolved)?;
    let fobs = store.floating_ip_observations(&q.value)?;
    if fobs.is_empty() {
        return Ok(());
    }
    for a in associations(&fobs, &q.value) {
        if !a.lease.covers(t) {
            continue;
        }
        let mut evidence: Vec<EvidenceJson> = fobs
            .iter()
            .filter(|o| o.seq == a.lease.opened_by || Some(o.seq) == a.lease.closed_by)
            .map(net_evidence)
            .collect();
        let pobs = store.net_observations("port", &a.port_id)?;
        let mut lease = a.lease;
        // The port's deletion ends the association.
        let deleted = pobs
            .iter()
            .filter(|o| o.action == "delete")
            .min_by_key(|o| (o.time_ns, o.seq));
        let mut reason = None;
        if let Some(d) = deleted {
            if d.time_ns <= t && d.time_ns > lease.from {
                continue; // the association ended with the port, before the moment
            }
            if d.time_ns <= t {
                evidence.push(net_evidence(d));
                reason = Some(format!(
                    "port {} was deleted at {} (#{}), before this association",
                    a.port_id,
                    rfc3339(d.time_ns),
                    d.seq
                ));
            } else if lease.to.is_none_or(|to| d.time_ns < to) {
                lease.to = Some(d.time_ns);
                lease.closed_by = Some(d.seq);
                evidence.push(net_evidence(d));
            }
        }
        let port_at = pobs
            .iter()
            .filter(|o| o.action != "delete" && o.time_ns <= t)
            .max_by_key(|o| (o.time_ns, o.vm_uuid.is_some(), o.seq));
        if let Some(p) = port_at {
            evidence.push(net_evidence(p));
        }
        let uuid = port_at.and_then(|p| p.vm_uuid.clone());
        let unknown = |reason: String, evidence: Vec<EvidenceJson>| UnresolvedJson {
            kind: "floating_ip".into(),
            floating_ip_id: Some(a.fip_id.clone()),
            port_id: Some(a.port_id.clone()),
            router_id: None,
            fixed_ip: a.fixed_ip.clone(),
            from: rfc3339(lease.from),
            to: lease.to.map(rfc3339),
            reason,
            evidence,
        };
        if let Some(r) = reason {
            unresolved.push(unknown(r, evidence));
            continue;
        }
        let Some(uuid) = uuid else {
            let r = match port_at {
                None if pobs.is_empty() => format!(
                    "no Neutron record of port {} (never created, or created before collection)",
                    a.port_id
                ),
                None => format!("no record of port {} at or before the moment", a.port_id),
                Some(p) => format!(
                    "port {} belonged to no instance at the moment (device_owner {})",
                    a.port_id,
                    p.device_owner.as_deref().unwrap_or("unknown")
                ),
            };
            unresolved.push(unknown(r, evidence));
            continue;
        };
        let obs = store.vm_observations(&uuid)?;
        if obs.is_empty() {
            let r = format!("instance {uuid} of port {} has no nova record", a.port_id);
            unresolved.push(unknown(r, evidence));
            continue;
        }
        if let Some(d) = obs.iter().find(|o| is_deletion(o) && o.time_ns <= t) {
            evidence.push(evidence_of(d));
            let r = format!(
                "instance {uuid} of port {} was deleted at {} (#{}), before the moment",
                a.port_id,
                rfc3339(d.time_ns),
                d.seq
            );
            unresolved.push(unknown(r, evidence));
            continue;
        }
        let via = FloatingJson {
            id: a.fip_id.clone(),
            port_id: a.port_id.clone(),
            fixed_ip: a.fixed_ip.clone(),
        };
        // Nova's legacy payload may already list the address for this VM: one match, both
        // sources cited (two Neutron floating IPs on one address stay two, ambiguous).
        if let Some(m) = matches
            .iter_mut()
            .find(|m| m.vm.uuid == uuid && m.floating_ip.is_none())
        {
            m.floating_ip = Some(via);
            m.evidence.extend(evidence);
            m.evidence.sort_by_key(|e| e.seq);
            m.evidence.dedup();
            continue;
        }
        let mut m = vm_match(store, q, &uuid, &obs, &lease, evidence)?;
        m.floating_ip = Some(via);
        matches.push(m);
    }
    for u in unresolved.iter_mut() {
        u.evidence.sort_by_key(|e| e.seq);
        u.evidence.dedup();
    }
    Ok(())
}

/// A Neutron router whose gateway (SNAT) address is `q.value` at the moment (its last record
/// at or before the moment lists it and is no deletion): an `unresolved` entry, since which
/// VM behind the router is meant takes a NAT translation record.
fn gateway(
    store: &mut dyn Facts,
    q: &WhoQuery,
    matches: &mut Vec<Match>,
    unresolved: &mut Vec<UnresolvedJson>,
) -> anyhow::Result<()> {
    let t = ts_ns(q.at);
    let robs = store.routers_with_gateway(&q.value)?;
    let mut by_id: BTreeMap<&str, Vec<&NetObs>> = BTreeMap::new();
    for o in &robs {
        by_id.entry(o.id.as_str()).or_default().push(o);
    }
    for (id, mut list) in by_id {
        list.sort_by_key(|o| net_key(o));
        let Some(last) = list.iter().rfind(|o| o.time_ns <= t) else {
            continue;
        };
        if last.action == "delete" || !last.ips.contains(&q.value) {
            continue;
        }
        let from = list
            .iter()
            .rfind(|o| {
                o.time_ns <= last.time_ns && (o.action == "delete" || !o.ips.contains(&q.value))
            })
            .and_then(|gap| list.iter().find(|o| net_key(o) > net_key(gap)))
            .or_else(|| list.first())
            .copied()
            .unwrap_or(last);
        let mut evidence = vec![net_evidence(from), net_evidence(last)];
        evidence.sort_by_key(|e| e.seq);
        evidence.dedup();
        let behind = behind_router(store, q, id, matches)?;
        unresolved.push(UnresolvedJson {
            kind: "router_gateway".into(),
            floating_ip_id: None,
            port_id: None,
            router_id: Some(id.to_string()),
            fixed_ip: None,
            from: rfc3339(from.time_ns),
            to: None,
            reason: format!(
                "{} is the external gateway (SNAT) address of router {id}: every VM behind it \
                 shares it ({behind} listed as candidates, from its interfaces' subnets); a NAT \
                 translation record is needed to name one",
                q.value
            ),
            evidence,
        });
    }
    Ok(())
}

/// The VMs behind router `router` at the moment, added to `matches` as candidates (each
/// with [`BehindRouterJson`]); returns how many. The router's subnets at the moment: per
/// interface port, its last `router.interface.*` record at or before the moment (create
/// keeps it, delete drops it; order-independent: time, then delete after create, then
/// seq). The VMs: per port with an address in one of those subnets, its last record at or
/// before the moment (not a deletion), its instance, and that instance's lease (nova's) on
/// the port's address in the subnet — a VM nova does not show holding the address is left
/// out, never guessed.
fn behind_router(
    store: &mut dyn Facts,
    q: &WhoQuery,
    router: &str,
    matches: &mut Vec<Match>,
) -> anyhow::Result<usize> {
    let t = ts_ns(q.at);
    let ifaces = store.store().router_interfaces(router)?;
    let mut last: BTreeMap<&str, &NetObs> = BTreeMap::new();
    for o in ifaces.iter().filter(|o| o.time_ns <= t) {
        let key = |o: &NetObs| (o.time_ns, u8::from(o.action == "delete"), o.seq);
        match last.get(o.id.as_str()) {
            Some(prev) if key(prev) >= key(o) => {}
            _ => {
                last.insert(o.id.as_str(), o);
            }
        }
    }
    let live: Vec<&NetObs> = last
        .into_values()
        .filter(|o| o.action != "delete")
        .collect();
    let subnets: Vec<String> = live
        .iter()
        .flat_map(|o| o.subnets.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if subnets.is_empty() {
        return Ok(0);
    }
    let ports = store.store().ports_in_subnets(&subnets)?;
    let mut by_port: BTreeMap<&str, Vec<&NetObs>> = BTreeMap::new();
    for o in &ports {
        by_port.entry(o.id.as_str()).or_default().push(o);
    }
    let mut added = 0;
    for (port_id, mut list) in by_port {
        list.sort_by_key(|o| net_key(o));
        if list.iter().any(|o| o.action == "delete" && o.time_ns <= t) {
            continue;
        }
        let Some(at) = list
            .iter()
            .filter(|o| o.time_ns <= t)
            .max_by_key(|o| (o.time_ns, o.vm_uuid.is_some(), o.seq))
        else {
            continue;
        };
        let (Some(uuid), false) = (at.vm_uuid.clone(), at.ips.is_empty()) else {
            continue;
        };
        let in_subnets: Vec<String> = at
            .subnets
            .iter()
            .filter(|s| subnets.contains(s))
            .cloned()
            .collect();
        if in_subnets.is_empty() {
            continue;
        }
        let obs = store.vm_observations(&uuid)?;
        // The port's address the VM held at the moment (nova's lease), the first that is.
        let Some((inside, lease)) = at.ips.iter().find_map(|ip| {
            leases(&obs, AddrKind::Ip, ip)
                .into_iter()
                .find(|l| l.covers(t))
                .map(|l| (ip.clone(), l))
        }) else {
            continue;
        };
        if matches.iter().any(|m| m.vm.uuid == uuid) {
            continue;
        }
        let mut seqs: Vec<u64> = live
            .iter()
            .filter(|o| o.subnets.iter().any(|s| in_subnets.contains(s)))
            .map(|o| o.seq)
            .chain([at.seq])
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let evidence: Vec<EvidenceJson> = live
            .iter()
            .filter(|o| seqs.contains(&o.seq))
            .copied()
            .chain([*at])
            .map(net_evidence)
            .collect();
        let inner = WhoQuery {
            kind: AddrKind::Ip,
            value: inside.clone(),
            at: q.at,
        };
        let mut m = vm_match(store, &inner, &uuid, &obs, &lease, evidence)?;
        m.behind_router = Some(BehindRouterJson {
            router_id: router.to_string(),
            gateway_ip: q.value.clone(),
            subnet_ids: in_subnets,
            port_id: port_id.to_string(),
            inside_ip: inside,
            seqs,
        });
        matches.push(m);
        added += 1;
    }
    Ok(added)
}

fn nat_evidence(o: &NatObs) -> EvidenceJson {
    EvidenceJson {
        time: rfc3339(o.time_ns),
        seq: o.seq,
        observer: o.observer,
        source: format!("{}.{}", o.source, o.event),
        summary: o.summary.clone(),
    }
}

fn nat_json(t: &Translation) -> NatJson {
    let mut senders: Vec<String> = t.records.iter().map(|r| r.sender.clone()).collect();
    senders.retain(|s| !s.is_empty());
    senders.sort();
    senders.dedup();
    let mut sources: Vec<String> = t.records.iter().map(|r| r.source.clone()).collect();
    sources.sort();
    sources.dedup();
    let first = t.records.first().map_or(0, |r| r.seq);
    let mut seqs = vec![first];
    if let Some(last) = t.records.last()
        && last.seq != first
    {
        seqs.push(last.seq);
    }
    NatJson {
        kind: t.kind.clone(),
        proto: t.proto.clone(),
        public_ip: t.public_ip.clone(),
        public_port: t.public_port,
        inside_ip: t.inside_ip.clone(),
        inside_port: t.inside_port,
        peer_ip: t.peer_ip.clone(),
        peer_port: t.peer_port,
        from: rfc3339(t.from),
        to: t.to.map(rfc3339),
        end: t.end.to_string(),
        ct_id: t.ct_id.clone(),
        senders,
        sources,
        seq: first,
        seqs,
        records: t.records.len(),
        more: 0,
    }
}

/// The NAT path: translations of `q.value` (and the asked port and peer) covering the moment,
/// each leading to the VM that held the inside address then (the lease answer, with the
/// translation as evidence and `nat` set). An inside address no VM held goes to `unresolved`
/// (kind `nat`). A router gateway (SNAT) address answered this way is no longer unresolved.
/// Without `--port`, one match per VM (its earliest covering translation, `more` counting
/// the others), marked ambiguous by the caller when there are several.
fn nat(
    store: &mut dyn Facts,
    q: &WhoQuery,
    filter: &NatFilter,
    matches: &mut Vec<Match>,
    unresolved: &mut Vec<UnresolvedJson>,
) -> anyhow::Result<()> {
    let t = ts_ns(q.at);
    // Without a port, every record of the address is paired (a busy gateway's hundreds of
    // thousands) and only the covering translations' records are cited: their summaries are
    // read afterwards.
    let text = filter.port.is_some();
    let obs = store.nat_observations(&q.value, filter.port, text)?;
    if obs.is_empty() {
        return Ok(());
    }
    let mut covering: Vec<Translation> = translations_at(&obs, t)
        .into_iter()
        .filter(|tr| filter.admits(tr))
        .collect();
    if !text {
        let mut cited: Vec<&mut NatObs> = covering
            .iter_mut()
            .flat_map(|tr| tr.records.iter_mut())
            .collect();
        store.fill_nat_summaries(&mut cited)?;
    }
    if covering.is_empty() {
        return Ok(());
    }
    unresolved.retain(|u| u.kind != "router_gateway");
    // The translations name the VMs: the router's candidates give way to them.
    matches.retain(|m| m.behind_router.is_none());
    let inner = |ip: &str| WhoQuery {
        kind: AddrKind::Ip,
        value: ip.to_string(),
        at: q.at,
    };
    for tr in &covering {
        let evidence: Vec<EvidenceJson> = tr.records.iter().map(nat_evidence).collect();
        let inside = who_in_plain(store, &inner(&tr.inside_ip))?;
        if inside.is_empty() {
            unresolved.push(UnresolvedJson {
                kind: "nat".into(),
                floating_ip_id: None,
                port_id: None,
                router_id: None,
                fixed_ip: Some(tr.inside_ip.clone()),
                from: rfc3339(tr.from),
                to: tr.to.map(rfc3339),
                reason: format!(
                    "translated to inside address {}{} by {}, which no VM held at the moment",
                    tr.inside_ip,
                    tr.inside_port
                        .map(|p| format!(" port {p}"))
                        .unwrap_or_default(),
                    nat_json(tr).senders.join(", ")
                ),
                evidence,
            });
            continue;
        }
        for mut m in inside {
            if let Some(existing) = matches.iter_mut().find(|x| x.vm.uuid == m.vm.uuid) {
                match &mut existing.nat {
                    Some(n) => n.more += 1,
                    None => existing.nat = Some(nat_json(tr)),
                }
                if existing
                    .nat
                    .as_ref()
                    .is_some_and(|n| n.seq == tr.records[0].seq)
                {
                    existing.evidence.extend(evidence.iter().cloned());
                    existing.evidence.sort_by_key(|e| e.seq);
                    existing.evidence.dedup();
                }
                continue;
            }
            m.nat = Some(nat_json(tr));
            m.evidence.extend(evidence.iter().cloned());
            m.evidence.sort_by_key(|e| e.seq);
            m.evidence.dedup();
            matches.push(m);
        }
    }
    Ok(())
}

/// The VMs holding an inside address by lease (no floating-IP or NAT path: an inside address
/// is a VM's own).
fn who_in_plain(store: &mut dyn Facts, q: &WhoQuery) -> anyhow::Result<Vec<Match>> {
    let t = ts_ns(q.at);
    let mut out = Vec::new();
    for uuid in store.vms_with(q.kind.store_kind(), &q.value)? {
        let obs = store.vm_observations(&uuid)?;
        let Some(lease) = leases(&obs, q.kind, &q.value)
            .into_iter()
            .find(|l| l.covers(t))
        else {
            continue;
        };
        out.push(vm_match(store, q, &uuid, &obs, &lease, Vec::new())?);
    }
    Ok(out)
}

fn evidence_of(o: &VmObs) -> EvidenceJson {
    evidence(o)
}

/// A userlog names a job `cluster.proc`, the history ad `schedd#cluster.proc#qdate`: give the
/// userlog observations the ad's id when exactly one ad among `jobs` has that `cluster.proc`
/// (two schedds with the same numbers → left apart: never a guess).
pub fn join_userlog_ids(jobs: &mut [JobObs]) {
    let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
    for j in jobs.iter() {
        let mut parts = j.job_id.split('#');
        if let (Some(_schedd), Some(short), Some(_qdate)) =
            (parts.next(), parts.next(), parts.next())
        {
            let short = short_id(short);
            globals
                .entry(short)
                .and_modify(|g| {
                    if g.as_deref() != Some(j.job_id.as_str()) {
                        *g = None;
                    }
                })
                .or_insert_with(|| Some(j.job_id.clone()));
        }
    }
    for j in jobs.iter_mut() {
        if !j.job_id.contains('#')
            && let Some(Some(g)) = globals.get(&short_id(&j.job_id))
        {
            j.job_id = g.clone();
        }
    }
}

/// `2758.0` and `2758.000` name the same job.
fn short_id(id: &str) -> String {
    let mut it = id.split('.');
    let c = it.next().unwrap_or("").trim_start_matches('0');
    let p = it.next().unwrap_or("0").trim_start_matches('0');
    format!(
        "{}.{}",
        if c.is_empty() { "0" } else { c },
        if p.is_empty() { "0" } else { p }
    )
}

/// One job's observations folded (observations in time order: the first that says wins).
#[derive(Default)]
struct JobSpan<'a> {
    start: Option<i64>,
    end: Option<i64>,
    dn: Option<&'a str>,
    owner: Option<&'a str>,
    issuer: Option<&'a str>,
    subject: Option<&'a str>,
    vo: Option<&'a str>,
    source: Option<&'a str>,
    seqs: std::collections::BTreeSet<u64>,
}

/// Group job observations by job, keep those that started inside `lease` and run at `t`.
fn payload_runs(jobs: &[JobObs], lease: &Lease, t: i64) -> Vec<PayloadJson> {
    let mut by_job: BTreeMap<&str, JobSpan<'_>> = BTreeMap::new();
    for j in jobs {
        let e = by_job.entry(&j.job_id).or_default();
        e.start = match (e.start, j.start_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        e.end = match (e.end, j.end_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        e.dn = e.dn.or(j.dn.as_deref());
        e.owner = e.owner.or(j.owner.as_deref()).or(j.user.as_deref());
        // Issuer and subject from one record, so they always belong together.
        if e.subject.is_none() && j.ext.subject.is_some() {
            e.issuer = j.ext.issuer.as_deref();
            e.subject = j.ext.subject.as_deref();
        }
        e.vo = e.vo.or(j.vo.as_deref());
        // A job ad's source names it best; otherwise the first record's.
        e.source = match (e.source, j.ext.source.as_deref()) {
            (_, None) => Some("htcondor"),
            (None, s) => s,
            (s, _) => s,
        };
        e.seqs.insert(j.seq);
        e.seqs.extend(j.ext.ident_seqs.iter().copied());
    }
    by_job
        .into_iter()
        .filter(|(_, e)| {
            e.start
                .is_some_and(|s| lease.covers(s) && s <= t && e.end.is_none_or(|x| t < x))
        })
        .map(|(job, e)| PayloadJson {
            dn: e.dn.map(str::to_string),
            owner: e.owner.map(str::to_string),
            job_id: job.to_string(),
            from: e.start.map(rfc3339),
            to: e.end.map(rfc3339),
            issuer: e.issuer.map(str::to_string),
            subject: e.subject.map(str::to_string),
            vo: e.vo.map(str::to_string),
            source: e.source.unwrap_or("htcondor").to_string(),
            person: None,
            person_candidates: Vec::new(),
            seqs: e.seqs.into_iter().collect(),
        })
        .collect()
}

/// A SCIM entry as a person.
pub(crate) fn person_json(e: &ScimEntry, seqs: Vec<u64>) -> PersonJson {
    PersonJson {
        scim_id: e.id.clone(),
        user_name: e.user_name.clone(),
        name: e.name.clone(),
        email: e.email.clone(),
        active: e.active,
        seqs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One public port held by a TCP and a UDP connection at once (a NAT keeps a port space
    /// per protocol): `--proto` picks one; a translation no record gives a protocol for is
    /// never excluded by it.
    #[test]
    fn the_protocol_narrows_a_public_port_shared_by_tcp_and_udp() {
        let t = |proto: Option<&str>, inside: &str| Translation {
            kind: "snat".into(),
            proto: proto.map(str::to_string),
            public_ip: "192.0.2.254".into(),
            public_port: Some(50016),
            inside_ip: inside.into(),
            inside_port: Some(41001),
            peer_ip: Some("192.0.2.10".into()),
            peer_port: None,
            ct_id: None,
            from: 0,
            to: None,
            end: "open",
            records: Vec::new(),
        };
        let (tcp, udp, unknown) = (
            t(Some("tcp"), "10.0.0.5"),
            t(Some("udp"), "10.0.0.6"),
            t(None, "10.0.0.7"),
        );
        let f = |proto: Option<&str>| NatFilter {
            port: Some(50016),
            proto: proto.map(str::to_string),
            ..NatFilter::default()
        };
        assert!(f(None).admits(&tcp) && f(None).admits(&udp));
        assert!(f(Some("tcp")).admits(&tcp) && !f(Some("tcp")).admits(&udp));
        assert!(f(Some("udp")).admits(&udp) && !f(Some("udp")).admits(&tcp));
        assert!(f(Some("tcp")).admits(&unknown));
    }

    fn obs(seq: u64, t: i64, ty: &str, ips: &[&str]) -> VmObs {
        VmObs {
            seq,
            time_ns: t,
            observer: Observer::Cloud,
            uuid: "u".into(),
            event_type: Some(ty.into()),
            state: None,
            hypervisor: Some("cmp1".into()),
            name: None,
            hostname: None,
            user_id: None,
            project_id: None,
            image: None,
            ips: ips.iter().map(|s| s.to_string()).collect(),
            macs: vec![],
            summary: String::new(),
        }
    }

    #[test]
    fn leases_open_on_first_listing_close_on_detach_or_delete_and_reopen() {
        let o = vec![
            obs(1, 10, "instance.create.start", &[]),
            obs(2, 20, "instance.create.end", &["10.0.0.5"]),
            obs(3, 30, "instance.interface_detach.end", &["10.0.0.9"]),
            obs(
                4,
                40,
                "instance.interface_attach.end",
                &["10.0.0.9", "10.0.0.5"],
            ),
            obs(5, 50, "instance.delete.start", &["10.0.0.9", "10.0.0.5"]),
            obs(6, 60, "instance.delete.end", &[]),
        ];
        let l = leases(&o, AddrKind::Ip, "10.0.0.5");
        assert_eq!(
            l,
            [
                Lease {
                    from: 20,
                    to: Some(30),
                    opened_by: 2,
                    closed_by: Some(3)
                },
                Lease {
                    from: 40,
                    to: Some(60),
                    opened_by: 4,
                    closed_by: Some(6)
                },
            ]
        );
        assert!(!l.iter().any(|x| x.covers(10)), "not before creation");
        assert!(!l.iter().any(|x| x.covers(35)), "not in the detached gap");
        assert!(
            !l.iter().any(|x| x.covers(60)),
            "half-open: not at deletion"
        );
        assert!(l.iter().any(|x| x.covers(59)));
    }

    #[test]
    fn two_owners_and_a_delete_before_create_are_conflicts_not_resolved() {
        let mut a = obs(1, 10, "instance.create.end", &["10.0.0.5"]);
        a.user_id = Some("alice".into());
        let mut b = obs(2, 20, "instance.update", &["10.0.0.5"]);
        b.user_id = Some("mallory".into());
        let c = conflicts(&[a.clone(), b.clone()]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].kind, "owner");
        assert_eq!(c[0].seqs, [1, 2]);
        assert!(c[0].summary.contains("alice") && c[0].summary.contains("mallory"));

        // Same owner twice: no conflict.
        b.user_id = Some("alice".into());
        assert!(conflicts(&[a.clone(), b]).is_empty());

        let del = obs(7, 5, "instance.delete.end", &[]);
        let c = conflicts(&[del, a]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].kind, "lifecycle");
        assert_eq!(c[0].seqs, [7, 1]);
    }

    fn job(seq: u64, id: &str) -> JobObs {
        JobObs {
            seq,
            time_ns: 0,
            job_id: id.into(),
            owner: None,
            user: None,
            dn: None,
            vo: None,
            exec_ip: None,
            exec_host: None,
            start_ns: None,
            end_ns: None,
            summary: String::new(),
            ext: Default::default(),
        }
    }

    #[test]
    fn userlog_ids_join_the_one_history_ad_with_their_cluster_proc() {
        let mut j = vec![
            job(1, "schedd1#2758.0#1700000000"),
            job(2, "2758.0"),
            job(3, "2759.0"),
        ];
        join_userlog_ids(&mut j);
        assert_eq!(j[1].job_id, "schedd1#2758.0#1700000000");
        assert_eq!(j[2].job_id, "2759.0", "no ad: left alone");

        // Two schedds with the same numbers: never a guess.
        let mut j = vec![
            job(1, "schedd1#2758.0#1700000000"),
            job(2, "schedd2#2758.0#1700000500"),
            job(3, "2758.0"),
        ];
        join_userlog_ids(&mut j);
        assert_eq!(j[2].job_id, "2758.0");
    }

    fn fip(seq: u64, t: i64, action: &str, port: Option<&str>) -> NetObs {
        NetObs {
            seq,
            time_ns: t,
            resource: "floatingip".into(),
            action: action.into(),
            id: "f1".into(),
            vm_uuid: None,
            device_owner: None,
            host: None,
            ips: vec![],
            mac: None,
            floating_ip: Some("203.0.113.10".into()),
            fip_port: port.map(str::to_string),
            fixed_ip: None,
            router_id: None,
            project_id: None,
            summary: String::new(),
            subnets: vec![],
        }
    }

    #[test]
    fn floating_ip_associations_do_not_depend_on_order_or_duplicates() {
        let day = vec![
            fip(1, 10, "create", Some("-")),
            fip(2, 20, "update", Some("pa")),
            fip(3, 25, "update", None), // says nothing about the port
            fip(4, 30, "update", Some("-")),
            fip(5, 40, "update", Some("pb")),
            fip(6, 50, "update", Some("pc")), // moved straight to another port
            fip(7, 60, "delete", Some("pc")),
        ];
        let spans = |a: &[Association]| -> Vec<(String, i64, Option<i64>)> {
            a.iter()
                .map(|x| (x.port_id.clone(), x.lease.from, x.lease.to))
                .collect()
        };
        let want = vec![
            ("pa".to_string(), 20, Some(30)),
            ("pb".to_string(), 40, Some(50)),
            ("pc".to_string(), 50, Some(60)),
        ];
        assert_eq!(spans(&associations(&day, "203.0.113.10")), want);
        // Reversed, every record twice (later ledger positions): the same intervals.
        let mut shuffled: Vec<NetObs> = day.iter().rev().cloned().collect();
        for (i, o) in day.iter().enumerate() {
            let mut d = o.clone();
            d.seq = 100 + i as u64;
            shuffled.push(d);
        }
        assert_eq!(spans(&associations(&shuffled, "203.0.113.10")), want);
    }
}
