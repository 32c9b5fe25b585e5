//! Syslog, per line, from bytes: RFC 5424, RFC 3164/BSD, and the rsyslog file formats.
//!
//! One entry point, [`parse_into`], fills an [`Event`] from one line (one record; framing is the
//! source's job). It recognises, in this order: an optional `<PRI>`; RFC 5424 (`<PRI>1 …`,
//! module `rfc5424`); else a BSD header: a timestamp (BSD `Mmm dd hh:mm:ss` or RFC 3339, as
//! rsyslog's traditional and `RSYSLOG_FileFormat` templates write), a hostname, a tag
//! (`app[pid]:`, `app:`, or none) and the message; else a loghub/`grep -H`-style file-name
//! prefix in front of such a line (kept in field `file_prefix`). A line that is none of these
//! keeps its whole text as message, with an issue.
//!
//! A central logger's archive line — `RECEIVED SENDER-IP <PRI>…`: the logger's RFC 3339 receive
//! time, the peer address and the message exactly as received, what the rsyslog template
//! `%timegenerated:::date-rfc3339% %fromhost-ip% %rawmsg%` writes (docs/SITES.md) — is the
//! message parsed as above, with the two collector facts kept in fields `relay_received` and
//! `relay_from`: evidence the sender did not write, which `check` holds its claims against.
//!
//! Why our own parser and not the `syslog_loose` crate (0.23, evaluated on the corpus): it takes
//! `&str` (no byte input, so no byte offsets for issues on invalid UTF-8), resolves year-less
//! stamps against the machine's clock by default (decoding must depend on the envelope only),
//! takes fixed offsets but not IANA zones, and misparses real lines of the corpus:
//! `combo  -- root[2421]: ROOT LOGIN ON tty2` gives app None and message
//! `- root[2421]: ROOT LOGIN ON tty2` (a byte lost), `combo syslogd 1.4.1: restart.` gives app
//! `syslogd` and message `1.4.1: restart.` (loghub: app `syslogd 1.4.1`), the RFC 5424 BOM is
//! kept in the message, and prefixed lines (`foo.log Jun 14 …`) are not recognised.
//!
//! Deliberate choices (see tests/corpus.rs for the rsyslog cases they differ on): a word
//! without `:` after the hostname is message text, not a tag (rsyslog makes `--` of
//! `-- MARK --` a tag); two-word tags are accepted only as `name version:` or `name word[pid]:`;
//! trailing NUL bytes (UDP senders' C strings) are dropped from the message; leading spaces of
//! the message are dropped. Linear time in the line length, whatever the input.

pub(crate) mod rfc5424;
pub(crate) mod timestamp;

use jiff::tz::TimeZone;
use model::envelope::{DecodeHints, YearRule};
use model::{Event, ParseIssue, Reported};

use crate::text::{lossy, skip_spaces, strip_terminators, token_end};
use timestamp::{Found, Stamp};

/// Longest tag (`app[pid]`) we accept; rsyslog's oversize-tag tests use 40 bytes.
const MAX_TAG: usize = 128;
/// How far into a line a file-name prefix may reach.
const MAX_PREFIX: usize = 1024;

pub(crate) const KIND_5424: &str = "syslog-rfc5424";
pub(crate) const KIND_3164: &str = "syslog-rfc3164";

/// Fill `ev` (whose `raw` holds the line) from one syslog line.
pub fn parse_into(ev: &mut Event, hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse_line(ev, &raw, hints);
    ev.raw = raw;
}

/// Whether a line has some syslog shape (a valid PRI, or a timestamp where one belongs).
pub fn looks_like_syslog(line: &[u8]) -> bool {
    let line = strip_terminators(line);
    if pri(line).is_some() {
        return true;
    }
    let start = skip_spaces(line, 0);
    timestamp::parse_any(&line[start..]).is_some() || file_prefix(line).is_some()
}

fn issue(ev: &mut Event, raw: &[u8], offset: usize, kind: &str, expected: &str) {
    ev.issues.push(ParseIssue::new(raw, offset, kind, expected));
}

fn parse_line(ev: &mut Event, raw: &[u8], hints: &DecodeHints) {
    let line = strip_terminators(raw);
    if let Err(e) = std::str::from_utf8(line) {
        issue(ev, raw, e.valid_up_to(), "invalid_utf8", "UTF-8 text");
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        ev.source_kind = "raw".to_string();
        ev.message = lossy(line);
        issue(ev, raw, 0, "empty", "a syslog line");
        return;
    }
    let mut pos = 0;
    let relay_hints;
    let mut hints = hints;
    if let Some((received, from, start)) = relay_prefix(line) {
        ev.fields.insert(
            model::fields::RELAY_RECEIVED.to_string(),
            received.to_string(),
        );
        ev.fields
            .insert(model::fields::RELAY_FROM.to_string(), from.to_string());
        pos = start;
        // A year-less stamp takes its year from when the message was received: the archive
        // logger's receive time beats our guesses (the import's time, the file's mtime);
        // only a year the user gave (`--year`) stands above it.
        if !matches!(hints.year, YearRule::Fixed(_)) {
            relay_hints = DecodeHints {
                year: YearRule::Reference(received),
                tz: hints.tz.clone(),
            };
            hints = &relay_hints;
        }
    }
    let relayed = pos > 0;
    let mut had_pri = false;
    if line[pos] == b'<' {
        match pri(&line[pos..]) {
            Some((value, len)) => {
                ev.facility = Some(value >> 3);
                ev.severity = Some(value & 7);
                pos += len;
                had_pri = true;
            }
            None => issue(ev, raw, pos, "bad_pri", "<PRI> with PRI 0..=191"),
        }
    }
    if had_pri && line.get(pos) == Some(&b'1') && matches!(line.get(pos + 1), None | Some(b' ')) {
        rfc5424::parse(ev, raw, line, pos + 2, hints);
        return;
    }
    let start = skip_spaces(line, pos);
    if let Some(found) = timestamp::parse_any(&line[start..]) {
        bsd(ev, raw, line, start, found, hints);
        return;
    }
    if !had_pri
        && !relayed
        && let Some((prefix, ts_start, found)) = file_prefix(line)
    {
        ev.fields
            .insert(model::fields::FILE_PREFIX.to_string(), lossy(prefix));
        bsd(ev, raw, line, ts_start, found, hints);
        return;
    }
    if had_pri {
        ev.source_kind = KIND_3164.to_string();
        issue(
            ev,
            raw,
            start,
            "bad_timestamp",
            "a timestamp (Mmm dd hh:mm:ss or RFC 3339)",
        );
        ev.message = message_text(&line[start..]);
    } else {
        ev.source_kind = "raw".to_string();
        issue(
            ev,
            raw,
            0,
            "not_syslog",
            "<PRI> or a timestamp (Mmm dd hh:mm:ss or RFC 3339)",
        );
        ev.message = lossy(line);
    }
}

/// How far into a line an archive prefix (`RECEIVED SENDER-IP `) may reach.
const MAX_RELAY_PREFIX: usize = 96;

/// A central logger's archive prefix: an RFC 3339 instant with its offset, one space, an IP
/// address, one space, then a `<PRI>`. The PRI is required so a plain `RSYSLOG_FileFormat` line
/// whose host happens to be an address (`2026-… 10.0.0.5 sshd[1]: …`) is not taken for one.
/// Returns (received, sender, start of the message).
fn relay_prefix(line: &[u8]) -> Option<(jiff::Timestamp, std::net::IpAddr, usize)> {
    let head = &line[..line.len().min(MAX_RELAY_PREFIX)];
    let sp1 = memchr::memchr(b' ', head)?;
    let stamp = std::str::from_utf8(&head[..sp1]).ok()?;
    if stamp.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let received: jiff::Timestamp = stamp.parse().ok()?;
    let sp2 = sp1 + 1 + memchr::memchr(b' ', &head[sp1 + 1..])?;
    let from: std::net::IpAddr = std::str::from_utf8(&head[sp1 + 1..sp2])
        .ok()?
        .parse()
        .ok()?;
    pri(&line[sp2 + 1..])?;
    Some((received, from, sp2 + 1))
}

/// `<PRI>` at the start: (value, bytes used).
fn pri(line: &[u8]) -> Option<(u8, usize)> {
    if line.first() != Some(&b'<') {
        return None;
    }
    let mut v: u16 = 0;
    let mut i = 1;
    while i < line.len() && i <= 4 && line[i].is_ascii_digit() {
        v = v * 10 + u16::from(line[i] - b'0');
        i += 1;
    }
    if i == 1 || i > 4 || line.get(i) != Some(&b'>') || v > 191 {
        return None;
    }
    Some((u8::try_from(v).ok()?, i + 1))
}

/// A first token that is not a PRI or timestamp, followed by a timestamp: `foo.log Jun 14 …`,
/// `foo.log: Jun 14 …` or `foo.log:Jun 14 …` (grep -H). Returns (prefix, timestamp start, stamp).
fn file_prefix(line: &[u8]) -> Option<(&[u8], usize, Found)> {
    let head = &line[..line.len().min(MAX_PREFIX)];
    let space = memchr::memchr(b' ', head).unwrap_or(head.len());
    if space == 0 {
        return None;
    }
    let token = &line[..space];
    if space < line.len() {
        let s = skip_spaces(line, space);
        if let Some(found) = timestamp::parse_any(&line[s..]) {
            let prefix = token.strip_suffix(b":").unwrap_or(token);
            return Some((prefix, s, found));
        }
    }
    for colon in memchr::memchr_iter(b':', token) {
        if let Some(found) = timestamp::parse_any(&line[colon + 1..]) {
            return Some((&line[..colon], colon + 1, found));
        }
    }
    None
}

/// Record the reported time: text verbatim, instant when the hints allow one.
fn set_reported(
    ev: &mut Event,
    raw: &[u8],
    offset: usize,
    text: &[u8],
    stamp: Stamp,
    hints: &DecodeHints,
) {
    let needs_zone = !matches!(stamp, Stamp::Instant(_) | Stamp::Invalid);
    let tz = if needs_zone {
        match timestamp::zone(hints) {
            Ok(tz) => tz,
            Err(name) => {
                let expected =
                    format!("an IANA zone or ±hh:mm offset as tz hint, not {name:?}; read as UTC");
                issue(ev, raw, offset, "bad_tz", &expected);
                TimeZone::UTC
            }
        }
    } else {
        TimeZone::UTC
    };
    let time = match timestamp::resolve(stamp, &tz, hints.year, ev.received.timestamp()) {
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

/// The BSD shape from the timestamp on: `TIMESTAMP [HOST] [TAG] MSG`.
fn bsd(
    ev: &mut Event,
    raw: &[u8],
    line: &[u8],
    ts_start: usize,
    found: Found,
    hints: &DecodeHints,
) {
    ev.source_kind = KIND_3164.to_string();
    let ts_text = &line[ts_start..ts_start + found.text_len];
    set_reported(ev, raw, ts_start, ts_text, found.stamp, hints);
    let mut pos = skip_spaces(line, ts_start + found.consumed);
    if pos < line.len() {
        let end = token_end(line, pos);
        let tok = &line[pos..end];
        if !looks_like_tag(tok) {
            ev.host = Some(lossy(tok));
            pos = skip_spaces(line, end);
        }
    }
    if let Some(tag) = parse_tag(line, pos) {
        ev.app = Some(lossy(&line[tag.app.0..tag.app.1]));
        ev.pid = tag.pid.map(|(s, e)| lossy(&line[s..e]));
        pos = tag.msg_start;
    }
    ev.message = message_text(&line[pos.min(line.len())..]);
}

/// A token right after the timestamp that is a tag, so the host is missing.
fn looks_like_tag(tok: &[u8]) -> bool {
    (tok.len() >= 2 && tok.ends_with(b":")) || pid_tag(tok).is_some()
}

/// `name[digits]` → index of `[`.
fn pid_tag(tok: &[u8]) -> Option<usize> {
    if !tok.ends_with(b"]") {
        return None;
    }
    let lb = memchr::memrchr(b'[', tok)?;
    let inner = &tok[lb + 1..tok.len() - 1];
    (lb > 0 && !inner.is_empty() && inner.iter().all(u8::is_ascii_digit)).then_some(lb)
}

struct Tag {
    app: (usize, usize),
    pid: Option<(usize, usize)>,
    msg_start: usize,
}

fn version_like(b: &[u8]) -> bool {
    b.first().is_some_and(u8::is_ascii_digit) && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// The tag at `pos`, if there is one (see the module doc for what counts).
fn parse_tag(line: &[u8], pos: usize) -> Option<Tag> {
    if pos >= line.len() {
        return None;
    }
    let end = token_end(line, pos);
    let tok = &line[pos..end];
    if tok.is_empty() || tok.len() > MAX_TAG {
        return None;
    }
    let (body_end, msg_from) = if tok.len() >= 2 && tok.ends_with(b":") {
        (end - 1, end)
    } else if pid_tag(tok).is_some() {
        (end, end)
    } else {
        // Two words: `syslogd 1.4.1:` or `-- root[2421]:`.
        let p2 = end + 1;
        if p2 >= line.len() || tok.contains(&b':') {
            return None;
        }
        let end2 = token_end(line, p2);
        let tok2 = &line[p2..end2];
        let body2 = tok2.strip_suffix(b":")?;
        if body2.is_empty() || end2 - pos > MAX_TAG {
            return None;
        }
        if !(version_like(body2) || pid_tag(body2).is_some()) {
            return None;
        }
        (end2 - 1, end2)
    };
    let body = &line[pos..body_end];
    let (app, pid) = match pid_tag(body) {
        Some(lb) => ((pos, pos + lb), Some((pos + lb + 1, body_end - 1))),
        None => match body
            .ends_with(b"]")
            .then(|| memchr::memrchr(b'[', body))
            .flatten()
        {
            // `app[]:` or `app[x1]:`: keep the bracket text as pid, as claimed.
            Some(lb) if lb > 0 => ((pos, pos + lb), Some((pos + lb + 1, body_end - 1))),
            _ => ((pos, body_end), None),
        },
    };
    Some(Tag {
        app,
        pid,
        msg_start: skip_spaces(line, msg_from),
    })
}

/// Message text: UTF-8 BOM at the start stripped, trailing NULs stripped, lossy.
pub(crate) fn message_text(b: &[u8]) -> String {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let mut end = b.len();
    while end > 0 && b[end - 1] == 0 {
        end -= 1;
    }
    lossy(&b[..end])
}
