//! One partition file of the flow store: a run of flows in ledger order, column by column,
//! each column compressed with zstd (docs/FORMAT.md "Flow store").
//!
//! Hand-written rather than Arrow/Parquet: the `arrow`/`parquet` crates would add ~60
//! dependencies and minutes of build to a 2-core machine for what is twenty fixed-width
//! columns, a dictionary and a sorted address list; decoding them is a few slice copies.
//! Little-endian throughout. A reader never trusts a length: every column is checked against
//! the row count before use, and a bad file is an error, never a panic (fuzz target
//! `flowpart`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use model::flow::{FlowNat, FlowRecord};

/// First bytes of every partition file.
pub const MAGIC: &[u8; 8] = b"PMFLOWP1";

/// Decompressed size a column may claim at most (64 M rows × 16 bytes would be more than a
/// partition ever holds; the writer cuts partitions at [`super::PART_ROWS`]).
const MAX_COLUMN_BYTES: u64 = 1 << 30;

/// zstd level of the columns: 3 is zstd's default, the best size per CPU second on numbers.
const ZSTD_LEVEL: i32 = 3;

/// One flow as the store holds it: a ledger position, the observer its envelope names, and
/// the record itself (which names the datagram: `datagram_seq`, `flowset`, `record`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    /// A legacy flow (`sub` 0): the ledger position of its own `netflow-record`. A derived
    /// flow: the position of the datagram whose decoding emitted it (`E`; the flow's own
    /// datagram, `rec.datagram_seq`, when its set waited for no template).
    pub seq: u64,
    /// 0 for a legacy flow; 1 + k for the k-th flow (0-based) emitted when the datagram at
    /// `seq` was decoded (docs/design/flow-derivation.md). Column 29; absent = all 0.
    pub sub: u32,
    pub observer: String,
    pub rec: FlowRecord,
}

impl FlowRow {
    /// A legacy flow at ledger position `seq`.
    pub fn legacy(seq: u64, observer: String, rec: FlowRecord) -> FlowRow {
        FlowRow {
            seq,
            sub: 0,
            observer,
            rec,
        }
    }

    /// The key readers hold the flow by inside a process: its record's ledger position, or
    /// for a derived flow its flow position (`model::flow::flow_pos`); `None` for a derived
    /// row out of a flow position's range, which no writer makes (a damaged file).
    pub fn position(&self) -> Option<u64> {
        match self.sub {
            0 => Some(self.seq),
            s => model::flow::flow_pos(self.seq, u64::from(s - 1)),
        }
    }

    /// The flow's time for windows and partitions: its first packet, else its last, else the
    /// export header's time (the reported time `decode` gives a flow is its first packet).
    pub fn time_ms(&self) -> i64 {
        self.rec
            .start_ms
            .or(self.rec.end_ms)
            .unwrap_or(self.rec.export_ms)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartError {
    #[error("not a flow partition (bad magic)")]
    Magic,
    #[error("flow partition truncated at byte {0}")]
    Truncated(usize),
    #[error("flow partition column {0} is damaged: {1}")]
    Column(u16, String),
    #[error("flow partition column {0} is missing")]
    Missing(u16),
}

// Column ids (docs/FORMAT.md lists them).
pub const C_SEQ: u16 = 1;
pub const C_DSEQ: u16 = 2;
pub const C_FLOWSET: u16 = 3;
pub const C_RECORD: u16 = 4;
pub const C_TEMPLATE: u16 = 5;
pub const C_VERSION: u16 = 6;
pub const C_DOMAIN: u16 = 7;
pub const C_EXPORTER: u16 = 8;
pub const C_FLAGS: u16 = 9;
pub const C_SRC4: u16 = 10;
pub const C_DST4: u16 = 11;
pub const C_SRC6: u16 = 12;
pub const C_DST6: u16 = 13;
pub const C_SPORT: u16 = 14;
pub const C_DPORT: u16 = 15;
pub const C_PROTO: u16 = 16;
pub const C_TCPFLAGS: u16 = 17;
pub const C_TOS: u16 = 18;
pub const C_PACKETS: u16 = 19;
pub const C_BYTES: u16 = 20;
pub const C_SAMPLING: u16 = 21;
pub const C_START: u16 = 22;
pub const C_END: u16 = 23;
pub const C_EXPORT: u16 = 24;
pub const C_INIF: u16 = 25;
pub const C_OUTIF: u16 = 26;
pub const C_NAT: u16 = 27;
pub const C_OBSERVER: u16 = 28;
/// [`FlowRow::sub`]: written only when some row is derived; absent, every row is legacy.
pub const C_SUB: u16 = 29;
pub const C_EXPORTER_DICT: u16 = 30;
pub const C_OBSERVER_DICT: u16 = 31;
/// Sorted distinct IPv4 addresses (source and destination) of the partition.
pub const C_ADDR4: u16 = 40;
/// Sorted distinct IPv6 addresses of the partition.
pub const C_ADDR6: u16 = 41;
/// Postings of column 40: for each address in its order, the rows holding it as source or
/// destination (LEB128: the row count, the byte length of what follows, the first row, then
/// the differences).
pub const C_POST4: u16 = 42;
/// Postings of column 41, the same way.
pub const C_POST6: u16 = 43;

pub const R_SRC: u8 = 1;
pub const R_SRC6: u8 = 1 << 1;
pub const R_DST: u8 = 1 << 2;
pub const R_DST6: u8 = 1 << 3;
pub const R_START: u8 = 1 << 4;
pub const R_END: u8 = 1 << 5;
pub const R_NAT: u8 = 1 << 6;

/// A column before packing: integers (packed to their narrowest width) or bytes as they are.
enum Col {
    Ints(Vec<u64>),
    Bytes(Vec<u8>),
}

/// Encodes `rows` (ledger order) as one partition file.
///
/// One pass over the rows fills every per-row column (a pass per column read each 200-byte
/// row twenty times: a quarter of the writer's time).
pub fn encode(rows: &[FlowRow]) -> std::io::Result<Vec<u8>> {
    let n = rows.len();
    let ints = || Vec::<u64>::with_capacity(n);
    let (mut seq, mut dseq, mut flowset, mut record, mut template, mut version, mut domain) =
        (ints(), ints(), ints(), ints(), ints(), ints(), ints());
    let mut sub = ints();
    let (mut exp_idx, mut obs_idx) = (ints(), ints());
    let (mut src4, mut dst4, mut sport, mut dport) = (ints(), ints(), ints(), ints());
    let (mut packets, mut bytes_, mut sampling) = (ints(), ints(), ints());
    let (mut start, mut end, mut export, mut in_if, mut out_if) =
        (ints(), ints(), ints(), ints(), ints());
    let mut flags = Vec::with_capacity(n);
    let mut proto = Vec::with_capacity(n);
    let mut tcpf = Vec::with_capacity(n);
    let mut tos = Vec::with_capacity(n);
    let mut src6 = Vec::new();
    let mut dst6 = Vec::new();
    let mut nat = Vec::new();
    // Dictionaries: exporters and observers repeat across a whole partition (compared as
    // values; formatting an address per flow was a third of the writer's time).
    let mut exporters: Vec<SocketAddr> = Vec::new();
    let mut observers: Vec<&str> = Vec::new();
    let mut last_e: Option<(SocketAddr, u32)> = None;
    let mut last_o: Option<(&str, u32)> = None;
    // (address, row) pairs, sorted and deduplicated once at the end (a tree insert per
    // address cost 7 %): the address index and its postings.
    let mut a4: Vec<u64> = Vec::with_capacity(n * 2);
    let mut a6: Vec<([u8; 16], u32)> = Vec::new();
    // Deltas make the sorted-ish columns (positions, times) mostly small numbers, which is
    // what zstd compresses well.
    let (mut prev_seq, mut prev_start, mut prev_export) = (0u64, 0i64, 0i64);
    for (row, r) in rows.iter().enumerate() {
        let row = row as u32;
        let rec = &r.rec;
        seq.push(r.seq.wrapping_sub(prev_seq));
        prev_seq = r.seq;
        dseq.push(r.seq.wrapping_sub(rec.datagram_seq));
        sub.push(u64::from(r.sub));
        flowset.push(u64::from(rec.flowset));
        record.push(u64::from(rec.record));
        template.push(u64::from(rec.template));
        version.push(u64::from(rec.version));
        domain.push(u64::from(rec.domain));
        let e = match rec.exporter {
            None => 0,
            Some(a) => match last_e {
                Some((x, i)) if x == a => i,
                _ => {
                    let i = match exporters.iter().position(|x| *x == a) {
                        Some(i) => i as u32 + 1,
                        None => {
                            exporters.push(a);
                            exporters.len() as u32
                        }
                    };
                    last_e = Some((a, i));
                    i
                }
            },
        };
        exp_idx.push(u64::from(e));
        let o = match last_o {
            Some((x, i)) if x == r.observer => i,
            _ => {
                let i = match observers.iter().position(|x| *x == r.observer) {
                    Some(i) => i as u32,
                    None => {
                        observers.push(&r.observer);
                        observers.len() as u32 - 1
                    }
                };
                last_o = Some((&r.observer, i));
                i
            }
        };
        obs_idx.push(u64::from(o));
        let mut f = 0u8;
        let mut put = |ip: Option<IpAddr>,
                       present: u8,
                       six: u8,
                       c4: &mut Vec<u64>,
                       c6: &mut Vec<u8>| match ip {
            None => c4.push(0),
            Some(IpAddr::V4(a)) => {
                f |= present;
                let v = u32::from(a);
                a4.push(u64::from(v) << 32 | u64::from(row));
                c4.push(u64::from(v));
            }
            Some(IpAddr::V6(a)) => {
                f |= present | six;
                a6.push((a.octets(), row));
                c4.push(0);
                c6.extend_from_slice(&a.octets());
            }
        };
        put(rec.src, R_SRC, R_SRC6, &mut src4, &mut src6);
        put(rec.dst, R_DST, R_DST6, &mut dst4, &mut dst6);
        if rec.start_ms.is_some() {
            f |= R_START;
        }
        if rec.end_ms.is_some() {
            f |= R_END;
        }
        if let Some(x) = &rec.nat {
            f |= R_NAT;
            put_nat(&mut nat, x);
        }
        flags.push(f);
        sport.push(u64::from(rec.src_port));
        dport.push(u64::from(rec.dst_port));
        proto.push(rec.proto);
        tcpf.push(rec.tcp_flags);
        tos.push(rec.tos);
        packets.push(rec.packets);
        bytes_.push(rec.bytes);
        sampling.push(u64::from(rec.sampling));
        let t = rec.start_ms.unwrap_or(prev_start);
        start.push(zigzag(t.wrapping_sub(prev_start)));
        prev_start = t;
        let base = rec.start_ms.unwrap_or(0);
        end.push(zigzag(rec.end_ms.unwrap_or(base).wrapping_sub(base)));
        export.push(zigzag(rec.export_ms.wrapping_sub(prev_export)));
        prev_export = rec.export_ms;
        in_if.push(u64::from(rec.in_if));
        out_if.push(u64::from(rec.out_if));
    }
    let exporters: Vec<String> = exporters.iter().map(SocketAddr::to_string).collect();
    a4.sort_unstable();
    a4.dedup();
    a6.sort_unstable();
    a6.dedup();
    let (addr4, post4) = postings(a4.iter().map(|&v| ((v >> 32) as u32, v as u32)));
    let (addr6, post6) = postings(a6.iter().copied());
    use Col::{Bytes, Ints};
    let derived = sub.iter().any(|&v| v != 0);
    // Directory order (readers find columns by id; kept as earlier writers wrote it).
    let mut cols: Vec<(u16, Col)> = vec![
        (C_SEQ, Ints(seq)),
        (C_DSEQ, Ints(dseq)),
        (C_FLOWSET, Ints(flowset)),
        (C_RECORD, Ints(record)),
        (C_TEMPLATE, Ints(template)),
        (C_VERSION, Ints(version)),
        (C_DOMAIN, Ints(domain)),
        (C_EXPORTER, Ints(exp_idx)),
        (C_OBSERVER, Ints(obs_idx)),
        (C_EXPORTER_DICT, Bytes(exporters.join("\n").into_bytes())),
        (C_OBSERVER_DICT, Bytes(observers.join("\n").into_bytes())),
        (C_FLAGS, Bytes(flags)),
        (C_SRC4, Ints(src4)),
        (C_DST4, Ints(dst4)),
        (C_SRC6, Bytes(src6)),
        (C_DST6, Bytes(dst6)),
        (C_NAT, Bytes(nat)),
        (
            C_ADDR4,
            Bytes(addr4.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ),
        (C_ADDR6, Bytes(addr6.iter().flatten().copied().collect())),
        (C_POST4, Bytes(post4)),
        (C_POST6, Bytes(post6)),
        (C_SPORT, Ints(sport)),
        (C_DPORT, Ints(dport)),
        (C_PROTO, Bytes(proto)),
        (C_TCPFLAGS, Bytes(tcpf)),
        (C_TOS, Bytes(tos)),
        (C_PACKETS, Ints(packets)),
        (C_BYTES, Ints(bytes_)),
        (C_SAMPLING, Ints(sampling)),
        (C_START, Ints(start)),
        (C_END, Ints(end)),
        (C_EXPORT, Ints(export)),
        (C_INIF, Ints(in_if)),
        (C_OUTIF, Ints(out_if)),
    ];
    // Only partitions with derived rows carry it: a store of legacy flows keeps the bytes
    // earlier writers wrote.
    if derived {
        cols.push((C_SUB, Ints(sub)));
    }

    // Layout: magic, row count u32, column count u16, directory (id u16, packing u8, raw u64,
    // stored u64) per column, then the zstd frames in directory order. Integer columns are
    // packed to the narrowest width holding every value (or one value when all are equal):
    // what a reader decompresses is what costs, and packets, bytes and time deltas rarely
    // need 8 bytes.
    let mut frames: Vec<(u16, u8, u64, Vec<u8>)> = Vec::with_capacity(cols.len());
    for (id, col) in cols {
        let (code, raw) = match col {
            Ints(v) => pack(&v),
            Bytes(b) => (PACK_BYTES, b),
        };
        let z = zstd::bulk::compress(&raw, ZSTD_LEVEL)?;
        frames.push((id, code, raw.len() as u64, z));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(frames.len() as u16).to_le_bytes());
    for (id, code, raw, z) in &frames {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(*code);
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&(z.len() as u64).to_le_bytes());
    }
    for (_, _, _, z) in &frames {
        out.extend_from_slice(z);
    }
    Ok(out)
}

/// Sorted, distinct (address, row) pairs as the distinct addresses and their postings
/// (column 42's encoding).
fn postings<A: PartialEq + Copy>(pairs: impl Iterator<Item = (A, u32)>) -> (Vec<A>, Vec<u8>) {
    let mut addrs: Vec<A> = Vec::new();
    let mut lists: Vec<Vec<u32>> = Vec::new();
    for (a, row) in pairs {
        match (addrs.last(), lists.last_mut()) {
            (Some(l), Some(list)) if *l == a => list.push(row),
            _ => {
                addrs.push(a);
                lists.push(vec![row]);
            }
        }
    }
    let mut out = Vec::new();
    let mut deltas = Vec::new();
    for list in &lists {
        deltas.clear();
        let mut prev = 0u32;
        for (i, &r) in list.iter().enumerate() {
            put_varint(&mut deltas, u64::from(if i == 0 { r } else { r - prev }));
            prev = r;
        }
        put_varint(&mut out, list.len() as u64);
        put_varint(&mut out, deltas.len() as u64);
        out.extend_from_slice(&deltas);
    }
    (addrs, out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let x = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The postings of a partition's addresses of one family (columns 42/43), decoded list by
/// list as a reader asks: address `i`'s list is `lists[i]` (its row count and where its
/// row deltas lie in `raw`).
#[derive(Debug, Clone, Default)]
pub struct Postings {
    raw: Vec<u8>,
    lists: Vec<(u32, usize, usize)>,
    rows: usize,
    id: u16,
}

impl Postings {
    /// The rows holding address `i` (ascending; none past the addresses).
    pub fn rows_of(&self, i: usize) -> Result<Vec<u32>, PartError> {
        let bad = |what: &str| PartError::Column(self.id, what.to_string());
        let Some(&(n, start, end)) = self.lists.get(i) else {
            return Ok(Vec::new());
        };
        let b = self.raw.get(start..end).ok_or_else(|| bad("short"))?;
        let mut out = Vec::with_capacity(n as usize);
        let mut pos = 0;
        let mut row = 0u64;
        for k in 0..n {
            let d = get_varint(b, &mut pos).ok_or_else(|| bad("short"))?;
            row = if k == 0 { d } else { row.saturating_add(d) };
            if row >= self.rows as u64 || (k > 0 && d == 0) {
                return Err(bad("a row outside the partition or out of order"));
            }
            out.push(row as u32);
        }
        if pos != b.len() {
            return Err(bad("a list longer than its count"));
        }
        Ok(out)
    }

    /// Addresses listed.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    fn decode(raw: Vec<u8>, addrs: usize, rows: usize, id: u16) -> Result<Postings, PartError> {
        let bad = |what: &str| PartError::Column(id, what.to_string());
        let mut lists = Vec::with_capacity(addrs);
        let mut pos = 0;
        for _ in 0..addrs {
            let n = get_varint(&raw, &mut pos).ok_or_else(|| bad("short"))?;
            let len = get_varint(&raw, &mut pos).ok_or_else(|| bad("short"))?;
            if n > rows as u64 || n > len {
                return Err(bad("a list longer than the rows"));
            }
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| pos.checked_add(l))
                .filter(|&e| e <= raw.len())
                .ok_or_else(|| bad("short"))?;
            lists.push((n as u32, pos, end));
            pos = end;
        }
        if pos != raw.len() {
            return Err(bad("longer than its addresses"));
        }
        Ok(Postings {
            raw,
            lists,
            rows,
            id,
        })
    }
}

/// Packing of a column that is not integers: its bytes as they are.
pub const PACK_BYTES: u8 = 0xff;
/// Packing of an integer column whose values are all equal: that one value, 8 bytes.
pub const PACK_CONST: u8 = 0;

/// Signed deltas as unsigned with the sign in the low bit (small either way).
pub fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

pub fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Integer column `vals` packed: (packing, bytes).
fn pack(vals: &[u64]) -> (u8, Vec<u8>) {
    if let Some(&first) = vals.first()
        && vals.iter().all(|&v| v == first)
    {
        return (PACK_CONST, first.to_le_bytes().to_vec());
    }
    let max = vals.iter().copied().max().unwrap_or(0);
    let mut out;
    let nw: u8 = if max <= 0xff {
        out = vals.iter().map(|&v| v as u8).collect::<Vec<u8>>();
        1
    } else if max <= 0xffff {
        out = Vec::with_capacity(vals.len() * 2);
        vals.iter()
            .for_each(|&v| out.extend_from_slice(&(v as u16).to_le_bytes()));
        2
    } else if max <= 0xffff_ffff {
        out = Vec::with_capacity(vals.len() * 4);
        vals.iter()
            .for_each(|&v| out.extend_from_slice(&(v as u32).to_le_bytes()));
        4
    } else {
        out = Vec::with_capacity(vals.len() * 8);
        vals.iter()
            .for_each(|&v| out.extend_from_slice(&v.to_le_bytes()));
        8
    };
    (nw, out)
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn put_nat(out: &mut Vec<u8>, n: &FlowNat) {
    put_ip(out, n.src);
    put_ip(out, n.dst);
    for p in [n.src_port, n.dst_port] {
        match p {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
    }
    match n.event {
        None => out.push(0),
        Some(e) => out.extend_from_slice(&[1, e]),
    }
}

/// A partition's distinct addresses of each family, sorted, with the rows holding each.
#[derive(Debug, Clone, Default)]
pub struct AddrIndex {
    pub addr4: Vec<u32>,
    pub post4: Postings,
    pub addr6: Vec<[u8; 16]>,
    pub post6: Postings,
}

/// What a partition holds of addresses: its sorted distinct source and destination addresses
/// and its exporters ([`Part::summary`]).
#[derive(Debug, Clone, Default)]
pub struct PartSummary {
    pub addr4: Vec<u32>,
    pub addr6: Vec<[u8; 16]>,
    pub exporters: Vec<IpAddr>,
}

impl PartSummary {
    /// Whether a source or destination address lies in `[lo, hi]` (one family).
    pub fn has_addr_in(&self, lo: IpAddr, hi: IpAddr) -> bool {
        match (lo, hi) {
            (IpAddr::V4(l), IpAddr::V4(h)) => {
                let (l, h) = (u32::from(l), u32::from(h));
                let i = self.addr4.partition_point(|&a| a < l);
                self.addr4.get(i).is_some_and(|&a| a <= h)
            }
            (IpAddr::V6(l), IpAddr::V6(h)) => {
                let (l, h) = (l.octets(), h.octets());
                let i = self.addr6.partition_point(|a| *a < l);
                self.addr6.get(i).is_some_and(|a| *a <= h)
            }
            _ => false,
        }
    }
}

/// Where a partition's bytes are: in memory, or in its file (read column by column: a query
/// that needs three columns of thirty reads those).
#[derive(Clone, Copy)]
enum Src<'a> {
    Mem(&'a [u8]),
    File(&'a std::fs::File, u64),
}

impl Src<'_> {
    fn len(&self) -> u64 {
        match self {
            Src::Mem(b) => b.len() as u64,
            Src::File(_, n) => *n,
        }
    }

    fn get(&self, start: u64, end: u64) -> Result<std::borrow::Cow<'_, [u8]>, PartError> {
        let trunc = || PartError::Truncated(start as usize);
        if end < start || end > self.len() {
            return Err(trunc());
        }
        match self {
            Src::Mem(b) => b
                .get(start as usize..end as usize)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(trunc),
            Src::File(f, _) => {
                use std::os::unix::fs::FileExt;
                let mut v = vec![0u8; (end - start) as usize];
                f.read_exact_at(&mut v, start).map_err(|_| trunc())?;
                Ok(std::borrow::Cow::Owned(v))
            }
        }
    }
}

/// A partition file opened: its directory read, columns decompressed on demand.
pub struct Part<'a> {
    src: Src<'a>,
    rows: usize,
    dir: Vec<(u16, u8, u64, u64, u64)>,
}

impl<'a> Part<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Part<'a>, PartError> {
        Part::open_src(Src::Mem(bytes))
    }

    /// Opens a partition file without reading it whole: its columns are read when asked for.
    pub fn open_file(file: &'a std::fs::File) -> Result<Part<'a>, PartError> {
        let len = file.metadata().map_err(|_| PartError::Truncated(0))?.len();
        Part::open_src(Src::File(file, len))
    }

    fn open_src(src: Src<'a>) -> Result<Part<'a>, PartError> {
        let head = src.get(0, 14.min(src.len()))?;
        if head.get(..8) != Some(MAGIC.as_slice()) {
            return Err(PartError::Magic);
        }
        let mut pos = 8;
        let rows = u32::from_le_bytes(take(&head, &mut pos)?) as usize;
        let ncols = u16::from_le_bytes(take(&head, &mut pos)?) as usize;
        let dir_end = 14 + ncols as u64 * 19;
        if dir_end > src.len() {
            return Err(PartError::Truncated(src.len() as usize));
        }
        let dir_bytes = src.get(14, dir_end)?;
        let mut pos = 0;
        let mut dir = Vec::with_capacity(ncols.min(256));
        let mut data = dir_end;
        for _ in 0..ncols {
            let id = u16::from_le_bytes(take(&dir_bytes, &mut pos)?);
            let code = take::<1>(&dir_bytes, &mut pos)?[0];
            let raw = u64::from_le_bytes(take(&dir_bytes, &mut pos)?);
            let stored = u64::from_le_bytes(take(&dir_bytes, &mut pos)?);
            let end = data
                .checked_add(stored)
                .ok_or(PartError::Truncated(14 + pos))?;
            if end > src.len() {
                return Err(PartError::Truncated(src.len() as usize));
            }
            dir.push((id, code, raw, data, end));
            data = end;
        }
        Ok(Part { src, rows, dir })
    }

    /// Whether the partition has column `id` (files written before a column existed lack it).
    pub fn has_column(&self, id: u16) -> bool {
        self.dir.iter().any(|d| d.0 == id)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Column `id` decompressed; a column of fixed `width` must hold exactly one value per
    /// row (0: any length).
    pub fn column(&self, id: u16, width: usize) -> Result<Vec<u8>, PartError> {
        let &(_, _, raw, start, end) = self
            .dir
            .iter()
            .find(|d| d.0 == id)
            .ok_or(PartError::Missing(id))?;
        if raw > MAX_COLUMN_BYTES {
            return Err(PartError::Column(id, format!("claims {raw} bytes")));
        }
        let src = self.src.get(start, end)?;
        let out = zstd::bulk::decompress(&src, raw as usize)
            .map_err(|e| PartError::Column(id, e.to_string()))?;
        if out.len() as u64 != raw {
            return Err(PartError::Column(
                id,
                "length differs from its directory".into(),
            ));
        }
        if width > 0 && out.len() != self.rows.saturating_mul(width) {
            return Err(PartError::Column(
                id,
                format!("{} bytes for {} rows of {width}", out.len(), self.rows),
            ));
        }
        Ok(out)
    }

    /// Integer column `id`, one value per row, unpacked.
    pub fn ints(&self, id: u16) -> Result<Vec<u64>, PartError> {
        let code = self
            .dir
            .iter()
            .find(|d| d.0 == id)
            .ok_or(PartError::Missing(id))?
            .1;
        Ok(match code {
            PACK_CONST => {
                let b = self.column(id, 0)?;
                if b.len() != 8 {
                    return Err(PartError::Column(id, "constant is not 8 bytes".into()));
                }
                vec![u64::from_le_bytes(arr(&b)); self.rows]
            }
            // One loop per width: the compiler vectorises each (a generic loop over `w` was
            // 15 % of a top-N query).
            1 => self.column(id, 1)?.iter().map(|&b| u64::from(b)).collect(),
            2 => self
                .column(id, 2)?
                .chunks_exact(2)
                .map(|c| u64::from(u16::from_le_bytes(arr(c))))
                .collect(),
            4 => self
                .column(id, 4)?
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes(arr(c))))
                .collect(),
            8 => self
                .column(id, 8)?
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(arr(c)))
                .collect(),
            c => {
                return Err(PartError::Column(
                    id,
                    format!("packing {c} is not an integer's"),
                ));
            }
        })
    }

    /// Whether the partition holds address `ip` (source or destination) at all.
    pub fn has_addr(&self, ip: IpAddr) -> Result<bool, PartError> {
        Ok(match ip {
            IpAddr::V4(a) => {
                let c = self.column(C_ADDR4, 0)?;
                let v = u32::from(a);
                let n = c.len() / 4;
                let at = |i: usize| u32::from_le_bytes(arr(&c[i * 4..i * 4 + 4]));
                let (mut lo, mut hi) = (0usize, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if at(mid) < v {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo < n && at(lo) == v
            }
            IpAddr::V6(a) => {
                let c = self.column(C_ADDR6, 0)?;
                let o = a.octets();
                c.chunks_exact(16).any(|x| x == o)
            }
        })
    }

    /// Whether any address of the partition lies in `[lo, hi]` (same family).
    pub fn has_addr_in(&self, lo: IpAddr, hi: IpAddr) -> Result<bool, PartError> {
        Ok(match (lo, hi) {
            (IpAddr::V4(l), IpAddr::V4(h)) => {
                let (l, h) = (u32::from(l), u32::from(h));
                self.column(C_ADDR4, 0)?
                    .chunks_exact(4)
                    .any(|x| (l..=h).contains(&u32::from_le_bytes(arr(x))))
            }
            (IpAddr::V6(l), IpAddr::V6(h)) => {
                let (l, h) = (l.octets(), h.octets());
                self.column(C_ADDR6, 0)?
                    .chunks_exact(16)
                    .any(|x| x >= l.as_slice() && x <= h.as_slice())
            }
            _ => false,
        })
    }

    /// The partition's address index and exporters, decompressed once (a reader keeps it:
    /// `hunt` asks every partition about thousands of addresses).
    pub fn summary(&self) -> Result<PartSummary, PartError> {
        let mut addr4: Vec<u32> = self
            .column(C_ADDR4, 0)?
            .chunks_exact(4)
            .map(|x| u32::from_le_bytes(arr(x)))
            .collect();
        let mut addr6: Vec<[u8; 16]> = self
            .column(C_ADDR6, 0)?
            .chunks_exact(16)
            .map(arr::<16>)
            .collect();
        // Sorted by the writer; a damaged file must not make a search miss, so sort again.
        addr4.sort_unstable();
        addr6.sort_unstable();
        Ok(PartSummary {
            addr4,
            addr6,
            exporters: self.exporters()?,
        })
    }

    /// The exporters' addresses the partition's rows name (its exporter dictionary): a
    /// search for an address also matches flows whose exporter it is (the event's host).
    pub fn exporters(&self) -> Result<Vec<IpAddr>, PartError> {
        Ok(dict(&self.column(C_EXPORTER_DICT, 0)?)
            .iter()
            .filter_map(|s| s.parse::<SocketAddr>().ok())
            .map(|a| a.ip())
            .collect())
    }

    /// The address index with its postings (columns 40–43); `None` for a partition written
    /// before the postings existed.
    pub fn addr_index(&self) -> Result<Option<AddrIndex>, PartError> {
        if !self.has_column(C_POST4) || !self.has_column(C_POST6) {
            return Ok(None);
        }
        let addr4: Vec<u32> = self
            .column(C_ADDR4, 0)?
            .chunks_exact(4)
            .map(|x| u32::from_le_bytes(arr(x)))
            .collect();
        let addr6: Vec<[u8; 16]> = self
            .column(C_ADDR6, 0)?
            .chunks_exact(16)
            .map(arr::<16>)
            .collect();
        // Binary searches need them sorted: a damaged file is an error, never a missed row.
        if !addr4.is_sorted() || !addr6.is_sorted() {
            return Err(PartError::Column(C_ADDR4, "addresses out of order".into()));
        }
        let post4 = Postings::decode(self.column(C_POST4, 0)?, addr4.len(), self.rows, C_POST4)?;
        let post6 = Postings::decode(self.column(C_POST6, 0)?, addr6.len(), self.rows, C_POST6)?;
        Ok(Some(AddrIndex {
            addr4,
            post4,
            addr6,
            post6,
        }))
    }

    /// Every row, decoded whole.
    pub fn decode_all(&self) -> Result<Vec<FlowRow>, PartError> {
        self.decode_where(&|_| true)
    }

    /// The rows `keep` selects (by row number), decoded whole; the others are only walked
    /// past (their deltas summed), never built.
    pub fn decode_where(&self, keep: &dyn Fn(usize) -> bool) -> Result<Vec<FlowRow>, PartError> {
        let n = self.rows;
        // A damaged file may hold wider values than a field: cut, never a panic.
        let u64s = |id| self.ints(id);
        let u32s = |id| -> Result<Vec<u32>, PartError> {
            Ok(self.ints(id)?.into_iter().map(|v| v as u32).collect())
        };
        let u16s = |id| -> Result<Vec<u16>, PartError> {
            Ok(self.ints(id)?.into_iter().map(|v| v as u16).collect())
        };
        let seq_d = u64s(C_SEQ)?;
        let dseq = u64s(C_DSEQ)?;
        let sub = if self.has_column(C_SUB) {
            u32s(C_SUB)?
        } else {
            vec![0; n]
        };
        let flowset = u16s(C_FLOWSET)?;
        let record = u16s(C_RECORD)?;
        let template = u16s(C_TEMPLATE)?;
        let version = u16s(C_VERSION)?;
        let domain = u32s(C_DOMAIN)?;
        let exp = u32s(C_EXPORTER)?;
        let obs = u32s(C_OBSERVER)?;
        let exp_dict = dict(&self.column(C_EXPORTER_DICT, 0)?);
        let exp_dict: Vec<Option<SocketAddr>> = exp_dict.iter().map(|s| s.parse().ok()).collect();
        let obs_dict = dict(&self.column(C_OBSERVER_DICT, 0)?);
        let flags = self.column(C_FLAGS, 1)?;
        let src4 = u32s(C_SRC4)?;
        let dst4 = u32s(C_DST4)?;
        let src6 = self.column(C_SRC6, 0)?;
        let dst6 = self.column(C_DST6, 0)?;
        let nat = self.column(C_NAT, 0)?;
        let sport = u16s(C_SPORT)?;
        let dport = u16s(C_DPORT)?;
        let proto = self.column(C_PROTO, 1)?;
        let tcpf = self.column(C_TCPFLAGS, 1)?;
        let tos = self.column(C_TOS, 1)?;
        let packets = u64s(C_PACKETS)?;
        let bytes_ = u64s(C_BYTES)?;
        let sampling = u32s(C_SAMPLING)?;
        let start_d = u64s(C_START)?;
        let end_d = u64s(C_END)?;
        let export_d = u64s(C_EXPORT)?;
        let in_if = u32s(C_INIF)?;
        let out_if = u32s(C_OUTIF)?;
        let bad = |id: u16, what: &str| PartError::Column(id, what.to_string());
        let mut out = Vec::new();
        let (mut seq, mut start, mut export) = (0u64, 0i64, 0i64);
        let (mut s6, mut d6, mut np) = (0usize, 0usize, 0usize);
        for i in 0..n {
            seq = seq.wrapping_add(seq_d[i]);
            start = start.wrapping_add(unzigzag(start_d[i]));
            export = export.wrapping_add(unzigzag(export_d[i]));
            let f = flags[i];
            let addr = |present: u8, six: u8, v4: u32, c6: &[u8], p6: &mut usize, id: u16| {
                if f & present == 0 {
                    Ok(None)
                } else if f & six != 0 {
                    let b = c6.get(*p6..*p6 + 16).ok_or_else(|| bad(id, "short"))?;
                    *p6 += 16;
                    Ok(Some(IpAddr::V6(Ipv6Addr::from(arr::<16>(b)))))
                } else {
                    Ok(Some(IpAddr::V4(Ipv4Addr::from(v4))))
                }
            };
            let src = addr(R_SRC, R_SRC6, src4[i], &src6, &mut s6, C_SRC6)?;
            let dst = addr(R_DST, R_DST6, dst4[i], &dst6, &mut d6, C_DST6)?;
            if !keep(i) {
                if f & R_NAT != 0 {
                    get_nat(&nat, &mut np).ok_or_else(|| bad(C_NAT, "short"))?;
                }
                continue;
            }
            let start_ms = (f & R_START != 0).then_some(start);
            let base = start_ms.unwrap_or(0);
            let end_ms = (f & R_END != 0).then(|| base.wrapping_add(unzigzag(end_d[i])));
            let nat_v = if f & R_NAT != 0 {
                Some(get_nat(&nat, &mut np).ok_or_else(|| bad(C_NAT, "short"))?)
            } else {
                None
            };
            let exporter = match exp[i] {
                0 => None,
                k => Some(
                    exp_dict
                        .get(k as usize - 1)
                        .copied()
                        .flatten()
                        .ok_or_else(|| bad(C_EXPORTER, "index outside its dictionary"))?,
                ),
            };
            let observer = obs_dict
                .get(obs[i] as usize)
                .ok_or_else(|| bad(C_OBSERVER, "index outside its dictionary"))?
                .to_string();
            out.push(FlowRow {
                seq,
                sub: sub[i],
                observer,
                rec: FlowRecord {
                    version: version[i],
                    exporter,
                    domain: domain[i],
                    datagram_seq: seq.wrapping_sub(dseq[i]),
                    flowset: flowset[i],
                    record: record[i],
                    template: template[i],
                    src,
                    dst,
                    src_port: sport[i],
                    dst_port: dport[i],
                    proto: proto[i],
                    tcp_flags: tcpf[i],
                    tos: tos[i],
                    packets: packets[i],
                    bytes: bytes_[i],
                    sampling: sampling[i],
                    start_ms,
                    end_ms,
                    export_ms: export,
                    in_if: in_if[i],
                    out_if: out_if[i],
                    nat: nat_v,
                },
            });
        }
        if s6 != src6.len() || d6 != dst6.len() || np != nat.len() {
            return Err(bad(C_FLAGS, "side columns longer than the rows use"));
        }
        Ok(out)
    }
}

pub fn dict(b: &[u8]) -> Vec<String> {
    if b.is_empty() {
        return Vec::new();
    }
    String::from_utf8_lossy(b)
        .split('\n')
        .map(str::to_string)
        .collect()
}

fn get_ip(b: &[u8], pos: &mut usize) -> Option<Option<IpAddr>> {
    let tag = *b.get(*pos)?;
    *pos += 1;
    match tag {
        0 => Some(None),
        4 => {
            let a = b.get(*pos..*pos + 4)?;
            *pos += 4;
            Some(Some(IpAddr::V4(Ipv4Addr::from(arr::<4>(a)))))
        }
        6 => {
            let a = b.get(*pos..*pos + 16)?;
            *pos += 16;
            Some(Some(IpAddr::V6(Ipv6Addr::from(arr::<16>(a)))))
        }
        _ => None,
    }
}

fn get_nat(b: &[u8], pos: &mut usize) -> Option<FlowNat> {
    let src = get_ip(b, pos)?;
    let dst = get_ip(b, pos)?;
    let mut port = || -> Option<Option<u16>> {
        let t = *b.get(*pos)?;
        *pos += 1;
        match t {
            0 => Some(None),
            1 => {
                let p = b.get(*pos..*pos + 2)?;
                *pos += 2;
                Some(Some(u16::from_le_bytes(arr(p))))
            }
            _ => None,
        }
    };
    let src_port = port()?;
    let dst_port = port()?;
    let t = *b.get(*pos)?;
    *pos += 1;
    let event = match t {
        0 => None,
        1 => {
            let e = *b.get(*pos)?;
            *pos += 1;
            Some(e)
        }
        _ => return None,
    };
    Some(FlowNat {
        src,
        dst,
        src_port,
        dst_port,
        event,
    })
}

fn take<const N: usize>(b: &[u8], pos: &mut usize) -> Result<[u8; N], PartError> {
    let s = b.get(*pos..*pos + N).ok_or(PartError::Truncated(*pos))?;
    *pos += N;
    Ok(arr(s))
}

/// A slice of known length as an array (callers slice exactly N bytes).
pub fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Partition `bytes` rewritten without columns `ids` (tests: a file from before a column).
#[cfg(test)]
pub fn without_columns(bytes: &[u8], ids: &[u16]) -> Vec<u8> {
    let p = Part::open(bytes).unwrap();
    let kept: Vec<_> = p.dir.iter().filter(|d| !ids.contains(&d.0)).collect();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(p.rows as u32).to_le_bytes());
    out.extend_from_slice(&(kept.len() as u16).to_le_bytes());
    for &&(id, code, raw, start, end) in &kept {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(code);
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&(end - start).to_le_bytes());
    }
    for &&(_, _, _, start, end) in &kept {
        out.extend_from_slice(&bytes[start as usize..end as usize]);
    }
    out
}
