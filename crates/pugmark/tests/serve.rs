//! `pugmark serve` against real senders: rsyslog forwarding over octet-counted TCP, RELP
//! (omrelp) and TLS (gtls, mutual), `logger --rfc5424` over TCP and UDP, curl posting NDJSON,
//! and kill -9 cycles during a RELP stream. Each test runs the real binary on a fresh data
//! directory and checks what is in the ledger afterwards with `pugmark search` / `verify`.
//!
//! A test that needs a component (rsyslogd and its relp/gtls modules, openssl, logger, curl)
//! fails under `CI=true` when it is missing (scripts/test installs them) and is skipped with
//! a note otherwise.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

/// Every hit of `query` as JSON.
fn hits(data: &Path, query: &str) -> Vec<Value> {
    let text = ok(data, &["search", query, "--json", "--limit", "1000000"]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v["hits"].as_array().cloned().unwrap_or_default()
}

fn rsyslog_module(name: &str) -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/rsyslog",
        "/usr/lib/rsyslog",
        "/usr/lib64/rsyslog",
    ]
    .iter()
    .map(|d| Path::new(d).join(format!("{name}.so")))
    .find(|p| p.is_file())
}

/// A running `pugmark serve` with every listener on a free loopback port.
struct Server {
    child: Child,
    tcp: u16,
    udp: u16,
    relp: u16,
    http: u16,
    tls: Option<u16>,
    stderr: PathBuf,
}

impl Server {
    fn start(data: &Path, config: Option<&Path>, tls: bool) -> Server {
        let (tcp, relp, http) = (free_port(), free_port(), free_port());
        let udp = tcp;
        let tls_port = tls.then(free_port);
        Server::start_on(data, config, tcp, udp, relp, http, tls_port)
    }

    fn start_on(
        data: &Path,
        config: Option<&Path>,
        tcp: u16,
        udp: u16,
        relp: u16,
        http: u16,
        tls: Option<u16>,
    ) -> Server {
        Server::start_env(data, config, tcp, udp, relp, http, tls, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn start_env(
        data: &Path,
        config: Option<&Path>,
        tcp: u16,
        udp: u16,
        relp: u16,
        http: u16,
        tls: Option<u16>,
        env: &[(&str, &str)],
    ) -> Server {
        let stderr = data.with_extension(format!("serve-{http}.log"));
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--data").arg(data);
        cmd.envs(env.iter().copied());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let a = |p: u16| format!("127.0.0.1:{p}");
        cmd.args(["--syslog-tcp", &a(tcp), "--syslog-udp", &a(udp)])
            .args(["--relp", &a(relp), "--http", &a(http)])
            .args(["--syslog-tls", &tls.map_or("none".to_string(), a)])
            // Off here (the default ports would collide between tests run in parallel);
            // tests/netflow.rs serves NetFlow on a port of its own.
            .args(["--netflow", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().unwrap();
        wait_for_port(http, "pugmark serve");
        Server {
            child,
            tcp,
            udp,
            relp,
            http,
            tls,
            stderr,
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let out = Command::new(bin())
            .args([
                "status",
                "--raw",
                "--http",
                &format!("127.0.0.1:{}", self.http),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    fn metric(&self, key: &str) -> f64 {
        self.metrics().get(key).copied().unwrap_or(0.0)
    }

    /// Wait until the ledger holds `n` records (serve's own last position).
    fn wait_ledger(&self, n: u64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let last = self.metric("pugmark_ledger_last_seq") as u64;
            if last >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ledger at #{last}, expected {n}; serve log:\n{}",
                fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and the exit must be clean.
    fn stop(mut self) -> String {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        let log = fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(status.success(), "serve exited {status}: {log}");
        log
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslog relaying what its imtcp `input` port receives to pugmark's TLS port `tls` over
/// mutual TLS (gtls, octet-counted RFC 5424), with the certificate `PKI/CERT.pem`.
fn gtls_forwarder(pki: &Path, cert: &str, input: u16, tls: u16) -> String {
    format!(
        r#"global(defaultNetstreamDriverCAFile="{p}/ca.pem"
       defaultNetstreamDriverCertFile="{p}/{cert}.pem"
       defaultNetstreamDriverKeyFile="{p}/{cert}.key")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="server.test"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}}
"#,
        p = pki.display()
    )
}

/// RabbitMQ and the venv with oslo.messaging, or None (the test is skipped, as `require` says).
fn amqp_peers() -> Option<PathBuf> {
    require(
        "rabbitmq-server",
        Some(PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server")).filter(|p| p.is_file()),
    )?;
    require("python venv with oslo.messaging", venv_python())
}

/// Waits until `s`'s AMQP consumer has declared its queue and consumes.
fn wait_amqp_consuming(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&s.stderr)
        .unwrap_or_default()
        .contains("amqp: consuming")
    {
        assert!(
            Instant::now() < deadline,
            "amqp consumer did not start: {}",
            fs::read_to_string(&s.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Rsyslog {
    child: Child,
}

impl Rsyslog {
    fn start(work: &Path, conf_body: &str, input_port: u16) -> Rsyslog {
        fs::create_dir_all(work.join("work")).unwrap();
        let conf = work.join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{w}/work\")\n{conf_body}",
                w = work.display()
            ),
        )
        .unwrap();
        let rsyslogd = which("rsyslogd").unwrap();
        let check = Command::new(&rsyslogd)
            .args(["-N1", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rsyslog config invalid: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(work.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(input_port, "rsyslogd");
        Rsyslog { child }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Send `lines` through `logger --rfc5424` on one TCP connection (one message per line).
fn logger_tcp(port: u16, tag: &str, lines: &[String], extra: &[&str]) {
    let mut child = Command::new("logger")
        .args([
            "--rfc5424",
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-t",
            tag,
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A new bearer token from `pugmark token` and its `[[senders.map]]` entry (TOML).
fn new_token(name: &str, observer: &str) -> (String, String) {
    let out = Command::new(bin())
        .args(["token", "--name", name, "--observer", observer, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let toml = v["toml"].as_str().unwrap().to_string();
    // The config holds the hash, never the token.
    assert!(!toml.contains(v["token"].as_str().unwrap()), "{toml}");
    (v["token"].as_str().unwrap().to_string(), toml)
}

/// POST `body` to `/api/v1/events`, with `Authorization: Bearer TOKEN` when given; the
/// whole answer (status line, headers, body).
fn post_events(port: u16, token: Option<&str>, body: &str) -> String {
    let mut http = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        http,
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    http.read_to_string(&mut resp).unwrap();
    resp
}

/// GET `path` over HTTP/1.0; the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    resp
}

fn messages_of(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn tools_for_rsyslog(modules: &[&str]) -> bool {
    if require("rsyslogd", which("rsyslogd")).is_none()
        || require("logger", which("logger")).is_none()
    {
        return false;
    }
    for m in modules {
        if require(&format!("rsyslog module {m}"), rsyslog_module(m)).is_none() {
            return false;
        }
    }
    true
}

/// rsyslog forwards the same messages over octet-counted TCP and over RELP, and also writes
/// the octet-counted template to a file: every message arrives once per path, byte for byte
/// what rsyslog formatted; `logger --rfc5424` straight to serve (LF framing) and over UDP too.
#[test]
fn rsyslog_octet_counted_and_relp_and_logger_arrive_whole_and_byte_identical() {
    if !tools_for_rsyslog(&["omrelp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None, false);
    let input = free_port();
    let work = dir.path().join("rsyslog");
    let conf = format!(
        r#"module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omrelp" target="127.0.0.1" port="{relp}" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omfile" file="{w}/sent.log" template="RSYSLOG_SyslogProtocol23Format")
}}
"#,
        tcp = server.tcp,
        relp = server.relp,
        w = work.display()
    );
    let rsyslog = Rsyslog::start(&work, &conf, input);
    let n = 500;
    // Spaces, quotes, a backslash and non-ASCII: what must come through unchanged.
    let sent: Vec<String> = (0..n)
        .map(|i| format!("fwd-{i:04} user=alice \"quoted\" back\\slash ünïcode  two  spaces"))
        .collect();
    logger_tcp(input, "fwdtest", &sent, &[]);
    // Straight from logger: LF framing over TCP, and UDP datagrams.
    let direct: Vec<String> = (0..50).map(|i| format!("direct-{i:03} hello")).collect();
    logger_tcp(server.tcp, "direct", &direct, &[]);
    for i in 0..20 {
        let st = Command::new("logger")
            .args([
                "--rfc5424",
                "-d",
                "-n",
                "127.0.0.1",
                "-P",
                &server.udp.to_string(),
            ])
            .args(["-t", "udptest", &format!("udp-{i:03} datagram")])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let total = 2 * n as u64 + 50 + 20;
    server.wait_ledger(total, 60);
    drop(rsyslog);
    let m = server.metrics();
    assert_eq!(
        m["pugmark_parse_errors_total{listener=\"syslog-tcp\"}"],
        0.0
    );
    assert_eq!(m["pugmark_parse_errors_total{listener=\"relp\"}"], 0.0);
    assert_eq!(m["pugmark_messages_total{listener=\"relp\"}"], n as f64);
    assert_eq!(m["pugmark_messages_total{listener=\"syslog-udp\"}"], 20.0);
    server.stop();

    assert_eq!(count(&data, &["*"]), total);
    // The oracle: what rsyslog itself wrote with the same template, one line per message.
    let file = fs::read(work.join("sent.log")).unwrap();
    let expected: BTreeSet<Vec<u8>> = file
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(expected.len(), n);
    for listener in ["syslog-tcp", "relp"] {
        let h: Vec<Value> = hits(&data, "fwd")
            .into_iter()
            .filter(|h| h["origin"]["listener"] == listener)
            .collect();
        assert_eq!(h.len(), n, "{listener}");
        let raws: BTreeSet<Vec<u8>> = h
            .iter()
            .map(|h| h["raw"].as_str().unwrap().as_bytes().to_vec())
            .collect();
        assert_eq!(
            raws, expected,
            "{listener}: stored bytes differ from rsyslog's"
        );
        let msgs: BTreeSet<String> = messages_of(&h).into_iter().collect();
        assert_eq!(msgs, sent.iter().cloned().collect(), "{listener}");
        for x in &h {
            assert_eq!(x["app"], "fwdtest");
            assert_eq!(x["origin"]["kind"], "peer");
            assert!(
                x["origin"]["addr"]
                    .as_str()
                    .unwrap()
                    .starts_with("127.0.0.1:")
            );
            assert!(
                x["reported"]["time"].is_string(),
                "reported time parsed: {x}"
            );
            assert!(x["received"].is_string());
            assert!(x["issues"].as_array().unwrap().is_empty(), "{x}");
        }
    }
    let d = hits(&data, "direct");
    assert_eq!(
        messages_of(&d).into_iter().collect::<BTreeSet<_>>(),
        direct.into_iter().collect()
    );
    assert!(d.iter().all(|x| x["origin"]["listener"] == "syslog-tcp"));
    let u = hits(&data, "datagram");
    assert_eq!(u.len(), 20);
    assert!(
        u.iter()
            .all(|x| x["origin"]["listener"] == "syslog-udp" && x["app"] == "udptest")
    );
    let v = pugmark(&data, &["verify"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and server/client leaves as in PEERS.md, a hypervisor's leaf (`CN=hv01.test`, SAN
/// `DNS:hv01.test`), plus a second CA with its own "client".
fn make_pki(dir: &Path) {
    for (ca, cn) in [("ca", "test-ca"), ("rogue-ca", "rogue-ca")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
    }
    for (n, ca) in [
        ("server", "ca"),
        ("client", "ca"),
        ("rogue", "rogue-ca"),
        ("hv01", "ca"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{n}.key"),
                "-out",
                &format!("{n}.csr"),
                "-subj",
                &format!("/CN={n}.test/O=Pugmark Test"),
            ],
        );
        fs::write(
            dir.join(format!("{n}.ext")),
            format!("subjectAltName=DNS:{n}.test,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{n}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{n}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{n}.ext"),
            ],
        );
    }
}

/// Mutual TLS: rsyslog (gtls) with a client certificate from the CA is accepted and every
/// record names its subject; a client without a certificate, and one whose certificate a
/// different CA signed, are refused at the handshake and store nothing.
#[test]
fn tls_with_client_certificates_identifies_senders_and_refuses_the_rest() {
    if !tools_for_rsyslog(&["lmnsd_gtls"]) || require("openssl", which("openssl")).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        "version = 1\n[tls]\ncert = \"pki/server.pem\"\nkey = \"pki/server.key\"\nclient_ca = \"pki/ca.pem\"\n[tcp]\nidle_timeout_secs = 3\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config), true);
    let tls = server.tls.unwrap();

    // Refused: no client certificate, and a certificate from another CA.
    for cert in [None, Some("rogue")] {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(&pki).args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{tls}"),
            "-CAfile",
            "ca.pem",
            "-quiet",
        ]);
        if let Some(c) = cert {
            cmd.args(["-cert", &format!("{c}.pem"), "-key", &format!("{c}.key")]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"14 <13>1 - x y z\n");
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "s_client did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Plain text where a ClientHello belongs, and a connection that never says anything (its
    // handshake times out): both refused, neither holds up the sender below.
    let mut plain = TcpStream::connect(("127.0.0.1", tls)).unwrap();
    plain.write_all(b"<13>1 - h a - - - not tls\n").unwrap();
    let _silent = TcpStream::connect(("127.0.0.1", tls)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("pugmark_tls_handshake_failures_total{listener=\"syslog-tls\"}") < 3.0 {
        assert!(
            Instant::now() < deadline,
            "handshake failures not counted: {:?}",
            server.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let input = free_port();
    let work = dir.path().join("rsyslog");
    let conf = gtls_forwarder(&pki, "client", input, tls);
    let rsyslog = Rsyslog::start(&work, &conf, input);
    let n = 200;
    let sent: Vec<String> = (0..n)
        .map(|i| format!("tls-{i:04} over mutual tls"))
        .collect();
    logger_tcp(input, "tlstest", &sent, &[]);
    server.wait_ledger(n as u64, 60);
    drop(rsyslog);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("pugmark_tls_handshake_failures_total{listener=\"syslog-tls\"}") < 4.0 {
        assert!(Instant::now() < deadline, "silent handshake not timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.stop();
    assert!(log.contains("TLS handshake timed out"), "{log}");

    let h = hits(&data, "*");
    assert_eq!(
        h.len(),
        n,
        "only the authenticated sender's records are stored"
    );
    assert_eq!(
        messages_of(&h).into_iter().collect::<BTreeSet<_>>(),
        sent.into_iter().collect()
    );
    for x in &h {
        assert_eq!(x["origin"]["kind"], "authenticatedpeer", "{x}");
        assert_eq!(x["origin"]["listener"], "syslog-tls");
        let id = x["origin"]["identity"].as_str().unwrap();
        assert!(
            id.contains("CN=client.test") && id.contains("O=Pugmark Test"),
            "{id}"
        );
    }
}

/// kill -9 during an rsyslog RELP stream, 20 times: after the last restart every message is
/// in the ledger exactly once (what was acknowledged was durable; what was resent after a
/// crash is recognised, not stored twice) and `verify` passes.
#[test]
fn kill_9_cycles_during_a_relp_stream_lose_nothing_and_store_nothing_twice() {
    if !tools_for_rsyslog(&["omrelp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let input = free_port();
    let work = dir.path().join("rsyslog");
    let conf = format!(
        r#"module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omrelp" target="127.0.0.1" port="{relp}" template="RSYSLOG_SyslogProtocol23Format"
         action.resumeRetryCount="-1" action.resumeInterval="1" action.resumeIntervalMax="1"
         queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="256")
}}
"#
    );
    let mut server = Some(Server::start_on(&data, None, tcp, tcp, relp, http, None));
    let rsyslog = Rsyslog::start(&work, &conf, input);
    let n: usize = 20_000;
    // The sender: logger on one connection, paced so the stream spans the kill cycles.
    let feeder = std::thread::spawn(move || {
        let mut child = Command::new("logger")
            .args([
                "--rfc5424",
                "--tcp",
                "-n",
                "127.0.0.1",
                "-P",
                &input.to_string(),
                "-t",
                "relpkill",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..n {
            writeln!(stdin, "relp-{i:06} payload").unwrap();
            // ~20 s in all: the stream spans the kill cycles.
            if i % 500 == 499 {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
    });
    let cycles = 20;
    let (mut dups, mut stored_before_kill) = (0.0, Vec::new());
    for c in 0..cycles {
        std::thread::sleep(Duration::from_millis(700 + 97 * (c % 7)));
        let s = server.take().unwrap();
        dups += s.metric("pugmark_duplicates_total{listener=\"relp\"}");
        stored_before_kill.push(s.metric("pugmark_ledger_last_seq") as u64);
        s.kill9();
        std::thread::sleep(Duration::from_millis(50));
        server = Some(Server::start_on(&data, None, tcp, tcp, relp, http, None));
    }
    feeder.join().unwrap();
    let s = server.take().unwrap();
    s.wait_ledger(n as u64, 120);
    // Give rsyslog a moment to flush anything still queued: nothing more must arrive.
    std::thread::sleep(Duration::from_millis(1500));
    dups += s.metric("pugmark_duplicates_total{listener=\"relp\"}");
    drop(rsyslog);
    s.stop();
    eprintln!("ledger position at each kill: {stored_before_kill:?}; resends recognised: {dups}");
    // The kills really happened mid-stream.
    assert!(
        stored_before_kill
            .iter()
            .filter(|&&p| p > 0 && p < n as u64)
            .count()
            >= 10,
        "{stored_before_kill:?}"
    );

    let h = hits(&data, "relpkill");
    let msgs = messages_of(&h);
    let unique: BTreeSet<&String> = msgs.iter().collect();
    assert_eq!(unique.len(), n, "every message stored");
    assert_eq!(msgs.len(), n, "no message stored twice");
    assert_eq!(count(&data, &["*"]), n as u64);
    let v = pugmark(&data, &["verify"]);
    assert!(
        v.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

/// Garbage before a frame, an absurd octet count, invalid UTF-8 and a half frame that stalls:
/// all stored raw and counted, the stalled connection closed after the idle timeout, and a
/// second connection keeps flowing meanwhile; NDJSON over HTTP answers 200 once durable.
#[test]
fn bad_input_is_stored_raw_counted_and_never_stalls_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pugmark.toml");
    let (token, entry) = new_token("nova", "cloud");
    fs::write(
        &config,
        format!("version = 1\n[tcp]\nidle_timeout_secs = 1\n{entry}"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config), false);
    let mut bad = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    bad.write_all(b"\x00\x01garbage\n99999999999 <13>1 - h a - - - huge\n")
        .unwrap();
    let invalid: &[u8] = b"<13>1 - h a - - - \xff\xfe bytes";
    bad.write_all(format!("{} ", invalid.len()).as_bytes())
        .unwrap();
    bad.write_all(invalid).unwrap();
    bad.write_all(b"40 <13>1 - h a - - - half").unwrap();
    // The same again on a second connection: counted again, not logged again.
    let mut bad2 = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    bad2.write_all(
        b"\x00\x01garbage\n99999999999 <13>1 - h a - - - huge\n40 <13>1 - h a - - - half",
    )
    .unwrap();
    // Meanwhile another sender is not held up.
    let mut good = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    good.write_all(b"<13>1 - h a - - - good one\n<13>1 - h a - - - good two\n")
        .unwrap();
    server.wait_ledger(7, 10);
    // The half frames are kept once the connections have been silent for the idle timeout.
    server.wait_ledger(9, 10);
    let mut buf = [0u8; 1];
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        bad.read(&mut buf).unwrap_or(0),
        0,
        "stalled connection closed"
    );
    drop(good);

    // HTTP: NDJSON with one line that is not JSON.
    let body = "{\"event_type\":\"compute.instance.create.end\",\"payload\":{}}\nnot json at all\n";
    let resp = post_events(server.http, Some(&token), body);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("\"stored\":2") && resp.contains("\"not_json\":1"),
        "{resp}"
    );
    let m = server.metrics();
    // The garbage line (no PRI), the absurd count, the stalled half frame; again on a
    // second connection: counted each time, logged once per kind.
    assert_eq!(
        m["pugmark_parse_errors_total{listener=\"syslog-tcp\"}"], 6.0,
        "{m:?}"
    );
    // RELP: a frame that is not RELP ends the session (serverclose), its bytes stored raw,
    // while a well-behaved RELP session goes on.
    let mut good_relp = relp_open(server.relp);
    let mut bad_relp = TcpStream::connect(("127.0.0.1", server.relp)).unwrap();
    bad_relp
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    bad_relp
        .write_all(b"hello relp, this is no frame\n")
        .unwrap();
    assert_eq!(relp_read_frames(&mut bad_relp, 1), ["0 serverclose 0"]);
    let m5 = "<13>1 - h a - - - relp still flowing";
    writeln!(good_relp, "2 syslog {} {m5}", m5.len()).unwrap();
    assert_eq!(relp_read_frames(&mut good_relp, 1), ["2 rsp 6 200 OK"]);
    assert_eq!(
        server.metric("pugmark_parse_errors_total{listener=\"relp\"}"),
        1.0
    );
    assert_eq!(m["pugmark_parse_errors_total{listener=\"http\"}"], 1.0);
    let status = Command::new(bin())
        .args(["status", "--http", &format!("127.0.0.1:{}", server.http)])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("syslog-tcp") && status.contains("127.0.0.1"),
        "{status}"
    );
    let log = server.stop();
    for kind in [
        "octet count too large",
        "frame without a syslog PRI",
        "stalled inside a frame",
        "malformed RELP frame",
    ] {
        assert_eq!(log.matches(kind).count(), 1, "{kind} logged once: {log}");
    }

    assert_eq!(count(&data, &["*"]), 8 + 3 + 2);
    assert_eq!(count(&data, &["relp still flowing"]), 1);
    assert!(
        hits(&data, "*")
            .iter()
            .any(|h| h["raw"] == "hello relp, this is no frame\n"),
        "the RELP garbage is stored raw"
    );
    let all = hits(&data, "*");
    let raws: Vec<&Value> = all.iter().map(|h| &h["raw"]).collect();
    assert!(
        raws.contains(&&Value::from("\u{0}\u{1}garbage")),
        "{raws:?}"
    );
    assert!(raws.contains(&&Value::from("99999999999 <13>1 - h a - - - huge")));
    assert!(raws.contains(&&Value::from("40 <13>1 - h a - - - half")));
    assert!(raws.contains(&&Value::from("not json at all")));
    // Invalid UTF-8 is kept byte for byte (shown as hex).
    let hex: String = invalid.iter().map(|b| format!("{b:02x}")).collect();
    assert!(raws.iter().any(|r| r["hex"] == hex.as_str()), "{raws:?}");
    assert_eq!(count(&data, &["good"]), 2);
    let v = pugmark(&data, &["verify"]);
    assert!(v.status.success());
}

/// SIGTERM flushes and a restart resumes the same ledger (positions continue).
#[test]
fn restart_resumes_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for round in 0..3u64 {
        let server = Server::start(&data, None, false);
        let mut s = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
        for i in 0..10 {
            writeln!(s, "<13>1 - h app - - - round {round} msg {i}").unwrap();
        }
        drop(s);
        server.wait_ledger(10 * (round + 1), 10);
        // Found as soon as it is durable, indexed or not (search scans the ledger past the
        // index's committed position)...
        assert_eq!(count(&data, &["round"]), 10 * (round + 1));
        // ...and the index itself catches up once the stream stops (its position on /metrics).
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.metric("pugmark_index_last_seq") < (10 * (round + 1)) as f64 {
            assert!(Instant::now() < deadline, "the index never caught up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.stop();
    }
    assert_eq!(count(&data, &["round"]), 30);
    let h = hits(&data, "round");
    let seqs: BTreeSet<u64> = h.iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=30).collect());
    assert!(pugmark(&data, &["verify"]).status.success());
}

/// After a kill -9 with the views far behind the ledger, a restart listens without waiting for
/// them (they are read back from the ledger at idle priority) and they catch up exactly: every
/// record indexed once, as `reindex` from the ledger alone agrees.
#[test]
fn a_restart_with_views_far_behind_listens_at_once_and_catches_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n: u64 = 100_000;
    let server = Server::start(&data, None, false);
    let mut s = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        writeln!(buf, "<13>1 - h app - - - behind {i}").unwrap();
    }
    s.write_all(&buf).unwrap();
    drop(s);
    server.wait_ledger(n, 60);
    let indexed_at_kill = server.metric("pugmark_index_last_seq");
    server.kill9();
    let started = Instant::now();
    let server = Server::start(&data, None, false);
    let listening = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.metric("pugmark_index_last_seq") < n as f64 {
        assert!(Instant::now() < deadline, "the index never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "index at #{indexed_at_kill} of {n} at the kill; listening again after {listening:?}, \
         caught up after {:?}",
        started.elapsed()
    );
    assert_eq!(count(&data, &["behind"]), n);
    server.stop();
    let out = pugmark(&data, &["search", "*", "--count"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("trails"),
        "caught up at shutdown"
    );
    assert_eq!(count(&data, &["*"]), n, "each record indexed once");
    ok(&data, &["reindex"]);
    assert_eq!(count(&data, &["*"]), n);
}

/// A RabbitMQ broker of the test's own (PEERS.md §7): its own epmd, node name, ports and
/// directories, all on loopback; stopped by PID.
struct Rabbit {
    env: Vec<(String, String)>,
    server: Child,
    epmd: Child,
    port: u16,
}

impl Rabbit {
    fn start(dir: &Path) -> Rabbit {
        let (port, dist, epmd_port) = (free_port(), free_port(), free_port());
        fs::create_dir_all(dir.join("log")).unwrap();
        fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users.guest = true\n"),
        )
        .unwrap();
        fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let d = dir.display();
        let node = format!("pugmarktest{port}@localhost");
        let env: Vec<(String, String)> = [
            ("HOME", format!("{d}")),
            ("RABBITMQ_NODENAME", node),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            ("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq.conf")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{d}/enabled_plugins"),
            ),
            ("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia")),
            ("RABBITMQ_LOG_BASE", format!("{d}/log")),
            ("RABBITMQ_PID_FILE", format!("{d}/rabbit.pid")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned first, so a failed start still stops both (Drop).
        let rabbit = Rabbit {
            env,
            server,
            epmd,
            port,
        };
        // ~5 s alone; over a minute on this 2-core machine under a load of 10+ (seen).
        for _ in 0..1800 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return rabbit;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "rabbitmq did not listen: {}",
            fs::read_to_string(dir.join("stdout.log")).unwrap_or_default()
        );
    }

    /// For pugmark (AMQP 0-9-1 URL, default vhost).
    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// For oslo.messaging (its rabbit driver; `amqp://` would be its AMQP 1.0 driver).
    fn oslo_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// (ready, unacknowledged) messages in `queue`.
    fn queue(&self, queue: &str) -> (u64, u64) {
        let out = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args([
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&queue) && f.len() == 3 {
                return (f[1].parse().unwrap(), f[2].parse().unwrap());
            }
        }
        panic!("queue {queue} not found: {text}");
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("shutdown")
            .output();
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
    }
}

fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(
        std::env::var("PUGMARK_VENV").unwrap_or_else(|_| "/var/cache/pugmark-venv".into()),
    )
    .join("bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import oslo_messaging, kombu"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

/// oslo.messaging publishes `count` notifications named `prefix-NNNNNN` (`extra`: the
/// script's `--raw TEXT`, `--pace N:MS`).
fn oslo_notify(python: &Path, url: &str, count: usize, prefix: &str, extra: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oslo_notify.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args([url, &count.to_string(), prefix])
        .args(extra)
        .stdout(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "oslo.messaging publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nova's own notifier library publishes to the `nova` exchange; pugmark's durable queue
/// receives it, every notification is stored once with its oslo envelope, messages published
/// while pugmark is down wait in the queue, 20 kill -9 cycles during a paced stream lose and
/// duplicate nothing (redeliveries of what was durable are recognised), and the queue is
/// drained only of what was stored.
#[test]
fn oslo_messaging_notifications_over_rabbitmq_are_stored_then_acked() {
    let Some(python) = amqp_peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(&dir.path().join("rmq"));
    let data = dir.path().join("data");
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        format!("version = 1\n[amqp]\nurl = \"{}\"\n", rabbit.url()),
    )
    .unwrap();
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let start = || Server::start_on(&data, Some(&config), tcp, tcp, relp, http, None);
    // First start declares and binds pugmark's queue.
    let s = start();
    wait_amqp_consuming(&s);
    oslo_notify(
        &python,
        &rabbit.oslo_url(),
        300,
        "live",
        &["--raw", "this is not json"],
    );
    s.wait_ledger(301, 60);
    assert_eq!(
        s.metric("pugmark_parse_errors_total{listener=\"amqp\"}"),
        1.0
    );
    let log = s.stop();
    assert_eq!(log.matches("message is not JSON").count(), 1, "{log}");
    // Published while pugmark is down: kept by the broker in pugmark's durable queue.
    oslo_notify(&python, &rabbit.oslo_url(), 200, "offline", &[]);
    assert_eq!(rabbit.queue("pugmark.notifications"), (200, 0));
    // One paced publisher (~20 s) and 20 kill -9 cycles of pugmark while it runs.
    let n_stream = 3000;
    let url = rabbit.oslo_url();
    let py = python.clone();
    let publisher = std::thread::spawn(move || {
        oslo_notify(&py, &url, n_stream, "stream", &["--pace", "100:300"]);
    });
    let cycles = 20;
    let (mut dups, mut at_kill) = (0.0, Vec::new());
    for c in 0..cycles {
        let s = start();
        std::thread::sleep(Duration::from_millis(350 + 83 * (c % 6)));
        dups += s.metric("pugmark_duplicates_total{listener=\"amqp\"}");
        at_kill.push(s.metric("pugmark_ledger_last_seq") as u64);
        s.kill9();
    }
    publisher.join().unwrap();
    let s = start();
    let total = 300 + 1 + 200 + n_stream as u64;
    s.wait_ledger(total, 120);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rabbit.queue("pugmark.notifications") != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "queue not drained: {:?}",
            rabbit.queue("pugmark.notifications")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    dups += s.metric("pugmark_duplicates_total{listener=\"amqp\"}");
    assert_eq!(
        s.metric("pugmark_ledger_last_seq") as u64,
        total,
        "nothing stored after the queue drained"
    );
    s.stop();
    eprintln!("ledger position at each kill: {at_kill:?}; redeliveries recognised: {dups}");
    // The kills landed mid-stream: the ledger moved between most of them.
    let moving = at_kill
        .windows(2)
        .filter(|w| w[0] < w[1] && w[1] < total)
        .count();
    assert!(moving >= 10, "{at_kill:?}");

    let all = hits(&data, "*");
    assert_eq!(all.len() as u64, total, "each notification stored once");
    let names: BTreeSet<String> = all
        .iter()
        .filter_map(|h| {
            let raw = h["raw"].as_str()?;
            let i = raw.find("display_name")?;
            Some(
                raw[i..]
                    .split('"')
                    .nth(2)?
                    .trim_end_matches('\\')
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(names.len() as u64, total - 1, "distinct notifications");
    for h in &all {
        assert_eq!(h["origin"]["listener"], "amqp");
        let raw = h["raw"].as_str().unwrap();
        if raw != "this is not json" {
            assert!(
                raw.starts_with("{\"oslo.version\": \"2.0\""),
                "oslo envelope kept: {raw}"
            );
            assert!(
                h["origin"]["addr"]
                    .as_str()
                    .unwrap()
                    .ends_with("/nova/versioned_notifications.info"),
                "{}",
                h["origin"]
            );
        }
    }
    assert!(pugmark(&data, &["verify"]).status.success());
    drop(rabbit);
}

/// Neutron's notifier (oslo.messaging, publisher `network.host`, messagingv2, exchange
/// `neutron`, routing key `notifications.info`: tests/peers/oslo_notify_neutron.py) reaches
/// pugmark's queue with nothing but the URL configured (the default exchanges bind `neutron`),
/// and decodes into a floating-IP record (issue 12).
#[test]
fn a_neutron_notification_from_oslo_messaging_is_consumed_and_decoded() {
    let Some(python) = amqp_peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(&dir.path().join("rmq"));
    let data = dir.path().join("data");
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        format!("version = 1\n[amqp]\nurl = \"{}\"\n", rabbit.url()),
    )
    .unwrap();
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let s = Server::start_on(&data, Some(&config), tcp, tcp, relp, http, None);
    wait_amqp_consuming(&s);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oslo_notify_neutron.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(rabbit.oslo_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_ledger(1, 60);
    s.stop();
    let all = hits(&data, "ip:203.0.113.77");
    assert_eq!(all.len(), 1, "{all:?}");
    let h = &all[0];
    assert!(
        h["origin"]["addr"]
            .as_str()
            .unwrap()
            .ends_with("/neutron/notifications.info"),
        "{}",
        h["origin"]
    );
    assert_eq!(h["fields"]["neutron_resource"], "floatingip", "{h}");
    assert_eq!(
        h["fields"]["fip_port"], "1d2c3b4a-0000-4b00-9b00-0000000000aa",
        "{h}"
    );
    assert_eq!(h["app"], "network", "{h}");
    assert!(pugmark(&data, &["verify"]).status.success());
    drop(rabbit);
}

/// A site's central rsyslog archives what VMs send with pugmark's archive template
/// (`%timegenerated:::date-rfc3339% %fromhost-ip% %rawmsg%`, docs/SITES.md); `ingest` of that
/// file keeps the logger's receive time and the sender's address, so `check` holds the VM's
/// claims against them exactly as for live senders: a foreign hostname from a leased address,
/// a clock set back, skew and its jump.
#[test]
fn check_holds_a_central_rsyslog_archive_against_leases_and_the_loggers_clock() {
    if !tools_for_rsyslog(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // rsyslog stamps what it receives with the real time, so the lease must cover now.
    #[allow(clippy::disallowed_methods)]
    let now = jiff::Timestamp::now();
    let created = now - jiff::SignedDuration::from_hours(1);
    let note = serde_json::json!({
        "event_type": "instance.create.end", "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": created.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(), "message_id": "m-arch-1",
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": "a0000000-0000-4000-8000-00000000000a",
            "host": "cmp1", "host_name": "real-1", "user_id": "u1", "tenant_id": "p1", "state": "active",
            "ip_addresses": [{"nova_object.name": "IpPayload", "nova_object.data": {"address": "127.0.0.1", "mac": "fa:16:3e:00:00:0a"}}]}}
    });
    let nf = dir.path().join("notifications.json");
    fs::write(&nf, format!("{note}\n")).unwrap();
    ok(&data, &["ingest", nf.to_str().unwrap()]);

    let port = free_port();
    let archive = dir.path().join("archive.log");
    let _rsyslog = Rsyslog::start(
        dir.path(),
        &format!(
            r#"module(load="imtcp")
template(name="pugmark-archive" type="string" string="%timegenerated:::date-rfc3339% %fromhost-ip% %rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="archive")
ruleset(name="archive") {{ action(type="omfile" file="{file}" template="pugmark-archive") }}
"#,
            file = archive.display()
        ),
        port,
    );
    // RFC 3164 as a VM's rsyslog forwards it by default: zone-less local (UTC here) stamps.
    let bsd = |t: jiff::Timestamp| t.strftime("%b %e %H:%M:%S").to_string();
    let lines = [
        format!("<86>{} evil-host sshd[7]: I am someone else", bsd(now)),
        format!("<86>{} real-1 sshd[7]: all is well", bsd(now)),
        format!(
            "<86>{} real-1 sshd[7]: my clock was set back",
            bsd(now - jiff::SignedDuration::from_hours(2))
        ),
    ];
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for l in &lines {
        s.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&archive).map_or(0, |t| t.lines().count()) < lines.len() {
        assert!(
            Instant::now() < deadline,
            "rsyslog did not write the archive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let written = fs::read_to_string(&archive).unwrap();
    for (got, sent) in written.lines().zip(&lines) {
        assert!(got.ends_with(&format!(" 127.0.0.1 {sent}")), "{got}");
    }
    ok(
        &data,
        &["ingest", "--observer", "vm", archive.to_str().unwrap()],
    );

    let out = ok(&data, &["check", "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let findings = r["findings"].as_array().unwrap();
    let has = |kind: &str, needle: &str| {
        findings.iter().any(|f| {
            f["kind"] == kind
                && f["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap() == needle)
        })
    };
    assert!(has("forged_hostname", "evil-host"), "{r:#}");
    assert!(has("forged_hostname", "127.0.0.1"), "{r:#}");
    for kind in ["clock_skew", "clock_backwards", "clock_jump"] {
        assert!(has(kind, "127.0.0.1@archive"), "{kind}: {r:#}");
        assert!(
            has(kind, "a0000000-0000-4000-8000-00000000000a"),
            "{kind}: {r:#}"
        );
    }
    assert!(
        !findings.iter().any(|f| f["kind"] == "forged_hostname"
            && f["summary"]
                .as_str()
                .unwrap()
                .contains("claims to be real-1")),
        "{r:#}"
    );
    // The timeline places the VM's lines by the logger's clock, the VM's claim beside it:
    // the line stamped two hours back (before the VM existed) is inside its life.
    let tl = ok(
        &data,
        &[
            "timeline",
            "--vm",
            "a0000000-0000-4000-8000-00000000000a",
            "--json",
        ],
    );
    let tl: Value = serde_json::from_str(&tl).unwrap();
    let entry = tl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["summary"]
                .as_str()
                .unwrap()
                .contains("my clock was set back")
        })
        .unwrap_or_else(|| panic!("{tl:#}"));
    assert!(
        entry["summary"].as_str().unwrap().contains("[reported "),
        "{entry}"
    );
    let placed: jiff::Timestamp = entry["time"].as_str().unwrap().parse().unwrap();
    assert!(
        placed > created && placed < now + jiff::SignedDuration::from_mins(5),
        "{entry}"
    );
    // Without the archive's two collector facts the same lines prove nothing of the kind.
    let plain = dir.path().join("plain.log");
    let stripped: Vec<String> = written
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
        .collect();
    fs::write(&plain, stripped.join("\n") + "\n").unwrap();
    let data2 = dir.path().join("data2");
    ok(&data2, &["ingest", nf.to_str().unwrap()]);
    ok(
        &data2,
        &["ingest", "--observer", "vm", plain.to_str().unwrap()],
    );
    let r: Value = serde_json::from_str(&ok(&data2, &["check", "--json"])).unwrap();
    let kinds: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"clock_skew"), "{r:#}");
}

/// Issue 5 cross-checks on live senders: the sender's address is held against the cloud's
/// lease of it, and its clock against the collector's.
#[test]
fn check_holds_live_syslog_against_the_lease_of_its_address_and_the_collector_clock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The collector's clock is the reference here, so the test needs the real time.
    #[allow(clippy::disallowed_methods)]
    let now = jiff::Timestamp::now();
    let created = now - jiff::SignedDuration::from_hours(1);
    let stamp = created.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let note = serde_json::json!({
        "event_type": "instance.create.end", "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": stamp, "message_id": "m-live-1",
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": "d0000000-0000-4000-8000-00000000000d",
            "host": "cmp1", "host_name": "real-1", "user_id": "u1", "tenant_id": "p1", "state": "active",
            "ip_addresses": [{"nova_object.name": "IpPayload", "nova_object.data": {"address": "127.0.0.1", "mac": "fa:16:3e:00:00:0d"}}]}}
    });
    let nf = dir.path().join("notifications.json");
    fs::write(&nf, format!("{note}\n")).unwrap();
    ok(&data, &["ingest", nf.to_str().unwrap()]);

    let server = Server::start(&data, None, false);
    let two_hours_ago = now - jiff::SignedDuration::from_hours(2);
    let lines = [
        format!("<13>1 {now} evil-host app 1 - - I am someone else"),
        format!("<13>1 {now} real-1 app 1 - - all is well"),
        format!("<13>1 {two_hours_ago} real-1 app 1 - - my clock was set back"),
    ];
    let mut s = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    for l in &lines {
        s.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
    drop(s);
    server.wait_ledger(1 + lines.len() as u64, 30);
    server.stop();

    let out = ok(&data, &["check", "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let findings = r["findings"].as_array().unwrap();
    let has = |kind: &str, needle: &str| {
        findings.iter().any(|f| {
            f["kind"] == kind
                && f["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().contains(needle))
        })
    };
    assert!(has("forged_hostname", "evil-host"), "{r:#}");
    assert!(has("forged_hostname", "127.0.0.1"), "{r:#}");
    assert!(has("clock_skew", "127.0.0.1"), "{r:#}");
    assert!(has("clock_backwards", "127.0.0.1"), "{r:#}");
    assert!(has("clock_jump", "127.0.0.1"), "{r:#}");
    // The VM's own name from its own address is no finding.
    assert!(
        !findings.iter().any(|f| f["kind"] == "forged_hostname"
            && f["summary"]
                .as_str()
                .unwrap()
                .contains("claims to be real-1")),
        "{r:#}"
    );
}

/// A TCP relay between pugmark and the broker that forwards the broker's frames always and
/// pugmark's only while `hold` is off: with it on, pugmark's `basic.ack`s never reach the
/// broker, so a kill -9 lands exactly between "durable in the ledger" and "acknowledged".
struct AckGate {
    port: u16,
    hold: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AckGate {
    fn start(upstream: u16) -> AckGate {
        use std::sync::atomic::Ordering::SeqCst;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = hold.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut client) = c else { continue };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c2, mut up2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let h = h.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) if !h.load(SeqCst) => {
                                if up.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {} // held back: never delivered
                        }
                    }
                    let _ = up.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        AckGate { port, hold }
    }

    fn hold(&self, on: bool) {
        self.hold.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Resend recognition observed live over AMQP: notifications made durable whose acks never
/// reached RabbitMQ (held back by a relay), then kill -9; the broker redelivers them to the
/// restarted pugmark, which acknowledges them without storing them again and counts each as
/// a duplicate; the queue drains and `verify` passes.
#[test]
fn amqp_redelivery_after_a_crash_between_fsync_and_ack_is_stored_once_and_counted() {
    let Some(python) = amqp_peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(&dir.path().join("rmq"));
    let gate = AckGate::start(rabbit.port);
    let data = dir.path().join("data");
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        format!(
            "version = 1\n[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:{}/\"\n",
            gate.port
        ),
    )
    .unwrap();
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let start = || {
        let s = Server::start_on(&data, Some(&config), tcp, tcp, relp, http, None);
        wait_amqp_consuming(&s);
        s
    };
    let queue = "pugmark.notifications";
    let wait_queue = |want: (u64, u64)| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rabbit.queue(queue) != want {
            assert!(
                Instant::now() < deadline,
                "queue {:?}, expected {want:?}",
                rabbit.queue(queue)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let s = start();
    oslo_notify(&python, &rabbit.oslo_url(), 100, "acked", &[]);
    s.wait_ledger(100, 60);
    wait_queue((0, 0));
    // Acks held back: durable in the ledger, unacknowledged at the broker.
    gate.hold(true);
    let held = 50;
    oslo_notify(&python, &rabbit.oslo_url(), held, "held", &[]);
    s.wait_ledger(100 + held as u64, 60);
    wait_queue((0, held as u64));
    assert_eq!(s.metric("pugmark_duplicates_total{listener=\"amqp\"}"), 0.0);
    s.kill9();
    // The broker takes them back (connection gone) and redelivers them after the restart.
    wait_queue((held as u64, 0));
    gate.hold(false);
    let s = start();
    wait_queue((0, 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.metric("pugmark_duplicates_total{listener=\"amqp\"}") < held as f64 {
        assert!(Instant::now() < deadline, "{:?}", s.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.metric("pugmark_duplicates_total{listener=\"amqp\"}"),
        held as f64
    );
    assert_eq!(
        s.metric("pugmark_messages_total{listener=\"amqp\"}"),
        held as f64
    );
    // New notifications after the redelivery are stored as usual.
    oslo_notify(&python, &rabbit.oslo_url(), 10, "after", &[]);
    s.wait_ledger(100 + held as u64 + 10, 60);
    wait_queue((0, 0));
    let status = Command::new(bin())
        .args(["status", "--http", &format!("127.0.0.1:{}", s.http)])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    s.stop();
    assert_eq!(count(&data, &["*"]), 100 + held as u64 + 10, "{status}");
    assert_eq!(count(&data, &["held"]), held as u64);
    assert!(pugmark(&data, &["verify"]).status.success());
    drop(rabbit);
}

/// A RELP client speaking exactly what librelp 1.11 puts on the wire (PEERS.md §1): `open`
/// with its offers, wait for the `rsp`, then a window of `syslog` frames pipelined without
/// waiting. Returns the stream.
fn relp_open(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let offers =
        "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
    writeln!(c, "1 open {} {offers}", offers.len()).unwrap();
    let rsp = relp_read_frames(&mut c, 1);
    assert!(
        rsp[0].starts_with("1 rsp ") && rsp[0].contains("200 OK"),
        "{rsp:?}"
    );
    c
}

/// `n` whole RELP frames (as text, without the trailing LF) read from `c`.
fn relp_read_frames(c: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        // TXNR SP COMMAND SP DATALEN [SP DATA] LF
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let mut spaces = text.match_indices(' ').map(|(i, _)| i);
            let (Some(_), Some(s2)) = (spaces.next(), spaces.next()) else {
                break;
            };
            let digits = text[s2 + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let head = s2 + 1 + digits;
            if head >= text.len() {
                break;
            }
            let dlen: usize = text[s2 + 1..head].parse().unwrap();
            // DATALEN 0: "… 0\n"; otherwise "… DATALEN SP DATA\n".
            let end = if dlen == 0 {
                head + 1
            } else {
                head + 1 + dlen + 1
            };
            if buf.len() < end {
                break;
            }
            out.push(String::from_utf8_lossy(&buf[..end - 1]).into_owned());
            buf.drain(..end);
            if out.len() == n {
                return out;
            }
        }
        let k = c.read(&mut chunk).unwrap();
        assert!(k > 0, "connection closed after {out:?}");
        buf.extend_from_slice(&chunk[..k]);
    }
    out
}

/// Resend recognition observed live over RELP: a client sends a window, pugmark makes it
/// durable and is killed -9 before the client reads a single `rsp`; the client reconnects
/// and resends the window (renumbered, as librelp does) → every frame answered `200 OK`,
/// stored once, each resend counted as a duplicate in /metrics; new frames are stored.
#[test]
fn relp_window_resent_after_a_crash_before_the_rsp_is_stored_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let server = Server::start_on(&data, None, tcp, tcp, relp, http, None);
    let window = 100usize;
    let msg = |i: usize| {
        format!("<13>1 2026-12-02T22:00:00.000000+00:00 vm relpwin - - - window-{i:04} payload\n")
    };
    let send = |c: &mut TcpStream, first_txnr: usize, range: std::ops::Range<usize>| {
        let mut out = String::new();
        for (k, i) in range.enumerate() {
            let m = msg(i);
            out.push_str(&format!("{} syslog {} {m}\n", first_txnr + k, m.len()));
        }
        c.write_all(out.as_bytes()).unwrap();
    };
    let mut c = relp_open(relp);
    send(&mut c, 2, 0..window);
    server.wait_ledger(window as u64, 30);
    // Durable, and not one rsp read by the client: a crash now leaves it all unacknowledged.
    server.kill9();
    drop(c);
    let server = Server::start_on(&data, None, tcp, tcp, relp, http, None);
    let mut c = relp_open(relp);
    send(&mut c, 2, 0..window);
    send(&mut c, 2 + window, window..window + 5);
    let rsps = relp_read_frames(&mut c, window + 5);
    for (k, r) in rsps.iter().enumerate() {
        assert_eq!(r, &format!("{} rsp 6 200 OK", 2 + k), "{rsps:?}");
    }
    writeln!(c, "{} close 0", 2 + window + 5).unwrap();
    let end = relp_read_frames(&mut c, 2);
    assert_eq!(end[0], format!("{} rsp 0", 2 + window + 5));
    assert_eq!(end[1], "0 serverclose 0");
    let m = server.metrics();
    assert_eq!(
        m["pugmark_duplicates_total{listener=\"relp\"}"],
        window as f64
    );
    assert_eq!(
        m["pugmark_messages_total{listener=\"relp\"}"],
        (window + 5) as f64
    );
    assert_eq!(m["pugmark_ledger_last_seq"], (window + 5) as f64);
    server.stop();
    let h = hits(&data, "relpwin");
    let msgs: BTreeSet<String> = messages_of(&h).into_iter().collect();
    assert_eq!(h.len(), window + 5, "stored once each");
    assert_eq!(msgs.len(), window + 5);
    assert!(pugmark(&data, &["verify"]).status.success());
}

/// Fair sharing under a flood (issue 4): one TCP connection sends as fast as it can and one
/// UDP socket floods; meanwhile a RELP client (each message waits for its durable `rsp`) and
/// three TCP senders keep flowing with bounded delay, and every flood datagram is accounted
/// for: stored, or counted as dropped by pugmark or by the kernel — never silently lost.
#[test]
fn a_flooding_sender_does_not_starve_the_others_and_udp_drops_are_counted() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None, false);
    let stop = Arc::new(AtomicBool::new(false));
    // The TCP flood: whole buffers of LF-framed lines, as fast as the socket takes them.
    let lines_per_buf = 4096u64;
    let tcp_flood = {
        let (stop, port) = (stop.clone(), server.tcp);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            for i in 0..lines_per_buf {
                writeln!(
                    buf,
                    "<13>1 - flooder app - - - tcpflood line {i:05} {:x<60}",
                    ""
                )
                .unwrap();
            }
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut bufs = 0u64;
            // Capped so a regression cannot make the test run for ever.
            while !stop.load(SeqCst) && bufs < 400 {
                s.write_all(&buf).unwrap();
                bufs += 1;
            }
            bufs * lines_per_buf
        })
    };
    let udp_sent = Arc::new(AtomicU64::new(0));
    let udp_flood = {
        let (stop, port, sent) = (stop.clone(), server.udp, udp_sent.clone());
        std::thread::spawn(move || {
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let d = format!("<13>1 - udpflooder app - - - udpflood {:x<120}", "");
            // Bursts with a 1 ms pause: a flood well beyond what is stored, without taking a
            // whole core of this 2-core machine from the server under test.
            while !stop.load(SeqCst) {
                for _ in 0..500 {
                    if u.send_to(d.as_bytes(), ("127.0.0.1", port)).is_ok() {
                        sent.fetch_add(1, SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let flood_at_start = server.metric("pugmark_messages_total{listener=\"syslog-tcp\"}");
    // The others, while the flood goes on.
    let (n_relp, n_tcp, senders) = (30usize, 30usize, 3usize);
    let relp_port = server.relp;
    let relp = std::thread::spawn(move || {
        let mut c = relp_open(relp_port);
        let mut worst = Duration::ZERO;
        for i in 0..n_relp {
            let m = format!("<13>1 - relpother app - - - relp-other {i:03}\n");
            let t = Instant::now();
            writeln!(c, "{} syslog {} {m}", i + 2, m.len()).unwrap();
            let r = relp_read_frames(&mut c, 1);
            assert_eq!(r[0], format!("{} rsp 6 200 OK", i + 2));
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        worst
    });
    let others: Vec<_> = (0..senders)
        .map(|k| {
            let port = server.tcp;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                for i in 0..n_tcp {
                    // The sender's clock in the message: received − reported is the delay.
                    #[allow(clippy::disallowed_methods)]
                    let now = jiff::Timestamp::now();
                    writeln!(s, "<13>1 {now} other{k} app - - - tcp-other {k} {i:03}").unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let relp_worst = relp.join().unwrap();
    for o in others {
        o.join().unwrap();
    }
    let flood_during =
        server.metric("pugmark_messages_total{listener=\"syslog-tcp\"}") - flood_at_start;
    stop.store(true, SeqCst);
    let tcp_lines = tcp_flood.join().unwrap();
    udp_flood.join().unwrap();
    let udp_sent = udp_sent.load(SeqCst);
    // Everything the TCP flood wrote arrives; then the books must balance.
    let tcp_total = tcp_lines + (senders * n_tcp) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (server.metric("pugmark_messages_total{listener=\"syslog-tcp\"}") as u64) < tcp_total {
        assert!(Instant::now() < deadline, "{:?}", server.metrics());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Datagrams still in the socket's receive buffer (MiBs: the listener waits a little for
    // the writer before it drops) are read after the flood ends: wait for the books to close.
    let udp_settled = |m: &BTreeMap<String, f64>| {
        (m["pugmark_messages_total{listener=\"syslog-udp\"}"]
            + m["pugmark_udp_kernel_drops{listener=\"syslog-udp\"}"]) as u64
            >= udp_sent
    };
    while !udp_settled(&server.metrics()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = server.metrics();
    let udp_msgs = m["pugmark_messages_total{listener=\"syslog-udp\"}"] as u64;
    let udp_drops = m["pugmark_drops_total{listener=\"syslog-udp\"}"] as u64;
    let kernel_drops = m["pugmark_udp_kernel_drops{listener=\"syslog-udp\"}"] as u64;
    let stored_total = tcp_total + n_relp as u64 + udp_msgs - udp_drops;
    server.wait_ledger(stored_total, 120);
    server.stop();
    eprintln!(
        "flood: tcp {tcp_lines} lines ({flood_during} while the others sent), udp {udp_sent} sent, {udp_drops} dropped by pugmark, {kernel_drops} by the kernel; worst RELP round trip {relp_worst:?}"
    );
    assert_eq!(
        udp_msgs + kernel_drops,
        udp_sent,
        "every UDP datagram read by pugmark or counted as dropped by the kernel"
    );
    assert!(
        flood_during > 10_000.0,
        "the flood really went on: {flood_during}"
    );
    // Bounded delay for the others (debug build, shared 2-core machine: generous bounds).
    assert!(
        relp_worst < Duration::from_secs(2),
        "RELP round trip {relp_worst:?}"
    );
    let h = hits(&data, "tcp-other");
    assert_eq!(h.len(), senders * n_tcp);
    let mut worst_ms = 0;
    for x in &h {
        let ms = |k: &str| {
            x[k].as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        };
        let reported = x["reported"]["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        worst_ms = worst_ms.max(ms("received") - reported);
    }
    eprintln!("worst TCP delay (received - sent) of the other senders: {worst_ms} ms");
    assert!(worst_ms < 2000, "{worst_ms} ms");
    assert_eq!(count(&data, &["relp-other"]), n_relp as u64);
    assert_eq!(count(&data, &["udpflood"]), udp_msgs - udp_drops);
    assert_eq!(count(&data, &["tcpflood"]), tcp_lines);
}

/// A nova notification that gives VM `real-1` the address `addr`, an hour ago (what `check`
/// knows the site's VMs and their addresses by); ingested before serving.
fn ingest_vm_lease(dir: &Path, data: &Path, addr: &str) {
    // The collector's clock is the reference here, so the test needs the real time.
    #[allow(clippy::disallowed_methods)]
    let created = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let stamp = created.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let note = serde_json::json!({
        "event_type": "instance.create.end", "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": stamp, "message_id": "m-doors-1",
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": "d0000000-0000-4000-8000-0000000000a1",
            "host": "cmp1", "host_name": "real-1", "user_id": "u1", "tenant_id": "p1", "state": "active",
            "ip_addresses": [{"nova_object.name": "IpPayload", "nova_object.data": {"address": addr, "mac": "fa:16:3e:00:00:a1"}}]}}
    });
    let nf = dir.join("notifications.json");
    fs::write(&nf, format!("{note}\n")).unwrap();
    ok(data, &["ingest", nf.to_str().unwrap()]);
}

/// A netfilter LOG line as a hypervisor's kernel writes it for a VM's traffic from `src`.
fn netfilter_line(src: &str) -> String {
    format!(
        "[12345.678] vm-egress: IN=brq1 OUT=eth0 PHYSIN=tap1 SRC={src} DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
    )
}

fn findings(data: &Path) -> Vec<Value> {
    let r: Value = serde_json::from_str(&ok(data, &["check", "--json"])).unwrap();
    r["findings"].as_array().cloned().unwrap_or_default()
}

fn has_finding(findings: &[Value], kind: &str, entity: &str) -> bool {
    findings.iter().any(|f| {
        f["kind"] == kind
            && f["entities"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == entity))
    })
}

/// Issue 10, the door decides the observer: rsyslog forwarding a hypervisor's netfilter log
/// over mutual TLS with the hypervisor's certificate (mapped by its SAN) is stored as
/// `hypervisor`, and `check` finds the unknown host that hypervisor saw. The same kind of line
/// forged from inside a VM — over TLS with a certificate the CA signed but nobody mapped, and
/// over plain TCP — is stored as `vm` (the format is the same; the sender is not), and `check`
/// does not take it as hypervisor evidence. Before the sender map, all three were `vm`.
#[test]
fn a_hypervisor_proven_by_its_certificate_is_hypervisor_and_a_vm_forging_its_lines_stays_vm() {
    if !tools_for_rsyslog(&["lmnsd_gtls"]) || require("openssl", which("openssl")).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        r#"version = 1
[tls]
cert = "pki/server.pem"
key = "pki/server.key"
client_ca = "pki/ca.pem"
[[senders.map]]
name = "hv01"
observer = "hypervisor"
san = "hv01.test"
listener = "syslog-tls"
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    ingest_vm_lease(dir.path(), &data, "10.20.30.5");
    let server = Server::start(&data, Some(&config), true);
    let tls = server.tls.unwrap();

    // The hypervisor: rsyslog with hv01's certificate.
    let input = free_port();
    let work = dir.path().join("rsyslog");
    let conf = gtls_forwarder(&pki, "hv01", input, tls);
    let rsyslog = Rsyslog::start(&work, &conf, input);
    logger_tcp(input, "kernel", &[netfilter_line("10.20.30.99")], &[]);
    server.wait_ledger(2, 60);

    // A VM over TLS with a certificate nobody mapped.
    #[allow(clippy::disallowed_methods)]
    let now = jiff::Timestamp::now();
    let mut child = Command::new("openssl")
        .current_dir(&pki)
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{tls}"),
            "-CAfile",
            "ca.pem",
            "-cert",
            "client.pem",
            "-key",
            "client.key",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "<4>1 {now} vm-1 kernel - - - {}",
        netfilter_line("10.20.30.77")
    )
    .unwrap();
    stdin.flush().unwrap();
    server.wait_ledger(3, 30);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    // A VM over plain TCP.
    let mut plain = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    writeln!(
        plain,
        "<4>1 {now} vm-2 kernel - - - {}",
        netfilter_line("10.20.30.66")
    )
    .unwrap();
    drop(plain);
    server.wait_ledger(4, 30);
    drop(rsyslog);
    // status names the sender and its observer.
    let status = Command::new(bin())
        .args(["status", "--http", &format!("127.0.0.1:{}", server.http)])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    let line = status
        .lines()
        .find(|l| l.contains("CN=hv01.test"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("hypervisor hv01"), "{status}");
    let line = status
        .lines()
        .find(|l| l.contains("CN=client.test"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("vm -"), "{status}");
    server.stop();

    let h = hits(&data, "class:net.connection");
    assert_eq!(h.len(), 3, "{h:#?}");
    let by_src = |src: &str| {
        h.iter()
            .find(|x| x["fields"]["src_ip"] == src)
            .unwrap_or_else(|| panic!("no hit from {src}: {h:#?}"))
    };
    let hv = by_src("10.20.30.99");
    assert_eq!(hv["observer"], "hypervisor", "{hv:#}");
    assert_eq!(hv["origin"]["listener"], "syslog-tls");
    assert!(
        hv["origin"]["identity"]
            .as_str()
            .unwrap()
            .contains("CN=hv01.test")
    );
    let forged_tls = by_src("10.20.30.77");
    assert_eq!(forged_tls["observer"], "vm", "{forged_tls:#}");
    assert!(
        forged_tls["origin"]["identity"]
            .as_str()
            .unwrap()
            .contains("CN=client.test")
    );
    let forged_tcp = by_src("10.20.30.66");
    assert_eq!(forged_tcp["observer"], "vm", "{forged_tcp:#}");
    assert_eq!(forged_tcp["origin"]["listener"], "syslog-tcp");

    let f = findings(&data);
    assert!(has_finding(&f, "unknown_host", "10.20.30.99"), "{f:#?}");
    for forged in ["10.20.30.77", "10.20.30.66"] {
        assert!(
            !f.iter()
                .any(|x| x["kind"] == "unknown_host" && x.to_string().contains(forged)),
            "a VM's forged line is no hypervisor evidence: {f:#?}"
        );
    }
}

/// Issue 10, HTTP needs a credential: a POST without a token and one with a wrong token are
/// answered 401 and store nothing (counted as refused); each configured token maps its
/// requests to its own observer (nova → `cloud`, a VO → `vo`) with `bearer:NAME` as the
/// proven identity. `/metrics` on its own address (`--metrics`) is not on the HTTP listener,
/// and ingestion is not on the metrics address.
#[test]
fn http_ingestion_needs_a_token_and_each_token_maps_to_its_observer() {
    let dir = tempfile::tempdir().unwrap();
    let (nova, nova_entry) = new_token("nova", "cloud");
    let (vo, vo_entry) = new_token("atlas-pilots", "vo");
    let config = dir.path().join("pugmark.toml");
    let metrics_port = free_port();
    fs::write(
        &config,
        format!(
            "version = 1\n[listeners]\nmetrics = \"127.0.0.1:{metrics_port}\"\n{nova_entry}{vo_entry}"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config), false);
    wait_for_port(metrics_port, "metrics listener");
    let note = |id: &str| {
        format!(
            "{{\"event_type\":\"compute.instance.create.end\",\"message_id\":\"{id}\",\"payload\":{{\"instance_id\":\"{id}\"}}}}\n"
        )
    };

    let none = post_events(server.http, None, &note("no-token"));
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(
        none.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{none}"
    );
    assert!(none.contains("bearer token is required"), "{none}");
    let wrong = post_events(server.http, Some("pmk_not-a-token"), &note("wrong-token"));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    // The right token in the wrong scheme is no token.
    let mut c = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
    let body = note("basic");
    write!(
        c,
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {nova}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut basic = String::new();
    c.read_to_string(&mut basic).unwrap();
    assert!(basic.starts_with("HTTP/1.1 401"), "{basic}");

    let ok_nova = post_events(server.http, Some(&nova), &note("from-nova"));
    assert!(ok_nova.starts_with("HTTP/1.1 200"), "{ok_nova}");
    let ok_vo = post_events(server.http, Some(&vo), &note("from-vo"));
    assert!(ok_vo.starts_with("HTTP/1.1 200"), "{ok_vo}");
    // 200 is answered once durable: both are in the ledger now.

    // /metrics lives on its own address only; ingestion is not there.
    assert!(
        http_get(server.http, "/metrics").starts_with("HTTP/1.0 404"),
        "/metrics must not be on the ingestion listener"
    );
    let m = http_get(metrics_port, "/metrics");
    assert!(m.starts_with("HTTP/1.0 200"), "{m}");
    assert!(
        m.contains("pugmark_refused_total{listener=\"http\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("observer=\"cloud\",name=\"nova\"")
            && m.contains("observer=\"vo\",name=\"atlas-pilots\""),
        "{m}"
    );
    let on_metrics = post_events(metrics_port, Some(&nova), &note("via-metrics"));
    assert!(!on_metrics.starts_with("HTTP/1.1 200"), "{on_metrics}");
    let status = Command::new(bin())
        .args(["status", "--http", &format!("127.0.0.1:{metrics_port}")])
        .output()
        .unwrap();
    assert!(status.status.success());
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("bearer:nova") && status.contains("cloud nova"),
        "{status}"
    );
    let log = server.stop();
    assert!(log.contains("bearer token is required"), "{log}");

    let h = hits(&data, "*");
    assert_eq!(
        h.len(),
        2,
        "only the two authenticated posts are stored: {h:#?}"
    );
    let by_id = |id: &str| {
        h.iter()
            .find(|x| x["raw"].as_str().unwrap_or_default().contains(id))
            .unwrap_or_else(|| panic!("{id} not stored: {h:#?}"))
    };
    let n = by_id("from-nova");
    assert_eq!(n["observer"], "cloud");
    assert_eq!(n["origin"]["kind"], "authenticatedpeer");
    assert_eq!(n["origin"]["identity"], "bearer:nova");
    let v = by_id("from-vo");
    assert_eq!(v["observer"], "vo");
    assert_eq!(v["origin"]["identity"], "bearer:atlas-pilots");
}

/// Issue 10, CIDR entries and `unmatched = "refuse"`: a UDP sender from 127.0.0.2 mapped by
/// its address is stored under its entry's observer; from 127.0.0.1 (unmatched) its datagrams
/// are dropped, its TCP connection closed unread, its RELP session ended with `serverclose`,
/// each counted as refused and logged once; with no token configured `POST /api/v1/events`
/// is off (404). Nothing from the refused sender reaches the ledger.
#[test]
fn cidr_entries_map_senders_and_unmatched_refuse_closes_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        r#"version = 1
[senders]
unmatched = "refuse"
[[senders.map]]
name = "hv-udp"
observer = "hypervisor"
cidr = "127.0.0.2/32"
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config), false);

    let mapped = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let line = format!(
        "<4>Dec  6 00:00:00 hv-udp kernel: {}",
        netfilter_line("10.9.9.9")
    );
    mapped
        .send_to(line.as_bytes(), ("127.0.0.1", server.udp))
        .unwrap();
    server.wait_ledger(1, 30);
    let refused = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        refused
            .send_to(
                b"<13>1 - vm a - - - refused datagram",
                ("127.0.0.1", server.udp),
            )
            .unwrap();
    }
    let mut tcp = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.write_all(b"<13>1 - vm a - - - refused over tcp\n");
    let mut buf = [0u8; 16];
    assert_eq!(
        tcp.read(&mut buf).unwrap_or(0),
        0,
        "refused connection closed"
    );
    let mut relp = TcpStream::connect(("127.0.0.1", server.relp)).unwrap();
    relp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(relp_read_frames(&mut relp, 1), ["0 serverclose 0"]);
    let post = post_events(server.http, Some("pmk_anything"), "{\"a\":1}");
    assert!(post.starts_with("HTTP/1.1 404"), "{post}");
    assert!(post.contains("HTTP ingestion is off"), "{post}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("pugmark_refused_total{listener=\"syslog-udp\"}") < 3.0 {
        assert!(Instant::now() < deadline, "{:?}", server.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = server.metrics();
    assert_eq!(m["pugmark_refused_total{listener=\"syslog-tcp\"}"], 1.0);
    assert_eq!(m["pugmark_refused_total{listener=\"relp\"}"], 1.0);
    assert_eq!(m["pugmark_refused_total{listener=\"http\"}"], 1.0);
    assert_eq!(
        m["pugmark_sender_info{listener=\"syslog-udp\",sender=\"127.0.0.2\",observer=\"hypervisor\",name=\"hv-udp\"}"],
        1.0,
        "{m:?}"
    );
    let log = server.stop();
    assert_eq!(
        log.matches("syslog-udp: sender refused by the sender map")
            .count(),
        1,
        "logged once: {log}"
    );

    let h = hits(&data, "*");
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["observer"], "hypervisor");
    assert_eq!(
        h[0]["origin"]["addr"].as_str().unwrap().split(':').next(),
        Some("127.0.0.2")
    );
    assert_eq!(h[0]["class"], "net.connection");
}

/// docs/SITES.md's complete sender-map example is exactly what `pugmark serve` accepts: the
/// TOML block is extracted from the doc and checked by the real program (`--check-config`),
/// so the doc and the code cannot drift apart.
#[test]
fn the_sites_doc_sender_config_is_accepted_as_written() {
    if require("openssl", which("openssl")).is_none() {
        return;
    }
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SITES.md"))
        .unwrap();
    let section = doc
        .split_once("## Senders and trust")
        .expect("docs/SITES.md has a \"Senders and trust\" section")
        .1;
    let block = section
        .split_once("```toml\n")
        .expect("the section shows a TOML config")
        .1
        .split_once("```")
        .unwrap()
        .0;
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let config = dir.path().join("pugmark.toml");
    fs::write(&config, block).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the doc's config is refused: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every entry the doc shows is in the map, certificates and tokens first.
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().split_once(". ").map(|(_, rest)| rest))
        .collect();
    let pos = |name: &str| {
        order
            .iter()
            .position(|l| l.starts_with(&format!("{name} →")))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
    };
    for name in block
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"'))
    {
        pos(name);
    }
    assert!(pos("hv01") < pos("routers"), "{text}");
    assert!(pos("nova") < pos("routers"), "{text}");
    assert!(text.contains("unmatched:"), "{text}");
}

/// Every verb, asked about the real time of a line from a VM whose clock was set back two
/// hours, finds it there and shows both times; asked about the time the VM claimed, finds
/// nothing. `data` holds the line live (`serve`) or from a central rsyslog's archive.
/// `vm_a` held 127.0.0.1 at the claimed time, `vm_b` (the sender) holds it now.
fn found_at_its_real_time(data: &Path, dir: &Path, label: &str, now: jiff::Timestamp) {
    let (vm_a, vm_b) = (
        "a0000000-0000-4000-8000-0000000000c1",
        "b0000000-0000-4000-8000-0000000000c2",
    );
    let min = jiff::SignedDuration::from_mins;
    let claimed = now - jiff::SignedDuration::from_hours(2);
    let (from, to) = ((now - min(10)).to_string(), (now + min(10)).to_string());
    let (cfrom, cto) = (
        (claimed - min(10)).to_string(),
        (claimed + min(10)).to_string(),
    );
    let window = |t: &Value| {
        let t: jiff::Timestamp = t.as_str().unwrap().parse().unwrap();
        t >= now - min(10) && t < now + min(10)
    };
    let claimed_time = |t: &Value| {
        let t: jiff::Timestamp = t.as_str().unwrap().parse().unwrap();
        (t - claimed).abs() < min(2)
    };
    let needle = "203.0.113.66";

    // search: in the window of its real time, with the claim beside it.
    let s = json(data, &["search", needle, "--from", &from, "--to", &to]);
    let hits = s["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{label}: {s:#}");
    assert!(window(&hits[0]["time"]), "{label}: {s:#}");
    assert!(claimed_time(&hits[0]["reported"]["time"]), "{label}: {s:#}");
    assert!(window(&hits[0]["collected"]), "{label}: {s:#}");
    let text = ok(data, &["search", needle, "--from", &from, "--to", &to]);
    assert!(
        text.contains("Accepted password") && text.contains("[reported "),
        "{label}: {text}"
    );
    assert_eq!(
        count(data, &[needle, "--from", &cfrom, "--to", &cto]),
        0,
        "{label}: placed by the VM's claim"
    );

    // hunt: the line came from the VM holding the sender's address when it was received.
    let iocs = dir.join(format!("iocs-{label}.txt"));
    fs::write(&iocs, format!("{needle}\n")).unwrap();
    let iocs = iocs.to_str().unwrap();
    let h = json(
        data,
        &["hunt", "--iocs", iocs, "--from", &from, "--to", &to],
    );
    let hh = h["hits"].as_array().unwrap();
    assert_eq!(hh.len(), 1, "{label}: {h:#}");
    assert!(window(&hh[0]["time"]), "{label}: {h:#}");
    assert!(claimed_time(&hh[0]["reported"]), "{label}: {h:#}");
    assert_eq!(hh[0]["sender"], "127.0.0.1", "{label}: {h:#}");
    let vms: Vec<&str> = hh[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["vm"]["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(vms, [vm_b], "{label}: {h:#}");
    let text = ok(
        data,
        &["hunt", "--iocs", iocs, "--from", &from, "--to", &to],
    );
    assert!(
        text.contains(&format!("VM {vm_b}")) && text.contains("[reported "),
        "{label}: {text}"
    );
    let h = json(
        data,
        &["hunt", "--iocs", iocs, "--from", &cfrom, "--to", &cto],
    );
    assert_eq!(h["hits"].as_array().unwrap().len(), 0, "{label}: {h:#}");

    // timeline of the sender's VM in the window of the real time.
    let tl = json(
        data,
        &["timeline", "--vm", vm_b, "--from", &from, "--to", &to],
    );
    let entry = tl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["summary"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("{label}: {tl:#}"));
    assert!(window(&entry["time"]), "{label}: {entry}");
    assert!(
        entry["summary"].as_str().unwrap().contains("[reported "),
        "{label}: {entry}"
    );

    // check: the clock findings stand in the window of the real time, both times shown.
    let c = json(data, &["check", "--from", &from, "--to", &to]);
    let ev = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"].as_str().unwrap().starts_with("clock_"))
        .flat_map(|f| f["evidence"].as_array().unwrap())
        .find(|e| e["summary"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("{label}: {c:#}"));
    assert!(window(&ev["time"]), "{label}: {ev}");
    assert!(
        ev["summary"].as_str().unwrap().contains("[reported "),
        "{label}: {ev}"
    );

    // who and report at the real time name the sender's VM, and the report holds the line.
    let at = now.to_string();
    let w = json(data, &["who", "--ip", "127.0.0.1", "--at", &at]);
    assert_eq!(w["matches"][0]["vm"]["uuid"], vm_b, "{label}: {w:#}");
    let w = json(
        data,
        &["who", "--ip", "127.0.0.1", "--at", &claimed.to_string()],
    );
    assert_eq!(w["matches"][0]["vm"]["uuid"], vm_a, "{label}: {w:#}");
    let r: Value = serde_json::from_str(&ok(
        data,
        &[
            "report",
            "--ip",
            "127.0.0.1",
            "--at",
            &at,
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(r["who"]["matches"][0]["vm"]["uuid"], vm_b, "{label}: {r:#}");
    let r = r.to_string();
    assert!(
        r.contains(needle) && r.contains("[reported "),
        "{label}: {r}"
    );
    let md = ok(
        data,
        &["report", "--ip", "127.0.0.1", "--at", &at, "--format", "md"],
    );
    assert!(
        md.contains(needle) && md.contains("[reported "),
        "{label}: {md}"
    );
}

/// The oracle of "one clock for windows": a VM whose clock was set back two hours sends
/// through its rsyslog, which forwards to `pugmark serve` (octet-counted TCP) and writes the
/// central archive (docs/SITES.md's template) at once. The address the VM sends from belonged
/// to another VM at the time the line claims. Every verb — search, hunt, timeline, check,
/// who, report — finds the line in the window of its real time, with both times shown, in
/// the live ledger and in the ingested archive alike; none finds it at the claimed time, and
/// hunt names the sender's VM, not the one that held the address two hours earlier.
#[test]
fn a_vm_clock_set_back_two_hours_is_found_by_every_verb_at_its_real_time() {
    if !tools_for_rsyslog(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (live, archived) = (dir.path().join("live"), dir.path().join("archived"));
    // rsyslog stamps what it receives with the real time: the leases must be around now.
    #[allow(clippy::disallowed_methods)]
    let now = jiff::Timestamp::now();
    let hours = |h: i64| jiff::SignedDuration::from_mins(h * 60);
    let note = |event: &str, at: jiff::Timestamp, uuid: &str, host: &str, ip: Option<&str>| {
        let ips: Vec<Value> = ip
            .iter()
            .map(|a| serde_json::json!({"nova_object.name": "IpPayload", "nova_object.data": {"address": a, "mac": "fa:16:3e:00:00:c1"}}))
            .collect();
        serde_json::json!({
            "event_type": event, "priority": "INFO", "publisher_id": "nova-compute:cmp1",
            "timestamp": at.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "message_id": format!("m-{uuid}-{event}"),
            "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
                "nova_object.version": "1.8", "nova_object.data": {"uuid": uuid, "host": "cmp1",
                "host_name": host, "user_id": "u1", "tenant_id": "p1",
                "state": if ip.is_some() { "active" } else { "deleted" }, "ip_addresses": ips}}
        })
        .to_string()
    };
    let (vm_a, vm_b) = (
        "a0000000-0000-4000-8000-0000000000c1",
        "b0000000-0000-4000-8000-0000000000c2",
    );
    let notes = [
        note(
            "instance.create.end",
            now - hours(5),
            vm_a,
            "old-a",
            Some("127.0.0.1"),
        ),
        note(
            "instance.delete.end",
            now - hours(1) - hours(1) / 2,
            vm_a,
            "old-a",
            None,
        ),
        note(
            "instance.create.end",
            now - hours(1),
            vm_b,
            "real-b",
            Some("127.0.0.1"),
        ),
    ];
    let nf = dir.path().join("notifications.json");
    fs::write(&nf, notes.join("\n") + "\n").unwrap();
    ok(&live, &["ingest", nf.to_str().unwrap()]);
    ok(&archived, &["ingest", nf.to_str().unwrap()]);

    let server = Server::start(&live, None, false);
    let input = free_port();
    let archive = dir.path().join("archive.log");
    let work = dir.path().join("rsyslog");
    let _rsyslog = Rsyslog::start(
        &work,
        &format!(
            r#"module(load="imtcp")
template(name="pugmark-archive" type="string" string="%timegenerated:::date-rfc3339% %fromhost-ip% %rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="vm")
ruleset(name="vm") {{
  action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omfile" file="{file}" template="pugmark-archive")
}}
"#,
            tcp = server.tcp,
            file = archive.display()
        ),
        input,
    );
    // RFC 3164 with the VM's own (zone-less, UTC here) stamps: right, then two hours back.
    let bsd = |t: jiff::Timestamp| t.strftime("%b %e %H:%M:%S").to_string();
    let lines = [
        format!("<86>{} real-b sshd[7]: all is well", bsd(now)),
        format!(
            "<86>{} real-b sshd[7]: Accepted password for root from 203.0.113.66 port 4242 ssh2",
            bsd(now - hours(2))
        ),
    ];
    let mut s = TcpStream::connect(("127.0.0.1", input)).unwrap();
    for l in &lines {
        s.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
    drop(s);
    server.wait_ledger((notes.len() + lines.len()) as u64, 30);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&archive).map_or(0, |t| t.lines().count()) < lines.len() {
        assert!(
            Instant::now() < deadline,
            "rsyslog did not write the archive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    ok(
        &archived,
        &["ingest", "--observer", "vm", archive.to_str().unwrap()],
    );
    found_at_its_real_time(&live, dir.path(), "live", now);
    found_at_its_real_time(&archived, dir.path(), "archive", now);
}

/// Every rsyslog configuration docs/SITES.md shows is fed, exactly as written, to the real
/// `rsyslogd -N1`, so the site documentation cannot drift from what rsyslog accepts (it had:
/// the archive snippet used its file-name template before defining it, and rsyslog disabled
/// the action). Certificate paths under `/etc/pki/pugmark/` point at a test PKI; a snippet
/// that defines a ruleset without an input gets one bound to it, since `-N1` refuses a
/// configuration whose actions nothing feeds.
#[test]
fn every_rsyslog_config_in_the_sites_doc_passes_rsyslogd_n1() {
    let (Some(rsyslogd), Some(_)) = (
        require("rsyslogd", which("rsyslogd")),
        require("openssl", which("openssl")),
    ) else {
        return;
    };
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SITES.md"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some((lang.trim().to_string(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let rsyslog: Vec<String> = blocks
        .into_iter()
        .filter(|(lang, body)| {
            lang.is_empty() && (body.contains("action(") || body.contains("template("))
        })
        .map(|(_, body)| body)
        .collect();
    assert!(
        rsyslog.len() >= 3,
        "docs/SITES.md shows the VM/hypervisor RELP forwarding, the hypervisor's TLS forwarding \
         and the archive template: found {}",
        rsyslog.len()
    );
    for (i, body) in rsyslog.iter().enumerate() {
        let mut conf = format!("global(workDirectory=\"{}\")\n", dir.path().display());
        conf.push_str(&body.replace("/etc/pki/pugmark/", &format!("{}/", pki.display())));
        if !body.contains("input(") {
            for name in body
                .split("ruleset(name=\"")
                .skip(1)
                .filter_map(|r| r.split('"').next())
            {
                conf.push_str(&format!(
                    "module(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{}\" ruleset=\"{name}\")\n",
                    free_port()
                ));
            }
        }
        let path = dir.path().join(format!("sites-{i}.conf"));
        fs::write(&path, &conf).unwrap();
        let out = Command::new(&rsyslogd)
            .args(["-N1", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !said.contains("error"),
            "docs/SITES.md rsyslog block {i} is refused by rsyslogd -N1:\n{said}\n--- config ---\n{conf}"
        );
    }
}

/// Issue 10, never lose: an AMQP message larger than a ledger record (17 MB published by
/// kombu to nova's exchange) cannot be refused without losing it — nacking drops it or loops
/// it forever — so it is stored as a split record (head + continuation in one batch), acked,
/// found whole by `search`, and the consumer goes on with the notifications after it.
#[test]
fn an_amqp_message_larger_than_a_record_is_stored_split_and_the_consumer_goes_on() {
    let Some(python) = amqp_peers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::start(&dir.path().join("rmq"));
    let data = dir.path().join("data");
    let config = dir.path().join("pugmark.toml");
    fs::write(
        &config,
        format!("version = 1\n[amqp]\nurl = \"{}\"\n", rabbit.url()),
    )
    .unwrap();
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let s = Server::start_on(&data, Some(&config), tcp, tcp, relp, http, None);
    wait_amqp_consuming(&s);
    let big = dir.path().join("big.txt");
    let mut body = "amqpbighead ".to_string();
    while body.len() < 17_000_000 {
        body.push_str("filler ");
    }
    body.push_str("amqpbigtail");
    fs::write(&big, &body).unwrap();
    oslo_notify(
        &python,
        &rabbit.oslo_url(),
        3,
        "before",
        &["--raw-file", big.to_str().unwrap()],
    );
    oslo_notify(&python, &rabbit.oslo_url(), 5, "after", &[]);
    // 3 + 5 notifications and the big message in two parts.
    s.wait_ledger(10, 120);
    assert_eq!(
        s.metric("pugmark_store_refused_total"),
        0.0,
        "nothing refused"
    );
    s.stop();
    let hits = json(&data, &["search", "amqpbigtail"]);
    let hits = hits["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 1, "the big message is found once");
    assert_eq!(
        hits[0]["raw"].as_str().map(str::len),
        Some(body.len()),
        "and whole"
    );
    assert_eq!(count(&data, &["amqpbighead"]), 1);
    assert_eq!(count(&data, &["after"]), 5);
    ok(&data, &["verify"]);
}

/// README's serve configuration, exactly as written there, is accepted by the real program
/// (`pugmark serve --check-config`, which loads the TLS material too) and means what it says:
/// the listed limits, the NetFlow addresses and the hypervisor entry are in effect.
#[test]
fn the_readme_serve_config_is_accepted_as_written() {
    if require("openssl", which("openssl")).is_none() {
        return;
    }
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let block = readme
        .split_once("```toml\n")
        .expect("README shows the serve config as TOML")
        .1
        .split_once("```")
        .unwrap()
        .0;
    let dir = tempfile::tempdir().unwrap();
    // Its TLS paths are relative to the config: the config sits beside the test PKI.
    make_pki(dir.path());
    let config = dir.path().join("pugmark.toml");
    fs::write(&config, block).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "README's config is refused: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shown in ["0.0.0.0:2055", "0.0.0.0:4739", "hv01 →"] {
        assert!(text.contains(shown), "{shown} missing from:\n{text}");
    }
}

/// A `pugmark serve` child that is killed if the test fails before stopping it.
struct ServeGuard(Option<Child>);

impl Drop for ServeGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines of README.md's "A new site" block (between its `new-site` markers), without
/// comments: the commands an admin types.
fn readme_new_site_commands() -> Vec<String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let (_, rest) = readme
        .split_once("<!-- new-site:begin -->")
        .expect("README has the new-site block");
    let (block, _) = rest.split_once("<!-- new-site:end -->").unwrap();
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// README "A new site: from the package to a first `who` over live RELP", run as written:
/// the commands are read from README.md and each is run for real, with these stand-ins where
/// this machine differs from a site (no systemd runs here, and the test must not install
/// into the machine): the .deb that `scripts/package` makes from the tested binary is
/// extracted into a scratch root (`dpkg-deb -x`) instead of installed, and its config's
/// ports become free ones (parallel runs); `systemctl restart pugmark` starts the unit's own
/// ExecStart= line from that root; `systemctl restart rsyslog` starts the real rsyslogd with
/// the file the README wrote (plus a TCP input standing for /dev/log, which `logger` then
/// uses); the RabbitMQ broker and the VM's address are local, and nova's notifier library
/// (oslo.messaging) announces the VM when pugmark consumes. The RELP forwarding, the AMQP
/// consumer, `who` and `timeline` are the real ones, and at most 10 commands get there.
#[test]
fn the_readme_new_site_reaches_a_first_who_over_live_relp() {
    let Some(python) = amqp_peers() else {
        return;
    };
    if !tools_for_rsyslog(&["omrelp", "imtcp"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(deb) = build_deb(&dir.path().join("pkg")) else {
        return;
    };
    let commands = readme_new_site_commands();
    assert!(
        (3..=10).contains(&commands.len()),
        "the README promises at most 10 commands: {commands:#?}"
    );
    let root = dir.path().join("root");
    let data = dir.path().join("var-lib-pugmark");
    let vm = dir.path().join("vm");
    fs::create_dir_all(vm.join("rsyslog.d")).unwrap();
    let rabbit = Rabbit::start(&dir.path().join("rabbit"));
    let (syslog, relp, http, vm_input) = (free_port(), free_port(), free_port(), free_port());
    let pugmark_bin = root.join("usr/bin/pugmark");
    let serve_log = dir.path().join("serve.log");
    let mut serve = ServeGuard(None);
    let mut rsyslog: Option<Rsyslog> = None;
    let mut said = Vec::new();

    for line in &commands {
        // The test is its own user: no sudo, also not in a pipeline (`| sudo tee`).
        let unsudo = line.replace("sudo -u pugmark ", "").replace("sudo ", "");
        let cmd = unsudo.as_str();
        if let Some(pkg) = cmd.strip_prefix("apt install ./") {
            assert_eq!(
                pkg,
                deb.file_name().unwrap().to_str().unwrap(),
                "the README names the .deb scripts/package makes"
            );
            let x = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&root)
                .status()
                .unwrap();
            assert!(x.success());
            let conf = root.join("etc/pugmark/serve.toml");
            let text = fs::read_to_string(&conf).unwrap();
            let ours = text
                .replace("\"0.0.0.0:514\"", &format!("\"127.0.0.1:{syslog}\""))
                .replace("\"0.0.0.0:2514\"", &format!("\"127.0.0.1:{relp}\""))
                .replace("\"127.0.0.1:9514\"", &format!("\"127.0.0.1:{http}\""))
                .replace("[\"0.0.0.0:2055\", \"0.0.0.0:4739\"]", "\"none\"");
            assert_ne!(ours, text);
            fs::write(&conf, ours).unwrap();
            said.push(String::new());
            continue;
        }
        if cmd == "apt install rsyslog-relp" {
            assert!(rsyslog_module("omrelp").is_some());
            said.push(String::new());
            continue;
        }
        if cmd == "systemctl restart pugmark" {
            if let Some(mut old) = serve.0.take() {
                let _ = Command::new("kill")
                    .args(["-TERM", &old.id().to_string()])
                    .status();
                assert!(old.wait().unwrap().success());
            }
            let unit =
                fs::read_to_string(root.join("usr/lib/systemd/system/pugmark.service")).unwrap();
            let exec = unit
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap()
                .replace("/usr/bin/pugmark", pugmark_bin.to_str().unwrap())
                .replace("/etc/pugmark/", &format!("{}/etc/pugmark/", root.display()))
                .replace("/var/lib/pugmark", data.to_str().unwrap());
            let argv: Vec<&str> = exec.split_whitespace().collect();
            serve.0 = Some(
                Command::new(argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(&serve_log).unwrap())
                    .spawn()
                    .unwrap(),
            );
            wait_for_port(relp, "pugmark serve (RELP)");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !fs::read_to_string(&serve_log)
                .unwrap_or_default()
                .contains("amqp: consuming")
            {
                assert!(
                    Instant::now() < deadline,
                    "the AMQP consumer of the README's config did not start: {}",
                    fs::read_to_string(&serve_log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // The site's nova: a VM is created with the address the collector will see.
            oslo_notify(
                &python,
                &rabbit.oslo_url(),
                1,
                "first-vm",
                &["--ip", "127.0.0.1"],
            );
            said.push(String::new());
            continue;
        }
        if cmd == "systemctl restart rsyslog" {
            drop(rsyslog.take());
            let body = format!(
                "module(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{vm_input}\")\n\
                 include(file=\"{}/rsyslog.d/*.conf\")\n",
                vm.display()
            );
            rsyslog = Some(Rsyslog::start(&vm, &body, vm_input));
            said.push(String::new());
            continue;
        }
        // Everything else runs as written, in bash, with the site's names made local.
        let here = cmd
            .replace(
                "amqp://pugmark:SECRET@rabbit.example.org:5672/%%2f",
                &rabbit.url(),
            )
            .replace("/etc/pugmark/", &format!("{}/etc/pugmark/", root.display()))
            .replace("/var/lib/pugmark", data.to_str().unwrap())
            .replace("/etc/rsyslog.d/", &format!("{}/rsyslog.d/", vm.display()))
            .replace("collector.example.org", "127.0.0.1")
            .replace("port=\"2514\"", &format!("port=\"{relp}\""))
            .replace("10.0.0.5", "127.0.0.1")
            // RFC 3164 with "TAG:", as logger writes to /dev/log.
            .replace(
                "logger ",
                &format!("logger -T -n 127.0.0.1 -P {vm_input} --rfc3164 "),
            );
        let here = match here.strip_prefix("pugmark ") {
            Some(rest) => format!("{} {rest}", pugmark_bin.display()),
            None => here,
        };
        if here.contains(" who ") {
            // The VM's line and nova's notification must have arrived before asking.
            let deadline = Instant::now() + Duration::from_secs(30);
            let arrived = |args: &[&str]| {
                let out = Command::new(&pugmark_bin)
                    .arg("search")
                    .args(args)
                    .args(["--count", "--data"])
                    .arg(&data)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim() != "0"
            };
            while !(arrived(&["hello"]) && arrived(&["*", "--class", "vm.lifecycle"])) {
                assert!(
                    Instant::now() < deadline,
                    "the VM's line or the notification never arrived: {}",
                    fs::read_to_string(&serve_log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            // The README asks at `$(date -u +%FT%TZ)`, a whole second: asked within the
            // second nova's notification arrived in, that instant is before the VM existed
            // (and "no VM" is the right answer). A person asks later; the test waits out the
            // second.
            std::thread::sleep(Duration::from_millis(1100));
            // `search` scans the ledger past the index; `who` reads the facts view, which a
            // live serve builds behind the ledger and says so ("trails the ledger" on
            // stderr). A person would ask again a moment later: so does the test, until the
            // facts hold the notification.
            loop {
                let out = Command::new("bash").args(["-c", &here]).output().unwrap();
                if !String::from_utf8_lossy(&out.stderr).contains("trails the ledger") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the facts view never caught up with the ledger: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let out = Command::new("bash").args(["-c", &here]).output().unwrap();
        assert!(
            out.status.success(),
            "README command failed: {line}\n(run as: {here})\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        said.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }

    let who = commands
        .iter()
        .position(|c| c.contains(" who "))
        .expect("the README asks who");
    let answer = &said[who];
    if !answer.contains("first-vm-000000") {
        let lifecycle = Command::new(&pugmark_bin)
            .args(["search", "*", "--class", "vm.lifecycle", "--json", "--data"])
            .arg(&data)
            .output()
            .unwrap();
        panic!(
            "who names the VM nova created with that address:\n{answer}\nnova's records:\n{}",
            String::from_utf8_lossy(&lifecycle.stdout)
        );
    }
    assert!(answer.contains(&"u".repeat(32)), "and its owner:\n{answer}");
    let search = commands
        .iter()
        .position(|c| c.contains(" search "))
        .expect("the README shows what the VM said");
    assert!(
        said[search].contains("hello from"),
        "the VM's own line arrived over RELP:\n{}\n{}",
        said[search],
        ok(&data, &["search", "hello", "--json"])
    );
    drop(rsyslog);
    if let Some(mut s) = serve.0.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &s.id().to_string()])
            .status();
        assert!(s.wait().unwrap().success());
    }
    let verify = Command::new(&pugmark_bin)
        .args(["verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Issue 11: `[retention] keep` in serve's config: serve removes old segments' payloads on its
/// timer, each with a signed retention record, and verify stays ok and says so.
#[test]
fn serve_applies_the_retention_policy_of_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = dir.path().join("serve.toml");
    fs::write(&conf, "[retention]\nkeep = \"1s\"\n").unwrap();
    let out = pugmark(
        &data,
        &[
            "serve",
            "--config",
            conf.to_str().unwrap(),
            "--check-config",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("retention: keep 1s"));
    let (tcp, relp, http) = (free_port(), free_port(), free_port());
    let server = Server::start_env(
        &data,
        Some(&conf),
        tcp,
        tcp,
        relp,
        http,
        None,
        &[
            ("PUGMARK_TEST_SEGMENT_BYTES", "4096"),
            ("PUGMARK_TEST_RETENTION_EVERY_MS", "200"),
        ],
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sent = 0;
    for burst in 0..6 {
        let mut s = TcpStream::connect(("127.0.0.1", server.tcp)).unwrap();
        for i in 0..40 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            writeln!(
                s,
                "<13>1 - h app - - - burst {burst} line {i} {x:016x}{x:016x}{x:016x}"
            )
            .unwrap();
        }
        drop(s);
        sent += 40;
        server.wait_ledger(sent, 20);
        std::thread::sleep(Duration::from_millis(1200));
    }
    // The retention records themselves are in the ledger; wait until at least one is.
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let out = pugmark(&data, &["verify", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["removed"].as_array().is_some_and(|r| !r.is_empty()) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "serve never applied retention: {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(v["ok"], true, "{v}");
    let log = server.stop();
    assert!(log.contains("retention (keep 1s) removed"), "{log}");
    assert!(pugmark(&data, &["verify"]).status.success());
}
