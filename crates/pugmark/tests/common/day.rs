//! The challenge-day fixture of the investigation service's tests (tests/api.rs,
//! tests/cases.rs, tests/ui.rs: `#[path = "common/day.rs"] mod day;`): a generated day
//! ingested by `challenge run`, API tokens by name and role, `pugmark ui` on loopback with the
//! docs/API.md configuration, and plain HTTP helpers (ureq).
#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::common::{bin, ok};

/// A generated day, ingested, with tokens and (once started) a running `pugmark ui`.
pub struct Day {
    pub dir: tempfile::TempDir,
    /// The challenge's files (answers.json, keystone_projects.json, …).
    pub ch: PathBuf,
    pub data: PathBuf,
    /// The serve.toml `pugmark ui` reads: docs/API.md's block unless a test rewrites it.
    pub config: PathBuf,
    /// Secrets by token name.
    pub tokens: BTreeMap<&'static str, String>,
    pub ui: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Day {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `toml` block of docs/API.md: the configuration the tests run with.
pub fn docs_config() -> String {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md"))
        .expect("docs/API.md");
    let start = doc.find("```toml\n").expect("a toml block in docs/API.md") + 8;
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end].to_string()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates an API token; its secret.
pub fn token(data: &Path, name: &str, role: &str) -> String {
    let v: Value = serde_json::from_str(&ok(
        data,
        &[
            "api-token",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--json",
        ],
    ))
    .expect("json");
    v["token"].as_str().expect("token").to_string()
}

impl Day {
    /// A day of 30 VMs over 6 hours from `seed`, ingested, with `tokens` (name, role); no ui yet.
    pub fn generate(seed: u64, tokens: &[(&'static str, &str)]) -> Day {
        let dir = tempfile::tempdir().expect("tempdir");
        let ch = dir.path().join("ch");
        run_ok(
            Command::new(bin())
                .args(["challenge", "generate", "--seed", &seed.to_string()])
                .args(["--vms", "30", "--hours", "6", "--out"])
                .arg(&ch),
        );
        let data = dir.path().join("data");
        run_ok(
            Command::new(bin())
                .args(["challenge", "run"])
                .arg(&ch)
                .arg("--data")
                .arg(&data),
        );
        let config = dir.path().join("serve.toml");
        fs::write(&config, docs_config()).expect("config");
        let tokens = tokens
            .iter()
            .map(|(name, role)| (*name, token(&data, name, role)))
            .collect();
        Day {
            dir,
            ch,
            data,
            config,
            tokens,
            ui: None,
            base: String::new(),
        }
    }

    /// [`Day::generate`] and `pugmark ui` on a free loopback port.
    pub fn new(seed: u64, tokens: &[(&'static str, &str)]) -> Day {
        let mut d = Day::generate(seed, tokens);
        d.start_ui();
        d
    }

    /// `pugmark ui` on a free loopback port.
    pub fn start_ui(&mut self) {
        self.start_ui_at("127.0.0.1:0");
    }

    /// `pugmark ui --listen ADDR`; [`Day::base`] is where it listens.
    pub fn start_ui_at(&mut self, listen: &str) {
        let (child, base) = start_ui(&self.data, &self.config, listen);
        self.ui = Some(child);
        self.base = base;
    }

    /// Stops the ui (SIGTERM: it finishes its audit batch and releases the ledger).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.ui.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// A GET as the bearer of `token` (none: anonymous).
    pub fn get(&self, token: Option<&str>, path_query: &str) -> (u16, Vec<u8>) {
        request(&self.base, token, "GET", path_query, None, None)
    }
}

/// `pugmark ui --listen ADDR --config CONFIG --data DATA`: the child and its base URL (read
/// from its "listening on" line; the rest of its stderr drained).
pub fn start_ui(data: &Path, config: &Path, listen: &str) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["ui", "--listen", listen, "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ui");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("read") > 0,
            "pugmark ui exited before listening"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("addr").to_string();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (child, base)
}

/// `pugmark serve` with no collector listeners, only `--http 127.0.0.1:PORT`, its `--config`
/// and `--data`: the child (output discarded).
pub fn start_serve_http(data: &Path, config: &Path, port: u16) -> Child {
    Command::new(bin())
        .args(["serve", "--syslog-udp", "none", "--syslog-tcp", "none"])
        .args(["--relp", "none", "--netflow", "none"])
        .args(["--http", &format!("127.0.0.1:{port}"), "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve")
}

/// A ureq agent that returns error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// One request: the status and the body (up to 1 GiB).
pub fn request(
    base: &str,
    token: Option<&str>,
    method: &str,
    path_query: &str,
    body: Option<&[u8]>,
    accept: Option<&str>,
) -> (u16, Vec<u8>) {
    let url = format!("{base}{path_query}");
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = if method == "POST" {
        let mut r = a.post(&url);
        if let Some(h) = &auth {
            r = r.header("Authorization", h);
        }
        r.send(body.unwrap_or_default()).expect("POST")
    } else {
        let mut r = a.get(&url);
        if let Some(h) = &auth {
            r = r.header("Authorization", h);
        }
        if let Some(acc) = accept {
            r = r.header("Accept", acc);
        }
        r.call().expect("GET")
    };
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("body");
    (status, bytes)
}

/// Percent-encoding of a query value (unreserved characters kept).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
