//! `pugmark serve` configuration: the TOML file as written (`RawConfig`, unknown keys refused),
//! then validated into [`Config`] whose listener addresses are parsed and whose TLS material
//! is loaded, so a bad config fails at start with one clear message instead of at the first
//! connection.
//!
//! ```toml
//! version = 1
//! [listeners]
//! syslog_udp = "127.0.0.1:5514"     # "none" turns a listener off
//! syslog_tcp = "127.0.0.1:5514"
//! syslog_tls = "none"
//! relp = "127.0.0.1:2514"
//! http = "127.0.0.1:9514"             # POST /api/v1/events (needs a token), and /metrics
//! metrics = "127.0.0.1:9515"          # optional: /metrics on its own address (then not on http)
//! netflow = "127.0.0.1:2055,127.0.0.1:4739"   # or a list; NetFlow v5/v9 and IPFIX over UDP
//! [tls]
//! cert = "server.pem"               # PEM chain, needed when syslog_tls is on
//! key = "server.key"
//! client_ca = "ca.pem"              # optional: require client certificates signed by it
//! [tcp]
//! idle_timeout_secs = 60            # a stalled half frame is kept after this long
//! [limits]                          # see crate::limits
//! max_connections = 20000           # per TCP listener
//! [amqp]
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # absent: no AMQP consumer
//! exchanges = ["nova", "neutron"]
//! routing_keys = ["versioned_notifications.info", "notifications.info"]
//! queue = "pugmark.notifications"
//! [senders]                         # who each sender is taken to be (crate::senders)
//! unmatched = "vm"                  # or "refuse"
//! [[senders.map]]
//! name = "hv01"
//! observer = "hypervisor"           # hypervisor, vm, cloud, network, vo, collector
//! subject = "CN=hv01.example.org"   # or san, cidr, listener, token_sha256
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::senders::{RawSenders, SenderMap};

/// Default loopback ports for the quick start. 5514 (UDP and TCP) and 2514 (RELP) are the
/// customary unprivileged stand-ins for 514 and rsyslog's RELP examples; 6514 is RFC 5425's
/// port for syslog over TLS; 9514 is ours, for HTTP (`/metrics`, `/api/v1/events`).
pub const DEFAULT_SYSLOG_UDP: &str = "127.0.0.1:5514";
pub const DEFAULT_SYSLOG_TCP: &str = "127.0.0.1:5514";
pub const DEFAULT_SYSLOG_TLS: &str = "127.0.0.1:6514";
pub const DEFAULT_RELP: &str = "127.0.0.1:2514";
pub const DEFAULT_HTTP: &str = "127.0.0.1:9514";
/// NetFlow v5/v9 and IPFIX over UDP: 2055 is the customary NetFlow port (Cisco's examples,
/// softflowd's docs), 4739 is IANA's IPFIX port; one listener takes every version on both.
pub const DEFAULT_NETFLOW: &str = "127.0.0.1:2055,127.0.0.1:4739";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version; only 1 exists.
    pub version: Option<u32>,
    #[serde(default)]
    pub listeners: RawListeners,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub tcp: RawTcp,
    pub amqp: Option<RawAmqp>,
    /// Connection limits and HTTP timeouts (`crate::limits`).
    #[serde(default)]
    pub limits: crate::limits::RawLimits,
    /// The sender map: observers by listener, CIDR, certificate, token.
    pub senders: Option<RawSenders>,
    /// Directories whose new files are ingested once, by content (`[spool] dirs`).
    pub spool: Option<RawSpool>,
    /// Witnesses every new checkpoint is pushed to (C2SP tlog-witness), issue 11.
    #[serde(default)]
    pub witnesses: Vec<RawWitness>,
    /// Retention of record payloads (`pugmark retention`, run by serve on a timer).
    pub retention: Option<RawRetention>,
    /// The image quarantine (`pugmark quarantine`): serve stores its custody records, expires
    /// images on a timer and marks VMs nova announces deleted.
    pub quarantine: Option<RawQuarantine>,
    /// The query API (issue 14): who may ask what (`[[api.roles]]`, `[[api.vos]]`).
    pub api: Option<RawApi>,
    /// OIDC issuers whose bearer tokens the query API accepts (`[[auth.oidc]]`, crate
    /// `authn`); their groups map to roles through `[[api.roles]]`, like everyone's.
    pub auth: Option<authn::AuthConfig>,
}

/// `[api]`: the query API on the HTTP listener (and `pugmark ui`).
///
/// ```toml
/// [api]
/// enabled = true                     # GET /api/v1/* on the http listener (default true)
/// [[api.roles]]
/// group = "/pugmark/site"            # a token group (wlcg.groups, eduperson_entitlement)
/// role = "site"                      # site | csirt | vo:NAME
/// [[api.vos]]
/// name = "atlas"
/// projects = ["atlas-1", "4f2c…"]    # Keystone project ids or names, OpenNebula groups
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub roles: Vec<RawRoleMap>,
    #[serde(default)]
    pub vos: Vec<RawVo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleMap {
    pub group: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVo {
    pub name: String,
    #[serde(default)]
    pub projects: Vec<String>,
}

/// A role of the query API: `site` (everything), `csirt` (everything, read-only), `vo:NAME`
/// (only what concerns that VO's VMs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiRole {
    Site,
    Csirt,
    Vo(String),
}

impl std::fmt::Display for ApiRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiRole::Site => f.write_str("site"),
            ApiRole::Csirt => f.write_str("csirt"),
            ApiRole::Vo(n) => write!(f, "vo:{n}"),
        }
    }
}

impl std::str::FromStr for ApiRole {
    type Err = String;
    fn from_str(s: &str) -> Result<ApiRole, String> {
        match s {
            "site" => Ok(ApiRole::Site),
            "csirt" => Ok(ApiRole::Csirt),
            _ => match s.strip_prefix("vo:") {
                Some(n)
                    if !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    Ok(ApiRole::Vo(n.to_string()))
                }
                _ => Err(format!(
                    "role {s:?} is not site, csirt or vo:NAME (NAME of letters, digits, - _ .)"
                )),
            },
        }
    }
}

/// `[api]`, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub enabled: bool,
    /// The OIDC issuers (`[[auth.oidc]]`) and the UI's session key file (`[auth]`).
    pub oidc: Vec<authn::OidcConfig>,
    pub session_key_file: Option<PathBuf>,
    /// Token group → role, in the file's order.
    pub roles: Vec<(String, ApiRole)>,
    /// VO name → the projects (ids or names) whose VMs are that VO's.
    pub vos: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            enabled: true,
            oidc: Vec::new(),
            session_key_file: None,
            roles: Vec::new(),
            vos: Default::default(),
        }
    }
}

impl ApiConfig {
    pub fn from_raw(raw: &RawApi) -> anyhow::Result<ApiConfig> {
        let mut vos = std::collections::BTreeMap::new();
        for v in &raw.vos {
            let role: ApiRole = format!("vo:{}", v.name)
                .parse()
                .map_err(|e: String| anyhow::anyhow!("[[api.vos]] {:?}: {e}", v.name))?;
            if vos.insert(v.name.clone(), v.projects.clone()).is_some() {
                bail!("[[api.vos]] {:?} is listed twice", v.name);
            }
            if v.projects.is_empty() {
                bail!("[[api.vos]] {role}: projects is empty (no VM would be its)");
            }
        }
        let mut roles = Vec::new();
        for r in &raw.roles {
            let role: ApiRole = r
                .role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("[[api.roles]] group {:?}: {e}", r.group))?;
            if let ApiRole::Vo(n) = &role
                && !vos.contains_key(n)
            {
                bail!(
                    "[[api.roles]] group {:?}: role {role} names a VO with no [[api.vos]] entry",
                    r.group
                );
            }
            if r.group.is_empty() {
                bail!("[[api.roles]]: group must not be empty");
            }
            roles.push((r.group.clone(), role));
        }
        Ok(ApiConfig {
            enabled: raw.enabled.unwrap_or(true),
            oidc: Vec::new(),
            session_key_file: None,
            roles,
            vos,
        })
    }
}

/// `[quarantine]`: `config = "/etc/pugmark/quarantine.toml"`, `expire_every_secs = 60`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuarantine {
    /// The quarantine's own config file.
    pub config: PathBuf,
    /// How often expired images are purged (default 60 s): an image is gone within this long
    /// after its retention ends.
    pub expire_every_secs: Option<u64>,
}

/// `[spool]`: `dirs = [{ path = "/var/spool/pugmark/cloud", observer = "cloud" }, …]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    #[serde(default)]
    pub dirs: Vec<RawSpoolDir>,
    /// How often the directories are looked at (default 10 s).
    pub interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpoolDir {
    pub path: PathBuf,
    /// The observer every file of this directory is stored under: the directory's
    /// permissions (only that feed may write there) are the proof.
    pub observer: String,
}

/// One spool directory, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolDir {
    pub path: PathBuf,
    pub observer: model::Observer,
}

/// One `[[witnesses]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    /// A name for status and metrics (`pugmark_witness_cosigned_size{witness="…"}`).
    pub name: String,
    /// The witness's URL prefix (`POST <url>/add-checkpoint`).
    pub url: String,
    /// The witness's verifier key (`pugmark witness init` prints it).
    pub vkey: String,
}

/// A witness, checked.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    pub name: String,
    pub url: String,
    pub vkey: String,
}

/// `[retention]`: `keep = "180d"` (units s m h d w).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub keep: String,
}

/// Seconds in a retention period such as `180d` (units s, m, h, d, w).
pub fn retention_seconds(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow::anyhow!("retention {s:?}: needs a unit (180d, 26w, 12h)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("retention {s:?}: not a number"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => anyhow::bail!("retention {s:?}: unit must be one of s m h d w"),
    };
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| anyhow::anyhow!("retention {s:?} is out of range"))
}

/// Each listener: `ADDR:PORT`, or `none`. Absent: the loopback default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    pub syslog_udp: Option<String>,
    pub syslog_tcp: Option<String>,
    /// Default off unless `[tls]` is configured (then 127.0.0.1:6514).
    pub syslog_tls: Option<String>,
    pub relp: Option<String>,
    pub http: Option<String>,
    /// NetFlow / IPFIX UDP sockets: `"ADDR:PORT,ADDR:PORT"`, a list of them, or `none`.
    pub netflow: Option<AddrList>,
    /// `/metrics` on an address of its own (then the HTTP listener serves ingestion only).
    /// Default none: `/metrics` is served on the HTTP listener.
    pub metrics: Option<String>,
}

/// One address string (commas allowed) or a TOML list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AddrList {
    One(String),
    Many(Vec<String>),
}

impl AddrList {
    fn joined(&self) -> String {
        match self {
            AddrList::One(s) => s.clone(),
            AddrList::Many(v) if v.is_empty() => "none".into(),
            AddrList::Many(v) => v.join(","),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle, PEM. When set, every TLS sender must present a certificate it signed
    /// (mutual TLS); the certificate subject is recorded as the sender's identity.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    /// Seconds a connection may stay silent with a half frame buffered before it is closed
    /// and the half frame stored as incomplete. Default 60.
    pub idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmqp {
    pub url: String,
    /// Topic exchanges to bind to. Default `["nova", "neutron"]` (Neutron publishes its
    /// port, floating IP and router notifications on its own exchange).
    pub exchanges: Option<Vec<String>>,
    /// Routing keys. Default `versioned_notifications.info`, `notifications.info`.
    pub routing_keys: Option<Vec<String>>,
    /// pugmark's own durable queue. Default `pugmark.notifications`.
    pub queue: Option<String>,
}

/// Command-line overrides (each `Some` replaces the config value).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub syslog_udp: Option<String>,
    pub syslog_tcp: Option<String>,
    pub syslog_tls: Option<String>,
    pub relp: Option<String>,
    pub http: Option<String>,
    /// AMQP broker URL (or `none`), replacing `[amqp] url`.
    pub amqp: Option<String>,
    /// NetFlow / IPFIX sockets, `ADDR:PORT[,ADDR:PORT…]` or `none`.
    pub netflow: Option<String>,
    /// `/metrics` on its own address, or `none`.
    pub metrics: Option<String>,
    /// `vm` or `refuse`, replacing `[senders] unmatched`.
    pub unmatched: Option<String>,
}

/// TLS settings, validated: files read and parsed.
#[derive(Clone)]
pub struct TlsConfig {
    pub server: std::sync::Arc<rustls::ServerConfig>,
    pub mutual: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.mutual)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub url: String,
    pub exchanges: Vec<String>,
    pub routing_keys: Vec<String>,
    pub queue: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_tls: Option<SocketAddr>,
    pub relp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
    pub idle_timeout: Duration,
    pub amqp: Option<AmqpConfig>,
    /// NetFlow / IPFIX UDP sockets (empty: no NetFlow listener).
    pub netflow: Vec<SocketAddr>,
    pub limits: crate::limits::Limits,
    /// `/metrics` on its own address (None: on the HTTP listener).
    pub metrics: Option<SocketAddr>,
    /// `[retention] keep`: serve removes payloads older than this (checked hourly).
    pub retention_keep: Option<String>,
    /// `[quarantine]`: the quarantine config file and the expiry period.
    pub quarantine: Option<(PathBuf, Duration)>,
    /// Who each sender is taken to be.
    pub senders: std::sync::Arc<SenderMap>,
    /// Spool directories (`[spool] dirs`); the binary watches them.
    pub spool: Vec<SpoolDir>,
    /// How often the spool directories are looked at.
    pub spool_interval: Duration,
    /// Witnesses to push checkpoints to.
    pub witnesses: Vec<WitnessConfig>,
    /// The query API: on or off, roles and VOs.
    pub api: ApiConfig,
}

/// `ADDR:PORT[,ADDR:PORT…]` or `none` (an empty list).
fn addrs(what: &str, value: &str) -> anyhow::Result<Vec<SocketAddr>> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let a = v
            .parse::<SocketAddr>()
            .with_context(|| format!("{what}: {v:?} is not ADDR:PORT (or none)"))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        bail!("{what}: no address given (write none to turn it off)");
    }
    Ok(out)
}

fn addr(
    what: &str,
    value: Option<&str>,
    default: Option<&str>,
) -> anyhow::Result<Option<SocketAddr>> {
    match value.or(default) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("none") => Ok(None),
        Some(v) => v
            .parse::<SocketAddr>()
            .map(Some)
            .with_context(|| format!("{what}: {v:?} is not ADDR:PORT (or none)")),
    }
}

impl Config {
    /// Read the config file (if any), apply overrides, validate.
    pub fn load(path: Option<&Path>, over: &Overrides) -> anyhow::Result<Config> {
        let raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                let raw: RawConfig = toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", p.display()))?;
                raw
            }
            None => RawConfig::default(),
        };
        let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
        Config::validate(raw, over, base)
    }

    pub fn validate(raw: RawConfig, over: &Overrides, base: &Path) -> anyhow::Result<Config> {
        if let Some(v) = raw.version
            && v != 1
        {
            bail!("config version {v} is not supported by this pugmark (expected 1)");
        }
        let l = &raw.listeners;
        let pick = |o: &Option<String>, c: &Option<String>| o.clone().or_else(|| c.clone());
        let tls_default = raw.tls.as_ref().map(|_| DEFAULT_SYSLOG_TLS);
        let syslog_tls = addr(
            "syslog_tls",
            pick(&over.syslog_tls, &l.syslog_tls).as_deref(),
            tls_default,
        )?;
        let tls = match (&raw.tls, syslog_tls) {
            (Some(t), _) => Some(load_tls(t, base)?),
            (None, Some(_)) => bail!("syslog_tls is on but [tls] cert and key are not configured"),
            (None, None) => None,
        };
        let raw_amqp = match over.amqp.as_deref() {
            Some(v) if v.eq_ignore_ascii_case("none") => None,
            Some(url) => Some(match raw.amqp {
                Some(a) => RawAmqp {
                    url: url.to_string(),
                    ..a
                },
                None => RawAmqp {
                    url: url.to_string(),
                    exchanges: None,
                    routing_keys: None,
                    queue: None,
                },
            }),
            None => raw.amqp,
        };
        let amqp = raw_amqp.map(|a| AmqpConfig {
            url: a.url,
            exchanges: a
                .exchanges
                .unwrap_or_else(|| vec!["nova".into(), "neutron".into()]),
            routing_keys: a.routing_keys.unwrap_or_else(|| {
                vec![
                    "versioned_notifications.info".into(),
                    "notifications.info".into(),
                ]
            }),
            queue: a.queue.unwrap_or_else(|| "pugmark.notifications".into()),
        });
        let senders = SenderMap::from_raw(
            &raw.senders.clone().unwrap_or_default(),
            over.unmatched.as_deref(),
        )?;
        let mut spool = Vec::new();
        let raw_spool = raw.spool.clone().unwrap_or_default();
        for d in &raw_spool.dirs {
            let observer: model::Observer = d.observer.parse().map_err(|_| {
                anyhow::anyhow!(
                    "[spool] {}: observer {:?} is not one of hypervisor, cloud, network, vo, vm, collector",
                    d.path.display(),
                    d.observer
                )
            })?;
            let path = if d.path.is_absolute() {
                d.path.clone()
            } else {
                base.join(&d.path)
            };
            if spool.iter().any(|s: &SpoolDir| s.path == path) {
                bail!("[spool] {} is listed twice", path.display());
            }
            spool.push(SpoolDir { path, observer });
        }
        let mut witnesses: Vec<WitnessConfig> = Vec::new();
        for w in &raw.witnesses {
            witness::parse_witness_vkey(&w.vkey)
                .with_context(|| format!("[[witnesses]] {:?}: vkey", w.name))?;
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                bail!(
                    "[[witnesses]] {:?}: url {:?} must start with http:// or https://",
                    w.name,
                    w.url
                );
            }
            if w.name.is_empty() || witnesses.iter().any(|o| o.name == w.name) {
                bail!(
                    "[[witnesses]]: names must be non-empty and distinct ({:?})",
                    w.name
                );
            }
            witnesses.push(WitnessConfig {
                name: w.name.clone(),
                url: w.url.clone(),
                vkey: w.vkey.clone(),
            });
        }
        if let Some(r) = &raw.retention {
            retention_seconds(&r.keep)?;
        }
        let mut api = ApiConfig::from_raw(&raw.api.clone().unwrap_or_default())?;
        if let Some(auth) = &raw.auth {
            // One mapping from groups to roles for every way of proving who one is.
            if !auth.roles.0.is_empty() {
                bail!(
                    "[auth.roles] is not read by serve: map token groups to roles in [[api.roles]] \
                     (group = \"...\", role = \"site\" | \"csirt\" | \"vo:NAME\")"
                );
            }
            for o in &auth.oidc {
                o.validate()
                    .map_err(|e| anyhow::anyhow!("[[auth.oidc]] {}: {e}", o.issuer))?;
            }
            api.oidc = auth.oidc.clone();
            api.session_key_file = auth.session_key_file.clone();
        }
        Ok(Config {
            api,
            spool,
            spool_interval: Duration::from_secs(raw_spool.interval_secs.unwrap_or(10).max(1)),
            witnesses,
            retention_keep: raw.retention.as_ref().map(|r| r.keep.clone()),
            quarantine: raw.quarantine.as_ref().map(|q| {
                (
                    q.config.clone(),
                    Duration::from_secs(q.expire_every_secs.unwrap_or(60).max(1)),
                )
            }),
            metrics: addr("metrics", pick(&over.metrics, &l.metrics).as_deref(), None)?,
            senders: std::sync::Arc::new(senders),
            syslog_udp: addr(
                "syslog_udp",
                pick(&over.syslog_udp, &l.syslog_udp).as_deref(),
                Some(DEFAULT_SYSLOG_UDP),
            )?,
            syslog_tcp: addr(
                "syslog_tcp",
                pick(&over.syslog_tcp, &l.syslog_tcp).as_deref(),
                Some(DEFAULT_SYSLOG_TCP),
            )?,
            syslog_tls,
            relp: addr(
                "relp",
                pick(&over.relp, &l.relp).as_deref(),
                Some(DEFAULT_RELP),
            )?,
            http: addr(
                "http",
                pick(&over.http, &l.http).as_deref(),
                Some(DEFAULT_HTTP),
            )?,
            tls,
            idle_timeout: Duration::from_secs(raw.tcp.idle_timeout_secs.unwrap_or(60).max(1)),
            amqp,
            netflow: addrs(
                "netflow",
                &over
                    .netflow
                    .clone()
                    .or_else(|| l.netflow.as_ref().map(AddrList::joined))
                    .unwrap_or_else(|| DEFAULT_NETFLOW.to_string()),
            )?,
            limits: crate::limits::Limits::from_raw(&raw.limits),
        })
    }
}

impl Config {
    /// What this configuration does, for `pugmark serve --check-config`: each listener, and
    /// the sender map in matching order.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let a = |x: Option<SocketAddr>| x.map_or("off".to_string(), |a| a.to_string());
        let _ = writeln!(out, "listeners:");
        let _ = writeln!(out, "  syslog-udp  {}", a(self.syslog_udp));
        let _ = writeln!(out, "  syslog-tcp  {}", a(self.syslog_tcp));
        let _ = writeln!(
            out,
            "  syslog-tls  {}{}",
            a(self.syslog_tls),
            match &self.tls {
                Some(t) if t.mutual => " (client certificates required)",
                _ => "",
            }
        );
        let _ = writeln!(out, "  relp        {}", a(self.relp));
        let _ = writeln!(
            out,
            "  http        {}{}",
            a(self.http),
            if self.senders.http_open() {
                " (POST /api/v1/events with a bearer token)"
            } else {
                " (POST /api/v1/events off: no token configured)"
            }
        );
        let _ = writeln!(
            out,
            "  metrics     {}",
            self.metrics
                .map_or("on the http listener".to_string(), |m| m.to_string())
        );
        let nf: Vec<String> = self.netflow.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "  netflow     {}",
            if nf.is_empty() {
                "off".into()
            } else {
                nf.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "  amqp        {}",
            self.amqp
                .as_ref()
                .map_or("off".to_string(), |c| crate::sources::amqp::broker(&c.url))
        );
        if !self.spool.is_empty() {
            let _ = writeln!(
                out,
                "spool (every {} s; new files ingested once, by content):",
                self.spool_interval.as_secs()
            );
            for d in &self.spool {
                let _ = writeln!(out, "  {}  as {}", d.path.display(), d.observer);
            }
        }
        if let Some(k) = &self.retention_keep {
            let _ = writeln!(
                out,
                "retention: keep {k} (payloads older are removed, checked hourly)"
            );
        }
        if let Some((c, every)) = &self.quarantine {
            let _ = writeln!(
                out,
                "quarantine: {} (custody stored, expiry every {}s)",
                c.display(),
                every.as_secs()
            );
        }
        if self.api.enabled && self.http.is_some() {
            let _ = writeln!(
                out,
                "query api: on the http listener (/api/v1/openapi.json)"
            );
            for (g, r) in &self.api.roles {
                let _ = writeln!(out, "  group {g:?} -> role {r}");
            }
            for (vo, p) in &self.api.vos {
                let _ = writeln!(out, "  vo {vo}: projects {}", p.join(", "));
            }
        } else {
            let _ = writeln!(out, "query api: off");
        }
        let _ = writeln!(out, "senders, in matching order:");
        for (i, e) in self.senders.entries().iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, e.describe());
        }
        let _ = writeln!(
            out,
            "  unmatched: {}",
            match self.senders.unmatched {
                crate::senders::Unmatched::Vm => "vm (the least trust)",
                crate::senders::Unmatched::Refuse => "refused",
            }
        );
        if self.witnesses.is_empty() {
            let _ = writeln!(
                out,
                "witnesses: none (truncation and rewriting by root on this host cannot be detected)"
            );
        } else {
            let _ = writeln!(out, "witnesses (every new checkpoint pushed each second):");
            for w in &self.witnesses {
                let _ = writeln!(out, "  {} {} {}", w.name, w.url, w.vkey);
            }
        }
        out
    }
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn load_tls(t: &RawTls, base: &Path) -> anyhow::Result<TlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let cert_path = resolve(&t.cert);
    let key_path = resolve(&t.key);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&cert_path)?)
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing certificates in {}", cert_path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&key_path)?)
        .with_context(|| format!("parsing private key in {}", key_path.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let (builder, mutual) = match &t.client_ca {
        Some(ca) => {
            let ca_path = resolve(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read_pem(&ca_path)?) {
                let c = c.with_context(|| format!("parsing CA in {}", ca_path.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("adding CA from {}", ca_path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .context("building the client certificate verifier")?;
            (builder.with_client_cert_verifier(verifier), true)
        }
        None => (builder.with_no_client_auth(), false),
    };
    let server = builder
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    Ok(TlsConfig {
        server: std::sync::Arc::new(server),
        mutual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_roles_are_checked_against_the_vos() {
        let parse = |t: &str| -> anyhow::Result<Config> {
            let raw: RawConfig = toml::from_str(t)?;
            Config::validate(raw, &Overrides::default(), Path::new("."))
        };
        let c = parse(
            "[api]\n[[api.roles]]\ngroup = \"/atlas\"\nrole = \"vo:atlas\"\n[[api.vos]]\nname = \"atlas\"\nprojects = [\"p1\"]\n",
        )
        .unwrap();
        assert!(c.api.enabled);
        assert_eq!(
            c.api.roles,
            vec![("/atlas".to_string(), ApiRole::Vo("atlas".into()))]
        );
        // A VO role without its VO, an unknown role, a VO owning nothing: refused.
        assert!(parse("[[api.roles]]\ngroup = \"/x\"\nrole = \"vo:cms\"\n").is_err());
        assert!(parse("[[api.roles]]\ngroup = \"/x\"\nrole = \"admin\"\n").is_err());
        assert!(parse("[[api.vos]]\nname = \"cms\"\nprojects = []\n").is_err());
        assert!(parse("[api]\nenabled = false\n").is_ok_and(|c| !c.api.enabled));
        assert_eq!("csirt".parse::<ApiRole>(), Ok(ApiRole::Csirt));
        assert!("vo:".parse::<ApiRole>().is_err());
        // OIDC issuers reach the API's config; their groups map through [[api.roles]] only.
        let c = parse(
            "[auth]\n[[auth.oidc]]\nissuer = \"https://iam.example.org/\"\naudience = \"https://pugmark.example.org\"\n",
        )
        .unwrap();
        assert_eq!(c.api.oidc.len(), 1);
        let e = parse("[auth.roles]\n\"/atlas\" = \"vo:atlas\"\n").unwrap_err();
        assert!(format!("{e}").contains("[[api.roles]]"), "{e}");
    }

    #[test]
    fn defaults_are_loopback_and_tls_off() {
        let c =
            Config::validate(RawConfig::default(), &Overrides::default(), Path::new(".")).unwrap();
        assert_eq!(c.syslog_tcp, Some("127.0.0.1:5514".parse().unwrap()));
        assert_eq!(c.relp, Some("127.0.0.1:2514".parse().unwrap()));
        assert_eq!(c.http, Some("127.0.0.1:9514".parse().unwrap()));
        assert!(c.syslog_tls.is_none() && c.amqp.is_none());
        assert_eq!(
            c.netflow,
            vec![
                "127.0.0.1:2055".parse().unwrap(),
                "127.0.0.1:4739".parse().unwrap()
            ]
        );
    }

    #[test]
    fn netflow_takes_a_string_a_list_or_none() {
        let raw: RawConfig =
            toml::from_str("[listeners]\nnetflow = [\"0.0.0.0:2055\", \"[::1]:4739\"]\n").unwrap();
        let c = Config::validate(raw, &Overrides::default(), Path::new(".")).unwrap();
        assert_eq!(c.netflow.len(), 2);
        let raw: RawConfig = toml::from_str("[listeners]\nnetflow = \"none\"\n").unwrap();
        let c = Config::validate(raw, &Overrides::default(), Path::new(".")).unwrap();
        assert!(c.netflow.is_empty());
        let over = Overrides {
            netflow: Some("127.0.0.1:9995".into()),
            ..Overrides::default()
        };
        let c = Config::validate(RawConfig::default(), &over, Path::new(".")).unwrap();
        assert_eq!(c.netflow, vec!["127.0.0.1:9995".parse().unwrap()]);
        let over = Overrides {
            netflow: Some("127.0.0.1:1,nonsense".into()),
            ..Overrides::default()
        };
        assert!(Config::validate(RawConfig::default(), &over, Path::new(".")).is_err());
    }

    #[test]
    fn flags_override_and_none_disables() {
        let raw: RawConfig =
            toml::from_str("version = 1\n[listeners]\nrelp = \"127.0.0.1:1\"\n").unwrap();
        let over = Overrides {
            relp: Some("none".into()),
            syslog_udp: Some("127.0.0.1:7".into()),
            ..Overrides::default()
        };
        let c = Config::validate(raw, &over, Path::new(".")).unwrap();
        assert!(c.relp.is_none());
        assert_eq!(c.syslog_udp, Some("127.0.0.1:7".parse().unwrap()));
    }

    #[test]
    fn senders_and_metrics_address_from_file_and_flags() {
        let raw: RawConfig = toml::from_str(
            "version = 1\n[listeners]\nmetrics = \"127.0.0.1:9515\"\n[senders]\nunmatched = \"refuse\"\n[[senders.map]]\nname = \"hv\"\nobserver = \"hypervisor\"\ncidr = \"10.0.0.0/8\"\n",
        )
        .unwrap();
        let c = Config::validate(raw, &Overrides::default(), Path::new(".")).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9515".parse().unwrap()));
        assert_eq!(c.senders.unmatched, crate::senders::Unmatched::Refuse);
        assert_eq!(c.senders.entries()[0].name.as_ref(), "hv");
        assert!(!c.senders.http_open());
        let d = c.describe();
        assert!(d.contains("1. hv → hypervisor (from 10.0.0.0/8)"), "{d}");
        assert!(d.contains("POST /api/v1/events off"), "{d}");
        // Defaults: /metrics on the HTTP listener, unmatched senders are vm.
        let over = Overrides {
            unmatched: Some("vm".into()),
            metrics: Some("none".into()),
            ..Overrides::default()
        };
        let raw: RawConfig = toml::from_str("[senders]\nunmatched = \"refuse\"\n").unwrap();
        let c = Config::validate(raw, &over, Path::new(".")).unwrap();
        assert!(c.metrics.is_none());
        assert_eq!(c.senders.unmatched, crate::senders::Unmatched::Vm);
        assert!(toml::from_str::<RawConfig>("[senders]\nunknown = 1\n").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_refused() {
        assert!(toml::from_str::<RawConfig>("[listeners]\nsyslog = \"x\"\n").is_err());
        let over = Overrides {
            http: Some("localhost".into()),
            ..Overrides::default()
        };
        let e = Config::validate(RawConfig::default(), &over, Path::new(".")).unwrap_err();
        assert!(format!("{e:#}").contains("not ADDR:PORT"), "{e:#}");
        let over = Overrides {
            syslog_tls: Some("127.0.0.1:6514".into()),
            ..Overrides::default()
        };
        assert!(Config::validate(RawConfig::default(), &over, Path::new(".")).is_err());
    }
}
