//! The ledger's signing key in a PKCS#11 token, against a real one: SoftHSM 2 (Debian's
//! `softhsm2`, installed by scripts/test), each test with its own token directory and
//! `SOFTHSM2_CONF`. What must hold: a token-keyed data directory ingests, checkpoints and
//! verifies with the public key alone, and no private key file is anywhere in DATA; a wrong
//! PIN or a different token key is refused, saying so, before anything is written; rotating
//! between a key file and a token keeps every older checkpoint verifiable.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{bin, require, which};
use serde_json::Value;

const USER_PIN: &str = "4321";

/// A fresh SoftHSM token labelled `pugmark` in its own directory.
struct Token {
    conf: PathBuf,
    module: PathBuf,
    pin_file: PathBuf,
}

impl Token {
    fn new(dir: &Path) -> Option<Token> {
        let module = require(
            "softhsm2 (libsofthsm2.so)",
            [
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
        )?;
        let util = require("softhsm2-util", which("softhsm2-util"))?;
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new(util)
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "pugmark"])
            .args(["--so-pin", "123456", "--pin", USER_PIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin_file = dir.join("pin");
        fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
        Some(Token {
            conf,
            module,
            pin_file,
        })
    }

    /// The URI of key pair `object` in the token, PIN from the pin file.
    fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token=pugmark;object={object}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file.display()
        )
    }

    /// `pugmark ARGS --data DATA` with this token's configuration.
    fn run(&self, data: &Path, args: &[&str]) -> Output {
        Command::new(bin())
            .env("SOFTHSM2_CONF", &self.conf)
            .env_remove("PUGMARK_PKCS11_PIN")
            .args(args)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, data: &Path, args: &[&str]) -> String {
        let out = self.run(data, args);
        assert!(
            out.status.success(),
            "pugmark {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, data: &Path, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(data, &a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// As [`Token::run`], which must fail; its stderr.
    fn refused(&self, data: &Path, args: &[&str]) -> String {
        let out = self.run(data, args);
        assert!(!out.status.success(), "pugmark {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Every file under `dir` with its bytes, to show nothing was written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn write_log(path: &Path, line: &str) {
    fs::write(path, format!("<13>Oct 11 22:14:15 host app: {line}\n")).unwrap();
}

#[test]
fn a_token_keyed_ledger_ingests_checkpoints_and_verifies_with_the_public_key() {
    let t = tempfile::tempdir().unwrap();
    let Some(tok) = Token::new(t.path()) else {
        return;
    };
    let data = t.path().join("data");
    let k = tok.json(
        &data,
        &["keys", "init", "--pkcs11", &tok.uri("ledger"), "--generate"],
    );
    assert_eq!(k["key_in_token"], true, "{k}");
    let public = k["public_key"].as_str().unwrap().to_string();
    let log = t.path().join("a.log");
    write_log(&log, "signed in a token");
    tok.ok(&data, &["ingest", log.to_str().unwrap()]);
    write_log(&log, "and again");
    tok.ok(&data, &["ingest", log.to_str().unwrap()]);
    // verify needs nothing but the public key.
    let v = common::json(&data, &["verify", "--pubkey", &public]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 4, "{v}");
    assert_eq!(v["signed_size"], v["records"], "{v}");
    assert_eq!(v["macs_checked"], false, "no token at hand: {v}");
    // With the token (and its PIN) verify also checks the block MACs.
    let v = tok.json(&data, &["verify", "--pubkey", &public]);
    assert_eq!(
        (&v["ok"], &v["macs_checked"]),
        (&true.into(), &true.into()),
        "{v}"
    );
    // DATA/keys holds the URI and the public key; no private key file anywhere in DATA.
    let mut keys: Vec<String> = fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["ledger.ed25519.pub", "ledger.location"]);
    assert!(
        fs::read_to_string(data.join("keys/ledger.location"))
            .unwrap()
            .starts_with("pkcs11:token=pugmark;object=ledger?")
    );
    for (p, bytes) in snapshot(&data) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("ledger.ed25519") || name == "ledger.ed25519.pub",
            "{}",
            p.display()
        );
        // A key file is 64 hex digits and a newline; only the public key looks like one.
        if bytes.len() == 65 && name != "ledger.ed25519.pub" {
            assert!(
                !bytes[..64].iter().all(u8::is_ascii_hexdigit),
                "{} looks like a key file",
                p.display()
            );
        }
    }

    // A wrong PIN: refused, saying so, and nothing is written.
    let before = snapshot(&data);
    fs::write(&tok.pin_file, "9999\n").unwrap();
    write_log(&log, "with a wrong pin");
    let err = tok.refused(&data, &["ingest", log.to_str().unwrap()]);
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(snapshot(&data) == before, "a refused writer wrote to DATA");
    fs::write(&tok.pin_file, format!("{USER_PIN}\n")).unwrap();

    // A different key in the token (made by another data directory), named in DATA: refused.
    let other = t.path().join("other");
    tok.ok(
        &other,
        &["keys", "init", "--pkcs11", &tok.uri("other"), "--generate"],
    );
    let loc = data.join("keys/ledger.location");
    let saved = fs::read(&loc).unwrap();
    fs::write(&loc, format!("{}\n", tok.uri("other"))).unwrap();
    let before = snapshot(&data);
    let err = tok.refused(&data, &["ingest", log.to_str().unwrap()]);
    assert!(
        err.contains("different token key") && err.contains(&public),
        "{err}"
    );
    assert!(snapshot(&data) == before, "a refused writer wrote to DATA");
    fs::write(&loc, saved).unwrap();

    // `--generate` never replaces a key already in the token (`--key-file URI` = `--pkcs11`).
    let err = tok.refused(
        &t.path().join("third"),
        &[
            "keys",
            "init",
            "--key-file",
            &tok.uri("ledger"),
            "--generate",
        ],
    );
    assert!(err.contains("never replaced"), "{err}");

    // The PIN may come from the environment instead of a file.
    let env_uri = format!(
        "pkcs11:token=pugmark;object=ledger?module-path={}",
        tok.module.display()
    );
    fs::write(&loc, format!("{env_uri}\n")).unwrap();
    let err = tok.refused(&data, &["ingest", log.to_str().unwrap()]);
    assert!(err.contains("PUGMARK_PKCS11_PIN"), "{err}");
    let out = Command::new(bin())
        .env("SOFTHSM2_CONF", &tok.conf)
        .env("PUGMARK_PKCS11_PIN", USER_PIN)
        .args(["ingest", log.to_str().unwrap(), "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = common::json(&data, &["verify", "--pubkey", &public]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 6, "{v}");
    assert_eq!(v["signed_size"], v["records"], "{v}");
}

#[test]
fn rotating_from_a_key_file_to_a_token_and_back_keeps_old_checkpoints_verifiable() {
    let t = tempfile::tempdir().unwrap();
    let Some(tok) = Token::new(t.path()) else {
        return;
    };
    let data = t.path().join("data");
    let log = t.path().join("a.log");
    write_log(&log, "before the token");
    tok.ok(&data, &["ingest", log.to_str().unwrap()]);
    let file_pub = fs::read_to_string(data.join("keys/ledger.ed25519.pub")).unwrap();

    let r = tok.json(
        &data,
        &[
            "keys",
            "rotate",
            "--pkcs11",
            &tok.uri("ledger"),
            "--generate",
            "--reason",
            "into the HSM",
        ],
    );
    assert_eq!(r["previous_key_signed_upto"], 2, "{r}");
    assert_eq!(r["rotation_record"], 3, "{r}");
    assert_eq!(r["previous_public_key"], file_pub.trim(), "{r}");
    let token_pub = r["public_key"].as_str().unwrap().to_string();
    assert_ne!(token_pub, file_pub.trim());
    // The old key file is retired (never deleted), the token is what signs from now on.
    assert!(!data.join("keys/ledger.ed25519").try_exists().unwrap());
    write_log(&log, "in the token");
    tok.ok(&data, &["ingest", log.to_str().unwrap()]);
    let v = common::json(&data, &["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 5, "{v}");
    assert_eq!(v["signed_size"], v["records"], "{v}");

    // And back to a key file: the token key stays valid for what it signed.
    let r = tok.json(&data, &["keys", "rotate", "--reason", "out of the HSM"]);
    assert_eq!(r["previous_public_key"], token_pub, "{r}");
    assert_eq!(r["previous_key_signed_upto"], 5, "{r}");
    assert!(data.join("keys/ledger.ed25519").try_exists().unwrap());
    assert!(!data.join("keys/ledger.location").try_exists().unwrap());
    write_log(&log, "after the token");
    tok.ok(&data, &["ingest", log.to_str().unwrap()]);
    let v = common::json(&data, &["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 8, "{v}");
    assert_eq!(v["signed_size"], v["records"], "{v}");
}

/// `serve` takes its key where every writer does (DATA/keys): a token-keyed directory
/// serves, signs its checkpoints in the token, and verifies after a clean stop.
#[test]
fn serve_signs_its_checkpoints_in_the_token() {
    use std::io::Write as _;
    let t = tempfile::tempdir().unwrap();
    let Some(tok) = Token::new(t.path()) else {
        return;
    };
    let data = t.path().join("data");
    let k = tok.json(
        &data,
        &["keys", "init", "--pkcs11", &tok.uri("ledger"), "--generate"],
    );
    let public = k["public_key"].as_str().unwrap().to_string();
    let (tcp, http) = (common::free_port(), common::free_port());
    let a = |p: u16| format!("127.0.0.1:{p}");
    let stderr = t.path().join("serve.log");
    let mut child = Command::new(bin())
        .env("SOFTHSM2_CONF", &tok.conf)
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--syslog-tcp", &a(tcp), "--syslog-udp", &a(tcp)])
        .args(["--relp", &a(common::free_port()), "--http", &a(http)])
        .args(["--syslog-tls", "none", "--netflow", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    common::wait_for_port(http, "pugmark serve");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    for i in 0..10 {
        writeln!(s, "<13>1 - h app - - - token msg {i}").unwrap();
    }
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::count(&data, &["token"]) < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "serve stored fewer than 10: {}",
            fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "serve exited {status}: {}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    let v = common::json(&data, &["verify", "--pubkey", &public]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 10, "{v}");
    assert_eq!(v["signed_size"], v["records"], "{v}");

    // With a wrong PIN serve does not start (and writes nothing).
    let before = snapshot(&data.join("ledger"));
    fs::write(&tok.pin_file, "0000\n").unwrap();
    let mut child = Command::new(bin())
        .env("SOFTHSM2_CONF", &tok.conf)
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--syslog-tcp", &a(tcp), "--syslog-udp", &a(tcp)])
        .args(["--relp", &a(common::free_port()), "--http", &a(http)])
        .args(["--syslog-tls", "none", "--netflow", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve with a wrong PIN is still running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log = fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!status.success() && log.contains("wrong PIN"), "{log}");
    assert!(
        snapshot(&data.join("ledger")) == before,
        "a refused serve wrote"
    );
}
