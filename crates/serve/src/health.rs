//! The store's health as the writer sees it: the faults met while appending (by kind),
//! whether the writer is retrying now, the last error; and whether serve is stopping (a
//! writer retrying a fault then gives up instead of holding the shutdown forever).
//!
//! Rendered into `/metrics` as `pugmark_store_faults_total{kind}`, `pugmark_store_retrying`,
//! `pugmark_store_recoveries_total`, `pugmark_store_refused_total`,
//! `pugmark_store_last_error_seconds{kind,error}` and `pugmark_views_stopped{error}`, which
//! `pugmark status` reads back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// What kind of resource an append error is about, from the OS error in its chain.
pub fn fault_kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // Linux errno values: std has no stable ErrorKind for EMFILE / ENFILE.
            return match io.raw_os_error() {
                Some(23 | 24) => "descriptors",
                Some(28) => "space",
                Some(122) => "quota",
                Some(5) => "io",
                Some(12) => "memory",
                _ => "io_other",
            };
        }
    }
    "other"
}

#[derive(Debug, Default)]
pub struct StoreHealth {
    faults: Mutex<BTreeMap<&'static str, u64>>,
    /// 1 while an append is being retried (listeners push back meanwhile; HTTP answers 503).
    pub retrying: AtomicBool,
    /// Times the store was made usable again after a fault.
    pub recoveries: AtomicU64,
    /// Submissions the store refused for what they contain (answered with the protocol's
    /// error; the writer went on).
    pub refused: AtomicU64,
    /// Set when serve stops: a retrying writer gives up (nothing it holds was acknowledged).
    pub stopping: AtomicBool,
    last_error: Mutex<Option<(f64, &'static str, String)>>,
    /// Why the views stopped while the ledger goes on (they catch up at the next start).
    views_stopped: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Count a fault of `kind` and remember it as the last error.
    pub fn fault(&self, kind: &'static str, error: &str) {
        if let Ok(mut f) = self.faults.lock() {
            *f.entry(kind).or_default() += 1;
        }
        let now = model::Received::now().as_unix_nanos() as f64 / 1e9;
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some((now, kind, error.to_string()));
        }
    }

    /// The views stopped (the store goes on with the ledger alone).
    pub fn views_stopped(&self, why: &str) {
        if let Ok(mut v) = self.views_stopped.lock()
            && v.is_none()
        {
            *v = Some(why.to_string());
        }
    }

    pub fn faults(&self, kind: &str) -> u64 {
        self.faults
            .lock()
            .ok()
            .and_then(|f| f.get(kind).copied())
            .unwrap_or(0)
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP pugmark_store_faults_total Ledger appends that failed for a resource (retried), by kind.\n# TYPE pugmark_store_faults_total counter"
        );
        if let Ok(f) = self.faults.lock() {
            for (k, n) in f.iter() {
                let _ = writeln!(out, "pugmark_store_faults_total{{kind=\"{k}\"}} {n}");
            }
        }
        for (name, kind, help, v) in [
            (
                "pugmark_store_retrying",
                "gauge",
                "1 while the writer retries a failed append (listeners push back meanwhile).",
                u64::from(self.retrying.load(Relaxed)),
            ),
            (
                "pugmark_store_recoveries_total",
                "counter",
                "Times the ledger was recovered and storage resumed after a fault.",
                self.recoveries.load(Relaxed),
            ),
            (
                "pugmark_store_refused_total",
                "counter",
                "Submissions the store refused for what they contain (the writer went on).",
                self.refused.load(Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        if let Ok(v) = self.views_stopped.lock()
            && let Some(why) = v.as_ref()
        {
            let why: String = why.chars().take(300).collect();
            let _ = writeln!(
                out,
                "# HELP pugmark_views_stopped 1 when the search views stopped while serving (the ledger goes on; they catch up at the next start).\n# TYPE pugmark_views_stopped gauge\npugmark_views_stopped{{error=\"{}\"}} 1",
                crate::metrics::escape_label(&why)
            );
        }
        if let Ok(l) = self.last_error.lock()
            && let Some((at, kind, e)) = l.as_ref()
        {
            let e: String = e.chars().take(300).collect();
            let _ = writeln!(
                out,
                "# HELP pugmark_store_last_error_seconds Unix time of the last store fault.\n# TYPE pugmark_store_last_error_seconds gauge\npugmark_store_last_error_seconds{{kind=\"{kind}\",error=\"{}\"}} {at:.3}",
                crate::metrics::escape_label(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_the_os_error_in_the_chain() {
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(28)).context("appending");
        assert_eq!(fault_kind(&e), "space");
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(24));
        assert_eq!(fault_kind(&e), "descriptors");
        assert_eq!(fault_kind(&anyhow::anyhow!("x")), "other");
        let h = StoreHealth::default();
        h.fault("space", "no \"room\"");
        let mut t = String::new();
        h.render(&mut t);
        assert!(
            t.contains("pugmark_store_faults_total{kind=\"space\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("error=\"no \\\"room\\\"\""), "{t}");
        assert!(t.contains("pugmark_store_retrying 0\n"), "{t}");
    }
}
