//! Flows are read from the columnar flow store, not the search index (issue 16): every verb that
//! reads `net.flow` events (search, timeline, report, hunt, check) must answer exactly as it
//! did when each flow was an index document.
//!
//! The oracle is the old path itself: the same files ingested with `PUGMARK_INDEX_FLOWS=1`
//! (the views as builds before issue 16 wrote them, every flow also an index document) and the
//! flow store removed, so the readers answer from the index alone, as they did. The answers of
//! a data directory built today must be equal, verb by verb; so must those of the old
//! directory with its flow store kept (a store built before: the index's flow documents are
//! then left aside and the flows come from the store, no `reindex` needed).
//!
//! Input: the corpus's NetFlow captures and payloads, a generated day of NetFlow v5 exports
//! from two exporters (a pcap written here: 2000 flows between site VMs and outside
//! addresses), VM notifications (who held the addresses) and syslog lines naming the same
//! addresses (so answers merge index hits and flows in time order).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::oracle::*;
use common::*;

/// 2026-10-14T00:00:00Z.
const DAY: u32 = 1_791_936_000;

/// A NetFlow v5 datagram exported at `secs` holding `n` flows of the last minute.
fn v5(rng: &mut Rng, secs: u32, seq: u32, n: usize) -> Vec<u8> {
    let uptime: u32 = 3_600_000;
    let mut d = Vec::new();
    d.extend_from_slice(&5u16.to_be_bytes());
    d.extend_from_slice(&(n as u16).to_be_bytes());
    d.extend_from_slice(&uptime.to_be_bytes());
    d.extend_from_slice(&secs.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 0]);
    let outside = [
        [198, 51, 100, 7],
        [198, 51, 100, 8],
        [203, 0, 113, 9],
        [192, 0, 2, 77],
    ];
    for _ in 0..n {
        let vm = [10, 0, 0, 1 + rng.below(12) as u8];
        let far = if rng.below(3) == 0 {
            outside[rng.below(4) as usize]
        } else {
            [100, 64, rng.below(4) as u8, rng.below(200) as u8]
        };
        let (src, dst) = if rng.below(2) == 0 {
            (vm, far)
        } else {
            (far, vm)
        };
        let proto: u8 = [6, 6, 6, 17, 17, 1][rng.below(6) as usize];
        let dport: u16 = match proto {
            1 => 0x0800,
            _ => [22, 53, 80, 443, 8080][rng.below(5) as usize],
        };
        let sport: u16 = if proto == 1 {
            0
        } else {
            32768 + rng.below(20000) as u16
        };
        let last = uptime - rng.below(1000) as u32;
        let first = last - rng.below(59_000) as u32;
        d.extend_from_slice(&src);
        d.extend_from_slice(&dst);
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&(1 + rng.below(50) as u32).to_be_bytes());
        d.extend_from_slice(&(60 + rng.below(100_000) as u32).to_be_bytes());
        d.extend_from_slice(&first.to_be_bytes());
        d.extend_from_slice(&last.to_be_bytes());
        d.extend_from_slice(&sport.to_be_bytes());
        d.extend_from_slice(&dport.to_be_bytes());
        let flags = if proto == 6 { 0x1b } else { 0 };
        d.extend_from_slice(&[0, flags, proto, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    d
}

/// A pcap (Ethernet/IPv4/UDP to port 2055) of `datagrams`: (exporter, capture time, payload).
fn pcap(datagrams: &[([u8; 4], u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (exporter, secs, payload) in datagrams {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(exporter);
        frame.extend_from_slice(&[127, 0, 0, 1]);
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&2055u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

const VM_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const VM_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

/// The site's files: what every data directory of the test ingests, in this order.
fn inputs(dir: &Path) -> Vec<String> {
    let notifs = dir.join("notifications.jsonl");
    let lines = [
        nova_notification(
            "instance.create.end",
            "2026-10-14 08:00:00.000000",
            VM_A,
            &["10.0.0.5"],
        ),
        nova_notification(
            "instance.delete.end",
            "2026-10-14 10:00:00.000000",
            VM_A,
            &[],
        ),
        nova_notification(
            "instance.create.end",
            "2026-10-14 10:30:00.000000",
            VM_B,
            &["10.0.0.5"],
        ),
    ];
    std::fs::write(&notifs, lines.join("\n") + "\n").unwrap();
    // Syslog naming the same addresses (and the words flows hold: tcp, bytes).
    let syslog = dir.join("syslog.log");
    let mut text = String::new();
    for (i, h) in [6u32, 9, 9, 10, 12, 18].iter().enumerate() {
        text.push_str(&format!(
            "<38>1 2026-10-14T{h:02}:{:02}:00Z cmp1 sshd 12{i} - - Accepted password for bob from 198.51.100.7 port 4000{i} ssh2\n",
            10 + i
        ));
        text.push_str(&format!(
            "<4>1 2026-10-14T{h:02}:{:02}:30Z cmp1 kernel - - - fw IN=eth0 OUT= SRC=10.0.0.5 DST=203.0.113.9 LEN=60 PROTO=TCP SPT=4444 DPT=443 tcp bytes\n",
            10 + i
        ));
    }
    std::fs::write(&syslog, text).unwrap();
    // A day of exports: two exporters, a datagram of 30 flows every ~21 minutes each.
    let mut rng = Rng(16);
    let mut dgrams = Vec::new();
    for i in 0..67u32 {
        let secs = DAY + 600 + i * 1280;
        let exporter = if i % 2 == 0 {
            [192, 0, 2, 1]
        } else {
            [192, 0, 2, 2]
        };
        dgrams.push((exporter, secs, v5(&mut rng, secs, i * 30, 30)));
    }
    let day = dir.join("day.pcap");
    std::fs::write(&day, pcap(&dgrams)).unwrap();
    let ak = |rel: &str| corpus().join("netflow/akvorado_pcaps").join(rel);
    let ld = |rel: &str| {
        corpus()
            .join("netflow/logstash-codec-netflow_raw_udp_payloads")
            .join(rel)
    };
    [
        notifs,
        syslog,
        day,
        ak("template.pcap"),
        ak("data.pcap"),
        ld("ipfix_test_mikrotik_tpl.dat"),
        ld("ipfix_test_mikrotik_data258.dat"),
        ld("ipfix_test_mikrotik_data259.dat"),
    ]
    .iter()
    .map(|p| p.display().to_string())
    .collect()
}

fn ingest(data: &Path, files: &[String], flows_in_index: bool) {
    let mut cmd = Command::new(bin());
    // Flows as records of their own, which the index path can hold (the derivation oracle
    // is tests/derived_flows.rs).
    cmd.arg("ingest")
        .args(files)
        .arg("--data")
        .arg(data)
        .env("PUGMARK_FLOW_RECORDS", "1");
    if flows_in_index {
        cmd.env("PUGMARK_INDEX_FLOWS", "1");
    } else {
        cmd.env_remove("PUGMARK_INDEX_FLOWS");
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn every_verb_reads_flows_from_the_flow_store_as_it_read_them_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let files = inputs(dir.path());
    let new = dir.path().join("new");
    let old = dir.path().join("old");
    let kept = dir.path().join("kept");
    ingest(&new, &files, false);
    ingest(&kept, &files, true);
    ingest(&old, &files, true);
    // The old path: no flow store, the index's flow documents answer.
    std::fs::remove_dir_all(old.join("flows")).unwrap();
    let n_flows = count(&old, &["*", "--class", "net.flow"]);
    assert_eq!(n_flows, 67 * 30 + 4 + 46);
    let docs = |d: &Path| -> u64 {
        let v = answer(d, &["search", "*", "--count", "--json"]);
        v["total"].as_u64().unwrap()
    };
    assert_eq!(docs(&new), docs(&old));
    let iocs = dir.path().join("iocs.txt");
    std::fs::write(
        &iocs,
        "198.51.100.7\n203.0.113.0/24\n10.0.0.5\n192.0.2.2\nevil.example.org\n100.64.9.9\n",
    )
    .unwrap();
    let iocs = iocs.display().to_string();
    let queries: Vec<Vec<&str>> = vec![
        vec!["*"],
        vec!["*", "--class", "net.flow"],
        vec!["*", "--class", "net.flow", "--limit", "7"],
        vec!["198.51.100.7"],
        vec!["198.51.100.7", "--limit", "3"],
        vec![
            "ip:10.0.0.0/24",
            "--from",
            "2026-10-14T09:00:00Z",
            "--to",
            "2026-10-14T11:00:00Z",
        ],
        vec!["ip:100.64.0.0/16", "--class", "net.flow"],
        vec!["dst_port:443"],
        vec!["proto:udp", "--limit", "20"],
        vec!["tcp"],
        vec!["tcp", "--limit", "10"],
        vec!["\"packets=1 \""],
        vec!["bytes NOT tcp"],
        vec!["host:192.0.2.1"],
        vec!["observer:network", "--to", "2026-10-14T03:00:00Z"],
        vec!["10.0.0.5 OR sshd"],
        vec!["src_ip:198.51.100.0/24"],
        vec!["NOT 10.0.0.5", "--class", "net.flow", "--limit", "50"],
        vec!["*", "--field", "flow_version=10"],
        vec!["icmp type"],
        vec!["bob"],
    ];
    let mut n_compared = 0;
    for q in &queries {
        for count_only in [false, true] {
            let mut a = vec!["search"];
            a.extend_from_slice(q);
            a.push("--json");
            if count_only {
                a.push("--count");
            } else if !q.contains(&"--limit") {
                a.extend_from_slice(&["--limit", "100000"]);
            }
            let want = answer(&old, &a);
            same(&answer(&new, &a), &want, &format!("{a:?}"));
            same(
                &answer(&kept, &a),
                &want,
                &format!("{a:?} (store built before)"),
            );
            n_compared += 1;
        }
    }
    let verbs = verb_questions(
        &["10.0.0.5", "198.51.100.7"],
        &[VM_A, VM_B],
        ("10.0.0.5", "2026-10-14T09:40:00Z"),
        &iocs,
        "2026-10-14T10:00:00Z",
        "10.0.0.0/24",
    );
    for a in &verbs {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let want = answer(&old, &a);
        same(&answer(&new, &a), &want, &format!("{a:?}"));
        same(
            &answer(&kept, &a),
            &want,
            &format!("{a:?} (store built before)"),
        );
        n_compared += 1;
    }
    // The comparison is not vacuous: flows are in the answers.
    let tl = answer(&new, &["timeline", "--ip", "10.0.0.5", "--json"]);
    let flows_in_tl = tl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "netflow")
        .count();
    assert!(flows_in_tl > 100, "{flows_in_tl}");
    let h = answer(&new, &["hunt", "--iocs", &iocs, "--json"]);
    assert!(
        h["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["observer"] == "network"),
        "{h}"
    );
    assert!(n_compared > 40);
    // `timeline --lanes`: every record of the window counted per observer and slice from the
    // index and the flow store, however few entries --limit fetched; the oracle is the
    // entries of the whole timeline sliced the same way.
    for subject in [
        ["--ip", "10.0.0.5"],
        ["--ip", "198.51.100.7"],
        ["--vm", VM_A],
    ] {
        let whole = answer(
            &old,
            &[
                "timeline", subject[0], subject[1], "--limit", "100000", "--json",
            ],
        );
        assert_eq!(whole["truncated"], false);
        let times: Vec<(i128, String)> = whole["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "event")
            .map(|e| {
                let t: jiff::Timestamp = e["time"].as_str().unwrap().parse().unwrap();
                (
                    t.as_nanosecond(),
                    e["observer"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let (lo, hi) = (
            times.iter().map(|t| t.0).min().unwrap(),
            times.iter().map(|t| t.0).max().unwrap(),
        );
        let slices = 24usize;
        let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (t, o) in &times {
            let i = ((t - lo) * slices as i128 / (hi - lo + 1)) as usize;
            want.entry(o.clone()).or_insert_with(|| vec![0; slices])[i] += 1;
        }
        for d in [&new, &kept, &old] {
            let a = [
                "timeline", subject[0], subject[1], "--limit", "5", "--lanes", "24", "--json",
            ];
            let v = answer(d, &a);
            assert_eq!(
                v["truncated"], true,
                "{a:?}: the lanes must not come from the entries"
            );
            let lanes = &v["lanes"];
            let got: BTreeMap<String, Vec<u64>> =
                serde_json::from_value(lanes["counts"].clone()).unwrap();
            assert_eq!(got, want, "{a:?} in {}", d.display());
            assert_eq!(lanes["total"], times.len() as u64, "{a:?}");
            assert_eq!(lanes["complete"], true);
            assert_eq!(lanes["slices"], slices);
        }
    }
    // Without --lanes the answer has no `lanes` (the JSON of the verb as it was).
    assert!(
        answer(&new, &["timeline", "--vm", VM_A, "--json"])
            .get("lanes")
            .is_none()
    );
    // `reindex` of the old directory: flows leave the index, answers stay.
    ok(&kept, &["reindex"]);
    for q in &queries {
        let mut a = vec!["search"];
        a.extend_from_slice(q);
        a.push("--json");
        a.push("--count");
        same(
            &answer(&kept, &a),
            &answer(&old, &a),
            &format!("{a:?} after reindex"),
        );
    }
    // Flows are not index documents any more (in a directory built today, or reindexed):
    // without the flow store, the index alone knows none.
    for d in [&new, &kept] {
        std::fs::remove_dir_all(d.join("flows")).unwrap();
        assert_eq!(count(d, &["*", "--class", "net.flow"]), 0);
        assert_eq!(docs(d) + n_flows, docs(&old));
    }
}
