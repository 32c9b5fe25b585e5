//! A partition read column by column, each column decompressed the first time a reader asks
//! for it: a query judging rows on their addresses and times reads those columns and the
//! address index, and decodes whole rows only for the rows that pass ([`Cols::decode`]).

use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::part::{
    AddrIndex, C_DPORT, C_EXPORTER, C_EXPORTER_DICT, C_FLAGS, C_OBSERVER, C_OBSERVER_DICT, C_PROTO,
    C_SEQ, C_SPORT, C_SRC4, C_SRC6, C_START, C_SUB, FlowRow, Part, PartError, R_SRC, R_SRC6,
    R_START, arr, dict, unzigzag,
};

type Res<T> = Result<T, PartError>;

/// A set of rows of one partition (a bitmap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    bits: Vec<u64>,
    rows: usize,
}

impl RowSet {
    pub fn none(rows: usize) -> RowSet {
        RowSet {
            bits: vec![0; rows.div_ceil(64)],
            rows,
        }
    }

    pub fn all(rows: usize) -> RowSet {
        let mut s = RowSet {
            bits: vec![u64::MAX; rows.div_ceil(64)],
            rows,
        };
        s.trim();
        s
    }

    /// Clears the bits past the last row.
    fn trim(&mut self) {
        let extra = self.bits.len() * 64 - self.rows;
        if extra > 0
            && let Some(last) = self.bits.last_mut()
        {
            *last &= u64::MAX >> extra;
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds row `i` (ignored past the partition's rows).
    pub fn insert(&mut self, i: usize) {
        if i < self.rows {
            self.bits[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        i < self.rows && self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn len(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    pub fn and(&mut self, o: &RowSet) {
        for (a, b) in self.bits.iter_mut().zip(&o.bits) {
            *a &= b;
        }
    }

    pub fn or(&mut self, o: &RowSet) {
        for (a, b) in self.bits.iter_mut().zip(&o.bits) {
            *a |= b;
        }
    }

    pub fn not(&mut self) {
        for a in &mut self.bits {
            *a = !*a;
        }
        self.trim();
    }

    /// The rows in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &bits)| {
            let mut b = bits;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let t = b.trailing_zeros() as usize;
                b &= b - 1;
                Some(w * 64 + t)
            })
        })
    }
}

/// One partition's columns, each decompressed when first asked for.
pub struct Cols<'p, 'a> {
    part: &'p Part<'a>,
    flags: OnceCell<Vec<u8>>,
    seq: OnceCell<Vec<u64>>,
    pos: OnceCell<Vec<u64>>,
    start: OnceCell<Vec<i64>>,
    /// IPv4 sources, IPv6 sources, and (only when there are IPv6 ones) each row's index
    /// among those.
    src: OnceCell<(Vec<u64>, Vec<u8>, Vec<u32>)>,
    obs: OnceCell<(Vec<u64>, Vec<String>)>,
    exp: OnceCell<(Vec<u64>, Vec<Option<SocketAddr>>)>,
    addr: OnceCell<Option<AddrIndex>>,
    proto: OnceCell<Vec<u8>>,
    sport: OnceCell<Vec<u64>>,
    dport: OnceCell<Vec<u64>>,
}

/// `cell`'s value, computed by `f` the first time.
fn cached<T>(cell: &OnceCell<T>, f: impl FnOnce() -> Res<T>) -> Res<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = f()?;
    Ok(cell.get_or_init(|| v))
}

impl<'p, 'a> Cols<'p, 'a> {
    pub fn new(part: &'p Part<'a>) -> Cols<'p, 'a> {
        Cols {
            part,
            flags: OnceCell::new(),
            seq: OnceCell::new(),
            pos: OnceCell::new(),
            start: OnceCell::new(),
            src: OnceCell::new(),
            obs: OnceCell::new(),
            exp: OnceCell::new(),
            addr: OnceCell::new(),
            proto: OnceCell::new(),
            sport: OnceCell::new(),
            dport: OnceCell::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.part.rows()
    }

    pub fn part(&self) -> &'p Part<'a> {
        self.part
    }

    fn flags(&self) -> Res<&Vec<u8>> {
        cached(&self.flags, || self.part.column(C_FLAGS, 1))
    }

    /// Each row's ledger seq.
    pub fn seqs(&self) -> Res<&[u64]> {
        cached(&self.seq, || {
            let mut s = 0u64;
            Ok(self
                .part
                .ints(C_SEQ)?
                .into_iter()
                .map(|d| {
                    s = s.wrapping_add(d);
                    s
                })
                .collect())
        })
        .map(Vec::as_slice)
    }

    /// Each row's key inside a process ([`FlowRow::position`]): its ledger seq, or for a
    /// derived row (column 29) its flow position. A derived row no flow position can hold is
    /// damage, an error.
    pub fn positions(&self) -> Res<&[u64]> {
        if !self.part.has_column(C_SUB) {
            return self.seqs();
        }
        cached(&self.pos, || {
            let seqs = self.seqs()?;
            let subs = self.part.ints(C_SUB)?;
            seqs.iter()
                .zip(subs)
                .map(|(&s, k)| match k {
                    0 => Ok(s),
                    k => model::flow::flow_pos(s, k - 1).ok_or_else(|| {
                        PartError::Column(C_SUB, "a derived row no flow position can hold".into())
                    }),
                })
                .collect()
        })
        .map(Vec::as_slice)
    }

    /// Row `i`'s first packet (Unix ms), if it has one.
    pub fn start_ms(&self, i: usize) -> Res<Option<i64>> {
        let start = cached(&self.start, || {
            let mut t = 0i64;
            Ok(self
                .part
                .ints(C_START)?
                .into_iter()
                .map(|d| {
                    t = t.wrapping_add(unzigzag(d));
                    t
                })
                .collect())
        })?;
        let f = self.flags()?;
        Ok((f.get(i).is_some_and(|f| f & R_START != 0))
            .then(|| start.get(i).copied())
            .flatten())
    }

    /// Row `i`'s source address.
    pub fn src(&self, i: usize) -> Res<Option<IpAddr>> {
        let f = self.flags()?;
        let (v4, v6, six_at) = cached(&self.src, || {
            let v4 = self.part.ints(C_SRC4)?;
            let v6 = self.part.column(C_SRC6, 0)?;
            let mut six_at = Vec::new();
            if !v6.is_empty() {
                let mut k = 0u32;
                six_at = f
                    .iter()
                    .map(|&f| {
                        let at = k;
                        k += u32::from(f & R_SRC != 0 && f & R_SRC6 != 0);
                        at
                    })
                    .collect();
            }
            Ok((v4, v6, six_at))
        })?;
        let Some(&f) = f.get(i) else { return Ok(None) };
        if f & R_SRC == 0 {
            return Ok(None);
        }
        if f & R_SRC6 != 0 {
            let at = six_at
                .get(i)
                .map(|&k| k as usize * 16)
                .unwrap_or(usize::MAX);
            let b = v6
                .get(at..at.saturating_add(16))
                .ok_or_else(|| PartError::Column(C_SRC6, "short".into()))?;
            return Ok(Some(IpAddr::V6(Ipv6Addr::from(arr::<16>(b)))));
        }
        Ok(Some(IpAddr::V4(Ipv4Addr::from(
            v4.get(i).copied().unwrap_or(0) as u32,
        ))))
    }

    /// Row `i`'s observer (as its envelope names it).
    pub fn observer(&self, i: usize) -> Res<&str> {
        let (idx, d) = cached(&self.obs, || {
            Ok((
                self.part.ints(C_OBSERVER)?,
                dict(&self.part.column(C_OBSERVER_DICT, 0)?),
            ))
        })?;
        idx.get(i)
            .and_then(|&k| d.get(k as usize))
            .map(String::as_str)
            .ok_or_else(|| PartError::Column(C_OBSERVER, "index outside its dictionary".into()))
    }

    /// The exporter column (0 none, else 1 + index into the dictionary) and the dictionary.
    pub fn exporters(&self) -> Res<(&[u64], &[Option<SocketAddr>])> {
        let (idx, d) = cached(&self.exp, || {
            Ok((
                self.part.ints(C_EXPORTER)?,
                dict(&self.part.column(C_EXPORTER_DICT, 0)?)
                    .iter()
                    .map(|s| s.parse().ok())
                    .collect(),
            ))
        })?;
        Ok((idx, d))
    }

    /// Each row's IP protocol.
    pub fn protos(&self) -> Res<&[u8]> {
        cached(&self.proto, || self.part.column(C_PROTO, 1)).map(Vec::as_slice)
    }

    /// Each row's source port (ICMP: type << 8 | code).
    pub fn src_ports(&self) -> Res<&[u64]> {
        cached(&self.sport, || self.part.ints(C_SPORT)).map(Vec::as_slice)
    }

    /// Each row's destination port (ICMP: type << 8 | code).
    pub fn dst_ports(&self) -> Res<&[u64]> {
        cached(&self.dport, || self.part.ints(C_DPORT)).map(Vec::as_slice)
    }

    /// The address index with postings (`None`: a partition written before they existed).
    pub fn addr_index(&self) -> Res<Option<&AddrIndex>> {
        Ok(cached(&self.addr, || self.part.addr_index())?.as_ref())
    }

    /// The rows of `set` (every row: `None`) decoded whole.
    pub fn decode(&self, set: Option<&RowSet>) -> Res<Vec<FlowRow>> {
        match set {
            None => self.part.decode_all(),
            Some(s) => self.part.decode_where(&|i| s.contains(i)),
        }
    }
}
