//! `pugmark keys`: the checkpoint signing key of a data directory.
//!
//! A ledger gets its key once, when it is created (by `keys init`, or by the first `ingest` /
//! `serve`, which say where it is). A ledger whose key is missing or changed is refused by
//! every writer until the key is restored (docs/FORMAT.md "Keys").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::DataArgs;
use crate::datadir::{DataDir, KEY_LOCATION_FILE};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new data directory's ledger and its signing key (by default in
    /// DATA/keys/ledger.ed25519; with --key-file elsewhere, e.g. on a separate volume).
    Init(InitArgs),
    /// Where the key is, its public key and the C2SP verifier key of the checkpoint notes.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Keep the private key at this path, outside the data directory (recorded in
    /// DATA/keys/ledger.location; the public key is copied to DATA/keys/ledger.ed25519.pub).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Log origin of the checkpoint notes (default `pugmark.<random hex>/ledger`), e.g.
    /// `pugmark.cloud.example.org/ledger`.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Init(a) => init(a),
        KeysCommand::Show(a) => show(a.data, a.json),
    }
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, true)?;
    let ledger_dir = dd.ledger();
    if ledger_dir
        .join(ledger::segment_file_name(1))
        .try_exists()
        .with_context(|| format!("checking {}", ledger_dir.display()))?
    {
        bail!(
            "{} already has a ledger and its key ({}); a key is never replaced",
            dd.root().display(),
            dd.signing_key().display()
        );
    }
    if let Some(o) = &args.origin
        && !ledger::valid_origin(o)
    {
        bail!("--origin {o:?}: printable ASCII without spaces or '+'");
    }
    std::fs::create_dir_all(dd.keys())
        .with_context(|| format!("creating {}", dd.keys().display()))?;
    let key_path = match &args.key_file {
        Some(p) => {
            let abs =
                std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
            ledger::create_key(&abs)?;
            let loc = dd.keys().join(KEY_LOCATION_FILE);
            std::fs::write(&loc, format!("{}\n", abs.display()))
                .with_context(|| format!("writing {}", loc.display()))?;
            let public = ledger::public_key_path(&abs);
            std::fs::copy(&public, dd.keys().join("ledger.ed25519.pub"))
                .with_context(|| format!("copying {}", public.display()))?;
            abs
        }
        None => {
            let p = dd.signing_key();
            ledger::create_key(&p)?;
            p
        }
    };
    let opts = ledger::LedgerOptions {
        key_path: key_path.clone(),
        origin: args.origin.clone(),
        ..ledger::LedgerOptions::default()
    };
    let (l, _) = ledger::Ledger::open(&ledger_dir, opts)
        .with_context(|| format!("creating the ledger in {}", ledger_dir.display()))?;
    l.close()?;
    show(args.data, args.json)
}

fn show(data: DataArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&data.data, false)?;
    let key_path = dd.signing_key();
    let public = ledger::read_public_key(&dd.public_key())?;
    let origin = ledger::read_origin(&dd.ledger())?;
    let vkey = origin
        .as_deref()
        .map(|o| ledger::verifier_key(o, &public))
        .transpose()?;
    let present = key_path.try_exists().unwrap_or(false);
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "key_file": key_path,
                "key_present": present,
                "public_key": hex,
                "public_key_file": dd.public_key(),
                "origin": origin,
                "verifier_key": vkey,
            }))?
        );
    } else {
        println!(
            "signing key: {}{}",
            key_path.display(),
            if present {
                ""
            } else {
                " (MISSING: writers refuse)"
            }
        );
        println!("public key:  {hex} ({})", dd.public_key().display());
        if let Some(o) = &origin {
            println!("origin:      {o}");
        }
        if let Some(v) = &vkey {
            println!("verifier key (give it to witnesses and CSIRTs): {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
