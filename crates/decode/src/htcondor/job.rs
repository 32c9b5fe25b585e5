//! Job ClassAd attributes → the normalised fields of a `job.run` event. Shared by the
//! `condor_history -json` and `-l` decoders (both build an [`Ad`] first), and by userlog
//! 028 "job ad information" events for whatever attributes they carry.
//!
//! Who: `Owner` (local account), `User` (`owner@uid-domain`), `x509userproxysubject` (DN),
//! `x509UserProxyVOName` (VO); a WLCG / SciTokens token (issue 12): `AuthTokenIssuer`,
//! `AuthTokenSubject` (the person is issuer + subject), `AuthTokenId`, `AuthTokenScopes`,
//! `AuthTokenGroups` (the VO is the first group's first path component, `/atlas/prod` →
//! `atlas`, when the ad names no `x509UserProxyVOName`; a subject without an issuer is kept
//! with a `token_without_issuer` issue, since a subject alone names nobody). Which job: `GlobalJobId`, else `ClusterId.ProcId`. Where:
//! `StartdIpAddr` (a sinful string: primary IP, `addrs=`, `alias=`), `RemoteHost` /
//! `LastRemoteHost` (`slot1@host`). When: `JobCurrentStartDate` / `JobStartDate` and
//! `CompletionDate` / `EnteredCurrentStatus` (Unix seconds; `0` means "not yet"). A missing
//! attribute is not an issue, except when nothing identifies the job.

use jiff::Timestamp;
use model::{Event, EventClass, ParseIssue, Reported, fields};

use super::classad::{Ad, Attr};
use super::sinful;

/// Field names this decoder sets (the vocabulary lives in `model::fields`).
pub use model::fields::{EXEC_ADDRS, EXEC_ALIAS, EXEC_SLOT, JOB_STATUS, SCHEDD, SUBMIT_IP};

fn status_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "idle",
        2 => "running",
        3 => "removed",
        4 => "completed",
        5 => "held",
        6 => "transferring_output",
        7 => "suspended",
        _ => return None,
    })
}

fn set(ev: &mut Event, name: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        ev.fields.insert(name.to_string(), v);
    }
}

fn issue(ev: &mut Event, raw: &[u8], attr: &Attr, kind: &str, expected: &str) {
    let offset = attr.offset.unwrap_or_else(|| {
        // JSON: point at the attribute's name.
        let quoted = format!("\"{}\"", attr.name);
        memchr::memmem::find(raw, quoted.as_bytes()).unwrap_or(0)
    });
    ev.issues.push(ParseIssue::new(raw, offset, kind, expected));
}

/// A Unix-seconds attribute as an instant; `0`, negative or absent → None (negative or
/// non-numeric values are issues).
fn instant(ev: &mut Event, raw: &[u8], ad: &Ad, name: &str) -> Option<Timestamp> {
    let attr = ad.get(name)?;
    if matches!(attr.value, super::classad::Value::Undefined) {
        return None;
    }
    match attr.value.seconds() {
        Some(0) => None,
        Some(s) if s > 0 => match Timestamp::from_second(s) {
            Ok(ts) => Some(ts),
            Err(_) => {
                issue(
                    ev,
                    raw,
                    attr,
                    "bad_timestamp",
                    "Unix seconds within jiff's range",
                );
                None
            }
        },
        _ => {
            issue(
                ev,
                raw,
                attr,
                "bad_timestamp",
                "Unix seconds (a non-negative integer)",
            );
            None
        }
    }
}

/// Where a job ran, from its ad: fields set on `ev`; returns a name for the message.
fn exec_place(ev: &mut Event, raw: &[u8], ad: &Ad) -> Option<String> {
    let mut alias = None;
    if let Some(attr) = ad.get("StartdIpAddr") {
        let text = attr.value.text().unwrap_or_default();
        match sinful::parse(&text) {
            Some(s) => {
                set(ev, fields::EXEC_IP, s.ip.map(|ip| ip.to_string()));
                if s.addrs.len() > 1 {
                    let all: Vec<String> = s.addrs.iter().map(ToString::to_string).collect();
                    set(ev, EXEC_ADDRS, Some(all.join(",")));
                }
                alias = s.alias.or(s.host);
                set(ev, EXEC_ALIAS, alias.clone());
            }
            None if text.is_empty() => {}
            None => issue(
                ev,
                raw,
                attr,
                "bad_sinful",
                "a sinful string <ip:port?addrs=…&alias=…>",
            ),
        }
    }
    let remote = ad
        .text("RemoteHost")
        .or_else(|| ad.text("LastRemoteHost"))
        .filter(|s| !s.is_empty());
    let host = match remote {
        Some(r) => match r.split_once('@') {
            Some((slot, host)) => {
                set(ev, EXEC_SLOT, Some(slot.to_string()));
                Some(host.to_string())
            }
            None => Some(r),
        },
        None => alias,
    };
    set(ev, fields::EXEC_HOST, host.clone());
    host.or_else(|| ev.field(fields::EXEC_IP).map(str::to_string))
}

/// The token attributes HTCondor's schedd writes into job ads (AuthTokenSubject, …).
fn tokens(ev: &mut Event, raw: &[u8], ad: &Ad) {
    let issuer = ad.text("AuthTokenIssuer").filter(|s| !s.is_empty());
    let subject = ad.text("AuthTokenSubject").filter(|s| !s.is_empty());
    if subject.is_some()
        && issuer.is_none()
        && let Some(attr) = ad.get("AuthTokenSubject")
    {
        issue(
            ev,
            raw,
            attr,
            "token_without_issuer",
            "AuthTokenIssuer beside AuthTokenSubject (a subject is unique only within its issuer)",
        );
    }
    set(ev, fields::TOKEN_ISSUER, issuer);
    set(ev, fields::TOKEN_SUBJECT, subject);
    set(ev, fields::TOKEN_ID, ad.text("AuthTokenId"));
    set(ev, fields::TOKEN_SCOPES, ad.text("AuthTokenScopes"));
    let groups = ad.text("AuthTokenGroups").filter(|s| !s.is_empty());
    if ev.field(fields::VO).is_none()
        && let Some(vo) = groups.as_deref().and_then(vo_of_groups)
    {
        ev.fields.insert(fields::VO.to_string(), vo);
    }
    set(ev, fields::TOKEN_GROUPS, groups);
}

/// The VO a WLCG token's groups name: the first path component of the first group
/// (`/atlas/production,/atlas` → `atlas`).
pub fn vo_of_groups(groups: &str) -> Option<String> {
    let first = groups.split(',').map(str::trim).find(|g| !g.is_empty())?;
    let vo = first.trim_start_matches('/').split('/').next()?.trim();
    (!vo.is_empty()).then(|| vo.to_string())
}

/// Map the job attributes of `ad` into `ev`'s fields, class, reported time and message.
/// `raw` is the record, for issue samples.
pub(crate) fn fill(ev: &mut Event, raw: &[u8], ad: &Ad) {
    let cluster = ad.value("ClusterId").and_then(|v| v.seconds());
    let proc_id = ad.value("ProcId").and_then(|v| v.seconds());
    let short = match (cluster, proc_id) {
        (Some(c), Some(p)) => Some(format!("{c}.{p}")),
        (Some(c), None) => Some(c.to_string()),
        _ => None,
    };
    let global = ad.text("GlobalJobId").filter(|s| !s.is_empty());
    if let Some(g) = &global
        && let Some((schedd, _)) = g.split_once('#')
    {
        set(ev, SCHEDD, Some(schedd.to_string()));
    }
    let job_id = global.clone().or_else(|| short.clone());
    set(ev, fields::JOB_ID, job_id.clone());
    let owner = ad.text("Owner");
    set(ev, fields::JOB_OWNER, owner.clone());
    set(ev, fields::USER, ad.text("User"));
    set(ev, fields::DN, ad.text("x509userproxysubject"));
    set(ev, fields::VO, ad.text("x509UserProxyVOName"));
    tokens(ev, raw, ad);
    set(ev, fields::COMMAND, ad.text("Cmd"));
    let place = exec_place(ev, raw, ad);
    let status = ad.value("JobStatus").and_then(|v| v.seconds());
    set(
        ev,
        JOB_STATUS,
        status.map(|s| status_name(s).map_or_else(|| s.to_string(), str::to_string)),
    );

    let named = |name: &'static str, t: Option<Timestamp>| t.map(|t| (name, t));
    let start = named(
        "JobCurrentStartDate",
        instant(ev, raw, ad, "JobCurrentStartDate"),
    )
    .or_else(|| named("JobStartDate", instant(ev, raw, ad, "JobStartDate")));
    let finished = matches!(status, Some(3 | 4));
    let entered = named(
        "EnteredCurrentStatus",
        instant(ev, raw, ad, "EnteredCurrentStatus"),
    );
    let end = named("CompletionDate", instant(ev, raw, ad, "CompletionDate")).or(if finished {
        entered
    } else {
        None
    });
    set(ev, fields::JOB_START, start.map(|(_, t)| t.to_string()));
    set(ev, fields::JOB_END, end.map(|(_, t)| t.to_string()));

    // Reported: start, else end, else when the ad's status began, else submission.
    let qdate = named("QDate", instant(ev, raw, ad, "QDate"));
    if let Some((name, t)) = start.or(end).or(entered).or(qdate) {
        ev.reported = Reported::new(Some(t), format!("{name} = {}", t.as_second()));
    }
    let (start, end) = (start.map(|(_, t)| t), end.map(|(_, t)| t));

    let Some(job_id) = job_id else {
        ev.class = EventClass::Other;
        ev.issues.push(ParseIssue::new(
            raw,
            0,
            "missing_attribute",
            "GlobalJobId or ClusterId/ProcId (nothing identifies the job)",
        ));
        ev.message = format!("job ad without a job id ({} attributes)", ad.len());
        return;
    };
    ev.class = EventClass::JobRun;
    let mut msg = format!("job {}", short.unwrap_or(job_id));
    if let Some(o) = owner {
        msg.push_str(&format!(" of {o}"));
    }
    if let Some(sub) = ev.field(fields::TOKEN_SUBJECT).map(str::to_string) {
        let iss = ev.field(fields::TOKEN_ISSUER).unwrap_or("unknown issuer");
        msg.push_str(&format!(" (token {sub} of {iss})"));
    }
    if let Some(p) = place {
        msg.push_str(&format!(" ran on {p}"));
    }
    if let Some(s) = start {
        msg.push_str(&format!(" from {s}"));
    }
    if let Some(e) = end {
        msg.push_str(&format!(" to {e}"));
    }
    if let Some(s) = ev.field(JOB_STATUS).map(str::to_string) {
        msg.push_str(&format!(" ({s})"));
    }
    ev.message = msg;
}
