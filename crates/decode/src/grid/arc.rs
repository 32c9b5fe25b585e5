//! One line of an ARC CE A-REX job log → a `job.run` Event (issue 12).
//!
//! The shape is what A-REX's `JobLog::WriteStartInfo` / `WriteFinishInfo` write
//! (nordugrid/arc `src/services/a-rex/grid-manager/log/JobLog.cpp`): `Arc::Time().str()`
//! (`YYYY-MM-DD HH:MM:SS`, the CE's local time: zone from [`DecodeHints::tz`], UTC when
//! unset), then `Started - job id: ID, unix user: UID:GID, name: "NAME", owner: "DN", lrms:
//! LRMS, queue: QUEUE` or `Finished - job id: …` with `, lrmsid: N` and `, failure: "…"`
//! appended (quoted values escape `"` and `\` with a backslash; the description part is
//! missing when A-REX could not read the job's description).
//!
//! Fields: JOB_ID (`arc:` + the A-REX id, so it never meets an HTCondor id by accident), DN
//! (`owner`), TARGET_UID (`uid:gid`), PAYLOAD_SOURCE `arc`, PAYLOAD_PHASE `start` / `end`,
//! JOB_START / JOB_END (the line's time), `lrms`, `queue`, `lrms_id`, `failure`, `job_name`.
//! A line of another shape is kept as text with an issue.

use model::{DecodeHints, Event, EventClass, ParseIssue, Reported, fields};

use crate::syslog::timestamp;
use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "arc-job-log";

/// `DATE TIME Started - job id: ` or `… Finished - job id: ` at the start of `line`.
pub fn is_job_line(line: &[u8]) -> bool {
    let Some(found) = timestamp::parse_rfc3339(line) else {
        return false;
    };
    let rest = line
        .get(found.consumed..)
        .unwrap_or_default()
        .trim_ascii_start();
    rest.starts_with(b"Started - job id: ") || rest.starts_with(b"Finished - job id: ")
}

/// Fill `ev` from one line. Never fails.
pub fn parse_into(ev: &mut Event, hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse(ev, &raw, hints);
    ev.raw = raw;
}

fn parse(ev: &mut Event, raw: &[u8], hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let line = strip_terminators(raw);
    ev.message = lossy(line);
    let Some(found) = timestamp::parse_rfc3339(line) else {
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "bad_header",
            "a `YYYY-MM-DD HH:MM:SS` stamp",
        ));
        return;
    };
    let text = lossy(&line[..found.text_len]);
    let time = timestamp::zone(hints).ok().and_then(|tz| {
        timestamp::resolve(found.stamp, &tz, hints.year, ev.received.timestamp()).ok()
    });
    if time.is_none() {
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "bad_timestamp",
            "a date and time that exist (and a valid tz hint)",
        ));
    }
    ev.reported = Reported::new(time, text);
    let body_at = found.consumed
        + (line.len() - found.consumed - line[found.consumed..].trim_ascii_start().len());
    let body = lossy(&line[body_at..]);
    let (phase, rest) = if let Some(r) = body.strip_prefix("Started - ") {
        ("start", r)
    } else if let Some(r) = body.strip_prefix("Finished - ") {
        ("end", r)
    } else {
        ev.issues.push(ParseIssue::new(
            raw,
            body_at,
            "unknown_line",
            "`Started - job id: …` or `Finished - job id: …`",
        ));
        return;
    };
    let pairs = match pairs(rest) {
        Ok(p) => p,
        Err(at) => {
            ev.issues.push(ParseIssue::new(
                raw,
                body_at + (body.len() - rest.len()) + at,
                "bad_value",
                "`key: value` pairs separated by `, ` (quoted values closed)",
            ));
            return;
        }
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(id) = get("job id") else {
        ev.issues.push(ParseIssue::new(
            raw,
            body_at,
            "missing_field",
            "`job id: …`",
        ));
        return;
    };
    ev.class = EventClass::JobRun;
    let job_id = format!("arc:{id}");
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            ev.fields.insert(k.to_string(), v);
        }
    };
    put(fields::JOB_ID, Some(job_id.clone()));
    put(fields::PAYLOAD_SOURCE, Some("arc".into()));
    put(fields::PAYLOAD_PHASE, Some(phase.into()));
    put(fields::TARGET_UID, get("unix user"));
    put(fields::DN, get("owner"));
    put("job_name", get("name"));
    put("lrms", get("lrms"));
    put("queue", get("queue"));
    put("lrms_id", get("lrmsid"));
    put("failure", get("failure"));
    if let Some(t) = time {
        let f = if phase == "start" {
            fields::JOB_START
        } else {
            fields::JOB_END
        };
        ev.fields.insert(f.to_string(), t.to_string());
    }
    let mut msg = format!(
        "ARC job {id} {} (unix user {})",
        if phase == "start" {
            "started"
        } else {
            "finished"
        },
        ev.field(fields::TARGET_UID).unwrap_or("unknown")
    );
    if let Some(dn) = ev.field(fields::DN) {
        msg.push_str(&format!(" for {dn}"));
    }
    if let Some(f) = ev.field("failure") {
        msg.push_str(&format!(": failure {f}"));
    }
    ev.message = msg;
}

/// `key: value, key: "quoted, value", …` → pairs; Err(offset) at an unclosed quote.
fn pairs(s: &str) -> Result<Vec<(String, String)>, usize> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let Some(colon) = s[i..].find(": ") else {
            return Err(i);
        };
        let key = s[i..i + colon].trim().to_string();
        i += colon + 2;
        let mut value = String::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut closed = false;
            let mut chars = s[i..].char_indices();
            while let Some((k, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        i += k + 1;
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(i);
            }
        } else {
            let end = s[i..].find(", ").map_or(s.len(), |e| i + e);
            value = s[i..end].trim().to_string();
            i = end;
        }
        out.push((key, value));
    }
    Ok(out)
}
