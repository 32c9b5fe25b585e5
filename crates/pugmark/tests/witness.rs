//! Witnesses (issue 11), end to end with separate processes: `pugmark witness serve` as the
//! witness, `pugmark ingest --witness` / `pugmark serve` with `[[witnesses]]` as the log, and
//! the attacks of the issue done as root would do them (the keys copied, the ledger rebuilt).
//!
//! `PUGMARK_WITNESS_CYCLES` sets the kill -9 cycles (3 by default; `bench/witness/run` runs 30).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use witness::testlog::MemLog;
use witness::{AddCheckpoint, Added, WitnessPeer};

mod common;
use common::*;

struct WitnessProc {
    child: Child,
    port: u16,
    dir: PathBuf,
    logs: Vec<String>,
}

impl WitnessProc {
    /// `pugmark witness init` (once per dir) then `witness serve` on a free port.
    fn start(dir: &Path, logs: &[String]) -> WitnessProc {
        if !dir.join("witness.key").is_file() {
            let out = Command::new(bin())
                .args(["witness", "init", "--name", "csirt.example/w1", "--data"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self::start_on(dir, logs, free_port())
    }

    fn start_on(dir: &Path, logs: &[String], port: u16) -> WitnessProc {
        let mut cmd = Command::new(bin());
        cmd.args(["witness", "serve", "--data"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        for l in logs {
            cmd.args(["--log", l]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "pugmark witness serve");
        WitnessProc {
            child,
            port,
            dir: dir.to_path_buf(),
            logs: logs.to_vec(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn vkey(&self) -> String {
        fs::read_to_string(self.dir.join("witness.vkey"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill9();
        *self = Self::start_on(&self.dir.clone(), &self.logs.clone(), self.port);
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn lines(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| format!("Oct 11 22:14:{:02} host1 sshd[1]: {tag} line {i}\n", i % 60))
        .collect()
}

fn log_vkey(data: &Path) -> String {
    ok(data, &["witness", "log-vkey"]).trim().to_owned()
}

/// A data directory made by root from the site's own keys, FORMAT and origin, holding
/// `content` instead of the real history: what "rewrite with the stolen key" and "truncate
/// ledger and checkpoints together" come down to.
fn forged_copy(site: &Path, forged: &Path, content: &str) {
    fs::create_dir_all(forged.join("ledger")).unwrap();
    let cp = |from: &Path, to: &Path| {
        let st = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    cp(&site.join("keys"), forged);
    cp(&site.join("FORMAT"), forged);
    cp(&site.join("ledger/origin"), &forged.join("ledger"));
    let file = forged.with_extension("log");
    fs::write(&file, content).unwrap();
    ok(forged, &["ingest", file.to_str().unwrap()]);
}

#[test]
fn rewrite_and_truncation_pass_plain_verify_and_fail_verify_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let key = ok(
        &site,
        &["keys", "init", "--origin", "pugmark.site-a.example/ledger"],
    );
    assert!(key.contains("pugmark.site-a.example/ledger"), "{key}");
    let w = WitnessProc::start(&tmp.path().join("witness"), &[log_vkey(&site)]);
    let spec = format!("{}={}", w.url(), w.vkey());

    let real = lines(20, "real");
    let f = tmp.path().join("day.log");
    fs::write(&f, &real).unwrap();
    let out = ok(&site, &["ingest", f.to_str().unwrap(), "--witness", &spec]);
    assert!(out.contains("cosigned tree size"), "{out}");
    let cosigned = json(&site, &["verify", "--witness", &spec]);
    assert_eq!(cosigned["ok"], true, "{cosigned}");
    let size = cosigned["witnesses"][0]["cosigned_size"].as_u64().unwrap();
    assert!(size >= 20, "{cosigned}");
    // The stored cosignature (VKEY alone) tells the same while the local copies are there.
    let stored = json(&site, &["verify", "--witness", &w.vkey()]);
    assert_eq!(stored["witnesses"][0]["source"], "stored", "{stored}");
    assert_eq!(stored["ok"], true, "{stored}");
    let pubkey = fs::read_to_string(site.join("keys/ledger.ed25519.pub")).unwrap();
    let pubkey = pubkey.trim();

    // Attack: rewrite one record, re-sign everything with the stolen key.
    let rewritten = tmp.path().join("rewritten");
    forged_copy(
        &site,
        &rewritten,
        &real.replace("real line 7", "evil line 7"),
    );
    // Attack: truncate the ledger and its checkpoints together (the last records gone).
    let truncated = tmp.path().join("truncated");
    let keep: String = real.lines().take(12).map(|l| format!("{l}\n")).collect();
    forged_copy(&site, &truncated, &keep);

    for (data, what) in [(&rewritten, "rewritten"), (&truncated, "removed")] {
        // Today's verify, even with the pinned public key, passes: the attack is invisible.
        let plain = pugmark(data, &["verify", "--pubkey", pubkey]);
        assert!(
            plain.status.success(),
            "plain verify should pass the forged ledger: {}",
            String::from_utf8_lossy(&plain.stdout)
        );
        let text = String::from_utf8_lossy(&plain.stdout);
        assert!(text.contains("cannot be detected"), "{text}");
        // With the witness it fails, naming the witness, the size and the time.
        let out = pugmark(data, &["verify", "--pubkey", pubkey, "--witness", &spec]);
        assert!(
            !out.status.success(),
            "verify --witness passed a {what} ledger"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("FAILED: witness csirt.example/w1"), "{text}");
        assert!(
            text.contains(&format!("cosigned tree size {size} at 20")),
            "{text}"
        );
        assert!(text.contains(what), "{text}");
        let j = pugmark(data, &["verify", "--witness", &spec, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["witnesses"][0]["ok"], false, "{v}");
        assert_eq!(v["witnesses"][0]["cosigned_size"], size);
        // The forged ledger holds no cosignature of its own: VKEY alone says so.
        let out = pugmark(data, &["verify", "--witness", &w.vkey()]);
        assert!(!out.status.success());
        // And the witness will not cosign the forged history.
        let out = pugmark(data, &["ingest", f.to_str().unwrap(), "--witness", &spec]);
        assert!(
            !out.status.success(),
            "the witness cosigned a forged ledger"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NOT cosigned"), "{err}");
    }
}

/// Raw HTTP/1.0 POST, for the status line and headers exactly as the witness sends them.
fn post_raw(port: u16, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: w\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_witness_process_refuses_a_forked_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    const ORIGIN: &str = "pugmark.fork.example/ledger";
    let mut log = MemLog::with_seed(ORIGIN, [3; 32]).unwrap();
    let w = WitnessProc::start(&tmp.path().join("w"), &[log.vkey().to_owned()]);
    let peer = WitnessPeer::new(&w.url(), &w.vkey()).unwrap();
    let add = |log: &MemLog, old: u64, new: u64| {
        peer.add_checkpoint(&AddCheckpoint {
            old,
            proof: log.consistency(old, new).unwrap(),
            note: log.checkpoint(new).unwrap(),
        })
    };
    for i in 0..10 {
        log.append(format!("record {i}").as_bytes()).unwrap();
    }
    assert!(matches!(add(&log, 0, 10), Ok(Added::Cosigned(_))));
    // The same key (stolen), another history of the same size: 409 with the size held.
    let mut fork = MemLog::with_seed(ORIGIN, [3; 32]).unwrap();
    for i in 0..10 {
        fork.append(format!("forged {i}").as_bytes()).unwrap();
    }
    let body = AddCheckpoint {
        old: 10,
        proof: vec![],
        note: fork.checkpoint(10).unwrap(),
    }
    .encode();
    let resp = post_raw(w.port, "/add-checkpoint", &body);
    assert!(
        resp.starts_with("HTTP/1.0 409") || resp.starts_with("HTTP/1.1 409"),
        "{resp}"
    );
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: text/x.tlog.size"),
        "{resp}"
    );
    assert!(resp.ends_with("\r\n\r\n10\n"), "{resp:?}");
    // A longer fork: its consistency proof from the held tree fails (422).
    for i in 10..15 {
        fork.append(format!("forged {i}").as_bytes()).unwrap();
    }
    let e = add(&fork, 10, 15).unwrap_err().to_string();
    assert!(e.contains("422"), "{e}");
    // A truncated tree from a client that claims the witness holds nothing: 409, size 10.
    assert!(matches!(add(&log, 0, 5), Ok(Added::Conflict(10))));
    // The real log goes on.
    for i in 10..12 {
        log.append(format!("record {i}").as_bytes()).unwrap();
    }
    assert!(matches!(add(&log, 10, 12), Ok(Added::Cosigned(_))));
    let held = peer.latest(ORIGIN).unwrap().unwrap();
    assert_eq!(held.size, 12);
    // The refused forks are kept as evidence.
    assert!(fs::read_dir(tmp.path().join("w/forks")).unwrap().count() >= 2);
    // Unknown origin: 404; garbage: 400.
    let other = MemLog::new("elsewhere.example/log").unwrap();
    let e = add(&other, 0, 0).unwrap_err().to_string();
    assert!(e.contains("404"), "{e}");
    let resp = post_raw(w.port, "/add-checkpoint", b"old 1\n");
    assert!(resp.contains(" 400 "), "{resp}");
}

#[test]
fn kill_9_of_the_witness_during_pushes_loses_no_acknowledged_cosignature() {
    let cycles: usize = std::env::var("PUGMARK_WITNESS_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    const ORIGIN: &str = "pugmark.crash.example/ledger";
    let mut log = MemLog::with_seed(ORIGIN, [5; 32]).unwrap();
    let mut w = WitnessProc::start(&tmp.path().join("w"), &[log.vkey().to_owned()]);
    let vkey = w.vkey();
    let mut acked = 0u64;
    let mut pushes = 0u64;
    for cycle in 0..cycles {
        // Push as fast as the witness answers; kill it at a moment that moves each cycle.
        let url = w.url();
        let kill_after = Duration::from_millis(150 + 97 * cycle as u64 % 400);
        let pid = w.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let peer = WitnessPeer::new(&url, &vkey).unwrap();
        let started = Instant::now();
        let mut held = acked;
        while started.elapsed() < Duration::from_secs(3) {
            log.append(format!("c{cycle} {}", log.size()).as_bytes())
                .unwrap();
            let size = log.size();
            let req = AddCheckpoint {
                old: held,
                proof: log.consistency(held, size).unwrap(),
                note: log.checkpoint(size).unwrap(),
            };
            match peer.add_checkpoint(&req) {
                Ok(Added::Cosigned(_)) => {
                    acked = size;
                    held = size;
                    pushes += 1;
                }
                Ok(Added::Conflict(n)) => held = n,
                Err(_) => break, // killed
            }
        }
        killer.join().unwrap();
        w.restart();
        let peer = WitnessPeer::new(&w.url(), &vkey).unwrap();
        let latest = peer.latest(ORIGIN).unwrap().expect("state kept");
        assert!(
            latest.size >= acked,
            "cycle {cycle}: the witness acknowledged size {acked} but holds {} after kill -9",
            latest.size
        );
        // Nothing beyond what it was sent, and it still refuses a rollback.
        assert!(latest.size <= log.size());
        if latest.size > 0 {
            let req = AddCheckpoint {
                old: 0,
                proof: vec![],
                note: log.checkpoint(1).unwrap(),
            };
            assert!(matches!(
                peer.add_checkpoint(&req),
                Ok(Added::Conflict(n)) if n == latest.size
            ));
        }
        acked = latest.size;
    }
    assert!(
        pushes > cycles as u64,
        "only {pushes} pushes were acknowledged"
    );
}

struct Serve {
    child: Child,
    http: u16,
    tcp: u16,
    log: PathBuf,
}

impl Serve {
    fn start(data: &Path, config: &Path) -> Serve {
        let (tcp, relp, http) = (free_port(), free_port(), free_port());
        let a = |p: u16| format!("127.0.0.1:{p}");
        let log = data.with_extension(format!("serve-{http}.log"));
        let child = Command::new(bin())
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            .args(["--syslog-tcp", &a(tcp), "--syslog-udp", &a(tcp)])
            .args(["--relp", &a(relp), "--http", &a(http)])
            .args(["--syslog-tls", "none", "--netflow", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(http, "pugmark serve");
        Serve {
            child,
            http,
            tcp,
            log,
        }
    }

    fn metrics(&self) -> String {
        let out = Command::new(bin())
            .args([
                "status",
                "--raw",
                "--http",
                &format!("127.0.0.1:{}", self.http),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cosigned_size(&self) -> u64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with("pugmark_witness_cosigned_size{witness=\"csirt\"}"))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    }

    fn send(&self, text: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.tcp)).unwrap();
        s.write_all(text.as_bytes()).unwrap();
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn serve_pushes_checkpoints_and_kill_9_loses_no_recorded_cosignature() {
    let cycles: usize = std::env::var("PUGMARK_WITNESS_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("site");
    ok(
        &data,
        &["keys", "init", "--origin", "pugmark.live.example/ledger"],
    );
    let w = WitnessProc::start(&tmp.path().join("w"), &[log_vkey(&data)]);
    let config = tmp.path().join("serve.toml");
    fs::write(
        &config,
        format!(
            "version = 1\n\n[[witnesses]]\nname = \"csirt\"\nurl = \"{}\"\nvkey = \"{}\"\n",
            w.url(),
            w.vkey()
        ),
    )
    .unwrap();
    let described = ok(
        &data,
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--check-config",
        ],
    );
    assert!(
        described.contains("witnesses (every new checkpoint"),
        "{described}"
    );
    let spec = format!("{}={}", w.url(), w.vkey());
    let mut sent = 0;
    for cycle in 0..cycles {
        let mut s = Serve::start(&data, &config);
        // Several checkpoints a cycle, each pushed while more records arrive.
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        for burst in 0..3 {
            s.send(&lines(50, &format!("c{cycle} b{burst}")));
            sent += 50;
            loop {
                let c = s.cosigned_size();
                if c >= sent {
                    seen = c;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cycle {cycle}: cosigned {c}, sent {sent}; metrics:\n{}\nserve log:\n{}",
                    s.metrics(),
                    fs::read_to_string(&s.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if cycle == 0 {
            let status = Command::new(bin())
                .args(["status", "--http", &format!("127.0.0.1:{}", s.http)])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&status.stdout);
            assert!(text.contains("witness csirt: cosigned tree size"), "{text}");
        }
        // More records, and kill -9 while the pusher may be mid-push.
        s.send(&lines(30, &format!("c{cycle} tail")));
        sent += 30;
        std::thread::sleep(Duration::from_millis(300 + 200 * cycle as u64 % 700));
        s.kill9();
        // Every cosignature metrics reported is on disk beside the ledger.
        let stored = json(&data, &["verify", "--witness", &w.vkey()]);
        let on_disk = stored["witnesses"][0]["cosigned_size"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            on_disk >= seen,
            "cycle {cycle}: metrics showed {seen}, stored {on_disk}"
        );
        let asked = json(&data, &["verify", "--witness", &spec]);
        assert_eq!(asked["ok"], true, "cycle {cycle}: {asked}");
    }
}

/// The two TOML blocks of docs/SITES.md "Witnesses" are what the programs accept, as written:
/// the witness config by `witness serve --check-config`, the `[[witnesses]]` block by
/// `serve --check-config`.
#[test]
fn the_sites_doc_witness_configs_are_accepted_as_written() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SITES.md"))
        .unwrap();
    let section = doc
        .split_once("## Witnesses")
        .expect("docs/SITES.md has a \"Witnesses\" section")
        .1;
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split_once("```").unwrap().0)
        .collect();
    assert_eq!(blocks.len(), 2, "two TOML blocks");
    let dir = tempfile::tempdir().unwrap();
    let wconf = dir.path().join("witness.toml");
    fs::write(&wconf, blocks[0]).unwrap();
    let out = Command::new(bin())
        .args(["witness", "serve", "--check-config", "--config"])
        .arg(&wconf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("log pugmark.cloud.example.org/ledger"),
        "{text}"
    );
    assert!(text.contains("listen 0.0.0.0:7380"), "{text}");
    let sconf = dir.path().join("serve.toml");
    fs::write(&sconf, blocks[1]).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&sconf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("csirt https://witness.csirt.example"),
        "{text}"
    );
}

fn nova_create(uuid: &str, hostname: &str, ip: &str, time: &str) -> String {
    let message = serde_json::json!({
        "event_type": "instance.create.end",
        "priority": "INFO",
        "publisher_id": "nova-compute:cmp1",
        "timestamp": time,
        "message_id": format!("m-{uuid}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8",
            "nova_object.data": {"uuid": uuid, "host": "cmp1", "node": "cmp1", "host_name": hostname,
                "display_name": hostname, "user_id": "alice", "tenant_id": "proj-alice",
                "image_uuid": "img-1", "state": "active",
                "ip_addresses": [{"nova_object.name": "IpPayload",
                    "nova_object.data": {"address": ip, "mac": "fa:16:3e:00:00:0a", "version": 4}}]}}
    });
    serde_json::json!({"oslo.version": "2.0", "oslo.message": message.to_string()}).to_string()
}

fn proof_check(file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["proof", "check"])
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn proof_check_accepts_real_reports_and_rejects_changed_bytes_signatures_and_missing_cosignatures()
{
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("site");
    ok(
        &data,
        &["keys", "init", "--origin", "pugmark.proof.example/ledger"],
    );
    let w = WitnessProc::start(&tmp.path().join("w"), &[log_vkey(&data)]);
    let spec = format!("{}={}", w.url(), w.vkey());
    let notes = tmp.path().join("nova.jsonl");
    fs::write(
        &notes,
        format!(
            "{}\n",
            nova_create(
                "aaaaaaaa-0000-4000-8000-000000000001",
                "vm-a",
                "10.0.0.5",
                "2026-10-14 08:00:00.000000"
            )
        ),
    )
    .unwrap();
    ok(
        &data,
        &["ingest", notes.to_str().unwrap(), "--witness", &spec],
    );
    let log_key = log_vkey(&data).split_once('=').unwrap().1.to_owned();
    let hex = fs::read_to_string(data.join("keys/ledger.ed25519.pub")).unwrap();
    let at = ["--ip", "10.0.0.5", "--at", "2026-10-14T09:00:00Z"];
    let mut files = Vec::new();
    for (format, ext) in [("json", "json"), ("md", "md"), ("html", "html")] {
        let mut args = vec!["report", "--format", format];
        args.extend_from_slice(&at);
        let text = ok(&data, &args);
        let f = tmp.path().join(format!("report.{ext}"));
        fs::write(&f, &text).unwrap();
        files.push(f);
    }
    let mut who_args = vec!["who"];
    who_args.extend_from_slice(&at);
    let who = json(&data, &who_args);
    assert_eq!(who["integrity"]["cosignatures"], 1, "{who}");
    let who_file = tmp.path().join("who.json");
    fs::write(&who_file, who.to_string()).unwrap();
    files.push(who_file);
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&files[0]).unwrap()).unwrap();
    let i = &report["integrity"];
    assert!(!i["records"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(i["witnesses"][0], "csirt.example/w1");
    let md = fs::read_to_string(&files[1]).unwrap();
    assert!(
        md.contains("cosigned by 1 witness(es) (csirt.example/w1)"),
        "{md}"
    );

    // Accepted, in every format, with the vkey or the hex public key, and the witness's key.
    for f in &files {
        let (good, out) = proof_check(f, &["--pubkey", &log_key, "--witness-key", &w.vkey()]);
        assert!(good, "{}: {out}", f.display());
        assert!(out.starts_with("ok: "), "{out}");
    }
    let (good, out) = proof_check(&files[2], &["--pubkey", hex.trim()]);
    assert!(good, "{out}");

    // One byte of a cited record changed: refused, naming the record.
    let mut bad = report.clone();
    let rec = bad["integrity"]["records"][0]["record"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = witness::client::base64_decode(&rec).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bad["integrity"]["records"][0]["record"] = witness::client::base64(&bytes).into();
    let f = tmp.path().join("changed-byte.json");
    fs::write(&f, bad.to_string()).unwrap();
    let (good, out) = proof_check(&f, &["--pubkey", &log_key]);
    assert!(!good && out.contains("are not in the tree"), "{out}");

    // A checkpoint signed by another key (a forger's): refused.
    let other = tmp.path().join("other");
    ok(
        &other,
        &["keys", "init", "--origin", "pugmark.proof.example/ledger"],
    );
    let other_key = log_vkey(&other).split_once('=').unwrap().1.to_owned();
    let (good, out) = proof_check(&files[0], &["--pubkey", &other_key]);
    assert!(!good && out.contains("signature does not verify"), "{out}");
    // The checkpoint's signature line altered: refused.
    let mut bad = report.clone();
    let cp = bad["integrity"]["checkpoint"].as_str().unwrap().to_owned();
    let sig_at = cp.find("\n\n\u{2014} ").unwrap() + 40;
    let mut cp_bytes = cp.into_bytes();
    cp_bytes[sig_at] = if cp_bytes[sig_at] == b'A' { b'B' } else { b'A' };
    bad["integrity"]["checkpoint"] = String::from_utf8(cp_bytes).unwrap().into();
    let f = tmp.path().join("bad-signature.json");
    fs::write(&f, bad.to_string()).unwrap();
    let (good, out) = proof_check(&f, &["--pubkey", &log_key]);
    assert!(!good, "{out}");

    // A required witness that did not cosign: refused; the cosignature removed: refused.
    let w2 = tmp.path().join("w2");
    let w2_key = Command::new(bin())
        .args(["witness", "init", "--name", "other.example/w2", "--data"])
        .arg(&w2)
        .output()
        .unwrap();
    let w2_key = String::from_utf8_lossy(&w2_key.stdout).trim().to_owned();
    let (good, out) = proof_check(&files[0], &["--pubkey", &log_key, "--witness-key", &w2_key]);
    assert!(
        !good && out.contains("no valid cosignature by witness other.example/w2"),
        "{out}"
    );
    let mut bad = report.clone();
    let cp = bad["integrity"]["checkpoint"].as_str().unwrap().to_owned();
    let stripped: String = cp
        .lines()
        .filter(|l| !l.starts_with("\u{2014} csirt.example/w1 "))
        .map(|l| format!("{l}\n"))
        .collect();
    bad["integrity"]["checkpoint"] = stripped.into();
    let f = tmp.path().join("no-cosignature.json");
    fs::write(&f, bad.to_string()).unwrap();
    let (good, out) = proof_check(&f, &["--pubkey", &log_key]);
    assert!(
        good,
        "without --witness-key the log signature alone is checked: {out}"
    );
    let (good, out) = proof_check(&f, &["--pubkey", &log_key, "--witness-key", &w.vkey()]);
    assert!(!good && out.contains("no valid cosignature"), "{out}");
    // No key at all: not authenticated, not accepted.
    let (good, out) = proof_check(&files[0], &[]);
    assert!(!good && out.contains("not authenticated"), "{out}");
}
