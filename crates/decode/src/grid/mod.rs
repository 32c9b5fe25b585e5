//! Grid identity and payload sources (issue 12): who a token or certificate is, and which
//! payload ran where under whose identity, from the sources of sites that are not only
//! OpenStack + HTCondor + X.509.
//!
//! Modules: [`scim`] (SCIM 2.0 `/scim/Users` and `/scim/Groups` exports, INDIGO IAM's
//! extension with OIDC ids, SSH keys and certificates), [`arc`] (ARC CE A-REX job log lines),
//! [`audit`] (HTCondor-CE / schedd audit log lines), [`glexec`] (glexec and LCMAPS syslog
//! lines: a payload run under another uid inside a pilot, with its DN). [`looks_like`] tells
//! the file formats apart from a file's first lines; glexec lines are syslog and are
//! recognised per line by [`glexec::classify`].

pub mod arc;
pub mod audit;
pub mod glexec;
pub mod scim;

use model::Format;

/// Which of these file formats, if any, a file's first lines look like: a SCIM export names
/// a SCIM schema URN; an A-REX job log's lines are `DATE TIME Started|Finished - job id:`;
/// an audit log's lines carry `(D_AUDIT)`.
pub fn looks_like(sample_lines: &[&[u8]]) -> Option<Format> {
    let lines: Vec<&[u8]> = sample_lines
        .iter()
        .map(|l| crate::text::strip_terminators(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let first = lines.first()?.trim_ascii_start();
    if matches!(first.first(), Some(b'{' | b'['))
        && lines
            .iter()
            .take(400)
            .any(|l| memchr::memmem::find(l, b"urn:ietf:params:scim:").is_some())
    {
        return Some(Format::ScimDirectory);
    }
    let majority = |n: usize| n * 2 > lines.len();
    if majority(lines.iter().filter(|l| arc::is_job_line(l)).count()) {
        return Some(Format::ArcJobLog);
    }
    if majority(lines.iter().filter(|l| audit::is_audit_line(l)).count()) {
        return Some(Format::CondorAuditLog);
    }
    None
}
