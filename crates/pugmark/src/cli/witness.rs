//! `pugmark witness init | serve`: run a witness (C2SP tlog-witness) for other sites' ledgers.
//! A witness runs at another site, at the CSIRT, or on a host the collector's admins do not
//! control; it holds the latest checkpoint of each log it follows and cosigns a new one only
//! if it extends that one (docs/SITES.md "Witnesses").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    pub command: WitnessCommand,
}

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Make the witness's directory and Ed25519 cosigning key; prints its verifier key
    /// (what collectors put in `[[witnesses]]` and verifiers pass to `--witness`).
    Init(InitArgs),
    /// Serve the tlog-witness protocol: POST /add-checkpoint, GET /pugmark/v1/latest/ORIGIN.
    Serve(ServeArgs),
    /// Print this collector's checkpoint verifier key (ORIGIN=VKEY), what a witness
    /// operator gives `witness serve --log`.
    LogVkey(LogVkeyArgs),
}

#[derive(Debug, Args)]
pub struct LogVkeyArgs {
    #[command(flatten)]
    pub data: crate::cli::DataArgs,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The witness's directory (its key and state).
    #[arg(long)]
    pub data: PathBuf,
    /// The witness's key name, a schema-less URL naming it (e.g. csirt.example/witness1).
    #[arg(long, default_value = "pugmark-witness")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:7380, or the config's `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The witness's directory, made by `pugmark witness init` (or the config's `data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A log to follow: ORIGIN=VKEY, or VKEY alone when the origin is the key's name
    /// (the collector's `pugmark keys` / `DATA/keys/` vkey). Repeat for more logs.
    #[arg(long = "log", value_name = "ORIGIN=VKEY")]
    pub logs: Vec<String>,
    /// A TOML config (version = 1, listen, data, `[[logs]]` origin + vkey); flags add to it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the config and flags, print what would be served, and exit.
    #[arg(long)]
    pub check_config: bool,
}

pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WitnessCommand::Init(a) => {
            let vkey = witness::witness::init(&a.data, &a.name)
                .with_context(|| format!("making a witness in {}", a.data.display()))?;
            println!("{vkey}");
            eprintln!(
                "pugmark witness: key in {}; give the line above to the sites you witness \
                 ([[witnesses]] vkey) and to their verifiers (`pugmark verify --witness`)",
                a.data.join(witness::witness::KEY_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve(a) => serve(a),
        WitnessCommand::LogVkey(a) => {
            let (origin, vkey) = log_vkey(&a.data.data)?;
            println!("{origin}={vkey}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(
                witness::config::WitnessConfig::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let mut logs = match &file {
        Some(f) => f.log_keys().map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    for l in &a.logs {
        logs.push(witness::config::parse_log_flag(l).map_err(anyhow::Error::msg)?);
    }
    let listen = a
        .listen
        .or(file.as_ref().and_then(|f| f.listen))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7380)));
    let data = a
        .data
        .clone()
        .or(file.as_ref().and_then(|f| f.data.clone()))
        .context("no witness directory: give --data DIR or `data` in the config")?;
    if a.check_config {
        println!("listen {listen}");
        println!("data {}", data.display());
        for l in &logs {
            println!("log {}", l.origin);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let w = witness::Witness::open(&data, logs)
        .with_context(|| format!("opening the witness in {}", data.display()))?;
    serve::witness_http::run(listen, w)?;
    Ok(ExitCode::SUCCESS)
}

/// The collector's origin and checkpoint vkey.
pub fn log_vkey(data: &std::path::Path) -> anyhow::Result<(String, String)> {
    let dd = pipeline::datadir::DataDir::open(data, false)?;
    let origin = ledger::read_origin(&dd.ledger())?
        .context("this ledger has no origin yet (no checkpoint was ever written)")?;
    let pubkey = ledger::read_public_key(&dd.public_key())?;
    Ok((origin.clone(), ledger::verifier_key(&origin, &pubkey)?))
}
