//! `pugmark check`: the sources held against each other (`query::check`); this file parses
//! flags and prints. Exit status 0 whatever is found (findings are answers, not failures);
//! scripts read `by_kind` from `--json`.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Args;
use jiff::{SignedDuration, Timestamp};
use query::check::{CheckRequest, check};
use query::lang::Net;

use crate::cli::{DataArgs, parse_time};
use pipeline::Readers;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Start of the range (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// End of the range, exclusive.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// Clock skew and backward steps beyond this are findings (e.g. 5m, 90s).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub tolerance: SignedDuration,
    /// A VM that logged nothing for this long while its address was active is silent.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub silence: SignedDuration,
    /// The site's address space for unknown hosts (repeatable CIDR). Default: every /24 or
    /// /64 holding an address some VM leased.
    #[arg(long = "site-net", value_parser = parse_net)]
    pub site_nets: Vec<Net>,
    /// Read flows and connections from the ledger event by event instead of the index's fast
    /// columns (slow; the oracle the fast path is tested against).
    #[arg(long, hide = true)]
    pub from_events: bool,
    /// JSON: {"from", "to", "by_kind", "findings": [{"kind", "time", "entities", "summary",
    /// "count", "evidence": [{"seq", "observer", "source", "time", "summary"}]}], "examined"}.
    #[arg(long)]
    pub json: bool,
    /// The quarantine (issue 13): the VM a finding suspects (`[auto_hold] check_kinds`) is
    /// held until an operator releases it, when DATA has a quarantine store.
    #[command(flatten)]
    pub hold: super::autohold::HoldFlags,
}

fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 5m or 2h"))?;
    match unit {
        "s" | "" => Ok(SignedDuration::from_secs(n)),
        "m" => Ok(SignedDuration::from_mins(n)),
        "h" => Ok(SignedDuration::from_hours(n)),
        _ => Err(format!("{s:?} is not a duration such as 90s, 5m or 2h")),
    }
}

fn parse_net(s: &str) -> Result<Net, String> {
    Net::parse(s).ok_or_else(|| format!("{s:?} is not a network such as 10.1.0.0/16"))
}

/// The findings, shared by the CLI and the query API (`crate::api`): the typed report and
/// its `--json` document.
pub(crate) fn answer(
    args: &CheckArgs,
) -> anyhow::Result<(query::check::CheckReport, serde_json::Value)> {
    let dd = DataDir::open(&args.data.data, false)?;
    let mut r = Readers::open(&dd)?;
    let report = check(
        &r.index,
        &r.facts,
        &mut r.fetch,
        &CheckRequest {
            from: args.from,
            to: args.to,
            tolerance: args.tolerance,
            silence: args.silence,
            site_nets: args.site_nets.clone(),
            net_from_events: args.from_events,
        },
    )?;
    let mut v = r.views.annotate(&report)?;
    crate::proofs::externalize(dd.root(), &mut v)?;
    Ok((report, v))
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (report, v) = answer(&args)?;
    let code = print(&args, &report, &v)?;
    // After the answer is out: a quarantine that cannot hold does not hide the findings.
    if let Some((path, config)) = super::autohold::load(&args.data.data, &args.hold)?
        && config.auto_hold.check
    {
        let kinds = config.auto_hold.check_kinds.clone();
        let mut holds: Vec<(String, String)> = Vec::new();
        for f in report
            .findings
            .iter()
            .filter(|f| kinds.iter().any(|k| k == f.kind))
        {
            for vm in f.suspects() {
                let reason = format!("check finding {}: {}", f.kind, f.entities.join(" "));
                if !holds.iter().any(|(v, r)| v == vm && *r == reason) {
                    holds.push((vm.to_string(), reason));
                }
            }
        }
        super::autohold::hold(&args.data.data, &path, config, &holds, "auto:check")?;
    }
    Ok(code)
}

fn print(
    args: &CheckArgs,
    report: &query::check::CheckReport,
    v: &serde_json::Value,
) -> anyhow::Result<ExitCode> {
    // Buffered: stdout is line-buffered, and the pretty JSON of a day runs to many lines.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, v)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.findings {
        let times = if f.count > 1 {
            format!(" (×{})", f.count)
        } else {
            String::new()
        };
        super::text_line(
            &mut out,
            &format!("{} {}{}: {}", f.time, f.kind, times, f.summary),
        )?;
        for e in &f.evidence {
            super::text_line(&mut out, &super::evidence_line(&args.data.data, e))?;
        }
    }
    let kinds: Vec<String> = report
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    writeln!(
        out,
        "{} findings{}{}",
        report.findings.len(),
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", ")
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
