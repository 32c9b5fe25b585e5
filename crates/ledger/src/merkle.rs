//! The Merkle tree over the ledger (RFC 6962 / RFC 9162 hashing, C2SP tlog).
//!
//! Leaf `i` (0-based) is the record with seq `i + 1`: `leaf = SHA-256(0x00 || payload)`,
//! `node = SHA-256(0x01 || left || right)`. Hashing, the stored-hash numbering and the proof
//! algorithms come from `tlog_tiles` (Cloudflare's azul, a port of Go's `sumdb/tlog`, the code
//! the C2SP tlog specs were written from): we do not write our own proof code.
//!
//! # Storage (docs/FORMAT.md "Merkle tree")
//!
//! Only hashes of complete subtrees at level [`STORED_LEVEL`] (256 leaves) and above are
//! stored, one append-only file per level in `ledger/tree/` (`level-08`, `level-09`, …; entry
//! `n` at byte `32 n`). Storing every leaf hash would cost 32 bytes a record (a stored record
//! is ~60–120 bytes: 25–50 % of the store); from level 8 up the tree costs 64/256 = 0.25 bytes
//! a record. A hash below level 8 is recomputed from the records of its 256-leaf group (one
//! or two blocks read and hashed), so an inclusion or consistency proof reads O(log N) stored
//! hashes plus at most one or two groups of records.
//!
//! The tree files are derived from the records, like the block index sidecars: a thread of
//! the writer's ([`TreeWorker`]) hashes each durable batch, appends the new stored hashes,
//! syncs them after each checkpoint and then records how far they are durable in
//! `tree/synced`; a checkpoint waits for its root. At open
//! the writer trusts them up to the smaller of that mark and the last signed checkpoint,
//! recomputes everything after it from the records and checks the root against that
//! checkpoint. `verify` recomputes the whole tree.
//!
//! Why all of it is off the writer's path: no acknowledgement depends on the tree (derived
//! data), while hashing every record cost serve ~12 % of its durable rate on the writer's
//! thread, and a checkpoint fdatasynced ~12 level files there (see [`TreeWorker`]).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use tlog_tiles::{
    EMPTY_HASH, HASH_SIZE, Hash, RecordProof, TreeProof, check_record, check_tree, node_hash,
    record_hash,
};
use tlog_tiles::{HashReader, split_stored_hash_index};

use crate::error::LedgerError;
use crate::reader::LedgerReader;

/// Directory of the tree files inside the ledger directory.
pub const TREE_DIR: &str = "tree";

/// Lowest stored level: a stored hash covers 2^8 = 256 leaves.
pub const STORED_LEVEL: u8 = 8;

/// Leaves per group (the subtree at [`STORED_LEVEL`]).
pub const GROUP: u64 = 1 << STORED_LEVEL;

/// The one level below [`STORED_LEVEL`] that is also stored, in its own file
/// (`tree/level-05`): subtrees of 32 leaves. A proof then hashes the 32 records around the
/// one it proves (one block, the one holding that record) instead of 256 (two blocks and
/// 8× the SHA-256: ~1 ms of a 5 ms `who`), for 1 byte a record. A ledger whose tree was
/// written before this level existed has no such file and keeps working without it
/// (`restore` does not start it mid-way; readers recompute from records what it lacks).
pub const SUB_LEVEL: u8 = 5;

/// Leaves per subgroup (the subtree at [`SUB_LEVEL`]).
pub const SUBGROUP: u64 = 1 << SUB_LEVEL;

/// Subgroups of leaf hashes one proof session keeps (32 hashes, 1 KiB each).
const GROUP_CACHE: usize = 64;

/// The leaf hash of a record payload: `SHA-256(0x00 || payload)`.
pub fn leaf_hash(payload: &[u8]) -> Hash {
    record_hash(payload)
}

/// Longest proof a tree of up to 2^64 leaves needs (inclusion: 64 hashes; consistency: at
/// most 2 per level). Longer proofs are refused before `tlog_tiles` copies them per level.
pub const MAX_PROOF_LEN: usize = 128;

/// Checks that `proof` proves record `seq` (1-based; leaf `seq - 1`) with leaf hash `leaf` in
/// the tree of `size` records with root `root`. For untrusted input (reports, witnesses):
/// bounds the proof length, then `tlog_tiles::check_record`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    seq: u64,
    leaf: Hash,
) -> Result<(), LedgerError> {
    if proof.len() > MAX_PROOF_LEN || seq == 0 || seq > size {
        return Err(LedgerError::Tree(format!(
            "no inclusion proof of record #{seq} in a tree of size {size} has {} hashes",
            proof.len()
        )));
    }
    check_record(&proof.to_vec(), size, root, seq - 1, leaf).map_err(tlog_err)
}

/// Checks that `proof` proves the tree of `old` records with root `old_root` is a prefix of
/// the tree of `new` records with root `new_root` (bounded, then `tlog_tiles::check_tree`).
/// Equal sizes need an empty proof and equal roots.
pub fn check_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), LedgerError> {
    if proof.len() > MAX_PROOF_LEN || old == 0 || old > new {
        return Err(LedgerError::Tree(format!(
            "no consistency proof from size {old} to size {new} has {} hashes",
            proof.len()
        )));
    }
    check_tree(&proof.to_vec(), new, new_root, old, old_root).map_err(tlog_err)
}

/// Path of the tree file for `level`.
pub fn level_path(dir: &Path, level: u8) -> PathBuf {
    dir.join(TREE_DIR).join(format!("level-{level:02}"))
}

/// The RFC 6962 root of a list of leaf hashes (any length; the empty tree's hash for none).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_HASH,
        1 => leaves[0],
        n => {
            let k = largest_pow2_below(n as u64) as usize;
            node_hash(root_of(&leaves[..k]), root_of(&leaves[k..]))
        }
    }
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn largest_pow2_below(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn tlog_err(e: tlog_tiles::Error) -> LedgerError {
    LedgerError::Tree(e.to_string())
}

/// The stored tree files, opened for reading (positional reads; entries past a file's end
/// read as absent).
#[derive(Debug, Default)]
pub(crate) struct TreeFiles {
    /// Indexed by `level - STORED_LEVEL`.
    files: Vec<Option<File>>,
    /// `tree/level-05`, when the ledger has it.
    sub: Option<File>,
}

impl TreeFiles {
    pub(crate) fn open(dir: &Path) -> TreeFiles {
        let mut files = Vec::new();
        for level in STORED_LEVEL..64 {
            match File::open(level_path(dir, level)) {
                Ok(f) => files.push(Some(f)),
                Err(_) => break,
            }
        }
        TreeFiles {
            files,
            sub: File::open(level_path(dir, SUB_LEVEL)).ok(),
        }
    }

    /// Stored subgroup hashes `n .. n + count` (level [`SUB_LEVEL`]), if the file holds all.
    fn sub_run(&self, n: u64, count: u64) -> Option<Vec<Hash>> {
        let f = self.sub.as_ref()?;
        let len = usize::try_from(count).ok()?.checked_mul(HASH_SIZE)?;
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, n.checked_mul(HASH_SIZE as u64)?)
            .ok()?;
        Some(
            b.chunks_exact(HASH_SIZE)
                .map(|c| {
                    let mut h = [0u8; HASH_SIZE];
                    h.copy_from_slice(c);
                    Hash(h)
                })
                .collect(),
        )
    }

    /// Stored hash `n` at `level`, if the file holds it.
    pub(crate) fn get(&self, level: u8, n: u64) -> Option<Hash> {
        let f = self
            .files
            .get(usize::from(level.checked_sub(STORED_LEVEL)?))?
            .as_ref()?;
        let mut b = [0u8; HASH_SIZE];
        f.read_exact_at(&mut b, n.checked_mul(HASH_SIZE as u64)?)
            .ok()?;
        Some(Hash(b))
    }
}

/// Answers `tlog_tiles`' stored-hash reads for a tree of `size` leaves: from the tree files
/// where they hold the hash, else recomputed from the records (via the reader).
pub(crate) struct LedgerHashes<'a> {
    pub(crate) files: &'a TreeFiles,
    pub(crate) reader: RefCell<&'a mut LedgerReader>,
    pub(crate) size: u64,
    /// The leaf hashes of the last groups read: (group number, hashes), newest last. More
    /// than one: proofs of several records share the tree's right edge, and a proof walks
    /// its record's group and that edge in turn.
    groups: RefCell<Vec<(u64, Vec<Hash>)>>,
    /// The first failure while reading (`HashReader` only reports `tlog_tiles::Error`s).
    pub(crate) failure: RefCell<Option<LedgerError>>,
}

impl<'a> LedgerHashes<'a> {
    pub(crate) fn new(files: &'a TreeFiles, reader: &'a mut LedgerReader, size: u64) -> Self {
        LedgerHashes {
            files,
            reader: RefCell::new(reader),
            size,
            groups: RefCell::new(Vec::new()),
            failure: RefCell::new(None),
        }
    }

    /// Leaf hashes of subgroup `g` (up to 32, fewer for the last one of the tree).
    fn group_leaves(&self, g: u64) -> Result<Vec<Hash>, LedgerError> {
        if let Some((_, h)) = self.groups.borrow().iter().find(|(have, _)| *have == g) {
            return Ok(h.clone());
        }
        let first = g * SUBGROUP;
        let count = SUBGROUP.min(self.size.saturating_sub(first));
        let out = self
            .reader
            .borrow_mut()
            .leaf_hashes_cached(first + 1, count)?;
        let mut groups = self.groups.borrow_mut();
        if groups.len() >= GROUP_CACHE {
            groups.remove(0);
        }
        groups.push((g, out.clone()));
        Ok(out)
    }

    /// Hash of the complete subtree `n` at `level` (leaves `n·2^level .. (n+1)·2^level`).
    pub(crate) fn subtree(&self, level: u8, n: u64) -> Result<Hash, LedgerError> {
        let span = 1u64.checked_shl(u32::from(level)).unwrap_or(u64::MAX);
        let end = n.checked_add(1).and_then(|x| x.checked_mul(span));
        if end.is_none_or(|e| e > self.size) {
            return Err(LedgerError::Tree(format!(
                "subtree {n} at level {level} is not in the tree of size {}",
                self.size
            )));
        }
        if level >= STORED_LEVEL {
            if let Some(h) = self.files.get(level, n) {
                return Ok(h);
            }
            if level > STORED_LEVEL {
                return Ok(node_hash(
                    self.subtree(level - 1, 2 * n)?,
                    self.subtree(level - 1, 2 * n + 1)?,
                ));
            }
        }
        let first = n * span;
        if level >= SUB_LEVEL {
            if let Some(subs) = self.files.sub_run(first >> SUB_LEVEL, span >> SUB_LEVEL) {
                return Ok(root_of(&subs));
            }
            if level > SUB_LEVEL {
                return Ok(node_hash(
                    self.subtree(level - 1, 2 * n)?,
                    self.subtree(level - 1, 2 * n + 1)?,
                ));
            }
        }
        let g = first / SUBGROUP;
        let leaves = self.group_leaves(g)?;
        let at = (first - g * SUBGROUP) as usize;
        let leaves = leaves.get(at..at + span as usize).ok_or_else(|| {
            LedgerError::Tree(format!("group {g} is short of leaves for subtree {n}"))
        })?;
        Ok(root_of(leaves))
    }
}

impl HashReader for LedgerHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let (level, n) = split_stored_hash_index(i);
            match self.subtree(level, n) {
                Ok(h) => out.push(h),
                Err(e) => {
                    *self.failure.borrow_mut() = Some(e);
                    return Err(tlog_tiles::Error::IndexesNotInTree);
                }
            }
        }
        Ok(out)
    }
}

impl LedgerHashes<'_> {
    fn take_failure(&self, e: tlog_tiles::Error) -> LedgerError {
        self.failure
            .borrow_mut()
            .take()
            .unwrap_or_else(|| tlog_err(e))
    }

    pub(crate) fn root(&self) -> Result<Hash, LedgerError> {
        tlog_tiles::tree_hash(self.size, self).map_err(|e| self.take_failure(e))
    }

    pub(crate) fn prove_record(&self, leaf: u64) -> Result<RecordProof, LedgerError> {
        tlog_tiles::prove_record(self.size, leaf, self).map_err(|e| self.take_failure(e))
    }

    pub(crate) fn prove_tree(&self, old: u64) -> Result<TreeProof, LedgerError> {
        tlog_tiles::prove_tree(self.size, old, self).map_err(|e| self.take_failure(e))
    }
}

impl LedgerReader {
    /// Size of the Merkle tree this reader sees: every record it holds ([`LedgerReader::len`]).
    pub fn tree_size(&self) -> u64 {
        self.len()
    }

    /// The leaf hash of record `seq` (its leaf index is `seq - 1`).
    pub fn leaf_hash(&mut self, seq: u64) -> Result<Hash, LedgerError> {
        Ok(leaf_hash(&self.get(seq)?))
    }

    /// The root of the tree of the first `size` records (`size` ≤ [`LedgerReader::tree_size`]).
    pub fn root(&mut self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        let files = TreeFiles::open(&self.dir);
        LedgerHashes::new(&files, self, size).root()
    }

    /// Inclusion proof of record `seq` in the tree of `size` records, for
    /// [`check_record`]`(proof, size, root, seq - 1, leaf)`.
    pub fn inclusion_proof(&mut self, seq: u64, size: u64) -> Result<RecordProof, LedgerError> {
        self.check_size(size)?;
        if seq == 0 || seq > size {
            return Err(LedgerError::Tree(format!(
                "record #{seq} is not in the tree of size {size}"
            )));
        }
        let files = TreeFiles::open(&self.dir);
        LedgerHashes::new(&files, self, size).prove_record(seq - 1)
    }

    /// [`LedgerReader::inclusion_proof`] of each of `seqs` in the tree of `size` records,
    /// sharing the reads they have in common (the tree files, the right edge's leaves).
    pub fn inclusion_proofs(
        &mut self,
        seqs: &[u64],
        size: u64,
    ) -> Result<Vec<RecordProof>, LedgerError> {
        self.check_size(size)?;
        if let Some(bad) = seqs.iter().find(|&&s| s == 0 || s > size) {
            return Err(LedgerError::Tree(format!(
                "record #{bad} is not in the tree of size {size}"
            )));
        }
        let files = TreeFiles::open(&self.dir);
        let hashes = LedgerHashes::new(&files, self, size);
        seqs.iter().map(|&s| hashes.prove_record(s - 1)).collect()
    }

    /// Consistency proof that the tree of `old` records is a prefix of the tree of `new`
    /// records, for [`check_tree`]`(proof, new, new_root, old, old_root)`.
    pub fn consistency_proof(&mut self, old: u64, new: u64) -> Result<TreeProof, LedgerError> {
        self.check_size(new)?;
        if old > new {
            return Err(LedgerError::Tree(format!(
                "old size {old} > new size {new}"
            )));
        }
        let files = TreeFiles::open(&self.dir);
        LedgerHashes::new(&files, self, new).prove_tree(old)
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.len() {
            return Err(LedgerError::Tree(format!(
                "tree size {size} is beyond the ledger's {} records",
                self.len()
            )));
        }
        Ok(())
    }
}

/// The writer's right edge of the tree: the leaf hashes of the last, incomplete group and,
/// for every stored level, the complete subtree waiting for its right sibling. New stored
/// hashes collect in `out` until [`Frontier::flush`] appends them to the tree files.
#[derive(Debug, Default, Clone)]
pub(crate) struct Frontier {
    pub(crate) size: u64,
    group: Vec<Hash>,
    /// Subgroup hashes of the current group (one per 32 leaves).
    subs: Vec<Hash>,
    /// Whether this tree keeps `tree/level-05` (see [`SUB_LEVEL`]): set by `load_aligned`.
    sub_on: bool,
    /// New subgroup hashes for `tree/level-05`, and that file once opened.
    sub_out: Vec<Hash>,
    sub_file: Option<std::sync::Arc<File>>,
    /// `pending[k]`: the last hash at level `STORED_LEVEL + k` when that level's count is odd.
    pending: Vec<Option<Hash>>,
    out: Vec<(u8, Hash)>,
    /// The tree files appended to so far, kept open (`files[k]`: level `STORED_LEVEL + k`):
    /// `flush` runs after every batch and must not open and close each level's file each time.
    files: Vec<Option<std::sync::Arc<File>>>,
    /// A level file was opened (perhaps created) since the last [`Frontier::sync_job`]: the
    /// tree directory is synced with the files.
    opened_since_sync: bool,
}

impl Frontier {
    /// Adds the next leaf.
    pub(crate) fn push(&mut self, leaf: Hash) {
        self.group.push(leaf);
        self.size += 1;
        if (self.group.len() as u64).is_multiple_of(SUBGROUP) {
            let sub = root_of(&self.group[self.group.len() - SUBGROUP as usize..]);
            self.subs.push(sub);
            if self.sub_on {
                self.sub_out.push(sub);
            }
        }
        if self.group.len() as u64 == GROUP {
            let h = root_of(&self.subs);
            self.group.clear();
            self.subs.clear();
            self.emit(STORED_LEVEL, h);
        }
    }

    fn emit(&mut self, level: u8, h: Hash) {
        self.out.push((level, h));
        let k = usize::from(level - STORED_LEVEL);
        if self.pending.len() <= k {
            self.pending.resize(k + 1, None);
        }
        match self.pending[k].take() {
            Some(left) => self.emit(level + 1, node_hash(left, h)),
            None => self.pending[k] = Some(h),
        }
    }

    /// The root of the tree of `size` leaves.
    pub(crate) fn root(&self) -> Hash {
        let mut acc = (!self.group.is_empty()).then(|| root_of(&self.group));
        for p in self.pending.iter().flatten() {
            acc = Some(match acc {
                Some(right) => node_hash(*p, right),
                None => *p,
            });
        }
        acc.unwrap_or(EMPTY_HASH)
    }

    /// Appends the new stored hashes to the tree files (not synced: see [`TreeWorker`]).
    pub(crate) fn flush(&mut self, dir: &Path) -> std::io::Result<Vec<u8>> {
        let mut touched = Vec::new();
        if !self.sub_out.is_empty() {
            std::fs::create_dir_all(dir.join(TREE_DIR))?;
            let bytes: Vec<u8> = self.sub_out.drain(..).flat_map(|h| h.0).collect();
            append_level(
                &mut self.sub_file,
                &mut self.opened_since_sync,
                dir,
                SUB_LEVEL,
                &bytes,
            )?;
            touched.push(SUB_LEVEL);
        }
        if self.out.is_empty() {
            return Ok(touched);
        }
        std::fs::create_dir_all(dir.join(TREE_DIR))?;
        let mut by_level: Vec<Vec<u8>> = Vec::new();
        for (level, h) in self.out.drain(..) {
            let k = usize::from(level - STORED_LEVEL);
            if by_level.len() <= k {
                by_level.resize(k + 1, Vec::new());
            }
            by_level[k].extend_from_slice(&h.0);
        }
        for (k, bytes) in by_level.iter().enumerate() {
            if bytes.is_empty() {
                continue;
            }
            let level = STORED_LEVEL + k as u8;
            if self.files.len() <= k {
                self.files.resize(k + 1, None);
            }
            append_level(
                &mut self.files[k],
                &mut self.opened_since_sync,
                dir,
                level,
                bytes,
            )?;
            touched.push(level);
        }
        Ok(touched)
    }

    /// What the background syncer must fdatasync for the tree files of `levels` (appended to
    /// since the last job) to be durable up to this frontier's size.
    pub(crate) fn sync_job(&mut self, levels: &[u8]) -> SyncJob {
        let files = levels
            .iter()
            .filter_map(|&l| {
                if l == SUB_LEVEL {
                    return self.sub_file.clone();
                }
                self.files
                    .get(usize::from(l.checked_sub(STORED_LEVEL)?))?
                    .clone()
            })
            .collect();
        let dir = std::mem::take(&mut self.opened_since_sync);
        SyncJob {
            files,
            sync_dir: dir,
            size: self.size,
        }
    }

    /// fdatasyncs every tree file and the tree directory, then marks the tree durable up to
    /// `size` (`tree/synced`): what the writer does once at open, synchronously.
    pub(crate) fn sync_all(dir: &Path, size: u64) -> std::io::Result<()> {
        match File::open(level_path(dir, SUB_LEVEL)) {
            Ok(f) => f.sync_data()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for level in STORED_LEVEL..64 {
            match File::open(level_path(dir, level)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        crate::fileio::sync_dir(&dir.join(TREE_DIR))?;
        write_synced(dir, size)
    }

    /// Loads the frontier for a tree of `size` leaves (a multiple of [`GROUP`]) from the tree
    /// files, after cutting every level file to exactly `size >> level` entries.
    fn load_aligned(dir: &Path, size: u64) -> std::io::Result<Frontier> {
        debug_assert_eq!(size % GROUP, 0);
        let mut f = Frontier {
            size,
            ..Frontier::default()
        };
        // `tree/level-05`: kept when it holds the subgroups up to `size` (cut to them), or
        // started with a tree that starts here from nothing; a tree written before the level
        // existed goes on without it (its start cannot be filled in without rereading).
        let want = (size >> SUB_LEVEL) * HASH_SIZE as u64;
        match OpenOptions::new()
            .read(true)
            .write(true)
            .open(level_path(dir, SUB_LEVEL))
        {
            Ok(file) if file.metadata()?.len() >= want => {
                if file.metadata()?.len() != want {
                    file.set_len(want)?;
                }
                f.sub_on = true;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => f.sub_on = size == 0,
            Err(e) => return Err(e),
        }
        for level in STORED_LEVEL..64 {
            let want = size >> level;
            let path = level_path(dir, level);
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && want == 0 => continue,
                Err(e) => return Err(e),
            };
            let bytes = want * HASH_SIZE as u64;
            if file.metadata()?.len() != bytes {
                file.set_len(bytes)?;
            }
            if want % 2 == 1 {
                let mut b = [0u8; HASH_SIZE];
                file.read_exact_at(&mut b, bytes - HASH_SIZE as u64)?;
                let k = usize::from(level - STORED_LEVEL);
                f.pending.resize(k + 1, None);
                f.pending[k] = Some(Hash(b));
            }
        }
        Ok(f)
    }
}

/// Appends `bytes` to the tree file of `level`, opening it (created if missing) into `slot`
/// the first time. A failed append may have written part: the slot is emptied and the error
/// returned (the writer is then marked failed, and `restore` cuts the files to a whole size
/// at the next open).
fn append_level(
    slot: &mut Option<std::sync::Arc<File>>,
    opened: &mut bool,
    dir: &Path,
    level: u8,
    bytes: &[u8],
) -> std::io::Result<()> {
    let f = match slot {
        Some(f) => f.clone(),
        None => {
            let f = std::sync::Arc::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(level_path(dir, level))?,
            );
            *slot = Some(f.clone());
            *opened = true;
            f
        }
    };
    if let Err(e) = (&*f).write_all(bytes) {
        *slot = None;
        return Err(e);
    }
    Ok(())
}

/// `tree/synced`: how far the tree files are known durable (docs/FORMAT.md "Merkle tree").
pub const SYNCED_FILE: &str = "synced";

fn synced_path(dir: &Path) -> PathBuf {
    dir.join(TREE_DIR).join(SYNCED_FILE)
}

fn synced_check(size: u64) -> [u8; 8] {
    let h = blake3::hash(&size.to_le_bytes());
    let mut c = [0u8; 8];
    c.copy_from_slice(&h.as_bytes()[..8]);
    c
}

/// The `tree/synced` mark: `Ok(None)` when the file is absent (a format-2 ledger written
/// before the mark existed synced its tree at every note), `Ok(Some(0))` when it does not
/// check (nothing in the files is trusted).
pub fn read_synced(dir: &Path) -> std::io::Result<Option<u64>> {
    let b = match std::fs::read(synced_path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = b
        .get(..8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes);
    Ok(Some(match size {
        Some(n) if b.len() == 16 && b[8..16] == synced_check(n) => n,
        _ => 0,
    }))
}

/// Writes the mark in place (16 bytes at offset 0: size LE, then the first 8 bytes of its
/// BLAKE3; a torn write fails the check and trusts nothing) and syncs it. Only ever called
/// after the tree files were synced up to `size`.
fn write_synced(dir: &Path, size: u64) -> std::io::Result<()> {
    let path = synced_path(dir);
    let created = !path.try_exists()?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&size.to_le_bytes());
    b[8..].copy_from_slice(&synced_check(size));
    f.write_all_at(&b, 0)?;
    f.set_len(16)?;
    f.sync_data()?;
    if created {
        crate::fileio::sync_dir(&dir.join(TREE_DIR))?;
    }
    Ok(())
}

/// What [`Frontier::sync_job`] hands the worker: files appended to, whether a level file was
/// opened (the directory too), and the tree size they reach.
#[derive(Debug)]
pub(crate) struct SyncJob {
    files: Vec<std::sync::Arc<File>>,
    sync_dir: bool,
    size: u64,
}

/// Work for the [`TreeWorker`].
enum TreeJob {
    /// The records of a durable batch, in order, starting at leaf `first` (0-based):
    /// `data[ends[i-1]..ends[i]]` is one record.
    Batch {
        first: u64,
        data: Vec<u8>,
        ends: Vec<usize>,
    },
    /// Make the tree files durable up to what has been hashed, then advance `tree/synced`.
    Sync,
}

/// What the worker has reached, shared with the writer.
#[derive(Debug)]
struct TreeState {
    size: u64,
    root: Hash,
    /// The tree files could not be appended to or synced: the files stop where they are
    /// (the in-memory tree goes on; the next open recomputes from `tree/synced`).
    failures: u64,
    /// The worker is gone (it could not start, or panicked): the writer computes itself.
    dead: bool,
}

/// The tree, off the writer's path: a thread that takes each durable batch, hashes its
/// records into leaves (SHA-256), extends the right edge ([`Frontier`]), appends the new
/// stored hashes to the tree files, and after each checkpoint syncs them and advances
/// `tree/synced`. The writer waits for it only when it needs a root (a checkpoint note,
/// [`TreeWorker::wait`]).
///
/// Why a thread of its own: measured on `serve` (2 cores, 3 M messages), hashing every record
/// on the writer's thread — in series with the chain, or on a helper thread joined before the
/// batch's write — cost ~12 % of the durable rate (BENCHMARKS.md); the tree is derived data,
/// and no acknowledgement depends on it.
pub(crate) struct TreeWorker {
    tx: Option<crossbeam_channel::Sender<TreeJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
    state: std::sync::Arc<(std::sync::Mutex<TreeState>, std::sync::Condvar)>,
    /// The frontier, kept here when the thread could not be started.
    inline: Option<(Frontier, std::path::PathBuf, Vec<u8>)>,
}

impl std::fmt::Debug for TreeWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeWorker")
            .field("thread", &self.thread.is_some())
            .finish()
    }
}

/// Batches that may wait for the worker before the writer blocks (memory bound: each holds a
/// copy of its batch's records).
const TREE_QUEUE: usize = 64;

/// The worker's side: the frontier and which level files were appended to since the last sync.
struct TreeSide {
    frontier: Frontier,
    dir: PathBuf,
    touched: Vec<u8>,
    broken: bool,
}

impl TreeSide {
    fn batch(&mut self, first: u64, data: &[u8], ends: &[usize]) -> bool {
        debug_assert_eq!(first, self.frontier.size);
        let mut start = 0;
        for &end in ends {
            self.frontier.push(leaf_hash(&data[start..end]));
            start = end;
        }
        if self.broken {
            return false;
        }
        match self.frontier.flush(&self.dir) {
            Ok(levels) => {
                for l in levels {
                    if !self.touched.contains(&l) {
                        self.touched.push(l);
                    }
                }
                true
            }
            Err(_) => {
                // A failed append may have written part of an entry: stop appending (entries
                // after it would be misplaced); readers recompute what the files lack.
                self.broken = true;
                false
            }
        }
    }

    fn sync(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let job = self.frontier.sync_job(&self.touched);
        self.touched.clear();
        let r = job
            .files
            .iter()
            .try_for_each(|f| f.sync_data())
            .and_then(|()| {
                if job.sync_dir {
                    crate::fileio::sync_dir(&self.dir.join(TREE_DIR))
                } else {
                    Ok(())
                }
            })
            .and_then(|()| write_synced(&self.dir, job.size));
        r.is_ok()
    }
}

impl TreeWorker {
    /// Starts the worker on `frontier` (the tree at the ledger's end, as open restored it).
    pub(crate) fn start(dir: &Path, frontier: Frontier) -> TreeWorker {
        let state = std::sync::Arc::new((
            std::sync::Mutex::new(TreeState {
                size: frontier.size,
                root: frontier.root(),
                failures: 0,
                dead: false,
            }),
            std::sync::Condvar::new(),
        ));
        let (tx, rx) = crossbeam_channel::bounded::<TreeJob>(TREE_QUEUE);
        let mut side = TreeSide {
            frontier: frontier.clone(),
            dir: dir.to_path_buf(),
            touched: Vec::new(),
            broken: false,
        };
        let shared = state.clone();
        let spawned = std::thread::Builder::new()
            .name("ledger-tree".into())
            .spawn(move || {
                let publish = |side: &TreeSide, ok: bool| {
                    let (m, cv) = &*shared;
                    if let Ok(mut st) = m.lock() {
                        st.size = side.frontier.size;
                        st.root = side.frontier.root();
                        if !ok {
                            st.failures += 1;
                        }
                    }
                    cv.notify_all();
                };
                while let Ok(job) = rx.recv() {
                    match job {
                        TreeJob::Batch { first, data, ends } => {
                            let ok = side.batch(first, &data, &ends);
                            publish(&side, ok);
                        }
                        TreeJob::Sync => {
                            let ok = side.sync();
                            if !ok {
                                publish(&side, false);
                            }
                        }
                    }
                }
            });
        match spawned {
            Ok(thread) => TreeWorker {
                tx: Some(tx),
                thread: Some(thread),
                state,
                inline: None,
            },
            Err(_) => TreeWorker {
                tx: None,
                thread: None,
                state,
                inline: Some((frontier, dir.to_path_buf(), Vec::new())),
            },
        }
    }

    /// Hands over a durable batch (its records, in order, the first being leaf `first`).
    pub(crate) fn batch(&mut self, first: u64, recs: &[&[u8]]) {
        let total = recs.iter().map(|r| r.len()).sum();
        let mut data = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(recs.len());
        for r in recs {
            data.extend_from_slice(r);
            ends.push(data.len());
        }
        self.send(TreeJob::Batch { first, data, ends });
    }

    /// Asks for the tree files to be synced up to what has been hashed (after a note).
    pub(crate) fn sync(&mut self) {
        self.send(TreeJob::Sync);
    }

    fn send(&mut self, job: TreeJob) {
        let job = match &self.tx {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The thread is gone (it panicked): go on here from what it published.
                Err(e) => e.into_inner(),
            },
            None => job,
        };
        self.run_inline(job);
    }

    fn run_inline(&mut self, job: TreeJob) {
        if self.inline.is_none() {
            // The thread died; its published state is the tree up to `size`, but the
            // frontier went with it: the next open rebuilds. Mark the worker dead so that
            // `wait` does not wait for sizes it can no longer reach.
            let (m, cv) = &*self.state;
            if let Ok(mut st) = m.lock() {
                st.dead = true;
            }
            cv.notify_all();
            return;
        }
        let Some((frontier, dir, touched)) = self.inline.take() else {
            return;
        };
        let mut side = TreeSide {
            frontier,
            dir,
            touched,
            broken: false,
        };
        let ok = match job {
            TreeJob::Batch { first, data, ends } => side.batch(first, &data, &ends),
            TreeJob::Sync => side.sync(),
        };
        {
            let (m, _) = &*self.state;
            if let Ok(mut st) = m.lock() {
                st.size = side.frontier.size;
                st.root = side.frontier.root();
                if !ok {
                    st.failures += 1;
                }
            }
        }
        self.inline = Some((side.frontier, side.dir, side.touched));
    }

    /// Waits until the tree holds `size` leaves and returns its root then.
    pub(crate) fn wait(&self, size: u64) -> Result<Hash, LedgerError> {
        let (m, cv) = &*self.state;
        let mut st = m
            .lock()
            .map_err(|_| LedgerError::Tree("the tree worker's state is poisoned".into()))?;
        loop {
            if st.size == size {
                return Ok(st.root);
            }
            if st.dead || st.size > size {
                return Err(LedgerError::Tree(format!(
                    "the tree worker is at {} leaves, not {size}",
                    st.size
                )));
            }
            st = cv
                .wait(st)
                .map_err(|_| LedgerError::Tree("the tree worker's state is poisoned".into()))?;
        }
    }

    /// Tree-file appends or syncs that failed so far.
    pub(crate) fn failures(&self) -> u64 {
        self.state.0.lock().map_or(0, |st| st.failures)
    }
}

impl TreeWorker {
    /// Finishes the queued batches and syncs, then stops (a clean close leaves `tree/synced`
    /// at the end). Idempotent. The writer calls it before it reopens the ledger in
    /// `recover`: nothing of the old worker may append to the tree files the reopen rebuilds.
    pub(crate) fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(TreeJob::Sync);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.inline.is_some() {
            self.run_inline(TreeJob::Sync);
            self.inline = None;
        }
    }
}

impl Drop for TreeWorker {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How far the tree files can be trusted at open: every level's entries covering leaves at
/// or before `trusted` (the last signed checkpoint's size) and present in the files.
/// Returns the aligned size from which the frontier is rebuilt from records.
fn trusted_aligned(dir: &Path, trusted: u64) -> u64 {
    let mut m = (trusted / GROUP) * GROUP;
    // A subgroup file that exists but is short (a crash after its append, before its sync)
    // moves the start back to the last whole group it covers: rebuilt from there, its
    // entries are appended again in place. An absent one does not (see `load_aligned`).
    if let Ok(md) = std::fs::metadata(level_path(dir, SUB_LEVEL)) {
        let have = (md.len() / HASH_SIZE as u64) << SUB_LEVEL;
        if have < m {
            m = (have / GROUP) * GROUP;
        }
    }
    for level in STORED_LEVEL..64 {
        if m >> level == 0 {
            break;
        }
        let have = std::fs::metadata(level_path(dir, level))
            .map(|md| md.len() / HASH_SIZE as u64)
            .unwrap_or(0);
        if have < m >> level {
            m = have << level;
        }
    }
    m
}

/// Brings the tree files of the ledger in `dir` up to its `size` records: keeps what covers
/// leaves up to `trusted` (a signed checkpoint's size; entries after it were written after
/// the last sync and are recomputed), and recomputes the rest from the records. Returns the
/// frontier at `size`, its new hashes already appended (not synced) — and how many leaves
/// were re-read.
pub(crate) fn restore(dir: &Path, size: u64, trusted: u64) -> Result<(Frontier, u64), LedgerError> {
    let tree = dir.join(TREE_DIR);
    std::fs::create_dir_all(&tree).map_err(LedgerError::io(&tree))?;
    let start = trusted_aligned(dir, trusted.min(size));
    let mut f = Frontier::load_aligned(dir, start).map_err(LedgerError::io(&tree))?;
    if start < size {
        let reader = LedgerReader::open(dir)?;
        if reader.len() < size {
            return Err(LedgerError::Tree(format!(
                "the ledger ends at #{} while rebuilding the tree to #{size}",
                reader.len()
            )));
        }
        // In chunks: a full rebuild of a large ledger must not hold every leaf at once.
        while f.size < size {
            let n = (size - f.size).min(1 << 20);
            for l in reader.leaf_hashes(f.size + 1, n)? {
                f.push(l);
            }
        }
    }
    f.flush(dir).map_err(LedgerError::io(&tree))?;
    Ok((f, size - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_root_matches_rfc6962_for_every_size() {
        let leaves: Vec<Hash> = (0..700u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), EMPTY_HASH);
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&leaves[..=i]), "size {}", i + 1);
        }
    }
}
