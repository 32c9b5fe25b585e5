//! One OpenStack notification (one JSON document per record) → an Event.
//!
//! Shapes understood: the versioned nova notification (`event_type`, `publisher_id`,
//! `priority`, `timestamp`, `message_id`, and a `payload` that is a nova object:
//! `nova_object.name` + `nova_object.data`), the legacy unversioned one (`compute.instance.*`
//! with a flat payload: `instance_id`, `hostname`, `fixed_ips`, `image_ref_url`, …), either of
//! them bare or wrapped in the oslo.messaging envelope
//! (`{"oslo.version": "2.0", "oslo.message": "<the message as a JSON string>"}`).
//!
//! Neutron's legacy notifications (`port.*`, `floatingip.*`, `router.*`) come in the same
//! envelopes and are decoded by [`super::neutron`].
//!
//! Output: `instance.*` / `compute.instance.*` events are class `vm.lifecycle` with the
//! instance fields of [`model::fields`] (VM_UUID, VM_NAME, VM_HOSTNAME, HYPERVISOR = payload
//! `host`, NODE, IMAGE, USER_ID / PROJECT_ID = the owner, STATE, VM_IPS / VM_MACS aligned,
//! REQUEST_ID, MESSAGE_ID, EVENT_TYPE) plus `action` (the verb, legacy spelling normalised to
//! the versioned one: `live_migration._post` → `live_migration_post`), `phase`
//! (`start`/`end`/`error` when the type has one), the payload times (`created_at`,
//! `launched_at`, `deleted_at`, `terminated_at`, versioned `updated_at`), `old_state`, `task_state`, `power_state`,
//! `vm_ports` / `vm_devices` (aligned with VM_IPS), legacy `vm_floating_ips`, the actor
//! (`actor_user_id` / `actor_project_id` from `action_initiator_*` or the oslo `_context_*`
//! keys: who asked, as opposed to who owns) and `old_host` / `new_host` where the payload says
//! the instance moves (a `migration` object, or the host of `live_migration_post_dest.end` and
//! `evacuate`, which nova sends after the instance's host changed). `host`/`app` are the
//! publisher's host and service (`nova-compute:compute-1`, legacy `compute.compute-1`),
//! `severity` is the priority's syslog code, the reported time is the message's `timestamp`
//! (UTC), else a payload time. Other event types are class `other` with the same envelope
//! fields. Bad input (not JSON, not an object, a field of the wrong type, an instance event
//! without uuid, an unknown instance verb, an oslo version other than 2.0) gives issues, never
//! a panic; the raw bytes are not touched.

use std::net::IpAddr;

use jiff::tz::TimeZone;
use model::fields;
use model::{DecodeHints, Event, EventClass, ParseIssue, Reported};
use serde_json::{Map, Value};

use super::{json_object, key_offset};
use crate::syslog::timestamp::{self, Stamp};
use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "openstack-notification";

type Object = Map<String, Value>;

/// Instance verbs nova sends (versioned samples and legacy `compute.instance.*` names after
/// normalisation). Others still decode, with an `unknown_event_type` issue to count them.
const KNOWN_VERBS: &[&str] = &[
    "create",
    "create_ip",
    "delete",
    "delete_ip",
    "evacuate",
    "exists",
    "finish_resize",
    "interface_attach",
    "interface_detach",
    "live_migration_abort",
    "live_migration_force_complete",
    "live_migration_post",
    "live_migration_post_dest",
    "live_migration_pre",
    "live_migration_rollback",
    "live_migration_rollback_dest",
    "lock",
    "pause",
    "power_off",
    "power_on",
    "reboot",
    "rebuild",
    "rebuild_scheduled",
    "rescue",
    "resize",
    "resize_confirm",
    "resize_finish",
    "resize_prep",
    "resize_revert",
    "restore",
    "resume",
    "share_attach",
    "share_detach",
    "shelve",
    "shelve_offload",
    "shutdown",
    "snapshot",
    "soft_delete",
    "suspend",
    "trigger_crash_dump",
    "unlock",
    "unpause",
    "unrescue",
    "unshelve",
    "update",
    "volume_attach",
    "volume_detach",
    "volume_swap",
];

/// Fill `ev` from one notification. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse(ev, &raw);
    ev.raw = raw;
}

fn parse(ev: &mut Event, raw: &[u8]) {
    ev.source_kind = KIND.to_string();
    let body = strip_terminators(raw);
    let Some(top) = json_object(ev, raw, body, "a notification") else {
        ev.message = lossy(body);
        return;
    };
    let msg = if let Some(inner) = top.get("oslo.message") {
        match top.get("oslo.version") {
            Some(Value::String(v)) if v == "2.0" => {}
            _ => issue(
                ev,
                raw,
                key_offset(raw, "oslo.version"),
                "unknown_version",
                "oslo.version \"2.0\"",
            ),
        }
        let at = key_offset(raw, "oslo.message");
        let Value::String(text) = inner else {
            issue(ev, raw, at, "wrong_type", "oslo.message as a JSON string");
            ev.message = lossy(body);
            return;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                issue(
                    ev,
                    raw,
                    at,
                    "not_object",
                    "oslo.message holding a JSON object",
                );
                ev.message = text.clone();
                return;
            }
            Err(e) => {
                let expected = format!("oslo.message holding a notification: {e}");
                issue(ev, raw, at, "bad_json", &expected);
                ev.message = text.clone();
                return;
            }
        }
    } else {
        top
    };
    notification(ev, raw, &msg);
}

pub(super) fn issue(ev: &mut Event, raw: &[u8], offset: usize, kind: &str, expected: &str) {
    ev.issues.push(ParseIssue::new(raw, offset, kind, expected));
}

/// A string value at `obj[key]`: None when absent, null or empty; an issue when not a string.
pub(super) fn text(
    ev: &mut Event,
    raw: &[u8],
    obj: &Object,
    key: &str,
    path: &str,
) -> Option<String> {
    match obj.get(key)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        _ => {
            let expected = format!("a string for {path}{key}");
            issue(ev, raw, key_offset(raw, key), "wrong_type", &expected);
            None
        }
    }
}

/// Copy `obj[key]` into field `name` when it is a non-empty string.
fn copy(ev: &mut Event, raw: &[u8], obj: &Object, key: &str, name: &str, path: &str) {
    if let Some(v) = text(ev, raw, obj, key, path) {
        ev.fields.insert(name.to_string(), v);
    }
}

/// The data of a nova object (`{"nova_object.data": {…}}`), or the object itself when flat.
fn nova_data(obj: &Object) -> &Object {
    match obj.get("nova_object.data") {
        Some(Value::Object(d)) => d,
        _ => obj,
    }
}

fn notification(ev: &mut Event, raw: &[u8], msg: &Object) {
    let event_type = text(ev, raw, msg, "event_type", "");
    let Some(event_type) = event_type else {
        issue(
            ev,
            raw,
            key_offset(raw, "event_type"),
            "missing_field",
            "event_type (a string)",
        );
        ev.message = lossy(strip_terminators(raw));
        return;
    };
    ev.fields
        .insert(fields::EVENT_TYPE.to_string(), event_type.clone());
    if let Some(publisher) = text(ev, raw, msg, "publisher_id", "") {
        let split = publisher
            .split_once(':')
            .or_else(|| publisher.split_once('.'));
        match split {
            Some((service, host)) => {
                ev.app = Some(service.to_string());
                if !host.is_empty() {
                    ev.host = Some(host.to_string());
                }
            }
            None => ev.app = Some(publisher),
        }
    }
    if let Some(priority) = text(ev, raw, msg, "priority", "") {
        ev.severity = severity(&priority);
    }
    copy(ev, raw, msg, "message_id", fields::MESSAGE_ID, "");
    if !ev.fields.contains_key(fields::MESSAGE_ID) {
        copy(ev, raw, msg, "_unique_id", fields::MESSAGE_ID, "");
    }
    copy(ev, raw, msg, "_context_request_id", fields::REQUEST_ID, "");
    copy(ev, raw, msg, "_context_user_id", "actor_user_id", "");
    copy(ev, raw, msg, "_context_project_id", "actor_project_id", "");
    if let Some(ts) = text(ev, raw, msg, "timestamp", "") {
        reported(ev, raw, "timestamp", &ts);
    }

    let (instance, legacy) = if let Some(rest) = event_type.strip_prefix("instance.") {
        (Some(rest), false)
    } else if let Some(rest) = event_type.strip_prefix("compute.instance.") {
        (Some(rest), true)
    } else {
        (None, false)
    };
    let payload = match msg.get("payload") {
        Some(Value::Object(p)) => Some(p),
        Some(Value::Null) | None => None,
        Some(_) => {
            issue(
                ev,
                raw,
                key_offset(raw, "payload"),
                "wrong_type",
                "payload as a JSON object",
            );
            None
        }
    };
    if instance.is_none() && super::neutron::decode(ev, raw, &event_type, payload) {
        return;
    }
    let Some(rest) = instance else {
        ev.message = event_type;
        if let Some(p) = payload
            && let Some(Value::String(name)) = p.get("nova_object.name")
        {
            ev.fields.insert("payload_class".to_string(), name.clone());
        }
        return;
    };
    ev.class = EventClass::VmLifecycle;
    let (verb, phase) = split_type(rest);
    if !KNOWN_VERBS.contains(&verb.as_str()) {
        let expected = format!("a known instance event type, not {event_type:?}");
        issue(
            ev,
            raw,
            key_offset(raw, "event_type"),
            "unknown_event_type",
            &expected,
        );
    }
    ev.fields.insert(fields::ACTION.to_string(), verb.clone());
    if let Some(phase) = phase {
        ev.fields.insert("phase".to_string(), phase.to_string());
    }
    let Some(payload) = payload else {
        issue(ev, raw, 0, "missing_field", "payload (a JSON object)");
        ev.message = event_type;
        return;
    };
    if let Some(Value::String(name)) = payload.get("nova_object.name") {
        ev.fields.insert("payload_class".to_string(), name.clone());
    }
    // Nova's instance payloads are at major version 1 or 2 (InstanceExistsPayload 2.1 in the
    // samples); a later major may move or rename what we read, so the event is kept and
    // flagged (and the fact store takes no facts from it).
    if let Some(Value::String(v)) = payload.get("nova_object.version")
        && !matches!(v.split('.').next(), Some("1" | "2"))
    {
        let expected = format!("payload nova_object.version 1.x or 2.x, not {v:?}");
        issue(
            ev,
            raw,
            key_offset(raw, "nova_object.version"),
            "unknown_version",
            &expected,
        );
    }
    let data = nova_data(payload);
    if legacy {
        legacy_payload(ev, raw, data);
    } else {
        versioned_payload(ev, raw, data);
    }
    if !ev.fields.contains_key(fields::VM_UUID) {
        let key = if legacy { "instance_id" } else { "uuid" };
        let expected = format!("payload {key} (the instance uuid)");
        issue(
            ev,
            raw,
            key_offset(raw, "payload"),
            "missing_field",
            &expected,
        );
    }
    migration(ev, raw, data, &verb, phase);
    if ev.reported.time.is_none() && ev.reported.text.is_empty() {
        payload_time(ev, raw, &verb, phase);
    }
    ev.message = summary(ev, &event_type);
}

/// `create.end` → (`create`, Some(`end`)); legacy `live_migration._post.end` →
/// (`live_migration_post`, Some(`end`)); `update` → (`update`, None).
pub(super) fn split_type(rest: &str) -> (String, Option<&str>) {
    let (verb, phase) = match rest.rsplit_once('.') {
        Some((v, p @ ("start" | "end" | "error"))) => (v, Some(p)),
        _ => match rest {
            "start" | "end" | "error" => ("", Some(rest)),
            _ => (rest, None),
        },
    };
    let verb = verb
        .split('.')
        .map(|s| s.trim_matches('_'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    (verb, phase)
}

fn severity(priority: &str) -> Option<u8> {
    match priority.to_ascii_uppercase().as_str() {
        "CRITICAL" => Some(2),
        "ERROR" => Some(3),
        "WARN" | "WARNING" => Some(4),
        "AUDIT" => Some(5),
        "INFO" | "SAMPLE" => Some(6),
        "DEBUG" => Some(7),
        _ => None,
    }
}

fn versioned_payload(ev: &mut Event, raw: &[u8], d: &Object) {
    let p = "payload.";
    copy(ev, raw, d, "uuid", fields::VM_UUID, p);
    copy(ev, raw, d, "display_name", fields::VM_NAME, p);
    copy(ev, raw, d, "host_name", fields::VM_HOSTNAME, p);
    copy(ev, raw, d, "host", fields::HYPERVISOR, p);
    copy(ev, raw, d, "node", fields::NODE, p);
    copy(ev, raw, d, "image_uuid", fields::IMAGE, p);
    copy(ev, raw, d, "user_id", fields::USER_ID, p);
    copy(ev, raw, d, "tenant_id", fields::PROJECT_ID, p);
    copy(ev, raw, d, "state", fields::STATE, p);
    copy(ev, raw, d, "task_state", "task_state", p);
    copy(ev, raw, d, "power_state", "power_state", p);
    copy(ev, raw, d, "request_id", fields::REQUEST_ID, p);
    copy(ev, raw, d, "action_initiator_user", "actor_user_id", p);
    copy(
        ev,
        raw,
        d,
        "action_initiator_project",
        "actor_project_id",
        p,
    );
    for key in [
        "created_at",
        "launched_at",
        "deleted_at",
        "terminated_at",
        "updated_at",
    ] {
        copy(ev, raw, d, key, key, p);
    }
    if let Some(Value::Object(su)) = d.get("state_update") {
        let su = nova_data(su);
        copy(
            ev,
            raw,
            su,
            "old_state",
            "old_state",
            "payload.state_update.",
        );
    }
    match d.get("ip_addresses") {
        Some(Value::Array(ips)) => {
            let entries: Vec<&Object> = ips
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(nova_data(o)),
                    _ => None,
                })
                .collect();
            if entries.len() != ips.len() {
                issue(
                    ev,
                    raw,
                    key_offset(raw, "ip_addresses"),
                    "wrong_type",
                    "ip_addresses as a list of IpPayload objects",
                );
            }
            addresses(ev, raw, &entries, "mac", "payload.ip_addresses[].");
        }
        Some(Value::Null) | None => {}
        Some(_) => issue(
            ev,
            raw,
            key_offset(raw, "ip_addresses"),
            "wrong_type",
            "ip_addresses as a list",
        ),
    }
}

fn legacy_payload(ev: &mut Event, raw: &[u8], d: &Object) {
    let p = "payload.";
    copy(ev, raw, d, "instance_id", fields::VM_UUID, p);
    copy(ev, raw, d, "display_name", fields::VM_NAME, p);
    copy(ev, raw, d, "hostname", fields::VM_HOSTNAME, p);
    copy(ev, raw, d, "host", fields::HYPERVISOR, p);
    copy(ev, raw, d, "node", fields::NODE, p);
    copy(ev, raw, d, "image_ref_url", fields::IMAGE, p);
    copy(ev, raw, d, "user_id", fields::USER_ID, p);
    copy(ev, raw, d, "tenant_id", fields::PROJECT_ID, p);
    copy(ev, raw, d, "state", fields::STATE, p);
    copy(ev, raw, d, "old_state", "old_state", p);
    copy(ev, raw, d, "new_task_state", "task_state", p);
    for key in ["created_at", "launched_at", "deleted_at", "terminated_at"] {
        copy(ev, raw, d, key, key, p);
    }
    match d.get("fixed_ips") {
        Some(Value::Array(ips)) => {
            let entries: Vec<&Object> = ips.iter().filter_map(Value::as_object).collect();
            if entries.len() != ips.len() {
                issue(
                    ev,
                    raw,
                    key_offset(raw, "fixed_ips"),
                    "wrong_type",
                    "fixed_ips as a list of objects",
                );
            }
            addresses(ev, raw, &entries, "vif_mac", "payload.fixed_ips[].");
            let mut floating = Vec::new();
            for e in &entries {
                if let Some(Value::Array(fl)) = e.get("floating_ips") {
                    for f in fl {
                        let a = match f {
                            Value::String(s) => Some(s.as_str()),
                            Value::Object(o) => o.get("address").and_then(Value::as_str),
                            _ => None,
                        };
                        if let Some(a) = a
                            && a.parse::<IpAddr>().is_ok()
                        {
                            floating.push(a.to_string());
                        }
                    }
                }
            }
            if !floating.is_empty() {
                ev.fields
                    .insert(fields::VM_FLOATING_IPS.to_string(), floating.join(","));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => issue(
            ev,
            raw,
            key_offset(raw, "fixed_ips"),
            "wrong_type",
            "fixed_ips as a list",
        ),
    }
}

/// VM_IPS and, aligned with it, VM_MACS / `vm_ports` / `vm_devices` (an empty slot where one
/// entry lacks the value). An address that does not parse is left out, with an issue.
fn addresses(ev: &mut Event, raw: &[u8], entries: &[&Object], mac_key: &str, path: &str) {
    let mut cols: [Vec<String>; 4] = Default::default();
    for e in entries {
        let Some(addr) = text(ev, raw, e, "address", path) else {
            continue;
        };
        if addr.parse::<IpAddr>().is_err() {
            let expected = format!("an IP address in {path}address, not {addr:?}");
            issue(ev, raw, key_offset(raw, &addr), "bad_address", &expected);
            continue;
        }
        cols[0].push(addr);
        for (i, key) in [mac_key, "port_uuid", "device_name"]
            .into_iter()
            .enumerate()
        {
            let v = text(ev, raw, e, key, path).unwrap_or_default();
            cols[i + 1].push(v);
        }
    }
    let names = [
        fields::VM_IPS,
        fields::VM_MACS,
        fields::VM_PORTS,
        fields::VM_DEVICES,
    ];
    for (name, col) in names.into_iter().zip(cols) {
        if col.iter().any(|v| !v.is_empty()) {
            ev.fields.insert(name.to_string(), col.join(","));
        }
    }
}

/// `old_host` / `new_host` when the payload says where the instance moves.
fn migration(ev: &mut Event, raw: &[u8], d: &Object, verb: &str, phase: Option<&str>) {
    if let Some(Value::Object(m)) = d.get("migration") {
        let m = nova_data(m);
        copy(
            ev,
            raw,
            m,
            "source_compute",
            "old_host",
            "payload.migration.",
        );
        copy(ev, raw, m, "dest_compute", "new_host", "payload.migration.");
    }
    // Legacy live-migration payloads may name the destination outright.
    copy(ev, raw, d, "old_host", "old_host", "payload.");
    copy(ev, raw, d, "new_host", "new_host", "payload.");
    // Sent by the destination after instance.host was set to it.
    let moved = matches!(
        (verb, phase),
        ("live_migration_post_dest", Some("end")) | ("evacuate", None)
    );
    if moved
        && !ev.fields.contains_key("new_host")
        && let Some(h) = ev.fields.get(fields::HYPERVISOR).cloned()
    {
        ev.fields.insert("new_host".to_string(), h);
    }
}

/// Reported time from a payload time when the message had no `timestamp`.
fn payload_time(ev: &mut Event, raw: &[u8], verb: &str, phase: Option<&str>) {
    let order: &[&str] = match (verb, phase) {
        ("delete" | "soft_delete", _) => &["deleted_at", "terminated_at", "launched_at"],
        ("create", Some("end")) => &["launched_at", "created_at"],
        ("create", _) => &["created_at"],
        _ => &[],
    };
    let found = order
        .iter()
        .chain(["updated_at", "launched_at", "created_at"].iter())
        .find_map(|k| ev.fields.get(*k).map(|v| (*k, v.clone())));
    if let Some((k, v)) = found {
        reported(ev, raw, k, &v);
    }
}

/// Parse a notification time (`2026-10-14 08:00:01.123456`, `2012-10-29T13:42:11Z`, with or
/// without offset; no offset = UTC, as nova writes them).
fn reported(ev: &mut Event, raw: &[u8], key: &str, value: &str) {
    let b = value.trim().as_bytes();
    let time = match timestamp::parse_rfc3339(b) {
        Some(found) if found.text_len == b.len() => match found.stamp {
            Stamp::Instant(ts) => Some(ts),
            Stamp::Civil(dt) => TimeZone::UTC.to_timestamp(dt).ok(),
            _ => None,
        },
        _ => None,
    };
    if time.is_none() {
        let expected = format!("{key} as YYYY-MM-DD HH:MM:SS[.ffffff][Z|±hh:mm], not {value:?}");
        issue(ev, raw, key_offset(raw, key), "bad_timestamp", &expected);
    }
    ev.reported = Reported::new(time, value.to_string());
}

/// The message: event type and the key facts, for search hits and timelines.
fn summary(ev: &Event, event_type: &str) -> String {
    summary_of(
        ev,
        event_type,
        fields::VM_UUID,
        &[
            ("name", fields::VM_NAME),
            ("hostname", fields::VM_HOSTNAME),
            ("host", fields::HYPERVISOR),
            ("state", fields::STATE),
            ("user", fields::USER_ID),
            ("project", fields::PROJECT_ID),
            ("ips", fields::VM_IPS),
            ("old_host", "old_host"),
            ("new_host", "new_host"),
        ],
    )
}

/// `event_type`, the record's id (`id_key`) and ` label=value` for each of `labels` the
/// event has: the summary line of nova's and Neutron's notifications alike.
pub(super) fn summary_of(
    ev: &Event,
    event_type: &str,
    id_key: &str,
    labels: &[(&str, &str)],
) -> String {
    let mut s = event_type.to_string();
    let f = |k: &str| ev.fields.get(k).map(String::as_str);
    if let Some(id) = f(id_key) {
        s.push(' ');
        s.push_str(id);
    }
    for &(label, key) in labels {
        if let Some(v) = f(key) {
            s.push_str(&format!(" {label}={v}"));
        }
    }
    s
}
