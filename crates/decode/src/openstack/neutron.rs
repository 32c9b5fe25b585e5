//! Neutron's legacy notifications (issue 12): `port.*`, `floatingip.*`, `router.*`, bare or
//! in the oslo envelope (the envelope, `publisher_id` = `network.HOST`, `timestamp` and the
//! `_context_*` keys are read by [`super::notification`], which hands the rest here).
//!
//! Shapes, from neutron's API controller (`neutron/api/v2/base.py`, `Controller._create`,
//! `_update`, `_delete`, through `n_rpc.get_notifier('network')`):
//! - `RESOURCE.create.end` and `RESOURCE.update.end`: payload `{RESOURCE: {the resource as the
//!   API shows it}}`;
//! - `RESOURCE.delete.end`: payload `{RESOURCE_id: ID, RESOURCE: {…}}` (older releases and the
//!   DHCP agent notifier `dhcp_rpc_agent_api`: `{port_id: ID}` alone);
//! - `RESOURCE.*.start`: the request body, which is what was asked, not what happened: decoded
//!   for search, never a fact (the fact store takes `end` only).
//!
//! Output: class `other` (no VM lifecycle), fields [`fields::NEUTRON_RESOURCE`],
//! [`fields::NEUTRON_ID`], `action`, `phase`, and per resource:
//! - port: [`fields::PORT_IPS`] (`fixed_ips[].ip_address`), [`fields::PORT_MAC`],
//!   [`fields::DEVICE_OWNER`], [`fields::BINDING_HOST`], `project_id`, and
//!   [`fields::VM_UUID`] = `device_id` when the owner is `compute:*` (an instance's port);
//! - floatingip: [`fields::FLOATING_IP`], [`fields::FIP_PORT`] (`-` when `port_id` is null:
//!   disassociated; absent when the payload does not say), [`fields::FIP_FIXED_IP`],
//!   [`fields::ROUTER_ID`], `project_id`, `state` = `status`;
//! - router: [`fields::GATEWAY_IPS`] (`external_gateway_info.external_fixed_ips[]
//!   .ip_address`: the SNAT addresses), `project_id`;
//! - `router.interface.create` / `router.interface.delete` (no phase: sent once the interface
//!   is added or removed; payload `{router_interface: {id: ROUTER, port_id, subnet_id,
//!   subnet_ids, network_id, tenant_id}}` — `l3_db.py`'s `notify_router_interface_action`;
//!   some vendor plugins spell the key `router.interface`): resource `router_interface`, id =
//!   the interface port, [`fields::ROUTER_ID`], [`fields::PORT_SUBNETS`]: the subnets the
//!   router now routes (and source-NATs through its gateway).
//!
//! A port also gives [`fields::PORT_SUBNETS`] (`fixed_ips[].subnet_id`): with the router
//! interfaces, which VMs sit behind a router's gateway address.
//!
//! Bad input (a resource that is not an object, an id missing, an address that does not
//! parse, a field of the wrong type, an unknown verb) gives issues; the fact store takes no
//! fact from an event with an `unknown_event_type` issue or without an id.

use std::net::IpAddr;

use model::{Event, fields};
use serde_json::{Map, Value};

use super::key_offset;
use super::notification::{issue, split_type, summary_of, text};

type Object = Map<String, Value>;

const RESOURCES: &[&str] = &["port", "floatingip", "router"];

/// Decode `event_type`/`payload` when they are Neutron's; false (nothing touched) otherwise.
pub(super) fn decode(
    ev: &mut Event,
    raw: &[u8],
    event_type: &str,
    payload: Option<&Object>,
) -> bool {
    let Some((resource, rest)) = event_type.split_once('.') else {
        return false;
    };
    if !RESOURCES.contains(&resource) {
        return false;
    }
    let (verb, phase) = split_type(rest);
    if resource == "router" && matches!(verb.as_str(), "interface_create" | "interface_delete") {
        router_interface(ev, raw, event_type, &verb, payload);
        return true;
    }
    ev.fields
        .insert(fields::NEUTRON_RESOURCE.to_string(), resource.to_string());
    if !matches!(verb.as_str(), "create" | "update" | "delete") {
        let expected = format!("a known {resource} event type, not {event_type:?}");
        issue(
            ev,
            raw,
            key_offset(raw, "event_type"),
            "unknown_event_type",
            &expected,
        );
    }
    ev.fields.insert(fields::ACTION.to_string(), verb);
    if let Some(phase) = phase {
        ev.fields.insert("phase".to_string(), phase.to_string());
    }
    let Some(payload) = payload else {
        issue(ev, raw, 0, "missing_field", "payload (a JSON object)");
        ev.message = event_type.to_string();
        return true;
    };
    let empty = Object::new();
    let obj = match payload.get(resource) {
        Some(Value::Object(o)) => o,
        Some(Value::Null) | None => &empty,
        Some(_) => {
            let expected = format!("payload.{resource} as a JSON object");
            issue(ev, raw, key_offset(raw, resource), "wrong_type", &expected);
            &empty
        }
    };
    let path = format!("payload.{resource}.");
    let id = text(ev, raw, obj, "id", &path)
        .or_else(|| text(ev, raw, payload, &format!("{resource}_id"), "payload."));
    match id {
        Some(id) => {
            ev.fields
                .insert(fields::NEUTRON_ID.to_string(), id.to_lowercase());
        }
        None => {
            let expected = format!("{path}id or payload.{resource}_id (the {resource} uuid)");
            issue(
                ev,
                raw,
                key_offset(raw, "payload"),
                "missing_field",
                &expected,
            );
        }
    }
    let project =
        text(ev, raw, obj, "project_id", &path).or_else(|| text(ev, raw, obj, "tenant_id", &path));
    if let Some(p) = project {
        ev.fields.insert(fields::PROJECT_ID.to_string(), p);
    }
    match resource {
        "port" => port(ev, raw, obj, &path),
        "floatingip" => floatingip(ev, raw, obj, &path),
        _ => router(ev, raw, obj, &path),
    }
    ev.message = summary(ev, event_type);
    true
}

/// `router.interface.create|delete`: the interface port, its router and subnets.
fn router_interface(
    ev: &mut Event,
    raw: &[u8],
    event_type: &str,
    verb: &str,
    payload: Option<&Object>,
) {
    ev.fields.insert(
        fields::NEUTRON_RESOURCE.to_string(),
        "router_interface".to_string(),
    );
    let action = verb.trim_start_matches("interface_");
    ev.fields
        .insert(fields::ACTION.to_string(), action.to_string());
    let empty = Object::new();
    let obj = match payload.and_then(|p| {
        p.get("router_interface")
            .or_else(|| p.get("router.interface"))
    }) {
        Some(Value::Object(o)) => o,
        Some(_) => {
            issue(
                ev,
                raw,
                key_offset(raw, "router_interface"),
                "wrong_type",
                "payload.router_interface as a JSON object",
            );
            &empty
        }
        None => {
            issue(
                ev,
                raw,
                key_offset(raw, "payload"),
                "missing_field",
                "payload.router_interface (the router, port and subnet of the interface)",
            );
            &empty
        }
    };
    let path = "payload.router_interface.";
    match text(ev, raw, obj, "port_id", path) {
        Some(p) => {
            ev.fields
                .insert(fields::NEUTRON_ID.to_string(), p.to_lowercase());
        }
        None if obj.is_empty() => {}
        None => issue(
            ev,
            raw,
            key_offset(raw, "router_interface"),
            "missing_field",
            "payload.router_interface.port_id (the interface port)",
        ),
    }
    if let Some(r) = text(ev, raw, obj, "id", path) {
        ev.fields
            .insert(fields::ROUTER_ID.to_string(), r.to_lowercase());
    }
    let mut subnets: Vec<String> = Vec::new();
    if let Some(s) = text(ev, raw, obj, "subnet_id", path) {
        subnets.push(s.to_lowercase());
    }
    match obj.get("subnet_ids") {
        Some(Value::Array(ids)) => {
            for id in ids {
                match id.as_str() {
                    Some(s) if !s.is_empty() => {
                        let s = s.to_lowercase();
                        if !subnets.contains(&s) {
                            subnets.push(s);
                        }
                    }
                    _ => issue(
                        ev,
                        raw,
                        key_offset(raw, "subnet_ids"),
                        "wrong_type",
                        "payload.router_interface.subnet_ids as a list of subnet ids",
                    ),
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => issue(
            ev,
            raw,
            key_offset(raw, "subnet_ids"),
            "wrong_type",
            "payload.router_interface.subnet_ids as a list",
        ),
    }
    if !subnets.is_empty() {
        ev.fields
            .insert(fields::PORT_SUBNETS.to_string(), subnets.join(","));
    }
    if let Some(p) =
        text(ev, raw, obj, "tenant_id", path).or_else(|| text(ev, raw, obj, "project_id", path))
    {
        ev.fields.insert(fields::PROJECT_ID.to_string(), p);
    }
    ev.message = summary(ev, event_type);
}

fn port(ev: &mut Event, raw: &[u8], obj: &Object, path: &str) {
    let ips = addresses(ev, raw, obj.get("fixed_ips"), "fixed_ips", path);
    if !ips.is_empty() {
        ev.fields
            .insert(fields::PORT_IPS.to_string(), ips.join(","));
    }
    let subnets = subnet_ids(obj.get("fixed_ips"));
    if !subnets.is_empty() {
        ev.fields
            .insert(fields::PORT_SUBNETS.to_string(), subnets.join(","));
    }
    if let Some(mac) = text(ev, raw, obj, "mac_address", path) {
        ev.fields
            .insert(fields::PORT_MAC.to_string(), mac.to_lowercase());
    }
    let owner = text(ev, raw, obj, "device_owner", path);
    if let Some(host) = text(ev, raw, obj, "binding:host_id", path) {
        ev.fields.insert(fields::BINDING_HOST.to_string(), host);
    }
    let device = text(ev, raw, obj, "device_id", path);
    if let (Some(o), Some(d)) = (&owner, device)
        && o.starts_with("compute:")
    {
        ev.fields
            .insert(fields::VM_UUID.to_string(), d.to_lowercase());
    }
    if let Some(o) = owner {
        ev.fields.insert(fields::DEVICE_OWNER.to_string(), o);
    }
}

fn floatingip(ev: &mut Event, raw: &[u8], obj: &Object, path: &str) {
    if let Some(a) = ip(ev, raw, obj, "floating_ip_address", path) {
        ev.fields.insert(fields::FLOATING_IP.to_string(), a);
    }
    if let Some(a) = ip(ev, raw, obj, "fixed_ip_address", path) {
        ev.fields.insert(fields::FIP_FIXED_IP.to_string(), a);
    }
    match obj.get("port_id") {
        None => {}
        Some(Value::Null) => {
            ev.fields.insert(fields::FIP_PORT.to_string(), "-".into());
        }
        Some(Value::String(p)) if p.is_empty() => {
            ev.fields.insert(fields::FIP_PORT.to_string(), "-".into());
        }
        Some(_) => {
            // A port id, or a wrong type (an issue, and nothing said about the port).
            if let Some(p) = text(ev, raw, obj, "port_id", path) {
                ev.fields
                    .insert(fields::FIP_PORT.to_string(), p.to_lowercase());
            }
        }
    }
    if let Some(r) = text(ev, raw, obj, "router_id", path) {
        ev.fields.insert(fields::ROUTER_ID.to_string(), r);
    }
    if let Some(s) = text(ev, raw, obj, "status", path) {
        ev.fields.insert(fields::STATE.to_string(), s);
    }
}

fn router(ev: &mut Event, raw: &[u8], obj: &Object, path: &str) {
    match obj.get("external_gateway_info") {
        Some(Value::Object(gw)) => {
            let path = format!("{path}external_gateway_info.");
            let ips = addresses(
                ev,
                raw,
                gw.get("external_fixed_ips"),
                "external_fixed_ips",
                &path,
            );
            if !ips.is_empty() {
                ev.fields
                    .insert(fields::GATEWAY_IPS.to_string(), ips.join(","));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => issue(
            ev,
            raw,
            key_offset(raw, "external_gateway_info"),
            "wrong_type",
            "external_gateway_info as a JSON object",
        ),
    }
}

/// A string at `obj[key]` that must be an IP address (an issue otherwise).
fn ip(ev: &mut Event, raw: &[u8], obj: &Object, key: &str, path: &str) -> Option<String> {
    let a = text(ev, raw, obj, key, path)?;
    match a.parse::<IpAddr>() {
        Ok(parsed) => Some(parsed.to_string()),
        Err(_) => {
            let expected = format!("an IP address in {path}{key}, not {a:?}");
            issue(ev, raw, key_offset(raw, key), "bad_address", &expected);
            None
        }
    }
}

/// The `ip_address` of each entry of a `fixed_ips`-like list.
fn addresses(
    ev: &mut Event,
    raw: &[u8],
    list: Option<&Value>,
    key: &str,
    path: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    match list {
        Some(Value::Array(items)) => {
            let path = format!("{path}{key}[].");
            for item in items {
                match item {
                    Value::Object(o) => {
                        if let Some(a) = ip(ev, raw, o, "ip_address", &path)
                            && !out.contains(&a)
                        {
                            out.push(a);
                        }
                    }
                    _ => {
                        let expected = format!("{path} entries as JSON objects");
                        issue(ev, raw, key_offset(raw, key), "wrong_type", &expected);
                    }
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            let expected = format!("{path}{key} as a list");
            issue(ev, raw, key_offset(raw, key), "wrong_type", &expected);
        }
    }
    out
}

/// The `subnet_id` of each entry of a `fixed_ips` list (entries without one are skipped:
/// `addresses` already reports malformed entries).
fn subnet_ids(list: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(Value::Array(items)) = list {
        for s in items
            .iter()
            .filter_map(|i| i.get("subnet_id").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
        {
            let s = s.to_lowercase();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

fn summary(ev: &Event, event_type: &str) -> String {
    summary_of(
        ev,
        event_type,
        fields::NEUTRON_ID,
        &[
            ("floating_ip", fields::FLOATING_IP),
            ("port", fields::FIP_PORT),
            ("fixed_ip", fields::FIP_FIXED_IP),
            ("ips", fields::PORT_IPS),
            ("mac", fields::PORT_MAC),
            ("device", fields::VM_UUID),
            ("owner", fields::DEVICE_OWNER),
            ("host", fields::BINDING_HOST),
            ("gateway", fields::GATEWAY_IPS),
            ("router", fields::ROUTER_ID),
            ("subnets", fields::PORT_SUBNETS),
            ("project", fields::PROJECT_ID),
            ("status", fields::STATE),
        ],
    )
}
