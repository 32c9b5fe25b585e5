//! Bytes → [`model::Event`]: the pure decoding step between the collector and the ledger's views.
//!
//! Input is one [`RecordEnvelope`] (raw bytes plus what the collector knows for certain); output
//! is one [`Event`]. Decoding never fails and never panics: whatever cannot be understood is kept
//! as text with a [`model::ParseIssue`] saying where and what was expected, and the raw bytes are
//! always attached (DESIGN.md "Never lose or alter evidence"). It does no I/O, reads no clock and
//! depends only on the envelope, so `pugmark reindex` reproduces every event exactly.
//!
//! Modules: [`syslog`] (every syslog shape, per line, from bytes), [`classify`] (auth events:
//! sshd, su, sudo, pam), [`ips`] (IP addresses mentioned in text), [`framing`] (where records
//! begin and end in each format's files: lines, JSON array elements, blank-line blocks,
//! `...`-terminated events), [`nat`] (conntrack and ulogd2 NAT records in lines: bare, or the
//! message of a syslog line).

pub mod audit;
pub mod classify;
pub mod custody;
pub mod framing;
pub mod grid;
pub mod htcondor;
pub mod ips;
pub mod nat;
pub mod netfilter;
pub mod netflow;
pub mod opennebula;
pub mod openstack;
pub mod syslog;
mod text;

use model::envelope::{Format, RecordEnvelope};
use model::{Event, ParseIssue};

pub use ips::extract_ips;

/// The origin path of the records pugmark writes about its own ledger (`pipeline::admin_record`:
/// a migration, a key rotation, a retention run, the flow-derivation marker), always line 0.
pub const ADMIN_PATH: &str = "<pugmark ledger>";
/// The text they start with, before their JSON.
pub const ADMIN_PREFIX: &str = "pugmark-ledger ";

/// Whether `env` is such a record: collector-observed raw text at [`ADMIN_PATH`] line 0, the
/// text [`ADMIN_PREFIX`] and a JSON object (no import can give that origin).
pub fn is_admin(env: &RecordEnvelope) -> bool {
    env.observer == model::Observer::Collector
        && env.format == Format::Raw
        && matches!(&env.origin, model::Origin::File { path, line: 0 } if path == ADMIN_PATH)
        && env.raw.starts_with(ADMIN_PREFIX.as_bytes())
}

/// Decode one record. Never fails, never panics: every envelope yields an Event with the raw
/// bytes attached and parse issues listed.
pub fn decode(env: &RecordEnvelope) -> Event {
    let mut ev = Event::blank(
        env.received,
        env.observer,
        env.origin.clone(),
        env.raw.clone(),
    );
    match env.format {
        Format::Syslog => {
            syslog::parse_into(&mut ev, &env.hints);
            classify::classify(&mut ev);
            netfilter::classify(&mut ev);
            nat::classify(&mut ev);
            opennebula::log::classify_syslog(&mut ev);
            grid::glexec::classify(&mut ev);
            custody::classify(&mut ev);
            audit::classify(&mut ev);
            if env.observer == model::Observer::Image {
                custody::image_origin(&mut ev, &env.origin);
            }
        }
        Format::OpenstackNotification => openstack::notification::parse_into(&mut ev, &env.hints),
        Format::OsloLog => openstack::oslo_log::parse_into(&mut ev, &env.hints),
        Format::KeystoneDirectory => openstack::keystone::parse_into(&mut ev, &env.hints),
        Format::CondorHistoryJson => htcondor::history_json::parse_into(&mut ev, &env.hints),
        Format::CondorClassAd => htcondor::classad::parse_into(&mut ev, &env.hints),
        Format::CondorUserlog => htcondor::userlog::parse_into(&mut ev, &env.hints),
        Format::NetflowRecord => netflow::record_into(&mut ev),
        Format::NetflowDatagram => netflow::datagram_into(&mut ev),
        Format::OpennebulaXml => opennebula::xml::parse_into(&mut ev, &env.hints),
        Format::OpennebulaLog => opennebula::log::parse_into(&mut ev, &env.hints),
        Format::ScimDirectory => grid::scim::parse_into(&mut ev, &env.hints),
        Format::ArcJobLog => grid::arc::parse_into(&mut ev, &env.hints),
        Format::CondorAuditLog => grid::audit::parse_into(&mut ev, &env.hints),
        // pugmark's own records are understood: not "parse issues" of an import.
        Format::Raw if is_admin(env) => {
            ev.source_kind = "pugmark-ledger".to_string();
            ev.message = text::lossy(text::strip_terminators(&ev.raw));
        }
        Format::Raw => decode_raw(&mut ev, "not_parsed", "a known format (format is raw)"),
        Format::Unknown(_) => decode_raw(
            &mut ev,
            "unknown_format",
            "a format this pugmark knows (written by a newer version)",
        ),
    }
    collect_ips(&mut ev);
    if env.format == Format::NetflowRecord {
        netflow::keep_flow_ips(&mut ev);
    }
    ev
}

/// Guess the format of a file from its first lines (already split, terminators stripped).
/// Syslog if most non-empty lines parse as some syslog shape, else Raw.
pub fn detect(sample_lines: &[&[u8]]) -> Format {
    if let Some(f) = grid::looks_like(sample_lines)
        .or_else(|| openstack::looks_like(sample_lines))
        .or_else(|| htcondor::looks_like(sample_lines))
        .or_else(|| opennebula::looks_like(sample_lines))
    {
        return f;
    }
    // conntrack / ulogd2 NAT records are lines, classified by content (`nat::classify`).
    if nat::looks_like(sample_lines) {
        return Format::Syslog;
    }
    let mut non_empty = 0usize;
    let mut syslog_like = 0usize;
    for line in sample_lines {
        let line = text::strip_terminators(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        non_empty += 1;
        if syslog::looks_like_syslog(line) {
            syslog_like += 1;
        }
    }
    if non_empty > 0 && syslog_like * 2 > non_empty {
        Format::Syslog
    } else {
        Format::Raw
    }
}

/// Raw and unknown formats: the whole record is the message, with one issue saying why.
pub(crate) fn decode_raw(ev: &mut Event, kind: &str, expected: &str) {
    ev.source_kind = "raw".to_string();
    let line = text::strip_terminators(&ev.raw);
    ev.message = text::lossy(line);
    let issue = ParseIssue::new(&ev.raw, 0, kind, expected);
    ev.issues.push(issue);
    if let Err(e) = std::str::from_utf8(line) {
        let issue = ParseIssue::new(&ev.raw, e.valid_up_to(), "invalid_utf8", "UTF-8 text");
        ev.issues.push(issue);
    }
}

/// Event.ips: every address in the message and in field values, first mention first, no
/// duplicates.
fn collect_ips(ev: &mut Event) {
    let mut ips = extract_ips(&ev.message);
    for value in ev.fields.values() {
        for ip in extract_ips(value) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ev.ips = ips;
}
