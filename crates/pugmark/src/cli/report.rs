//! `pugmark report`: the incident answer for an IP or hostname at a moment, as Markdown (the
//! default), JSON or HTML (`query::report`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use query::report::{report, to_html, to_markdown};
use query::who::{AddrKind, WhoQuery};

use crate::cli::{DataArgs, parse_time};
use crate::datadir::DataDir;
use crate::pipeline::Readers;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
    Html,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("address").required(true).args(["ip", "host"])))]
pub struct ReportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// An IP address.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// A hostname as the cloud assigned it.
    #[arg(long)]
    pub host: Option<String>,
    /// The moment (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub at: Timestamp,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let (kind, value) = match (&args.ip, &args.host) {
        (Some(ip), _) => (AddrKind::Ip, ip.to_string()),
        (_, Some(h)) => (AddrKind::Host, h.clone()),
        _ => bail!("one of --ip or --host is required"),
    };
    let mut r = Readers::open(&dd)?;
    let rep = report(
        &r.index,
        &r.facts,
        &mut r.fetch,
        &WhoQuery {
            kind,
            value,
            at: args.at,
        },
    )?;
    let mut out = io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &r.views.annotate(&rep)?)?;
            writeln!(out)?;
        }
        ReportFormat::Md => out.write_all(to_markdown(&rep).as_bytes())?,
        ReportFormat::Html => out.write_all(to_html(&rep).as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
