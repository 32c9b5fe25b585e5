//! What the collector counts, per listener and per sender, and its Prometheus text rendering
//! (`GET /metrics`, read back by `pugmark status`).
//!
//! Counters are plain atomics bumped on the hot path; one happening bumps its counter and,
//! for problems, logs through [`Metrics::problem`], which prints the first occurrence of each
//! (listener, kind) and then only every 10 000th, so a flood of garbage cannot flood stderr
//! while every case stays counted (STYLE.md convention 13).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use model::Received;

use crate::senders::Mapped;

/// The listeners, in a fixed order (the metrics array index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    SyslogUdp,
    SyslogTcp,
    SyslogTls,
    Relp,
    Http,
    Amqp,
    Netflow,
}

impl Listener {
    pub const ALL: [Listener; 7] = [
        Listener::SyslogUdp,
        Listener::SyslogTcp,
        Listener::SyslogTls,
        Listener::Relp,
        Listener::Http,
        Listener::Amqp,
        Listener::Netflow,
    ];

    /// The name stored in every event's origin (`Origin::Peer.listener`).
    pub fn name(self) -> &'static str {
        match self {
            Listener::SyslogUdp => "syslog-udp",
            Listener::SyslogTcp => "syslog-tcp",
            Listener::SyslogTls => "syslog-tls",
            Listener::Relp => "relp",
            Listener::Http => "http",
            Listener::Amqp => "amqp",
            Listener::Netflow => "netflow",
        }
    }

    /// The listener of a name as [`Listener::name`] gives it.
    pub fn from_name(name: &str) -> Option<Listener> {
        Listener::ALL.into_iter().find(|l| l.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Records handed to the writer.
    pub messages: AtomicU64,
    /// Payload bytes of those records (framing excluded).
    pub bytes: AtomicU64,
    /// Frames that were not clean messages (stored raw all the same), bad RELP frames,
    /// HTTP/AMQP bodies that are not JSON.
    pub parse_errors: AtomicU64,
    /// Messages lost before the ledger: UDP datagrams dropped because the writer queue was
    /// full. Kernel-side UDP drops are read from /proc at render time.
    pub drops: AtomicU64,
    /// Records recognised as resends of records already in the ledger (RELP, AMQP
    /// redeliveries): acknowledged, not stored twice.
    pub duplicates: AtomicU64,
    pub connections: AtomicU64,
    pub connections_open: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Connections refused at accept: the listener's connection limit was reached.
    pub connections_refused: AtomicU64,
    /// Submissions refused for what they contain (too large for the store): answered with
    /// the protocol's error (HTTP 413, RELP `rsp 500`), nothing stored.
    pub rejected: AtomicU64,
    /// Senders refused at the door (the sender map): connections closed, datagrams dropped,
    /// HTTP requests without a valid token.
    pub refused: AtomicU64,
}

/// Upper bound on remembered senders, so a spoofed-source UDP flood cannot grow memory.
const MAX_SENDERS: usize = 65_536;

/// Picks one counter out of a listener's set.
type Field = fn(&ListenerMetrics) -> &AtomicU64;

/// What the NetFlow / IPFIX decoder (run by the store, beside the ledger writer) saw, as
/// cumulative totals the store sets after each batch (`flow::Stats`).
#[derive(Debug, Default)]
pub struct FlowMetrics {
    /// Flow records derived and stored (one `net.flow` event each).
    pub flows: AtomicU64,
    /// Templates and options templates learnt.
    pub templates: AtomicU64,
    /// Data sets that waited for their template and were decoded when it came …
    pub pending_decoded: AtomicU64,
    /// … or dropped (no template in time, or the pending cache full).
    pub dropped_sets: AtomicU64,
    /// Bad input by decoder problem kind (`truncated_header`, `flowset_length`, …).
    pub problems: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    listeners: [ListenerMetrics; 7],
    pub netflow: FlowMetrics,
    /// (listener, sender) → (last seen, unix seconds; messages).
    senders: Mutex<HashMap<(Listener, String), (f64, u64)>>,
    /// (listener, sender) → who the sender map took it to be (observer, entry name).
    sender_info: Mutex<HashMap<(Listener, String), Mapped>>,
    problems: Mutex<HashMap<(Listener, &'static str), u64>>,
    pub ledger_batches: AtomicU64,
    pub ledger_records: AtomicU64,
    pub ledger_last_seq: AtomicU64,
    /// Ledger position of the last record the search index has committed, given by the
    /// store (the index trails the ledger under load).
    pub index_last_seq: std::sync::OnceLock<std::sync::Arc<AtomicU64>>,
    /// Bound UDP sockets (for kernel drop counts from /proc).
    pub udp_ports: Mutex<Vec<(Listener, u16)>>,
    /// The store's faults and retries (`crate::health`).
    pub store: crate::health::StoreHealth,
    /// Per configured witness (by name): what it last cosigned, set by the binary's pusher.
    pub witnesses: Mutex<BTreeMap<String, WitnessStat>>,
    /// Per image quarantine backend (`file`, `rbd`): what serve's quarantine timer last saw.
    pub quarantine: Mutex<BTreeMap<String, QuarantineStat>>,
}

/// One quarantine backend as serve's quarantine timer last saw it (issue 13: "a Ceph cluster
/// that is down (retry, record, alert via /metrics and status)"). Set by the binary.
#[derive(Debug, Default, Clone)]
pub struct QuarantineStat {
    /// Whether its last health poll answered (the cluster, the store's volume).
    pub up: bool,
    /// That poll's one line (`HEALTH_OK`, the error).
    pub detail: String,
    /// Free bytes where new images land, when known.
    pub free_bytes: Option<u64>,
    /// Images kept there, and their bytes.
    pub images: u64,
    pub bytes: u64,
    /// Health polls that found it down.
    pub down_polls: u64,
    /// Calls the storage did not answer (each attempt; the RBD backend's counter).
    pub unavailable: u64,
    /// Operations that gave up after every attempt.
    pub gave_up: u64,
    /// Captures waiting to be tried again (`STORE/retry.json`).
    pub captures_waiting: u64,
    /// Captures that failed because the storage did not answer (recorded, retried).
    pub capture_failures: u64,
}

/// One witness's state as the checkpoint pusher sees it.
#[derive(Debug, Default, Clone)]
pub struct WitnessStat {
    /// Tree size of the last checkpoint it cosigned (recorded in `ledger/cosignatures`).
    pub cosigned_size: u64,
    /// Unix time (s) of that cosignature as recorded (0: none yet).
    pub last_cosign_unix: f64,
    /// Pushes that failed (unreachable, refused, bad answer).
    pub failures: u64,
    /// The last failure, for `pugmark status`.
    pub last_error: Option<String>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn listener(&self, l: Listener) -> &ListenerMetrics {
        &self.listeners[l.index()]
    }

    /// Count `messages` records from `sender` (an address without port, or a TLS identity).
    pub fn seen(&self, l: Listener, sender: &str, messages: u64, at: Received) {
        let secs = at.as_unix_nanos() as f64 / 1e9;
        let Ok(mut map) = self.senders.lock() else {
            return;
        };
        if let Some(e) = map.get_mut(&(l, sender.to_string())) {
            e.0 = secs;
            e.1 += messages;
        } else if map.len() < MAX_SENDERS {
            map.insert((l, sender.to_string()), (secs, messages));
        }
    }

    /// Count records like [`Metrics::seen`] and remember who the sender map took the sender
    /// to be (shown by `/metrics` as `pugmark_sender_info` and by `pugmark status`).
    pub fn seen_as(&self, l: Listener, sender: &str, info: &Mapped, messages: u64, at: Received) {
        self.seen(l, sender, messages, at);
        let Ok(mut map) = self.sender_info.lock() else {
            return;
        };
        let key = (l, sender.to_string());
        if let Some(i) = map.get_mut(&key) {
            if i != info {
                *i = info.clone();
            }
        } else if map.len() < MAX_SENDERS {
            map.insert(key, info.clone());
        }
    }

    /// Log a problem the first time it happens on a listener (and every 10 000th time after).
    pub fn problem(&self, l: Listener, kind: &'static str, detail: &str) {
        let n = match self.problems.lock() {
            Ok(mut map) => {
                let n = map.entry((l, kind)).or_default();
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        if n == 1 || n % 10_000 == 0 {
            eprintln!(
                "pugmark serve: {}: {kind}: {detail} (occurrence {n}; all are counted in /metrics)",
                l.name()
            );
        }
    }

    /// Remember a bound UDP socket, whose kernel-side drops `/metrics` reports.
    pub fn udp_bound(&self, l: Listener, port: u16) {
        if let Ok(mut v) = self.udp_ports.lock() {
            v.push((l, port));
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let families: [(&str, &str, Field); 11] = [
            (
                "pugmark_messages_total",
                "Records received and handed to the ledger writer.",
                |m| &m.messages,
            ),
            (
                "pugmark_bytes_total",
                "Payload bytes of those records.",
                |m| &m.bytes,
            ),
            (
                "pugmark_parse_errors_total",
                "Frames or bodies that were not clean messages (stored raw).",
                |m| &m.parse_errors,
            ),
            (
                "pugmark_drops_total",
                "Messages dropped before the ledger (UDP, writer queue full).",
                |m| &m.drops,
            ),
            (
                "pugmark_duplicates_total",
                "Resent records already in the ledger: acknowledged, not stored twice.",
                |m| &m.duplicates,
            ),
            ("pugmark_connections_total", "Connections accepted.", |m| {
                &m.connections
            }),
            ("pugmark_connections_open", "Connections open now.", |m| {
                &m.connections_open
            }),
            (
                "pugmark_tls_handshake_failures_total",
                "TLS handshakes that failed (including refused client certificates).",
                |m| &m.tls_handshake_failures,
            ),
            (
                "pugmark_connections_refused_total",
                "Connections refused at accept: the listener's connection limit was reached.",
                |m| &m.connections_refused,
            ),
            (
                "pugmark_rejected_total",
                "Submissions refused for what they contain (HTTP 413, RELP rsp 500): nothing stored.",
                |m| &m.rejected,
            ),
            (
                "pugmark_refused_total",
                "Senders refused by the sender map: connections closed, datagrams dropped, HTTP requests without a valid token.",
                |m| &m.refused,
            ),
        ];
        for (name, help, get) in families {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for l in Listener::ALL {
                let v = get(self.listener(l)).load(Relaxed);
                let _ = writeln!(out, "{name}{{listener=\"{}\"}} {v}", l.name());
            }
        }
        let ports = self.udp_ports.lock().map(|v| v.clone()).unwrap_or_default();
        if !ports.is_empty() {
            let _ = writeln!(
                out,
                "# HELP pugmark_udp_kernel_drops Datagrams the kernel dropped on a listener's UDP sockets (receive buffer full).\n# TYPE pugmark_udp_kernel_drops gauge"
            );
            let mut per: BTreeMap<&str, u64> = BTreeMap::new();
            for (l, port) in &ports {
                *per.entry(l.name()).or_default() += udp_kernel_drops(*port).unwrap_or(0);
            }
            for (l, n) in per {
                let _ = writeln!(out, "pugmark_udp_kernel_drops{{listener=\"{l}\"}} {n}");
            }
        }
        let f = &self.netflow;
        for (name, help, v) in [
            (
                "pugmark_netflow_flows_total",
                "Flows derived into the flow store from the stored NetFlow / IPFIX datagrams by this process (they trail the ledger as the views do).",
                &f.flows,
            ),
            (
                "pugmark_netflow_templates_total",
                "NetFlow v9 / IPFIX templates and options templates received.",
                &f.templates,
            ),
            (
                "pugmark_netflow_pending_decoded_total",
                "Data sets that arrived before their template and were decoded when it came.",
                &f.pending_decoded,
            ),
            (
                "pugmark_netflow_dropped_sets_total",
                "Data sets dropped: their template never came in time, or the pending cache was full.",
                &f.dropped_sets,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{listener=\"netflow\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_netflow_decode_errors_total Bad NetFlow / IPFIX input met by the decoder, by kind.\n# TYPE pugmark_netflow_decode_errors_total counter"
        );
        if let Ok(p) = f.problems.lock() {
            for (kind, n) in p.iter() {
                let _ = writeln!(
                    out,
                    "pugmark_netflow_decode_errors_total{{listener=\"netflow\",kind=\"{}\"}} {n}",
                    escape_label(kind)
                );
            }
        }
        for (name, help, v) in [
            (
                "pugmark_ledger_batches_total",
                "Durable ledger batches (one fsync each) written by serve.",
                &self.ledger_batches,
            ),
            (
                "pugmark_ledger_records_total",
                "Records made durable by serve.",
                &self.ledger_records,
            ),
            (
                "pugmark_ledger_last_seq",
                "Ledger position of the last durable record.",
                &self.ledger_last_seq,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        self.store.render(&mut out);
        if let Some(g) = self.index_last_seq.get() {
            let _ = writeln!(
                out,
                "# HELP pugmark_index_last_seq Ledger position of the last record the search index has committed (searches scan the ledger past it).\n# TYPE pugmark_index_last_seq gauge\npugmark_index_last_seq {}",
                g.load(Relaxed)
            );
        }
        self.render_witnesses(&mut out);
        self.render_quarantine(&mut out);
        let _ = writeln!(
            out,
            "# HELP pugmark_sender_last_seen_seconds Unix time of the last record from each sender.\n# TYPE pugmark_sender_last_seen_seconds gauge"
        );
        let mut senders: Vec<_> = match self.senders.lock() {
            Ok(map) => map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(_) => Vec::new(),
        };
        senders.sort_by(|a, b| (a.0.0.name(), &a.0.1).cmp(&(b.0.0.name(), &b.0.1)));
        for ((l, s), (t, _)) in &senders {
            let _ = writeln!(
                out,
                "pugmark_sender_last_seen_seconds{{listener=\"{}\",sender=\"{}\"}} {t:.3}",
                l.name(),
                escape_label(s)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_sender_messages_total Records from each sender.\n# TYPE pugmark_sender_messages_total counter"
        );
        for ((l, s), (_, n)) in &senders {
            let _ = writeln!(
                out,
                "pugmark_sender_messages_total{{listener=\"{}\",sender=\"{}\"}} {n}",
                l.name(),
                escape_label(s)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_sender_info Who the sender map took each sender to be: the observer its records are stored under and the map entry's name (\"-\": unmatched).\n# TYPE pugmark_sender_info gauge"
        );
        let mut info: Vec<_> = match self.sender_info.lock() {
            Ok(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        info.sort_by(|a, b| (a.0.0.name(), &a.0.1).cmp(&(b.0.0.name(), &b.0.1)));
        for ((l, s), i) in &info {
            let _ = writeln!(
                out,
                "pugmark_sender_info{{listener=\"{}\",sender=\"{}\",observer=\"{}\",name=\"{}\"}} 1",
                l.name(),
                escape_label(s),
                i.observer,
                escape_label(i.name.as_deref().unwrap_or("-"))
            );
        }
        out
    }
}

impl Metrics {
    fn render_quarantine(&self, out: &mut String) {
        let q: Vec<(String, QuarantineStat)> = match self.quarantine.lock() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        if q.is_empty() {
            return;
        }
        type Get = fn(&QuarantineStat) -> Option<u64>;
        let series: [(&str, &str, Get); 9] = [
            (
                "pugmark_quarantine_backend_up",
                "Whether each quarantine backend answered its last health poll (1) or not (0).",
                |s| Some(u64::from(s.up)),
            ),
            (
                "pugmark_quarantine_backend_down_polls_total",
                "Health polls that found each quarantine backend down.",
                |s| Some(s.down_polls),
            ),
            (
                "pugmark_quarantine_backend_unavailable_total",
                "Calls to each quarantine backend's storage that got no answer (every attempt).",
                |s| Some(s.unavailable),
            ),
            (
                "pugmark_quarantine_backend_gave_up_total",
                "Operations on each quarantine backend that gave up after every attempt.",
                |s| Some(s.gave_up),
            ),
            (
                "pugmark_quarantine_capture_failures_total",
                "Captures that failed because the storage did not answer (recorded; retried).",
                |s| Some(s.capture_failures),
            ),
            (
                "pugmark_quarantine_captures_waiting",
                "Captures waiting to be tried again.",
                |s| Some(s.captures_waiting),
            ),
            (
                "pugmark_quarantine_images",
                "Images kept by each quarantine backend.",
                |s| Some(s.images),
            ),
            (
                "pugmark_quarantine_bytes",
                "Bytes of the images kept by each quarantine backend.",
                |s| Some(s.bytes),
            ),
            (
                "pugmark_quarantine_free_bytes",
                "Free bytes where each quarantine backend puts new images (absent: unknown).",
                |s| s.free_bytes,
            ),
        ];
        for (name, help, get) in series {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (b, st) in &q {
                if let Some(v) = get(st) {
                    let _ = writeln!(out, "{name}{{backend=\"{}\"}} {v}", escape_label(b));
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_quarantine_backend_info The last health poll's answer of each quarantine backend.\n# TYPE pugmark_quarantine_backend_info gauge"
        );
        for (b, st) in &q {
            let _ = writeln!(
                out,
                "pugmark_quarantine_backend_info{{backend=\"{}\",detail=\"{}\"}} 1",
                escape_label(b),
                escape_label(&st.detail)
            );
        }
    }

    fn render_witnesses(&self, out: &mut String) {
        let w: Vec<(String, WitnessStat)> = match self.witnesses.lock() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return,
        };
        if w.is_empty() {
            return;
        }
        let now = Received::now().as_unix_nanos() as f64 / 1e9;
        let _ = writeln!(
            out,
            "# HELP pugmark_witness_cosigned_size Tree size of the last checkpoint each witness cosigned.\n# TYPE pugmark_witness_cosigned_size gauge"
        );
        for (n, s) in &w {
            let _ = writeln!(
                out,
                "pugmark_witness_cosigned_size{{witness=\"{}\"}} {}",
                escape_label(n),
                s.cosigned_size
            );
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_witness_last_cosign_age_seconds Seconds since each witness's last cosignature (absent before the first).\n# TYPE pugmark_witness_last_cosign_age_seconds gauge"
        );
        for (n, s) in w.iter().filter(|(_, s)| s.last_cosign_unix > 0.0) {
            let _ = writeln!(
                out,
                "pugmark_witness_last_cosign_age_seconds{{witness=\"{}\"}} {:.3}",
                escape_label(n),
                (now - s.last_cosign_unix).max(0.0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pugmark_witness_failures_total Checkpoint pushes to each witness that failed.\n# TYPE pugmark_witness_failures_total counter"
        );
        for (n, s) in &w {
            let _ = writeln!(
                out,
                "pugmark_witness_failures_total{{witness=\"{}\"}} {}",
                escape_label(n),
                s.failures
            );
        }
    }
}

pub(crate) fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `drops` column of /proc/net/udp (and udp6) for sockets bound to `port`.
fn udp_kernel_drops(port: u16) -> Option<u64> {
    let mut total = 0;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = cols.get(1) else { continue };
            let Some(p) = local.rsplit(':').next() else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                total += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_senders() {
        let m = Metrics::new();
        m.listener(Listener::Relp).messages.fetch_add(3, Relaxed);
        m.seen(
            Listener::Relp,
            "127.0.0.1",
            3,
            Received::from_stored(1_700_000_000_000_000_000),
        );
        m.seen(
            Listener::SyslogTls,
            "CN=a \"b\"",
            1,
            Received::from_stored(0),
        );
        let t = m.render();
        assert!(
            t.contains("pugmark_messages_total{listener=\"relp\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("pugmark_sender_last_seen_seconds{listener=\"relp\",sender=\"127.0.0.1\"} 1700000000.000\n"));
        assert!(t.contains("sender=\"CN=a \\\"b\\\"\""));
    }
}
