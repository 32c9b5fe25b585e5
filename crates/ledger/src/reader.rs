//! Read-only access: `get(seq)` for search results and a streaming iterator for reindexing.
//!
//! A reader takes no lock and never writes, so it can run beside the writer (even in another
//! process). It sees the records of complete batches present when it was opened: it stops at
//! the last block that ends a batch, so it never shows part of a batch still being written.
//! Random access binary-searches the per-segment block lists (loaded from the sidecars,
//! checked, or rebuilt in memory), reads one block, checks its header and checksum, and keeps
//! the last decompressed block cached. The chain is not recomputed here: that is `verify`.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Seq;
use crate::error::LedgerError;
use crate::format::{
    BlockHeader, CODEC_ZSTD_COLUMNS, RecordsIn, RemovedStub, SEGMENT_FLAG_REMOVED, SegmentHeader,
};
use crate::segment::{
    BlockAt, SegmentPath, list_segments, read_block_at, read_segment_header, scan_segment,
};

#[derive(Debug, Clone)]
struct SegInfo {
    seg: SegmentPath,
    file: Arc<File>,
    hdr: SegmentHeader,
    /// (first seq, offset) of each block.
    blocks: Vec<(u64, u64)>,
    /// Offset after the last good block.
    end_offset: u64,
    /// The stub of a segment whose payloads a retention policy removed (no blocks then).
    removed: Option<Arc<RemovedStub>>,
}

/// A decompressed block.
#[derive(Debug, Default)]
struct Decoded {
    seg: usize,
    block: usize,
    first_seq: u64,
    area: Vec<u8>,
    /// (start, len) of each payload in `area`: the block's records `from..spans.len()` (the
    /// first `from` are placeholders, never read), or all of them.
    spans: Vec<(usize, usize)>,
    /// The first record read (0 when the block was read from its start).
    from: usize,
    /// The block's record count (its header's).
    count: usize,
}

impl Decoded {
    fn payload(&self, i: usize) -> &[u8] {
        let (s, l) = self.spans[i];
        &self.area[s..s + l]
    }
}

/// What a reader decodes blocks with: one zstd context for whole frames and partial reads,
/// and the buffers a format-3 block's columns are decoded through before its records are put
/// back together in a [`Decoded`]'s area. One set per reader, not per cached block: each
/// block's own 128 KiB of scratch was zeroed and faulted in anew (a tenth of a `who`'s proofs).
struct Zstd {
    dctx: crate::columns::Dctx,
    scratch: crate::columns::Scratch,
}

/// Reads a block's `records` (all of them when they start at 0 and end at or past its
/// count) into `out` (decompressed, framing split), checking the header's first seq against
/// the block list, the checksum and the record count.
fn load_block(
    segs: &[SegInfo],
    si: usize,
    bi: usize,
    z: &mut Zstd,
    buf: &mut Vec<u8>,
    out: &mut Decoded,
    records: std::ops::Range<usize>,
) -> Result<(), LedgerError> {
    let s = &segs[si];
    let (want, off) = s.blocks[bi];
    let h: BlockHeader = match read_block_at(&s.file, off, s.end_offset, true, buf)
        .map_err(LedgerError::io(&s.seg.path))?
    {
        BlockAt::Valid(h) if h.first_seq == want => h,
        BlockAt::Valid(h) => {
            return Err(LedgerError::corrupted(
                &s.seg.name,
                off,
                format!(
                    "block index says #{want} but the block starts at #{}",
                    h.first_seq
                ),
            ));
        }
        BlockAt::Invalid { why, .. } => return Err(LedgerError::corrupted(&s.seg.name, off, why)),
        BlockAt::End => return Err(LedgerError::corrupted(&s.seg.name, off, "block missing")),
    };
    if (h.codec == CODEC_ZSTD_COLUMNS) != (s.hdr.version >= 3) {
        return Err(LedgerError::corrupted(
            &s.seg.name,
            off,
            "block codec does not belong to the segment's format version",
        ));
    }
    let (first, got) =
        crate::columns::unpack_prefix(&h, buf, &mut z.dctx, &mut z.scratch, &mut out.area, records)
            .map_err(|why| LedgerError::corrupted(&s.seg.name, off, why))?;
    out.spans.clear();
    out.spans.resize(first, (0, 0));
    let mut it = RecordsIn::new(&out.area);
    for r in it.by_ref() {
        match r {
            Ok((_, p)) => {
                let start = p.as_ptr() as usize - out.area.as_ptr() as usize;
                out.spans.push((start, p.len()));
            }
            Err(at) => {
                return Err(LedgerError::corrupted(
                    &s.seg.name,
                    off,
                    format!("record framing broken at byte {at} of the block"),
                ));
            }
        }
    }
    if out.spans.len() != got {
        return Err(LedgerError::corrupted(
            &s.seg.name,
            off,
            "block holds a different number of records than its header says",
        ));
    }
    out.seg = si;
    out.block = bi;
    out.first_seq = h.first_seq;
    out.count = h.count as usize;
    out.from = first;
    Ok(())
}

/// Rebuilds segment `si`'s block list from the segment itself (the sidecar `.idx` is derived
/// data: a damaged one must cost a scan, never a read error). The list is shared with
/// iterators; one that rescans gets its own copy. False if nothing changed.
fn rescan(segs: &mut Arc<Vec<SegInfo>>, si: usize) -> Result<bool, LedgerError> {
    let s = &segs[si];
    let mut blocks = Vec::new();
    let mut off = crate::format::SEGMENT_HEADER_LEN as u64;
    let mut buf = Vec::new();
    while let BlockAt::Valid(h) = read_block_at(&s.file, off, s.end_offset, false, &mut buf)
        .map_err(LedgerError::io(&s.seg.path))?
    {
        blocks.push((h.first_seq, off));
        off += h.total_len();
    }
    if blocks == s.blocks {
        return Ok(false);
    }
    Arc::make_mut(segs)[si].blocks = blocks;
    Ok(true)
}

/// Finds (segment, block) holding `seq`; the caller has checked 1 <= seq <= len.
fn locate(segs: &[SegInfo], seq: u64) -> Option<(usize, usize)> {
    let si = segs
        .partition_point(|s| s.hdr.first_seq <= seq)
        .checked_sub(1)?;
    let bi = segs[si]
        .blocks
        .partition_point(|&(f, _)| f <= seq)
        .checked_sub(1)?;
    Some((si, bi))
}

/// Decompressed blocks a reader keeps (least recently used goes first). Readers that fetch
/// records in time order walk several sources' ranges of the ledger at once (a file ingest
/// stores each source's lines together; a VM's timeline or a VO's search interleaves them):
/// with 4 blocks every fetch decompressed a block again (a web UI page spent half its time in
/// zstd). 64 blocks are a few MB.
const BLOCK_CACHE: usize = 64;

/// Read-only view of a ledger directory as of open time.
pub struct LedgerReader {
    pub(crate) dir: PathBuf,
    segs: Arc<Vec<SegInfo>>,
    len: u64,
    /// The last blocks read, most recent last (at most [`BLOCK_CACHE`]): a proof reads the
    /// records of a 256-leaf group and then the cited record from the same blocks.
    blocks: Vec<Decoded>,
    buf: Vec<u8>,
    dctx: Zstd,
}

fn zstd_ctx() -> Zstd {
    Zstd {
        dctx: crate::columns::dctx(),
        scratch: crate::columns::Scratch::default(),
    }
}

impl LedgerReader {
    /// Opens the ledger in `dir` for reading.
    pub fn open(dir: &Path) -> Result<LedgerReader, LedgerError> {
        let list = list_segments(dir)?;
        let n = list.len();
        let mut segs = Vec::with_capacity(n);
        let mut len = 0;
        for (i, seg) in list.into_iter().enumerate() {
            let last = i + 1 == n;
            let file = File::open(&seg.path).map_err(LedgerError::io(&seg.path))?;
            let hdr = match read_segment_header(&file, &seg) {
                // A last segment whose header is still being written holds no records yet.
                Err(LedgerError::Corrupted { .. }) if last && i > 0 => break,
                r => r?,
            };
            let flen = file.metadata().map_err(LedgerError::io(&seg.path))?.len();
            if hdr.flags & SEGMENT_FLAG_REMOVED != 0 {
                let stub = read_removed_stub(&file, &seg, flen)?;
                len = hdr.first_seq + stub.count - 1;
                segs.push(SegInfo {
                    seg,
                    file: Arc::new(file),
                    hdr,
                    blocks: Vec::new(),
                    end_offset: flen,
                    removed: Some(Arc::new(stub)),
                });
                continue;
            }
            let mut scan = scan_segment(&file, &seg, &hdr, flen, last, true)
                .map_err(LedgerError::io(&seg.path))?;
            if last {
                // Blocks of a batch the writer is still writing (or that a crash cut short)
                // are not shown: a reader stops at the last block that ends a batch.
                let _unfinished = scan.cut_to_batch_end();
            }
            len = scan.next_seq.saturating_sub(1);
            segs.push(SegInfo {
                seg,
                file: Arc::new(file),
                hdr,
                blocks: scan.blocks,
                end_offset: scan.end_offset,
                removed: None,
            });
        }
        Ok(LedgerReader {
            dir: dir.to_path_buf(),
            segs: Arc::new(segs),
            len,
            blocks: Vec::new(),
            buf: Vec::new(),
            dctx: zstd_ctx(),
        })
    }

    /// A second reader of the same view (the same records and length, the segment files
    /// shared) with a block cache of its own: to read records on another thread.
    pub fn twin(&self) -> Result<LedgerReader, LedgerError> {
        Ok(LedgerReader {
            dir: self.dir.clone(),
            segs: Arc::clone(&self.segs),
            len: self.len,
            blocks: Vec::new(),
            buf: Vec::new(),
            dctx: zstd_ctx(),
        })
    }

    /// The ledger directory this reader reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Last seq readable: the end of the last complete batch when the reader was opened (no
    /// record of a batch still being written is counted); 0 when empty.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the ledger holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A `Seq` for a stored position, if the ledger holds it.
    pub fn seq(&self, n: u64) -> Option<Seq> {
        (1..=self.len).contains(&n).then_some(Seq(n))
    }

    /// The payload of record `seq`; [`LedgerError::Removed`] if a retention policy removed it.
    pub fn get(&mut self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        self.get_through(seq, seq)
    }

    /// The last seq of the block holding stored record `seq` (`None` past the end or in a
    /// removed segment): a reader of several records of one block says so with
    /// [`LedgerReader::get_through`].
    pub fn block_last(&self, seq: u64) -> Option<u64> {
        if seq == 0 || seq > self.len || self.removed_by(seq).is_some() {
            return None;
        }
        let (si, bi) = locate(&self.segs, seq)?;
        let next = match self.segs[si].blocks.get(bi + 1) {
            Some(&(f, _)) => f,
            None => self
                .segs
                .get(si + 1)
                .map_or(self.len + 1, |s| s.hdr.first_seq),
        };
        Some(next.saturating_sub(1).min(self.len))
    }

    /// [`LedgerReader::get`], saying that records up to `through` of the same block will be
    /// read next (a sorted fetch of several hits): the block is decompressed that far at
    /// once, not first to `seq` and then again whole.
    pub fn get_through(&mut self, seq: u64, through: u64) -> Result<Vec<u8>, LedgerError> {
        let k = self.stored_block(seq, seq, through.max(seq))?;
        let b = &self.blocks[k];
        let i = (seq - b.first_seq) as usize;
        if i >= b.spans.len() {
            return Err(LedgerError::NotFound { seq, len: self.len });
        }
        Ok(b.payload(i).to_vec())
    }

    /// [`LedgerReader::block_of`] for any `seq`: [`LedgerError::NotFound`] outside the
    /// ledger, [`LedgerError::Removed`] if a retention policy removed it.
    fn stored_block(&mut self, seq: u64, from: u64, through: u64) -> Result<usize, LedgerError> {
        let not_found = LedgerError::NotFound { seq, len: self.len };
        if seq == 0 || seq > self.len {
            return Err(not_found);
        }
        if let Some(record) = self.removed_by(seq) {
            return Err(LedgerError::Removed { seq, record });
        }
        self.block_of(seq, from, through).map_err(|e| match e {
            LedgerError::NotFound { .. } => not_found,
            e => e,
        })
    }

    /// Index in `self.blocks` of the decompressed block holding `seq` (a stored, not removed
    /// record) with its records read at least from `from` (≤ `seq`; before the block's start
    /// means from its first record) up to `through` (≥ `seq`; past the block's end means to
    /// its last), read unless cached. A block is first read only as far as asked
    /// (`columns::unpack_prefix`: a search's hits are mostly one per block); asked for more of
    /// it later, it is read whole.
    fn block_of(&mut self, seq: u64, from: u64, through: u64) -> Result<usize, LedgerError> {
        let (si, bi) =
            locate(&self.segs, seq).ok_or(LedgerError::NotFound { seq, len: self.len })?;
        let first = self.segs[si].blocks[bi].0;
        let want =
            usize::try_from(through.saturating_sub(first).saturating_add(1)).unwrap_or(usize::MAX);
        let from = usize::try_from(from.min(seq).saturating_sub(first)).unwrap_or(0);
        let mut out = match self
            .blocks
            .iter()
            .position(|b| b.seg == si && b.block == bi)
        {
            Some(k) => {
                let b = self.blocks.remove(k);
                if b.from <= from && (b.spans.len() >= want || b.spans.len() == b.count) {
                    self.blocks.push(b);
                    return Ok(self.blocks.len() - 1);
                }
                b
            }
            None if self.blocks.len() >= BLOCK_CACHE => self.blocks.remove(0),
            None => Decoded::default(),
        };
        // Read before, but not the records asked for now: read it whole this time.
        let (from, want) = if out.seg == si && out.block == bi && !out.spans.is_empty() {
            (0, usize::MAX)
        } else {
            (from, want)
        };
        if let Err(e) = load_block(
            &self.segs,
            si,
            bi,
            &mut self.dctx,
            &mut self.buf,
            &mut out,
            from..want,
        ) {
            // The sidecar is never trusted blindly: rebuild this segment's block list
            // from the segment itself and try once more.
            if !self.rescan(si)? {
                return Err(e);
            }
            // A rescan may renumber blocks: nothing cached from this segment is kept.
            self.blocks.retain(|b| b.seg != si);
            let (si, bi) =
                locate(&self.segs, seq).ok_or(LedgerError::NotFound { seq, len: self.len })?;
            load_block(
                &self.segs,
                si,
                bi,
                &mut self.dctx,
                &mut self.buf,
                &mut out,
                0..usize::MAX,
            )?;
        }
        self.blocks.push(out);
        Ok(self.blocks.len() - 1)
    }

    /// [`LedgerReader::leaf_hashes`] of a short range (a proof's group of leaves) through the
    /// reader's block cache and decompression context, so the cited record read next comes
    /// from a block already in memory. Ranges touching a removed segment go the long way.
    pub fn leaf_hashes_cached(
        &mut self,
        first: u64,
        count: u64,
    ) -> Result<Vec<crate::merkle::Hash>, LedgerError> {
        let end = first.saturating_add(count);
        if first == 0 || end > self.len + 1 || (first..end).any(|q| self.removed_by(q).is_some()) {
            return self.leaf_hashes(first, count);
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut seq = first;
        while seq < end {
            let k = self.block_of(seq, seq, end - 1)?;
            let b = &self.blocks[k];
            let from = (seq - b.first_seq) as usize;
            let upto = (end - b.first_seq).min(b.spans.len() as u64) as usize;
            if from >= upto {
                return Err(LedgerError::NotFound { seq, len: self.len });
            }
            out.extend((from..upto).map(|i| crate::merkle::leaf_hash(b.payload(i))));
            seq = b.first_seq + upto as u64;
        }
        Ok(out)
    }

    /// The chain head after record `seq` (all zeros for 0): what a view records beside its
    /// position, so that a view built from another ledger is told apart (DESIGN.md
    /// "Views"). Reads one block and chains its records up to `seq` from the head the block
    /// before it ends with; like [`LedgerReader::get`] it does not verify the chain.
    pub fn head_at(&mut self, seq: u64) -> Result<[u8; 32], LedgerError> {
        if seq == 0 {
            return Ok([0; 32]);
        }
        // The block holding `seq`, read from its first record (the chain runs from there).
        let k = self.stored_block(seq, 0, seq)?;
        let cached = &self.blocks[k];
        let (si, bi) = (cached.seg, cached.block);
        let s = &self.segs[si];
        let mut head = if bi == 0 {
            s.hdr.prev_head
        } else {
            let off = s.blocks[bi - 1].1;
            match read_block_at(&s.file, off, s.end_offset, false, &mut self.buf)
                .map_err(LedgerError::io(&s.seg.path))?
            {
                BlockAt::Valid(h) => h.head,
                _ => {
                    return Err(LedgerError::corrupted(
                        &s.seg.name,
                        off,
                        "block header unreadable",
                    ));
                }
            }
        };
        for i in 0..=(seq - cached.first_seq) as usize {
            let at = cached.first_seq + i as u64;
            head = crate::format::chain_step(&head, at, cached.payload(i));
        }
        Ok(head)
    }

    /// The retention record that removed record `seq`'s payload, if one did.
    pub fn removed_by(&self, seq: u64) -> Option<u64> {
        let si = self
            .segs
            .partition_point(|s| s.hdr.first_seq <= seq)
            .checked_sub(1)?;
        self.segs[si].removed.as_ref().map(|r| r.record)
    }

    /// Every segment: (number, first seq, record count, retention record if removed).
    pub fn segments(&self) -> Vec<(u32, u64, u64, Option<u64>)> {
        let mut out = Vec::with_capacity(self.segs.len());
        for (i, s) in self.segs.iter().enumerate() {
            let end = self
                .segs
                .get(i + 1)
                .map_or(self.len + 1, |n| n.hdr.first_seq);
            out.push((
                s.seg.number,
                s.hdr.first_seq,
                end.saturating_sub(s.hdr.first_seq),
                s.removed.as_ref().map(|r| r.record),
            ));
        }
        out
    }

    /// Records whose payloads were removed by retention: (first seq, count, retention record)
    /// per removed segment.
    pub fn removed_ranges(&self) -> Vec<(u64, u64, u64)> {
        self.segs
            .iter()
            .filter_map(|s| {
                s.removed
                    .as_ref()
                    .map(|r| (s.hdr.first_seq, r.count, r.record))
            })
            .collect()
    }

    /// Leaf hashes of records `first .. first + count`: hashed from the payloads, or taken
    /// from a removed segment's stub.
    pub fn leaf_hashes(
        &self,
        first: u64,
        count: u64,
    ) -> Result<Vec<crate::merkle::Hash>, LedgerError> {
        let end = first.saturating_add(count);
        if first == 0 || end > self.len + 1 {
            return Err(LedgerError::NotFound {
                seq: first.max(end.saturating_sub(1)),
                len: self.len,
            });
        }
        let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut seq = first;
        while seq < end {
            let si = self
                .segs
                .partition_point(|s| s.hdr.first_seq <= seq)
                .checked_sub(1)
                .ok_or(LedgerError::NotFound { seq, len: self.len })?;
            let s = &self.segs[si];
            let seg_end = self
                .segs
                .get(si + 1)
                .map_or(self.len + 1, |n| n.hdr.first_seq);
            let stop = end.min(seg_end);
            if let Some(r) = &s.removed {
                let from = (seq - s.hdr.first_seq) as usize;
                let take = (stop - seq) as usize;
                let leaves = r.leaves.get(from..from + take).ok_or_else(|| {
                    LedgerError::corrupted(
                        &s.seg.name,
                        0,
                        "removed-segment stub is short of leaves",
                    )
                })?;
                out.extend(leaves.iter().map(|l| crate::merkle::Hash(*l)));
                seq = stop;
                continue;
            }
            let mut it = self.iter_from(seq);
            while seq < stop {
                match it.next_ref() {
                    Some(Ok((_, p))) => out.push(crate::merkle::leaf_hash(p)),
                    Some(Err(e)) => return Err(e),
                    None => return Err(LedgerError::NotFound { seq, len: self.len }),
                }
                seq += 1;
            }
        }
        Ok(out)
    }

    /// Header of the ledger's last visible block (what the writer authenticates at open).
    pub(crate) fn last_block_header(&self) -> Result<Option<BlockHeader>, LedgerError> {
        for s in self.segs.iter().rev() {
            let Some(&(_, off)) = s.blocks.last() else {
                continue;
            };
            let mut buf = Vec::new();
            return match read_block_at(&s.file, off, s.end_offset, false, &mut buf)
                .map_err(LedgerError::io(&s.seg.path))?
            {
                BlockAt::Valid(h) => Ok(Some(h)),
                _ => Err(LedgerError::corrupted(
                    &s.seg.name,
                    off,
                    "block header unreadable",
                )),
            };
        }
        Ok(None)
    }

    /// Format version of the last segment (the one a writer appends to); `None` when empty.
    pub(crate) fn last_segment_version(&self) -> Option<u32> {
        self.segs.last().map(|s| s.hdr.version)
    }

    /// Rebuilds segment `si`'s block list by scanning the segment; false if nothing changed.
    fn rescan(&mut self, si: usize) -> Result<bool, LedgerError> {
        rescan(&mut self.segs, si)
    }

    /// Streams records from `seq` (clamped to 1) to the end, one block in memory at a time.
    pub fn iter_from(&self, seq: u64) -> Records {
        Records {
            segs: Arc::clone(&self.segs),
            len: self.len,
            next: seq.max(1),
            block: Decoded::default(),
            loaded: false,
            buf: Vec::new(),
            dctx: zstd_ctx(),
            done: false,
            skipped: 0,
        }
    }

    /// Calls `f` for every record from `seq` to the end without copying payloads; `f` stops
    /// the scan by returning `ControlFlow::Break`. Returns the number of records visited.
    pub fn scan_from<F>(&self, seq: u64, mut f: F) -> Result<u64, LedgerError>
    where
        F: FnMut(Seq, &[u8]) -> ControlFlow<()>,
    {
        let mut it = self.iter_from(seq);
        let mut n = 0;
        while let Some(r) = it.next_ref() {
            let (s, p) = r?;
            n += 1;
            if f(s, p).is_break() {
                break;
            }
        }
        Ok(n)
    }
}

/// Streaming iterator over records, returned by [`LedgerReader::iter_from`].
pub struct Records {
    segs: Arc<Vec<SegInfo>>,
    len: u64,
    next: u64,
    block: Decoded,
    loaded: bool,
    buf: Vec<u8>,
    dctx: Zstd,
    done: bool,
    skipped: u64,
}

impl Records {
    /// Records passed over because a retention policy removed their payloads.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next record without copying its payload. Records whose payloads were removed by a
    /// retention policy are passed over (counted in [`Records::skipped`]).
    pub fn next_ref(&mut self) -> Option<Result<(Seq, &[u8]), LedgerError>> {
        if self.done || self.next > self.len {
            return None;
        }
        if let Some(si) = self
            .segs
            .partition_point(|s| s.hdr.first_seq <= self.next)
            .checked_sub(1)
            && let Some(r) = &self.segs[si].removed
        {
            let end = self.segs[si].hdr.first_seq + r.count;
            self.skipped += end.saturating_sub(self.next);
            self.next = end;
            return self.next_ref();
        }
        let in_block = self.loaded
            && self.next >= self.block.first_seq
            && self.next - self.block.first_seq < self.block.spans.len() as u64;
        if !in_block {
            let mut loaded = self.load(self.next);
            // As `LedgerReader::get`: a block list from a damaged sidecar is rebuilt from the
            // segment, and the read tried once more.
            if loaded.is_err()
                && let Some((si, _)) = locate(&self.segs, self.next)
            {
                match rescan(&mut self.segs, si) {
                    Ok(true) => loaded = self.load(self.next),
                    Ok(false) => {}
                    Err(e) => loaded = Err(e),
                }
            }
            if let Err(e) = loaded {
                self.done = true;
                return Some(Err(e));
            }
            self.loaded = true;
            if self.next < self.block.first_seq {
                self.done = true;
                return Some(Err(LedgerError::NotFound {
                    seq: self.next,
                    len: self.len,
                }));
            }
            if self.next - self.block.first_seq >= self.block.spans.len() as u64 {
                self.done = true;
                return Some(Err(LedgerError::NotFound {
                    seq: self.next,
                    len: self.len,
                }));
            }
        }
        let seq = self.next;
        self.next += 1;
        let i = (seq - self.block.first_seq) as usize;
        Some(Ok((Seq(seq), self.block.payload(i))))
    }
}

impl Records {
    /// Loads the block holding `seq` into `self.block`.
    fn load(&mut self, seq: u64) -> Result<(), LedgerError> {
        match locate(&self.segs, seq) {
            None => Err(LedgerError::NotFound { seq, len: self.len }),
            Some((si, bi)) => load_block(
                &self.segs,
                si,
                bi,
                &mut self.dctx,
                &mut self.buf,
                &mut self.block,
                0..usize::MAX,
            ),
        }
    }
}

impl Iterator for Records {
    type Item = Result<(Seq, Vec<u8>), LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(|(s, p)| (s, p.to_vec())))
    }
}

impl std::fmt::Debug for LedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerReader")
            .field("dir", &self.dir)
            .field("segments", &self.segs.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("next", &self.next)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Reads and checks the stub of a removed segment (everything after its header).
pub(crate) fn read_removed_stub(
    file: &File,
    seg: &SegmentPath,
    flen: u64,
) -> Result<RemovedStub, LedgerError> {
    use std::os::unix::fs::FileExt;
    let len = flen.saturating_sub(crate::format::SEGMENT_HEADER_LEN as u64);
    let mut b = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut b, crate::format::SEGMENT_HEADER_LEN as u64)
        .map_err(LedgerError::io(&seg.path))?;
    RemovedStub::decode(&b).map_err(|w| LedgerError::corrupted(&seg.name, 128, w))
}
