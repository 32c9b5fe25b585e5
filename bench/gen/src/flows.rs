//! `flowbench`: the NetFlow side of the benchmark, three subcommands over one flow set.
//!
//! * `flowbench gen FLOWS SEED OUT.pcap`: a seeded capture of NetFlow v9 export datagrams
//!   (Ethernet/IPv4/UDP from 192.0.2.10 to 127.0.0.1:2055), 30 IPv4 flows each, the template
//!   (softflowd's field set: addresses, ports, protocol, flags, packets, bytes, uptime
//!   first/last, interfaces) in the first datagram and again every 64 datagrams, as exporters
//!   do. Hosts from a site of 1000 VMs talking to a skewed pool of 20,000 outside addresses.
//! * `flowbench decode IN.pcap [ROUNDS]`: `flow::FlowDecoder` over every datagram of the
//!   capture, ROUNDS times, on one thread; prints records/s (decode only, no ledger, no index).
//! * `flowbench replay IN.pcap HOST:PORT [PER_MS]`: sends every datagram's payload to a
//!   collector (nfcapd), at most PER_MS datagrams per millisecond; prints what it sent and how
//!   long it took.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PER_DATAGRAM: usize = 30;
const TEMPLATE: [(u16, u16); 12] = [
    (8, 4),
    (12, 4),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
];

fn datagram(rng: &mut Rng, n: usize, seq: u32, uptime: u32, secs: u32, template: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(1400);
    d.extend_from_slice(&9u16.to_be_bytes());
    let count = n + usize::from(template);
    d.extend_from_slice(&(count as u16).to_be_bytes());
    d.extend_from_slice(&uptime.to_be_bytes());
    d.extend_from_slice(&secs.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    if template {
        d.extend_from_slice(&0u16.to_be_bytes());
        d.extend_from_slice(&((8 + 4 * TEMPLATE.len()) as u16).to_be_bytes());
        d.extend_from_slice(&1024u16.to_be_bytes());
        d.extend_from_slice(&(TEMPLATE.len() as u16).to_be_bytes());
        for (id, len) in TEMPLATE {
            d.extend_from_slice(&id.to_be_bytes());
            d.extend_from_slice(&len.to_be_bytes());
        }
    }
    let rec_len: usize = TEMPLATE.iter().map(|t| usize::from(t.1)).sum();
    let body = rec_len * n;
    let pad = (4 - (body + 4) % 4) % 4;
    d.extend_from_slice(&1024u16.to_be_bytes());
    d.extend_from_slice(&((4 + body + pad) as u16).to_be_bytes());
    for _ in 0..n {
        let vm = 10 << 24 | (rng.below(1000) as u32 + 1);
        // Skewed outside pool: half the flows go to 200 busy addresses.
        let out = if rng.below(2) == 0 {
            rng.below(200) as u32
        } else {
            rng.below(20_000) as u32
        };
        let outside = 198 << 24 | 51 << 16 | out;
        let (src, dst) = if rng.below(2) == 0 {
            (vm, outside)
        } else {
            (outside, vm)
        };
        let start = uptime.wrapping_sub(rng.below(60_000) as u32);
        let end = start.wrapping_add(rng.below(5_000) as u32);
        let packets = rng.below(200) as u32 + 1;
        let bytes = packets * (40 + rng.below(1400) as u32);
        for v in [src, dst, start, end, bytes, packets, 1, 2] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&(1024 + rng.below(60_000) as u16).to_be_bytes());
        d.extend_from_slice(&[22u16, 80, 443, 53, 8080][rng.below(5) as usize].to_be_bytes());
        d.push([6u8, 6, 6, 17][rng.below(4) as usize]);
        d.push(0x1b);
    }
    d.extend(std::iter::repeat_n(0u8, pad));
    d
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 42);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 10, 127, 0, 0, 1]);
    f.extend_from_slice(&2055u16.to_be_bytes());
    f.extend_from_slice(&2055u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn generate(flows: u64, seed: u64, out: &str) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    w.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0])?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let base_secs = 1_764_547_200u32; // 2025-12-01T00:00:00Z
    let mut left = flows;
    let mut seq = 0u32;
    while left > 0 {
        let n = left.min(PER_DATAGRAM as u64) as usize;
        let uptime = 3_600_000 + seq * 10;
        let secs = base_secs + seq / 100;
        let d = datagram(&mut rng, n, seq, uptime, secs, seq.is_multiple_of(64));
        let f = frame(&d);
        w.write_all(&secs.to_le_bytes())?;
        w.write_all(&((seq % 100) * 10_000).to_le_bytes())?;
        w.write_all(&(f.len() as u32).to_le_bytes())?;
        w.write_all(&(f.len() as u32).to_le_bytes())?;
        w.write_all(&f)?;
        left -= n as u64;
        seq += 1;
    }
    w.flush()?;
    eprintln!("{flows} flows in {seq} datagrams");
    Ok(())
}

fn load(path: &str) -> Vec<(SocketAddr, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let (grams, _) = flow::pcap::udp_datagrams(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    grams.into_iter().map(|g| (g.src, g.payload)).collect()
}

fn decode(path: &str, rounds: u32) {
    let grams = load(path);
    let mut best = f64::MAX;
    let mut records = 0u64;
    for _ in 0..rounds.max(1) {
        let mut dec = flow::FlowDecoder::default();
        let t = Instant::now();
        let mut n = 0u64;
        for (i, (src, payload)) in grams.iter().enumerate() {
            n += dec.feed(*src, i as u64, payload, 0).len() as u64;
        }
        best = best.min(t.elapsed().as_secs_f64());
        records = n;
    }
    println!(
        "decode: {records} records from {} datagrams, best of {rounds}: {best:.3} s = {:.0} records/s on one core",
        grams.len(),
        records as f64 / best
    );
}

fn replay(path: &str, to: &str, per_ms: usize) {
    let grams = load(path);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let t = Instant::now();
    let mut sent = 0usize;
    for chunk in grams.chunks(per_ms.max(1)) {
        let tick = Instant::now();
        for (_, p) in chunk {
            if sock.send_to(p, to).is_ok() {
                sent += 1;
            }
        }
        if let Some(rest) = Duration::from_millis(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    println!(
        "replay: {sent} datagrams to {to} in {:.3} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "gen" => {
            let flows = arg(2).parse().unwrap_or(1_000_000);
            let seed = arg(3).parse().unwrap_or(42);
            if let Err(e) = generate(flows, seed, arg(4)) {
                eprintln!("flowbench: {e}");
                std::process::exit(1);
            }
        }
        "decode" => decode(arg(2), arg(3).parse().unwrap_or(5)),
        "replay" => replay(arg(2), arg(3), arg(4).parse().unwrap_or(8)),
        _ => {
            eprintln!(
                "usage: flowbench gen FLOWS SEED OUT.pcap | decode IN.pcap [ROUNDS] | replay IN.pcap HOST:PORT [PER_MS]"
            );
            std::process::exit(2);
        }
    }
}
