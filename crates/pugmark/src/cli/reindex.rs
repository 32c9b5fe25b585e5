//! `pugmark reindex`: throw every view away and rebuild it from the ledger. Views are derived
//! data; this is how a parser fix reaches old evidence and how a lost view comes back.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::cli::DataArgs;
use crate::datadir::DataDir;
use crate::pipeline::Pipeline;

#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: ReindexArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let started = Instant::now();
    for dir in [dd.index(), dd.imports(), dd.facts()] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }
    // Opening the pipeline on empty views catches them up from the whole ledger.
    let pipeline = Pipeline::open(&dd)?;
    let records = pipeline.caught_up;
    pipeline.finish()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "reindexed {records} records in {secs:.2} s ({:.0} records/s)",
        records as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
