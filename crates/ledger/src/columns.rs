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
//! Hand-written rather than a columnar crate (Arrow/Parquet): the layout is seven short
//! columns of varints inside one zstd frame, and the decoder has to be fuzzable and
//! allocation-bounded by the block header's lengths.

use crate::format::{MAX_BLOCK_LEN, MAX_RECORD_LEN, RECORD_PREFIX_LEN, TAG_LEN};

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

/// Encodes a framed record area (`u32 len, tag, payload` per record) into envelope columns,
/// appending to `out`. `Err` if the area's framing is broken (the writer never makes one).
pub fn encode(area: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
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
    put_varint(out, count);
    put_varint(out, dict.len() as u64);
    for d in &dict {
        put_varint(out, d.len() as u64);
        out.extend_from_slice(d);
    }
    for col in [&ctx_col, &tags, &recv_col, &line_col, &len_col, &bytes] {
        out.extend_from_slice(col);
    }
    Ok(())
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

/// Decodes envelope columns back into the framed record area, appending to `out`; the block
/// must hold exactly `count` records. Every length is checked before use and the output is
/// bounded by [`MAX_BLOCK_LEN`], so damaged or hostile bytes give `Err`, never a panic or a
/// huge allocation.
pub fn decode(cols: &[u8], count: u32, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut c = Cur { b: cols, at: 0 };
    if c.varint()? != count as u64 {
        return Err("envelope columns hold another record count than the block header");
    }
    let n = count as usize;
    // Each record takes at least a context number, its tag and a length: a count the
    // bytes cannot hold is refused before anything is allocated from it.
    if n.saturating_mul(TAG_LEN + 2) > cols.len() {
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
            l if l - 1 >= RECEIVED_AT && l - 1 - RECEIVED_AT <= fields.len() => {
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
    let tags = c.take(n * TAG_LEN)?;
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
    let (mut recv, mut lines) = (recv.into_iter(), lines.into_iter());
    let start = out.len();
    for (i, (&k, &len)) in ctx.iter().zip(&lens).enumerate() {
        let raw = c.take(len)?;
        let tag = &tags[i * TAG_LEN..(i + 1) * TAG_LEN];
        let total = if k == 0 {
            len
        } else {
            let e = &dict[k - 1];
            let line = if e.has_line { 8 } else { 0 };
            e.head.len() + 8 + e.before.len() + line + e.after.len() + 4 + len
        };
        if total > MAX_RECORD_LEN
            || (out.len() - start) + RECORD_PREFIX_LEN + total > MAX_BLOCK_LEN as usize
        {
            return Err("envelope columns make a record or block too large");
        }
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(tag);
        if k == 0 {
            out.extend_from_slice(raw);
            continue;
        }
        let e = &dict[k - 1];
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
    if c.at != cols.len() {
        return Err("envelope columns have trailing bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::push_record;

    fn s(b: &mut Vec<u8>, x: &[u8]) {
        b.extend_from_slice(&(x.len() as u32).to_le_bytes());
        b.extend_from_slice(x);
    }

    /// A kind-1 envelope with a file origin (`origin` 1) or file-from-sender (4), by hand
    /// after docs/FORMAT.md (the `model` crate's encoder is tested against this in
    /// `model`'s own tests and end to end by every ledger the suite writes).
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

    fn round_trip(payloads: &[Vec<u8>]) -> usize {
        let mut area = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            push_record(&mut area, (i as u32).to_le_bytes(), p);
        }
        let mut cols = Vec::new();
        encode(&area, &mut cols).expect("encode");
        let mut back = Vec::new();
        decode(&cols, payloads.len() as u32, &mut back).expect("decode");
        assert_eq!(back, area);
        cols.len()
    }

    #[test]
    fn every_shape_round_trips_byte_for_byte() {
        let mut ps = Vec::new();
        for i in 0..50u64 {
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
        let cols = round_trip(&ps);
        let framed: usize = ps.iter().map(|p| p.len() + 8).sum();
        // The file-origin records share one dictionary entry and the line numbers and
        // received times go to one or two bytes each.
        assert!(cols < framed - 50 * 40, "{cols} vs {framed}");
    }

    #[test]
    fn damaged_columns_are_errors_not_panics() {
        let ps: Vec<_> = (0..5)
            .map(|i| env(i, 1, i as u64, b"some raw bytes"))
            .collect();
        let mut area = Vec::new();
        for p in &ps {
            push_record(&mut area, [1; 4], p);
        }
        let mut cols = Vec::new();
        encode(&area, &mut cols).expect("encode");
        let mut out = Vec::new();
        assert!(decode(&cols, 4, &mut out).is_err());
        for cut in 0..cols.len() {
            out.clear();
            assert!(decode(&cols[..cut], 5, &mut out).is_err(), "cut at {cut}");
        }
        for i in 0..cols.len() {
            let mut c = cols.clone();
            c[i] ^= 0x55;
            out.clear();
            let _ = decode(&c, 5, &mut out);
        }
    }
}
