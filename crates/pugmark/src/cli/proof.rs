//! `pugmark proof check FILE`: verify a report's evidence offline (issue 11) — with only the
//! site's checkpoint key and the witnesses' keys, no access to the site.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Check a report (`report --format json|md|html`, or `who --json`): each cited record's
    /// bytes are in the tree of the checkpoint it carries, the checkpoint is signed by the
    /// site's key and cosigned by each given witness.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The report file.
    pub file: PathBuf,
    /// The site's checkpoint verifier key (`pugmark keys show`: ORIGIN+ID+KEY), or its
    /// 64-hex Ed25519 public key. Required for the check to pass.
    #[arg(long)]
    pub pubkey: Option<String>,
    /// A witness whose valid cosignature the checkpoint must carry (its vkey); repeatable.
    #[arg(long = "witness-key", value_name = "VKEY")]
    pub witness_keys: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ProofCommand) -> anyhow::Result<ExitCode> {
    let ProofCommand::Check(a) = cmd;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let i = crate::proofs::extract(&text)?;
    let vkey = match a.pubkey.as_deref().map(str::trim) {
        Some(k) if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let mut key = [0u8; 32];
            for (n, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&k[2 * n..2 * n + 2], 16)?;
            }
            let origin = i["origin"].as_str().unwrap_or_default();
            Some(ledger::verifier_key(origin, &key)?)
        }
        Some(k) => Some(k.to_owned()),
        None => None,
    };
    let r = crate::proofs::check(&i, vkey.as_deref(), &a.witness_keys);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.ok {
        println!(
            "ok: {} record(s) proven in the tree of size {} of {}; checkpoint signature ok{}",
            r.records_ok,
            r.tree_size,
            r.origin,
            if r.witnesses.is_empty() {
                "; no --witness-key given: cosignatures not checked".to_owned()
            } else {
                format!("; cosigned by {} witness(es)", r.witnesses.len())
            }
        );
    } else {
        println!(
            "FAILED: {} problem(s); {} of {} record(s) proven",
            r.problems.len(),
            r.records_ok,
            r.records
        );
        for p in &r.problems {
            println!("  {p}");
        }
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
