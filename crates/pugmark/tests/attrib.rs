//! Issue 17: a VM's own logs belong to the VM that held the sender's address. The oracle per
//! verb: the same generated day ingested twice — as the central logger archived it, and with
//! every archive line's sender address replaced by the logger's own (`192.0.2.250`, which no VM
//! held: only the claimed hostname is left to go by, the collected time unchanged). Records
//! from a hostname two VMs held at once must come out **ambiguous** (both twins named, given to
//! neither) in the second store, and every other record as in the first — but for the lines
//! whose hostname is a lie (an impostor, an image's default name), which only the address
//! could place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::*;

const RELAY: &str = "192.0.2.250";

struct Day {
    _dir: tempfile::TempDir,
    /// As archived (sender addresses).
    with: PathBuf,
    /// Sender addresses replaced by the relay's.
    without: PathBuf,
    /// Every VM's cloud hostname.
    hostnames: BTreeMap<String, String>,
    /// The two VMs holding one hostname at once, and the moment the report questions ask.
    twins: (String, String),
    twin_ips: (String, String),
    twin_name: String,
    report_at: String,
    /// The twin that goes silent.
    silent: String,
}

fn ingest_day(ch: &Path, data: &Path, syslog: &Path) {
    let m: Value =
        serde_json::from_str(&fs::read_to_string(ch.join("challenge.json")).unwrap()).unwrap();
    let year = m["year"].to_string();
    let mut plain = Vec::new();
    let mut hv = Vec::new();
    for f in m["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        let path = if p == "vm-syslog.log" {
            syslog.to_path_buf()
        } else {
            ch.join(p)
        };
        match f["observer"].as_str() {
            Some("hypervisor") => hv.push(path),
            None => plain.push(path),
            Some(o) => panic!("unexpected observer {o}"),
        }
    }
    for (obs, files) in [(None, plain), (Some("hypervisor"), hv)] {
        let mut args: Vec<String> = vec!["ingest".into(), "--year".into(), year.clone()];
        if let Some(o) = obs {
            args.extend(["--observer".into(), o.into()]);
        }
        args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(data, &a);
    }
}

fn day() -> Day {
    let dir = tempfile::tempdir().unwrap();
    let ch = dir.path().join("ch");
    let out = Command::new(bin())
        .args(["challenge", "generate", "--seed", "7", "--vms", "30"])
        .args(["--hours", "6", "--out"])
        .arg(&ch)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `RECEIVED SENDER <PRI>…` → `RECEIVED RELAY <PRI>…`.
    let syslog = fs::read_to_string(ch.join("vm-syslog.log")).unwrap();
    let stripped: String = syslog
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let (recv, _sender, rest) = (parts.next().unwrap(), parts.next(), parts.next());
            format!("{recv} {RELAY} {}\n", rest.unwrap())
        })
        .collect();
    let stripped_path = dir.path().join("vm-syslog-no-sender.log");
    fs::write(&stripped_path, stripped).unwrap();
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    ingest_day(&ch, &with, &ch.join("vm-syslog.log"));
    ingest_day(&ch, &without, &stripped_path);

    let mut hostnames = BTreeMap::new();
    for l in fs::read_to_string(ch.join("notifications.jsonl"))
        .unwrap()
        .lines()
    {
        let env: Value = serde_json::from_str(l).unwrap();
        let msg: Value = serde_json::from_str(env["oslo.message"].as_str().unwrap()).unwrap();
        let d = &msg["payload"]["nova_object.data"];
        hostnames.insert(
            d["uuid"].as_str().unwrap().to_string(),
            d["host_name"].as_str().unwrap().to_string(),
        );
    }
    let qs: Value =
        serde_json::from_str(&fs::read_to_string(ch.join("answers.json")).unwrap()).unwrap();
    let twin_q: Vec<&Value> = qs
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["why"].as_str().unwrap().starts_with("report: the twin"))
        .collect();
    assert_eq!(twin_q.len(), 2);
    let uuid = |q: &Value| {
        q["expect"]["matches"][0]["vm_uuid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let findings: Value =
        serde_json::from_str(&fs::read_to_string(ch.join("findings.json")).unwrap()).unwrap();
    let silent: BTreeSet<String> = findings["expect"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "silent_vm")
        .map(|f| f["entities"][0].as_str().unwrap().to_string())
        .collect();
    let twins = (uuid(twin_q[0]), uuid(twin_q[1]));
    let silent = [&twins.0, &twins.1]
        .into_iter()
        .find(|t| silent.contains(*t))
        .expect("a silent twin")
        .clone();
    Day {
        twin_name: hostnames[&twins.0].clone(),
        twin_ips: (
            twin_q[0]["ip"].as_str().unwrap().into(),
            twin_q[1]["ip"].as_str().unwrap().into(),
        ),
        report_at: twin_q[0]["at"].as_str().unwrap().into(),
        twins,
        silent,
        hostnames,
        with,
        without,
        _dir: dir,
    }
}

/// seq → (observer, attribution, summary) of every event entry.
fn by_seq(entries: &Value) -> BTreeMap<u64, (String, Value, String)> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "event" || e.get("kind").is_none())
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                (
                    e["observer"].as_str().unwrap().to_string(),
                    e["attribution"].clone(),
                    e["summary"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

impl Day {
    fn is_twin(&self, vm: &str) -> bool {
        vm == self.twins.0 || vm == self.twins.1
    }

    /// The oracle on one record: `a` from the store with sender addresses, `b` without.
    /// Returns whether it came out ambiguous.
    fn same_or_ambiguous(&self, what: &str, seq: u64, summary: &str, a: &Value, b: &Value) -> bool {
        assert_eq!(a["how"], "address", "{what} #{seq} {summary}: {a}");
        let vm = a["vm"].as_str().unwrap();
        let claimed = summary.split(' ').next().unwrap();
        if b["how"] == "ambiguous" {
            let c: Vec<&str> = b["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let mut want = vec![self.twins.0.as_str(), self.twins.1.as_str()];
            want.sort();
            assert_eq!(c, want, "{what} #{seq} {summary}: {b}");
            assert!(b["vm"].is_null(), "never given to one: {b}");
            assert!(self.is_twin(vm), "{what} #{seq}: {a}");
            assert_eq!(claimed, self.twin_name, "{what} #{seq}");
            return true;
        }
        if claimed == self.hostnames[vm] {
            // Honest name: the same VM, now by the hostname.
            assert_eq!(
                b["vm"].as_str(),
                Some(vm),
                "{what} #{seq} {summary}: {a} vs {b}"
            );
            assert_eq!(b["how"], "hostname", "{what} #{seq}: {b}");
            if self.is_twin(vm) {
                assert_eq!(claimed, self.twin_name);
            }
        } else {
            // A lie about the name: only the address could place it.
            assert_ne!(b["vm"].as_str(), Some(vm), "{what} #{seq} {summary}: {b}");
        }
        false
    }
}

#[test]
fn without_sender_addresses_twin_lines_are_ambiguous_and_the_rest_is_unchanged() {
    let d = day();

    // timeline --vm, each twin and every other VM: the same records, tagged as above.
    let mut ambiguous = 0;
    let mut vm_lines = 0;
    let timelines: Vec<(&String, _, _)> = d
        .hostnames
        .keys()
        .map(|vm| {
            let a = json(&d.with, &["timeline", "--vm", vm]);
            let b = json(&d.without, &["timeline", "--vm", vm]);
            (vm, by_seq(&a["entries"]), by_seq(&b["entries"]))
        })
        .collect();
    // Whose each VM record is by its sender address, over every VM's timeline.
    let mut sent_by: BTreeMap<u64, String> = BTreeMap::new();
    for (_, a, _) in &timelines {
        for (seq, (obs, att, _)) in a {
            if let (true, Some(vm)) = (obs == "vm", att["vm"].as_str()) {
                sent_by.insert(*seq, vm.to_string());
            }
        }
    }
    for (vm, a, b) in &timelines {
        for (seq, (obs, att, summary)) in a {
            if obs != "vm" {
                // Not a VM's own record: untouched.
                assert_eq!(Some(att), b.get(seq).map(|x| &x.1), "#{seq} {summary}");
                continue;
            }
            assert_eq!(att["vm"].as_str(), Some(vm.as_str()), "#{seq}: {att}");
            let vm: &String = vm;
            vm_lines += 1;
            match b.get(seq) {
                Some((_, batt, _)) => {
                    if d.same_or_ambiguous("timeline --vm", *seq, summary, att, batt) {
                        ambiguous += 1;
                    }
                }
                // Dropped only when the name was a lie (then the name leads elsewhere).
                None => assert_ne!(
                    summary.split(' ').next(),
                    Some(d.hostnames[vm].as_str()),
                    "#{seq} {summary} vanished"
                ),
            }
        }
        // Without addresses nothing is given to this VM that the addresses gave another,
        // unless that other VM lied about its name (an impostor saying this VM's).
        for (seq, (obs, batt, summary)) in b {
            if obs == "vm" && !a.contains_key(seq) && batt["vm"].as_str() == Some(vm.as_str()) {
                let sender = &sent_by[seq];
                assert_ne!(
                    summary.split(' ').next(),
                    Some(d.hostnames[sender].as_str()),
                    "#{seq} {summary}: {sender}'s honest line given to {vm}"
                );
            }
        }
    }
    assert!(vm_lines > 1000, "{vm_lines}");
    assert!(ambiguous > 50, "twins overlap for hours: {ambiguous}");

    // timeline --host NAME --claimed: every line saying the twins' name.
    let a = json(&d.with, &["timeline", "--host", &d.twin_name, "--claimed"]);
    let b = json(
        &d.without,
        &["timeline", "--host", &d.twin_name, "--claimed"],
    );
    assert_eq!(a["follows"], "claimed");
    let (a, b) = (by_seq(&a["entries"]), by_seq(&b["entries"]));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same records claim the name"
    );
    let mut amb = 0;
    for (seq, (obs, att, summary)) in &a {
        if obs == "vm" && d.same_or_ambiguous("timeline --host", *seq, summary, att, &b[seq].1) {
            amb += 1;
        }
    }
    assert!(amb > 50, "{amb}");

    // report: the twin's sessions are its own lines; without addresses, the overlap's lines
    // move to `ambiguous`, and nothing of the other twin is a session.
    for (ip, me, other) in [
        (&d.twin_ips.0, &d.twins.0, &d.twins.1),
        (&d.twin_ips.1, &d.twins.1, &d.twins.0),
    ] {
        let args = [
            "report",
            "--ip",
            ip,
            "--at",
            &d.report_at,
            "--format",
            "json",
        ];
        let ra: Value = serde_json::from_str(&ok(&d.with, &args)).unwrap();
        let rb: Value = serde_json::from_str(&ok(&d.without, &args)).unwrap();
        let (va, vb) = (&ra["vms"][0], &rb["vms"][0]);
        assert_eq!(va["uuid"].as_str(), Some(me.as_str()));
        assert!(va["ambiguous"].as_array().unwrap().is_empty(), "{va}");
        let sa = by_seq(&va["sessions"]);
        for (_, att, _) in sa.values() {
            assert_eq!(att["vm"].as_str(), Some(me.as_str()));
        }
        let (sb, ab) = (by_seq(&vb["sessions"]), by_seq(&vb["ambiguous"]));
        for (seq, (_, att, summary)) in &sa {
            let b = sb.get(seq).or(ab.get(seq)).map(|x| &x.1);
            let b = b.unwrap_or_else(|| panic!("report: #{seq} {summary} lost"));
            d.same_or_ambiguous("report", *seq, summary, att, b);
        }
        for (seq, (_, att, _)) in sb.iter().chain(&ab) {
            assert_ne!(att["vm"].as_str(), Some(other.as_str()), "#{seq}");
        }
        assert!(!ab.is_empty(), "the twins overlap at {}", d.report_at);
    }

    // hunt: the scanners' network (sshd "Invalid user admin from 203.0.113.x" lines); every
    // VM hit carries its attribution.
    let iocs = d.with.parent().unwrap().join("iocs.txt");
    fs::write(&iocs, "203.0.113.0/24\n").unwrap();
    let hits = |data: &Path| {
        let h = json(data, &["hunt", "--iocs", iocs.to_str().unwrap()]);
        h["hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["observer"] == "vm")
            .map(|h| {
                (
                    h["seq"].as_u64().unwrap(),
                    (
                        "vm".to_string(),
                        h["attribution"].clone(),
                        h["summary"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let (ha, hb) = (hits(&d.with), hits(&d.without));
    assert_eq!(ha.keys().collect::<Vec<_>>(), hb.keys().collect::<Vec<_>>());
    assert!(ha.len() > 100, "{}", ha.len());
    let amb = ha
        .iter()
        .filter(|(seq, (_, att, s))| d.same_or_ambiguous("hunt", **seq, s, att, &hb[*seq].1))
        .count();
    assert!(amb > 5, "{amb}");

    // check: with addresses the silent twin is found (its twin's lines, under the same name,
    // never keep it alive) and the twin that logs on is not. Without them neither twin is
    // given the other's lines: the one that logs on is not called silent, and the silent one
    // (every line it sent before stopping came while both held the name: ambiguous) was
    // never attributably heard, which `silent_vm` (logged, then stopped) does not claim.
    let silent_vms = |data: &Path| -> BTreeSet<String> {
        json(data, &["check"])["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "silent_vm")
            .map(|f| f["entities"][0].as_str().unwrap().to_string())
            .collect()
    };
    let (sa, sb) = (silent_vms(&d.with), silent_vms(&d.without));
    assert!(sa.contains(&d.silent), "{sa:?}");
    let talker = if d.silent == d.twins.0 {
        &d.twins.1
    } else {
        &d.twins.0
    };
    assert!(
        !sa.contains(talker) && !sb.contains(talker),
        "{sa:?} {sb:?}"
    );
}
