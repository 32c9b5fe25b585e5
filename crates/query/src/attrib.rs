//! Attribution: which VM a record belongs to, and how we know (issue 17). The one place the
//! rule lives; `timeline`, `report`, `check`, `hunt` and the challenge scorer call it.
//!
//! A record from inside a VM (observer `vm`) is attributed, in this order:
//! 1. **`uuid`** — by the instance UUID it carries where the site kit puts one there
//!    (`claimed_vm_uuid`, RFC 5424 SD `[pugmark@32473 vm_uuid=…]`), *verified* against the
//!    lease of the sender's address at the collected time. When a VM held the sender's address
//!    and it is not the claimed one, that is a [`UuidMismatch`] (a `check` finding), not an
//!    attribution: the record goes on to rule 2. Without a sender address, or from an address
//!    no VM held (a relay), the claim stands only for a VM that existed at that time.
//! 2. **`address`** — by the sender's address ([`Event::sender_ip`]: the live peer, the archive's
//!    `relay_from`, a per-host path) through the address's lease at the collected time.
//! 3. **`tap`** — for hypervisor records (below), not VM ones: the VM whose tap device the
//!    packet came out of or went into.
//! 4. **`hostname`** — only then by the claimed hostname (first label, case-insensitive)
//!    through the hostname lease at that time; when more than one VM held it then, the record
//!    is **`ambiguous`**: every candidate is named, it is given to none.
//!
//! Records of other observers: a cloud record naming a VM (`vm_uuid`) is that VM's (`uuid`);
//! a hypervisor record whose `PHYSIN`/`IN` (the VM sent it: its tap is the input device) or
//! else `PHYSOUT`/`OUT` (sent to the VM) names a tap device is the VM that tap belonged to
//! then (`tap`), *before* any address, so traffic from a spoofed or unleased source address
//! is still the VM's it came out of. Taps come from nova's `ip_addresses[]` (`device_name`,
//! else `tap` + the first 11 characters of `port_uuid`; held from the first notification
//! listing it to the VM's deletion) and from Neutron's ports (`tap` + 11 characters of the
//! port id; the port's `device_id` from the notification naming it to the port's deletion,
//! another `device_id`, or the VM's deletion). A tap no source names falls through. Then
//! network, hypervisor and VO records by the addresses they name (`src_ip`, `dst_ip`,
//! `exec_ip`), `address`. Time is [`Event::placed`]: the collector's receive time where one
//! exists (a VM cannot set it), else the reported one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use model::{Event, Observer, fields};
use serde::Serialize;
use views::facts::{FactStore, NetObs, TapObs, VmObs, tap_of_port};

use crate::lang::Net;
use crate::who::{AddrKind, EvidenceJson, Lease, leases, rfc3339, ts_ns};

/// How an attribution was made, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    Uuid,
    Address,
    Tap,
    Hostname,
    /// Several VMs could have sent it (a hostname, or an address, held by two at once).
    Ambiguous,
    /// Nothing ties it to a VM.
    None,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Uuid => "uuid",
            How::Address => "address",
            How::Tap => "tap",
            How::Hostname => "hostname",
            How::Ambiguous => "ambiguous",
            How::None => "none",
        }
    }
}

/// A VM claiming a UUID that is not the VM holding the sender's address then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UuidMismatch {
    pub claimed: String,
    pub address: String,
    /// The VMs that held `address` at that time.
    pub holders: Vec<String>,
}

/// Whose a record is. The JSON shape (`attribution` in timeline entries and report lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub how: How,
    /// The VM, when exactly one.
    pub vm: Option<String>,
    /// Every VM it could be, when ambiguous (sorted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid_mismatch: Option<UuidMismatch>,
}

impl Attribution {
    fn none() -> Attribution {
        Attribution {
            how: How::None,
            vm: None,
            candidates: Vec::new(),
            uuid_mismatch: None,
        }
    }

    fn one(how: How, vm: &str) -> Attribution {
        Attribution {
            how,
            vm: Some(vm.to_string()),
            ..Attribution::none()
        }
    }

    /// `how` for one holder, ambiguous for several, none for none.
    fn of(how: How, mut vms: Vec<String>) -> Attribution {
        vms.sort();
        vms.dedup();
        match vms.len() {
            0 => Attribution::none(),
            1 => Attribution {
                how,
                vm: vms.pop(),
                ..Attribution::none()
            },
            _ => Attribution {
                how: How::Ambiguous,
                vm: None,
                candidates: vms,
                uuid_mismatch: None,
            },
        }
    }

    /// Given to exactly `uuid`.
    pub fn is(&self, uuid: &str) -> bool {
        self.vm.as_deref() == Some(uuid)
    }

    /// `uuid` is one of several candidates.
    pub fn may_be(&self, uuid: &str) -> bool {
        self.candidates.iter().any(|c| c == uuid)
    }

    /// For text: `→ 0b7c1e2a (address)`, `→ AMBIGUOUS 0b7c1e2a|1f00aa31 (hostname)`.
    pub fn text(&self) -> String {
        let short = |u: &str| u.get(..8).unwrap_or(u).to_string();
        let mut s = match (&self.vm, self.how) {
            (Some(vm), how) => format!("→ {} ({})", short(vm), how.as_str()),
            (None, How::Ambiguous) => {
                let c: Vec<String> = self.candidates.iter().map(|c| short(c)).collect();
                format!("→ AMBIGUOUS {}", c.join("|"))
            }
            (None, _) => "→ no VM".to_string(),
        };
        if let Some(m) = &self.uuid_mismatch {
            s.push_str(&format!(
                " (claims VM {}, but {} was {}'s)",
                short(&m.claimed),
                m.address,
                m.holders
                    .iter()
                    .map(|h| short(h))
                    .collect::<Vec<_>>()
                    .join("|")
            ));
        }
        s
    }
}

/// A lease with the VM that held it.
#[derive(Debug, Clone)]
pub struct Held {
    pub lease: Lease,
    pub uuid: String,
}

/// Every VM's leases of every address and hostname, and its observations: what attribution
/// reads, loaded once per query from the fact store.
#[derive(Default)]
pub struct Site {
    pub(crate) ip: BTreeMap<IpAddr, Vec<Held>>,
    pub(crate) host: BTreeMap<String, Vec<Held>>,
    pub(crate) obs: BTreeMap<String, Vec<VmObs>>,
    /// Tap device (lower-case) → the VMs whose port it was, over the port's life.
    pub(crate) tap: BTreeMap<String, Vec<Held>>,
    /// Addresses held only as Neutron floating IPs (not site networks: `default_nets` skips
    /// them), and the Neutron records that opened such leases (their evidence).
    pub(crate) floating: BTreeSet<IpAddr>,
    pub(crate) net_evidence: BTreeMap<u64, EvidenceJson>,
}

/// A name Linux could give a network device (at most 15 bytes) made of the characters nova
/// and Neutron use: anything else a notification says is not a tap, and never reaches a query.
fn is_device_name(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 15
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Which way a record crossed a VM's tap device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapDir {
    /// The tap was the input device: the VM sent it.
    FromVm,
    /// The tap was the output device: it went to the VM.
    ToVm,
}

/// Hostnames compare by their first label, case-insensitively: a VM's syslog often says
/// `wn-0042` where the cloud says `wn-0042.example.org`, or the reverse.
pub fn short(h: &str) -> String {
    h.split('.').next().unwrap_or(h).to_ascii_lowercase()
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_deletion(o: &VmObs) -> bool {
    o.event_type
        .as_deref()
        .is_some_and(|t| t.ends_with("delete.end"))
        || o.state.as_deref() == Some("deleted")
}

impl Site {
    pub fn load(store: &FactStore) -> anyhow::Result<Site> {
        let mut s = Site::default();
        // One query for the whole site (by VM, each in time order), cut into VMs.
        let mut obs: Vec<VmObs> = Vec::new();
        for o in store.all_vm_observations()? {
            if let Some(uuid) = obs
                .last()
                .filter(|l| l.uuid != o.uuid)
                .map(|l| l.uuid.clone())
            {
                s.insert(uuid, std::mem::take(&mut obs));
            }
            obs.push(o);
        }
        if let Some(first) = obs.first() {
            let uuid = first.uuid.clone();
            s.insert(uuid, obs);
        }
        s.insert_nova_taps(&store.nova_taps()?);
        let ports = store.all_port_observations()?;
        s.insert_ports(&ports);
        s.insert_floating(&store.all_floating_ip_observations()?, &ports);
        Ok(s)
    }

    /// Nova's tap devices (after the VMs are in): a VM holds a tap it was listed with from the
    /// first observation listing it until the VM's deletion.
    pub fn insert_nova_taps(&mut self, taps: &[TapObs]) {
        let mut first: BTreeMap<(&str, &str), &TapObs> = BTreeMap::new();
        for t in taps {
            let k = (t.tap.as_str(), t.uuid.as_str());
            if first
                .get(&k)
                .is_none_or(|f| (t.time_ns, t.seq) < (f.time_ns, f.seq))
            {
                first.insert(k, t);
            }
        }
        for ((tap, uuid), t) in first {
            if !is_device_name(tap) {
                continue;
            }
            let end = self.obs.get(uuid).and_then(|obs| {
                obs.iter()
                    .find(|o| o.time_ns >= t.time_ns && is_deletion(o))
                    .map(|o| (o.time_ns, o.seq))
            });
            self.tap.entry(tap.to_string()).or_default().push(Held {
                lease: Lease {
                    from: t.time_ns,
                    to: end.map(|e| e.0),
                    opened_by: t.seq,
                    closed_by: end.map(|e| e.1),
                },
                uuid: uuid.to_string(),
            });
        }
    }

    /// Neutron's ports (by port id, each in time order): the port's tap is its instance's
    /// from the observation naming the instance until the port is deleted, its `device_id`
    /// changes, or the instance is deleted.
    pub fn insert_ports(&mut self, ports: &[NetObs]) {
        let mut i = 0;
        while i < ports.len() {
            let id = &ports[i].id;
            let n = ports[i..].iter().take_while(|p| &p.id == id).count();
            let group = &ports[i..i + n];
            i += n;
            let Some(tap) = tap_of_port(id).filter(|t| is_device_name(t)) else {
                continue;
            };
            // A delete sorts after a create or update at the same instant.
            let mut group: Vec<&NetObs> = group.iter().collect();
            group.sort_by_key(|p| (p.time_ns, p.action == "delete", p.seq));
            let mut open: Option<(String, i64, u64)> = None;
            let mut held = Vec::new();
            for p in group {
                let next = p.vm_uuid.clone().filter(|_| p.action != "delete");
                if open.as_ref().map(|o| &o.0) == next.as_ref() {
                    continue;
                }
                if let Some((uuid, from, seq)) = open.take() {
                    held.push((uuid, from, seq, Some((p.time_ns, p.seq))));
                }
                open = next.map(|u| (u, p.time_ns, p.seq));
            }
            if let Some((uuid, from, seq)) = open {
                held.push((uuid, from, seq, None));
            }
            for (uuid, from, seq, mut end) in held {
                // Cut at the instance's deletion when nova said so first.
                let deleted = self.obs.get(&uuid).and_then(|obs| {
                    obs.iter()
                        .find(|o| o.time_ns >= from && is_deletion(o))
                        .map(|o| (o.time_ns, o.seq))
                });
                if let Some(d) = deleted
                    && end.is_none_or(|e| d.0 < e.0)
                {
                    end = Some(d);
                }
                self.tap.entry(tap.clone()).or_default().push(Held {
                    lease: Lease {
                        from,
                        to: end.map(|e| e.0),
                        opened_by: seq,
                        closed_by: end.map(|e| e.1),
                    },
                    uuid,
                });
            }
        }
    }

    /// Neutron floating IPs (after the VMs and ports are in): a floating IP is a lease of the
    /// VM whose port it was associated to, over the association (`who::associations`:
    /// order-independent), cut where the port's instance changes, where the port is deleted
    /// and where the VM is deleted — the same facts `who --ip FLOATING` answers from, so
    /// timeline, report, check and hunt attribute a record naming a floating IP as `who` does.
    /// A port nobody created or an instance nova never described leases nothing (`who` shows
    /// those as `unresolved`).
    pub fn insert_floating(&mut self, fips: &[NetObs], ports: &[NetObs]) {
        let mut port_obs: BTreeMap<&str, Vec<&NetObs>> = BTreeMap::new();
        for p in ports {
            port_obs.entry(p.id.as_str()).or_default().push(p);
        }
        for list in port_obs.values_mut() {
            list.sort_by_key(|p| (p.time_ns, p.action == "delete", p.seq));
        }
        let addresses: BTreeSet<&str> = fips
            .iter()
            .filter_map(|o| o.floating_ip.as_deref())
            .collect();
        for address in addresses {
            let Ok(addr) = address.parse::<IpAddr>() else {
                continue;
            };
            // Every observation of a floating IP id that ever had this address.
            let ids: BTreeSet<&str> = fips
                .iter()
                .filter(|o| o.floating_ip.as_deref() == Some(address))
                .map(|o| o.id.as_str())
                .collect();
            let obs: Vec<NetObs> = fips
                .iter()
                .filter(|o| ids.contains(o.id.as_str()))
                .cloned()
                .collect();
            for a in crate::who::associations(&obs, address) {
                let pobs = port_obs
                    .get(a.port_id.as_str())
                    .map_or(&[][..], Vec::as_slice);
                let opened = obs.iter().find(|o| o.seq == a.lease.opened_by);
                // The port's instance at the association's start, then each change inside it.
                let mut holder: Option<(String, i64, u64)> = pobs
                    .iter()
                    .rfind(|p| p.time_ns <= a.lease.from)
                    .filter(|p| p.action != "delete")
                    .and_then(|p| p.vm_uuid.clone())
                    .map(|u| (u, a.lease.from, a.lease.opened_by));
                let mut segments = Vec::new();
                for p in pobs.iter().filter(|p| {
                    p.time_ns > a.lease.from && a.lease.to.is_none_or(|to| p.time_ns < to)
                }) {
                    let next = p.vm_uuid.clone().filter(|_| p.action != "delete");
                    if holder.as_ref().map(|h| &h.0) == next.as_ref() {
                        continue;
                    }
                    if let Some((u, from, by)) = holder.take() {
                        segments.push((u, from, by, Some((p.time_ns, p.seq))));
                    }
                    holder = next.map(|u| (u, p.time_ns, p.seq));
                }
                if let Some((u, from, by)) = holder {
                    segments.push((u, from, by, a.lease.to.zip(a.lease.closed_by)));
                }
                for (uuid, from, by, mut end) in segments {
                    let Some(vm) = self.obs.get(&uuid) else {
                        continue; // an instance nova never described: no guess
                    };
                    if let Some(d) = vm
                        .iter()
                        .find(|o| is_deletion(o))
                        .map(|o| (o.time_ns, o.seq))
                    {
                        if d.0 <= from {
                            continue;
                        }
                        if end.is_none_or(|e| d.0 < e.0) {
                            end = Some(d);
                        }
                    }
                    if let Some(o) = opened.filter(|o| o.seq == by) {
                        self.net_evidence.insert(by, crate::who::net_evidence(o));
                    } else if let Some(p) = pobs.iter().find(|p| p.seq == by) {
                        self.net_evidence.insert(by, crate::who::net_evidence(p));
                    }
                    let addr = canonical(addr);
                    if !self.ip.contains_key(&addr) {
                        self.floating.insert(addr);
                    }
                    self.ip.entry(addr).or_default().push(Held {
                        lease: Lease {
                            from,
                            to: end.map(|e| e.0),
                            opened_by: by,
                            closed_by: end.map(|e| e.1),
                        },
                        uuid,
                    });
                }
            }
        }
    }

    /// The VMs whose tap `dev` was at `t` (device names compare lower-case).
    pub fn tap_at(&self, dev: &str, t: i64) -> Vec<&Held> {
        self.tap
            .get(&dev.trim().to_ascii_lowercase())
            .map(|v| v.iter().filter(|h| h.lease.covers(t)).collect())
            .unwrap_or_default()
    }

    /// The tap a hypervisor record came out of or went into, and the VMs it was then:
    /// `IN`/`PHYSIN` first (the VM's tap is the input device of what it sends), then
    /// `OUT`/`PHYSOUT`. Interfaces not named `tap…`, or taps no source names, give None.
    pub fn tap_of(&self, e: &Event, t: i64) -> Option<(TapDir, String, Vec<String>)> {
        let sides = [
            (fields::PHYS_IN, TapDir::FromVm),
            (fields::IN_IF, TapDir::FromVm),
            (fields::PHYS_OUT, TapDir::ToVm),
            (fields::OUT_IF, TapDir::ToVm),
        ];
        for (f, dir) in sides {
            let Some(dev) = e.field(f).map(|d| d.trim().to_ascii_lowercase()) else {
                continue;
            };
            let vms = self.vms_on_tap(&dev, t);
            if !vms.is_empty() {
                let vms = vms.into_iter().map(str::to_string).collect();
                return Some((dir, dev, vms));
            }
        }
        None
    }

    /// The VMs device `dev` (lower-cased) was at `t`, sorted, each once: any device the site
    /// knows as a VM's (nova's and Neutron's `tap…`, OpenNebula's `one-<vm>-<nic>`); nova and
    /// Neutron both describe the same port's tap. What [`Site::tap_of`] decides by, and
    /// `check`'s fast path on the index's columns with it.
    pub fn vms_on_tap(&self, dev: &str, t: i64) -> Vec<&str> {
        let mut vms: Vec<&str> = self
            .tap_at(dev, t)
            .iter()
            .map(|h| h.uuid.as_str())
            .collect();
        vms.sort_unstable();
        vms.dedup();
        vms
    }

    /// Add one VM (its observations in time order).
    pub fn insert(&mut self, uuid: String, obs: Vec<VmObs>) {
        let ips: BTreeSet<&String> = obs.iter().flat_map(|o| &o.ips).collect();
        for ip in ips {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                continue;
            };
            for lease in leases(&obs, AddrKind::Ip, ip) {
                self.ip.entry(canonical(addr)).or_default().push(Held {
                    lease,
                    uuid: uuid.clone(),
                });
            }
        }
        let hosts: BTreeSet<&String> = obs.iter().filter_map(|o| o.hostname.as_ref()).collect();
        for h in hosts {
            for lease in leases(&obs, AddrKind::Host, h) {
                self.host.entry(short(h)).or_default().push(Held {
                    lease,
                    uuid: uuid.clone(),
                });
            }
        }
        self.obs.insert(uuid, obs);
    }

    /// The leases of `ip` covering `t`.
    pub fn ip_at(&self, ip: IpAddr, t: i64) -> Vec<&Held> {
        self.ip
            .get(&canonical(ip))
            .map(|v| v.iter().filter(|h| h.lease.covers(t)).collect())
            .unwrap_or_default()
    }

    /// Every lease of `ip`, in no particular order.
    pub fn ip_leases(&self, ip: IpAddr) -> &[Held] {
        self.ip.get(&canonical(ip)).map_or(&[], Vec::as_slice)
    }

    /// The leases of hostname `host` (first label) covering `t`.
    pub fn host_at(&self, host: &str, t: i64) -> Vec<&Held> {
        self.host
            .get(&short(host))
            .map(|v| v.iter().filter(|h| h.lease.covers(t)).collect())
            .unwrap_or_default()
    }

    /// Every lease of hostname `host` (first label).
    pub fn host_leases(&self, host: &str) -> &[Held] {
        self.host.get(&short(host)).map_or(&[], Vec::as_slice)
    }

    /// The hostname the cloud gave `uuid` as of `t`.
    pub fn hostname_of(&self, uuid: &str, t: i64) -> Option<&str> {
        self.obs
            .get(uuid)?
            .iter()
            .rfind(|o| o.time_ns <= t && o.hostname.is_some())
            .and_then(|o| o.hostname.as_deref())
    }

    /// Whether the cloud knew `uuid` at `t`: observed at or before it, not deleted by then.
    pub fn exists_at(&self, uuid: &str, t: i64) -> bool {
        let Some(obs) = self.obs.get(uuid) else {
            return false;
        };
        obs.first().is_some_and(|o| o.time_ns <= t)
            && !obs.iter().any(|o| o.time_ns <= t && is_deletion(o))
    }

    /// One VM's observations.
    pub fn observations(&self, uuid: &str) -> &[VmObs] {
        self.obs.get(uuid).map_or(&[], Vec::as_slice)
    }

    /// The cloud record that opened a lease.
    pub fn evidence_for(&self, held: &Held) -> Option<EvidenceJson> {
        self.obs
            .get(&held.uuid)
            .and_then(|obs| obs.iter().find(|o| o.seq == held.lease.opened_by))
            .map(obs_json)
            .or_else(|| self.net_evidence.get(&held.lease.opened_by).cloned())
    }

    /// The site's networks when none are given: the /24 or /64 of every leased address.
    pub(crate) fn default_nets(&self) -> Vec<Net> {
        let mut nets = BTreeSet::new();
        for ip in self.ip.keys().filter(|ip| !self.floating.contains(ip)) {
            let net = match ip {
                IpAddr::V4(_) => Net::parse(&format!("{ip}/24")),
                IpAddr::V6(_) => Net::parse(&format!("{ip}/64")),
            };
            if let Some(n) = net {
                let (first, _) = n.range();
                nets.insert((first, n.prefix));
            }
        }
        nets.into_iter()
            .map(|(addr, prefix)| Net { addr, prefix })
            .collect()
    }

    /// Whose `e` is (the rules in the module docs), at its placed time.
    pub fn attribute(&self, e: &Event) -> Attribution {
        self.attribute_at(e, ts_ns(e.placed()))
    }

    /// Whose `e` is at `t` (nanoseconds).
    pub fn attribute_at(&self, e: &Event, t: i64) -> Attribution {
        if e.observer != Observer::Vm {
            return self.by_fields(e, t);
        }
        self.attribute_vm_record(
            e.sender_ip(),
            e.field(fields::CLAIMED_VM_UUID),
            e.host.as_deref(),
            t,
        )
    }

    /// Rules 1, 2 and 4 for a VM's record known only by its parts — what the fact store
    /// keeps of a payload line (glexec, issue 12): the sender address, the claimed UUID and
    /// the claimed host. [`Site::attribute_at`] calls it for every VM record, so the two
    /// cannot disagree.
    pub fn attribute_vm_record(
        &self,
        sender: Option<IpAddr>,
        claimed: Option<&str>,
        host: Option<&str>,
        t: i64,
    ) -> Attribution {
        let holders: Vec<String> = sender
            .map(|ip| self.ip_at(ip, t).iter().map(|h| h.uuid.clone()).collect())
            .unwrap_or_default();
        let mut mismatch = None;
        if let Some(claimed) = claimed {
            let claimed = claimed.to_ascii_lowercase();
            if holders.contains(&claimed) {
                return Attribution::one(How::Uuid, &claimed);
            }
            if holders.is_empty() {
                if self.exists_at(&claimed, t) {
                    return Attribution::one(How::Uuid, &claimed);
                }
            } else if let Some(ip) = sender {
                let mut hs = holders.clone();
                hs.sort();
                mismatch = Some(UuidMismatch {
                    claimed,
                    address: ip.to_string(),
                    holders: hs,
                });
            }
        }
        let mut a = if holders.is_empty() {
            match host {
                Some(h) => Attribution::of(
                    How::Hostname,
                    self.host_at(h, t).iter().map(|h| h.uuid.clone()).collect(),
                ),
                None => Attribution::none(),
            }
        } else {
            Attribution::of(How::Address, holders)
        };
        a.uuid_mismatch = mismatch;
        a
    }

    /// Records not from inside a VM: the VM a cloud record names, else the holders of the
    /// addresses it names.
    fn by_fields(&self, e: &Event, t: i64) -> Attribution {
        // The cloud's record of a VM; a custody step about its disk (pugmark's own or a
        // hypervisor's, decode keeps a VM's claim out of this class); a log line read from its
        // quarantined disk (the disk is the VM's, whatever the line claims).
        if (e.observer == Observer::Cloud
            || e.observer == Observer::Image
            || e.class == model::EventClass::VmCustody)
            && let Some(u) = e.field(fields::VM_UUID)
        {
            return Attribution::one(How::Uuid, &u.to_ascii_lowercase());
        }
        if e.observer == Observer::Hypervisor
            && let Some((_, _, vms)) = self.tap_of(e, t)
        {
            return Attribution::of(How::Tap, vms);
        }
        for f in [fields::SRC_IP, fields::DST_IP, fields::EXEC_IP] {
            let Some(ip) = e.field(f).and_then(|s| s.trim().parse::<IpAddr>().ok()) else {
                continue;
            };
            let held: Vec<String> = self.ip_at(ip, t).iter().map(|h| h.uuid.clone()).collect();
            if !held.is_empty() {
                return Attribution::of(How::Address, held);
            }
        }
        Attribution::none()
    }
}

pub(crate) fn obs_json(o: &VmObs) -> EvidenceJson {
    EvidenceJson {
        time: rfc3339(o.time_ns),
        seq: o.seq,
        observer: o.observer,
        source: o.event_type.clone().unwrap_or_else(|| "vm".into()),
        summary: o.summary.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Origin, Received};

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const C: &str = "cccccccc-0000-4000-8000-000000000003";

    fn obs(uuid: &str, seq: u64, t: i64, ty: &str, ip: &str, host: &str) -> VmObs {
        VmObs {
            seq,
            time_ns: t,
            observer: Observer::Cloud,
            uuid: uuid.into(),
            event_type: Some(ty.into()),
            state: None,
            hypervisor: Some("cmp1".into()),
            name: None,
            hostname: (!host.is_empty()).then(|| host.to_string()),
            user_id: None,
            project_id: None,
            image: None,
            ips: if ip.is_empty() {
                vec![]
            } else {
                vec![ip.into()]
            },
            macs: vec![],
            summary: String::new(),
        }
    }

    /// A and B are both `wn-06` from 100 on (at .20 and .111); C held .20 until 50.
    fn site() -> Site {
        let mut s = Site::default();
        s.insert(
            C.into(),
            vec![
                obs(C, 1, 0, "instance.create.end", "10.20.0.20", "old"),
                obs(C, 2, 50, "instance.delete.end", "", ""),
            ],
        );
        s.insert(
            A.into(),
            vec![obs(A, 3, 60, "instance.create.end", "10.20.0.20", "wn-06")],
        );
        s.insert(
            B.into(),
            vec![obs(
                B,
                4,
                100,
                "instance.create.end",
                "10.20.0.111",
                "wn-06.example.org",
            )],
        );
        s
    }

    /// A VM's syslog line, from `sender` (archive `relay_from`) or from a plain file.
    fn line(host: &str, sender: Option<&str>, uuid: Option<&str>) -> Event {
        let mut e = Event {
            source_kind: "syslog-rfc3164".into(),
            host: Some(host.into()),
            ..Event::blank(
                Received::from_stored(0),
                Observer::Vm,
                Origin::File {
                    path: "vm.log".into(),
                    line: 1,
                },
                vec![],
            )
        };
        if let Some(s) = sender {
            e.fields.insert(fields::RELAY_FROM.into(), s.into());
        }
        if let Some(u) = uuid {
            e.fields.insert(fields::CLAIMED_VM_UUID.into(), u.into());
        }
        e
    }

    #[test]
    fn the_sender_address_beats_the_claimed_hostname() {
        let s = site();
        let a = s.attribute_at(&line("wn-06", Some("10.20.0.111"), None), 200);
        assert_eq!(a, Attribution::one(How::Address, B));
        let a = s.attribute_at(&line("wn-06", Some("10.20.0.20"), None), 200);
        assert_eq!(a, Attribution::one(How::Address, A));
        // The same address before A: C's, whatever the line claims.
        let a = s.attribute_at(&line("wn-06", Some("10.20.0.20"), None), 10);
        assert_eq!(a, Attribution::one(How::Address, C));
    }

    #[test]
    fn a_hostname_held_by_two_is_ambiguous_never_given_to_one() {
        let s = site();
        let a = s.attribute_at(&line("WN-06", None, None), 200);
        assert_eq!(a.how, How::Ambiguous);
        assert_eq!(a.vm, None);
        assert_eq!(a.candidates, [A, B]);
        assert!(a.may_be(A) && a.may_be(B) && !a.is(A));
        assert!(
            a.text().contains("AMBIGUOUS aaaaaaaa|bbbbbbbb"),
            "{}",
            a.text()
        );
        // Before B existed only A had the name.
        let a = s.attribute_at(&line("wn-06", None, None), 80);
        assert_eq!(a, Attribution::one(How::Hostname, A));
        // A sender no VM held (a relay): the hostname decides.
        let a = s.attribute_at(&line("wn-06", Some("192.0.2.9"), None), 80);
        assert_eq!(a, Attribution::one(How::Hostname, A));
        // Nobody's name.
        assert_eq!(
            s.attribute_at(&line("ghost", None, None), 80).how,
            How::None
        );
    }

    #[test]
    fn a_claimed_uuid_is_verified_against_the_senders_lease() {
        let s = site();
        let a = s.attribute_at(&line("wn-06", Some("10.20.0.20"), Some(A)), 200);
        assert_eq!(a, Attribution::one(How::Uuid, A));
        // B's address claiming A: a mismatch, attributed by the address to B.
        let a = s.attribute_at(&line("wn-06", Some("10.20.0.111"), Some(A)), 200);
        assert_eq!(a.how, How::Address);
        assert_eq!(a.vm.as_deref(), Some(B));
        let m = a
            .uuid_mismatch
            .as_ref()
            .map(|m| (&m.claimed[..], &m.holders[..]));
        assert_eq!(m, Some((A, &[B.to_string()][..])));
        // No sender address: the claim stands for a VM that existed then…
        let a = s.attribute_at(&line("wn-06", None, Some(B)), 200);
        assert_eq!(a, Attribution::one(How::Uuid, B));
        // …not for a deleted one, or one not created yet: the hostname decides.
        let a = s.attribute_at(&line("old", None, Some(C)), 60);
        assert_eq!(a.how, How::None);
        let a = s.attribute_at(&line("wn-06", None, Some(B)), 80);
        assert_eq!(a, Attribution::one(How::Hostname, A));
    }

    #[test]
    fn a_hypervisor_line_goes_to_the_vm_whose_tap_it_crossed_before_any_address() {
        let mut s = site();
        // Nova names A's tap; Neutron B's port (its tap derived from the port id).
        s.insert_nova_taps(&[TapObs {
            tap: "tapaaaa1111-22".into(),
            uuid: A.into(),
            seq: 3,
            time_ns: 60,
        }]);
        let port = |seq, t, action: &str, vm: Option<&str>| NetObs {
            seq,
            time_ns: t,
            resource: "port".into(),
            action: action.into(),
            id: "bbbb2222-3333-4444-5555-666677778888".into(),
            vm_uuid: vm.map(str::to_string),
            device_owner: None,
            host: None,
            ips: vec![],
            mac: None,
            floating_ip: None,
            fip_port: None,
            fixed_ip: None,
            router_id: None,
            project_id: None,
            summary: String::new(),
            subnets: vec![],
        };
        // A device name no kernel would give is no tap.
        s.insert_nova_taps(&[TapObs {
            tap: "tap\" OR *".into(),
            uuid: B.into(),
            seq: 4,
            time_ns: 100,
        }]);
        assert_eq!(s.tap.len(), 1);
        // Delete before create in the input: the order must not matter.
        s.insert_ports(&[
            port(9, 300, "delete", None),
            port(5, 100, "create", Some(B)),
        ]);
        let mut e = line("cmp1", None, None);
        e.observer = Observer::Hypervisor;
        // A's tap sends with B's address: A's, by tap.
        e.fields
            .insert(fields::PHYS_IN.into(), "TAPaaaa1111-22".into());
        e.fields
            .insert(fields::IN_IF.into(), "qbraaaa1111-22".into());
        e.fields.insert(fields::SRC_IP.into(), "10.20.0.111".into());
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Tap, A));
        // Before nova named it: by address (C held .20 until 50).
        e.fields.insert(fields::SRC_IP.into(), "10.20.0.20".into());
        assert_eq!(s.attribute_at(&e, 40), Attribution::one(How::Address, C));
        // Inbound to B's tap (the output device), from an unleased address.
        let mut e = line("cmp1", None, None);
        e.observer = Observer::Hypervisor;
        e.fields.insert(fields::IN_IF.into(), "eth0".into());
        e.fields
            .insert(fields::OUT_IF.into(), "tapbbbb2222-33".into());
        e.fields
            .insert(fields::SRC_IP.into(), "198.51.100.7".into());
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Tap, B));
        // After the port's deletion the tap is nobody's.
        assert_eq!(s.attribute_at(&e, 300).how, How::None);
        // A VM cannot name a tap into its own syslog.
        let mut v = line("x", None, None);
        v.fields
            .insert(fields::PHYS_IN.into(), "tapaaaa1111-22".into());
        assert_eq!(s.attribute_at(&v, 200).how, How::None);
    }

    #[test]
    fn other_observers_by_the_vm_or_address_they_name() {
        let s = site();
        let mut e = line("cmp1", None, None);
        e.observer = Observer::Hypervisor;
        e.fields.insert(fields::SRC_IP.into(), "10.20.0.111".into());
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Address, B));
        e.fields
            .insert(fields::SRC_IP.into(), "198.51.100.1".into());
        e.fields.insert(fields::DST_IP.into(), "10.20.0.20".into());
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Address, A));
        // A VM cannot name itself into another VM's records by a `vm_uuid` field.
        e.fields.insert(fields::VM_UUID.into(), C.into());
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Address, A));
        e.observer = Observer::Cloud;
        assert_eq!(s.attribute_at(&e, 200), Attribution::one(How::Uuid, C));
    }
}
