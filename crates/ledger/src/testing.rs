//! Test support, hidden from the docs: fault injection for the writer and block-level
//! surgery for the mutation tests. Not for production use: `rewrite_block` forges blocks.

use std::path::{Path, PathBuf};

use crate::error::LedgerError;
use crate::fileio::Faults;
use crate::format::{
    BLOCK_HEADER_LEN, BlockHeader, RecordsIn, SEGMENT_HEADER_LEN, TAG_LEN, block_checksum,
    push_record,
};
use crate::segment::{BlockAt, list_segments, read_block_at};
use crate::{Ledger, LedgerOptions, OpenReport};

/// Opens a writer whose first `ops` writes/syncs succeed and every later one fails (a failing
/// write first writes half its buffer).
pub fn open_with_faults(
    dir: &Path,
    opts: LedgerOptions,
    ops: u64,
) -> Result<(Ledger, OpenReport), LedgerError> {
    Ledger::open_inner(dir, opts, Some(Faults::new(ops)))
}

/// Opens a writer whose first `ops` writes/syncs succeed, the next `failures` fail, and
/// later ones succeed again: a transient fault, for [`Ledger::recover`].
pub fn open_with_transient_faults(
    dir: &Path,
    opts: LedgerOptions,
    ops: u64,
    failures: u64,
) -> Result<(Ledger, OpenReport), LedgerError> {
    Ledger::open_inner(dir, opts, Some(Faults::transient(ops, failures)))
}

/// Opens a writer that creates a new ledger in format `version` (2: what builds before
/// format 3 wrote), for the migration tests; an existing ledger opens as with `Ledger::open`.
pub fn open_creating_version(
    dir: &Path,
    opts: LedgerOptions,
    version: u32,
) -> Result<(Ledger, OpenReport), LedgerError> {
    Ledger::open_creating(dir, opts, None, version)
}

/// Where a block lies.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    /// Segment file path.
    pub path: PathBuf,
    /// Segment number.
    pub segment: u32,
    /// Offset of the block header.
    pub offset: u64,
    /// Header + compressed length.
    pub len: u64,
    /// First seq.
    pub first_seq: u64,
    /// Record count.
    pub count: u32,
    /// Last block of its batch.
    pub batch_end: bool,
}

/// Every block of every segment, read from the headers.
pub fn blocks(dir: &Path) -> Result<Vec<BlockInfo>, LedgerError> {
    let mut out = Vec::new();
    for s in list_segments(dir)? {
        let f = std::fs::File::open(&s.path).map_err(LedgerError::io(&s.path))?;
        let len = f.metadata().map_err(LedgerError::io(&s.path))?.len();
        let mut off = SEGMENT_HEADER_LEN as u64;
        let mut buf = Vec::new();
        while let BlockAt::Valid(h) =
            read_block_at(&f, off, len, false, &mut buf).map_err(LedgerError::io(&s.path))?
        {
            out.push(BlockInfo {
                path: s.path.clone(),
                segment: s.number,
                offset: off,
                len: h.total_len(),
                first_seq: h.first_seq,
                count: h.count,
                batch_end: h.batch_end,
            });
            off += h.total_len();
        }
    }
    Ok(out)
}

/// Segment file paths in order.
pub fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, LedgerError> {
    Ok(list_segments(dir)?.into_iter().map(|s| s.path).collect())
}

/// Rewrites a block as an attacker who can recompress would: `edit` changes its (tag,
/// payload) records, then count, lengths and checksum are fixed up; first seq and chain head
/// in the header are kept. Later blocks shift in the file.
pub fn rewrite_block(
    block: &BlockInfo,
    edit: impl FnOnce(&mut Vec<([u8; TAG_LEN], Vec<u8>)>),
) -> Result<(), LedgerError> {
    let io = LedgerError::io(&block.path);
    let bytes = std::fs::read(&block.path).map_err(io)?;
    let start = block.offset as usize;
    let end = start + block.len as usize;
    let mut hb = [0u8; BLOCK_HEADER_LEN];
    hb.copy_from_slice(&bytes[start..start + BLOCK_HEADER_LEN]);
    let mut h = BlockHeader::decode(&hb).map_err(|w| LedgerError::corrupted("test", 0, w))?;
    let mut dctx = crate::columns::dctx();
    let mut area = Vec::new();
    crate::columns::unpack(
        &h,
        &bytes[start + BLOCK_HEADER_LEN..end],
        &mut dctx,
        &mut crate::columns::Scratch::default(),
        &mut area,
    )
    .map_err(|w| LedgerError::corrupted("test", 0, w))?;
    let mut recs: Vec<([u8; TAG_LEN], Vec<u8>)> = RecordsIn::new(&area)
        .filter_map(|r| r.ok())
        .map(|(t, p)| (t, p.to_vec()))
        .collect();
    edit(&mut recs);
    let mut framed = Vec::new();
    for (t, p) in &recs {
        push_record(&mut framed, *t, p);
    }
    let mut cx = zstd::bulk::Compressor::new(3).map_err(LedgerError::io(&block.path))?;
    let mut comp = Vec::new();
    let u = crate::columns::pack(h.codec, &framed, &mut cx, &mut comp)
        .map_err(LedgerError::io(&block.path))?;
    h.count = recs.len() as u32;
    h.compressed_len = comp.len() as u32;
    h.uncompressed_len = u;
    h.checksum = block_checksum(&h.encode_fields()[..64], &comp);
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&comp);
    out.extend_from_slice(&bytes[end..]);
    std::fs::write(&block.path, out).map_err(LedgerError::io(&block.path))?;
    Ok(())
}

/// Sets or clears a block's batch-end flag as an attacker who recomputes the block checksum
/// would (nothing else changes, the file keeps its length).
pub fn set_batch_end(block: &BlockInfo, batch_end: bool) -> Result<(), LedgerError> {
    rewrite_header(block, |h| h.batch_end = batch_end)
}

/// Sets a block's codec byte as an attacker who recomputes the block checksum would (the
/// compressed bytes stay those of the old codec).
pub fn set_codec(block: &BlockInfo, codec: u8) -> Result<(), LedgerError> {
    rewrite_header(block, |h| h.codec = codec)
}

/// Changes a block's header with `change` and recomputes its checksum, in place.
fn rewrite_header(
    block: &BlockInfo,
    change: impl FnOnce(&mut BlockHeader),
) -> Result<(), LedgerError> {
    let io = LedgerError::io(&block.path);
    let mut bytes = std::fs::read(&block.path).map_err(io)?;
    let start = block.offset as usize;
    let end = start + block.len as usize;
    let mut hb = [0u8; BLOCK_HEADER_LEN];
    hb.copy_from_slice(&bytes[start..start + BLOCK_HEADER_LEN]);
    let mut h = BlockHeader::decode(&hb).map_err(|w| LedgerError::corrupted("test", 0, w))?;
    change(&mut h);
    h.checksum = block_checksum(
        &h.encode_fields()[..64],
        &bytes[start + BLOCK_HEADER_LEN..end],
    );
    bytes[start..start + BLOCK_HEADER_LEN].copy_from_slice(&h.encode());
    std::fs::write(&block.path, bytes).map_err(LedgerError::io(&block.path))?;
    Ok(())
}

/// Appends `records` as one batch-end block to the last segment as an attacker who can write
/// the ledger directory but holds no key would: the chain (public), tags and checksum are
/// right, the block MAC is not (it needs the secret key; zeros here).
pub fn append_forged(dir: &Path, records: &[&[u8]]) -> Result<(), LedgerError> {
    let mut r = crate::LedgerReader::open(dir)?;
    let len = r.len();
    let mut head = r.head_at(len)?;
    let mut area = Vec::new();
    for (seq, p) in (len + 1..).zip(records) {
        head = crate::format::chain_step(&head, seq, p);
        push_record(&mut area, crate::format::tag_of(&head), p);
    }
    let path = list_segments(dir)?
        .pop()
        .map(|s| s.path)
        .ok_or_else(|| LedgerError::corrupted("test", 0, "no segment"))?;
    let bytes = std::fs::read(&path).map_err(LedgerError::io(&path))?;
    let version = crate::format::SegmentHeader::decode(&bytes)
        .map_err(|_| LedgerError::corrupted("test", 0, "segment header"))?
        .version;
    let codec = crate::format::codec_for_version(version);
    let mut cx = zstd::bulk::Compressor::new(3).map_err(LedgerError::io(&path))?;
    let mut comp = Vec::new();
    let u =
        crate::columns::pack(codec, &area, &mut cx, &mut comp).map_err(LedgerError::io(&path))?;
    let mut h = BlockHeader {
        count: records.len() as u32,
        first_seq: len + 1,
        compressed_len: comp.len() as u32,
        uncompressed_len: u,
        head,
        codec,
        batch_end: true,
        mac: [0; crate::format::MAC_LEN],
        checksum: [0; 16],
    };
    h.checksum = block_checksum(&h.encode_fields()[..64], &comp);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&comp);
    std::io::Write::write_all(&mut f, &out).map_err(LedgerError::io(&path))
}

/// A framed record area cut into the envelope columns of format 3, column by column (header
/// and dictionary, context numbers, tags, received times, line numbers, lengths, bytes): for
/// measuring what each costs after compression.
pub fn column_parts(framed: &[u8]) -> Result<[Vec<u8>; 7], LedgerError> {
    crate::columns::encode_parts(framed).map_err(|w| LedgerError::corrupted("test", 0, w))
}

/// Where each record of a framed area starts, and the area's end (`None` if its framing is
/// broken): record i is `area[o[i]..o[i + 1]]`.
pub fn framed_offsets(area: &[u8]) -> Option<Vec<usize>> {
    let mut o = vec![0];
    for r in RecordsIn::new(area) {
        let (_, p) = r.ok()?;
        o.push(p.as_ptr() as usize - area.as_ptr() as usize + p.len());
    }
    Some(o)
}

/// Appends one record's framing (length, tag) and payload to a framed area.
pub fn push_framed(area: &mut Vec<u8>, tag: [u8; TAG_LEN], payload: &[u8]) {
    push_record(area, tag, payload);
}

/// Codec byte of format-3 blocks (envelope columns), for the `ledger_block` fuzz target.
pub const CODEC_COLUMNS: u8 = crate::format::CODEC_ZSTD_COLUMNS;

/// Compresses a framed record area as a block of `codec` (what the writer stores): the
/// block's uncompressed length U and its compressed bytes.
pub fn pack_block(codec: u8, framed: &[u8], level: i32) -> std::io::Result<(u32, Vec<u8>)> {
    let mut cx = zstd::bulk::Compressor::new(level)?;
    let mut out = Vec::new();
    let u = crate::columns::pack(codec, framed, &mut cx, &mut out)?;
    Ok((u, out))
}

/// A block header with the fields decoding reads (codec, count, U, C).
fn bare_header(codec: u8, count: u32, u: u32, comp: &[u8]) -> BlockHeader {
    BlockHeader {
        count,
        first_seq: 1,
        compressed_len: comp.len() as u32,
        uncompressed_len: u,
        head: [0; 32],
        codec,
        batch_end: true,
        mac: [0; crate::format::MAC_LEN],
        checksum: [0; 16],
    }
}

/// Decodes only a block's records `from..want`, as a reader fetching a few records does
/// (`columns::unpack_prefix`): their framed area and which were read, or why not.
pub fn unpack_block_prefix(
    codec: u8,
    count: u32,
    u: u32,
    comp: &[u8],
    from: usize,
    want: usize,
) -> Result<((usize, usize), Vec<u8>), String> {
    let h = bare_header(codec, count, u, comp);
    let mut dctx = crate::columns::dctx();
    let mut out = Vec::new();
    let got = crate::columns::unpack_prefix(
        &h,
        comp,
        &mut dctx,
        &mut crate::columns::Scratch::default(),
        &mut out,
        from..want,
    )?;
    Ok((got, out))
}

/// Decodes a block's compressed bytes as a reader does, given the header fields that matter
/// (codec, record count, U): the framed record area, or why not.
pub fn unpack_block(codec: u8, count: u32, u: u32, comp: &[u8]) -> Result<Vec<u8>, String> {
    let h = bare_header(codec, count, u, comp);
    let mut dctx = crate::columns::dctx();
    let mut out = Vec::new();
    crate::columns::unpack(
        &h,
        comp,
        &mut dctx,
        &mut crate::columns::Scratch::default(),
        &mut out,
    )?;
    Ok(out)
}
