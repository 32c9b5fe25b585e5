//! The query API (issue 14) over real HTTP on loopback, against the real binary: `pugmark ui`
//! on a generated challenge day (and `serve --http` once).
//!
//! - the oracle: every verb's API answer equals the CLI's `--json` for the same parameters;
//! - the authorization matrix: a VO token asks every verb about the other VO's addresses,
//!   hosts, VMs, users, windows, exports and pages — no identifier of the other VO in any byte;
//! - bad, unknown and revoked tokens refused and audited; the audit trail in the ledger
//!   (`pugmark verify` passes; a changed byte is found);
//! - 100 concurrent clients answered without an error (figures: bench/api/run).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;
#[path = "common/day.rs"]
mod day;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{bin, ok};
use day::{Day, agent, docs_config, enc, request};
use serde_json::Value;

/// The day the API tests ask about: tokens site, csirt, atlas (vo:atlas), cms (vo:cms).
fn day(seed: u64) -> Day {
    Day::new(
        seed,
        &[
            ("site", "site"),
            ("csirt", "csirt"),
            ("atlas", "vo:atlas"),
            ("cms", "vo:cms"),
        ],
    )
}

/// `?k=v&…` from CLI-style pairs.
fn qs(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// An answer as compared: `views` (where the views stood: the ui appends an audit record per
/// query, so the ledger grows between the two calls) left out, and `integrity` cut to the cited
/// records (the proofs are to whichever checkpoint is newest).
fn comparable(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("views");
        if let Some(i) = m.get_mut("integrity")
            && let Some(recs) = i.get("records").cloned()
        {
            let recs: Vec<Value> = recs
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let mut r = r.clone();
                    if let Value::Object(o) = &mut r {
                        o.remove("proof");
                        o.remove("tree_size");
                    }
                    r
                })
                .collect();
            *i = Value::Array(recs);
        }
    }
    v
}

/// The CLI's `--json` for `verb` with `pairs` (flags as `--k v`, `true` as a bare flag).
fn cli_json(data: &Path, verb: &str, pairs: &[(&str, &str)], extra: &[&str]) -> Value {
    let mut args: Vec<String> = vec![verb.to_string()];
    for (k, v) in pairs {
        if *k == "q" {
            continue;
        }
        args.push(format!("--{}", k.replace('_', "-")));
        if *v != "true" {
            args.push(v.to_string());
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some((_, q)) = pairs.iter().find(|(k, _)| *k == "q") {
        // (`--data` comes after: no `--` here; the queries asked do not start with a dash.)
        args.push(q.to_string());
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(data, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{verb}: not JSON ({e})"))
}

/// The questions of answers.json as (kind, pairs).
fn questions(ch: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let a: Value =
        serde_json::from_str(&fs::read_to_string(ch.join("answers.json")).expect("answers"))
            .expect("json");
    let mut out = Vec::new();
    for q in a.as_array().expect("questions") {
        let mut pairs = Vec::new();
        for k in ["ip", "host", "mac", "at"] {
            if let Some(v) = q[k].as_str() {
                pairs.push((k.to_string(), v.to_string()));
            }
        }
        out.push((q["kind"].as_str().unwrap_or("").to_string(), pairs));
    }
    out
}

/// The VMs of the day with their VO (by their project's name), identifiers of each.
struct Vms {
    vo: BTreeMap<String, String>,
    /// Identifiers per VM: uuid, hostname, addresses, MACs, taps, owner, project.
    ids: BTreeMap<String, BTreeSet<String>>,
}

fn vms(ch: &Path) -> Vms {
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
    let mut out = Vms {
        vo: BTreeMap::new(),
        ids: BTreeMap::new(),
    };
    for l in fs::read_to_string(ch.join("notifications.jsonl"))
        .expect("notifications")
        .lines()
    {
        let env: Value = serde_json::from_str(l).expect("json");
        let msg: Value =
            serde_json::from_str(env["oslo.message"].as_str().expect("msg")).expect("json");
        let d = &msg["payload"]["nova_object.data"];
        let Some(uuid) = d["uuid"].as_str() else {
            continue;
        };
        let project = d["tenant_id"].as_str().unwrap_or("");
        if let Some(vo) = vo_of.get(project) {
            out.vo.insert(uuid.to_string(), vo.clone());
        }
        let ids = out.ids.entry(uuid.to_string()).or_default();
        ids.insert(uuid.to_string());
        for k in ["host_name", "user_id", "tenant_id"] {
            if let Some(v) = d[k].as_str() {
                ids.insert(v.to_string());
            }
        }
        for ip in d["ip_addresses"].as_array().into_iter().flatten() {
            let ip = &ip["nova_object.data"];
            for k in ["address", "mac", "device_name"] {
                if let Some(v) = ip[k].as_str() {
                    ids.insert(v.to_string());
                }
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay` as a whole token (not inside a longer name or address).
fn occurs(hay: &str, needle: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '_';
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let s = from + i;
        let e = s + needle.len();
        let before = hay[..s].chars().next_back();
        let after = hay[e..].chars().next();
        // A trailing dot ends a sentence, not an address.
        let after_ok = match after {
            None => true,
            Some('.') => !hay[e + 1..].starts_with(|c: char| c.is_ascii_digit()),
            Some(c) => !word(c),
        };
        if before.is_none_or(|c| !word(c)) && after_ok {
            return true;
        }
        from = s + 1;
    }
    false
}

#[test]
fn api_answers_equal_the_cli_json_on_a_challenge_day() {
    let d = day(7);
    let site = d.tokens["site"].clone();
    let mut compared = BTreeMap::<&str, usize>::new();
    let check = |verb: &'static str,
                 pairs: &[(&str, &str)],
                 extra: &[&str],
                 cmp: &mut BTreeMap<&str, usize>| {
        // The CLI first: the API call appends its audit record after answering.
        let cli = cli_json(&d.data, verb, pairs, extra);
        let mut all = pairs.to_vec();
        if verb == "report" {
            all.push(("format", "json"));
        }
        let (status, body) = d.get(Some(&site), &format!("/api/v1/{verb}{}", qs(&all)));
        assert_eq!(
            status,
            200,
            "{verb} {pairs:?}: {}",
            String::from_utf8_lossy(&body)
        );
        let api: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            comparable(api),
            comparable(cli),
            "{verb} {pairs:?}: the API's answer differs from the CLI's"
        );
        *cmp.entry(verb).or_default() += 1;
    };
    let qs_all = questions(&d.ch);
    let mut who_n = 0;
    let mut report_n = 0;
    for (kind, pairs) in &qs_all {
        let p: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match kind.as_str() {
            "who" if who_n < 8 => {
                who_n += 1;
                check("who", &p, &["--json"], &mut compared);
            }
            "report" if report_n < 3 => {
                report_n += 1;
                check("report", &p, &["--format", "json"], &mut compared);
            }
            _ => {}
        }
    }
    let v = vms(&d.ch);
    let some_vm = v.vo.keys().next().expect("a VM").clone();
    let some_ip = v.ids[&some_vm]
        .iter()
        .find(|s| s.starts_with("10."))
        .expect("an address")
        .clone();
    for (verb, pairs) in [
        ("search", vec![("q", "sshd"), ("limit", "20")]),
        (
            "search",
            vec![("q", "*"), ("class", "net.connection"), ("limit", "50")],
        ),
        (
            "search",
            vec![
                ("q", "Accepted"),
                ("field", "user=pilot"),
                ("from", "2026-10-14T01:00:00Z"),
                ("to", "2026-10-14T03:00:00Z"),
            ],
        ),
        ("search", vec![("q", "*"), ("count", "true")]),
        ("timeline", vec![("vm", some_vm.as_str())]),
        (
            "timeline",
            vec![("vm", some_vm.as_str()), ("limit", "5"), ("lanes", "48")],
        ),
        (
            "timeline",
            vec![
                ("ip", some_ip.as_str()),
                ("from", "2026-10-14T00:00:00Z"),
                ("to", "2026-10-14T04:00:00Z"),
            ],
        ),
        ("timeline", vec![("user", "pilot"), ("limit", "200")]),
        ("check", vec![]),
        (
            "check",
            vec![
                ("from", "2026-10-14T01:00:00Z"),
                ("to", "2026-10-14T05:00:00Z"),
                ("tolerance", "90s"),
            ],
        ),
    ] {
        check(verb, &pairs, &["--json"], &mut compared);
    }
    // hunt: a plain indicator list, as a file to the CLI and as the body of a POST.
    let dsts = cli_json(
        &d.data,
        "search",
        &[("q", "*"), ("class", "net.connection"), ("limit", "400")],
        &["--json"],
    );
    let mut iocs: BTreeSet<String> = BTreeSet::new();
    for h in dsts["hits"].as_array().into_iter().flatten() {
        if let Some(ip) = h["fields"]["dst_ip"].as_str()
            && !ip.starts_with("10.")
        {
            iocs.insert(ip.to_string());
        }
        if iocs.len() >= 3 {
            break;
        }
    }
    assert!(!iocs.is_empty(), "the day has outside destinations");
    let list = iocs.iter().cloned().collect::<Vec<_>>().join("\n") + "\n";
    let file = d.data.parent().expect("dir").join("iocs.txt");
    fs::write(&file, &list).expect("iocs");
    let cli = cli_json(
        &d.data,
        "hunt",
        &[],
        &["--iocs", file.to_str().expect("path"), "--json"],
    );
    let (status, body) = request(
        &d.base,
        Some(&site),
        "POST",
        "/api/v1/hunt",
        Some(list.as_bytes()),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let api: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        api["hits"].as_array().is_some_and(|h| !h.is_empty()),
        "the hunt hits"
    );
    assert_eq!(comparable(api), comparable(cli.clone()), "hunt");
    // GET with indicator=… is the same list.
    let pairs: Vec<(&str, &str)> = iocs.iter().map(|i| ("indicator", i.as_str())).collect();
    let (_, body) = d.get(Some(&site), &format!("/api/v1/hunt{}", qs(&pairs)));
    assert_eq!(
        comparable(serde_json::from_slice(&body).expect("json")),
        comparable(cli)
    );
    compared.insert("hunt", 2);
    for verb in ["who", "report", "search", "timeline", "check", "hunt"] {
        assert!(
            compared.get(verb).copied().unwrap_or(0) >= 2,
            "{verb}: {compared:?}"
        );
    }

    // Paging walks the same hits; NDJSON streams them.
    let all = cli_json(
        &d.data,
        "search",
        &[("q", "sshd"), ("limit", "45")],
        &["--json"],
    );
    let mut paged = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let (s, body) = d.get(
            Some(&site),
            &format!("/api/v1/search?q=sshd&limit=45&page_size=10&offset={o}"),
        );
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&body).expect("json");
        paged.extend(v["hits"].as_array().expect("hits").iter().cloned());
        offset = v["page"]["next_offset"].as_u64();
    }
    assert_eq!(
        Value::Array(paged.clone()),
        all["hits"],
        "pages put together are the answer"
    );
    let (s, body) = request(
        &d.base,
        Some(&site),
        "GET",
        "/api/v1/search?q=sshd&limit=45",
        None,
        Some("application/x-ndjson"),
    );
    assert_eq!(s, 200);
    let lines: Vec<Value> = String::from_utf8(body)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines, paged);

    // Exports: the CLI's bytes.
    for (verb, pairs, cli_args) in [
        (
            "search",
            "q=sshd&limit=20&format=csv",
            vec!["search", "sshd", "--limit", "20", "--format", "csv"],
        ),
        (
            "search",
            "q=Accepted&format=timesketch&fields=ecs",
            vec![
                "search",
                "Accepted",
                "--format",
                "timesketch",
                "--fields",
                "ecs",
            ],
        ),
        (
            "timeline",
            "user=pilot&limit=50&format=jsonl",
            vec![
                "timeline", "--user", "pilot", "--limit", "50", "--format", "jsonl",
            ],
        ),
    ] {
        let cli = ok(&d.data, &cli_args);
        let (s, body) = d.get(Some(&site), &format!("/api/v1/{verb}?{pairs}"));
        assert_eq!(s, 200);
        assert!(!cli.is_empty());
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            cli,
            "{verb} {pairs}"
        );
    }

    // What the CLI would refuse is refused (400), with the server's data directory not the
    // client's; a wrong method 405, an unknown endpoint 404; each audited.
    let before = common::json(&d.data, &["audit"])["total"].as_u64().unwrap();
    for (path, want) in [
        (
            "/api/v1/who?ip=10.42.0.15&at=2026-10-14T02:53:05Z&data=%2Fetc",
            400,
        ),
        ("/api/v1/who?ip=10.42.0.15&at=yesterday", 400),
        ("/api/v1/who?ip=10.42.0.15", 400),
        ("/api/v1/search?q=x&bogus=1", 400),
        ("/api/v1/hunt?iocs=%2Fetc%2Fpasswd", 400),
        (
            "/api/v1/hunt?indicator=192.0.2.1&misp_url=http%3A%2F%2Fx&misp_key_file=%2Fetc%2Fshadow",
            400,
        ),
        ("/api/v1/nothing", 404),
    ] {
        let (s, body) = d.get(Some(&site), path);
        assert_eq!(s, want, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let (s, _) = request(
        &d.base,
        Some(&site),
        "POST",
        "/api/v1/who?ip=10.42.0.15&at=2026-10-14T02:53:05Z",
        Some(b"x"),
        None,
    );
    assert_eq!(s, 405);
    let after = common::json(&d.data, &["audit"])["total"].as_u64().unwrap();
    assert_eq!(after - before, 8, "every refusal audited");

    // The OpenAPI description is valid OpenAPI 3 (a real validator, when the venv has it).
    let (s, body) = d.get(None, "/api/v1/openapi.json");
    assert_eq!(s, 200);
    let spec: Value = serde_json::from_slice(&body).expect("openapi json");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    validate_openapi(&body);
}

/// `openapi-spec-validator` from the venv ($PUGMARK_VENV), the reference validator.
fn validate_openapi(spec: &[u8]) {
    let venv = std::env::var("PUGMARK_VENV").unwrap_or_else(|_| "/var/cache/pugmark-venv".into());
    let exe = Path::new(&venv).join("bin/openapi-spec-validator");
    let exe = common::require("openapi-spec-validator", exe.is_file().then_some(exe));
    let Some(exe) = exe else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("openapi.json");
    fs::write(&f, spec).expect("write");
    let out = Command::new(exe).arg(&f).output().expect("validator");
    assert!(
        out.status.success(),
        "openapi.json is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_vo_token_sees_nothing_of_another_vo_by_any_verb() {
    let mut d = day(7);
    let v = vms(&d.ch);
    let (me, other) = ("atlas", "cms");
    let token = d.tokens[me].clone();
    let mine: BTreeSet<&String> =
        v.vo.iter()
            .filter(|(_, vo)| *vo == me)
            .map(|(u, _)| u)
            .collect();
    let theirs: BTreeSet<&String> =
        v.vo.iter()
            .filter(|(_, vo)| *vo == other)
            .map(|(u, _)| u)
            .collect();
    assert!(!mine.is_empty() && !theirs.is_empty(), "both VOs have VMs");
    // Identifiers of the other VO that are not also the asker's (an address, a hostname
    // reused by a VM of both).
    let own_ids: BTreeSet<&String> = mine.iter().flat_map(|u| v.ids[*u].iter()).collect();
    let their_ids: BTreeSet<&String> = theirs
        .iter()
        .flat_map(|u| v.ids[*u].iter())
        .filter(|i| !own_ids.contains(i))
        .collect();
    // What the other VO's VMs are asked with.
    let mut asks: Vec<(String, String)> = Vec::new();
    let mut their_ips = BTreeSet::new();
    let mut their_hosts = BTreeSet::new();
    for u in &theirs {
        for id in &v.ids[*u] {
            if id.starts_with("10.") && !own_ids.contains(id) {
                their_ips.insert(id.clone());
            }
        }
    }
    for (kind, pairs) in questions(&d.ch) {
        let _ = kind;
        // Questions about the other VO's VMs: their address or host at that moment.
        for (k, val) in &pairs {
            if (k == "ip" && their_ips.contains(val)) || k == "host" {
                if k == "host" {
                    their_hosts.insert(val.clone());
                }
                let at = pairs
                    .iter()
                    .find(|(k, _)| k == "at")
                    .map(|p| p.1.clone())
                    .unwrap_or_default();
                asks.push((format!("{k}={}", enc(val)), at));
            }
        }
    }
    let windows = [
        ("2026-10-14T00:00:00Z", "2026-10-14T06:00:00Z"),
        ("2026-10-14T02:00:00Z", "2026-10-14T03:00:00Z"),
    ];
    let mut urls: Vec<String> = Vec::new();
    for (q, at) in asks.iter().take(12) {
        let at = enc(at);
        urls.push(format!("/api/v1/who?{q}&at={at}"));
        if !q.starts_with("mac") {
            urls.push(format!("/api/v1/report?{q}&at={at}"));
            urls.push(format!("/api/v1/report?{q}&at={at}&format=md"));
            urls.push(format!("/api/v1/report?{q}&at={at}&format=html"));
        }
    }
    // Reports about the VO's own addresses and about public ones (a router's SNAT address
    // without a port names the VMs of both VOs behind it) in every rendering: answered where
    // the VO has a VM there, and cut — checked by the leak scan below like every answer.
    let mut own_reports = Vec::new();
    let (mut own_asked, mut public_asked) = (0, 0);
    for (_, pairs) in questions(&d.ch) {
        let Some((_, ip)) = pairs.iter().find(|(k, _)| k == "ip") else {
            continue;
        };
        // The router's SNAT address (198.51.100.1) among the public ones.
        let is_public = ip.starts_with("198.51.100.") || ip.starts_with("203.0.113.");
        if is_public && (public_asked < 3 || ip == "198.51.100.1" && public_asked < 6) {
            public_asked += 1;
        } else if own_ids.contains(&ip) && own_asked < 3 {
            own_asked += 1;
        } else {
            continue;
        }
        let at = pairs
            .iter()
            .find(|(k, _)| k == "at")
            .map(|p| enc(&p.1))
            .unwrap_or_default();
        for f in ["json", "md", "html"] {
            own_reports.push(format!("/api/v1/report?ip={ip}&at={at}&format={f}"));
        }
    }
    assert!(
        !own_reports.is_empty(),
        "the challenge asks about the VO's own VMs"
    );
    urls.extend(own_reports.iter().cloned());
    for u in theirs.iter().take(6) {
        urls.push(format!("/api/v1/timeline?vm={u}"));
        urls.push(format!("/api/v1/timeline?vm={u}&format=ndjson"));
        urls.push(format!("/api/v1/timeline?vm={u}&format=csv"));
        urls.push(format!("/api/v1/search?q={u}"));
        for id in &v.ids[*u] {
            if !own_ids.contains(id) {
                urls.push(format!(
                    "/api/v1/search?q={}&limit=1000",
                    enc(&format!("\"{id}\""))
                ));
            }
        }
    }
    for ip in their_ips.iter().take(8) {
        urls.push(format!("/api/v1/timeline?ip={ip}"));
        urls.push(format!("/api/v1/search?q={ip}&limit=1000&format=ndjson"));
        urls.push(format!("/api/v1/who?ip={ip}&at=2026-10-14T03:00:00Z"));
        urls.push(format!("/api/v1/hunt?indicator={ip}"));
        for (f, t) in windows {
            urls.push(format!(
                "/api/v1/timeline?ip={ip}&from={}&to={}",
                enc(f),
                enc(t)
            ));
            urls.push(format!(
                "/api/v1/search?q=*&field={}&from={}&to={}&limit=5000",
                enc(&format!("src_ip={ip}")),
                enc(f),
                enc(t)
            ));
        }
    }
    for h in their_hosts.iter().take(6) {
        urls.push(format!("/api/v1/timeline?host={}", enc(h)));
        urls.push(format!("/api/v1/timeline?host={}&claimed=true", enc(h)));
        urls.push(format!("/api/v1/search?q=*&host={}&limit=5000", enc(h)));
    }
    for (f, t) in windows {
        urls.push(format!("/api/v1/check?from={}&to={}", enc(f), enc(t)));
        urls.push(format!(
            "/api/v1/search?q=*&from={}&to={}&limit=100000",
            enc(f),
            enc(t)
        ));
        urls.push(format!(
            "/api/v1/search?q=*&from={}&to={}&count=true",
            enc(f),
            enc(t)
        ));
        urls.push(format!(
            "/api/v1/timeline?user=pilot&from={}&to={}",
            enc(f),
            enc(t)
        ));
    }
    for o in [0, 50, 100, 5000] {
        urls.push(format!(
            "/api/v1/search?q=*&limit=100000&offset={o}&page_size=50"
        ));
        urls.push(format!(
            "/api/v1/timeline?user=pilot&offset={o}&page_size=50&format=ndjson"
        ));
    }
    urls.push("/api/v1/search?q=*&limit=100000&format=csv".into());
    urls.push("/api/v1/search?q=*&limit=100000&format=timesketch&fields=ecs".into());
    urls.push("/api/v1/timeline?user=pilot&format=jsonl".into());
    urls.push("/api/v1/check".into());
    urls.push("/api/v1/status".into());
    urls.push("/api/v1/audit".into());
    urls.push("/api/v1/report?ip=10.42.0.15&at=2026-10-14T02:53:05Z&format=html".into());
    let mut leaks = Vec::new();
    let mut by_status = BTreeMap::<u16, usize>::new();
    let mut own_seen = 0usize;
    let mut own_answers: BTreeMap<&String, (u16, String)> = BTreeMap::new();
    for u in &urls {
        let (s, body) = d.get(Some(&token), u);
        *by_status.entry(s).or_default() += 1;
        if own_reports.contains(u) {
            own_answers.insert(u, (s, String::from_utf8_lossy(&body).into_owned()));
        }
        assert!(
            s == 200 || s == 403 || s == 503,
            "{u}: {s} {}",
            String::from_utf8_lossy(&body)
        );
        let text = String::from_utf8_lossy(&body);
        for id in &their_ids {
            if occurs(&text, id) {
                leaks.push(format!("{u} -> {id}"));
            }
        }
        if mine.iter().any(|m| text.contains(m.as_str())) {
            own_seen += 1;
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks: {:#?}",
        leaks.len(),
        &leaks[..leaks.len().min(20)]
    );
    // The control: the site asking the same questions does see the other VO's identifiers
    // (the matrix asks about what exists, and the check above would find it).
    let mut site_sees = 0;
    // (md and html reports mirror the JSON ones: the control counts each question once.)
    for u in urls
        .iter()
        .filter(|u| !u.contains("status") && !u.contains("format=md") && !u.contains("format=html"))
        .take(60)
    {
        let (_, body) = d.get(Some(&d.tokens["site"]), u);
        let text = String::from_utf8_lossy(&body);
        if their_ids.iter().any(|id| occurs(&text, id)) {
            site_sees += 1;
        }
    }
    assert!(
        site_sees > 20,
        "the site sees the other VO in {site_sees} answers"
    );
    assert!(
        by_status.get(&200).copied().unwrap_or(0) > 10,
        "{by_status:?}"
    );
    assert!(
        by_status.get(&403).copied().unwrap_or(0) > 10,
        "{by_status:?}"
    );
    // The same questions answer the VO about its own VMs: scoping is not refusing everything.
    for u in mine.iter().take(3) {
        let (s, body) = d.get(Some(&token), &format!("/api/v1/timeline?vm={u}"));
        assert_eq!(s, 200);
        let t: Value = serde_json::from_slice(&body).expect("json");
        assert!(t["entries"].as_array().is_some_and(|e| !e.is_empty()));
        // Lanes count records before attribution: never given to a VO.
        let (s, body) = d.get(Some(&token), &format!("/api/v1/timeline?vm={u}&lanes=48"));
        assert_eq!(s, 200);
        let t: Value = serde_json::from_slice(&body).expect("json");
        assert!(t["entries"].as_array().is_some_and(|e| !e.is_empty()));
        assert!(t.get("lanes").is_none(), "lanes for a VO: {}", t["lanes"]);
    }
    let (s, body) = d.get(Some(&token), "/api/v1/search?q=*&limit=100000");
    assert_eq!(s, 200);
    let all: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        all["total"].as_u64().is_some_and(|n| n > 100),
        "its own records: {}",
        all["total"]
    );
    assert!(own_seen > 0);
    // Its own reports in md and html are answered (not refused) and name its VM.
    for (u, (s, text)) in own_answers.iter().filter(|(u, _)| !u.ends_with("json")) {
        let s = *s;
        if s == 200 {
            assert!(
                mine.iter().any(|m| text.contains(m.as_str())),
                "{u}: its own report names its VM"
            );
        } else {
            // The address's holder at that moment was not the VO's after all.
            assert_eq!(s, 403, "{u}: {text}");
        }
    }
    assert!(
        own_answers
            .iter()
            .any(|(u, (s, _))| u.ends_with("=md") && *s == 200),
        "at least one md report of its own VM answered"
    );
    // check: the VO's findings only, counted as such; the site's record counts withheld.
    let (s, body) = d.get(Some(&token), "/api/v1/check");
    assert_eq!(s, 200);
    let c: Value = serde_json::from_slice(&body).expect("json");
    let n: u64 = c["by_kind"]
        .as_object()
        .expect("by_kind")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(
        n as usize,
        c["findings"].as_array().expect("findings").len()
    );
    assert_eq!(c["examined"], serde_json::json!({}));
    let (_, body) = d.get(Some(&d.tokens["site"]), "/api/v1/check");
    let site_check: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        site_check["findings"].as_array().expect("findings").len()
            > c["findings"].as_array().expect("f").len(),
        "the site has findings the VO does not see"
    );
    // The site sees what the VO does not.
    let (s, body) = d.get(
        Some(&d.tokens["site"]),
        &format!("/api/v1/timeline?vm={}", theirs.iter().next().expect("vm")),
    );
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains(theirs.iter().next().expect("vm").as_str()));

    // Bad, unknown and revoked tokens: 401, each audited.
    let (s, _) = d.get(None, "/api/v1/search?q=*");
    assert_eq!(s, 401);
    let (s, _) = d.get(Some("pmk_not-a-token"), "/api/v1/search?q=*");
    assert_eq!(s, 401);
    let (s, _) = d.get(
        Some("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        "/api/v1/who?ip=10.42.0.15&at=2026-10-14T02:53:05Z",
    );
    assert_eq!(s, 401);
    ok(&d.data, &["api-token", "revoke", "cms"]);
    let (s, body) = d.get(Some(&d.tokens["cms"]), "/api/v1/check");
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&body));
    let audits = common::json(&d.data, &["audit"]);
    let list = audits["audits"].as_array().expect("audits");
    let refused: Vec<&Value> = list.iter().filter(|a| a["status"] == 401).collect();
    assert_eq!(refused.len(), 4, "every refused attempt is audited");
    assert!(
        refused
            .iter()
            .any(|a| a["reason"].as_str().is_some_and(|r| r.contains("revoked")))
    );
    let vo_refusals = list
        .iter()
        .filter(|a| a["status"] == 403 && a["role"] == "vo:atlas")
        .count();
    assert_eq!(vo_refusals, by_status.get(&403).copied().unwrap_or(0));
    // The VO's own audit view: only queries about its own VMs.
    let (s, body) = d.get(Some(&token), "/api/v1/audit");
    assert_eq!(s, 200);
    let mine_audits: Value = serde_json::from_slice(&body).expect("json");
    for a in mine_audits["audits"].as_array().expect("audits") {
        let vms = a["vms"].as_array().expect("vms");
        assert!(!vms.is_empty());
        assert!(
            vms.iter()
                .all(|x| mine.iter().any(|m| Some(m.as_str()) == x.as_str())),
            "{a}"
        );
    }
    assert!(!mine_audits["audits"].as_array().expect("a").is_empty());
    let user = common::json(&d.data, &["audit", "--user", "atlas"]);
    assert!(
        user["audits"]
            .as_array()
            .expect("a")
            .iter()
            .all(|a| a["user"] == "atlas")
    );

    // Tamper-evident: the ledger verifies with the audit records in it; a changed byte of the
    // last segment (where they are) is found.
    d.stop();
    ok(&d.data, &["verify"]);
    let seg = fs::read_dir(d.data.join("ledger"))
        .expect("ledger")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .max()
        .expect("a segment");
    let mut bytes = fs::read(&seg).expect("segment");
    let at = bytes.len() - 200;
    bytes[at] ^= 0x40;
    fs::write(&seg, bytes).expect("write");
    let out = common::pugmark(&d.data, &["verify"]);
    assert!(!out.status.success(), "verify must find the changed byte");
}

#[test]
fn a_hundred_concurrent_clients_are_answered_without_error() {
    let d = day(11);
    let qs_all = questions(&d.ch);
    let who: Vec<String> = qs_all
        .iter()
        .filter(|(k, _)| k == "who")
        .map(|(_, p)| {
            qs(&p
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>())
        })
        .collect();
    let base = d.base.clone();
    let tokens = [d.tokens["site"].clone(), d.tokens["atlas"].clone()];
    let errors = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..100 {
            let (base, who, tokens, errors) = (&base, &who, &tokens, &errors);
            s.spawn(move || {
                for i in 0..3 {
                    let q = &who[(c * 3 + i) % who.len()];
                    let t = &tokens[c % 2];
                    let (st, body) =
                        request(base, Some(t), "GET", &format!("/api/v1/who{q}"), None, None);
                    let fine = st == 200 || (c % 2 == 1 && st == 403);
                    if !fine || serde_json::from_slice::<Value>(&body).is_err() {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(errors.into_inner(), 0, "every client answered");
    let audits = common::json(&d.data, &["audit"]);
    assert_eq!(audits["total"], 300, "every query audited");
}

#[test]
fn serve_mounts_the_api_and_audits_through_its_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("serve.toml");
    fs::write(&config, docs_config()).expect("config");
    // The docs' block is a valid serve configuration.
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("group \"/atlas/security\" -> role vo:atlas"),
        "{text}"
    );
    // Every other TOML block of docs/API.md (the OIDC issuers of "Authentication") is a serve
    // configuration too: fed, exactly as written, to the program that reads it.
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md"))
        .expect("docs/API.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(
        blocks.len() >= 2,
        "docs/API.md shows the roles and the issuers"
    );
    for (i, b) in blocks.iter().enumerate() {
        let f = dir.path().join(format!("api-block{i}.toml"));
        fs::write(&f, b).expect("block");
        let out = Command::new(bin())
            .args(["serve", "--check-config", "--config"])
            .arg(&f)
            .output()
            .expect("check-config");
        assert!(
            out.status.success(),
            "docs/API.md toml block {i}: {}\n{b}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(
        &data,
        &["ingest", common::corpus_auth_log().to_str().expect("path")],
    );
    let token = day::token(&data, "admin", "site");
    let port = common::free_port();
    let mut child = day::start_serve_http(&data, &config, port);
    common::wait_for_port(port, "serve http");
    let base = format!("http://127.0.0.1:{port}");
    let cli = cli_json(
        &data,
        "search",
        &[("q", "sshd"), ("limit", "5")],
        &["--json"],
    );
    let (s, body) = request(
        &base,
        Some(&token),
        "GET",
        "/api/v1/search?q=sshd&limit=5",
        None,
        None,
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let api: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(api["hits"], cli["hits"]);
    let (s, body) = request(&base, Some(&token), "GET", "/api/v1/status", None, None);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let st: Value = serde_json::from_slice(&body).expect("json");
    assert!(st["samples"].as_array().is_some_and(|a| !a.is_empty()));
    // The same metrics as `pugmark status --json` (values move; the series are the same).
    let out = Command::new(bin())
        .args(["status", "--json", "--http", &format!("127.0.0.1:{port}")])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("json");
    let names = |v: &Value| -> BTreeSet<String> {
        v["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!("{}{}", s["name"], s["labels"]))
            .collect()
    };
    assert_eq!(names(&st), names(&cli));
    let (s, _) = request(
        &base,
        None,
        "GET",
        "/api/v1/who?ip=10.0.0.1&at=2026-10-14T00:00:00Z",
        None,
        None,
    );
    assert_eq!(s, 401);
    // pugmark ui refuses the data directory serve holds.
    let out = Command::new(bin())
        .args(["ui", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("ui");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pugmark serve"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let audits = common::json(&data, &["audit"]);
    let verbs: Vec<&str> = audits["audits"]
        .as_array()
        .expect("audits")
        .iter()
        .filter_map(|a| a["verb"].as_str())
        .collect();
    assert_eq!(verbs, ["search", "status", "who"]);
    ok(&data, &["verify"]);
}

/// The real OpenID Provider of crates/authn's tests (npm `oidc-provider`, installed by
/// scripts/test), started on loopback; None outside CI when it is not installed.
struct Op {
    child: Child,
    url: String,
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_op() -> Option<Op> {
    let npm = std::env::var_os("PUGMARK_NPM")
        .map_or_else(|| PathBuf::from("/var/cache/pugmark-npm"), PathBuf::from)
        .join("oidc-provider");
    if !npm
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "oidc-provider missing in CI: scripts/test installs it into {}",
            npm.display()
        );
        eprintln!("SKIPPED: npm oidc-provider not installed (scripts/test installs it)");
        return None;
    }
    // ESM resolves packages beside the script: the script next to a node_modules link.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("oidc-provider.mjs");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../authn/tests/oidc-provider.mjs"),
        &script,
    )
    .unwrap();
    std::os::unix::fs::symlink(npm.join("node_modules"), dir.path().join("node_modules")).unwrap();
    let mut child = Command::new("node")
        .arg(&script)
        .args(["0", "k1:RS256"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let line = common::first_line(&mut child, "oidc-provider", 120);
    let mut it = line.split_whitespace();
    assert_eq!(it.next(), Some("ready"), "provider did not start: {line:?}");
    let port = it.next().unwrap().to_string();
    let issuer = it.next().unwrap().to_string();
    Some(Op {
        child,
        url: format!("http://127.0.0.1:{port}"),
        issuer,
        _dir: dir,
    })
}

impl Op {
    /// A JWT access token by the client credentials grant, for `audience`.
    fn mint(&self, client: &str, audience: &str) -> String {
        let basic = witness::client::base64(format!("{client}:cli-secret").as_bytes());
        let mut resp = agent()
            .post(&format!("{}/token", self.url))
            .header("Authorization", &format!("Basic {basic}"))
            .send_form([("grant_type", "client_credentials"), ("resource", audience)])
            .expect("token request");
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_string()
    }
}

/// OIDC bearer tokens from a real provider reach the same roles and scoping as API tokens:
/// `alice` (`wlcg.groups` `/atlas`) maps to `vo:atlas` and sees her VO's VM but is told "not
/// yours" for the other VO's; `bob` (`groups` `cms-admins`) maps to `site`; a token for another
/// audience and a token whose groups map to no role are refused — all audited with the
/// token's issuer and subject.
#[test]
fn oidc_tokens_of_a_real_provider_get_the_roles_of_their_groups() {
    let Some(op) = start_op() else {
        return;
    };
    let aud = "https://pugmark.example.org";
    let mut d = day(7);
    let mut config = docs_config();
    config.push_str(&format!(
        "[[api.roles]]\ngroup = \"/atlas\"\nrole = \"vo:atlas\"\n\
         [[api.roles]]\ngroup = \"cms-admins\"\nrole = \"site\"\n\
         [auth]\n[[auth.oidc]]\nissuer = \"{}\"\naudience = \"{aud}\"\n",
        op.issuer
    ));
    fs::write(&d.config, &config).unwrap();
    d.stop();
    d.start_ui();
    let v = vms(&d.ch);
    // A VM of each VO and a moment it was alive: the `who` questions of the day.
    let mut mine = None;
    let mut theirs = None;
    for (_, pairs) in questions(&d.ch) {
        let get = |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.clone());
        let (Some(ip), Some(at)) = (get("ip"), get("at")) else {
            continue;
        };
        let w = cli_json(&d.data, "who", &[("ip", &ip), ("at", &at)], &["--json"]);
        let vos: BTreeSet<String> = w["matches"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["vm"]["uuid"].as_str())
            .filter_map(|u| v.vo.get(u).cloned())
            .collect();
        if vos.len() != 1 {
            continue;
        }
        let q = format!("/api/v1/who?ip={}&at={}", enc(&ip), enc(&at));
        match vos.iter().next().map(String::as_str) {
            Some("atlas") if mine.is_none() => mine = Some(q),
            Some("cms") if theirs.is_none() => theirs = Some(q),
            _ => {}
        }
    }
    let (mine, theirs) = (
        mine.expect("an atlas question"),
        theirs.expect("a cms question"),
    );
    let alice = op.mint("alice-cli", aud);
    let bob = op.mint("bob-cli", aud);
    let (s, body) = d.get(Some(&alice), &mine);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let (s, body) = d.get(Some(&alice), &theirs);
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not yours"));
    for q in [&mine, &theirs] {
        let (s, body) = d.get(Some(&bob), q);
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    }
    // Another audience: refused before any role is looked at.
    let other = op.mint("alice-cli", "https://elsewhere.example.org");
    let (s, _) = d.get(Some(&other), &mine);
    assert_eq!(s, 401);
    let audits = cli_json(&d.data, "audit", &[], &["--json"]);
    let rows = audits["audits"].as_array().unwrap();
    let by = |subject: &str, status: u64| {
        rows.iter()
            .filter(|r| r["subject"] == subject && r["status"] == status)
            .count()
    };
    assert!(by("alice-cli", 200) >= 1, "{audits}");
    assert!(by("alice-cli", 403) >= 1, "{audits}");
    assert!(by("bob-cli", 200) >= 2, "{audits}");
    assert!(
        rows.iter()
            .filter(|r| r["subject"] == "alice-cli")
            .all(|r| r["via"] == "oidc" && r["issuer"] == op.issuer.as_str()),
        "{audits}"
    );
    assert!(
        rows.iter()
            .any(|r| r["status"] == 401
                && r["reason"].as_str().is_some_and(|w| w.contains("audience"))),
        "{audits}"
    );
}
