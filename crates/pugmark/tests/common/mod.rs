//! Helpers every end-to-end test binary shares (`mod common;` in each): run the real
//! `pugmark` against a data directory, find the corpus and the real peers, pick free ports.
//! Each test binary uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod oracle;

/// The pugmark executable under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pugmark")
}

/// ../shared/corpus beside the checkout, or `$PUGMARK_CORPUS`; missing is a failure.
pub fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("PUGMARK_CORPUS") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        p.is_dir(),
        "corpus not found at {} (set PUGMARK_CORPUS)",
        p.display()
    );
    p
}

/// The first `.log` file in the corpus's `auth/` (real sshd lines: enough for a site to ask).
pub fn corpus_auth_log() -> PathBuf {
    fs::read_dir(corpus().join("auth"))
        .expect("corpus auth")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file() && p.extension().is_some_and(|e| e == "log"))
        .expect("an auth log in the corpus")
}

/// A nova versioned notification (`instance.*`) of VM `uuid` on cmp1 listing `ips`, as one
/// JSON line.
pub fn nova_notification(event: &str, time: &str, uuid: &str, ips: &[&str]) -> String {
    let ips: Vec<Value> = ips
        .iter()
        .map(|ip| serde_json::json!({"nova_object.name": "IpPayload", "nova_object.data": {"address": ip, "mac": "fa:16:3e:00:00:0a", "version": 4}}))
        .collect();
    serde_json::json!({
        "event_type": event, "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": time, "message_id": format!("m-{uuid}-{time}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova", "nova_object.version": "1.8",
            "nova_object.data": {"uuid": uuid, "host": "cmp1", "node": "cmp1", "host_name": "vm", "display_name": "vm",
                "user_id": "u1", "tenant_id": "p1", "image_uuid": "img-1", "state": "active", "ip_addresses": ips}}
    })
    .to_string()
}

/// `pugmark ARGS --data DATA`, stdin closed.
pub fn pugmark(data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run pugmark")
}

/// As [`pugmark`], which must succeed; its stdout.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = pugmark(data, args);
    assert!(
        out.status.success(),
        "pugmark {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// As [`ok`] with `--json`, parsed.
pub fn json(data: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let text = ok(data, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `pugmark search ARGS --count`.
pub fn count(data: &Path, args: &[&str]) -> u64 {
    let mut a = vec!["search"];
    a.extend_from_slice(args);
    a.push("--count");
    ok(data, &a).trim().parse().expect("a count")
}

/// A program on PATH (or in the sbin directories, where Debian puts daemons).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The component, or: a failure under CI (scripts/test installs it), a skip elsewhere.
pub fn require(name: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} missing in CI: scripts/test installs it"
        );
        eprintln!("SKIPPED: {name} not installed (scripts/test installs it)");
    }
    found
}

/// [`which`] under [`require`]'s rule.
pub fn need(tool: &str) -> Option<PathBuf> {
    require(tool, which(tool))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (up to 60 s) until something accepts TCP connections on loopback `port`. A `serve`
/// restarted after kill -9 recovers its ledger and views before it listens: over 10 s was
/// seen in CI with a build running beside the suite.
pub fn wait_for_port(port: u16, what: &str) {
    for _ in 0..1200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

/// Like [`wait_for_port`] for a child just started: its exit status if it exits before it
/// listens (a port taken meanwhile, a bad config), so the caller can say why or start it again.
pub fn wait_for_child_port(
    child: &mut std::process::Child,
    port: u16,
    what: &str,
) -> Result<(), std::process::ExitStatus> {
    for _ in 0..1200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait().expect("wait on a child") {
            return Err(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

/// The checkout's `dist/` directory (the files the packages install).
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// The build directory the binary under test lives in (`…/debug/pugmark` → `…`).
fn target_dir() -> PathBuf {
    Path::new(bin())
        .parent()
        .and_then(Path::parent)
        .expect("the test binary's target directory")
        .to_path_buf()
}

/// `scripts/package deb --debug --no-build` on the binary under test (cargo holds the build
/// directory while tests run, so nothing is built): the .deb's path in `out`.
pub fn build_deb(out: &Path) -> Option<PathBuf> {
    need("cargo-deb")?;
    need("dpkg-deb")?;
    // One at a time: the man pages and completions are staged at one fixed place in the
    // target directory (where the package metadata looks), remade by each build.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let script = dist().join("../scripts/package");
    let run = Command::new("bash")
        .arg(&script)
        .args(["deb", "--debug", "--no-build", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("run scripts/package");
    assert!(
        run.status.success(),
        "scripts/package deb: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let deb = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory");
    Some(deb)
}

/// The first line a child writes on its piped stdout (a peer's "ready PORT …"), waited for at
/// most `secs`: a peer that hangs before it (Node 20 deadlocked once in its key generation)
/// is killed and the test fails saying so, instead of blocking the suite forever.
pub fn first_line(child: &mut std::process::Child, what: &str, secs: u64) -> String {
    use std::io::BufRead as _;
    let out = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no first line on stdout within {secs} s (killed)");
        }
    }
}

/// Copies a directory tree (a view put back to where it stood, in tests of views that trail).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A NetFlow v5 datagram with one TCP flow `src:40000 -> dst:22` whose first and last packet
/// are at the export time `unix_secs`.
pub fn v5_datagram(unix_secs: u32, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    v5_datagram_to(unix_secs, src, &[dst])
}

/// A v5 datagram with one TCP/22 flow from `src` to each of `dsts`, in that order.
pub fn v5_datagram_to(unix_secs: u32, src: [u8; 4], dsts: &[[u8; 4]]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&[0, 5]);
    d.extend_from_slice(&(dsts.len() as u16).to_be_bytes());
    d.extend_from_slice(&1000u32.to_be_bytes()); // sysUptime
    d.extend_from_slice(&unix_secs.to_be_bytes());
    d.extend_from_slice(&[0; 4]); // nsecs
    d.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // sequence, engine, sampling
    for dst in dsts {
        d.extend_from_slice(&src);
        d.extend_from_slice(dst);
        d.extend_from_slice(&[0; 8]); // next hop, interfaces
        d.extend_from_slice(&10u32.to_be_bytes()); // packets
        d.extend_from_slice(&1000u32.to_be_bytes()); // bytes
        d.extend_from_slice(&1000u32.to_be_bytes()); // first (= uptime)
        d.extend_from_slice(&1000u32.to_be_bytes()); // last
        d.extend_from_slice(&40000u16.to_be_bytes());
        d.extend_from_slice(&22u16.to_be_bytes());
        d.extend_from_slice(&[0, 0x1b, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    d
}

/// `dir/flow-0940.dat`: one v5 datagram of 2026-10-14 09:40 UTC with two flows from
/// 10.0.0.5, to 198.51.100.7 (flow 0.0) and 198.51.100.9 (flow 0.1).
pub fn two_flow_datagram(dir: &Path) -> PathBuf {
    let f = dir.join("flow-0940.dat");
    fs::write(
        &f,
        v5_datagram_to(
            1_791_970_800,
            [10, 0, 0, 5],
            &[[198, 51, 100, 7], [198, 51, 100, 9]],
        ),
    )
    .unwrap();
    f
}
