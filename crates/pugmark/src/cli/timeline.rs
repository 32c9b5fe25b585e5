//! `pugmark timeline`: every event and fact about a VM, an IP, a hostname or a user, all
//! sources merged in time order, each line marked with its observer (`query::timeline`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use jiff::Timestamp;
use query::timeline::{Subject, TimelineRequest, timeline};

use crate::cli::{DataArgs, parse_time};
use pipeline::Readers;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["vm", "ip", "host", "user"])))]
pub struct TimelineArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A VM's UUID (an OpenNebula VM: `one-<ID>`).
    #[arg(long)]
    pub vm: Option<String>,
    /// An IP address.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// A hostname. Follows the held name by default: the VMs the cloud gave NAME (the leases
    /// `who --host` answers from) and what is attributed to them while they held it.
    #[arg(long)]
    pub host: Option<String>,
    /// With --host: follow the claimed name instead — every record that says NAME, each
    /// tagged with the VM it is attributed to (which may be another, or ambiguous).
    #[arg(long, requires = "host")]
    pub claimed: bool,
    /// A user: Keystone id or name, local account, or grid DN.
    #[arg(long)]
    pub user: Option<String>,
    /// From this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Until this time, exclusive (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// At most this many events from each underlying search.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Also count, per observer, every record the searches match over the whole window in N
    /// time slices, however few entries --limit fetched (JSON "lanes": {first, last, slices,
    /// counts: {observer: [n per slice]}, total, complete}; before attribution; read from
    /// the index and the flow store, nothing from the ledger; `complete` is false past 2
    /// million records or for a phrase search). What the web page draws.
    #[arg(long, default_value_t = 0, value_parser = parse_lanes)]
    pub lanes: usize,
    /// JSON output: {"query", "follows" (--host: held|claimed), "from", "to", "entries":
    /// [{time, observer, kind, seq, source, summary, attribution: {how: uuid|address|tap|
    /// hostname|ambiguous|none, vm, candidates, uuid_mismatch}}], "truncated", "lanes"
    /// (with --lanes)}.
    #[arg(long)]
    pub json: bool,
    /// Export the entries for another tool: `csv`, `jsonl` or `timesketch` (as for `search`;
    /// each row also carries the record's `fields`).
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<super::search::ExportFormat>,
    /// Field names of an export: `native` or `ecs` (Elastic Common Schema).
    #[arg(
        long = "fields",
        value_enum,
        default_value = "native",
        requires = "format"
    )]
    pub field_names: super::search::FieldNames,
}

/// The timeline, shared by the CLI and the query API (`crate::api`): the typed answer and
/// its `--json` document.
pub(crate) fn answer(
    args: &TimelineArgs,
) -> anyhow::Result<(query::timeline::Timeline, serde_json::Value)> {
    answer_in(args, None)
}

/// [`answer`] with the site's attribution model when the caller keeps one (the query API:
/// loaded once per fact-store `site_version`), else loaded here.
pub(crate) fn answer_in(
    args: &TimelineArgs,
    site: Option<&query::attrib::Site>,
) -> anyhow::Result<(query::timeline::Timeline, serde_json::Value)> {
    let dd = DataDir::open(&args.data.data, false)?;
    let subject = subject(args)?;
    let mut r = Readers::open(&dd)?;
    let req = TimelineRequest {
        subject,
        from: args.from,
        to: args.to,
        limit: args.limit,
        claimed: args.claimed,
        lanes: args.lanes,
    };
    let t = match site {
        Some(site) => query::timeline::timeline_in(&r.index, &r.facts, site, &mut r.fetch, &req)?,
        None => timeline(&r.index, &r.facts, &mut r.fetch, &req)?,
    };
    let mut v = r.views.annotate(&t)?;
    crate::proofs::externalize(dd.root(), &mut v)?;
    Ok((t, v))
}

/// `--lanes`: 0 (none) to 2000 slices (a page is at most that many pixels wide).
fn parse_lanes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= 2000 => Ok(n),
        _ => Err(format!("`{s}`: a number of slices from 0 to 2000")),
    }
}

/// What `--vm`, `--ip`, `--host` or `--user` names.
pub(crate) fn subject(args: &TimelineArgs) -> anyhow::Result<Subject> {
    Ok(match (&args.vm, &args.ip, &args.host, &args.user) {
        // An OpenNebula VM as an operator types it (`one-42`, `ONE-042`): pugmark's identity.
        (Some(v), ..) => {
            Subject::Vm(model::fields::parse_opennebula_vm(v).unwrap_or_else(|| v.clone()))
        }
        (_, Some(ip), ..) => Subject::Ip(*ip),
        (_, _, Some(h), _) => Subject::Host(h.clone()),
        (.., Some(u)) => Subject::User(u.clone()),
        _ => bail!("one of --vm, --ip, --host or --user is required"),
    })
}

pub fn run(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let (t, v) = answer(&args)?;
    if let Some(format) = args.format {
        let rows = query::export::timeline_rows(&t.entries)?;
        super::search::export(&rows, format, args.field_names)?;
        if t.truncated {
            eprintln!("pugmark: some searches hit --limit; there is more than exported");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        for e in &t.entries {
            // Events carry the VM they are attributed to (short UUID and how); facts name
            // their VM in full already.
            let tag = e
                .attribution
                .as_ref()
                .filter(|_| e.kind == "event")
                .map(|a| format!(" {}", a.text()))
                .unwrap_or_default();
            super::text_line(
                &mut out,
                &format!(
                    "{} [{}] {} {} {}: {}{tag}",
                    e.time,
                    e.observer,
                    e.kind,
                    query::cite::text(&query::cite::Cite {
                        seq: e.seq,
                        flow: e.flow.map(Into::into),
                    }),
                    e.source,
                    e.summary
                ),
            )?;
        }
        if t.entries.is_empty() {
            match (&args.host, args.claimed) {
                (Some(h), false) => writeln!(
                    out,
                    "no VM held hostname {} (the cloud's name, as `pugmark who --host` answers); \
                     --claimed shows the records that call themselves so",
                    model::escape_controls(h)
                )?,
                _ => writeln!(out, "nothing known")?,
            }
        }
        if t.truncated {
            eprintln!("pugmark: some searches hit --limit; there is more than shown");
        }
    }
    Ok(ExitCode::SUCCESS)
}
