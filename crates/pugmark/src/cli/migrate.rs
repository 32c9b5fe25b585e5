//! `pugmark migrate`: turn a version-1 data directory into version 2 (Merkle tree, signed
//! checkpoint notes, block MACs), keeping every record's bytes and proving it; and rewrite a
//! format-2 ledger's segments in ledger format 3 (envelope columns; `upgrade_ledger` below).
//!
//! Steps (docs/FORMAT.md "Migration"), each safe to repeat after a crash:
//! 1. verify the old ledger whole (chain, tags, checkpoints by the key in `DATA/keys`);
//! 2. open it as a writer in migration mode: the tree is built from every record, the log
//!    origin is chosen, appends go to a new version-2 segment (version-1 segments are never
//!    written again), and a checkpoint (binary entry + signed note) covers every old record;
//! 3. append the migration record (the old chain head and the new Merkle root at the old end,
//!    the key, who and when) and checkpoint it, so both heads are signed;
//! 4. write `DATA/FORMAT` = 2 (aside + rename). Until then every other verb refuses the
//!    directory, and running `migrate` again resumes (a repeated step 3 adds a second,
//!    equally true, migration record).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::cli::DataArgs;
use pipeline::datadir::{DATA_FORMAT_VERSION, DataDir};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The version-1 ledger's private key is gone (only its public key is left): sign the
    /// migrated ledger with a new key, created at the key path. The migration record names
    /// both public keys; old checkpoints stay verifiable with the old one.
    #[arg(long)]
    pub new_key: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let (dd, version) = DataDir::open_any(&args.data.data, false)?;
    let ledger_dir = dd.ledger();
    let key_path = dd.signing_key();
    if version == DATA_FORMAT_VERSION && ledger::read_origin(&ledger_dir)?.is_some() {
        let todo = ledger::upgradable_segments(&ledger_dir)
            .with_context(|| format!("reading {}", ledger_dir.display()))?;
        if todo.is_empty() {
            if args.json {
                println!(
                    "{}",
                    json!({"already": true, "data_format": DATA_FORMAT_VERSION, "ledger_format": ledger::FORMAT_VERSION})
                );
            } else {
                println!(
                    "{} is already in format version {DATA_FORMAT_VERSION} (ledger format {})",
                    dd.root().display(),
                    ledger::FORMAT_VERSION
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        return upgrade_ledger(&dd, todo, args.json);
    }
    // 1. The old chain first, with the public key the directory has.
    let old_pub = ledger::read_public_key(&dd.public_key()).ok();
    let report = verified_or_refuse(&dd, "the version-1 ledger")?;
    let key_exists = key_path
        .try_exists()
        .with_context(|| format!("checking {}", key_path.display()))?;
    let mut new_pub = None;
    if !key_exists {
        if !args.new_key {
            bail!(
                "the signing key {} is missing: pass --new-key to sign the migrated ledger with a new key (the migration record names the old public key too)",
                key_path.display()
            );
        }
        let Some(old) = old_pub else {
            bail!(
                "neither the signing key {} nor its public key is there: the old checkpoints cannot be verified",
                key_path.display()
            );
        };
        // The old public key keeps verifying what it signed (up to the old end).
        let mut prev = dd.public_key().into_os_string();
        prev.push(ledger::PREVIOUS_KEYS_SUFFIX);
        let prev = std::path::PathBuf::from(prev);
        if !ledger::read_previous_keys(&prev)?
            .iter()
            .any(|(k, _)| *k == old)
        {
            ledger::add_previous_key(&prev, &old, report.records)?;
        }
        new_pub = Some(ledger::create_key(&key_path)?);
    }
    // 2. Open in migration mode: tree, origin, a version-2 segment.
    let opts = ledger::LedgerOptions {
        key_path: key_path.clone(),
        migrating: true,
        ..ledger::LedgerOptions::default()
    };
    let (mut l, _) = ledger::Ledger::open(&ledger_dir, opts)
        .with_context(|| format!("opening {} to migrate it", ledger_dir.display()))?;
    let old_end = l.next_seq() - 1;
    let old_head = l.head();
    l.checkpoint().context("signing the migrated tree")?;
    let root = l.root().context("the migrated tree's root")?;
    // 3. The migration record: both heads, signed by the next checkpoint.
    let text = json!({
        "pugmark_ledger": "migrate",
        "from_format": 1,
        "to_format": ledger::FORMAT_VERSION,
        "records": old_end,
        "v1_chain_head": hex(&old_head),
        "merkle_root": hex(&root.0),
        "tree_size": old_end,
        "origin": l.origin(),
        "public_key": hex(&l.public_key()),
        "previous_public_key": old_pub.map(|k| hex(&k)),
        "new_key": new_pub.is_some(),
        "by": whoami(),
    });
    let env = pipeline::admin_record(format!("pugmark-ledger {text}"));
    let receipt = l
        .append_batch([env.as_slice()])
        .context("appending the migration record")?;
    l.close().context("signing the migration record")?;
    // 4. The directory is version 2 from now on.
    dd.mark_current()?;
    let vkey = ledger::verifier_key(
        &ledger::read_origin(&ledger_dir)?.unwrap_or_default(),
        &ledger::read_public_key(&dd.public_key())?,
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "migrated": dd.root(),
                "records": old_end,
                "v1_chain_head": hex(&old_head),
                "merkle_root": hex(&root.0),
                "migration_record": receipt.first.get(),
                "verifier_key": vkey,
            }))?
        );
    } else {
        println!(
            "migrated {} to format {DATA_FORMAT_VERSION}: {old_end} records kept byte for byte; v1 chain head {} and Merkle root {} recorded in signed record #{}\nverifier key: {vkey}",
            dd.root().display(),
            hex(&old_head),
            hex(&root.0),
            receipt.first.get()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Ledger format 2 → 3 (docs/FORMAT.md "Version 3", "Migration from version 2"): verify the
/// whole ledger; open it in migration mode (appends go to a new format-3 segment); append
/// and sign the migration record; then rewrite each format-2 segment block by block beside
/// itself and swap it in by rename (`Ledger::upgrade_segment`). The chain, the tags, the
/// Merkle leaves and every checkpoint stay what they were. A crash anywhere leaves a ledger
/// every verb reads; running `migrate` again finishes the segments still in format 2 (with
/// a second, equally true, migration record).
fn upgrade_ledger(dd: &DataDir, todo: Vec<u32>, as_json: bool) -> anyhow::Result<ExitCode> {
    let ledger_dir = dd.ledger();
    verified_or_refuse(dd, "the ledger")?;
    let opts = ledger::LedgerOptions {
        migrating: true,
        ..dd.ledger_options()?
    };
    let (mut l, _) = ledger::Ledger::open(&ledger_dir, opts)
        .with_context(|| format!("opening {} to migrate it", ledger_dir.display()))?;
    let end = l.next_seq() - 1;
    let head = l.head();
    l.checkpoint()
        .context("signing the ledger before its migration")?;
    let root = l.root().context("the ledger's root")?;
    let text = json!({
        "pugmark_ledger": "migrate",
        "from_format": 2,
        "to_format": ledger::FORMAT_VERSION,
        "records": end,
        "chain_head": hex(&head),
        "merkle_root": hex(&root.0),
        "tree_size": end,
        "segments": todo,
        "origin": l.origin(),
        "public_key": hex(&l.public_key()),
        "by": whoami(),
    });
    let env = pipeline::admin_record(format!("pugmark-ledger {text}"));
    let receipt = l
        .append_batch([env.as_slice()])
        .context("appending the migration record")?;
    l.checkpoint().context("signing the migration record")?;
    let (mut before, mut after, mut records) = (0u64, 0u64, 0u64);
    for n in &todo {
        if let Some(u) = l.upgrade_segment(*n).with_context(|| {
            format!("rewriting segment {n} in format {}", ledger::FORMAT_VERSION)
        })? {
            eprintln!(
                "segment {}: {} records, {} -> {} bytes",
                u.segment, u.records, u.bytes_before, u.bytes_after
            );
            before += u.bytes_before;
            after += u.bytes_after;
            records += u.records;
        }
    }
    l.close().context("closing the migrated ledger")?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "migrated": dd.root(),
                "from_format": 2,
                "to_format": ledger::FORMAT_VERSION,
                "segments": todo.len(),
                "records": records,
                "bytes_before": before,
                "bytes_after": after,
                "chain_head": hex(&head),
                "merkle_root": hex(&root.0),
                "migration_record": receipt.first.get(),
            }))?
        );
    } else {
        println!(
            "migrated {} to ledger format {}: {} segment(s), {records} records rewritten, {before} -> {after} bytes; chain head {} and Merkle root {} unchanged, recorded in signed record #{}",
            dd.root().display(),
            ledger::FORMAT_VERSION,
            todo.len(),
            hex(&head),
            hex(&root.0),
            receipt.first.get()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies the ledger with the directory's public key: a migration never rewrites a ledger
/// that does not verify (`what` names it in the refusal). The report of a ledger that does.
fn verified_or_refuse(dd: &DataDir, what: &str) -> anyhow::Result<ledger::VerifyReport> {
    let ledger_dir = dd.ledger();
    let public = ledger::read_public_key(&dd.public_key()).ok();
    let report = ledger::verify(
        &ledger_dir,
        &ledger::VerifyOptions {
            trusted_public_key: public,
            ..ledger::VerifyOptions::default()
        },
    )
    .with_context(|| format!("verifying {}", ledger_dir.display()))?;
    if !report.ok() {
        bail!(
            "{what} does not verify ({} problem(s), first: {}); not migrated",
            report.problems.len(),
            report
                .problems
                .first()
                .map(|p| p.to_string())
                .unwrap_or_default()
        );
    }
    Ok(report)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Who runs the command, for the record (the `USER` variable, else the uid).
pub(crate) fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}
