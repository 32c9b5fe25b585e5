//! OpenNebula's own log lines (src/log/Log.cc):
//!
//! - file mode (`oned.log`, `/var/log/one/<id>.log`): `ctime [Z<zone>][<MODULE>][<L>]: text`,
//!   e.g. `Mon Feb 25 12:05:48 2019 [Z0][VM][I]: New LCM state is RUNNING` — the stamp is
//!   `ctime(3)`, the front-end's local time (`ingest --tz`); a per-VM log names its VM only in
//!   its file name, which the envelope's origin keeps;
//! - syslog mode (`LOG = [ SYSTEM = "syslog" ]` in oned.conf): the message part of a syslog
//!   line from `oned`, `[VM 42][Z0][LCM][I]: New LCM state is RUNNING`, with the resource label
//!   in front ([`classify_syslog`]).
//!
//! What a line says:
//! - `New state is DONE` / `New LCM state is RUNNING` of a VM: a `vm.lifecycle` event of that
//!   VM (`state` `deleted` for DONE) — a fact when the record comes from the cloud observer;
//! - an API request, `Req:7 UID:2 IP:10.1.0.4 one.vm.deploy invoked , 42, 3, false` (`IP:`
//!   since 5.10): the call, the requester's UID (`requester_uid`, never the owner), the
//!   client address (`src_ip`) and the VM the call names; its answer
//!   `Req:7 UID:2 one.vm.deploy result SUCCESS, 42` (for `one.vm.allocate` the new VM's id) or
//!   `result FAILURE [one.vm.deploy] …`. Class `other`, searchable under the VM.

use model::{DecodeHints, Event, EventClass, Observer, Origin, ParseIssue, Reported, fields};

use crate::syslog::timestamp;
use crate::text::{lossy, strip_terminators};

use super::xml::pugmark_state;

pub const KIND: &str = "opennebula-log";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Fill `ev` from one log line. Never fails.
pub fn parse_into(ev: &mut Event, hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse_line(ev, &raw, hints);
    ev.raw = raw;
}

/// Whether a line starts with OpenNebula's file-mode header (the format guess).
pub(crate) fn has_header(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(strip_terminators(line)) else {
        return false;
    };
    split_stamp(text).is_some_and(|(_, rest)| labels(rest).is_some())
}

fn parse_line(ev: &mut Event, raw: &[u8], hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let line = strip_terminators(raw);
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            ev.issues.push(ParseIssue::new(
                raw,
                e.valid_up_to(),
                "invalid_utf8",
                "UTF-8 text",
            ));
            ev.message = lossy(line);
            return;
        }
    };
    let Some((stamp, rest)) = split_stamp(text) else {
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "no_header",
            "`Day Mon DD HH:MM:SS YYYY [Z0][MOD][L]: `",
        ));
        ev.message = text.to_string();
        return;
    };
    match civil(stamp) {
        Some(dt) => {
            let tz = match timestamp::zone(hints) {
                Ok(tz) => tz,
                Err(name) => {
                    ev.issues.push(ParseIssue::new(
                        raw,
                        0,
                        "bad_zone",
                        &format!("a time zone (got {name})"),
                    ));
                    jiff::tz::TimeZone::UTC
                }
            };
            match tz.to_timestamp(dt) {
                Ok(t) => ev.reported = Reported::new(Some(t), stamp.to_string()),
                Err(_) => ev.reported = Reported::new(None, stamp.to_string()),
            }
        }
        None => {
            ev.issues.push(ParseIssue::new(
                raw,
                0,
                "bad_time",
                "a ctime stamp (`Mon Feb 25 12:05:48 2019`)",
            ));
            ev.reported = Reported::new(None, stamp.to_string());
        }
    }
    // The VM of a per-VM log: its file name, `<id>.log`.
    let file_vm = match &ev.origin {
        Origin::File { path, .. } | Origin::FileFromSender { path, .. } => vm_of_path(path),
        _ => None,
    };
    if !fill(ev, rest, file_vm, true) {
        ev.issues.push(ParseIssue::new(
            raw,
            text.len() - rest.len(),
            "no_header",
            "`[Z0][MOD][L]: ` after the stamp",
        ));
        ev.message = rest.to_string();
    }
}

/// A syslog line from oned in syslog mode (`[VM 42][Z0][LCM][I]: …` or `[Z0][ReM][D]: …`):
/// fill the OpenNebula fields. Only the cloud observer's lines become facts (a VM can send
/// whatever it likes as `oned`).
pub fn classify_syslog(ev: &mut Event) {
    if !ev.message.starts_with("[Z") && !ev.message.starts_with("[VM ") {
        return;
    }
    if ev.app.as_deref().is_some_and(|a| a != "oned") {
        return;
    }
    let msg = ev.message.clone();
    let trusted = ev.observer == Observer::Cloud;
    fill(ev, &msg, None, trusted);
}

/// `[VM 42]` (optional), `[Z0]`, `[MODULE]`, `[L]`, then `: `. Returns (vm, zone, module,
/// level, text).
fn labels(s: &str) -> Option<(Option<u64>, &str, &str, &str, &str)> {
    let mut rest = s;
    let mut vm = None;
    if let Some(r) = rest.strip_prefix("[VM ") {
        let end = r.find(']')?;
        vm = Some(r[..end].trim().parse::<u64>().ok()?);
        rest = &r[end + 1..];
    } else if rest.starts_with('[') && !rest.starts_with("[Z") {
        // Another resource label (`[HOST 3]`, `[IMAGE 7]`): no VM.
        let end = rest.find(']')?;
        rest = &rest[end + 1..];
    }
    let (zone, r) = bracket(rest)?;
    let (module, r) = bracket(r)?;
    let (level, r) = bracket(r)?;
    let text = r.strip_prefix(':')?.trim_start();
    if !zone.starts_with('Z') || module.is_empty() || level.is_empty() || level.len() > 3 {
        return None;
    }
    Some((vm, zone, module, level, text))
}

/// `[X]rest` → (`X`, `rest`).
fn bracket(s: &str) -> Option<(&str, &str)> {
    let t = s.strip_prefix('[')?;
    let end = t.find(']')?;
    Some((&t[..end], &t[end + 1..]))
}

/// Fill the fields of the part after the stamp. False when it has no labels.
fn fill(ev: &mut Event, s: &str, file_vm: Option<u64>, trusted: bool) -> bool {
    let Some((label_vm, zone, module, level, text)) = labels(s) else {
        return false;
    };
    ev.app = Some(if file_vm.is_some() {
        "one-vm".into()
    } else {
        "oned".into()
    });
    ev.fields
        .insert("one_zone".into(), zone.trim_start_matches('Z').to_string());
    ev.fields.insert("one_module".into(), module.to_string());
    ev.severity = Some(match level {
        "E" => 3,
        "W" => 4,
        "I" => 6,
        _ => 7,
    });
    ev.message = text.to_string();
    let vm = label_vm.or(file_vm);
    if let Some(id) = vm {
        ev.fields.insert(fields::ONE_VM_ID.into(), id.to_string());
        ev.fields
            .insert(fields::VM_UUID.into(), fields::opennebula_vm(id));
    }
    if let Some(st) = text.strip_prefix("New state is ") {
        let st = st.trim().to_ascii_uppercase();
        ev.fields.insert(fields::ONE_STATE.into(), st.clone());
        ev.fields.insert(fields::STATE.into(), pugmark_state(&st));
        ev.fields.insert(
            fields::EVENT_TYPE.into(),
            format!("one.vm.{}", st.to_ascii_lowercase()),
        );
        if vm.is_some() && trusted && ev.reported.time.is_some() {
            ev.class = EventClass::VmLifecycle;
        }
    } else if let Some(st) = text.strip_prefix("New LCM state is ") {
        let st = st.trim().to_ascii_uppercase();
        ev.fields.insert(fields::ONE_LCM_STATE.into(), st.clone());
        ev.fields.insert(
            fields::EVENT_TYPE.into(),
            format!("one.vm.lcm.{}", st.to_ascii_lowercase()),
        );
        if vm.is_some() && trusted && ev.reported.time.is_some() {
            ev.class = EventClass::VmLifecycle;
        }
    } else if let Some(req) = text.strip_prefix("Req:") {
        request(ev, req);
    }
    true
}

/// `7 UID:2 IP:10.1.0.4 one.vm.deploy invoked , 42, 3` / `7 UID:2 one.vm.deploy result
/// SUCCESS, 42`.
fn request(ev: &mut Event, s: &str) {
    let mut words = s.splitn(2, ' ');
    let id = words.next().unwrap_or("");
    let mut rest = words.next().unwrap_or("").trim_start();
    ev.fields.insert(fields::REQUEST_ID.into(), id.to_string());
    if let Some(r) = rest.strip_prefix("UID:") {
        let end = r.find(' ').unwrap_or(r.len());
        ev.fields
            .insert(fields::REQUESTER_UID.into(), r[..end].to_string());
        rest = r[end..].trim_start();
    }
    if let Some(r) = rest.strip_prefix("IP:") {
        let end = r.find(' ').unwrap_or(r.len());
        if let Ok(a) = super::xml::address(&r[..end]) {
            ev.fields.insert(fields::SRC_IP.into(), a);
        }
        rest = r[end..].trim_start();
    }
    let end = rest.find(' ').unwrap_or(rest.len());
    let call = &rest[..end];
    let after = rest[end..].trim_start();
    if !call.starts_with("one.") {
        return;
    }
    ev.fields.insert(fields::ONE_CALL.into(), call.to_string());
    let params = |p: &str| -> Vec<String> {
        p.split(',')
            .map(|x| x.trim().trim_matches('"').to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let vm_param: Option<String>;
    if let Some(p) = after.strip_prefix("invoked") {
        let ps = params(p);
        // Which parameter names the VM: one.vm.action's second, the other one.vm.* calls'
        // first, none for allocate (its VM id comes in the result).
        vm_param = match call {
            "one.vm.allocate" => None,
            "one.vm.action" => ps.get(1).cloned(),
            c if c.starts_with("one.vm.") => ps.first().cloned(),
            _ => None,
        };
        if call == "one.vm.action"
            && let Some(a) = ps.first()
        {
            ev.fields.insert("one_action".into(), a.clone());
        }
        ev.fields
            .insert(fields::ACTION.into(), "one.request".into());
    } else if let Some(p) = after.strip_prefix("result ") {
        if let Some(ok) = p.strip_prefix("SUCCESS") {
            ev.fields.insert(fields::OUTCOME.into(), "success".into());
            let ps = params(ok);
            vm_param = match call {
                "one.vm.allocate" => ps.first().cloned(),
                _ => None,
            };
        } else {
            ev.fields.insert(fields::OUTCOME.into(), "failure".into());
            vm_param = None;
        }
        ev.fields.insert(fields::ACTION.into(), "one.result".into());
    } else {
        vm_param = None;
    }
    if ev.fields.contains_key(fields::VM_UUID) {
        return;
    }
    if call.starts_with("one.vm.")
        && let Some(id) = vm_param.and_then(|v| v.parse::<u64>().ok())
    {
        ev.fields.insert(fields::ONE_VM_ID.into(), id.to_string());
        ev.fields
            .insert(fields::VM_UUID.into(), fields::opennebula_vm(id));
    }
}

/// `Mon Feb 25 12:05:48 2019 rest` → (stamp, rest). ctime pads the day with a space.
fn split_stamp(s: &str) -> Option<(&str, &str)> {
    let mut idx = 0usize;
    let b = s.as_bytes();
    for _ in 0..5 {
        while b.get(idx) == Some(&b' ') {
            idx += 1;
        }
        let start = idx;
        while idx < b.len() && b[idx] != b' ' {
            idx += 1;
        }
        if idx == start {
            return None;
        }
    }
    let stamp = &s[..idx];
    civil(stamp)?;
    Some((stamp, s[idx..].trim_start()))
}

fn civil(stamp: &str) -> Option<jiff::civil::DateTime> {
    let w: Vec<&str> = stamp.split_whitespace().collect();
    let [day, mon, dd, hms, year] = w.as_slice() else {
        return None;
    };
    if !DAYS.contains(day) {
        return None;
    }
    let month = MONTHS.iter().position(|m| m == mon)? as i8 + 1;
    let d: i8 = dd.parse().ok()?;
    let y: i16 = year.parse().ok()?;
    let mut t = hms.split(':');
    let h: i8 = t.next()?.parse().ok()?;
    let m: i8 = t.next()?.parse().ok()?;
    let sec: i8 = t.next()?.parse().ok()?;
    if t.next().is_some() {
        return None;
    }
    jiff::civil::DateTime::new(y, month, d, h, m, sec, 0).ok()
}

/// `/var/log/one/42.log` → 42.
fn vm_of_path(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    let id = name.strip_suffix(".log")?;
    (!id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse().ok())
        .flatten()
}
