//! The EGI CSIRT incident procedure a report's "what to do" follows: EGI-CSIRT's *Security
//! Incident Response Procedure* (SEC01, "EGI CSIRT Security Incident Handling Procedure",
//! v5 approved 2016-03-31, now on EGI's Confluence; its Resource Centre checklist SEC01-RC). Its table of site actions, with their deadlines, is restated here in short —
//! the authoritative text is EGI's; the report names the procedure and links it.
//!
//! Deadlines count from the *discovery* of the incident (step 1, 2), from the isolation
//! (step 4), from an EGI CSIRT request (step 5) or from the resolution (step 6). Given
//! `--discovered`, the report turns the first two into times.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// Where the procedure is published.
pub const PROCEDURE_URL: &str =
    "https://confluence.egi.eu/display/EGIPP/SEC01+EGI+CSIRT+Security+Incident+Handling+Procedure";
/// The address the procedure reports to.
pub const CSIRT_ADDRESS: &str = "abuse@egi.eu";

/// One step of the procedure, with what pugmark's answer gives for it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub step: u8,
    pub action: String,
    /// As the procedure states it (`within 4 hours of discovery`), or null when the step
    /// has none.
    pub deadline: Option<&'static str>,
    /// The deadline as a time, when the discovery time is known and the step counts from it.
    pub due: Option<String>,
}

/// The steps, each filled with what the report knows (`notify`: whom to inform beyond the
/// CSIRT — the project owner's e-mail, each payload's VO; `suspend`: the VM and hypervisor
/// lines of the containment).
pub fn steps(discovered: Option<Timestamp>, notify: &[String], suspend: &[String]) -> Vec<Step> {
    let due = |h: i64| {
        discovered
            .and_then(|d| d.checked_add(SignedDuration::from_hours(h)).ok())
            .map(|t| t.to_string())
    };
    let notify = if notify.is_empty() {
        String::new()
    } else {
        format!("; with this report, also notify {}", notify.join(", "))
    };
    let suspend = if suspend.is_empty() {
        String::new()
    } else {
        format!(" Here: {}.", suspend.join("; "))
    };
    vec![
        Step {
            step: 1,
            action: format!(
                "Inform your local security team, your NGI Security Officer and the EGI CSIRT \
                 ({CSIRT_ADDRESS}), using the procedure's templates{notify}."
            ),
            deadline: Some("within 4 hours of discovery"),
            due: due(4),
        },
        Step {
            step: 2,
            action: format!(
                "With the local security team and the EGI CSIRT, isolate the compromised \
                 systems and contain the incident while preserving forensic data: snapshot \
                 the affected VMs, isolate them at the network level; do not reboot or power \
                 off hosts, do not destroy VMs; disconnect physically only where nothing \
                 else is possible.{suspend}"
            ),
            deadline: Some("within 1 day of discovery"),
            due: due(24),
        },
        Step {
            step: 3,
            action: "With the local security team and the EGI CSIRT, decide whether the \
                     incident requires further investigation or action."
                .into(),
            deadline: None,
            due: None,
        },
        Step {
            step: 4,
            action: "If applicable, announce downtime for the affected services following the \
                     EGI operational procedures."
                .into(),
            deadline: Some("within 1 day of isolation"),
            due: None,
        },
        Step {
            step: 5,
            action: "Perform the analysis and corrective actions (EGI's incident analysis \
                     guideline); answer EGI CSIRT requests."
                .into(),
            deadline: Some("within 4 working hours of any EGI CSIRT request"),
            due: None,
        },
        Step {
            step: 6,
            action: format!(
                "Send an incident closure report to the EGI CSIRT ({CSIRT_ADDRESS}) with \
                 lessons learnt and resolution, labelled TLP AMBER or RED."
            ),
            deadline: Some("within 1 month of incident resolution"),
            due: None,
        },
        Step {
            step: 7,
            action: "Restore the service; update its documentation and procedures to prevent \
                     recurrence."
                .into(),
            deadline: None,
            due: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_count_from_discovery() {
        let d: Timestamp = "2026-10-14T06:00:00Z".parse().unwrap();
        let s = steps(Some(d), &["alice@example.org".into()], &[]);
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].due.as_deref(), Some("2026-10-14T10:00:00Z"));
        assert_eq!(s[1].due.as_deref(), Some("2026-10-15T06:00:00Z"));
        assert!(s[0].action.contains("alice@example.org"));
        assert!(steps(None, &[], &[]).iter().all(|s| s.due.is_none()));
    }
}
