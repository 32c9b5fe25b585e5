//! UDP datagrams out of a packet capture (pcap or pcapng, any link type pcap-parser knows:
//! Ethernet, Linux cooked, raw IP, BSD loopback), for `pugmark ingest capture.pcap`.
//!
//! Only what NetFlow ingest needs: each UDP datagram's source and destination, the capture
//! time and the payload. Frames that are not UDP over IPv4/IPv6, IP fragments (a collector
//! socket would see them reassembled; a capture does not) and frames that do not parse are
//! counted, never fatal. A capture cut short ends the walk with what was read.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::data::{PacketData, get_packetdata};
use pcap_parser::pcapng::Block;
use pcap_parser::{LegacyPcapSlice, Linktype, PcapBlockOwned, PcapNGSlice};

/// One UDP datagram found in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// 1-based frame number in the capture (as tshark numbers them).
    pub frame: u64,
    /// Capture time, Unix milliseconds, when the capture says it.
    pub captured_ms: Option<i64>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// What the walk over a capture counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub frames: u64,
    pub udp: u64,
    pub not_udp: u64,
    pub fragments: u64,
    pub undecodable: u64,
    /// The capture ended inside a block (file cut short) or had a damaged block.
    pub damaged: bool,
}

/// Whether the bytes start like a pcap or pcapng file.
pub fn is_capture(b: &[u8]) -> bool {
    matches!(
        b.get(0..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

/// Every UDP datagram of a capture, in capture order. `Err` only when the bytes are not a
/// capture at all.
pub fn udp_datagrams(capture: &[u8]) -> Result<(Vec<UdpDatagram>, CaptureStats), String> {
    let mut out = Vec::new();
    let mut stats = CaptureStats::default();
    if capture.get(0..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let slice = PcapNGSlice::from_slice(capture).map_err(|e| format!("not pcapng: {e:?}"))?;
        let mut linktypes: Vec<(Linktype, u8)> = Vec::new();
        for block in slice {
            let Ok(block) = block else {
                stats.damaged = true;
                break;
            };
            match block {
                PcapBlockOwned::NG(Block::SectionHeader(_)) => linktypes.clear(),
                PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                    linktypes.push((idb.linktype, idb.if_tsresol));
                }
                PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                    let Some(&(lt, res)) = linktypes.get(epb.if_id as usize) else {
                        stats.frames += 1;
                        stats.undecodable += 1;
                        continue;
                    };
                    let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let ms = ng_ts_ms(ts, res);
                    let caplen = epb.caplen as usize;
                    let data = &epb.data[..caplen.min(epb.data.len())];
                    frame(lt, data, ms, &mut stats, &mut out);
                }
                PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                    let lt = linktypes.first().map_or(Linktype::ETHERNET, |l| l.0);
                    frame(lt, spb.data, None, &mut stats, &mut out);
                }
                _ => {}
            }
        }
    } else {
        let slice =
            LegacyPcapSlice::from_slice(capture).map_err(|e| format!("not a pcap: {e:?}"))?;
        let lt = slice.header.network;
        let nanos = slice.header.is_nanosecond_precision();
        for block in slice {
            let Ok(block) = block else {
                stats.damaged = true;
                break;
            };
            if let PcapBlockOwned::Legacy(b) = block {
                let sub = if nanos {
                    i64::from(b.ts_usec) / 1_000_000
                } else {
                    i64::from(b.ts_usec) / 1000
                };
                let ms = i64::from(b.ts_sec) * 1000 + sub;
                let caplen = b.caplen as usize;
                let data = &b.data[..caplen.min(b.data.len())];
                frame(lt, data, Some(ms), &mut stats, &mut out);
            }
        }
    }
    Ok((out, stats))
}

fn ng_ts_ms(ts: u64, res: u8) -> Option<i64> {
    // if_tsresol: high bit clear → 10^-n seconds, set → 2^-n seconds.
    let units_per_sec: u64 = if res & 0x80 == 0 {
        10u64.checked_pow(u32::from(res))?
    } else {
        1u64.checked_shl(u32::from(res & 0x7f))?
    };
    let ms = u128::from(ts) * 1000 / u128::from(units_per_sec.max(1));
    i64::try_from(ms).ok()
}

fn frame(
    lt: Linktype,
    data: &[u8],
    captured_ms: Option<i64>,
    stats: &mut CaptureStats,
    out: &mut Vec<UdpDatagram>,
) {
    stats.frames += 1;
    let frame_no = stats.frames;
    let sliced = match get_packetdata(data, lt, data.len()) {
        Some(PacketData::L2(l2)) => SlicedPacket::from_ethernet(l2),
        Some(PacketData::L3(_, l3)) => SlicedPacket::from_ip(l3),
        _ => {
            stats.undecodable += 1;
            return;
        }
    };
    let Ok(p) = sliced else {
        stats.undecodable += 1;
        return;
    };
    let (src_ip, dst_ip, fragmented) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.is_payload_fragmented(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.is_payload_fragmented(),
        ),
        _ => {
            stats.not_udp += 1;
            return;
        }
    };
    if fragmented {
        stats.fragments += 1;
        return;
    }
    match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            stats.udp += 1;
            out.push(UdpDatagram {
                frame: frame_no,
                captured_ms,
                src: SocketAddr::new(src_ip, u.source_port()),
                dst: SocketAddr::new(dst_ip, u.destination_port()),
                payload: u.payload().to_vec(),
            });
        }
        _ => stats.not_udp += 1,
    }
}
