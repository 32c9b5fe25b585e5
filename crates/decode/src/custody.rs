//! Quarantine custody records (issue 13) inside syslog: program `pugmark-quarantine`, message
//! `custody {JSON}` (written by crate `quarantine`'s `custody::Record::syslog_line`, by
//! `pugmark quarantine` into its own ledger or by a hypervisor's hook through its rsyslog).
//!
//! Only records observed as `collector` (pugmark itself) or `hypervisor` (an authenticated
//! hypervisor's forwarder) become class `vm.custody`: anyone can send a syslog line with this
//! program name, and a VM's claim to have captured its own disk is worth nothing. Fields:
//! `vm_uuid`, `custody_step`, `custody_item`, `custody_source`, `custody_size`,
//! `custody_blake3`, `custody_sha256`, `custody_policy`, `custody_by`, `action` (= the step).
//! A record that does not parse stays `other` with a parse issue; nothing panics.

use model::{Event, EventClass, Observer};

/// The syslog program name of custody records.
pub const APP: &str = "pugmark-quarantine";
const PREFIX: &str = "custody ";

/// Set class and fields of a custody record (see the module docs); other events unchanged.
pub fn classify(ev: &mut Event) {
    let Some(v) = crate::text::own_json_record(
        ev,
        APP,
        PREFIX,
        "custody",
        |o| matches!(o, Observer::Collector | Observer::Hypervisor),
        "a custody record from pugmark or a hypervisor",
    ) else {
        return;
    };
    let text = |k: &str| crate::text::json_text(&v, k);
    if text("step").is_none() {
        return;
    }
    ev.class = EventClass::VmCustody;
    for (field, key) in [
        ("action", "step"),
        ("custody_step", "step"),
        ("vm_uuid", "vm_uuid"),
        ("custody_item", "item"),
        ("custody_source", "source"),
        ("custody_size", "size"),
        ("custody_blake3", "blake3"),
        ("custody_sha256", "sha256"),
        ("custody_policy", "policy"),
        ("custody_by", "by"),
        ("custody_keep_until", "keep_until"),
        ("project_id", "project"),
    ] {
        if let Some(val) = text(key) {
            let val = if field == "vm_uuid" {
                val.to_ascii_lowercase()
            } else {
                val
            };
            ev.fields.insert(field.to_string(), val);
        }
    }
}

/// A log line found on a quarantined disk (observer `image`): `pugmark quarantine inspect`
/// names the item and the VM in the origin (`ITEM:UUID@/var/log/secure`), which is pugmark's
/// own knowledge of whose disk it read (the line itself is the VM's, forgeable by its root).
/// That UUID becomes the `vm_uuid` field.
pub fn image_origin(ev: &mut Event, origin: &model::Origin) {
    let model::Origin::File { path, .. } = origin else {
        return;
    };
    let Some((head, _)) = path.split_once('@') else {
        return;
    };
    let Some((item, uuid)) = head.split_once(':') else {
        return;
    };
    if item.starts_with("q-") && !uuid.is_empty() && uuid.len() <= 64 {
        ev.fields.insert(
            model::fields::VM_UUID.to_string(),
            uuid.to_ascii_lowercase(),
        );
        ev.fields
            .insert("custody_item".to_string(), item.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::envelope::RecordEnvelope;
    use model::{DecodeHints, Format, Origin, Received};

    fn ev(observer: Observer, raw: &str) -> Event {
        crate::decode(&RecordEnvelope {
            received: Received::from_stored(1_700_000_000_000_000_000),
            observer,
            format: Format::Syslog,
            hints: DecodeHints::default(),
            origin: Origin::File {
                path: "<pugmark quarantine>".into(),
                line: 1,
            },
            raw: raw.as_bytes().to_vec(),
        })
    }

    const LINE: &str = "<110>1 2026-12-06T07:00:00Z hv1 pugmark-quarantine - custody - custody \
        {\"n\":2,\"step\":\"captured\",\"time\":\"2026-12-06T07:00:00Z\",\"host\":\"hv1\",\
        \"item\":\"q-1\",\"vm_uuid\":\"0F6C2E8A-1B2C-4D3E-8F90-A1B2C3D4E5F6\",\"size\":10,\
        \"sha256\":\"ab\"}";

    #[test]
    fn custody_from_pugmark_is_classified() {
        let e = ev(Observer::Collector, LINE);
        assert_eq!(e.class, EventClass::VmCustody);
        assert_eq!(
            e.field("vm_uuid"),
            Some("0f6c2e8a-1b2c-4d3e-8f90-a1b2c3d4e5f6")
        );
        assert_eq!(e.field("custody_step"), Some("captured"));
        assert_eq!(e.field("custody_size"), Some("10"));
    }

    #[test]
    fn custody_claimed_by_a_vm_is_not() {
        let e = ev(Observer::Vm, LINE);
        assert_eq!(e.class, EventClass::Other);
        assert!(e.issues.iter().any(|i| i.kind == "custody_untrusted"));
        let e = ev(
            Observer::Collector,
            "<110>1 2026-12-06T07:00:00Z hv1 pugmark-quarantine - custody - custody {oops",
        );
        assert_eq!(e.class, EventClass::Other);
        assert!(e.issues.iter().any(|i| i.kind == "bad_custody"));
    }
}
