//! Segment files as sequences of blocks: listing them, reading one block at an offset, and
//! scanning a segment with the help of its block index sidecar (`seg-NNNNNNNN.idx`).
//!
//! The sidecar is derived data: it is read, checked against the segment (its last entry must
//! point at a block header with the same first seq, entries must increase) and rebuilt from
//! the segment when it does not fit. Nothing here truncates or repairs a segment; callers
//! decide what a block that does not check out means (torn tail, or corruption).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::LedgerError;
use crate::format::{
    BLOCK_HEADER_LEN, BlockHeader, SEGMENT_HEADER_LEN, SegmentHeader, SegmentHeaderError,
    index_entry, index_file_name, index_header, parse_index, parse_segment_file_name,
};

/// A segment file found in the ledger directory.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPath {
    pub number: u32,
    pub path: PathBuf,
    pub name: String,
}

impl SegmentPath {
    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_file_name(index_file_name(self.number))
    }
}

/// Lists `seg-NNNNNNNN.dat` files in `dir`, sorted by number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentPath>, LedgerError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(LedgerError::io(dir))? {
        let entry = entry.map_err(LedgerError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = parse_segment_file_name(name) {
            out.push(SegmentPath {
                number,
                path: entry.path(),
                name: name.to_string(),
            });
        }
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// Reads and checks a segment header, mapping a foreign version to `VersionMismatch`.
pub(crate) fn read_segment_header(
    file: &File,
    seg: &SegmentPath,
) -> Result<SegmentHeader, LedgerError> {
    let mut b = [0u8; SEGMENT_HEADER_LEN];
    let n = read_up_to(file, 0, &mut b).map_err(LedgerError::io(&seg.path))?;
    match SegmentHeader::decode(&b[..n]) {
        Ok(h) if h.number == seg.number => Ok(h),
        Ok(h) => Err(LedgerError::corrupted(
            &seg.name,
            16,
            format!(
                "segment header says number {}, file name says {}",
                h.number, seg.number
            ),
        )),
        Err(SegmentHeaderError::Version(found)) => Err(LedgerError::VersionMismatch {
            found,
            expected: crate::format::FORMAT_VERSION,
        }),
        Err(e) => Err(LedgerError::corrupted(
            &seg.name,
            0,
            match e {
                SegmentHeaderError::Short => "segment header truncated",
                SegmentHeaderError::Magic => "not a pugmark segment (bad magic)",
                _ => "segment header checksum mismatch",
            },
        )),
    }
}

/// Reads as many bytes as available at `off`, up to `buf.len()`.
pub(crate) fn read_up_to(file: &File, off: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What lies at an offset of a segment.
#[derive(Debug)]
pub(crate) enum BlockAt {
    /// The offset is the end of the file.
    End,
    /// A complete block with a well-formed header (and a matching checksum if checked).
    Valid(BlockHeader),
    /// Something that is not a complete, intact block.
    Invalid {
        why: String,
        header: Option<BlockHeader>,
    },
}

/// Reads the block at `off`; with `check`, also reads the compressed bytes into `buf` and
/// checks the checksum.
pub(crate) fn read_block_at(
    file: &File,
    off: u64,
    file_len: u64,
    check: bool,
    buf: &mut Vec<u8>,
) -> io::Result<BlockAt> {
    if off == file_len {
        return Ok(BlockAt::End);
    }
    if file_len < off || file_len - off < BLOCK_HEADER_LEN as u64 {
        return Ok(BlockAt::Invalid {
            why: "block header truncated".into(),
            header: None,
        });
    }
    let mut hb = [0u8; BLOCK_HEADER_LEN];
    file.read_exact_at(&mut hb, off)?;
    let h = match BlockHeader::decode(&hb) {
        Ok(h) => h,
        Err(why) => {
            return Ok(BlockAt::Invalid {
                why: why.into(),
                header: None,
            });
        }
    };
    if file_len - off < h.total_len() {
        return Ok(BlockAt::Invalid {
            why: "block extends past the end of the segment".into(),
            header: Some(h),
        });
    }
    if check {
        buf.resize(h.compressed_len as usize, 0);
        file.read_exact_at(buf, off + BLOCK_HEADER_LEN as u64)?;
        if !h.checksum_ok(buf) {
            return Ok(BlockAt::Invalid {
                why: "block checksum mismatch".into(),
                header: Some(h),
            });
        }
    }
    Ok(BlockAt::Valid(h))
}

/// Where a scan stopped before the end of the file.
#[derive(Debug)]
pub(crate) struct Stop {
    pub offset: u64,
    pub why: String,
    pub header: Option<BlockHeader>,
}

/// A segment's blocks as far as they check out.
#[derive(Debug)]
pub(crate) struct Scan {
    /// (first seq, byte offset) of every good block, in order.
    pub blocks: Vec<(u64, u64)>,
    /// Offset just after the last good block.
    pub end_offset: u64,
    /// Seq after the last good record.
    pub next_seq: u64,
    /// Chain head after the last good record (as the block headers state it).
    pub head: [u8; 32],
    /// Set when something other than the end of the file ended the scan.
    pub stop: Option<Stop>,
    /// The sidecar did not fit and was ignored.
    pub index_rebuilt: bool,
    /// Blocks were found beyond the sidecar's last entry.
    pub index_extended: bool,
    /// The committed prefix: everything up to the end of the last block that ends a batch.
    committed: Committed,
}

/// A position just after a batch-end block (or the segment header).
#[derive(Debug, Clone, Copy)]
struct Committed {
    blocks: usize,
    end_offset: u64,
    next_seq: u64,
    head: [u8; 32],
}

/// Complete, intact blocks after the last block that ends a batch: the start of a batch whose
/// last block never made it to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfinished {
    /// Offset of the unfinished batch's first block.
    pub offset: u64,
    /// Seq of its first record.
    pub first_seq: u64,
    /// Number of complete blocks it has.
    pub blocks: usize,
    /// Records in those blocks.
    pub records: u64,
}

impl Scan {
    /// Cuts the scan back to the end of the last block that ends a batch, returning the
    /// complete blocks of an unfinished batch that followed it, if any. Used for the last
    /// segment only: a batch never spans segments, so each segment begins at a batch boundary.
    pub(crate) fn cut_to_batch_end(&mut self) -> Option<Unfinished> {
        let c = self.committed;
        if c.blocks >= self.blocks.len() {
            return None;
        }
        let unfinished = Unfinished {
            offset: c.end_offset,
            first_seq: c.next_seq,
            blocks: self.blocks.len() - c.blocks,
            records: self.next_seq - c.next_seq,
        };
        self.blocks.truncate(c.blocks);
        self.end_offset = c.end_offset;
        self.next_seq = c.next_seq;
        self.head = c.head;
        Some(unfinished)
    }
}

fn load_index_entries(idx: &Path, hdr: &SegmentHeader, file_len: u64) -> Option<Vec<(u64, u64)>> {
    let bytes = std::fs::read(idx).ok()?;
    let entries = parse_index(&bytes)?;
    let mut prev: Option<(u64, u64)> = None;
    for &(s, o) in &entries {
        let ok = match prev {
            None => s == hdr.first_seq && o == SEGMENT_HEADER_LEN as u64,
            Some((ps, po)) => s > ps && o > po,
        };
        if !ok || o >= file_len {
            return None;
        }
        prev = Some((s, o));
    }
    Some(entries)
}

/// Scans a segment: trusts the sidecar up to its last entry (after checking that entry's block
/// header), then reads block headers to the end of the file. With `check_tail`, the block of the
/// last sidecar entry and every block after it are checksummed too.
pub(crate) fn scan_segment(
    file: &File,
    seg: &SegmentPath,
    hdr: &SegmentHeader,
    file_len: u64,
    check_tail: bool,
    trust_sidecar: bool,
) -> io::Result<Scan> {
    let mut buf = Vec::new();
    let loaded = load_index_entries(&seg.index_path(), hdr, file_len);
    // Distrusted, the sidecar is only compared with the block list read from the segment.
    let (loaded, distrusted) = if trust_sidecar {
        (loaded, None)
    } else {
        (None, Some(loaded))
    };
    let mut index_rebuilt = loaded.is_none();
    let mut blocks = loaded.unwrap_or_default();
    let mut off = SEGMENT_HEADER_LEN as u64;
    let mut next = hdr.first_seq;
    let mut head = hdr.prev_head;
    if let Some(&(s, o)) = blocks.last() {
        match read_block_at(file, o, file_len, check_tail, &mut buf)? {
            // The writer adds sidecar entries only for whole batches, so the last entry must
            // point at a batch-end block; anything else is rebuilt from the segment.
            BlockAt::Valid(h) if h.first_seq == s && h.batch_end => {
                off = o + h.total_len();
                next = h.end_seq();
                head = h.head;
            }
            _ => {
                blocks.clear();
                index_rebuilt = true;
            }
        }
    }
    let mut committed = Committed {
        blocks: blocks.len(),
        end_offset: off,
        next_seq: next,
        head,
    };
    let mut index_extended = false;
    let stop = loop {
        match read_block_at(file, off, file_len, check_tail, &mut buf)? {
            BlockAt::End => break None,
            BlockAt::Valid(h) if h.first_seq != next => {
                break Some(Stop {
                    offset: off,
                    why: format!("block starts at #{}, expected #{next}", h.first_seq),
                    header: Some(h),
                });
            }
            BlockAt::Valid(h) => {
                blocks.push((h.first_seq, off));
                index_extended = true;
                off += h.total_len();
                next = h.end_seq();
                head = h.head;
                if h.batch_end {
                    committed = Committed {
                        blocks: blocks.len(),
                        end_offset: off,
                        next_seq: next,
                        head,
                    };
                }
            }
            BlockAt::Invalid { why, header } => {
                break Some(Stop {
                    offset: off,
                    why,
                    header,
                });
            }
        }
    };
    if let Some(found) = distrusted {
        index_rebuilt = found.as_ref() != Some(&blocks);
    }
    Ok(Scan {
        blocks,
        end_offset: off,
        next_seq: next,
        head,
        stop,
        index_rebuilt,
        index_extended,
        committed,
    })
}

/// Writes a complete sidecar for `blocks` (not synced: it is derived and checked on load).
pub(crate) fn write_index(path: &Path, blocks: &[(u64, u64)]) -> io::Result<()> {
    let mut b = Vec::with_capacity(16 + blocks.len() * 16);
    b.extend_from_slice(&index_header());
    for &(s, o) in blocks {
        b.extend_from_slice(&index_entry(s, o));
    }
    std::fs::write(path, b)
}
