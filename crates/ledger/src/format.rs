//! The bytes on disk: segment header, block header, record framing, the hash chain and the
//! checksums, exactly as docs/FORMAT.md describes them.
//!
//! This module only encodes and decodes fixed layouts and computes hashes; it does no I/O and
//! makes no decisions about what a bad byte means (the writer, reader and `verify` decide).
//! Every length read from disk is checked here before anything is allocated from it.

use std::sync::LazyLock;

/// Format version written by this build in the segments of a new (or migrated) ledger: 3
/// (blocks store envelope columns, codec 2). Version-1 and version-2
/// segments are still read and verified, and a version-2 ledger keeps getting version-2
/// segments until `pugmark migrate` rewrites it.
pub const FORMAT_VERSION: u32 = 3;
/// Oldest segment format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Version of the binary checkpoint file header (unchanged since format 1).
pub const CHECKPOINT_FILE_VERSION: u32 = 1;
/// Version of the block index sidecar header (unchanged since format 1).
pub const INDEX_VERSION: u32 = 1;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"PUGMSEG\0";
/// Fixed size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 128;
/// First 4 bytes of every block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"PMBK";
/// Fixed size of the block header.
pub const BLOCK_HEADER_LEN: usize = 80;
/// Per-record framing inside a decompressed block: u32 length + 4-byte chain tag.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Bytes of the chain head kept per record as its tag.
pub const TAG_LEN: usize = 4;
/// Largest payload a record may have.
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Largest `block_max_bytes` option accepted.
pub const MAX_BLOCK_TARGET: usize = 64 << 20;
/// Largest compressed or uncompressed block length a reader accepts; anything larger is
/// corruption (the writer can never produce it).
pub const MAX_BLOCK_LEN: u32 =
    (MAX_BLOCK_TARGET + MAX_RECORD_LEN + RECORD_PREFIX_LEN + (1 << 20)) as u32;
/// Codec byte for zstd-compressed blocks of framed records (formats 1 and 2).
pub const CODEC_ZSTD: u8 = 1;
/// Codec byte of format 3: one zstd frame of envelope columns (`columns.rs`).
pub const CODEC_ZSTD_COLUMNS: u8 = 2;
/// Fewest bytes a record takes in a codec-2 area (context number, tag, length).
pub const MIN_COLUMN_RECORD_LEN: usize = TAG_LEN + 2;
/// Block header byte 57, bit 0: this block is the last block of its batch. A batch is
/// committed (kept by recovery, shown by readers) only once a block carrying this bit ends it.
pub const BLOCK_FLAG_BATCH_END: u8 = 0x01;
/// Every flag bit format 1 defines; a header with another bit set is rejected.
pub const BLOCK_FLAGS_KNOWN: u8 = BLOCK_FLAG_BATCH_END;

/// Magic of the checkpoint file header.
pub const CHECKPOINT_FILE_MAGIC: [u8; 8] = *b"PMCKPTS\0";
/// Size of the checkpoint file header.
pub const CHECKPOINT_FILE_HEADER_LEN: usize = 16;
/// Magic of one checkpoint entry.
pub const CHECKPOINT_MAGIC: [u8; 4] = *b"PMCK";
/// Size of one checkpoint entry.
pub const CHECKPOINT_LEN: usize = 152;
/// Bytes of a checkpoint entry covered by its signature.
pub const CHECKPOINT_SIGNED_LEN: usize = 88;

/// Magic of the block index sidecar.
pub const INDEX_MAGIC: [u8; 4] = *b"PMIX";
/// Size of the index sidecar header.
pub const INDEX_HEADER_LEN: usize = 16;
/// Size of one index entry: first seq (u64 LE) + byte offset (u64 LE).
pub const INDEX_ENTRY_LEN: usize = 16;

/// Domain-separation contexts (BLAKE3 `derive_key` mode); each yields a 32-byte key.
const CHAIN_CONTEXT: &str = "pugmark ledger v1 record chain";
const BLOCK_CONTEXT: &str = "pugmark ledger v1 block checksum";
const SEGMENT_CONTEXT: &str = "pugmark ledger v1 segment header";
/// Prefix of the message an ed25519 checkpoint signature covers.
pub const CHECKPOINT_CONTEXT: &[u8] = b"pugmark ledger v1 checkpoint\0";

static CHAIN_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(CHAIN_CONTEXT, b""));
static BLOCK_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(BLOCK_CONTEXT, b""));
static SEGMENT_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| blake3::derive_key(SEGMENT_CONTEXT, b""));

/// One step of the record chain:
/// `h_n = BLAKE3-keyed(K_chain, h_{n-1} || seq_n u64 LE || len u64 LE || payload)`.
pub fn chain_step(prev: &[u8; 32], seq: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&CHAIN_KEY);
    h.update(prev);
    h.update(&seq.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

/// The tag stored beside a record: the first [`TAG_LEN`] bytes of its chain head.
pub fn tag_of(head: &[u8; 32]) -> [u8; TAG_LEN] {
    [head[0], head[1], head[2], head[3]]
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn arr32(b: &[u8], at: usize) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[at..at + 32]);
    a
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

/// The fixed header at the start of each segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number, 1-based, equal to the number in the file name.
    pub number: u32,
    /// Seq of the first record this segment holds (= previous segment's last seq + 1).
    pub first_seq: u64,
    /// Chain head after the previous segment's last record (zeros for the first segment).
    pub prev_head: [u8; 32],
    /// Format version the segment was written in (1 or 2).
    pub version: u32,
    /// Flags (header bytes 20..24): [`SEGMENT_FLAG_REMOVED`] or 0.
    pub flags: u32,
}

/// Segment header flag (format 2): the segment's payloads were removed by a retention policy;
/// what follows the header is a [`RemovedStub`], not blocks.
pub const SEGMENT_FLAG_REMOVED: u32 = 1;
/// Magic of a removed segment's stub.
pub const REMOVED_MAGIC: [u8; 8] = *b"PMRMVD\0\0";
/// Fixed part of the stub, before the leaf hashes.
pub const REMOVED_STUB_LEN: usize = 96;
/// Context of the stub checksum key.
const REMOVED_CONTEXT: &str = "pugmark ledger v2 removed segment";

/// What is left of a segment whose payloads a retention policy removed: its records' leaf
/// hashes (the Merkle tree and every proof of kept records stay computable), the chain head
/// after its last record (the chain continues into the next segment) and the ledger record
/// that removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedStub {
    /// Number of records the segment held.
    pub count: u64,
    /// Chain head after the segment's last record.
    pub head_after: [u8; 32],
    /// Seq of the (signed) retention record that removed the payloads.
    pub record: u64,
    /// Leaf hashes of the records, in order.
    pub leaves: Vec<[u8; 32]>,
}

impl RemovedStub {
    /// Encodes the stub (the bytes after the segment header).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(REMOVED_STUB_LEN + 32 * self.leaves.len());
        b.extend_from_slice(&REMOVED_MAGIC);
        b.extend_from_slice(&self.count.to_le_bytes());
        b.extend_from_slice(&self.head_after);
        b.extend_from_slice(&self.record.to_le_bytes());
        b.extend_from_slice(&[0u8; 8]);
        let sum = self.checksum();
        b.extend_from_slice(&sum);
        for l in &self.leaves {
            b.extend_from_slice(l);
        }
        b
    }

    fn checksum(&self) -> [u8; 32] {
        let key = blake3::derive_key(REMOVED_CONTEXT, b"");
        let mut h = blake3::Hasher::new_keyed(&key);
        h.update(&self.count.to_le_bytes());
        h.update(&self.head_after);
        h.update(&self.record.to_le_bytes());
        for l in &self.leaves {
            h.update(l);
        }
        *h.finalize().as_bytes()
    }

    /// Decodes a stub; `Err` says what is wrong (damage).
    pub fn decode(b: &[u8]) -> Result<RemovedStub, &'static str> {
        if b.len() < REMOVED_STUB_LEN || b[0..8] != REMOVED_MAGIC {
            return Err("removed-segment stub header damaged");
        }
        let count = le_u64(b, 8);
        let leaves_len = count
            .checked_mul(32)
            .filter(|n| *n == (b.len() - REMOVED_STUB_LEN) as u64)
            .ok_or("removed-segment stub length does not match its record count")?;
        let _ = leaves_len;
        let stub = RemovedStub {
            count,
            head_after: arr32(b, 16),
            record: le_u64(b, 48),
            leaves: b[REMOVED_STUB_LEN..]
                .chunks_exact(32)
                .map(|c| arr32(c, 0))
                .collect(),
        };
        if stub.checksum() != arr32(b, 64) {
            return Err("removed-segment stub checksum mismatch");
        }
        Ok(stub)
    }
}

/// Why a segment header could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short,
    /// The magic is wrong: not a pugmark segment (or the first bytes were damaged).
    Magic,
    /// Written by another format version.
    Version(u32),
    /// The checksum does not cover the fields: damaged.
    Checksum,
}

impl SegmentHeader {
    /// Encodes the header to its 128 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.number.to_le_bytes());
        // 20..24 flags, zero in format 1.
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        b[32..64].copy_from_slice(&self.prev_head);
        // 64..112 reserved, zero.
        let sum = segment_checksum(&b[..112]);
        b[112..128].copy_from_slice(&sum);
        b
    }

    /// Decodes and checks a header; the version is checked before the checksum so that a
    /// ledger of another format version gives a version error, not a corruption error.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        if b.len() < 12 {
            return Err(SegmentHeaderError::Short);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::Magic);
        }
        let version = le_u32(b, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SegmentHeaderError::Version(version));
        }
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(SegmentHeaderError::Short);
        }
        if segment_checksum(&b[..112]) != arr16(b, 112)
            || le_u32(b, 12) != SEGMENT_HEADER_LEN as u32
            || le_u64(b, 24) == 0
        {
            return Err(SegmentHeaderError::Checksum);
        }
        Ok(SegmentHeader {
            number: le_u32(b, 16),
            first_seq: le_u64(b, 24),
            prev_head: arr32(b, 32),
            version,
            flags: le_u32(b, 20),
        })
    }
}

fn segment_checksum(bytes: &[u8]) -> [u8; 16] {
    let h = blake3::keyed_hash(&SEGMENT_KEY, bytes);
    arr16(h.as_bytes(), 0)
}

/// The fixed, uncompressed header in front of each block's compressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Number of records in the block (at least 1).
    pub count: u32,
    /// Seq of the block's first record.
    pub first_seq: u64,
    /// Length of the compressed bytes that follow the header.
    pub compressed_len: u32,
    /// Length of the decompressed record area.
    pub uncompressed_len: u32,
    /// Chain head after the block's last record.
    pub head: [u8; 32],
    /// Codec (byte 56): [`CODEC_ZSTD`] or, in version-3 segments, [`CODEC_ZSTD_COLUMNS`].
    pub codec: u8,
    /// Last block of its batch ([`BLOCK_FLAG_BATCH_END`] in byte 57).
    pub batch_end: bool,
    /// Format 2: the block MAC (header bytes 58..64, see [`block_mac`]); zeros in format 1.
    pub mac: [u8; MAC_LEN],
    /// Checksum over header bytes 0..64 and the compressed bytes.
    pub checksum: [u8; 16],
}

impl BlockHeader {
    /// Encodes the header; `checksum` must already be computed with [`block_checksum`].
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = self.encode_fields();
        b[64..80].copy_from_slice(&self.checksum);
        b
    }

    /// Header bytes with the checksum field zeroed (bytes 0..64 are what the checksum covers).
    pub fn encode_fields(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(&BLOCK_MAGIC);
        b[4..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.compressed_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.uncompressed_len.to_le_bytes());
        b[24..56].copy_from_slice(&self.head);
        b[56] = self.codec;
        b[57] = if self.batch_end {
            BLOCK_FLAG_BATCH_END
        } else {
            0
        };
        b[58..64].copy_from_slice(&self.mac);
        b
    }

    /// Decodes a header, checking magic, codec and length bounds (not the checksum, which
    /// needs the compressed bytes: see [`BlockHeader::checksum_ok`]).
    pub fn decode(b: &[u8; BLOCK_HEADER_LEN]) -> Result<BlockHeader, &'static str> {
        if b[0..4] != BLOCK_MAGIC {
            return Err("bad block magic");
        }
        if !matches!(b[56], CODEC_ZSTD | CODEC_ZSTD_COLUMNS) || b[57] & !BLOCK_FLAGS_KNOWN != 0 {
            return Err("unknown block codec or flags");
        }
        let h = BlockHeader {
            count: le_u32(b, 4),
            first_seq: le_u64(b, 8),
            compressed_len: le_u32(b, 16),
            uncompressed_len: le_u32(b, 20),
            head: arr32(b, 24),
            codec: b[56],
            batch_end: b[57] & BLOCK_FLAG_BATCH_END != 0,
            mac: [b[58], b[59], b[60], b[61], b[62], b[63]],
            checksum: arr16(b, 64),
        };
        if h.count == 0 || h.first_seq == 0 {
            return Err("block header has zero count or zero first seq");
        }
        if h.compressed_len > MAX_BLOCK_LEN || h.uncompressed_len > MAX_BLOCK_LEN {
            return Err("block header lengths out of range");
        }
        let per_record = if h.codec == CODEC_ZSTD {
            RECORD_PREFIX_LEN
        } else {
            MIN_COLUMN_RECORD_LEN
        };
        if (h.uncompressed_len as u64) < h.count as u64 * per_record as u64 {
            return Err("block header count does not fit its length");
        }
        Ok(h)
    }

    /// Total bytes the block occupies in the segment.
    pub fn total_len(&self) -> u64 {
        BLOCK_HEADER_LEN as u64 + self.compressed_len as u64
    }

    /// Seq after the block's last record.
    pub fn end_seq(&self) -> u64 {
        self.first_seq.saturating_add(self.count as u64)
    }

    /// Whether the stored checksum matches the header fields and `compressed`.
    pub fn checksum_ok(&self, compressed: &[u8]) -> bool {
        block_checksum(&self.encode_fields()[..64], compressed) == self.checksum
    }
}

/// The block checksum: first 16 bytes of `BLAKE3-keyed(K_block, header[0..64] || compressed)`.
pub fn block_checksum(header_fields: &[u8], compressed: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(&BLOCK_KEY);
    h.update(header_fields);
    h.update(compressed);
    arr16(h.finalize().as_bytes(), 0)
}

/// Bytes of the block MAC kept in block header bytes 58..64.
pub const MAC_LEN: usize = 6;
/// Context deriving the MAC key from the ledger's private key seed.
const MAC_CONTEXT: &str = "pugmark ledger v2 block mac";

/// The secret MAC key of a ledger: `derive_key("pugmark ledger v2 block mac", seed)`, where
/// `seed` is the 32-byte Ed25519 private key seed that signs the checkpoints.
pub fn mac_key(seed: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(MAC_CONTEXT, seed)
}

/// The block MAC: first 6 bytes of `BLAKE3-keyed(K_mac, header bytes 0..58)`. The header holds
/// the block's first seq, count and chain head after its last record, and the chain commits to
/// every record before it, so a valid MAC on a block vouches for the whole ledger up to it.
pub fn block_mac(key: &[u8; 32], header_fields: &[u8]) -> [u8; MAC_LEN] {
    let h = blake3::keyed_hash(key, &header_fields[..58]);
    let mut m = [0u8; MAC_LEN];
    m.copy_from_slice(&h.as_bytes()[..MAC_LEN]);
    m
}

/// Appends one record's framing and payload to a block's uncompressed area.
pub fn push_record(area: &mut Vec<u8>, tag: [u8; TAG_LEN], payload: &[u8]) {
    area.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    area.extend_from_slice(&tag);
    area.extend_from_slice(payload);
}

/// The codec the blocks of a segment of format `version` use.
pub fn codec_for_version(version: u32) -> u8 {
    if version >= 3 {
        CODEC_ZSTD_COLUMNS
    } else {
        CODEC_ZSTD
    }
}

/// Walks the records of a decompressed block area. Yields `Err(offset)` (offset in the area)
/// when the framing is broken, then stops.
pub struct RecordsIn<'a> {
    area: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> RecordsIn<'a> {
    /// Starts at the beginning of `area`.
    pub fn new(area: &'a [u8]) -> RecordsIn<'a> {
        RecordsIn {
            area,
            at: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for RecordsIn<'a> {
    type Item = Result<([u8; TAG_LEN], &'a [u8]), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.area.len() {
            return None;
        }
        let rest = &self.area[self.at..];
        if rest.len() < RECORD_PREFIX_LEN {
            self.failed = true;
            return Some(Err(self.at));
        }
        let len = le_u32(rest, 0) as usize;
        if len > MAX_RECORD_LEN || rest.len() - RECORD_PREFIX_LEN < len {
            self.failed = true;
            return Some(Err(self.at));
        }
        let tag = [rest[4], rest[5], rest[6], rest[7]];
        let payload = &rest[RECORD_PREFIX_LEN..RECORD_PREFIX_LEN + len];
        self.at += RECORD_PREFIX_LEN + len;
        Some(Ok((tag, payload)))
    }
}

/// One entry of the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// Last seq the checkpoint covers (0: empty ledger).
    pub seq: u64,
    /// Chain head after record `seq`.
    pub head: [u8; 32],
    /// Signing time, seconds since the Unix epoch (informational).
    pub unix_time: u64,
    /// The ed25519 public key that signed it.
    pub public_key: [u8; 32],
    /// ed25519 signature over [`CHECKPOINT_CONTEXT`] || entry bytes 0..88.
    pub signature: [u8; 64],
}

impl CheckpointEntry {
    /// The signed part of the entry (bytes 0..88).
    pub fn signed_bytes(&self) -> [u8; CHECKPOINT_SIGNED_LEN] {
        let mut b = [0u8; CHECKPOINT_SIGNED_LEN];
        b[0..4].copy_from_slice(&CHECKPOINT_MAGIC);
        // 4..8 flags, zero.
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..48].copy_from_slice(&self.head);
        b[48..56].copy_from_slice(&self.unix_time.to_le_bytes());
        b[56..88].copy_from_slice(&self.public_key);
        b
    }

    /// The message the signature covers.
    pub fn message(&self) -> Vec<u8> {
        let mut m = CHECKPOINT_CONTEXT.to_vec();
        m.extend_from_slice(&self.signed_bytes());
        m
    }

    /// The full 152-byte entry.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[..CHECKPOINT_SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        b[CHECKPOINT_SIGNED_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// Decodes an entry (the signature is not checked here).
    pub fn decode(b: &[u8; CHECKPOINT_LEN]) -> Result<CheckpointEntry, &'static str> {
        if b[0..4] != CHECKPOINT_MAGIC || b[4..8] != [0; 4] {
            return Err("bad checkpoint magic or flags");
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[CHECKPOINT_SIGNED_LEN..]);
        Ok(CheckpointEntry {
            seq: le_u64(b, 8),
            head: arr32(b, 16),
            unix_time: le_u64(b, 48),
            public_key: arr32(b, 56),
            signature,
        })
    }
}

/// The checkpoint file header: magic, format version, reserved.
pub fn checkpoint_file_header() -> [u8; CHECKPOINT_FILE_HEADER_LEN] {
    let mut b = [0u8; CHECKPOINT_FILE_HEADER_LEN];
    b[0..8].copy_from_slice(&CHECKPOINT_FILE_MAGIC);
    b[8..12].copy_from_slice(&CHECKPOINT_FILE_VERSION.to_le_bytes());
    b
}

/// Checks a checkpoint file header; `Err(Some(v))` for another version, `Err(None)` if damaged.
pub fn check_checkpoint_file_header(b: &[u8]) -> Result<(), Option<u32>> {
    if b.len() < CHECKPOINT_FILE_HEADER_LEN || b[0..8] != CHECKPOINT_FILE_MAGIC {
        return Err(None);
    }
    let v = le_u32(b, 8);
    if v != CHECKPOINT_FILE_VERSION {
        return Err(Some(v));
    }
    if b[12..16] != [0; 4] {
        return Err(None);
    }
    Ok(())
}

/// The index sidecar header.
pub fn index_header() -> [u8; INDEX_HEADER_LEN] {
    let mut b = [0u8; INDEX_HEADER_LEN];
    b[0..4].copy_from_slice(&INDEX_MAGIC);
    b[4..8].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    b
}

/// Parses an index sidecar into (first seq, offset) entries; `None` if the header is wrong.
/// A partial trailing entry (torn write) is ignored.
pub fn parse_index(b: &[u8]) -> Option<Vec<(u64, u64)>> {
    if b.len() < INDEX_HEADER_LEN || b[..INDEX_HEADER_LEN] != index_header() {
        return None;
    }
    Some(
        b[INDEX_HEADER_LEN..]
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|e| (le_u64(e, 0), le_u64(e, 8)))
            .collect(),
    )
}

/// Encodes one index entry.
pub fn index_entry(first_seq: u64, offset: u64) -> [u8; INDEX_ENTRY_LEN] {
    let mut b = [0u8; INDEX_ENTRY_LEN];
    b[0..8].copy_from_slice(&first_seq.to_le_bytes());
    b[8..16].copy_from_slice(&offset.to_le_bytes());
    b
}

/// File name of segment `n`.
pub fn segment_file_name(n: u32) -> String {
    format!("seg-{n:08}.dat")
}

/// File name of segment `n`'s block index sidecar.
pub fn index_file_name(n: u32) -> String {
    format!("seg-{n:08}.idx")
}

/// Parses a segment file name back to its number.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".dat")?;
    if digits.len() != 8 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly 32 bytes of hex (surrounding whitespace allowed).
pub fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trip_and_checks() {
        let h = SegmentHeader {
            number: 3,
            first_seq: 77,
            prev_head: [9; 32],
            version: FORMAT_VERSION,
            flags: 0,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[30] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(SegmentHeaderError::Checksum));
        let mut v = h.encode();
        v[8] = 4;
        assert_eq!(
            SegmentHeader::decode(&v),
            Err(SegmentHeaderError::Version(4))
        );
    }

    #[test]
    fn block_header_round_trip_and_checksum() {
        let compressed = b"not really zstd";
        let mut h = BlockHeader {
            count: 2,
            first_seq: 5,
            compressed_len: compressed.len() as u32,
            uncompressed_len: 40,
            head: [1; 32],
            codec: CODEC_ZSTD,
            batch_end: true,
            mac: [0; MAC_LEN],
            checksum: [0; 16],
        };
        h.mac = block_mac(&mac_key(&[3; 32]), &h.encode_fields());
        h.checksum = block_checksum(&h.encode_fields()[..64], compressed);
        let b = h.encode();
        assert_eq!(b[57], BLOCK_FLAG_BATCH_END);
        let d = BlockHeader::decode(&b);
        assert_eq!(d, Ok(h));
        assert!(h.checksum_ok(compressed));
        assert!(!h.checksum_ok(b"not really zstE"));
        // The flag is covered by the checksum.
        let mut cleared = h;
        cleared.batch_end = false;
        assert!(!cleared.checksum_ok(compressed));
        // Unknown flag bits are refused; the MAC depends on the key and on the header.
        let mut bad = b;
        bad[57] |= 0x02;
        assert!(BlockHeader::decode(&bad).is_err());
        assert_ne!(h.mac, block_mac(&mac_key(&[4; 32]), &h.encode_fields()));
        let mut moved = h;
        moved.first_seq += 1;
        assert_ne!(h.mac, block_mac(&mac_key(&[3; 32]), &moved.encode_fields()));
    }

    #[test]
    fn chain_depends_on_every_input() {
        let a = chain_step(&[0; 32], 1, b"x");
        assert_ne!(a, chain_step(&[1; 32], 1, b"x"));
        assert_ne!(a, chain_step(&[0; 32], 2, b"x"));
        assert_ne!(a, chain_step(&[0; 32], 1, b"y"));
        assert_ne!(a, chain_step(&[0; 32], 1, b"x\0"));
    }

    #[test]
    fn records_framing_detects_overrun() {
        let mut area = Vec::new();
        push_record(&mut area, [1; 4], b"hello");
        push_record(&mut area, [2; 4], b"");
        let got: Vec<_> = RecordsIn::new(&area).collect();
        assert_eq!(
            got,
            vec![Ok(([1; 4], &b"hello"[..])), Ok(([2; 4], &b""[..]))]
        );
        area.truncate(area.len() - 1);
        let got: Vec<_> = RecordsIn::new(&area).collect();
        assert_eq!(got[1], Err(13));
    }

    #[test]
    fn names_and_hex() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("seg-1.dat"), None);
        let k = [0xabu8; 32];
        assert_eq!(from_hex32(&to_hex(&k)), Some(k));
    }
}
