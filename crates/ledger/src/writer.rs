//! The single writer: open with crash recovery, durable batch append, segment rollover,
//! periodic and final signed checkpoints.
//!
//! Input is a batch of opaque payloads; output is a [`Receipt`] returned only after every
//! byte of the batch was written and fdatasync'd (protocol and crash points: docs/FORMAT.md
//! "Commit protocol"). The writer holds an exclusive flock on `LOCK` in the ledger directory.
//! After any failed write or sync it refuses further appends (`PreviousIo`) until reopened,
//! because it can no longer know what is on disk; the reopen truncates the torn tail.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint::{CHECKPOINT_FILE, load_key, load_or_create_key, read_checkpoints, sign};
use crate::error::LedgerError;
use crate::fileio::{DataFile, Faults, sync_dir};
use crate::format::{
    BLOCK_HEADER_LEN, BlockHeader, MAX_BLOCK_TARGET, MAX_RECORD_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, block_checksum, chain_step, checkpoint_file_header, index_entry, push_record,
    segment_file_name, tag_of,
};
use crate::merkle::{Frontier, Hash, LedgerHashes, TreeFiles, TreeWorker};
use crate::note::{
    NOTES_FILE, append_note, new_origin, read_notes, read_origin, sign_checkpoint, write_origin,
};
use crate::reader::LedgerReader;
use crate::segment::{
    BlockAt, SegmentPath, Stop, Unfinished, list_segments, read_block_at, read_segment_header,
    scan_segment, write_index,
};
use crate::signer::KeySigner;
use crate::{LedgerOptions, Receipt, Seq};

/// Name of the lock file inside the ledger directory.
pub const LOCK_FILE: &str = "LOCK";

/// What [`Ledger::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// The ledger did not exist and was created.
    pub created: bool,
    /// Number of segment files.
    pub segments: u32,
    /// Seq the next appended record will get.
    pub next_seq: u64,
    /// Last checkpointed seq, if any checkpoint exists.
    pub last_checkpoint: Option<u64>,
    /// Torn tails removed (data segments or the checkpoint file).
    pub truncated: Vec<Truncation>,
    /// Block index sidecars that were rebuilt or extended.
    pub index_rebuilt: Vec<String>,
}

/// One torn tail removed at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// File name inside the ledger directory.
    pub segment: String,
    /// Offset the file was truncated to.
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Records lost, when the damaged block header still said how many it held (at least).
    pub records_lost: Option<u64>,
    /// Why the bytes were not a complete block or entry.
    pub why: String,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "truncated torn tail of {} at byte {}: {} bytes removed",
            self.segment, self.offset, self.bytes
        )?;
        if let Some(n) = self.records_lost {
            write!(f, ", at least {n} unreceipted records lost")?;
        }
        write!(f, " ({})", self.why)
    }
}

/// A segment whose payloads retention removed ([`Ledger::remove_segment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Segment number.
    pub segment: u32,
    /// First seq of its records.
    pub first: u64,
    /// Number of records.
    pub count: u64,
    /// Bytes of the segment file before removal.
    pub bytes: u64,
    /// Chain head after its last record.
    pub head_after: [u8; 32],
    /// Seq of the retention record (0 until it is appended).
    pub record: u64,
}

/// A segment rewritten in this build's format ([`Ledger::upgrade_segment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Segment number.
    pub segment: u32,
    /// Records it holds (unchanged).
    pub records: u64,
    /// File size before and after.
    pub bytes_before: u64,
    /// File size after the rewrite.
    pub bytes_after: u64,
}

/// Segments of the ledger in `dir` that [`Ledger::upgrade_segment`] would rewrite: format 2,
/// not removed by retention, in order (format-1 segments are kept byte for byte, as the
/// v1 → v2 migration left them).
pub fn upgradable_segments(dir: &Path) -> Result<Vec<u32>, LedgerError> {
    let mut out = Vec::new();
    for s in list_segments(dir)? {
        let file = File::open(&s.path).map_err(LedgerError::io(&s.path))?;
        let h = read_segment_header(&file, &s)?;
        if h.version == 2 && h.flags & crate::format::SEGMENT_FLAG_REMOVED == 0 {
            out.push(s.number);
        }
    }
    Ok(out)
}

/// Environment variable naming a crash point (`upgrade:N:written`, `upgrade:N:renamed`) at
/// which the process kills itself with SIGKILL: the kill -9 tests of `pugmark migrate`
/// stop it exactly between two steps of the upgrade's crash protocol. Unset, nothing happens.
pub const KILL_AT_ENV: &str = "PUGMARK_TEST_KILL_AT";

/// Kills this process with SIGKILL if [`KILL_AT_ENV`] names `point`.
pub(crate) fn crash_point(point: &str) {
    if std::env::var_os(KILL_AT_ENV).is_some_and(|v| v == point) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// The single writer of a ledger directory.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    opts: LedgerOptions,
    _lock: File,
    faults: Option<Arc<Faults>>,
    seg: SegmentPath,
    seg_file: DataFile,
    seg_len: u64,
    idx_file: Option<File>,
    next_seq: u64,
    head: [u8; 32],
    key: KeySigner,
    ckpt: DataFile,
    last_ckpt_seq: Option<u64>,
    last_ckpt_at: Instant,
    records_since_ckpt: u64,
    failed: bool,
    level: i32,
    /// zstd contexts, reused across blocks (creating one per block showed in profiles):
    /// `[0]` for this thread, `[1]` for the helper that compresses half of a large batch.
    zstd: [Zstd; 2],
    /// Uncompressed block areas of the batch being written (reused across batches).
    areas: Vec<PendingBlock>,
    out: Vec<u8>,
    pending_idx: Vec<(u64, u64)>,
    /// The log origin (`ledger/origin`), the name in every checkpoint note.
    origin: String,
    /// The Merkle tree, kept by a thread of its own: each durable batch is handed to it, a
    /// checkpoint waits for its root (docs/FORMAT.md "Merkle tree").
    tree: TreeWorker,
    /// `ledger/checkpoint-notes`, opened for appending.
    notes: File,
    /// The secret block MAC key, derived from the signing key's seed.
    mac_key: [u8; 32],
    /// Tree size of the last signed note.
    last_note_size: Option<u64>,
    /// Format version of the segment appended to, and of the segments rolled over to: a
    /// version-2 ledger stays version 2 until `pugmark migrate` (docs/FORMAT.md "Version 3").
    version: u32,
}

/// A block of the batch being written, before compression.
#[derive(Debug, Default)]
struct PendingBlock {
    first: u64,
    count: u64,
    head: [u8; 32],
    area: Vec<u8>,
    /// The block's uncompressed length U (the area's, or in format 3 its columns').
    stored_len: usize,
    compressed: Vec<u8>,
}

/// A reusable zstd context, made on first use.
#[derive(Default)]
struct Zstd(Option<zstd::bulk::Compressor<'static>>);

impl std::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Zstd")
    }
}

/// A compressed block back from the helper: its position in the batch, the block, and
/// whether compression worked.
type Compressed = (usize, PendingBlock, std::io::Result<()>);

/// Compresses a block's area with `cx` (created on first use) as a block of `codec`
/// (format 3: envelope columns, `columns::pack`).
fn compress_one(cx: &mut Zstd, level: i32, codec: u8, b: &mut PendingBlock) -> std::io::Result<()> {
    if cx.0.is_none() {
        cx.0 = Some(zstd::bulk::Compressor::new(level)?);
    }
    let Some(c) = cx.0.as_mut() else {
        return Ok(());
    };
    b.stored_len = crate::columns::pack(codec, &b.area, c, &mut b.compressed)? as usize;
    Ok(())
}

fn validate(opts: &LedgerOptions) -> Result<(), LedgerError> {
    if opts.block_max_bytes == 0 || opts.block_max_bytes > MAX_BLOCK_TARGET {
        return Err(LedgerError::InvalidOption(format!(
            "block_max_bytes must be 1..={MAX_BLOCK_TARGET}"
        )));
    }
    if opts.segment_max_bytes < 4096 {
        return Err(LedgerError::InvalidOption(
            "segment_max_bytes must be at least 4096".into(),
        ));
    }
    if !zstd::compression_level_range().contains(&opts.zstd_level) {
        return Err(LedgerError::InvalidOption(format!(
            "zstd_level {} is out of range",
            opts.zstd_level
        )));
    }
    if opts.checkpoint_every_records == 0 {
        return Err(LedgerError::InvalidOption(
            "checkpoint_every_records must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Signing time of a checkpoint. Informational only (nothing is ordered by it), and the ledger
/// cannot use `model`'s collector clock without depending on `model`.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn create_segment(
    dir: &Path,
    number: u32,
    first_seq: u64,
    prev_head: [u8; 32],
    version: u32,
    faults: &Option<Arc<Faults>>,
) -> Result<(SegmentPath, DataFile), LedgerError> {
    let name = segment_file_name(number);
    let path = dir.join(&name);
    let file = OpenOptions::new()
        .append(true)
        .read(true)
        .create_new(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    let mut df = DataFile::new(file, faults.clone());
    let hdr = SegmentHeader {
        number,
        first_seq,
        prev_head,
        version,
        flags: 0,
    };
    df.write_all(&hdr.encode())
        .and_then(|()| df.sync_data())
        .map_err(LedgerError::io(&path))?;
    let seg = SegmentPath { number, path, name };
    write_index(&seg.index_path(), &[]).map_err(LedgerError::io(seg.index_path()))?;
    sync_dir(dir).map_err(LedgerError::io(dir))?;
    Ok((seg, df))
}

/// Where a torn tail starts and why it is one: the first complete block of an unfinished
/// batch, or else the first block that is not complete and intact.
fn torn_tail_description(unfinished: Option<&Unfinished>, stop: Option<&Stop>) -> (u64, String) {
    match (unfinished, stop) {
        (Some(u), stop) => {
            let mut why = format!(
                "batch from #{} unfinished: {} complete block(s) with {} record(s) but no batch-end block",
                u.first_seq, u.blocks, u.records
            );
            if let Some(s) = stop {
                why.push_str(&format!("; then {} at byte {}", s.why, s.offset));
            }
            (u.offset, why)
        }
        (None, Some(s)) => (s.offset, s.why.clone()),
        (None, None) => (0, String::new()),
    }
}

fn lock(dir: &Path) -> Result<File, LedgerError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LedgerError::Locked),
        Err(e) => Err(LedgerError::io(&path)(e.into())),
    }
}

impl Ledger {
    /// Opens (creating if absent) the ledger in `dir` (normally `DATA/ledger`), recovering a
    /// torn tail left by a crash. Fails with `Corrupted` rather than truncate anything a
    /// checkpoint covers.
    pub fn open(dir: &Path, opts: LedgerOptions) -> Result<(Ledger, OpenReport), LedgerError> {
        Ledger::open_inner(dir, opts, Faults::from_env(dir))
    }

    pub(crate) fn open_inner(
        dir: &Path,
        opts: LedgerOptions,
        faults: Option<Arc<Faults>>,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        Ledger::open_creating(dir, opts, faults, crate::format::FORMAT_VERSION)
    }

    /// Opens; a new ledger is created in format `create_version` (this build's, except in
    /// the migration tests, which make version-2 ledgers to migrate).
    pub(crate) fn open_creating(
        dir: &Path,
        opts: LedgerOptions,
        faults: Option<Arc<Faults>>,
        create_version: u32,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        validate(&opts)?;
        std::fs::create_dir_all(dir).map_err(LedgerError::io(dir))?;
        let lock = lock(dir)?;
        Ledger::open_locked(dir, opts, faults, lock, create_version)
    }

    /// Opens with the directory's lock already held (`open`, and `recover`, which keeps it).
    fn open_locked(
        dir: &Path,
        opts: LedgerOptions,
        faults: Option<Arc<Faults>>,
        lock: File,
        create_version: u32,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        let mut report = OpenReport::default();
        let key_path = opts.resolved_key_path(dir);
        // A key is made only for a new ledger: a ledger whose key is missing never gets a
        // new one silently (the operator rotates it: `pugmark keys rotate`).
        let file_key = match opts.signer {
            Some(_) => None,
            None => load_key(&key_path)?,
        };
        let key = match (&opts.signer, file_key) {
            // A token: nothing is read from or written beside `key_path`.
            (Some(s), _) => KeySigner::External(s.clone()),
            // Its public key file is brought in step at the end, once the key is accepted.
            (None, Some(k)) => KeySigner::File(Box::new(k)),
            (None, None) if !list_segments(dir)?.is_empty() => {
                return Err(LedgerError::Refused(format!(
                    "the signing key {} is missing and the ledger already exists: a new key is never made silently; restore the key, or run `pugmark keys rotate`",
                    key_path.display()
                )));
            }
            (None, None) => KeySigner::File(Box::new(load_or_create_key(&key_path)?)),
        };
        let key_name = key
            .describe()
            .unwrap_or_else(|| key_path.display().to_string());
        let mac_key = key.mac_key()?;

        // Checkpoints: create the file, or cut a torn partial entry.
        let ckpt_path = dir.join(CHECKPOINT_FILE);
        let mut last_ckpt: Option<(u64, [u8; 32])> = None;
        match read_checkpoints(&ckpt_path)? {
            None => {
                // Made with the ledger, before its first record: missing beside records means
                // deleted, and recreating it would hide that.
                let holds_records = list_segments(dir)?.iter().any(|s| {
                    std::fs::metadata(&s.path).is_ok_and(|m| m.len() > SEGMENT_HEADER_LEN as u64)
                });
                if holds_records {
                    return Err(LedgerError::Refused(format!(
                        "{} is missing but the ledger holds records: it is not recreated (restore it, or run verify)",
                        ckpt_path.display()
                    )));
                }
                let mut f = File::create(&ckpt_path).map_err(LedgerError::io(&ckpt_path))?;
                std::io::Write::write_all(&mut f, &checkpoint_file_header())
                    .and_then(|()| f.sync_all())
                    .map_err(LedgerError::io(&ckpt_path))?;
                sync_dir(dir).map_err(LedgerError::io(dir))?;
            }
            Some(cf) => {
                if cf.torn_bytes > 0 {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&ckpt_path)
                        .map_err(LedgerError::io(&ckpt_path))?;
                    f.set_len(cf.valid_len)
                        .and_then(|()| f.sync_all())
                        .map_err(LedgerError::io(&ckpt_path))?;
                    report.truncated.push(Truncation {
                        segment: CHECKPOINT_FILE.into(),
                        offset: cf.valid_len,
                        bytes: cf.torn_bytes,
                        records_lost: None,
                        why: "partial checkpoint entry".into(),
                    });
                }
                for (_, e) in cf.entries.iter().rev() {
                    if let Ok(e) = e {
                        last_ckpt = Some((e.seq, e.head));
                        break;
                    }
                }
            }
        }
        let ckpt_file = OpenOptions::new()
            .append(true)
            .open(&ckpt_path)
            .map_err(LedgerError::io(&ckpt_path))?;

        // A segment rewrite (`upgrade_segment`) that a crash stopped before its rename: the
        // segment itself is whole, the half-made copy goes.
        for e in std::fs::read_dir(dir).map_err(LedgerError::io(dir))? {
            let e = e.map_err(LedgerError::io(dir))?;
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".dat.upgrading"))
            {
                std::fs::remove_file(e.path()).map_err(LedgerError::io(e.path()))?;
            }
        }
        // Segments: all numbered 1..=n without gaps.
        let mut segs = list_segments(dir)?;
        for (i, s) in segs.iter().enumerate() {
            if s.number as usize != i + 1 {
                return Err(LedgerError::corrupted(
                    &segment_file_name(i as u32 + 1),
                    0,
                    "segment file missing",
                ));
            }
        }
        // A segment whose header never became durable (crash while rolling over) is removed.
        while let Some(last) = segs.last() {
            let len = std::fs::metadata(&last.path)
                .map_err(LedgerError::io(&last.path))?
                .len();
            let file = File::open(&last.path).map_err(LedgerError::io(&last.path))?;
            match read_segment_header(&file, last) {
                Err(LedgerError::Corrupted { .. }) if len <= SEGMENT_HEADER_LEN as u64 => {
                    std::fs::remove_file(&last.path).map_err(LedgerError::io(&last.path))?;
                    let _ = std::fs::remove_file(last.index_path());
                    sync_dir(dir).map_err(LedgerError::io(dir))?;
                    report.truncated.push(Truncation {
                        segment: last.name.clone(),
                        offset: 0,
                        bytes: len,
                        records_lost: Some(0),
                        why: "segment header incomplete; segment removed".into(),
                    });
                    segs.pop();
                }
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        // Older segments: make sure their sidecars exist and fit (cheap when they do).
        for s in segs.iter().take(segs.len().saturating_sub(1)) {
            let file = File::open(&s.path).map_err(LedgerError::io(&s.path))?;
            let hdr = read_segment_header(&file, s)?;
            let len = file.metadata().map_err(LedgerError::io(&s.path))?.len();
            if hdr.flags & crate::format::SEGMENT_FLAG_REMOVED != 0 {
                // Payloads removed by retention: only the stub (leaf hashes) is left.
                crate::reader::read_removed_stub(&file, s, len)?;
                continue;
            }
            let scan = scan_segment(&file, s, &hdr, len, false, !opts.check_sidecars)
                .map_err(LedgerError::io(&s.path))?;
            if scan.index_rebuilt || scan.index_extended {
                write_index(&s.index_path(), &scan.blocks)
                    .map_err(LedgerError::io(s.index_path()))?;
                report.index_rebuilt.push(s.name.clone());
            }
        }

        let mut last_version = create_version;
        let (seg, seg_file, seg_len, next_seq, head) = match segs.pop() {
            None => {
                report.created = true;
                let (seg, df) = create_segment(dir, 1, 1, [0; 32], create_version, &faults)?;
                (seg, df, SEGMENT_HEADER_LEN as u64, 1, [0u8; 32])
            }
            Some(seg) => {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&seg.path)
                    .map_err(LedgerError::io(&seg.path))?;
                let hdr = read_segment_header(&file, &seg)?;
                last_version = hdr.version;
                let len = file.metadata().map_err(LedgerError::io(&seg.path))?.len();
                let mut scan = scan_segment(&file, &seg, &hdr, len, true, !opts.check_sidecars)
                    .map_err(LedgerError::io(&seg.path))?;
                // Complete blocks of a batch whose last block never reached the disk are part
                // of the torn tail: a batch is kept whole or not at all.
                let unfinished = scan.cut_to_batch_end();
                let torn = unfinished.is_some() || scan.stop.is_some();
                if torn {
                    let (at, why) = torn_tail_description(unfinished.as_ref(), scan.stop.as_ref());
                    if let Some((c, _)) = last_ckpt
                        && c >= scan.next_seq
                    {
                        return Err(LedgerError::corrupted(
                            &seg.name,
                            at,
                            format!(
                                "{why} at #{} but checkpoint #{c} covers it; not a torn tail, run verify",
                                scan.next_seq
                            ),
                        ));
                    }
                    file.set_len(scan.end_offset)
                        .and_then(|()| file.sync_all())
                        .map_err(LedgerError::io(&seg.path))?;
                    let stop_count = scan
                        .stop
                        .as_ref()
                        .and_then(|s| s.header)
                        .map(|h| h.count as u64);
                    let records_lost = match (unfinished.as_ref().map(|u| u.records), stop_count) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                    };
                    report.truncated.push(Truncation {
                        segment: seg.name.clone(),
                        offset: scan.end_offset,
                        bytes: len - scan.end_offset,
                        records_lost,
                        why,
                    });
                }
                if scan.index_rebuilt || scan.index_extended || torn {
                    write_index(&seg.index_path(), &scan.blocks)
                        .map_err(LedgerError::io(seg.index_path()))?;
                    report.index_rebuilt.push(seg.name.clone());
                }
                (
                    seg,
                    DataFile::new(file, faults.clone()),
                    scan.end_offset,
                    scan.next_seq,
                    scan.head,
                )
            }
        };
        if let Some((c, h)) = last_ckpt {
            let end = next_seq - 1;
            if c > end {
                return Err(LedgerError::corrupted(
                    CHECKPOINT_FILE,
                    0,
                    format!(
                        "checkpoint #{c} is beyond the ledger end #{end}: records were removed"
                    ),
                ));
            }
            if c == end && h != head {
                return Err(LedgerError::corrupted(
                    CHECKPOINT_FILE,
                    0,
                    format!("checkpoint #{c} does not match the chain head; run verify"),
                ));
            }
        }
        // The log origin and the signed notes: a ledger's origin is chosen once, when it is
        // created; a notes file that disappeared from a ledger holding records is not
        // recreated (that would let truncation pass unseen).
        let end = next_seq - 1;
        let read = read_origin(dir)?;
        let origin_existed = read.is_some();
        let origin = match read {
            Some(o) => o,
            None if end > 0 && last_version >= 2 => {
                return Err(LedgerError::Refused(format!(
                    "{} is missing but the ledger holds {end} records in format 2: it is not recreated (restore it, or run verify)",
                    dir.join(crate::note::ORIGIN_FILE).display()
                )));
            }
            None => {
                let o = match &opts.origin {
                    Some(o) => o.clone(),
                    None => new_origin()?,
                };
                if !crate::note::valid_origin(&o) {
                    return Err(LedgerError::InvalidOption(format!("log origin {o:?}")));
                }
                write_origin(dir, &o)?;
                o
            }
        };
        let notes_path = dir.join(NOTES_FILE);
        let mut last_note: Option<(u64, Hash)> = None;
        match read_notes(&notes_path)? {
            None if end > 0 && origin_existed => {
                return Err(LedgerError::Refused(format!(
                    "{} is missing but the ledger holds {end} records: it is not recreated (restore it, or run verify)",
                    notes_path.display()
                )));
            }
            None => {}
            Some(nf) => {
                if nf.torn_bytes > 0 {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&notes_path)
                        .map_err(LedgerError::io(&notes_path))?;
                    f.set_len(nf.valid_len)
                        .and_then(|()| f.sync_all())
                        .map_err(LedgerError::io(&notes_path))?;
                    report.truncated.push(Truncation {
                        segment: NOTES_FILE.into(),
                        offset: nf.valid_len,
                        bytes: nf.torn_bytes,
                        records_lost: None,
                        why: "partial checkpoint note".into(),
                    });
                }
                if let Some(n) = nf.notes.last() {
                    if n.checkpoint.origin != origin {
                        return Err(LedgerError::Refused(format!(
                            "the last checkpoint note names origin {:?}, the ledger is {origin:?}",
                            n.checkpoint.origin
                        )));
                    }
                    last_note = Some((n.checkpoint.size, n.checkpoint.root));
                    let vkey = crate::note::verifier_key(&origin, &key.public_key())?;
                    if !opts.rotating && crate::note::verify_note(&n.note, &vkey).is_err() {
                        return Err(LedgerError::Refused(format!(
                            "the last checkpoint note (tree size {}) is not signed by the key in {}: the key changed or the note was forged; restore the key, or run `pugmark keys rotate`",
                            n.checkpoint.size, key_name
                        )));
                    }
                }
            }
        }
        let notes = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&notes_path)
            .map_err(LedgerError::io(&notes_path))?;
        if let Some((size, _)) = last_note
            && size > end
        {
            return Err(LedgerError::corrupted(
                NOTES_FILE,
                0,
                format!(
                    "checkpoint note for tree size {size} is beyond the ledger end #{end}: records were removed"
                ),
            ));
        }
        // The tree: trusted up to the last signed note and no further than its files are known
        // durable (`tree/synced`; absent in a ledger whose writer synced them before every
        // note), recomputed from the records after it; its root at that note must be the
        // signed one.
        let tree_dir = dir.join(crate::merkle::TREE_DIR);
        let synced = crate::merkle::read_synced(dir).map_err(LedgerError::io(&tree_dir))?;
        let trusted = last_note
            .map_or(0, |(s, _)| s)
            .min(synced.unwrap_or(u64::MAX));
        let (mut frontier, _reread) = crate::merkle::restore(dir, end, trusted)?;
        if let Some((size, root)) = last_note {
            let root_at = |frontier: &Frontier| -> Result<Hash, LedgerError> {
                if size == end {
                    return Ok(frontier.root());
                }
                let mut r = LedgerReader::open(dir)?;
                let files = TreeFiles::open(dir);
                LedgerHashes::new(&files, &mut r, size).root()
            };
            if root_at(&frontier)? != root {
                // The tree files are derived: rebuild them whole from the records before
                // concluding that the records changed.
                frontier = crate::merkle::restore(dir, end, 0)?.0;
                report.index_rebuilt.push(crate::merkle::TREE_DIR.into());
                if root_at(&frontier)? != root {
                    return Err(LedgerError::Refused(format!(
                        "the ledger's tree at size {size} does not match the signed checkpoint note: records were changed; run verify"
                    )));
                }
            }
        }
        if synced != Some(end) {
            // What open recomputed is made durable once, here, so the mark starts at the end.
            Frontier::sync_all(dir, end).map_err(LedgerError::io(&tree_dir))?;
        }
        // Records past the last signed checkpoint must be this writer's: the last block's MAC
        // (secret key) must verify and the chain recomputed from the checkpoint must reach
        // its head. Otherwise they were appended behind the writer's back and signing now
        // would vouch for them.
        let (ck_seq, ck_head) = last_ckpt.unwrap_or((0, [0; 32]));
        let needs_roll = {
            let r = LedgerReader::open(dir)?;
            let v1 = r.last_segment_version() == Some(1);
            if v1 && !opts.migrating {
                return Err(LedgerError::NeedsMigration);
            }
            let older = last_version < crate::format::FORMAT_VERSION;
            if end > ck_seq && !v1 && !opts.rotating {
                let hdr = r.last_block_header()?;
                let mac_ok = hdr.is_some_and(|h| {
                    crate::format::block_mac(&mac_key, &h.encode_fields()) == h.mac
                });
                let mut h = ck_head;
                let mut it = r.iter_from(ck_seq + 1);
                while let Some(x) = it.next_ref() {
                    let (s, p) = x?;
                    h = chain_step(&h, s.get(), p);
                }
                if !mac_ok || h != head {
                    return Err(LedgerError::Refused(format!(
                        "records #{}..#{end} after the last signed checkpoint were not written with this ledger's key (appended behind the writer's back, or the key changed); run verify",
                        ck_seq + 1
                    )));
                }
            }
            opts.migrating && older
        };
        let idx_file = OpenOptions::new().append(true).open(seg.index_path()).ok();
        report.segments = seg.number;
        report.next_seq = next_seq;
        report.last_checkpoint = last_ckpt.map(|(c, _)| c);
        let level = opts.zstd_level;
        let mut ledger = Ledger {
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            seg,
            seg_file,
            seg_len,
            idx_file,
            next_seq,
            head,
            key,
            ckpt: DataFile::new(ckpt_file, faults.clone()),
            faults,
            last_ckpt_seq: last_ckpt.map(|(c, _)| c),
            last_ckpt_at: Instant::now(),
            records_since_ckpt: 0,
            failed: false,
            level,
            zstd: [Zstd::default(), Zstd::default()],
            areas: Vec::new(),
            out: Vec::new(),
            pending_idx: Vec::new(),
            origin,
            tree: TreeWorker::start(dir, frontier),
            notes,
            mac_key,
            last_note_size: last_note.map(|(s, _)| s),
            version: last_version.max(2),
        };
        // The key is accepted: its public key file beside it says the same (best effort: a
        // key read from a descriptor has no directory to write beside).
        if let KeySigner::File(_) = ledger.key {
            crate::checkpoint::sync_public_key(&key_path, &ledger.key.public_key());
        }
        if needs_roll {
            // Migration: appends go to a new segment of this build's format; older segments
            // are never appended to again (`upgrade_segment` may rewrite them whole).
            ledger.version = crate::format::FORMAT_VERSION;
            ledger.roll_segment(ledger.next_seq, ledger.head)?;
        }
        Ok((ledger, report))
    }

    /// Whether an earlier write or sync failed: appends are refused until [`Ledger::recover`]
    /// succeeds.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Makes a writer usable again after a failed write or sync, without giving up the lock.
    ///
    /// Nothing the failed batch left is trusted, complete or not: after a failed fdatasync
    /// the page cache may show bytes the disk does not hold. So the current segment is cut
    /// back to the end of the last batch that was durable (and that cut synced), then the
    /// ledger is opened again as [`Ledger::open`] does — a half-made next segment removed, a
    /// partial checkpoint entry cut, the chain head read back from disk — and that head must
    /// be the one this writer last receipted. The caller appends the failed batch again: it
    /// is stored once, and nothing receipted is lost. On error the writer stays failed and
    /// `recover` may be called again (the resource may come back later).
    pub fn recover(&mut self) -> Result<OpenReport, LedgerError> {
        if !self.failed {
            return Ok(OpenReport {
                segments: self.seg.number,
                next_seq: self.next_seq,
                last_checkpoint: self.last_ckpt_seq,
                ..OpenReport::default()
            });
        }
        let f = self.seg_file.file();
        f.set_len(self.seg_len)
            .and_then(|()| f.sync_all())
            .map_err(LedgerError::io(&self.seg.path))?;
        // The old tree thread's queued batches are durable records: let it finish before the
        // reopen cuts and rebuilds the tree files, never after.
        self.tree.finish();
        // A second descriptor of the same open file: the flock stays held throughout.
        let lock = self
            ._lock
            .try_clone()
            .map_err(LedgerError::io(self.dir.join(LOCK_FILE)))?;
        let (fresh, report) = Ledger::open_locked(
            &self.dir,
            self.opts.clone(),
            self.faults.clone(),
            lock,
            self.version,
        )?;
        if fresh.next_seq != self.next_seq || fresh.head != self.head {
            return Err(LedgerError::corrupted(
                &fresh.seg.name,
                fresh.seg_len,
                format!(
                    "after a failed write the ledger ends at #{} but #{} was the last record receipted; run verify",
                    fresh.next_seq - 1,
                    self.next_seq - 1
                ),
            ));
        }
        *self = fresh;
        Ok(report)
    }

    /// Seq the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Chain head after the last appended record (zeros for an empty ledger).
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The public key that signs this ledger's checkpoints.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// The log origin: the first line of every checkpoint note and the key name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The C2SP verifier key (`origin+keyid+base64`) of this ledger's checkpoint notes.
    pub fn verifier_key(&self) -> Result<String, LedgerError> {
        crate::note::verifier_key(&self.origin, &self.public_key())
    }

    /// Size of the Merkle tree (= the last seq appended).
    pub fn tree_size(&self) -> u64 {
        self.next_seq - 1
    }

    /// Root of the Merkle tree over every record appended.
    pub fn root(&self) -> Result<Hash, LedgerError> {
        self.tree_root(self.next_seq - 1)
    }

    /// The root at `size` (the ledger's end): from the tree worker, or — if it is gone —
    /// recomputed from the tree files and records.
    fn tree_root(&self, size: u64) -> Result<Hash, LedgerError> {
        match self.tree.wait(size) {
            Ok(r) => Ok(r),
            Err(_) => LedgerReader::open(&self.dir)?.root(size),
        }
    }

    /// The latest checkpoint note, with every recorded cosignature merged in.
    pub fn latest_checkpoint(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        crate::note::latest_checkpoint(&self.dir)
    }

    /// Appends to or syncs of the tree files that failed (derived data: readers recompute
    /// what the files lack, the next open recomputes what they did not make durable).
    pub fn tree_failures(&self) -> u64 {
        self.tree.failures()
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch and returns once it is durable. An empty batch writes nothing.
    pub fn append_batch<'a, I: IntoIterator<Item = &'a [u8]>>(
        &mut self,
        records: I,
    ) -> Result<Receipt, LedgerError> {
        if self.failed {
            return Err(LedgerError::PreviousIo);
        }
        let recs: Vec<&[u8]> = records.into_iter().collect();
        if let Some(r) = recs.iter().find(|r| r.len() > MAX_RECORD_LEN) {
            return Err(LedgerError::RecordTooLarge {
                len: r.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let first = self.next_seq;
        if recs.is_empty() {
            return Ok(Receipt {
                first: Seq(first),
                count: 0,
                head: self.head,
            });
        }
        let result = self.write_batch(&recs);
        if result.is_err() {
            self.failed = true;
        }
        result?;
        // The batch is durable: the tree thread hashes it while the caller goes on.
        self.tree.batch(first - 1, &recs);
        self.records_since_ckpt += recs.len() as u64;
        let receipt = Receipt {
            first: Seq(first),
            count: recs.len() as u64,
            head: self.head,
        };
        if self.records_since_ckpt >= self.opts.checkpoint_every_records
            || self.last_ckpt_at.elapsed() >= self.opts.checkpoint_every
        {
            // The batch is durable whatever happens to its checkpoint: a failure here must
            // not make the caller append it again. The writer is marked failed (the next
            // append is refused until `recover`) and the checkpoint is signed later.
            let _ = self.checkpoint();
        }
        Ok(receipt)
    }

    /// Builds the whole batch in memory (its last block flagged as the batch end), starts a
    /// new segment first if the batch does not fit the current one, then writes it with one
    /// write and syncs. A batch therefore never spans segments, and until its batch-end block
    /// is on disk recovery and readers ignore every block of it.
    ///
    /// The chain is sequential, compression is not: while this thread chains the records
    /// block by block, each full block goes to a scoped helper thread that compresses it;
    /// once the chain is done this thread compresses what the helper has not taken yet. The
    /// two overlap, so a batch costs about the chain plus half of the compression instead of
    /// both (the bytes written are the same either way).
    fn write_batch(&mut self, recs: &[&[u8]]) -> Result<(), LedgerError> {
        let mut seq = self.next_seq;
        let mut head = self.head;
        self.out.clear();
        self.pending_idx.clear();
        let max = self.opts.block_max_bytes;
        let level = self.level;
        let codec = crate::format::codec_for_version(self.version);
        // Spare blocks from earlier batches: their buffers are reused.
        let mut pool = std::mem::take(&mut self.areas);
        let several_blocks = recs.iter().map(|r| r.len() + 8).sum::<usize>() > max;
        let [cx0, cx1] = &mut self.zstd;
        let (blocks, compressed) = std::thread::scope(|sc| {
            let (job_tx, job_rx) = crossbeam_channel::unbounded::<(usize, PendingBlock)>();
            let (done_tx, done_rx) = crossbeam_channel::unbounded::<Compressed>();
            let helper = several_blocks.then(|| {
                let (jobs, done) = (job_rx.clone(), done_tx.clone());
                sc.spawn(move || {
                    for (i, mut b) in jobs {
                        let r = compress_one(cx1, level, codec, &mut b);
                        if done.send((i, b, r)).is_err() {
                            break;
                        }
                    }
                })
            });
            let mut cur: Option<PendingBlock> = None;
            let mut sealed = 0;
            for r in recs {
                if let Some(b) = cur.take_if(|b| b.area.len() + 8 + r.len() > max) {
                    // The receiver lives until the end of this scope.
                    let _ = job_tx.send((sealed, b));
                    sealed += 1;
                }
                let b = cur.get_or_insert_with(|| {
                    let mut b = pool.pop().unwrap_or_default();
                    b.first = seq;
                    b.count = 0;
                    b.area.clear();
                    b
                });
                head = chain_step(&head, seq, r);
                push_record(&mut b.area, tag_of(&head), r);
                b.count += 1;
                b.head = head;
                seq += 1;
            }
            if let Some(b) = cur.take() {
                let _ = job_tx.send((sealed, b));
                sealed += 1;
            }
            drop(job_tx);
            let mut slots: Vec<Option<PendingBlock>> = (0..sealed).map(|_| None).collect();
            let mut result = Ok(());
            // This thread's share: whatever the helper has not taken.
            while let Ok((i, mut b)) = job_rx.try_recv() {
                let r = compress_one(cx0, level, codec, &mut b);
                result = result.and(r);
                slots[i] = Some(b);
            }
            drop(done_tx);
            for (i, b, r) in done_rx {
                result = result.and(r);
                slots[i] = Some(b);
            }
            if helper.is_some_and(|h| h.join().is_err()) {
                result = Err(std::io::Error::other("compression thread panicked"));
            }
            let blocks: Vec<PendingBlock> = slots.into_iter().flatten().collect();
            if result.is_ok() && blocks.len() != sealed {
                result = Err(std::io::Error::other("a block was lost in compression"));
            }
            (blocks, result)
        });
        let used = blocks.len();
        self.areas = blocks;
        self.areas.append(&mut pool);
        compressed.map_err(LedgerError::io(&self.seg.path))?;
        for i in 0..used {
            self.finish_block(i, i + 1 == used);
        }
        let used_bytes = self.seg_len;
        if used_bytes > SEGMENT_HEADER_LEN as u64
            && used_bytes + self.out.len() as u64 > self.opts.segment_max_bytes
        {
            self.roll_segment(self.next_seq, self.head)?;
        }
        self.flush_out()?;
        self.next_seq = seq;
        self.head = head;
        Ok(())
    }

    /// Appends compressed block `i` of the batch, with its header, to `out`; the sidecar
    /// entry keeps the block's offset relative to the start of `out`.
    fn finish_block(&mut self, i: usize, batch_end: bool) {
        let codec = crate::format::codec_for_version(self.version);
        let b = &self.areas[i];
        let mut h = BlockHeader {
            count: b.count as u32,
            first_seq: b.first,
            compressed_len: b.compressed.len() as u32,
            uncompressed_len: b.stored_len as u32,
            head: b.head,
            codec,
            batch_end,
            mac: [0; crate::format::MAC_LEN],
            checksum: [0; 16],
        };
        h.mac = crate::format::block_mac(&self.mac_key, &h.encode_fields());
        h.checksum = block_checksum(&h.encode_fields()[..64], &b.compressed);
        self.pending_idx.push((b.first, self.out.len() as u64));
        self.out.extend_from_slice(&h.encode());
        self.out.extend_from_slice(&b.compressed);
        debug_assert_eq!(BLOCK_HEADER_LEN, 80);
    }

    /// Writes and syncs `out` (one whole batch) to the current segment, then records its
    /// blocks in the sidecar.
    fn flush_out(&mut self) -> Result<(), LedgerError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let path = &self.seg.path;
        self.seg_file
            .write_all(&self.out)
            .map_err(LedgerError::io(path))?;
        if self.opts.sync {
            self.seg_file.sync_data().map_err(LedgerError::io(path))?;
        }
        let base = self.seg_len;
        self.seg_len += self.out.len() as u64;
        self.out.clear();
        // The sidecar is derived and checked on every load, so it is neither synced nor fatal.
        if let Some(f) = &mut self.idx_file {
            let mut b = Vec::with_capacity(self.pending_idx.len() * 16);
            for &(s, rel) in &self.pending_idx {
                b.extend_from_slice(&index_entry(s, base + rel));
            }
            if std::io::Write::write_all(f, &b).is_err() {
                self.idx_file = None;
            }
        }
        self.pending_idx.clear();
        Ok(())
    }

    fn roll_segment(&mut self, first_seq: u64, prev_head: [u8; 32]) -> Result<(), LedgerError> {
        let (seg, df) = create_segment(
            &self.dir,
            self.seg.number + 1,
            first_seq,
            prev_head,
            self.version,
            &self.faults,
        )?;
        self.idx_file = OpenOptions::new().append(true).open(seg.index_path()).ok();
        self.seg = seg;
        self.seg_file = df;
        self.seg_len = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Signs and durably appends a checkpoint for the current end, unless the last
    /// checkpoint already covers it.
    pub fn checkpoint(&mut self) -> Result<(), LedgerError> {
        if self.failed {
            return Err(LedgerError::PreviousIo);
        }
        let end = self.next_seq - 1;
        if (self.last_ckpt_seq == Some(end) && self.last_note_size == Some(end))
            || (end == 0 && self.last_ckpt_seq.is_none())
        {
            self.records_since_ckpt = 0;
            self.last_ckpt_at = Instant::now();
            return Ok(());
        }
        // A token that refuses (unplugged, logged out) fails the checkpoint before anything is
        // written: the records stay durable and unsigned, as after a crash.
        let entry = match sign(&self.key, end, self.head, unix_now()) {
            Ok(e) => e,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let path = self.dir.join(CHECKPOINT_FILE);
        let r = (|| {
            if !self.opts.sync {
                // The checkpoint must never reach disk before the records it covers.
                self.seg_file.file().sync_data()?;
            }
            self.ckpt.write_all(&entry.encode())?;
            self.ckpt.sync_data()
        })();
        if let Err(e) = r {
            self.failed = true;
            return Err(LedgerError::io(path)(e));
        }
        // The signed note over the Merkle root (the tree thread's, once it has hashed every
        // record up to here). The tree files are derived: they are synced after the note, on
        // that thread, and trusted at open only as far as `tree/synced` says.
        let r = self
            .tree_root(end)
            .and_then(|root| sign_checkpoint(&self.origin, &self.key, end, root))
            .and_then(|note| {
                append_note(&mut self.notes, &note)
                    .map_err(LedgerError::io(self.dir.join(NOTES_FILE)))
            });
        if let Err(e) = r {
            self.failed = true;
            return Err(e);
        }
        self.tree.sync();
        self.last_note_size = Some(end);
        self.last_ckpt_seq = Some(end);
        self.last_ckpt_at = Instant::now();
        self.records_since_ckpt = 0;
        Ok(())
    }

    /// Refuses after an I/O failure, and `number` unless it names a segment older than the
    /// current one (what removal and upgrade may rewrite).
    fn older_segment(&self, number: u32) -> Result<(), LedgerError> {
        if self.failed {
            return Err(LedgerError::PreviousIo);
        }
        if number == 0 || number >= self.seg.number {
            return Err(LedgerError::InvalidOption(format!(
                "segment {number} is not an older segment (the current one is {})",
                self.seg.number
            )));
        }
        Ok(())
    }

    /// Removes the payloads of segment `number` (retention): keeps its records' leaf hashes
    /// and the chain head after it in a stub that replaces the segment file, so the tree,
    /// every checkpoint and every proof of kept records stay verifiable. The removal is itself
    /// a ledger record (`record(&facts)` makes its payload) that is appended and signed by a
    /// checkpoint before anything is removed. Only segments that a signed checkpoint note
    /// covers whole, never the current one. Crash-safe: the stub is written aside, synced and
    /// renamed over the segment; a crash before the rename leaves the segment whole (and a
    /// retention record that a rerun repeats).
    pub fn remove_segment(
        &mut self,
        number: u32,
        record: impl FnOnce(&Removal) -> Vec<u8>,
    ) -> Result<Removal, LedgerError> {
        self.older_segment(number)?;
        let reader = LedgerReader::open(&self.dir)?;
        let segs = list_segments(&self.dir)?;
        let seg = segs
            .iter()
            .find(|s| s.number == number)
            .ok_or_else(|| {
                LedgerError::corrupted(&segment_file_name(number), 0, "segment file missing")
            })?
            .clone();
        let next = segs
            .iter()
            .find(|s| s.number == number + 1)
            .ok_or_else(|| {
                LedgerError::corrupted(&segment_file_name(number + 1), 0, "segment file missing")
            })?;
        let file = File::open(&seg.path).map_err(LedgerError::io(&seg.path))?;
        let hdr = read_segment_header(&file, &seg)?;
        let bytes = file.metadata().map_err(LedgerError::io(&seg.path))?.len();
        if hdr.flags & crate::format::SEGMENT_FLAG_REMOVED != 0 {
            return Err(LedgerError::InvalidOption(format!(
                "segment {number} was already removed"
            )));
        }
        let next_file = File::open(&next.path).map_err(LedgerError::io(&next.path))?;
        let next_hdr = read_segment_header(&next_file, next)?;
        let first = hdr.first_seq;
        let count = next_hdr.first_seq - first;
        let last = next_hdr.first_seq - 1;
        if self.last_note_size.is_none_or(|s| s < last) {
            return Err(LedgerError::InvalidOption(format!(
                "segment {number} (records #{first}..#{last}) is not covered by a signed checkpoint note yet"
            )));
        }
        let leaves = reader.leaf_hashes(first, count)?;
        let facts = Removal {
            segment: number,
            first,
            count,
            bytes,
            head_after: next_hdr.prev_head,
            record: 0,
        };
        let payload = record(&facts);
        let receipt = self.append_batch([payload.as_slice()])?;
        self.checkpoint()?;
        let facts = Removal {
            record: receipt.first.get(),
            ..facts
        };
        let stub = crate::format::RemovedStub {
            count,
            head_after: next_hdr.prev_head,
            record: facts.record,
            leaves: leaves.iter().map(|h| h.0).collect(),
        };
        let stub_hdr = SegmentHeader {
            flags: crate::format::SEGMENT_FLAG_REMOVED,
            version: crate::format::FORMAT_VERSION,
            ..hdr
        };
        let tmp = seg.path.with_extension("dat.removing");
        let r = (|| {
            let mut f = File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &stub_hdr.encode())?;
            std::io::Write::write_all(&mut f, &stub.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &seg.path)?;
            let _ = std::fs::remove_file(seg.index_path());
            sync_dir(&self.dir)
        })();
        r.map_err(LedgerError::io(&seg.path))?;
        Ok(facts)
    }

    /// Rewrites older segment `number` in this build's format (`pugmark migrate`, docs/FORMAT.md
    /// "Version 3": "Migration from version 2"): every block is read, checked (checksum, chain
    /// from the segment's previous head, tags, stated head) and stored again with the same
    /// records, first seq, count, chain head and batch-end flag as envelope columns, its MAC
    /// and checksum recomputed. What is hashed — the chain, the tags, the Merkle leaves — is
    /// over the payloads, which do not change, so every checkpoint, note and proof stays
    /// valid. `Ok(None)` when there is nothing to do (already current, or removed).
    ///
    /// Crash protocol: the new file is written beside as `seg-NNNNNNNN.dat.upgrading` and
    /// fsync'd, the sidecar removed, the file renamed over the segment and the directory
    /// fsync'd. A crash before the rename leaves the old segment whole (the next writer open
    /// deletes the leftover); after it, the new one. Either is a valid segment, so a rerun
    /// resumes with whatever is still in the old format.
    pub fn upgrade_segment(&mut self, number: u32) -> Result<Option<Upgrade>, LedgerError> {
        self.older_segment(number)?;
        let seg = list_segments(&self.dir)?
            .into_iter()
            .find(|s| s.number == number)
            .ok_or_else(|| {
                LedgerError::corrupted(&segment_file_name(number), 0, "segment file missing")
            })?;
        let file = File::open(&seg.path).map_err(LedgerError::io(&seg.path))?;
        let hdr = read_segment_header(&file, &seg)?;
        let to = crate::format::FORMAT_VERSION;
        if hdr.version >= to
            || hdr.version < 2
            || hdr.flags & crate::format::SEGMENT_FLAG_REMOVED != 0
        {
            return Ok(None);
        }
        let len = file.metadata().map_err(LedgerError::io(&seg.path))?.len();
        let tmp = seg.path.with_extension("dat.upgrading");
        let bad = |off: u64, why: String| {
            LedgerError::corrupted(&seg.name, off, format!("{why}; not upgraded, run verify"))
        };
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            File::create(&tmp).map_err(LedgerError::io(&tmp))?,
        );
        let new_hdr = SegmentHeader { version: to, ..hdr };
        let io_tmp = |e: std::io::Error| LedgerError::io(&tmp)(e);
        std::io::Write::write_all(&mut out, &new_hdr.encode()).map_err(io_tmp)?;
        let mut dctx = crate::columns::dctx();
        let mut cx = zstd::bulk::Compressor::new(self.level).map_err(LedgerError::io(&tmp))?;
        let codec = crate::format::codec_for_version(to);
        let (mut comp, mut area, mut newc, mut back) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut scratch = crate::columns::Scratch::default();
        let (mut off, mut new_len) = (SEGMENT_HEADER_LEN as u64, SEGMENT_HEADER_LEN as u64);
        let (mut next, mut head) = (hdr.first_seq, hdr.prev_head);
        let mut idx = Vec::new();
        let mut last_end = true;
        while off < len {
            let h = match read_block_at(&file, off, len, true, &mut comp)
                .map_err(LedgerError::io(&seg.path))?
            {
                BlockAt::Valid(h) => h,
                BlockAt::Invalid { why, .. } => return Err(bad(off, why)),
                BlockAt::End => break,
            };
            if h.first_seq != next {
                return Err(bad(
                    off,
                    format!("block starts at #{}, expected #{next}", h.first_seq),
                ));
            }
            crate::columns::unpack(&h, &comp, &mut dctx, &mut scratch, &mut area)
                .map_err(|w| bad(off, w))?;
            let mut count = 0u64;
            for r in crate::format::RecordsIn::new(&area) {
                let (tag, p) =
                    r.map_err(|at| bad(off, format!("record framing broken at {at}")))?;
                head = chain_step(&head, next + count, p);
                if tag_of(&head) != tag {
                    return Err(bad(
                        off,
                        format!("record #{} does not match its tag", next + count),
                    ));
                }
                count += 1;
            }
            if count != h.count as u64 || head != h.head {
                return Err(bad(
                    off,
                    "block's records do not reach its stated head".into(),
                ));
            }
            let u = crate::columns::pack(codec, &area, &mut cx, &mut newc).map_err(io_tmp)?;
            let mut nh = BlockHeader {
                codec,
                compressed_len: newc.len() as u32,
                uncompressed_len: u,
                ..h
            };
            // Evidence is being rewritten: the new block must give back the very same records
            // before it replaces the old one.
            crate::columns::unpack(&nh, &newc, &mut dctx, &mut scratch, &mut back)
                .map_err(|w| bad(off, w))?;
            if back != area {
                return Err(bad(off, "envelope columns did not round-trip".into()));
            }
            nh.mac = crate::format::block_mac(&self.mac_key, &nh.encode_fields());
            nh.checksum = block_checksum(&nh.encode_fields()[..64], &newc);
            std::io::Write::write_all(&mut out, &nh.encode()).map_err(io_tmp)?;
            std::io::Write::write_all(&mut out, &newc).map_err(io_tmp)?;
            idx.push((h.first_seq, new_len));
            new_len += nh.total_len();
            off += h.total_len();
            next += count;
            last_end = h.batch_end;
        }
        if !last_end {
            return Err(bad(off, "segment ends inside a batch".into()));
        }
        let f = out.into_inner().map_err(|e| io_tmp(e.into_error()))?;
        f.sync_all().map_err(io_tmp)?;
        drop(f);
        crash_point(&format!("upgrade:{number}:written"));
        let _ = std::fs::remove_file(seg.index_path());
        std::fs::rename(&tmp, &seg.path).map_err(LedgerError::io(&seg.path))?;
        crash_point(&format!("upgrade:{number}:renamed"));
        sync_dir(&self.dir).map_err(LedgerError::io(&self.dir))?;
        // The sidecar is derived: a crash before it is written costs a rebuild at open.
        write_index(&seg.index_path(), &idx).map_err(LedgerError::io(seg.index_path()))?;
        Ok(Some(Upgrade {
            segment: number,
            records: next - hdr.first_seq,
            bytes_before: len,
            bytes_after: new_len,
        }))
    }

    /// Writes the final checkpoint and releases the lock.
    pub fn close(mut self) -> Result<(), LedgerError> {
        self.checkpoint()
    }
}
