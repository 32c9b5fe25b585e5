//! Derived flows as readers see them (docs/design/flow-derivation.md, step 4).
//!
//! The first test makes a flow store of derived rows by hand from one that `ingest` built
//! with a record per flow (`PUGMARK_FLOW_RECORDS=1`): each datagram's flows become the rows its decoding
//! emitted (`FlowStore::add_derived`), at the same position and chain head. Every answer must
//! then be what it was with legacy rows, but for the citation: a derived flow is cited by the
//! datagram that holds its bytes (`seq`, the record an inclusion proof covers) and its place
//! there (`flow: {flowset, record}`), and no process-internal flow position reaches a reader.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::path::Path;

use serde_json::Value;

mod common;
use common::*;

/// `pugmark ARGS --data DATA` with `env` set (and the per-flow switch unset unless set
/// there), which must succeed; its stdout.
fn run_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .env_remove("PUGMARK_FLOW_RECORDS")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pugmark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pugmark` storing datagrams only (the views derive their flows): the default.
fn ok_deriving(data: &Path, args: &[&str]) -> String {
    run_env(data, args, &[])
}

/// `pugmark` storing a `netflow-record` per flow, as builds before derivation did (the
/// oracle's other side: `PUGMARK_FLOW_RECORDS=1`).
fn ok_records(data: &Path, args: &[&str]) -> String {
    run_env(data, args, &[("PUGMARK_FLOW_RECORDS", "1")])
}

/// `pugmark` deriving flows, with 4 KiB ledger segments (retention removes whole segments).
fn small_segments(data: &Path, args: &[&str]) -> String {
    run_env(data, args, &[("PUGMARK_TEST_SEGMENT_BYTES", "4096")])
}

fn corpus_file(rel: &str) -> String {
    corpus().join("netflow").join(rel).display().to_string()
}

/// Rewrites `data`'s flow store: every legacy row (its own `netflow-record`) becomes the
/// derived row of its datagram (`(D, 1 + k)`, k its order among the datagram's flows).
fn derive_in_place(data: &Path) -> usize {
    let dir = data.join("flows");
    let old = flowstore::FlowStore::open_read(&dir).unwrap();
    let (pos, head) = old.last_position().unwrap();
    let mut rows = Vec::new();
    old.scan(&flowstore::FlowFilter::default(), &mut |r| {
        rows.push(r.clone())
    })
    .unwrap();
    drop(old);
    assert!(
        rows.iter()
            .all(|r| r.sub == 0 && r.seq > r.rec.datagram_seq)
    );
    fs::remove_dir_all(&dir).unwrap();
    let mut s = flowstore::FlowStore::open(&dir).unwrap();
    let mut i = 0;
    while i < rows.len() {
        let d = rows[i].rec.datagram_seq;
        let mut group = Vec::new();
        while i < rows.len() && rows[i].rec.datagram_seq == d {
            group.push((rows[i].observer.clone(), rows[i].rec.clone()));
            i += 1;
        }
        assert_eq!(s.add_derived(d, group).unwrap(), 0);
    }
    s.commit_at(pos, head).unwrap();
    rows.len()
}

/// The answer's `key` list with each element's citation taken out: `(datagram, "F.R")` read
/// from the legacy hit's fields, or from the derived hit's `seq` and `flow` (which must agree
/// with its fields); everything else of the element is kept for comparison.
fn uncite(items: &[Value], derived: bool) -> Vec<(String, String, Value)> {
    items
        .iter()
        .map(|h| {
            let f = &h["fields"];
            let dseq = f["datagram_seq"].as_str().unwrap_or("").to_string();
            let at = f["datagram_record"].as_str().unwrap_or("").to_string();
            let mut rest = h.clone();
            let o = rest.as_object_mut().unwrap();
            let seq = o.remove("seq").unwrap();
            let flow = o.remove("flow");
            if derived && !dseq.is_empty() {
                assert_eq!(seq.as_u64().unwrap().to_string(), dseq, "{h}");
                let flow = flow.expect("a derived flow names its place");
                assert_eq!(format!("{}.{}", flow["flowset"], flow["record"]), at, "{h}");
            } else {
                assert!(flow.is_none(), "{h}");
                if dseq.is_empty() {
                    return (seq.to_string(), String::new(), rest);
                }
            }
            (dseq, at, rest)
        })
        .collect()
}

#[test]
fn derived_flows_are_cited_by_their_datagram_and_answer_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // ORACLES.md §1b and §1d: 4 + 46 flows, templates before their data; a record per flow.
    ok_records(
        &data,
        &[
            "ingest",
            &corpus_file("akvorado_pcaps/template.pcap"),
            &corpus_file("akvorado_pcaps/data.pcap"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_tpl.dat"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data258.dat"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data259.dat"),
        ],
    );
    let search = [
        "search", "*", "--class", "net.flow", "--limit", "1000", "--json",
    ];
    let before: Value = serde_json::from_str(&ok(&data, &search)).unwrap();
    let hits_before = before["hits"].as_array().unwrap().clone();
    assert_eq!(hits_before.len(), 50);
    let ip = hits_before[0]["fields"]["src_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let timeline = ["timeline", "--ip", &ip, "--limit", "1000", "--json"];
    let tl_before: Value = serde_json::from_str(&ok(&data, &timeline)).unwrap();

    assert_eq!(derive_in_place(&data), 50);

    let after: Value = serde_json::from_str(&ok(&data, &search)).unwrap();
    assert!(!query::cite::has_flow_position(&after));
    let hits_after = after["hits"].as_array().unwrap();
    // The same flows, in the same order, with the same events: only the citation moved from
    // the per-flow record to the datagram and the flow's place in it.
    assert_eq!(uncite(hits_after, true), uncite(&hits_before, false));
    // Each cited datagram is a ledger record holding the flow's bytes (a datagram record).
    let d = hits_after[0]["seq"].as_u64().unwrap().to_string();
    let dgram: Value = serde_json::from_str(&ok(
        &data,
        &[
            "search",
            "*",
            "--field",
            &format!("datagram_seq={d}"),
            "--json",
        ],
    ))
    .unwrap();
    assert!(!query::cite::has_flow_position(&dgram));
    assert!(
        dgram["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["seq"].as_u64().unwrap().to_string() == d),
        "every flow of datagram #{d} is cited by it: {dgram}"
    );
    // A count is the same.
    let count = |d: &Path| {
        ok(d, &["search", "*", "--class", "net.flow", "--count"])
            .trim()
            .to_string()
    };
    assert_eq!(count(&data), "50");

    // The timeline (entries carry no fields): a legacy entry's record mapped to its flow's
    // datagram and place through the search above; a derived one cites them itself.
    let tl_after: Value = serde_json::from_str(&ok(&data, &timeline)).unwrap();
    assert!(!query::cite::has_flow_position(&tl_after));
    let place: std::collections::HashMap<u64, (String, String)> = hits_before
        .iter()
        .map(|h| {
            let f = &h["fields"];
            (
                h["seq"].as_u64().unwrap(),
                (
                    f["datagram_seq"].as_str().unwrap().to_string(),
                    f["datagram_record"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let entries = |v: &Value| v["entries"].as_array().cloned().unwrap_or_default();
    let keyed = |v: &Value| -> Vec<(String, String, Value)> {
        entries(v)
            .into_iter()
            .map(|mut e| {
                let o = e.as_object_mut().unwrap();
                let seq = o.remove("seq").unwrap().as_u64().unwrap();
                let (d, at) = match o.remove("flow") {
                    Some(f) => (seq.to_string(), format!("{}.{}", f["flowset"], f["record"])),
                    None => place
                        .get(&seq)
                        .cloned()
                        .unwrap_or((seq.to_string(), String::new())),
                };
                (d, at, e)
            })
            .collect()
    };
    let (tb, ta) = (keyed(&tl_before), keyed(&tl_after));
    assert!(
        tb.iter().any(|(_, at, _)| !at.is_empty()),
        "the timeline shows flows"
    );
    assert_eq!(ta, tb);
}

/// A hit as two directories holding the same inputs can agree on it: what depends on the
/// ledger's positions (`seq`, `flow`, the datagram's position in the fields, the per-flow
/// record's bytes) or on when the run received its input (`received`, `collected`, and
/// `time` when it is the receive time) left out; a flow is known by its datagram's origin
/// (capture frame or file) and its place in it.
fn portable(h: &Value) -> Value {
    let mut h = h.clone();
    let o = h.as_object_mut().unwrap();
    if o.get("time") == o.get("received") {
        o.remove("time");
    }
    for k in ["seq", "flow", "received", "collected", "raw"] {
        o.remove(k);
    }
    if let Some(f) = o.get_mut("fields").and_then(Value::as_object_mut) {
        f.remove("datagram_seq");
    }
    h
}

/// The derivation oracle (docs/design/flow-derivation.md §5): the same captures and payload
/// files, in two `ingest` runs each, into a directory that stores a record per flow and one
/// that stores datagrams only; every flow answer is the same flow for flow, in the same
/// order, the derived ones cited by their datagram. The second run starts from the flow
/// store's saved decoder state; `reindex` derives the same flows again from the ledger.
#[test]
fn datagrams_alone_answer_as_datagrams_with_flow_records() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("records"), dir.path().join("derived"));
    // A directory a build before derivation wrote first, this one after (the marker in the
    // middle of the ledger: the first run's flows stay records, the second's are derived).
    let c = dir.path().join("upgraded");
    let runs = [
        vec![
            corpus_file("akvorado_pcaps/template.pcap"),
            corpus_file("akvorado_pcaps/data.pcap"),
        ],
        vec![
            corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_tpl.dat"),
            corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data258.dat"),
            corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data259.dat"),
            // A data set whose template never comes: stored, waiting, never a flow.
            corpus_file(
                "logstash-codec-netflow_raw_udp_payloads/ipfix_test_openbsd_pflow_data.dat",
            ),
        ],
    ];
    // The run's flow figures: per file (but `stored`, which counts ledger records) and the
    // sets that never got their template. Derived, they come from the views' deriver.
    let figures = |out: &str| -> Value {
        let v: Value = serde_json::from_str(out).unwrap();
        let files: Vec<Value> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| serde_json::json!([f["path"], f["bytes"], f["lines"], f["netflow"]]))
            .collect();
        serde_json::json!([files, v["flow_sets_without_template"]])
    };
    let mut total_flows = 0;
    let mut waiting = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let mut args = vec!["ingest", "--json"];
        args.extend(run.iter().map(String::as_str));
        if i == 0 {
            ok_records(&c, &args);
        } else {
            ok_deriving(&c, &args);
        }
        let (fa, fb) = (
            figures(&ok_records(&a, &args)),
            figures(&ok_deriving(&b, &args)),
        );
        assert_eq!(fb, fa);
        total_flows += fa[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[3]["flows"].as_u64().unwrap())
            .sum::<u64>();
        waiting.push(fa[1].as_u64().unwrap_or(0));
    }
    // The pflow set's template never comes: counted at the second run's end, both ways.
    assert_eq!(waiting, [0, 1]);
    let search = [
        "search", "*", "--class", "net.flow", "--limit", "1000", "--json",
    ];
    let hits = |d: &Path| -> Vec<Value> {
        let v: Value = serde_json::from_str(&ok(d, &search)).unwrap();
        assert!(!query::cite::has_flow_position(&v));
        v["hits"].as_array().unwrap().clone()
    };
    let (ha, hb) = (hits(&a), hits(&b));
    assert_eq!(ha.len(), 50);
    assert_eq!(total_flows, 50, "the summaries count every flow once");
    assert!(ha.iter().all(|h| h.get("flow").is_none()));
    // Derived: cited by the datagram that holds the flow's bytes.
    for h in &hb {
        assert_eq!(
            h["seq"].as_u64().unwrap().to_string(),
            h["fields"]["datagram_seq"].as_str().unwrap(),
            "{h}"
        );
        assert_eq!(
            format!("{}.{}", h["flow"]["flowset"], h["flow"]["record"]),
            h["fields"]["datagram_record"].as_str().unwrap()
        );
    }
    let port = |hs: &[Value]| hs.iter().map(portable).collect::<Vec<_>>();
    assert_eq!(port(&hb), port(&ha));
    let hc = hits(&c);
    assert_eq!(port(&hc), port(&ha));
    let derived_in_c = hc.iter().filter(|h| h.get("flow").is_some()).count();
    assert_eq!(
        derived_in_c, 46,
        "the second run's flows (ORACLES §1d) are derived"
    );
    // The derived ledger holds the datagrams and no per-flow record.
    let records = |d: &Path| -> u64 {
        let v: Value = serde_json::from_str(&ok(d, &["verify", "--json"])).unwrap();
        v["records"].as_u64().unwrap_or(0)
    };
    assert!(
        records(&b) + 50 <= records(&a) + 4,
        "{} vs {}",
        records(&b),
        records(&a)
    );
    let manifest: Value =
        serde_json::from_slice(&fs::read(b.join("flows/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], 2);
    assert!(manifest["decoder"]["file"].is_string());
    // Rebuilt from the ledger alone: the same flows.
    ok(&b, &["reindex"]);
    ok(&c, &["reindex"]);
    assert_eq!(port(&hits(&c)), port(&ha));
    assert_eq!(port(&hits(&b)), port(&ha));
}

/// docs/design/flow-derivation.md §2.6: retention removes the segment whose datagram taught a
/// capture's template, and keeps the data datagrams; `reindex` then derives the same flows
/// as before from what is left, because the retention record carries the decoders' state
/// after the removed range. (Without it the data sets would wait for a template that is
/// gone: no flow at all.)
#[test]
fn retention_carries_the_templates_a_removed_segment_taught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Incompressible filler between the template and the data: segments of their own.
    let filler = dir.path().join("filler.log");
    let mut text = String::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for j in 0..120 {
        let mut f = String::new();
        for _ in 0..6 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            f.push_str(&format!("{x:016x}"));
        }
        text.push_str(&format!(
            "<13>Oct 11 22:14:{:02} host app: line {j} {f}\n",
            j % 60
        ));
    }
    fs::write(&filler, text).unwrap();
    let (tpl, dat) = (
        corpus_file("akvorado_pcaps/template.pcap"),
        corpus_file("akvorado_pcaps/data.pcap"),
    );
    // One run: the import decoder keeps the template from the first file for the last.
    small_segments(&data, &["ingest", &tpl, filler.to_str().unwrap(), &dat]);
    let flows = |d: &Path| -> Vec<Value> {
        let v: Value =
            serde_json::from_str(&small_segments(d, &["flows", "--limit", "0", "--json"])).unwrap();
        v["flows"].as_array().unwrap().clone()
    };
    let before = flows(&data);
    assert!(!before.is_empty());
    // Where the template and the data datagrams are.
    let all: Value = serde_json::from_str(&small_segments(
        &data,
        &["search", "*", "--limit", "1000", "--json"],
    ))
    .unwrap();
    let at = |name: &str| -> Vec<u64> {
        all["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                h["origin"]["listener"]
                    .as_str()
                    .is_some_and(|l| l.contains(name))
                    && h.get("flow").is_none()
            })
            .map(|h| h["seq"].as_u64().unwrap())
            .collect()
    };
    let (t, d) = (at("template.pcap"), at("data.pcap"));
    assert_eq!(t.len(), 1, "{all}");
    assert!(!d.is_empty());
    let (d0, d1) = (d.iter().min().unwrap(), d.iter().max().unwrap());
    small_segments(
        &data,
        &[
            "retention",
            "hold",
            "--seq",
            &format!("{d0}..{d1}"),
            "--reason",
            "the data datagrams",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r: Value = serde_json::from_str(&small_segments(
        &data,
        &["retention", "--keep", "1s", "--json"],
    ))
    .unwrap();
    let removed = r["removed"].as_array().unwrap();
    assert!(
        removed.iter().any(|s| {
            let (first, n) = (s[1].as_u64().unwrap(), s[2].as_u64().unwrap());
            first <= t[0] && t[0] < first + n
        }),
        "the template's segment is removed: {r}"
    );
    // The template datagram is gone from the ledger; its flows come back whole.
    small_segments(&data, &["reindex"]);
    assert_eq!(flows(&data), before);
    assert!(
        ok(&data, &["verify"]).contains("removed by policy"),
        "the removal is on record"
    );
}

/// docs/design/flow-derivation.md §2.5: `search` finds every acknowledged record, and a
/// datagram's flows with it, while the views trail the ledger (a live `serve` commits them
/// about a second later). The views are put back to where they stood after a first run:
/// the index alone (the flow store holds the second run's flows), then the index and the
/// flow store (the search derives them from the store's saved decoder state). Every answer
/// equals the one after `reindex`.
#[test]
fn search_finds_the_flows_of_datagrams_the_views_have_not_caught_up_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok_deriving(
        &data,
        &[
            "ingest",
            &corpus_file("akvorado_pcaps/template.pcap"),
            &corpus_file("akvorado_pcaps/data.pcap"),
        ],
    );
    let (index_then, flows_then) = (dir.path().join("index-then"), dir.path().join("flows-then"));
    copy_dir(&data.join("index"), &index_then);
    copy_dir(&data.join("flows"), &flows_then);
    ok_deriving(
        &data,
        &[
            "ingest",
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_tpl.dat"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data258.dat"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data259.dat"),
        ],
    );
    let queries: [&[&str]; 5] = [
        &["search", "*", "--count"],
        &["search", "*", "--class", "net.flow", "--count"],
        &[
            "search", "*", "--class", "net.flow", "--limit", "1000", "--json",
        ],
        &["search", "*", "--limit", "1000", "--json"],
        &["search", "proto:udp OR tcp", "--limit", "20"],
    ];
    let answer = |q: &[&str]| {
        let text = ok_deriving(&data, q);
        match serde_json::from_str::<Value>(&text) {
            Ok(mut v) => {
                if let Some(m) = v.as_object_mut() {
                    m.remove("views");
                }
                assert!(!query::cite::has_flow_position(&v), "{v}");
                v.to_string()
            }
            Err(_) => text,
        }
    };
    let current: Vec<String> = queries.iter().map(|q| answer(q)).collect();
    assert_eq!(current[1].trim(), "50");
    let put_back = |what: &str, from: &Path| {
        fs::remove_dir_all(data.join(what)).unwrap();
        copy_dir(from, &data.join(what));
    };
    // The index behind; the flow store holds the 46 flows past it.
    put_back("index", &index_then);
    let out = pugmark(&data, &["search", "*", "--count"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trails the ledger"),
        "the index really trails"
    );
    for (q, want) in queries.iter().zip(&current) {
        assert_eq!(&answer(q), want, "index behind: {q:?}");
    }
    // Both behind: the 46 flows are derived by the search from the store's saved state.
    put_back("flows", &flows_then);
    for (q, want) in queries.iter().zip(&current) {
        assert_eq!(&answer(q), want, "index and flow store behind: {q:?}");
    }
    ok(&data, &["reindex"]);
    for (q, want) in queries.iter().zip(&current) {
        assert_eq!(&answer(q), want, "after reindex: {q:?}");
    }
}

/// docs/design/flow-derivation.md step 7: a case stars, annotates and tags a flow by its
/// datagram and place (`--flow F.R`, the API's `"flow"`), two flows of one datagram apart;
/// `case show` gives each flow's own event, text cites `#D/F.R`; a place the datagram does
/// not hold is refused; `reindex` (which rebuilds the case store) shows the same case.
#[test]
fn a_case_stars_a_flow_of_a_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok_deriving(
        &data,
        &[
            "ingest",
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_tpl.dat"),
            &corpus_file("logstash-codec-netflow_raw_udp_payloads/ipfix_test_mikrotik_data258.dat"),
        ],
    );
    let v: Value = serde_json::from_str(&ok(
        &data,
        &[
            "search", "*", "--class", "net.flow", "--limit", "100", "--json",
        ],
    ))
    .unwrap();
    let hits = v["hits"].as_array().unwrap();
    let (a, b) = (&hits[0], &hits[1]);
    assert_eq!(a["seq"], b["seq"], "two flows of one datagram");
    let d = a["seq"].as_u64().unwrap().to_string();
    let place = |h: &Value| format!("{}.{}", h["flow"]["flowset"], h["flow"]["record"]);
    let (fa, fb) = (place(a), place(b));
    assert_ne!(fa, fb);
    let case: Value = serde_json::from_str(&ok(
        &data,
        &["case", "create", "--title", "two flows", "--json"],
    ))
    .unwrap();
    let id = case["id"].as_str().unwrap().to_string();
    for f in [&fa, &fb] {
        ok(&data, &["case", "star", &id, &d, "--flow", f]);
    }
    ok(
        &data,
        &[
            "case",
            "annotate",
            &id,
            "the first flow",
            "--seq",
            &d,
            "--flow",
            &fa,
        ],
    );
    ok(
        &data,
        &["case", "tag", &id, "exfil", "--seq", &d, "--flow", &fb],
    );
    let nowhere = pugmark(&data, &["case", "star", &id, &d, "--flow", "7.999"]);
    assert!(
        !nowhere.status.success(),
        "a flow the datagram does not hold"
    );
    let show = |data: &Path| -> Value {
        serde_json::from_str(&ok(data, &["case", "show", &id, "--json"])).unwrap()
    };
    let c = show(&data);
    let stars = c["stars"].as_array().unwrap();
    assert_eq!(stars.len(), 2, "{c}");
    for (s, h) in stars.iter().zip([a, b]) {
        assert_eq!(s["record"]["seq"], h["seq"]);
        assert_eq!(s["record"]["flow"], h["flow"]);
        assert_eq!(s["record"]["message"], h["message"], "the flow's own event");
    }
    let notes = c["annotations"].as_array().unwrap();
    assert_eq!(notes[0]["record"]["flow"], a["flow"]);
    assert_eq!(c["record_tags"][0]["flow"], fb);
    let text = ok(&data, &["case", "show", &id]);
    assert!(text.contains(&format!("star #{d}/{fa}")), "{text}");
    assert!(text.contains(&format!("note on #{d}/{fa}")), "{text}");
    ok(&data, &["case", "star", &id, &d, "--flow", &fb, "--unstar"]);
    let c = show(&data);
    assert_eq!(c["stars"].as_array().unwrap().len(), 1);
    assert_eq!(c["stars"][0]["record"]["flow"], a["flow"]);
    ok(&data, &["reindex"]);
    assert_eq!(show(&data), c);
}
