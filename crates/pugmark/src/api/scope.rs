//! VO scoping: what a `vo:NAME` role may see of an answer.
//!
//! A VO's VMs are those a **cloud** record (a VM cannot forge one) lists under a project
//! `[[api.vos]]` maps to the VO (by project id, or by its name in the Keystone/OpenNebula
//! directory). Whether a record is one of them is decided by the one attribution rule,
//! [`query::attrib::Site::attribute`] — the `attribution` every timeline, report and hunt entry
//! already carries, and for search hits computed here on the event itself — never by matching
//! text. Ambiguous records (two VMs held a name) are no one's, so no VO's.
//!
//! [`prune`] walks an answer's JSON **deny by default**: in an array of objects, an element is
//! kept only when it is positively the VO's — an `attribution` naming one of its VMs, a `vm`
//! (`{uuid}`) or `uuid` that is one of its VMs, a hunt hit whose `matches` keep one of its VMs,
//! a `check` finding whose VM entities are all its own; elements that say nothing of a VM are
//! dropped at the top of an answer and kept only inside an element already decided to be the
//! VO's (its evidence, payload users, containment). Inside a kept element, elements that do
//! name another VM are still dropped, as is any object (not only a list element) that names
//! another VM (it becomes null); `conflicts` (which name the other side) and
//! `unresolved` (leases no VM holds) are withheld, `candidates` cut to the VO's VMs.

use std::collections::{BTreeSet, HashSet};

use anyhow::Context;
use query::attrib::Site;
use serde_json::Value;
use views::facts::FactStore;

use pipeline::datadir::DataDir;

/// One VO role's view of the site.
pub struct Scope {
    /// The VO's VMs.
    pub vms: HashSet<String>,
    /// Every VM the site knows (to tell VM ids among a finding's entities).
    pub all_vms: HashSet<String>,
    pub site: Site,
}

impl Scope {
    /// The scope of `vos` (names with `[[api.vos]]` entries) over the fact store of `dd`.
    pub fn load(
        dd: &DataDir,
        config: &serve::config::ApiConfig,
        vos: &[String],
    ) -> anyhow::Result<Scope> {
        let store = FactStore::open(dd.facts())
            .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
        let site = Site::load(&store)?;
        let projects: HashSet<&str> = vos
            .iter()
            .filter_map(|v| config.vos.get(v))
            .flatten()
            .map(String::as_str)
            .collect();
        let mut names: std::collections::HashMap<String, Option<String>> = Default::default();
        let mut vms = HashSet::new();
        let mut all_vms = HashSet::new();
        for uuid in store.all_vms()? {
            let mut ours = false;
            for o in site.observations(&uuid) {
                if o.observer != model::Observer::Cloud {
                    continue;
                }
                let Some(p) = &o.project_id else { continue };
                if projects.contains(p.as_str()) {
                    ours = true;
                    break;
                }
                let name = match names.get(p) {
                    Some(n) => n.clone(),
                    None => {
                        let n = store.project(p)?.and_then(|d| d.name);
                        names.insert(p.clone(), n.clone());
                        n
                    }
                };
                if name.is_some_and(|n| projects.contains(n.as_str())) {
                    ours = true;
                    break;
                }
            }
            if ours {
                vms.insert(uuid.clone());
            }
            all_vms.insert(uuid);
        }
        Ok(Scope { vms, all_vms, site })
    }

    pub fn owns(&self, vm: &str) -> bool {
        self.vms.contains(vm)
    }

    /// Whether this event is one of the VO's VMs' (the attribution rule).
    pub fn event_is_ours(&self, e: &model::Event) -> bool {
        self.site.attribute(e).vm.is_some_and(|v| self.owns(&v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Ours,
    NotOurs,
    /// Says nothing of a VM.
    Silent,
}

fn vm_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("uuid").and_then(Value::as_str),
        _ => None,
    }
}

fn decide(obj: &serde_json::Map<String, Value>, s: &Scope) -> Decision {
    let yes = |b: bool| if b { Decision::Ours } else { Decision::NotOurs };
    if let Some(a) = obj.get("attribution") {
        return yes(a
            .get("vm")
            .and_then(Value::as_str)
            .is_some_and(|v| s.owns(v)));
    }
    if let Some(vm) = obj.get("vm") {
        return yes(vm_of(vm).is_some_and(|v| s.owns(v)));
    }
    if let Some(Value::Array(m)) = obj.get("matches") {
        return yes(m
            .iter()
            .any(|x| x.get("vm").and_then(vm_of).is_some_and(|v| s.owns(v))));
    }
    if let Some(Value::Array(ents)) = obj.get("entities") {
        let vms: Vec<&str> = ents
            .iter()
            .filter_map(Value::as_str)
            .filter(|e| s.all_vms.contains(*e))
            .collect();
        return yes(!vms.is_empty() && vms.iter().all(|v| s.owns(v)));
    }
    if let Some(u) = obj.get("uuid").and_then(Value::as_str)
        && s.all_vms.contains(u)
    {
        return yes(s.owns(u));
    }
    Decision::Silent
}

/// Cuts `v` to what the VO may see (module docs). `trusted`: inside an element already
/// decided to be the VO's.
pub fn prune(v: &mut Value, s: &Scope, trusted: bool) {
    match v {
        Value::Object(m) => {
            m.remove("unresolved");
            if let Some(c) = m.get_mut("conflicts")
                && c.is_array()
            {
                *c = Value::Array(Vec::new());
            }
            for key in ["candidates", "holders"] {
                if let Some(Value::Array(c)) = m.get_mut(key) {
                    c.retain(|x| x.as_str().is_some_and(|v| s.owns(v)));
                }
            }
            for (_, x) in m.iter_mut() {
                // An object that names another VM is withheld even where it is not a list
                // element (a summary block naming the VM that answers).
                if let Value::Object(o) = x
                    && decide(o, s) == Decision::NotOurs
                {
                    *x = Value::Null;
                    continue;
                }
                prune(x, s, trusted);
            }
        }
        Value::Array(a) => {
            a.retain_mut(|x| {
                let Value::Object(m) = x else {
                    return true;
                };
                let keep = match decide(m, s) {
                    Decision::Ours => {
                        prune(x, s, true);
                        return true;
                    }
                    Decision::NotOurs => false,
                    Decision::Silent => trusted,
                };
                if keep {
                    prune(x, s, trusted);
                }
                keep
            });
        }
        _ => {}
    }
}

/// The typed report cut the way [`prune`] cuts its JSON, for the Markdown and HTML
/// renderings (which are made from the typed report): the VO's VMs only (`who` matches, the
/// answer lines, the per-VM sections); inside them, entries whose attribution names one of
/// its VMs or that carry none (an attribution without one VM — ambiguous — is no one's);
/// conflicts and unresolved associations withheld, candidate and holder lists cut to its VMs.
/// The EGI procedure's steps are rebuilt from the matches kept (they name the VMs to suspend).
pub fn scope_report(rep: &query::report::Report, s: &Scope) -> query::report::Report {
    use query::timeline::Entry;
    let mut r = rep.clone();
    r.who.unresolved.clear();
    r.who.matches.retain(|m| s.owns(&m.vm.uuid));
    for m in &mut r.who.matches {
        m.conflicts.clear();
    }
    r.answer.retain(|a| s.owns(&a.vm));
    for a in &mut r.answer {
        a.conflicts = 0;
    }
    r.vms.retain(|v| s.owns(&v.uuid));
    let ours = |e: &mut Entry| -> bool {
        let Some(a) = &mut e.attribution else {
            return true;
        };
        if !a.vm.as_deref().is_some_and(|v| s.owns(v)) {
            return false;
        }
        a.candidates.retain(|v| s.owns(v));
        if let Some(u) = &mut a.uuid_mismatch {
            u.holders.retain(|v| s.owns(v));
        }
        true
    };
    for v in &mut r.vms {
        for list in [
            &mut v.sessions,
            &mut v.connections,
            &mut v.ambiguous,
            &mut v.jobs,
            &mut v.lifecycle,
            &mut v.other,
            &mut v.custody,
        ] {
            list.retain_mut(ours);
        }
        v.decisive.retain_mut(|d| ours(&mut d.entry));
        v.timeline.entries.retain_mut(|l| ours(&mut l.entry));
    }
    let discovered = r
        .procedure
        .discovered
        .as_deref()
        .and_then(|d| d.parse::<jiff::Timestamp>().ok());
    r.procedure = query::report::procedure(&r.who.matches, discovered);
    r
}

/// Every VM an answer names (what an audit record lists as the VMs a query concerned):
/// attributions, `vm` objects, VM `uuid`s, VM entities of findings.
pub fn vms_named(v: &Value, all: Option<&HashSet<String>>, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("vm", x) => {
                        if let Some(u) = vm_of(x) {
                            out.insert(u.to_string());
                        }
                    }
                    ("uuid", Value::String(u)) if all.is_none_or(|a| a.contains(u)) => {
                        out.insert(u.clone());
                    }
                    ("entities", Value::Array(e)) => {
                        if let Some(a) = all {
                            for u in e.iter().filter_map(Value::as_str) {
                                if a.contains(u) {
                                    out.insert(u.to_string());
                                }
                            }
                        }
                    }
                    _ => {}
                }
                vms_named(x, all, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                vms_named(x, all, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            vms: ["a1".to_string()].into_iter().collect(),
            all_vms: ["a1".to_string(), "c1".to_string()].into_iter().collect(),
            site: Site::default(),
        }
    }

    #[test]
    fn pruning_keeps_only_what_is_positively_the_vos() {
        let s = scope();
        let mut v = json!({
            "query": {"kind": "ip"},
            "entries": [
                {"seq": 1, "attribution": {"how": "uuid", "vm": "a1"}},
                {"seq": 2, "attribution": {"how": "uuid", "vm": "c1"}},
                {"seq": 3, "attribution": {"how": "ambiguous", "vm": null, "candidates": ["a1", "c1"]}},
                {"seq": 4, "summary": "a fact about no VM"}
            ],
            "matches": [
                {"vm": {"uuid": "a1"}, "evidence": [{"seq": 5}], "conflicts": [{"summary": "c1 too"}]},
                {"vm": {"uuid": "c1"}, "evidence": [{"seq": 6}]}
            ],
            "findings": [
                {"entities": ["a1", "10.0.0.1"]},
                {"entities": ["a1", "c1"]},
                {"entities": ["10.9.9.9"]}
            ],
            "unresolved": [{"kind": "floating"}],
            "answer": {"vm": {"uuid": "c1"}, "owner": "someone"}
        });
        prune(&mut v, &s, false);
        let seqs: Vec<u64> = v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        assert_eq!(seqs, vec![1]);
        assert_eq!(v["matches"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["matches"][0]["evidence"][0]["seq"], 5);
        assert_eq!(v["matches"][0]["conflicts"], json!([]));
        assert_eq!(v["findings"].as_array().map(Vec::len), Some(1));
        assert!(v.get("unresolved").is_none());
        assert_eq!(v["answer"], Value::Null);
        assert!(!v.to_string().contains("c1"));
    }
}
