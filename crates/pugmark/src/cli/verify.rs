//! `pugmark verify`: check the evidence. Every segment, the hash chain across all records and
//! every signed checkpoint; names the first bad record; exit 1 when anything is wrong.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::cli::DataArgs;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Trust only checkpoints signed by this ed25519 public key (64 hex digits, as in
    /// DATA/keys/ledger.ed25519.pub). Keep a copy away from the collector: whoever can write
    /// the data directory can also replace the key there.
    #[arg(long)]
    pub pubkey: Option<String>,
    /// Check the ledger against what a witness cosigned (repeatable): `URL=VKEY` asks the
    /// witness for the latest checkpoint it cosigned for this ledger (what catches a ledger
    /// truncated or rewritten by root, even with every local copy gone); `URL` alone takes the
    /// key from the witness (not authenticated); `VKEY` alone uses the cosigned notes stored
    /// beside the ledger (ledger/cosignatures). A local tree smaller than a cosigned size, or
    /// whose first records do not hash to the cosigned root, is a finding.
    #[arg(long = "witness", value_name = "URL=VKEY|URL|VKEY")]
    pub witnesses: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Said when no witness is given.
const UNWITNESSED: &str = "no --witness given: truncation of the ledger, and rewriting by whoever holds the signing key (root on the collector), cannot be detected by verify alone";

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let trusted_public_key = args.pubkey.as_deref().map(parse_key).transpose()?;
    // The secret MAC key (from the private key, when this user can read it): records after
    // the last signed checkpoint must then be the writer's own.
    let mac_key = match dd.key_uri() {
        // A token key: its MAC key is derived from a signature only the token can make
        // (docs/FORMAT.md "Block MAC"), so only when the PIN is at hand; without it verify
        // goes on without MACs, as for an unreadable key file.
        Some(uri) => token_mac_key(&uri, ledger::read_public_key(&dd.public_key()).ok()),
        None => std::fs::read_to_string(dd.signing_key())
            .ok()
            .and_then(|t| ledger::parse_key(&t))
            .map(|k| ledger::mac_key(&k.to_bytes())),
    };
    let opts = ledger::VerifyOptions {
        trusted_public_key,
        mac_key,
        ..ledger::VerifyOptions::default()
    };
    let started = Instant::now();
    let report = ledger::verify(&dd.ledger(), &opts)
        .with_context(|| format!("verifying {}", dd.ledger().display()))?;
    let secs = started.elapsed().as_secs_f64();
    let mb_s = report.bytes as f64 / 1e6 / secs.max(1e-9);
    let specs: Vec<_> = args
        .witnesses
        .iter()
        .map(|w| crate::witnesses::parse_spec(w))
        .collect();
    let witness_checks = if specs.is_empty() {
        Vec::new()
    } else {
        crate::witnesses::check_all(&dd.ledger(), &specs)
            .context("checking the ledger against its witnesses")?
    };
    let witnesses_ok = witness_checks.iter().all(|w| w.ok);
    let all_ok = report.ok() && witnesses_ok;
    if args.json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(
                |p| json!({"seq": p.seq, "segment": p.segment, "offset": p.offset, "what": p.what}),
            )
            .collect();
        let derived: Vec<_> = report
            .derived
            .iter()
            .map(|p| json!({"file": p.segment, "what": p.what}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": all_ok,
                "records": report.records,
                "bytes": report.bytes,
                "segments": report.segments,
                "checkpoints": report.checkpoints,
                "seconds": secs,
                "mb_per_sec": mb_s,
                "problems": problems,
                "derived": derived,
                "origin": report.origin,
                "notes": report.notes,
                "signed_size": report.signed_size,
                "unsigned_records": report.unsigned_records,
                "macs_checked": report.macs_checked,
                "removed": report.removed.iter().map(|&(first, count, record)| json!({
                    "first": first, "last": first + count - 1, "records": count, "record": record,
                })).collect::<Vec<_>>(),
                "root": report.root.map(|h| h.0.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                "witnesses": witness_checks,
                "unwitnessed": if specs.is_empty() { Some(UNWITNESSED) } else { None },
            }))?
        );
    } else if report.ok() {
        println!(
            "ok: {} records, {} segments, {} checkpoints, {:.1} MB verified in {:.2} s ({:.0} MB/s)",
            report.records,
            report.segments,
            report.checkpoints,
            report.bytes as f64 / 1e6,
            secs,
            mb_s
        );
    } else {
        println!(
            "FAILED: {} problem(s) in {} records; first bad record: {}",
            report.problems.len(),
            report.records,
            report
                .problems
                .first()
                .map(|p| p.to_string())
                .unwrap_or_default()
        );
        for p in report.problems.iter().skip(1).take(20) {
            println!("  also: {p}");
        }
    }
    if !args.json {
        if report.origin.is_some() {
            println!(
                "tree: {} signed checkpoint note(s), signed up to #{}; {} record(s) after it covered by no signed checkpoint{}",
                report.notes,
                report.signed_size.unwrap_or(0),
                report.unsigned_records,
                if report.unsigned_records > 0 && !report.macs_checked {
                    " (not authenticated: the private key is not readable here)"
                } else {
                    ""
                }
            );
        }
        for &(first, count, record) in &report.removed {
            println!(
                "removed by policy (record #{record}): #{first}..#{}, {count} record(s); their leaf hashes are kept and checked",
                first + count - 1
            );
        }
        if specs.is_empty() {
            println!("note: {UNWITNESSED}");
        }
        for w in &witness_checks {
            match (&w.finding, w.cosigned_size) {
                (Some(f), _) => println!("FAILED: {f}"),
                (None, Some(size)) => println!(
                    "witness {}{}: cosigned tree size {size} at {}; the local ledger ({} records) extends it",
                    w.witness,
                    w.url
                        .as_deref()
                        .map_or(" (stored cosignature)".to_owned(), |u| format!(" ({u})")),
                    w.cosigned_time.as_deref().unwrap_or("?"),
                    w.local_size
                ),
                (None, None) => {}
            }
            if let Some(n) = &w.note {
                println!("  note: {n}");
            }
        }
        // Derived files are not evidence: reported, never a failure.
        for p in &report.derived {
            println!(
                "derived: {}: {} (rewritten by `pugmark reindex`)",
                p.segment, p.what
            );
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    let mut key = [0u8; 32];
    if hex.len() != 64 {
        anyhow::bail!(
            "--pubkey must be 64 hex digits, got {} characters",
            hex.len()
        );
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .with_context(|| format!("--pubkey is not hex at character {}", 2 * i))?;
    }
    Ok(key)
}

/// The block MAC key of a token-held key, when the token opens (no PIN: none; the reason is
/// printed, verify goes on).
fn token_mac_key(uri: &str, recorded: Option<[u8; 32]>) -> Option<[u8; 32]> {
    let token = pipeline::pkcs11::Pkcs11Uri::parse(uri)
        .and_then(|u| pipeline::pkcs11::Token::open(&u, false))
        .map_err(|e| eprintln!("pugmark: block MACs not checked: {e:#}"))
        .ok()?;
    if recorded != Some(token.public_key()) {
        eprintln!("pugmark: block MACs not checked: the token's key is not the recorded one");
        return None;
    }
    let sig = ledger::ExternalSigner::sign(&token, ledger::TOKEN_MAC_MESSAGE)
        .map_err(|e| eprintln!("pugmark: block MACs not checked: the token did not sign: {e}"))
        .ok()?;
    Some(ledger::token_mac_key(&sig))
}
