//! Issue 12, OpenNebula: an OpenNebula site answers like an OpenStack one.
//!
//! - the generated OpenNebula day (`challenge generate --cloud opennebula`) on several seeds:
//!   every who/report question right, every planted problem found;
//! - the site kit's hook, run by `sh` as OpenNebula runs it (the VM template base64 in `$1`),
//!   writes a spool file that ingests as that VM;
//! - the VM documents in any order and twice give the same answers; `timeline --vm` takes
//!   what an operator types (`ONE-042`); bad XML is stored, counted and explained.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::*;

fn challenge(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("challenge")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn generated_opennebula_days_are_answered_all_right_on_several_seeds() {
    for (seed, vms, hours) in [("7", "30", "8"), ("3", "40", "12")] {
        let dir = tempfile::tempdir().unwrap();
        let ch = dir.path().join("ch");
        let out = challenge(&[
            "generate",
            "--seed",
            seed,
            "--vms",
            vms,
            "--hours",
            hours,
            "--cloud",
            "opennebula",
            "--out",
            ch.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The day is OpenNebula's: no nova, no Keystone.
        let manifest = fs::read_to_string(ch.join("challenge.json")).unwrap();
        assert!(manifest.contains("one-hooks.xml") && !manifest.contains("notifications"));
        let out = challenge(&["run", ch.to_str().unwrap(), "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "seed {seed}: {stdout}");
        let r: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["wrong"], 0, "seed {seed}: {r}");
        assert!(r["right"].as_u64().unwrap() >= 40, "seed {seed}: {r}");
        let reports = r["questions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["kind"] == "report" && q["right"] == true)
            .count();
        assert!(reports >= 5, "seed {seed}: {reports} report questions");
        assert_eq!(
            r["check"]["found"], r["check"]["planted"],
            "seed {seed}: {r}"
        );
        assert!(
            r["check"]["unexplained"].as_array().unwrap().is_empty(),
            "{r}"
        );
    }
}

/// A VM document of the shape `onevm show -x` prints (vm.xsd), at `stime`, on `host`, holding
/// `ip`; `done` at `etime` when given.
fn vm_doc(id: u32, ip: &str, host: &str, stime: i64, done: Option<i64>) -> String {
    let (state, etime, hist_e, action) = match done {
        Some(e) => (6, e, e, 28),
        None => (3, 0, 0, 0),
    };
    format!(
        "<VM><ID>{id}</ID><UID>5</UID><GID>100</GID><UNAME>alice</UNAME><GNAME>atlas</GNAME><NAME>vm-{id}</NAME>\
<STATE>{state}</STATE><LCM_STATE>3</LCM_STATE><STIME>{stime}</STIME><ETIME>{etime}</ETIME><DEPLOY_ID>one-{id}</DEPLOY_ID>\
<TEMPLATE><CONTEXT><SET_HOSTNAME><![CDATA[vm-{id}]]></SET_HOSTNAME></CONTEXT>\
<NIC><IP><![CDATA[{ip}]]></IP><MAC><![CDATA[02:00:0a:00:00:{id:02x}]]></MAC><NETWORK><![CDATA[private]]></NETWORK><NIC_ID><![CDATA[0]]></NIC_ID><TARGET><![CDATA[one-{id}-0]]></TARGET></NIC></TEMPLATE>\
<HISTORY_RECORDS><HISTORY><OID>{id}</OID><SEQ>0</SEQ><HOSTNAME>{host}</HOSTNAME><HID>1</HID><STIME>{stime}</STIME><ETIME>{hist_e}</ETIME><ACTION>{action}</ACTION></HISTORY></HISTORY_RECORDS></VM>"
    )
}

const T0: i64 = 1_791_964_800; // 2026-10-14T08:00:00Z

/// VM 42 holds 10.0.0.5 from 08:00 until it is terminated at 10:00; VM 43 gets the address at
/// 10:30. Each VM's documents: the RUNNING hook and (42) the DONE hook.
fn docs() -> Vec<String> {
    vec![
        vm_doc(42, "10.0.0.5", "hv-01", T0, None),
        vm_doc(42, "10.0.0.5", "hv-01", T0, Some(T0 + 7200)),
        vm_doc(43, "10.0.0.5", "hv-02", T0 + 9000, None),
    ]
}

fn who(data: &Path, ip: &str, at: &str) -> Value {
    json(data, &["who", "--ip", ip, "--at", at])
}

fn vm_of(answer: &Value) -> Vec<(String, String, String)> {
    answer["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["vm"]["uuid"].as_str().unwrap_or("").to_string(),
                m["vm"]["hypervisor"].as_str().unwrap_or("").to_string(),
                m["owner"]["user_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn documents_in_any_order_and_twice_give_the_same_answers() {
    let mut answers = Vec::new();
    let orders: [Vec<usize>; 3] = [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0, 1, 0, 2]];
    for order in orders {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let file = dir.path().join("hooks.xml");
        let d = docs();
        let body: String = order.iter().map(|&i| d[i].clone() + "\n").collect();
        fs::write(&file, body).unwrap();
        ok(&data, &["ingest", file.to_str().unwrap()]);
        let a = [
            vm_of(&who(&data, "10.0.0.5", "2026-10-14T09:00:00Z")),
            vm_of(&who(&data, "10.0.0.5", "2026-10-14T10:15:00Z")),
            vm_of(&who(&data, "10.0.0.5", "2026-10-14T11:00:00Z")),
            vm_of(&json(
                &data,
                &[
                    "who",
                    "--mac",
                    "02:00:0A:00:00:2A",
                    "--at",
                    "2026-10-14T09:00:00Z",
                ],
            )),
        ];
        answers.push(a);
    }
    let first = &answers[0];
    assert_eq!(
        first[0],
        [("one-42".into(), "hv-01".into(), "alice".into())]
    );
    assert!(
        first[1].is_empty(),
        "between 42's deletion and 43's creation: no VM"
    );
    assert_eq!(
        first[2],
        [("one-43".into(), "hv-02".into(), "alice".into())]
    );
    assert_eq!(first[3], first[0], "the MAC as the IP");
    for a in &answers[1..] {
        assert_eq!(a, first, "order and duplicates changed an answer");
    }
}

#[test]
fn timeline_takes_the_vm_as_an_operator_types_it_and_bad_xml_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("hooks.xml");
    let mut body = docs().join("\n");
    // Not OpenNebula's, an unclosed VM, a deep one: stored and explained, never a panic.
    body.push_str("\n<html><body>hello</body></html>\n");
    body.push_str(&"<A>".repeat(5000));
    body.push_str(&"</A>".repeat(5000));
    body.push('\n');
    fs::write(&file, &body).unwrap();
    let summary = json(&data, &["ingest", file.to_str().unwrap()]);
    assert_eq!(summary["events"], 5, "{summary}");
    let t = json(&data, &["timeline", "--vm", "ONE-042"]);
    let text = t.to_string();
    assert!(text.contains("one-42"), "{text}");
    assert!(text.contains("hv-01"), "{text}");
    let issues = ok(&data, &["search", "class:other", "--count"]);
    assert!(issues.trim().parse::<u64>().unwrap() >= 2, "{issues}");
    assert!(
        count(&data, &["hello"]) == 1,
        "the foreign XML is searchable"
    );
    // `onevnet show -x` leasing addresses to VM 42 (known) and VM 99 (no record): `check`
    // names the unknown holder, never the known one.
    let vnet = dir.path().join("vnet.xml");
    fs::write(
        &vnet,
        "<VNET><ID>3</ID><NAME>private</NAME><AR_POOL><AR><LEASES>\
<LEASE><IP><![CDATA[10.0.0.5]]></IP><VM><![CDATA[42]]></VM></LEASE>\
<LEASE><IP><![CDATA[10.0.0.99]]></IP><MAC><![CDATA[02:00:0a:00:00:63]]></MAC><VM><![CDATA[99]]></VM></LEASE>\
</LEASES></AR></AR_POOL></VNET>\n",
    )
    .unwrap();
    ok(&data, &["ingest", vnet.to_str().unwrap()]);
    let c = json(&data, &["check"]);
    let unknown: Vec<&Value> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "unknown_lease_holder")
        .collect();
    assert_eq!(unknown.len(), 1, "{c}");
    assert_eq!(unknown[0]["entities"][0], "one-99", "{c}");
    assert!(
        unknown[0]["summary"]
            .as_str()
            .unwrap()
            .contains("10.0.0.99"),
        "{c}"
    );
}

#[test]
fn the_site_kits_hook_writes_what_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let kit = dir.path().join("kit");
    let spool = dir.path().join("spool");
    fs::create_dir_all(spool.join("cloud")).unwrap();
    let out = Command::new(bin())
        .args(["site-config", "opennebula", "--spool"])
        .arg(&spool)
        .arg("--out")
        .arg(&kit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenNebula's hook manager passes the VM template base64 (src/hem/onehem-server.rb).
    let doc = vm_doc(42, "10.0.0.5", "hv-01", T0, None);
    let b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(doc.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let arg = String::from_utf8(b64.stdout).unwrap();
    let run = Command::new("sh")
        .arg(kit.join("pugmark-one-hook"))
        .arg(arg.trim())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let files: Vec<_> = fs::read_dir(spool.join("cloud"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let data = dir.path().join("data");
    ok(&data, &["ingest", files[0].to_str().unwrap()]);
    assert_eq!(
        vm_of(&who(&data, "10.0.0.5", "2026-10-14T09:00:00Z")),
        [("one-42".into(), "hv-01".into(), "alice".into())]
    );
}
