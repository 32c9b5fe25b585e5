//! One line of an OpenStack service log in oslo.log's default layout (nova-api, nova-compute,
//! nova-scheduler), from bytes.
//!
//! Layout: `[FILE-PREFIX ]YYYY-MM-DD HH:MM:SS[.fff] PID LEVEL module [CONTEXT] message`, where
//! CONTEXT is `req-UUID USER PROJECT DOMAIN USER_DOMAIN PROJECT_DOMAIN` (`-` for none), `-`, or
//! missing, and the message may start with `[instance: UUID]`. The file-name prefix is what
//! loghub puts in front of each line (`nova-api.log.1.2017-05-16_13:53:08`); it goes to field
//! `file_prefix`. The stamp has no zone: it is read in the zone of [`DecodeHints::tz`] (UTC when
//! unset) with the syslog decoder's helpers. The lines do not name the machine, so `host` stays
//! unset; `app` is the Python module (`nova.compute.manager`), `pid` the process id, `severity`
//! the syslog code of LEVEL.
//!
//! Lifecycle lines of nova-compute (`VM Started`, `Claim successful`, `Took N seconds to
//! spawn…`, `Terminating instance`, `Instance destroyed successfully`, …) become class
//! `vm.lifecycle` with field `action`; every other line is class `other`, with its request
//! context and instance UUID still extracted. Nothing here fails: a line without the header
//! keeps its text as message with an issue.

use jiff::tz::TimeZone;
use model::fields;
use model::{DecodeHints, Event, EventClass, ParseIssue, Reported};

use crate::syslog::timestamp::{self, Found};
use crate::text::{lossy, skip_spaces, strip_terminators, token_end};

pub(crate) const KIND: &str = "oslo-log";

/// How far into a line a file-name prefix may reach.
const MAX_PREFIX: usize = 512;

/// oslo.log level names and their syslog severities.
const LEVELS: [(&str, u8); 9] = [
    ("CRITICAL", 2),
    ("FATAL", 2),
    ("ERROR", 3),
    ("WARNING", 4),
    ("WARN", 4),
    ("AUDIT", 5),
    ("INFO", 6),
    ("DEBUG", 7),
    ("TRACE", 7),
];

/// Message beginnings (after `[instance: UUID] `) that record a VM lifecycle step, with the
/// `action` they get. `Took N seconds to …` lines are matched on their tail (`TOOK`).
const LIFECYCLE: [(&str, &str); 11] = [
    ("VM Started", "vm_started"),
    ("VM Stopped", "vm_stopped"),
    ("VM Paused", "vm_paused"),
    ("VM Resumed", "vm_resumed"),
    ("Claim successful", "claim_successful"),
    ("Creating image", "creating_image"),
    ("Instance spawned successfully", "spawned"),
    ("Terminating instance", "terminating"),
    ("Instance destroyed successfully", "destroyed"),
    ("Deleting instance files", "deleting_files"),
    ("Deletion of ", "files_deleted"),
];

const TOOK: [(&str, &str); 4] = [
    ("seconds to spawn the instance", "spawn_took"),
    ("seconds to build instance", "build_took"),
    ("seconds to destroy the instance", "destroy_took"),
    ("seconds to deallocate network", "network_deallocated"),
];

/// Fill `ev` from one oslo.log line. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse_line(ev, &raw, hints);
    ev.raw = raw;
}

/// Whether a line has the oslo.log header (optionally behind a file-name prefix).
pub(crate) fn has_header(line: &[u8]) -> bool {
    header(strip_terminators(line)).is_some()
}

struct Header {
    prefix: Option<(usize, usize)>,
    ts_start: usize,
    found: Found,
    pid: (usize, usize),
    severity: u8,
    /// Where the module name starts.
    rest: usize,
}

/// The stamp at `at`, then PID and LEVEL.
fn header_at(line: &[u8], at: usize) -> Option<(Found, (usize, usize), u8, usize)> {
    let found = timestamp::parse_rfc3339(&line[at..])?;
    // oslo writes a space between date and time; RFC 3339 `T` lines are syslog's.
    if line.get(at + 10) != Some(&b' ') {
        return None;
    }
    let p = skip_spaces(line, at + found.consumed);
    let pe = token_end(line, p);
    if pe == p || !line[p..pe].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let l = skip_spaces(line, pe);
    let le = token_end(line, l);
    let level = &line[l..le];
    let severity = LEVELS
        .iter()
        .find(|(name, _)| name.as_bytes() == level)
        .map(|(_, s)| *s)?;
    Some((found, (p, pe), severity, skip_spaces(line, le)))
}

fn header(line: &[u8]) -> Option<Header> {
    let make = |prefix, ts_start, (found, pid, severity, rest)| Header {
        prefix,
        ts_start,
        found,
        pid,
        severity,
        rest,
    };
    if let Some(h) = header_at(line, 0) {
        return Some(make(None, 0, h));
    }
    let head = &line[..line.len().min(MAX_PREFIX)];
    let space = memchr::memchr(b' ', head)?;
    if space == 0 {
        return None;
    }
    let at = skip_spaces(line, space);
    header_at(line, at).map(|h| make(Some((0, space)), at, h))
}

fn issue(ev: &mut Event, raw: &[u8], offset: usize, kind: &str, expected: &str) {
    ev.issues.push(ParseIssue::new(raw, offset, kind, expected));
}

fn set(ev: &mut Event, name: &str, value: &[u8]) {
    if !value.is_empty() && value != b"-" {
        ev.fields.insert(name.to_string(), lossy(value));
    }
}

fn parse_line(ev: &mut Event, raw: &[u8], hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let line = strip_terminators(raw);
    if let Err(e) = std::str::from_utf8(line) {
        issue(ev, raw, e.valid_up_to(), "invalid_utf8", "UTF-8 text");
    }
    let Some(h) = header(line) else {
        ev.message = lossy(line);
        issue(
            ev,
            raw,
            0,
            "not_oslo_log",
            "YYYY-MM-DD HH:MM:SS.fff PID LEVEL module [context] message",
        );
        return;
    };
    if let Some((s, e)) = h.prefix {
        set(ev, fields::FILE_PREFIX, &line[s..e]);
    }
    let ts_text = &line[h.ts_start..h.ts_start + h.found.text_len];
    set_reported(ev, raw, h.ts_start, ts_text, h.found, hints);
    ev.pid = Some(lossy(&line[h.pid.0..h.pid.1]));
    ev.severity = Some(h.severity);

    let mut pos = h.rest;
    let me = token_end(line, pos);
    if me > pos {
        ev.app = Some(lossy(&line[pos..me]));
    } else {
        issue(ev, raw, pos, "missing_field", "a module name after LEVEL");
    }
    pos = skip_spaces(line, me);
    if let Some(end) = context_end(line, pos) {
        context(ev, &line[pos + 1..end]);
        pos = skip_spaces(line, end + 1);
    }
    let msg = &line[pos.min(line.len())..];
    ev.message = lossy(msg);
    lifecycle(ev, msg);
}

/// The index of the `]` closing a request context that starts at `pos` (`[req-…]`, `[-]`,
/// `[- - - - -]`); None when `pos` holds no context (`[instance: …]` is message text).
fn context_end(line: &[u8], pos: usize) -> Option<usize> {
    let rest = line.get(pos..)?;
    if !(rest.starts_with(b"[req-") || rest.starts_with(b"[-")) {
        return None;
    }
    memchr::memchr(b']', rest).map(|i| pos + i)
}

/// `req-UUID USER PROJECT DOMAIN USER_DOMAIN PROJECT_DOMAIN` (or `-`): request id, user and
/// project ids when given.
fn context(ev: &mut Event, ctx: &[u8]) {
    let mut parts = ctx.split(|b| *b == b' ').filter(|p| !p.is_empty());
    if let Some(req) = parts.next()
        && req.starts_with(b"req-")
    {
        set(ev, fields::REQUEST_ID, req);
        if let Some(user) = parts.next() {
            set(ev, fields::USER_ID, user);
        }
        if let Some(project) = parts.next() {
            set(ev, fields::PROJECT_ID, project);
        }
    }
}

/// `[instance: UUID]` at the start of the message → VM_UUID; lifecycle lines → class and action.
fn lifecycle(ev: &mut Event, msg: &[u8]) {
    let Some(rest) = msg.strip_prefix(b"[instance: ") else {
        if let Some(at) = memchr::memmem::find(msg, b"[instance: ") {
            let rest = &msg[at + 11..];
            if let Some(end) = memchr::memchr(b']', rest) {
                set(ev, fields::VM_UUID, rest[..end].trim_ascii());
            }
        }
        return;
    };
    let Some(end) = memchr::memchr(b']', rest) else {
        return;
    };
    set(ev, fields::VM_UUID, rest[..end].trim_ascii());
    let text = rest[end + 1..].trim_ascii_start();
    let action = LIFECYCLE
        .iter()
        .find(|(start, _)| text.starts_with(start.as_bytes()))
        .map(|(_, a)| *a)
        .or_else(|| {
            text.starts_with(b"Took ")
                .then(|| {
                    TOOK.iter()
                        .find(|(tail, _)| memchr::memmem::find(text, tail.as_bytes()).is_some())
                        .map(|(_, a)| *a)
                })
                .flatten()
        });
    if let Some(action) = action {
        ev.class = EventClass::VmLifecycle;
        ev.fields
            .insert(fields::ACTION.to_string(), action.to_string());
    }
}

/// Reported time: the stamp verbatim, read in the hinted zone.
fn set_reported(
    ev: &mut Event,
    raw: &[u8],
    offset: usize,
    text: &[u8],
    found: Found,
    hints: &DecodeHints,
) {
    let tz = match timestamp::zone(hints) {
        Ok(tz) => tz,
        Err(name) => {
            let expected =
                format!("an IANA zone or ±hh:mm offset as tz hint, not {name:?}; read as UTC");
            issue(ev, raw, offset, "bad_tz", &expected);
            TimeZone::UTC
        }
    };
    let time = match timestamp::resolve(found.stamp, &tz, hints.year, ev.received.timestamp()) {
        Ok(ts) => Some(ts),
        Err(_) => {
            issue(
                ev,
                raw,
                offset,
                "bad_timestamp",
                "a date and time that exist",
            );
            None
        }
    };
    ev.reported = Reported::new(time, lossy(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(raw: &[u8], tz: Option<&str>) -> Event {
        let mut ev = Event::blank(
            model::Received::from_stored(1_780_000_000_000_000_000),
            model::Observer::Cloud,
            model::Origin::File {
                path: "nova.log".into(),
                line: 1,
            },
            raw.to_vec(),
        );
        let hints = DecodeHints {
            tz: tz.map(str::to_string),
            ..DecodeHints::default()
        };
        parse_into(&mut ev, &hints);
        assert_eq!(ev.raw, raw);
        ev
    }

    /// `check(input, expected)`: one line per fact, reviewed by eye.
    fn check(input: &str, tz: Option<&str>, expected: &str) {
        let ev = event(input.as_bytes(), tz);
        let mut got = format!(
            "time={} text={:?} app={} pid={} sev={} class={}\nmsg={:?}\n",
            ev.reported.time.map_or("-".into(), |t| t.to_string()),
            ev.reported.text,
            ev.app.as_deref().unwrap_or("-"),
            ev.pid.as_deref().unwrap_or("-"),
            ev.severity.map_or("-".into(), |s| s.to_string()),
            ev.class,
            ev.message,
        );
        for (k, v) in &ev.fields {
            got.push_str(&format!("field {k}={v}\n"));
        }
        for i in &ev.issues {
            got.push_str(&format!("issue {}@{}\n", i.kind, i.offset));
        }
        let want: String = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, want, "\n--- got ---\n{got}--- want ---\n{want}");
    }

    #[test]
    fn nova_compute_terminating_with_context() {
        check(
            "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:00:17.541 2931 INFO nova.compute.manager [req-c53a921a-16c7-422e-8c9d-c922a720d047 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -] [instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Terminating instance\r",
            None,
            r#"
            time=2017-05-16T00:00:17.541Z text="2017-05-16 00:00:17.541" app=nova.compute.manager pid=2931 sev=6 class=vm.lifecycle
            msg="[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Terminating instance"
            field action=terminating
            field file_prefix=nova-compute.log.1.2017-05-16_13:55:31
            field project_id=54fadb412c4e40cdbaed9335e4c35a9e
            field request_id=req-c53a921a-16c7-422e-8c9d-c922a720d047
            field user_id=113d3a99c3da401fbd62cc2caa5b96d2
            field vm_uuid=b9000564-fe1a-409b-b8cc-1e88b294cd1d
            "#,
        );
    }

    #[test]
    fn dash_context_zone_hint_and_took_lines() {
        check(
            "2017-05-16 00:00:10.302 2931 WARNING nova.virt.libvirt.driver [-] [instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Took 19.05 seconds to spawn the instance on the hypervisor.",
            Some("Europe/Zurich"),
            r#"
            time=2017-05-15T22:00:10.302Z text="2017-05-16 00:00:10.302" app=nova.virt.libvirt.driver pid=2931 sev=4 class=vm.lifecycle
            msg="[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Took 19.05 seconds to spawn the instance on the hypervisor."
            field action=spawn_took
            field vm_uuid=b9000564-fe1a-409b-b8cc-1e88b294cd1d
            "#,
        );
    }

    #[test]
    fn no_context_and_anonymous_context() {
        check(
            "2017-05-16 00:00:10.302 2931 INFO nova.compute.manager [instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)",
            None,
            r#"
            time=2017-05-16T00:00:10.302Z text="2017-05-16 00:00:10.302" app=nova.compute.manager pid=2931 sev=6 class=vm.lifecycle
            msg="[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)"
            field action=vm_started
            field vm_uuid=b9000564-fe1a-409b-b8cc-1e88b294cd1d
            "#,
        );
        check(
            "2017-05-16 00:00:10.302 2931 INFO nova.compute.resource_tracker [req-1 - - - - -] Auditing locally available compute resources for node cp-1",
            None,
            r#"
            time=2017-05-16T00:00:10.302Z text="2017-05-16 00:00:10.302" app=nova.compute.resource_tracker pid=2931 sev=6 class=other
            msg="Auditing locally available compute resources for node cp-1"
            field request_id=req-1
            "#,
        );
    }

    #[test]
    fn bad_lines_keep_text() {
        check(
            "2017-05-16 00:00:10.302 2931 NOTICE nova x",
            None,
            r#"
            time=- text="" app=- pid=- sev=- class=other
            msg="2017-05-16 00:00:10.302 2931 NOTICE nova x"
            issue not_oslo_log@0
            "#,
        );
        check(
            "2017-02-30 00:00:10.302 1 INFO nova x",
            None,
            r#"
            time=- text="2017-02-30 00:00:10.302" app=nova pid=1 sev=6 class=other
            msg="x"
            issue bad_timestamp@0
            "#,
        );
        check(
            "2017-05-16 00:00:10.302 1 INFO nova [req-x u p - - - no close",
            Some("Mars/Olympus"),
            r#"
            time=2017-05-16T00:00:10.302Z text="2017-05-16 00:00:10.302" app=nova pid=1 sev=6 class=other
            msg="[req-x u p - - - no close"
            issue bad_tz@0
            "#,
        );
        let ev = event(b"\xff\xfe 2017-05-16 00:00:10.302 1 INFO nova \xff", None);
        assert!(ev.issues.iter().any(|i| i.kind == "invalid_utf8"));
        for cut in 0..60 {
            let line = b"2017-05-16 00:00:10.302 1 INFO nova [req-x u p - - -] [instance: ab";
            let _ = event(&line[..cut.min(line.len())], None);
        }
    }
}
