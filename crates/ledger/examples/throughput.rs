//! Throughput of the ledger on this machine: durable append (fsync per batch) of ~200-byte
//! syslog-like records in batches of 1000, then `verify`, then random `get`s.
//!
//! Run: `cargo run --release -p ledger --example throughput -- [records] [dir]`
//! (default 1 000 000 records in a temporary directory under $TMPDIR; set WIDE=1 for
//! ~200-byte records made of two lines). Input lines come from
//! the OpenSSH sample in ../shared/corpus when present (so compression is realistic),
//! otherwise they are synthesised.

use std::path::PathBuf;
use std::time::Instant;

use ledger::{Ledger, LedgerOptions, LedgerReader, VerifyOptions, verify};

fn lines() -> Vec<Vec<u8>> {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/auth/loghub_OpenSSH_2k.log");
    match std::fs::read(&corpus) {
        Ok(b) => b
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut v = b"<38>1 ".to_vec();
                v.extend_from_slice(l);
                v
            })
            .collect(),
        Err(_) => (0..2000)
            .map(|i| {
                format!(
                    "<38>Dec 10 06:55:{:02} LabSZ sshd[{}]: Failed password for invalid user admin{} from 173.234.31.{} port {} ssh2",
                    i % 60,
                    24000 + i,
                    i % 17,
                    i % 255,
                    30000 + i
                )
                .into_bytes()
            })
            .collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let root = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("ledger-throughput-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("ledger");
    let src = lines();
    let wide = std::env::var_os("WIDE").is_some();
    // Vary each record a little so blocks are not trivially repetitive.
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut r = src[(i as usize * 7919) % src.len()].clone();
            r.extend_from_slice(format!(" seq={i}").as_bytes());
            if wide {
                // ~200-byte records: two different lines joined.
                r.extend_from_slice(b" | ");
                r.extend_from_slice(&src[(i as usize * 104_729 + 1) % src.len()]);
                r.truncate(200);
            }
            r
        })
        .collect();
    let raw: u64 = records.iter().map(|r| r.len() as u64).sum();
    println!(
        "{n} records, {:.1} MB raw, {:.0} bytes/record",
        raw as f64 / 1e6,
        raw as f64 / n as f64
    );

    let (mut l, _) = Ledger::open(&dir, LedgerOptions::default())?;
    let t = Instant::now();
    for chunk in records.chunks(1000) {
        l.append_batch(chunk.iter().map(|r| r.as_slice()))?;
    }
    l.close()?;
    let s = t.elapsed().as_secs_f64();
    let stored: u64 = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "append (sync per 1000-record batch): {:.1} MB/s, {:.0} records/s; ledger is {:.3} x raw",
        raw as f64 / 1e6 / s,
        n as f64 / s,
        stored as f64 / raw as f64
    );

    let t = Instant::now();
    let rep = verify(&dir, &VerifyOptions::default())?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "verify: {:.1} MB/s of payload, {:.0} records/s, ok={} ({} records)",
        rep.bytes as f64 / 1e6 / s,
        rep.records as f64 / s,
        rep.ok(),
        rep.records
    );

    let mut r = LedgerReader::open(&dir)?;
    let t = Instant::now();
    let mut x = 0x9e3779b97f4a7c15u64;
    for _ in 0..100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.get(1 + x % n)?;
    }
    println!(
        "100 random gets (cold blocks): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut count = 0u64;
    r.scan_from(1, |_, _| {
        count += 1;
        std::ops::ControlFlow::Continue(())
    })?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "scan_from: {:.1} MB/s, {count} records",
        raw as f64 / 1e6 / s
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
