//! `pugmark reindex`: rebuild every view from the ledger, aside, and swap the new views in
//! only when complete. Views are derived data; this is how a parser fix reaches old evidence,
//! how a lost or foreign view comes back, and how damaged block index sidecars are rewritten.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::cli::DataArgs;
use pipeline::Pipeline;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: ReindexArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let started = Instant::now();
    // The new views are built in DATA/views.new while the old ones stay in place: a failure
    // (a damaged record, a full disk, a kill) leaves the old views answering, and the next
    // open deletes the half-built ones. Only complete views are swapped in, under the
    // ledger's lock.
    let aside = dd.aside();
    let pipeline = Pipeline::open_rebuild(&aside).context("building new views")?;
    let records = pipeline.caught_up;
    let rebuilt = pipeline.open_report.index_rebuilt.clone();
    pipeline
        .finish_then(|| dd.swap_in_aside())
        .context("building new views")?;
    for seg in &rebuilt {
        eprintln!("pugmark: rewrote the block index of {seg} from the segment");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "reindexed {records} records in {secs:.2} s ({:.0} records/s)",
        records as f64 / secs.max(1e-9)
    );
    // Records whose payloads retention removed are not in the views (their leaf hashes stay
    // in the ledger): say how many.
    let removed: u64 = ledger::LedgerReader::open(&dd.ledger())?
        .removed_ranges()
        .iter()
        .map(|r| r.1)
        .sum();
    if removed > 0 {
        println!(
            "skipped {removed} records whose payloads were removed by policy (`pugmark verify` lists the ranges)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
