//! Query audit records (issue 14) inside syslog: program `pugmark-audit`, message
//! `audit {JSON}`, written by the binary's query API (`crates/pugmark/src/api/audit.rs`) into
//! the ledger with observer `collector`: one record per API query, answered or refused.
//!
//! Only `collector` records become class `audit.query` (anyone can send a syslog line with
//! this program name; a VM's claim that someone queried it is worth nothing). Fields:
//! `audit_user`, `audit_subject`, `audit_issuer`, `audit_via`, `audit_role`, `audit_verb`,
//! `audit_status`, `audit_count`, `audit_vms` (space-separated VM ids the answer concerned).
//! No `vm_uuid` and no `user` field on purpose: an audit record is about a query, and must not
//! enter a VM's or a user's timeline as if it were their activity.
//! A record that does not parse stays `other` with a parse issue; nothing panics.

use model::{Event, EventClass, Observer};

/// The syslog program name of audit records.
pub const APP: &str = "pugmark-audit";
/// What the message starts with.
pub const PREFIX: &str = "audit ";

/// Set class and fields of an audit record (see the module docs); other events unchanged.
pub fn classify(ev: &mut Event) {
    let Some(v) = crate::text::own_json_record(
        ev,
        APP,
        PREFIX,
        "audit",
        |o| o == Observer::Collector,
        "an audit record from pugmark itself",
    ) else {
        return;
    };
    let text = |k: &str| crate::text::json_text(&v, k);
    if text("verb").is_none() {
        return;
    }
    ev.class = EventClass::AuditQuery;
    for (field, key) in [
        ("audit_user", "user"),
        ("audit_subject", "subject"),
        ("audit_issuer", "issuer"),
        ("audit_via", "via"),
        ("audit_role", "role"),
        ("audit_verb", "verb"),
        ("audit_status", "status"),
        ("audit_count", "count"),
    ] {
        if let Some(val) = text(key) {
            ev.fields.insert(field.to_string(), val);
        }
    }
    if let Some(serde_json::Value::Array(vms)) = v.get("vms") {
        let vms: Vec<&str> = vms.iter().filter_map(|x| x.as_str()).collect();
        if !vms.is_empty() {
            ev.fields.insert("audit_vms".into(), vms.join(" "));
        }
    }
}

#[cfg(test)]
mod tests {
    use model::envelope::RecordEnvelope;
    use model::{DecodeHints, EventClass, Format, Observer, Origin, Received};

    fn ev(observer: Observer, msg: &str) -> model::Event {
        crate::decode(&RecordEnvelope {
            received: Received::from_stored(1_700_000_000_000_000_000),
            observer,
            format: Format::Syslog,
            hints: DecodeHints::default(),
            origin: Origin::File {
                path: "<pugmark api>".into(),
                line: 1,
            },
            raw: format!("<110>1 2026-10-14T10:00:00Z - pugmark-audit - - - {msg}").into_bytes(),
        })
    }

    #[test]
    fn an_audit_record_from_pugmark_is_classed_with_its_fields() {
        let e = ev(
            Observer::Collector,
            r#"audit {"user":"alice","role":"vo:atlas","verb":"who","status":403,"count":0,"vms":["u1","u2"]}"#,
        );
        assert_eq!(e.class, EventClass::AuditQuery);
        assert_eq!(e.field("audit_user"), Some("alice"));
        assert_eq!(e.field("audit_status"), Some("403"));
        assert_eq!(e.field("audit_vms"), Some("u1 u2"));
        assert_eq!(e.field("user"), None);
    }

    #[test]
    fn a_vm_cannot_write_an_audit_record_and_bad_json_is_explained() {
        let e = ev(Observer::Vm, r#"audit {"user":"alice","verb":"who"}"#);
        assert_ne!(e.class, EventClass::AuditQuery);
        assert!(e.issues.iter().any(|i| i.kind == "audit_untrusted"));
        let e = ev(Observer::Collector, "audit {not json");
        assert_ne!(e.class, EventClass::AuditQuery);
        assert!(e.issues.iter().any(|i| i.kind == "bad_audit"));
    }
}
