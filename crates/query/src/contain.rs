//! Containment, answered (issue 12): what to do about a match with what the evidence
//! supports — suspend just that VM (and where it runs), tell the project's owner, ban just the
//! payload's identity at its VO (a DN, or a token's issuer + subject), disable the accounts
//! (Keystone, IAM) — each with the ledger records that justify it, and `unknown` where no
//! source says. The point of knowing *who* is to stop that user, not the whole VO.
//!
//! Also here, because containment needs them and `who` shows them: the payloads recorded
//! from inside a VM (glexec) tied to it by the one attribution rule ([`crate::attrib`]), the
//! CE's audit records of a job, and the person behind a payload named through the SCIM
//! directory.
//!
//! The JSON shape of [`ContainJson`] (`matches[].contain` in `who --json` and `report
//! --format json`) is a contract (README "Containment"): extend, never rename.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use views::facts::{DirEntry, FactStore, JobObs, VmObs};

use crate::attrib::Site;
use crate::who::{PayloadJson, person_json};

/// `matches[].contain`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainJson {
    pub vm: ContainVm,
    pub project: ContainProject,
    /// One per payload running at the moment: whose identity to ban, at which VO.
    pub payloads: Vec<ContainPayload>,
    /// Accounts to disable: the VM owner's (Keystone), the payload person's (IAM), and the
    /// Keystone account the IAM person federates to.
    pub accounts: Vec<ContainAccount>,
    /// What no source says (`vm.hypervisor`, `project`, `project.owner_email`,
    /// `payloads`, `payload JOB.identity`, `payload JOB.vo`, `payload JOB.iam_account`).
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainVm {
    /// Always `suspend` (keeps memory and disk for forensics; `delete` destroys evidence).
    pub action: String,
    pub uuid: String,
    /// Where to suspend it: the compute host as of the moment; null when no source says.
    pub hypervisor: Option<String>,
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainProject {
    /// `notify`: the project's owner is told (the site may also suspend the project).
    pub action: String,
    pub id: Option<String>,
    pub name: Option<String>,
    /// The VM's owner (the Keystone user who created it) and their e-mail.
    pub owner_user_id: Option<String>,
    pub owner_name: Option<String>,
    pub owner_email: Option<String>,
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainPayload {
    /// `ban` when an identity is known, else `unknown`.
    pub action: String,
    pub job_id: String,
    /// `token` (ban issuer + subject), `dn` (ban the certificate subject), `unknown`.
    pub by: String,
    pub dn: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// The VO at which to ban it (its VO's security contact acts on it).
    pub vo: Option<String>,
    pub seqs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainAccount {
    /// `disable`.
    pub action: String,
    /// `keystone` or `iam`.
    pub system: String,
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// `vm_owner`, `payload_person`, `federated` (the payload person's Keystone account).
    pub why: String,
    pub seqs: Vec<u64>,
}

/// What `who` knows of the VM at the moment, with the records that say it.
pub struct VmFacts<'a> {
    pub uuid: &'a str,
    pub hypervisor: Option<&'a str>,
    pub hypervisor_seq: Option<u64>,
    pub lease_seq: u64,
    pub user_id: Option<&'a str>,
    pub user_seq: Option<u64>,
    pub user: Option<&'a DirEntry>,
    pub project_id: Option<&'a str>,
    pub project_seq: Option<u64>,
    pub project: Option<&'a DirEntry>,
}

fn sorted(seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let s: BTreeSet<u64> = seqs.into_iter().filter(|s| *s > 0).collect();
    s.into_iter().collect()
}

/// The containment answer for one match.
pub fn contain(
    store: &FactStore,
    vm: &VmFacts<'_>,
    payloads: &[PayloadJson],
) -> anyhow::Result<ContainJson> {
    let mut unknown = Vec::new();
    if vm.hypervisor.is_none() {
        unknown.push("vm.hypervisor".to_string());
    }
    let vm_json = ContainVm {
        action: "suspend".into(),
        uuid: vm.uuid.to_string(),
        hypervisor: vm.hypervisor.map(str::to_string),
        seqs: sorted(vm.hypervisor_seq.into_iter().chain([vm.lease_seq])),
    };
    let email = match vm.user_id {
        Some(id) => store.user_email(id)?,
        None => None,
    };
    if vm.project_id.is_none() {
        unknown.push("project".into());
    }
    if vm.user_id.is_none() {
        unknown.push("project.owner".into());
    } else if email.is_none() {
        unknown.push("project.owner_email".into());
    }
    let project = ContainProject {
        action: "notify".into(),
        id: vm.project_id.map(str::to_string),
        name: vm.project.and_then(|p| p.name.clone()),
        owner_user_id: vm.user_id.map(str::to_string),
        owner_name: vm.user.and_then(|u| u.name.clone()),
        owner_email: email.as_ref().map(|(e, _)| e.clone()),
        seqs: sorted(
            vm.project_seq
                .into_iter()
                .chain(vm.project.map(|p| p.seq))
                .chain(vm.user_seq)
                .chain(email.as_ref().map(|(_, s)| *s)),
        ),
    };
    let mut accounts: Vec<ContainAccount> = Vec::new();
    let mut add = |a: ContainAccount| {
        if let Some(x) = accounts
            .iter_mut()
            .find(|x| x.system == a.system && x.id == a.id)
        {
            x.seqs = sorted(x.seqs.iter().copied().chain(a.seqs));
        } else {
            accounts.push(a);
        }
    };
    if let Some(id) = vm.user_id {
        add(ContainAccount {
            action: "disable".into(),
            system: "keystone".into(),
            id: id.to_string(),
            name: vm.user.and_then(|u| u.name.clone()),
            email: email.as_ref().map(|(e, _)| e.clone()),
            why: "vm_owner".into(),
            seqs: sorted(
                vm.user_seq
                    .into_iter()
                    .chain(vm.user.map(|u| u.seq))
                    .chain(email.as_ref().map(|(_, s)| *s)),
            ),
        });
    }
    if payloads.is_empty() {
        unknown.push("payloads".into());
    }
    let mut out_payloads = Vec::new();
    for p in payloads {
        let by = if p.issuer.is_some() && p.subject.is_some() {
            "token"
        } else if p.dn.is_some() {
            "dn"
        } else {
            unknown.push(format!("payload {}.identity", p.job_id));
            "unknown"
        };
        if p.vo.is_none() {
            unknown.push(format!("payload {}.vo", p.job_id));
        }
        out_payloads.push(ContainPayload {
            action: if by == "unknown" { "unknown" } else { "ban" }.into(),
            job_id: p.job_id.clone(),
            by: by.into(),
            dn: p.dn.clone(),
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            vo: p.vo.clone(),
            seqs: p.seqs.clone(),
        });
        match &p.person {
            Some(person) => {
                let seqs = sorted(person.seqs.iter().chain(&p.seqs).copied());
                add(ContainAccount {
                    action: "disable".into(),
                    system: "iam".into(),
                    id: person.scim_id.clone(),
                    name: person.user_name.clone(),
                    email: person.email.clone(),
                    why: "payload_person".into(),
                    seqs: seqs.clone(),
                });
                for (kid, kseq) in store.keystone_for_scim(&person.scim_id)? {
                    let entry = store.user(&kid)?;
                    add(ContainAccount {
                        action: "disable".into(),
                        system: "keystone".into(),
                        id: kid.clone(),
                        name: entry.as_ref().and_then(|e| e.name.clone()),
                        email: entry.as_ref().and_then(|e| e.email.clone()),
                        why: "federated".into(),
                        seqs: sorted(seqs.iter().copied().chain([kseq])),
                    });
                }
            }
            None if by != "unknown" => unknown.push(format!("payload {}.iam_account", p.job_id)),
            None => {}
        }
    }
    Ok(ContainJson {
        vm: vm_json,
        project,
        payloads: out_payloads,
        accounts,
        unknown,
    })
}

/// Name the payload's person through the SCIM directory: the token (issuer + subject) when
/// there is one, else the DN. Exactly one entry → `person`; several → `person_candidates`.
pub fn name_person(store: &FactStore, p: &mut PayloadJson) -> anyhow::Result<()> {
    let mut found = match (&p.issuer, &p.subject) {
        (Some(i), Some(s)) => store.person_by_token(i, s)?,
        _ => Vec::new(),
    };
    if found.is_empty()
        && let Some(dn) = &p.dn
    {
        found = store.person_by_dn(dn)?;
    }
    match found.len() {
        0 => {}
        1 => {
            let (e, seq) = &found[0];
            p.person = Some(person_json(e, sorted([e.seq, *seq])));
        }
        _ => p.person_candidates = found.iter().map(|(e, _)| e.id.clone()).collect(),
    }
    Ok(())
}

/// Payload records from inside a VM (glexec; any source other than job ads whose record a VM
/// sent) that the one attribution rule gives to `uuid`: the candidates are the records sent
/// from an address this VM ever held, claiming a hostname it held, or claiming its UUID; the
/// rule decides with every VM that held those addresses and names ([`Site::attribute_vm_record`]).
pub fn attributed_payloads(
    store: &FactStore,
    uuid: &str,
    obs: &[VmObs],
    _t: i64,
) -> anyhow::Result<Vec<JobObs>> {
    let ips: BTreeSet<&String> = obs.iter().flat_map(|o| &o.ips).collect();
    let hosts: BTreeSet<&String> = obs.iter().filter_map(|o| o.hostname.as_ref()).collect();
    let mut cands: BTreeMap<u64, JobObs> = BTreeMap::new();
    for ip in ips {
        for j in store.payloads_from(Some(ip), None, None)? {
            cands.insert(j.seq, j);
        }
    }
    for h in hosts {
        for j in store.payloads_from(None, Some(h), None)? {
            cands.insert(j.seq, j);
        }
    }
    for j in store.payloads_from(None, None, Some(uuid))? {
        cands.insert(j.seq, j);
    }
    cands.retain(|_, j| j.ext.observer.as_deref() == Some("vm"));
    if cands.is_empty() {
        return Ok(Vec::new());
    }
    let mut vms: BTreeSet<String> = BTreeSet::from([uuid.to_string()]);
    for j in cands.values() {
        if let Some(s) = &j.ext.sender_ip {
            vms.extend(store.vms_with("ip", s)?);
        }
        if let Some(h) = &j.ext.host {
            vms.extend(store.vms_with_host_label(h)?);
        }
        if let Some(c) = &j.ext.claimed_uuid {
            vms.insert(c.clone());
        }
    }
    let mut site = Site::default();
    for v in vms {
        let o = store.vm_observations(&v)?;
        site.insert(v, o);
    }
    Ok(cands
        .into_values()
        .filter(|j| {
            let sender = j
                .ext
                .sender_ip
                .as_deref()
                .and_then(|s| s.parse::<IpAddr>().ok());
            let t = j.ext.placed_ns.unwrap_or(j.time_ns);
            site.attribute_vm_record(
                sender,
                j.ext.claimed_uuid.as_deref(),
                j.ext.host.as_deref(),
                t,
            )
            .is(uuid)
        })
        .collect())
}

/// The HTCondor-CE audit records (`ce-audit`) of the jobs in `jobs` that have a global id
/// (`schedd#cluster.proc#qdate`), found by `cluster.proc`; `who` joins them like userlog
/// events (only when exactly one ad has those numbers).
pub fn audit_rows_of(store: &FactStore, jobs: &[JobObs]) -> anyhow::Result<Vec<JobObs>> {
    let have: BTreeSet<u64> = jobs.iter().map(|j| j.seq).collect();
    let shorts: BTreeSet<String> = jobs
        .iter()
        .filter_map(|j| j.job_id.split('#').nth(1).map(str::to_string))
        .collect();
    let ids: Vec<String> = shorts.into_iter().collect();
    Ok(store
        .jobs_from_source_with_ids("ce-audit", &ids)?
        .into_iter()
        .filter(|j| !have.contains(&j.seq))
        .collect())
}

fn or_unknown(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("unknown")
}

fn cite(seqs: &[u64]) -> String {
    if seqs.is_empty() {
        return "no record".into();
    }
    let s: Vec<String> = seqs.iter().map(|s| format!("#{s}")).collect();
    s.join(" ")
}

/// A payload's identity for text: token, VO, person (`who` and `report` print the same).
pub fn payload_identity_text(p: &PayloadJson) -> String {
    let mut s = format!("[{}]", p.source);
    if let (Some(i), Some(sub)) = (&p.issuer, &p.subject) {
        s.push_str(&format!(" token {sub} of {i}"));
    } else if let Some(sub) = &p.subject {
        s.push_str(&format!(" token {sub} of an unknown issuer"));
    }
    s.push_str(&format!(", VO {}", or_unknown(&p.vo)));
    match &p.person {
        Some(person) => s.push_str(&format!(
            ", person {} ({}) <{}> in the SCIM directory",
            or_unknown(&person.name),
            or_unknown(&person.user_name),
            or_unknown(&person.email)
        )),
        None if !p.person_candidates.is_empty() => s.push_str(&format!(
            ", person AMBIGUOUS: {} directory entries match ({})",
            p.person_candidates.len(),
            p.person_candidates.join(", ")
        )),
        None => s.push_str(", person unknown to the directory"),
    }
    s.push_str(&format!(" ({})", cite(&p.seqs)));
    s
}

/// The containment answer as text lines (`who` and `report` print the same; the caller
/// escapes control characters).
pub fn text_lines(c: &ContainJson) -> Vec<String> {
    let mut out = vec![format!(
        "suspend VM {} on hypervisor {} ({})",
        c.vm.uuid,
        or_unknown(&c.vm.hypervisor),
        cite(&c.vm.seqs)
    )];
    out.push(format!(
        "notify project {} ({}): owner {} ({}) <{}> ({})",
        or_unknown(&c.project.id),
        or_unknown(&c.project.name),
        or_unknown(&c.project.owner_user_id),
        or_unknown(&c.project.owner_name),
        or_unknown(&c.project.owner_email),
        cite(&c.project.seqs)
    ));
    for p in &c.payloads {
        let who = match p.by.as_str() {
            "token" => format!(
                "token issuer {} subject {}",
                or_unknown(&p.issuer),
                or_unknown(&p.subject)
            ),
            "dn" => format!("DN {}", or_unknown(&p.dn)),
            _ => "unknown identity".to_string(),
        };
        out.push(format!(
            "{} {who} at VO {} (payload {}) ({})",
            if p.action == "ban" {
                "ban"
            } else {
                "cannot ban:"
            },
            or_unknown(&p.vo),
            p.job_id,
            cite(&p.seqs)
        ));
    }
    for a in &c.accounts {
        out.push(format!(
            "disable {} account {} ({}) <{}> [{}] ({})",
            a.system,
            a.id,
            or_unknown(&a.name),
            or_unknown(&a.email),
            a.why,
            cite(&a.seqs)
        ));
    }
    if !c.unknown.is_empty() {
        out.push(format!(
            "unknown (no source says): {}",
            c.unknown.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(
        job: &str,
        dn: Option<&str>,
        token: Option<(&str, &str)>,
        vo: Option<&str>,
    ) -> PayloadJson {
        PayloadJson {
            dn: dn.map(str::to_string),
            owner: None,
            job_id: job.into(),
            from: None,
            to: None,
            issuer: token.map(|t| t.0.to_string()),
            subject: token.map(|t| t.1.to_string()),
            vo: vo.map(str::to_string),
            source: "htcondor".into(),
            person: None,
            person_candidates: Vec::new(),
            seqs: vec![7],
        }
    }

    fn vm<'a>(hv: Option<&'a str>, user: Option<&'a str>, project: Option<&'a str>) -> VmFacts<'a> {
        VmFacts {
            uuid: "u",
            hypervisor: hv,
            hypervisor_seq: hv.map(|_| 2),
            lease_seq: 1,
            user_id: user,
            user_seq: user.map(|_| 3),
            user: None,
            project_id: project,
            project_seq: project.map(|_| 3),
            project: None,
        }
    }

    /// Each source present, then each one missing: what it supports is said with its records,
    /// what it does not is `unknown`, never filled in from elsewhere.
    #[test]
    fn each_source_missing_is_unknown_and_each_present_is_cited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FactStore::open(dir.path()).expect("store");
        let full = contain(
            &store,
            &vm(Some("cmp1"), Some("u1"), Some("p1")),
            &[
                payload("j1", None, Some(("https://iam/", "s1")), Some("atlas")),
                payload("j2", Some("/CN=x"), None, Some("cms")),
            ],
        )
        .expect("contain");
        assert_eq!(full.vm.hypervisor.as_deref(), Some("cmp1"));
        assert_eq!(full.vm.seqs, [1, 2]);
        assert_eq!(full.project.seqs, [3]);
        assert_eq!(full.payloads[0].by, "token");
        assert_eq!(full.payloads[1].by, "dn");
        assert_eq!(full.payloads[1].vo.as_deref(), Some("cms"));
        assert_eq!(full.accounts.len(), 1, "the VM owner's Keystone account");
        // No directory: the owner's e-mail and the payload people's IAM accounts are unknown.
        assert_eq!(
            full.unknown,
            [
                "project.owner_email",
                "payload j1.iam_account",
                "payload j2.iam_account"
            ]
        );

        let none = contain(
            &store,
            &vm(None, None, None),
            &[payload("j3", None, None, None)],
        )
        .expect("contain");
        assert_eq!(none.vm.hypervisor, None);
        assert_eq!(none.vm.seqs, [1], "only the lease says which VM");
        assert!(none.accounts.is_empty());
        assert_eq!(none.payloads[0].action, "unknown");
        assert_eq!(
            none.unknown,
            [
                "vm.hypervisor",
                "project",
                "project.owner",
                "payload j3.identity",
                "payload j3.vo"
            ]
        );
        let text = text_lines(&none).join("\n");
        assert!(
            text.contains("on hypervisor unknown") && text.contains("cannot ban: unknown identity"),
            "{text}"
        );
    }
}
