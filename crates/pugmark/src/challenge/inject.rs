//! Problems planted in the generated day for `pugmark check` (issue 5, "Targets": "a generated
//! challenge with forged hostnames, silenced VMs, skewed and tampered clocks and unknown hosts:
//! every injected problem found, and no finding on the clean controls").
//!
//! [`Injected::choose`] picks, from the site model alone, the VMs that misbehave and how:
//! - an **impostor** that, half-way through its life, starts calling itself by another live
//!   VM's hostname in its own syslog (its central logger still sees its real address);
//! - a **silenced** VM whose syslog stops a third of the way through its life while the
//!   hypervisor keeps logging its connections until it is deleted;
//! - a **silenced twin** (issue 17): of the two VMs holding one hostname at once, the one
//!   deleted first stops logging 15 minutes after the second appears, while its twin goes on
//!   logging under the same name and the hypervisor goes on seeing its traffic — the twin's
//!   lines must not keep it "alive";
//! - two **skewed** clocks (21 minutes fast, 40 minutes slow, all day);
//! - a **tampered** clock, set back two hours half-way through the VM's life;
//! - an **unknown host**: a hypervisor logs SYNs from a site address no VM held;
//! - an **orphan payload**: the VO's history has a job on an address no VM held;
//! - a **spoofed source** (issue 12): out of one VM's tap device come SYNs whose source is
//!   another live VM's address (the hypervisor's log; the tap says who sent them).
//!
//! Besides these, the base day already holds one kind of wrong hostname: about one VM in ten
//! claims its image's default name (`centos-stream-9`) in its syslog. That is a real finding
//! too, so [`Injected::truth`] lists it with the planted ones.
//!
//! VM syslog reaches pugmark as a central logger's archive (`RECEIVED SENDER-IP <PRI>…`, the
//! rsyslog template in docs/SITES.md): the receive time and the sender address are the
//! logger's, which is what lets `check` hold a VM's claims against its lease and clock.

use serde::{Deserialize, Serialize};

use super::generate::{Rng, Site, rfc3339};

/// A site address in the first pool /24 that the pool never hands out (it uses .10–.209).
pub const UNKNOWN_HOST: &str = "10.42.0.250";
/// Where the orphan payload claims to have run.
pub const ORPHAN_ADDR: &str = "10.42.0.251";
/// The orphan payload's cluster id: far above what the schedd hands out in a day.
pub const ORPHAN_CLUSTER: u64 = 900_000;
/// The skews of the two skewed clocks, seconds (reported minus true).
const SKEWS: [i64; 2] = [21 * 60, -40 * 60];
/// How far the tampered clock is set back.
const TAMPER: i64 = -2 * 3600;

/// One problem `check` must report: the kind, and entities the finding must name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedFinding {
    pub kind: String,
    pub entities: Vec<String>,
    /// What was planted, for humans.
    pub why: String,
}

/// `findings.json`: the problems `check` must find, and the entities no finding may name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckTruth {
    pub expect: Vec<ExpectedFinding>,
    /// VM UUIDs, addresses and hostnames with nothing wrong: the clean controls.
    pub controls: Vec<String>,
}

/// The findings file's name inside a challenge directory.
pub const FINDINGS: &str = "findings.json";

#[derive(Debug, Clone, Default)]
pub struct Injected {
    /// (VM, the VM whose hostname it claims, from when).
    pub impostor: Option<(usize, usize, i64)>,
    /// (VM, when its syslog stops).
    pub silenced: Option<(usize, i64)>,
    /// (twin VM, when its syslog stops): one of the two VMs sharing a hostname.
    pub twin_silenced: Option<(usize, i64)>,
    /// (VM, seconds its clock is off), all day.
    pub skewed: Vec<(usize, i64)>,
    /// (VM, when its clock is set, by how many seconds).
    pub tampered: Option<(usize, i64, i64)>,
    /// When the unknown host's connections start.
    pub unknown_at: i64,
    /// When the orphan payload starts.
    pub orphan_at: i64,
    /// (VM, the VM whose address it sends with, when): two SYNs, two minutes apart.
    pub spoofer: Option<(usize, usize, i64)>,
}

/// How a syslog sender is named in `check`'s findings for an archive line.
pub fn sender(ip: &str) -> String {
    format!("{ip}@archive")
}

impl Injected {
    /// Choose the misbehaving VMs. Deterministic in the site (its own generator stream, so the
    /// who-questions and their answers do not change).
    pub fn choose(site: &Site) -> Injected {
        let mut rng = Rng::new(site.params.seed ^ 0x1_4EC7_ED00);
        let s = &site.specials;
        let special = |v: usize| {
            v == s.dup_host.0
                || v == s.dup_host.1
                || s.attach.is_some_and(|a| a.0 == v)
                || s.c2.0 == v
                || s.vo_only.0 == v
                || s.migrated.contains(&v)
        };
        let life = |v: usize| site.vms[v].deleted.unwrap_or(site.end) - site.vms[v].created;
        let mut candidates: Vec<usize> = (0..site.vms.len())
            .filter(|&v| {
                !special(v) && site.vms[v].claimed == site.vms[v].hostname && life(v) >= 3 * 3600
            })
            .collect();
        // Shuffle (Fisher–Yates) so the problem VMs are not always the oldest.
        for i in (1..candidates.len()).rev() {
            let j = rng.index(i + 1);
            candidates.swap(i, j);
        }
        let mut used: Vec<usize> = Vec::new();
        let take = |pred: &dyn Fn(usize) -> bool, used: &mut Vec<usize>| {
            let v = candidates
                .iter()
                .copied()
                .find(|v| !used.contains(v) && pred(*v))?;
            used.push(v);
            Some(v)
        };
        let mut inj = Injected::default();
        for skew in SKEWS {
            if let Some(v) = take(&|_| true, &mut used) {
                inj.skewed.push((v, skew));
            }
        }
        if let Some(v) = take(&|_| true, &mut used) {
            inj.tampered = Some((v, site.vms[v].created + life(v) / 2, TAMPER));
        }
        if let Some(v) = take(&|_| true, &mut used) {
            inj.silenced = Some((v, site.vms[v].created + life(v) / 3));
        }
        if let Some(v) = take(&|_| true, &mut used) {
            let from = site.vms[v].created + life(v) / 2;
            // The victim: a VM alive then under another name, itself doing nothing wrong.
            let innocent = |o: usize| {
                !used.contains(&o)
                    && site.vms[o].alive_at(from)
                    && site.vms[o].hostname != site.vms[v].hostname
            };
            let victim = (0..site.vms.len())
                .find(|&o| innocent(o) && !special(o))
                .or_else(|| (0..site.vms.len()).find(|&o| innocent(o)));
            if let Some(o) = victim {
                inj.impostor = Some((v, o, from));
            }
        }
        if let Some(v) = take(&|_| true, &mut used) {
            let at = site.vms[v].created + life(v) / 4 + 101;
            // The victim: another VM holding its primary address then, doing nothing wrong.
            let victim = (0..site.vms.len()).find(|&o| {
                o != v
                    && !used.contains(&o)
                    && !special(o)
                    && site.vms[o].holdings[0].covers(at)
                    && site.vms[o].holdings[0].covers(at + 120)
            });
            if let Some(o) = victim {
                used.push(o);
                inj.spoofer = Some((v, o, at));
            }
        }
        let (a, b) = s.dup_host;
        if a != b {
            let until = |v: usize| site.vms[v].deleted.unwrap_or(site.end);
            let v = if until(b) < until(a) { b } else { a };
            inj.twin_silenced = Some((v, site.vms[b].created + 900));
        }
        let dur = site.end - site.start;
        inj.unknown_at = site.start + dur / 2 + 333;
        inj.orphan_at = site.start + dur / 3 + 77;
        inj
    }

    /// How far VM `v`'s clock is off at true time `t`, seconds.
    pub fn clock_offset(&self, v: usize, t: i64) -> i64 {
        let skew: i64 = self
            .skewed
            .iter()
            .filter(|(s, _)| *s == v)
            .map(|(_, d)| d)
            .sum();
        let tamper = match self.tampered {
            Some((s, at, d)) if s == v && t >= at => d,
            _ => 0,
        };
        skew + tamper
    }

    /// The hostname VM `v` writes into its syslog at `t`.
    pub fn claimed<'a>(&self, site: &'a Site, v: usize, t: i64) -> &'a str {
        match self.impostor {
            Some((s, victim, from)) if s == v && t >= from => &site.vms[victim].hostname,
            _ => &site.vms[v].claimed,
        }
    }

    /// Whether VM `v`'s syslog is silenced at `t`.
    pub fn silent(&self, v: usize, t: i64) -> bool {
        [self.silenced, self.twin_silenced]
            .into_iter()
            .flatten()
            .any(|(s, at)| s == v && t >= at)
    }

    /// Every VM with a problem, planted or from the base day.
    fn problem_vms(&self, site: &Site) -> Vec<usize> {
        let mut v: Vec<usize> = self.skewed.iter().map(|s| s.0).collect();
        v.extend(self.tampered.map(|t| t.0));
        v.extend(self.silenced.map(|s| s.0));
        v.extend(self.twin_silenced.map(|s| s.0));
        v.extend(self.impostor.map(|i| i.0));
        // The spoofer and the VM whose address it used: both named by the finding.
        v.extend(self.spoofer.map(|s| s.0));
        v.extend(self.spoofer.map(|s| s.1));
        v.extend((0..site.vms.len()).filter(|&i| site.vms[i].claimed != site.vms[i].hostname));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The ground truth for `check`, from the model alone.
    pub fn truth(&self, site: &Site) -> CheckTruth {
        let mut expect = Vec::new();
        let mut add = |kind: &str, entities: Vec<String>, why: String| {
            expect.push(ExpectedFinding {
                kind: kind.into(),
                entities,
                why,
            });
        };
        let ip = |v: usize| site.vms[v].holdings[0].ip.clone();
        if let Some((v, victim, from)) = self.impostor {
            let name = site.vms[victim].hostname.clone();
            add(
                "forged_hostname",
                vec![ip(v), name.clone()],
                format!(
                    "VM {} ({}) calls itself {name} from {}",
                    site.vms[v].uuid,
                    site.vms[v].hostname,
                    rfc3339(from)
                ),
            );
        }
        for (v, vm) in site.vms.iter().enumerate() {
            if vm.claimed != vm.hostname {
                add(
                    "forged_hostname",
                    vec![ip(v), vm.claimed.clone()],
                    format!(
                        "VM {} ({}) calls itself by its image's default name",
                        vm.uuid, vm.hostname
                    ),
                );
            }
        }
        if let Some((v, at)) = self.silenced {
            add(
                "silent_vm",
                vec![site.vms[v].uuid.clone()],
                format!("VM {}'s syslog stops at {}", site.vms[v].uuid, rfc3339(at)),
            );
        }
        if let Some((v, at)) = self.twin_silenced {
            add(
                "silent_vm",
                vec![site.vms[v].uuid.clone()],
                format!(
                    "VM {}'s syslog stops at {} while its same-named twin goes on logging",
                    site.vms[v].uuid,
                    rfc3339(at)
                ),
            );
        }
        // Clock findings name the sender (its address) and the VM that held it.
        let who = |v: usize| vec![sender(&ip(v)), site.vms[v].uuid.clone()];
        for &(v, skew) in &self.skewed {
            add(
                "clock_skew",
                who(v),
                format!("VM {}'s clock is {skew} s off", site.vms[v].uuid),
            );
            if skew > 0 {
                add(
                    "clock_future",
                    who(v),
                    format!("VM {}'s clock runs ahead", site.vms[v].uuid),
                );
            }
        }
        if let Some((v, at, d)) = self.tampered {
            for kind in ["clock_jump", "clock_backwards", "clock_skew"] {
                add(
                    kind,
                    who(v),
                    format!(
                        "VM {}'s clock set {d} s at {}",
                        site.vms[v].uuid,
                        rfc3339(at)
                    ),
                );
            }
        }
        add(
            "unknown_host",
            vec![UNKNOWN_HOST.into()],
            format!("a hypervisor sees connections from {UNKNOWN_HOST}, never leased"),
        );
        if let Some((v, o, at)) = self.spoofer {
            add(
                "spoofed_source",
                vec![site.vms[v].uuid.clone(), ip(o), site.vms[o].uuid.clone()],
                format!(
                    "VM {} sends with VM {}'s address {} from {}",
                    site.vms[v].uuid,
                    site.vms[o].uuid,
                    ip(o),
                    rfc3339(at)
                ),
            );
        }
        add(
            "orphan_payload",
            vec![ORPHAN_ADDR.into()],
            format!("job {ORPHAN_CLUSTER}.0 ran on {ORPHAN_ADDR}, never leased"),
        );
        expect.sort();
        expect.dedup_by(|a, b| a.kind == b.kind && a.entities == b.entities);

        // Controls: every VM with nothing wrong, and the addresses and hostnames only such VMs
        // held (an impostor's victim's name appears in the impostor's finding: not a control).
        let bad = self.problem_vms(site);
        let victim_name = self.impostor.map(|(_, o, _)| site.vms[o].hostname.clone());
        let clean = |v: usize| !bad.contains(&v);
        let mut controls: Vec<String> = Vec::new();
        for (v, vm) in site.vms.iter().enumerate() {
            if !clean(v) {
                continue;
            }
            controls.push(vm.uuid.clone());
            for h in &vm.holdings {
                let only_clean = site
                    .vms
                    .iter()
                    .enumerate()
                    .all(|(o, ov)| clean(o) || ov.holdings.iter().all(|oh| oh.ip != h.ip));
                if only_clean {
                    controls.push(h.ip.clone());
                    controls.push(sender(&h.ip));
                }
            }
            let name_clean = site.vms.iter().enumerate().all(|(o, ov)| {
                clean(o) || (ov.hostname != vm.hostname && ov.claimed != vm.hostname)
            });
            if name_clean && victim_name.as_ref() != Some(&vm.hostname) {
                controls.push(vm.hostname.clone());
            }
        }
        controls.sort();
        controls.dedup();
        CheckTruth { expect, controls }
    }
}

#[cfg(test)]
mod tests {
    use super::super::generate::{Params, build};
    use super::*;

    #[test]
    fn every_kind_of_problem_is_planted_and_controls_are_clean() {
        for (seed, vms, hours) in [(7, 30, 6), (1, 40, 8), (3, 200, 24)] {
            let site = build(Params {
                seed,
                vms,
                hours,
                density: 1,
            });
            let inj = Injected::choose(&site);
            assert_eq!(inj.skewed.len(), 2, "seed {seed}");
            assert!(inj.tampered.is_some() && inj.silenced.is_some() && inj.impostor.is_some());
            // Issue 17: one of the same-named twins goes silent while the other logs on.
            let (a, b) = site.specials.dup_host;
            let (twin, at) = inj.twin_silenced.expect("a silenced twin");
            assert!(a != b && (twin == a || twin == b), "seed {seed}");
            let other = if twin == a { b } else { a };
            let gone = |v: usize| site.vms[v].deleted.unwrap_or(site.end);
            assert!(
                gone(twin) >= at + 3600,
                "seed {seed}: the hypervisor sees it an hour on"
            );
            assert!(
                gone(other) >= gone(twin),
                "seed {seed}: the twin logs on meanwhile"
            );
            assert_eq!(site.vms[a].claimed, site.vms[b].claimed);
            let truth = inj.truth(&site);
            let kinds: std::collections::BTreeSet<&str> =
                truth.expect.iter().map(|e| e.kind.as_str()).collect();
            for k in [
                "forged_hostname",
                "silent_vm",
                "clock_skew",
                "clock_future",
                "clock_backwards",
                "clock_jump",
                "unknown_host",
                "orphan_payload",
            ] {
                assert!(kinds.contains(k), "seed {seed}: no {k}");
            }
            // The planted problems are on distinct VMs (so each finding has one cause), none of
            // them a control.
            let mut planted: Vec<usize> = inj.skewed.iter().map(|s| s.0).collect();
            planted.extend(inj.tampered.map(|t| t.0));
            planted.extend(inj.silenced.map(|s| s.0));
            planted.extend(inj.impostor.map(|i| i.0));
            planted.extend(inj.twin_silenced.map(|i| i.0));
            let n = planted.len();
            planted.sort_unstable();
            planted.dedup();
            assert_eq!(
                planted.len(),
                n,
                "seed {seed}: a VM has two planted problems"
            );
            for v in &planted {
                assert!(!truth.controls.contains(&site.vms[*v].uuid));
            }
            assert!(truth.controls.len() >= vms / 2, "seed {seed}");
            for e in &truth.expect {
                for ent in &e.entities {
                    assert!(!truth.controls.contains(ent), "{ent} is both");
                }
            }
            // The silenced VM lives on well past its silence (check's default is 30 min).
            let (v, at) = inj.silenced.unwrap_or_default();
            assert!(site.vms[v].deleted.unwrap_or(site.end) - at >= 3600);
            // The victim is alive and someone else when the impostor takes its name.
            let (imp, victim, from) = inj.impostor.unwrap_or_default();
            assert!(site.vms[victim].alive_at(from) && imp != victim);
        }
    }
}
