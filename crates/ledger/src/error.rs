//! The ledger's typed errors: one enum for every ledger operation, with on-disk damage
//! (`Corrupted`) kept apart from the operating system's failures (`Io`).
//!
//! Messages are one lowercase line without a trailing period, fit to be printed as is by the
//! binary. Problems found by `verify` are not errors but [`crate::Problem`]s in a report.

use std::path::PathBuf;

/// Everything that can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The operating system refused a read, write, sync or open.
    #[error("ledger i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk are not what the format says they must be.
    #[error("ledger corrupted in {segment} at byte {offset}: {what}")]
    Corrupted {
        /// File name inside the ledger directory.
        segment: String,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The ledger was written in a format version this build does not read.
    #[error("ledger format version {found} is not supported (this build reads version {expected})")]
    VersionMismatch {
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        expected: u32,
    },
    /// Another writer holds the ledger's lock file.
    #[error("ledger is locked by another writer")]
    Locked,
    /// An earlier write or sync failed; the writer refuses appends until reopened.
    #[error("an earlier i/o error left the ledger writer unusable; reopen the ledger")]
    PreviousIo,
    /// The requested seq is not in the ledger.
    #[error("record #{seq} is not in the ledger (it holds #1..#{len})")]
    NotFound {
        /// Requested seq.
        seq: u64,
        /// Last seq in the ledger.
        len: u64,
    },
    /// A record exceeds the size limit.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Size of the record.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An option is out of range.
    #[error("invalid ledger option: {0}")]
    InvalidOption(String),
    /// The signing key file is unreadable or malformed.
    #[error("ledger key {}: {what}", path.display())]
    Key {
        /// Key file path.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The Merkle tree could not be read or computed (a proof for a size the ledger does not
    /// hold, unreadable records under a group).
    #[error("ledger tree: {0}")]
    Tree(String),
    /// A checkpoint note is malformed, or its signature does not verify.
    #[error("checkpoint note: {0}")]
    Note(String),
    /// The writer refuses to open: signing now would vouch for something it cannot (a missing
    /// checkpoint file, records appended behind its back, a missing or changed key).
    #[error("ledger writer refused: {0}")]
    Refused(String),
    /// The record's payload was removed by a retention policy (its leaf hash is kept).
    #[error("record #{seq} was removed by policy (retention record #{record})")]
    Removed {
        /// The record asked for.
        seq: u64,
        /// The signed retention record that removed it.
        record: u64,
    },
    /// A version-1 ledger: readers and `verify` read it, writers do not append to it.
    #[error("the ledger is in format version 1: run `pugmark migrate` to turn it into version 2")]
    NeedsMigration,
}

impl LedgerError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LedgerError {
        let path = path.into();
        move |source| LedgerError::Io { path, source }
    }

    pub(crate) fn corrupted(segment: &str, offset: u64, what: impl Into<String>) -> LedgerError {
        LedgerError::Corrupted {
            segment: segment.to_string(),
            offset,
            what: what.into(),
        }
    }
}
