//! What format 3's envelope columns cost, column by column, on a real ledger (the figures in
//! BENCHMARKS.md's issue-16 ledger section and docs/FORMAT.md "Why this layout"):
//!
//!     cargo run --release -p ledger --example colstats -- DATA/ledger
//!
//! Reads every record, groups them into 128 KiB blocks as the writer does, and prints the
//! compressed size of: the format-2 block (one zstd frame of the framed records), the format-3
//! block as written (`testing::pack_block`), one frame over all the columns, and each column
//! compressed alone. Tags are pseudo-random bytes here, as chain tags are.

use std::path::Path;

const NAMES: [&str; 7] = [
    "dictionary",
    "context",
    "tags",
    "received",
    "line",
    "length",
    "raw bytes",
];

#[derive(Default)]
struct Sums {
    records: u64,
    v2: usize,
    v3: usize,
    one_frame: usize,
    raw: [usize; 7],
    alone: [usize; 7],
}

fn z(b: &[u8]) -> usize {
    zstd::bulk::compress(b, 3).map(|c| c.len()).unwrap_or(0)
}

fn flush(area: &mut Vec<u8>, s: &mut Sums) -> Result<(), Box<dyn std::error::Error>> {
    if area.is_empty() {
        return Ok(());
    }
    let parts = ledger::testing::column_parts(area)?;
    let mut all = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        s.raw[i] += p.len();
        s.alone[i] += z(p);
        all.extend_from_slice(p);
    }
    s.one_frame += z(&all);
    s.v2 += z(area);
    s.v3 += ledger::testing::pack_block(ledger::testing::CODEC_COLUMNS, area, 3)?
        .1
        .len();
    area.clear();
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: colstats LEDGER_DIR")?;
    let r = ledger::LedgerReader::open(Path::new(&dir))?;
    let mut it = r.iter_from(1);
    let mut s = Sums::default();
    let mut area = Vec::new();
    let mut tag = 0u32;
    while let Some(x) = it.next_ref() {
        let (_, p) = x?;
        if area.len() + 8 + p.len() > 128 << 10 {
            flush(&mut area, &mut s)?;
        }
        tag = tag.wrapping_mul(2_654_435_761).wrapping_add(12_345);
        ledger::testing::push_framed(&mut area, tag.to_le_bytes(), p);
        s.records += 1;
    }
    flush(&mut area, &mut s)?;
    let n = s.records.max(1) as f64;
    println!(
        "{} records; compressed: format 2 {} B, format 3 {} B, all columns in one frame {} B",
        s.records, s.v2, s.v3, s.one_frame
    );
    for (i, name) in NAMES.iter().enumerate() {
        println!(
            "{name:>10}: {:>11} B stored, {:>11} B compressed alone ({:.2} B a record)",
            s.raw[i],
            s.alone[i],
            s.alone[i] as f64 / n
        );
    }
    Ok(())
}
