//! Issue 15, end to end in network namespaces this test makes itself (root and `ip netns`
//! needed; elsewhere it is skipped, and under CI it fails):
//!
//! ```text
//!  ns "vm"  10.231.V.10 ── tapN ── ns "hypervisor" (routes) ── 10.231.R.2/.1 ── root ns
//!  rsyslog (site-config vm:          nft (site-config hypervisor)            pugmark serve
//!  RELP, UUID in every message)      + rsyslog imkmsg → TLS, host cert       (site-config serve)
//! ```
//!
//! The VM runs rsyslog with the generated VM config, its instance UUID found by the generated
//! finder through cloud-init's real `query` on an instance-data.json (as at boot), and sends a
//! line under a forged hostname. The hypervisor namespace loads the generated nftables rules,
//! which log the VM's new connections on its tap (the kernel writes them to the one kernel log;
//! `net.netfilter.nf_log_all_netns=1` lets a namespace's LOG lines through, set for the test
//! and restored after), and its rsyslog forwards the kernel log over TLS with the hypervisor's
//! certificate (the generated forwarding; `imkmsg` reads /dev/kmsg without consuming it, where
//! the generated file relies on the distribution's imklog, which would take the lines from
//! every other reader of this machine). pugmark serve runs the generated serve.toml.
//!
//! Checked: the VM's line arrives with its UUID and is attributed to the VM by it; the
//! hypervisor's LOG lines arrive as observer `hypervisor` naming the VM's address and tap;
//! `check` is clean. Then the planted spoofs: a line under a forged hostname is still
//! attributed to the VM by its UUID (and is a `forged_hostname` finding); the VM's UUID file
//! changed to another VM's (a copied image config) makes its next line a `uuid_mismatch`; a
//! netfilter line the VM forges stays observer `vm`.
//!
//! Localised for the test only: certificate and UUID paths, ports, the collector's address in
//! `target=` (the certificate name stays, so TLS still checks it), the `[amqp]` section (no
//! broker here) and the other default listeners (off, so parallel tests do not collide).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;
#[path = "common/site_pki.rs"]
mod site_pki;

const A: &str = "0b7c5f2e-1111-4222-8333-444455556666";
const B: &str = "9d1e0c4a-2222-4333-8444-555566667777";

/// The machine's clock: the VM's rsyslog and the collector read the same one here.
#[allow(clippy::disallowed_methods)]
fn clock_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The clock as a syslog sender writes it in an RFC 5424 header: at most six fractional
/// digits (TIME-SECFRAC). jiff prints nine, which rsyslog passed on mangled in one CI run
/// (`15:52:23. 26Z`: the line then had no SD and no claimed UUID).
fn stamp5424() -> String {
    let t = clock_now();
    let whole = jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string();
    format!(
        "{}.{:06}Z",
        whole.trim_end_matches('Z'),
        t.subsec_microsecond()
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// The namespaces, the root side of the link and the sysctl, undone on drop.
struct Net {
    vm: String,
    hv: String,
    root_if: String,
    vm_net: String,
    nf_log_all_netns: Option<String>,
    children: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["route", "del", &self.vm_net])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_if])
            .output();
        for ns in [&self.vm, &self.hv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if let Some(v) = &self.nf_log_all_netns {
            let _ = fs::write("/proc/sys/net/netfilter/nf_log_all_netns", v);
        }
    }
}

/// Can this machine make namespaces and read a namespace's LOG lines? (root, iproute2,
/// nf_log_all_netns writable.)
fn can_make_namespaces() -> bool {
    let probe = format!("pmprobe{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    }
    let sysctl = Path::new("/proc/sys/net/netfilter/nf_log_all_netns");
    let writable = fs::OpenOptions::new().write(true).open(sysctl).is_ok();
    require(
        "network namespaces (root, ip netns, net.netfilter.nf_log_all_netns)",
        (ok && writable).then(PathBuf::new),
    )
    .is_some()
}

fn rsyslog_module(name: &str) -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/rsyslog",
        "/usr/lib/rsyslog",
        "/usr/lib64/rsyslog",
    ]
    .iter()
    .any(|d| Path::new(d).join(format!("{name}.so")).is_file())
}

fn site_config(dir: &Path, args: &[&str]) -> PathBuf {
    let out = dir.join(args[0]);
    let o = Command::new(bin())
        .arg("site-config")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn note(event: &str, time: &str, uuid: &str, host: &str, ip: &str) -> String {
    serde_json::json!({
        "event_type": event, "priority": "INFO", "publisher_id": "nova-compute:cmp1",
        "timestamp": time, "message_id": format!("m-{uuid}-{event}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": uuid, "host": "cmp1",
            "host_name": host, "user_id": "u-site", "tenant_id": "p-site", "state": "active",
            "ip_addresses": [{"nova_object.name": "IpPayload", "nova_object.data":
                {"address": ip, "mac": "fa:16:3e:00:00:01"}}]}}
    })
    .to_string()
}

struct Serve {
    child: Child,
}

impl Serve {
    fn start(data: &Path, config: &Path, relp: u16) -> Serve {
        let child = Command::new(bin())
            .args(["serve", "--data"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .args([
                "--syslog-udp",
                "none",
                "--syslog-tcp",
                "none",
                "--http",
                "none",
            ])
            .args(["--netflow", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(data.with_extension("serve.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(relp, "pugmark serve relp");
        Serve { child }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_count(data: &Path, query: &str, want: u64) {
    let start = Instant::now();
    loop {
        let out = pugmark(data, &["search", query, "--count"]);
        let n: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{query}: {n} of {want} arrived in 40 s; serve log:\n{}",
            fs::read_to_string(data.with_extension("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn hits(data: &Path, query: &str) -> Vec<Value> {
    json(data, &["search", query])["hits"]
        .as_array()
        .unwrap()
        .clone()
}

/// Start rsyslog in `ns` with `conf`; the child is owned by `net` (killed on drop).
fn rsyslogd(net: &mut Net, ns: &str, conf: &Path) -> usize {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(which("rsyslogd").unwrap())
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .arg("-i")
        .arg(conf.with_extension("pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(conf.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    net.children.push(child);
    net.children.len() - 1
}

/// Start the VM's rsyslog and wait until its input listens; its index in `net.children`.
fn start_vm_rsyslog(net: &mut Net, ns: &str, conf: &Path, port: u16) -> usize {
    let i = rsyslogd(net, ns, conf);
    let start = Instant::now();
    while !in_ns(ns, &["ss", "-ltn"]).contains(&format!(":{port} ")) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the VM's rsyslog listens: {}",
            fs::read_to_string(conf.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    i
}

fn stop_child(net: &mut Net, i: usize) {
    let mut c = net.children.remove(i);
    let _ = c.kill();
    let _ = c.wait();
}

fn send_to_vm(ns: &str, port: u16, line: &str) {
    in_ns(
        ns,
        &[
            "bash",
            "-c",
            &format!("printf '%s\\n' \"$0\" > /dev/tcp/127.0.0.1/{port}"),
            line,
        ],
    );
}

#[test]
fn vm_hypervisor_and_collector_in_namespaces_attribute_by_uuid_and_find_a_spoof() {
    let (Some(_), Some(_), Some(openssl), Some(_), Some(cloud_init)) = (
        need("ip"),
        need("nft"),
        need("openssl"),
        need("rsyslogd"),
        need("cloud-init"),
    ) else {
        return;
    };
    if !can_make_namespaces()
        || require(
            "rsyslog omrelp, gtls and imkmsg modules",
            (rsyslog_module("omrelp") && rsyslog_module("lmnsd_gtls") && rsyslog_module("imkmsg"))
                .then(PathBuf::new),
        )
        .is_none()
    {
        return;
    }
    let _ = cloud_init;
    let id = std::process::id() % 10_000;
    let k = id % 100;
    let (root_ip, hv_up, vm_gw, vm_ip, other_ip) = (
        format!("10.231.{}.1", 2 * k),
        format!("10.231.{}.2", 2 * k),
        format!("10.231.{}.1", 2 * k + 1),
        format!("10.231.{}.10", 2 * k + 1),
        format!("10.231.{}.99", 2 * k + 1),
    );
    let tap = format!("tap{id}");
    let mut net = Net {
        vm: format!("pm-vm-{id}"),
        hv: format!("pm-hv-{id}"),
        root_if: format!("pmr{id}"),
        vm_net: format!("10.231.{}.0/24", 2 * k + 1),
        nf_log_all_netns: fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns").ok(),
        children: Vec::new(),
    };
    fs::write("/proc/sys/net/netfilter/nf_log_all_netns", "1").unwrap();
    let (vm, hv) = (net.vm.clone(), net.hv.clone());
    ip(&["netns", "add", &vm]);
    ip(&["netns", "add", &hv]);
    let up = format!("pmu{id}");
    ip(&[
        "link",
        "add",
        &net.root_if,
        "type",
        "veth",
        "peer",
        "name",
        &up,
        "netns",
        &hv,
    ]);
    ip(&["addr", "add", &format!("{root_ip}/30"), "dev", &net.root_if]);
    ip(&["link", "set", &net.root_if, "up"]);
    ip(&["-n", &hv, "addr", "add", &format!("{hv_up}/30"), "dev", &up]);
    ip(&["-n", &hv, "link", "set", &up, "up"]);
    ip(&["-n", &hv, "link", "set", "lo", "up"]);
    ip(&[
        "link", "add", &tap, "netns", &hv, "type", "veth", "peer", "name", "eth0", "netns", &vm,
    ]);
    ip(&[
        "-n",
        &hv,
        "addr",
        "add",
        &format!("{vm_gw}/24"),
        "dev",
        &tap,
    ]);
    ip(&["-n", &hv, "link", "set", &tap, "up"]);
    ip(&[
        "-n",
        &vm,
        "addr",
        "add",
        &format!("{vm_ip}/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &vm, "link", "set", "eth0", "up"]);
    ip(&["-n", &vm, "link", "set", "lo", "up"]);
    ip(&["-n", &vm, "route", "add", "default", "via", &vm_gw]);
    ip(&["route", "add", &net.vm_net, "via", &hv_up]);
    in_ns(&hv, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    site_pki::make_pki(&openssl, &pki);
    let localise = |text: &str, work: &Path| {
        text.replace("/etc/pki/pugmark/", &format!("{}/", pki.display()))
            .replace("/etc/pugmark/pki/", &format!("{}/", pki.display()))
            .replace("/etc/pugmark/", &format!("{}/", work.display()))
            .replace(
                "target=\"pugmark.example.org\"",
                &format!("target=\"{root_ip}\""),
            )
    };
    let (relp, tls, metrics) = (free_port(), free_port(), free_port());

    // The collector: facts first (the cloud knows VM A at the VM's address, B elsewhere), then
    // serve with the generated config.
    let data = dir.path().join("data");
    let start = clock_now() - jiff::SignedDuration::from_mins(10);
    let nova_time = start.strftime("%Y-%m-%d %H:%M:%S.000000").to_string();
    let notes = dir.path().join("notifications.json");
    fs::write(
        &notes,
        format!(
            "{}\n{}\n",
            note("instance.create.end", &nova_time, A, "web01", &vm_ip),
            note("instance.create.end", &nova_time, B, "web02", &other_ip)
        ),
    )
    .unwrap();
    ok(&data, &["ingest", notes.to_str().unwrap()]);
    let serve_dir = site_config(dir.path(), &["serve"]);
    let toml = fs::read_to_string(serve_dir.join("serve.toml")).unwrap();
    let amqp_start = toml.find("# Nova's and Neutron's").unwrap();
    let amqp_end = toml.find("[senders]").unwrap();
    let toml = format!("{}{}", &toml[..amqp_start], &toml[amqp_end..])
        .replace("0.0.0.0:2514", &format!("0.0.0.0:{relp}"))
        .replace("0.0.0.0:6514", &format!("0.0.0.0:{tls}"))
        .replace("0.0.0.0:9515", &format!("127.0.0.1:{metrics}"))
        .replace(
            "/var/spool/pugmark",
            &dir.path().join("spool").to_string_lossy(),
        );
    let serve_toml = dir.path().join("serve.toml");
    fs::write(&serve_toml, localise(&toml, dir.path())).unwrap();
    let serve = Serve::start(&data, &serve_toml, relp);

    // The hypervisor: the generated nftables rules and kernel-log forwarding.
    let hv_dir = site_config(dir.path(), &["hypervisor"]);
    in_ns(
        &hv,
        &["nft", "-f", hv_dir.join("pugmark.nft").to_str().unwrap()],
    );
    let hv_work = dir.path().join("hv");
    fs::create_dir_all(&hv_work).unwrap();
    let hv_conf = hv_work.join("rsyslog.conf");
    fs::write(
        &hv_conf,
        format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imkmsg\")\n{}\n{}",
            hv_work.display(),
            // Only this run's tap: the kernel log is the machine's, and imkmsg reads what an
            // earlier run (or another test) left in it; their lines would be this run's
            // evidence (an `unknown_host` finding about a VM address an earlier run used).
            // The generated file follows unchanged.
            format_args!("if not ($msg contains \"IN={tap} \") then stop"),
            localise(
                &fs::read_to_string(hv_dir.join("90-pugmark-kernel.conf")).unwrap(),
                &hv_work
            )
            .replace("port=\"6514\"", &format!("port=\"{tls}\""))
        ),
    )
    .unwrap();
    rsyslogd(&mut net, &hv, &hv_conf);

    // The VM: its UUID found as at boot, then rsyslog with the generated config.
    let vm_dir = site_config(dir.path(), &["vm"]);
    let vm_work = dir.path().join("vm");
    fs::create_dir_all(&vm_work).unwrap();
    let instance = vm_work.join("instance-data.json");
    fs::write(
        &instance,
        serde_json::json!({"v1": {"instance_id": A, "local_hostname": "web01"}}).to_string(),
    )
    .unwrap();
    run(Command::new("sh")
        .arg(vm_dir.join("pugmark-vm-uuid"))
        .env("PUGMARK_INSTANCE_DATA", &instance)
        .env("PUGMARK_VM_UUID_FILE", vm_work.join("vm-uuid")));
    assert_eq!(fs::read_to_string(vm_work.join("vm-uuid")).unwrap(), A);
    let vm_port = 10514;
    let vm_conf = vm_work.join("rsyslog.conf");
    fs::write(
        &vm_conf,
        format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{vm_port}\")\n{}",
            vm_work.display(),
            localise(&fs::read_to_string(vm_dir.join("90-pugmark.conf")).unwrap(), &vm_work)
                .replace("port=\"2514\"", &format!("port=\"{relp}\""))
        ),
    )
    .unwrap();
    let vm_rsyslog = start_vm_rsyslog(&mut net, &vm, &vm_conf, vm_port);
    let now = stamp5424();
    send_to_vm(
        &vm,
        vm_port,
        &format!(
            "<86>1 {now} web01 sshd 4242 - - Accepted publickey for netnsalice from 192.0.2.50 port 50022 ssh2"
        ),
    );
    // A connection of the VM's own, which the hypervisor logs (refused: nothing listens).
    let _ = Command::new("ip")
        .args(["netns", "exec", &vm, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{root_ip}/9"))
        .output();
    wait_count(&data, "netnsalice", 1);
    wait_count(&data, &format!("observer:hypervisor \"SRC={vm_ip}\""), 1);
    serve.stop();

    // The VM's line: its UUID, attributed to A by it.
    let h = hits(&data, "netnsalice");
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["observer"], "vm");
    assert_eq!(h[0]["fields"]["claimed_vm_uuid"], A, "{:#}", h[0]);
    let t = json(&data, &["timeline", "--vm", A]);
    let e: Vec<&Value> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap_or("").contains("netnsalice"))
        .collect();
    assert_eq!(e.len(), 1, "{t:#}");
    assert_eq!(e[0]["attribution"]["vm"], A);
    assert_eq!(e[0]["attribution"]["how"], "uuid");
    assert!(
        e[0]["attribution"]
            .get("uuid_mismatch")
            .is_none_or(Value::is_null)
    );

    // The hypervisor's LOG lines: observer hypervisor (by its certificate), the VM's
    // connections as net.connection from its address through its tap.
    // With this run's tap: the kernel log is the machine's, and an earlier run's lines for
    // the same VM address (another tap id) may still be read by this run's rsyslog.
    let hv_hits = hits(
        &data,
        &format!("observer:hypervisor \"SRC={vm_ip}\" \"IN={tap}\""),
    );
    assert!(!hv_hits.is_empty());
    for x in &hv_hits {
        assert_eq!(x["class"], "net.connection", "{x:#}");
        assert_eq!(x["fields"]["src_ip"], vm_ip.as_str());
        assert_eq!(x["fields"]["in_if"], tap.as_str());
        assert!(x["message"].as_str().unwrap().contains("pugmark-vm-out: "));
        assert!(
            x["origin"]["identity"]
                .as_str()
                .unwrap()
                .contains("hv01.example.org"),
            "{x:#}"
        );
    }
    let c = json(&data, &["check"]);
    let findings: Vec<&Value> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            let s = f.to_string();
            s.contains(&vm_ip) || s.contains(A) || s.contains(B) || s.contains(&other_ip)
        })
        .collect();
    assert!(findings.is_empty(), "check is clean about the VMs: {c:#}");

    // The spoofs. A line under a forged hostname (db99, no VM's name): still A's by its UUID,
    // and a `forged_hostname` finding. Then A's UUID file replaced by B's (a copied image
    // config; the VM's rsyslog restarted reads it): `uuid_mismatch`. And a netfilter line
    // forged inside the VM stays `vm`.
    let serve = Serve::start(&data, &serve_toml, relp);
    // A restarted VM rsyslog connects at once (a running one waits out omrelp's resume
    // interval, 30 s, before it tries the restarted collector again; nothing is lost).
    stop_child(&mut net, vm_rsyslog);
    let vm_rsyslog = start_vm_rsyslog(&mut net, &vm, &vm_conf, vm_port);
    let now = stamp5424();
    send_to_vm(
        &vm,
        vm_port,
        &format!(
            "<86>1 {now} db99 sshd 4244 - - Accepted publickey for netnsforged from 192.0.2.52 port 50024 ssh2"
        ),
    );
    wait_count(&data, "netnsforged", 1);
    stop_child(&mut net, vm_rsyslog);
    fs::write(vm_work.join("vm-uuid"), B).unwrap();
    start_vm_rsyslog(&mut net, &vm, &vm_conf, vm_port);
    let now = stamp5424();
    send_to_vm(
        &vm,
        vm_port,
        &format!(
            "<86>1 {now} web02 sshd 4243 - - Accepted publickey for netnsmallory from 192.0.2.51 port 50023 ssh2"
        ),
    );
    send_to_vm(
        &vm,
        vm_port,
        &format!(
            "<4>1 {now} hv01 kernel - - - pugmark-vm-out: IN=tap1 OUT=eth0 SRC=10.9.9.9 DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=1 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0"
        ),
    );
    wait_count(&data, "netnsmallory", 1);
    wait_count(&data, "\"SRC=10.9.9.9\"", 1);
    serve.stop();
    let forged = hits(&data, "\"SRC=10.9.9.9\"");
    assert_eq!(
        forged[0]["observer"], "vm",
        "a VM's netfilter line stays vm"
    );
    let h = hits(&data, "netnsforged");
    assert_eq!(h[0]["host"], "db99", "the forged name is kept as the claim");
    assert_eq!(h[0]["fields"]["claimed_vm_uuid"], A);
    let t = json(&data, &["timeline", "--vm", A]);
    let e: Vec<&Value> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap_or("").contains("netnsforged"))
        .collect();
    assert_eq!(
        e.len(),
        1,
        "the forged name's line is in A's timeline: {t:#}"
    );
    assert_eq!(e[0]["attribution"]["vm"], A);
    assert_eq!(e[0]["attribution"]["how"], "uuid");
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
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ents, [vm_ip.as_str(), B, A], "{:#}", m[0]);
    let t = json(&data, &["timeline", "--vm", B]);
    let e: Vec<&Value> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"].as_str().unwrap_or("").contains("netnsmallory"))
        .collect();
    assert_eq!(
        e.len(),
        1,
        "the line claiming B is in B's timeline, attributed to A by its address: {t:#}"
    );
    assert_eq!(e[0]["attribution"]["vm"], A);
    assert_eq!(e[0]["attribution"]["uuid_mismatch"]["claimed"], B);
    let f: Vec<&Value> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "forged_hostname")
        .collect();
    // Every line that named itself wrongly: db99 (no VM's name), web02 (B's, sent with B's
    // UUID) and hv01 (the forged netfilter line).
    let mut names: Vec<&str> = f
        .iter()
        .map(|f| f["entities"][1].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["db99", "hv01", "web02"], "{c:#}");
    assert!(f.iter().all(|f| f["entities"][0] == vm_ip.as_str()));
}
