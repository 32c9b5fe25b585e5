//! `pugmark hunt --iocs FILE...`: indicators from CSIRTs (plain lists, MISP, STIX 2.1) searched
//! over flows, netfilter connections and syslog text, each hit answered like `who`
//! (`query::hunt`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use query::hunt::{hunt, hunt_each, parse_iocs};

use crate::cli::{DataArgs, parse_time};
use pipeline::Readers;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct HuntArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Indicator files: plain lists (IPs, CIDRs, domains, URLs; `#` comments), MISP event or
    /// feed JSON, STIX 2.1 bundles.
    #[arg(long, required = true, num_args = 1..)]
    pub iocs: Vec<String>,
    /// From this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Until this time, exclusive (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// At most this many hits per indicator.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// JSON output: {"hits": [{"indicator", "time", "observer", "summary", "seq", "matches":
    /// [who match objects], "reported", "sender", "attribution" (a VM's own records: {how:
    /// uuid|address|hostname|ambiguous|none, vm, candidates})}], "truncated"}.
    #[arg(long)]
    pub json: bool,
    /// One search per indicator, each hit resolved on its own (slow; the oracle the default
    /// path is tested and benchmarked against).
    #[arg(long, hide = true)]
    pub one_query_per_indicator: bool,
    /// The quarantine (issue 13): every VM a hit matched is held until an operator releases
    /// it, when DATA has a quarantine store (`[auto_hold] hunt`).
    #[command(flatten)]
    pub hold: super::autohold::HoldFlags,
    /// Send the hits to this MISP instance as sightings (`POST URL/sightings/add`): one per
    /// indicator that hit, at its latest hit, with the hit count and ledger positions as
    /// source. Needs --misp-key-file.
    #[arg(long, requires = "misp_key_file")]
    pub misp_url: Option<String>,
    /// A file whose first line is the MISP API key (sent in the Authorization header).
    #[arg(long, requires = "misp_url")]
    pub misp_key_file: Option<std::path::PathBuf>,
    /// MISP sighting type: 0 sighting, 1 false positive, 2 expiration.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2), requires = "misp_url")]
    pub misp_sighting_type: u8,
}

/// Sends the hunt's sightings to MISP; reports on stderr; false when any failed.
fn misp(args: &HuntArgs, answer: &query::hunt::HuntAnswer) -> anyhow::Result<bool> {
    let (Some(url), Some(key_file)) = (&args.misp_url, &args.misp_key_file) else {
        return Ok(true);
    };
    let key = crate::misp::read_key(key_file)?;
    let sightings = query::misp::sightings(answer);
    let sent = crate::misp::send(url, &key, &sightings, args.misp_sighting_type);
    let failed: Vec<&crate::misp::Sent> = sent.iter().filter(|s| s.error.is_some()).collect();
    eprintln!(
        "pugmark: MISP {url}: {} sighting(s) added, {} failed{}",
        sent.len() - failed.len(),
        failed.len(),
        failed
            .first()
            .map(|f| format!(
                " (first: {}: {})",
                f.value,
                f.error.as_deref().unwrap_or_default()
            ))
            .unwrap_or_default()
    );
    Ok(failed.is_empty())
}

/// Indicators from files' bytes (plain lists, MISP, STIX 2.1), with a note per file that
/// has values that cannot be searched.
pub(crate) fn indicators(
    files: &[(String, Vec<u8>)],
) -> (Vec<query::hunt::Indicator>, Vec<String>) {
    let mut indicators = Vec::new();
    let mut notes = Vec::new();
    for (name, bytes) in files {
        let f = parse_iocs(bytes);
        if !f.skipped.is_empty() {
            notes.push(format!(
                "{name} ({}): {} indicators, {} values not searchable (first: {})",
                f.kind,
                f.indicators.len(),
                f.skipped.len(),
                f.skipped[0]
            ));
        }
        indicators.extend(f.indicators);
    }
    indicators.dedup();
    (indicators, notes)
}

/// The hunt, shared by the CLI and the query API (`crate::api`; its indicator file comes
/// in the request body): the typed answer and its `--json` document.
pub(crate) fn answer(
    args: &HuntArgs,
    indicators: &[query::hunt::Indicator],
) -> anyhow::Result<(query::hunt::HuntAnswer, serde_json::Value)> {
    answer_in(args, indicators, None)
}

/// [`answer`] with the site's attribution model when the caller keeps one (the query API:
/// loaded once per fact-store `site_version`), else loaded here.
pub(crate) fn answer_in(
    args: &HuntArgs,
    indicators: &[query::hunt::Indicator],
    site: Option<&query::attrib::Site>,
) -> anyhow::Result<(query::hunt::HuntAnswer, serde_json::Value)> {
    let dd = DataDir::open(&args.data.data, false)?;
    let mut r = Readers::open(&dd)?;
    let answer = match (args.one_query_per_indicator, site) {
        (false, Some(site)) => query::hunt::hunt_in(
            &r.index,
            &r.facts,
            site,
            &mut r.fetch,
            indicators,
            (args.from, args.to),
            args.limit,
        )?,
        (each, _) => (if each { hunt_each } else { hunt })(
            &r.index,
            &r.facts,
            &mut r.fetch,
            indicators,
            args.from,
            args.to,
            args.limit,
        )?,
    };
    let mut v = r.views.annotate(&answer)?;
    crate::proofs::externalize(dd.root(), &mut v)?;
    Ok((answer, v))
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.iocs {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        files.push((path.clone(), bytes));
    }
    let (indicators, notes) = indicators(&files);
    for n in &notes {
        eprintln!("pugmark: {n}");
    }
    let (answer, v) = answer(&args, &indicators)?;
    let misp_ok = misp(&args, &answer)?;
    let code = if misp_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    // Buffered: stdout is line-buffered, and a hunt's pretty JSON runs to millions of lines.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        out.flush()?;
        drop(out);
        hold(&args, &answer)?;
        return Ok(code);
    }
    for h in &answer.hits {
        let who: Vec<String> = h
            .matches
            .iter()
            .map(|m| {
                let owner = m
                    .owner
                    .user_name
                    .clone()
                    .or_else(|| m.owner.user_id.clone())
                    .unwrap_or_else(|| "?".into());
                format!("VM {} (owner {owner})", m.vm.uuid)
            })
            .collect();
        let who = if who.is_empty() {
            "no VM".to_string()
        } else {
            who.join(", ")
        };
        let reported = h
            .reported
            .as_ref()
            .map(|r| format!(" [reported {r}]"))
            .unwrap_or_default();
        let sender = h
            .sender
            .as_ref()
            .map(|s| format!(" (sent from {s})"))
            .unwrap_or_default();
        let by = h
            .attribution
            .as_ref()
            .map(|a| format!(" {}", a.text()))
            .unwrap_or_default();
        super::text_line(
            &mut out,
            &format!(
                "{} {} [{}] {} {}{reported} -> {who}{sender}{by}",
                h.time,
                h.indicator,
                h.observer,
                query::cite::text(&query::cite::Cite {
                    seq: h.seq,
                    flow: h.flow.map(Into::into),
                }),
                h.summary
            ),
        )?;
    }
    if answer.hits.is_empty() {
        writeln!(out, "no hits for {} indicators", indicators.len())?;
    }
    out.flush()?;
    drop(out);
    hold(&args, &answer)?;
    Ok(code)
}

/// Hold the VMs the hits matched (after the answer is out).
fn hold(args: &HuntArgs, answer: &query::hunt::HuntAnswer) -> anyhow::Result<()> {
    if let Some((path, config)) = super::autohold::load(&args.data.data, &args.hold)?
        && config.auto_hold.hunt
    {
        let mut holds: Vec<(String, String)> = Vec::new();
        for h in &answer.hits {
            for m in &h.matches {
                let reason = format!("hunt indicator {}", h.indicator);
                if !holds.iter().any(|(v, r)| *v == m.vm.uuid && *r == reason) {
                    holds.push((m.vm.uuid.clone(), reason));
                }
            }
        }
        super::autohold::hold(&args.data.data, &path, config, &holds, "auto:hunt")?;
    }
    Ok(())
}
