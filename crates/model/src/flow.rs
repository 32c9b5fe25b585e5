//! One normalised flow record ([`FlowRecord`]) and its compact byte encoding: the raw bytes of
//! a ledger record of format `netflow-record` (docs/FORMAT.md "NetFlow records").
//!
//! A NetFlow v9 / IPFIX datagram can only be decoded with template state from earlier
//! datagrams of the same exporter. pugmark therefore stores the datagram itself (format
//! `netflow-datagram`, the evidence) and, next to it, one derived record per flow in this
//! encoding, made by crate `flow` at ingest. The derived record names the datagram's ledger
//! position and the flow's place in it, so anyone can check it against the datagram, and
//! decoding it needs no state: `pugmark reindex` rebuilds flow events without templates.
//!
//! The layout is written by hand (like the envelope) because it is part of the evidence
//! format. Little-endian throughout; a leading encoding version; presence flags for the
//! optional parts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Encoding version written by this build for a record without NAT fields (what every
/// earlier build wrote and reads).
pub const FLOW_RECORD_VERSION: u8 = 1;
/// Encoding version of a record carrying NAT fields (issue 12): version 1's bytes, flag
/// `F_NAT` set, then the NAT block (docs/FORMAT.md "NetFlow records"). A build that knows only
/// version 1 refuses it with "newer than this pugmark understands" instead of misreading it.
pub const FLOW_RECORD_VERSION_NAT: u8 = 2;

const F_SRC: u8 = 1;
const F_DST: u8 = 1 << 1;
const F_START: u8 = 1 << 2;
const F_END: u8 = 1 << 3;
const F_EXPORTER: u8 = 1 << 4;
const F_NAT: u8 = 1 << 5;

const N_SRC: u8 = 1;
const N_DST: u8 = 1 << 1;
const N_SPORT: u8 = 1 << 2;
const N_DPORT: u8 = 1 << 3;
const N_EVENT: u8 = 1 << 4;

/// The NAT information elements of one flow (IPFIX / NetFlow v9): postNATSourceIPv4Address
/// (225) / postNATSourceIPv6Address (281), postNATDestinationIPv4Address (226) / …IPv6 (282),
/// postNAPTSourceTransportPort (227), postNAPTDestinationTransportPort (228), natEvent (230).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowNat {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub event: Option<u8>,
}

impl FlowNat {
    pub fn is_empty(&self) -> bool {
        *self == FlowNat::default()
    }
}

/// One flow as an exporter reported it, normalised across NetFlow v5, v9 and IPFIX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// 5, 9 or 10 (IPFIX).
    pub version: u16,
    /// The exporter's address and port, when known (a packet capture or a listener; not a
    /// bare payload file).
    pub exporter: Option<SocketAddr>,
    /// v9 source id / IPFIX observation domain id (v5: engine type << 8 | engine id).
    pub domain: u32,
    /// Ledger position of the datagram the flow was exported in.
    pub datagram_seq: u64,
    /// Which flowset / set of the datagram (0-based; 0 for v5) …
    pub flowset: u16,
    /// … and which record inside it (0-based).
    pub record: u16,
    /// The template that described the record (0 for v5).
    pub template: u16,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// For ICMP, `dst_port` carries type << 8 | code (as v5 exporters and nfdump do).
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub tos: u8,
    /// Packets and bytes as exported (before sampling is applied).
    pub packets: u64,
    pub bytes: u64,
    /// 1 in N packets sampled; 1 when unsampled or unknown.
    pub sampling: u32,
    /// First and last packet, Unix milliseconds, absolute (uptime-relative times already
    /// converted with the export header).
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// The export header's time, Unix milliseconds.
    pub export_ms: i64,
    pub in_if: u32,
    pub out_if: u32,
    /// Post-NAT addresses and ports when the exporter sent them (a NAT gateway's export).
    pub nat: Option<FlowNat>,
}

impl FlowRecord {
    /// Packets with the sampling rate applied.
    pub fn packets_scaled(&self) -> u64 {
        self.packets.saturating_mul(u64::from(self.sampling.max(1)))
    }

    /// Bytes with the sampling rate applied.
    pub fn bytes_scaled(&self) -> u64 {
        self.bytes.saturating_mul(u64::from(self.sampling.max(1)))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut flags = 0u8;
        for (on, bit) in [
            (self.src.is_some(), F_SRC),
            (self.dst.is_some(), F_DST),
            (self.start_ms.is_some(), F_START),
            (self.end_ms.is_some(), F_END),
            (self.exporter.is_some(), F_EXPORTER),
            (self.nat.is_some(), F_NAT),
        ] {
            if on {
                flags |= bit;
            }
        }
        out.push(if self.nat.is_some() {
            FLOW_RECORD_VERSION_NAT
        } else {
            FLOW_RECORD_VERSION
        });
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(flags);
        out.extend_from_slice(&self.datagram_seq.to_le_bytes());
        out.extend_from_slice(&self.flowset.to_le_bytes());
        out.extend_from_slice(&self.record.to_le_bytes());
        out.extend_from_slice(&self.template.to_le_bytes());
        out.extend_from_slice(&self.domain.to_le_bytes());
        if let Some(e) = self.exporter {
            put_ip(&mut out, e.ip());
            out.extend_from_slice(&e.port().to_le_bytes());
        }
        if let Some(ip) = self.src {
            put_ip(&mut out, ip);
        }
        if let Some(ip) = self.dst {
            put_ip(&mut out, ip);
        }
        out.extend_from_slice(&self.src_port.to_le_bytes());
        out.extend_from_slice(&self.dst_port.to_le_bytes());
        out.extend_from_slice(&[self.proto, self.tcp_flags, self.tos]);
        out.extend_from_slice(&self.packets.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.sampling.to_le_bytes());
        if let Some(t) = self.start_ms {
            out.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(t) = self.end_ms {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&self.export_ms.to_le_bytes());
        out.extend_from_slice(&self.in_if.to_le_bytes());
        out.extend_from_slice(&self.out_if.to_le_bytes());
        if let Some(n) = &self.nat {
            let mut nf = 0u8;
            for (on, bit) in [
                (n.src.is_some(), N_SRC),
                (n.dst.is_some(), N_DST),
                (n.src_port.is_some(), N_SPORT),
                (n.dst_port.is_some(), N_DPORT),
                (n.event.is_some(), N_EVENT),
            ] {
                if on {
                    nf |= bit;
                }
            }
            out.push(nf);
            if let Some(ip) = n.src {
                put_ip(&mut out, ip);
            }
            if let Some(ip) = n.dst {
                put_ip(&mut out, ip);
            }
            if let Some(p) = n.src_port {
                out.extend_from_slice(&p.to_le_bytes());
            }
            if let Some(p) = n.dst_port {
                out.extend_from_slice(&p.to_le_bytes());
            }
            if let Some(e) = n.event {
                out.push(e);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FlowRecord, FlowRecordError> {
        let mut r = Cursor { b: bytes, pos: 0 };
        let v = r.u8()?;
        if v != FLOW_RECORD_VERSION && v != FLOW_RECORD_VERSION_NAT {
            return Err(FlowRecordError::Version(v));
        }
        let version = r.u16()?;
        let flags = r.u8()?;
        let datagram_seq = r.u64()?;
        let flowset = r.u16()?;
        let record = r.u16()?;
        let template = r.u16()?;
        let domain = r.u32()?;
        let exporter = if flags & F_EXPORTER != 0 {
            let ip = r.ip()?;
            Some(SocketAddr::new(ip, r.u16()?))
        } else {
            None
        };
        let src = (flags & F_SRC != 0).then(|| r.ip()).transpose()?;
        let dst = (flags & F_DST != 0).then(|| r.ip()).transpose()?;
        let src_port = r.u16()?;
        let dst_port = r.u16()?;
        let proto = r.u8()?;
        let tcp_flags = r.u8()?;
        let tos = r.u8()?;
        let packets = r.u64()?;
        let bytes_ = r.u64()?;
        let sampling = r.u32()?;
        let start_ms = (flags & F_START != 0).then(|| r.i64()).transpose()?;
        let end_ms = (flags & F_END != 0).then(|| r.i64()).transpose()?;
        let export_ms = r.i64()?;
        let in_if = r.u32()?;
        let out_if = r.u32()?;
        // The NAT block: only in version 2, exactly when its flag says.
        if (v == FLOW_RECORD_VERSION_NAT) != (flags & F_NAT != 0) {
            return Err(FlowRecordError::NatFlag(v));
        }
        let nat = if flags & F_NAT != 0 {
            let nf = r.u8()?;
            Some(FlowNat {
                src: (nf & N_SRC != 0).then(|| r.ip()).transpose()?,
                dst: (nf & N_DST != 0).then(|| r.ip()).transpose()?,
                src_port: (nf & N_SPORT != 0).then(|| r.u16()).transpose()?,
                dst_port: (nf & N_DPORT != 0).then(|| r.u16()).transpose()?,
                event: (nf & N_EVENT != 0).then(|| r.u8()).transpose()?,
            })
        } else {
            None
        };
        if r.pos != bytes.len() {
            return Err(FlowRecordError::Trailing(r.pos));
        }
        Ok(FlowRecord {
            version,
            exporter,
            domain,
            datagram_seq,
            flowset,
            record,
            template,
            src,
            dst,
            src_port,
            dst_port,
            proto,
            tcp_flags,
            tos,
            packets,
            bytes: bytes_,
            sampling,
            start_ms,
            end_ms,
            export_ms,
            in_if,
            out_if,
            nat,
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlowRecordError {
    #[error("flow record encoding version {0} is newer than this pugmark understands")]
    Version(u8),
    #[error("flow record truncated at byte {0}")]
    Truncated(usize),
    #[error("invalid address family in flow record at byte {0}")]
    Family(usize),
    #[error("trailing bytes in flow record from byte {0}")]
    Trailing(usize),
    #[error("flow record version {0} disagrees with its NAT flag")]
    NatFlag(u8),
}

/// An address as the flow encodings write it: `4` and 4 bytes, or `6` and 16 (also the
/// decoder's saved state, crate `flow`).
pub fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], FlowRecordError> {
        let end = self.pos + N;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or(FlowRecordError::Truncated(self.pos))?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        self.pos = end;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FlowRecordError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, FlowRecordError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, FlowRecordError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, FlowRecordError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, FlowRecordError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn ip(&mut self) -> Result<IpAddr, FlowRecordError> {
        let at = self.pos;
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.take::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.take::<16>()?))),
            _ => Err(FlowRecordError::Family(at)),
        }
    }
}

/// IANA protocol number to the lower-case name used in `proto` fields.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

// ---- flow positions (docs/design/flow-derivation.md §1.3) ----
//
// A flow derived from a stored datagram has no ledger record of its own. Inside a process
// every reader keys records by one `u64` (search keys, memo maps, fact rows); a derived flow
// takes a *flow position* there: the tag bit 62, the ledger position E of the datagram whose
// decoding emitted it (< 2^41) and its index k in that decoding's output (< 2^21). Bit 63
// stays clear, so a position is a positive i64 for SQLite. A flow position never leaves the
// process: answers cite the datagram's `seq` and the flow's place in it ([`FlowAt`]).

/// The bit that marks a flow position.
pub const FLOW_TAG: u64 = 1 << 62;
/// Bits of a flow position's index within its emitting datagram's output.
pub const FLOW_INDEX_BITS: u32 = 21;
/// Bits of the emitting datagram's ledger position.
pub const FLOW_SEQ_BITS: u32 = 62 - FLOW_INDEX_BITS;
/// Flows one datagram's decoding may emit (more are cut there and counted).
pub const MAX_FLOWS_PER_FEED: u64 = 1 << FLOW_INDEX_BITS;
/// Largest ledger position a flow position can carry.
pub const MAX_FLOW_SEQ: u64 = (1 << FLOW_SEQ_BITS) - 1;

/// The position of the `k`th flow (0-based) emitted while the datagram at ledger position `e`
/// was decoded; `None` when either is out of range (`e` 0 or ≥ 2^41, `k` ≥ 2^21).
pub fn flow_pos(e: u64, k: u64) -> Option<u64> {
    (e > 0 && e <= MAX_FLOW_SEQ && k < MAX_FLOWS_PER_FEED)
        .then_some(FLOW_TAG | (e << FLOW_INDEX_BITS) | k)
}

/// Whether `seq` is a flow position rather than a ledger position.
pub fn is_flow_pos(seq: u64) -> bool {
    seq & FLOW_TAG != 0
}

/// The emitting datagram's position and the flow's index, for a flow position.
pub fn split_flow_pos(seq: u64) -> Option<(u64, u64)> {
    is_flow_pos(seq).then(|| {
        let v = seq & !FLOW_TAG & !(1 << 63);
        (v >> FLOW_INDEX_BITS, v & (MAX_FLOWS_PER_FEED - 1))
    })
}

/// The order of records at one instant: a ledger position `s` sorts as `(s, 0)`, a flow
/// position as `(E, 1 + k)`, so derived flows sort right after the datagram whose decoding
/// emitted them, in emission order, where their per-flow ledger records used to stand. One to
/// one: no two positions share a key.
pub fn order_key(seq: u64) -> (u64, u64) {
    match split_flow_pos(seq) {
        Some((e, k)) => (e, 1 + k),
        None => (seq, 0),
    }
}

/// Where a derived flow sits in the datagram that carries it: what an answer cites beside the
/// datagram's `seq`, and what stays the same across processes and `reindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowAt {
    /// Which flowset / set of the datagram (0-based; 0 for v5) …
    pub flowset: u16,
    /// … and which record inside it (0-based).
    pub record: u16,
}

impl FlowAt {
    /// A flow's place in its datagram, as its record names it.
    pub fn of(rec: &FlowRecord) -> FlowAt {
        FlowAt {
            flowset: rec.flowset,
            record: rec.record,
        }
    }
}

impl std::fmt::Display for FlowAt {
    /// `F.R`, the form of the `datagram_record` field.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.flowset, self.record)
    }
}

impl std::str::FromStr for FlowAt {
    type Err = String;
    fn from_str(s: &str) -> Result<FlowAt, String> {
        let bad = || format!("{s:?} is not a flow's place in its datagram (FLOWSET.RECORD)");
        let (f, r) = s.split_once('.').ok_or_else(bad)?;
        let num = |v: &str| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            v.parse::<u16>().map_err(|_| bad())
        };
        Ok(FlowAt {
            flowset: num(f)?,
            record: num(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowRecord {
        FlowRecord {
            version: 10,
            exporter: Some("192.0.2.1:4739".parse().unwrap()),
            domain: 7,
            datagram_seq: 42,
            flowset: 1,
            record: 3,
            template: 256,
            src: Some("10.0.0.1".parse().unwrap()),
            dst: Some("2001:db8::1".parse().unwrap()),
            src_port: 51680,
            dst_port: 443,
            proto: 6,
            tcp_flags: 0x1b,
            tos: 0,
            packets: 6,
            bytes: 409,
            sampling: 1,
            start_ms: Some(1_764_297_820_178),
            end_ms: None,
            export_ms: 1_764_297_830_000,
            in_if: 1,
            out_if: 2,
            nat: None,
        }
    }

    #[test]
    fn nat_fields_round_trip_and_old_records_still_decode() {
        // A version-1 record as every earlier build wrote it: byte for byte unchanged.
        let old = sample().encode();
        assert_eq!(old[0], FLOW_RECORD_VERSION);
        assert_eq!(FlowRecord::decode(&old).unwrap(), sample());
        let mut r = sample();
        r.nat = Some(FlowNat {
            src: Some("192.0.2.254".parse().unwrap()),
            dst: None,
            src_port: Some(50001),
            dst_port: None,
            event: Some(1),
        });
        let b = r.encode();
        assert_eq!(b[0], FLOW_RECORD_VERSION_NAT);
        assert_eq!(FlowRecord::decode(&b).unwrap(), r);
        for n in 0..b.len() {
            assert!(FlowRecord::decode(&b[..n]).is_err(), "prefix {n}");
        }
        // A version/flag disagreement is refused, not misread.
        let mut lying = old.clone();
        lying[0] = FLOW_RECORD_VERSION_NAT;
        assert!(FlowRecord::decode(&lying).is_err());
        r.nat = Some(FlowNat::default());
        assert_eq!(FlowRecord::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(FlowRecord::decode(&r.encode()).unwrap(), r);
        let mut r2 = sample();
        r2.exporter = None;
        r2.src = None;
        r2.start_ms = None;
        assert_eq!(FlowRecord::decode(&r2.encode()).unwrap(), r2);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(FlowRecord::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            FlowRecord::decode(&longer),
            Err(FlowRecordError::Trailing(_))
        ));
    }

    #[test]
    fn flow_positions_round_trip_and_stay_positive() {
        for (e, k) in [
            (1, 0),
            (2, 5),
            (MAX_FLOW_SEQ, MAX_FLOWS_PER_FEED - 1),
            (1 << 32, 77),
        ] {
            let p = flow_pos(e, k).unwrap();
            assert!(is_flow_pos(p));
            assert_eq!(p >> 63, 0, "bit 63 is never set");
            assert!(i64::try_from(p).is_ok());
            assert_eq!(split_flow_pos(p), Some((e, k)));
            assert_eq!(order_key(p), (e, 1 + k));
        }
        assert_eq!(flow_pos(0, 0), None);
        assert_eq!(flow_pos(MAX_FLOW_SEQ + 1, 0), None);
        assert_eq!(flow_pos(1, MAX_FLOWS_PER_FEED), None);
        // Ledger positions are not flow positions and keep their own order.
        for s in [0, 1, 2, 1 << 40, MAX_FLOW_SEQ] {
            assert!(!is_flow_pos(s));
            assert_eq!(split_flow_pos(s), None);
            assert_eq!(order_key(s), (s, 0));
        }
    }

    /// Flows sort after the datagram that emitted them, in emission order, and before the
    /// next record: where their per-flow records stood in the ledger.
    #[test]
    fn flows_sort_where_their_records_stood() {
        let d = 1000;
        let mut keys = vec![
            order_key(d + 1),
            order_key(flow_pos(d, 1).unwrap()),
            order_key(d),
            order_key(flow_pos(d, 0).unwrap()),
            order_key(d - 1),
        ];
        keys.sort();
        assert_eq!(keys, vec![(d - 1, 0), (d, 0), (d, 1), (d, 2), (d + 1, 0)]);
    }

    #[test]
    fn a_flows_place_reads_back() {
        let at = FlowAt {
            flowset: 2,
            record: 17,
        };
        assert_eq!(at.to_string(), "2.17");
        assert_eq!("2.17".parse::<FlowAt>(), Ok(at));
        for bad in [
            "", "2", "2.", ".3", "2.3.4", "-1.2", "+1.2", "1.65536", "a.b",
        ] {
            assert!(bad.parse::<FlowAt>().is_err(), "{bad}");
        }
    }
}
