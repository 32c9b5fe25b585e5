//! Issue 15, the site kit: every file `pugmark site-config` writes, and every configuration
//! docs/SITES.md shows, is fed to the real program that will read it — `rsyslogd -N1`,
//! `nft -c -f`, `iptables-restore --test`, `cloud-init schema --config-file`,
//! `systemd-analyze verify`, `sh -n`, `pugmark serve --check-config`, and nova/neutron option
//! names against oslo.messaging's own sample generation (`oslo-config-generator`) — and the
//! docs show exactly what the generator writes, so the two cannot drift.
//!
//! nova's own `[notifications]` options are not checked against a generator: the `nova`
//! package is not installed here (it pulls the whole of nova's dependencies into the venv);
//! oslo.messaging's options (`[oslo_messaging_notifications]`, `control_exchange`) are.
//! OpenNebula's hook template is not checked by `onehook` (no OpenNebula front-end here).
//!
//! The namespace end-to-end test is in `tests/netns.rs`.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::*;
#[path = "common/site_pki.rs"]
mod site_pki;
use site_pki::make_pki;

/// The programs the checks need; `None` (a skip, or a failure under CI) when one is missing.
struct Tools {
    rsyslogd: PathBuf,
    nft: PathBuf,
    iptables_restore: PathBuf,
    cloud_init: PathBuf,
    systemd_analyze: PathBuf,
    openssl: PathBuf,
    oslo_generator: PathBuf,
}

fn tools() -> Option<Tools> {
    let venv = std::env::var("PUGMARK_VENV").unwrap_or_else(|_| "/var/cache/pugmark-venv".into());
    let generator = Path::new(&venv).join("bin/oslo-config-generator");
    Some(Tools {
        rsyslogd: need("rsyslogd")?,
        nft: need("nft")?,
        iptables_restore: need("iptables-restore")?,
        cloud_init: need("cloud-init")?,
        systemd_analyze: need("systemd-analyze")?,
        openssl: need("openssl")?,
        oslo_generator: require(
            "oslo-config-generator (oslo.messaging venv)",
            generator.is_file().then_some(generator),
        )?,
    })
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a file is, for the program that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Rsyslog,
    Nft,
    Iptables,
    CloudConfig,
    Systemd,
    Shell,
    Ini,
    ServeToml,
    /// `pugmark witness serve`'s TOML (docs/SITES.md, issue 11).
    WitnessToml,
    /// OpenNebula's hook template: no checker here (see the module doc).
    OneHook,
}

/// The kind of a generated file, by its name; every name the generator writes must be here,
/// so a new file cannot escape its check.
fn kind_of(name: &str) -> Kind {
    match name {
        "90-pugmark.conf"
        | "90-pugmark-kernel.conf"
        | "10-pugmark-central.conf"
        | "90-pugmark-oned.conf" => Kind::Rsyslog,
        "nova.conf" | "neutron.conf" => Kind::Ini,
        "pugmark.nft" => Kind::Nft,
        "pugmark-iptables.rules" => Kind::Iptables,
        "cloud-config.yaml" => Kind::CloudConfig,
        "serve.toml" => Kind::ServeToml,
        "pugmark-vm-state.tmpl" | "pugmark-vm-done.tmpl" => Kind::OneHook,
        "pugmark-vm-uuid" | "pugmark-contextualise.sh" | "pugmark-one-hook" => Kind::Shell,
        n if n.ends_with(".service") || n.ends_with(".timer") => Kind::Systemd,
        other => panic!("site-config wrote {other}, which no test checks: add it to kind_of"),
    }
}

/// Where the checks run: the test PKI, a stand-in for /etc/pugmark (the VM's UUID file), the
/// spool, and the oslo.messaging option names.
struct Checker {
    tools: Tools,
    dir: PathBuf,
    pki: PathBuf,
    etc: PathBuf,
    spool: PathBuf,
    oslo: BTreeMap<String, BTreeSet<String>>,
    n: usize,
}

impl Checker {
    fn new(tools: Tools, dir: &Path) -> Checker {
        let pki = dir.join("pki");
        make_pki(&tools.openssl, &pki);
        let etc = dir.join("etc-pugmark");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("vm-uuid"), "0b7c5f2e-1111-4222-8333-444455556666").unwrap();
        let spool = dir.join("spool");
        for s in ["cloud", "vo"] {
            fs::create_dir_all(spool.join(s)).unwrap();
        }
        let out = Command::new(&tools.oslo_generator)
            .args(["--namespace", "oslo.messaging"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oslo-config-generator: {}",
            said(&out)
        );
        let mut oslo: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut section = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
            } else if let Some((name, _)) = line.trim_start_matches('#').split_once(" =")
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                oslo.entry(section.clone())
                    .or_default()
                    .insert(name.to_string());
            }
        }
        assert!(
            oslo.get("oslo_messaging_notifications")
                .is_some_and(|o| o.contains("driver") && o.contains("topics")),
            "oslo-config-generator lists [oslo_messaging_notifications] driver and topics"
        );
        Checker {
            tools,
            dir: dir.to_path_buf(),
            pki,
            etc,
            spool,
            oslo,
            n: 0,
        }
    }

    /// The text with the hosts' paths pointed at the test's stand-ins.
    fn localise(&self, text: &str) -> String {
        text.replace("/etc/pki/pugmark/", &format!("{}/", self.pki.display()))
            .replace("/etc/pugmark/pki/", &format!("{}/", self.pki.display()))
            .replace("/etc/pugmark/", &format!("{}/", self.etc.display()))
            .replace("/var/spool/pugmark", &self.spool.to_string_lossy())
    }

    /// Feed `text` (a file of `kind`, named `name`) to its program; the complaint if refused.
    fn check(&mut self, kind: Kind, name: &str, text: &str) -> Result<(), String> {
        self.n += 1;
        let work = self.dir.join(format!("check-{}", self.n));
        fs::create_dir_all(&work).unwrap();
        let refused = |what: &str, out: Output| -> Result<(), String> {
            let s = said(&out);
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{what} refused {name}:\n{s}"))
            }
        };
        match kind {
            Kind::Rsyslog => {
                let mut conf = format!("global(workDirectory=\"{}\")\n", work.display());
                conf.push_str(&self.localise(text));
                // A snippet that defines a ruleset no input feeds gets one (-N1 refuses it).
                if !text.contains("input(") {
                    for rs in text
                        .split("ruleset(name=\"")
                        .skip(1)
                        .filter_map(|r| r.split('"').next())
                    {
                        conf.push_str(&format!(
                            "module(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{}\" ruleset=\"{rs}\")\n",
                            free_port()
                        ));
                    }
                }
                let path = work.join("rsyslog.conf");
                fs::write(&path, &conf).unwrap();
                let out = Command::new(&self.tools.rsyslogd)
                    .args(["-N1", "-f"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let s = said(&out);
                if out.status.success() && !s.contains("error") && !s.contains("warning") {
                    Ok(())
                } else {
                    Err(format!(
                        "rsyslogd -N1 refused {name}:\n{s}\n--- as fed ---\n{conf}"
                    ))
                }
            }
            Kind::Nft => {
                let path = work.join(name);
                fs::write(&path, text).unwrap();
                refused(
                    "nft -c -f",
                    Command::new(&self.tools.nft)
                        .arg("-c")
                        .arg("-f")
                        .arg(&path)
                        .output()
                        .unwrap(),
                )
            }
            Kind::Iptables => {
                let path = work.join(name);
                fs::write(&path, text).unwrap();
                refused(
                    "iptables-restore --test --noflush",
                    Command::new(&self.tools.iptables_restore)
                        .args(["--test", "--noflush"])
                        .arg(&path)
                        .output()
                        .unwrap(),
                )
            }
            Kind::CloudConfig => {
                let path = work.join(name);
                fs::write(&path, text).unwrap();
                let out = Command::new(&self.tools.cloud_init)
                    .args(["schema", "--config-file"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let s = said(&out);
                if out.status.success() && s.contains("Valid cloud-config") {
                    Ok(())
                } else {
                    Err(format!("cloud-init schema refused {name}:\n{s}"))
                }
            }
            Kind::Systemd => {
                // The unit under its own name (systemd checks name and type agree); a timer
                // needs its service beside it, which the caller writes first.
                let path = work.join(name);
                // The packaged unit runs /usr/bin/pugmark, not installed here.
                fs::write(
                    &path,
                    text.replace("/usr/bin/pugmark ", &format!("{} ", bin())),
                )
                .unwrap();
                if let Some(stem) = name.strip_suffix(".timer") {
                    let service = work.join(format!("{stem}.service"));
                    if !service.try_exists().unwrap() {
                        fs::write(&service, "[Service]\nType=oneshot\nExecStart=/bin/true\n")
                            .unwrap();
                    }
                }
                let out = Command::new(&self.tools.systemd_analyze)
                    .args(["verify", "--man=no"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let s = said(&out);
                // An unknown key is only a warning to systemd: any output is a refusal.
                if out.status.success() && s.trim().is_empty() {
                    Ok(())
                } else {
                    Err(format!("systemd-analyze verify refused {name}:\n{s}"))
                }
            }
            Kind::Shell => refused(
                "sh -n",
                Command::new("sh")
                    .args(["-n", "-c", text])
                    .output()
                    .unwrap(),
            ),
            Kind::Ini => self.check_ini(name, text),
            Kind::ServeToml => {
                let path = work.join(name);
                fs::write(&path, self.localise(text)).unwrap();
                // Relative TLS paths (`pki/server.pem`) are read beside the config.
                std::os::unix::fs::symlink(&self.pki, work.join("pki")).unwrap();
                let out = Command::new(bin())
                    .args(["serve", "--check-config", "--config"])
                    .arg(&path)
                    .output()
                    .unwrap();
                refused("pugmark serve --check-config", out)
            }
            Kind::WitnessToml => {
                let path = work.join(name);
                fs::write(&path, text).unwrap();
                let out = Command::new(bin())
                    .args(["witness", "serve", "--check-config", "--config"])
                    .arg(&path)
                    .output()
                    .unwrap();
                refused("pugmark witness serve --check-config", out)
            }
            Kind::OneHook => Ok(()),
        }
    }

    /// nova.conf / neutron.conf: every line is a section, an option or a comment, and every
    /// option oslo.messaging defines in that section is named as oslo.messaging names it;
    /// nova's `[notifications]` options are held against the list nova documents.
    fn check_ini(&self, name: &str, text: &str) -> Result<(), String> {
        // nova's [notifications] options (nova/conf/notifications.py); not generated here.
        let nova_notifications = ["notification_format", "notify_on_state_change"];
        let mut section = String::new();
        let mut options = 0;
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let Some((opt, _)) = l.split_once('=') else {
                return Err(format!("{name}: not an ini line: {line}"));
            };
            let opt = opt.trim();
            options += 1;
            let known = match section.as_str() {
                "notifications" => nova_notifications.contains(&opt),
                s => self.oslo.get(s).is_some_and(|o| o.contains(opt)),
            };
            if !known {
                return Err(format!(
                    "{name}: [{section}] {opt} is not an option oslo.messaging (or nova's \
                     [notifications]) defines"
                ));
            }
        }
        if options == 0 {
            return Err(format!("{name}: no options"));
        }
        Ok(())
    }
}

fn site_config(args: &[&str]) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("site-config")
        .args(args)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "site-config {args:?}: {}", said(&out));
    let mut files = BTreeMap::new();
    for e in fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        files.insert(
            e.file_name().to_string_lossy().into_owned(),
            fs::read_to_string(e.path()).unwrap(),
        );
    }
    files
}

const TARGETS: [&str; 7] = [
    "vm",
    "hypervisor",
    "central",
    "openstack",
    "opennebula",
    "htcondor",
    "serve",
];

/// Every file of every target (and the VM's TLS variant with a CA and a site SSH key) is
/// accepted by the program that reads it: 0 rejected. The serve unit is the packaging's,
/// byte for byte; the cloud-config carries exactly the files written beside it.
#[test]
fn every_generated_file_is_accepted_by_the_program_that_reads_it() {
    let Some(tools) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = Checker::new(tools, dir.path());
    let key = dir.path().join("site.pub");
    fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1zQ8m0p2mQ8m0p2mQ8m0p2mQ8m0p2mQ8m0p2mQ8m site-incident\n",
    )
    .unwrap();
    let ca = c.pki.join("ca.pem");
    let mut runs: Vec<Vec<String>> = TARGETS.iter().map(|t| vec![t.to_string()]).collect();
    runs.push(
        [
            "vm",
            "--transport",
            "tls",
            "--collector",
            "logs.site.example",
            "--ca",
            &ca.to_string_lossy(),
            "--ssh-key",
            &key.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec(),
    );
    let mut refused = Vec::new();
    let mut checked: BTreeMap<Kind, usize> = BTreeMap::new();
    for run in &runs {
        let args: Vec<&str> = run.iter().map(String::as_str).collect();
        let files = site_config(&args);
        assert!(!files.is_empty(), "site-config {args:?} wrote nothing");
        // Services before timers: a timer is checked beside its service.
        let mut names: Vec<&String> = files.keys().collect();
        names.sort_by_key(|n| n.ends_with(".timer"));
        for name in names {
            if name == "ca.pem" {
                continue;
            }
            let kind = kind_of(name);
            *checked.entry(kind).or_default() += 1;
            if let Err(e) = c.check(kind, name, &files[name]) {
                refused.push(format!("site-config {args:?}: {e}"));
            }
        }
        if args[0] == "serve" {
            let dist = fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/pugmark.service"),
            )
            .unwrap();
            assert_eq!(
                files["pugmark.service"], dist,
                "serve's unit is dist/pugmark.service"
            );
        }
        if args[0] == "vm" {
            let cc = &files["cloud-config.yaml"];
            for part in ["90-pugmark.conf", "pugmark-vm-uuid"] {
                let indented: String = files[part]
                    .lines()
                    .map(|l| {
                        if l.is_empty() {
                            "\n".to_string()
                        } else {
                            format!("      {l}\n")
                        }
                    })
                    .collect();
                assert!(
                    cc.contains(&indented),
                    "the cloud-config carries {part} as written"
                );
            }
            if args.contains(&"--ssh-key") {
                assert!(cc.contains("site-incident") && cc.contains("ssh-ed25519 AAAA"));
                assert!(cc.contains("BEGIN CERTIFICATE"), "--ca is embedded");
                assert!(files["90-pugmark.conf"].contains("logs.site.example"));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused:\n{}",
        refused.len(),
        refused.join("\n\n")
    );
    for k in [
        Kind::Rsyslog,
        Kind::Nft,
        Kind::Iptables,
        Kind::CloudConfig,
        Kind::Systemd,
        Kind::Shell,
        Kind::Ini,
        Kind::ServeToml,
    ] {
        assert!(
            checked.get(&k).copied().unwrap_or(0) > 0,
            "nothing of kind {k:?} was checked"
        );
    }
}

/// Values that would break the syntax of the files they are pasted into are refused, not
/// written: a collector name with a quote (it would end an rsyslog string), a spool path
/// with a space, a key file holding two keys.
#[test]
fn site_config_refuses_values_that_would_break_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.pub");
    fs::write(&two, "ssh-ed25519 AAAA a\nssh-ed25519 BBBB b\n").unwrap();
    for args in [
        vec!["vm", "--collector", "evil\" target=\"x"],
        vec!["serve", "--spool", "/var/spool/my spool"],
        vec!["vm", "--ssh-key", two.to_str().unwrap()],
        vec!["vm", "--ca", two.to_str().unwrap()],
    ] {
        let out = Command::new(bin())
            .arg("site-config")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "site-config {args:?} was accepted");
        assert!(out.stdout.is_empty(), "nothing written for {args:?}");
    }
}

/// The UUID finder the cloud-config runs at boot, run here with cloud-init's real `query`
/// on an instance-data.json as cloud-init writes it: the UUID lands in the file rsyslog
/// reads; a value made to break out of the structured data (`"] [x`) is cut to the
/// characters an id uses; with no source at all the file says `unknown`.
#[test]
fn the_vm_uuid_finder_reads_cloud_init_instance_data_and_cuts_hostile_values() {
    let Some(_) = need("cloud-init") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = site_config(&["vm"]);
    let script = dir.path().join("pugmark-vm-uuid");
    fs::write(&script, &files["pugmark-vm-uuid"]).unwrap();
    for (id, want) in [
        (
            "0b7c5f2e-1111-4222-8333-444455556666",
            "0b7c5f2e-1111-4222-8333-444455556666",
        ),
        ("i-0abc\"] [evil x=\"1", "i-0abcevilx1"),
    ] {
        let data = dir.path().join("instance-data.json");
        fs::write(
            &data,
            serde_json::json!({"v1": {"instance_id": id, "local_hostname": "web01"}}).to_string(),
        )
        .unwrap();
        let out_file = dir.path().join("etc/vm-uuid");
        let out = Command::new("sh")
            .arg(&script)
            .env("PUGMARK_INSTANCE_DATA", &data)
            .env("PUGMARK_VM_UUID_FILE", &out_file)
            .env_remove("MACHINEFEATURES")
            .env_remove("JOBFEATURES")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        assert_eq!(fs::read_to_string(&out_file).unwrap(), want);
    }
    // Machine/Job Features when cloud-init has nothing (an unreadable instance data file).
    let jf = dir.path().join("jobfeatures");
    fs::create_dir_all(&jf).unwrap();
    fs::write(jf.join("job_id"), "vcycle-vm-42\n").unwrap();
    let out_file = dir.path().join("etc/vm-uuid-mjf");
    let out = Command::new("sh")
        .arg(&script)
        .env("PUGMARK_INSTANCE_DATA", dir.path().join("absent.json"))
        .env("PUGMARK_VM_UUID_FILE", &out_file)
        .env("JOBFEATURES", &jf)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let got = fs::read_to_string(&out_file).unwrap();
    assert!(
        got == "vcycle-vm-42" || got.len() == 36,
        "Job Features' job_id (or a metadata service's id where one answers): {got}"
    );
}

/// docs/SITES.md's fenced blocks, with their language tags.
fn doc_blocks() -> Vec<(String, String)> {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SITES.md"))
        .unwrap();
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
    blocks
}

/// The kind of a docs/SITES.md block, by its language tag (and, for systemd units, the file
/// name in its first line); `None` for sample output and command lines.
fn doc_kind(lang: &str, body: &str) -> Option<(Kind, String)> {
    let first = body.lines().next().unwrap_or("");
    let named = first
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("")
        .trim_end_matches(':')
        .to_string();
    Some(match lang {
        "rsyslog" => (Kind::Rsyslog, "snippet.conf".into()),
        "" if body.contains("action(") || body.contains("template(") => {
            (Kind::Rsyslog, "snippet.conf".into())
        }
        "nft" => (Kind::Nft, "snippet.nft".into()),
        "iptables" => (Kind::Iptables, "snippet.rules".into()),
        "yaml" if body.starts_with("#cloud-config") => {
            (Kind::CloudConfig, "cloud-config.yaml".into())
        }
        "ini" => (Kind::Ini, named),
        "toml" if first.contains("witness.toml") => (Kind::WitnessToml, "witness.toml".into()),
        "toml" => (Kind::ServeToml, "serve.toml".into()),
        "systemd" => (Kind::Systemd, named),
        "sh" => (Kind::Shell, "snippet.sh".into()),
        _ => return None,
    })
}

/// Every configuration docs/SITES.md shows, in every language, is accepted by its program
/// exactly as written (the tests extract it from the Markdown, so docs and tests cannot
/// drift), and the docs show every file `site-config` writes with its default flags exactly
/// as it writes it (the VM's pieces inside its cloud-config; not the serve unit, which is the
/// packaging's).
#[test]
fn every_config_in_the_sites_doc_is_accepted_by_its_program_and_matches_the_generator() {
    let Some(tools) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = Checker::new(tools, dir.path());
    let blocks = doc_blocks();
    let mut refused = Vec::new();
    let mut kinds = BTreeSet::new();
    // Services before timers, as for the generated files.
    let mut ordered: Vec<&(String, String)> = blocks.iter().collect();
    ordered.sort_by_key(|(lang, body)| lang == "systemd" && body.contains("[Timer]"));
    for (lang, body) in ordered {
        let Some((kind, name)) = doc_kind(lang, body) else {
            continue;
        };
        kinds.insert(kind);
        if let Err(e) = c.check(kind, &name, body) {
            refused.push(format!("docs/SITES.md ```{lang} block: {e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused:\n{}",
        refused.len(),
        refused.join("\n\n")
    );
    for k in [
        Kind::Rsyslog,
        Kind::Nft,
        Kind::Iptables,
        Kind::CloudConfig,
        Kind::Systemd,
        Kind::Ini,
        Kind::ServeToml,
        Kind::Shell,
    ] {
        assert!(kinds.contains(&k), "docs/SITES.md shows no {k:?} block");
    }
    let bodies: BTreeSet<&str> = blocks.iter().map(|(_, b)| b.as_str()).collect();
    let mut missing = Vec::new();
    for t in TARGETS {
        for (name, text) in site_config(&[t]) {
            // The unit is the packaging's (README); the VM's pieces are shown inside the
            // cloud-config, whose embedding of them the generator test checks.
            let shown_elsewhere =
                name == "pugmark.service" || (t == "vm" && name != "cloud-config.yaml");
            if shown_elsewhere {
                continue;
            }
            if !bodies.contains(text.as_str()) {
                missing.push(format!("{t}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/SITES.md does not show these generated files as written (copy `pugmark \
         site-config TARGET` output into it):\n{}",
        missing.join("\n")
    );
}

/// `ingest --sender-from-path`: files of a central logger's per-host layout
/// (`remote/{ip}/…`, IPv4 and IPv6) are stored with the address their path names, shown as
/// the origin's `sender` (`file_from_sender`); a file outside the pattern is refused with a
/// reason and stores nothing, the others are stored; a pattern without `{ip}` is refused.
#[test]
fn sender_from_path_stores_the_address_of_a_per_host_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let remote = dir.path().join("remote");
    let line = |host: &str, user: &str| {
        format!(
            "2026-12-06T10:00:00.123456+00:00 {host} sshd[123]: Accepted publickey for {user} from 192.0.2.50 port 5022 ssh2\n"
        )
    };
    for (ip, host, user) in [
        ("10.42.0.12", "web01", "alice"),
        ("2001:db8::7", "web02", "bob"),
    ] {
        fs::create_dir_all(remote.join(ip)).unwrap();
        fs::write(remote.join(ip).join("2026-12-06.log"), line(host, user)).unwrap();
    }
    fs::create_dir_all(remote.join("web03")).unwrap();
    fs::write(remote.join("web03/2026-12-06.log"), line("web03", "carol")).unwrap();
    let pattern = format!("{}/{{ip}}/", remote.display());
    let files: Vec<String> = ["10.42.0.12", "2001:db8::7", "web03"]
        .iter()
        .map(|d| {
            remote
                .join(d)
                .join("2026-12-06.log")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut args = vec!["ingest", "--observer", "vm", "--sender-from-path", &pattern];
    args.extend(files.iter().map(String::as_str));
    let out = pugmark(&data, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a refused file shows in the exit status"
    );
    assert!(
        err.contains("web03") && err.contains("--sender-from-path"),
        "the refusal names the file and why: {err}"
    );
    for (user, sender) in [("alice", "10.42.0.12"), ("bob", "2001:db8::7")] {
        let hits = json(&data, &["search", user]);
        let hits = hits["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{user}: {hits:?}");
        let origin = &hits[0]["origin"];
        assert_eq!(origin["kind"], "file_from_sender", "{origin}");
        assert_eq!(origin["sender"], sender, "{origin}");
    }
    assert_eq!(
        count(&data, &["carol"]),
        0,
        "the refused file stored nothing"
    );
    // A plain import of the same layout keeps no sender.
    let plain = dir.path().join("plain");
    ok(&plain, &["ingest", "--observer", "vm", &files[0]]);
    let hits = json(&plain, &["search", "alice"]);
    assert_eq!(hits["hits"][0]["origin"]["kind"], "file");
    let out = pugmark(
        &data,
        &[
            "ingest",
            "--sender-from-path",
            "/var/log/remote/",
            &files[0],
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("{ip}"));
}

/// `pugmark serve` with the generated config for a stopped / started collector; killed on drop.
struct SpoolServe(std::process::Child);

impl SpoolServe {
    fn start(data: &Path, config: &Path) -> SpoolServe {
        let relp = free_port();
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
            .args(["--netflow", "none", "--syslog-tls", "none"])
            .args(["--relp", &format!("127.0.0.1:{relp}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(data.with_extension("serve.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(relp, "pugmark serve");
        SpoolServe(child)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for SpoolServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(data: &Path, query: &str, want: u64) {
    let start = std::time::Instant::now();
    loop {
        let out = pugmark(data, &["search", query, "--count"]);
        let n: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if n == want {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{query}: {n}, not {want}, after 30 s; serve log:\n{}",
            fs::read_to_string(data.with_extension("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `[spool] dirs`: a Keystone dump renamed into the `cloud` directory is ingested once, as
/// observer `cloud` (the entry's, not the format's guess), and its users are found; the same
/// content under another name stores nothing; a dot file (a dump still being written) is
/// left alone; after a restart nothing is stored twice; the `vo` directory's files are `vo`.
#[test]
fn spool_files_are_ingested_once_by_content_under_their_entrys_observer() {
    let dir = tempfile::tempdir().unwrap();
    let (cloud, vo) = (dir.path().join("spool/cloud"), dir.path().join("spool/vo"));
    fs::create_dir_all(&cloud).unwrap();
    fs::create_dir_all(&vo).unwrap();
    let config = dir.path().join("serve.toml");
    fs::write(
        &config,
        format!(
            "version = 1\n[spool]\ninterval_secs = 1\ndirs = [\n  {{ path = \"{}\", observer = \"cloud\" }},\n  {{ path = \"{}\", observer = \"vo\" }},\n]\n",
            cloud.display(),
            vo.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let serve = SpoolServe::start(&data, &config);
    let users = serde_json::json!([
        {"ID": "u1", "Name": "spoolalice", "Project": "p1", "Domain": "default", "Description": "", "Email": "a@example.org", "Enabled": true},
        {"ID": "u2", "Name": "spoolbob", "Project": "p1", "Domain": "default", "Description": "", "Email": "b@example.org", "Enabled": true}
    ])
    .to_string();
    fs::write(cloud.join(".keystone-user-1.json"), &users).unwrap();
    fs::rename(
        cloud.join(".keystone-user-1.json"),
        cloud.join("keystone-user-1.json"),
    )
    .unwrap();
    fs::write(
        cloud.join(".still-writing.json"),
        users.replace("spool", "dot"),
    )
    .unwrap();
    fs::write(
        vo.join("history.log"),
        "2026-12-06T10:00:00+00:00 wn1 condor_starter[1]: spoolvojob started\n",
    )
    .unwrap();
    wait_for(&data, "spoolalice", 1);
    wait_for(&data, "spoolvojob", 1);
    let h = json(&data, &["search", "spoolalice"]);
    assert_eq!(h["hits"][0]["observer"], "cloud", "{h:#}");
    assert_eq!(
        json(&data, &["search", "spoolvojob"])["hits"][0]["observer"],
        "vo"
    );
    // The same dump again under another name: nothing new.
    fs::write(cloud.join("keystone-user-2.json"), &users).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    wait_for(&data, "spoolalice", 1);
    assert_eq!(count(&data, &["dotalice"]), 0, "dot files are skipped");
    serve.stop();
    let serve = SpoolServe::start(&data, &config);
    std::thread::sleep(std::time::Duration::from_secs(4));
    serve.stop();
    assert_eq!(
        count(&data, &["spoolalice"]),
        1,
        "a restart stores nothing twice"
    );
    assert_eq!(count(&data, &["spoolbob"]), 1);
    assert_eq!(count(&data, &["spoolvojob"]), 1);
    let log = fs::read_to_string(data.with_extension("serve.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
