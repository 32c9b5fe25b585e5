//! Format 3 block area ("envelope columns", codec 2): a block's records stored column by
//! column so that zstd sees alike bytes together, exactly as docs/FORMAT.md "Version 3"
//! describes.
//!
//! Input of [`encode`]: a block's record area in the framing every format reads
//! (`u32 length, 4-byte tag, payload` per record, [`crate::format::RecordsIn`]). Output of
//! [`decode`]: that same framed area, byte for byte, so everything after decompression
//! (the chain, the tags, the Merkle leaves over "the payload as stored") is computed over the
//! same logical payload bytes as in formats 1 and 2.
//!
//! The ledger's payloads stay opaque in meaning: the encoder only recognises the *byte layout*
//! of a pugmark record envelope (docs/FORMAT.md "Payloads: envelopes", kind 1) to cut each
//! payload into a per-block dictionary entry (version, kind, observer, format, year rule,
//! zone, origin without its line number), its received time, its line number and its raw
//! bytes. Anything else (another kind or version, trailing bytes, a payload that is not an
//! envelope at all) is stored verbatim. The decoder does not parse envelopes: it splices the
//! stored pieces back in a fixed order, so a payload is always reconstructed exactly, and the
//! chain that `verify` and the writer's open recompute over the reconstructed bytes checks it.
//!
//! The compressed bytes of a codec-2 block are two zstd frames around the tags ([`pack`]):
//! the tags are hash bytes that no compressor shrinks, and text and small numbers compress
//! better in frames of their own than mixed (measured on bench/gen's day: one frame of all
//! columns 0.270× of raw, this layout 0.256×; BENCHMARKS.md).
//!
//! Hand-written rather than a columnar crate (Arrow/Parquet): the layout is six short
//! columns of varints beside the raw bytes, and the decoder has to be fuzzable and
//! allocation-bounded by the block header's lengths.

use crate::format::{
    BlockHeader, CODEC_ZSTD_COLUMNS, MAX_BLOCK_LEN, MAX_RECORD_LEN, RECORD_PREFIX_LEN, TAG_LEN,
};

/// Offset of the received time in a kind-1 envelope (after version and kind).
const RECEIVED_AT: usize = 2;

/// Appends `v` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over the stored column bytes; every read is bounds-checked.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.b.get(self.at) else {
                return Err("envelope columns end inside a number");
            };
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("envelope columns hold an overlong number")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("envelope columns are shorter than their lengths say")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn usize(&mut self, max: usize) -> Result<usize, &'static str> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or("envelope columns hold a length out of range")
    }
}

/// A kind-1 envelope cut into its pieces (byte ranges of the payload).
struct Shaped {
    received: i64,
    /// End of the fields before the line number (or of all fields if there is none).
    line_at: Option<usize>,
    /// Start of the raw bytes' u32 length field.
    raw_len_at: usize,
}

fn u32_at(p: &[u8], at: usize) -> Option<usize> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Skips a `str` (u32 length + bytes) at `at`; the position after it.
fn skip_str(p: &[u8], at: usize) -> Option<usize> {
    let n = u32_at(p, at)?;
    let end = at.checked_add(4)?.checked_add(n)?;
    (end <= p.len()).then_some(end)
}

/// Recognises the byte layout of a record envelope (versions 1 and 2, kind 1); `None` for
/// anything else, which is then stored verbatim. Only lengths are followed: no field's
/// meaning is checked (a UTF-8 error in a path is stored like any other byte).
fn shape(p: &[u8]) -> Option<Shaped> {
    if p.len() < 13 || !matches!(p[0], 1 | 2) || p[1] != 1 {
        return None;
    }
    let mut r = [0u8; 8];
    r.copy_from_slice(&p[RECEIVED_AT..RECEIVED_AT + 8]);
    let received = i64::from_le_bytes(r);
    // observer (10), format (11), year rule (12 + 0/2/8)
    let mut at = 13
        + match p[12] {
            0 => 0,
            1 => 2,
            2 => 8,
            _ => return None,
        };
    at = skip_str(p, at)?; // zone
    let origin = *p.get(at)?;
    at += 1;
    let mut line_at = None;
    match origin {
        1 | 4 => {
            at = skip_str(p, at)?;
            line_at = Some(at);
            at = at.checked_add(8).filter(|e| *e <= p.len())?;
            if origin == 4 {
                at = skip_str(p, at)?;
            }
        }
        2 => at = skip_str(p, skip_str(p, at)?)?,
        3 => at = skip_str(p, skip_str(p, skip_str(p, at)?)?)?,
        _ => return None,
    }
    // The raw bytes run to the end of the payload.
    if u32_at(p, at)? != p.len() - at - 4 {
        return None;
    }
    Some(Shaped {
        received,
        line_at,
        raw_len_at: at,
    })
}

/// Cuts a framed record area (`u32 len, tag, payload` per record) into envelope columns.
/// `Err` if the area's framing is broken (the writer never makes one).
/// The parts [`pack`] stores: header and dictionary, context numbers, tags,
/// received times, line numbers, lengths, bytes (separately for the size measurements in
/// BENCHMARKS.md, through `testing::column_parts`).
pub fn encode_parts(area: &[u8]) -> Result<[Vec<u8>; 7], &'static str> {
    let mut dict: Vec<Vec<u8>> = Vec::new();
    let mut ctx_col = Vec::new();
    let mut tags = Vec::new();
    let mut recv_col = Vec::new();
    let mut line_col = Vec::new();
    let mut len_col = Vec::new();
    let mut bytes = Vec::with_capacity(area.len());
    let (mut prev_recv, mut prev_line) = (0i64, 0i64);
    let mut meta = Vec::new();
    let mut count = 0u64;
    for r in crate::format::RecordsIn::new(area) {
        let (tag, p) = r.map_err(|_| "record framing broken")?;
        count += 1;
        tags.extend_from_slice(&tag);
        let Some(s) = shape(p) else {
            put_varint(&mut ctx_col, 0);
            put_varint(&mut len_col, p.len() as u64);
            bytes.extend_from_slice(p);
            continue;
        };
        // The dictionary entry: line position, then the envelope without received time,
        // line number and raw bytes.
        meta.clear();
        let fields = RECEIVED_AT + 8;
        match s.line_at {
            Some(l) => {
                put_varint(&mut meta, (RECEIVED_AT + l - fields + 1) as u64);
                meta.extend_from_slice(&p[..RECEIVED_AT]);
                meta.extend_from_slice(&p[fields..l]);
                meta.extend_from_slice(&p[l + 8..s.raw_len_at]);
            }
            None => {
                put_varint(&mut meta, 0);
                meta.extend_from_slice(&p[..RECEIVED_AT]);
                meta.extend_from_slice(&p[fields..s.raw_len_at]);
            }
        }
        // Blocks hold a handful of distinct origins: a linear search beats hashing here.
        let idx = match dict.iter().position(|d| *d == meta) {
            Some(i) => i,
            None => {
                dict.push(meta.clone());
                dict.len() - 1
            }
        };
        put_varint(&mut ctx_col, idx as u64 + 1);
        put_varint(&mut recv_col, zigzag(s.received.wrapping_sub(prev_recv)));
        prev_recv = s.received;
        if let Some(l) = s.line_at {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[l..l + 8]);
            let line = i64::from_le_bytes(b);
            put_varint(&mut line_col, zigzag(line.wrapping_sub(prev_line)));
            prev_line = line;
        }
        let raw = &p[s.raw_len_at + 4..];
        put_varint(&mut len_col, raw.len() as u64);
        bytes.extend_from_slice(raw);
    }
    let mut head = Vec::new();
    put_varint(&mut head, count);
    put_varint(&mut head, dict.len() as u64);
    for d in &dict {
        put_varint(&mut head, d.len() as u64);
        head.extend_from_slice(d);
    }
    Ok([head, ctx_col, tags, recv_col, line_col, len_col, bytes])
}

/// One dictionary entry, split at the line number's place.
struct Ctx<'a> {
    /// Version and kind.
    head: &'a [u8],
    /// Fields between the received time and the line number (all fields without a line).
    before: &'a [u8],
    /// Fields after the line number.
    after: &'a [u8],
    has_line: bool,
}

/// A block's envelope columns, parsed and checked (everything but the raw bytes).
struct Cols<'a> {
    dict: Vec<Ctx<'a>>,
    /// Per record: 0 (stored verbatim) or 1 + its dictionary entry.
    ctx: Vec<usize>,
    /// Received times of the shaped records, in order.
    recv: Vec<i64>,
    /// Line numbers of the shaped records whose entry has one, in order.
    lines: Vec<i64>,
    /// Raw bytes' length per record.
    lens: Vec<usize>,
}

impl Cols<'_> {
    /// A record's length once its envelope is put back: `len` raw bytes, after the entry
    /// `x` names (0: stored verbatim).
    fn record_len(&self, x: usize, len: usize) -> usize {
        match x.checked_sub(1).and_then(|i| self.dict.get(i)) {
            None => len,
            Some(e) => {
                let line = if e.has_line { 8 } else { 0 };
                (e.head.len() + 8 + e.before.len() + line + e.after.len() + 4).saturating_add(len)
            }
        }
    }
}

/// Parses the first frame's columns of a block that must hold exactly `count` records.
/// Every length is checked before use, so damaged or hostile bytes give `Err`, never a panic
/// or a huge allocation.
fn parse<'a>(cols: &'a [u8], tags: &[u8], count: u32) -> Result<Cols<'a>, &'static str> {
    let mut c = Cur { b: cols, at: 0 };
    if c.varint()? != count as u64 {
        return Err("envelope columns hold another record count than the block header");
    }
    let n = count as usize;
    // Each record takes its tag, and at least a context number and a length: a count the
    // bytes cannot hold is refused before anything is allocated from it.
    if tags.len() != n.saturating_mul(TAG_LEN) || n.saturating_mul(2) > cols.len() {
        return Err("envelope columns are too short for the block's record count");
    }
    let d = c.usize(n)?;
    let mut dict = Vec::with_capacity(d);
    for _ in 0..d {
        let len = c.usize(cols.len())?;
        let mut e = Cur {
            b: c.take(len)?,
            at: 0,
        };
        let line_pos = e.usize(MAX_RECORD_LEN)?;
        let rest = &e.b[e.at..];
        if rest.len() < RECEIVED_AT {
            return Err("envelope columns dictionary entry too short");
        }
        let (head, fields) = rest.split_at(RECEIVED_AT);
        let (before, after, has_line) = match line_pos {
            0 => (fields, &fields[..0], false),
            l if l > RECEIVED_AT && l - 1 - RECEIVED_AT <= fields.len() => {
                let (a, b) = fields.split_at(l - 1 - RECEIVED_AT);
                (a, b, true)
            }
            _ => return Err("envelope columns line position out of range"),
        };
        dict.push(Ctx {
            head,
            before,
            after,
            has_line,
        });
    }
    let mut ctx = Vec::with_capacity(n);
    for _ in 0..n {
        ctx.push(c.usize(d)?);
    }
    let shaped = ctx.iter().filter(|i| **i > 0).count();
    let mut recv = Vec::with_capacity(shaped);
    let mut prev = 0i64;
    for _ in 0..shaped {
        prev = prev.wrapping_add(unzigzag(c.varint()?));
        recv.push(prev);
    }
    let lined = ctx
        .iter()
        .filter(|i| **i > 0 && dict[**i - 1].has_line)
        .count();
    let mut lines = Vec::with_capacity(lined);
    let mut prev = 0i64;
    for _ in 0..lined {
        prev = prev.wrapping_add(unzigzag(c.varint()?));
        lines.push(prev);
    }
    let mut lens = Vec::with_capacity(n);
    for _ in 0..n {
        lens.push(c.usize(MAX_RECORD_LEN)?);
    }
    if c.at != cols.len() {
        return Err("envelope columns have trailing bytes");
    }
    Ok(Cols {
        dict,
        ctx,
        recv,
        lines,
        lens,
    })
}

/// Appends the framed area of the block's records `from..k` (all of them when `from` is 0
/// and `k` the count) to `out`; `bytes` holds at least the first `k` records' raw bytes.
/// The output is bounded by [`MAX_BLOCK_LEN`].
fn emit(
    cols: &Cols<'_>,
    tags: &[u8],
    bytes: &[u8],
    from: usize,
    k: usize,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let (mut recv, mut lines) = (cols.recv.iter(), cols.lines.iter());
    let mut c = Cur { b: bytes, at: 0 };
    let start = out.len();
    // Sized once: grown by doubling, the area was copied and its pages touched twice (a
    // tenth of a `who` process's page faults). Capped: the loop below refuses more.
    let framed: usize = cols
        .ctx
        .iter()
        .zip(&cols.lens)
        .take(k)
        .skip(from)
        .map(|(&x, &len)| RECORD_PREFIX_LEN.saturating_add(cols.record_len(x, len)))
        .fold(0, usize::saturating_add);
    out.reserve(framed.min(MAX_BLOCK_LEN as usize));
    for (i, (&x, &len)) in cols.ctx.iter().zip(&cols.lens).take(k).enumerate() {
        let raw = c.take(len)?;
        if i < from {
            // Not asked for: its place in the columns is passed, nothing is copied.
            if x > 0 {
                recv.next().ok_or("envelope columns lost a received time")?;
                if cols.dict[x - 1].has_line {
                    lines.next().ok_or("envelope columns lost a line number")?;
                }
            }
            continue;
        }
        let tag = &tags[i * TAG_LEN..(i + 1) * TAG_LEN];
        let total = cols.record_len(x, len);
        if total > MAX_RECORD_LEN
            || (out.len() - start) + RECORD_PREFIX_LEN + total > MAX_BLOCK_LEN as usize
        {
            return Err("envelope columns make a record or block too large");
        }
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(tag);
        if x == 0 {
            out.extend_from_slice(raw);
            continue;
        }
        let e = &cols.dict[x - 1];
        out.extend_from_slice(e.head);
        let r = recv.next().ok_or("envelope columns lost a received time")?;
        out.extend_from_slice(&r.to_le_bytes());
        out.extend_from_slice(e.before);
        if e.has_line {
            let l = lines.next().ok_or("envelope columns lost a line number")?;
            out.extend_from_slice(&l.to_le_bytes());
        }
        out.extend_from_slice(e.after);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(raw);
    }
    if k == cols.ctx.len() && c.at != bytes.len() {
        return Err("envelope columns have trailing raw bytes");
    }
    Ok(())
}

/// Decodes envelope columns back into the framed record area, appending to `out`; the block
/// must hold exactly `count` records ([`parse`], [`emit`]).
fn decode(
    cols: &[u8],
    tags: &[u8],
    bytes: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let c = parse(cols, tags, count)?;
    emit(&c, tags, bytes, 0, count as usize, out)
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Compresses a framed record area as a block of `codec`, into `out`; returns the block's
/// uncompressed length U (header bytes 20..24).
///
/// [`CODEC_ZSTD`]: one zstd frame of the framed area, U its length. [`CODEC_ZSTD_COLUMNS`]:
/// `u32 P` (length of the first frame), `u32 M` (its decompressed length), the first frame
/// (zstd of the dictionary, context numbers, received times, line numbers and lengths), the
/// records' tags as they are (4 × count bytes), then one zstd frame of the raw bytes to the
/// end; U = M + 4 × count + the raw bytes' length.
pub fn pack(
    codec: u8,
    framed: &[u8],
    cx: &mut zstd::bulk::Compressor<'static>,
    out: &mut Vec<u8>,
) -> std::io::Result<u32> {
    out.clear();
    if codec != CODEC_ZSTD_COLUMNS {
        out.reserve(zstd::zstd_safe::compress_bound(framed.len()));
        cx.compress_to_buffer(framed, out)?;
        return Ok(framed.len() as u32);
    }
    let [head, ctx, tags, recv, line, len, bytes] =
        encode_parts(framed).map_err(std::io::Error::other)?;
    let mut meta = head;
    for col in [ctx, recv, line, len] {
        meta.extend_from_slice(&col);
    }
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(meta.len()));
    cx.compress_to_buffer(meta.as_slice(), &mut frame)?;
    out.reserve(8 + frame.len() + tags.len() + zstd::zstd_safe::compress_bound(bytes.len()));
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame);
    out.extend_from_slice(&tags);
    compress_in_blocks(cx, &bytes, out)?;
    Ok((meta.len() + tags.len() + bytes.len()) as u32)
}

/// Input bytes per zstd block of a codec-2 block's raw-bytes frame. The frame is one zstd
/// frame as before (any reader decodes it whole); ending a zstd block every 16 KiB lets a
/// reader that wants one record stop decompressing after the zstd block holding it
/// ([`unpack_prefix`]): a web page's search or timeline reads thousands of records, each in
/// a block of its own, and whole-block decompression was half its time. Measured on
/// bench/ui's day (BENCHMARKS.md, 2026-12-07): ledger +1.3 % with 16 KiB blocks (32 KiB:
/// +0.0 %), a VO's search page p50 190 → ~122 ms (32 KiB: ~130 ms).
pub const RAW_ZSTD_BLOCK: usize = 16 * 1024;

/// Appends one zstd frame of `src` to `out`, its zstd blocks ended every
/// [`RAW_ZSTD_BLOCK`] input bytes (a streaming flush: matches still reach back across them).
fn compress_in_blocks(
    cx: &mut zstd::bulk::Compressor<'static>,
    src: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
    let zerr = |code| std::io::Error::other(zstd::zstd_safe::get_error_name(code));
    let cctx = cx.context_mut();
    cctx.reset(ResetDirective::SessionOnly).map_err(zerr)?;
    cctx.set_pledged_src_size(Some(src.len() as u64))
        .map_err(zerr)?;
    out.reserve(zstd::zstd_safe::compress_bound(src.len()) + 64);
    let mut at = 0;
    loop {
        let end = (at + RAW_ZSTD_BLOCK).min(src.len());
        let last = end == src.len();
        let mut input = InBuffer::around(&src[at..end]);
        let how = if last {
            EndDirective::ZSTD_e_end
        } else {
            EndDirective::ZSTD_e_flush
        };
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(RAW_ZSTD_BLOCK);
            }
            let pos = out.len();
            let mut ob = OutBuffer::around_pos(out, pos);
            let left = cctx
                .compress_stream2(&mut ob, &mut input, how)
                .map_err(zerr)?;
            if left == 0 && input.pos() == end - at {
                break;
            }
        }
        if last {
            return Ok(());
        }
        at = end;
    }
}

/// Where a codec-2 block's parts lie in its compressed bytes (every length checked against
/// the header's U and count): the meta frame is `comp[8..frame_end]` and decompresses to `m`
/// bytes, the tags are `comp[frame_end..tags_end]`, the raw-bytes frame the rest, `rest`
/// bytes decompressed.
struct Layout {
    m: usize,
    frame_end: usize,
    tags_end: usize,
    rest: usize,
}

fn layout(h: &BlockHeader, comp: &[u8]) -> Result<Layout, String> {
    let u = h.uncompressed_len as usize;
    let short = || "block's envelope columns are cut short".to_string();
    let p = u32_le(comp, 0).ok_or_else(short)? as usize;
    let m = u32_le(comp, 4).ok_or_else(short)? as usize;
    let tags_len = h.count as usize * TAG_LEN;
    let frame_end = 8usize
        .checked_add(p)
        .filter(|e| *e <= comp.len())
        .ok_or_else(short)?;
    let tags_end = frame_end
        .checked_add(tags_len)
        .filter(|e| *e <= comp.len())
        .ok_or_else(short)?;
    let rest = m
        .checked_add(tags_len)
        .and_then(|x| u.checked_sub(x))
        .ok_or("block's envelope column lengths exceed its stated length")?;
    Ok(Layout {
        m,
        frame_end,
        tags_end,
        rest,
    })
}

/// One zstd decompression context for a block reader's whole-frame and partial reads: a
/// context costs a `cpuid` (a trap to the hypervisor in a VM, ~30 µs) and ~100 KiB, and a
/// `who` process made three.
pub type Dctx = zstd::zstd_safe::DCtx<'static>;

/// A new [`Dctx`].
pub fn dctx() -> Dctx {
    Dctx::create()
}

/// Decompresses the zstd frame(s) `src` into `dst` (cleared), which must come to exactly
/// `len` bytes.
fn inflate(dctx: &mut Dctx, src: &[u8], dst: &mut Vec<u8>, len: usize) -> Result<(), String> {
    dst.clear();
    dst.reserve(len);
    match dctx.decompress(dst, src) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err("block does not decompress to its stated length".into()),
        Err(code) => Err(format!(
            "block does not decompress: {}",
            zstd::zstd_safe::get_error_name(code)
        )),
    }
}

/// Reusable buffers for [`unpack`].
#[derive(Debug, Default)]
pub struct Scratch {
    meta: Vec<u8>,
    bytes: Vec<u8>,
}

/// Decompresses a block's `comp` bytes (header `h`, checksum already checked) into its
/// framed record area `out`, whatever the codec. Every length is checked against the
/// header's U and count before use.
pub fn unpack(
    h: &BlockHeader,
    comp: &[u8],
    dctx: &mut Dctx,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if h.codec != CODEC_ZSTD_COLUMNS {
        return inflate(dctx, comp, out, h.uncompressed_len as usize);
    }
    let Layout {
        m,
        frame_end,
        tags_end,
        rest,
    } = layout(h, comp)?;
    out.clear();
    inflate(dctx, &comp[8..frame_end], &mut scratch.meta, m)?;
    inflate(dctx, &comp[tags_end..], &mut scratch.bytes, rest)?;
    decode(
        &scratch.meta,
        &comp[frame_end..tags_end],
        &scratch.bytes,
        h.count,
        out,
    )
    .map_err(|w| format!("block's envelope columns do not decode: {w}"))
}

/// Reads only a codec-2 block's `records`, `from..want` (`want` at least `from + 1`, at most
/// the count) into their framed area `out`: all of the first frame (the columns are small
/// and say where each record's raw bytes end), and of the raw-bytes frame only as far as
/// the zstd block holding the last wanted byte ([`RAW_ZSTD_BLOCK`]; a block written before
/// that was one zstd block and is decompressed whole); records before `from` are passed
/// without being copied. `Ok((from, want))`: the records read (`(0, count)` for another
/// codec, or all of a block asked from its start, read by [`unpack`]). The columns are
/// checked as by [`unpack`]; the raw bytes after the wanted ones are not looked at.
pub fn unpack_prefix(
    h: &BlockHeader,
    comp: &[u8],
    dctx: &mut Dctx,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
    records: std::ops::Range<usize>,
) -> Result<(usize, usize), String> {
    let (from, want) = (records.start, records.end);
    let n = h.count as usize;
    if h.codec != CODEC_ZSTD_COLUMNS || (from == 0 && want >= n) || n == 0 {
        unpack(h, comp, dctx, scratch, out)?;
        return Ok((0, n));
    }
    let from = from.min(n - 1);
    let want = want.clamp(from + 1, n);
    out.clear();
    let Layout {
        m,
        frame_end,
        tags_end,
        rest,
    } = layout(h, comp)?;
    inflate(dctx, &comp[8..frame_end], &mut scratch.meta, m)?;
    let tags = &comp[frame_end..tags_end];
    let cols = parse(&scratch.meta, tags, h.count)
        .map_err(|w| format!("block's envelope columns do not decode: {w}"))?;
    let need: usize = cols.lens[..want].iter().sum();
    if need > rest {
        return Err("block's envelope column lengths exceed its stated length".into());
    }
    // Decompress into exactly `need` bytes: zstd stops once they are written, having decoded
    // only the zstd blocks up to the one holding the last of them.
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
    let zerr = |code| {
        format!(
            "block does not decompress: {}",
            zstd::zstd_safe::get_error_name(code)
        )
    };
    dctx.reset(ResetDirective::SessionOnly).map_err(zerr)?;
    // Only grown, never cleared: zeroing a 128 KiB buffer per read showed in the profile, and
    // zstd writes every byte of the first `need` before they are read.
    if scratch.bytes.len() < need {
        scratch.bytes.resize(need, 0);
    }
    let mut input = InBuffer::around(&comp[tags_end..]);
    let mut ob = OutBuffer::around(&mut scratch.bytes[..need]);
    while ob.pos() < need {
        let before = (input.pos(), ob.pos());
        let left = dctx.decompress_stream(&mut ob, &mut input).map_err(zerr)?;
        if (left == 0 || (input.pos(), ob.pos()) == before) && ob.pos() < need {
            return Err("block does not decompress to its stated length".into());
        }
    }
    emit(&cols, tags, &scratch.bytes[..need], from, want, out)
        .map_err(|w| format!("block's envelope columns do not decode: {w}"))?;
    Ok((from, want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::push_record;

    fn s(b: &mut Vec<u8>, x: &[u8]) {
        b.extend_from_slice(&(x.len() as u32).to_le_bytes());
        b.extend_from_slice(x);
    }

    /// A kind-1 envelope with a file origin (`origin` 1), file-from-sender (4), peer (2) or
    /// authenticated peer (3), by hand after docs/FORMAT.md "Payloads: envelopes".
    fn env(recv: i64, origin: u8, line: u64, raw: &[u8]) -> Vec<u8> {
        let mut b = vec![2, 1];
        b.extend_from_slice(&recv.to_le_bytes());
        b.extend_from_slice(&[2, 1, 2]);
        b.extend_from_slice(&1_700_000_000i64.to_le_bytes());
        s(&mut b, b"Europe/Rome");
        b.push(origin);
        match origin {
            1 | 4 => {
                s(&mut b, b"/var/log/syslog");
                b.extend_from_slice(&line.to_le_bytes());
                if origin == 4 {
                    s(&mut b, b"10.0.0.1");
                }
            }
            2 => {
                s(&mut b, b"10.1.1.1:514");
                s(&mut b, b"udp");
            }
            _ => {
                s(&mut b, b"10.1.1.1:6514");
                s(&mut b, b"tls");
                s(&mut b, b"CN=host");
            }
        }
        s(&mut b, raw);
        b
    }

    fn header(count: usize, u: u32, comp: &[u8]) -> BlockHeader {
        BlockHeader {
            count: count as u32,
            first_seq: 1,
            compressed_len: comp.len() as u32,
            uncompressed_len: u,
            head: [0; 32],
            codec: CODEC_ZSTD_COLUMNS,
            batch_end: true,
            mac: [0; 6],
            checksum: [0; 16],
        }
    }

    fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut area = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            push_record(
                &mut area,
                (i as u32).wrapping_mul(2_654_435_761).to_le_bytes(),
                p,
            );
        }
        area
    }

    fn round_trip(payloads: &[Vec<u8>]) -> usize {
        let area = framed(payloads);
        let mut cx = zstd::bulk::Compressor::new(3).expect("cx");
        let mut comp = Vec::new();
        let u = pack(CODEC_ZSTD_COLUMNS, &area, &mut cx, &mut comp).expect("pack");
        let h = header(payloads.len(), u, &comp);
        let mut dctx = dctx();
        let mut back = Vec::new();
        unpack(&h, &comp, &mut dctx, &mut Scratch::default(), &mut back).expect("unpack");
        assert_eq!(back, area);
        comp.len()
    }

    #[test]
    fn every_shape_round_trips_byte_for_byte() {
        let mut ps = Vec::new();
        for i in 0..200u64 {
            ps.push(env(
                1_000_000 + i as i64 * 7,
                1,
                i + 1,
                b"Dec  6 host sshd[1]: hi",
            ));
        }
        ps.push(env(-5, 4, u64::MAX, b""));
        ps.push(env(3, 2, 0, b"peer line"));
        ps.push(env(4, 3, 0, b"tls line"));
        // Not envelopes, or envelopes of other kinds / with trailing bytes: verbatim.
        ps.push(Vec::new());
        ps.push(vec![2, 2, 0, 0]);
        let mut trailing = env(9, 1, 1, b"x");
        trailing.push(0);
        ps.push(trailing);
        let mut bad_len = env(9, 1, 1, b"xy");
        let n = bad_len.len();
        bad_len[n - 6] = 1;
        ps.push(bad_len);
        let packed = round_trip(&ps);
        // The same records as format 2 stores them: the origin, received time and line number
        // of each file record are what the columns save.
        let mut cx = zstd::bulk::Compressor::new(3).expect("cx");
        let mut v2 = Vec::new();
        pack(crate::format::CODEC_ZSTD, &framed(&ps), &mut cx, &mut v2).expect("pack");
        assert!(packed * 10 < v2.len() * 8, "{packed} vs {}", v2.len());
        // Nothing but verbatim records, and an empty raw column, round-trip as well.
        round_trip(&[b"a".to_vec(), Vec::new()]);
        round_trip(&[env(1, 1, 1, b"")]);
    }

    /// A block's compressed bytes as the writer made them before [`RAW_ZSTD_BLOCK`]: the
    /// raw bytes in a single zstd block.
    fn packed_whole(area: &[u8]) -> Vec<u8> {
        let [head, ctx, tags, recv, line, len, bytes] = encode_parts(area).expect("parts");
        let mut meta = head;
        for col in [ctx, recv, line, len] {
            meta.extend_from_slice(&col);
        }
        let frame = zstd::bulk::compress(&meta, 3).expect("zstd");
        let mut out = (frame.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
        out.extend_from_slice(&tags);
        out.extend_from_slice(&zstd::bulk::compress(&bytes, 3).expect("zstd"));
        out
    }

    /// Input bytes a streaming zstd decoder takes from `frame` to give its first `n` bytes.
    fn input_for(frame: &[u8], n: usize) -> usize {
        use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};
        let mut d = DCtx::create();
        let mut out = vec![0u8; n];
        let mut input = InBuffer::around(frame);
        let mut ob = OutBuffer::around(out.as_mut_slice());
        while ob.pos() < n {
            d.decompress_stream(&mut ob, &mut input).expect("zstd");
        }
        input.pos()
    }

    #[test]
    fn a_blocks_first_records_read_alone_equal_the_whole_blocks() {
        // ~100 KiB of raw bytes over 300 records of every shape: four zstd blocks.
        let ps: Vec<_> = (0..300u64)
            .map(|i| {
                // Key fingerprints that do not compress.
                let mut x = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let key: String = (0..24)
                    .map(|_| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        format!("{:02x}", x >> 56)
                    })
                    .collect();
                let raw = format!("{i:05} sshd[{}]: Accepted publickey for user{} from 10.0.{}.{} port {} ssh2: RSA SHA256:{key} {}", 1000 + i * 7, i % 13, i % 7, i % 250, 40000 + i, "-".repeat(120 + (i as usize * 37) % 150));
                if i % 17 == 0 {
                    raw.into_bytes()
                } else {
                    env(1_700_000_000_000 + i as i64, [1, 2, 3, 4][i as usize % 4], i, raw.as_bytes())
                }
            })
            .collect();
        let area = framed(&ps);
        let mut cx = zstd::bulk::Compressor::new(3).expect("cx");
        let mut comp = Vec::new();
        let u = pack(CODEC_ZSTD_COLUMNS, &area, &mut cx, &mut comp).expect("pack");
        let old = packed_whole(&area);
        let h = header(ps.len(), u, &comp);
        let mut dctx = dctx();
        let mut sc = Scratch::default();
        let mut whole = Vec::new();
        unpack(&h, &comp, &mut dctx, &mut sc, &mut whole).expect("unpack");
        assert_eq!(whole, area);
        let ends: Vec<usize> = {
            let mut at = 0;
            crate::format::RecordsIn::new(&area)
                .map(|r| {
                    let (_, p) = r.expect("framing");
                    at = p.as_ptr() as usize - area.as_ptr() as usize + p.len();
                    at
                })
                .collect()
        };
        for (c, hh) in [(&comp, h), (&old, header(ps.len(), u, &old))] {
            for (from, want) in [
                (0, 1),
                (0, 2),
                (0, 50),
                (0, 149),
                (0, 150),
                (0, 299),
                (0, 300),
                (0, 301),
                (0, 10_000),
                (1, 2),
                (49, 50),
                (100, 180),
                (299, 300),
                (150, 10_000),
            ] {
                let mut out = Vec::new();
                let got = unpack_prefix(&hh, c, &mut dctx, &mut sc, &mut out, from..want)
                    .expect("prefix");
                assert_eq!(got, (from, want.min(ps.len())), "{from}..{want}");
                let start = if from == 0 { 0 } else { ends[from - 1] };
                assert_eq!(out, area[start..ends[got.1 - 1]], "{from}..{want}");
            }
        }
        // The point of it: the first record costs a fraction of the raw-bytes frame (the
        // writer ended a zstd block every RAW_ZSTD_BLOCK bytes), where the old single block
        // had to be read whole.
        let raw_at = |c: &[u8]| 8 + u32_le(c, 0).expect("p") as usize + ps.len() * TAG_LEN;
        let frame = &comp[raw_at(&comp)..];
        let first = input_for(frame, 100);
        assert_eq!(first, input_for(frame, RAW_ZSTD_BLOCK - 1));
        assert!(first < input_for(frame, RAW_ZSTD_BLOCK + 1));
        assert!(input_for(frame, 2 * RAW_ZSTD_BLOCK + 1) < frame.len());
        let old_frame = &old[raw_at(&old)..];
        assert_eq!(
            input_for(old_frame, 100),
            input_for(old_frame, 2 * RAW_ZSTD_BLOCK + 1)
        );
        // The blocks cost little: the new frame is within 5 % of the single block.
        assert!(
            frame.len() * 100 <= old_frame.len() * 105,
            "{} vs {}",
            frame.len(),
            old_frame.len()
        );
        // Damage gives errors, never a panic or a short area taken for records.
        for cut in (0..comp.len()).step_by(97) {
            for records in [0..300, 0..1, 120..140] {
                let mut out = Vec::new();
                let whole = records.end == 300;
                let r = unpack_prefix(&h, &comp[..cut], &mut dctx, &mut sc, &mut out, records);
                // A cut block read whole is an error; read in part, it may hold the part.
                assert!(!whole || r.is_err(), "cut at {cut}");
            }
        }
        for i in (0..comp.len()).step_by(13) {
            let mut c = comp.clone();
            c[i] ^= 0x55;
            let mut out = Vec::new();
            let _ = unpack_prefix(&h, &c, &mut dctx, &mut sc, &mut out, 3..7);
        }
    }

    #[test]
    fn damaged_columns_are_errors_not_panics() {
        let ps: Vec<_> = (0..5)
            .map(|i| env(i, 1, i as u64, b"some raw bytes"))
            .collect();
        let area = framed(&ps);
        let mut cx = zstd::bulk::Compressor::new(3).expect("cx");
        let mut comp = Vec::new();
        let u = pack(CODEC_ZSTD_COLUMNS, &area, &mut cx, &mut comp).expect("pack");
        let mut dctx = dctx();
        let mut sc = Scratch::default();
        let mut out = Vec::new();
        let h = header(5, u, &comp);
        let wrong_count = BlockHeader { count: 4, ..h };
        assert!(unpack(&wrong_count, &comp, &mut dctx, &mut sc, &mut out).is_err());
        let wrong_u = BlockHeader {
            uncompressed_len: u + 1,
            ..h
        };
        assert!(unpack(&wrong_u, &comp, &mut dctx, &mut sc, &mut out).is_err());
        for cut in 0..comp.len() {
            assert!(
                unpack(&h, &comp[..cut], &mut dctx, &mut sc, &mut out).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..comp.len() {
            let mut c = comp.clone();
            c[i] ^= 0x55;
            let _ = unpack(&h, &c, &mut dctx, &mut sc, &mut out);
        }
        // The column decoder itself, on every cut and flip of its first part.
        let [head, ctx, tags, recv, line, len, bytes] = encode_parts(&area).expect("parts");
        let mut meta = head;
        for col in [ctx, recv, line, len] {
            meta.extend_from_slice(&col);
        }
        decode(&meta, &tags, &bytes, 5, &mut out).expect("decode");
        for cut in 0..meta.len() {
            assert!(decode(&meta[..cut], &tags, &bytes, 5, &mut out).is_err());
        }
        assert!(decode(&meta, &tags, &bytes[1..], 5, &mut out).is_err());
        assert!(decode(&meta, &tags[4..], &bytes, 5, &mut out).is_err());
        for i in 0..meta.len() {
            let mut m = meta.clone();
            m[i] ^= 0x55;
            out.clear();
            let _ = decode(&m, &tags, &bytes, 5, &mut out);
        }
    }
}
