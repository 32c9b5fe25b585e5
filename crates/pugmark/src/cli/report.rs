//! `pugmark report`: the incident answer for an IP or hostname at a moment, as Markdown (the
//! default), JSON or HTML (`query::report`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use query::report::{ReportOptions, report_with, to_html, to_markdown};
use query::who::{AddrKind, WhoQuery};

use crate::cli::{DataArgs, parse_time};
use pipeline::Readers;
use pipeline::datadir::DataDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// When the incident was discovered (RFC 3339): the EGI CSIRT procedure's deadlines
    /// (inform within 4 hours, contain within 1 day) are dated from it.
    #[arg(long, value_parser = parse_time)]
    pub discovered: Option<Timestamp>,
}

/// The integrity section's last word when the ledger has no signed checkpoint yet.
const NO_CHECKPOINT: &str = "No signed checkpoint of the ledger exists yet: the cited records carry no inclusion proof (`pugmark verify` checks the chain; proofs come with the first checkpoint).\n";

/// The report, shared by the CLI and the query API (`crate::api`): the typed report, its
/// `--format json` document without `integrity` (added by the caller with
/// [`render`], which adds it after any scoping), and the data directory.
pub(crate) fn answer(
    args: &ReportArgs,
) -> anyhow::Result<(query::report::Report, serde_json::Value, DataDir)> {
    let dd = DataDir::open(&args.data.data, false)?;
    let (kind, value) = match (&args.ip, &args.host) {
        (Some(ip), _) => (AddrKind::Ip, ip.to_string()),
        (_, Some(h)) => (AddrKind::Host, h.clone()),
        _ => bail!("one of --ip or --host is required"),
    };
    let mut r = Readers::open(&dd)?;
    let rep = report_with(
        &r.index,
        &r.facts,
        &mut r.fetch,
        &WhoQuery {
            kind,
            value,
            at: args.at,
        },
        &ReportOptions {
            discovered: args.discovered,
        },
    )?;
    // Every cited record with its bytes and an inclusion proof (issue 11).
    let mut v = r.views.annotate(&rep)?;
    crate::proofs::externalize(dd.root(), &mut v)?;
    Ok((rep, v, dd))
}

/// The Markdown or HTML rendering with the integrity section (the CLI's and the API's).
pub(crate) fn render(
    rep: &query::report::Report,
    v: &serde_json::Value,
    dd: &DataDir,
    format: ReportFormat,
) -> anyhow::Result<Vec<u8>> {
    let mut seqs = std::collections::BTreeSet::new();
    crate::proofs::cited(v, &mut seqs);
    let integrity = crate::proofs::integrity(&dd.ledger(), &seqs)?;
    Ok(match format {
        ReportFormat::Json => {
            // The integrity block computed above (`add_integrity_with` would build the proofs a
            // second time: every cited record's group re-hashed, the notes read again).
            let mut v = v.clone();
            if let serde_json::Value::Object(m) = &mut v {
                m.insert(
                    "integrity".into(),
                    integrity.unwrap_or(serde_json::Value::Null),
                );
            }
            let mut b = serde_json::to_vec_pretty(&v)?;
            b.push(b'\n');
            b
        }
        ReportFormat::Md => {
            let mut md = to_markdown(rep);
            match &integrity {
                Some(i) => md.push_str(&crate::proofs::markdown(i)?),
                None => md.push_str(NO_CHECKPOINT),
            }
            md.into_bytes()
        }
        ReportFormat::Html => {
            let page = to_html(rep);
            let page = match &integrity {
                Some(i) => crate::proofs::html(&page, i)?,
                None => page.replace("</body>", &format!("<p>{NO_CHECKPOINT}</p></body>")),
            };
            page.into_bytes()
        }
    })
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (rep, v, dd) = answer(&args)?;
    let bytes = render(&rep, &v, &dd, args.format)?;
    io::stdout().lock().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}
