//! One line of an HTCondor(-CE) schedd audit log → an Event (issue 12).
//!
//! HTCondor-CE turns it on by default (htcondor-ce `config/05-ce-auth-defaults.conf`:
//! `SCHEDD_AUDIT_LOG = $(LOG)/AuditLog`, `SCHEDD_DEBUG = D_AUDIT`). The schedd writes, per
//! client request, lines sharing a connection id (HTCondor `schedd.cpp` `AuditLogNewConnection`
//! and `AuditLogJobProxy`, `qmgmt_receivers.cpp` `CONDOR_NewProc`; the shape as htcondor-ce's
//! operation docs show it, section "Checking User Authentication"):
//!
//! ```text
//! 10/15/21 17:54:08 (cid:130) (D_AUDIT) Command=QMGMT_WRITE_CMD, peer=<172.17.0.2:37869>
//! 10/15/21 17:54:08 (cid:130) (D_AUDIT) AuthMethod=SCITOKENS, AuthId=https://demo.scitokens.org,htcondor-ce-dev, CondorId=testuser@users.htcondor.org
//! 10/15/21 17:54:08 (cid:130) (D_AUDIT) Submitting new job 2.0
//! ```
//!
//! plus `Received proxy for job C.P`, `proxy subject: DN`, `proxy identity: DN`, `proxy vo
//! name: VO`, `proxy first fqan: FQAN`, `Authentication Failed, MethodsTried=…`,
//! `Authorization Denied`. The stamp is `MM/DD/YY HH:MM:SS` (HTCondor's default
//! `DEBUG_TIME_FORMAT`, local time: zone from the hints) or ISO 8601.
//!
//! Each line alone: fields CORRELATION (`cid:N`), and per kind — `AuthMethod` lines:
//! `auth_method`, USER (the `CondorId`), and for `SCITOKENS` / `IDTOKENS`-like methods whose
//! `AuthId` is `ISSUER,SUBJECT`, TOKEN_ISSUER and TOKEN_SUBJECT, else (GSI, SSL) DN; `proxy
//! subject` → DN, `proxy vo name` → VO, `proxy first fqan` → FQAN; `Submitting new job C.P`
//! → class `job.run`, JOB_ID `C.P`, PAYLOAD_SOURCE `ce-audit`, PAYLOAD_PHASE `submit`. The
//! fact store joins a job to the identity lines of its connection (same source, same cid).

use model::{DecodeHints, Event, EventClass, ParseIssue, Reported, fields};

use crate::syslog::timestamp::{self, Stamp};
use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "condor-audit-log";

/// `MM/DD/YY HH:MM:SS` at the start: (stamp, length).
fn condor_date(b: &[u8]) -> Option<(Stamp, usize)> {
    let two = |at: usize| -> Option<i8> {
        let d = b.get(at..at + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| ((d[0] - b'0') * 10 + (d[1] - b'0')) as i8)
    };
    if b.get(2) != Some(&b'/') || b.get(5) != Some(&b'/') || b.get(8) != Some(&b' ') {
        return None;
    }
    if b.get(11) != Some(&b':') || b.get(14) != Some(&b':') {
        return None;
    }
    let (mo, d, y) = (two(0)?, two(3)?, two(6)?);
    let (h, mi, s) = (two(9)?, two(12)?, two(15)?);
    let year = 2000 + i16::from(y);
    let stamp = match jiff::civil::DateTime::new(year, mo, d, h, mi, s.min(59), 0) {
        Ok(dt) => Stamp::Civil(dt),
        Err(_) => Stamp::Invalid,
    };
    Some((stamp, 17))
}

/// A stamp at the start: (stamp, text length).
fn stamp(line: &[u8]) -> Option<(Stamp, usize)> {
    condor_date(line).or_else(|| timestamp::parse_rfc3339(line).map(|f| (f.stamp, f.text_len)))
}

/// A stamp followed by `(D_AUDIT)` or `(cid:N)`.
pub fn is_audit_line(line: &[u8]) -> bool {
    let Some((_, len)) = stamp(line) else {
        return false;
    };
    let rest = line.get(len..).unwrap_or_default();
    memchr::memmem::find(rest, b"(D_AUDIT)").is_some()
        || rest.trim_ascii_start().starts_with(b"(cid:")
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
    let Some((st, len)) = stamp(line) else {
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "bad_header",
            "a `MM/DD/YY HH:MM:SS` stamp",
        ));
        return;
    };
    let time = timestamp::zone(hints)
        .ok()
        .and_then(|tz| timestamp::resolve(st, &tz, hints.year, ev.received.timestamp()).ok());
    if time.is_none() {
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "bad_timestamp",
            "a date and time that exist (and a valid tz hint)",
        ));
    }
    ev.reported = Reported::new(time, lossy(&line[..len]));
    let mut rest = lossy(&line[len..]).trim().to_string();
    // `(cid:N)` and `(D_AUDIT)` (either may be absent, depending on the debug header flags).
    loop {
        if let Some(r) = rest.strip_prefix("(cid:")
            && let Some((n, after)) = r.split_once(')')
        {
            ev.fields
                .insert(fields::CORRELATION.into(), format!("cid:{}", n.trim()));
            rest = after.trim_start().to_string();
        } else if let Some(r) = rest.strip_prefix("(D_AUDIT)") {
            rest = r.trim_start().to_string();
        } else if rest.starts_with("(D_") && rest.contains(')') {
            let (_, after) = rest.split_once(')').unwrap_or_default();
            rest = after.trim_start().to_string();
        } else {
            break;
        }
    }
    let body = rest;
    let put = |ev: &mut Event, k: &str, v: &str| {
        let v = v.trim();
        if !v.is_empty() && v != "(null)" {
            ev.fields.insert(k.to_string(), v.to_string());
        }
    };
    if let Some(job) = body.strip_prefix("Submitting new job ") {
        let job = job.trim();
        let ok = job.split('.').count() == 2
            && job
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            let at = line.len().saturating_sub(job.len());
            ev.issues.push(ParseIssue::new(
                raw,
                at,
                "bad_job_id",
                "a job id `cluster.proc`",
            ));
            return;
        }
        ev.class = EventClass::JobRun;
        put(ev, fields::JOB_ID, job);
        put(ev, fields::PAYLOAD_SOURCE, "ce-audit");
        put(ev, fields::PAYLOAD_PHASE, "submit");
        ev.message = format!(
            "CE audit: job {job} submitted ({})",
            ev.field(fields::CORRELATION).unwrap_or("no cid")
        );
    } else if let Some(r) = body.strip_prefix("AuthMethod=") {
        // `AuthMethod=M, AuthId=ID, CondorId=U`: the AuthId may itself hold a comma (a
        // token's `ISSUER,SUBJECT`), so cut at the labels, not at commas.
        let (method, after) = r.split_once(", AuthId=").unwrap_or((r, ""));
        let (auth_id, condor_id) = after.rsplit_once(", CondorId=").unwrap_or((after, ""));
        put(ev, "auth_method", method);
        put(ev, fields::USER, condor_id);
        let m = method.trim().to_ascii_uppercase();
        if m == "SCITOKENS" || m == "TOKEN" || m == "IDTOKENS" {
            match auth_id.split_once(',') {
                Some((iss, sub)) if !iss.trim().is_empty() && !sub.trim().is_empty() => {
                    put(ev, fields::TOKEN_ISSUER, iss);
                    put(ev, fields::TOKEN_SUBJECT, sub);
                }
                _ => {
                    put(ev, "auth_id", auth_id);
                    let at = memchr::memmem::find(raw, b"AuthId=").unwrap_or(0);
                    ev.issues.push(ParseIssue::new(
                        raw,
                        at,
                        "token_without_issuer",
                        "AuthId=ISSUER,SUBJECT for a token method",
                    ));
                }
            }
        } else if auth_id.trim_start().starts_with('/') {
            put(ev, fields::DN, auth_id);
        } else {
            put(ev, "auth_id", auth_id);
        }
        ev.message = format!(
            "CE audit: {} authenticated by {} as {}",
            ev.field(fields::CORRELATION).unwrap_or("no cid"),
            method.trim(),
            auth_id.trim()
        );
    } else if let Some(v) = body.strip_prefix("proxy subject: ") {
        put(ev, fields::DN, v);
    } else if let Some(v) = body.strip_prefix("proxy vo name: ") {
        put(ev, fields::VO, v);
    } else if let Some(v) = body.strip_prefix("proxy first fqan: ") {
        put(ev, fields::FQAN, v);
    } else if let Some(v) = body.strip_prefix("Received proxy for job ") {
        put(ev, fields::JOB_ID, v);
    } else if let Some(r) = body.strip_prefix("Command=") {
        let (cmd, peer) = r.split_once(", peer=").unwrap_or((r, ""));
        put(ev, "command", cmd);
        if let Some(ip) = crate::htcondor::sinful::parse(peer.trim()).and_then(|s| s.ip) {
            ev.fields.insert(fields::SRC_IP.into(), ip.to_string());
        }
    } else if body.starts_with("Authentication Failed") || body.starts_with("Authorization Denied")
    {
        put(ev, fields::OUTCOME, "failure");
    }
}
