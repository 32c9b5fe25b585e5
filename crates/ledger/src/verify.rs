//! `verify`: re-reads every segment, block, record and checkpoint, recomputes the chain and
//! reports every problem, the first one being the first bad position.
//!
//! It streams (one block in memory at a time), never parses a payload, and trusts nothing it
//! reads: not the sidecars (unused here), not the block headers' heads (only used to resync
//! after a damaged block so later problems are still found), not the checkpoints' keys
//! (unless pinned through [`VerifyOptions`]). What each kind of damage is located to is
//! documented in docs/FORMAT.md "What verify locates".

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::checkpoint::{CHECKPOINT_FILE, public_key_path, read_checkpoints, signature_ok};
use crate::error::LedgerError;
use crate::format::{
    BLOCK_HEADER_LEN, BlockHeader, CODEC_ZSTD_COLUMNS, FORMAT_VERSION, RecordsIn,
    SEGMENT_HEADER_LEN, SegmentHeader, SegmentHeaderError, chain_step, from_hex32, tag_of,
};
use crate::format::{RemovedStub, SEGMENT_FLAG_REMOVED, block_mac};
use crate::merkle::{Frontier, leaf_hash};
use crate::note::{NOTES_FILE, read_notes, read_origin, verifier_key, verify_note};
use crate::segment::list_segments;

/// What `verify` is told to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The checkpoint signing key, pinned out of band (from `ledger.ed25519.pub` kept
    /// elsewhere). Without it, verify uses the public key file in the data directory and
    /// says so in the report (`key_pinned: false`).
    pub trusted_public_key: Option<[u8; 32]>,
    /// The ledger's secret block MAC key ([`crate::mac_key`] of the private key seed). With
    /// it, every block after the last signed checkpoint must carry this ledger's MAC (records
    /// appended behind the writer's back are found); without it they are reported as
    /// unauthenticated (`VerifyReport::unsigned_records`).
    pub mac_key: Option<[u8; 32]>,
    /// Keys the ledger was signed with before a rotation, each with the last seq (tree size)
    /// it may sign. Without them, those of `DATA/keys/ledger.ed25519.pub.previous` are used
    /// ([`read_previous_keys`]).
    pub previous_keys: Vec<([u8; 32], u64)>,
}

/// Suffix of the previous-keys file beside the public key file: lines `<64 hex> <last seq>`.
pub const PREVIOUS_KEYS_SUFFIX: &str = ".previous";

/// Reads a previous-keys file (`Ok(vec![])` if absent); malformed lines are an error.
pub fn read_previous_keys(path: &Path) -> Result<Vec<([u8; 32], u64)>, LedgerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LedgerError::io(path)(e)),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let key = it.next().and_then(from_hex32);
        let upto = it.next().and_then(|n| n.parse::<u64>().ok());
        match (key, upto) {
            (Some(k), Some(u)) => out.push((k, u)),
            _ => {
                return Err(LedgerError::Key {
                    path: path.to_path_buf(),
                    what: format!("bad line {line:?} (expected 64 hex digits and a seq)"),
                });
            }
        }
    }
    Ok(out)
}

/// Appends a previous key to the file (`pugmark migrate --new-key`, key rotation).
pub fn add_previous_key(path: &Path, key: &[u8; 32], upto: u64) -> Result<(), LedgerError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LedgerError::io(path))?;
    f.write_all(format!("{} {upto}\n", crate::format::to_hex(key)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(LedgerError::io(path))
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// First record the problem concerns, when it can be named.
    pub seq: Option<u64>,
    /// File name inside the ledger directory.
    pub segment: String,
    /// Byte offset in that file (block or entry start).
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = self.seq {
            write!(f, "#{s} ")?;
        }
        write!(
            f,
            "in {} at byte {}: {}",
            self.segment, self.offset, self.what
        )
    }
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Records whose chain tag checked out.
    pub records: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Segment files read.
    pub segments: u32,
    /// Checkpoints whose signature checked out.
    pub checkpoints: u32,
    /// Highest seq a valid checkpoint covers.
    pub last_checkpoint: Option<u64>,
    /// The key checkpoints were checked against.
    pub public_key: Option<[u8; 32]>,
    /// Whether that key was pinned by the caller (otherwise it came from the data directory).
    pub key_pinned: bool,
    /// The unfinished end of the last segment beyond the last checkpoint: an incomplete last
    /// block, or complete blocks of a batch whose batch-end block is missing (located at the
    /// batch's first block). A crash's torn tail (or a batch in flight) that the next writer
    /// open truncates; its records are not counted in `records`. Not a problem.
    pub torn_tail: Option<Problem>,
    /// Everything wrong, in ledger order; the first is the first bad position.
    pub problems: Vec<Problem>,
    /// The log origin (`ledger/origin`); `None` for a version-1 ledger.
    pub origin: Option<String>,
    /// Signed checkpoint notes whose signature checked out and whose root equals the tree
    /// recomputed from the records.
    pub notes: u32,
    /// Largest tree size a valid signed note covers.
    pub signed_size: Option<u64>,
    /// Records after the last signed note: covered by no signed checkpoint.
    pub unsigned_records: u64,
    /// Whether block MACs were checked (`VerifyOptions::mac_key` given).
    pub macs_checked: bool,
    /// Root of the Merkle tree over every record, when every record could be read.
    pub root: Option<crate::merkle::Hash>,
    /// Records whose payloads a retention policy removed: (first seq, count, retention
    /// record) per removed segment. Their leaf hashes are checked against the signed notes;
    /// not a problem ("removed by policy", unlike missing records).
    pub removed: Vec<(u64, u64, u64)>,
    /// Derived files (the per-segment block index sidecars, `.idx`) that do not match their
    /// segment. Not evidence and not a problem: readers rebuild the block list from the
    /// segment in memory, and the next writer open rewrites the file
    /// (`LedgerOptions::check_sidecars`, used by `pugmark reindex`).
    pub derived: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Holds segment `seg`'s sidecar against the blocks the segment holds: it must list a prefix
/// of them (the writer adds entries per batch; a reader scans past the last one).
fn check_sidecar(
    report: &mut VerifyReport,
    seg: &crate::segment::SegmentPath,
    blocks: &[(u64, u64)],
) {
    let idx = seg.index_path();
    let name = idx
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = match std::fs::read(&idx) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_string()),
        Err(e) => Some(format!("unreadable: {e}")),
        Ok(bytes) => match crate::format::parse_index(&bytes) {
            None => Some("damaged (header or length)".to_string()),
            Some(entries) => {
                let bad = entries
                    .iter()
                    .zip(blocks)
                    .position(|(e, b)| e != b)
                    .or((entries.len() > blocks.len()).then_some(blocks.len()));
                bad.map(|i| {
                    let (seq, off) = entries[i];
                    format!(
                        "entry {i} says block #{seq} at byte {off}, which is not where the segment has it"
                    )
                })
            }
        },
    };
    if let Some(what) = what {
        report.derived.push(Problem {
            seq: None,
            segment: name,
            offset: 0,
            what: format!("block index {what}; not evidence: readers rebuild it from the segment"),
        });
    }
}

struct Ckpt {
    seq: u64,
    offset: u64,
    head: [u8; 32],
}

struct State {
    next: u64,
    head: [u8; 32],
    report: VerifyReport,
    ckpts: Vec<Ckpt>,
    ckpt_at: usize,
    max_ckpt: u64,
    /// Problems in the checkpoint file itself, merged into ledger order at the end.
    ckpt_problems: Vec<Problem>,
    /// The last block's header could not be trusted: accept the next header's seq silently.
    lost: bool,
    /// Blocks after the last batch-end block of the current segment.
    open_batch: Option<OpenBatch>,
    /// Signed notes (size, root, offset), by size (handed to the tree thread).
    notes: Vec<(u64, crate::merkle::Hash, u64)>,
    /// Problems in the notes file, merged like `ckpt_problems`.
    note_problems: Vec<Problem>,
    /// Blocks whose records checked out, to the thread that recomputes the Merkle tree.
    tree_tx: Option<crossbeam_channel::Sender<TreeMsg>>,
    /// Blocks ending after this seq must carry this ledger's MAC (format 2).
    mac_after: u64,
    mac_key: Option<[u8; 32]>,
    previous_keys: Vec<([u8; 32], u64)>,
    /// Format version of the segment being read (its blocks' codec must match it).
    seg_version: u32,
    /// Buffers for a format-3 block's envelope columns.
    scratch: crate::columns::Scratch,
}

/// The blocks read so far of a batch whose batch-end block has not been seen.
struct OpenBatch {
    seq: u64,
    offset: u64,
    blocks: u64,
    records: u64,
    bytes: u64,
}

impl OpenBatch {
    fn describe(&self) -> String {
        format!(
            "batch from #{} unfinished: {} complete block(s) with {} record(s) but no batch-end block",
            self.seq, self.blocks, self.records
        )
    }
}

impl State {
    fn problem(&mut self, seq: Option<u64>, segment: &str, offset: u64, what: impl Into<String>) {
        self.report.problems.push(Problem {
            seq,
            segment: segment.to_string(),
            offset,
            what: what.into(),
        });
    }

    /// Checks the checkpoints that claim `seq` against the recomputed `head`.
    fn check_ckpts(&mut self, seq: u64, head: &[u8; 32]) {
        while self.ckpt_at < self.ckpts.len() && self.ckpts[self.ckpt_at].seq < seq {
            self.ckpt_at += 1;
        }
        while self.ckpt_at < self.ckpts.len() && self.ckpts[self.ckpt_at].seq == seq {
            let c = &self.ckpts[self.ckpt_at];
            if c.head != *head {
                let off = c.offset;
                self.problem(
                    Some(seq),
                    CHECKPOINT_FILE,
                    off,
                    format!("checkpoint #{seq} does not match the recomputed chain head"),
                );
            }
            self.ckpt_at += 1;
        }
    }

    fn send_tree(&self, m: TreeMsg) {
        if let Some(tx) = &self.tree_tx {
            // The receiver lives until verify joins it.
            let _ = tx.send(m);
        }
    }

    fn resync(&mut self, h: &BlockHeader) {
        self.next = h.end_seq();
        self.head = h.head;
    }

    fn ckpt_problem(&mut self, seq: Option<u64>, offset: u64, what: impl Into<String>) {
        self.ckpt_problems.push(Problem {
            seq,
            segment: CHECKPOINT_FILE.to_string(),
            offset,
            what: what.into(),
        });
    }

    /// An incomplete block at the end of a segment: a legitimate torn tail only at the end of
    /// the last segment and beyond the last checkpoint. The torn tail then starts with the
    /// complete blocks of its unfinished batch, if any: recovery removes the batch whole.
    fn truncated(&mut self, last_segment: bool, segment: &str, offset: u64, what: &str) {
        let open = self.open_batch.take();
        let start = open.as_ref().map_or(self.next, |b| b.seq);
        if last_segment && start > self.max_ckpt {
            let p = match open {
                Some(b) => {
                    self.uncount(&b);
                    Problem {
                        seq: Some(b.seq),
                        segment: segment.to_string(),
                        offset: b.offset,
                        what: format!(
                            "{}; then {what} at byte {offset} (segment truncated)",
                            b.describe()
                        ),
                    }
                }
                None => Problem {
                    seq: Some(self.next),
                    segment: segment.to_string(),
                    offset,
                    what: format!("{what} (segment truncated)"),
                },
            };
            self.report.torn_tail = Some(p);
        } else {
            self.problem(
                Some(self.next),
                segment,
                offset,
                format!("{what} (segment truncated)"),
            );
        }
    }

    /// The records of a torn-tail batch are not part of the ledger a writer would keep.
    fn uncount(&mut self, b: &OpenBatch) {
        self.report.records -= b.records;
        self.report.bytes -= b.bytes;
    }

    /// A segment that ended cleanly after complete blocks of a batch without its batch-end
    /// block: a torn tail at the end of the last segment beyond the last checkpoint (a crash
    /// after some of the batch's blocks were written, or a batch in flight); anywhere else
    /// records were removed after it or its batch-end flag was cleared.
    fn segment_ended_in_batch(&mut self, last_segment: bool, segment: &str, end: u64) {
        let Some(b) = self.open_batch.take() else {
            return;
        };
        if last_segment && b.seq > self.max_ckpt {
            self.uncount(&b);
            self.report.torn_tail = Some(Problem {
                seq: Some(b.seq),
                segment: segment.to_string(),
                offset: b.offset,
                what: b.describe(),
            });
        } else {
            let what = format!(
                "segment ends inside a batch ({}): records removed after it, or its batch-end flag cleared",
                b.describe()
            );
            self.problem(Some(self.next), segment, end, what);
        }
    }
}

/// Verifies the ledger in `dir` (normally `DATA/ledger`). `Err` only when the ledger cannot be
/// read at all (missing directory, another format version); damage is reported in
/// [`VerifyReport::problems`].
pub fn verify(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let segs = list_segments(dir)?;
    let mut st = State {
        next: 1,
        head: [0; 32],
        report: VerifyReport::default(),
        ckpts: Vec::new(),
        ckpt_at: 0,
        max_ckpt: 0,
        ckpt_problems: Vec::new(),
        lost: false,
        open_batch: None,
        notes: Vec::new(),
        note_problems: Vec::new(),
        tree_tx: None,
        mac_after: 0,
        mac_key: opts.mac_key,
        previous_keys: Vec::new(),
        seg_version: FORMAT_VERSION,
        scratch: crate::columns::Scratch::default(),
    };
    load_checkpoints(dir, opts, &mut st)?;
    load_notes(dir, &mut st)?;
    // The Merkle tree is recomputed on a thread of its own, fed whole checked blocks, so the
    // SHA-256 of every record overlaps the reading, decompression and chain.
    let (tree_tx, tree_rx) = crossbeam_channel::bounded::<TreeMsg>(8);
    st.tree_tx = Some(tree_tx);
    let checker = TreeCheck {
        tree: Frontier::default(),
        ok: true,
        notes: std::mem::take(&mut st.notes),
        at: 0,
        problems: Vec::new(),
        matched: 0,
        signed_size: None,
    };
    let tree_thread = std::thread::spawn(move || {
        let mut c = checker;
        for m in tree_rx {
            c.take(m);
        }
        c
    });
    st.report.macs_checked = opts.mac_key.is_some();

    let mut dctx = crate::columns::dctx();
    let mut comp = Vec::new();
    let mut area = Vec::new();
    let n = segs.len();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == n;
        st.report.segments += 1;
        if seg.number as usize != i + 1 && (i == 0 || segs[i - 1].number + 1 != seg.number) {
            st.problem(
                Some(st.next),
                &seg.name,
                0,
                format!("segment files before {} are missing", seg.name),
            );
        }
        let file = File::open(&seg.path).map_err(LedgerError::io(&seg.path))?;
        let flen = file.metadata().map_err(LedgerError::io(&seg.path))?.len();
        let mut rd = BufReader::with_capacity(1 << 20, file);
        // A batch never spans segments: each segment starts at a batch boundary.
        st.open_batch = None;
        let mut hb = [0u8; SEGMENT_HEADER_LEN];
        if flen < SEGMENT_HEADER_LEN as u64 {
            st.truncated(last && flen == 0, &seg.name, 0, "segment header incomplete");
            continue;
        }
        rd.read_exact(&mut hb).map_err(LedgerError::io(&seg.path))?;
        match SegmentHeader::decode(&hb) {
            Ok(h) => {
                st.seg_version = h.version;
                if h.number != seg.number {
                    st.problem(
                        Some(st.next),
                        &seg.name,
                        16,
                        "segment header number does not match its file name",
                    );
                }
                if st.lost {
                    st.next = h.first_seq;
                    st.head = h.prev_head;
                    st.lost = false;
                } else if h.first_seq != st.next {
                    let what = format!(
                        "segment starts at #{}, expected #{}: records missing or inserted",
                        h.first_seq, st.next
                    );
                    st.problem(Some(st.next.min(h.first_seq)), &seg.name, 0, what);
                    st.next = h.first_seq;
                    st.head = h.prev_head;
                } else if h.prev_head != st.head {
                    st.problem(
                        Some(st.next),
                        &seg.name,
                        32,
                        "segment's previous chain head does not match the chain",
                    );
                    st.head = h.prev_head;
                }
            }
            Err(SegmentHeaderError::Version(found)) if i == 0 => {
                return Err(LedgerError::VersionMismatch {
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            Err(e) => {
                let what = match e {
                    SegmentHeaderError::Magic => "segment header magic damaged".to_string(),
                    SegmentHeaderError::Version(v) => {
                        format!(
                            "segment header says format version {v} inside a version {FORMAT_VERSION} ledger"
                        )
                    }
                    _ => "segment header checksum mismatch".to_string(),
                };
                st.problem(Some(st.next), &seg.name, 0, what);
                st.lost = true;
            }
        }
        if let Ok(h) = SegmentHeader::decode(&hb)
            && h.flags & SEGMENT_FLAG_REMOVED != 0
        {
            let mut rest = Vec::new();
            rd.read_to_end(&mut rest)
                .map_err(LedgerError::io(&seg.path))?;
            match RemovedStub::decode(&rest) {
                Ok(stub) => {
                    st.send_tree(TreeMsg::Leaves {
                        first: st.next,
                        leaves: stub.leaves.clone(),
                    });
                    st.next += stub.count;
                    st.head = stub.head_after;
                    let last_seq = st.next - 1;
                    st.check_ckpts(last_seq, &stub.head_after);
                    st.report
                        .removed
                        .push((h.first_seq, stub.count, stub.record));
                }
                Err(why) => {
                    st.problem(Some(st.next), &seg.name, SEGMENT_HEADER_LEN as u64, why);
                    st.lost = true;
                }
            }
            continue;
        }
        let mut off = SEGMENT_HEADER_LEN as u64;
        // (first seq, offset) of every block, to hold the sidecar against; None once a
        // block header is unreadable (the sidecar cannot be judged past damaged evidence).
        let mut blocks_seen = Some(Vec::new());
        while off < flen {
            if flen - off < BLOCK_HEADER_LEN as u64 {
                st.truncated(last, &seg.name, off, "block header incomplete");
                break;
            }
            let mut bh = [0u8; BLOCK_HEADER_LEN];
            rd.read_exact(&mut bh).map_err(LedgerError::io(&seg.path))?;
            let h = match BlockHeader::decode(&bh) {
                Ok(h) => h,
                Err(why) => {
                    st.problem(
                        Some(st.next),
                        &seg.name,
                        off,
                        format!("{why}; rest of segment unreadable"),
                    );
                    st.lost = true;
                    st.open_batch = None;
                    blocks_seen = None;
                    break;
                }
            };
            if let Some(b) = &mut blocks_seen {
                b.push((h.first_seq, off));
            }
            if flen - off < h.total_len() {
                st.truncated(
                    last,
                    &seg.name,
                    off,
                    "block extends past the end of the segment",
                );
                break;
            }
            comp.resize(h.compressed_len as usize, 0);
            rd.read_exact(&mut comp)
                .map_err(LedgerError::io(&seg.path))?;
            let total = h.total_len();
            let (records, bytes) =
                check_block(&mut st, &h, &comp, &mut area, &mut dctx, &seg.name, off);
            if h.batch_end {
                st.open_batch = None;
            } else {
                let b = st.open_batch.get_or_insert(OpenBatch {
                    seq: h.first_seq,
                    offset: off,
                    blocks: 0,
                    records: 0,
                    bytes: 0,
                });
                b.blocks += 1;
                b.records += records;
                b.bytes += bytes;
            }
            off += total;
        }
        st.segment_ended_in_batch(last, &seg.name, flen);
        if let Some(blocks) = blocks_seen {
            check_sidecar(&mut st.report, seg, &blocks);
        }
    }
    let end = st.next - 1;
    let beyond: Vec<(u64, u64)> = st
        .ckpts
        .iter()
        .filter(|c| c.seq > end)
        .map(|c| (c.seq, c.offset))
        .collect();
    for (seq, offset) in beyond {
        st.problem(
            Some(end + 1),
            CHECKPOINT_FILE,
            offset,
            format!("checkpoint #{seq} is beyond the ledger end #{end}: records were removed"),
        );
    }
    st.tree_tx = None;
    let mut tc = tree_thread
        .join()
        .map_err(|_| LedgerError::Tree("the tree thread of verify panicked".into()))?;
    let tree_ok = tc.ok && tc.tree.size == end;
    if tree_ok {
        st.report.root = Some(tc.tree.root());
    }
    st.report.notes += tc.matched;
    st.report.signed_size = tc.signed_size;
    st.note_problems.append(&mut tc.problems);
    let unmatched: Vec<(u64, u64)> = tc.notes[tc.at..]
        .iter()
        .filter(|n| n.0 > end || !tree_ok)
        .map(|n| (n.0, n.2))
        .collect();
    for (size, off) in unmatched {
        let what = if size > end {
            format!(
                "checkpoint note for tree size {size} is beyond the ledger end #{end}: records were removed"
            )
        } else {
            format!(
                "checkpoint note for tree size {size} not checked: records before it are unreadable"
            )
        };
        st.note_problems.push(Problem {
            seq: Some(size.min(end + 1)),
            segment: NOTES_FILE.into(),
            offset: off,
            what,
        });
    }
    st.report.unsigned_records = end - st.report.signed_size.unwrap_or(0).min(end);
    st.ckpt_problems.append(&mut st.note_problems);
    // Data problems stay in the order the stream found them (after a damaged block, later
    // seqs may be noise); checkpoint-file problems go before the first data problem past them.
    for p in std::mem::take(&mut st.ckpt_problems) {
        let key = p.seq.unwrap_or(u64::MAX);
        let at = st
            .report
            .problems
            .iter()
            .position(|d| d.seq.unwrap_or(u64::MAX) > key)
            .unwrap_or(st.report.problems.len());
        st.report.problems.insert(at, p);
    }
    Ok(st.report)
}

fn check_block(
    st: &mut State,
    h: &BlockHeader,
    comp: &[u8],
    area: &mut Vec<u8>,
    dctx: &mut crate::columns::Dctx,
    seg: &str,
    off: u64,
) -> (u64, u64) {
    if !h.checksum_ok(comp) {
        if !st.lost {
            st.problem(
                Some(st.next),
                seg,
                off,
                "block checksum mismatch (block damaged)",
            );
        }
        st.resync(h);
        st.lost = true;
        return (0, 0);
    }
    if st.lost {
        // The previous header was untrusted; pick the chain up again from this block.
        st.next = h.first_seq;
        st.lost = false;
    } else if h.first_seq != st.next {
        let what = format!(
            "block starts at #{}, expected #{}: records missing or inserted",
            h.first_seq, st.next
        );
        st.problem(Some(st.next.min(h.first_seq)), seg, off, what);
        st.resync(h);
        return (0, 0);
    }
    let columns = h.codec == CODEC_ZSTD_COLUMNS;
    if columns != (st.seg_version >= 3) {
        st.problem(
            Some(st.next),
            seg,
            off,
            "block codec does not belong to the segment's format version",
        );
        st.resync(h);
        st.lost = true;
        return (0, 0);
    }
    let decoded = crate::columns::unpack(h, comp, dctx, &mut st.scratch, area);
    if let Err(why) = decoded {
        st.problem(Some(st.next), seg, off, why);
        st.resync(h);
        st.lost = true;
        return (0, 0);
    }
    let mut head = st.head;
    let mut seq = st.next;
    let mut bytes = 0u64;
    for r in RecordsIn::new(area) {
        match r {
            Err(at) => {
                st.problem(
                    Some(seq),
                    seg,
                    off,
                    format!("record framing broken at byte {at} of the block"),
                );
                send_verified_prefix(st, area, seq);
                st.resync(h);
                return (0, 0);
            }
            Ok((tag, payload)) => {
                head = chain_step(&head, seq, payload);
                if tag_of(&head) != tag {
                    st.problem(
                        Some(seq),
                        seg,
                        off,
                        format!("record #{seq} does not match its chain tag: altered, inserted, deleted or reordered"),
                    );
                    send_verified_prefix(st, area, seq);
                    st.resync(h);
                    return (0, 0);
                }
                bytes += payload.len() as u64;
                if st.ckpt_at < st.ckpts.len() && st.ckpts[st.ckpt_at].seq <= seq {
                    st.check_ckpts(seq, &head);
                }
                seq += 1;
            }
        }
    }
    let held = seq - st.next;
    if held != h.count as u64 {
        st.problem(
            Some(seq),
            seg,
            off,
            format!(
                "block header says {} records, the block holds {held}",
                h.count
            ),
        );
        st.resync(h);
        return (0, 0);
    }
    if head != h.head {
        st.problem(
            Some(seq),
            seg,
            off,
            format!("chain head after the block does not match its header: record #{seq} was removed or the head altered"),
        );
        st.resync(h);
        return (0, 0);
    }
    // Checkpoints are written between batches only: one inside this block, or at its end
    // when the block does not end a batch, means a batch boundary was moved.
    let from = st.ckpts.partition_point(|c| c.seq < st.next);
    let inside: Vec<(u64, u64)> = st.ckpts[from..]
        .iter()
        .take_while(|c| c.seq < seq)
        .filter(|c| c.seq + 1 != seq || !h.batch_end)
        .map(|c| (c.seq, c.offset))
        .collect();
    for (c, _) in inside {
        st.problem(
            Some(c),
            seg,
            off,
            format!("checkpoint #{c} is not at the end of a batch: the block's batch-end flag was altered"),
        );
    }
    if let Some(k) = st.mac_key
        && h.first_seq + u64::from(h.count) - 1 > st.mac_after
        && h.mac != block_mac(&k, &h.encode_fields())
    {
        st.problem(
            Some(h.first_seq),
            seg,
            off,
            "block MAC does not verify: not written by this ledger's writer (appended or rewritten behind its back), after the last signed checkpoint",
        );
    }
    st.send_tree(TreeMsg::Block {
        first: st.next,
        area: area.clone(),
    });
    st.report.records += held;
    st.report.bytes += bytes;
    st.next = seq;
    st.head = head;
    (held, bytes)
}

fn load_checkpoints(dir: &Path, opts: &VerifyOptions, st: &mut State) -> Result<(), LedgerError> {
    let path = dir.join(CHECKPOINT_FILE);
    let Some(cf) = read_checkpoints(&path)? else {
        st.ckpt_problem(None, 0, "checkpoint file missing");
        return Ok(());
    };
    st.previous_keys = if opts.previous_keys.is_empty() && opts.trusted_public_key.is_none() {
        let p = dir.parent().map(|d| {
            let mut s = d.join("keys").join("ledger.ed25519.pub").into_os_string();
            s.push(PREVIOUS_KEYS_SUFFIX);
            std::path::PathBuf::from(s)
        });
        match p {
            Some(p) => read_previous_keys(&p)?,
            None => Vec::new(),
        }
    } else {
        opts.previous_keys.clone()
    };
    let key = match opts.trusted_public_key {
        Some(k) => {
            st.report.key_pinned = true;
            Some(k)
        }
        None => {
            let from_dir = dir
                .parent()
                .map(|d| public_key_path(&d.join("keys").join("ledger.ed25519")))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| from_hex32(&t));
            from_dir.or_else(|| {
                cf.entries
                    .iter()
                    .find_map(|(_, e)| e.as_ref().ok().map(|e| e.public_key))
            })
        }
    };
    st.report.public_key = key;
    let mut prev = 0u64;
    for (offset, e) in &cf.entries {
        let e = match e {
            Ok(e) => e,
            Err(why) => {
                st.ckpt_problem(None, *offset, *why);
                continue;
            }
        };
        if !signature_ok(e) {
            st.ckpt_problem(
                Some(e.seq),
                *offset,
                format!(
                    "checkpoint #{} has an invalid signature (forged or altered)",
                    e.seq
                ),
            );
            continue;
        }
        let previous_ok = st
            .previous_keys
            .iter()
            .any(|(k, upto)| *k == e.public_key && e.seq <= *upto);
        if Some(e.public_key) != key && !previous_ok {
            st.ckpt_problem(
                Some(e.seq),
                *offset,
                format!("checkpoint #{} is signed by an unknown key", e.seq),
            );
            continue;
        }
        if e.seq < prev {
            st.ckpt_problem(
                Some(e.seq),
                *offset,
                format!("checkpoint #{} comes after checkpoint #{prev}", e.seq),
            );
            continue;
        }
        prev = e.seq;
        if e.seq == 0 {
            if e.head != [0; 32] {
                st.ckpt_problem(Some(0), *offset, "checkpoint #0 has a non-empty head");
            }
        } else {
            st.ckpts.push(Ckpt {
                seq: e.seq,
                offset: *offset,
                head: e.head,
            });
        }
        st.report.checkpoints += 1;
        st.max_ckpt = st.max_ckpt.max(e.seq);
    }
    st.report.last_checkpoint = (st.report.checkpoints > 0).then_some(st.max_ckpt);
    if cf.torn_bytes > 0 && st.report.torn_tail.is_none() {
        st.report.torn_tail = Some(Problem {
            seq: None,
            segment: CHECKPOINT_FILE.into(),
            offset: cf.valid_len,
            what: format!("partial checkpoint entry of {} bytes", cf.torn_bytes),
        });
    }
    Ok(())
}

/// Reads the signed checkpoint notes (format 2): each must verify with the checkpoint key
/// under the ledger's origin and sizes must not decrease. Their roots are checked against the
/// recomputed tree as the records stream by.
fn load_notes(dir: &Path, st: &mut State) -> Result<(), LedgerError> {
    let Some(origin) = read_origin(dir)? else {
        // A version-1 ledger: no tree, no notes; blocks carry no MAC.
        st.mac_key = None;
        return Ok(());
    };
    st.report.origin = Some(origin.clone());
    let path = dir.join(NOTES_FILE);
    let nf = match read_notes(&path)? {
        Some(nf) => nf,
        None => {
            st.note_problems.push(Problem {
                seq: None,
                segment: NOTES_FILE.into(),
                offset: 0,
                what: "checkpoint notes file missing".into(),
            });
            return Ok(());
        }
    };
    let vkey = match st.report.public_key {
        Some(k) => Some(verifier_key(&origin, &k)?),
        None => None,
    };
    let mut last = 0u64;
    for (off, why) in &nf.bad {
        st.note_problems.push(Problem {
            seq: None,
            segment: NOTES_FILE.into(),
            offset: *off,
            what: format!("checkpoint note unreadable: {why}"),
        });
    }
    let mut previous = Vec::new();
    for (k, upto) in &st.previous_keys {
        previous.push((verifier_key(&origin, k)?, *upto));
    }
    for n in &nf.notes {
        let ok = vkey
            .as_deref()
            .is_some_and(|v| verify_note(&n.note, v).is_ok())
            || previous
                .iter()
                .any(|(v, upto)| n.checkpoint.size <= *upto && verify_note(&n.note, v).is_ok());
        let size = n.checkpoint.size;
        let what = if !ok {
            Some(format!(
                "checkpoint note for tree size {size} is not signed by the checkpoint key (forged or altered)"
            ))
        } else if n.checkpoint.origin != origin {
            Some(format!(
                "checkpoint note for tree size {size} names origin {:?}",
                n.checkpoint.origin
            ))
        } else if size < last {
            Some(format!(
                "checkpoint note for tree size {size} comes after one for size {last}"
            ))
        } else {
            None
        };
        match what {
            Some(what) => st.note_problems.push(Problem {
                seq: Some(size),
                segment: NOTES_FILE.into(),
                offset: n.offset,
                what,
            }),
            None => {
                last = size;
                if size == 0 {
                    st.report.notes += 1;
                } else {
                    st.notes.push((size, n.checkpoint.root, n.offset));
                }
            }
        }
    }
    // Blocks after the last signed note must carry the MAC: up to it signatures vouch.
    st.mac_after = last;
    if nf.torn_bytes > 0 && st.report.torn_tail.is_none() {
        st.report.torn_tail = Some(Problem {
            seq: None,
            segment: NOTES_FILE.into(),
            offset: nf.valid_len,
            what: format!("partial checkpoint note of {} bytes", nf.torn_bytes),
        });
    }
    Ok(())
}

/// What the tree thread of `verify` is fed: the records of a block that checked out, or the
/// leaf hashes of a removed segment.
enum TreeMsg {
    Block { first: u64, area: Vec<u8> },
    Leaves { first: u64, leaves: Vec<[u8; 32]> },
}

/// The Merkle tree recomputed from the records, held against the signed notes as it grows.
/// The records of a block before the first bad one (`st.next .. bad`) chained correctly:
/// their leaves go to the tree, so that a signed note over them is still checked and the
/// first finding is the bad record, not "note not checked" at an earlier size.
fn send_verified_prefix(st: &State, area: &[u8], bad: u64) {
    let n = bad.saturating_sub(st.next) as usize;
    if n == 0 {
        return;
    }
    let leaves: Vec<[u8; 32]> = RecordsIn::new(area)
        .take(n)
        .map_while(Result::ok)
        .map(|(_, p)| leaf_hash(p).0)
        .collect();
    st.send_tree(TreeMsg::Leaves {
        first: st.next,
        leaves,
    });
}

struct TreeCheck {
    tree: Frontier,
    /// False once a record is missing (a block that did not check out): the tree stops there.
    ok: bool,
    /// Signed notes (size, root, offset), by size.
    notes: Vec<(u64, crate::merkle::Hash, u64)>,
    at: usize,
    problems: Vec<Problem>,
    matched: u32,
    signed_size: Option<u64>,
}

impl TreeCheck {
    fn take(&mut self, m: TreeMsg) {
        match m {
            TreeMsg::Block { first, area } => {
                for (i, r) in RecordsIn::new(&area).enumerate() {
                    match r {
                        Ok((_, p)) => self.push(first + i as u64, leaf_hash(p)),
                        Err(_) => {
                            self.ok = false;
                            return;
                        }
                    }
                }
            }
            TreeMsg::Leaves { first, leaves } => {
                for (i, l) in leaves.iter().enumerate() {
                    self.push(first + i as u64, crate::merkle::Hash(*l));
                }
            }
        }
    }

    fn push(&mut self, seq: u64, leaf: crate::merkle::Hash) {
        if !self.ok || self.tree.size + 1 != seq {
            self.ok = false;
            return;
        }
        self.tree.push(leaf);
        if self.at < self.notes.len() && self.notes[self.at].0 <= seq {
            self.check(seq);
        }
    }

    /// Checks the signed notes for tree size `size` against the recomputed tree.
    fn check(&mut self, size: u64) {
        while self.at < self.notes.len() && self.notes[self.at].0 < size {
            self.at += 1;
        }
        while self.at < self.notes.len() && self.notes[self.at].0 == size {
            let (_, root, off) = self.notes[self.at];
            if self.tree.root() == root {
                self.matched += 1;
                self.signed_size = Some(size);
            } else {
                self.problems.push(Problem {
                    seq: Some(size),
                    segment: NOTES_FILE.into(),
                    offset: off,
                    what: format!(
                        "checkpoint note for tree size {size} does not match the Merkle root of the records"
                    ),
                });
            }
            self.at += 1;
        }
    }
}
