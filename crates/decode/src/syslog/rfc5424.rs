//! RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
//!
//! Called by [`super::parse_into`] once `<PRI>1 ` is seen. NILVALUE `-` becomes None;
//! structured data becomes fields `sd.<SD-ID>.<PARAM-NAME>` with the escapes `\"`, `\\` and
//! `\]` undone (any other backslash is kept, as the RFC says); a repeated parameter keeps every
//! value, joined by `, `. Lenient where real senders are: spaces around `=` in SD (rsyslog's own
//! test data has `eventSource= "Application"`), header fields separated by more than one space.
//! Broken SD is an issue (`bad_sd`) and the rest of the line from the SD on is the message, so
//! nothing is lost. A UTF-8 BOM at the start of MSG is stripped.

use memchr::memchr2;
use model::Event;
use model::envelope::DecodeHints;

use super::{KIND_5424, issue, message_text, set_reported, timestamp};
use crate::text::{lossy, token_end};

/// Next space-separated header field at `*pos`; None at end of line.
fn field<'a>(line: &'a [u8], pos: &mut usize) -> Option<(usize, &'a [u8])> {
    if *pos >= line.len() {
        return None;
    }
    let start = *pos;
    let end = token_end(line, start);
    *pos = end + 1;
    Some((start, &line[start..end]))
}

fn nil_or(b: &[u8]) -> Option<String> {
    (b != b"-" && !b.is_empty()).then(|| lossy(b))
}

pub(crate) fn parse(ev: &mut Event, raw: &[u8], line: &[u8], mut pos: usize, hints: &DecodeHints) {
    ev.source_kind = KIND_5424.to_string();
    let names = ["TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID"];
    let mut values: [Option<(usize, &[u8])>; 5] = [None; 5];
    for (i, slot) in values.iter_mut().enumerate() {
        match field(line, &mut pos) {
            Some(v) => *slot = Some(v),
            None => {
                let expected = format!("{} (header ends early)", names[i]);
                issue(ev, raw, line.len(), "truncated", &expected);
                break;
            }
        }
    }
    if let Some((at, ts)) = values[0]
        && ts != b"-"
    {
        match timestamp::parse_rfc3339(ts) {
            Some(found) if found.consumed == ts.len() => {
                set_reported(ev, raw, at, ts, found.stamp, hints);
            }
            _ => {
                issue(ev, raw, at, "bad_timestamp", "an RFC 3339 timestamp or -");
                ev.reported = model::Reported::new(None, lossy(ts));
            }
        }
    }
    ev.host = values[1].and_then(|(_, v)| nil_or(v));
    ev.app = values[2].and_then(|(_, v)| nil_or(v));
    ev.pid = values[3].and_then(|(_, v)| nil_or(v));
    ev.msgid = values[4].and_then(|(_, v)| nil_or(v));
    if values[4].is_none() || pos >= line.len() {
        return;
    }
    let sd_start = pos;
    match line[pos] {
        b'-' => pos += 1,
        b'[' => match structured_data(line, pos, ev) {
            Ok(end) => {
                claimed_vm_uuid(ev, raw, sd_start);
                pos = end;
            }
            Err(at) => {
                issue(ev, raw, at, "bad_sd", "[SD-ID PARAM=\"VALUE\" …] or -");
                ev.message = message_text(&line[sd_start..]);
                return;
            }
        },
        _ => {
            issue(ev, raw, pos, "bad_sd", "[SD-ID PARAM=\"VALUE\" …] or -");
            ev.message = message_text(&line[pos..]);
            return;
        }
    }
    if line.get(pos) == Some(&b' ') {
        pos += 1;
    }
    ev.message = message_text(&line[pos.min(line.len())..]);
}

/// The site kit's `[pugmark@32473 vm_uuid="…"]`: the instance UUID the VM claims, normalised
/// into [`model::fields::CLAIMED_VM_UUID`] when it is one UUID (the `uuid` crate parses the
/// hyphenated, simple, braced and URN forms). Anything else — not a UUID, or the parameter
/// repeated — is an issue; the raw text stays in `sd.pugmark@32473.vm_uuid`.
fn claimed_vm_uuid(ev: &mut Event, raw: &[u8], sd_start: usize) {
    let key = format!(
        "sd.{}.{}",
        model::fields::PUGMARK_SD_ID,
        model::fields::PUGMARK_SD_VM_UUID
    );
    let Some(value) = ev.fields.get(&key) else {
        return;
    };
    match uuid::Uuid::try_parse(value.trim()) {
        Ok(id) => {
            let id = id.hyphenated().to_string();
            ev.fields
                .insert(model::fields::CLAIMED_VM_UUID.to_string(), id);
        }
        Err(_) => issue(
            ev,
            raw,
            sd_start,
            "bad_vm_uuid",
            "one instance UUID in [pugmark@32473 vm_uuid=\"…\"]",
        ),
    }
}

fn name_end(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && !matches!(line[i], b' ' | b']' | b'=' | b'"') {
        i += 1;
    }
    i
}

fn skip_sp(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && line[i] == b' ' {
        i += 1;
    }
    i
}

/// One or more SD elements from `pos` (at `[`). Ok(end) or Err(offset of the problem).
fn structured_data(line: &[u8], mut i: usize, ev: &mut Event) -> Result<usize, usize> {
    while line.get(i) == Some(&b'[') {
        i += 1;
        let id_start = i;
        i = name_end(line, i);
        if i == id_start {
            return Err(i);
        }
        let id = lossy(&line[id_start..i]);
        loop {
            i = skip_sp(line, i);
            match line.get(i) {
                None => return Err(i),
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
            let name_start = i;
            i = name_end(line, i);
            if i == name_start {
                return Err(i);
            }
            let name = lossy(&line[name_start..i]);
            i = skip_sp(line, i);
            if line.get(i) != Some(&b'=') {
                return Err(i);
            }
            i = skip_sp(line, i + 1);
            if line.get(i) != Some(&b'"') {
                return Err(i);
            }
            i += 1;
            let mut value = Vec::new();
            loop {
                let Some(k) = memchr2(b'"', b'\\', &line[i..]) else {
                    return Err(line.len());
                };
                value.extend_from_slice(&line[i..i + k]);
                i += k;
                if line[i] == b'"' {
                    i += 1;
                    break;
                }
                match line.get(i + 1) {
                    Some(&c @ (b'"' | b'\\' | b']')) => {
                        value.push(c);
                        i += 2;
                    }
                    _ => {
                        value.push(b'\\');
                        i += 1;
                    }
                }
            }
            let key = format!("sd.{id}.{name}");
            let value = lossy(&value);
            ev.fields
                .entry(key)
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
    }
    Ok(i)
}
