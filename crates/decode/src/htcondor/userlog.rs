//! HTCondor job event logs (userlog): one event per record (framing:
//! `Framing::Terminated(b"...")`), a header line, indented body lines, and the `...` line.
//!
//! Header: `NNN (cluster.proc.subproc) DATE TIME text`, DATE being the old year-less local
//! `MM/DD HH:MM:SS` (year and zone from [`DecodeHints`], through the syslog timestamp helpers,
//! so the same `--year` / mtime / `--tz` rules apply) or the modern `YYYY-MM-DD HH:MM:SS`
//! (optionally with a fraction and an offset). Fields: CONDOR_EVENT (the code), JOB_ID
//! (`cluster.proc`, the form `ClusterId.ProcId` takes in job ads; none for the `-1` cluster of
//! non-job events), `action` = `condor.<event name>`. Per event: 000 submit host sinful →
//! `submit_ip`, `DAG Node:` → `dag_node`; 001 execute host sinful → EXEC_IP / `exec_alias` /
//! `exec_addrs`, `SlotName: slot1@host` → EXEC_HOST, and JOB_START = the event time; 005
//! termination → `exit_code` or `exit_signal`, JOB_END = the event time; 028 job ad
//! information → every `Attr = value` line as `ad.<Attr>`, plus the job attributes we model.
//! Classes: 001 and 005 are `job.run`, the rest `other`. Free-text body lines are allowed
//! (they stay in the raw record); an unreadable header is a `bad_event` issue.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use model::{DecodeHints, Event, EventClass, ParseIssue, Reported, fields};

use super::classad::{self, Value};
use super::job::{EXEC_ADDRS, EXEC_ALIAS, EXEC_SLOT, SUBMIT_IP};
use super::sinful;
use crate::syslog::timestamp::{self, Stamp};
use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "condor-userlog";

/// Field names this decoder sets (the vocabulary lives in `model::fields`).
pub use model::fields::{DAG_NODE, EXIT_CODE, EXIT_SIGNAL};

/// Event names by code (HTCondor's ULogEventNumber, lower-cased without `ULOG_`).
const EVENT_NAMES: [&str; 46] = [
    "submit",
    "execute",
    "executable_error",
    "checkpointed",
    "job_evicted",
    "job_terminated",
    "image_size",
    "shadow_exception",
    "generic",
    "job_aborted",
    "job_suspended",
    "job_unsuspended",
    "job_held",
    "job_released",
    "node_execute",
    "node_terminated",
    "post_script_terminated",
    "globus_submit",
    "globus_submit_failed",
    "globus_resource_up",
    "globus_resource_down",
    "remote_error",
    "job_disconnected",
    "job_reconnected",
    "job_reconnect_failed",
    "grid_resource_up",
    "grid_resource_down",
    "grid_submit",
    "job_ad_information",
    "job_status_unknown",
    "job_status_known",
    "job_stage_in",
    "job_stage_out",
    "attribute_update",
    "presubmit",
    "cluster_submit",
    "cluster_remove",
    "factory_paused",
    "factory_resumed",
    "none",
    "file_transfer",
    "reserve_space",
    "release_space",
    "file_complete",
    "file_used",
    "file_removed",
];

/// The event code of a header line (`NNN (`), if the line is one.
pub(crate) fn header_code(line: &[u8]) -> Option<u16> {
    let code = line.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || line.get(3..5) != Some(b" (") {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A parsed header line.
struct Header {
    code: u16,
    code_text: String,
    cluster: Option<i64>,
    proc_id: Option<i64>,
    /// (offset in line, text, stamp) of the date.
    date: Option<(usize, String, Stamp)>,
    text: String,
}

fn header(line: &[u8]) -> Result<Header, (usize, &'static str)> {
    const SHAPE: &str = "an event header `NNN (cluster.proc.subproc) date time text`";
    let code = header_code(line).ok_or((0, SHAPE))?;
    let close = memchr::memchr(b')', line).ok_or((4, SHAPE))?;
    let id = lossy(line.get(5..close).unwrap_or_default());
    let mut parts = id.split('.').map(|p| p.trim().parse::<i64>().ok());
    let cluster = parts.next().flatten();
    let proc_id = parts.next().flatten();
    if cluster.is_none() {
        return Err((5, "a job id `cluster.proc.subproc` in the header"));
    }
    let mut pos = close + 1;
    if line.get(pos) == Some(&b' ') {
        pos += 1;
    }
    let rest = line.get(pos..).unwrap_or_default();
    let (date, used) = if let Some((stamp, len)) = old_date(rest) {
        (Some((pos, lossy(&rest[..len]), stamp)), len)
    } else if let Some(found) = timestamp::parse_rfc3339(rest) {
        (
            Some((pos, lossy(&rest[..found.text_len]), found.stamp)),
            found.consumed,
        )
    } else {
        (None, 0)
    };
    if date.is_none() {
        return Err((pos, "a date `MM/DD HH:MM:SS` or `YYYY-MM-DD HH:MM:SS`"));
    }
    let text = lossy(rest.get(used..).unwrap_or_default())
        .trim()
        .to_string();
    Ok(Header {
        code,
        code_text: lossy(&line[..3]),
        cluster,
        proc_id,
        date,
        text,
    })
}

fn two(b: &[u8], at: usize) -> Option<i8> {
    let d = b.get(at..at + 2)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    i8::try_from((d[0] - b'0') * 10 + (d[1] - b'0')).ok()
}

/// `MM/DD HH:MM:SS` at the start of `b`: (stamp, length).
fn old_date(b: &[u8]) -> Option<(Stamp, usize)> {
    if b.get(2) != Some(&b'/') || b.get(5) != Some(&b' ') {
        return None;
    }
    if b.get(8) != Some(&b':') || b.get(11) != Some(&b':') {
        return None;
    }
    if !matches!(b.get(14), None | Some(b' ')) {
        return None;
    }
    let (month, day) = (two(b, 0)?, two(b, 3)?);
    let (hour, minute, second) = (two(b, 6)?, two(b, 9)?, two(b, 12)?);
    let stamp = match DateTime::new(2000, month, day, hour, minute, second.min(59), 0) {
        Ok(_) => Stamp::YearLess {
            month,
            day,
            hour,
            minute,
            second: second.min(59),
            nanos: 0,
        },
        Err(_) => Stamp::Invalid,
    };
    Some((stamp, 14))
}

/// Reported time from a header stamp: zone and year from the hints.
fn set_reported(
    ev: &mut Event,
    raw: &[u8],
    offset: usize,
    text: String,
    stamp: Stamp,
    hints: &DecodeHints,
) {
    let tz = if matches!(stamp, Stamp::Instant(_) | Stamp::Invalid) {
        TimeZone::UTC
    } else {
        match timestamp::zone(hints) {
            Ok(tz) => tz,
            Err(name) => {
                let expected =
                    format!("an IANA zone or ±hh:mm offset as tz hint, not {name:?}; read as UTC");
                ev.issues
                    .push(ParseIssue::new(raw, offset, "bad_tz", &expected));
                TimeZone::UTC
            }
        }
    };
    let time = match timestamp::resolve(stamp, &tz, hints.year, ev.received.timestamp()) {
        Ok(ts) => Some(ts),
        Err(_) => {
            ev.issues.push(ParseIssue::new(
                raw,
                offset,
                "bad_timestamp",
                "a date and time that exist",
            ));
            None
        }
    };
    ev.reported = Reported::new(time, text);
}

fn set(ev: &mut Event, name: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        ev.fields.insert(name.to_string(), v);
    }
}

/// Sinful string after `marker` in `text` (`on host: <…>`), if any. `Err` for one that is there
/// but unreadable.
fn sinful_after(text: &str, marker: &str) -> Result<Option<sinful::Sinful>, ()> {
    let Some(i) = text.find(marker) else {
        return Ok(None);
    };
    let rest = text[i + marker.len()..].trim();
    if rest.is_empty() {
        return Ok(None); // `Job executing on host: ` with nothing: written so by condor
    }
    let end = rest.find('>').map_or(rest.len(), |e| e + 1);
    sinful::parse(&rest[..end]).map(Some).ok_or(())
}

/// Job attributes of a 028 event that we map to normalised fields.
const AD_FIELDS: [(&str, &str); 7] = [
    ("Owner", fields::JOB_OWNER),
    ("User", fields::USER),
    ("x509userproxysubject", fields::DN),
    ("x509UserProxyVOName", fields::VO),
    ("GlobalJobId", fields::JOB_ID),
    ("AuthTokenIssuer", fields::TOKEN_ISSUER),
    ("AuthTokenSubject", fields::TOKEN_SUBJECT),
];

/// Fill `ev` from one userlog event. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let raw = std::mem::take(&mut ev.raw);
    parse_event(ev, &raw, hints);
    ev.raw = raw;
}

fn parse_event(ev: &mut Event, raw: &[u8], hints: &DecodeHints) {
    if let Err(e) = std::str::from_utf8(raw) {
        ev.issues.push(ParseIssue::new(
            raw,
            e.valid_up_to(),
            "invalid_utf8",
            "UTF-8 text",
        ));
    }
    // Leading blank lines are not part of the event.
    let mut start = 0;
    while start < raw.len() && raw[start].is_ascii_whitespace() {
        start += 1;
    }
    let first_end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i);
    let first = strip_terminators(&raw[start..first_end]);
    let h = match header(first) {
        Ok(h) => h,
        Err((at, expected)) => {
            ev.issues
                .push(ParseIssue::new(raw, start + at, "bad_event", expected));
            ev.message = lossy(first);
            return;
        }
    };
    let body_start = (first_end + 1).min(raw.len());
    let mut body: Vec<(usize, String)> = Vec::new();
    let mut terminated = false;
    let mut off = body_start;
    for line in raw
        .get(body_start..)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
    {
        let text = lossy(strip_terminators(line));
        if text == "..." {
            terminated = true;
            break;
        }
        body.push((off, text));
        off += line.len() + 1;
    }
    if !terminated {
        ev.issues.push(ParseIssue::new(
            raw,
            raw.len(),
            "missing_terminator",
            "a line `...` ending the event",
        ));
    }
    set(ev, fields::CONDOR_EVENT, Some(h.code_text.clone()));
    let name = EVENT_NAMES
        .get(usize::from(h.code))
        .copied()
        .unwrap_or("unknown");
    set(ev, fields::ACTION, Some(format!("condor.{name}")));
    if let (Some(c), p) = (h.cluster, h.proc_id)
        && c >= 0
    {
        set(ev, fields::JOB_ID, Some(format!("{c}.{}", p.unwrap_or(0))));
    }
    if let Some((at, text, stamp)) = h.date {
        set_reported(ev, raw, start + at, text, stamp, hints);
    }
    ev.message = if h.text.is_empty() {
        format!("{name} event")
    } else {
        h.text.clone()
    };

    for (_, line) in &body {
        let l = line.trim();
        if let Some(node) = l.strip_prefix("DAG Node:") {
            set(ev, DAG_NODE, Some(node.trim().to_string()));
        } else if let Some(slot) = l.strip_prefix("SlotName:") {
            let slot = slot.trim();
            match slot.split_once('@') {
                Some((s, host)) => {
                    set(ev, EXEC_SLOT, Some(s.to_string()));
                    set(ev, fields::EXEC_HOST, Some(host.to_string()));
                }
                None => set(ev, fields::EXEC_HOST, Some(slot.to_string())),
            }
        } else if let Some(v) = between(l, "(return value ", ")") {
            set(ev, EXIT_CODE, Some(v.to_string()));
        } else if let Some(v) = between(l, "(signal ", ")") {
            set(ev, EXIT_SIGNAL, Some(v.to_string()));
        }
    }

    let header_offset = start;
    let reported = ev.reported.time.map(|t| t.to_string());
    match h.code {
        0 => match sinful_after(&h.text, "from host:") {
            Ok(s) => set(ev, SUBMIT_IP, s.and_then(|s| s.ip).map(|ip| ip.to_string())),
            Err(()) => bad_sinful(ev, raw, header_offset),
        },
        1 | 14 => {
            match sinful_after(&h.text, "on host:") {
                Ok(Some(s)) => {
                    set(ev, fields::EXEC_IP, s.ip.map(|ip| ip.to_string()));
                    if s.addrs.len() > 1 {
                        let all: Vec<String> = s.addrs.iter().map(ToString::to_string).collect();
                        set(ev, EXEC_ADDRS, Some(all.join(",")));
                    }
                    let alias = s.alias.or(s.host);
                    if !ev.fields.contains_key(fields::EXEC_HOST) {
                        set(ev, fields::EXEC_HOST, alias.clone());
                    }
                    set(ev, EXEC_ALIAS, alias);
                }
                Ok(None) => {}
                Err(()) => bad_sinful(ev, raw, header_offset),
            }
            if h.code == 1 {
                ev.class = EventClass::JobRun;
                set(ev, fields::JOB_START, reported);
            }
        }
        5 => {
            ev.class = EventClass::JobRun;
            set(ev, fields::JOB_END, reported);
        }
        28 => {
            let mut issues = Vec::new();
            let ad = classad::read_ad(raw, body_start, &mut issues, |_, l| l == "...");
            for attr in ad.iter() {
                if let Some(v) = attr.value.text() {
                    set(ev, &format!("ad.{}", attr.name), Some(v));
                }
            }
            for (attr, field) in AD_FIELDS {
                if let Some(v) = ad.text(attr) {
                    set(ev, field, Some(v));
                }
            }
            if let Some(Value::Str(s)) = ad.value("SubmitHost")
                && let Some(ip) = sinful::parse(s).and_then(|s| s.ip)
            {
                set(ev, SUBMIT_IP, Some(ip.to_string()));
            }
        }
        _ => {}
    }
}

fn bad_sinful(ev: &mut Event, raw: &[u8], offset: usize) {
    ev.issues.push(ParseIssue::new(
        raw,
        offset,
        "bad_sinful",
        "a sinful string <ip:port?…> after `host:`",
    ));
}

/// The text between `open` and the next `close` in `s`.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = s.find(open)? + open.len();
    let j = s[i..].find(close)? + i;
    Some(s[i..j].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = header(b"001 (2758.000.000) 03/20 21:05:25 Job executing on host: <1.2.3.4:1>")
            .ok()
            .unwrap();
        assert_eq!((h.code, h.cluster, h.proc_id), (1, Some(2758), Some(0)));
        assert_eq!(h.text, "Job executing on host: <1.2.3.4:1>");
        let h = header(b"008 (-01.-01.-01) 05/22 18:28:20 ").ok().unwrap();
        assert_eq!((h.cluster, h.text.as_str()), (Some(-1), ""));
        let h = header(b"005 (7.1.0) 2024-03-05 10:11:12 Job terminated.")
            .ok()
            .unwrap();
        assert!(matches!(h.date, Some((_, _, Stamp::Civil(_)))));
        assert!(
            header(b"005 (7.1.0) 13/45 10:11:12 x")
                .ok()
                .is_some_and(|h| matches!(h.date, Some((_, _, Stamp::Invalid))))
        );
        assert!(header(b"005 (7.1.0) yesterday").is_err());
        assert!(header(b"05 (7.1.0) 03/20 21:05:25 x").is_err());
        assert!(header(b"005 (x) 03/20 21:05:25 x").is_err());
        assert!(header(b"005 (7.1.0").is_err());
    }
}
