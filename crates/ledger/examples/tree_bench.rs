//! The Merkle tree's targets (issue 11) on a large ledger: inclusion and consistency proofs
//! out of the store, the tree's share of the store, and verify throughput with the tree.
//!
//! Run: `nice cargo run --release -p ledger --example tree_bench -- [records] [dir]`
//! (default 100 000 000 records in $TMPDIR/ledger-tree-bench; a ledger already there with that
//! many records is reused). The records are real ledger records written by `Ledger` (not a
//! synthetic tree): ~95-byte sshd-like syslog lines, varied per seq, in batches of 50 000.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerOptions, LedgerReader, VerifyOptions, verify};

fn record(i: u64) -> Vec<u8> {
    format!(
        "<38>1 2026-12-06T{:02}:{:02}:{:02}Z host{} sshd[{}]: Accepted publickey for user{} from 10.{}.{}.{} port {} ssh2",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        i % 97,
        10_000 + i % 50_000,
        i % 1013,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        1024 + i % 60_000
    )
    .into_bytes()
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e
                        .metadata()
                        .map(|m| (m.is_dir(), m.len()))
                        .unwrap_or((false, 0));
                    if m.0 { dir_bytes(&e.path()) } else { m.1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A small deterministic generator for the positions probed.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) % n
    }
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(v[v.len() / 2]),
        us(v[v.len() * 99 / 100]),
        us(v[v.len() - 1])
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000_000);
    let root = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("ledger-tree-bench"),
    };
    let dir = root.join("ledger");
    let have = LedgerReader::open(&dir).map(|r| r.len()).unwrap_or(0);
    if have != n {
        let _ = std::fs::remove_dir_all(&root);
        let opts = LedgerOptions {
            checkpoint_every_records: 1_000_000,
            origin: Some("pugmark.bench/ledger".into()),
            key_path: root.join("keys/ledger.ed25519"),
            ..LedgerOptions::default()
        };
        let (mut l, _) = Ledger::open(&dir, opts)?;
        let t = Instant::now();
        let mut i = 1;
        let mut batch = Vec::with_capacity(50_000);
        while i <= n {
            batch.clear();
            let end = (i + 50_000).min(n + 1);
            batch.extend((i..end).map(record));
            l.append_batch(batch.iter().map(|r| r.as_slice()))?;
            i = end;
        }
        l.close()?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "wrote {n} records in {s:.1} s ({:.0} k records/s, tree and notes included)",
            n as f64 / s / 1e3
        );
    }
    let store = dir_bytes(&dir);
    let tree = dir_bytes(&dir.join(ledger::TREE_DIR));
    println!(
        "store {:.1} MB ({:.1} bytes/record); Merkle data (tree/) {:.2} MB = {:.3} % of the store ({:.3} bytes/record)",
        store as f64 / 1e6,
        store as f64 / n as f64,
        tree as f64 / 1e6,
        100.0 * tree as f64 / store as f64,
        tree as f64 / n as f64
    );

    let mut r = LedgerReader::open(&dir)?;
    let root_hash = r.root(n)?;
    let mut rng = Lcg(42);
    let mut times = Vec::new();
    for k in 0..1000 {
        let seq = 1 + rng.below(n);
        let t = Instant::now();
        let p = r.inclusion_proof(seq, n)?;
        times.push(t.elapsed());
        if k % 100 == 0 {
            let leaf = r.leaf_hash(seq)?;
            ledger::check_inclusion(&p, n, root_hash, seq, leaf)?;
        }
    }
    println!(
        "inclusion proof, tree of {n}: {} ({} hashes)",
        stats(times),
        r.inclusion_proof(n / 2, n)?.len()
    );
    let mut times = Vec::new();
    for k in 0..1000 {
        let old = 1 + rng.below(n);
        let t = Instant::now();
        let p = r.consistency_proof(old, n)?;
        times.push(t.elapsed());
        if k % 100 == 0 {
            let old_root = r.root(old)?;
            ledger::check_consistency(&p, old, old_root, n, root_hash)?;
        }
    }
    println!("consistency proof to {n}: {}", stats(times));
    let t = Instant::now();
    let rep = verify(&dir, &VerifyOptions::default())?;
    let s = t.elapsed().as_secs_f64();
    assert!(rep.ok(), "{:?}", rep.problems.first());
    println!(
        "verify (chain, tags, checkpoints, Merkle tree, notes): {} records, {:.0} MB payload in {s:.1} s = {:.0} MB/s",
        rep.records,
        rep.bytes as f64 / 1e6,
        rep.bytes as f64 / 1e6 / s
    );
    Ok(())
}
