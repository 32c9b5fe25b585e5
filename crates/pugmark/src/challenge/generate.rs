//! `pugmark challenge generate`: a seeded site day in the real formats, with its ground truth.
//!
//! [`build`] draws a [`Site`] — hypervisors, Keystone users and projects, VMs with their
//! lifetimes, placements (live migrations split them), IP/MAC holdings (addresses are reused
//! after a gap; one VM attaches and detaches a second port), hostnames (reused, and once held
//! by two VMs at the same time), and the VO's payload jobs on each VM. [`Site::truth`] answers
//! a who-question from that model alone (never from pugmark), and [`questions`] picks the
//! moments that matter: random ones, gaps, before creation, at and after deletion, either side
//! of a migration, the duplicate hostname, an address never assigned, the C2 connection, the
//! payload only the VO names. [`write()`] renders the model as the sources would:
//! oslo-enveloped versioned nova notifications, `openstack user|project list --long -f json`,
//! `condor_history -json`, RFC 3164 VM syslog (hostnames as the VMs claim them) and the
//! hypervisors' netfilter LOG lines. Incidents: a SYN from one VM's address to a C2 server
//! that only a hypervisor logged, and a job whose DN appears nowhere but in the VO's history.
//! Issue 12 adds Neutron (floating IPs that move, a router whose gateway SNATs every third
//! VM, with the network node's conntrack log: [`Snat`]), a dual-stack network ([`slaac`]),
//! payloads run through glexec ([`Glexec`]) or identified by a WLCG token, and nova
//! notifications out of order and twice ([`disorder`]); each drawn from a generator of its
//! own, so the rest of a seed's day does not move.
//!
//! Times in the model are whole Unix seconds; leases are half-open `[from, to)` as in
//! `query::who`, so at exactly a migration the VM is on its new hypervisor and at exactly a
//! deletion it no longer holds anything.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::inject::{FINDINGS, Injected, ORPHAN_ADDR, ORPHAN_CLUSTER, UNKNOWN_HOST};
use super::{
    ANSWERS, Cloud, Expect, ExpectedMatch, MANIFEST, Manifest, ManifestFile, Question, opennebula,
};

/// SplitMix64, written here instead of using the `rand` crate (as bench/gen does): a seed must
/// give byte-identical files across dependency upgrades, or a challenge's answers.json and a
/// benchmark's figures would silently stop being comparable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + i64::try_from(self.below(u64::try_from(hi - lo).unwrap_or(0))).unwrap_or(0)
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }
    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(digits);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-4{}-{}{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            ["8", "9", "a", "b"][self.index(4)],
            &h[17..20],
            &h[20..32]
        )
    }
}

/// 2026-10-14T00:00:00Z: the generated day starts here.
pub const DAY_START: i64 = 1_791_936_000;
/// An address or hostname is given out again only this long after its release.
const REUSE_GAP: i64 = 300;
/// The C2 server (TEST-NET-2) and its port.
pub const C2_ADDR: &str = "198.51.100.23";
const C2_PORT: u16 = 4444;
/// How long the two VMs sharing a hostname at least live side by side.
pub const TWIN_OVERLAP: i64 = 2 * 3600;

const VOS: [&str; 5] = ["atlas", "cms", "lhcb", "alice", "belle"];
const FIRST: [&str; 10] = [
    "alice", "bruno", "chen", "dana", "emil", "farah", "goran", "hana", "ivan", "julia",
];
const PEOPLE: [(&str, &str); 6] = [
    ("jdoe", "Jane Doe"),
    ("rpatel", "Ravi Patel"),
    ("lwei", "Li Wei"),
    ("asouza", "Ana Souza"),
    ("tberg", "Tom Berg"),
    ("enovak", "Eva Novak"),
];
/// Site services the VMs talk to all day (CVMFS squid, the CE, a web endpoint).
const SERVICES: [(&str, u16); 4] = [
    ("10.40.0.10", 3128),
    ("10.40.0.20", 9618),
    ("188.184.21.108", 443),
    ("10.40.0.30", 8443),
];

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub seed: u64,
    pub vms: usize,
    pub hours: u32,
    /// VM syslog and hypervisor lines per VM-hour, as a multiple of the default mix
    /// (1 = about one syslog line and one SYN a minute). The benchmark raises it to reach a
    /// site day of several million events; the questions and their answers do not change.
    pub density: u32,
}

impl Params {
    pub fn check(&self) -> Result<()> {
        if self.vms < 8 {
            bail!(
                "--vms {} is too few for every complication (at least 8)",
                self.vms
            );
        }
        if !(4..=24 * 14).contains(&self.hours) {
            bail!("--hours {} must be between 4 and 336", self.hours);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub project: usize,
    /// False for the user removed from Keystone: the answer must say null, not guess.
    pub in_directory: bool,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub vo: &'static str,
}

/// One address the VM held: `[from, to)`, `to == None` while held at the end of the day.
#[derive(Debug, Clone)]
pub struct Holding {
    pub ip: String,
    pub mac: String,
    pub from: i64,
    pub to: Option<i64>,
}

impl Holding {
    pub fn covers(&self, t: i64) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub cluster: u64,
    pub dn: String,
    pub vo: &'static str,
    pub start: i64,
    /// None: still running when the history was taken.
    pub end: Option<i64>,
    /// A WLCG token (issuer, subject) instead of a proxy DN (issue 12): the job ad names
    /// the person by `AuthTokenIssuer` + `AuthTokenSubject` only.
    pub token: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub uuid: String,
    pub hostname: String,
    /// What the VM calls itself in its own syslog (the image default for some).
    pub claimed: String,
    pub user: usize,
    pub created: i64,
    pub deleted: Option<i64>,
    /// (from, hypervisor index), in time order.
    pub placements: Vec<(i64, usize)>,
    /// The primary port first; an attached port after it.
    pub holdings: Vec<Holding>,
    /// On the dual-stack network: the SLAAC (EUI-64) IPv6 address of the primary port, from
    /// its MAC, held for the VM's whole life (issue 12).
    pub v6: Option<String>,
    pub jobs: Vec<Job>,
    /// Payloads a pilot of this VM ran under another uid with glexec (issue 12).
    pub glexec: Vec<Glexec>,
}

impl Vm {
    pub fn alive_at(&self, t: i64) -> bool {
        self.created <= t && self.deleted.is_none_or(|d| t < d)
    }
    pub fn hypervisor_at(&self, t: i64) -> usize {
        self.placements
            .iter()
            .rfind(|(from, _)| *from <= t)
            .or(self.placements.first())
            .map_or(0, |p| p.1)
    }
    fn primary(&self) -> &Holding {
        &self.holdings[0]
    }
    /// Until when the VM exists within the day.
    fn until(&self, day_end: i64) -> i64 {
        self.deleted.unwrap_or(day_end)
    }
}

/// A payload a pilot ran under another uid through glexec: LCMAPS mapped its proxy (`dn`,
/// `vo`) to `uid`, the process-tracking plugin (`glexec.mon[mon]`) reports its start and end.
/// It runs `[start, end]` as the collector placed the lines (a fraction of a second after
/// each whole second): started before any later second, still running at `end`'s second.
#[derive(Debug, Clone)]
pub struct Glexec {
    pub dn: String,
    pub vo: &'static str,
    pub uid: u32,
    /// (the plugin's pid, the payload's pid): `glexec.mon[A#B]`.
    pub mon: (u32, u32),
    /// The pid of the `glexec` process that logged the LCMAPS mapping.
    pub pid: u32,
    pub start: i64,
    pub end: i64,
}

impl Glexec {
    /// Whether a `who` at `t` finds it running (see the type's note on seconds).
    fn running(&self, t: i64) -> bool {
        self.start < t && t <= self.end
    }
}

/// The incidents and complications the questions point at (VM indexes).
#[derive(Debug, Clone)]
pub struct Specials {
    /// (earlier holder, later VM given the same hostname while the first is alive).
    pub dup_host: (usize, usize),
    pub migrated: Vec<usize>,
    /// (VM, attach time, detach time) of the second port.
    pub attach: Option<(usize, i64, i64)>,
    /// The VM that opened the C2 connection and when.
    pub c2: (usize, i64),
    /// (VM, job index) of the payload only the VO history names.
    pub vo_only: (usize, usize),
    pub never_assigned: String,
    pub never_assigned_host: String,
}

/// A Neutron floating IP (issue 12) and the VMs whose port it was associated to, in turn.
#[derive(Debug, Clone)]
pub struct Floating {
    pub ip: String,
    pub id: String,
    /// (VM index, associated at, disassociated at — None: until the port's deletion with its
    /// VM, or past the day's end).
    pub assoc: Vec<(usize, i64, Option<i64>)>,
}

impl Floating {
    /// The VM the floating IP leads to at `t` (the VM must be alive: its port goes with it).
    fn holder_at(&self, vms: &[Vm], t: i64) -> Option<(usize, i64)> {
        self.assoc
            .iter()
            .find(|(v, from, to)| *from <= t && to.is_none_or(|to| t < to) && vms[*v].alive_at(t))
            .map(|(v, from, _)| (*v, *from))
    }
}

/// The port of a VM's primary address, as nova's `ip_addresses[].port_uuid` names it (so
/// Neutron's tap for it, `tap` + 11 characters, is nova's `device_name`).
fn port_id(vm: &Vm) -> String {
    format!("{}-port", &vm.uuid[..23])
}

/// The port of one of the VM's holdings: the primary's [`port_id`], an attached port one of
/// its own (its own tap device: `tap` + the first 11 characters of its id).
fn port_of(vm: &Vm, h: &Holding) -> String {
    if h.mac == vm.primary().mac {
        return port_id(vm);
    }
    let m: String = h.mac.chars().filter(|c| *c != ':').collect();
    format!("a7{}-{}", m.get(6..).unwrap_or("000000"), &vm.uuid[9..])
}

#[derive(Debug, Clone)]
pub struct Site {
    pub params: Params,
    /// Whose records tell the day: nova and Keystone, or an OpenNebula front-end.
    pub cloud: Cloud,
    pub start: i64,
    pub end: i64,
    pub hypervisors: Vec<String>,
    pub users: Vec<User>,
    pub projects: Vec<Project>,
    pub vms: Vec<Vm>,
    pub specials: Specials,
    /// Neutron floating IPs moving between VMs (OpenStack days only).
    pub floating: Vec<Floating>,
    /// The router whose gateway address source-NATs some VMs, with their connections as
    /// conntrack saw them (OpenStack days only).
    pub snat: Option<Snat>,
}

fn pool_ip(i: usize) -> String {
    format!("10.42.{}.{}", i / 200, i % 200 + 10)
}

fn mac(port: usize) -> String {
    format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        (port >> 16) & 0xff,
        (port >> 8) & 0xff,
        port & 0xff
    )
}

/// A pool of names or addresses handed out again after [`REUSE_GAP`]: the lowest free one is
/// taken, so reuse is the rule, as with DHCP-less OpenStack fixed IPs and Vac slot names.
#[derive(Default)]
struct Pool {
    free_from: Vec<i64>,
}

impl Pool {
    fn take(&mut self, t: i64, until: Option<i64>) -> usize {
        let until = until.unwrap_or(i64::MAX);
        match self
            .free_from
            .iter()
            .position(|f| f.saturating_add(REUSE_GAP) <= t)
        {
            Some(i) => {
                self.free_from[i] = until;
                i
            }
            None => {
                self.free_from.push(until);
                self.free_from.len() - 1
            }
        }
    }
    fn extend(&mut self, i: usize, until: Option<i64>) {
        let until = until.unwrap_or(i64::MAX);
        if let Some(f) = self.free_from.get_mut(i) {
            *f = (*f).max(until);
        }
    }
}

/// Floating IPs that move: each associated to one VM for a while, then (after a gap, or
/// straight away) to another, the second association often ending with its VM's deletion.
/// A VM has one port, so one floating IP at a time. Drawn from a generator of its own, so
/// the rest of the day does not change with them; addresses from 198.51.100.110 up, which
/// no other record of the day names (logins come from 192.0.2/24 and 203.0.113/24).
fn floating_ips(vms: &[Vm], end: i64, seed: u64) -> Vec<Floating> {
    let mut rng = Rng::new(seed ^ 0xF10A_7000);
    let mut busy: Vec<Vec<(i64, i64)>> = vec![Vec::new(); vms.len()];
    let free = |busy: &[Vec<(i64, i64)>], v: usize, a: i64, b: i64| {
        busy[v].iter().all(|&(x, y)| b <= x || y <= a)
    };
    let mut out = Vec::new();
    let k = (vms.len() / 10).clamp(1, 4);
    for i in 0..k {
        // A long-lived VM for the first association.
        let long: Vec<usize> = (0..vms.len())
            .filter(|&v| vms[v].until(end) - vms[v].created >= 3 * 3600)
            .collect();
        if long.is_empty() {
            break;
        }
        let a = long[rng.index(long.len())];
        let a_until = vms[a].until(end);
        let a1 = vms[a].created + rng.range(60, 600);
        let a2 = a1 + rng.range(1800, ((a_until - a1) / 2).max(1801));
        if !free(&busy, a, a1, a2) {
            continue;
        }
        let gap = if rng.chance(1, 2) {
            0
        } else {
            rng.range(300, 1800)
        };
        let b1_min = a2 + gap;
        let cands: Vec<usize> = (0..vms.len())
            .filter(|&v| {
                v != a && vms[v].created + 60 <= b1_min && vms[v].until(end) - b1_min >= 1800
            })
            .collect();
        let mut assoc = vec![(a, a1, Some(a2))];
        busy[a].push((a1, a2));
        if !cands.is_empty() {
            let b = cands[rng.index(cands.len())];
            let b1 = b1_min;
            let b_until = vms[b].until(end);
            // Half the time the association lasts until the VM (and its port) is deleted.
            let b2 = if vms[b].deleted.is_some() && rng.chance(1, 2) {
                None
            } else {
                Some((b1 + rng.range(1200, 3600)).min(b_until))
            };
            let b_end = b2.unwrap_or(b_until);
            if free(&busy, b, b1, b_end) {
                busy[b].push((b1, b_end));
                assoc.push((b, b1, b2));
            }
        }
        out.push(Floating {
            ip: format!("198.51.100.{}", 110 + i * 10),
            id: format!("f1a70000-0000-4000-8000-{:012x}", i + 1),
            assoc,
        });
    }
    out
}

/// The Neutron router of the day (floating IPs and SNAT go through it).
const ROUTER_ID: &str = "3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f";
/// The router's external gateway (SNAT) address: named by no other record of the day but
/// the router's notification and the network node's conntrack log.
pub const SNAT_GATEWAY: &str = "198.51.100.1";
/// Where the SNATed VMs connect to (outside peers; DNS over UDP).
const OUTSIDE: [(&str, u16); 3] = [
    ("198.51.100.61", 443),
    ("198.51.100.62", 22),
    ("198.51.100.63", 53),
];
/// The public ports the gateway hands out first, again and again when free: a port asked
/// about names different VMs at different moments.
const PUBLIC_PORTS: std::ops::Range<u16> = 40_000..40_008;
/// The dual-stack network's IPv6 prefix (documentation range).
const V6_PREFIX: [u16; 4] = [0x2001, 0xdb8, 0x4242, 0x1];

/// One outbound connection of a VM through the router's SNAT, as conntrack reports it (a
/// NEW, then a DESTROY): `[from_us, to_us)`, microseconds.
#[derive(Debug, Clone)]
pub struct Conn {
    pub vm: usize,
    pub sport: u16,
    pub peer: &'static str,
    pub dport: u16,
    /// The public (translated) source port on the gateway address.
    pub pport: u16,
    pub from_us: i64,
    pub to_us: i64,
    pub id: u64,
}

impl Conn {
    pub fn covers(&self, t: i64) -> bool {
        let t = t.saturating_mul(1_000_000);
        self.from_us <= t && t < self.to_us
    }
}

/// A router gateway NATing the VMs behind it (issue 12).
#[derive(Debug, Clone)]
pub struct Snat {
    pub gateway: String,
    pub router_id: String,
    /// In the order drawn (not time order).
    pub conns: Vec<Conn>,
}

/// The SLAAC address a MAC gives on the dual-stack network: the /64 prefix and the modified
/// EUI-64 interface id (RFC 4291 appendix A: ff:fe in the middle, the universal/local bit
/// flipped), in the canonical text form (RFC 5952) `who` prints.
pub fn slaac(mac: &str) -> Option<String> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let [m0, m1, m2, m3, m4, m5] = b[..] else {
        return None;
    };
    let w = |hi: u8, lo: u8| u16::from(hi) << 8 | u16::from(lo);
    let [p0, p1, p2, p3] = V6_PREFIX;
    Some(
        std::net::Ipv6Addr::new(
            p0,
            p1,
            p2,
            p3,
            w(m0 ^ 0x02, m1),
            w(m2, 0xff),
            w(0xfe, m3),
            w(m4, m5),
        )
        .to_string(),
    )
}

/// The VMs behind the router (every third, up to ten) and three outbound connections each,
/// at random moments of their lives, 30 s to 10 min long; the second VM's first connection
/// opens while the first VM's is open (the gateway without a port names both). Public ports
/// come from [`PUBLIC_PORTS`], the lowest free one (5 s apart), as a busy gateway reuses
/// them. Drawn from a generator of its own: the rest of the day does not change.
fn snat_conns(vms: &[Vm], end: i64, seed: u64) -> Snat {
    let mut rng = Rng::new(seed ^ 0x5A7_C0DE);
    let behind: Vec<usize> = (0..vms.len()).filter(|v| v % 3 == 1).take(10).collect();
    let mut conns: Vec<Conn> = Vec::new();
    let mut id = 3_100_000_000u64;
    for (n, &v) in behind.iter().enumerate() {
        let vm = &vms[v];
        let until = vm.until(end);
        for k in 0..3 {
            let life_us = rng.range(30_000_000, 600_000_000);
            let mut from_us =
                rng.range(vm.created + 60, until - 700) * 1_000_000 + rng.range(0, 1_000_000);
            if n == 1
                && k == 0
                && let Some(first) = conns.first()
            {
                let t = first.from_us + 5_000_000;
                if vm.created * 1_000_000 + 60_000_000 <= t
                    && t + life_us + 100_000_000 <= until * 1_000_000
                {
                    from_us = t;
                }
            }
            let to_us = from_us + life_us;
            if from_us < (vm.created + 60) * 1_000_000 || to_us + 100_000_000 > until * 1_000_000 {
                continue;
            }
            let (peer, dport) = OUTSIDE[rng.index(OUTSIDE.len())];
            let sport = 32_768 + u16::try_from(rng.below(28_000)).unwrap_or(0);
            let margin = 5_000_000;
            let free = |p: u16, conns: &[Conn]| {
                conns.iter().all(|c| {
                    c.pport != p || c.to_us + margin <= from_us || to_us + margin <= c.from_us
                })
            };
            let pport = PUBLIC_PORTS
                .chain(41_000..60_000)
                .find(|&p| free(p, &conns))
                .unwrap_or(60_000);
            id += 1 + rng.below(500);
            conns.push(Conn {
                vm: v,
                sport,
                peer,
                dport,
                pport,
                from_us,
                to_us,
                id,
            });
        }
    }
    Snat {
        gateway: SNAT_GATEWAY.into(),
        router_id: ROUTER_ID.into(),
        conns,
    }
}

/// Draw the site day.
pub fn build(p: Params) -> Site {
    let mut rng = Rng::new(p.seed);
    let start = DAY_START;
    let dur = i64::from(p.hours) * 3600;
    let end = start + dur;
    let n_hv = (p.vms / 8).clamp(2, 64);
    let hypervisors: Vec<String> = (1..=n_hv).map(|i| format!("cmp-{i:03}")).collect();
    let n_proj = (p.vms / 15).clamp(2, 12);
    let projects: Vec<Project> = (0..n_proj)
        .map(|i| {
            let vo = VOS[i % VOS.len()];
            Project {
                id: rng.hex(32),
                name: format!("{vo}-{}", i / VOS.len() + 1),
                vo,
            }
        })
        .collect();
    let n_users = (p.vms / 6).clamp(3, 60);
    let users: Vec<User> = (0..n_users)
        .map(|i| User {
            id: rng.hex(32),
            name: format!("{}{}", FIRST[i % FIRST.len()], i / FIRST.len() + 1),
            project: i % n_proj,
            in_directory: i + 1 != n_users,
        })
        .collect();

    let mut created: Vec<i64> = (0..p.vms)
        .map(|i| {
            if i < p.vms / 4 {
                start + rng.range(0, 1800)
            } else {
                start + rng.range(0, dur * 85 / 100)
            }
        })
        .collect();
    created.sort_unstable();

    let mut ips = Pool::default();
    let mut hosts = Pool::default();
    let mut host_index: Vec<usize> = Vec::new();
    let mut port = 0usize;
    let mut vms: Vec<Vm> = Vec::with_capacity(p.vms);
    let dup_target = p.vms / 3;
    let mut dup_host = None;
    let mut attach = None;
    let mut migrated = Vec::new();
    for (i, &t) in created.iter().enumerate() {
        let life = rng.range((dur / 8).max(3600), dur * 9 / 10 + 1);
        let deleted = Some(t + life).filter(|d| *d < end - 60);
        let until = deleted.unwrap_or(end);
        let user = rng.index(n_users);
        let mut hv = rng.index(n_hv);
        let mut placements = vec![(t, hv)];
        // Hostname: the pool, except one VM that is given a name another live VM still has.
        // Both twins live at least [`TWIN_OVERLAP`] together: long enough for one of them to
        // go silent while the other keeps logging under the same name (inject.rs).
        let earlier = (i >= dup_target && dup_host.is_none() && until - t >= TWIN_OVERLAP)
            .then(|| {
                (0..i).find(|&k| {
                    vms[k].hostname.starts_with("wn-")
                        && vms[k].deleted.is_none_or(|d| d >= t + TWIN_OVERLAP)
                })
            })
            .flatten();
        let hidx = match earlier {
            Some(k) => {
                dup_host = Some((k, i));
                hosts.extend(host_index[k], deleted);
                host_index[k]
            }
            None => hosts.take(t, deleted),
        };
        host_index.push(hidx);
        let hostname = format!("wn-{:03}", hidx + 1);
        let claimed = if rng.chance(1, 10) {
            "centos-stream-9".to_string()
        } else {
            hostname.clone()
        };
        let ip = pool_ip(ips.take(t, deleted));
        let mut holdings = vec![Holding {
            ip,
            mac: mac(port),
            from: t,
            to: deleted,
        }];
        port += 1;
        // A second port for an hour and a half, on the first VM that lives long enough.
        if attach.is_none() && until - t > 3 * 3600 {
            let (ta, td) = (t + 1800, t + 5400);
            holdings.push(Holding {
                ip: pool_ip(ips.take(ta, Some(td))),
                mac: mac(port),
                from: ta,
                to: Some(td),
            });
            port += 1;
            attach = Some((i, ta, td));
        }
        if until - t > 3600 && (rng.chance(1, 5) || migrated.is_empty()) {
            let tm = t + rng.range(900, until - t - 900);
            hv = (hv + 1 + rng.index(n_hv - 1)) % n_hv;
            placements.push((tm, hv));
            migrated.push(i);
        }
        // The VO's payload jobs, one after another, each killed before the VM goes.
        let vo = projects[users[user].project].vo;
        let limit = deleted.map_or(i64::MAX, |d| d - 120);
        let mut jobs = Vec::new();
        let mut cursor = t + rng.range(120, 600);
        while cursor < end && cursor < limit - 600 {
            let e = (cursor + rng.range(1200, 10800)).min(limit);
            let (login, name) = PEOPLE[rng.index(PEOPLE.len())];
            jobs.push(Job {
                cluster: 0,
                dn: format!(
                    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN={login}/CN={}/CN={name}",
                    700_000 + PEOPLE.iter().position(|p| p.0 == login).unwrap_or(0)
                ),
                vo,
                start: cursor,
                end: Some(e).filter(|e| *e < end),
                token: None,
            });
            cursor = e + rng.range(60, 600);
        }
        vms.push(Vm {
            uuid: rng.uuid(),
            hostname,
            claimed,
            user,
            created: t,
            deleted,
            placements,
            holdings,
            v6: None,
            jobs,
            glexec: Vec::new(),
        });
    }
    // The twins say the name they share in their syslog (not an image default): what makes
    // their lines indistinguishable but for the sender's address.
    if let Some((a, b)) = dup_host {
        for v in [a, b] {
            vms[v].claimed = vms[v].hostname.clone();
        }
    }
    // Cluster ids in start order, as a schedd hands them out.
    let mut all: Vec<(i64, usize, usize)> = vms
        .iter()
        .enumerate()
        .flat_map(|(v, vm)| {
            vm.jobs
                .iter()
                .enumerate()
                .map(move |(j, job)| (job.start, v, j))
        })
        .collect();
    all.sort_unstable();
    for (n, (_, v, j)) in all.into_iter().enumerate() {
        vms[v].jobs[j].cluster = 4000 + n as u64;
        // Every third payload carries a WLCG token from the VO's IAM instead of a proxy
        // (no draw from the generator: the rest of the day is unchanged).
        if n % 3 == 2 {
            let job = &mut vms[v].jobs[j];
            let login = job.dn.split("/CN=").nth(1).unwrap_or("someone").to_string();
            job.token = Some((
                format!("https://{}-auth.example.org/", job.vo),
                format!("iam-{login}"),
            ));
        }
    }
    // The payload only the VO names: a second job on a VM in the middle of the list.
    let vo_only = (p.vms / 2..p.vms)
        .chain(0..p.vms / 2)
        .find(|&v| vms[v].jobs.len() >= 2)
        .map_or((0, 0), |v| (v, 1));
    if let Some(job) = vms
        .get_mut(vo_only.0)
        .and_then(|vm| vm.jobs.get_mut(vo_only.1))
    {
        job.dn = format!("/DC=org/DC=incognito/CN=Mallory Unlisted {}", p.seed);
        job.token = None;
    }
    // The C2 connection: from the later holder of a reused address, half-way through.
    let reused_later = (0..vms.len()).rev().find(|&v| {
        let ip = &vms[v].primary().ip;
        vms[..v].iter().any(|o| &o.primary().ip == ip)
    });
    let c2_vm = reused_later.unwrap_or(vms.len() / 2);
    let c2_at = {
        let vm = &vms[c2_vm];
        vm.created + (vm.until(end) - vm.created) / 2 + 17
    };
    let used = ips.free_from.len();
    let floating = floating_ips(&vms, end, p.seed);
    // The dual-stack network: every fourth VM's primary port also has its SLAAC address.
    for (v, vm) in vms.iter_mut().enumerate() {
        if v % 4 == 2 {
            vm.v6 = slaac(&vm.holdings[0].mac);
        }
    }
    let snat = Some(snat_conns(&vms, end, p.seed));
    let mut site = Site {
        floating,
        snat,
        params: p,
        cloud: Cloud::Openstack,
        start,
        end,
        hypervisors,
        users,
        projects,
        specials: Specials {
            dup_host: dup_host.unwrap_or((0, 0)),
            migrated,
            attach,
            c2: (c2_vm, c2_at),
            vo_only,
            never_assigned: pool_ip(used + 7),
            never_assigned_host: format!("wn-{:03}", hosts.free_from.len() + 7),
        },
        vms,
    };
    glexec_runs(&mut site);
    site
}

/// Three VMs whose pilots run a payload through glexec (issue 12): VMs with no other role in
/// the day (not a special, not one `inject.rs` makes misbehave: their syslog is the plain
/// truth), inside one of their proxy-identified pilot jobs of at least 40 minutes, under a
/// person other than the pilot's. Chosen without drawing from the day's generator.
fn glexec_runs(site: &mut Site) {
    let inj = Injected::choose(site);
    let s = &site.specials;
    let mut busy: Vec<usize> = vec![s.dup_host.0, s.dup_host.1, s.c2.0, s.vo_only.0];
    busy.extend(s.attach.map(|a| a.0));
    busy.extend(s.migrated.iter().copied());
    busy.extend(inj.impostor.map(|i| i.0));
    busy.extend(inj.silenced.map(|i| i.0));
    busy.extend(inj.twin_silenced.map(|i| i.0));
    busy.extend(inj.skewed.iter().map(|i| i.0));
    busy.extend(inj.tampered.map(|i| i.0));
    busy.extend(inj.spoofer.iter().flat_map(|i| [i.0, i.1]));
    let n = site.vms.len();
    let first = usize::try_from(site.params.seed % n as u64).unwrap_or(0);
    let mut k = 0u32;
    for v in (first..n).chain(0..first) {
        if k == 3 {
            break;
        }
        let vm = &site.vms[v];
        if busy.contains(&v) || vm.claimed != vm.hostname {
            continue;
        }
        let until = vm.until(site.end);
        let Some(job) = vm.jobs.iter().find(|j| {
            j.token.is_none() && j.end.unwrap_or(until.min(j.start + 7200)) - j.start >= 2400
        }) else {
            continue;
        };
        let job_end = job.end.unwrap_or(until.min(job.start + 7200));
        // Someone other than the pilot's owner: glexec exists to tell them apart.
        let Some(&(login, name)) = (0..PEOPLE.len())
            .map(|i| &PEOPLE[(i + k as usize + 2) % PEOPLE.len()])
            .find(|p| !job.dn.contains(&format!("/CN={}/", p.0)))
        else {
            continue;
        };
        let run = Glexec {
            dn: format!(
                "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN={login}/CN={}/CN={name}",
                810_000 + k
            ),
            vo: job.vo,
            uid: 40_042 + k,
            mon: (20_413 + 100 * k, 20_414 + 100 * k),
            pid: 20_411 + 100 * k,
            start: job.start + 300,
            end: job_end - 300,
        };
        site.vms[v].glexec.push(run);
        k += 1;
    }
}

/// What a who-question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    Host,
    Mac,
}

impl Site {
    /// The ground truth for "who held `value` at `t`", from the model alone.
    pub fn truth(&self, kind: Kind, value: &str, t: i64) -> Expect {
        let mut matches = Vec::new();
        for vm in &self.vms {
            let lease_from = match kind {
                Kind::Ip => vm
                    .holdings
                    .iter()
                    .find(|h| h.ip == value && h.covers(t))
                    .map(|h| h.from)
                    .or_else(|| {
                        (vm.v6.as_deref() == Some(value) && vm.alive_at(t)).then_some(vm.created)
                    })
                    .or_else(|| {
                        self.floating
                            .iter()
                            .filter(|f| f.ip == value)
                            .find_map(|f| f.holder_at(&self.vms, t))
                            .filter(|(v, _)| self.vms[*v].uuid == vm.uuid)
                            .map(|(_, from)| from)
                    }),
                Kind::Mac => vm
                    .holdings
                    .iter()
                    .find(|h| h.mac == value && h.covers(t))
                    .map(|h| h.from),
                Kind::Host => (vm.hostname == value && vm.alive_at(t)).then_some(vm.created),
            };
            let Some(lease_from) = lease_from else {
                continue;
            };
            let user = &self.users[vm.user];
            // Payload: jobs on this VM running at `t` that started while it held the address.
            let running: Vec<&Job> = vm
                .jobs
                .iter()
                .filter(|j| lease_from <= j.start && j.start <= t && j.end.is_none_or(|e| t < e))
                .collect();
            let mut dns: Vec<String> = running
                .iter()
                .filter(|j| j.token.is_none())
                .map(|j| j.dn.clone())
                .chain(
                    vm.glexec
                        .iter()
                        .filter(|g| lease_from <= g.start && g.running(t))
                        .map(|g| g.dn.clone()),
                )
                .collect();
            dns.sort();
            dns.dedup();
            let mut tokens: Vec<String> = running
                .iter()
                .filter_map(|j| j.token.as_ref().map(|(i, s)| format!("{i} {s}")))
                .collect();
            tokens.sort();
            tokens.dedup();
            matches.push(ExpectedMatch {
                vm_uuid: vm.uuid.clone(),
                hypervisor: Some(self.hypervisors[vm.hypervisor_at(t)].clone()),
                user_id: Some(user.id.clone()),
                user_name: user.in_directory.then(|| user.name.clone()),
                project_id: Some(self.projects[user.project].id.clone()),
                payload_dns: dns,
                payload_tokens: tokens,
            });
        }
        matches.sort();
        Expect {
            ambiguous: matches.len() > 1,
            matches,
        }
    }

    /// The ground truth for "who used the router's gateway address `value` (public `port`,
    /// or any) at `t`": the VMs whose SNATed connections covered `t`, each as its own
    /// address's answer at `t` (issue 12).
    pub fn nat_truth(&self, value: &str, port: Option<u16>, t: i64) -> Expect {
        let mut matches: Vec<ExpectedMatch> = Vec::new();
        if let Some(s) = self.snat.as_ref().filter(|s| s.gateway == value) {
            for c in s
                .conns
                .iter()
                .filter(|c| c.covers(t) && port.is_none_or(|p| c.pport == p))
            {
                let inside = &self.vms[c.vm].holdings[0].ip;
                for m in self.truth(Kind::Ip, inside, t).matches {
                    if !matches.contains(&m) {
                        matches.push(m);
                    }
                }
            }
        }
        matches.sort();
        Expect {
            ambiguous: matches.len() > 1,
            matches,
        }
    }
}

pub(crate) fn rfc3339(t: i64) -> String {
    Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.to_string())
}

pub(crate) fn strftime(t: i64, fmt: &str) -> String {
    Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.strftime(fmt).to_string())
}

/// The questions, each with its ground truth from [`Site::truth`].
pub fn questions(site: &Site, rng: &mut Rng) -> Vec<Question> {
    let mut qs: Vec<(String, Kind, String, i64, Option<u16>)> = Vec::new();
    let mut ask = |why: &str, kind: Kind, value: &str, t: i64| {
        qs.push((why.to_string(), kind, value.to_string(), t, None));
    };
    let vms = &site.vms;
    let n = vms.len();
    // Random moments inside random VMs' lives, and random addresses at random moments.
    for _ in 0..n.min(12) {
        let vm = &vms[rng.index(n)];
        let t = rng.range(vm.created, vm.until(site.end));
        ask(
            "an address at a moment of its VM's life",
            Kind::Ip,
            &vm.primary().ip,
            t,
        );
    }
    for _ in 0..n.min(6) {
        let vm = &vms[rng.index(n)];
        let t = rng.range(site.start, site.end);
        ask(
            "an address at any moment of the day",
            Kind::Ip,
            &vm.primary().ip,
            t,
        );
    }
    // IP reuse: the first holder just before release, the gap, the release itself, the next.
    if let Some((a, b)) = reuse_pair(vms) {
        let (ha, hb) = (vms[a].primary(), vms[b].primary());
        if let Some(released) = ha.to {
            ask(
                "reused address: the first holder's last second",
                Kind::Ip,
                &ha.ip,
                released - 1,
            );
            ask(
                "reused address: at the first holder's deletion (half-open)",
                Kind::Ip,
                &ha.ip,
                released,
            );
            ask(
                "reused address: in the gap between the leases",
                Kind::Ip,
                &ha.ip,
                (released + hb.from) / 2,
            );
            ask(
                "reused address: at the second holder's creation",
                Kind::Ip,
                &hb.ip,
                hb.from,
            );
            ask(
                "reused address: before the second VM was created",
                Kind::Ip,
                &hb.ip,
                hb.from - 1,
            );
        }
    }
    // A VM deleted before the moment, one created after it.
    if let Some(vm) = vms.iter().find(|v| v.deleted.is_some()) {
        let d = vm.deleted.unwrap_or(site.end);
        ask(
            "after the VM's deletion",
            Kind::Ip,
            &vm.primary().ip,
            d + 60,
        );
        ask(
            "after the VM's deletion (by MAC)",
            Kind::Mac,
            &vm.primary().mac,
            d + 1,
        );
    }
    let (dup_a, dup_b) = site.specials.dup_host;
    if let Some(vm) = vms
        .iter()
        .enumerate()
        .rev()
        .find(|(i, v)| v.created > site.start + 3600 && *i != dup_a && *i != dup_b)
        .map(|(_, v)| v)
    {
        ask(
            "before the VM's creation",
            Kind::Ip,
            &vm.primary().ip,
            vm.created - 1,
        );
        ask(
            "before the VM's creation (hostname)",
            Kind::Host,
            &vm.hostname,
            vm.created - 1,
        );
        ask("at the VM's creation", Kind::Host, &vm.hostname, vm.created);
    }
    // Live migration: the old host before, the new one at exactly the move and after.
    for &m in site.specials.migrated.iter().take(3) {
        let vm = &vms[m];
        if let Some(&(tm, _)) = vm.placements.get(1) {
            ask(
                "one second before a live migration",
                Kind::Ip,
                &vm.primary().ip,
                tm - 1,
            );
            ask(
                "at exactly the live migration: the new host",
                Kind::Ip,
                &vm.primary().ip,
                tm,
            );
            ask(
                "after a live migration (hostname)",
                Kind::Host,
                &vm.hostname,
                tm + 600,
            );
        }
    }
    // Hostname held by two VMs at once, and a hostname reused later.
    let (a, b) = site.specials.dup_host;
    if a != b {
        let t = vms[b].created + 600;
        ask(
            "a hostname two VMs hold at once",
            Kind::Host,
            &vms[a].hostname,
            t,
        );
        ask(
            "the address of one of the same-named VMs",
            Kind::Ip,
            &vms[b].primary().ip,
            t + 1,
        );
        ask(
            "the address of the other same-named VM",
            Kind::Ip,
            &vms[a].primary().ip,
            t + 2,
        );
    }
    if let Some((x, y)) = (0..n).find_map(|y| {
        (0..y)
            .find(|&x| {
                vms[x].hostname == vms[y].hostname
                    && vms[x].deleted.is_some_and(|d| d <= vms[y].created)
            })
            .map(|x| (x, y))
    }) {
        ask(
            "a reused hostname: its later VM",
            Kind::Host,
            &vms[y].hostname,
            vms[y].created + 30,
        );
        ask(
            "a reused hostname: its earlier VM",
            Kind::Host,
            &vms[x].hostname,
            vms[x].created + 30,
        );
    }
    // Second port: while attached, and after its detach.
    if let Some((v, ta, td)) = site.specials.attach
        && let Some(h) = vms[v].holdings.get(1)
    {
        ask(
            "an interface attached mid-life: its address just before the attach (no VM)",
            Kind::Ip,
            &h.ip,
            ta - 1,
        );
        ask(
            "an interface attached mid-life: its address at the attach",
            Kind::Ip,
            &h.ip,
            ta,
        );
        ask(
            "an attached second port's address",
            Kind::Ip,
            &h.ip,
            ta + 60,
        );
        ask("an attached second port's MAC", Kind::Mac, &h.mac, td - 1);
        ask(
            "the second port's address after its detach",
            Kind::Ip,
            &h.ip,
            td,
        );
    }
    // Neutron floating IPs (issue 12): during each association, at the hand-over, in a gap
    // and after the last one.
    for f in &site.floating {
        for (k, &(v, from, to)) in f.assoc.iter().enumerate() {
            let until = to.unwrap_or_else(|| vms[v].until(site.end));
            ask(
                "a floating IP during an association",
                Kind::Ip,
                &f.ip,
                rng.range(from, until),
            );
            if k > 0 {
                ask(
                    "a floating IP at the moment it moved",
                    Kind::Ip,
                    &f.ip,
                    from,
                );
                let prev_end = f.assoc[k - 1].2;
                if let Some(pe) = prev_end.filter(|&pe| pe < from) {
                    ask(
                        "a floating IP between two associations",
                        Kind::Ip,
                        &f.ip,
                        (pe + from) / 2,
                    );
                }
            }
        }
        if let Some(&(v, _, to)) = f.assoc.last() {
            let after = to.or(vms[v].deleted);
            if let Some(t) = after.filter(|&t| t + 60 < site.end) {
                ask(
                    "a floating IP after its last association (or its VM's deletion)",
                    Kind::Ip,
                    &f.ip,
                    t + 60,
                );
            }
        }
    }
    ask(
        "an address never assigned",
        Kind::Ip,
        &site.specials.never_assigned,
        site.start + (site.end - site.start) / 2,
    );
    ask(
        "a hostname never assigned",
        Kind::Host,
        &site.specials.never_assigned_host,
        site.start + 3600,
    );
    // Incidents.
    let (c2_vm, c2_at) = site.specials.c2;
    ask(
        "which VM talked to the C2 server (seen only by the hypervisor)",
        Kind::Ip,
        &vms[c2_vm].primary().ip,
        c2_at,
    );
    let (v, j) = site.specials.vo_only;
    if let Some(job) = vms[v].jobs.get(j) {
        ask(
            "a payload only the VO's history names",
            Kind::Ip,
            &vms[v].primary().ip,
            job.start + 60,
        );
        ask(
            "a payload only the VO's history names (hostname)",
            Kind::Host,
            &vms[v].hostname,
            job.start + 61,
        );
    }
    // Report questions (issue 17): the sessions and connections a report lists. Each twin
    // while the other logs under the same name and one of them has gone silent, the C2 VM,
    // and VMs at random moments. Their lines are known only once written: `write` fills in
    // `sessions` and `connections`.
    let inj = Injected::choose(site);
    if let Some((v, at)) = inj.twin_silenced {
        let (a, b) = site.specials.dup_host;
        let other = if v == a { b } else { a };
        for (u, why) in [
            (
                v,
                "report: the twin that went silent, beside its same-named twin",
            ),
            (
                other,
                "report: the twin that logs on, beside its silent same-named twin",
            ),
        ] {
            ask(why, Kind::Ip, &vms[u].primary().ip, at + 600);
        }
    }
    ask(
        "report: the VM that talked to the C2 server",
        Kind::Ip,
        &vms[c2_vm].primary().ip,
        c2_at,
    );
    for _ in 0..3 {
        let vm = &vms[rng.index(n)];
        let t = rng.range(vm.created, vm.until(site.end));
        ask(
            "report: a VM at a moment of its life",
            Kind::Ip,
            &vm.primary().ip,
            t,
        );
    }
    // Issue 12, appended so the questions above keep their ids. Dual stack: SLAAC addresses
    // during, before and after their VMs' lives.
    for vm in vms.iter().filter(|vm| vm.v6.is_some()).take(4) {
        let Some(v6) = vm.v6.clone() else { continue };
        let t = rng.range(vm.created, vm.until(site.end));
        qs.push((
            "a SLAAC (EUI-64) IPv6 address during its VM's life".into(),
            Kind::Ip,
            v6.clone(),
            t,
            None,
        ));
        qs.push((
            "a SLAAC IPv6 address before the VM's creation".into(),
            Kind::Ip,
            v6.clone(),
            vm.created - 1,
            None,
        ));
        if let Some(d) = vm.deleted {
            qs.push((
                "a SLAAC IPv6 address after the VM's deletion".into(),
                Kind::Ip,
                v6,
                d + 30,
                None,
            ));
        }
    }
    // Router SNAT: the gateway and a public port during connections (a port reused by other
    // VMs later), just after one ended, and the gateway without a port while two are open.
    if let Some(s) = &site.snat {
        let gw = &s.gateway;
        for c in s.conns.iter().take(12) {
            qs.push((
                "a router's SNAT address and public port during a connection (conntrack)".into(),
                Kind::Ip,
                gw.clone(),
                (c.from_us + c.to_us) / 2_000_000,
                Some(c.pport),
            ));
        }
        for c in s.conns.iter().take(3) {
            qs.push((
                "a router's SNAT address and port just after the connection ended".into(),
                Kind::Ip,
                gw.clone(),
                c.to_us / 1_000_000 + 2,
                Some(c.pport),
            ));
        }
        let overlap = s.conns.iter().find(|c| {
            s.conns
                .iter()
                .any(|o| o.vm != c.vm && o.covers(c.from_us / 1_000_000 + 2))
        });
        if let Some(c) = overlap.or(s.conns.first()) {
            qs.push((
                "a router's SNAT address without a port while connections are open".into(),
                Kind::Ip,
                gw.clone(),
                c.from_us / 1_000_000 + 2,
                None,
            ));
        }
    }
    // glexec: during the payload (its DN among the VM's payloads), by address and by name,
    // and after it terminated.
    for vm in vms {
        for g in &vm.glexec {
            let mid = (g.start + g.end) / 2;
            for (why, kind, value, t) in [
                (
                    "a payload run under glexec (its DN from LCMAPS)",
                    Kind::Ip,
                    &vm.primary().ip,
                    mid,
                ),
                (
                    "a payload run under glexec (hostname)",
                    Kind::Host,
                    &vm.hostname,
                    mid + 1,
                ),
                (
                    "a glexec payload's VM after the payload terminated",
                    Kind::Ip,
                    &vm.primary().ip,
                    g.end + 60,
                ),
            ] {
                qs.push((why.into(), kind, value.clone(), t, None));
            }
        }
    }
    qs.into_iter()
        .enumerate()
        .map(|(i, (why, kind, value, t, port))| {
            let (ip, host, mac) = match kind {
                Kind::Ip => (Some(value.clone()), None, None),
                Kind::Host => (None, Some(value.clone()), None),
                Kind::Mac => (None, None, Some(value.clone())),
            };
            let report = why.starts_with("report: ");
            let nat = kind == Kind::Ip && site.snat.as_ref().is_some_and(|s| s.gateway == value);
            Question {
                id: format!("q{:02}", i + 1),
                kind: if report { "report" } else { "who" }.into(),
                ip,
                host,
                mac,
                port,
                at: rfc3339(t),
                expect: if nat {
                    site.nat_truth(&value, port, t)
                } else {
                    site.truth(kind, &value, t)
                },
                why: Some(why),
                sessions: report.then(Vec::new),
                connections: report.then(Vec::new),
            }
        })
        .collect()
}

/// A VM's lines as a report lists them: (second, [`list_key`]).
type Listed = Vec<(i64, String)>;

/// [`list_key`] of an archived VM syslog line (`RECEIVED IP <PRI>STAMP HOST PROG[PID]: MSG`,
/// STAMP 15 characters): `HOST PROG: MSG`, as a report shows it.
fn session_key(t: i64, line: &str) -> String {
    let rest = line
        .find('>')
        .and_then(|i| line.get(i + 17..))
        .unwrap_or("");
    let said = rest
        .find("]: ")
        .and_then(|close| {
            let lb = rest[..close].rfind('[')?;
            Some(format!("{}{}", &rest[..lb], &rest[close + 1..]))
        })
        .unwrap_or_else(|| rest.to_string());
    list_key(t, &said)
}

/// A report's list entry as the challenge compares it: the second it is placed at, and what
/// it says (`HOST APP: MESSAGE`).
pub fn list_key(t: i64, said: &str) -> String {
    format!("{} {said}", rfc3339(t))
}

/// Two VMs that held the same primary address one after the other.
fn reuse_pair(vms: &[Vm]) -> Option<(usize, usize)> {
    (0..vms.len()).find_map(|b| {
        (0..b)
            .rev()
            .find(|&a| vms[a].primary().ip == vms[b].primary().ip)
            .map(|a| (a, b))
    })
}

/// What `write` produced.
#[derive(Debug)]
pub struct Written {
    pub questions: usize,
    pub notifications: usize,
    pub jobs: usize,
    pub syslog_lines: usize,
    pub netfilter_lines: usize,
    pub nova_log_lines: usize,
    /// The network node's conntrack events (router SNAT; OpenStack days).
    pub conntrack_lines: usize,
    /// Problems `check` must find (findings.json).
    pub expected_findings: usize,
}

/// One nova-compute log line in oslo.log's default layout, in the owner's request context
/// (the requester is the owner here; the fact store never takes owners from log lines anyway).
fn nova_log(site: &Site, vm: &Vm, t: i64, n: usize, msg: &str) -> String {
    let user = &site.users[vm.user];
    format!(
        "{}.{:03} {} INFO nova.compute.manager [req-{}-{n:012x} {} {} - - -] [instance: {}] {msg}",
        strftime(t, "%Y-%m-%d %H:%M:%S"),
        (n * 37) % 1000,
        2900 + vm.hypervisor_at(t),
        &vm.uuid[..23],
        user.id,
        site.projects[user.project].id,
        vm.uuid
    )
}

fn notification(
    site: &Site,
    vm: &Vm,
    event: &str,
    t: i64,
    state: &str,
    ips: &[&Holding],
) -> String {
    let user = &site.users[vm.user];
    let host = &site.hypervisors[vm.hypervisor_at(t)];
    let ip = |address: &str, version: u8, h: &Holding, label: &str| {
        let port = port_of(vm, h);
        json!({"nova_object.name": "IpPayload", "nova_object.namespace": "nova",
               "nova_object.version": "1.0",
               "nova_object.data": {"address": address, "mac": h.mac, "version": version,
                   "port_uuid": port, "device_name": format!("tap{}", &port[..11]),
                   "label": label, "meta": {}}})
    };
    // The primary port on the dual-stack network lists its SLAAC address too (nova's
    // IpPayload: one entry per fixed IP of the port, `version` 6).
    let ips: Vec<Value> = ips
        .iter()
        .flat_map(|h| {
            let primary = h.mac == vm.primary().mac;
            let label = if primary && vm.v6.is_some() {
                "dualstack"
            } else {
                "private"
            };
            let v6 = vm
                .v6
                .as_deref()
                .filter(|_| primary)
                .map(|a| ip(a, 6, h, label));
            std::iter::once(ip(&h.ip, 4, h, label)).chain(v6)
        })
        .collect();
    let stamp = format!("{}.000000", strftime(t, "%Y-%m-%d %H:%M:%S"));
    let message = json!({
        "event_type": event,
        "priority": "INFO",
        "publisher_id": format!("nova-compute:{host}"),
        "timestamp": stamp,
        "message_id": format!("{}-{t}-{event}", vm.uuid),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8",
            "nova_object.data": {"uuid": vm.uuid, "host": host, "node": format!("{host}.cloud.example.org"),
                "host_name": vm.hostname, "display_name": vm.hostname,
                "user_id": user.id, "tenant_id": site.projects[user.project].id,
                "image_uuid": "5e1d4c2a-7b9f-4e3a-9d1c-0a2b3c4d5e6f", "state": state,
                "created_at": rfc3339(vm.created), "ip_addresses": ips}}
    });
    json!({"oslo.version": "2.0", "oslo.message": message.to_string()}).to_string()
}

/// Neutron's legacy notifications for the floating IPs (issue 12), shaped as neutron's
/// notifier sends them (neutron/api/v2/base.py: `port.create.end` with `payload.port`,
/// `port.delete.end` with `port_id` only, `floatingip.*.end` with `payload.floatingip`), half
/// of them in the oslo envelope. Written out of order with every third one twice: the
/// answers must not depend on either.
fn neutron_notifications(site: &Site) -> Vec<String> {
    let mut notes: Vec<(i64, String)> = Vec::new();
    let stamp = |t: i64| format!("{}.000000", strftime(t, "%Y-%m-%d %H:%M:%S"));
    let msg = |event: &str, t: i64, payload: Value, n: usize| {
        let m = json!({"message_id": format!("7e57{n:04x}-0000-4000-8000-{t:012x}"),
            "publisher_id": "network.controller-1", "event_type": event, "priority": "INFO",
            "payload": payload, "timestamp": stamp(t)});
        if n.is_multiple_of(2) {
            json!({"oslo.version": "2.0", "oslo.message": m.to_string()}).to_string()
        } else {
            m.to_string()
        }
    };
    let mut ports: Vec<usize> = site
        .floating
        .iter()
        .flat_map(|f| f.assoc.iter().map(|a| a.0))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for &v in &ports {
        let vm = &site.vms[v];
        let p = vm.primary();
        let project = &site.projects[site.users[vm.user].project].id;
        let mut fixed_ips =
            vec![json!({"subnet_id": "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b", "ip_address": p.ip})];
        if let Some(v6) = &vm.v6 {
            fixed_ips.push(
                json!({"subnet_id": "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a66", "ip_address": v6}),
            );
        }
        let port = json!({"port": {"id": port_id(vm), "name": "", "network_id": "8b2d7c4e-1f0a-4a3b-9c6d-2e5f8a7b0c1d",
            "tenant_id": project, "project_id": project, "mac_address": p.mac, "admin_state_up": true,
            "status": "ACTIVE", "device_id": vm.uuid, "device_owner": "compute:nova",
            "fixed_ips": fixed_ips,
            "binding:host_id": site.hypervisors[vm.hypervisor_at(vm.created)]}});
        notes.push((
            vm.created,
            msg("port.create.end", vm.created, port, notes.len()),
        ));
        if let Some(d) = vm.deleted {
            let gone = json!({"port_id": port_id(vm)});
            notes.push((d, msg("port.delete.end", d, gone, notes.len())));
        }
    }
    for f in &site.floating {
        let Some(&(_, first, _)) = f.assoc.first() else {
            continue;
        };
        let fip = |port: Option<&Vm>, status: &str| {
            json!({"floatingip": {"id": f.id, "tenant_id": "54fadb412c4e40cdbaed9335e4c35a9e",
                "floating_network_id": "a0b1c2d3-e4f5-4607-8809-1a2b3c4d5e6f",
                "router_id": port.map(|_| ROUTER_ID),
                "fixed_ip_address": port.map(|vm| vm.primary().ip.clone()),
                "floating_ip_address": f.ip, "port_id": port.map(port_id), "status": status}})
        };
        notes.push((
            first - 300,
            msg(
                "floatingip.create.end",
                first - 300,
                fip(None, "DOWN"),
                notes.len(),
            ),
        ));
        for &(v, from, to) in &f.assoc {
            let vm = &site.vms[v];
            notes.push((
                from,
                msg(
                    "floatingip.update.end",
                    from,
                    fip(Some(vm), "ACTIVE"),
                    notes.len(),
                ),
            ));
            if let Some(to) = to {
                notes.push((
                    to,
                    msg("floatingip.update.end", to, fip(None, "DOWN"), notes.len()),
                ));
            }
        }
    }
    // The router with its external gateway (neutron's `router.create.end`: `payload.router`
    // with `external_gateway_info.external_fixed_ips`), an hour before the day: the SNAT
    // address of the VMs behind it.
    if let Some(s) = &site.snat {
        let t = site.start - 3600;
        let router = json!({"router": {"id": s.router_id, "name": "router-ext",
            "tenant_id": "54fadb412c4e40cdbaed9335e4c35a9e",
            "project_id": "54fadb412c4e40cdbaed9335e4c35a9e", "admin_state_up": true,
            "status": "ACTIVE", "distributed": false, "ha": false, "routes": [],
            "external_gateway_info": {"network_id": "a0b1c2d3-e4f5-4607-8809-1a2b3c4d5e6f",
                "enable_snat": true,
                "external_fixed_ips": [{"subnet_id": "b1c2d3e4-f5a6-4718-9920-3a4b5c6d7e8f",
                    "ip_address": s.gateway}]}}});
        notes.push((t, msg("router.create.end", t, router, notes.len())));
    }
    // Out of order (a fixed shuffle) and every third message twice.
    let n = notes.len();
    let mut out: Vec<String> = Vec::with_capacity(n + n / 3);
    for i in 0..n {
        out.push(notes[(i * 7 + 3) % n].1.clone());
    }
    if n.is_multiple_of(7) {
        out = notes.iter().rev().map(|x| x.1.clone()).collect();
    }
    out.extend(notes.iter().step_by(3).map(|x| x.1.clone()));
    out
}

/// The network node's `conntrack -E -o timestamp,extended,id` log of the SNATed connections
/// (issue 12): a NEW and a DESTROY each, in time order, shaped as conntrack 1.4.7 prints them
/// (crates/decode/testdata/nat/conntrack-extended.log; bench/gen's `huntgen nat` writes the
/// same). The reply tuple's destination is the gateway and public port.
fn conntrack_lines(site: &Site, s: &Snat) -> Vec<String> {
    let stamp = |us: i64| format!("[{}.{:06}]", us / 1_000_000, us % 1_000_000);
    let mut lines: Vec<(i64, String)> = Vec::with_capacity(s.conns.len() * 2);
    for c in &s.conns {
        let src = &site.vms[c.vm].holdings[0].ip;
        let (peer, gw) = (c.peer, &s.gateway);
        let (sport, dport, pport, id) = (c.sport, c.dport, c.pport, c.id);
        let (p, num, head, tail) = if dport == 53 {
            ("udp", 17, "30".to_string(), "")
        } else {
            ("tcp", 6, "120 SYN_SENT".to_string(), " [ASSURED]")
        };
        lines.push((
            c.from_us,
            format!(
                "{}\t    [NEW] ipv4     2 {p:<8} {num} {head} src={src} dst={peer} sport={sport} dport={dport} [UNREPLIED] src={peer} dst={gw} sport={dport} dport={pport} id={id}",
                stamp(c.from_us)
            ),
        ));
        lines.push((
            c.to_us,
            format!(
                "{}\t[DESTROY] ipv4     2 {p:<8} {num} src={src} dst={peer} sport={sport} dport={dport} src={peer} dst={gw} sport={dport} dport={pport}{tail} delta-time={} id={id}",
                stamp(c.to_us),
                (c.to_us - c.from_us) / 1_000_000
            ),
        ));
    }
    lines.sort();
    lines.into_iter().map(|l| l.1).collect()
}

/// How far [`disorder`] moves a notification: it shuffles within windows this many lines long.
const DISORDER_WINDOW: usize = 16;
/// [`disorder`] writes every this-many-th notification a second time.
const DUPLICATE_EVERY: usize = 5;

/// Nova notifications as a consumer of a busy site receives them (issue 12): several
/// conductors and computes publish at once and AMQP redelivers after a lost ack, so the
/// file is in time order only within bounds — shuffled within windows of
/// [`DISORDER_WINDOW`] lines — and every [`DUPLICATE_EVERY`]-th message comes twice, the copy
/// up to a window later. Answers must not change: attribution is order-independent. A
/// generator of its own, so nothing else of the day moves.
fn disorder(notes: Vec<String>, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0xD150_4DE4);
    let mut keyed: Vec<(usize, String)> = Vec::with_capacity(notes.len() + notes.len() / 4);
    for (i, n) in notes.into_iter().enumerate() {
        if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 {
            keyed.push((2 * (i + 1 + rng.index(DISORDER_WINDOW)) + 1, n.clone()));
        }
        keyed.push((2 * i, n));
    }
    keyed.sort_by_key(|k| k.0);
    let mut out: Vec<String> = keyed.into_iter().map(|k| k.1).collect();
    for w in out.chunks_mut(DISORDER_WINDOW) {
        for i in (1..w.len()).rev() {
            w.swap(i, rng.index(i + 1));
        }
    }
    out
}

pub(crate) fn put(path: &Path, lines: impl IntoIterator<Item = String>) -> Result<usize> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut n = 0;
    for l in lines {
        w.write_all(l.as_bytes())?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// Render `site` and its questions into `out`.
pub fn write(site: &Site, questions: &[Question], out: &Path) -> Result<Written> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (notifications, nova_log_lines, cloud_files) = match site.cloud {
        Cloud::Openstack => write_openstack(site, out)?,
        Cloud::Opennebula => {
            let w = opennebula::write(site, out)?;
            (w.documents, w.log_lines, w.files)
        }
    };
    let conntrack_lines = site.snat.as_ref().map_or(0, |s| 2 * s.conns.len());
    let (jobs, syslog_lines, netfilter_lines, expected_findings) =
        write_site(site, questions, out, cloud_files)?;
    Ok(Written {
        questions: questions.len(),
        notifications,
        jobs,
        syslog_lines,
        netfilter_lines,
        nova_log_lines,
        conntrack_lines,
        expected_findings,
    })
}

/// Nova notifications, nova-compute logs and Keystone dumps; returns (notifications, log
/// lines, the files to ingest).
type CloudFiles = Vec<(String, Option<String>)>;

fn write_openstack(site: &Site, out: &Path) -> Result<(usize, usize, CloudFiles)> {
    // Notifications, in time order.
    let mut notes: Vec<(i64, String)> = Vec::new();
    for vm in &site.vms {
        let p = vm.primary();
        notes.push((
            vm.created,
            notification(site, vm, "instance.create.end", vm.created, "active", &[p]),
        ));
        if let Some(a) = vm.holdings.get(1) {
            notes.push((
                a.from,
                notification(
                    site,
                    vm,
                    "instance.interface_attach.end",
                    a.from,
                    "active",
                    &[p, a],
                ),
            ));
            if let Some(td) = a.to {
                notes.push((
                    td,
                    notification(
                        site,
                        vm,
                        "instance.interface_detach.end",
                        td,
                        "active",
                        &[p],
                    ),
                ));
            }
        }
        for &(tm, _) in vm.placements.iter().skip(1) {
            let held: Vec<&Holding> = vm.holdings.iter().filter(|h| h.covers(tm)).collect();
            notes.push((
                tm,
                notification(
                    site,
                    vm,
                    "instance.live_migration_post_dest.end",
                    tm,
                    "active",
                    &held,
                ),
            ));
        }
        if let Some(d) = vm.deleted {
            notes.push((
                d,
                notification(site, vm, "instance.delete.end", d, "deleted", &[]),
            ));
        }
    }
    notes.sort();
    let notes = disorder(notes.into_iter().map(|n| n.1).collect(), site.params.seed);
    // The compute hosts' nova-compute logs: claim, spawn, terminate, destroy.
    let mut nova: Vec<(i64, String)> = Vec::new();
    for (i, vm) in site.vms.iter().enumerate() {
        let host = &site.hypervisors[vm.hypervisor_at(vm.created)];
        let spawn = vm.created - 15;
        nova.push((
            spawn,
            nova_log(
                site,
                vm,
                spawn,
                4 * i,
                &format!("Claim successful on node {host}.cloud.example.org"),
            ),
        ));
        nova.push((
            vm.created,
            nova_log(
                site,
                vm,
                vm.created,
                4 * i + 1,
                &format!(
                    "Took {}.{:02} seconds to spawn the instance on the hypervisor.",
                    10 + i % 20,
                    i % 100
                ),
            ),
        ));
        if let Some(d) = vm.deleted {
            nova.push((
                d - 4,
                nova_log(site, vm, d - 4, 4 * i + 2, "Terminating instance"),
            ));
            nova.push((
                d,
                nova_log(site, vm, d, 4 * i + 3, "Instance destroyed successfully."),
            ));
        }
    }
    nova.sort();
    let nova_log_lines = put(&out.join("nova-compute.log"), nova.into_iter().map(|n| n.1))?;
    let notifications = put(&out.join("notifications.jsonl"), notes)?;

    // Keystone dumps (the removed user is missing from the user list).
    let users: Vec<Value> = site
        .users
        .iter()
        .filter(|u| u.in_directory)
        .map(|u| {
            json!({"ID": u.id, "Name": u.name, "Project": site.projects[u.project].id,
                   "Domain": "default", "Description": "", "Email": format!("{}@example.org", u.name),
                   "Enabled": true})
        })
        .collect();
    fs::write(
        out.join("keystone_users.json"),
        serde_json::to_string_pretty(&users)? + "\n",
    )?;
    let projects: Vec<Value> = site
        .projects
        .iter()
        .map(|p| {
            json!({"ID": p.id, "Name": p.name, "Domain ID": "default",
                   "Description": format!("{} pilots", p.vo), "Enabled": true})
        })
        .collect();
    fs::write(
        out.join("keystone_projects.json"),
        serde_json::to_string_pretty(&projects)? + "\n",
    )?;
    let mut names = vec![
        "notifications.jsonl",
        "nova-compute.log",
        "keystone_users.json",
        "keystone_projects.json",
    ];
    if !site.floating.is_empty() || site.snat.is_some() {
        put(&out.join("neutron.jsonl"), neutron_notifications(site))?;
        names.push("neutron.jsonl");
    }
    let mut files: CloudFiles = names.into_iter().map(|p| (p.to_string(), None)).collect();
    if let Some(s) = &site.snat {
        put(&out.join("conntrack.log"), conntrack_lines(site, s))?;
        files.push(("conntrack.log".into(), Some("network".into())));
    }
    Ok((notifications, nova_log_lines, files))
}

/// What both clouds share: condor history, VM syslog, hypervisor lines, the manifest, the
/// answers and the problems for `check`. Returns (jobs, syslog lines, netfilter lines,
/// expected findings).
fn write_site(
    site: &Site,
    questions: &[Question],
    out: &Path,
    cloud_files: CloudFiles,
) -> Result<(usize, usize, usize, usize)> {
    // condor_history -json: newest first.
    let mut ads: Vec<(i64, Value)> = Vec::new();
    for vm in &site.vms {
        let ip = &vm.primary().ip;
        for j in &vm.jobs {
            let owner = format!("{}plt", j.vo);
            let mut ad = json!({
                "GlobalJobId": format!("ce01.example.org#{}.0#{}", j.cluster, j.start - 90),
                "ClusterId": j.cluster, "ProcId": 0,
                "Owner": owner, "User": format!("{owner}@example.org"),
                "x509userproxysubject": j.dn, "x509UserProxyVOName": j.vo,
                "StartdIpAddr": format!("<{ip}:9618?addrs={ip}-9618&alias={}>", vm.hostname),
                "RemoteHost": format!("slot1@{}", vm.hostname),
                "QDate": j.start - 90,
                "JobCurrentStartDate": j.start,
                "Cmd": "/usr/libexec/condor/glidein_startup.sh",
                "JobStatus": if j.end.is_some() { 4 } else { 2 },
            });
            if let (Some(e), Some(obj)) = (j.end, ad.as_object_mut()) {
                obj.insert("CompletionDate".into(), json!(e));
                obj.insert("EnteredCurrentStatus".into(), json!(e));
            }
            // A token-identified payload: the ad names the token, not a proxy.
            if let (Some((iss, sub)), Some(obj)) = (&j.token, ad.as_object_mut()) {
                obj.remove("x509userproxysubject");
                obj.remove("x509UserProxyVOName");
                obj.insert("AuthTokenIssuer".into(), json!(iss));
                obj.insert("AuthTokenSubject".into(), json!(sub));
                obj.insert("AuthTokenId".into(), json!(format!("tok-{}", j.cluster)));
                obj.insert(
                    "AuthTokenScopes".into(),
                    json!("compute.create,compute.read"),
                );
                obj.insert("AuthTokenGroups".into(), json!(format!("/{}", j.vo)));
            }
            ads.push((j.end.unwrap_or(i64::MAX), ad));
        }
    }
    // The orphan payload (inject.rs): a run on an address no VM held, by a real pilot owner.
    let inj = Injected::choose(site);
    {
        let vo = site.projects[0].vo;
        let owner = format!("{vo}plt");
        let (t, ip) = (inj.orphan_at, ORPHAN_ADDR);
        ads.push((
            t + 1800,
            json!({
                "GlobalJobId": format!("ce01.example.org#{ORPHAN_CLUSTER}.0#{}", t - 90),
                "ClusterId": ORPHAN_CLUSTER, "ProcId": 0,
                "Owner": owner, "User": format!("{owner}@example.org"),
                "x509userproxysubject": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=700000/CN=Jane Doe",
                "x509UserProxyVOName": vo,
                "StartdIpAddr": format!("<{ip}:9618?addrs={ip}-9618&alias=wn-ghost>"),
                "RemoteHost": "slot1@wn-ghost",
                "QDate": t - 90, "JobCurrentStartDate": t,
                "Cmd": "/usr/libexec/condor/glidein_startup.sh",
                "JobStatus": 4, "CompletionDate": t + 1800, "EnteredCurrentStatus": t + 1800,
            }),
        ));
    }
    ads.sort_by_key(|a| std::cmp::Reverse(a.0));
    let jobs = ads.len();
    let ads: Vec<Value> = ads.into_iter().map(|a| a.1).collect();
    fs::write(
        out.join("condor_history.json"),
        serde_json::to_string_pretty(&ads)? + "\n",
    )?;

    // VM syslog and hypervisor netfilter lines, each file in time order.
    let mut rng = Rng::new(site.params.seed ^ 0x5157_4C4F_4721);
    let (vo_vm, vo_job) = site.specials.vo_only;
    let mut syslog: Vec<(i64, String)> = Vec::new();
    let mut netf: Vec<(i64, String)> = Vec::new();
    let boot = site.start - 86_400 * 3;
    let dens = i64::from(site.params.density.max(1));
    // The report questions' VMs: their lines, as a report lists them, for the ground truth.
    let report_vms: Vec<usize> = questions
        .iter()
        .filter(|q| q.kind == "report")
        .flat_map(|q| &q.expect.matches)
        .filter_map(|m| site.vms.iter().position(|vm| vm.uuid == m.vm_uuid))
        .collect();
    let mut listed: std::collections::BTreeMap<usize, (Listed, Listed)> =
        std::collections::BTreeMap::new();
    for (v, vm) in site.vms.iter().enumerate() {
        let until = vm.until(site.end);
        let first_line = syslog.len();
        let first_syn = netf.len();
        // As the site's central rsyslog archives it: its receive time (a few ms after the
        // true time), the VM's address, then the message as the VM sent it — with the VM's
        // clock and the name it claims (inject.rs may have made either wrong).
        let sent_from = &vm.primary().ip;
        let line = |t: i64, prog: &str, pid: i64, msg: &str| {
            let pri = match prog {
                "sshd" => 86,
                "CROND" => 78,
                _ => 30,
            };
            format!(
                "{}.{:06}+00:00 {sent_from} <{pri}>{} {} {prog}[{pid}]: {msg}",
                strftime(t, "%Y-%m-%dT%H:%M:%S"),
                (t.unsigned_abs() * 7919 + pid.unsigned_abs() * 31) % 900_000 + 1000,
                strftime(t + inj.clock_offset(v, t), "%b %e %H:%M:%S"),
                inj.claimed(site, v, t)
            )
        };
        let mut pid = 900 + rng.range(0, 400);
        let mut t = vm.created + rng.range(20, 60);
        while t < until {
            pid += rng.range(1, 30);
            match rng.below(4) {
                0 => {
                    let who = ["cloud-user", "root", "pilot"][rng.index(3)];
                    let from = format!("192.0.2.{}", 10 + rng.below(200));
                    let port = 40_000 + rng.below(20_000);
                    syslog.push((t, line(t, "sshd", pid, &format!("Accepted publickey for {who} from {from} port {port} ssh2: ED25519 SHA256:q3Xf{pid}"))));
                    syslog.push((t, line(t, "sshd", pid, &format!("pam_unix(sshd:session): session opened for user {who}(uid=1000) by (uid=0)"))));
                    let close = t + rng.range(30, 900);
                    if close < until {
                        syslog.push((
                            close,
                            line(
                                close,
                                "sshd",
                                pid,
                                &format!("pam_unix(sshd:session): session closed for user {who}"),
                            ),
                        ));
                    }
                }
                1 => syslog.push((
                    t,
                    line(
                        t,
                        "CROND",
                        pid,
                        "(root) CMD (/usr/sbin/condor_reconfig -quiet)",
                    ),
                )),
                2 => syslog.push((
                    t,
                    line(t, "condor_startd", 2211, "Changing activity: Idle -> Busy"),
                )),
                _ => {
                    let from = format!("203.0.113.{}", 1 + rng.below(250));
                    syslog.push((
                        t,
                        line(
                            t,
                            "sshd",
                            pid,
                            &format!(
                                "Invalid user admin from {from} port {}",
                                30_000 + rng.below(30_000)
                            ),
                        ),
                    ));
                }
            }
            t += (rng.range(30, 120) / dens).max(1);
        }
        for (j, job) in vm.jobs.iter().enumerate() {
            if (v, j) != (vo_vm, vo_job) {
                syslog.push((
                    job.start,
                    line(
                        job.start,
                        "condor_starter",
                        3000 + (job.cluster % 5000) as i64,
                        &format!("Starting job {}.0 for {}", job.cluster, job.dn),
                    ),
                ));
            }
        }
        // glexec / LCMAPS as lcmaps-plugins-process-tracking and glexec log them (shapes:
        // crates/decode/testdata/grid/glexec.log): the mapping, Started and the identity the
        // monitor reports in the same second, Terminated at the end.
        for g in &vm.glexec {
            let (a, b) = g.mon;
            let vo = g.vo;
            let fqan = format!("/{vo}/Role=NULL/Capability=NULL");
            let mon = format!("glexec.mon[{a}#{b}]");
            let said = |t: i64, tag: &str, msg: &str| {
                format!(
                    "{}.{:06}+00:00 {sent_from} <85>{} {} {tag}: {msg}",
                    strftime(t, "%Y-%m-%dT%H:%M:%S"),
                    (t.unsigned_abs() * 7919 + u64::from(b) * 31) % 900_000 + 1000,
                    strftime(t, "%b %e %H:%M:%S"),
                    vm.hostname
                )
            };
            let t = g.start;
            for (tag, msg) in [
                (
                    format!("glexec[{}]", g.pid),
                    format!(
                        "LCMAPS CRED FINAL: DN:\"{}\",FQAN:\"{fqan}\"->mapped uid:'{vo}{:03}'({}),pgid:'{vo}'(40000)",
                        g.dn,
                        g.uid % 1000,
                        g.uid
                    ),
                ),
                (
                    format!("lcmaps-namespace[{a}]"),
                    format!("{mon}: Started, target uid {}", g.uid),
                ),
                (mon.clone(), format!("Used DN: \"{}\"", g.dn)),
                (mon.clone(), format!("Used VO: \"{vo}\"")),
                (mon.clone(), format!("Used FQAN: \"{fqan}\"")),
            ] {
                syslog.push((t, said(t, &tag, &msg)));
            }
            syslog.push((
                g.end,
                said(
                    g.end,
                    &mon,
                    &format!(
                        "Terminated, CPU user {} system {}",
                        (g.end - g.start) * 9 / 10,
                        (g.end - g.start) / 60
                    ),
                ),
            ));
        }
        // A silenced VM says nothing from its moment on (drawn all the same, so the random
        // stream and every other VM's lines stay as they were).
        if inj.silent(v, until) {
            let mut mine = syslog.split_off(first_line);
            mine.retain(|(t, _)| !inj.silent(v, *t));
            syslog.extend(mine);
        }
        // The hypervisor's view: the VM's outgoing SYNs through its tap device.
        let tap = match site.cloud {
            Cloud::Openstack => format!("tap{}", vm.uuid.get(..11).unwrap_or(&vm.uuid)),
            Cloud::Opennebula => opennebula::tap(vm),
        };
        let ip = &vm.primary().ip;
        let mac = &vm.primary().mac;
        let syn = |t: i64, dst: &str, dport: u16, sport: u64, id: u64| {
            let hv = &site.hypervisors[vm.hypervisor_at(t)];
            format!(
                "{} {hv} kernel: [{:>6}.{:06}] pugmark-egress IN={tap} OUT=bond0 MAC=00:00:5e:00:01:01:{mac}:08:00 SRC={ip} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={id} DF PROTO=TCP SPT={sport} DPT={dport} WINDOW=64240 RES=0x00 SYN URGP=0",
                strftime(t, "%b %e %H:%M:%S"),
                t - boot,
                id % 1_000_000
            )
        };
        let mut t = vm.created + rng.range(10, 60);
        while t < until {
            let (dst, dport) = SERVICES[rng.index(SERVICES.len())];
            let (sport, id) = (32_768 + rng.below(28_000), rng.below(65_536));
            netf.push((t, syn(t, dst, dport, sport, id)));
            t += (rng.range(20, 100) / dens).max(1);
        }
        if site.specials.c2.0 == v {
            let t = site.specials.c2.1;
            netf.push((t, syn(t, C2_ADDR, C2_PORT, 51_515, 4242)));
        }
        // The planted spoof: out of this VM's tap, another VM's address as the source.
        if let Some((_, victim, at)) = inj.spoofer.filter(|s| s.0 == v) {
            let other = &site.vms[victim].primary().ip;
            for (k, t) in [at, at + 120].into_iter().enumerate() {
                let line = syn(t, "203.0.113.99", 443, 45_000 + k as u64, 900 + k as u64);
                netf.push((
                    t,
                    line.replacen(&format!(" SRC={ip} "), &format!(" SRC={other} "), 1),
                ));
            }
        }
        if report_vms.contains(&v) {
            let sessions = syslog[first_line..]
                .iter()
                .map(|(t, l)| (*t, session_key(*t, l)))
                .collect();
            let conns = netf[first_syn..]
                .iter()
                .map(|(t, l)| (*t, list_key(*t, l.get(16..).unwrap_or(""))))
                .collect();
            listed.insert(v, (sessions, conns));
        }
    }
    // The unknown host: SYNs from a site address no VM held, through a tap no VM owns.
    let hv = &site.hypervisors[0];
    for k in 0..3i64 {
        let t = inj.unknown_at + k * 240;
        netf.push((
            t,
            format!(
                "{} {hv} kernel: [{:>6}.{:06}] pugmark-egress IN=tap0badc0ffee OUT=bond0 MAC=00:00:5e:00:01:01:fa:16:3e:ff:ff:0{k}:08:00 SRC={UNKNOWN_HOST} DST=203.0.113.77 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={} DF PROTO=TCP SPT={} DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
                strftime(t, "%b %e %H:%M:%S"),
                t - boot,
                k * 1013,
                7000 + k,
                41_000 + k
            ),
        ));
    }
    syslog.sort();
    netf.sort();
    let syslog_lines = put(&out.join("vm-syslog.log"), syslog.into_iter().map(|l| l.1))?;
    let netfilter_lines = put(
        &out.join("hypervisor-netfilter.log"),
        netf.into_iter().map(|l| l.1),
    )?;

    // The report questions' ground truth: every line of the VM inside the report's window.
    let mut questions = questions.to_vec();
    let w = query::report::WINDOW.as_secs();
    for q in questions.iter_mut().filter(|q| q.kind == "report") {
        let at =
            q.at.parse::<Timestamp>()
                .map(|t| t.as_second())
                .unwrap_or(0);
        let v = q
            .expect
            .matches
            .first()
            .and_then(|m| site.vms.iter().position(|vm| vm.uuid == m.vm_uuid));
        let pick = |lines: &[(i64, String)]| {
            let mut keys: Vec<String> = lines
                .iter()
                .filter(|(t, _)| at - w <= *t && *t < at + w)
                .map(|(_, k)| k.clone())
                .collect();
            keys.sort();
            keys
        };
        let (s, c) = v
            .and_then(|v| listed.get(&v))
            .map(|(s, c)| (pick(s), pick(c)))
            .unwrap_or_default();
        q.sessions = Some(s);
        q.connections = Some(c);
    }
    let questions = &questions[..];
    let year: i16 = strftime(site.start, "%Y").parse().unwrap_or(2026);
    let manifest = Manifest {
        seed: site.params.seed,
        vms: site.params.vms,
        hours: site.params.hours,
        start: rfc3339(site.start),
        year,
        files: cloud_files
            .into_iter()
            .chain(
                ["condor_history.json", "vm-syslog.log"]
                    .into_iter()
                    .map(|p| (p.to_string(), None)),
            )
            .map(|(path, observer)| ManifestFile { path, observer })
            .chain(std::iter::once(ManifestFile {
                path: "hypervisor-netfilter.log".into(),
                observer: Some("hypervisor".into()),
            }))
            .collect(),
    };
    fs::write(
        out.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    fs::write(
        out.join(ANSWERS),
        serde_json::to_string_pretty(questions)? + "\n",
    )?;
    let truth = inj.truth(site);
    fs::write(
        out.join(FINDINGS),
        serde_json::to_string_pretty(&truth)? + "\n",
    )?;
    Ok((jobs, syslog_lines, netfilter_lines, truth.expect.len()))
}

/// Build, ask, write for a site run by `cloud`: the same day (same seed, same VMs, addresses and
/// questions) in that cloud's identities and records.
pub fn generate_for(p: Params, cloud: Cloud, out: &Path) -> Result<Written> {
    p.check()?;
    let mut site = build(p);
    if cloud == Cloud::Opennebula {
        // No Neutron on an OpenNebula site (floating IPs, the router's SNAT), and its
        // virtual networks here are IPv4 only.
        site.floating.clear();
        site.snat = None;
        for vm in &mut site.vms {
            vm.v6 = None;
        }
        opennebula::convert(&mut site);
        site.cloud = Cloud::Opennebula;
    }
    let qs = questions(&site, &mut Rng::new(p.seed.rotate_left(17) ^ 0xA11CE));
    write(&site, &qs, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        build(Params {
            seed: 7,
            vms: 30,
            hours: 6,
            density: 1,
        })
    }

    #[test]
    fn no_address_or_mac_is_held_by_two_vms_at_once() {
        for p in [
            Params {
                seed: 7,
                vms: 30,
                hours: 6,
                density: 1,
            },
            Params {
                seed: 1,
                vms: 200,
                hours: 24,
                density: 1,
            },
            Params {
                seed: 99,
                vms: 8,
                hours: 4,
                density: 1,
            },
        ] {
            let s = build(p);
            let all: Vec<(usize, &Holding)> = s
                .vms
                .iter()
                .enumerate()
                .flat_map(|(v, vm)| vm.holdings.iter().map(move |h| (v, h)))
                .collect();
            for (i, (va, a)) in all.iter().enumerate() {
                for (vb, b) in &all[i + 1..] {
                    let overlap =
                        a.from < b.to.unwrap_or(i64::MAX) && b.from < a.to.unwrap_or(i64::MAX);
                    assert!(
                        !(a.ip == b.ip && overlap),
                        "{} held by VMs {va} and {vb} at once",
                        a.ip
                    );
                    assert_ne!(a.mac, b.mac, "MACs are per port");
                }
            }
        }
    }

    #[test]
    fn floating_ips_move_and_never_lead_to_two_vms() {
        let s = site();
        assert!(!s.floating.is_empty());
        assert!(
            s.floating.iter().any(|f| f.assoc.len() == 2),
            "a floating IP moves to a second VM"
        );
        for f in &s.floating {
            for w in f.assoc.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                assert_ne!(a.0, b.0, "moves to another VM");
                assert!(a.2.is_some_and(|e| e <= b.1), "one association at a time");
            }
        }
        // A VM's one port carries one floating IP at a time.
        let all: Vec<(usize, i64, i64)> = s
            .floating
            .iter()
            .flat_map(|f| f.assoc.iter())
            .map(|&(v, from, to)| (v, from, to.unwrap_or(i64::MAX)))
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(a.0 != b.0 || a.2 <= b.1 || b.2 <= a.1, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn every_complication_is_present() {
        let s = site();
        assert!(reuse_pair(&s.vms).is_some(), "an address is reused");
        let (a, b) = s.specials.dup_host;
        assert_ne!(a, b, "a duplicate hostname");
        assert_eq!(s.vms[a].hostname, s.vms[b].hostname);
        assert!(!s.specials.migrated.is_empty());
        assert!(s.specials.attach.is_some());
        assert!(
            s.vms.iter().filter(|v| !v.glexec.is_empty()).count() >= 2,
            "glexec payloads"
        );
        assert!(s.vms.iter().any(|v| v.v6.is_some()), "a dual-stack network");
        let snat = s.snat.as_ref().unwrap();
        assert!(
            snat.conns.iter().any(|c| snat
                .conns
                .iter()
                .any(|o| o.vm != c.vm && o.pport == c.pport)),
            "a public port reused by another VM"
        );
        assert!(s.vms.iter().any(|v| v.deleted.is_some()));
        assert!(
            s.vms
                .iter()
                .all(|v| !v.holdings.iter().any(|h| h.ip == s.specials.never_assigned))
        );
    }

    #[test]
    fn ground_truth_comes_from_the_model() {
        let s = site();
        let qs = questions(&s, &mut Rng::new(3));
        assert!(qs.len() >= 30, "{}", qs.len());
        let gw = &s.snat.as_ref().unwrap().gateway;
        let nat = qs.iter().filter(|q| q.ip.as_ref() == Some(gw)).count();
        assert!(nat >= 5, "SNAT questions: {nat}");
        assert!(
            qs.iter()
                .any(|q| q.ip.as_ref().is_some_and(|ip| ip.contains(':'))),
            "questions on IPv6 addresses"
        );
        for q in &qs {
            let t = q.at.parse::<Timestamp>().unwrap().as_second();
            if q.ip.as_ref() == Some(gw) {
                // Recomputed from the connections: the VMs whose connection through the
                // gateway (on the port, when asked) was open at `t`.
                let mut want: Vec<&str> = s
                    .snat
                    .as_ref()
                    .unwrap()
                    .conns
                    .iter()
                    .filter(|c| {
                        c.from_us <= t * 1_000_000
                            && t * 1_000_000 < c.to_us
                            && q.port.is_none_or(|p| p == c.pport)
                    })
                    .map(|c| s.vms[c.vm].uuid.as_str())
                    .collect();
                want.sort_unstable();
                want.dedup();
                let got: Vec<&str> = q
                    .expect
                    .matches
                    .iter()
                    .map(|m| m.vm_uuid.as_str())
                    .collect();
                assert_eq!(got, want, "{q:?}");
                if q.why.as_deref().unwrap_or("").contains("without a port") {
                    assert!(q.expect.ambiguous, "two VMs share the gateway: {q:?}");
                }
                continue;
            }
            let (kind, value) = match (&q.ip, &q.host, &q.mac) {
                (Some(ip), _, _) => (Kind::Ip, ip),
                (_, Some(h), _) => (Kind::Host, h),
                (_, _, Some(m)) => (Kind::Mac, m),
                _ => panic!("no address"),
            };
            // Recomputed independently from the model: every VM alive and holding it.
            let holders: Vec<&Vm> = s
                .vms
                .iter()
                .enumerate()
                .filter(|(v, vm)| match kind {
                    Kind::Ip => {
                        vm.holdings.iter().any(|h| &h.ip == value && h.covers(t))
                            || (vm.v6.as_ref() == Some(value) && vm.alive_at(t))
                            || s.floating.iter().any(|f| {
                                &f.ip == value
                                    && vm.alive_at(t)
                                    && f.assoc.iter().any(|&(av, from, to)| {
                                        av == *v && from <= t && to.is_none_or(|to| t < to)
                                    })
                            })
                    }
                    Kind::Mac => vm.holdings.iter().any(|h| &h.mac == value && h.covers(t)),
                    Kind::Host => &vm.hostname == value && vm.alive_at(t),
                })
                .map(|(_, vm)| vm)
                .collect();
            assert_eq!(q.expect.matches.len(), holders.len(), "{q:?}");
            assert_eq!(q.expect.ambiguous, holders.len() > 1);
            for vm in holders {
                assert!(vm.alive_at(t), "a held address implies a live VM");
                let m = q
                    .expect
                    .matches
                    .iter()
                    .find(|m| m.vm_uuid == vm.uuid)
                    .unwrap();
                assert_eq!(
                    m.hypervisor.as_deref(),
                    Some(s.hypervisors[vm.hypervisor_at(t)].as_str())
                );
            }
            let why = q.why.as_deref().unwrap_or("");
            if why.contains("never assigned")
                || why.contains("gap")
                || why.contains("half-open")
                || why.contains("before the VM")
                || why.contains("after the VM")
            {
                assert!(q.expect.matches.is_empty(), "{q:?}");
            }
            if why.contains("two VMs hold at once") {
                assert_eq!(q.expect.matches.len(), 2);
                assert!(q.expect.ambiguous);
            }
            if why.contains("exactly the live migration") {
                let vm = s
                    .vms
                    .iter()
                    .find(|v| v.uuid == q.expect.matches[0].vm_uuid)
                    .unwrap();
                assert_eq!(vm.placements[1].0, t);
                assert_eq!(
                    q.expect.matches[0].hypervisor.as_deref(),
                    Some(s.hypervisors[vm.placements[1].1].as_str())
                );
            }
            if why.contains("only the VO") {
                assert!(
                    q.expect.matches[0]
                        .payload_dns
                        .iter()
                        .any(|d| d.contains("Mallory")),
                    "{q:?}"
                );
            }
            if why.contains("glexec") {
                let vm = s
                    .vms
                    .iter()
                    .find(|v| v.uuid == q.expect.matches[0].vm_uuid)
                    .unwrap();
                let g = &vm.glexec[0];
                let named = q.expect.matches[0].payload_dns.contains(&g.dn);
                assert_eq!(named, !why.contains("terminated"), "{q:?}");
                assert!(
                    vm.jobs.iter().all(|j| j.dn != g.dn),
                    "the glexec payload is someone other than the pilot's owner"
                );
            }
            if why.contains("C2") {
                assert_eq!(q.expect.matches[0].vm_uuid, s.vms[s.specials.c2.0].uuid);
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let p = Params {
            seed: 11,
            vms: 12,
            hours: 4,
            density: 1,
        };
        generate_for(p, Cloud::Openstack, a.path()).unwrap();
        generate_for(p, Cloud::Openstack, b.path()).unwrap();
        for f in [
            "notifications.jsonl",
            "condor_history.json",
            "vm-syslog.log",
            "hypervisor-netfilter.log",
            "neutron.jsonl",
            "conntrack.log",
            "answers.json",
        ] {
            assert_eq!(
                fs::read(a.path().join(f)).unwrap(),
                fs::read(b.path().join(f)).unwrap(),
                "{f}"
            );
        }
    }
}
