//! `pugmark witness serve --config FILE`: the witness's TOML configuration.
//!
//! ```toml
//! version = 1
//! listen = "0.0.0.0:7380"
//! data = "/var/lib/pugmark-witness"
//!
//! [[logs]]
//! origin = "collector.site-a.example/pugmark"
//! vkey = "collector.site-a.example/pugmark+1a2b3c4d+AQ…"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::cosig::parse_log_vkey;
use crate::witness::LogKeys;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    pub version: u32,
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub logs: Vec<LogEntry>,
}

/// One `[[logs]]` entry: a log the witness follows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The checkpoint origin line; defaults to the key's name.
    pub origin: Option<String>,
    pub vkey: String,
}

impl WitnessConfig {
    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: WitnessConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.version != 1 {
            return Err(format!("version = {} is not supported (want 1)", c.version));
        }
        c.log_keys()?;
        Ok(c)
    }

    /// The logs, keys read.
    pub fn log_keys(&self) -> Result<Vec<LogKeys>, String> {
        self.logs
            .iter()
            .map(|l| log_keys(l.origin.as_deref(), &l.vkey))
            .collect()
    }
}

/// One log from `--log ORIGIN=VKEY` or `--log VKEY` (origin = the key's name).
pub fn parse_log_flag(s: &str) -> Result<LogKeys, String> {
    // A vkey holds '+' and base64 (which may end in '='), never "=" before its first '+'.
    match s.split_once('=') {
        Some((origin, vkey)) if !origin.contains('+') => log_keys(Some(origin), vkey),
        _ => log_keys(None, s),
    }
}

fn log_keys(origin: Option<&str>, vkey: &str) -> Result<LogKeys, String> {
    let v = parse_log_vkey(vkey).map_err(|e| format!("log key {vkey:?}: {e}"))?;
    let origin = origin
        .map(str::to_owned)
        .unwrap_or_else(|| signed_note::Verifier::name(&v).to_owned());
    if origin.is_empty() {
        return Err("empty log origin".into());
    }
    Ok(LogKeys {
        origin,
        vkeys: vec![v],
    })
}
