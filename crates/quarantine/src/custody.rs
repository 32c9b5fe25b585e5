//! Custody records and the store's journal.
//!
//! Every step of an image's custody is one [`Record`]: appended to `STORE/journal.jsonl`
//! (one JSON object a line, numbered, fsync'd before the step is reported done) and shipped
//! to the ledger by the binary (directly with `--data`, by `serve`'s timer, or — on a
//! hypervisor — through the local syslog the site kit forwards). The journal is also what
//! makes a capture crash-safe: a `capturing` record is durable before the disk is touched,
//! so after a kill -9 the next open finds the intent and settles it from what is really on
//! disk (kept → `captured`; untouched → `failed`).
//!
//! In the ledger a record travels as a syslog line: program `pugmark-quarantine`, message
//! `custody ` + the record's JSON ([`Record::syslog_message`]). `crates/decode` reads it
//! back into class `vm.custody` with the VM's UUID, so `timeline --vm` and `report` show the
//! image's custody beside the VM's life.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::Digests;

/// The message prefix of a custody record in syslog.
pub const MESSAGE_PREFIX: &str = "custody ";
/// The syslog program name of custody records.
pub const APP: &str = "pugmark-quarantine";

/// One step of custody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A capture began (durable before the disk is touched).
    Capturing,
    /// The image is kept.
    Captured,
    /// The kept image was hashed (after an O(1) capture).
    Hashed,
    /// A capture was not made because the policy says 0 (off).
    Skipped,
    /// A hold was put on the VM's images.
    Held,
    /// A hold or retention was extended.
    Extended,
    /// The image was exported (hashes of the exported bytes).
    Exported,
    /// The image was rehashed against its custody record.
    Verified,
    /// The image was put back where it came from.
    Restored,
    /// Holds on the VM were released.
    Released,
    /// The image was destroyed (expiry or operator).
    Purged,
    /// A step failed (refused input, no space, storage down, a crash settled at open).
    Failed,
    /// A retention policy changed.
    Policy,
    /// The cloud announced the VM's deletion (nova `instance.delete.start`): its disks are
    /// expected in the quarantine.
    Marked,
}

impl Step {
    /// The lowercase name (as in the JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Capturing => "capturing",
            Step::Captured => "captured",
            Step::Hashed => "hashed",
            Step::Skipped => "skipped",
            Step::Held => "held",
            Step::Extended => "extended",
            Step::Exported => "exported",
            Step::Verified => "verified",
            Step::Restored => "restored",
            Step::Released => "released",
            Step::Purged => "purged",
            Step::Failed => "failed",
            Step::Policy => "policy",
            Step::Marked => "marked",
        }
    }
}

/// One custody record. Field names are part of the ledger's content: keep them stable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Journal number (1, 2, …), set by [`Journal::append`].
    #[serde(default)]
    pub n: u64,
    /// The step.
    pub step: Option<Step>,
    /// RFC 3339 time of the step (the collector clock of the machine doing it).
    pub time: String,
    /// The host that did it.
    pub host: String,
    /// The quarantine item, when the step is about one image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The VM's UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    /// The VM's project / VO, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Where the image was (path or pool/image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `file` or `rbd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Where it is kept (backend locator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// How it was kept (`rename`, `reflink`, `copy`, `trash`, `snapshot`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// BLAKE3, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// SHA-256, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The policy that applied (`site 7d`, `project atlas 30d`, `hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Kept until (RFC 3339), or absent when held without end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<String>,
    /// Who asked (`libvirt-hook`, `opennebula-hook`, `operator root`, `expire`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The qcow2 image this one backs (a backing chain member), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_of: Option<String>,
    /// What went wrong (for `failed`) or extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Record {
    /// A record of `step` now, on `host`.
    pub fn new(step: Step, host: &str) -> Record {
        Record {
            step: Some(step),
            time: crate::now().to_string(),
            host: host.to_string(),
            ..Record::default()
        }
    }

    /// Set the digests.
    pub fn with_digests(mut self, d: &Digests) -> Record {
        self.size = Some(d.size);
        self.blake3 = Some(d.blake3.clone());
        self.sha256 = Some(d.sha256.clone());
        self
    }

    /// The syslog message carrying this record (`custody {json}`).
    pub fn syslog_message(&self) -> String {
        format!(
            "{MESSAGE_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// One RFC 5424 line for the ledger (what `pugmark` appends with observer `collector`,
    /// and what the hypervisor's syslog carries): `<110>1 TIME HOST pugmark-quarantine - custody - MSG`
    /// (facility 13 log audit, severity 6 info).
    pub fn syslog_line(&self) -> String {
        format!(
            "<110>1 {} {} {APP} - custody - {}",
            self.time,
            if self.host.is_empty() {
                "-"
            } else {
                &self.host
            },
            self.syslog_message()
        )
    }
}

/// The store's journal: `STORE/journal.jsonl`, append-only, each append fsync'd.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path` (created on first append).
    pub fn new(path: PathBuf) -> Journal {
        Journal { path }
    }

    /// Every record, in order. A torn last line (a crash during an append) is skipped: its
    /// step was never reported done.
    pub fn read(&self) -> std::io::Result<Vec<Record>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            if let Ok(r) = serde_json::from_slice::<Record>(&line) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Append `r` (numbered after the last record) and fsync; returns the record as written.
    pub fn append(&self, mut r: Record) -> std::io::Result<Record> {
        let last = self.read()?.last().map_or(0, |r| r.n);
        r.n = last + 1;
        let mut line = serde_json::to_vec(&r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // A torn line from a crash is ended first so this record starts on its own line.
        if f.metadata()?.len() > 0 && !ends_with_newline(&self.path)? {
            f.write_all(b"\n")?;
        }
        f.write_all(&line)?;
        f.sync_all()?;
        Ok(r)
    }

    /// The records numbered above `after`.
    pub fn since(&self, after: u64) -> std::io::Result<Vec<Record>> {
        Ok(self.read()?.into_iter().filter(|r| r.n > after).collect())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_numbers_and_survives_a_torn_line() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let j = Journal::new(dir.path().join("journal.jsonl"));
        j.append(Record::new(Step::Capturing, "hv1"))?;
        // A crash in the middle of an append.
        OpenOptions::new()
            .append(true)
            .open(j.path())?
            .write_all(b"{\"n\":2,\"step\":\"capt")?;
        let r = j.append(Record::new(Step::Captured, "hv1"))?;
        assert_eq!(r.n, 2);
        let all = j.read()?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].step, Some(Step::Captured));
        assert_eq!(j.since(1)?.len(), 1);
        let line = all[1].syslog_line();
        assert!(line.starts_with("<110>1 "), "{line}");
        assert!(line.contains(" hv1 pugmark-quarantine - custody - custody {\"n\":2,"));
        Ok(())
    }
}
