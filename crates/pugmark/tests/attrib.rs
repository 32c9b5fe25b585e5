//! Issue 17: a VM's own logs belong to the VM that held the sender's address. The oracle per
//! verb: the same generated day ingested twice — as the central logger archived it, and with
//! every archive line's sender address replaced by the logger's own (`192.0.2.250`, which no VM
//! held: only the claimed hostname is left to go by, the collected time unchanged). Records
//! from a hostname two VMs held at once must come out **ambiguous** (both twins named, given to
//! neither) in the second store, and every other record as in the first — but for the lines
//! whose hostname is a lie (an impostor, an image's default name), which only the address
//! could place.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

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
    // One ingest per observer the manifest names (`hypervisor`, the network node's
    // `network`), as `challenge run` does.
    let mut groups: Vec<(Option<&str>, Vec<PathBuf>)> = Vec::new();
    for f in m["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        let path = if p == "vm-syslog.log" {
            syslog.to_path_buf()
        } else {
            ch.join(p)
        };
        let obs = f["observer"].as_str();
        match groups.iter_mut().find(|g| g.0 == obs) {
            Some(g) => g.1.push(path),
            None => groups.push((obs, vec![path])),
        }
    }
    for (obs, files) in groups {
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

const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const D: &str = "dddddddd-0000-4000-8000-000000000004";

fn note(event: &str, time: &str, uuid: &str, host: &str, ip: Option<&str>) -> String {
    let ips: Vec<Value> = ip
        .iter()
        .map(|ip| serde_json::json!({"nova_object.name": "IpPayload", "nova_object.data": {"address": ip, "mac": "fa:16:3e:00:00:01"}}))
        .collect();
    let state = if event.contains("delete") {
        "deleted"
    } else {
        "active"
    };
    serde_json::json!({
        "event_type": event, "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": time, "message_id": format!("m-{uuid}-{event}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": uuid, "host": "cmp1",
            "host_name": host, "user_id": "u-vo", "tenant_id": "p-vo", "state": state,
            "ip_addresses": ips}}
    })
    .to_string()
}

/// The day in miniature: `atlas-wn-06` held by A (10.20.0.20) and B (10.20.0.111) at
/// once, A's syslog sometimes calling itself `centos-stream-9`, A deleted at 11:00 and its
/// address handed to D at 11:10; VM syslog through the central logger's archive, some lines
/// with the site kit's UUID (one of B's claiming to be A).
fn small_day() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let notes = [
        note(
            "instance.create.end",
            "2026-10-14 08:00:00.000000",
            A,
            "atlas-wn-06",
            Some("10.20.0.20"),
        ),
        note(
            "instance.create.end",
            "2026-10-14 09:00:00.000000",
            B,
            "atlas-wn-06",
            Some("10.20.0.111"),
        ),
        note(
            "instance.delete.end",
            "2026-10-14 11:00:00.000000",
            A,
            "atlas-wn-06",
            None,
        ),
        note(
            "instance.create.end",
            "2026-10-14 11:10:00.000000",
            D,
            "atlas-wn-09",
            Some("10.20.0.20"),
        ),
    ];
    let nf = dir.path().join("notifications.json");
    fs::write(&nf, notes.join("\n") + "\n").unwrap();
    let mut lines = Vec::new();
    for m in (0..240).step_by(10) {
        let (h, mi) = (8 + m / 60, m % 60);
        let recv = format!("2026-10-14T{h:02}:{mi:02}:00.5+00:00");
        let bsd = format!("Oct 14 {h:02}:{mi:02}:00");
        if h < 11 {
            lines.push(format!("{recv} 10.20.0.20 <86>{bsd} atlas-wn-06 sshd[{m}]: Accepted publickey for a{m} from 192.0.2.1 port 1 ssh2"));
            lines.push(format!(
                "{recv} 10.20.0.20 <30>{bsd} centos-stream-9 cron[{m}]: a-tick {m}"
            ));
        }
        if h >= 9 {
            lines.push(format!("{recv} 10.20.0.111 <86>{bsd} atlas-wn-06 sshd[{m}]: Accepted publickey for b{m} from 192.0.2.2 port 1 ssh2"));
        }
        if h >= 11 && mi >= 20 || h >= 12 {
            lines.push(format!("{recv} 10.20.0.20 <86>{bsd} atlas-wn-09 sshd[{m}]: Accepted publickey for d{m} from 192.0.2.4 port 1 ssh2"));
        }
    }
    // The site kit's UUID: A's own, and B claiming to be A.
    lines.push(format!("2026-10-14T09:45:00.5+00:00 10.20.0.20 <86>1 2026-10-14T09:45:00Z atlas-wn-06 sshd 7 - [pugmark@32473 vm_uuid=\"{A}\"] kit-line from A"));
    lines.push(format!("2026-10-14T09:46:00.5+00:00 10.20.0.111 <86>1 2026-10-14T09:46:00Z atlas-wn-06 sshd 8 - [pugmark@32473 vm_uuid=\"{A}\"] kit-line from B"));
    lines.sort();
    let vm = dir.path().join("archive.log");
    fs::write(&vm, lines.join("\n") + "\n").unwrap();
    ok(
        &data,
        &["ingest", nf.to_str().unwrap(), vm.to_str().unwrap()],
    );
    (dir, data)
}

fn entries_about<'a>(t: &'a Value, text: &str) -> Vec<&'a Value> {
    t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap().contains(text))
        .collect()
}

#[test]
fn timelines_mark_hand_overs_follow_the_held_name_and_a_false_uuid_is_a_finding() {
    let (_dir, data) = small_day();

    // `who --host` and `timeline --host` agree on the held name: A and B.
    let w = json(
        &data,
        &[
            "who",
            "--host",
            "atlas-wn-06",
            "--at",
            "2026-10-14T09:30:00Z",
        ],
    );
    let held: BTreeSet<&str> = w["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["vm"]["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(held, BTreeSet::from([A, B]));
    let t = json(&data, &["timeline", "--host", "atlas-wn-06"]);
    assert_eq!(t["follows"], "held");
    let mut vms = BTreeSet::new();
    for e in t["entries"].as_array().unwrap() {
        let a = &e["attribution"];
        assert_ne!(a["how"], "ambiguous", "addresses tell the twins apart: {e}");
        vms.insert(a["vm"].as_str().unwrap().to_string());
    }
    assert_eq!(
        vms,
        BTreeSet::from([A.to_string(), B.to_string()]),
        "not D: {t:#}"
    );
    // A's lines under its image's name belong to what A did while it held the name.
    let centos = entries_about(&t, "centos-stream-9 cron");
    assert_eq!(centos.len(), 18, "{t:#}");
    assert!(centos.iter().all(|e| e["attribution"]["vm"] == A));
    // Each VM's hold on the name: when it begins (with the owner) and when it ends.
    assert_eq!(
        entries_about(
            &t,
            &format!(
                "VM {A} holds hostname atlas-wn-06 until 2026-10-14T11:00:00Z (owner user u-vo"
            )
        )
        .len(),
        1,
        "{t:#}"
    );
    assert_eq!(
        entries_about(
            &t,
            &format!(
                "VM {A} no longer holds hostname atlas-wn-06 (held since 2026-10-14T08:00:00Z"
            )
        )
        .len(),
        1,
        "{t:#}"
    );
    assert_eq!(
        entries_about(&t, &format!("VM {B} holds hostname atlas-wn-06 until now")).len(),
        1
    );

    // The claimed name no VM held: `who` says nobody, the held-name timeline says so, and
    // --claimed shows the lines that say it, each given to the VM that sent it.
    let w = json(
        &data,
        &[
            "who",
            "--host",
            "centos-stream-9",
            "--at",
            "2026-10-14T09:30:00Z",
        ],
    );
    assert!(w["matches"].as_array().unwrap().is_empty());
    let text = ok(&data, &["timeline", "--host", "centos-stream-9"]);
    assert!(
        text.starts_with("no VM held hostname centos-stream-9"),
        "{text}"
    );
    let t = json(
        &data,
        &["timeline", "--host", "centos-stream-9", "--claimed"],
    );
    assert_eq!(t["follows"], "claimed");
    let es = t["entries"].as_array().unwrap();
    assert_eq!(es.len(), 18);
    assert!(
        es.iter()
            .all(|e| e["attribution"]["how"] == "address" && e["attribution"]["vm"] == A)
    );
    let text = ok(
        &data,
        &["timeline", "--host", "centos-stream-9", "--claimed"],
    );
    assert!(
        text.lines().all(|l| l.ends_with("→ aaaaaaaa (address)")),
        "{text}"
    );

    // --ip across the hand-over: A's hold ends, D's begins, every line tagged with its VM.
    let t = json(&data, &["timeline", "--ip", "10.20.0.20"]);
    assert_eq!(
        entries_about(&t, &format!("VM {A} no longer holds ip 10.20.0.20")).len(),
        1
    );
    assert_eq!(
        entries_about(&t, &format!("VM {D} holds ip 10.20.0.20 until now")).len(),
        1
    );
    for e in t["entries"].as_array().unwrap() {
        let time = e["time"].as_str().unwrap();
        let want = if time <= "2026-10-14T11:00:00Z" { A } else { D };
        assert_eq!(e["attribution"]["vm"], want, "{e}");
    }

    // The site kit's UUID: A's own line is A's by its UUID; B's line claiming A is B's (by
    // its address), shows the claim, and is a `uuid_mismatch` finding naming both.
    let t = json(&data, &["timeline", "--vm", A]);
    let own = entries_about(&t, "kit-line from A");
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["attribution"]["how"], "uuid");
    let forged = entries_about(&t, "kit-line from B");
    assert_eq!(
        forged.len(),
        1,
        "a claim about A is shown in A's timeline: {t:#}"
    );
    assert_eq!(forged[0]["attribution"]["vm"], B);
    assert_eq!(forged[0]["attribution"]["uuid_mismatch"]["claimed"], A);
    // B's sessions never in A's report, nor A's in B's.
    let r: Value = serde_json::from_str(&ok(
        &data,
        &[
            "report",
            "--ip",
            "10.20.0.20",
            "--at",
            "2026-10-14T09:30:00Z",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let sessions = r["vms"][0]["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty());
    assert!(
        sessions.iter().all(|e| e["attribution"]["vm"] == A),
        "{r:#}"
    );
    assert!(
        !sessions
            .iter()
            .any(|e| e["summary"].as_str().unwrap().contains("for b"))
    );
    let c = json(&data, &["check"]);
    let m: Vec<&Value> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "uuid_mismatch")
        .collect();
    assert_eq!(m.len(), 1, "{c:#}");
    let ents: Vec<&str> = m[0]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(ents, ["10.20.0.111", A, B]);
    assert!(
        m[0]["evidence"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("kit-line from B")
    );
}

/// The challenge with twins, a silenced twin and report questions, on more seeds than the CLI
/// test's: every who answer, every report's sessions and connections, every planted problem.
#[test]
fn generated_challenges_are_answered_all_right_on_several_seeds() {
    for (seed, vms, hours) in [("1", "40", "8"), ("3", "60", "12"), ("11", "24", "5")] {
        let dir = tempfile::tempdir().unwrap();
        let ch = dir.path().join("ch");
        let run = |args: &[&str]| {
            Command::new(bin())
                .arg("challenge")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let out = run(&[
            "generate",
            "--seed",
            seed,
            "--vms",
            vms,
            "--hours",
            hours,
            "--out",
            ch.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["run", ch.to_str().unwrap(), "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "seed {seed}: {stdout}");
        let r: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["wrong"], 0, "seed {seed}: {r}");
        let reports = r["questions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["kind"] == "report" && q["right"] == true)
            .count();
        assert!(reports >= 5, "seed {seed}: {reports} report questions");
        assert_eq!(r["check"]["found"], r["check"]["planted"], "seed {seed}");
        assert!(r["check"]["unexplained"].as_array().unwrap().is_empty());
    }
}

/// A nova notification listing one interface with its Neutron port and tap device.
fn note_port(time: &str, uuid: &str, host: &str, ip: &str, port: &str, tap: &str) -> String {
    serde_json::json!({
        "event_type": "instance.create.end", "priority": "INFO",
        "publisher_id": "nova-compute:cmp1", "timestamp": time,
        "message_id": format!("m-{uuid}-create"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": uuid, "host": "cmp1",
            "host_name": host, "user_id": "u-vo", "tenant_id": "p-vo", "state": "active",
            "ip_addresses": [{"nova_object.name": "IpPayload", "nova_object.namespace": "nova",
                "nova_object.version": "1.0", "nova_object.data": {"address": ip,
                "mac": "fa:16:3e:00:00:01", "version": 4, "port_uuid": port,
                "device_name": tap, "label": "private"}}]}}
    })
    .to_string()
}

#[test]
fn a_tap_ties_spoofed_and_unleased_sources_to_their_vm_and_check_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tap_a, tap_b) = ("tap1a2b3c4d-5e", "tap9f8e7d6c-5b");
    let notes = [
        note_port(
            "2026-10-14 08:00:00.000000",
            A,
            "wn-a",
            "10.20.0.20",
            "1a2b3c4d-5e6f-4000-8000-00000000000a",
            tap_a,
        ),
        note_port(
            "2026-10-14 08:00:00.000000",
            B,
            "wn-b",
            "10.20.0.111",
            "9f8e7d6c-5b4a-4000-8000-00000000000b",
            tap_b,
        ),
    ];
    let mut notes = notes.to_vec();
    // D's interface is known from Neutron only (nova's legacy-style payload names no port):
    // its port, in neutron's bare `port.create.end` / `port.delete.end` shapes
    // (neutron/api/v2/base.py; the delete with only `port_id`).
    notes.push(note(
        "instance.create.end",
        "2026-10-14 08:00:00.000000",
        D,
        "wn-d",
        Some("10.20.0.30"),
    ));
    let port_d = "0c0d0e0f-1a2b-4c3d-8e4f-00000000000d";
    let tap_d = "tap0c0d0e0f-1a";
    let ports = [
        serde_json::json!({"message_id": "p-1", "publisher_id": "network.controller-1",
            "event_type": "port.create.end", "priority": "INFO",
            "timestamp": "2026-10-14 07:59:55.000000",
            "payload": {"port": {"id": port_d, "mac_address": "fa:16:3e:00:00:0d",
                "device_id": D, "device_owner": "compute:nova",
                "fixed_ips": [{"subnet_id": "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b",
                    "ip_address": "10.20.0.30"}],
                "binding:host_id": "cmp1", "project_id": "p-vo"}}}),
        serde_json::json!({"message_id": "p-2", "publisher_id": "network.controller-1",
            "event_type": "port.delete.end", "priority": "INFO",
            "timestamp": "2026-10-14 10:30:00.000000", "payload": {"port_id": port_d}}),
    ];
    let pf = dir.path().join("ports.json");
    fs::write(&pf, ports.map(|p| p.to_string()).join("\n") + "\n").unwrap();
    let nf = dir.path().join("notifications.json");
    fs::write(&nf, notes.join("\n") + "\n").unwrap();
    let syn = |time: &str, inif: &str, outif: &str, src: &str, dst: &str, n: u32| {
        format!(
            "Oct 14 {time} cmp1 kernel: [{n:>6}.000001] pugmark-egress IN={inif} OUT={outif} MAC=00:00:5e:00:01:01:fa:16:3e:00:00:01:08:00 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={n} DF PROTO=TCP SPT={} DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
            40000 + n
        )
    };
    let lines = [
        // Honest: each VM from its own address.
        syn("09:00:00", tap_a, "bond0", "10.20.0.20", "203.0.113.5", 1),
        syn("09:05:00", tap_b, "bond0", "10.20.0.111", "203.0.113.5", 2),
        // A sends with B's address, twice; B with an address nobody held.
        syn("09:30:00", tap_a, "bond0", "10.20.0.111", "203.0.113.6", 3),
        syn("09:40:00", tap_a, "bond0", "10.20.0.111", "203.0.113.6", 4),
        syn("09:50:00", tap_b, "bond0", "10.20.0.77", "203.0.113.7", 5),
        // Inbound to A's tap (the output device).
        syn("10:00:00", "bond0", tap_a, "198.51.100.9", "10.20.0.20", 6),
        // D's tap (Neutron's port) with A's address; after the port's deletion the tap is
        // nobody's and the line goes by its address.
        syn("09:55:00", tap_d, "bond0", "10.20.0.20", "203.0.113.8", 7),
        syn("10:40:00", tap_d, "bond0", "10.20.0.20", "203.0.113.9", 8),
    ];
    let hv = dir.path().join("cmp1-kern.log");
    fs::write(&hv, lines.join("\n") + "\n").unwrap();
    ok(
        &data,
        &["ingest", nf.to_str().unwrap(), pf.to_str().unwrap()],
    );
    ok(
        &data,
        &[
            "ingest",
            "--year",
            "2026",
            "--observer",
            "hypervisor",
            hv.to_str().unwrap(),
        ],
    );

    // A's timeline holds the line from its tap with B's address, attributed by the tap.
    let t = json(&data, &["timeline", "--vm", A]);
    let spoof = entries_about(&t, "SRC=10.20.0.111 DST=203.0.113.6");
    assert_eq!(spoof.len(), 2, "{t:#}");
    for e in &spoof {
        assert_eq!(e["attribution"]["how"], "tap", "{e}");
        assert_eq!(e["attribution"]["vm"], A, "{e}");
    }
    let inbound = entries_about(&t, "SRC=198.51.100.9");
    assert_eq!(inbound.len(), 1, "{t:#}");
    assert_eq!(inbound[0]["attribution"]["how"], "tap");
    // B's timeline shows what used its address, given to the VM whose tap it came out of,
    // and B's own line from an unleased address.
    let tb = json(&data, &["timeline", "--vm", B]);
    let used = entries_about(&tb, "DST=203.0.113.6");
    assert_eq!(used.len(), 2, "{tb:#}");
    assert!(used.iter().all(|e| e["attribution"]["vm"] == A), "{tb:#}");
    let unleased = entries_about(&tb, "SRC=10.20.0.77");
    assert_eq!(unleased.len(), 1, "{tb:#}");
    assert_eq!(unleased[0]["attribution"]["vm"], B);

    // check: one finding per (VM, address), naming the holder; honest lines give none.
    let c = json(&data, &["check"]);
    assert_eq!(c, json(&data, &["check", "--from-events"]));
    let spoofs: Vec<&Value> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "spoofed_source")
        .collect();
    assert_eq!(spoofs.len(), 3, "{c:#}");
    assert_eq!(
        spoofs[0]["entities"],
        serde_json::json!([A, "10.20.0.111", B])
    );
    assert_eq!(spoofs[0]["count"], 2);
    assert_eq!(spoofs[0]["time"], "2026-10-14T09:30:00Z");
    let s = spoofs[0]["summary"].as_str().unwrap();
    assert!(
        s.contains(tap_a) && s.contains(&format!("held by VM {B}")),
        "{s}"
    );
    assert_eq!(spoofs[1]["entities"], serde_json::json!([B, "10.20.0.77"]));
    assert!(
        spoofs[1]["summary"]
            .as_str()
            .unwrap()
            .contains("held by no VM"),
        "{c:#}"
    );
    assert_eq!(
        spoofs[2]["entities"],
        serde_json::json!([D, "10.20.0.20", A])
    );
    assert_eq!(spoofs[2]["count"], 1, "{c:#}");
    let td = json(&data, &["timeline", "--vm", D]);
    let from_d = entries_about(&td, "DST=203.0.113.8");
    assert_eq!(from_d.len(), 1, "{td:#}");
    assert_eq!(from_d[0]["attribution"]["how"], "tap");
    let ta = json(&data, &["timeline", "--vm", A]);
    let after = entries_about(&ta, "DST=203.0.113.9");
    assert_eq!(after.len(), 1, "{ta:#}");
    assert_eq!(after[0]["attribution"]["how"], "address", "{ta:#}");
    assert_eq!(c["examined"]["tap_connections"], 6, "{c:#}");
}

/// Issue 12: a record naming a Neutron floating IP belongs to the VM whose port the address
/// was associated to then — the facts `who --ip FLOATING` answers from. The oracle is `who`
/// itself, asked at each line's moment: every line goes to the VM `who` names (and none when
/// `who` names none: before the association, between two, after the port's deletion), in
/// `timeline --vm` of each VM. Notifications: the Neutron sample of the `who` test.
#[test]
fn records_naming_a_floating_ip_go_to_the_vm_who_names_then() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../decode/testdata/neutron_notifications.jsonl");
    ok(&data, &["ingest", sample.to_str().unwrap()]);
    let moments = [
        "08:45:00", "09:01:00", "09:20:00", "09:30:00", "09:50:00", "10:15:00", "10:45:00",
        "11:15:00", "12:00:00",
    ];
    let addresses = [
        "203.0.113.10",
        "203.0.113.20",
        "203.0.113.30",
        "203.0.113.40",
    ];
    // The network node's log of traffic leaving through the router's gateway port.
    let mut lines = Vec::new();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut nobody = 0;
    for (i, at) in moments.iter().enumerate() {
        for (j, ip) in addresses.iter().enumerate() {
            let port = 40000 + i * 10 + j;
            let t = format!("2026-10-14T{at}Z");
            lines.push(format!(
                "<4>1 {t} netnode kernel - - - fip-out IN=qr-1 OUT=qg-1 SRC={ip} DST=198.51.100.77 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT={port} DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0"
            ));
            let w = json(&data, &["who", "--ip", ip, "--at", &t]);
            let vms: Vec<String> = w["matches"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["vm"]["uuid"].as_str().map(String::from))
                .collect();
            assert!(vms.len() <= 1, "{w}");
            match vms.first() {
                Some(vm) => {
                    want.entry(vm.clone())
                        .or_default()
                        .insert(format!("SPT={port} "));
                }
                None => nobody += 1,
            }
        }
    }
    // The oracle covers both sides: leased moments for three VMs and moments nobody held.
    assert_eq!(want.len(), 3, "{want:?}");
    assert!(nobody >= 10, "{nobody}");
    let nf = dir.path().join("netnode-kern.log");
    fs::write(&nf, lines.join("\n") + "\n").unwrap();
    ok(
        &data,
        &["ingest", "--observer", "network", nf.to_str().unwrap()],
    );
    for (vm, ports) in &want {
        let t = json(&data, &["timeline", "--vm", vm]);
        let got: BTreeSet<String> = entries_about(&t, "fip-out")
            .iter()
            .map(|e| {
                assert_eq!(e["attribution"]["how"], "address", "{e}");
                assert_eq!(e["attribution"]["vm"], vm.as_str(), "{e}");
                let s = e["summary"].as_str().unwrap();
                let i = s.find("SPT=").unwrap();
                s[i..].split(' ').next().unwrap().to_string() + " "
            })
            .collect();
        assert_eq!(&got, ports, "timeline --vm {vm}: {t:#}");
    }
}
