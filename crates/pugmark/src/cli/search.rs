//! `pugmark search`: full-text and field search over the evidence, in time order, each hit
//! with its ledger position. The index finds candidates; the ledger supplies the records.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use ledger::LedgerReader;
use model::EventClass;
use query::search::{SearchRequest, run_with_tail};
use views::search::SearchIndex;

use crate::cli::{DataArgs, parse_time};
use pipeline::datadir::DataDir;
use pipeline::{LedgerFetch, LedgerTail};

#[derive(Debug, Clone, Args)]
#[command(after_long_help = query::search::QUERY_SYNTAX_HELP)]
pub struct SearchArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The query (see QUERY SYNTAX below); `*` matches everything.
    pub query: String,
    /// Only events at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// Only events claiming this host name.
    #[arg(long)]
    pub host: Option<String>,
    /// Only events from this program (APP-NAME / tag).
    #[arg(long)]
    pub app: Option<String>,
    /// Only events of this class (auth.login, auth.failure, auth.identity_change,
    /// auth.session, net.connection, net.flow, vm.lifecycle, job.run, identity.directory, vm.custody,
    /// audit.query, other).
    #[arg(long)]
    pub class: Option<EventClass>,
    /// Only events whose normalised field K equals V (repeatable), e.g. --field user=alice.
    #[arg(long = "field", value_parser = parse_kv)]
    pub fields: Vec<(String, String)>,
    /// At most this many results, the earliest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print only the number of matches.
    #[arg(long)]
    pub count: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// Export the hits for another tool: `csv` (one column per `--json` key), `jsonl` (one
    /// `--json` hit per line), `timesketch` (Timesketch's JSONL: message, datetime,
    /// timestamp_desc, plus the fields). See docs/REPORTS.md.
    #[arg(long, value_enum, conflicts_with_all = ["json", "count"])]
    pub format: Option<ExportFormat>,
    /// Field names of an export: `native` (pugmark's) or `ecs` (Elastic Common Schema:
    /// source.ip, destination.port, user.name, host.name, event.category, …).
    #[arg(
        long = "fields",
        value_enum,
        default_value = "native",
        requires = "format"
    )]
    pub field_names: FieldNames,
}

/// `--format` of `search` and `timeline` (`query::export`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Timesketch,
}

/// `--fields` of `search` and `timeline` exports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FieldNames {
    Native,
    Ecs,
}

/// Writes `rows` as `format` with `names` to stdout (buffered: exports run long).
pub fn export(
    rows: &[query::export::Row<'_>],
    format: ExportFormat,
    names: FieldNames,
) -> anyhow::Result<()> {
    use query::export::{Format, Names};
    let format = match format {
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Timesketch => Format::Timesketch,
    };
    let names = match names {
        FieldNames::Native => Names::Native,
        FieldNames::Ecs => Names::Ecs,
    };
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    query::export::write(&mut out, rows, format, names)?;
    out.flush()?;
    Ok(())
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// The search, shared by the CLI and the query API (`crate::api`): the outcome, where the
/// views stood, and how many records past the index were scanned from the ledger.
pub(crate) fn answer(
    args: &SearchArgs,
) -> anyhow::Result<(
    query::search::SearchOutcome,
    pipeline::viewcheck::ViewsCheck,
    u64,
)> {
    let dd = DataDir::open(&args.data.data, false)?;
    // The records past the index are scanned below; a missing or foreign index is refused.
    // Flows are read from the flow store (when the directory has one: an older one's index
    // still holds them).
    let has_flows = flowstore::FlowStore::exists(dd.flows());
    let which: &[pipeline::viewcheck::View] = if has_flows {
        &[
            pipeline::viewcheck::View::Index,
            pipeline::viewcheck::View::Flows,
        ]
    } else {
        &[pipeline::viewcheck::View::Index]
    };
    let views = pipeline::viewcheck::check(&dd, which)?.refuse_unusable("search")?;
    let mut index = SearchIndex::open_or_create(dd.index())
        .with_context(|| format!("opening search index in {}", dd.index().display()))?;
    let reader = LedgerReader::open(&dd.ledger())
        .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
    let ledger_last = reader.len();
    // The position of the snapshot this search reads, not the newest commit on disk: a live
    // `serve` committing after the index was opened would otherwise move the position past
    // the snapshot, and the records in between would be in neither the answer nor the tail.
    let indexed = index.snapshot_seq().unwrap_or(0);
    if has_flows {
        // Flows up to where the ledger tail below starts.
        index.attach_flows(pipeline::open_flows(&dd)?, Some(indexed));
        // The ledger tail below starts at the index's position; a flow store behind it (an
        // interrupted commit: it commits just before the index) is only noted.
        let flows_only = pipeline::viewcheck::ViewsCheck {
            ledger_last: views.ledger_last,
            views: views
                .views
                .iter()
                .filter(|v| v.view == "flows")
                .cloned()
                .collect(),
        };
        flows_only.print_notes();
    }
    // NAT records (conntrack, ulogd2) are rows of the fact store, not documents (issue 12):
    // up to where the ledger tail starts (the fact store holds at least that much of them).
    if dd.facts().join("facts.sqlite").is_file() {
        index.attach_nat(
            views::facts::FactStore::open(dd.facts())
                .with_context(|| format!("opening fact store in {}", dd.facts().display()))?,
            Some(indexed),
        );
    }
    let req = SearchRequest {
        query: args.query.clone(),
        from: args.from,
        to: args.to,
        host: args.host.clone(),
        app: args.app.clone(),
        class: args.class,
        fields: args.fields.clone(),
        limit: args.limit,
        count_only: args.count,
    };
    // What the index does not hold yet (a live `serve` indexes behind the ledger; an
    // interrupted ingest too) is read from the ledger itself, so every stored record is found.
    let mut tail = None;
    if indexed < ledger_last {
        // With the flows of the datagrams there, derived as the views will.
        tail = Some(
            LedgerTail::new(&reader, indexed, ledger_last)
                .with_flows(&reader, index.flows_shared()),
        );
    }
    let mut fetch = LedgerFetch::new(reader).with_flows(index.flows_shared());
    let outcome = run_with_tail(
        &index,
        &req,
        &mut fetch,
        tail.as_mut().map(|t| t as &mut dyn query::search::Tail),
    )?;
    Ok((outcome, views, ledger_last.saturating_sub(indexed)))
}

/// The `--json` document of an outcome (`--count`: only the total).
pub(crate) fn to_json(
    args: &SearchArgs,
    outcome: &query::search::SearchOutcome,
    views: &pipeline::viewcheck::ViewsCheck,
) -> anyhow::Result<serde_json::Value> {
    if args.count {
        let mut v = serde_json::json!({ "total": outcome.total });
        views.add_to(&mut v)?;
        Ok(v)
    } else {
        let mut v = views.annotate(&outcome.to_json())?;
        // A flow the ledger tail derived is in no flow store yet: its event says its place.
        crate::proofs::externalize_noting(
            &args.data.data,
            &mut v,
            outcome.hits.iter().map(|h| (h.seq, &h.event)),
        )?;
        Ok(v)
    }
}

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let (outcome, views, trailing) = answer(&args)?;
    if trailing > 0 {
        eprintln!(
            "pugmark: the search index trails the ledger by {trailing} records; they were scanned \
             directly (slower until the index catches up)"
        );
    }
    if let Some(format) = args.format {
        let rows = query::export::search_rows(&outcome.hits)?;
        export(&rows, format, args.field_names)?;
        if outcome.truncated {
            eprintln!(
                "pugmark: exported the first {} of {} matches (--limit)",
                outcome.hits.len(),
                outcome.total
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = io::stdout().lock();
    if args.json {
        let v = to_json(&args, &outcome, &views)?;
        if args.count {
            writeln!(out, "{v}")?;
        } else {
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
    } else if args.count {
        writeln!(out, "{}", outcome.total)?;
    } else {
        for hit in &outcome.hits {
            // render_line escapes what came from the record.
            writeln!(out, "{}", query::search::render_line(hit))?;
        }
        if outcome.truncated {
            eprintln!(
                "pugmark: showing the first {} of {} matches (--limit)",
                outcome.hits.len(),
                outcome.total
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
