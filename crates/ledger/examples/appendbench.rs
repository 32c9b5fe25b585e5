//! The ledger's share of ingest, format 2 against format 3, on the records of a real ledger
//! (BENCHMARKS.md issue-16 ledger section):
//!
//!     cargo build --release -p ledger --example appendbench
//!     /usr/bin/time target/release/examples/appendbench DATA/ledger OUT VERSION [LEVEL]
//!
//! Copies every record of the ledger at DATA/ledger into a new ledger at OUT, created in
//! format VERSION (2 or 3; 0 reads only, the baseline), in batches of 8192 records as
//! `ingest` writes them, fdatasync'd, with zstd LEVEL (default 3, `serve` uses 1). The
//! difference in CPU time between runs is the writer's (chain, columns, compression, tree).

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, out, version, rest @ ..] = args.as_slice() else {
        return Err("usage: appendbench SRC_LEDGER OUT_DIR VERSION [LEVEL]".into());
    };
    let version: u32 = version.parse()?;
    let level: i32 = rest.first().map(|l| l.parse()).transpose()?.unwrap_or(3);
    let r = ledger::LedgerReader::open(Path::new(src))?;
    let mut it = r.iter_from(1);
    let out = Path::new(out);
    let mut writer = if version == 0 {
        None
    } else {
        let opts = ledger::LedgerOptions {
            key_path: out.join("keys/ledger.ed25519"),
            zstd_level: level,
            ..ledger::LedgerOptions::default()
        };
        Some(ledger::testing::open_creating_version(&out.join("ledger"), opts, version)?.0)
    };
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(8192);
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        let next = it.next_ref();
        let done = next.is_none();
        if let Some(x) = next {
            let (_, p) = x?;
            records += 1;
            bytes += p.len() as u64;
            batch.push(p.to_vec());
        }
        if batch.len() == 8192 || (done && !batch.is_empty()) {
            if let Some(l) = writer.as_mut() {
                l.append_batch(batch.iter().map(Vec::as_slice))?;
            }
            batch.clear();
        }
        if done {
            break;
        }
    }
    if let Some(l) = writer {
        l.close()?;
    }
    let seg: u64 = if version == 0 {
        0
    } else {
        ledger::testing::segment_paths(&out.join("ledger"))?
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    println!("{records} records, {bytes} payload bytes; segments {seg} bytes (format {version})");
    Ok(())
}
