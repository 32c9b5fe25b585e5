//! Holds asked by findings (issue 13: "a VM named by `who`/`check`/`hunt` findings ... is kept
//! until released"). `check` and `hunt` hold the VMs they suspect when the data directory has
//! a quarantine store (`DATA/quarantine.config`, written when custody records are first
//! stored there, or `--quarantine-config`), unless `[auto_hold]` in quarantine.toml turns it
//! off or `--no-hold` is given; `who --hold` holds the VMs it names. A hold is by VM UUID, so
//! it also covers a VM whose disks are not captured yet: the capture at its deletion keeps
//! them with no end. Each hold is a `held` custody record (requester `auto:check`,
//! `auto:hunt`, `auto:who (operator NAME)`; reason: the finding's kind and indicator),
//! stored in the ledger now when the ledger is free, else by `serve`, which owns it. Only an
//! operator releases (`pugmark quarantine release`), and a released finding does not hold
//! the same VM again.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use quarantine::Quarantine;
use quarantine::policy::Config;

/// The file in a data directory naming the quarantine config whose custody it stores.
pub const LINK_FILE: &str = "quarantine.config";

/// Flags shared by `check` and `hunt`.
#[derive(Debug, Args)]
pub struct HoldFlags {
    /// The quarantine whose store holds the VMs this finds (default: the one named by
    /// DATA/quarantine.config, written when its custody was first stored in DATA).
    #[arg(long, env = "PUGMARK_QUARANTINE_CONFIG")]
    pub quarantine_config: Option<PathBuf>,
    /// Hold no VM, whatever quarantine.toml's `[auto_hold]` says.
    #[arg(long)]
    pub no_hold: bool,
}

/// Record in `data` which quarantine config stores its custody there (once; best effort, as
/// the custody itself is what matters).
pub fn link(data: &Path, config: &Path) {
    let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let text = format!("{}\n", config.display());
    let p = data.join(LINK_FILE);
    if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
        let _ = quarantine::store::write_atomic(&p, text.as_bytes());
    }
}

/// The quarantine config for `data`: the flag (or environment), else the link file.
pub fn config_for(data: &Path, flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    let text = std::fs::read_to_string(data.join(LINK_FILE)).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

/// The config and its `[auto_hold]` for `data`, when it has a quarantine store.
pub fn load(data: &Path, flags: &HoldFlags) -> anyhow::Result<Option<(PathBuf, Config)>> {
    if flags.no_hold {
        return Ok(None);
    }
    let Some(path) = config_for(data, flags.quarantine_config.as_deref()) else {
        return Ok(None);
    };
    let config = Config::load(&path).map_err(anyhow::Error::msg)?;
    Ok(Some((path, config)))
}

/// Hold each (VM, reason) in the quarantine of `config`, as `by`; then store the custody in
/// `data`'s ledger when it is free (else `serve` ships it). Returns the VMs newly held; each
/// is reported on stderr.
pub fn hold(
    data: &Path,
    config_path: &Path,
    config: Config,
    holds: &[(String, String)],
    by: &str,
) -> anyhow::Result<Vec<String>> {
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    let extra = quarantine::ceph::backends(&config)?;
    let q = Quarantine::open(config, extra).with_context(|| {
        format!(
            "opening the quarantine store of {} to hold the VMs found (the findings are printed; run as the store's owner, or give --no-hold)",
            config_path.display()
        )
    })?;
    let mut held = Vec::new();
    for (vm, reason) in holds {
        if let Some(items) = q.hold_for_finding(vm, reason, by)? {
            eprintln!(
                "pugmark: quarantine: held VM {vm} ({} image(s) kept now, later captures kept until released): {reason}",
                items.len()
            );
            held.push(vm.clone());
        }
    }
    if !held.is_empty() {
        match crate::cli::quarantine::ship(&q, data) {
            Ok(_) => {}
            // serve holds the ledger: it ships the store's journal itself.
            Err(e) => eprintln!(
                "pugmark: quarantine: custody of the holds stays in the store's journal until serve (or a `--data` run) stores it: {e:#}"
            ),
        }
    }
    Ok(held)
}
