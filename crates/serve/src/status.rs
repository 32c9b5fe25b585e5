//! `pugmark status`: read a running server's `/metrics` and summarise it — per listener
//! counts, and every sender with how long ago it was last heard from, so a sender that fell
//! silent stands out.
//!
//! A minimal HTTP/1.0 GET over a blocking `TcpStream` (loopback, one request) keeps the CLI
//! free of an async runtime and an HTTP client dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// GET `/metrics` from `addr`.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to pugmark serve's http listener at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP answer from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "{addr} answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

/// One sample: metric name, labels, value.
pub fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((lhs, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match lhs.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (lhs, BTreeMap::new()),
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut v = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        v.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => v.push(c),
            }
        }
        m.insert(k.trim_start_matches(',').to_string(), v);
        rest = &after[end..];
    }
    m
}

/// Render the status table. `now` is Unix seconds; senders silent for longer than
/// `silent_after` seconds are marked SILENT.
pub fn render(text: &str, now: f64, silent_after: f64) -> String {
    let s = samples(text);
    let mut per: BTreeMap<String, BTreeMap<&str, f64>> = BTreeMap::new();
    let mut senders = Vec::new();
    let mut ledger = BTreeMap::new();
    let mut witnesses: BTreeMap<String, (f64, Option<f64>, f64)> = BTreeMap::new();
    // Per quarantine backend: its numbers by short name, and its last health answer.
    let mut quarantine: BTreeMap<String, (BTreeMap<String, f64>, String)> = BTreeMap::new();
    for (name, labels, v) in &s {
        let short = name
            .trim_start_matches("pugmark_")
            .trim_end_matches("_total");
        match (name.as_str(), labels.get("listener")) {
            ("pugmark_sender_last_seen_seconds", Some(l)) => {
                let sender = labels.get("sender").cloned().unwrap_or_default();
                let n = s
                    .iter()
                    .find(|(n2, l2, _)| {
                        n2 == "pugmark_sender_messages_total"
                            && l2.get("listener") == Some(l)
                            && l2.get("sender") == Some(&sender)
                    })
                    .map_or(0.0, |x| x.2);
                // Who the sender map took it to be (absent from servers before the map).
                let who = s
                    .iter()
                    .find(|(n2, l2, _)| {
                        n2 == "pugmark_sender_info"
                            && l2.get("listener") == Some(l)
                            && l2.get("sender") == Some(&sender)
                    })
                    .map(|(_, l2, _)| {
                        format!(
                            "{} {}",
                            l2.get("observer").map_or("?", String::as_str),
                            l2.get("name").map_or("-", String::as_str)
                        )
                    })
                    .unwrap_or_default();
                senders.push((l.clone(), sender, who, *v, n));
            }
            ("pugmark_sender_messages_total" | "pugmark_sender_info", _) => {}
            (n, _) if n.starts_with("pugmark_quarantine_") => {
                let b = labels.get("backend").cloned().unwrap_or_default();
                let e = quarantine.entry(b).or_default();
                if n == "pugmark_quarantine_backend_info" {
                    e.1 = labels.get("detail").cloned().unwrap_or_default();
                } else {
                    e.0.insert(n.trim_start_matches("pugmark_quarantine_").to_string(), *v);
                }
            }
            (n, _) if n.starts_with("pugmark_witness_") => {
                let w = labels.get("witness").cloned().unwrap_or_default();
                let e = witnesses.entry(w).or_insert((0.0, None, 0.0));
                match n {
                    "pugmark_witness_cosigned_size" => e.0 = *v,
                    "pugmark_witness_last_cosign_age_seconds" => e.1 = Some(*v),
                    "pugmark_witness_failures_total" => e.2 = *v,
                    _ => {}
                }
            }
            (_, Some(l)) => {
                per.entry(l.clone()).or_default().insert(short, *v);
            }
            (_, None) => {
                ledger.insert(short.to_string(), *v);
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ledger: {} records in {} batches this run, last position #{}",
        ledger.get("ledger_records").copied().unwrap_or(0.0),
        ledger.get("ledger_batches").copied().unwrap_or(0.0),
        ledger.get("ledger_last_seq").copied().unwrap_or(0.0)
    );
    if let Some(&indexed) = ledger.get("index_last_seq") {
        let behind = (ledger.get("ledger_last_seq").copied().unwrap_or(0.0) - indexed).max(0.0);
        let _ = writeln!(
            out,
            "index: committed up to #{indexed}, {behind} records behind the ledger{}",
            if behind > 0.0 {
                " (search reads them from the ledger)"
            } else {
                ""
            }
        );
    }
    store_line(&s, &ledger, &mut out);
    for (w, (size, age, failures)) in &witnesses {
        let age = match age {
            Some(a) => format!("{a:.0} s ago"),
            None => "never".to_owned(),
        };
        let _ = writeln!(
            out,
            "witness {w}: cosigned tree size {size}, last cosignature {age}, {failures} failed pushes"
        );
    }
    for (b, (m, detail)) in &quarantine {
        let g = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let free = m
            .get("free_bytes")
            .map(|f| format!(", {f} bytes free"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "quarantine {b}: {} ({detail}), {} images ({} bytes) kept{free}, {} captures waiting for a retry ({} failed: storage down), {} health polls down, {} calls unanswered",
            if g("backend_up") > 0.0 { "up" } else { "DOWN" },
            g("images"),
            g("bytes"),
            g("captures_waiting"),
            g("capture_failures_total"),
            g("backend_down_polls_total"),
            g("backend_unavailable_total"),
        );
    }
    let _ = writeln!(
        out,
        "{:<12} {:>12} {:>14} {:>8} {:>8} {:>8} {:>6} {:>9} {:>8}",
        "listener", "messages", "bytes", "errors", "drops", "dups", "open", "tls-fail", "refused"
    );
    for (l, m) in &per {
        let g = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>14} {:>8} {:>8} {:>8} {:>6} {:>9} {:>8}",
            l,
            g("messages"),
            g("bytes"),
            g("parse_errors"),
            g("drops") + g("udp_kernel_drops"),
            g("duplicates"),
            g("connections_open"),
            g("tls_handshake_failures"),
            g("connections_refused") + g("rejected") + g("refused")
        );
    }
    if senders.is_empty() {
        let _ = writeln!(out, "senders: none yet");
    } else {
        let _ = writeln!(out, "senders (last heard; observer and sender-map name):");
        senders.sort_by(|a, b| b.3.total_cmp(&a.3));
        for (l, sender, who, t, n) in senders {
            let age = (now - t).max(0.0);
            let mark = if age > silent_after { "  SILENT" } else { "" };
            let _ = writeln!(
                out,
                "  {l:<12} {sender:<40} {who:<24} {n:>10} msgs  {age:>8.0} s ago{mark}"
            );
        }
    }
    out
}

/// The storage line: retrying a fault or not, faults by kind, the last error.
fn store_line(
    s: &[(String, BTreeMap<String, String>, f64)],
    ledger: &BTreeMap<String, f64>,
    out: &mut String,
) {
    let retrying = ledger.get("store_retrying").copied().unwrap_or(0.0) > 0.0;
    let faults: Vec<String> = s
        .iter()
        .filter(|(n, _, _)| n == "pugmark_store_faults_total")
        .map(|(_, l, v)| format!("{} {v}", l.get("kind").map_or("?", |k| k.as_str())))
        .collect();
    let _ = writeln!(
        out,
        "storage: {}; faults: {}; recoveries {}, submissions refused {}",
        if retrying {
            "RETRYING a fault (listeners pushed back)"
        } else {
            "ok"
        },
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(", ")
        },
        ledger.get("store_recoveries").copied().unwrap_or(0.0),
        ledger.get("store_refused").copied().unwrap_or(0.0),
    );
    if let Some((_, l, _)) = s
        .iter()
        .find(|(n, _, _)| n == "pugmark_store_last_error_seconds")
    {
        let _ = writeln!(
            out,
            "  last store error ({}): {}",
            l.get("kind").map_or("?", |k| k.as_str()),
            l.get("error").map_or("", |e| e.as_str())
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_shows_a_store_retrying_a_fault() {
        use std::sync::atomic::Ordering::Relaxed;
        let m = crate::metrics::Metrics::new();
        let out = render(&m.render(), 0.0, 600.0);
        assert!(out.contains("storage: ok; faults: none"), "{out}");
        m.store
            .fault("space", "ledger i/o error: No space left on device");
        m.store.retrying.store(true, Relaxed);
        let out = render(&m.render(), 0.0, 600.0);
        let line = out.lines().find(|l| l.starts_with("storage:")).unwrap();
        assert!(
            line.contains("RETRYING") && line.contains("space 1"),
            "{line}"
        );
        assert!(out.contains("No space left on device"), "{out}");
    }

    use super::*;

    #[test]
    fn status_shows_a_quarantine_backend_down() {
        let m = crate::metrics::Metrics::new();
        assert!(!render(&m.render(), 0.0, 600.0).contains("quarantine"));
        m.quarantine.lock().unwrap().insert(
            "rbd".into(),
            crate::metrics::QuarantineStat {
                up: false,
                detail: "unavailable: \"ceph health\" timed out".into(),
                images: 2,
                bytes: 4096,
                down_polls: 3,
                unavailable: 7,
                captures_waiting: 1,
                capture_failures: 1,
                ..Default::default()
            },
        );
        let t = m.render();
        assert!(
            t.contains("pugmark_quarantine_backend_up{backend=\"rbd\"} 0\n"),
            "{t}"
        );
        assert!(!t.contains("pugmark_quarantine_free_bytes{"), "{t}");
        let out = render(&t, 0.0, 600.0);
        let line = out
            .lines()
            .find(|l| l.starts_with("quarantine rbd:"))
            .unwrap();
        assert_eq!(
            line,
            "quarantine rbd: DOWN (unavailable: \"ceph health\" timed out), 2 images (4096 bytes) kept, 1 captures waiting for a retry (1 failed: storage down), 3 health polls down, 7 calls unanswered"
        );
    }

    #[test]
    fn status_marks_silent_senders() {
        let m = crate::metrics::Metrics::new();
        use crate::metrics::Listener;
        m.seen(
            Listener::Relp,
            "10.0.0.1",
            5,
            model::Received::from_stored(1_000_000_000_000),
        );
        m.seen(
            Listener::SyslogTls,
            "CN=vm2,O=x",
            2,
            model::Received::from_stored(1_900_000_000_000),
        );
        m.seen_as(
            Listener::SyslogTls,
            "CN=hv01",
            &crate::senders::Mapped {
                observer: model::Observer::Hypervisor,
                name: Some("hv01".into()),
            },
            1,
            model::Received::from_stored(1_900_000_000_000),
        );
        let out = render(&m.render(), 2000.0, 600.0);
        assert!(out.contains("10.0.0.1"), "{out}");
        let line = out.lines().find(|l| l.contains("CN=hv01")).unwrap();
        assert!(line.contains("hypervisor hv01"), "{line}");
        let line = out.lines().find(|l| l.contains("10.0.0.1")).unwrap();
        assert!(line.ends_with("SILENT"), "{line}");
        let line = out.lines().find(|l| l.contains("CN=vm2,O=x")).unwrap();
        assert!(!line.contains("SILENT"), "{line}");
    }

    #[test]
    fn status_shows_how_far_the_index_trails_the_ledger() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let m = crate::metrics::Metrics::new();
        // Without a store that reports an index position, no index line.
        assert!(!render(&m.render(), 0.0, 600.0).contains("index:"));
        m.ledger_last_seq.store(1500, Relaxed);
        let pos = Arc::new(AtomicU64::new(1000));
        m.index_last_seq.set(pos.clone()).unwrap();
        let out = render(&m.render(), 0.0, 600.0);
        let line = out.lines().find(|l| l.starts_with("index:")).unwrap();
        assert!(line.contains("#1000, 500 records behind"), "{line}");
        pos.store(1500, Relaxed);
        let out = render(&m.render(), 0.0, 600.0);
        let line = out.lines().find(|l| l.starts_with("index:")).unwrap();
        assert!(
            line.contains("0 records behind the ledger") && !line.contains("search reads"),
            "{line}"
        );
    }
}
