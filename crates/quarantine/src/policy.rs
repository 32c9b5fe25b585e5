//! Configuration and retention policies.
//!
//! One TOML file (`/etc/pugmark/quarantine.toml` by default) says where the store is, which
//! directories disks may be taken from, and the retention policy: a site default, per project
//! (or VO) and per VM. `pugmark quarantine policy set` writes its changes to
//! `STORE/policy.toml` (same `[policy]` shape), which overrides the file entry by entry, so an
//! operator's change survives a package upgrade of the config and is itself recorded.
//!
//! Retention is a duration (`"7d"`, `"36h"`, `"90m"`, `"45s"`) or `"0"`/`"off"` (nothing is
//! kept). The most specific policy wins: VM, then project, then site. Holds (operator or
//! findings) override every policy: a held image is kept until released.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

/// The default site retention when neither file says: 7 days.
pub const DEFAULT_RETENTION: Retention = Retention::For(SignedDuration::from_hours(7 * 24));

/// How long an image is kept after its capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Not kept: a capture under this policy is skipped (and the skip recorded).
    Off,
    /// Kept this long after capture.
    For(SignedDuration),
}

impl FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "0" || t.eq_ignore_ascii_case("off") {
            return Ok(Retention::Off);
        }
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("retention {s:?} has no unit (d, h, m or s; 0 = off)"))?;
        let (n, unit) = t.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("retention {s:?}: expected a number before the unit"))?;
        let secs = match unit {
            "d" => n.checked_mul(86_400),
            "h" => n.checked_mul(3_600),
            "m" => n.checked_mul(60),
            "s" => Some(n),
            _ => return Err(format!("retention {s:?}: unit must be d, h, m or s")),
        }
        .filter(|s| *s >= 0 && *s <= 100 * 366 * 86_400)
        .ok_or_else(|| format!("retention {s:?} out of range"))?;
        if secs == 0 {
            return Ok(Retention::Off);
        }
        Ok(Retention::For(SignedDuration::from_secs(secs)))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Off => f.write_str("0"),
            Retention::For(d) => {
                let s = d.as_secs();
                if s % 86_400 == 0 {
                    write!(f, "{}d", s / 86_400)
                } else if s % 3_600 == 0 {
                    write!(f, "{}h", s / 3_600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(i64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::N(0) => Ok(Retention::Off),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "retention {n}: give a unit, e.g. \"{n}d\" (0 = off)"
            ))),
        }
    }
}

/// The `[policy]` table: site default, per project / VO, per VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// Site default (`7d` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Per project id or name, or VO.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projects: BTreeMap<String, Retention>,
    /// Per VM UUID (lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vms: BTreeMap<String, Retention>,
}

/// Which policy applied, as custody records name it (`site 7d`, `project atlas 30d`,
/// `vm 0f6c… 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The retention.
    pub retention: Retention,
    /// Its name: `site`, `project P`, `vm UUID`.
    pub scope: String,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.scope, self.retention)
    }
}

impl Policies {
    /// `over`'s entries replace ours, entry by entry.
    pub fn overlaid(&self, over: &Policies) -> Policies {
        let mut p = self.clone();
        if over.retention.is_some() {
            p.retention = over.retention;
        }
        p.projects
            .extend(over.projects.iter().map(|(k, v)| (k.clone(), *v)));
        p.vms.extend(over.vms.iter().map(|(k, v)| (k.clone(), *v)));
        p
    }

    /// The policy for a VM (most specific first).
    pub fn resolve(&self, vm_uuid: &str, project: Option<&str>) -> Applied {
        let vm = vm_uuid.to_ascii_lowercase();
        if let Some(r) = self.vms.get(&vm) {
            return Applied {
                retention: *r,
                scope: format!("vm {vm}"),
            };
        }
        if let Some(p) = project
            && let Some(r) = self.projects.get(p)
        {
            return Applied {
                retention: *r,
                scope: format!("project {p}"),
            };
        }
        Applied {
            retention: self.retention.unwrap_or(DEFAULT_RETENTION),
            scope: "site".into(),
        }
    }
}

/// What the libvirt hook does with a released domain's disks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    /// Keep a point-in-time copy (reflink, else a hashed copy) and leave the disk for libvirt:
    /// right where `release` also happens at a plain shutdown (persistent domains).
    #[default]
    Copy,
    /// Move the disk into the quarantine (rename on the same file system, O(1)): right where
    /// `release` means the VM is gone (transient domains, OpenNebula, Vac).
    Take,
}

/// `quarantine.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version, 1.
    pub version: u32,
    /// The quarantine store (made 0700; images 0600 inside). Default
    /// `/var/lib/pugmark/quarantine`.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// Directories disks may be captured from (a disk or backing file elsewhere is refused).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// What the libvirt hook does at `release` (default `copy`).
    #[serde(default)]
    pub hook_mode: HookMode,
    /// Bytes that must stay free on the store's volume after a copy (default 1 GiB).
    #[serde(default = "default_reserve")]
    pub reserve_bytes: u64,
    /// Hostname written in custody records (default: the machine's hostname).
    #[serde(default)]
    pub host: Option<String>,
    /// Send each custody record to the local syslog (`/dev/log`, program
    /// `pugmark-quarantine`), which the site kit's rsyslog forwards to the collector: how a
    /// hypervisor's custody reaches the ledger, observed as that hypervisor.
    #[serde(default)]
    pub syslog: bool,
    /// The local syslog socket `syslog = true` writes to (default `/dev/log`).
    #[serde(default = "default_syslog_socket")]
    pub syslog_socket: PathBuf,
    /// Retention policies.
    #[serde(default)]
    pub policy: Policies,
    /// The Ceph RBD backend (`[rbd]`, docs/CEPH.md); absent: no RBD backend.
    #[serde(default)]
    pub rbd: Option<crate::ceph::CephConfig>,
    /// `[auto_hold]`: which findings hold the VMs they name (default: `check` and `hunt`).
    #[serde(default)]
    pub auto_hold: AutoHold,
    /// `[retry]`: captures that failed because their storage did not answer.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// `[retry]`: a capture whose storage does not answer (a Ceph cluster that is down) is
/// recorded as failed and tried again after `first_secs`, doubling up to `max_secs`, at most
/// `attempts` times (defaults 30 s, 1 h, 48: about two days), by serve's quarantine timer or
/// `pugmark quarantine expire`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The first wait, seconds (default 30).
    #[serde(default = "default_first")]
    pub first_secs: u64,
    /// The longest wait, seconds (default 3600).
    #[serde(default = "default_max")]
    pub max_secs: u64,
    /// Retries before giving up (recorded; default 48).
    #[serde(default = "default_retries")]
    pub attempts: u32,
}

fn default_first() -> u64 {
    30
}
fn default_max() -> u64 {
    3600
}
fn default_retries() -> u32 {
    48
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_secs: default_first(),
            max_secs: default_max(),
            attempts: default_retries(),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1, 2, …): `first_secs` doubled `n - 1` times, at most
    /// `max_secs`.
    pub fn backoff(&self, n: u32) -> SignedDuration {
        let secs = self
            .first_secs
            .saturating_mul(1u64 << n.saturating_sub(1).min(32))
            .min(self.max_secs.max(self.first_secs));
        SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// `[auto_hold]`: VMs named by findings are held (kept until an operator releases them),
/// before or after their disks are captured. A hold made before the VM is deleted is honoured
/// by the later capture (the image is kept with no end). `who --hold` always holds: the
/// operator asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoHold {
    /// `pugmark check`: hold the VM a finding of one of `check_kinds` suspects (default true).
    #[serde(default = "yes")]
    pub check: bool,
    /// The `check` finding kinds that hold (default: the kinds that name a suspect VM:
    /// `spoofed_source`, `forged_hostname`, `uuid_mismatch`, `silent_vm`).
    #[serde(default = "default_check_kinds")]
    pub check_kinds: Vec<String>,
    /// `pugmark hunt`: hold every VM an indicator's hit matched (default true).
    #[serde(default = "yes")]
    pub hunt: bool,
}

fn yes() -> bool {
    true
}

/// The `check` finding kinds that hold by default: those naming the VM that did it.
pub const DEFAULT_CHECK_KINDS: [&str; 4] = [
    "spoofed_source",
    "forged_hostname",
    "uuid_mismatch",
    "silent_vm",
];

fn default_check_kinds() -> Vec<String> {
    DEFAULT_CHECK_KINDS.iter().map(|s| s.to_string()).collect()
}

impl Default for AutoHold {
    fn default() -> Self {
        AutoHold {
            check: true,
            check_kinds: default_check_kinds(),
            hunt: true,
        }
    }
}

fn default_syslog_socket() -> PathBuf {
    PathBuf::from("/dev/log")
}

fn default_store() -> PathBuf {
    PathBuf::from("/var/lib/pugmark/quarantine")
}

fn default_reserve() -> u64 {
    1 << 30
}

impl Config {
    /// Parse and check a config file's text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.policy.vms = std::mem::take(&mut c.policy.vms)
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if c.version != 1 {
            return Err(format!("version {} not supported (expected 1)", c.version));
        }
        if !c.store.is_absolute() {
            return Err(format!("store {} must be absolute", c.store.display()));
        }
        for r in &c.roots {
            if !r.is_absolute() {
                return Err(format!("root {} must be absolute", r.display()));
            }
        }
        Ok(c)
    }

    /// Read a config file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_and_prints_back() {
        for (text, back) in [("7d", "7d"), ("36h", "36h"), ("90m", "90m"), ("45s", "45s")] {
            let r: Retention = text.parse().unwrap_or(Retention::Off);
            assert_eq!(r.to_string(), back);
        }
        assert_eq!("0".parse::<Retention>(), Ok(Retention::Off));
        assert_eq!("off".parse::<Retention>(), Ok(Retention::Off));
        assert_eq!("0d".parse::<Retention>(), Ok(Retention::Off));
        assert!("7".parse::<Retention>().is_err());
        assert!("7w".parse::<Retention>().is_err());
        assert!("-1d".parse::<Retention>().is_err());
        assert!("99999999999d".parse::<Retention>().is_err());
    }

    #[test]
    fn most_specific_policy_wins() -> Result<(), String> {
        let c = Config::parse(
            r#"
version = 1
roots = ["/var/lib/libvirt/images"]
[policy]
retention = "14d"
projects = { atlas = "30d" }
vms = { "0F6C0000-0000-0000-0000-000000000001" = "0" }
"#,
        )?;
        let p = c.policy.clone();
        assert_eq!(
            p.resolve("0f6c0000-0000-0000-0000-000000000001", None)
                .to_string(),
            "vm 0f6c0000-0000-0000-0000-000000000001 0"
        );
        assert_eq!(p.resolve("x", None).to_string(), "site 14d");
        assert_eq!(
            p.resolve("x", Some("atlas")).to_string(),
            "project atlas 30d"
        );
        let over = Policies {
            vms: [("0f6c".to_string(), Retention::Off)].into(),
            ..Policies::default()
        };
        let p = p.overlaid(&over);
        assert_eq!(p.resolve("0F6C", Some("atlas")).to_string(), "vm 0f6c 0");
        assert_eq!(
            Policies::default().resolve("x", None).to_string(),
            "site 7d"
        );
        assert!(Config::parse("version = 2").is_err());
        let r = RetryPolicy {
            first_secs: 30,
            max_secs: 3600,
            attempts: 48,
        };
        let waits: Vec<i64> = (1..=9).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(r.backoff(200).as_secs(), 3600);
        assert!(Config::parse("version = 1\nbogus = 1").is_err());
        Ok(())
    }
}
