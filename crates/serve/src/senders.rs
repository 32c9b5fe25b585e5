//! The sender map: who a sender proves to be decides which observer its records are stored
//! under (`RecordEnvelope.observer`, evidence in the ledger). The format of a record only
//! says how to parse it; a hypervisor's kernel log is `hypervisor` because the hypervisor
//! proved who it is at the door, not because it looks like netfilter.
//!
//! Each entry (`[[senders.map]]` in the serve config) names the sender and its observer
//! class, and matches on any of: listener names, source CIDRs, the verified TLS client
//! certificate's subject and SANs (DNS names, URIs), an HTTP bearer token (kept only as its
//! SHA-256, compared in constant time). Every condition an entry gives must hold; a list
//! condition holds when any of its values does.
//!
//! **Matching order** (deterministic, documented in docs/SITES.md):
//! 1. entries with a credential (token, subject or SAN): the first in file order that matches;
//! 2. then entries with a CIDR: the longest matching prefix, ties to the first in file order;
//! 3. then entries that name only listeners: the first in file order;
//! 4. else the sender is unmatched: observer `vm` (the least trust), or refused when
//!    `unmatched = "refuse"`.
//!
//! The built-in entries (`builtin = false` removes them) come after the site's entries, so a
//! site entry always wins: the AMQP consumer is `cloud` (a broker the admin configured and
//! logs into with its credentials), and NetFlow from loopback exporters is `network` (the
//! listener's default address is loopback; a source address over UDP proves nothing, so
//! remote exporters need a CIDR entry, on a network where spoofing is filtered).
//!
//! HTTP ingestion always needs a credential: only token entries match on the `http`
//! listener, and without any token entry `POST /api/v1/events` is off.
//!
//! No I/O here: the listeners build a [`Proof`] and call [`SenderMap::decide`].

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use ipnet::IpNet;
use model::Observer;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::metrics::Listener;

/// `[senders]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSenders {
    /// What an unmatched sender gets: `"vm"` (default: stored as the least trusted
    /// observer) or `"refuse"` (connection closed, datagram dropped; counted).
    pub unmatched: Option<String>,
    /// Keep the built-in entries (AMQP → cloud, loopback NetFlow → network). Default true.
    pub builtin: Option<bool>,
    /// The entries, `[[senders.map]]`.
    #[serde(default)]
    pub map: Vec<RawEntry>,
}

/// One string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `[[senders.map]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// The sender's name, shown in `pugmark status` and stored in the origin identity of
    /// token-authenticated records (`bearer:NAME`).
    pub name: String,
    /// `hypervisor`, `vm`, `cloud`, `network`, `vo` or `collector`.
    pub observer: String,
    /// Listener name(s): `syslog-udp`, `syslog-tcp`, `syslog-tls`, `relp`, `http`, `amqp`,
    /// `netflow`. Absent: any listener.
    pub listener: Option<OneOrMany>,
    /// Source network(s), `10.0.0.0/24`, `2001:db8::/32` or a bare address.
    pub cidr: Option<OneOrMany>,
    /// The verified client certificate's subject exactly as pugmark shows it (RFC 4514
    /// order as in the certificate, e.g. `CN=hv01.example.org, O=Site`).
    pub subject: Option<String>,
    /// A DNS name or URI among the verified client certificate's subject alternative names.
    pub san: Option<OneOrMany>,
    /// SHA-256 (hex) of an HTTP bearer token: `pugmark token` makes one, or
    /// `printf %s "$TOKEN" | sha256sum`. The token itself is never written here.
    pub token_sha256: Option<String>,
}

/// What an unmatched sender gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    Vm,
    Refuse,
}

/// A validated entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Arc<str>,
    pub observer: Observer,
    pub listeners: Vec<Listener>,
    pub cidrs: Vec<IpNet>,
    pub subject: Option<String>,
    pub sans: Vec<String>,
    token_sha256: Option<[u8; 32]>,
    /// One of the built-in entries (shown as such by `--check-config`).
    pub builtin: bool,
}

impl Entry {
    /// Matching tier: 0 credential, 1 CIDR, 2 listener only.
    fn tier(&self) -> u8 {
        if self.token_sha256.is_some() || self.subject.is_some() || !self.sans.is_empty() {
            0
        } else if !self.cidrs.is_empty() {
            1
        } else {
            2
        }
    }

    /// What this entry asks for, one line (for `--check-config` and logs).
    pub fn describe(&self) -> String {
        let mut c = Vec::new();
        if !self.listeners.is_empty() {
            let l: Vec<&str> = self.listeners.iter().map(|l| l.name()).collect();
            c.push(format!("listener {}", l.join("|")));
        }
        if !self.cidrs.is_empty() {
            let n: Vec<String> = self.cidrs.iter().map(ToString::to_string).collect();
            c.push(format!("from {}", n.join("|")));
        }
        if let Some(s) = &self.subject {
            c.push(format!("subject {s:?}"));
        }
        if !self.sans.is_empty() {
            c.push(format!("SAN {}", self.sans.join("|")));
        }
        if self.token_sha256.is_some() {
            c.push("bearer token".into());
        }
        if c.is_empty() {
            c.push("any sender".into());
        }
        format!(
            "{} → {} ({}){}",
            self.name,
            self.observer,
            c.join(", "),
            if self.builtin { " [built-in]" } else { "" }
        )
    }

    /// Every condition this entry gives holds for `p`; for CIDR entries, the length of the
    /// longest matching prefix.
    fn matches(&self, p: &Proof<'_>) -> Option<u8> {
        if !self.listeners.is_empty() && !self.listeners.contains(&p.listener) {
            return None;
        }
        // HTTP ingestion needs a credential: only token entries open it, and a token is
        // only ever presented there.
        if (p.listener == Listener::Http) != self.token_sha256.is_some() {
            return None;
        }
        let mut prefix = 0;
        if !self.cidrs.is_empty() {
            let ip = canonical(p.ip?);
            prefix = self
                .cidrs
                .iter()
                .filter(|n| n.contains(&ip))
                .map(IpNet::prefix_len)
                .max()?;
        }
        if self.subject.is_some() || !self.sans.is_empty() {
            let cert = p.cert?;
            if let Some(s) = &self.subject
                && cert.subject != *s
            {
                return None;
            }
            if !self.sans.is_empty() && !self.sans.iter().any(|s| cert.has_san(s)) {
                return None;
            }
        }
        if let Some(want) = &self.token_sha256 {
            let got = sha256(p.token?.as_bytes());
            if !bool::from(got.ct_eq(want)) {
                return None;
            }
        }
        Some(prefix)
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4, so
/// `10.0.0.0/8` matches it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a verified client certificate proves: its subject and its DNS / URI SANs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertId {
    /// RFC 4514 form, as stored in `Origin::AuthenticatedPeer.identity`.
    pub subject: String,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
}

impl CertId {
    /// Read a DER certificate rustls has already verified. An unparsable one (a parser gap,
    /// not an attack: the chain was verified) is named by its hash and proves no SAN.
    pub fn from_der(der: &[u8]) -> CertId {
        use x509_parser::extensions::GeneralName;
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let mut id = CertId {
                    subject: cert.subject().to_string(),
                    ..CertId::default()
                };
                if let Ok(Some(san)) = cert.subject_alternative_name() {
                    for n in &san.value.general_names {
                        match n {
                            GeneralName::DNSName(d) => id.dns.push(d.to_string()),
                            GeneralName::URI(u) => id.uris.push(u.to_string()),
                            _ => {}
                        }
                    }
                }
                id
            }
            Err(_) => CertId {
                subject: format!("certificate-blake3:{}", blake3::hash(der).to_hex()),
                ..CertId::default()
            },
        }
    }

    /// A value with `://` is a URI, compared exactly with the URI SANs; anything else is a
    /// DNS name, compared without case (RFC 4343) with the DNS SANs only.
    fn has_san(&self, want: &str) -> bool {
        if want.contains("://") {
            self.uris.iter().any(|u| u == want)
        } else {
            self.dns.iter().any(|d| d.eq_ignore_ascii_case(want))
        }
    }
}

/// What a sender has shown at the door.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    pub listener: Listener,
    /// The peer's address (None for the AMQP consumer: we connect to the broker).
    pub ip: Option<IpAddr>,
    /// The verified client certificate (mutual TLS).
    pub cert: Option<&'a CertId>,
    /// The HTTP bearer token as presented.
    pub token: Option<&'a str>,
}

/// Who a sender is taken to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub observer: Observer,
    /// The entry's name; None when unmatched.
    pub name: Option<Arc<str>>,
}

/// The door's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept(Mapped),
    /// Unmatched with `unmatched = "refuse"`, or an HTTP request without a valid token.
    Refuse,
}

/// The validated sender map.
#[derive(Debug, Clone)]
pub struct SenderMap {
    /// In matching order: tier, then file order (built-ins last).
    entries: Vec<Entry>,
    pub unmatched: Unmatched,
}

impl Default for SenderMap {
    fn default() -> Self {
        SenderMap::from_raw(&RawSenders::default(), None).unwrap_or(SenderMap {
            entries: Vec::new(),
            unmatched: Unmatched::Vm,
        })
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a token, hex: what `token_sha256` holds.
pub fn token_sha256(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// A new random bearer token: `pmk_` and 64 hex digits (256 bits from the OS RNG).
pub fn new_token() -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(format!("pmk_{}", hex(&b)))
}

/// The `[[senders.map]]` entry for a token (TOML).
pub fn token_entry(name: &str, observer: Observer, token: &str) -> String {
    format!(
        "[[senders.map]]\nname = {}\nobserver = \"{observer}\"\nlistener = \"http\"\ntoken_sha256 = \"{}\"\n",
        toml_string(name),
        token_sha256(token)
    )
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn builtin_entries() -> Vec<RawEntry> {
    vec![
        RawEntry {
            name: "amqp-broker".into(),
            observer: "cloud".into(),
            listener: Some(OneOrMany::One("amqp".into())),
            cidr: None,
            subject: None,
            san: None,
            token_sha256: None,
        },
        RawEntry {
            name: "local-netflow-exporter".into(),
            observer: "network".into(),
            listener: Some(OneOrMany::One("netflow".into())),
            cidr: Some(OneOrMany::Many(vec![
                "127.0.0.0/8".into(),
                "::1/128".into(),
            ])),
            subject: None,
            san: None,
            token_sha256: None,
        },
    ]
}

fn entry(raw: &RawEntry, builtin: bool) -> anyhow::Result<Entry> {
    let what = format!("[[senders.map]] {:?}", raw.name);
    if raw.name.trim().is_empty() {
        bail!("[[senders.map]]: name must not be empty");
    }
    let observer: Observer = raw
        .observer
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))?;
    let mut listeners = Vec::new();
    for l in raw.listener.iter().flat_map(OneOrMany::values) {
        let l = Listener::from_name(l).with_context(|| {
            format!(
                "{what}: unknown listener {l:?} (expected one of {})",
                Listener::ALL.map(Listener::name).join(", ")
            )
        })?;
        listeners.push(l);
    }
    let mut cidrs = Vec::new();
    for c in raw.cidr.iter().flat_map(OneOrMany::values) {
        let net = c
            .parse::<IpNet>()
            .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| anyhow::anyhow!("{what}: {c:?} is not a CIDR (10.0.0.0/24) or address"))?;
        // Host bits are ignored, as `ip route` does.
        cidrs.push(net.trunc());
    }
    let sans: Vec<String> = raw
        .san
        .iter()
        .flat_map(OneOrMany::values)
        .map(str::to_string)
        .collect();
    let token_sha256 = match &raw.token_sha256 {
        None => None,
        Some(h) => Some(unhex32(h).with_context(|| {
            format!("{what}: token_sha256 must be 64 hex digits (the SHA-256 of the token, never the token)")
        })?),
    };
    let only = |l: Listener| !listeners.is_empty() && listeners.iter().all(|x| *x == l);
    if token_sha256.is_some() && !listeners.is_empty() && !only(Listener::Http) {
        bail!("{what}: a token is only presented on the http listener");
    }
    if (raw.subject.is_some() || !sans.is_empty())
        && !listeners.is_empty()
        && !listeners.contains(&Listener::SyslogTls)
    {
        bail!("{what}: client certificates are only verified on the syslog-tls listener");
    }
    if raw.subject.is_none()
        && sans.is_empty()
        && token_sha256.is_none()
        && listeners.contains(&Listener::Http)
    {
        bail!("{what}: HTTP ingestion needs a credential: give a token_sha256");
    }
    Ok(Entry {
        name: Arc::from(raw.name.as_str()),
        observer,
        listeners,
        cidrs,
        subject: raw.subject.clone(),
        sans,
        token_sha256,
        builtin,
    })
}

impl SenderMap {
    /// Validate `[senders]`; `unmatched_flag` (`--unmatched`) replaces its `unmatched`.
    pub fn from_raw(raw: &RawSenders, unmatched_flag: Option<&str>) -> anyhow::Result<SenderMap> {
        let unmatched = match unmatched_flag.or(raw.unmatched.as_deref()) {
            None | Some("vm") => Unmatched::Vm,
            Some("refuse") => Unmatched::Refuse,
            Some(other) => bail!("[senders] unmatched: {other:?} (expected \"vm\" or \"refuse\")"),
        };
        let mut entries = Vec::new();
        for r in &raw.map {
            entries.push(entry(r, false)?);
        }
        if raw.builtin.unwrap_or(true) {
            for r in builtin_entries() {
                entries.push(entry(&r, true)?);
            }
        }
        // Stable: file order kept within a tier, built-ins after the site's entries.
        entries.sort_by_key(Entry::tier);
        Ok(SenderMap { entries, unmatched })
    }

    /// The entries in matching order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether any credential opens `POST /api/v1/events`.
    pub fn http_open(&self) -> bool {
        self.entries.iter().any(|e| e.token_sha256.is_some())
    }

    /// The door: who `p` is taken to be, or a refusal.
    pub fn decide(&self, p: &Proof<'_>) -> Verdict {
        let mut best: Option<(u8, &Entry)> = None;
        for tier in 0..=2u8 {
            for e in self.entries.iter().filter(|e| e.tier() == tier) {
                let Some(prefix) = e.matches(p) else { continue };
                if tier != 1 {
                    best = Some((prefix, e));
                    break;
                }
                // CIDR tier: the longest prefix; the first in file order on a tie.
                if best.is_none_or(|(b, _)| prefix > b) {
                    best = Some((prefix, e));
                }
            }
            if best.is_some() {
                break;
            }
        }
        match best {
            Some((_, e)) => Verdict::Accept(Mapped {
                observer: e.observer,
                name: Some(e.name.clone()),
            }),
            None if p.listener == Listener::Http => Verdict::Refuse,
            None if self.unmatched == Unmatched::Refuse => Verdict::Refuse,
            None => Verdict::Accept(Mapped {
                observer: Observer::Vm,
                name: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(toml_text: &str) -> SenderMap {
        #[derive(Deserialize)]
        struct W {
            senders: RawSenders,
        }
        let w: W = toml::from_str(toml_text).unwrap();
        SenderMap::from_raw(&w.senders, None).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn at(l: Listener, addr: &str) -> Proof<'static> {
        Proof {
            listener: l,
            ip: ip(addr),
            cert: None,
            token: None,
        }
    }

    fn who(v: Verdict) -> (Observer, String) {
        match v {
            Verdict::Accept(m) => (m.observer, m.name.as_deref().unwrap_or("-").to_string()),
            Verdict::Refuse => panic!("refused"),
        }
    }

    const SITE: &str = r#"
[senders]
[[senders.map]]
name = "site-net"
observer = "vo"
cidr = "10.0.0.0/8"
[[senders.map]]
name = "hv-rack"
observer = "hypervisor"
cidr = ["10.1.0.0/16", "2001:db8:1::/48"]
[[senders.map]]
name = "hv01"
observer = "hypervisor"
subject = "CN=hv01.example.org, O=Site"
[[senders.map]]
name = "hv02"
observer = "hypervisor"
san = "hv02.example.org"
listener = "syslog-tls"
[[senders.map]]
name = "workflow"
observer = "vo"
san = ["spiffe://site/wf", "wf.example.org"]
[[senders.map]]
name = "relp-any"
observer = "network"
listener = "relp"
[[senders.map]]
name = "nova"
observer = "cloud"
token_sha256 = "2f77668a9dfbf8d5848b9eeb4a7145ca94c6ed9236e4a773f6dcafa5132b2f91"
"#;

    #[test]
    fn cidr_v4_v6_longest_prefix_wins() {
        let m = map(SITE);
        assert_eq!(
            who(m.decide(&at(Listener::SyslogTcp, "10.1.2.3"))),
            (Observer::Hypervisor, "hv-rack".into())
        );
        assert_eq!(
            who(m.decide(&at(Listener::SyslogUdp, "10.9.2.3"))),
            (Observer::Vo, "site-net".into())
        );
        // A dual-stack socket's IPv4-mapped peer is the IPv4 address.
        assert_eq!(
            who(m.decide(&at(Listener::SyslogTcp, "::ffff:10.1.0.1"))),
            (Observer::Hypervisor, "hv-rack".into())
        );
        assert_eq!(
            who(m.decide(&at(Listener::SyslogTcp, "2001:db8:1:ffff::7"))),
            (Observer::Hypervisor, "hv-rack".into())
        );
        assert_eq!(
            who(m.decide(&at(Listener::SyslogTcp, "2001:db8:2::7"))),
            (Observer::Vm, "-".into())
        );
        // CIDR beats a listener-only entry.
        assert_eq!(
            who(m.decide(&at(Listener::Relp, "10.1.0.1"))),
            (Observer::Hypervisor, "hv-rack".into())
        );
        assert_eq!(
            who(m.decide(&at(Listener::Relp, "192.0.2.1"))),
            (Observer::Network, "relp-any".into())
        );
    }

    #[test]
    fn certificate_subject_and_san_beat_the_address() {
        let m = map(SITE);
        let hv01 = CertId {
            subject: "CN=hv01.example.org, O=Site".into(),
            ..CertId::default()
        };
        let p = Proof {
            listener: Listener::SyslogTls,
            ip: ip("10.9.9.9"),
            cert: Some(&hv01),
            token: None,
        };
        assert_eq!(who(m.decide(&p)), (Observer::Hypervisor, "hv01".into()));
        // SANs: DNS without case, URI exactly; the listener condition holds too.
        let hv02 = CertId {
            subject: "CN=whatever".into(),
            dns: vec!["HV02.Example.org".into()],
            uris: vec![],
        };
        let p = Proof {
            cert: Some(&hv02),
            ..p
        };
        assert_eq!(who(m.decide(&p)), (Observer::Hypervisor, "hv02".into()));
        let wf = CertId {
            subject: "CN=x".into(),
            dns: vec![],
            uris: vec!["spiffe://site/wf".into()],
        };
        let p = Proof {
            cert: Some(&wf),
            ..p
        };
        assert_eq!(who(m.decide(&p)), (Observer::Vo, "workflow".into()));
        // A certificate nobody mapped falls through to the address.
        let other = CertId {
            subject: "CN=hv01.example.org".into(),
            dns: vec!["spiffe://site/wf".into()],
            uris: vec!["wf.example.org.evil".into()],
        };
        let p = Proof {
            cert: Some(&other),
            ..p
        };
        assert_eq!(who(m.decide(&p)), (Observer::Vo, "site-net".into()));
        let p = Proof {
            ip: ip("192.0.2.1"),
            ..p
        };
        assert_eq!(who(m.decide(&p)), (Observer::Vm, "-".into()));
    }

    #[test]
    fn http_needs_a_valid_token() {
        let m = map(SITE);
        assert!(m.http_open());
        // sha256("secret") is the entry above.
        assert_eq!(
            token_sha256("secret"),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        let good = map(&format!(
            "[senders]\n[[senders.map]]\nname = \"nova\"\nobserver = \"cloud\"\ntoken_sha256 = \"{}\"\n",
            token_sha256("secret")
        ));
        let p = |t: Option<&'static str>| Proof {
            listener: Listener::Http,
            ip: ip("10.1.2.3"),
            cert: None,
            token: t,
        };
        assert_eq!(
            who(good.decide(&p(Some("secret")))),
            (Observer::Cloud, "nova".into())
        );
        assert_eq!(good.decide(&p(Some("Secret"))), Verdict::Refuse);
        // No token: refused even from a mapped network and with unmatched = "vm".
        assert_eq!(good.decide(&p(None)), Verdict::Refuse);
        assert_eq!(m.decide(&p(None)), Verdict::Refuse);
        // A token is no use on another listener.
        let q = Proof {
            listener: Listener::SyslogTcp,
            ip: ip("192.0.2.1"),
            cert: None,
            token: Some("secret"),
        };
        assert_eq!(who(good.decide(&q)), (Observer::Vm, "-".into()));
        assert!(!SenderMap::default().http_open());
    }

    #[test]
    fn unmatched_vm_or_refuse_and_builtins() {
        let d = SenderMap::default();
        assert_eq!(
            who(d.decide(&at(Listener::SyslogTcp, "10.0.0.1"))),
            (Observer::Vm, "-".into())
        );
        assert_eq!(
            who(d.decide(&at(Listener::Netflow, "127.0.0.1"))),
            (Observer::Network, "local-netflow-exporter".into())
        );
        assert_eq!(
            who(d.decide(&at(Listener::Netflow, "192.0.2.9"))),
            (Observer::Vm, "-".into())
        );
        let amqp = Proof {
            listener: Listener::Amqp,
            ip: None,
            cert: None,
            token: None,
        };
        assert_eq!(
            who(d.decide(&amqp)),
            (Observer::Cloud, "amqp-broker".into())
        );
        let r = map(
            "[senders]\nunmatched = \"refuse\"\nbuiltin = false\n[[senders.map]]\nname = \"lo\"\nobserver = \"network\"\ncidr = \"127.0.0.2\"\n",
        );
        assert_eq!(
            r.decide(&at(Listener::SyslogTcp, "127.0.0.1")),
            Verdict::Refuse
        );
        assert_eq!(r.decide(&amqp), Verdict::Refuse);
        assert_eq!(
            who(r.decide(&at(Listener::SyslogUdp, "127.0.0.2"))),
            (Observer::Network, "lo".into())
        );
        // A site entry for the same listener wins over the built-in.
        let s = map(
            "[senders]\n[[senders.map]]\nname = \"lo-vm\"\nobserver = \"vm\"\nlistener = \"netflow\"\ncidr = \"127.0.0.0/8\"\n",
        );
        assert_eq!(
            who(s.decide(&at(Listener::Netflow, "127.0.0.1"))),
            (Observer::Vm, "lo-vm".into())
        );
        // The flag replaces the file's policy.
        let raw = RawSenders::default();
        let f = SenderMap::from_raw(&raw, Some("refuse")).unwrap();
        assert_eq!(
            f.decide(&at(Listener::SyslogUdp, "10.0.0.1")),
            Verdict::Refuse
        );
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        let bad = |body: &str| {
            #[derive(Deserialize)]
            struct W {
                senders: RawSenders,
            }
            let w: Result<W, _> = toml::from_str(&format!("[senders]\n{body}"));
            match w {
                Err(e) => e.to_string(),
                Ok(w) => format!("{:#}", SenderMap::from_raw(&w.senders, None).unwrap_err()),
            }
        };
        let base = "[[senders.map]]\nname = \"x\"\nobserver = \"cloud\"\n";
        assert!(bad(&format!("{base}cidr = \"10.0.0.300/8\"")).contains("not a CIDR"));
        assert!(bad(&format!("{base}listener = \"syslog\"")).contains("unknown listener"));
        assert!(bad(&format!("{base}token_sha256 = \"secret\"")).contains("64 hex digits"));
        assert!(bad(&format!("{base}listener = \"http\"")).contains("needs a credential"));
        assert!(
            bad(&format!(
                "{base}listener = \"relp\"\ntoken_sha256 = \"{}\"",
                token_sha256("t")
            ))
            .contains("only presented on the http")
        );
        assert!(
            bad(&format!("{base}listener = \"relp\"\nsubject = \"CN=a\"")).contains("syslog-tls")
        );
        assert!(
            bad("[[senders.map]]\nname = \"x\"\nobserver = \"root\"").contains("unknown observer")
        );
        assert!(bad(&format!("{base}color = \"red\"")).contains("unknown field"));
        assert!(bad("unmatched = \"drop\"").contains("expected"));
    }

    #[test]
    fn new_tokens_are_random_and_their_entry_parses() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("pmk_") && a.len() == 68);
        let m = map(&format!(
            "[senders]\n{}",
            token_entry("nova \"east\"", Observer::Cloud, &a)
        ));
        let p = Proof {
            listener: Listener::Http,
            ip: None,
            cert: None,
            token: Some(&a),
        };
        assert_eq!(who(m.decide(&p)), (Observer::Cloud, "nova \"east\"".into()));
    }
}
