//! `pugmark timeline`: every event and fact about a VM, an IP, a hostname or a user, all
//! sources merged in time order, each line marked with its observer (`query::timeline`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use jiff::Timestamp;
use query::timeline::{Subject, TimelineRequest, timeline};

use crate::cli::{DataArgs, parse_time};
use crate::datadir::DataDir;
use crate::pipeline::Readers;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["vm", "ip", "host", "user"])))]
pub struct TimelineArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A VM's UUID.
    #[arg(long)]
    pub vm: Option<String>,
    /// An IP address.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// A hostname.
    #[arg(long)]
    pub host: Option<String>,
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
    /// JSON output: {"query", "from", "to", "entries": [{time, observer, kind, seq, source,
    /// summary}], "truncated"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let subject = match (&args.vm, &args.ip, &args.host, &args.user) {
        (Some(v), ..) => Subject::Vm(v.clone()),
        (_, Some(ip), ..) => Subject::Ip(*ip),
        (_, _, Some(h), _) => Subject::Host(h.clone()),
        (.., Some(u)) => Subject::User(u.clone()),
        _ => bail!("one of --vm, --ip, --host or --user is required"),
    };
    let mut r = Readers::open(&dd)?;
    let t = timeline(
        &r.index,
        &r.facts,
        &mut r.fetch,
        &TimelineRequest {
            subject,
            from: args.from,
            to: args.to,
            limit: args.limit,
        },
    )?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &r.views.annotate(&t)?)?;
        writeln!(out)?;
    } else {
        for e in &t.entries {
            super::text_line(
                &mut out,
                &format!(
                    "{} [{}] {} #{} {}: {}",
                    e.time, e.observer, e.kind, e.seq, e.source, e.summary
                ),
            )?;
        }
        if t.entries.is_empty() {
            writeln!(out, "nothing known")?;
        }
        if t.truncated {
            eprintln!("pugmark: some searches hit --limit; there is more than shown");
        }
    }
    Ok(ExitCode::SUCCESS)
}
