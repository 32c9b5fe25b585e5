//! `report`: the incident answer for an address at a moment — who (owner, VO, payload
//! person), what (sessions, connections, jobs and lifecycle around the moment), when (the
//! intervals), where (VM, hypervisor, address) — with evidence and the observers that back it.
//!
//! Built from the same parts as the CLI's `who` and `timeline`, so the three never disagree:
//! [`crate::who::who`] picks the VMs, [`crate::timeline::timeline`] gives each VM's events
//! inside its lease, restricted to a window around the moment. Rendered as JSON, Markdown or
//! a self-contained HTML page.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use model::{Observer, escape_controls};
use serde::Serialize;
use views::SearchIndex;
use views::facts::FactStore;

use crate::attrib::Site;
use crate::search::Fetch;
use crate::timeline::{Entry, Subject, TimelineRequest, timeline_in};
use crate::who::{Match, WhoAnswer, WhoQuery, who};

/// How far around the moment the "what" section looks.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub who: WhoAnswer,
    pub vms: Vec<VmReport>,
    pub window: Window,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from: String,
    pub to: String,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct ObserverNote {
    pub observer: Observer,
    pub forgeable_by_vm_user: bool,
    pub records: usize,
}

/// Build the report for `q`.
pub fn report(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    q: &WhoQuery,
) -> anyhow::Result<Report> {
    let answer = who(store, q)?;
    let site = Site::load(store)?;
    let from = q.at.checked_sub(WINDOW).unwrap_or(q.at);
    let to = q.at.checked_add(WINDOW).unwrap_or(q.at);
    let mut vms = Vec::new();
    for m in &answer.matches {
        vms.push(vm_report(index, store, &site, fetch, m, from, to)?);
    }
    Ok(Report {
        who: answer,
        vms,
        window: Window {
            from: from.to_string(),
            to: to.to_string(),
        },
    })
}

fn vm_report(
    index: &SearchIndex,
    store: &FactStore,
    site: &Site,
    fetch: &mut dyn Fetch,
    m: &Match,
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
    Ok(r)
}

/// A value from the records, for text: control characters escaped ([`escape_controls`]).
fn or_unknown(v: &Option<String>) -> Cow<'_, str> {
    escape_controls(v.as_deref().unwrap_or("unknown"))
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
        escape_controls(&q.value),
        q.at
    );
    if r.who.matches.is_empty() {
        let _ = writeln!(
            s,
            "No VM held {} at {}: no lease covers that moment in the evidence.",
            escape_controls(&q.value),
            q.at
        );
        return s;
    }
    if r.who.matches.len() > 1 {
        let _ = writeln!(
            s,
            "**Ambiguous:** {} VMs held {} at that moment; all are reported.\n",
            r.who.matches.len(),
            escape_controls(&q.value)
        );
    }
    for (m, v) in r.who.matches.iter().zip(&r.vms) {
        let _ = writeln!(s, "## VM {}\n", escape_controls(&m.vm.uuid));
        let _ = writeln!(
            s,
            "- **Who**: user {} ({}), project {} ({})",
            or_unknown(&m.owner.user_id),
            or_unknown(&m.owner.user_name),
            or_unknown(&m.owner.project_id),
            or_unknown(&m.owner.project_name)
        );
        for p in &m.payload_users {
            let _ = writeln!(
                s,
                "- **Payload**: job {} of {} — {} ({} to {})",
                escape_controls(&p.job_id),
                or_unknown(&p.owner),
                or_unknown(&p.dn),
                or_unknown(&p.from),
                or_unknown(&p.to)
            );
            let _ = writeln!(
                s,
                "  - identity: {}",
                escape_controls(&crate::contain::payload_identity_text(p))
            );
        }
        let _ = writeln!(
            s,
            "- **Where**: VM {} ({}), hostname {}, hypervisor {}, image {}",
            escape_controls(&m.vm.uuid),
            or_unknown(&m.vm.name),
            or_unknown(&m.vm.hostname),
            or_unknown(&m.vm.hypervisor),
            or_unknown(&m.vm.image)
        );
        let _ = writeln!(
            s,
            "- **When**: held {} from {} to {}",
            escape_controls(&q.value),
            m.lease.from,
            m.lease.to.as_deref().unwrap_or("now")
        );
        let obs: Vec<String> = v
            .observers
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
            .collect();
        for c in &m.conflicts {
            let _ = writeln!(
                s,
                "- **CONFLICT** ({}): {} — the sources disagree; both are kept",
                escape_controls(&c.kind),
                escape_controls(&c.summary)
            );
        }
        let _ = writeln!(s, "- **Backed by**: {}\n", obs.join(", "));
        let _ = writeln!(s, "### Containment\n");
        for line in crate::contain::text_lines(&m.contain) {
            let _ = writeln!(s, "- {}", escape_controls(&line));
        }
        let _ = writeln!(s);
        for (title, list) in [
            ("Sessions", &v.sessions),
            ("Connections", &v.connections),
            ("Ambiguous (could be this VM or another)", &v.ambiguous),
            ("Jobs", &v.jobs),
            ("Lifecycle", &v.lifecycle),
            ("Other", &v.other),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(s, "### {title} ({} to {})\n", r.window.from, r.window.to);
            for e in list {
                let tag = e
                    .attribution
                    .as_ref()
                    .filter(|_| e.kind == "event")
                    .map(|a| format!(" {}", a.text()))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "- {} [{}] #{} {}{}",
                    e.time,
                    e.observer,
                    e.seq,
                    escape_controls(&e.summary),
                    escape_controls(&tag)
                );
            }
            let _ = writeln!(s);
        }
        if !v.custody.is_empty() {
            // Not limited to the window: the disk's custody, from capture to purge.
            let _ = writeln!(s, "### Image custody (quarantine, any time)\n");
            for e in &v.custody {
                let _ = writeln!(
                    s,
                    "- {} [{}] #{} {}",
                    e.time,
                    e.observer,
                    e.seq,
                    escape_controls(&e.summary)
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "### Evidence\n");
        for e in &m.evidence {
            let _ = writeln!(
                s,
                "- #{} [{}] {} {}: {}",
                e.seq,
                e.observer,
                e.time,
                escape_controls(&e.source),
                escape_controls(&e.summary)
            );
        }
        let _ = writeln!(s);
    }
    s
}

fn html_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (the Markdown, escaped, with headings and lists).
pub fn to_html(r: &Report) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pugmark report</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto}li{margin:.2em 0}\
         code{background:#eee}</style></head><body>\n",
    );
    let mut in_list = false;
    for line in to_markdown(r).lines() {
        let (tag, text) = if let Some(t) = line.strip_prefix("### ") {
            ("h3", t)
        } else if let Some(t) = line.strip_prefix("## ") {
            ("h2", t)
        } else if let Some(t) = line.strip_prefix("# ") {
            ("h1", t)
        } else if let Some(t) = line.strip_prefix("- ") {
            ("li", t)
        } else {
            ("p", line)
        };
        if tag == "li" && !in_list {
            out.push_str("<ul>\n");
            in_list = true;
        } else if tag != "li" && in_list {
            out.push_str("</ul>\n");
            in_list = false;
        }
        if text.is_empty() {
            continue;
        }
        let body = html_escape(text).replace("**", "");
        let _ = writeln!(out, "<{tag}>{body}</{tag}>");
    }
    if in_list {
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}
