//! OpenNebula XML documents, one per record (framing cut pools into their elements):
//!
//! - `<VM>`: `onevm show -x`, an element of `onevm list -x`'s `VM_POOL`, or the VM template
//!   OpenNebula's hook manager passes a state hook as `$TEMPLATE` (onehem-server.rb encodes
//!   `//VM` of the hook message in base64; the site kit's hook decodes it into the spool).
//!   Shape: share/doc/xsd/vm.xsd (ID, UID, GID, UNAME, GNAME, NAME, STATE, LCM_STATE, STIME,
//!   ETIME, DEPLOY_ID, TEMPLATE/NIC with IP, IP6, IP6_GLOBAL, IP6_ULA, MAC, NETWORK, NIC_ID,
//!   TARGET, HISTORY_RECORDS/HISTORY with SEQ, HOSTNAME, STIME, ETIME, ACTION).
//! - `<HOOK_MESSAGE>`: the state hook message (hook_message_state.xsd; built by
//!   src/hm/HookStateVM.cc `format_message`: HOOK_TYPE, HOOK_OBJECT, STATE and LCM_STATE as
//!   names, RESOURCE_ID, REMOTE_HOST, then the extended `<VM>`), plain or base64 as the
//!   hook manager publishes it. Older hooks passed the VM template base64 inside `<VM>`:
//!   decoded too.
//! - `<VNET>`: `onevnet show -x` (vnet.xsd: AR_POOL/AR/LEASES/LEASE with IP, IP6, MAC, VM).
//!   Its leases are a snapshot without a moment, so they are searchable but not facts: the
//!   VM documents carry the same NICs with times.
//!
//! A VM document becomes one `vm.lifecycle` event whose reported time is the latest moment
//! the document itself records (its ETIME when DONE; else the latest of STIME and every
//! history STIME/ETIME): the state it shows holds from then on. The fact store expands its
//! history (placements) and NICs into observations at their own times
//! (`views::facts`, `ONE_HISTORY`/`ONE_NICS`). Nothing is guessed: a field that is missing or
//! malformed is an issue and is left out.

use std::net::IpAddr;

use base64::Engine;
use model::{DecodeHints, Event, EventClass, ParseIssue, Reported, fields};
use roxmltree::{Document, Node, ParsingOptions};

use crate::text::{lossy, strip_terminators};

pub const KIND: &str = "opennebula";
/// Deeper documents are refused before parsing (OpenNebula's are ~6 levels deep).
pub const MAX_DEPTH: usize = 64;
/// roxmltree's node budget for one record (a VM is a few hundred nodes).
const MAX_NODES: u32 = 1_000_000;
/// Base64 nesting followed at most this deep (message → VM).
const MAX_NESTING: u8 = 2;

/// Fill `ev` from one XML document. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    ev.source_kind = KIND.to_string();
    parse(ev, &raw, strip_terminators(&raw), 0);
    ev.raw = raw;
}

fn parse(ev: &mut Event, raw: &[u8], body: &[u8], nesting: u8) {
    let body = trim(body);
    if body.first() != Some(&b'<') {
        if nesting < MAX_NESTING
            && let Some(xml) = base64_xml(body)
        {
            ev.fields.insert("encoding".into(), "base64".into());
            parse(ev, raw, &xml, nesting + 1);
            return;
        }
        issue(
            ev,
            raw,
            0,
            "not_opennebula",
            "an OpenNebula XML document (<VM>, <VNET>, <HOOK_MESSAGE>)",
        );
        ev.message = lossy(body);
        return;
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            issue(ev, raw, e.valid_up_to(), "invalid_utf8", "UTF-8 XML");
            ev.message = lossy(body);
            return;
        }
    };
    if depth(body) > MAX_DEPTH {
        issue(
            ev,
            raw,
            0,
            "too_deep",
            &format!("an XML document at most {MAX_DEPTH} elements deep"),
        );
        ev.message = summary_line(text);
        return;
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = match Document::parse_with_options(text, opts) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.pos();
            let at = offset_of(text, pos.row, pos.col);
            issue(ev, raw, at, "bad_xml", &format!("well-formed XML: {e}"));
            ev.message = summary_line(text);
            return;
        }
    };
    let root = doc.root_element();
    match root.tag_name().name() {
        "VM" => vm(ev, raw, root, nesting),
        "HOOK_MESSAGE" => hook(ev, raw, root, nesting),
        "VNET" => vnet(ev, raw, root),
        name if name.ends_with("_POOL") => {
            let n = root.children().filter(Node::is_element).count();
            ev.message = format!("OpenNebula {name} with {n} elements");
            if n > 0 {
                issue(
                    ev,
                    raw,
                    0,
                    "pool_in_one_record",
                    "one record per pool element (ingest cuts pools)",
                );
            }
        }
        other => {
            issue(
                ev,
                raw,
                0,
                "not_opennebula",
                "an OpenNebula XML document (<VM>, <VNET>, <HOOK_MESSAGE>)",
            );
            // Kept as text, like a raw record: what it says stays searchable.
            let _ = other;
            ev.message = text.to_string();
        }
    }
}

/// `onevm` states by number (include/VirtualMachine.h `VmState`).
const STATES: [&str; 12] = [
    "INIT",
    "PENDING",
    "HOLD",
    "ACTIVE",
    "STOPPED",
    "SUSPENDED",
    "DONE",
    "FAILED",
    "POWEROFF",
    "UNDEPLOYED",
    "CLONING",
    "CLONING_FAILURE",
];

/// LCM states by number (include/VirtualMachine.h `LcmState`), as far as names are stable.
const LCM_STATES: [&str; 26] = [
    "LCM_INIT",
    "PROLOG",
    "BOOT",
    "RUNNING",
    "MIGRATE",
    "SAVE_STOP",
    "SAVE_SUSPEND",
    "SAVE_MIGRATE",
    "PROLOG_MIGRATE",
    "PROLOG_RESUME",
    "EPILOG_STOP",
    "EPILOG",
    "SHUTDOWN",
    "CANCEL",
    "FAILURE",
    "CLEANUP_RESUBMIT",
    "UNKNOWN",
    "HOTPLUG",
    "SHUTDOWN_POWEROFF",
    "BOOT_UNKNOWN",
    "BOOT_POWEROFF",
    "BOOT_SUSPENDED",
    "BOOT_STOPPED",
    "CLEANUP_DELETE",
    "HOTPLUG_SNAPSHOT",
    "HOTPLUG_NIC",
];

/// A state given as a number (VM XML) or a name (hook message): its name.
fn state_name(v: &str, names: &[&str]) -> String {
    match v.trim().parse::<usize>() {
        Ok(n) => names
            .get(n)
            .map_or_else(|| n.to_string(), |s| (*s).to_string()),
        Err(_) => v.trim().to_ascii_uppercase(),
    }
}

/// The `state` field pugmark's facts read: DONE is a deletion.
pub(crate) fn pugmark_state(one_state: &str) -> String {
    if one_state == "DONE" {
        "deleted".into()
    } else {
        one_state.to_ascii_lowercase()
    }
}

fn vm(ev: &mut Event, raw: &[u8], node: Node, nesting: u8) {
    // A VM element holding only base64 text: an older hook's `$TEMPLATE`.
    if !node.children().any(|c| c.is_element())
        && nesting < MAX_NESTING
        && let Some(xml) = node.text().and_then(|t| base64_xml(t.trim().as_bytes()))
    {
        ev.fields.insert("encoding".into(), "base64".into());
        parse(ev, raw, &xml, nesting + 1);
        return;
    }
    ev.source_kind = format!("{KIND}-vm");
    let text = |name: &str| child_text(node, name);
    let Some(id) = text("ID").and_then(|v| v.parse::<u64>().ok()) else {
        issue_near(ev, raw, "<ID>", "missing_field", "the VM's numeric <ID>");
        ev.message = "OpenNebula VM without a numeric ID".into();
        return;
    };
    let uuid = fields::opennebula_vm(id);
    ev.fields.insert(fields::ONE_VM_ID.into(), id.to_string());
    ev.fields.insert(fields::VM_UUID.into(), uuid.clone());
    let mut put = |f: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ev.fields.insert(f.into(), v);
        }
    };
    put(fields::VM_NAME, text("NAME"));
    put(fields::USER_ID, text("UID"));
    put(fields::USER_NAME, text("UNAME"));
    put(fields::PROJECT_ID, text("GID"));
    put(fields::PROJECT_NAME, text("GNAME"));
    put("deploy_id", text("DEPLOY_ID"));
    let state = text("STATE").map(|s| state_name(&s, &STATES));
    let lcm = text("LCM_STATE").map(|s| state_name(&s, &LCM_STATES));
    let tmpl = child(node, "TEMPLATE");
    let context = tmpl.and_then(|t| child(t, "CONTEXT"));
    let hostname = context
        .and_then(|c| child_text(c, "SET_HOSTNAME").or_else(|| child_text(c, "HOSTNAME")))
        .map(|h| h.to_lowercase());
    put(fields::VM_HOSTNAME, hostname);
    let image = tmpl
        .and_then(|t| children(t, "DISK").next())
        .and_then(|d| child_text(d, "IMAGE"));
    put(fields::IMAGE, image);
    let stime = secs(ev, raw, node, "STIME");
    let etime = secs(ev, raw, node, "ETIME");
    if let Some(s) = stime.filter(|s| *s > 0) {
        ev.fields.insert(fields::ONE_STIME.into(), rfc3339(s));
    }
    // NICs (and NIC aliases, which are addresses of the same VM).
    let mut ips: Vec<String> = Vec::new();
    let mut macs: Vec<String> = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    let mut nics: Vec<String> = Vec::new();
    let mut networks: Vec<String> = Vec::new();
    for nic in tmpl.into_iter().flat_map(|t| {
        t.children()
            .filter(|c| c.is_element() && matches!(c.tag_name().name(), "NIC" | "NIC_ALIAS"))
    }) {
        let nic_id = child_text(nic, "NIC_ID").and_then(|v| v.parse::<u32>().ok());
        let mut mine: Vec<String> = Vec::new();
        for f in ["IP", "IP6", "IP6_GLOBAL", "IP6_ULA"] {
            if let Some(v) = child_text(nic, f) {
                match address(&v) {
                    Ok(a) => {
                        if !mine.contains(&a) {
                            mine.push(a);
                        }
                    }
                    Err(why) => issue_near(ev, raw, &v, "bad_address", &why),
                }
            }
        }
        let mac = child_text(nic, "MAC").and_then(|m| match normalise_mac(&m) {
            Some(m) => Some(m),
            None => {
                issue_near(ev, raw, &m, "bad_mac", "a MAC address (six hex octets)");
                None
            }
        });
        if let Some(n) = child_text(nic, "NETWORK") {
            networks.push(n);
        }
        // The tap device: TARGET as OpenNebula set it, else its naming rule one-<vm>-<nic>
        // (src/vmm: "one-" VM ID "-" NIC ID), for real NICs only (an alias has no device).
        if nic.tag_name().name() == "NIC" {
            let tap = child_text(nic, "TARGET")
                .filter(|t| plausible_device(t))
                .or_else(|| nic_id.map(|n| format!("one-{id}-{n}")));
            if let Some(t) = tap
                && !devices.contains(&t)
            {
                devices.push(t);
            }
        }
        if let Some(n) = nic_id {
            let mut parts = mine.clone();
            parts.extend(mac.clone());
            nics.push(format!("{n}={}", parts.join("/")));
        }
        for a in mine {
            if !ips.contains(&a) {
                ips.push(a);
            }
        }
        if let Some(m) = mac
            && !macs.contains(&m)
        {
            macs.push(m);
        }
    }
    // Placement history.
    let mut history: Vec<String> = Vec::new();
    let mut latest = stime.unwrap_or(0).max(etime.unwrap_or(0));
    let mut current_host: Option<String> = None;
    let mut last_seq: Option<u64> = None;
    for h in child(node, "HISTORY_RECORDS")
        .into_iter()
        .flat_map(|r| children(r, "HISTORY"))
    {
        let seq = child_text(h, "SEQ").and_then(|v| v.parse::<u64>().ok());
        let host = child_text(h, "HOSTNAME").map(|h| h.to_lowercase());
        let hs = child_text(h, "STIME").and_then(|v| v.parse::<i64>().ok());
        let he = child_text(h, "ETIME").and_then(|v| v.parse::<i64>().ok());
        let action = child_text(h, "ACTION")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        for f in [
            "STIME", "ETIME", "PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME",
        ] {
            if let Some(t) = child_text(h, f).and_then(|v| v.parse::<i64>().ok()) {
                latest = latest.max(t);
            }
        }
        match (seq, host.filter(|h| plausible_host(h)), hs) {
            (Some(seq), Some(host), Some(hs)) if hs > 0 => {
                let he = he.filter(|e| *e >= 0).unwrap_or(0);
                history.push(format!("{seq}={host}/{hs}/{he}/{action}"));
                if last_seq.is_none_or(|l| seq >= l) {
                    last_seq = Some(seq);
                    current_host = (he == 0).then_some(host);
                }
            }
            _ => issue_near(
                ev,
                raw,
                "<HISTORY>",
                "missing_field",
                "a HISTORY record with SEQ, HOSTNAME and STIME",
            ),
        }
    }
    let done = state.as_deref() == Some("DONE");
    if !done && let Some(h) = &current_host {
        ev.fields.insert(fields::HYPERVISOR.into(), h.clone());
    }
    // The moment the document speaks for.
    let asof = match (done, etime) {
        (true, Some(e)) if e > 0 => Some(e),
        _ => (latest > 0).then_some(latest),
    };
    match asof.and_then(|t| jiff::Timestamp::from_second(t).ok()) {
        Some(t) => ev.reported = Reported::new(Some(t), t.to_string()),
        None => issue_near(ev, raw, "<STIME>", "missing_field", "the VM's STIME"),
    }
    let join = |v: &[String]| v.join(",");
    if !ips.is_empty() {
        ev.fields.insert(fields::VM_IPS.into(), join(&ips));
    }
    if !macs.is_empty() {
        ev.fields.insert(fields::VM_MACS.into(), join(&macs));
    }
    if !devices.is_empty() {
        ev.fields.insert(fields::VM_DEVICES.into(), join(&devices));
    }
    if !nics.is_empty() {
        ev.fields.insert(fields::ONE_NICS.into(), join(&nics));
    }
    if !history.is_empty() {
        ev.fields.insert(fields::ONE_HISTORY.into(), join(&history));
    }
    if !networks.is_empty() {
        ev.fields.insert("one_networks".into(), join(&networks));
    }
    if let Some(s) = &state {
        ev.fields.insert(fields::ONE_STATE.into(), s.clone());
        ev.fields.insert(fields::STATE.into(), pugmark_state(s));
        ev.fields.insert(
            fields::EVENT_TYPE.into(),
            format!("one.vm.{}", s.to_ascii_lowercase()),
        );
    } else {
        issue(ev, raw, 0, "missing_field", "the VM's STATE");
    }
    if let Some(l) = &lcm {
        ev.fields.insert(fields::ONE_LCM_STATE.into(), l.clone());
    }
    // Without a state or a moment the document says nothing pugmark can place: searchable,
    // not a fact.
    if state.is_some() && ev.reported.time.is_some() {
        ev.class = EventClass::VmLifecycle;
    }
    let f = |k: &str| ev.fields.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut msg = format!(
        "OpenNebula VM {id} '{}' {}/{} owner {} ({}) group {} ({})",
        f(fields::VM_NAME),
        state.as_deref().unwrap_or("?"),
        lcm.as_deref().unwrap_or("?"),
        f(fields::USER_NAME),
        f(fields::USER_ID),
        f(fields::PROJECT_NAME),
        f(fields::PROJECT_ID),
    );
    if let Some(h) = ev.fields.get(fields::HYPERVISOR) {
        msg.push_str(&format!(" on {h}"));
    }
    if !ips.is_empty() || !macs.is_empty() {
        msg.push_str(&format!(
            ": {}",
            ips.iter()
                .chain(&macs)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    ev.message = msg;
}

fn hook(ev: &mut Event, raw: &[u8], node: Node, nesting: u8) {
    let text = |name: &str| child_text(node, name);
    let object = text("HOOK_OBJECT").unwrap_or_default();
    let hook_type = text("HOOK_TYPE").unwrap_or_default();
    ev.fields.insert("hook_type".into(), hook_type.clone());
    ev.fields.insert("hook_object".into(), object.clone());
    if hook_type == "API" {
        ev.source_kind = format!("{KIND}-hook");
        let call = text("CALL").unwrap_or_default();
        ev.message = format!("OpenNebula API hook {call}");
        ev.fields.insert(fields::ONE_CALL.into(), call);
        return;
    }
    if let Some(vm_node) = child(node, "VM").filter(|_| object == "VM") {
        vm(ev, raw, vm_node, nesting);
        ev.source_kind = format!("{KIND}-hook");
        // The message's own STATE/LCM_STATE are names of the same state the VM holds.
        if let Some(host) = text("REMOTE_HOST").filter(|h| plausible_host(h)) {
            ev.fields.insert("remote_host".into(), host.to_lowercase());
        }
        ev.message = format!("hook: {}", ev.message);
        return;
    }
    ev.source_kind = format!("{KIND}-hook");
    let id = text("RESOURCE_ID");
    let state = text("STATE").unwrap_or_default();
    let lcm = text("LCM_STATE").unwrap_or_default();
    if object == "VM"
        && let Some(id) = id.as_deref().and_then(|i| i.parse::<u64>().ok())
    {
        // No VM template and no time: searchable under the VM, not a fact.
        ev.fields.insert(fields::ONE_VM_ID.into(), id.to_string());
        ev.fields
            .insert(fields::VM_UUID.into(), fields::opennebula_vm(id));
        issue_near(
            ev,
            raw,
            "<RESOURCE_ID>",
            "missing_field",
            "the <VM> template the state hook message carries",
        );
    } else if object != "VM" {
        if let Some(id) = &id {
            ev.fields.insert("resource_id".into(), id.clone());
        }
    } else {
        issue_near(
            ev,
            raw,
            "<RESOURCE_ID>",
            "missing_field",
            "a numeric RESOURCE_ID",
        );
    }
    ev.fields.insert(fields::ONE_STATE.into(), state.clone());
    if !lcm.is_empty() {
        ev.fields.insert(fields::ONE_LCM_STATE.into(), lcm.clone());
    }
    ev.message = format!(
        "OpenNebula state hook {object} {} {state}/{lcm}",
        id.unwrap_or_else(|| "?".into())
    );
}

fn vnet(ev: &mut Event, raw: &[u8], node: Node) {
    ev.source_kind = format!("{KIND}-vnet");
    let text = |name: &str| child_text(node, name);
    let id = text("ID").unwrap_or_else(|| "?".into());
    let name = text("NAME").unwrap_or_default();
    ev.fields.insert("one_vnet_id".into(), id.clone());
    if !name.is_empty() {
        ev.fields.insert("one_vnet_name".into(), name.clone());
    }
    if let Some(b) = text("BRIDGE") {
        ev.fields.insert("bridge".into(), b);
    }
    let mut leases: Vec<String> = Vec::new();
    // Leases per address range (4.14 and later), or directly under the VNET (4.x, the VM
    // in `VID`), as quattor's ncm-opennebula test data (rpcdata.pm) has both.
    let ranges = child(node, "AR_POOL")
        .into_iter()
        .flat_map(|p| children(p, "AR"))
        .chain(std::iter::once(node));
    for lease in ranges.flat_map(|ar| {
        child(ar, "LEASES")
            .into_iter()
            .flat_map(|l| children(l, "LEASE"))
    }) {
        let mut addrs: Vec<String> = Vec::new();
        for f in ["IP", "IP6", "IP6_GLOBAL", "IP6_ULA"] {
            if let Some(v) = child_text(lease, f) {
                match address(&v) {
                    Ok(a) => addrs.push(a),
                    Err(why) => issue_near(ev, raw, &v, "bad_address", &why),
                }
            }
        }
        if let Some(m) = child_text(lease, "MAC") {
            match normalise_mac(&m) {
                Some(m) => addrs.push(m),
                None => issue_near(ev, raw, &m, "bad_mac", "a MAC address (six hex octets)"),
            }
        }
        // VM=-1 holds an address on hold; a virtual router or another VNET may hold one too.
        let holder = match child_text(lease, "VM")
            .or_else(|| child_text(lease, "VID"))
            .map(|v| v.parse::<i64>())
        {
            Some(Ok(v)) if v >= 0 => fields::opennebula_vm(v.unsigned_abs()),
            Some(Ok(_)) => "hold".into(),
            Some(Err(_)) => {
                issue_near(ev, raw, "<VM>", "bad_lease", "a lease's VM as a number");
                continue;
            }
            None => child_text(lease, "VROUTER")
                .map(|r| format!("vrouter-{r}"))
                .or_else(|| child_text(lease, "VNET").map(|n| format!("vnet-{n}")))
                .unwrap_or_else(|| "?".into()),
        };
        if addrs.is_empty() {
            issue_near(
                ev,
                raw,
                "<LEASE>",
                "missing_field",
                "a lease's IP, IP6 or MAC",
            );
            continue;
        }
        leases.push(format!("{}={holder}", addrs.join("/")));
    }
    ev.message = format!(
        "OpenNebula VNET {id} '{name}' with {} leases{}{}",
        leases.len(),
        if leases.is_empty() { "" } else { ": " },
        leases.join(" ")
    );
    if !leases.is_empty() {
        ev.fields.insert("one_leases".into(), leases.join(","));
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// An element's text (CDATA included: OpenNebula writes template values as CDATA), trimmed;
/// None when absent or empty.
fn child_text(n: Node, name: &str) -> Option<String> {
    let c = child(n, name)?;
    let t: String = c
        .children()
        .filter(|x| x.is_text())
        .filter_map(|x| x.text())
        .collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A Unix-seconds element of the VM; present but not a number is an issue.
fn secs(ev: &mut Event, raw: &[u8], node: Node, name: &str) -> Option<i64> {
    let v = child_text(node, name)?;
    match v.parse::<i64>() {
        Ok(s) if s >= 0 => Some(s),
        _ => {
            issue_near(
                ev,
                raw,
                &format!("<{name}>"),
                "bad_time",
                &format!("{name} as Unix seconds"),
            );
            None
        }
    }
}

fn rfc3339(s: i64) -> String {
    jiff::Timestamp::from_second(s)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// An address as pugmark keeps it (canonical text). A zone id (`fe80::1%eth0`) names an
/// interface of one machine, not a site address: refused, explained, never trimmed.
pub(crate) fn address(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.contains('%') {
        return Err(format!("an address without a zone id (got {v})"));
    }
    v.parse::<IpAddr>().map(|a| a.to_string()).map_err(|_| {
        format!(
            "an IP address (got {})",
            v.chars().take(64).collect::<String>()
        )
    })
}

fn normalise_mac(m: &str) -> Option<String> {
    let m = m.trim().to_ascii_lowercase();
    let parts: Vec<&str> = m.split(':').collect();
    (parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())))
    .then_some(m)
}

/// A device name the kernel could have (≤ 15 bytes of `[A-Za-z0-9._-]`).
fn plausible_device(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 15
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A host name that fits the history encoding (no separators).
fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Decode base64 text that holds an XML document.
fn base64_xml(b: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = b
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() < 8 {
        return None;
    }
    let out = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .ok()?;
    (trim(&out).first() == Some(&b'<')).then_some(out)
}

/// Element nesting depth, counted on the bytes (no recursion): the guard before parsing.
fn depth(b: &[u8]) -> usize {
    let (mut d, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(j) = memchr::memchr(b'<', &b[i..]) {
        let at = i + j;
        let next = b.get(at + 1).copied();
        let end = memchr::memchr(b'>', &b[at..]).map_or(b.len(), |e| at + e + 1);
        match next {
            Some(b'/') => d = d.saturating_sub(1),
            Some(b'!' | b'?') => {}
            _ if end >= 2 && b[end - 2] == b'/' => {}
            _ => {
                d += 1;
                max = max.max(d);
            }
        }
        i = end.max(at + 1);
    }
    max
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

fn summary_line(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Byte offset of roxmltree's 1-based (row, col) position (col counts characters).
fn offset_of(text: &str, row: u32, col: u32) -> usize {
    let mut start = 0usize;
    for _ in 1..row {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    let line = &text[start..];
    let skip = line
        .char_indices()
        .nth(col.saturating_sub(1) as usize)
        .map_or(line.len(), |(i, _)| i);
    start + skip
}

fn key_offset(raw: &[u8], key: &str) -> usize {
    memchr::memmem::find(raw, key.as_bytes()).unwrap_or(0)
}

/// Issues listed per record; past this they are only counted (field `issues_not_listed`), so
/// a huge document of bad values costs linear time and bounded memory.
pub const MAX_ISSUES: usize = 100;

fn issue(ev: &mut Event, raw: &[u8], at: usize, kind: &str, expected: &str) {
    if ev.issues.len() >= MAX_ISSUES {
        let n = ev
            .fields
            .get("issues_not_listed")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ev.fields
            .insert("issues_not_listed".into(), (n + 1).to_string());
        return;
    }
    ev.issues.push(ParseIssue::new(raw, at, kind, expected));
}

/// [`issue`] at the first mention of `needle` (searched only when the issue is listed).
fn issue_near(ev: &mut Event, raw: &[u8], needle: &str, kind: &str, expected: &str) {
    let at = if ev.issues.len() >= MAX_ISSUES {
        0
    } else {
        key_offset(raw, needle)
    };
    issue(ev, raw, at, kind, expected);
}
