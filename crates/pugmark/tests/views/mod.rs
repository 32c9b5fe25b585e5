//! Issue 10, "views that know where they stand" and robust ingest: over-long records as
//! continuation records, one bad file in a multi-file ingest, views checked against the ledger
//! by every query verb, `reindex` aside, damaged `.idx` sidecars. Part of the `cli` test
//! binary (`mod views;` there).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{copy_dir, ingest_loghub};
use crate::common::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A syslog line of about `len` bytes whose last word is `tail` and which holds `mid` near
/// byte `mid_at`.
fn long_line(len: usize, mid_at: usize, mid: &str, tail: &str) -> Vec<u8> {
    let mut l = b"<13>Oct 14 10:00:00 host1 app: ".to_vec();
    let filler = b"lorem ipsum dolor sit amet ";
    while l.len() < mid_at {
        l.extend_from_slice(filler);
    }
    l.extend_from_slice(mid.as_bytes());
    l.push(b' ');
    while l.len() + tail.len() + 1 < len {
        l.extend_from_slice(filler);
    }
    l.extend_from_slice(tail.as_bytes());
    l
}

#[test]
fn an_over_long_line_is_stored_as_continuation_records_and_found_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("big.log");
    let mut f = fs::File::create(&file).unwrap();
    for i in 0..3 {
        writeln!(f, "<13>Oct 14 10:00:0{i} host1 app: before {i}").unwrap();
    }
    // 20 MiB: framing cuts it at 16 MiB (decode::framing::MAX_RECORD), and that first
    // 16 MiB record no longer fits one ledger record once enveloped: it becomes a head and a
    // continuation. `nearcut` sits in the continuation, `farend` in the line's last record.
    let cut = 16 * 1024 * 1024;
    f.write_all(&long_line(20 * 1024 * 1024, cut - 200, "nearcut", "farend"))
        .unwrap();
    writeln!(f).unwrap();
    for i in 0..3 {
        writeln!(f, "<13>Oct 14 10:00:1{i} host1 app: after {i}").unwrap();
    }
    drop(f);
    let path = file.display().to_string();
    let r = json(&data, &["ingest", &path, "--year", "2026"]);
    assert_eq!(r["files"][0]["stored"], 8, "{r}");
    assert_eq!(count(&data, &["*"]), 8);
    for word in ["before", "after", "farend", "nearcut"] {
        assert!(count(&data, &[word]) >= 1, "{word} is searchable");
    }
    // The hit on the split record shows it whole: 16 MiB of message, from its start to the
    // word in its continuation.
    let hit = json(&data, &["search", "nearcut"]);
    let hits = hit["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{}", hits.len());
    let msg = hits[0].to_string();
    assert!(
        msg.len() > cut - 1024,
        "the whole record: {} bytes",
        msg.len()
    );
    assert!(msg.contains("nearcut") && msg.contains("lorem ipsum"));
    // Ledger: 8 events in 9 records (plus the import mark), and the chain verifies.
    let v = ok(&data, &["verify"]);
    assert!(v.contains("OK") || v.contains("ok"), "{v}");
    let answers = |data: &Path| {
        ["nearcut", "farend", "before", "*"]
            .iter()
            .map(|q| ok(data, &["search", q, "--count"]))
            .collect::<Vec<_>>()
    };
    let before = answers(&data);
    ok(&data, &["reindex"]);
    assert_eq!(answers(&data), before);
    // Ingesting the same file again stores nothing new.
    let again = json(&data, &["ingest", &path, "--year", "2026"]);
    assert_eq!(again["events"], 0, "{again}");
}

/// A real PNG, written by python3's zlib (or, without python, the same bytes by hand).
fn write_png(path: &Path) {
    let script = "import struct,zlib,sys\n\
        def chunk(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d))\n\
        raw=b''.join(b'\\x00'+bytes((x*7+y*3)%256 for x in range(64*3)) for y in range(64))\n\
        png=b'\\x89PNG\\r\\n\\x1a\\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',64,64,8,2,0,0,0))\
        +chunk(b'IDAT',zlib.compress(raw))+chunk(b'IEND',b'')\n\
        open(sys.argv[1],'wb').write(png)\n";
    let made = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x40\x00\x00\x00\x40\x08\x02\x00\x00\x00".to_vec();
        b.extend((0..4096u32).map(|i| (i * 2654435761u32 >> 24) as u8));
        fs::write(path, b).unwrap();
    }
}

#[test]
fn one_bad_file_is_reported_and_skipped_and_the_others_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good_a = dir.path().join("a.log");
    let good_b = dir.path().join("b.log.gz");
    fs::write(
        &good_a,
        "<13>Oct 14 10:00:00 host1 sshd: alpha one\n<13>Oct 14 10:00:01 host1 sshd: alpha two\n",
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"<13>Oct 14 10:00:02 host2 sshd: bravo one\n")
        .unwrap();
    fs::write(&good_b, gz.finish().unwrap()).unwrap();
    // Some text logs carry a few stray bytes: still text.
    let latin1 = dir.path().join("latin1.log");
    let mut l = b"<13>Oct 14 10:00:03 host3 app: charlie Z\xfcrich caf\xe9\n".to_vec();
    l.extend_from_slice(b"<13>Oct 14 10:00:04 host3 app: charlie two\n");
    fs::write(&latin1, l).unwrap();
    let png = dir.path().join("image.png");
    write_png(&png);
    let subdir = dir.path().join("a-directory");
    fs::create_dir(&subdir).unwrap();
    let missing = dir.path().join("missing.log");
    let s = |p: &Path| p.display().to_string();
    let args = [
        "ingest".to_string(),
        s(&good_a),
        "/bin/ls".into(),
        s(&png),
        s(&missing),
        s(&subdir),
        s(&good_b),
        s(&latin1),
        "--year".into(),
        "2026".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = pugmark(&data, &args);
    assert!(!out.status.success(), "a skipped input fails the run");
    let err = stderr_of(&out);
    for (bad, why) in [
        ("/bin/ls", "not text"),
        (s(&png).as_str(), "not text"),
        (s(&missing).as_str(), "missing.log"),
        (s(&subdir).as_str(), "directory"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains("skipped") && l.contains(bad))
            .unwrap_or_else(|| panic!("one line for {bad}: {err}"));
        assert!(line.contains(why), "{line}");
    }
    assert!(!err.contains("a.log"), "good files are not reported: {err}");
    // The good ones are stored; nothing of the bad ones is.
    assert_eq!(count(&data, &["alpha"]), 2);
    assert_eq!(count(&data, &["bravo"]), 1);
    assert_eq!(count(&data, &["charlie"]), 2);
    assert_eq!(count(&data, &["*"]), 5);
    // Asked for explicitly, a binary file is stored raw.
    let r = json(&data, &["ingest", "/bin/ls", "--format", "raw"]);
    assert!(r["files"][0]["stored"].as_u64().unwrap() > 0, "{r}");
    // A single bad input: one line, non-zero.
    let out = pugmark(&data, &["ingest", &s(&png)]);
    assert!(!out.status.success());
    assert_eq!(
        stderr_of(&out).trim().lines().count(),
        1,
        "{}",
        stderr_of(&out)
    );
}

/// Two OpenStack notifications: `uuid` created at 08:00 holding `ip`.
fn vm_lines(uuid: &str, ip: &str, host: &str) -> String {
    let message = serde_json::json!({
        "event_type": "instance.create.end",
        "priority": "INFO",
        "publisher_id": format!("nova-compute:{host}"),
        "timestamp": "2026-10-14 08:00:00.000000",
        "message_id": format!("m-{uuid}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8",
            "nova_object.data": {"uuid": uuid, "host": host, "node": host, "host_name": "vm",
                "display_name": "vm", "user_id": "u1", "tenant_id": "p1", "image_uuid": "img",
                "state": "active",
                "ip_addresses": [{"nova_object.name": "IpPayload",
                    "nova_object.data": {"address": ip, "mac": "fa:16:3e:00:00:01", "version": 4}}]}}
    });
    format!(
        "{}\n",
        serde_json::json!({"oslo.version": "2.0", "oslo.message": message.to_string()})
    )
}

fn ingest_text(data: &Path, dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    json(data, &["ingest", &p.display().to_string()]);
}

fn who_json(data: &Path, ip: &str) -> Value {
    json(data, &["who", "--ip", ip, "--at", "2026-10-14T09:00:00Z"])
}

fn standing(v: &Value, view: &str) -> String {
    v["views"]["views"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["view"] == view))
        .map(|x| x["standing"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn query_verbs_hold_the_views_against_the_ledger_and_never_answer_silently() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vm = "aaaaaaaa-0000-4000-8000-000000000001";
    ingest_text(
        &data,
        dir.path(),
        "n1.json",
        &vm_lines(vm, "10.0.0.5", "cmp1"),
    );
    let w = who_json(&data, "10.0.0.5");
    assert_eq!(w["matches"][0]["vm"]["uuid"], vm, "{w}");
    assert_eq!(standing(&w, "facts"), "current", "{w}");
    let at = ["--at", "2026-10-14T09:00:00Z"];
    let verbs: Vec<Vec<&str>> = vec![
        vec!["who", "--ip", "10.0.0.5", at[0], at[1]],
        vec!["search", "*"],
        vec![
            "timeline",
            "--ip",
            "10.0.0.5",
            "--from",
            "2026-10-14T00:00:00Z",
            "--to",
            "2026-10-15T00:00:00Z",
        ],
        vec!["report", "--ip", "10.0.0.5", at[0], at[1]],
        vec!["check"],
        vec!["hunt", "10.0.0.5"],
    ];
    for v in &verbs {
        let out = pugmark(&data, v);
        assert!(out.status.success(), "{v:?}: {}", stderr_of(&out));
    }

    // Behind: the fact store as it was, then more records: `who` answers with a note.
    let facts_then = dir.path().join("facts-then");
    copy_dir(&data.join("facts"), &facts_then);
    let index_then = dir.path().join("index-then");
    copy_dir(&data.join("index"), &index_then);
    let vm2 = "bbbbbbbb-0000-4000-8000-000000000002";
    ingest_text(
        &data,
        dir.path(),
        "n2.json",
        &vm_lines(vm2, "10.0.0.6", "cmp1"),
    );
    fs::remove_dir_all(data.join("facts")).unwrap();
    copy_dir(&facts_then, &data.join("facts"));
    let out = pugmark(
        &data,
        &["who", "--ip", "10.0.0.6", "--at", "2026-10-14T09:00:00Z"],
    );
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("trails the ledger"),
        "{}",
        stderr_of(&out)
    );
    let w = who_json(&data, "10.0.0.6");
    assert_eq!(standing(&w, "facts"), "trailing", "{w}");
    assert_eq!(w["views"]["views"][0]["behind"], 2, "{w}");
    // The next writer catches it up.
    ingest_text(&data, dir.path(), "n3.json", "");
    assert_eq!(who_json(&data, "10.0.0.6")["matches"][0]["vm"]["uuid"], vm2);

    // Missing: refused, with what to run, by every verb that reads it.
    fs::remove_dir_all(data.join("facts")).unwrap();
    for v in &verbs {
        if v[0] == "search" {
            continue;
        }
        let out = pugmark(&data, v);
        assert!(
            !out.status.success(),
            "{v:?} must refuse without a fact store"
        );
        let err = stderr_of(&out);
        assert!(
            err.contains("fact store is missing") && err.contains("pugmark reindex"),
            "{v:?}: {err}"
        );
    }
    fs::remove_dir_all(data.join("index")).unwrap();
    let out = pugmark(&data, &["search", "*"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("search index is missing"),
        "{}",
        stderr_of(&out)
    );
    ok(&data, &["reindex"]);
    assert_eq!(who_json(&data, "10.0.0.6")["matches"][0]["vm"]["uuid"], vm2);

    // Foreign: views of another ledger (same positions, other records) are refused, and a
    // writer does not extend them.
    let other = dir.path().join("other");
    let vm3 = "cccccccc-0000-4000-8000-000000000003";
    ingest_text(
        &other,
        dir.path(),
        "o1.json",
        &vm_lines(vm3, "10.0.0.5", "cmp9"),
    );
    ingest_text(
        &other,
        dir.path(),
        "o2.json",
        &vm_lines(vm3, "10.0.0.7", "cmp9"),
    );
    for view in ["facts", "index"] {
        fs::remove_dir_all(data.join(view)).unwrap();
        copy_dir(&other.join(view), &data.join(view));
    }
    for v in &verbs {
        let out = pugmark(&data, v);
        assert!(!out.status.success(), "{v:?} must refuse foreign views");
        assert!(
            stderr_of(&out).contains("another ledger"),
            "{v:?}: {}",
            stderr_of(&out)
        );
    }
    let out = pugmark(
        &data,
        &["ingest", &dir.path().join("n1.json").display().to_string()],
    );
    assert!(
        !out.status.success(),
        "ingest does not extend foreign views"
    );
    assert!(stderr_of(&out).contains("reindex"), "{}", stderr_of(&out));
    ok(&data, &["reindex"]);
    let w = who_json(&data, "10.0.0.5");
    assert_eq!(w["matches"][0]["vm"]["uuid"], vm, "{w}");
    assert_eq!(standing(&w, "facts"), "current");
    // An index trailing the ledger (same ledger) is still only a note for search.
    fs::remove_dir_all(data.join("index")).unwrap();
    copy_dir(&index_then, &data.join("index"));
    let out = pugmark(&data, &["search", "*", "--count"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

/// The per-segment block index (`.idx`) is derived: bytes flipped in it never stop a verb.
#[test]
fn a_damaged_block_index_is_reported_by_verify_and_rebuilt_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest_loghub(&data);
    let idx = fs::read_dir(data.join("ledger"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .expect("a sidecar");
    let pristine = fs::read(&idx).unwrap();
    let before = ok(&data, &["search", "Accepted", "--limit", "1000"]);
    let len = pristine.len();
    assert!(
        len >= 16 + 2 * 16,
        "test needs several blocks ({len} bytes)"
    );
    let extra = dir.path().join("extra.log");
    for (i, at) in [0, 7, 16 + 3, 16 + 8 + 1, len / 2, len - 1]
        .into_iter()
        .enumerate()
    {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x20;
        fs::write(&idx, &bytes).unwrap();
        let v = ok(&data, &["verify"]);
        assert!(
            v.contains("block index"),
            "byte {at}: verify names the sidecar: {v}"
        );
        assert!(v.contains("not evidence"), "{v}");
        assert_eq!(
            ok(&data, &["search", "Accepted", "--limit", "1000"]),
            before
        );
        let out = pugmark(
            &data,
            &["who", "--ip", "10.0.0.1", "--at", "2026-10-14T09:00:00Z"],
        );
        assert!(out.status.success(), "byte {at}: who: {}", stderr_of(&out));
        // reindex works and rewrites the sidecar.
        ok(&data, &["reindex"]);
        assert_eq!(
            ok(&data, &["search", "Accepted", "--limit", "1000"]),
            before
        );
        assert!(
            !ok(&data, &["verify"]).contains("block index"),
            "rewritten by reindex"
        );
        // Damaged again: ingest still starts and stores.
        fs::write(&idx, &bytes).unwrap();
        fs::write(&extra, format!("<13>Oct 14 10:00:00 host1 app: extra{i}\n")).unwrap();
        json(&data, &["ingest", &extra.display().to_string()]);
        assert_eq!(count(&data, &[&format!("extra{i}")]), 1);
    }
    // And serve starts on a damaged sidecar and stores what it is sent.
    let mut bytes = pristine.clone();
    bytes[len / 2] ^= 0x20;
    fs::write(&idx, &bytes).unwrap();
    let (tcp, http) = (free_port(), free_port());
    let a = |p: u16| format!("127.0.0.1:{p}");
    let log = dir.path().join("serve.log");
    let mut child = Command::new(bin())
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--syslog-tcp", &a(tcp), "--syslog-udp", &a(free_udp_port())])
        .args(["--relp", &a(free_port()), "--http", &a(http)])
        .args(["--syslog-tls", "none", "--netflow", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(tcp, "pugmark serve");
    let mut s = std::net::TcpStream::connect(a(tcp)).unwrap();
    s.write_all(b"<13>Oct 14 10:00:00 host1 app: served-after-damage\n")
        .unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = pugmark(&data, &["search", "served-after-damage", "--count"]);
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve stored nothing: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        child.wait().unwrap().success(),
        "{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn reindex_builds_aside_and_a_half_built_leftover_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest_loghub(&data);
    let before = ok(&data, &["search", "Accepted", "--limit", "1000"]);
    // A reindex killed half-way leaves views.new without its COMPLETE marker: the old views
    // answer meanwhile, and the next writer deletes the leftover.
    fs::create_dir_all(data.join("views.new/index")).unwrap();
    fs::write(data.join("views.new/index/junk"), b"half-built").unwrap();
    assert_eq!(
        ok(&data, &["search", "Accepted", "--limit", "1000"]),
        before
    );
    let extra = dir.path().join("extra.log");
    fs::write(&extra, "<13>Oct 14 10:00:00 host1 app: extraline\n").unwrap();
    json(&data, &["ingest", &extra.display().to_string()]);
    assert!(!data.join("views.new").exists(), "leftover removed at open");
    assert_eq!(count(&data, &["extraline"]), 1);
    // A reindex that fails (here: views.new cannot be made) leaves the old views in place.
    fs::write(data.join("views.new"), b"not a directory").unwrap();
    let out = pugmark(&data, &["reindex"]);
    assert!(!out.status.success());
    fs::remove_file(data.join("views.new")).unwrap();
    assert_eq!(
        ok(&data, &["search", "Accepted", "--limit", "1000"]),
        before
    );
    assert_eq!(count(&data, &["*"]), 4001);
    // A swap interrupted after the new views were complete is finished at the next open.
    let (index, facts) = (data.join("index"), data.join("facts"));
    let aside = data.join("views.new");
    ok(&data, &["reindex"]);
    copy_dir(&index, &aside.join("index"));
    copy_dir(&facts, &aside.join("facts"));
    fs::write(aside.join("COMPLETE"), b"complete\n").unwrap();
    fs::remove_dir_all(&index).unwrap();
    json(&data, &["ingest", &extra.display().to_string()]);
    assert!(!aside.exists() && index.exists());
    assert_eq!(count(&data, &["*"]), 4001);
    assert_eq!(
        ok(&data, &["search", "Accepted", "--limit", "1000"]),
        before
    );
}
