//! `flowstore`: the columnar flow store (crate `flowstore`, issue 16) on a flow set, for
//! `bench/flows/run`, beside nfcapd and nfdump.
//!
//! * `flowstore ingest IN.pcap DIR`: every export datagram through `flow::FlowDecoder` into a
//!   `FlowStore` in DIR (partitions written as they fill, one commit at the end, as the
//!   pipeline's indexer does): flows/s end to end (capture read, decode, columns, zstd,
//!   fsync) and the bytes stored. Ledger positions are made up (datagram i at i × 64) — this
//!   measures the view, not the ledger.
//! * `flowstore top DIR srcip|dstip|port|proto bytes|packets|flows N [ROUNDS]`: the top-N
//!   query `pugmark flows --top` makes, best of ROUNDS; prints the groups as
//!   `key flows packets bytes`, one per line, then the time on stderr.

use std::net::SocketAddr;
use std::time::Instant;

use flowstore::{FlowFilter, FlowStore, Key, KeyVal, top_n};

fn load(path: &str) -> Vec<(SocketAddr, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let (grams, _) = flow::pcap::udp_datagrams(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    grams.into_iter().map(|g| (g.src, g.payload)).collect()
}

fn ingest(input: &str, dir: &str) {
    let t = Instant::now();
    let grams = load(input);
    let mut dec = flow::FlowDecoder::default();
    let mut store = FlowStore::open(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let mut n = 0u64;
    let mut last = 0u64;
    for (i, (src, payload)) in grams.iter().enumerate() {
        let dseq = (i as u64 + 1) * 64;
        for (k, rec) in dec.feed(*src, dseq, payload, 0).into_iter().enumerate() {
            last = dseq + 1 + k as u64;
            store
                .add(last, "network".to_string(), rec)
                .unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    store
        .commit_at(last, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let secs = t.elapsed().as_secs_f64();
    println!(
        "flowstore ingest: {n} flows from {} datagrams in {secs:.2} s = {:.0} flows/s; {} partitions, {} bytes ({:.1} bytes/flow)",
        grams.len(),
        n as f64 / secs,
        store.partitions().len(),
        store.bytes(),
        store.bytes() as f64 / n.max(1) as f64
    );
}

fn top(dir: &str, by: &str, order: &str, n: usize, rounds: u32) {
    let store = FlowStore::open_read(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let key = match by {
        "srcip" => Key::Src,
        "dstip" => Key::Dst,
        "port" => Key::Port,
        _ => Key::Proto,
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut best = f64::MAX;
    let mut out = Vec::new();
    let mut rows = 0;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let (groups, _, st) = store
            .aggregate(&FlowFilter::default(), key, threads)
            .unwrap_or_else(|e| panic!("{e}"));
        out = top_n(
            groups,
            |a| match order {
                "packets" => a.packets,
                "flows" => a.flows,
                _ => a.bytes,
            },
            n,
        );
        best = best.min(t.elapsed().as_secs_f64());
        rows = st.rows_read;
    }
    for (k, a) in &out {
        let k = match k {
            KeyVal::Ip(a) => a.to_string(),
            KeyVal::Port(p) => p.to_string(),
            KeyVal::Proto(p) => p.to_string(),
        };
        println!("{k} {} {} {}", a.flows, a.packets, a.bytes);
    }
    eprintln!("flowstore top {n} {by}/{order} over {rows} flows: best of {rounds} {best:.3} s");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "ingest" => ingest(arg(2), arg(3)),
        "top" => top(
            arg(2),
            arg(3),
            arg(4),
            arg(5).parse().unwrap_or(10),
            arg(6).parse().unwrap_or(3),
        ),
        _ => {
            eprintln!(
                "usage: flowstore ingest IN.pcap DIR | top DIR srcip|dstip|port|proto bytes|packets|flows N [ROUNDS]"
            );
            std::process::exit(2);
        }
    }
}
