//! Issue 12, NAT: a public address and port → the VM behind it, with real peers as oracles
//! (root and `ip netns` needed; elsewhere skipped, under CI a failure).
//!
//! ```text
//!  ns "in"  10.231.77.5 (VM A, also fd00:231::5)   ns "rt" (the router: nftables SNAT      ns "out"
//!           10.231.77.6 (VM B)            ──────►  to 192.0.2.254:50000-50100, IPv6   ──►  192.0.2.10
//!                                                  masquerade to 2001:db8:77::fe)          (servers)
//! ```
//!
//! The router namespace runs the real `conntrack -E -o timestamp,extended,id` (and, when
//! Debian's ulogd2 + ulogd2-json are installed, ulogd with NFCT → JSON as a second peer) while
//! each VM sends TCP and UDP from known source ports. The oracle for the public port is the
//! outside server: it records the address and port each connection arrived from, next to the
//! payload naming the inside socket. pugmark ingests the nova notifications of both VMs, the
//! Neutron router whose gateway is the SNAT address, and what conntrack (ulogd) wrote; then
//! `who --ip 192.0.2.254 --port P --at T` must name the right VM and inside socket for every
//! connection, `--peer` must narrow, and without `--port` both VMs are listed as ambiguous
//! (instead of today's `unresolved` router gateway).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

const A: &str = "0a7c5f2e-7777-4222-8333-444455556666";
const B: &str = "0b1e0c4a-7777-4333-8444-555566667777";
const PUBLIC: &str = "192.0.2.254";

#[allow(clippy::disallowed_methods)] // the peers' clock is the machine's
fn clock_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
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

/// The namespaces and the programs in them, undone on drop.
struct Net {
    names: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn can_make_namespaces() -> bool {
    let probe = format!("pmnprobe{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    }
    require("network namespaces (root, ip netns)", ok.then(PathBuf::new)).is_some()
}

fn note(uuid: &str, host: &str, ips: &[&str]) -> String {
    let addrs: Vec<Value> = ips
        .iter()
        .map(|ip| {
            serde_json::json!({"nova_object.name": "IpPayload", "nova_object.data":
                {"address": ip, "mac": "fa:16:3e:00:77:01"}})
        })
        .collect();
    serde_json::json!({
        "event_type": "instance.create.end", "priority": "INFO",
        "publisher_id": "nova-compute:cmp1", "timestamp": "2026-01-01 00:00:00.000000",
        "message_id": format!("m-{uuid}"),
        "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.8", "nova_object.data": {"uuid": uuid, "host": "cmp1",
            "host_name": host, "user_id": format!("u-{host}"), "tenant_id": "p-site",
            "state": "active", "ip_addresses": addrs}}
    })
    .to_string()
}

/// neutron's router.create.end (shape from neutron's notifier, as crates/decode/testdata's
/// sample): the SNAT address is the router's gateway.
fn router_note() -> String {
    serde_json::json!({
        "event_type": "router.create.end", "priority": "INFO",
        "publisher_id": "network.controller-1", "timestamp": "2026-01-01 00:00:00.000000",
        "message_id": "m-router",
        "payload": {"router": {"id": "7a7a7a7a-1111-4222-8333-444455556666", "name": "r1",
            "status": "ACTIVE", "project_id": "p-site",
            "external_gateway_info": {"network_id": "e0e0e0e0-1111-4222-8333-444455556666",
                "enable_snat": true, "external_fixed_ips": [{"subnet_id":
                "f0f0f0f0-1111-4222-8333-444455556666", "ip_address": PUBLIC}]}}}
    })
    .to_string()
}

/// The outside servers: a TCP listener on 8080 (v4 and v6) and a UDP echo on 5353, each
/// writing `peer_ip peer_port payload` lines (the oracle of the public port) to `log`.
const SERVER: &str = r#"
import socket, select, sys, time
log = open(sys.argv[1], "w", buffering=1)
t4 = socket.socket(socket.AF_INET6); t4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t4.bind(("::", 8080)); t4.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
open(sys.argv[2], "w").close()
while True:
    r, _, _ = select.select([t4, u], [], [], 0.2)
    for s in r:
        if s is t4:
            c, a = t4.accept(); c.settimeout(2)
            data = c.recv(100).decode(); c.sendall(b"ok"); c.close()
            ip = a[0][7:] if a[0].startswith("::ffff:") else a[0]
            log.write("tcp %s %d %s\n" % (ip, a[1], data))
        else:
            d, a = u.recvfrom(100); u.sendto(b"ok", a)
            log.write("udp %s %d %s\n" % (a[0], a[1], d.decode()))
"#;

/// One client socket per line of `spec` (`proto local_ip local_port dst_ip`), each sending
/// its own name; every socket is closed before the script ends.
const CLIENT: &str = r#"
import socket, sys
for line in sys.argv[1:]:
    proto, lip, lport, dst = line.split()
    fam = socket.AF_INET6 if ":" in lip else socket.AF_INET
    name = "%s:%s" % (lip, lport)
    if proto == "tcp":
        c = socket.socket(fam); c.bind((lip, int(lport))); c.settimeout(3)
        c.connect((dst, 8080)); c.sendall(name.encode()); c.recv(10); c.close()
    else:
        c = socket.socket(fam, socket.SOCK_DGRAM); c.bind((lip, int(lport))); c.settimeout(3)
        c.sendto(name.encode(), (dst, 5353)); c.recvfrom(10); c.close()
"#;

/// docs/SITES.md's ```ulogd block, localised (log and JSON paths into the test's directory,
/// the plugin directory of this machine's architecture): the docs' configuration is what runs.
fn ulogd_conf(dir: &Path) -> Option<PathBuf> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/ulogd",
        "/usr/lib/aarch64-linux-gnu/ulogd",
        "/usr/lib/ulogd",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.join("ulogd_output_JSON.so").is_file())?;
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SITES.md"))
        .unwrap();
    let block = doc
        .split("```ulogd\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/SITES.md shows a ```ulogd block");
    let text = block
        .replace(
            "/var/log/ulog/ulogd.log",
            &dir.join("ulogd.log").display().to_string(),
        )
        .replace(
            "/var/log/ulog/nfct.json",
            &dir.join("nfct.json").display().to_string(),
        )
        .replace(
            "/usr/lib/x86_64-linux-gnu/ulogd",
            &lib.display().to_string(),
        );
    let conf = dir.join("ulogd.conf");
    fs::write(&conf, text).unwrap();
    Some(conf)
}

fn wait_file(p: &Path) {
    for _ in 0..100 {
        if p.try_exists().unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never appeared", p.display());
}

#[test]
fn real_conntrack_in_a_router_namespace_names_the_vm_behind_each_public_port() {
    if !can_make_namespaces() {
        return;
    }
    let (Some(conntrack), Some(_nft), Some(python)) =
        (need("conntrack"), need("nft"), need("python3"))
    else {
        return;
    };
    let ulogd = which("ulogd");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let id = std::process::id() % 100_000;
    let (ns_in, ns_rt, ns_out) = (
        format!("pmnat-in-{id}"),
        format!("pmnat-rt-{id}"),
        format!("pmnat-out-{id}"),
    );
    let mut net = Net {
        names: vec![ns_in.clone(), ns_rt.clone(), ns_out.clone()],
        children: Vec::new(),
    };
    for ns in &net.names {
        ip(&["netns", "add", ns]);
    }
    let (va, vb, vc, vd) = (
        format!("pna{id}"),
        format!("pnb{id}"),
        format!("pnc{id}"),
        format!("pnd{id}"),
    );
    ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
    ip(&["link", "set", &va, "netns", &ns_in]);
    ip(&["link", "set", &vb, "netns", &ns_rt]);
    ip(&["link", "add", &vc, "type", "veth", "peer", "name", &vd]);
    ip(&["link", "set", &vc, "netns", &ns_rt]);
    ip(&["link", "set", &vd, "netns", &ns_out]);
    for (ns, dev, addrs) in [
        (
            &ns_in,
            &va,
            vec!["10.231.77.5/24", "10.231.77.6/24", "fd00:231::5/64"],
        ),
        (&ns_rt, &vb, vec!["10.231.77.1/24", "fd00:231::1/64"]),
        (&ns_rt, &vc, vec!["192.0.2.254/24", "2001:db8:77::fe/64"]),
        (&ns_out, &vd, vec!["192.0.2.10/24", "2001:db8:77::10/64"]),
    ] {
        for a in addrs {
            let mut args = vec!["-n", ns, "addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(&args);
        }
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(&[
        "-n",
        &ns_in,
        "route",
        "add",
        "default",
        "via",
        "10.231.77.1",
    ]);
    ip(&[
        "-n",
        &ns_in,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:231::1",
    ]);
    in_ns(
        &ns_rt,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    // The kernel's per-entry timestamps (what the site kit's unit sets); absent on some
    // kernels inside a namespace, so not required.
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns_rt,
            "sysctl",
            "-qw",
            "net.netfilter.nf_conntrack_timestamp=1",
        ])
        .output();
    let rules = dir.join("nat.nft");
    fs::write(
        &rules,
        format!(
            "table inet pmnat {{\n  chain post {{\n    type nat hook postrouting priority srcnat;\n    \
             oifname \"{vc}\" ip saddr 10.231.77.0/24 meta l4proto {{ tcp, udp }} snat ip to {PUBLIC}:50000-50100\n    \
             oifname \"{vc}\" ip6 saddr fd00:231::/64 masquerade\n  }}\n}}\n"
        ),
    )
    .unwrap();
    in_ns(&ns_rt, &["nft", "-f", rules.to_str().unwrap()]);

    // The real peers: conntrack (the issue's command line) and, if installed, ulogd2.
    let ct_log = dir.join("conntrack.log");
    net.children.push(
        Command::new("ip")
            .args(["netns", "exec", &ns_rt])
            .arg(&conntrack)
            .args(["-E", "-o", "timestamp,extended,id"])
            .stdout(fs::File::create(&ct_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ulogd_json = dir.join("nfct.json");
    let ulogd_on = match (&ulogd, ulogd_conf(dir)) {
        (Some(u), Some(conf)) => {
            net.children.push(
                Command::new("ip")
                    .args(["netns", "exec", &ns_rt])
                    .arg(u)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            true
        }
        _ => {
            eprintln!("NOTE: ulogd2 + ulogd2-json not installed: the second peer is not run");
            false
        }
    };
    let server_log = dir.join("server.log");
    let ready = dir.join("server.ready");
    net.children.push(
        Command::new("ip")
            .args(["netns", "exec", &ns_out])
            .arg(&python)
            .args(["-c", SERVER])
            .arg(&server_log)
            .arg(&ready)
            .spawn()
            .unwrap(),
    );
    wait_file(&ready);
    std::thread::sleep(Duration::from_millis(700)); // conntrack and ulogd subscribed
    let before = clock_now();
    // Several sockets per VM with known source ports, TCP and UDP, and one IPv6 connection.
    let spec = [
        "tcp 10.231.77.5 41001 192.0.2.10",
        "udp 10.231.77.5 41002 192.0.2.10",
        "tcp 10.231.77.6 41003 192.0.2.10",
        "udp 10.231.77.6 41004 192.0.2.10",
        "tcp 10.231.77.5 41005 192.0.2.10",
        "tcp fd00:231::5 41006 2001:db8:77::10",
    ];
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_in])
        .arg(&python)
        .args(["-c", CLIENT])
        .args(spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    // The moment asked about: every entry is still in the table (TIME_WAIT / UDP timeout).
    let at = clock_now();
    std::thread::sleep(Duration::from_millis(300));
    // DESTROY events for all of them.
    in_ns(&ns_rt, &["conntrack", "-F"]);
    std::thread::sleep(Duration::from_millis(800));
    for c in &mut net.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    net.children.clear();

    // The oracle: where each inside socket appeared outside.
    let seen: BTreeMap<String, (String, String, u16)> = fs::read_to_string(&server_log)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[3].to_string(),
                (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(seen.len(), spec.len(), "server saw: {seen:?}");
    let ct_text = fs::read_to_string(&ct_log).unwrap();
    assert!(ct_text.contains("[DESTROY]"), "{ct_text}");

    // pugmark: nova (both VMs), Neutron (the router's gateway), then the network node's
    // conntrack output (observer network).
    let notes = dir.join("notes.jsonl");
    fs::write(
        &notes,
        format!(
            "{}\n{}\n{}\n",
            note(A, "vm-a", &["10.231.77.5", "fd00:231::5"]),
            note(B, "vm-b", &["10.231.77.6"]),
            router_note()
        ),
    )
    .unwrap();
    let check = |data: &Path, what: &str| {
        let at_s = at.to_string();
        for line in &spec {
            let f: Vec<&str> = line.split(' ').collect();
            let inside = format!("{}:{}", f[1], f[2]);
            let (proto, pub_ip, pub_port) = &seen[&inside];
            assert_eq!(proto, f[0]);
            let want_vm = if f[1] == "10.231.77.6" { B } else { A };
            let port = pub_port.to_string();
            // With the protocol: the router may give the same public port to a TCP and a
            // UDP connection at once (it did, now and then, before --proto existed).
            let v = json(
                data,
                &[
                    "who", "--ip", pub_ip, "--port", &port, "--proto", f[0], "--at", &at_s,
                ],
            );
            let m = v["matches"].as_array().unwrap();
            assert_eq!(m.len(), 1, "{what} {inside} via {pub_ip}:{port}: {v:#}");
            assert_eq!(m[0]["vm"]["uuid"], want_vm, "{what} {inside}: {v:#}");
            let n = &m[0]["nat"];
            assert_eq!(n["inside_ip"], f[1], "{v:#}");
            assert_eq!(n["inside_port"], f[2].parse::<u16>().unwrap(), "{v:#}");
            assert_eq!(n["public_port"], *pub_port);
            assert_eq!(n["proto"], f[0]);
            assert!(n["seq"].as_u64().unwrap() > 0);
            assert!(
                m[0]["evidence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["seq"] == n["seq"]),
                "the translation record is evidence: {v:#}"
            );
            assert!(v["unresolved"].is_null(), "{v:#}");
            assert_eq!(v["query"]["port"], *pub_port);
            // The peer narrows: the right one keeps it, another drops it.
            let peer = if pub_ip.contains(':') {
                format!(
                    "[2001:db8:77::10]:{}",
                    if f[0] == "tcp" { 8080 } else { 5353 }
                )
            } else {
                format!("192.0.2.10:{}", if f[0] == "tcp" { 8080 } else { 5353 })
            };
            let v = json(
                data,
                &[
                    "who", "--ip", pub_ip, "--port", &port, "--peer", &peer, "--at", &at_s,
                ],
            );
            assert_eq!(v["matches"].as_array().unwrap().len(), 1, "{peer}: {v:#}");
            let v = json(
                data,
                &[
                    "who",
                    "--ip",
                    pub_ip,
                    "--port",
                    &port,
                    "--peer",
                    "198.51.100.99",
                    "--at",
                    &at_s,
                ],
            );
            assert!(v["matches"].as_array().unwrap().is_empty(), "{v:#}");
            // Before the connection, nothing.
            let v = json(
                data,
                &[
                    "who",
                    "--ip",
                    pub_ip,
                    "--port",
                    &port,
                    "--at",
                    &before
                        .checked_sub(jiff::SignedDuration::from_secs(60))
                        .unwrap()
                        .to_string(),
                ],
            );
            assert!(v["matches"].as_array().unwrap().is_empty(), "{v:#}");
        }
        // Without --port: both VMs behind the router's address, ambiguous, and no longer an
        // unresolved router gateway.
        let v = json(data, &["who", "--ip", PUBLIC, "--at", &at_s]);
        let m = v["matches"].as_array().unwrap();
        let mut uuids: Vec<&str> = m
            .iter()
            .map(|x| x["vm"]["uuid"].as_str().unwrap())
            .collect();
        uuids.sort();
        assert_eq!(uuids, [A, B], "{what}: {v:#}");
        assert!(m.iter().all(|x| x["ambiguous"] == true));
        assert!(v["unresolved"].is_null(), "{v:#}");
        // The NAT records it cites carry their text, read after the pairing (which reads
        // every record of the address without it).
        let nat_cited: Vec<&serde_json::Value> = m
            .iter()
            .flat_map(|x| x["evidence"].as_array().unwrap())
            .filter(|e| {
                let s = e["source"].as_str().unwrap();
                s.ends_with(".new") || s.ends_with(".destroy")
            })
            .collect();
        assert!(!nat_cited.is_empty(), "{what}: {v:#}");
        assert!(
            nat_cited
                .iter()
                .all(|e| !e["summary"].as_str().unwrap().is_empty()),
            "{what}: {v:#}"
        );
        let text = ok(
            data,
            &[
                "who",
                "--ip",
                PUBLIC,
                "--port",
                &seen["10.231.77.6:41003"].2.to_string(),
                "--at",
                &at_s,
            ],
        );
        assert!(
            text.contains(B) && text.contains("inside 10.231.77.6:41003"),
            "{text}"
        );
    };

    let data = dir.join("data");
    ok(&data, &["ingest", notes.to_str().unwrap()]);
    // Before conntrack: the gateway address is unresolved (issue 12's Neutron part).
    let v = json(&data, &["who", "--ip", PUBLIC, "--at", &at.to_string()]);
    assert_eq!(v["unresolved"][0]["kind"], "router_gateway", "{v:#}");
    ok(
        &data,
        &["ingest", "--observer", "network", ct_log.to_str().unwrap()],
    );
    check(&data, "conntrack");
    // The same lines again, and a copy in reverse order: the same answers.
    let reversed = dir.join("reversed.log");
    let mut lines: Vec<&str> = ct_text.lines().collect();
    lines.reverse();
    fs::write(&reversed, lines.join("\n") + "\n").unwrap();
    ok(
        &data,
        &[
            "ingest",
            "--observer",
            "network",
            reversed.to_str().unwrap(),
        ],
    );
    check(&data, "conntrack twice, reversed");
    // A VM cannot plant translations: the same lines as observer vm prove nothing.
    let data_vm = dir.join("data-vm");
    ok(&data_vm, &["ingest", notes.to_str().unwrap()]);
    ok(
        &data_vm,
        &["ingest", "--observer", "vm", ct_log.to_str().unwrap()],
    );
    let v = json(
        &data_vm,
        &[
            "who",
            "--ip",
            PUBLIC,
            "--port",
            "50000",
            "--at",
            &at.to_string(),
        ],
    );
    assert!(v["matches"].as_array().unwrap().is_empty(), "{v:#}");

    if ulogd_on {
        let text = fs::read_to_string(&ulogd_json).unwrap_or_default();
        assert!(text.contains("\"ct.event\""), "ulogd wrote: {text}");
        let data2 = dir.join("data-ulogd");
        ok(&data2, &["ingest", notes.to_str().unwrap()]);
        ok(
            &data2,
            &[
                "ingest",
                "--observer",
                "network",
                ulogd_json.to_str().unwrap(),
            ],
        );
        check(&data2, "ulogd2 JSON");
    }
}
