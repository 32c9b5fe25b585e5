//! OpenStack sources: notifications (versioned and legacy, bare or in the oslo envelope),
//! service logs in oslo.log layout, Keystone directory dumps. Observer: the cloud.
//!
//! Each submodule fills an [`model::Event`] from one record (framing cut the file first: one
//! line per notification or log line, one array element per directory entry). This file holds
//! only [`looks_like`], the format guess from a file's first lines, and the JSON helpers the
//! two JSON decoders share. Nothing here reads files or clocks.

pub mod keystone;
pub mod neutron;
pub mod notification;
pub mod oslo_log;

use model::{Event, Format, ParseIssue};

use crate::text::strip_terminators;

/// Which OpenStack format, if any, a file's first lines look like (terminators stripped).
///
/// - a notification stream: most non-empty lines are JSON objects with `"event_type"` or
///   `"oslo.version"`;
/// - an oslo.log file: most non-empty lines have the `YYYY-MM-DD HH:MM:SS[.fff] PID LEVEL`
///   header, optionally behind a file-name prefix;
/// - a Keystone dump: the first non-blank byte is `[` and the sample holds `"ID"` and `"Name"`
///   keys (a `condor_history -json` dump has neither).
///
/// Syslog files never match: their lines have no `PID LEVEL` after the stamp.
pub fn looks_like(sample_lines: &[&[u8]]) -> Option<Format> {
    let lines: Vec<&[u8]> = sample_lines
        .iter()
        .map(|l| trim(strip_terminators(l)))
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.first()?;
    if first.starts_with(b"[") {
        let has = |key: &[u8]| lines.iter().any(|l| memchr::memmem::find(l, key).is_some());
        return (has(b"\"ID\"") && has(b"\"Name\"")).then_some(Format::KeystoneDirectory);
    }
    let majority = |n: usize| n * 2 > lines.len();
    let notes = lines
        .iter()
        .filter(|l| {
            l.starts_with(b"{")
                && (memchr::memmem::find(l, b"\"event_type\"").is_some()
                    || memchr::memmem::find(l, b"\"oslo.version\"").is_some())
        })
        .count();
    if majority(notes) {
        return Some(Format::OpenstackNotification);
    }
    let logs = lines.iter().filter(|l| oslo_log::has_header(l)).count();
    majority(logs).then_some(Format::OsloLog)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Parse one JSON object from `body`; on failure record the issue (with the byte offset
/// serde_json reports) and return None.
pub(crate) fn json_object(
    ev: &mut Event,
    raw: &[u8],
    body: &[u8],
    what: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        Ok(_) => {
            let at = body
                .iter()
                .position(|c| !c.is_ascii_whitespace())
                .unwrap_or(0);
            ev.issues.push(ParseIssue::new(
                raw,
                at,
                "not_object",
                &format!("{what} (a JSON object)"),
            ));
            None
        }
        Err(e) => {
            let at = error_offset(body, e.line(), e.column());
            let expected = format!("{what}: {e}");
            ev.issues
                .push(ParseIssue::new(raw, at, "bad_json", &expected));
            None
        }
    }
}

/// Byte offset of serde_json's 1-based (line, column) position.
fn error_offset(body: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match memchr::memchr(b'\n', &body[start..]) {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(body.len())
}

/// Offset of the first mention of `key` in the raw bytes (best effort: issues about a JSON
/// value point at its key), else 0.
pub(crate) fn key_offset(raw: &[u8], key: &str) -> usize {
    memchr::memmem::find(raw, key.as_bytes()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_shape_and_not_syslog() {
        let note: &[u8] = br#"{"event_type": "instance.create.end", "payload": {}}"#;
        assert_eq!(looks_like(&[note]), Some(Format::OpenstackNotification));
        let oslo: &[u8] = br#"{"oslo.version": "2.0", "oslo.message": "{}"}"#;
        assert_eq!(
            looks_like(&[oslo, b""]),
            Some(Format::OpenstackNotification)
        );
        let log: &[u8] = b"nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.api [-] x\r";
        assert_eq!(looks_like(&[log]), Some(Format::OsloLog));
        let bare: &[u8] = b"2017-05-16 00:00:00.008 25746 WARNING nova.compute.manager msg";
        assert_eq!(looks_like(&[bare]), Some(Format::OsloLog));
        let ks: [&[u8]; 4] = [b"[", b"  {", b"    \"ID\": \"a\",", b"    \"Name\": \"b\""];
        assert_eq!(looks_like(&ks), Some(Format::KeystoneDirectory));
        let condor: [&[u8]; 3] = [b"[", b"  {", b"    \"ClusterId\": 1,"];
        assert_eq!(looks_like(&condor), None);
        let syslog: [&[u8]; 3] = [
            b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
            b"2026-10-14T08:00:01.123+02:00 host app[12]: msg",
            b"2026-10-14 08:00:01 host kernel: msg",
        ];
        assert_eq!(looks_like(&syslog), None);
        assert_eq!(looks_like(&[]), None);
    }

    #[test]
    fn json_errors_point_at_the_byte() {
        let body = b"{\"a\":\n  1,}";
        assert_eq!(error_offset(body, 2, 5), 10);
    }
}
