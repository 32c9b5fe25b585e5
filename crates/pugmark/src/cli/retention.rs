//! `pugmark retention`: remove record payloads older than a policy, segment by segment,
//! verifiably (docs/FORMAT.md "Retention").
//!
//! A segment (never the current one, only one a signed checkpoint note covers) is removed when
//! the newest received time among its records is older than `now - keep` and no hold keeps
//! it. Each removal is a signed ledger record (range, policy, who) appended before the segment
//! is replaced by a stub of its leaf hashes ([`ledger::Ledger::remove_segment`]), so the tree,
//! every checkpoint and every proof of a kept record stay verifiable, and `verify` reports
//! "removed by policy (record X)" instead of missing records.
//!
//! Holds (`DATA/holds.json`): `--seq A..B` keeps every segment overlapping the range; `--vm
//! UUID` keeps every segment holding a record whose bytes name the UUID (notifications, logs
//! and job ads about a VM carry its UUID; flows and firewall lines about its addresses do not,
//! hold those by `--seq`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::DataArgs;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub command: Option<HoldCommand>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Keep records received within this long (`180d`, `26w`, `12h`; units s m h d w).
    #[arg(long)]
    pub keep: Option<String>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Keep records from removal (an open investigation, a quarantined VM).
    Hold(HoldArgs),
    /// Release a hold by its id.
    Release(ReleaseArgs),
    /// List the holds.
    Holds(ListArgs),
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Hold every record that names this VM (its UUID).
    #[arg(long, conflicts_with = "seq", required_unless_present = "seq")]
    pub vm: Option<String>,
    /// Hold records A..B (inclusive ledger positions).
    #[arg(long)]
    pub seq: Option<String>,
    /// Why (kept with the hold).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The hold's id (`pugmark retention holds`).
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One hold, as kept in `DATA/holds.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub id: u64,
    #[serde(default)]
    pub vm: Option<String>,
    #[serde(default)]
    pub seq: Option<(u64, u64)>,
    pub reason: String,
    pub by: String,
    pub at: String,
}

fn holds_path(dd: &DataDir) -> PathBuf {
    dd.root().join("holds.json")
}

pub fn read_holds(dd: &DataDir) -> anyhow::Result<Vec<Hold>> {
    let p = holds_path(dd);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_holds(dd: &DataDir, holds: &[Hold]) -> anyhow::Result<()> {
    let p = holds_path(dd);
    let tmp = p.with_extension("json.new");
    std::fs::write(&tmp, serde_json::to_vec_pretty(holds)?)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &p))
        .with_context(|| format!("writing {}", p.display()))
}

/// `180d` → seconds. Units: s, m, h, d, w.
pub fn parse_keep(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .context("--keep needs a unit: 180d, 26w, 12h")?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .with_context(|| format!("--keep {s:?}: not a number"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("--keep {s:?}: unit must be one of s m h d w"),
    };
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .with_context(|| format!("--keep {s:?} is out of range"))
}

pub fn run(args: RetentionArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(HoldCommand::Hold(h)) => hold(h),
        Some(HoldCommand::Release(r)) => release(r),
        Some(HoldCommand::Holds(l)) => list(l),
        None => {
            let keep = args
                .keep
                .as_deref()
                .context("--keep is required (e.g. --keep 180d)")?;
            let dd = DataDir::open(&args.data.data, false)?;
            let out = apply(&dd, keep, args.dry_run)?;
            print_outcome(&out, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What a retention run removed (or would remove) and kept.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub cutoff: String,
    pub dry_run: bool,
    /// (segment, first seq, records, retention record or 0 on a dry run)
    pub removed: Vec<(u32, u64, u64, u64)>,
    /// (segment, hold id) kept by a hold.
    pub held: Vec<(u32, u64)>,
    pub records_removed: u64,
}

/// Removes what the policy allows (the CLI, and `serve` on its timer with the ledger it owns
/// passed as `ledger`).
pub fn apply(dd: &DataDir, keep: &str, dry_run: bool) -> anyhow::Result<Outcome> {
    let secs = parse_keep(keep)?;
    let holds = read_holds(dd)?;
    let cutoff = model::Received::now().as_unix_nanos() - i128::from(secs) * 1_000_000_000;
    let mut reader = ledger::LedgerReader::open(&dd.ledger())?;
    let plan = plan(&reader, &holds, cutoff)?;
    let mut out = Outcome {
        policy: format!("keep {keep}"),
        cutoff: model::Received::from_stored(cutoff).timestamp().to_string(),
        dry_run,
        held: plan.held,
        ..Outcome::default()
    };
    if plan.remove.is_empty() || dry_run {
        for (n, first, count) in plan.remove {
            out.records_removed += count;
            out.removed.push((n, first, count, 0));
        }
        return Ok(out);
    }
    let opts = dd.ledger_options()?;
    let (mut l, _) = ledger::Ledger::open(&dd.ledger(), opts)
        .with_context(|| format!("opening {}", dd.ledger().display()))?;
    let (policy, cutoff) = (out.policy.clone(), out.cutoff.clone());
    let carry = flow_carry(&mut reader, &plan.remove)?;
    remove_with(&mut l, &plan.remove, &carry, &policy, &cutoff, &mut out)?;
    l.close()?;
    Ok(out)
}

/// What each planned removal's retention record carries for the flows derived after it
/// (`flow_state`, base64 of the views' flow decoders' state after the segment's last record,
/// replayed from the ledger while the payloads are still there): the templates a removed
/// datagram taught, so a `reindex` decodes the kept datagrams after it as before
/// (docs/design/flow-derivation.md §2.6). `None` where the ledger has no flows.
pub fn flow_carry(
    reader: &mut ledger::LedgerReader,
    remove: &[(u32, u64, u64)],
) -> anyhow::Result<Vec<Option<String>>> {
    use base64::Engine as _;
    let ends: Vec<u64> = remove.iter().map(|&(_, f, c)| f + c - 1).collect();
    Ok(pipeline::derive::replay_states(reader, &ends)?
        .into_iter()
        .map(|s| s.map(|b| base64::engine::general_purpose::STANDARD.encode(b)))
        .collect())
}

/// Removes the planned segments through a writer the caller holds; `carry` (one per
/// removal, [`flow_carry`]) goes into each retention record.
pub fn remove_with(
    l: &mut ledger::Ledger,
    remove: &[(u32, u64, u64)],
    carry: &[Option<String>],
    policy: &str,
    cutoff: &str,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    // The last signed note must cover what goes.
    l.checkpoint()?;
    for (i, &(n, first, count)) in remove.iter().enumerate() {
        let state = carry.get(i).cloned().flatten();
        let r = l.remove_segment(n, |f| {
            let mut text = json!({
                "pugmark_ledger": "retention",
                "segment": f.segment,
                "first": f.first,
                "last": f.first + f.count - 1,
                "records": f.count,
                "bytes": f.bytes,
                "chain_head_after": f.head_after.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "policy": policy,
                "cutoff": cutoff,
                "by": crate::cli::migrate::whoami(),
            });
            if let Some(state) = &state {
                text[pipeline::derive::FLOW_STATE] = json!(state);
            }
            pipeline::admin_record(format!("pugmark-ledger {text}"))
        })?;
        debug_assert_eq!((r.first, r.count), (first, count));
        out.records_removed += r.count;
        out.removed.push((n, r.first, r.count, r.record));
    }
    Ok(())
}

/// Segments to remove, oldest first: (number, first, count). Stops at the first segment that
/// is too new (later ones are newer).
pub struct Plan {
    pub remove: Vec<(u32, u64, u64)>,
    pub held: Vec<(u32, u64)>,
}

pub fn plan(
    reader: &ledger::LedgerReader,
    holds: &[Hold],
    cutoff_nanos: i128,
) -> anyhow::Result<Plan> {
    let segs = reader.segments();
    let signed = ledger::last_note(&reader_dir(reader).join(ledger::NOTES_FILE))?
        .map_or(0, |n| n.checkpoint.size);
    let mut plan = Plan {
        remove: Vec::new(),
        held: Vec::new(),
    };
    let n = segs.len();
    for (i, &(number, first, count, removed)) in segs.iter().enumerate() {
        if removed.is_some() || count == 0 {
            continue;
        }
        // Never the current segment; only what a signed note covers.
        if i + 1 == n || first + count - 1 > signed {
            break;
        }
        let last = first + count - 1;
        if let Some(h) = holds
            .iter()
            .find(|h| h.seq.is_some_and(|(a, b)| a <= last && b >= first))
        {
            plan.held.push((number, h.id));
            continue;
        }
        let vms: Vec<(u64, Vec<u8>)> = holds
            .iter()
            .filter_map(|h| {
                h.vm.as_ref()
                    .map(|v| (h.id, v.to_ascii_lowercase().into_bytes()))
            })
            .collect();
        let mut newest = i128::MIN;
        let mut held_by = None;
        let mut it = reader.iter_from(first);
        let mut seen = 0;
        while seen < count {
            let Some(r) = it.next_ref() else { break };
            let (_, p) = r?;
            seen += 1;
            if let model::envelope::Stored::Whole(model::Envelope::Record(e))
            | model::envelope::Stored::Head { record: e, .. } = pipeline::stored(p)
            {
                newest = newest.max(e.received.as_unix_nanos());
                if held_by.is_none()
                    && let Some((id, _)) = vms.iter().find(|(_, v)| contains_ci(&e.raw, v))
                {
                    held_by = Some(*id);
                }
            }
        }
        if let Some(id) = held_by {
            plan.held.push((number, id));
            continue;
        }
        if newest >= cutoff_nanos {
            break;
        }
        plan.remove.push((number, first, count));
    }
    Ok(plan)
}

fn reader_dir(r: &ledger::LedgerReader) -> &Path {
    r.dir()
}

fn contains_ci(hay: &[u8], needle_lower: &[u8]) -> bool {
    !needle_lower.is_empty()
        && hay
            .windows(needle_lower.len())
            .any(|w| w.eq_ignore_ascii_case(needle_lower))
}

fn print_outcome(out: &Outcome, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(out)?);
        return Ok(());
    }
    let verb = if out.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "{} (records received before {}): {verb} {} record(s) in {} segment(s)",
        out.policy,
        out.cutoff,
        out.records_removed,
        out.removed.len()
    );
    for (n, first, count, record) in &out.removed {
        let last = first + count - 1;
        if out.dry_run {
            println!("  segment {n}: #{first}..#{last}");
        } else {
            println!("  segment {n}: #{first}..#{last}, retention record #{record}");
        }
    }
    for (n, id) in &out.held {
        println!("  segment {n}: kept by hold {id}");
    }
    Ok(())
}

fn hold(a: HoldArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&a.data.data, false)?;
    let seq = match &a.seq {
        Some(s) => {
            let (x, y) = s.split_once("..").context("--seq A..B")?;
            let (x, y): (u64, u64) = (
                x.trim().parse().context("--seq A..B: A")?,
                y.trim().parse().context("--seq A..B: B")?,
            );
            if x == 0 || y < x {
                bail!("--seq {s}: need 1 <= A <= B");
            }
            Some((x, y))
        }
        None => None,
    };
    let mut holds = read_holds(&dd)?;
    let id = holds.iter().map(|h| h.id).max().unwrap_or(0) + 1;
    holds.push(Hold {
        id,
        vm: a.vm.clone(),
        seq,
        reason: a.reason.clone(),
        by: crate::cli::migrate::whoami(),
        at: model::Received::now().timestamp().to_string(),
    });
    write_holds(&dd, &holds)?;
    println!("hold {id} placed");
    Ok(ExitCode::SUCCESS)
}

fn release(a: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&a.data.data, false)?;
    let mut holds = read_holds(&dd)?;
    let before = holds.len();
    holds.retain(|h| h.id != a.id);
    if holds.len() == before {
        bail!("no hold {}", a.id);
    }
    write_holds(&dd, &holds)?;
    println!("hold {} released", a.id);
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&a.data.data, false)?;
    let holds = read_holds(&dd)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&holds)?);
    } else {
        for h in &holds {
            let what = match (&h.vm, h.seq) {
                (Some(v), _) => format!("vm {v}"),
                (None, Some((x, y))) => format!("#{x}..#{y}"),
                _ => "?".into(),
            };
            println!("{}: {what} — {} ({} at {})", h.id, h.reason, h.by, h.at);
        }
    }
    Ok(ExitCode::SUCCESS)
}
