//! `pugmark audit [--user U] [--from T] [--to T] [--json]`: the query API's audit trail — who
//! asked what, with which role, when, how many results, answered or refused — read from the
//! ledger's `audit.query` records (`crate::api::audit`).

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;

use crate::cli::{DataArgs, parse_time};
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Only this asker (the name, or the subject such as `api-token:ID` or an OIDC `sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// From this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Until this time, exclusive (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// JSON: {"audits": [{"seq", "time", "user", "subject", "issuer", "via", "role", "verb",
    /// "params", "status", "count", "vms", "peer", "reason"}], "total"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    pipeline::viewcheck::check(&dd, &[pipeline::viewcheck::View::Index])?
        .refuse_unusable("audit")?;
    let list = crate::api::audit::list(&dd, args.user.as_deref(), args.from, args.to)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let total = list.len();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"audits": list, "total": total}),
        )?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for l in &list {
        let s = |k: &str| {
            l.audit
                .get(k)
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .unwrap_or_else(|| "-".into())
        };
        super::text_line(
            &mut out,
            &format!(
                "#{} {} {} ({}) {} {} -> {} ({} results){}",
                l.seq,
                l.time,
                s("user"),
                s("role"),
                s("verb"),
                s("params"),
                s("status"),
                s("count"),
                l.audit
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        )?;
    }
    if list.is_empty() {
        writeln!(out, "no audited queries")?;
    }
    Ok(ExitCode::SUCCESS)
}
