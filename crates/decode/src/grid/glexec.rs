//! glexec and LCMAPS syslog lines → payload observations (issue 12).
//!
//! A pilot runs its payload under another uid with glexec; LCMAPS maps the payload's proxy
//! to that uid, and the process-tracking plugin reports the payload's life. Shapes:
//! - `glexec.mon[MON#ID]: Started, target uid UID`, `… Terminated, CPU user U system S`
//!   (lcmaps-plugins-process-tracking / lcmaps-namespace: `syslog(LOG_NOTICE,
//!   "glexec.mon[%d#%ld]: Started, target uid %d\n", …)`), and `Used DN: "DN"`, `Used VO:
//!   "VO"`, `Used FQAN: "FQAN"`, `New uid UID` (the lines glideinWMS's glexec monitor parser
//!   reads, `parse_line_v3`); the tag may be the syslog app (`host glexec.mon[1#2]: …`) or
//!   part of the message (`host lcmaps-namespace[1]: glexec.mon[1#2]: …`);
//! - `glexec[PID]: … LCMAPS CRED FINAL: … mapped uid:…` (the mapping; read leniently: a
//!   `DN:"…"` and `FQAN:"…"` in it and the first number after `mapped uid:`).
//!
//! Every line is one event; lines of one payload share CORRELATION (`glexec.mon:MON#ID` or
//! `glexec:PID`), which the fact store joins per sending host. `Started` / `Terminated` are
//! class `job.run` with JOB_ID `glexec:HOST:MON#ID`, PAYLOAD_SOURCE `glexec`, PAYLOAD_PHASE
//! `start` / `end`, JOB_START / JOB_END (where the line is placed: the collector's time when
//! there is one, since the VM's clock is its user's), TARGET_UID; `Used …` lines set
//! DN, VO, FQAN. A truncated line (no `]:`, an unclosed quote, no uid) is kept as it is with a
//! `truncated_glexec` issue: never a guess, never a panic. Where the payload ran is the
//! record's own host, tied to a VM by the one attribution rule (crate `query`, `attrib.rs`).

use model::{Event, EventClass, ParseIssue, fields};

const MON: &str = "glexec.mon[";

/// Recognise a glexec / LCMAPS line inside a syslog event and add its fields.
pub fn classify(ev: &mut Event) {
    // A connection record (netfilter LOG, conntrack, ulogd2) is the kernel's or the network's:
    // its text is never a glexec line, whatever words a peer put in it (fuzz target `nat`
    // found `LCMAPS CRED FINAL` in a conntrack line turning it into a truncated glexec line,
    // unlike the indexer's fast path).
    if ev.class == model::EventClass::NetConnection {
        return;
    }
    let app = ev.app.as_deref().unwrap_or("");
    let is_mon_app = app == "glexec.mon";
    let is_glexec_app = app == "glexec";
    let msg = ev.message.clone();
    // `glexec.mon[MON#ID]: …` as the app (the syslog parser keeps `MON#ID` as pid or not at
    // all) or inside the message.
    let (corr, body) = if let Some(i) = msg.find(MON) {
        let after = &msg[i + MON.len()..];
        match after.split_once("]:") {
            Some((id, body)) if !id.is_empty() && id.len() <= 64 => {
                (format!("glexec.mon:{}", id.trim()), body.trim().to_string())
            }
            _ => return truncated(ev, "`glexec.mon[MON#ID]: message`"),
        }
    } else if is_mon_app {
        let id = ev.pid.clone().unwrap_or_default();
        (format!("glexec.mon:{id}"), msg.trim().to_string())
    } else if is_glexec_app || msg.contains("LCMAPS CRED FINAL") {
        let id = ev.pid.clone().unwrap_or_default();
        if !msg.contains("LCMAPS CRED FINAL") {
            return;
        }
        (format!("glexec:{id}"), msg.trim().to_string())
    } else {
        return;
    };
    ev.fields
        .insert(fields::PAYLOAD_SOURCE.into(), "glexec".into());
    ev.fields.insert(fields::CORRELATION.into(), corr.clone());
    let host = ev
        .host
        .clone()
        .unwrap_or_else(|| "unknown".into())
        .to_lowercase();
    let id = corr.split_once(':').map_or("", |(_, id)| id).to_string();
    if let Some(r) = body.strip_prefix("Started") {
        let uid = r.rsplit(' ').next().unwrap_or("").trim();
        if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
            return truncated(ev, "`Started, target uid UID`");
        }
        ev.fields.insert(fields::TARGET_UID.into(), uid.to_string());
        phase(ev, &host, &id, "start");
    } else if body.starts_with("Terminated") {
        phase(ev, &host, &id, "end");
    } else if let Some(r) = body.strip_prefix("New uid") {
        let uid = r.trim_start_matches(':').trim();
        if uid.bytes().all(|b| b.is_ascii_digit()) && !uid.is_empty() {
            ev.fields.insert(fields::TARGET_UID.into(), uid.to_string());
        } else {
            truncated(ev, "`New uid UID`");
        }
    } else if let Some(r) = body.strip_prefix("Used DN:") {
        quoted(ev, r, fields::DN);
    } else if let Some(r) = body.strip_prefix("Used VO:") {
        quoted(ev, r, fields::VO);
    } else if let Some(r) = body.strip_prefix("Used FQAN:") {
        quoted(ev, r, fields::FQAN);
    } else if let Some(i) = body.find("LCMAPS CRED FINAL") {
        let r = &body[i..];
        if let Some(j) = r.find("DN:") {
            quoted(ev, &r[j + 3..], fields::DN);
        }
        if let Some(j) = r.find("FQAN:") {
            let before = ev.issues.len();
            quoted(ev, &r[j + 5..], fields::FQAN);
            ev.issues.truncate(before); // an FQAN list may be cut; the DN is what matters
        }
        match r.find("mapped uid:") {
            Some(j) => {
                // `mapped uid:'name'(40042)` or `mapped uid:40042`: the number, not the
                // digits inside the name.
                let after = r[j + 11..].trim_start();
                let from = if after.starts_with('\'') {
                    after.find("'(").map_or("", |k| &after[k + 2..])
                } else {
                    after
                };
                let digits: String = from.chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    truncated(ev, "`mapped uid:` followed by a uid");
                } else {
                    ev.fields.insert(fields::TARGET_UID.into(), digits);
                }
            }
            None => truncated(ev, "`LCMAPS CRED FINAL: … mapped uid:…`"),
        }
    }
}

fn phase(ev: &mut Event, host: &str, id: &str, phase: &str) {
    ev.class = EventClass::JobRun;
    let job = format!("glexec:{host}:{id}");
    ev.fields.insert(fields::JOB_ID.into(), job);
    ev.fields.insert(fields::PAYLOAD_PHASE.into(), phase.into());
    // When: where the record is placed (a VM's own clock is its user's to set, so a live or
    // archived line stands at the collector's time, `Event::placed`); nothing when neither
    // the line nor a collector says.
    if ev.reported.time.is_some() || ev.collected().is_some() {
        let t = ev.placed();
        let f = if phase == "start" {
            fields::JOB_START
        } else {
            fields::JOB_END
        };
        ev.fields.insert(f.to_string(), t.to_string());
    }
}

/// `"value"` after optional spaces into `field`; an unclosed quote is an issue.
fn quoted(ev: &mut Event, r: &str, field: &str) {
    let r = r.trim_start();
    let Some(inner) = r.strip_prefix('"') else {
        return truncated(ev, "a quoted value");
    };
    match inner.find('"') {
        Some(end) if end > 0 => {
            ev.fields
                .insert(field.to_string(), inner[..end].trim().to_string());
        }
        _ => truncated(ev, "a quoted value, closed"),
    }
}

fn truncated(ev: &mut Event, expected: &str) {
    let at = memchr::memmem::find(&ev.raw, b"glexec").unwrap_or(0);
    let issue = ParseIssue::new(&ev.raw, at, "truncated_glexec", expected);
    ev.issues.push(issue);
    ev.fields
        .entry(fields::PAYLOAD_SOURCE.into())
        .or_insert_with(|| "glexec".into());
}
