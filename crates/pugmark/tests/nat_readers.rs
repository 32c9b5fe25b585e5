//! NAT records (conntrack and ulogd2 events) are read from the fact store's NAT blocks, not
//! the search index and one `nat_obs` row each (issue 12): every verb that reads them — search,
//! `who --ip --port`, `who` without `--port` (the ambiguous list), timeline, report, hunt,
//! check — must answer exactly as it did.
//!
//! The oracle is the old path itself: the same files ingested with `PUGMARK_INDEX_NAT=1` (the
//! views as builds before wrote them: each NAT record an index document and a `nat_obs` fact
//! row, no blocks). The answers of a data directory built today must be equal, verb by verb,
//! and again after `pugmark reindex` (the blocks rebuilt from the ledger).
//!
//! Input: the decoder's real conntrack and ulogd2 samples (`crates/decode/testdata/nat`: written
//! by conntrack 1.4.7 and ulogd 2.0.8), a generated day of conntrack events through a router's
//! SNAT address (bare lines and forwarded as RFC 5424 syslog by a network node), the same shape
//! stored under observer `vm` (a search finds it, `who` must not believe it), the VMs' nova
//! notifications (one inside address moving between two VMs) and syslog naming the addresses.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::oracle::*;
use common::*;

const VM_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const VM_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const VM_C: &str = "cccccccc-0000-4000-8000-00000000000c";
const PUBLIC: &str = "192.0.2.254";
/// 2026-12-06T00:00:00Z (the decoder samples are from 06:50:57 that day).
const DAY: u64 = 1_796_515_200;

/// A day of SNATed connections as `conntrack -E -o timestamp,extended,id` prints them: NEW and
/// (mostly) DESTROY, some DESTROYs lost, public ports reused.
fn conntrack_day(rng: &mut Rng, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        // 01:00–11:00: far from any moment this test runs at (receive times are `NOW` below).
        let t = DAY + 3600 + rng.below(10 * 3600);
        let inside = ["10.20.0.5", "10.20.0.6", "10.20.0.7"][rng.below(3) as usize];
        let sport = 30000 + rng.below(20000);
        let peer = format!("198.51.100.{}", 1 + rng.below(20));
        let (proto, num, dport) = if rng.below(4) == 0 {
            ("udp", 17, 53)
        } else {
            ("tcp", 6, [443, 80, 22][rng.below(3) as usize])
        };
        // Few public ports: many connections share each over the day.
        let public_port = 40000 + rng.below(40);
        let id = 1_000_000 + i as u64;
        let state = if proto == "tcp" { " SYN_SENT" } else { "" };
        let timeout = if proto == "tcp" { 120 } else { 30 };
        let usec = rng.below(1_000_000);
        out.push((
            t,
            format!(
                "[{t}.{usec:06}]\t    [NEW] ipv4     2 {proto}      {num} {timeout}{state} src={inside} dst={peer} sport={sport} dport={dport} [UNREPLIED] src={peer} dst={PUBLIC} sport={dport} dport={public_port} id={id}"
            ),
        ));
        if rng.below(10) != 0 {
            let life = 1 + rng.below(600);
            let end = t + life;
            out.push((
                end,
                format!(
                    "[{end}.{usec:06}]\t[DESTROY] ipv4     2 {proto}      {num} src={inside} dst={peer} sport={sport} dport={dport} src={peer} dst={PUBLIC} sport={dport} dport={public_port} [ASSURED] id={id} delta-time={life}"
                ),
            ));
        }
    }
    out.sort();
    out
}

fn iso(t: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(t).unwrap())
        .unwrap()
        .to_string()
}

/// The site's files (path, observer): what every data directory ingests, in this order.
fn inputs(dir: &Path) -> Vec<(String, Option<&'static str>)> {
    let notifs = dir.join("notifications.jsonl");
    let lines = [
        nova_notification(
            "instance.create.end",
            "2026-12-06 00:30:00.000000",
            VM_A,
            &["10.20.0.5"],
        ),
        nova_notification(
            "instance.create.end",
            "2026-12-06 00:40:00.000000",
            VM_B,
            &["10.20.0.6"],
        ),
        nova_notification(
            "instance.delete.end",
            "2026-12-06 06:00:00.000000",
            VM_A,
            &[],
        ),
        nova_notification(
            "instance.create.end",
            "2026-12-06 06:10:00.000000",
            VM_C,
            &["10.20.0.5"],
        ),
    ];
    std::fs::write(&notifs, lines.join("\n") + "\n").unwrap();
    let mut rng = Rng(12);
    let day = conntrack_day(&mut rng, 1500);
    let bare = dir.join("conntrack.log");
    let text: String = day[..day.len() - 300]
        .iter()
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, text).unwrap();
    // The last part forwarded by the network node's rsyslog (tab escaped as #011).
    let fwd = dir.join("netnode.log");
    let text: String = day[day.len() - 300..]
        .iter()
        .map(|(t, l)| {
            format!(
                "<30>1 {} netnode1 conntrack - - - {}\n",
                iso(*t),
                l.replace('\t', "#011")
            )
        })
        .collect();
    std::fs::write(&fwd, text).unwrap();
    // A VM's user writing conntrack-shaped lines: searchable, never a translation.
    let forged = dir.join("forged.log");
    let mut rng2 = Rng(99);
    let text: String = conntrack_day(&mut rng2, 40)
        .iter()
        .map(|(_, l)| format!("{}\n", l.replace("10.20.0.", "10.20.0.1")))
        .collect();
    std::fs::write(&forged, text).unwrap();
    let syslog = dir.join("syslog.log");
    let mut text = String::new();
    for (i, h) in [6u32, 9, 11, 13, 18].iter().enumerate() {
        text.push_str(&format!(
            "<38>1 2026-12-06T{h:02}:{:02}:00Z cmp1 sshd 12{i} - - Accepted password for bob from 198.51.100.7 port 4000{i} ssh2\n",
            10 + i
        ));
        text.push_str(&format!(
            "<4>1 2026-12-06T{h:02}:{:02}:30Z cmp1 kernel - - - fw IN=eth0 OUT= SRC=10.20.0.5 DST=198.51.100.7 LEN=60 PROTO=TCP SPT=4444 DPT=443 tcp\n",
            10 + i
        ));
    }
    std::fs::write(&syslog, text).unwrap();
    let nat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/testdata/nat");
    let s = |p: &Path| p.display().to_string();
    vec![
        (s(&notifs), None),
        (s(&syslog), None),
        (s(&nat.join("conntrack-extended.log")), Some("network")),
        (s(&nat.join("conntrack-plain.log")), Some("network")),
        (s(&nat.join("ulogd-nfct.json")), Some("network")),
        (s(&nat.join("ulogd-logemu.log")), Some("network")),
        (s(&bare), Some("network")),
        (s(&fwd), Some("network")),
        (s(&forged), Some("vm")),
    ]
}

fn ingest(data: &Path, files: &[(String, Option<&str>)], old: bool) {
    for (f, observer) in files {
        let mut cmd = Command::new(bin());
        cmd.arg("ingest").arg(f).arg("--data").arg(data);
        if let Some(o) = observer {
            cmd.args(["--observer", o]);
        }
        if old {
            cmd.env("PUGMARK_INDEX_NAT", "1");
        } else {
            cmd.env_remove("PUGMARK_INDEX_NAT");
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn every_verb_reads_nat_records_from_the_fact_store_as_it_read_them_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let files = inputs(dir.path());
    let new = dir.path().join("new");
    let old = dir.path().join("old");
    ingest(&new, &files, false);
    ingest(&old, &files, true);
    let docs = |d: &Path| -> u64 {
        let v = answer(d, &["search", "*", "--count", "--json"]);
        v["total"].as_u64().unwrap()
    };
    let total = docs(&old);
    assert_eq!(docs(&new), total);
    assert!(total > 2700, "{total}");
    let iocs = dir.path().join("iocs.txt");
    std::fs::write(
        &iocs,
        "198.51.100.7\n192.0.2.254\n10.20.0.0/24\nevil.example.org\n2001:db8::fe\n198.51.100.200\n",
    )
    .unwrap();
    let iocs = iocs.display().to_string();
    let queries: Vec<Vec<&str>> = vec![
        vec!["*"],
        vec!["*", "--class", "net.connection"],
        vec!["*", "--class", "net.connection", "--limit", "9"],
        vec!["192.0.2.254"],
        vec!["10.20.0.5", "--limit", "3"],
        vec![
            "ip:198.51.100.0/24",
            "--from",
            "2026-12-06T09:00:00Z",
            "--to",
            "2026-12-06T11:00:00Z",
        ],
        vec!["ip:2001:db8::/32"],
        vec!["SYN_SENT"],
        vec!["syn_sent OR sshd"],
        vec!["\"[NEW] ipv4\""],
        vec!["destroy", "--limit", "20"],
        vec!["nat_port:40001"],
        vec!["nat_ip:192.0.2.254", "--limit", "50"],
        vec!["dst_port:53"],
        vec!["proto:udp", "--limit", "20"],
        vec!["source:conntrack", "--limit", "10"],
        vec!["observer:vm"],
        vec!["host:netnode1"],
        vec!["netnode1"],
        vec!["app:conntrack", "--limit", "5"],
        vec![
            "tcp NOT established",
            "--class",
            "net.connection",
            "--limit",
            "30",
        ],
        vec![
            "NOT 10.20.0.6",
            "--class",
            "net.connection",
            "--limit",
            "40",
        ],
        vec!["bob"],
        vec!["ulogd OR netfilter"],
        vec!["*", "--field", "nat_kind=snat", "--limit", "15"],
        // Fields a conntrack line cannot give (rows rebuilt from their line are skipped
        // unparsed; forwarded RFC 5424 rows keep theirs), and a field against a network.
        vec!["vm_uuid:\"aaaaaaaa-0000-4000-8000-00000000000a\""],
        vec!["claimed_vm_uuid:\"aaaaaaaa-0000-4000-8000-00000000000a\""],
        vec!["src_ip:10.20.0.0/16", "--limit", "25"],
        // Address leaves under AND / OR / NOT (rows passed over by their addresses first).
        vec!["ip:10.20.0.0/16 syn_sent", "--limit", "30"],
        vec!["10.20.0.6 OR 198.51.100.7"],
        vec!["ip:10.20.0.5 NOT destroy"],
        vec!["netnode1 OR ip:10.20.0.6"],
        vec!["id", "--to", "2026-12-06T04:00:00Z"],
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
            same(&answer(&new, &a), &answer(&old, &a), &format!("{a:?}"));
            n_compared += 1;
        }
    }
    // `who` through the SNAT address at moments of the day, with and without the port.
    let day = conntrack_day(&mut Rng(12), 1500);
    let mut whos: Vec<Vec<String>> = Vec::new();
    for (t, line) in day.iter().step_by(97) {
        let port = line
            .rsplit("dport=")
            .next()
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .to_string();
        let at = iso(*t);
        whos.push(
            [
                "who", "--ip", PUBLIC, "--port", &port, "--at", &at, "--json",
            ]
            .map(String::from)
            .to_vec(),
        );
        whos.push(
            ["who", "--ip", PUBLIC, "--at", &at, "--json"]
                .map(String::from)
                .to_vec(),
        );
    }
    whos.push(
        [
            "who",
            "--ip",
            PUBLIC,
            "--port",
            "40001",
            "--at",
            "2026-12-06T06:50:58Z",
            "--json",
        ]
        .map(String::from)
        .to_vec(),
    );
    whos.push(
        [
            "who",
            "--ip",
            "2001:db8::fe",
            "--at",
            "2026-12-06T06:50:58Z",
            "--json",
        ]
        .map(String::from)
        .to_vec(),
    );
    let mut natted = 0;
    for w in &whos {
        let a: Vec<&str> = w.iter().map(String::as_str).collect();
        let got = answer(&new, &a);
        same(&got, &answer(&old, &a), &format!("{a:?}"));
        natted += got["matches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["nat"].is_null())
            .count();
        n_compared += 1;
    }
    assert!(natted > 10, "{natted}");
    let verbs = verb_questions(
        &["10.20.0.5", PUBLIC],
        &[VM_A, VM_C],
        ("10.20.0.5", "2026-12-06T09:40:00Z"),
        &iocs,
        "2026-12-06T10:00:00Z",
        "10.20.0.0/24",
    );
    for a in &verbs {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        same(&answer(&new, &a), &answer(&old, &a), &format!("{a:?}"));
        n_compared += 1;
    }
    // Not vacuous: NAT records are in the answers.
    let tl = answer(&new, &["timeline", "--ip", PUBLIC, "--json"]);
    let nat_in_tl = tl["entries"].as_array().unwrap().len();
    assert!(nat_in_tl > 100, "{nat_in_tl}");
    assert!(n_compared > 100);
    // `reindex` rebuilds the blocks from the ledger: the same answers.
    ok(&new, &["reindex"]);
    for q in &queries {
        let mut a = vec!["search"];
        a.extend_from_slice(q);
        a.push("--json");
        a.push("--count");
        same(
            &answer(&new, &a),
            &answer(&old, &a),
            &format!("{a:?} after reindex"),
        );
    }
    for w in whos.iter().take(6) {
        let a: Vec<&str> = w.iter().map(String::as_str).collect();
        same(
            &answer(&new, &a),
            &answer(&old, &a),
            &format!("{a:?} after reindex"),
        );
    }
}
