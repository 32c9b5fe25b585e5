//! Cases (issue 14, like Timesketch's sketch) over real HTTP against the real binary
//! (`pugmark ui` on a generated challenge day), and `pugmark case` on the data directory:
//!
//! - the whole flow with tokens: open a case, save a `who` question, star and annotate
//!   records, share with a VO, export the case as the incident report (it names the VM the
//!   day's answer key names);
//! - authorization: a VO member cannot read another VO's case, nor another VO's records
//!   through a case shared with it (a star the site put on the other VO's record is not
//!   shown); csirt reads every case and changes none;
//! - the ledger is the truth: each change is an audit record (`pugmark audit`), `verify`
//!   passes, and `reindex` folds the case store again from the ledger alone, equal.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;
#[path = "common/day.rs"]
mod day;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::ok;
use day::Day;
use serde_json::{Value, json};

/// The day of the case tests: site, carol (csirt), alice and dave (vo:atlas), bob (vo:cms).
fn day(seed: u64) -> Day {
    Day::new(
        seed,
        &[
            ("site", "site"),
            ("carol", "csirt"),
            ("alice", "vo:atlas"),
            ("dave", "vo:atlas"),
            ("bob", "vo:cms"),
        ],
    )
}

impl Day {
    /// A request as `who` (a token name); the status and the body.
    fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
        let a: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.tokens[who]);
        let mut resp = if method == "POST" {
            let b = body.map(|b| b.to_string()).unwrap_or_default();
            a.post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.as_bytes())
                .expect("POST")
        } else {
            a.get(&url)
                .header("Authorization", &auth)
                .call()
                .expect("GET")
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body");
        (status, bytes)
    }

    /// As [`Day::call`], expecting `status`; the JSON body.
    fn json(&self, who: &str, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (s, b) = self.call(who, method, path, body);
        let text = String::from_utf8_lossy(&b).to_string();
        assert_eq!(s, status, "{who} {method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    }
}

/// The day's VMs with their VO (by their project's name).
fn vo_of_vms(ch: &Path) -> BTreeMap<String, String> {
    let projects: Value = serde_json::from_str(
        &fs::read_to_string(ch.join("keystone_projects.json")).expect("projects"),
    )
    .expect("json");
    let vo_of: BTreeMap<String, String> = projects
        .as_array()
        .expect("list")
        .iter()
        .map(|p| {
            let name = p["Name"].as_str().unwrap_or("");
            (
                p["ID"].as_str().unwrap_or("").to_string(),
                name.split('-').next().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for l in fs::read_to_string(ch.join("notifications.jsonl"))
        .expect("notifications")
        .lines()
    {
        let env: Value = serde_json::from_str(l).expect("json");
        let msg: Value =
            serde_json::from_str(env["oslo.message"].as_str().expect("msg")).expect("json");
        let d = &msg["payload"]["nova_object.data"];
        if let (Some(uuid), Some(vo)) = (
            d["uuid"].as_str(),
            d["tenant_id"].as_str().and_then(|p| vo_of.get(p)),
        ) {
            out.insert(uuid.to_string(), vo.clone());
        }
    }
    out
}

/// A record of `vm` (by the site's timeline: attributed to it), not `avoid`.
fn record_of(d: &Day, vm: &str) -> u64 {
    let t = d.json(
        "site",
        "GET",
        &format!("/api/v1/timeline?vm={vm}"),
        None,
        200,
    );
    t["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["attribution"]["vm"] == vm)
        .filter_map(|e| e["seq"].as_u64())
        .next_back()
        .unwrap_or_else(|| panic!("no record attributed to {vm}"))
}

fn seqs(list: &Value, path: &[&str]) -> BTreeSet<u64> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| {
            let mut v = x;
            for p in path {
                v = &v[*p];
            }
            v.as_u64()
        })
        .collect()
}

#[test]
fn a_case_is_shared_scoped_audited_reported_and_rebuilt_from_the_ledger() {
    let mut d = day(7);
    let vos = vo_of_vms(&d.ch);
    // A `who` question of the answer key about an atlas VM, unambiguous.
    let answers: Value =
        serde_json::from_str(&fs::read_to_string(d.ch.join("answers.json")).expect("answers"))
            .expect("json");
    let (ip, at, vm) = answers
        .as_array()
        .expect("questions")
        .iter()
        .filter(|q| q["kind"] == "who" && q["ip"].is_string() && q["expect"]["ambiguous"] == false)
        .filter_map(|q| {
            let m = q["expect"]["matches"].as_array()?;
            let vm = m.first()?["vm_uuid"].as_str()?;
            (m.len() == 1 && vos.get(vm).map(String::as_str) == Some("atlas")).then(|| {
                (
                    q["ip"].as_str().unwrap().to_string(),
                    q["at"].as_str().unwrap().to_string(),
                    vm.to_string(),
                )
            })
        })
        .next()
        .expect("a who question about an atlas VM");
    let cms_vm = vos
        .iter()
        .find(|(_, vo)| *vo == "cms")
        .map(|(u, _)| u.clone())
        .expect("a cms VM");
    let ours = record_of(&d, &vm);
    let theirs = record_of(&d, &cms_vm);

    // alice (vo:atlas) opens a case and saves the question.
    let c = d.json(
        "alice",
        "POST",
        "/api/v1/cases",
        Some(json!({"title": "C2 beacon from an atlas VM", "tags": ["c2"]})),
        201,
    );
    let a = c["id"].as_str().expect("id").to_string();
    assert_eq!(c["owner"], "alice");
    assert_eq!(c["tags"], json!(["c2"]));
    let q = d.json(
        "alice",
        "POST",
        &format!("/api/v1/cases/{a}/queries"),
        Some(json!({"verb": "who", "params": {"ip": ip, "at": at}, "title": "who beaconed"})),
        200,
    );
    assert_eq!(q["queries"][0]["params"]["ip"], ip.as_str());
    // Questions are checked by the verb's own parser.
    for bad in [
        json!({"verb": "who", "params": {"ip": ip, "at": at, "bogus": "1"}}),
        json!({"verb": "who", "params": {"ip": "not-an-ip", "at": at}}),
        json!({"verb": "rm", "params": {}}),
    ] {
        let (s, _) = d.call(
            "alice",
            "POST",
            &format!("/api/v1/cases/{a}/queries"),
            Some(bad),
        );
        assert_eq!(s, 400);
    }
    // Her VM's record: starred and annotated. The other VO's record: refused.
    d.json(
        "alice",
        "POST",
        &format!("/api/v1/cases/{a}/stars"),
        Some(json!({"seq": ours})),
        200,
    );
    let n = d.json(
        "alice",
        "POST",
        &format!("/api/v1/cases/{a}/annotations"),
        Some(json!({"seq": ours, "text": "the decisive connection"})),
        200,
    );
    let note_seq = n["change_seq"].as_u64().expect("change_seq");
    for (what, body) in [
        ("stars", json!({"seq": theirs})),
        ("annotations", json!({"seq": theirs, "text": "peek"})),
    ] {
        let (s, b) = d.call(
            "alice",
            "POST",
            &format!("/api/v1/cases/{a}/{what}"),
            Some(body),
        );
        assert_eq!(s, 404, "{}", String::from_utf8_lossy(&b));
    }
    // The site stars and annotates the other VO's record on her case (it may).
    d.json(
        "site",
        "POST",
        &format!("/api/v1/cases/{a}/stars"),
        Some(json!({"seq": theirs})),
        200,
    );
    d.json(
        "site",
        "POST",
        &format!("/api/v1/cases/{a}/annotations"),
        Some(json!({"seq": theirs, "text": "cms record the site found"})),
        200,
    );
    d.json(
        "site",
        "POST",
        &format!("/api/v1/cases/{a}/annotations"),
        Some(json!({"text": "a note on the case"})),
        200,
    );
    // alice sees her record and the case note, not the other VO's record.
    let (s, body) = d.call("alice", "GET", &format!("/api/v1/cases/{a}"), None);
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seqs(&v["stars"], &["record", "seq"]),
        BTreeSet::from([ours])
    );
    assert_eq!(v["annotations"].as_array().map(Vec::len), Some(2));
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(&cms_vm) && !text.contains("cms record the site found"));
    // The site (and csirt) see everything.
    let v = d.json("site", "GET", &format!("/api/v1/cases/{a}"), None, 200);
    assert_eq!(
        seqs(&v["stars"], &["record", "seq"]),
        BTreeSet::from([ours, theirs])
    );
    let v = d.json("carol", "GET", &format!("/api/v1/cases/{a}"), None, 200);
    assert_eq!(v["annotations"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["access"], "read");
    // csirt is read-only.
    let (s, _) = d.call(
        "carol",
        "POST",
        &format!("/api/v1/cases/{a}/annotations"),
        Some(json!({"text": "csirt"})),
    );
    assert_eq!(s, 403);
    let (s, _) = d.call(
        "carol",
        "POST",
        "/api/v1/cases",
        Some(json!({"title": "x"})),
    );
    assert_eq!(s, 403);

    // Sharing: dave (atlas, not a member) cannot see the case until it is shared with atlas.
    let (s, _) = d.call("dave", "GET", &format!("/api/v1/cases/{a}"), None);
    assert_eq!(s, 404);
    let (s, _) = d.call(
        "dave",
        "POST",
        &format!("/api/v1/cases/{a}/members"),
        Some(json!({"vos": ["atlas"]})),
    );
    assert_eq!(s, 404, "a non-member cannot share");
    d.json(
        "alice",
        "POST",
        &format!("/api/v1/cases/{a}/members"),
        Some(json!({"vos": ["atlas"]})),
        200,
    );
    let v = d.json("dave", "GET", &format!("/api/v1/cases/{a}"), None, 200);
    assert_eq!(
        seqs(&v["stars"], &["record", "seq"]),
        BTreeSet::from([ours])
    );
    // bob (cms) has case B; neither VO reaches the other's case.
    let b = d.json(
        "bob",
        "POST",
        "/api/v1/cases",
        Some(json!({"title": "cms case"})),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.json(
        "bob",
        "POST",
        &format!("/api/v1/cases/{b}/stars"),
        Some(json!({"seq": theirs})),
        200,
    );
    for (who, case) in [("alice", &b), ("dave", &b), ("bob", &a)] {
        for (m, path, body) in [
            ("GET", format!("/api/v1/cases/{case}"), None),
            ("GET", format!("/api/v1/cases/{case}/report"), None),
            (
                "POST",
                format!("/api/v1/cases/{case}/annotations"),
                Some(json!({"text": "x"})),
            ),
        ] {
            let (s, _) = d.call(who, m, &path, body);
            assert_eq!(s, 404, "{who} {m} {path}");
        }
    }
    let l = d.json("alice", "GET", "/api/v1/cases", None, 200);
    let ids: Vec<&str> = l["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);
    assert_eq!(
        d.json("site", "GET", "/api/v1/cases", None, 200)["total"],
        2
    );

    // The case as the incident report names the answer key's VM.
    let r = d.json(
        "alice",
        "GET",
        &format!("/api/v1/cases/{a}/report?format=json"),
        None,
        200,
    );
    let rep = &r["questions"][0]["report"];
    assert!(rep.to_string().contains(&vm), "{r}");
    assert!(!r.to_string().contains(&cms_vm));
    let (s, md) = d.call(
        "alice",
        "GET",
        &format!("/api/v1/cases/{a}/report?format=md"),
        None,
    );
    assert_eq!(s, 200);
    let md = String::from_utf8_lossy(&md);
    assert!(md.contains(&vm) && !md.contains(&cms_vm), "{md}");
    assert!(!md.contains("cms record the site found"));
    let (s, md) = d.call(
        "site",
        "GET",
        &format!("/api/v1/cases/{a}/report?format=md"),
        None,
    );
    assert_eq!(s, 200);
    let md = String::from_utf8_lossy(&md);
    assert!(
        md.contains(&vm) && md.contains("## Starred records"),
        "{md}"
    );
    assert!(md.contains("the decisive connection") && md.contains(&format!("#{ours}")));
    let (s, html) = d.call(
        "site",
        "GET",
        &format!("/api/v1/cases/{a}/report?format=html"),
        None,
    );
    assert_eq!(s, 200);
    let html = String::from_utf8_lossy(&html);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains(&vm));

    // The ledger holds every change: the annotation is an audit record at its position.
    d.stop();
    let audits: Value =
        serde_json::from_str(&ok(&d.data, &["audit", "--user", "alice", "--json"])).unwrap();
    let note = audits["audits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["seq"] == note_seq)
        .expect("the annotation's audit record");
    assert_eq!(note["verb"], "case.annotate");
    assert_eq!(note["change"]["text"], "the decisive connection");
    assert!(
        audits["audits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["verb"] == "case.star" && x["status"] == 404),
        "refused attempts are audited too"
    );
    ok(&d.data, &["verify"]);

    // The operator's CLI on the same cases.
    let v: Value = serde_json::from_str(&ok(
        &d.data,
        &[
            "case",
            "annotate",
            &a,
            "noted at the terminal",
            "--as",
            "op",
            "--json",
        ],
    ))
    .unwrap();
    assert!(v["change_seq"].as_u64().unwrap() > note_seq);
    assert_eq!(v["annotations"].as_array().map(Vec::len), Some(4));
    let md = ok(&d.data, &["case", "report", &a, "--format", "md"]);
    assert!(md.contains(&vm));

    // reindex folds the case store again from the ledger alone: equal.
    let dump = |d: &Day| {
        let mut all =
            vec![serde_json::from_str::<Value>(&ok(&d.data, &["case", "list", "--json"])).unwrap()];
        for id in [&a, &b] {
            all.push(serde_json::from_str(&ok(&d.data, &["case", "show", id, "--json"])).unwrap());
        }
        all
    };
    let before = dump(&d);
    for f in ["cases.sqlite", "cases.sqlite-wal", "cases.sqlite-shm"] {
        let _ = fs::remove_file(d.data.join(f));
    }
    let out = ok(&d.data, &["reindex"]);
    assert!(out.contains("rebuilt the case store: 2 cases"), "{out}");
    assert_eq!(dump(&d), before);
    ok(&d.data, &["verify"]);
}
