//! The ledger: pugmark's only truth. An append-only, hash-chained, compressed store of opaque
//! records with durable batch appends, signed checkpoints and a verifier that locates damage.
//!
//! Input: batches of payload bytes (envelopes, which this crate never parses). Output: a
//! durable [`Receipt`] per batch, random and streaming reads ([`LedgerReader`]) and
//! [`verify`]. The byte format, the commit protocol and every crash point are in
//! docs/FORMAT.md.
//!
//! # Invariants
//!
//! - Payloads are opaque: nothing here (least of all `verify`) parses a record. This crate does
//!   not depend on `model`.
//! - Append-only: the writer only appends to the last segment, the checkpoint file and the
//!   sidecars. The one exception is open-time recovery, which truncates a torn tail, reports
//!   it in [`OpenReport`], and refuses (`Corrupted`) to cut anything a checkpoint covers.
//! - Every record is chained: `h_n = BLAKE3-keyed(K_chain, h_{n-1} || n || len || payload)`,
//!   `h_0 = 0^32`; seqs start at 1 with no gaps, across blocks and segments.
//! - A [`Receipt`] exists only after the batch's bytes were written and fdatasync'd (with
//!   `sync: true`); a checkpoint is written only after the records it covers are durable.
//! - A batch is all-or-nothing: its last block carries the batch-end flag, a batch never spans
//!   segments, and recovery and readers stop at the last batch-end block, so after a crash a
//!   batch is either whole or absent.
//! - After a failed write or sync the writer refuses appends ([`LedgerError::PreviousIo`]).
//! - One writer per directory (flock on `LOCK`); readers take no lock and never write.
//! - Sidecars (`seg-*.idx`) are derived: checked on load, rebuilt when they do not fit, never
//!   needed for correctness.
//! - Only the ledger makes [`Seq`]s.
//! - Format 2: record `seq` is leaf `seq - 1` of an RFC 6962 Merkle tree (`merkle.rs`); every
//!   checkpoint is also a C2SP signed note over the tree (`note.rs`); every block carries a MAC
//!   keyed from the private key seed. A writer never signs what it cannot vouch for: it refuses
//!   ([`LedgerError::Refused`]) a missing or changed key, a missing checkpoint/notes/origin file
//!   beside records, records after the last signed checkpoint whose MAC or chain does not check,
//!   and a tree whose root differs from the last signed note.
//! - Retention replaces a whole old segment by a stub of its leaf hashes only after the signed
//!   retention record is durable ([`Ledger::remove_segment`]).

mod checkpoint;
mod columns;
mod error;
mod fileio;
mod format;
mod merkle;
mod note;
mod reader;
mod segment;
mod signer;
#[doc(hidden)]
pub mod testing;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use checkpoint::{CHECKPOINT_FILE, create_key, parse_key, public_key_path, read_public_key};
pub use error::LedgerError;
pub use fileio::{FAULT_ENV, FAULT_FILE};
pub use format::segment_file_name;
pub use format::{FORMAT_VERSION, MAX_RECORD_LEN, OLDEST_FORMAT_VERSION, block_mac, mac_key};
pub use merkle::{
    EMPTY_HASH, GROUP, HASH_SIZE, Hash, MAX_PROOF_LEN, RecordProof, STORED_LEVEL, SUB_LEVEL,
    SUBGROUP, SYNCED_FILE as TREE_SYNCED_FILE, TREE_DIR, TreeProof, check_consistency,
    check_inclusion, check_record, check_tree, leaf_hash, level_path, node_hash,
    read_synced as read_tree_synced, root_of,
};
pub use note::{
    COSIGNATURES_FILE, CheckpointFields, NOTES_FILE, NOTES_TAIL_BYTES, NotesFile, ORIGIN_FILE,
    StoredNote, append_cosigned, last_note, latest_checkpoint, merged, merged_with,
    parse_checkpoint, parse_notes, read_notes, read_notes_tail, read_origin, valid_origin,
    verifier_key, verify_note,
};
pub use reader::{LedgerReader, Records};
pub use signer::{ExternalSigner, TOKEN_MAC_MESSAGE, token_mac_key};
pub use verify::{
    PREVIOUS_KEYS_SUFFIX, Problem, VerifyOptions, VerifyReport, add_previous_key,
    read_previous_keys, verify,
};
pub use writer::{
    KILL_AT_ENV, LOCK_FILE, Ledger, OpenReport, Removal, Truncation, Upgrade, upgradable_segments,
};

/// Name of the ledger directory inside the data directory.
pub const LEDGER_DIR: &str = "ledger";

/// The ledger directory of a data directory (`DATA/ledger`).
pub fn ledger_dir(data: &Path) -> PathBuf {
    data.join(LEDGER_DIR)
}

/// A ledger position (1-based). Only the ledger makes them: from a [`Receipt`], a
/// [`LedgerReader`] iterator or [`LedgerReader::seq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The position as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Proof that a batch is durable: records `first .. first + count` with chain head `head`
/// after the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Seq of the batch's first record (for an empty batch: the next seq, with count 0).
    pub first: Seq,
    /// Number of records in the batch.
    pub count: u64,
    /// Chain head after the batch's last record.
    pub head: [u8; 32],
}

impl Receipt {
    /// Seq of the batch's last record, if the batch was not empty.
    pub fn last(&self) -> Option<Seq> {
        (self.count > 0).then(|| Seq(self.first.0 + self.count - 1))
    }
}

/// Writer options. Defaults suit production; tests shrink blocks and segments and may turn
/// `sync` off.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Checkpoint after this many records since the last one (default 10 000).
    pub checkpoint_every_records: u64,
    /// Checkpoint when this long has passed since the last one, checked at each append
    /// (default 10 s).
    pub checkpoint_every: Duration,
    /// Start a new segment when the current one would exceed this many bytes (default 256 MiB).
    pub segment_max_bytes: u64,
    /// Uncompressed bytes per block before it is closed (default 128 KiB; a record larger than
    /// this gets a block of its own).
    pub block_max_bytes: usize,
    /// zstd level (default 3).
    pub zstd_level: i32,
    /// fdatasync before returning a receipt (default true; only tests turn it off).
    pub sync: bool,
    /// Private key file. Empty (the default) means `<ledger dir>/../keys/ledger.ed25519`, i.e.
    /// `DATA/keys/ledger.ed25519`; the public key goes beside it with `.pub` appended.
    pub key_path: PathBuf,
    /// Trust no block index sidecar (`.idx`) at open: rebuild each from its segment's block
    /// headers and rewrite it when it differs (default false: only the last entry is checked).
    /// `pugmark reindex` sets it, so the damaged sidecars `verify` reports are rewritten.
    pub check_sidecars: bool,
    /// Log origin for a ledger being created (default: `pugmark.<random hex>/ledger`);
    /// ignored once the ledger has one (`ledger/origin`).
    pub origin: Option<String>,
    /// Open a version-1 ledger to migrate it (`pugmark migrate`): a new version-2 segment is
    /// started at open. Without it a version-1 ledger is refused (`NeedsMigration`).
    pub migrating: bool,
    /// Open with a key that did not sign the last checkpoint note, accepting records after
    /// the last signed checkpoint that it cannot authenticate (`pugmark keys rotate` only: it
    /// appends a rotation record naming both keys and that range, then checkpoints).
    pub rotating: bool,
    /// Sign with this key instead of the key file at `key_path` (a PKCS#11 token: the private
    /// key never leaves it). The key file is then neither read nor created, the public key
    /// file is not written (the caller keeps it), and the block MAC key is derived from a
    /// signature (`token_mac_key`). Default none.
    pub signer: Option<std::sync::Arc<dyn ExternalSigner>>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            checkpoint_every_records: 10_000,
            checkpoint_every: Duration::from_secs(10),
            segment_max_bytes: 256 << 20,
            block_max_bytes: 128 << 10,
            zstd_level: 3,
            sync: true,
            key_path: PathBuf::new(),
            check_sidecars: false,
            origin: None,
            migrating: false,
            rotating: false,
            signer: None,
        }
    }
}

impl LedgerOptions {
    /// The key path to use for the ledger in `dir`.
    pub fn resolved_key_path(&self, dir: &Path) -> PathBuf {
        if !self.key_path.as_os_str().is_empty() {
            return self.key_path.clone();
        }
        let data = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        data.join("keys").join("ledger.ed25519")
    }
}
