//! Exports to the tools sites already use (issue 14): `search` hits and `timeline` entries
//! as CSV, JSON Lines or Timesketch JSONL, with pugmark's own field names or with Elastic
//! Common Schema names (`--fields ecs`).
//!
//! **Native names.** A row is the record's `--json` object flattened one level: every key
//! of the hit (or timeline entry) is a column; strings, numbers and booleans are written as
//! text, `null` as an empty cell, objects and arrays as compact JSON. So a CSV read back by
//! any CSV parser gives the `--json` hits again, key by key (`tests/exports.rs` holds the
//! two against each other with Python's `csv`). A timeline row also carries `fields` (the
//! record's normalised fields) for its events.
//!
//! **ECS names** ([`ecs_doc`]): `@timestamp` (where pugmark places the record), `event.*`
//! (`sequence` = the ledger seq, `category`/`type` from the class, `action`, `provider` =
//! the decoder, `ingested` = received, `original` = the bytes when UTF-8), `observer.type`
//! (cloud, hypervisor, network, vm, vo, collector), `source.*`/`destination.*`/
//! `network.transport`, `user.*`, `host.name`, `process.*`, `cloud.instance.*`,
//! `cloud.project.*`, `related.ip`; every other normalised field as `labels.NAME` (ECS's
//! place for custom keyword pairs). The names are checked against ECS's generated field
//! list in the tests (`tests/data/ecs/`, with its provenance).
//!
//! **Timesketch** ([`timesketch_doc`]): one JSON object per line with the fields Timesketch's
//! importer requires (`message`, `datetime` in ISO 8601 with offset, `timestamp_desc`) plus
//! `timestamp` (microseconds, as Timesketch's own server derives it) and the record's fields
//! flat (native or ECS names). Names Timesketch reserves or parses (`_id`, `_index`,
//! `_source`, `_type`, `__ts_timeline_id`, `tag`) are never emitted as field names.

use std::collections::BTreeMap;
use std::io::Write;

use jiff::Timestamp;
use model::{Event, EventClass};
use serde_json::{Map, Value, json};

use crate::search::{Hit, HitJson};
use crate::timeline::Entry;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Timesketch,
}

/// `--fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Names {
    #[default]
    Native,
    Ecs,
}

/// One exported record: its `--json` object (native), plus the decoded event behind it
/// when there is one (ECS and Timesketch read its fields).
pub struct Row<'a> {
    pub native: Map<String, Value>,
    pub event: Option<&'a Event>,
    pub seq: u64,
    /// Where pugmark places it (the `time` of the JSON).
    pub time: Option<Timestamp>,
    /// The one-line text a human reads (search: the message with host and app; timeline:
    /// the entry's summary).
    pub message: String,
    /// What that time is (Timesketch's `timestamp_desc`).
    pub time_desc: &'static str,
    /// The VM the record is attributed to, when known (timeline).
    pub vm: Option<String>,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    }
}

/// What an event's placed time is, for Timesketch's `timestamp_desc`.
fn time_desc(e: &Event) -> &'static str {
    let placed = e.placed();
    if e.collected() == Some(placed) {
        "Collected by the site"
    } else if e.reported.time == Some(placed) {
        "Reported by the source"
    } else {
        "Imported"
    }
}

fn one_line(e: &Event) -> String {
    match (&e.host, &e.app) {
        (Some(h), Some(a)) => format!("{h} {a}: {}", e.message),
        (Some(h), None) => format!("{h}: {}", e.message),
        (None, Some(a)) => format!("{a}: {}", e.message),
        (None, None) => e.message.clone(),
    }
}

/// Rows of `search` hits (the same objects `search --json` lists).
pub fn search_rows(hits: &[Hit]) -> anyhow::Result<Vec<Row<'_>>> {
    hits.iter()
        .map(|h| {
            Ok(Row {
                native: object(serde_json::to_value(HitJson::new(h))?),
                event: Some(&h.event),
                // The ledger position cited (a derived flow's datagram), as the JSON's `seq`.
                seq: crate::cite::of(h.seq, &h.event).map_or(h.seq, |c| c.seq),
                time: Some(h.event.placed()),
                message: one_line(&h.event),
                time_desc: time_desc(&h.event),
                vm: None,
            })
        })
        .collect()
}

/// Rows of `timeline` entries (the `entries` of `timeline --json`, plus `fields`).
pub fn timeline_rows(entries: &[Entry]) -> anyhow::Result<Vec<Row<'_>>> {
    entries
        .iter()
        .map(|e| {
            let mut native = object(serde_json::to_value(e)?);
            let fields = e
                .event
                .as_ref()
                .map(|ev| serde_json::to_value(&ev.fields))
                .transpose()?
                .unwrap_or_else(|| json!({}));
            native.insert("fields".into(), fields);
            Ok(Row {
                native,
                event: e.event.as_deref(),
                seq: e.seq,
                time: e.time.parse().ok(),
                message: e.summary.clone(),
                time_desc: match &e.event {
                    Some(ev) => time_desc(ev),
                    None => "Derived from the cloud's records",
                },
                vm: e.attribution.as_ref().and_then(|a| a.vm.clone()),
            })
        })
        .collect()
}

/// ECS `event.category` (and `event.type`) of a class; `None` where no ECS category fits.
pub fn ecs_category(c: EventClass) -> Option<(&'static str, &'static str)> {
    Some(match c {
        EventClass::AuthLogin => ("authentication", "start"),
        EventClass::AuthFailure => ("authentication", "denied"),
        EventClass::AuthIdentityChange => ("iam", "change"),
        EventClass::AuthSession => ("session", "info"),
        EventClass::NetConnection => ("network", "connection"),
        EventClass::NetFlow => ("network", "connection"),
        EventClass::VmLifecycle => ("host", "change"),
        EventClass::JobRun => ("process", "info"),
        EventClass::IdentityDirectory => ("iam", "info"),
        EventClass::VmCustody => ("host", "info"),
        // A query to pugmark's HTTP API, answered or refused (issue 14).
        EventClass::AuditQuery => ("api", "access"),
        EventClass::Other => return None,
    })
}

/// Normalised field → ECS field, and whether the value is a number there.
pub const ECS_FIELDS: &[(&str, &str, bool)] = &[
    ("src_ip", "source.ip", false),
    ("src_port", "source.port", true),
    ("dst_ip", "destination.ip", false),
    ("dst_port", "destination.port", true),
    ("proto", "network.transport", false),
    ("user", "user.name", false),
    ("user_id", "user.id", false),
    ("user_name", "user.full_name", false),
    ("email", "user.email", false),
    ("to_user", "user.target.name", false),
    ("from_user", "user.effective.name", false),
    ("vm_uuid", "cloud.instance.id", false),
    ("vm_name", "cloud.instance.name", false),
    ("project_id", "cloud.project.id", false),
    ("project_name", "cloud.project.name", false),
    ("command", "process.command_line", false),
    ("outcome", "event.outcome", false),
    ("action", "event.action", false),
    ("bytes", "network.bytes", true),
    ("packets", "network.packets", true),
    ("in_if", "observer.ingress.interface.name", false),
    ("out_if", "observer.egress.interface.name", false),
    ("job_id", "process.entity_id", false),
    ("service", "service.name", false),
    ("method", "event.reason", false),
];

fn put(doc: &mut BTreeMap<String, Value>, k: &str, v: Value) {
    if !v.is_null() {
        doc.insert(k.to_string(), v);
    }
}

/// The ECS document of a row, flat (dotted names), sorted by name.
pub fn ecs_doc(r: &Row<'_>) -> BTreeMap<String, Value> {
    let mut d = BTreeMap::new();
    put(
        &mut d,
        "@timestamp",
        r.time.map_or(Value::Null, |t| json!(t.to_string())),
    );
    put(&mut d, "event.sequence", json!(r.seq));
    put(&mut d, "message", json!(r.message));
    if let Some(vm) = &r.vm {
        put(&mut d, "cloud.instance.id", json!(vm));
    }
    // Timeline facts: what the native row says, under ECS/label names.
    if r.event.is_none() {
        for (k, to) in [
            ("observer", "observer.type"),
            ("kind", "event.kind"),
            ("source", "event.provider"),
        ] {
            if let Some(v) = r.native.get(k) {
                put(&mut d, to, v.clone());
            }
        }
        // A derived interval, ECS's `state` kind is the closest ("state of something at a
        // moment"); `event` stays for records.
        d.insert("event.kind".into(), json!("state"));
        return d;
    }
    let Some(e) = r.event else { return d };
    d.insert("event.kind".into(), json!("event"));
    put(&mut d, "observer.type", json!(e.observer.to_string()));
    put(&mut d, "event.provider", json!(e.source_kind));
    put(
        &mut d,
        "event.ingested",
        json!(e.received.timestamp().to_string()),
    );
    if let Some(t) = e.reported.time {
        put(&mut d, "event.created", json!(t.to_string()));
    }
    if let Ok(raw) = std::str::from_utf8(&e.raw) {
        put(&mut d, "event.original", json!(raw));
    }
    if let Some((cat, ty)) = ecs_category(e.class) {
        d.insert("event.category".into(), json!([cat]));
        d.insert("event.type".into(), json!([ty]));
    }
    put(&mut d, "labels.class", json!(e.class.to_string()));
    if let Some(h) = &e.host {
        put(&mut d, "host.name", json!(h));
    }
    if let Some(a) = &e.app {
        put(&mut d, "process.name", json!(a));
    }
    if let Some(p) = &e.pid {
        match p.parse::<u64>() {
            Ok(n) => put(&mut d, "process.pid", json!(n)),
            Err(_) => put(&mut d, "labels.pid", json!(p)),
        }
    }
    if let Some(s) = e.severity {
        put(&mut d, "log.syslog.severity.code", json!(s));
    }
    if let Some(f) = e.facility {
        put(&mut d, "log.syslog.facility.code", json!(f));
    }
    if !e.ips.is_empty() {
        let ips: Vec<String> = e.ips.iter().map(ToString::to_string).collect();
        d.insert("related.ip".into(), json!(ips));
    }
    for (k, v) in &e.fields {
        match ECS_FIELDS.iter().find(|(from, _, _)| from == k) {
            Some((_, to, numeric)) => {
                let value = match (numeric, v.parse::<u64>()) {
                    (true, Ok(n)) => json!(n),
                    _ => json!(v),
                };
                // A field the row already set (the attributed VM) is not overwritten.
                d.entry((*to).to_string()).or_insert(value);
            }
            None => {
                // ECS labels are keyword pairs whose keys hold no dots.
                let key: String = k
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                d.entry(format!("labels.{key}")).or_insert(json!(v));
            }
        }
    }
    d
}

/// Names Timesketch reserves, parses or sets itself: never emitted as a field name.
pub const TIMESKETCH_RESERVED: &[&str] = &[
    "message",
    "datetime",
    "timestamp",
    "timestamp_desc",
    "tag",
    "_id",
    "_type",
    "_index",
    "_source",
    "__ts_timeline_id",
];

/// ISO 8601 with an explicit UTC offset and microseconds, as Timesketch writes it.
pub fn iso8601(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The Timesketch JSONL object of a row.
pub fn timesketch_doc(r: &Row<'_>, names: Names) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("message".into(), json!(r.message));
    if let Some(t) = r.time {
        d.insert("datetime".into(), json!(iso8601(t)));
        d.insert("timestamp".into(), json!(t.as_microsecond()));
    }
    d.insert("timestamp_desc".into(), json!(r.time_desc));
    let mut add = |k: &str, v: Value| {
        if v.is_null() {
            return;
        }
        let k = if TIMESKETCH_RESERVED.contains(&k) {
            format!("pugmark_{k}")
        } else {
            k.to_string()
        };
        d.entry(k).or_insert(v);
    };
    match names {
        Names::Ecs => {
            // ECS's `message` is the row's message, already Timesketch's.
            for (k, v) in ecs_doc(r).into_iter().filter(|(k, _)| k != "message") {
                add(&k, v);
            }
        }
        Names::Native => {
            for (k, v) in &r.native {
                match (k.as_str(), v) {
                    // The record's fields flat, so Timesketch can search `src_ip:…`.
                    ("fields", Value::Object(m)) => {
                        for (fk, fv) in m {
                            add(fk, fv.clone());
                        }
                    }
                    (_, Value::Object(_) | Value::Array(_)) => add(k, json!(v.to_string())),
                    _ => add(k, v.clone()),
                }
            }
        }
    }
    d
}

/// Cell text of a value: scalars as text, `null` empty, objects and arrays compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The first columns of an ECS CSV, always present; the other ECS names any row has follow,
/// sorted.
pub const ECS_CSV_COLUMNS: &[&str] = &[
    "@timestamp",
    "event.sequence",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.provider",
    "event.ingested",
    "event.created",
    "observer.type",
    "host.name",
    "process.name",
    "process.pid",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "network.transport",
    "user.name",
    "user.id",
    "cloud.instance.id",
    "cloud.project.id",
    "related.ip",
    "message",
];

/// Write `rows` to `out` in `format` with `names`.
pub fn write(
    out: &mut dyn Write,
    rows: &[Row<'_>],
    format: Format,
    names: Names,
) -> anyhow::Result<()> {
    match format {
        Format::Timesketch => {
            for r in rows {
                serde_json::to_writer(&mut *out, &timesketch_doc(r, names))?;
                out.write_all(b"\n")?;
            }
        }
        Format::Jsonl => {
            for r in rows {
                match names {
                    Names::Native => serde_json::to_writer(&mut *out, &r.native)?,
                    Names::Ecs => serde_json::to_writer(&mut *out, &nested(ecs_doc(r)))?,
                }
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            match names {
                Names::Native => {
                    // Every key any row has, in order of first appearance (timeline entries
                    // differ: facts have no attribution, connections have endpoints).
                    let mut header: Vec<String> = Vec::new();
                    let mut seen = std::collections::BTreeSet::new();
                    for r in rows {
                        for k in r.native.keys() {
                            if seen.insert(k.clone()) {
                                header.push(k.clone());
                            }
                        }
                    }
                    // No record: an empty file (the columns come from the records).
                    if !header.is_empty() {
                        w.write_record(&header)?;
                    }
                    for r in rows {
                        w.write_record(
                            header
                                .iter()
                                .map(|k| r.native.get(k).map(cell).unwrap_or_default()),
                        )?;
                    }
                }
                Names::Ecs => {
                    // The fixed columns, then every other ECS name any row has (sorted): each
                    // column is one ECS field, `labels.*` included.
                    let docs: Vec<BTreeMap<String, Value>> = rows.iter().map(ecs_doc).collect();
                    let mut header: Vec<String> =
                        ECS_CSV_COLUMNS.iter().map(|c| (*c).to_string()).collect();
                    let extra: std::collections::BTreeSet<&String> = docs
                        .iter()
                        .flat_map(|d| d.keys())
                        .filter(|k| !ECS_CSV_COLUMNS.contains(&k.as_str()))
                        .collect();
                    header.extend(extra.into_iter().cloned());
                    w.write_record(&header)?;
                    for d in &docs {
                        w.write_record(
                            header
                                .iter()
                                .map(|c| d.get(c).map(cell).unwrap_or_default()),
                        )?;
                    }
                }
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// Dotted names as nested objects (an ECS document as Elasticsearch stores it).
pub fn nested(flat: BTreeMap<String, Value>) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[&str], v: Value) {
        match path {
            [] => {}
            [last] => {
                node.insert((*last).to_string(), v);
            }
            [first, rest @ ..] => {
                let entry = node
                    .entry((*first).to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    // A scalar already sits where an object is needed: keep it under
                    // `value` (cannot happen with the names above; defensive).
                    let old = entry.take();
                    *entry = json!({ "value": old });
                }
                if let Value::Object(m) = entry {
                    insert(m, rest, v);
                }
            }
        }
    }
    let mut root = Map::new();
    for (k, v) in flat {
        let parts: Vec<&str> = k.split('.').collect();
        insert(&mut root, &parts, v);
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_builds_objects_from_dotted_names() {
        let mut m = BTreeMap::new();
        m.insert("source.ip".to_string(), json!("10.0.0.1"));
        m.insert("source.port".to_string(), json!(22));
        m.insert("@timestamp".to_string(), json!("t"));
        assert_eq!(
            nested(m),
            json!({"@timestamp": "t", "source": {"ip": "10.0.0.1", "port": 22}})
        );
    }

    #[test]
    fn cells_round_trip_scalars_and_json() {
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!("a,b")), "a,b");
        assert_eq!(cell(&json!({"k": [1]})), "{\"k\":[1]}");
    }

    #[test]
    fn iso8601_has_offset_and_microseconds() {
        let t: Timestamp = "2026-10-14T05:30:31.5Z".parse().unwrap();
        assert_eq!(iso8601(t), "2026-10-14T05:30:31.500000+00:00");
    }
}
