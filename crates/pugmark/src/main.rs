//! The `pugmark` binary: command-line parsing and dispatch, nothing else.
//!
//! Each verb lives in its own file under `cli/`; the work itself is done by the library
//! crates (`decode`, `ledger`, `views`, `query`) through the `pipeline` crate (the write path and `pipeline::datadir`). Errors
//! reach `main` as `anyhow::Error` and leave as one line on stderr and a non-zero exit
//! (STYLE.md convention 5).

mod api;
mod cases;
mod challenge;
mod cli;
mod misp;
mod netflow;
mod proofs;
mod ui;
mod witnesses;

use std::process::ExitCode;

/// The system allocator for query processes, mimalloc from the moment a verb that runs the
/// ingest pipeline asks for it (`cli::run`; crates/heap says why).
#[global_allocator]
static GLOBAL: heap::Heap = heap::Heap;

fn main() -> ExitCode {
    let args = cli::Cli::parse_args();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // One line: the chain of causes joined by ": ".
            eprintln!("pugmark: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
