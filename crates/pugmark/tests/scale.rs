//! The fast paths of `hunt` and `check` (issue 5's scale targets) against their slow oracles,
//! on a small generated site day with flows: a challenge day from `pugmark challenge
//! generate`, NetFlow v9 derived from its netfilter log and an indicator file, both by the
//! benchmark's own generator (`bench/gen/src/hunt.rs`, compiled in here), so the test runs
//! what the benchmark measures, at a size CI can afford.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

#[allow(dead_code)]
#[path = "../../../bench/gen/src/hunt.rs"]
mod huntgen;

fn pugmark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pugmark"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pugmark")
}

fn ok(args: &[&str]) -> String {
    let out = pugmark(args);
    assert!(
        out.status.success(),
        "pugmark {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A 40-VM, 6-hour day with 4 flows per netfilter line, and 2,000 indicators.
fn site_day(dir: &Path) -> (String, String) {
    let ch = dir.join("ch");
    let chs = ch.to_str().unwrap();
    ok(&[
        "challenge",
        "generate",
        "--seed",
        "11",
        "--vms",
        "40",
        "--hours",
        "6",
        "--out",
        chs,
    ]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(ch.join("challenge.json")).unwrap()).unwrap();
    let year = manifest["year"].as_i64().unwrap();
    let pcap = dir.join("flows.pcap");
    huntgen::flows(
        ch.join("hypervisor-netfilter.log").to_str().unwrap(),
        year,
        4,
        11,
        pcap.to_str().unwrap(),
    )
    .unwrap();
    huntgen::iocs(
        11,
        ch.join("vm-syslog.log").to_str().unwrap(),
        dir.join("iocs").to_str().unwrap(),
        2000,
    )
    .unwrap();
    let data = dir.join("data");
    let datas = data.to_str().unwrap().to_string();
    let r = json(&["challenge", "run", chs, "--data", &datas, "--json"]);
    assert_eq!(r["wrong"], 0, "{r}");
    ok(&["ingest", "--data", &datas, pcap.to_str().unwrap()]);
    (datas, dir.join("iocs").to_str().unwrap().to_string())
}

#[test]
fn fast_hunt_and_check_equal_their_oracles_on_a_day_with_flows() {
    let dir = tempfile::tempdir().unwrap();
    let (data, iocs) = site_day(dir.path());
    let flows: u64 = ok(&[
        "search", "*", "--class", "net.flow", "--count", "--data", &data,
    ])
    .trim()
    .parse()
    .unwrap();
    assert!(flows > 10_000, "{flows} flows");

    // check: fast columns against every event fetched and decoded.
    let fast = json(&["check", "--json", "--data", &data]);
    let slow = json(&["check", "--from-events", "--json", "--data", &data]);
    assert_eq!(fast, slow);
    assert!(
        fast["examined"]["connections"].as_u64().unwrap() > flows,
        "{}",
        fast["examined"]
    );
    // A window cutting the day, and a narrow silence so silent VMs are found.
    let args = [
        "check",
        "--from",
        "2026-10-14T01:30:00Z",
        "--to",
        "2026-10-14T04:00:00Z",
        "--silence",
        "1m",
        "--json",
        "--data",
        &data,
    ];
    let fast = json(&args);
    let mut with_events = args.to_vec();
    with_events.push("--from-events");
    assert_eq!(fast, json(&with_events));
    assert!(
        fast["by_kind"]["silent_vm"].as_u64().unwrap_or(0) > 0,
        "{}",
        fast["by_kind"]
    );

    // hunt: batched against one query per indicator, plain and MISP, limits and windows.
    let plain = format!("{iocs}/iocs.txt");
    let misp = format!("{iocs}/iocs.misp.json");
    for extra in [
        vec![],
        vec!["--limit", "3"],
        vec![
            "--from",
            "2026-10-14T02:00:00Z",
            "--to",
            "2026-10-14T03:00:00Z",
        ],
    ] {
        let mut args = vec!["hunt", "--iocs", &plain, "--json", "--data", &data];
        args.extend(&extra);
        let fast = json(&args);
        let mut each = args.clone();
        each.push("--one-query-per-indicator");
        assert_eq!(fast, json(&each), "{extra:?}");
        let hits = fast["hits"].as_array().unwrap();
        assert!(!hits.is_empty(), "{extra:?}");
        if extra.is_empty() {
            assert!(hits.iter().any(|h| h["observer"] == "network"));
            assert!(hits.iter().any(|h| h["observer"] == "vm"));
            // A flow hit is resolved to the VM on its site side.
            assert!(hits.iter().any(
                |h| h["observer"] == "network" && !h["matches"].as_array().unwrap().is_empty()
            ));
            let mut m = args.clone();
            m[2] = &misp;
            assert_eq!(fast, json(&m), "MISP and plain hold the same indicators");
        }
        if extra.first() == Some(&"--limit") {
            assert_eq!(fast["truncated"], true);
        }
    }
}
