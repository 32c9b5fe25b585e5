//! Issue 14, part 3: reports a responder can act on, exports to the tools sites use, and
//! hunt hits as MISP sightings — each against a generated challenge day and a real reader:
//!
//! - `report` in md, json and html on the day's C2 question: the answer first, the decisive
//!   record (the C2 connection, the challenge's ground truth), containment and the EGI steps
//!   with their deadlines, destinations, a filtered timeline that says what it left out,
//!   integrity; the same content in all three formats; the challenge still scores perfectly;
//! - `search`/`timeline --format csv` read back by Python's `csv` equal the `--json`
//!   records; Timesketch JSONL through Timesketch's own import client and the server's JSONL
//!   rules (tests/peers/timesketch_check.py); ECS names, types and allowed values against
//!   ECS's generated field list (tests/data/ecs, PROVENANCE.md);
//! - `hunt --misp-url`: every request checked against MISP's OpenAPI description by
//!   openapi-core in a loopback server (tests/peers/misp_sightings.py, tests/data/misp).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bin, free_port, ok, pugmark, require, wait_for_port, which};
use serde_json::Value;

struct Day {
    _dir: tempfile::TempDir,
    ch: PathBuf,
    data: PathBuf,
    answers: Vec<Value>,
    /// What `challenge run` printed.
    score: String,
}

/// The day attrib.rs uses (seed 7, 30 VMs, 6 hours), ingested and scored by `challenge run`.
fn day() -> Day {
    let dir = tempfile::tempdir().unwrap();
    let ch = dir.path().join("ch");
    let data = dir.path().join("data");
    let gen_out = Command::new(bin())
        .args([
            "challenge",
            "generate",
            "--seed",
            "7",
            "--vms",
            "30",
            "--hours",
            "6",
        ])
        .arg("--out")
        .arg(&ch)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(gen_out.status.success(), "{gen_out:?}");
    let run = Command::new(bin())
        .args(["challenge", "run"])
        .arg(&ch)
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let score = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{score}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answers: Vec<Value> =
        serde_json::from_str(&fs::read_to_string(ch.join("answers.json")).unwrap()).unwrap();
    Day {
        _dir: dir,
        ch,
        data,
        answers,
        score,
    }
}

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var("PUGMARK_VENV").unwrap_or_else(|_| "/var/cache/pugmark-venv".into());
    let py = Path::new(&venv).join("bin/python");
    let has = py.is_file()
        && Command::new(&py)
            .args(["-c", "import openapi_core, timesketch_import_client"])
            .status()
            .is_ok_and(|s| s.success());
    require(
        "openapi-core and timesketch-import-client (pugmark venv)",
        has.then_some(py),
    )
}

fn peer(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

fn test_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Runs a Python checker; it must succeed (its output explains a failure).
fn python_ok(py: &Path, args: &[&Path]) -> String {
    let out = Command::new(py).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// The C2 question of the day and its decisive connection: (question, c2 address, c2 port,
/// the connection's seq).
fn c2(d: &Day) -> (Value, String, u16, u64) {
    let q = d
        .answers
        .iter()
        .find(|q| q["kind"] == "report" && q["why"].as_str().unwrap().contains("C2"))
        .expect("the day has a C2 report question")
        .clone();
    let at = q["at"].as_str().unwrap();
    let second = at.trim_end_matches('Z');
    let line = q["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|c| c.starts_with(second))
        .expect("a connection at the moment asked about");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let (dst, dpt) = (field("DST="), field("DPT=").parse().unwrap());
    let hits = common::json(&d.data, &["search", &format!("ip:{dst}"), "--limit", "100"]);
    let seq = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["time"].as_str().unwrap().starts_with(second))
        .expect("the C2 connection is searchable")["seq"]
        .as_u64()
        .unwrap();
    (q, dst, dpt, seq)
}

#[test]
fn report_opens_with_the_answer_and_what_to_do() {
    let d = day();
    // The challenge scores the unfiltered sessions/connections lists: still all right.
    let (right, of) = d
        .score
        .lines()
        .find_map(|l| l.strip_prefix("challenge: "))
        .and_then(|l| l.split_once(" right"))
        .and_then(|(n, _)| n.split_once('/'))
        .expect("a score line");
    assert_eq!(right, of, "{}", d.score);
    let (q, c2_ip, c2_port, c2_seq) = c2(&d);
    let ip = q["ip"].as_str().unwrap();
    let at = q["at"].as_str().unwrap();
    let want_vm = q["expect"]["matches"][0]["vm_uuid"].as_str().unwrap();
    let discovered = "2026-10-14T07:00:00Z";
    let base = ["report", "--ip", ip, "--at", at, "--discovered", discovered];
    let fmt = |f: &str| {
        let mut a = base.to_vec();
        a.extend(["--format", f]);
        ok(&d.data, &a)
    };
    let j: Value = serde_json::from_str(&fmt("json")).unwrap();
    let md = fmt("md");
    let html = fmt("html");

    // Every key of the earlier contract is still there, with the lists unfiltered.
    for k in ["who", "vms", "window", "integrity", "answer", "procedure"] {
        assert!(j.get(k).is_some(), "report --json lost {k}");
    }
    let v = &j["vms"][0];
    for k in [
        "uuid",
        "observers",
        "sessions",
        "connections",
        "ambiguous",
        "jobs",
        "lifecycle",
        "other",
        "decisive",
        "destinations",
        "timeline",
    ] {
        assert!(v.get(k).is_some(), "vms[0] lost {k}");
    }
    assert_eq!(
        v["sessions"].as_array().unwrap().len(),
        q["sessions"].as_array().unwrap().len()
    );
    assert_eq!(
        v["connections"].as_array().unwrap().len(),
        q["connections"].as_array().unwrap().len()
    );
    // The answer: who and where.
    let a = &j["answer"][0];
    assert_eq!(a["vm"], want_vm);
    assert_eq!(a["hypervisor"], q["expect"]["matches"][0]["hypervisor"]);
    assert_eq!(a["owner_user_id"], q["expect"]["matches"][0]["user_id"]);
    assert_eq!(a["address"], ip);
    assert!(a["owner_email"].is_string(), "{a}");
    // Connection entries carry their fields, as the search hit's fields say.
    for c in v["connections"].as_array().unwrap() {
        for k in ["src_ip", "dst_ip", "proto", "seq", "observer"] {
            assert!(!c[k].is_null(), "connection entry without {k}: {c}");
        }
    }
    // The decisive record is the C2 connection, first, with its endpoints.
    let dec = &v["decisive"][0];
    assert_eq!(dec["seq"].as_u64(), Some(c2_seq), "{:#}", v["decisive"]);
    assert_eq!(dec["dst_ip"], c2_ip.as_str());
    assert_eq!(dec["dst_port"].as_u64(), Some(c2_port.into()));
    assert_eq!(dec["src_ip"], ip);
    assert_eq!(dec["offset_s"], 0);
    // Destinations: the C2 peer outside the site, once, at the moment.
    let dests = v["destinations"].as_array().unwrap();
    let c2d = dests
        .iter()
        .find(|x| x["address"] == c2_ip.as_str() && x["port"].as_u64() == Some(c2_port.into()))
        .expect("the C2 destination");
    assert_eq!(c2d["outside"], true);
    assert_eq!(c2d["count"], 1);
    assert_eq!(c2d["first_seq"].as_u64(), Some(c2_seq));
    assert!(dests[0]["outside"] == true, "outside destinations first");
    let conns_total: u64 = dests.iter().map(|x| x["count"].as_u64().unwrap()).sum();
    assert_eq!(
        conns_total as usize,
        v["connections"].as_array().unwrap().len()
    );
    assert!(
        dests.iter().any(|x| x["outside"] == false),
        "site services are summarised too"
    );
    // Containment and the EGI procedure, deadlines dated from the discovery.
    let steps = j["procedure"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7);
    assert_eq!(steps[0]["deadline"], "within 4 hours of discovery");
    assert_eq!(steps[0]["due"], "2026-10-14T11:00:00Z");
    assert_eq!(steps[1]["deadline"], "within 1 day of discovery");
    assert_eq!(steps[1]["due"], "2026-10-15T07:00:00Z");
    assert_eq!(
        steps[5]["deadline"],
        "within 1 month of incident resolution"
    );
    assert!(steps[1]["action"].as_str().unwrap().contains(want_vm));
    assert!(
        steps[0]["action"]
            .as_str()
            .unwrap()
            .contains(a["owner_email"].as_str().unwrap())
    );
    // The filtered timeline: no cron line away from the moment, and the count of what was
    // left out adds up with the unfiltered lists.
    let tl = v["timeline"]["entries"].as_array().unwrap();
    let cron_all = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap().contains("CROND"))
        .count();
    let cron_shown = tl
        .iter()
        .filter(|e| e["summary"].as_str().unwrap().contains("CROND"))
        .count();
    let filtered: BTreeMap<String, u64> = v["timeline"]["filtered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["reason"].as_str().unwrap().to_string(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(cron_all > 0, "the day has cron noise");
    let cron_left = filtered
        .iter()
        .find(|(r, _)| r.starts_with("cron"))
        .map_or(0, |(_, n)| *n) as usize;
    assert_eq!(cron_left + cron_shown, cron_all, "{filtered:?}");
    assert!(cron_shown <= 2, "{cron_shown} cron lines shown");
    let all_entries: usize = [
        "sessions",
        "connections",
        "ambiguous",
        "jobs",
        "lifecycle",
        "other",
    ]
    .iter()
    .map(|k| v[*k].as_array().unwrap().len())
    .sum();
    let left: u64 = filtered.values().sum();
    assert_eq!(tl.len() + left as usize, all_entries);
    assert!(
        tl.iter()
            .any(|e| e["decisive"] == true && e["seq"].as_u64() == Some(c2_seq))
    );

    // Markdown: the sections in the order a responder reads them, the same content.
    let order = [
        "## Answer",
        "## Decisive evidence",
        "## What to do",
        "### Containment",
        "### EGI CSIRT Security Incident Response Procedure",
        "## Destinations",
        "## Supporting timeline",
        "## Integrity",
        "### Ledger checkpoint and proofs",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|h| md.find(h).unwrap_or_else(|| panic!("{h} missing:\n{md}")))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    assert!(
        md.contains(&format!("**#{c2_seq} ")),
        "decisive highlighted"
    );
    assert!(md.contains("within 4 hours of discovery: by 2026-10-14T11:00:00Z"));
    assert!(md.contains("Left out as routine"));
    let md_timeline = &md[pos[6]..pos[7]];
    assert_eq!(
        md_timeline
            .lines()
            .filter(|l| l.contains("CROND") && l.contains(" #"))
            .count(),
        cron_shown
    );
    // HTML: the same, self-contained, printable.
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<style>") && html.contains("@media print"));
    assert!(
        !html.contains(" src=") && !html.contains("<link"),
        "no external resources"
    );
    assert!(html.contains("id=\"pugmark-proofs\""), "integrity embedded");
    assert!(html.contains("class=\"decisive\""));
    let html_file = d.ch.join("report.html");
    fs::write(&html_file, &html).unwrap();
    let python3 = require("python3", which("python3")).expect("python3");
    python_ok(&python3, &[&peer("html_balanced.py"), &html_file]);
    // The same records in all three: every decisive seq, destination and timeline entry.
    for e in tl {
        let seq = e["seq"].as_u64().unwrap();
        assert!(md.contains(&format!("#{seq} ")), "md lacks #{seq}");
        assert!(
            html.contains(&format!("<td>{seq}</td>")),
            "html lacks #{seq}"
        );
    }
    for x in dests {
        let addr = x["address"].as_str().unwrap();
        assert!(md.contains(&format!("| {addr} |")), "md lacks {addr}");
        assert!(html.contains(&format!(">{addr}<")), "html lacks {addr}");
    }
    for s in steps {
        let deadline = s["deadline"].as_str().unwrap_or("");
        assert!(md.contains(deadline) && html.contains(deadline));
    }
    // Integrity: the cited records carry proofs, checked offline.
    assert!(!j["integrity"]["records"].as_array().unwrap().is_empty());
    let report_file = d.ch.join("report.md");
    fs::write(&report_file, &md).unwrap();
    let pubkey = fs::read_to_string(d.data.join("keys/ledger.ed25519.pub")).unwrap();
    let out = Command::new(bin())
        .args(["proof", "check"])
        .arg(&report_file)
        .args(["--pubkey", pubkey.trim()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flattens a nested JSON object to dotted names.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

struct Ecs {
    types: BTreeMap<String, String>,
    allowed: BTreeMap<String, BTreeSet<String>>,
}

fn ecs() -> Ecs {
    let types = fs::read_to_string(test_data("ecs/fields.tsv"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    let allowed = fs::read_to_string(test_data("ecs/allowed_values.tsv"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, vals)| {
            (
                f.to_string(),
                vals.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect();
    Ecs { types, allowed }
}

impl Ecs {
    /// Problems of one flat ECS document: unknown names, values not of the field's type,
    /// values outside the allowed ones.
    fn check(&self, doc: &BTreeMap<String, Value>) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in doc {
            let ty = match self.types.get(k) {
                Some(t) => t.as_str(),
                // `labels` is ECS's object of custom keyword pairs.
                None if k.starts_with("labels.") && !k[7..].contains('.') => "keyword",
                None => {
                    p.push(format!("{k} is not an ECS field"));
                    continue;
                }
            };
            // ECS fields may hold arrays of their type.
            let values: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                x => vec![x],
            };
            for x in values {
                let fine = match ty {
                    "ip" => x
                        .as_str()
                        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                    "long" => x.is_u64() || x.is_i64(),
                    "date" => x
                        .as_str()
                        .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
                    "keyword" | "match_only_text" | "wildcard" | "text" | "constant_keyword" => {
                        x.is_string()
                    }
                    _ => true,
                };
                if !fine {
                    p.push(format!("{k} ({ty}): {x}"));
                }
                if let (Some(allowed), Some(s)) = (self.allowed.get(k), x.as_str())
                    && !allowed.contains(s)
                {
                    p.push(format!("{k}: {s} is not an allowed value"));
                }
            }
        }
        p
    }
}

#[test]
fn exports_read_back_equal_the_json() {
    let d = day();
    let (q, c2_ip, _, c2_seq) = c2(&d);
    let ip = q["ip"].as_str().unwrap();
    let vm = q["expect"]["matches"][0]["vm_uuid"].as_str().unwrap();
    let dir = d.ch.join("exports");
    fs::create_dir_all(&dir).unwrap();
    let save = |name: &str, args: &[&str]| {
        let p = dir.join(name);
        fs::write(&p, ok(&d.data, args)).unwrap();
        p
    };
    let search = ["search", "ip:10.42.0.0/24", "--limit", "400"];
    let with = |extra: &[&'static str]| {
        let mut a = search.to_vec();
        a.extend_from_slice(extra);
        a
    };
    let s_json = save("search.json", &with(&["--json"]));
    let s_csv = save("search.csv", &with(&["--format", "csv"]));
    let s_jsonl = save("search.jsonl", &with(&["--format", "jsonl"]));
    let s_ts = save(
        "search-timesketch.jsonl",
        &with(&["--format", "timesketch"]),
    );
    let s_ecs = save(
        "search-ecs.jsonl",
        &with(&["--format", "jsonl", "--fields", "ecs"]),
    );
    let s_ecs_csv = save(
        "search-ecs.csv",
        &with(&["--format", "csv", "--fields", "ecs"]),
    );
    let tl = ["timeline", "--vm", vm];
    let twith = |extra: &[&'static str]| {
        let mut a = tl.to_vec();
        a.extend_from_slice(extra);
        a
    };
    let t_json = save("timeline.json", &twith(&["--json"]));
    let t_csv = save("timeline.csv", &twith(&["--format", "csv"]));
    let t_ts = save(
        "timeline-timesketch-ecs.jsonl",
        &twith(&["--format", "timesketch", "--fields", "ecs"]),
    );
    let t_ecs = save(
        "timeline-ecs.jsonl",
        &twith(&["--format", "jsonl", "--fields", "ecs"]),
    );

    // CSV through Python's csv module equals the --json records, key by key.
    let python3 = require("python3", which("python3")).expect("python3");
    let checker = peer("csv_vs_json.py");
    let said = python_ok(&python3, &[&checker, &s_csv, &s_json, Path::new("hits")]);
    assert!(said.contains("400 rows equal"), "{said}");
    let said = python_ok(&python3, &[&checker, &t_csv, &t_json, Path::new("entries")]);
    assert!(said.contains("rows equal"), "{said}");
    // The checker is not blind: a changed cell is found.
    let broken = dir.join("broken.csv");
    fs::write(
        &broken,
        fs::read_to_string(&s_csv)
            .unwrap()
            .replacen(&c2_ip, "192.0.2.254", 1),
    )
    .unwrap();
    let hits: Value = serde_json::from_str(&fs::read_to_string(&s_json).unwrap()).unwrap();
    if hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["message"].as_str().unwrap().contains(&c2_ip))
    {
        let out = Command::new(&python3)
            .args([&checker, &broken, &s_json, Path::new("hits")])
            .output()
            .unwrap();
        assert!(!out.status.success(), "a changed CSV passed");
    }
    // No hit, no row: an empty file.
    assert_eq!(
        ok(
            &d.data,
            &["search", "nothing-matches-this-xyz", "--format", "csv"]
        ),
        ""
    );
    // JSONL: one --json hit per line.
    let lines: Vec<Value> = fs::read_to_string(&s_jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&Value::Array(lines), &hits["hits"]);

    // Timesketch: its import client and its server's JSONL rules accept every line.
    if let Some(py) = venv_python() {
        let ts = peer("timesketch_check.py");
        assert!(python_ok(&py, &[&ts, &s_ts]).contains("400 lines ok"));
        python_ok(&py, &[&ts, &t_ts]);
        // …and refuse a line without `datetime`.
        let text = fs::read_to_string(&s_ts).unwrap();
        let mut first: serde_json::Map<String, Value> =
            serde_json::from_str(text.lines().next().unwrap()).unwrap();
        first.remove("datetime");
        let bad = dir.join("bad-timesketch.jsonl");
        fs::write(&bad, format!("{}\n", Value::Object(first))).unwrap();
        let out = Command::new(&py).args([&ts, &bad]).output().unwrap();
        assert!(!out.status.success(), "a line without datetime passed");
    }

    // ECS: every name is ECS's, every value of its type, categories among the allowed.
    let e = ecs();
    let mut docs = 0;
    let mut c2_seen = false;
    for path in [&s_ecs, &t_ecs] {
        for l in fs::read_to_string(path).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut flat = BTreeMap::new();
            flatten("", &v, &mut flat);
            let problems = e.check(&flat);
            assert!(problems.is_empty(), "{problems:?} in {l}");
            docs += 1;
            if flat.get("event.sequence").and_then(Value::as_u64) == Some(c2_seq) {
                c2_seen = true;
                assert_eq!(flat["source.ip"], ip);
                assert_eq!(flat["destination.ip"], c2_ip.as_str());
                assert!(flat["destination.port"].is_u64());
                assert_eq!(flat["network.transport"], "tcp");
                assert_eq!(flat["observer.type"], "hypervisor");
                assert_eq!(flat["event.category"], serde_json::json!(["network"]));
            }
        }
    }
    assert!(docs > 400 && c2_seen, "{docs} docs, C2 seen {c2_seen}");
    // Timesketch with ECS names: the same names, flat.
    for l in fs::read_to_string(&t_ts).unwrap().lines() {
        let v: BTreeMap<String, Value> = serde_json::from_str(l).unwrap();
        let ecs_part: BTreeMap<String, Value> = v
            .into_iter()
            .filter(|(k, _)| !["datetime", "timestamp", "timestamp_desc"].contains(&k.as_str()))
            .collect();
        let problems = e.check(&ecs_part);
        assert!(problems.is_empty(), "{problems:?}");
    }
    // The ECS CSV's columns are ECS names.
    let header = fs::read_to_string(&s_ecs_csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    for col in header.split(',') {
        assert!(
            e.types.contains_key(col) || col.starts_with("labels."),
            "CSV column {col} is not ECS"
        );
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one raw HTTP POST and returns the status code.
fn post(port: u16, path: &str, key: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {key}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hunt_hits_become_misp_sightings_as_misp_describes_them() {
    let Some(py) = venv_python() else { return };
    let d = day();
    let (_, c2_ip, _, c2_seq) = c2(&d);
    let dir = d.ch.join("misp");
    fs::create_dir_all(&dir).unwrap();
    let iocs = dir.join("iocs.txt");
    // The C2 address, a scanner the VMs' sshd logged, and a name nobody saw.
    fs::write(
        &iocs,
        format!("{c2_ip}\n203.0.113.201\nnever-seen.example\n"),
    )
    .unwrap();
    let key = "pugmark-test-key-0123456789";
    let key_file = dir.join("misp.key");
    fs::write(&key_file, format!("{key}\n")).unwrap();
    let log = dir.join("requests.jsonl");
    let port = free_port();
    let _server = Server(
        Command::new(&py)
            .arg(peer("misp_sightings.py"))
            .arg(test_data("misp/sightings-openapi.json"))
            .arg(port.to_string())
            .arg(key)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the MISP stand-in");
    let url = format!("http://127.0.0.1:{port}");
    let hunt = |key_file: &Path| {
        pugmark(
            &d.data,
            &[
                "hunt",
                "--iocs",
                iocs.to_str().unwrap(),
                "--json",
                "--misp-url",
                &url,
                "--misp-key-file",
                key_file.to_str().unwrap(),
            ],
        )
    };
    let out = hunt(&key_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    // What MISP should have been told: per indicator with hits, the latest hit's time.
    let mut want: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for h in answer["hits"].as_array().unwrap() {
        let t: jiff::Timestamp = h["time"].as_str().unwrap().parse().unwrap();
        let e = want
            .entry(h["indicator"].as_str().unwrap().to_string())
            .or_insert((i64::MIN, 0));
        e.0 = e.0.max(t.as_second());
        e.1 += 1;
    }
    assert!(want.contains_key(&c2_ip) && want.contains_key("203.0.113.201"));
    assert!(!want.contains_key("never-seen.example"));
    assert!(
        answer["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["seq"].as_u64() == Some(c2_seq))
    );
    let requests: Vec<Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(requests.len(), want.len(), "{requests:#?}");
    for r in &requests {
        assert_eq!(r["ok"], true, "MISP's description refuses {r:#}");
        assert_eq!(r["path"], "/sightings/add");
        let value = r["body"]["values"][0].as_str().unwrap();
        let (last, n) = want[value];
        assert_eq!(r["body"]["timestamp"], last.to_string());
        assert_eq!(r["body"]["type"], "0");
        assert!(
            r["body"]["source"]
                .as_str()
                .unwrap()
                .contains(&format!("{n} hit(s)"))
        );
    }
    // docs/REPORTS.md shows the body sent for this day's C2 address: it is the one sent.
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/REPORTS.md"))
            .unwrap();
    let block = doc
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a JSON block in docs/REPORTS.md");
    let shown: Value = serde_json::from_str(block).unwrap();
    let sent = requests
        .iter()
        .find(|r| r["body"]["values"][0] == c2_ip.as_str())
        .unwrap();
    assert_eq!(sent["body"], shown, "docs/REPORTS.md's example body");
    // A wrong key: MISP refuses, pugmark says so and fails.
    let bad_key = dir.join("bad.key");
    fs::write(&bad_key, "not-the-key\n").unwrap();
    let out = hunt(&bad_key);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
    // The stand-in is not blind: a timestamp as a number is not what MISP describes.
    let status = post(
        port,
        "/sightings/add",
        key,
        r#"{"values": ["192.0.2.1"], "timestamp": 1791955831}"#,
    );
    assert_eq!(status, 400);
}
