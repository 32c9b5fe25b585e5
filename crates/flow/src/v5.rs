//! NetFlow v5: a 24-byte header and fixed 48-byte records; stateless.
//!
//! The header `count` is trusted only as far as the datagram goes: records beyond the bytes
//! present are counted as a problem, and bytes after `count` records are ignored (logstash's
//! `netflow5.dat` says 2 and carries 1,704 bytes after the header).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use model::flow::FlowRecord;

use crate::Stats;

const HEADER: usize = 24;
const RECORD: usize = 48;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Absolute time of an uptime-relative stamp: the export time moved by (stamp − uptime),
/// taken as a signed 32-bit difference so that stamps from before a 2^32 ms wrap (or from
/// before the exporter's clock was read, as softflowd replaying a pcap does) come out right.
pub(crate) fn uptime_to_unix_ms(export_ms: i64, uptime_ms: u32, stamp_ms: u32) -> i64 {
    export_ms + i64::from(stamp_ms.wrapping_sub(uptime_ms) as i32)
}

pub(crate) fn decode(
    exporter: SocketAddr,
    datagram_seq: u64,
    d: &[u8],
    stats: &mut Stats,
    out: &mut Vec<FlowRecord>,
) {
    if d.len() < HEADER {
        stats.problem("truncated_header");
        return;
    }
    let count = usize::from(be16(d, 2));
    let uptime = be32(d, 4);
    let secs = i64::from(be32(d, 8));
    let nsecs = i64::from(be32(d, 12));
    let export_ms = secs * 1000 + nsecs / 1_000_000;
    let domain = u32::from(be16(d, 20));
    let sampling_field = be16(d, 22);
    let interval = u32::from(sampling_field & 0x3fff);
    let sampling = interval.max(1);
    let present = (d.len() - HEADER) / RECORD;
    if count > present {
        stats.problem("v5_count_beyond_datagram");
    }
    for i in 0..count.min(present) {
        let r = &d[HEADER + i * RECORD..HEADER + (i + 1) * RECORD];
        let first = be32(r, 24);
        let last = be32(r, 28);
        out.push(FlowRecord {
            version: 5,
            exporter: (!exporter.ip().is_unspecified()).then_some(exporter),
            domain,
            datagram_seq,
            flowset: 0,
            record: u16::try_from(i).unwrap_or(u16::MAX),
            template: 0,
            src: Some(IpAddr::V4(Ipv4Addr::from(be32(r, 0)))),
            dst: Some(IpAddr::V4(Ipv4Addr::from(be32(r, 4)))),
            src_port: be16(r, 32),
            dst_port: be16(r, 34),
            proto: r[38],
            tcp_flags: r[37],
            tos: r[39],
            packets: u64::from(be32(r, 16)),
            bytes: u64::from(be32(r, 20)),
            sampling,
            start_ms: Some(uptime_to_unix_ms(export_ms, uptime, first)),
            end_ms: Some(uptime_to_unix_ms(export_ms, uptime, last)),
            export_ms,
            in_if: u32::from(be16(r, 12)),
            out_if: u32::from(be16(r, 14)),
            nat: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_before_export_wraps_backwards() {
        // softflowd replaying an old pcap: uptime 1 ms, flow start at 2^32 − 177 s.
        let t = uptime_to_unix_ms(1_000_000_000, 1, 4_294_790_239);
        assert_eq!(t, 1_000_000_000 - 177_057 - 1);
    }
}
