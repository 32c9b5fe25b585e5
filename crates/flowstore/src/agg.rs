//! Top-N aggregation straight from the columns (`pugmark flows --top`, nfdump's `-s`): only the
//! columns the key, the filter and the sums need are decompressed, and no row is built.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::part::{self, Part, PartError, arr};
use crate::{FlowFilter, canonical};

/// The groups of one aggregation. Keys are addresses, ports and protocols from the ledger's
/// own derived records, hashed per flow tens of millions of times: SipHash's flooding
/// resistance buys nothing here and cost a fifth of a top-N query (perf), so FxHash's
/// multiply-rotate (rustc's hasher) with splitmix64's finaliser is used instead of adding a crate.
pub type Groups = HashMap<KeyVal, Agg, BuildHasherDefault<FxHasher>>;

#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: the multiply-rotate leaves the low bits (which hashbrown
        // picks buckets with) depending only on the inputs' low bits — 198.51.0.x addresses
        // all collided without it (3 s instead of 0.4 s for a top-N over 2 M flows).
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// What flows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Src,
    Dst,
    /// Source and destination port (a flow counts once for each distinct one, as nfdump's
    /// `-s port`).
    Port,
    Proto,
}

/// One group's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyVal {
    Ip(IpAddr),
    Port(u16),
    Proto(u8),
}

/// Sums over a group: flows, packets and bytes (sampling applied), earliest and latest flow
/// time (Unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Agg {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Agg {
    pub fn add(&mut self, packets: u64, bytes: u64, t: i64) {
        if self.flows == 0 {
            self.first_ms = t;
            self.last_ms = t;
        }
        self.flows += 1;
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
        self.first_ms = self.first_ms.min(t);
        self.last_ms = self.last_ms.max(t);
    }

    pub fn merge(&mut self, o: &Agg) {
        if o.flows == 0 {
            return;
        }
        if self.flows == 0 {
            *self = *o;
            return;
        }
        self.flows += o.flows;
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

fn u64s(p: &Part<'_>, id: u16) -> Result<Vec<u64>, PartError> {
    p.ints(id)
}
fn u32s(p: &Part<'_>, id: u16) -> Result<Vec<u32>, PartError> {
    Ok(p.ints(id)?.into_iter().map(|v| v as u32).collect())
}
fn u16s(p: &Part<'_>, id: u16) -> Result<Vec<u16>, PartError> {
    Ok(p.ints(id)?.into_iter().map(|v| v as u16).collect())
}

/// One end's addresses of every row (None: absent).
fn addrs(
    p: &Part<'_>,
    flags: &[u8],
    c4: u16,
    c6: u16,
    present: u8,
    six: u8,
) -> Result<Vec<Option<IpAddr>>, PartError> {
    let v4 = u32s(p, c4)?;
    let v6 = p.column(c6, 0)?;
    let mut at = 0usize;
    let mut out = Vec::with_capacity(v4.len());
    for (i, &f) in flags.iter().enumerate() {
        out.push(if f & present == 0 {
            None
        } else if f & six != 0 {
            let b = v6
                .get(at..at + 16)
                .ok_or_else(|| PartError::Column(c6, "short".into()))?;
            at += 16;
            Some(IpAddr::V6(Ipv6Addr::from(arr::<16>(b))))
        } else {
            Some(IpAddr::V4(Ipv4Addr::from(v4[i])))
        });
    }
    Ok(out)
}

/// Adds the partition's flows that `filter` selects to `groups` (by `key`) and `total`.
pub fn aggregate_part(
    p: &Part<'_>,
    filter: &FlowFilter,
    key: Key,
    groups: &mut Groups,
    total: &mut Agg,
) -> Result<u64, PartError> {
    let n = p.rows();
    let flags = p.column(part::C_FLAGS, 1)?;
    let need_src = key == Key::Src || filter.src.is_some() || filter.ip.is_some();
    let need_dst = key == Key::Dst || filter.dst.is_some() || filter.ip.is_some();
    let src = if need_src {
        addrs(
            p,
            &flags,
            part::C_SRC4,
            part::C_SRC6,
            part::R_SRC,
            part::R_SRC6,
        )?
    } else {
        Vec::new()
    };
    let dst = if need_dst {
        addrs(
            p,
            &flags,
            part::C_DST4,
            part::C_DST6,
            part::R_DST,
            part::R_DST6,
        )?
    } else {
        Vec::new()
    };
    let need_ports = key == Key::Port || filter.port.is_some();
    let (sport, dport) = if need_ports {
        (u16s(p, part::C_SPORT)?, u16s(p, part::C_DPORT)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let proto = if key == Key::Proto || filter.proto.is_some() {
        p.column(part::C_PROTO, 1)?
    } else {
        Vec::new()
    };
    let exporter: Vec<Option<IpAddr>> = if filter.exporter.is_some() {
        let dict: Vec<Option<IpAddr>> = part::dict(&p.column(part::C_EXPORTER_DICT, 0)?)
            .iter()
            .map(|s| s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip())))
            .collect();
        u32s(p, part::C_EXPORTER)?
            .into_iter()
            .map(|k| match k {
                0 => None,
                k => dict.get(k as usize - 1).copied().flatten(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let packets = u64s(p, part::C_PACKETS)?;
    let bytes = u64s(p, part::C_BYTES)?;
    let sampling = u32s(p, part::C_SAMPLING)?;
    let start_d = u64s(p, part::C_START)?;
    // The last-packet and export-time columns only matter for rows without a first packet
    // (a flow's time is its first packet): most partitions skip them.
    let all_started = flags.iter().all(|f| f & part::R_START != 0);
    let (end_d, export_d) = if all_started {
        (Vec::new(), Vec::new())
    } else {
        (u64s(p, part::C_END)?, u64s(p, part::C_EXPORT)?)
    };
    let (mut start, mut export) = (0i64, 0i64);
    let inside = |n: &Option<crate::Net>, a: Option<IpAddr>| match n {
        None => true,
        Some(n) => a.is_some_and(|a| n.contains(a)),
    };
    let mut taken = 0u64;
    for i in 0..n {
        start = start.wrapping_add(part::unzigzag(start_d[i]));
        if !all_started {
            export = export.wrapping_add(part::unzigzag(export_d[i]));
        }
        let f = flags[i];
        // FlowRow::time_ms: first packet, else last, else the export time.
        let t = if f & part::R_START != 0 {
            start
        } else if f & part::R_END != 0 {
            part::unzigzag(end_d[i])
        } else {
            export
        };
        let s = src.get(i).copied().flatten();
        let d = dst.get(i).copied().flatten();
        let ok = inside(&filter.src, s)
            && inside(&filter.dst, d)
            && filter.ip.as_ref().is_none_or(|net| {
                s.is_some_and(|a| net.contains(a)) || d.is_some_and(|a| net.contains(a))
            })
            && filter
                .port
                .is_none_or(|pt| sport[i] == pt || dport[i] == pt)
            && filter.proto.is_none_or(|pr| proto[i] == pr)
            && filter.from_ms.is_none_or(|fr| t >= fr)
            && filter.to_ms.is_none_or(|e| t < e)
            && filter
                .exporter
                .is_none_or(|x| exporter[i] == Some(canonical(x)));
        if !ok {
            continue;
        }
        taken += 1;
        let m = u64::from(sampling[i].max(1));
        let (pk, by) = (packets[i].saturating_mul(m), bytes[i].saturating_mul(m));
        total.add(pk, by, t);
        match key {
            Key::Src => {
                if let Some(a) = s {
                    groups.entry(KeyVal::Ip(a)).or_default().add(pk, by, t);
                }
            }
            Key::Dst => {
                if let Some(a) = d {
                    groups.entry(KeyVal::Ip(a)).or_default().add(pk, by, t);
                }
            }
            Key::Port => {
                groups
                    .entry(KeyVal::Port(sport[i]))
                    .or_default()
                    .add(pk, by, t);
                if dport[i] != sport[i] {
                    groups
                        .entry(KeyVal::Port(dport[i]))
                        .or_default()
                        .add(pk, by, t);
                }
            }
            Key::Proto => groups
                .entry(KeyVal::Proto(proto[i]))
                .or_default()
                .add(pk, by, t),
        }
    }
    Ok(taken)
}
