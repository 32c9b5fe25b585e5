//! `pugmark ui --data DIR [--listen ADDR] [--config FILE]`: the query API and the web UI
//! (`/ui/`, docs/UI.md) on a data directory alone, without a collector. The ui owns the ledger while it runs —
//! every query's audit record is appended by it (`api::PipelineAudit`) — so it refuses to
//! start when a `pugmark serve` (or any writer) holds the data directory: then the API is
//! served by that `serve --http` instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::cli::DataArgs;
use pipeline::Pipeline;
use pipeline::datadir::DataDir;

/// Default address of `pugmark ui` (loopback; serve's HTTP listener is 9514).
pub const DEFAULT_UI: &str = "127.0.0.1:9516";

#[derive(Debug, Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Listen on ADDR:PORT (port 0: any free port, printed at start).
    #[arg(long, default_value = DEFAULT_UI)]
    pub listen: SocketAddr,
    /// The serve configuration whose `[api]` section (roles, VOs) applies; other sections
    /// are checked but not used.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: UiArgs) -> anyhow::Result<ExitCode> {
    let config = serve::Config::load(args.config.as_deref(), &serve::Overrides::default())?;
    let dd = DataDir::open(&args.data.data, false)?;
    let pipeline = match Pipeline::open_trailing(&dd, Duration::from_secs(1)) {
        Ok(p) => p,
        // Another writer holds the ledger: say what to do instead.
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<ledger::LedgerError>(),
                    Some(ledger::LedgerError::Locked)
                )
            }) =>
        {
            return Err(e.context(format!(
                "pugmark ui appends an audit record for every query, so it needs the ledger of \
                 {} to itself; is a pugmark serve running on it? Then use the API of its --http \
                 listener instead",
                args.data.data.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let sink = Arc::new(crate::api::PipelineAudit::start(pipeline)?);
    let svc = crate::api::service(args.data.data.clone(), config.api.clone(), None)?;
    // The check page's default answer, computed while the first pages are asked for.
    svc.warm_check();
    serve::api::run_standalone(args.listen, svc, sink.clone(), |a| {
        eprintln!("pugmark ui: listening on http://{a} (pages: /ui/, API: /api/v1/openapi.json)");
    })?;
    if let Some(p) = sink.stop() {
        p.finish()?;
    }
    eprintln!("pugmark ui: stopped; ledger closed");
    Ok(ExitCode::SUCCESS)
}
