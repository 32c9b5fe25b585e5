//! Fuzz the flow store's partition files (issue 16, `flowstore::part`): the first byte picks
//! the mode. Even: the rest is a partition file — opening, the address index and decoding it
//! never panic, and what decodes re-encodes to a file that decodes to the same rows. Odd: the
//! rest is cut into flows (every field taken from the bytes, IPv4/IPv6/absent addresses, NAT
//! blocks, missing times) — encoding then decoding gives them back exactly, and the partition's
//! address summary admits every row's addresses and exporter, and the postings list every row
//! under each of its addresses.
//!
//! The file is included by path (as serve_framing does) so that only the partition format is
//! built with sanitizers, not the store's file handling.
#![no_main]

#[path = "../../crates/flowstore/src/part.rs"]
#[allow(dead_code)]
mod part;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use model::flow::{FlowNat, FlowRecord};
use part::{FlowRow, Part, encode};

fn take<const N: usize>(b: &mut &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = N.min(b.len());
    a[..n].copy_from_slice(&b[..n]);
    *b = &b[n..];
    a
}

fn ip(b: &mut &[u8], sel: u8) -> Option<IpAddr> {
    match sel % 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::from(take::<4>(b)))),
        _ => Some(IpAddr::V6(Ipv6Addr::from(take::<16>(b)))),
    }
}

fn row(b: &mut &[u8], seq: u64) -> FlowRow {
    let [s0, s1, s2, s3] = take::<4>(b);
    let u64_ = |b: &mut &[u8]| u64::from_le_bytes(take::<8>(b));
    let src = ip(b, s0);
    let dst = ip(b, s0 / 3);
    let nat = (s1 & 1 != 0).then(|| FlowNat {
        src: ip(b, s1 >> 1),
        dst: ip(b, s1 >> 3),
        src_port: (s1 & 0x20 != 0).then(|| u16::from_le_bytes(take::<2>(b))),
        dst_port: (s1 & 0x40 != 0).then(|| u16::from_le_bytes(take::<2>(b))),
        event: (s1 & 0x80 != 0).then(|| take::<1>(b)[0]),
    });
    let exporter = (s2 & 1 != 0).then(|| {
        SocketAddr::new(
            ip(b, 1 + (s2 >> 1) % 2).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            u16::from_le_bytes(take::<2>(b)),
        )
    });
    FlowRow {
        seq,
        // Legacy rows and derived ones (column 29) both round-trip.
        sub: u32::from(s3 >> 3),
        observer: if s3 & 1 == 0 { "network" } else { "hypervisor" }.to_string(),
        rec: FlowRecord {
            version: u16::from_le_bytes(take::<2>(b)),
            exporter,
            domain: u32::from_le_bytes(take::<4>(b)),
            datagram_seq: u64_(b),
            flowset: u16::from_le_bytes(take::<2>(b)),
            record: u16::from_le_bytes(take::<2>(b)),
            template: u16::from_le_bytes(take::<2>(b)),
            src,
            dst,
            src_port: u16::from_le_bytes(take::<2>(b)),
            dst_port: u16::from_le_bytes(take::<2>(b)),
            proto: take::<1>(b)[0],
            tcp_flags: take::<1>(b)[0],
            tos: take::<1>(b)[0],
            packets: u64_(b),
            bytes: u64_(b),
            sampling: u32::from_le_bytes(take::<4>(b)),
            start_ms: (s3 & 2 != 0).then(|| u64_(b) as i64),
            end_ms: (s3 & 4 != 0).then(|| u64_(b) as i64),
            export_ms: u64_(b) as i64,
            in_if: u32::from_le_bytes(take::<4>(b)),
            out_if: u32::from_le_bytes(take::<4>(b)),
            nat,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Ok(p) = Part::open(rest) else { return };
        let _ = p.has_addr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let _ = p.has_addr(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let _ = p.has_addr_in(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(10, 255, 255, 255)),
        );
        if let Ok(s) = p.summary() {
            let _ = s.has_addr_in(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            );
        }
        if let Ok(Some(ix)) = p.addr_index() {
            for k in 0..ix.post4.len() {
                let _ = ix.post4.rows_of(k);
            }
            for k in 0..ix.post6.len() {
                let _ = ix.post6.rows_of(k);
            }
        }
        let _ = p.decode_where(&|i| i % 3 == 0);
        if let Ok(rows) = p.decode_all() {
            let again = encode(&rows).expect("encode");
            let back = Part::open(&again).and_then(|p| p.decode_all()).expect("re-read");
            assert_eq!(back, rows);
        }
    } else {
        let mut b = rest;
        let mut rows = Vec::new();
        let mut seq = 0u64;
        while !b.is_empty() && rows.len() < 4096 {
            seq = seq.wrapping_add(1 + u64::from(b[0]));
            rows.push(row(&mut b, seq));
        }
        let bytes = encode(&rows).expect("encode");
        let back = Part::open(&bytes).and_then(|p| p.decode_all()).expect("decode");
        assert_eq!(back, rows);
        // The address summary a reader prunes with admits every row's addresses and exporter.
        let s = Part::open(&bytes).and_then(|p| p.summary()).expect("summary");
        for r in &rows {
            for a in [r.rec.src, r.rec.dst].into_iter().flatten() {
                assert!(s.has_addr_in(a, a), "{a} missing from the summary");
            }
            if let Some(e) = r.rec.exporter {
                assert!(s.exporters.contains(&e.ip()));
            }
        }
        // The postings name each row under each of its addresses.
        let ix = Part::open(&bytes)
            .and_then(|p| p.addr_index())
            .expect("postings")
            .expect("written with postings");
        for (i, r) in rows.iter().enumerate() {
            for a in [r.rec.src, r.rec.dst].into_iter().flatten() {
                let listed = match a {
                    IpAddr::V4(v) => ix
                        .addr4
                        .binary_search(&u32::from(v))
                        .is_ok_and(|k| ix.post4.rows_of(k).expect("list").contains(&(i as u32))),
                    IpAddr::V6(v) => ix
                        .addr6
                        .binary_search(&v.octets())
                        .is_ok_and(|k| ix.post6.rows_of(k).expect("list").contains(&(i as u32))),
                };
                assert!(listed, "row {i} missing from the postings of {a}");
            }
        }
    }
});
