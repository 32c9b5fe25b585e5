//! The traceability challenge (issue 3, "Traceability challenge"): a generator that writes a
//! realistic site day in the real source formats together with questions whose ground truth
//! comes from the generator's own model (`generate.rs`), and a runner that ingests those files
//! into a fresh store and answers every question through `query::who::who`, the code behind
//! `pugmark who` (`run.rs`).
//!
//! The files shared by both halves are described here: `answers.json` (a JSON array of
//! [`Question`]) and `challenge.json` ([`Manifest`]: which files to ingest and as which
//! observer, plus the seed and the day they were generated for).

pub mod generate;
pub mod inject;
pub mod opennebula;
pub mod run;

use serde::{Deserialize, Serialize};

/// Which cloud framework runs the generated site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    /// Nova notifications and nova-compute logs, Keystone dumps.
    Openstack,
    /// OpenNebula: state-hook VM documents, `onevm list -x`, `onevnet show -x`, oned.log and
    /// the VMs' logs (`opennebula.rs`).
    Opennebula,
}

/// The manifest's file name inside a challenge directory.
pub const MANIFEST: &str = "challenge.json";
/// The questions' file name inside a challenge directory.
pub const ANSWERS: &str = "answers.json";

/// What `generate` wrote and how `run` must ingest it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub seed: u64,
    pub vms: usize,
    pub hours: u32,
    /// The first moment of the generated day (RFC 3339, UTC).
    pub start: String,
    /// Year for the year-less RFC 3164 syslog stamps (`ingest --year`).
    pub year: i16,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the challenge directory.
    pub path: String,
    /// `ingest --observer` for this file; absent: the format's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
}

/// One question and its ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Question {
    pub id: String,
    /// `who`, or `report` (a who-question whose report's sessions and connections are scored
    /// too).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `who --port`: the public port of a NAT address (issue 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// RFC 3339, UTC.
    pub at: String,
    /// What the question exercises, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub expect: Expect,
    /// `report` questions: the VM's own syslog lines the report must list as its sessions,
    /// and the hypervisor's lines it must list as its connections, exactly (each
    /// `SECOND HOST APP: MESSAGE`, sorted; see `run.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Expect {
    pub matches: Vec<ExpectedMatch>,
    pub ambiguous: bool,
}

/// One VM the answer must contain, with what must be said about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedMatch {
    pub vm_uuid: String,
    pub hypervisor: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub project_id: Option<String>,
    /// DNs of the payload jobs running on the VM at the moment (sorted, unique).
    pub payload_dns: Vec<String>,
    /// WLCG tokens (`ISSUER SUBJECT`) of the token-identified payload jobs running on the VM
    /// at the moment (sorted, unique; issue 12). Absent from answer files written before.
    #[serde(default)]
    pub payload_tokens: Vec<String>,
}

impl ExpectedMatch {
    /// One short line: what a human compares.
    pub fn brief(&self) -> String {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
        format!(
            "{} on {} user {} ({}) project {} payload [{}] tokens [{}]",
            self.vm_uuid,
            o(&self.hypervisor),
            o(&self.user_id),
            o(&self.user_name),
            o(&self.project_id),
            self.payload_dns.join("; "),
            self.payload_tokens.join("; ")
        )
    }
}
