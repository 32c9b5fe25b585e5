//! One record as observed: [`Event`] and the small types it is made of.
//!
//! An event is what `decode` makes of one envelope. It is derived data: the ledger keeps the
//! envelope (raw bytes plus collector facts), and decoding it again always yields the same
//! event, which is what lets `pugmark reindex` rebuild every view.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::{Received, Reported};

/// Who observed an event. Decides how far it can be believed (DESIGN.md "Trust model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observer {
    /// pugmark itself: time received, sender address, TLS identity.
    Collector,
    /// The cloud framework: OpenStack notifications and service logs, Keystone.
    Cloud,
    /// A hypervisor: netfilter LOG lines for VM traffic, libvirt.
    Hypervisor,
    /// The network: NetFlow / IPFIX from routers.
    Network,
    /// A VO's workload system: HTCondor history and logs, pilot logs.
    Vo,
    /// Syslog from inside a VM: forgeable by whoever has root there.
    Vm,
    /// Logs found on a VM's disk image in the quarantine (`pugmark quarantine inspect`):
    /// found on the disk, forgeable by the VM's root, but there even when the VM never sent
    /// syslog.
    Image,
}

impl Observer {
    pub const ALL: [Observer; 7] = [
        Observer::Collector,
        Observer::Cloud,
        Observer::Hypervisor,
        Observer::Network,
        Observer::Vo,
        Observer::Vm,
        Observer::Image,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Observer::Collector => "collector",
            Observer::Cloud => "cloud",
            Observer::Hypervisor => "hypervisor",
            Observer::Network => "network",
            Observer::Vo => "vo",
            Observer::Vm => "vm",
            Observer::Image => "image",
        }
    }

    /// Whether a user with root inside a VM can forge what this observer records.
    pub fn forgeable_by_vm_user(self) -> bool {
        matches!(self, Observer::Vm | Observer::Image)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Observer> {
        Observer::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Observer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Observer::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!("unknown observer {s:?} (expected collector, cloud, hypervisor, network, vo or vm)")
            })
    }
}

/// Where the bytes of an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A file import: the path as given to `ingest` (`-` for stdin) and the 1-based line number.
    File { path: String, line: u64 },
    /// A network listener: the peer's address and the listener's name (e.g. `syslog-tcp`).
    Peer { addr: String, listener: String },
    /// A network listener whose sender proved who it is (a TLS client certificate verified
    /// against the configured CA): the address, the listener and the certificate subject
    /// (`CN=vm1.example.org,O=Site`). A separate variant so ledgers written before it read
    /// unchanged (envelope origin tag 3).
    AuthenticatedPeer {
        addr: String,
        listener: String,
        identity: String,
    },
    /// A file import whose path names the sender (`pugmark ingest --sender-from-path`: a
    /// central logger's per-host layout, `/var/log/remote/10.0.0.5/…`): the path, the line
    /// and the sender's address read from the path. A separate variant so ledgers written
    /// before it read unchanged (envelope origin tag 4). Everything that treats a file import
    /// treats it the same; only [`Event::sender_ip`] differs.
    #[serde(rename = "file_from_sender")]
    FileFromSender {
        path: String,
        line: u64,
        sender: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } | Origin::FileFromSender { path, line, .. } => {
                write!(f, "{path}:{line}")
            }
            Origin::Peer { addr, listener } => write!(f, "{listener}://{addr}"),
            Origin::AuthenticatedPeer {
                addr,
                listener,
                identity,
            } => write!(f, "{listener}://{addr} ({identity})"),
        }
    }
}

/// What kind of happening an event records. Serialised as dotted names (`auth.login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventClass {
    /// A successful login (sshd `Accepted …`).
    #[serde(rename = "auth.login")]
    AuthLogin,
    /// A failed authentication (wrong password, invalid user, refused key, pam failure).
    #[serde(rename = "auth.failure")]
    AuthFailure,
    /// A change of identity inside a host: su, sudo.
    #[serde(rename = "auth.identity_change")]
    AuthIdentityChange,
    /// A login session opened or closed (pam_unix / systemd-logind).
    #[serde(rename = "auth.session")]
    AuthSession,
    /// A network connection seen by a host or hypervisor firewall (netfilter LOG).
    #[serde(rename = "net.connection")]
    NetConnection,
    /// A flow record from the network (NetFlow / IPFIX).
    #[serde(rename = "net.flow")]
    NetFlow,
    /// A VM lifecycle change reported by the cloud.
    #[serde(rename = "vm.lifecycle")]
    VmLifecycle,
    /// A payload job run reported by a VO.
    #[serde(rename = "job.run")]
    JobRun,
    /// A directory entry: who a user or project id is (Keystone dumps).
    #[serde(rename = "identity.directory")]
    IdentityDirectory,
    /// A step of a VM disk image's custody in the quarantine (captured, held, exported,
    /// purged, …), recorded by pugmark or a hypervisor's hook.
    #[serde(rename = "vm.custody")]
    VmCustody,
    /// A query to pugmark's API, answered or refused (issue 14): who asked what, with which
    /// role, and how many results; recorded by pugmark itself.
    #[serde(rename = "audit.query")]
    AuditQuery,
    /// Anything else.
    #[serde(rename = "other")]
    Other,
}

impl EventClass {
    pub const ALL: [EventClass; 12] = [
        EventClass::AuthLogin,
        EventClass::AuthFailure,
        EventClass::AuthIdentityChange,
        EventClass::AuthSession,
        EventClass::NetConnection,
        EventClass::NetFlow,
        EventClass::VmLifecycle,
        EventClass::JobRun,
        EventClass::IdentityDirectory,
        EventClass::VmCustody,
        EventClass::AuditQuery,
        EventClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::AuthLogin => "auth.login",
            EventClass::AuthFailure => "auth.failure",
            EventClass::AuthIdentityChange => "auth.identity_change",
            EventClass::AuthSession => "auth.session",
            EventClass::NetConnection => "net.connection",
            EventClass::NetFlow => "net.flow",
            EventClass::VmLifecycle => "vm.lifecycle",
            EventClass::JobRun => "job.run",
            EventClass::IdentityDirectory => "identity.directory",
            EventClass::VmCustody => "vm.custody",
            EventClass::AuditQuery => "audit.query",
            EventClass::Other => "other",
        }
    }
}

impl fmt::Display for EventClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EventClass::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown class {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// Something a parser could not understand, with where and what it expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseIssue {
    /// Byte offset into the raw record where the problem starts.
    pub offset: usize,
    /// Short stable kind used for counting (`bad_pri`, `bad_timestamp`, `invalid_utf8`, …).
    pub kind: String,
    /// What the parser expected there, for humans.
    pub expected: String,
    /// Up to 32 bytes of the input at `offset`, lossily decoded.
    pub sample: String,
}

impl ParseIssue {
    pub fn new(raw: &[u8], offset: usize, kind: &str, expected: &str) -> ParseIssue {
        let start = offset.min(raw.len());
        let end = (start + 32).min(raw.len());
        ParseIssue {
            offset,
            kind: kind.to_string(),
            expected: expected.to_string(),
            sample: String::from_utf8_lossy(&raw[start..end]).into_owned(),
        }
    }
}

/// The listener name prefix of datagrams read from a packet capture (`pcap:FILE#FRAME`): their
/// origin names the exporter, but nothing received them live.
pub const PCAP_LISTENER_PREFIX: &str = "pcap:";

/// One record as observed (DESIGN.md "Events and facts").
///
/// Claims made by the source (`host`, `app`, `pid`, `reported`, …) are kept as claimed; the
/// trusted facts about the record (`received`, `origin`, `observer`) come from the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Collector clock at reception (import time for file imports).
    pub received: Received,
    /// The source's own claim about the time, parsed and verbatim.
    pub reported: Reported,
    pub observer: Observer,
    /// Which decoder made this event (`syslog-rfc5424`, `syslog-rfc3164`, `raw`, …).
    pub source_kind: String,
    pub origin: Origin,
    /// Hostname as claimed by the record.
    pub host: Option<String>,
    /// Program / APP-NAME as claimed (`sshd`, `sshd(pam_unix)`, `kernel`).
    pub app: Option<String>,
    /// Process id as claimed; text, because sources put anything there.
    pub pid: Option<String>,
    /// Syslog facility code 0..=23, when the record had a PRI.
    pub facility: Option<u8>,
    /// Syslog severity code 0..=7, when the record had a PRI.
    pub severity: Option<u8>,
    /// RFC 5424 MSGID.
    pub msgid: Option<String>,
    /// The free-text message (lossy UTF-8 of the raw message part; BOM stripped).
    pub message: String,
    /// Normalised fields (names in [`crate::fields`]); RFC 5424 structured data as
    /// `sd.<SD-ID>.<PARAM-NAME>`.
    pub fields: BTreeMap<String, String>,
    /// Every IP address the record mentions (fields and message), for IP search.
    pub ips: Vec<IpAddr>,
    pub class: EventClass,
    /// What went wrong while parsing; empty for a clean parse.
    pub issues: Vec<ParseIssue>,
    /// The bytes exactly as received (line terminator excluded).
    #[serde(with = "raw_bytes")]
    pub raw: Vec<u8>,
}

impl Event {
    /// An event with nothing decoded yet: the envelope's parts, class `other`, everything else
    /// empty. What every decoder starts from.
    pub fn blank(received: Received, observer: Observer, origin: Origin, raw: Vec<u8>) -> Event {
        Event {
            received,
            reported: Reported::none(),
            observer,
            source_kind: String::new(),
            origin,
            host: None,
            app: None,
            pid: None,
            facility: None,
            severity: None,
            msgid: None,
            message: String::new(),
            fields: BTreeMap::new(),
            ips: Vec::new(),
            class: EventClass::Other,
            issues: Vec::new(),
            raw,
        }
    }

    /// The best time to order this event by: the reported time when the source gave one that
    /// parsed, else the received time. Callers that must not trust the source (VM-internal
    /// events in cross-checks) use `received` directly.
    pub fn time(&self) -> jiff::Timestamp {
        self.reported
            .time
            .unwrap_or_else(|| self.received.timestamp())
    }

    /// When a collector the site controls received this record: ours for records from a network
    /// listener, the central logger's for a line of its archive (field `relay_received`).
    /// `None` for other file imports, whose received time is only the import's. This, not the
    /// reported time, places VM-internal events wherever their own clock cannot be trusted.
    ///
    /// A datagram read from a packet capture (`pugmark ingest` of a pcap: listener
    /// `pcap:FILE#FRAME`) names its exporter as a peer, but its received time is the import's:
    /// not a receipt, so `None` too.
    pub fn collected(&self) -> Option<jiff::Timestamp> {
        match &self.origin {
            Origin::Peer { listener, .. } if listener.starts_with(PCAP_LISTENER_PREFIX) => None,
            Origin::Peer { .. } | Origin::AuthenticatedPeer { .. } => {
                Some(self.received.timestamp())
            }
            Origin::File { .. } | Origin::FileFromSender { .. } => self
                .field(crate::fields::RELAY_RECEIVED)
                .and_then(|t| t.parse().ok()),
        }
    }

    /// Where every query places this record in time (`--from/--to`, `--at`, ordering; the
    /// search index's `placed` column).
    ///
    /// A record whose source a VM's user controls (observer `vm`: its clock is theirs to set)
    /// stands at the collector's time ([`Event::collected`]) where one exists, else its reported
    /// time, else the received time. Every other record stands at its reported time, else the
    /// collector's, else the received time: those sources' clocks are the site's (or a
    /// partner's) and say when the thing happened, while a receipt can come hours later (a
    /// forwarder's disk queue draining after an outage, a RabbitMQ backlog), and placing a
    /// hypervisor's connection or a cloud notification at its delivery would resolve it
    /// against the wrong lease. Renderers show the reported time beside the placed one when
    /// they differ ([`Event::reported_aside`]).
    pub fn placed(&self) -> jiff::Timestamp {
        let (first, second) = if self.observer.forgeable_by_vm_user() {
            (self.collected(), self.reported.time)
        } else {
            (self.reported.time, self.collected())
        };
        first
            .or(second)
            .unwrap_or_else(|| self.received.timestamp())
    }

    /// The reported time when it differs from [`Event::placed`] by a second or more: what a
    /// renderer shows beside the placed time (`[reported …]`). Sub-second differences are
    /// transit and stamp precision, not a clock to question.
    pub fn reported_aside(&self) -> Option<jiff::Timestamp> {
        let rep = self.reported.time?;
        (rep.duration_since(self.placed()).abs() >= jiff::SignedDuration::from_secs(1))
            .then_some(rep)
    }

    /// The address of the sender that delivered this record: the peer of a live record, or the
    /// sender a central logger wrote into its archive line (field `relay_from`). IPv4-mapped
    /// IPv6 addresses come out as IPv4. `None` for other file imports and pcap imports.
    pub fn sender_ip(&self) -> Option<std::net::IpAddr> {
        let ip = match &self.origin {
            Origin::Peer { listener, .. } if listener.starts_with(PCAP_LISTENER_PREFIX) => None,
            Origin::Peer { addr, .. } | Origin::AuthenticatedPeer { addr, .. } => addr
                .parse::<std::net::SocketAddr>()
                .map(|s| s.ip())
                .or_else(|_| addr.parse::<std::net::IpAddr>())
                .ok(),
            Origin::File { .. } => self
                .field(crate::fields::RELAY_FROM)
                .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok()),
            // The archive prefix, when the file has one, is the logger's own record of the
            // sender; the path is the site's layout of the same fact.
            Origin::FileFromSender { sender, .. } => self
                .field(crate::fields::RELAY_FROM)
                .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
                .or_else(|| sender.parse::<std::net::IpAddr>().ok()),
        }?;
        Some(match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        })
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Raw bytes serialise as a UTF-8 string when they are valid UTF-8, else as
/// `{"base64": "…"}`-free hex (`{"hex": "…"}`) so JSON output never lies about the bytes.
mod raw_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Hex { hex: String },
    }

    pub fn serialize<S: Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(raw) {
            Ok(t) => Repr::Text(t.to_string()).serialize(s),
            Err(_) => {
                let mut hex = String::with_capacity(raw.len() * 2);
                for b in raw {
                    hex.push_str(&format!("{b:02x}"));
                }
                Repr::Hex { hex }.serialize(s)
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(t.into_bytes()),
            Repr::Hex { hex } => {
                let bytes = hex.as_bytes();
                if bytes.len() % 2 != 0 {
                    return Err(serde::de::Error::custom("odd-length hex"));
                }
                bytes
                    .chunks(2)
                    .map(|pair| {
                        std::str::from_utf8(pair)
                            .ok()
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                            .ok_or_else(|| serde::de::Error::custom("bad hex"))
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    /// A syslog line whose source claims `reported`, received at `received`, from `origin`.
    fn line(observer: Observer, origin: Origin, reported: Option<&str>, received: &str) -> Event {
        Event {
            received: Received::from_stored(ts(received).as_nanosecond()),
            reported: Reported::new(reported.map(ts), reported.unwrap_or("-")),
            observer,
            source_kind: "syslog-rfc3164".into(),
            origin,
            host: Some("vm1".into()),
            app: Some("sshd".into()),
            pid: None,
            facility: None,
            severity: None,
            msgid: None,
            message: "m".into(),
            fields: BTreeMap::new(),
            ips: Vec::new(),
            class: EventClass::Other,
            issues: Vec::new(),
            raw: Vec::new(),
        }
    }

    fn peer(addr: &str, listener: &str) -> Origin {
        Origin::Peer {
            addr: addr.into(),
            listener: listener.into(),
        }
    }

    fn file() -> Origin {
        Origin::File {
            path: "archive.log".into(),
            line: 1,
        }
    }

    #[test]
    fn a_vm_set_back_two_hours_is_placed_at_the_collectors_time() {
        let live = line(
            Observer::Vm,
            peer("[::ffff:10.0.0.5]:41000", "tcp"),
            Some("2026-10-14T08:00:00Z"),
            "2026-10-14T10:00:00.2Z",
        );
        assert_eq!(live.placed(), ts("2026-10-14T10:00:00.2Z"));
        assert_eq!(live.reported_aside(), Some(ts("2026-10-14T08:00:00Z")));
        assert_eq!(live.sender_ip(), Some("10.0.0.5".parse().expect("ip")));
        // An archive line: the central logger's receipt, not the import's.
        let mut archived = line(
            Observer::Vm,
            file(),
            Some("2026-10-14T08:00:00Z"),
            "2026-12-01T00:00:00Z",
        );
        archived
            .fields
            .insert(fields::RELAY_RECEIVED.into(), "2026-10-14T10:00:00Z".into());
        archived
            .fields
            .insert(fields::RELAY_FROM.into(), "10.0.0.5".into());
        assert_eq!(archived.placed(), ts("2026-10-14T10:00:00Z"));
        assert_eq!(archived.sender_ip(), Some("10.0.0.5".parse().expect("ip")));
        // A plain file: no collector saw it; the claim is all there is.
        let plain = line(
            Observer::Vm,
            file(),
            Some("2026-10-14T08:00:00Z"),
            "2026-12-01T00:00:00Z",
        );
        assert_eq!(plain.placed(), ts("2026-10-14T08:00:00Z"));
        assert_eq!(plain.reported_aside(), None);
        assert_eq!(plain.sender_ip(), None);
        // Within a second: transit, not a clock to show.
        let close = line(
            Observer::Vm,
            peer("10.0.0.5:514", "udp"),
            Some("2026-10-14T10:00:00Z"),
            "2026-10-14T10:00:00.6Z",
        );
        assert_eq!(close.reported_aside(), None);
    }

    #[test]
    fn trusted_sources_stand_at_their_own_time_and_pcap_imports_were_not_collected() {
        // A hypervisor's line delivered an hour late (a forwarder's queue drained): it
        // happened when the hypervisor says.
        let late = line(
            Observer::Hypervisor,
            peer("192.0.2.1:514", "relp"),
            Some("2026-10-14T09:00:00Z"),
            "2026-10-14T10:00:00Z",
        );
        assert_eq!(late.collected(), Some(ts("2026-10-14T10:00:00Z")));
        assert_eq!(late.placed(), ts("2026-10-14T09:00:00Z"));
        let unparsed = line(
            Observer::Hypervisor,
            peer("192.0.2.1:514", "relp"),
            None,
            "2026-10-14T10:00:00Z",
        );
        assert_eq!(unparsed.placed(), ts("2026-10-14T10:00:00Z"));
        let pcap = line(
            Observer::Vm,
            peer("192.0.2.9:2055", &format!("{PCAP_LISTENER_PREFIX}x.pcap#3")),
            Some("2026-10-14T09:00:00Z"),
            "2026-12-01T00:00:00Z",
        );
        assert_eq!(pcap.collected(), None);
        assert_eq!(pcap.sender_ip(), None);
        assert_eq!(pcap.placed(), ts("2026-10-14T09:00:00Z"));
    }
}
