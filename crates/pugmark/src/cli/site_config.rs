//! `pugmark site-config`: the recommended configuration files for a site, complete and
//! commented, for VM images, hypervisors, the central logger, OpenStack, OpenNebula, HTCondor
//! and `pugmark serve` itself.
//!
//! The files are text templates in `src/site/` (readable as the configs they are), filled in
//! with the collector's name, ports, CA path and spool directory. docs/SITES.md shows the same
//! text; `tests/site.rs` feeds every generated file and every snippet of docs/SITES.md to the
//! program that reads it (`rsyslogd -N1`, `nft -c -f`, `iptables-restore --test`,
//! `cloud-init schema`, `systemd-analyze verify`, `pugmark serve --check-config`).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// The unit `pugmark serve` runs under: the packaging's file, byte for byte.
pub const SERVE_UNIT: &str = include_str!("../../../../dist/pugmark.service");

const VM_RSYSLOG_RELP: &str = include_str!("../site/vm-rsyslog-relp.conf");
const VM_RSYSLOG_TLS: &str = include_str!("../site/vm-rsyslog-tls.conf");
const VM_UUID_SCRIPT: &str = include_str!("../site/pugmark-vm-uuid.sh");
const VM_CONTEXTUALISE: &str = include_str!("../site/vm-contextualise.sh");
const HV_NFT: &str = include_str!("../site/hv-nftables.nft");
const HV_IPTABLES: &str = include_str!("../site/hv-iptables.rules");
const HV_RSYSLOG: &str = include_str!("../site/hv-rsyslog-kernel.conf");
const HV_CONNTRACK: &str = include_str!("../site/hv-conntrack.service");
const CENTRAL: &str = include_str!("../site/central-rsyslog.conf");
const NOVA: &str = include_str!("../site/nova.conf");
const NEUTRON: &str = include_str!("../site/neutron.conf");
const KEYSTONE_SERVICE: &str = include_str!("../site/keystone-dump.service");
const TIMER: &str = include_str!("../site/feed.timer");
const CONDOR_SERVICE: &str = include_str!("../site/condor-history.service");
const ONE_HOOK_TEMPLATE: &str = include_str!("../site/one-hook.tmpl");
const ONE_HOOK_SCRIPT: &str = include_str!("../site/one-hook.sh");
const ONE_HOOK_DONE: &str = include_str!("../site/one-hook-done.tmpl");
const ONEVM_LIST_SERVICE: &str = include_str!("../site/onevm-list.service");
const ONE_RSYSLOG: &str = include_str!("../site/one-rsyslog.conf");
const SERVE_TOML: &str = include_str!("../site/serve.toml");

/// Where the generated configs expect the site CA on each host.
const CA_PATH: &str = "/etc/pki/pugmark/ca.pem";
const RELP_PORT: u16 = 2514;
const TLS_PORT: u16 = 6514;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// VM images: cloud-init cloud-config, the rsyslog forwarding with the instance UUID in
    /// every message, and a contextualisation script for images without cloud-init.
    Vm,
    /// Hypervisors: nftables and iptables LOG rules per tap device, kernel-log forwarding
    /// over TLS, conntrack NAT logging for a network node.
    Hypervisor,
    /// The central rsyslog: archive with receipt time and sender address, per-host files.
    Central,
    /// nova.conf and neutron.conf notification settings, a Keystone dump timer.
    Openstack,
    /// OpenNebula: the VM state hooks (RUNNING, DONE) writing into the spool, an hourly
    /// `onevm list -x` dump, and oned's syslog forwarded.
    Opennebula,
    /// A `condor_history -json` export timer writing into the spool.
    Htcondor,
    /// `pugmark serve` itself: its TOML (sender map, spool) and its systemd unit.
    Serve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// RELP (omrelp): acknowledged once on disk, resent otherwise.
    Relp,
    /// Syslog over TLS (omfwd, gtls), octet-counted, with a client certificate.
    Tls,
}

#[derive(Debug, clap::Args)]
pub struct SiteConfigArgs {
    /// What to write the configuration for.
    #[arg(value_enum)]
    pub target: Target,
    /// The host name (or address) of the collector running `pugmark serve`; TLS checks it
    /// against the collector's certificate.
    #[arg(long, default_value = "pugmark.example.org")]
    pub collector: String,
    /// How VMs forward their logs (hypervisors always use TLS with their certificate).
    #[arg(long, value_enum, default_value = "relp")]
    pub transport: Transport,
    /// The site CA certificate (PEM): embedded in the VM cloud-config and the contextualisation
    /// script, and written beside the other files as ca.pem. The configs read it from
    /// /etc/pki/pugmark/ca.pem.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Write the files into this directory (created if needed) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A site SSH public key for incident access to VMs (`vm`): a locked user
    /// `site-incident` with this key and sudo.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// The spool directory the feeds write into and `serve` watches (one subdirectory per
    /// observer).
    #[arg(long, default_value = "/var/spool/pugmark", value_name = "DIR")]
    pub spool: String,
}

/// One generated file: its name, text and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    pub name: String,
    pub text: String,
    pub mode: u32,
}

fn file(name: &str, text: String, mode: u32) -> SiteFile {
    SiteFile {
        name: name.to_string(),
        text,
        mode,
    }
}

pub fn run(args: SiteConfigArgs) -> Result<ExitCode> {
    let files = generate(&args)?;
    match &args.out {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for f in &files {
                let path = dir.join(&f.name);
                fs::write(&path, &f.text).with_context(|| format!("writing {}", path.display()))?;
                set_mode(&path, f.mode)?;
                println!("{}", path.display());
            }
        }
        None => {
            for (i, f) in files.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("# ==> {} <==", f.name);
                print!("{}", f.text);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_: &std::path::Path, _: u32) -> Result<()> {
    Ok(())
}

/// The values pasted into the templates, checked so that none can break the syntax of the
/// files they land in (a collector name with a quote would end an rsyslog string).
struct Values {
    collector: String,
    transport: Transport,
    ca_pem: Option<String>,
    ssh_key: Option<String>,
    spool: String,
}

fn values(args: &SiteConfigArgs) -> Result<Values> {
    let c = &args.collector;
    if c.is_empty()
        || !c
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | ':' | '_'))
    {
        bail!(
            "--collector must be a host name or an address (letters, digits, '.', '-', ':', '_'), not {c:?}"
        );
    }
    let s = &args.spool;
    if !s.starts_with('/')
        || s.len() < 2
        || !s
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '/' | '.' | '-' | '_'))
    {
        bail!("--spool must be an absolute path of letters, digits, '/', '.', '-', '_', not {s:?}");
    }
    let ca_pem = match &args.ca {
        Some(p) => {
            let pem =
                fs::read_to_string(p).with_context(|| format!("reading the CA {}", p.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!("{} holds no PEM certificate", p.display());
            }
            Some(pem)
        }
        None => None,
    };
    let ssh_key = match &args.ssh_key {
        Some(p) => {
            let text = fs::read_to_string(p)
                .with_context(|| format!("reading the key {}", p.display()))?;
            let key = text.trim();
            let kind = key.split_whitespace().next().unwrap_or("");
            if key.lines().count() != 1
                || !(kind.starts_with("ssh-")
                    || kind.starts_with("ecdsa-")
                    || kind.starts_with("sk-"))
            {
                bail!(
                    "{} is not one OpenSSH public key line (ssh-ed25519 …, ecdsa-…, ssh-rsa …)",
                    p.display()
                );
            }
            Some(key.to_string())
        }
        None => None,
    };
    Ok(Values {
        collector: c.clone(),
        transport: args.transport,
        ca_pem,
        ssh_key,
        spool: s.trim_end_matches('/').to_string(),
    })
}

fn fill(template: &str, v: &Values) -> String {
    let port = match v.transport {
        Transport::Relp => RELP_PORT,
        Transport::Tls => TLS_PORT,
    };
    template
        .replace("@COLLECTOR@", &v.collector)
        .replace("@PORT@", &port.to_string())
        .replace("@RELP_PORT@", &RELP_PORT.to_string())
        .replace("@TLS_PORT@", &TLS_PORT.to_string())
        .replace("@CA_PATH@", CA_PATH)
        .replace("@HV_CERT@", "/etc/pki/pugmark/host.pem")
        .replace("@HV_KEY@", "/etc/pki/pugmark/host.key")
        .replace("@SPOOL@", &v.spool)
}

/// Every file of a target, in the order they are printed.
pub fn generate(args: &SiteConfigArgs) -> Result<Vec<SiteFile>> {
    let v = values(args)?;
    let mut files = match args.target {
        Target::Vm => vm(&v),
        Target::Hypervisor => vec![
            file("pugmark.nft", fill(HV_NFT, &v), 0o644),
            file("pugmark-iptables.rules", fill(HV_IPTABLES, &v), 0o644),
            file("90-pugmark-kernel.conf", fill(HV_RSYSLOG, &v), 0o644),
            file("pugmark-conntrack.service", fill(HV_CONNTRACK, &v), 0o644),
        ],
        Target::Central => vec![file("10-pugmark-central.conf", fill(CENTRAL, &v), 0o644)],
        Target::Openstack => vec![
            file("nova.conf", fill(NOVA, &v), 0o644),
            file("neutron.conf", fill(NEUTRON, &v), 0o644),
            file(
                "pugmark-keystone-dump.service",
                fill(KEYSTONE_SERVICE, &v),
                0o644,
            ),
            file(
                "pugmark-keystone-dump.timer",
                timer(
                    "pugmark-keystone-dump",
                    "openstack",
                    "hourly",
                    "every hour",
                    "Dump Keystone users and projects into pugmark's spool",
                ),
                0o644,
            ),
        ],
        Target::Opennebula => vec![
            file("pugmark-vm-state.tmpl", fill(ONE_HOOK_TEMPLATE, &v), 0o644),
            file("pugmark-vm-done.tmpl", fill(ONE_HOOK_DONE, &v), 0o644),
            file("pugmark-one-hook", fill(ONE_HOOK_SCRIPT, &v), 0o755),
            file(
                "pugmark-onevm-list.service",
                fill(ONEVM_LIST_SERVICE, &v),
                0o644,
            ),
            file(
                "pugmark-onevm-list.timer",
                timer(
                    "pugmark-onevm-list",
                    "opennebula",
                    "hourly",
                    "every hour",
                    "Dump OpenNebula's VM pool into pugmark's spool",
                ),
                0o644,
            ),
            file("90-pugmark-oned.conf", fill(ONE_RSYSLOG, &v), 0o644),
        ],
        Target::Htcondor => vec![
            file(
                "pugmark-condor-history.service",
                fill(CONDOR_SERVICE, &v),
                0o644,
            ),
            file(
                "pugmark-condor-history.timer",
                timer(
                    "pugmark-condor-history",
                    "htcondor",
                    "*:0/15",
                    "every 15 minutes",
                    "Export condor_history -json into pugmark's spool",
                ),
                0o644,
            ),
        ],
        Target::Serve => vec![
            file("serve.toml", fill(SERVE_TOML, &v), 0o640),
            file("pugmark.service", SERVE_UNIT.to_string(), 0o644),
        ],
    };
    if let Some(pem) = &v.ca_pem {
        files.push(file("ca.pem", pem.clone(), 0o644));
    }
    Ok(files)
}

fn timer(name: &str, target: &str, calendar: &str, when: &str, description: &str) -> String {
    TIMER
        .replace("@NAME@", name)
        .replace("@TARGET@", target)
        .replace("@CALENDAR@", calendar)
        .replace("@WHEN@", when)
        .replace("@DESCRIPTION@", description)
}

fn vm(v: &Values) -> Vec<SiteFile> {
    let rsyslog = fill(
        match v.transport {
            Transport::Relp => VM_RSYSLOG_RELP,
            Transport::Tls => VM_RSYSLOG_TLS,
        },
        v,
    );
    let uuid_script = fill(VM_UUID_SCRIPT, v);
    vec![
        file(
            "cloud-config.yaml",
            cloud_config(v, &rsyslog, &uuid_script),
            0o644,
        ),
        file("90-pugmark.conf", rsyslog.clone(), 0o644),
        file("pugmark-vm-uuid", uuid_script.clone(), 0o755),
        file(
            "pugmark-contextualise.sh",
            contextualise(v, &rsyslog, &uuid_script),
            0o755,
        ),
    ]
}

/// `text` as the body of a YAML block scalar indented by `indent` spaces.
fn yaml_block(out: &mut String, text: &str, indent: usize) {
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{:indent$}{line}", "");
        }
    }
}

fn cloud_config(v: &Values, rsyslog: &str, uuid_script: &str) -> String {
    let (how, package) = match v.transport {
        Transport::Relp => ("RELP", "rsyslog-relp"),
        Transport::Tls => ("TLS", "rsyslog-gnutls"),
    };
    let mut y = String::new();
    let _ = writeln!(y, "#cloud-config");
    let _ = writeln!(
        y,
        "# Written by `pugmark site-config vm`: this VM forwards everything it logs to pugmark\n\
         # ({} over {how}, with a disk queue) and puts its instance UUID in every message as\n\
         # RFC 5424 structured data [pugmark@32473 vm_uuid=\"…\"]. Merge into the image's or the\n\
         # project's user data (cloud-init merges several #cloud-config parts).",
        v.collector
    );
    let _ = writeln!(y, "packages:\n  - rsyslog\n  - {package}");
    let _ = writeln!(y, "write_files:");
    let _ = writeln!(
        y,
        "  # Finds the instance UUID (cloud-init instance data v1.instance_id, the metadata\n  \
         # service, or Machine/Job Features) and writes it to /etc/pugmark/vm-uuid.\n  \
         - path: /usr/local/sbin/pugmark-vm-uuid\n    owner: root:root\n    permissions: '0755'\n    content: |"
    );
    yaml_block(&mut y, uuid_script, 6);
    let _ = writeln!(
        y,
        "  # Until the first boot's runcmd writes the UUID: rsyslog may start before it and\n  \
         # must find the file (a missing file is a configuration error to rsyslog).\n  \
         - path: /etc/pugmark/vm-uuid\n    owner: root:root\n    permissions: '0644'\n    content: unknown"
    );
    let _ = writeln!(
        y,
        "  - path: /etc/rsyslog.d/90-pugmark.conf\n    owner: root:root\n    permissions: '0644'\n    content: |"
    );
    yaml_block(&mut y, rsyslog, 6);
    if let Some(pem) = &v.ca_pem {
        let _ = writeln!(
            y,
            "  - path: {CA_PATH}\n    owner: root:root\n    permissions: '0644'\n    content: |"
        );
        yaml_block(&mut y, pem, 6);
    }
    let _ = writeln!(
        y,
        "# At the end of the first boot: the UUID file first, then rsyslog reads it.\nruncmd:\n  \
         - [/usr/local/sbin/pugmark-vm-uuid]\n  - [systemctl, restart, rsyslog]"
    );
    match &v.ssh_key {
        Some(key) => {
            // A JSON string is a valid YAML double-quoted scalar.
            let quoted = serde_json::Value::String(key.clone()).to_string();
            let _ = writeln!(
                y,
                "# The site's incident-response key (--ssh-key): a user without a password.\n\
                 users:\n  - default\n  - name: site-incident\n    gecos: Site incident response\n    \
                 lock_passwd: true\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/bash\n    \
                 ssh_authorized_keys:\n      - {quoted}"
            );
        }
        None => {
            let _ = writeln!(
                y,
                "# A site SSH key for incident access (pugmark site-config vm --ssh-key FILE):\n\
                 # users:\n#   - default\n#   - name: site-incident\n#     lock_passwd: true\n\
                 #     sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n#     ssh_authorized_keys:\n#       - \"ssh-ed25519 AAAA… site-incident\""
            );
        }
    }
    y
}

fn contextualise(v: &Values, rsyslog: &str, uuid_script: &str) -> String {
    let ca = match &v.ca_pem {
        Some(pem) => format!(
            "mkdir -p /etc/pki/pugmark\ncat > {CA_PATH} <<'PUGMARK_EOF'\n{}PUGMARK_EOF\n",
            if pem.ends_with('\n') {
                pem.clone()
            } else {
                format!("{pem}\n")
            }
        ),
        None => String::new(),
    };
    let ssh = match &v.ssh_key {
        Some(key) => format!(
            "# The site's incident-response key (--ssh-key).\n\
             id site-incident >/dev/null 2>&1 || useradd -m -s /bin/bash site-incident\n\
             passwd -l site-incident >/dev/null\n\
             mkdir -p /home/site-incident/.ssh\n\
             cat > /home/site-incident/.ssh/authorized_keys <<'PUGMARK_EOF'\n{key}\nPUGMARK_EOF\n\
             chown -R site-incident: /home/site-incident/.ssh\n\
             chmod 0700 /home/site-incident/.ssh\n\
             chmod 0600 /home/site-incident/.ssh/authorized_keys\n\
             echo 'site-incident ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/site-incident\n\
             chmod 0440 /etc/sudoers.d/site-incident\n"
        ),
        None => String::new(),
    };
    VM_CONTEXTUALISE
        .replace("@UUID_SCRIPT@", uuid_script)
        .replace("@RSYSLOG_CONF@", rsyslog)
        .replace("@CA_WRITE@", &ca)
        .replace("@SSH_KEY_WRITE@", &ssh)
}
