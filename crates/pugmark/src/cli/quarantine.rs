//! `pugmark quarantine`: VM disks kept as evidence after the VM is gone (issue 13).
//!
//! The store, policies, backends and custody journal are crate `quarantine`; this file is the
//! verbs and the one place custody records enter the ledger ([`ship`]): each journal record
//! not yet shipped becomes a syslog-format envelope (program `pugmark-quarantine`, observer
//! `collector`) appended through the one write path, and `STORE/shipped` remembers the last
//! journal number stored with its ledger seq. With `--data` every verb ships before it
//! returns; `serve` with `[quarantine]` ships and expires on its timer; on a hypervisor the
//! config's `syslog = true` hands each record to the local rsyslog, which the site kit
//! forwards (observer: that hypervisor, from its certificate).
//!
//! Contracts: `list --json` → `{"items": [ITEM…]}`; `show --json`/`verify --json`/`export
//! --json` → one object; exit 0 when done, 1 when a capture was refused or failed or a verify
//! found a mismatch, errors on stderr as one line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use quarantine::backend::{CaptureMode, Source};
use quarantine::custody::Record;
use quarantine::policy::{Config, HookMode, Retention};
use quarantine::store::{PolicyScope, write_atomic};
use quarantine::{CaptureSpec, Item, Quarantine};
use serde::{Deserialize, Serialize};
use serde_json::json;

use pipeline::Pipeline;
use pipeline::datadir::DataDir;

/// The config file every verb reads (`--config`, `PUGMARK_QUARANTINE_CONFIG`).
pub const DEFAULT_CONFIG: &str = "/etc/pugmark/quarantine.toml";

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    pub command: QCommand,
    /// The quarantine's config (store, roots, policies).
    #[arg(long, global = true, env = "PUGMARK_QUARANTINE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// A data directory to store custody records in (its ledger), now; without it they stay
    /// in the store's journal until `serve` (or a later `--data` run) ships them.
    #[arg(long, global = true, env = "PUGMARK_QUARANTINE_DATA")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum QCommand {
    /// Capture a VM's disks into the quarantine: from a libvirt hook (`--libvirt DOMAIN OP
    /// SUBOP EXTRA`, domain XML on stdin), an OpenNebula state hook (`--opennebula`, base64
    /// VM XML on stdin) or by hand (`--vm UUID --disk PATH…`).
    Capture(CaptureArgs),
    /// Keep a VM's images (present and future) until released (or `--until`).
    Hold(HoldArgs),
    /// Release every hold on a VM; its images fall back to their policy.
    Release(ReleaseArgs),
    /// The holds in force per VM (operators' and findings'), with who asked and why.
    Holds(JsonArgs),
    /// List kept images.
    List(ListArgs),
    /// One kept image and its custody.
    Show(IdArgs),
    /// Write a kept image to a file (0600) with a custody sheet beside it (FILE.custody.json).
    Export(ExportArgs),
    /// Rehash a kept image against its custody record.
    Verify(IdArgs),
    /// Put a kept image back where it came from (or `--to PATH`); the kept copy stays.
    Restore(RestoreArgs),
    /// Purge every image whose retention ended and that no hold keeps.
    Expire(JsonArgs),
    /// Show or change retention policies (site, project / VO, VM).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Partitions, file systems and the VM's own logs on a kept image, read-only, without
    /// booting it; with `--data`, the logs are stored as observer `image`.
    Inspect(IdArgs),
    /// Print the hypervisor hook to install: `libvirt` (/etc/libvirt/hooks/qemu.d/),
    /// `opennebula` (the state hook template for `onehook create`) and
    /// `opennebula-command` (the script it runs, /var/lib/one/remotes/hooks/).
    Hook(HookArgs),
    /// Parse the config and print the effective policies; touches nothing (no store made).
    CheckConfig,
    /// Record that the cloud announced a VM's deletion (what `serve` does on nova's
    /// `instance.delete.start`).
    #[command(hide = true)]
    Mark(MarkArgs),
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// libvirt's hook arguments: DOMAIN OPERATION SUB-OPERATION EXTRA (domain XML on stdin).
    /// Only `release` is acted on; every other operation exits 0 at once.
    #[arg(long, num_args = 1..=4, value_name = "ARG")]
    pub libvirt: Option<Vec<String>>,
    /// OpenNebula state hook: the VM's XML, base64, on stdin (`ARGUMENTS_STDIN = "yes"`).
    #[arg(long, conflicts_with = "libvirt")]
    pub opennebula: bool,
    /// OpenNebula's file datastores.
    #[arg(long, default_value = "/var/lib/one/datastores")]
    pub datastores: PathBuf,
    /// By hand: the VM.
    #[arg(long, conflicts_with_all = ["libvirt", "opennebula"], requires = "disk")]
    pub vm: Option<String>,
    /// By hand: a disk file (repeat).
    #[arg(long)]
    pub disk: Vec<PathBuf>,
    /// By hand: the VM's project / VO.
    #[arg(long)]
    pub project: Option<String>,
    /// Move the disks in (the VM is gone) or copy them (it may come back). Default: the
    /// config's `hook_mode` for hooks, `take` by hand.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Why (kept in the custody record).
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not hash images an O(1) capture did not read (hash later with `verify`).
    #[arg(long)]
    pub no_hash: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Take,
    Copy,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The VM's UUID.
    pub vm: String,
    /// Until when (RFC 3339); without it, until released.
    #[arg(long)]
    pub until: Option<String>,
    /// Why.
    #[arg(long)]
    pub reason: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The VM's UUID.
    pub vm: String,
    /// Why.
    #[arg(long, default_value = "released by operator")]
    pub reason: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this VM's images.
    #[arg(long)]
    pub vm: Option<String>,
    /// Only this project's / VO's images.
    #[arg(long)]
    pub project: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The item id (`q-…`, from `list`).
    pub id: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The item id.
    pub id: String,
    /// The file to write (must not exist; created 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The item id.
    pub id: String,
    /// Where to put it (default: where it was captured from; never overwritten).
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Why.
    #[arg(long, default_value = "restored by operator")]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The effective policies (config overlaid by `policy set`).
    Show(JsonArgs),
    /// Set a retention (`7d`, `36h`, `0` = off) for the site, a project / VO or a VM.
    Set(PolicySetArgs),
    /// Remove a project's or VM's entry (it falls back to the next broader policy).
    Unset(PolicyScopeArgs),
}

#[derive(Debug, Args)]
pub struct PolicyScopeArgs {
    /// The site default.
    #[arg(long, conflicts_with_all = ["project", "vm"], required_unless_present_any = ["project", "vm"])]
    pub site: bool,
    /// A project id / name or VO.
    #[arg(long, conflicts_with = "vm")]
    pub project: Option<String>,
    /// A VM's UUID.
    #[arg(long)]
    pub vm: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    #[command(flatten)]
    pub scope: PolicyScopeArgs,
    /// The retention: `7d`, `36h`, `90m`, `45s`, or `0` (off).
    pub retention: String,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Which hook.
    #[arg(value_enum)]
    pub kind: HookKind,
    /// The pugmark binary the hook runs.
    #[arg(long, default_value = "/usr/bin/pugmark")]
    pub binary: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HookKind {
    Libvirt,
    Opennebula,
    OpennebulaCommand,
}

#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The VM's UUID.
    pub vm: String,
    /// Why.
    #[arg(long, default_value = "instance.delete.start")]
    pub reason: String,
}

/// The operator's name for custody records (`operator root`; `SUDO_USER` when set).
pub(crate) fn operator() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    format!("operator {who}")
}

pub fn run(args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    if let QCommand::Hook(h) = &args.command {
        print!("{}", hook_text(h.kind, &h.binary, &args.config));
        return Ok(ExitCode::SUCCESS);
    }
    if let QCommand::Capture(c) = &args.command
        && let Some(a) = &c.libvirt
        && a.get(1).map(String::as_str) != Some("release")
    {
        // libvirt runs the hook for every operation; only `release` concerns us, and the
        // others must not wait (`prepare`/`start` would delay the VM).
        std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()).ok();
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    if let QCommand::CheckConfig = &args.command {
        println!(
            "{}: ok (store {}, {} root(s), hook_mode {:?})",
            args.config.display(),
            config.store.display(),
            config.roots.len(),
            config.hook_mode
        );
        let p = &config.policy;
        println!(
            "site {}",
            p.retention.unwrap_or(quarantine::policy::DEFAULT_RETENTION)
        );
        for (k, v) in &p.projects {
            println!("project {k} {v}");
        }
        for (k, v) in &p.vms {
            println!("vm {k} {v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let extra = extra_backends(&config)?;
    let q = Quarantine::open(config, extra)
        .with_context(|| format!("opening the quarantine store of {}", args.config.display()))?;
    let code = match args.command {
        QCommand::Capture(c) => capture(&q, c)?,
        QCommand::Hold(h) => {
            let until = h
                .until
                .as_deref()
                .map(crate::cli::parse_time)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let items = q.hold(&h.vm, until, &h.reason, &operator())?;
            if h.json {
                println!(
                    "{}",
                    json!({"vm": h.vm.to_ascii_lowercase(), "until": until.map(|t| t.to_string()), "items": items})
                );
            } else {
                println!(
                    "held VM {} until {} ({} image(s) kept now)",
                    h.vm,
                    until.map_or("released".to_string(), |t| t.to_string()),
                    items.len()
                );
            }
            ExitCode::SUCCESS
        }
        QCommand::Release(r) => {
            let n = q.release(&r.vm, &r.reason, &operator())?;
            if r.json {
                println!(
                    "{}",
                    json!({"vm": r.vm.to_ascii_lowercase(), "released": n})
                );
            } else {
                println!("released {n} hold(s) on VM {}", r.vm);
            }
            ExitCode::SUCCESS
        }
        QCommand::Holds(j) => {
            let now = quarantine::now();
            let holds: std::collections::BTreeMap<String, Vec<HoldJson>> = q
                .holds()?
                .into_iter()
                .map(|(vm, hs)| {
                    let hs: Vec<HoldJson> = hs
                        .into_iter()
                        .filter(|h| h.until.is_none_or(|u| u > now))
                        .map(|h| HoldJson {
                            until: h.until.map(|t| t.to_string()),
                            reason: h.reason,
                            by: h.by,
                            since: h.since.to_string(),
                        })
                        .collect();
                    (vm, hs)
                })
                .filter(|(_, hs)| !hs.is_empty())
                .collect();
            if j.json {
                println!("{}", serde_json::to_string(&json!({ "holds": holds }))?);
            } else {
                let mut out = std::io::stdout().lock();
                for (vm, hs) in &holds {
                    for h in hs {
                        crate::cli::text_line(
                            &mut out,
                            &format!(
                                "vm {vm}  until {}  by {}  since {}: {}",
                                h.until.as_deref().unwrap_or("released"),
                                h.by,
                                h.since,
                                h.reason
                            ),
                        )?;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        QCommand::List(l) => {
            let items: Vec<ItemJson> = q
                .items()?
                .into_iter()
                .filter(|i| {
                    l.vm.as_deref()
                        .is_none_or(|v| i.vm_uuid.eq_ignore_ascii_case(v))
                })
                .filter(|i| {
                    l.project
                        .as_deref()
                        .is_none_or(|p| i.project.as_deref() == Some(p))
                })
                .map(|i| item_json(&q, i))
                .collect::<anyhow::Result<_>>()?;
            if l.json {
                println!("{}", serde_json::to_string(&json!({ "items": items }))?);
            } else {
                let mut out = std::io::stdout().lock();
                for i in &items {
                    crate::cli::text_line(
                        &mut out,
                        &format!(
                            "{}  vm {}  {}  {} bytes  {}  until {}{}",
                            i.id,
                            i.vm_uuid,
                            i.source,
                            i.size,
                            i.method,
                            i.keep_until.as_deref().unwrap_or("held"),
                            if i.held { " (held)" } else { "" }
                        ),
                    )?;
                }
            }
            ExitCode::SUCCESS
        }
        QCommand::Show(s) => {
            let item = q.item(&s.id)?;
            let j = item_json(&q, item)?;
            let custody = q.custody(&s.id)?;
            if s.json {
                println!(
                    "{}",
                    serde_json::to_string(&json!({"item": j, "custody": custody}))?
                );
            } else {
                let mut out = std::io::stdout().lock();
                crate::cli::text_line(&mut out, &serde_json::to_string_pretty(&j)?)?;
                for r in custody {
                    crate::cli::text_line(&mut out, &custody_line(&r))?;
                }
            }
            ExitCode::SUCCESS
        }
        QCommand::Export(e) => {
            let (item, d) = q.export(&e.id, &e.out, &operator())?;
            let matches = item.digests.as_ref() == Some(&d);
            let sheet = custody_sheet(&q, &item, &d, matches, args.data.as_deref())?;
            let sheet_path = sheet_path(&e.out);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(&sheet_path)
                .with_context(|| format!("creating {}", sheet_path.display()))?;
            f.write_all(serde_json::to_string_pretty(&sheet)?.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            if e.json {
                println!(
                    "{}",
                    json!({"id": item.id, "out": e.out, "sheet": sheet_path, "size": d.size,
                           "blake3": d.blake3, "sha256": d.sha256, "matches_custody": matches})
                );
            } else {
                println!(
                    "exported {} to {} ({} bytes, sha256 {}, {}); custody sheet {}",
                    item.id,
                    e.out.display(),
                    d.size,
                    d.sha256,
                    if matches {
                        "matches custody"
                    } else {
                        "DIFFERS FROM CUSTODY"
                    },
                    sheet_path.display()
                );
            }
            if matches {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        QCommand::Verify(v) => {
            let recorded = q.item(&v.id)?.digests;
            let (item, d, ok) = q.verify(&v.id, &operator())?;
            if v.json {
                println!(
                    "{}",
                    json!({"id": item.id, "ok": ok, "recorded": recorded, "now": d})
                );
            } else if ok {
                println!(
                    "{}: ok ({} bytes, blake3 {}, sha256 {})",
                    item.id, d.size, d.blake3, d.sha256
                );
            } else {
                println!(
                    "{}: MISMATCH: custody says {:?}, the image now hashes to {:?}",
                    item.id, recorded, d
                );
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        QCommand::Restore(r) => {
            let to = r.to.map(|path| Source::Path { path });
            let item = q.restore(&r.id, to, &operator(), &r.reason)?;
            println!("restored {} to {}", item.id, item.source);
            ExitCode::SUCCESS
        }
        QCommand::Expire(j) => {
            // Captures whose storage did not answer are tried again first (when due).
            let mut kept = Vec::new();
            let mut failed = Vec::new();
            for r in q.retry_due(quarantine::now())? {
                match r {
                    Ok(item) => kept.push(item.id),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            let waiting = q.pending()?.len();
            let purged = q.expire(quarantine::now())?;
            if j.json {
                println!(
                    "{}",
                    json!({ "purged": purged, "retried": kept, "retry_failed": failed, "waiting": waiting })
                );
            } else {
                println!("purged {} image(s)", purged.len());
                for id in &kept {
                    println!("kept {id} on retry");
                }
                for e in &failed {
                    eprintln!("pugmark: quarantine: {e}");
                }
                if waiting > 0 {
                    println!("{waiting} capture(s) waiting for their storage");
                }
            }
            ExitCode::SUCCESS
        }
        QCommand::Policy(p) => policy(&q, p)?,
        QCommand::Inspect(i) => inspect(&q, &i, args.data.as_deref())?,
        QCommand::Mark(m) => {
            q.mark(&m.vm, "pugmark", &m.reason)?;
            ExitCode::SUCCESS
        }
        QCommand::Hook(_) | QCommand::CheckConfig => ExitCode::SUCCESS,
    };
    if let Some(data) = &args.data {
        let n = ship(&q, data)?;
        super::autohold::link(data, &args.config);
        if n > 0 {
            eprintln!(
                "pugmark: {n} custody record(s) stored in {}",
                data.display()
            );
        }
    }
    Ok(code)
}

/// Backends besides the file backend: the Ceph RBD backend when the config has `[rbd]`
/// (docs/CEPH.md).
fn extra_backends(
    config: &quarantine::policy::Config,
) -> anyhow::Result<Vec<Box<dyn quarantine::Backend>>> {
    Ok(quarantine::ceph::backends(config)?)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn sheet_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".custody.json");
    PathBuf::from(s)
}

fn capture(q: &Quarantine, c: CaptureArgs) -> anyhow::Result<ExitCode> {
    let hook_mode = match q.config().hook_mode {
        HookMode::Copy => CaptureMode::Copy,
        HookMode::Take => CaptureMode::Take,
    };
    let (disks, by, default_mode) = if let Some(a) = &c.libvirt {
        let xml = read_stdin()?;
        let d = quarantine::libvirt::domain_disks(&xml).map_err(|e| {
            record_failure(q, None, "libvirt-hook", &e);
            anyhow::anyhow!(e)
        })?;
        let dom = a.first().cloned().unwrap_or_default();
        if d.name.as_deref().is_some_and(|n| n != dom) {
            let e = format!(
                "the hook was called for domain {dom:?} but its XML names {:?}",
                d.name.as_deref().unwrap_or("")
            );
            record_failure(q, Some(&d.vm_uuid), "libvirt-hook", &e);
            bail!(e);
        }
        (d, "libvirt-hook".to_string(), hook_mode)
    } else if c.opennebula {
        let b64 = read_stdin()?;
        let xml = decode_base64(b64.trim()).ok_or_else(|| {
            record_failure(q, None, "opennebula-hook", "stdin is not base64");
            anyhow::anyhow!("stdin is not base64 (ARGUMENTS_STDIN = \"yes\" with $TEMPLATE)")
        })?;
        let d = quarantine::libvirt::one_vm_disks(&xml, &c.datastores).map_err(|e| {
            record_failure(q, None, "opennebula-hook", &e);
            anyhow::anyhow!(e)
        })?;
        (d, "opennebula-hook".to_string(), CaptureMode::Take)
    } else if let Some(vm) = &c.vm {
        let d = quarantine::libvirt::VmDisks {
            vm_uuid: vm.to_ascii_lowercase(),
            project: c.project.clone(),
            disks: c
                .disk
                .iter()
                .map(|p| (Source::Path { path: p.clone() }, None))
                .collect(),
            ..Default::default()
        };
        (d, operator(), CaptureMode::Take)
    } else {
        bail!(
            "say what to capture: --libvirt (hook), --opennebula (hook) or --vm UUID --disk PATH"
        );
    };
    let mode = match c.mode {
        Some(ModeArg::Take) => CaptureMode::Take,
        Some(ModeArg::Copy) => CaptureMode::Copy,
        None => default_mode,
    };
    // Each disk with its backing chain (files only; RBD clones' parents stay in Ceph).
    let mut images: Vec<(Source, Option<usize>)> = Vec::new();
    let mut refused = Vec::new();
    for (src, format) in &disks.disks {
        let Source::Path { path } = src else {
            images.push((src.clone(), None));
            continue;
        };
        let p = path.to_string_lossy().to_string();
        if std::fs::symlink_metadata(path).is_err() {
            // A missing disk is recorded by the capture itself (refused, with the reason).
            images.push((src.clone(), None));
            continue;
        }
        match quarantine::libvirt::backing_chain(&p, format.as_deref()) {
            Ok(chain) => {
                let top = images.len();
                images.push((src.clone(), None));
                let mut backs = top;
                for m in chain.iter().skip(1) {
                    let s = Source::Path {
                        path: PathBuf::from(&m.filename),
                    };
                    if images.iter().any(|(i, _)| *i == s) {
                        continue;
                    }
                    images.push((s, Some(backs)));
                    backs = images.len() - 1;
                }
            }
            Err(e) => {
                record_failure(q, Some(&disks.vm_uuid), &by, &format!("{p}: {e}"));
                refused.push(format!("{p}: {e}"));
            }
        }
    }
    let spec = CaptureSpec {
        vm_uuid: disks.vm_uuid.clone(),
        project: disks.project.clone().or(c.project.clone()),
        images,
        mode,
        by,
        reason: c.reason.clone(),
        hash: !c.no_hash,
    };
    let results = q.capture(&spec);
    let mut kept = Vec::new();
    for r in results {
        match r {
            Ok(item) => kept.push(item),
            Err(e) => refused.push(e.to_string()),
        }
    }
    if c.json {
        let items: Vec<ItemJson> = kept
            .into_iter()
            .map(|i| item_json(q, i))
            .collect::<anyhow::Result<_>>()?;
        println!(
            "{}",
            serde_json::to_string(&json!({"vm": disks.vm_uuid, "items": items,
                "refused": refused, "skipped": disks.skipped}))?
        );
    } else {
        for i in &kept {
            println!(
                "kept {} ({}, {} bytes, {}) as {}",
                i.source, i.method, i.size, i.policy, i.id
            );
        }
        for r in &refused {
            eprintln!("pugmark: quarantine refused: {r}");
        }
    }
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn record_failure(q: &Quarantine, vm: Option<&str>, by: &str, detail: &str) {
    let mut r = Record::new(quarantine::custody::Step::Failed, q.host());
    r.vm_uuid = vm.map(str::to_string);
    r.by = Some(by.into());
    r.detail = Some(detail.into());
    // The error itself is reported to the caller; a journal failure cannot add to it.
    let _ = q.record(r);
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .take(quarantine::libvirt::MAX_XML as u64 * 2)
        .read_to_string(&mut s)
        .context("reading stdin")?;
    Ok(s)
}

/// Standard base64 (OpenNebula's `$TEMPLATE`), whitespace ignored. Hand-written: ten lines
/// against a new dependency in the binary for one hook.
fn decode_base64(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// `holds --json` → `{"holds": {VM: [HOLD…]}}`, one hold's shape (a contract).
#[derive(Debug, Serialize, Deserialize)]
pub struct HoldJson {
    /// RFC 3339, or null: until released.
    pub until: Option<String>,
    pub reason: String,
    /// `operator NAME`, `auto:check`, `auto:hunt`, `auto:who (operator NAME)`.
    pub by: String,
    pub since: String,
}

/// `list --json` / `show --json` item shape (a contract).
#[derive(Debug, Serialize, Deserialize)]
pub struct ItemJson {
    pub id: String,
    pub vm_uuid: String,
    pub project: Option<String>,
    pub source: String,
    pub backend: String,
    pub locator: String,
    pub method: String,
    pub size: u64,
    pub blake3: Option<String>,
    pub sha256: Option<String>,
    pub captured: String,
    pub policy: String,
    pub keep_until: Option<String>,
    pub held: bool,
    pub backing_of: Option<String>,
    pub by: String,
    pub reason: Option<String>,
}

fn item_json(q: &Quarantine, i: Item) -> anyhow::Result<ItemJson> {
    let held = q.holds()?.get(&i.vm_uuid).is_some_and(|h| {
        h.iter()
            .any(|h| h.until.is_none_or(|u| u > quarantine::now()))
    });
    Ok(ItemJson {
        source: i.source.to_string(),
        blake3: i.digests.as_ref().map(|d| d.blake3.clone()),
        sha256: i.digests.as_ref().map(|d| d.sha256.clone()),
        captured: i.captured.to_string(),
        keep_until: i.keep_until.map(|t| t.to_string()),
        held,
        id: i.id,
        vm_uuid: i.vm_uuid,
        project: i.project,
        backend: i.backend,
        locator: i.locator,
        method: i.method,
        size: i.size,
        policy: i.policy,
        backing_of: i.backing_of,
        by: i.by,
        reason: i.reason,
    })
}

fn custody_line(r: &Record) -> String {
    let step = r.step.map_or("?", |s| s.as_str());
    let mut s = format!("{} {step} by {}", r.time, r.by.as_deref().unwrap_or("-"));
    if let Some(x) = &r.sha256 {
        s.push_str(&format!(" sha256 {x}"));
    }
    if let Some(x) = &r.reason {
        s.push_str(&format!(" ({x})"));
    }
    if let Some(x) = &r.detail {
        s.push_str(&format!(": {x}"));
    }
    s
}

/// The custody sheet written beside an export: the item, the hashes of the exported bytes
/// and whether they match the custody record, every custody record (with its ledger seq when
/// shipped) and the ledger's latest signed checkpoint note.
fn custody_sheet(
    q: &Quarantine,
    item: &Item,
    d: &quarantine::Digests,
    matches: bool,
    data: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    if let Some(data) = data {
        // The export record itself goes into the ledger before the sheet cites it.
        ship(q, data)?;
    }
    let seqs = read_shipped(q.dir())?.seqs;
    let records: Vec<serde_json::Value> = q
        .custody(&item.id)?
        .into_iter()
        .map(|r| {
            let seq = seqs.iter().find(|(n, _)| *n == r.n).map(|(_, s)| *s);
            json!({"ledger_seq": seq, "record": r})
        })
        .collect();
    let checkpoint = match data {
        Some(data) => {
            let dd = DataDir::open(data, false)?;
            ledger::latest_checkpoint(&dd.ledger())?
                .map(|n| String::from_utf8_lossy(&n).into_owned())
        }
        None => None,
    };
    Ok(json!({
        "pugmark_custody_sheet": 1,
        "item": item_json(q, item.clone())?,
        "exported": {"size": d.size, "blake3": d.blake3, "sha256": d.sha256,
                      "matches_custody": matches},
        "custody": records,
        "ledger_checkpoint": checkpoint,
    }))
}

/// `STORE/shipped`: the last journal number stored in the ledger, and each record's seq.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shipped {
    last: u64,
    #[serde(default)]
    seqs: Vec<(u64, u64)>,
}

fn read_shipped(dir: &Path) -> anyhow::Result<Shipped> {
    match std::fs::read(dir.join("shipped")) {
        Ok(b) => Ok(serde_json::from_slice(&b).context("STORE/shipped")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Shipped::default()),
        Err(e) => Err(e).context("reading STORE/shipped"),
    }
}

/// The envelope of one custody record: a syslog line, observer `collector`.
pub fn custody_envelope(r: &Record) -> model::Envelope {
    model::Envelope::Record(model::envelope::RecordEnvelope {
        received: model::Received::now(),
        observer: model::Observer::Collector,
        format: model::Format::Syslog,
        hints: model::DecodeHints::default(),
        origin: model::Origin::File {
            path: "<pugmark quarantine>".into(),
            line: r.n,
        },
        raw: r.syslog_line().into_bytes(),
    })
}

/// Store the journal records not yet in the ledger of `data`; returns how many.
pub fn ship(q: &Quarantine, data: &Path) -> anyhow::Result<usize> {
    let mut shipped = read_shipped(q.dir())?;
    let todo = q.journal().since(shipped.last)?;
    if todo.is_empty() {
        return Ok(0);
    }
    let dd = DataDir::open(data, true)?;
    let mut p = Pipeline::open(&dd)?;
    let receipt = p.append(todo.iter().map(custody_envelope).collect())?;
    p.finish()?;
    record_shipped(q.dir(), &mut shipped, &todo, receipt.first.get())?;
    Ok(todo.len())
}

/// Remember that `todo` went into the ledger from seq `first` on.
pub fn record_shipped_from(dir: &Path, todo: &[Record], first: u64) -> anyhow::Result<()> {
    let mut shipped = read_shipped(dir)?;
    record_shipped(dir, &mut shipped, todo, first)
}

fn record_shipped(
    dir: &Path,
    shipped: &mut Shipped,
    todo: &[Record],
    first: u64,
) -> anyhow::Result<()> {
    for (i, r) in todo.iter().enumerate() {
        shipped.seqs.push((r.n, first + i as u64));
        shipped.last = shipped.last.max(r.n);
    }
    write_atomic(&dir.join("shipped"), &serde_json::to_vec(&shipped)?)?;
    Ok(())
}

/// Journal records not yet shipped from the store at `dir` (for `serve`).
pub fn unshipped(dir: &Path) -> anyhow::Result<Vec<Record>> {
    let last = read_shipped(dir)?.last;
    Ok(quarantine::custody::Journal::new(dir.join("journal.jsonl")).since(last)?)
}

fn policy(q: &Quarantine, p: PolicyCommand) -> anyhow::Result<ExitCode> {
    let scope = |s: &PolicyScopeArgs| match (&s.project, &s.vm) {
        (Some(p), _) => PolicyScope::Project(p.clone()),
        (None, Some(v)) => PolicyScope::Vm(v.clone()),
        (None, None) => PolicyScope::Site,
    };
    let show = |pol: &quarantine::policy::Policies, json: bool| -> anyhow::Result<()> {
        if json {
            println!(
                "{}",
                json!({
                    "site": pol.retention.unwrap_or(quarantine::policy::DEFAULT_RETENTION).to_string(),
                    "projects": pol.projects.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                    "vms": pol.vms.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                })
            );
        } else {
            println!(
                "site {}",
                pol.retention
                    .unwrap_or(quarantine::policy::DEFAULT_RETENTION)
            );
            for (k, v) in &pol.projects {
                println!("project {k} {v}");
            }
            for (k, v) in &pol.vms {
                println!("vm {k} {v}");
            }
        }
        Ok(())
    };
    match p {
        PolicyCommand::Show(j) => show(&q.policies()?, j.json)?,
        PolicyCommand::Set(s) => {
            let r: Retention = s.retention.parse().map_err(anyhow::Error::msg)?;
            let pol = q.set_policy(&scope(&s.scope), Some(r), &operator())?;
            show(&pol, false)?;
        }
        PolicyCommand::Unset(s) => {
            let sc = scope(&s);
            let pol = q.set_policy(&sc, None, &operator())?;
            show(&pol, false)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(q: &Quarantine, i: &IdArgs, data: Option<&Path>) -> anyhow::Result<ExitCode> {
    let item = q.item(&i.id)?;
    let report = quarantine::inspect::inspect(q, &item)?;
    if let Some(data) = data
        && !report.logs.is_empty()
    {
        let n = ingest_image_logs(&item, &report, data)?;
        eprintln!(
            "pugmark: {n} line(s) of the image's own logs stored as observer image in {}",
            data.display()
        );
    }
    if i.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let mut out = std::io::stdout().lock();
        for p in &report.partitions {
            crate::cli::text_line(
                &mut out,
                &format!(
                    "partition {} {} start {} size {} {}",
                    p.number,
                    p.table,
                    p.start,
                    p.size,
                    p.filesystem.as_deref().unwrap_or("-")
                ),
            )?;
        }
        for l in &report.logs {
            crate::cli::text_line(
                &mut out,
                &format!("log {} ({} bytes, {} lines)", l.path, l.size, l.lines),
            )?;
        }
        for n in &report.notes {
            crate::cli::text_line(&mut out, &format!("note: {n}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Store the logs found on an image: syslog lines, observer `image`, the file's path on the
/// image in the origin, the VM's UUID in the claimed-UUID hint so attribution knows whose disk
/// it was.
fn ingest_image_logs(
    item: &Item,
    report: &quarantine::inspect::Report,
    data: &Path,
) -> anyhow::Result<usize> {
    let dd = DataDir::open(data, true)?;
    let mut envs = Vec::new();
    for l in &report.logs {
        for (n, line) in l.content.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            envs.push(model::Envelope::Record(model::envelope::RecordEnvelope {
                received: model::Received::now(),
                observer: model::Observer::Image,
                format: model::Format::Syslog,
                hints: model::DecodeHints::default(),
                origin: model::Origin::File {
                    path: format!("{}:{}@{}", item.id, item.vm_uuid, l.path),
                    line: n as u64 + 1,
                },
                raw: line.to_vec(),
            }));
        }
    }
    let n = envs.len();
    let mut p = Pipeline::open(&dd)?;
    p.append(envs)?;
    p.finish()?;
    Ok(n)
}

/// The hook files a site installs (what `pugmark quarantine hook` prints).
pub fn hook_text(kind: HookKind, binary: &Path, config: &Path) -> String {
    match kind {
        HookKind::Libvirt => LIBVIRT_HOOK
            .replace("@PUGMARK@", &binary.display().to_string())
            .replace("@CONFIG@", &config.display().to_string()),
        HookKind::Opennebula => ONE_HOOK.to_string(),
        HookKind::OpennebulaCommand => ONE_COMMAND
            .replace("@PUGMARK@", &binary.display().to_string())
            .replace("@CONFIG@", &config.display().to_string()),
    }
}

const LIBVIRT_HOOK: &str = include_str!("../site/quarantine-libvirt-hook.sh");
const ONE_HOOK: &str = include_str!("../site/quarantine-one-hook.tmpl");
const ONE_COMMAND: &str = include_str!("../site/quarantine-one-command.sh");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_like_coreutils() {
        assert_eq!(decode_base64("PFZNLz4=").as_deref(), Some("<VM/>"));
        assert_eq!(decode_base64("PFZN\nLz4=").as_deref(), Some("<VM/>"));
        assert_eq!(decode_base64("not base64!"), None);
    }
}
