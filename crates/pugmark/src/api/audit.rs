//! The query audit (issue 14): every API query and every refusal is one ledger record, class
//! `audit.query` (decoded by `decode::audit`), observer `collector`, tamper-evident like the
//! evidence. Under `serve` it goes through the writer queue; under `pugmark ui` through the
//! ui's own pipeline; the answer is sent only once the record is durable.
//!
//! The record is an RFC 5424 line `<110>1 TIME - pugmark-audit - - - audit {JSON}` with JSON
//! `{"user", "subject", "issuer", "via", "role", "verb", "params", "status", "count", "vms",
//! "peer", "reason", "change"}` (`change`: only on a case change, `crate::cases`); `pugmark audit` and `GET /api/v1/audit` list them ([`list`]).

use std::collections::BTreeSet;

use anyhow::Context;
use jiff::Timestamp;
use ledger::LedgerReader;
use model::envelope::RecordEnvelope;
use serde::Serialize;
use serde_json::Value;
use views::search::SearchIndex;

use pipeline::datadir::DataDir;
use pipeline::{LedgerFetch, LedgerTail};

/// What one audit record says.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// The asker's name (`-` when no valid token was shown).
    pub user: String,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub via: Option<String>,
    /// `site`, `csirt`, `vo:NAME` (several VO roles space-separated), or none.
    pub role: Option<String>,
    pub verb: String,
    /// The query's parameters as asked (repeated names as lists).
    pub params: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// Results answered (hits, entries, findings, matches …).
    pub count: u64,
    /// The VMs the answer (or the refused answer) concerned.
    pub vms: BTreeSet<String>,
    pub peer: Option<String>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A change to a case (`crate::cases`: `{"op", "case", …}`), on the record of the request
    /// that made it: the case store is the fold of these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Value>,
}

impl Audit {
    /// The ledger record (observer `collector`, format syslog).
    pub fn record(&self) -> RecordEnvelope {
        let received = model::Received::now();
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        RecordEnvelope {
            received,
            observer: model::Observer::Collector,
            format: model::Format::Syslog,
            hints: model::DecodeHints::default(),
            origin: model::Origin::File {
                path: "<pugmark api>".into(),
                line: 0,
            },
            raw: format!(
                "<110>1 {} - {} - - - {}{json}",
                received.timestamp(),
                decode::audit::APP,
                decode::audit::PREFIX
            )
            .into_bytes(),
        }
    }
}

/// One listed audit record (`pugmark audit --json`: `{"audits": [...], "total"}`).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub audit: Value,
}

/// The audit records in `[from, to)` (placed time), of `user` (name or subject) if given,
/// oldest first.
pub fn list(
    dd: &DataDir,
    user: Option<&str>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> anyhow::Result<Vec<Listed>> {
    // The position of the index's snapshot (`snapshot_seq`), not the newest commit on disk,
    // so with the ledger scanned from it nothing is missed while a live indexer commits.
    let index = SearchIndex::open_or_create(dd.index())
        .with_context(|| format!("opening search index in {}", dd.index().display()))?;
    let indexed = index.snapshot_seq().unwrap_or(0);
    let reader = LedgerReader::open(&dd.ledger())
        .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
    let ledger_last = reader.len();
    let req = query::search::SearchRequest {
        query: "*".into(),
        from,
        to,
        host: None,
        app: Some(decode::audit::APP.into()),
        class: Some(model::EventClass::AuditQuery),
        fields: Vec::new(),
        limit: 1_000_000,
        count_only: false,
    };
    let mut tail = (indexed < ledger_last).then(|| LedgerTail::new(&reader, indexed, ledger_last));
    let mut fetch = LedgerFetch::new(reader);
    let outcome = query::search::run_with_tail(
        &index,
        &req,
        &mut fetch,
        tail.as_mut().map(|t| t as &mut dyn query::search::Tail),
    )?;
    let mut out = Vec::new();
    // A record the index committed while the ledger tail was being scanned is seen twice.
    let mut seen = BTreeSet::new();
    for h in outcome.hits {
        if !seen.insert(h.seq) {
            continue;
        }
        // Only pugmark's own records (the class is given only to observer collector).
        if h.event.observer != model::Observer::Collector {
            continue;
        }
        let Some(json) = h
            .event
            .message
            .trim_start()
            .strip_prefix(decode::audit::PREFIX)
        else {
            continue;
        };
        let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        if let Some(u) = user {
            let is = |k: &str| v.get(k).and_then(Value::as_str) == Some(u);
            if !(is("user") || is("subject")) {
                continue;
            }
        }
        out.push(Listed {
            seq: h.seq,
            time: h.event.placed().to_string(),
            audit: v,
        });
    }
    Ok(out)
}

/// The VMs an audit record lists.
pub fn vms_of(l: &Listed) -> Vec<&str> {
    l.audit
        .get("vms")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
