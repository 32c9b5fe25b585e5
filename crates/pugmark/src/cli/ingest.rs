//! `pugmark ingest`: import log files (plain, `.gz`, or `-` for stdin) into the ledger.
//!
//! Per file: pass 1 hashes the content at the offsets of earlier import marks (dedup, see
//! `imports.rs`), measures it and samples its first lines to detect the format; pass 2 cuts
//! the content that is not stored yet into records with the format's framing
//! (`decode::framing`: lines, JSON array elements, ClassAd blocks, userlog events) and
//! streams them into durable ledger batches, each closed by an import mark. Nothing is
//! dropped: bytes that no decoder understands are stored raw with a parse issue, and records
//! longer than `decode::framing::MAX_RECORD` are split into consecutive records.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use decode::framing::{Framer, framing};
use indicatif::{ProgressBar, ProgressStyle};
use model::envelope::{ImportMark, RecordEnvelope};
use model::{DecodeHints, Envelope, Format, Observer, Origin, Received, YearRule};
use serde::Serialize;

use crate::cli::DataArgs;
use crate::netflow::FlowIngest;
use pipeline::Pipeline;
use pipeline::datadir::DataDir;
use pipeline::imports::hex;

use super::ingest_flow::{self, FlowInput, FlowSummary};

/// Records per durable ledger batch (one fsync each).
const BATCH_RECORDS: usize = 8192;
/// Bytes per durable ledger batch.
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Lines sampled for format detection.
const DETECT_LINES: usize = 64;
/// Bytes at the start of a file (after gzip) that decide whether it is text ([`not_text`]).
const TEXT_SNIFF_BYTES: usize = 64 * 1024;
/// More than this share of non-text bytes in [`TEXT_SNIFF_BYTES`] makes a file binary
/// ([`not_text`]).
const MAX_NON_TEXT_SHARE: f64 = 0.10;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Detect per file from its first lines.
    Auto,
    /// Syslog: RFC 5424, RFC 3164, rsyslog file formats, recognised per line.
    Syslog,
    /// Store as text lines without parsing.
    Raw,
    /// OpenStack notifications, one JSON document per line (bare or in the oslo envelope).
    OpenstackNotification,
    /// OpenStack service logs in oslo.log layout (nova-api, nova-compute, …).
    OsloLog,
    /// Keystone directory dump: `openstack user|project list --long -f json`.
    KeystoneDirectory,
    /// `condor_history -json` output.
    CondorHistoryJson,
    /// `condor_history -l` output (ClassAds separated by blank lines).
    CondorClassad,
    /// HTCondor job event log (userlog).
    CondorUserlog,
    /// SCIM 2.0 export (`/scim/Users`, `/scim/Groups` ListResponse pages; INDIGO IAM).
    ScimDirectory,
    /// ARC CE A-REX job log (`Started - job id: …` / `Finished - job id: …` lines).
    ArcJobLog,
    /// HTCondor(-CE) schedd audit log (`SCHEDD_AUDIT_LOG`, `(D_AUDIT)` lines).
    CondorAuditLog,
    /// A packet capture (pcap / pcapng) of NetFlow v5/v9 or IPFIX export datagrams.
    Pcap,
    /// One bare NetFlow / IPFIX export datagram (a UDP payload) per file.
    Netflow,
    /// OpenNebula XML: `onevm show -x` / `onevm list -x`, `onevnet show -x`, the state hook's
    /// VM template or `HOOK_MESSAGE` (one record per VM, VNET or message).
    OpennebulaXml,
    /// OpenNebula's `oned.log` and per-VM `/var/log/one/<id>.log` lines.
    OpennebulaLog,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::Auto | FormatArg::Syslog => Format::Syslog,
            FormatArg::Raw => Format::Raw,
            FormatArg::OpenstackNotification => Format::OpenstackNotification,
            FormatArg::OsloLog => Format::OsloLog,
            FormatArg::KeystoneDirectory => Format::KeystoneDirectory,
            FormatArg::CondorHistoryJson => Format::CondorHistoryJson,
            FormatArg::CondorClassad => Format::CondorClassAd,
            FormatArg::CondorUserlog => Format::CondorUserlog,
            FormatArg::ScimDirectory => Format::ScimDirectory,
            FormatArg::ArcJobLog => Format::ArcJobLog,
            FormatArg::CondorAuditLog => Format::CondorAuditLog,
            FormatArg::Pcap | FormatArg::Netflow => Format::NetflowDatagram,
            FormatArg::OpennebulaXml => Format::OpennebulaXml,
            FormatArg::OpennebulaLog => Format::OpennebulaLog,
        }
    }
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// After storing, push the ledger's latest checkpoint to this witness (URL=VKEY, the
    /// witness's URL prefix and verifier key) and record its cosignature; repeatable. A
    /// witness that does not cosign makes the exit status non-zero (the records stay stored).
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witnesses: Vec<String>,
    /// Files to import; `-` reads standard input; gzip is recognised by content.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Format of the files.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Year for year-less (RFC 3164) timestamps. Default: inferred from the file's
    /// modification time, with New-Year rollover.
    #[arg(long)]
    pub year: Option<i16>,
    /// Time zone for zone-less timestamps: an IANA name (Europe/Zurich) or an offset (+02:00).
    /// Default: UTC.
    #[arg(long)]
    pub tz: Option<String>,
    /// Who observed these records; decides how far they are trusted. Default by format:
    /// syslog is `vm` (forgeable by the VM's root: use `hypervisor` for a hypervisor's own
    /// logs), OpenStack sources `cloud`, HTCondor sources `vo`.
    #[arg(long)]
    pub observer: Option<Observer>,
    /// Read each file's sender address from its path: a path with one `{ip}` placeholder
    /// standing for one path component, e.g. `/var/log/remote/{ip}/` for a central logger's
    /// per-host directories (docs/SITES.md). The address is stored with every record (the
    /// record's sender, as a live sender's address is); a file whose path does not match is
    /// refused.
    #[arg(long, value_name = "PATTERN")]
    pub sender_from_path: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct FileSummary {
    pub path: String,
    pub format: &'static str,
    pub bytes: u64,
    /// Lines; for NetFlow input, export datagrams.
    pub lines: u64,
    pub stored: u64,
    pub skipped_lines: u64,
    pub skipped_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netflow: Option<FlowSummary>,
}

#[derive(Debug, Serialize)]
struct IssueSummary {
    events: u64,
    by_kind: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct Summary {
    files: Vec<FileSummary>,
    events: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    parse_issues: IssueSummary,
    seconds: f64,
    lines_per_sec: f64,
    mb_per_sec: f64,
    recovered_torn_tail: Option<String>,
    views_caught_up: u64,
    /// Inputs that were not stored (missing, unreadable, a directory, not text), each with
    /// why; the exit status is non-zero when there is any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<FailedInput>,
    /// NetFlow v9/IPFIX data sets whose template never came during this run (dropped).
    #[serde(skip_serializing_if = "is_zero")]
    flow_sets_without_template: u64,
    /// `--witness`: what each witness cosigned (or why not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    witnesses: Vec<WitnessPush>,
}

#[derive(Debug, Serialize)]
struct WitnessPush {
    witness: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosigned_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct FailedInput {
    path: String,
    why: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let tz = args.tz.as_deref().map(validate_tz).transpose()?;
    let mut witness_targets = args
        .witnesses
        .iter()
        .map(|w| crate::witnesses::parse_url_vkey(w))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sender_pattern = args
        .sender_from_path
        .as_deref()
        .map(model::sender_path::SenderPattern::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let dd = DataDir::open(&args.data.data, true)?;
    // Open every input before touching the ledger. One that cannot be read, or that is not
    // text (unless `--format raw` says to store it anyway), is reported in one line and
    // skipped; the others are stored, and the exit status says that something was not.
    let mut inputs = Vec::new();
    let mut senders = Vec::new();
    let mut failed = Vec::new();
    for name in &args.files {
        let sender = match &sender_pattern {
            None => Ok(None),
            Some(p) => sender_of(p, name).map(Some),
        };
        let checked = sender.and_then(|sender| {
            senders.push(sender);
            Input::open(name, &dd)
        });
        let checked = checked.and_then(|input| {
            if flow_input(&input, args.format)?.is_none()
                && !matches!(args.format, FormatArg::Raw)
                && let Some(why) = not_text(&input)?
            {
                input.cleanup();
                bail!("{why}; pass --format raw to store it anyway");
            }
            Ok(input)
        });
        match checked {
            Ok(input) => inputs.push(input),
            Err(e) => {
                senders.truncate(inputs.len());
                failed.push(FailedInput {
                    path: name.clone(),
                    why: format!("{e:#}"),
                });
            }
        }
    }
    if inputs.is_empty() {
        // Nothing to store: the reasons are the error (one line).
        let why: Vec<String> = failed.iter().map(|f| f.why.clone()).collect();
        bail!("{}", why.join("; "));
    }
    for f in &failed {
        eprintln!("pugmark: skipped {}: {}", f.path, f.why);
    }
    let mut pipeline = Pipeline::open(&dd)?;
    let recovered = if pipeline.open_report.truncated.is_empty() {
        None
    } else {
        let parts: Vec<String> = pipeline
            .open_report
            .truncated
            .iter()
            .map(|t| t.to_string())
            .collect();
        Some(parts.join("; "))
    };
    if let Some(r) = &recovered {
        eprintln!("pugmark: ledger recovery: {r}");
    }
    let started = Instant::now();
    let mut files = Vec::new();
    let mut first_seq = None;
    let mut last_seq = None;
    let mut total_bytes = 0u64;
    // Datagrams only; the views derive their flows (`FlowIngest::collector`).
    let mut flows = FlowIngest::collector(flow::Limits::default(), pipeline.derive_marker());
    for (input, sender) in inputs.iter().zip(&senders) {
        let sender = sender.as_deref();
        let hints = DecodeHints {
            year: match (args.year, input.mtime) {
                (Some(y), _) => YearRule::Fixed(y),
                (None, Some(m)) => YearRule::Reference(m),
                (None, None) => YearRule::FromReceived,
            },
            tz: tz.clone(),
        };
        let mut on_receipt = |f, l| {
            first_seq = first_seq.or(Some(f));
            last_seq = Some(l);
        };
        let stored = match flow_input(input, args.format) {
            Ok(Some(kind)) => match ingest_flow::ingest(
                &mut pipeline,
                &mut flows,
                input,
                kind,
                args.observer,
                &mut on_receipt,
            ) {
                Err(e) if e.is::<ingest_flow::NotACapture>() => {
                    eprintln!("pugmark: {e:#}; stored as raw lines instead");
                    ingest_one(
                        &mut pipeline,
                        input,
                        FormatArg::Raw,
                        &hints,
                        args.observer,
                        sender,
                        &mut on_receipt,
                    )
                }
                other => other,
            },
            Ok(None) => ingest_one(
                &mut pipeline,
                input,
                args.format,
                &hints,
                args.observer,
                sender,
                &mut on_receipt,
            ),
            Err(e) => Err(e),
        };
        match stored {
            Ok(s) => {
                total_bytes += s.bytes - s.skipped_bytes;
                files.push(s);
            }
            // The ledger failed (a full disk, an I/O error): nothing more can be stored.
            Err(e) if e.chain().any(|c| c.is::<ledger::LedgerError>()) => return Err(e),
            // A file that fails part-way (it shrank, a read error) keeps what its durable
            // batches stored; a re-import resumes after them. The next file goes on.
            Err(e) => {
                eprintln!("pugmark: skipped the rest of {}: {e:#}", input.name);
                failed.push(FailedInput {
                    path: input.name.clone(),
                    why: format!("{e:#}"),
                });
            }
        }
    }
    let mut flow_sets_without_template = flows.finish();
    let caught_up = pipeline.caught_up;
    let mut stats = pipeline.finish()?;
    if flows.is_deriving() {
        // The views decoded this run's datagrams; `finish` waited for them.
        flow_sets_without_template = stats.flow_sets_waiting;
        ingest_flow::fill_from_views(&mut files, &mut stats.flows);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut witnesses = Vec::new();
    for t in &mut witness_targets {
        let (cosigned_size, error) = match crate::witnesses::push(&dd.ledger(), t) {
            Ok(crate::witnesses::Pushed::Cosigned { size, .. }) => (Some(size), None),
            Ok(crate::witnesses::Pushed::Nothing) => (t.held, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        witnesses.push(WitnessPush {
            witness: t.name.clone(),
            url: t.peer.url().to_owned(),
            cosigned_size,
            error,
        });
    }
    let lines: u64 = files.iter().map(|f| f.stored).sum();
    let summary = Summary {
        events: stats.events,
        first_seq,
        last_seq,
        parse_issues: IssueSummary {
            events: stats.events_with_issues,
            by_kind: stats.issues_by_kind,
        },
        lines_per_sec: lines as f64 / seconds.max(1e-9),
        mb_per_sec: total_bytes as f64 / 1e6 / seconds.max(1e-9),
        seconds,
        files,
        recovered_torn_tail: recovered,
        views_caught_up: caught_up,
        flow_sets_without_template,
        failed,
        witnesses,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    for input in inputs {
        input.cleanup();
    }
    let mut witness_failed = false;
    for w in &summary.witnesses {
        match (&w.error, w.cosigned_size) {
            (Some(e), _) => {
                witness_failed = true;
                eprintln!(
                    "pugmark: witness {} ({}): NOT cosigned: {e}",
                    w.witness, w.url
                );
            }
            (None, Some(n)) if !args.json => {
                println!("witness {} ({}): cosigned tree size {n}", w.witness, w.url)
            }
            _ => {}
        }
    }
    if witness_failed {
        return Ok(ExitCode::FAILURE);
    }
    if !summary.failed.is_empty() {
        eprintln!(
            "pugmark: {} of {} inputs not stored (see above)",
            summary.failed.len(),
            args.files.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `input` is not a text log, judged on its first [`TEXT_SNIFF_BYTES`] (after gzip):
/// more than [`MAX_NON_TEXT_SHARE`] of them are NUL, other control characters than tab, line
/// feed, carriage return, form feed and escape, or bytes that are not UTF-8. Executables,
/// images, archives and databases are far above it; a log in a legacy 8-bit encoding, or one
/// with a run of NULs a crash left in it, stays below. NetFlow captures and payloads never
/// get here (recognised before); gzip is judged on what it decompresses to.
fn not_text(input: &Input) -> anyhow::Result<Option<String>> {
    Ok(binary_reason(&input.head(TEXT_SNIFF_BYTES)?))
}

/// The heuristic of [`not_text`] on a sample.
fn binary_reason(head: &[u8]) -> Option<String> {
    let control = |b: &u8| *b < 0x20 && !matches!(*b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b);
    let mut non_text = 0usize;
    for chunk in head.utf8_chunks() {
        non_text += chunk.invalid().len();
        non_text += chunk
            .valid()
            .as_bytes()
            .iter()
            .filter(|b| control(b))
            .count();
    }
    let share = non_text as f64 / head.len().max(1) as f64;
    (share > MAX_NON_TEXT_SHARE).then(|| {
        format!(
            "not text: {:.0} % of its first {} bytes are NUL, control characters or not UTF-8",
            share * 100.0,
            head.len()
        )
    })
}

fn print_summary(s: &Summary) {
    let mut out = io::stdout().lock();
    for f in &s.files {
        match &f.netflow {
            Some(n) if f.skipped_bytes == f.bytes && f.bytes > 0 => {
                let _ = writeln!(out, "{}: ({}) already stored", f.path, f.format);
            }
            Some(n) => {
                let mut line = format!(
                    "{}: {} export datagrams ({}), {} flows, {} records stored",
                    f.path, n.datagrams, f.format, n.flows, f.stored
                );
                if n.other_udp + n.other_frames > 0 {
                    line.push_str(&format!(
                        "; {} other frames not stored",
                        n.other_udp + n.other_frames
                    ));
                }
                if n.capture_damaged {
                    line.push_str("; capture damaged or cut short (stored what was read)");
                }
                if !n.problems.is_empty() {
                    let kinds: Vec<String> =
                        n.problems.iter().map(|(k, c)| format!("{k} {c}")).collect();
                    line.push_str(&format!("; bad input counted: {}", kinds.join(", ")));
                }
                let _ = writeln!(out, "{line}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: {} lines ({}), {} stored, {} already stored",
                    f.path, f.lines, f.format, f.stored, f.skipped_lines
                );
            }
        }
    }
    if s.flow_sets_without_template > 0 {
        let _ = writeln!(
            out,
            "{} NetFlow/IPFIX data sets never got their template and were not decoded \
             (their datagrams are stored)",
            s.flow_sets_without_template
        );
    }
    let range = match (s.first_seq, s.last_seq) {
        (Some(a), Some(b)) => format!(" as #{a}..#{b}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "stored {} events{range} in {:.2} s ({:.0} lines/s, {:.1} MB/s), durable",
        s.events, s.seconds, s.lines_per_sec, s.mb_per_sec
    );
    if s.parse_issues.events > 0 {
        let kinds: Vec<String> = s
            .parse_issues
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "parse issues in {} events (stored raw, searchable): {}",
            s.parse_issues.events,
            kinds.join(", ")
        );
    } else {
        let _ = writeln!(out, "parse issues: none");
    }
    if s.views_caught_up > 0 {
        let _ = writeln!(
            out,
            "views caught up with {} ledger records they had missed",
            s.views_caught_up
        );
    }
}

fn validate_tz(tz: &str) -> anyhow::Result<String> {
    if tz.starts_with('+') || tz.starts_with('-') {
        let ok = tz.len() == 6
            && tz.as_bytes()[3] == b':'
            && tz[1..3].parse::<u8>().is_ok_and(|h| h < 24)
            && tz[4..6].parse::<u8>().is_ok_and(|m| m < 60);
        if !ok {
            bail!("--tz {tz:?}: an offset must look like +02:00");
        }
    } else {
        jiff::tz::TimeZone::get(tz)
            .with_context(|| format!("--tz {tz:?} is not a known time zone"))?;
    }
    Ok(tz.to_string())
}

/// NetFlow input (capture or bare payload) by the format asked for, or sniffed.
fn flow_input(input: &Input, format: FormatArg) -> anyhow::Result<Option<FlowInput>> {
    match format {
        FormatArg::Pcap => Ok(Some(FlowInput::Capture)),
        FormatArg::Netflow => Ok(Some(FlowInput::Payload)),
        FormatArg::Auto => {
            // A payload file is one datagram: its header must fit what the file holds.
            Ok(FlowInput::sniff(&input.head(64)?))
        }
        _ => Ok(None),
    }
}

/// One input, ready to be read twice.
pub(super) struct Input {
    /// Name for humans and for origins: the canonical path, or `-`.
    pub name: String,
    /// Where the bytes are (stdin is spooled to the data directory's tmp/).
    path: PathBuf,
    gzip: bool,
    mtime: Option<jiff::Timestamp>,
    spooled: bool,
}

impl Input {
    /// The first `len` bytes (fewer when the input is shorter), decompressed when gzip.
    fn head(&self, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut head = vec![0u8; len];
        let mut reader = self.reader()?;
        let mut n = 0;
        while n < head.len() {
            let k = read_some(&mut *reader, &mut head[n..], &self.name)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        head.truncate(n);
        Ok(head)
    }

    fn open(name: &str, dd: &DataDir) -> anyhow::Result<Input> {
        let (path, display, spooled, mtime) = if name == "-" {
            std::fs::create_dir_all(dd.tmp())?;
            let spool = dd.tmp().join(format!("stdin-{}.spool", std::process::id()));
            let mut f =
                File::create(&spool).with_context(|| format!("creating {}", spool.display()))?;
            io::copy(&mut io::stdin().lock(), &mut f).context("reading standard input")?;
            f.sync_all()?;
            (spool, "-".to_string(), true, None)
        } else {
            let p = Path::new(name);
            let meta = std::fs::metadata(p).with_context(|| format!("cannot read {name}"))?;
            if meta.is_dir() {
                bail!("{name} is a directory, not a log file");
            }
            File::open(p).with_context(|| format!("cannot open {name}"))?;
            let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok());
            (
                p.to_path_buf(),
                canonical.display().to_string(),
                false,
                mtime,
            )
        };
        let mut magic = [0u8; 2];
        let n = File::open(&path)?.read(&mut magic)?;
        Ok(Input {
            name: display,
            path,
            gzip: n == 2 && magic == [0x1f, 0x8b],
            mtime,
            spooled,
        })
    }

    pub(super) fn reader(&self) -> anyhow::Result<Box<dyn BufRead>> {
        let f = File::open(&self.path).with_context(|| format!("cannot open {}", self.name))?;
        Ok(if self.gzip {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(BufReader::new(f)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, f))
        })
    }

    fn cleanup(self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn memchr_count(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Pass 1: content length, the longest already-stored prefix, and a sample for detection.
struct Survey {
    len: u64,
    /// Lines in the whole content (a last line without terminator counts).
    lines: u64,
    skip_bytes: u64,
    skip_lines: u64,
    sample: Vec<Vec<u8>>,
}

fn survey(pipeline: &Pipeline, input: &Input) -> anyhow::Result<Survey> {
    // Offsets worth hashing at, known before reading: candidate marks' lengths. The file's
    // length is unknown for gzip and stdin, so all marks for the path (or completed ones) are
    // candidates and those beyond the end simply never match.
    let candidates = pipeline.imports().candidates(&input.name, u64::MAX);
    let mut offsets: Vec<u64> = candidates.iter().map(|m| m.bytes).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let mut reader = input.reader()?;
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    let mut next = 0usize;
    let mut best: Option<(u64, u64)> = None;
    let mut sample = Vec::new();
    let mut partial = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut newlines = 0u64;
    let mut last_byte = b'\n';
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", input.name)),
        };
        let mut chunk = &buf[..n];
        newlines += memchr_count(chunk);
        last_byte = chunk[n - 1];
        if sample.len() < DETECT_LINES {
            let mut rest = chunk;
            while sample.len() < DETECT_LINES {
                match memchr_nl(rest) {
                    Some(i) => {
                        partial.extend_from_slice(&rest[..i]);
                        sample.push(std::mem::take(&mut partial));
                        rest = &rest[i + 1..];
                    }
                    None => {
                        if partial.len() < 64 * 1024 {
                            partial.extend_from_slice(&rest[..rest.len().min(64 * 1024)]);
                        }
                        break;
                    }
                }
            }
        }
        while !chunk.is_empty() {
            let until = offsets.get(next).copied();
            match until {
                Some(off) if off <= pos + chunk.len() as u64 => {
                    let take = (off - pos) as usize;
                    hasher.update(&chunk[..take]);
                    pos = off;
                    chunk = &chunk[take..];
                    let h = hex(hasher.finalize().as_bytes());
                    for m in candidates
                        .iter()
                        .filter(|m| m.bytes == off && m.prefix_hash == h)
                    {
                        if best.is_none_or(|(b, _)| m.bytes > b) {
                            best = Some((m.bytes, m.lines));
                        }
                    }
                    next += 1;
                }
                _ => {
                    hasher.update(chunk);
                    pos += chunk.len() as u64;
                    chunk = &[];
                }
            }
        }
    }
    if sample.len() < DETECT_LINES && !partial.is_empty() {
        sample.push(partial);
    }
    let (skip_bytes, skip_lines) = best.unwrap_or((0, 0));
    Ok(Survey {
        len: pos,
        lines: newlines + u64::from(last_byte != b'\n'),
        skip_bytes,
        skip_lines,
        sample,
    })
}

/// The sender `--sender-from-path` reads from a file's path: the path as given, else its
/// absolute form (a relative argument under the pattern's directory). Standard input has none.
fn sender_of(p: &model::sender_path::SenderPattern, name: &str) -> anyhow::Result<String> {
    if name != "-" {
        if let Some(ip) = p.sender(name) {
            return Ok(ip.to_string());
        }
        if let Ok(abs) = std::path::absolute(name)
            && let Some(ip) = abs.to_str().and_then(|a| p.sender(a))
        {
            return Ok(ip.to_string());
        }
    }
    bail!("its path does not name a sender address as --sender-from-path says")
}

fn ingest_one(
    pipeline: &mut Pipeline,
    input: &Input,
    format: FormatArg,
    hints: &DecodeHints,
    observer: Option<Observer>,
    sender: Option<&str>,
    on_receipt: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<FileSummary> {
    let survey = survey(pipeline, input)?;
    let format = match format {
        FormatArg::Auto => {
            let sample: Vec<&[u8]> = survey
                .sample
                .iter()
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect();
            decode::detect(&sample)
        }
        f => f.format(),
    };
    let observer = observer.unwrap_or_else(|| format.default_observer());
    let progress = progress_bar(survey.len, &input.name);
    let mut reader = input.reader()?;
    let mut prefix = PrefixHasher::default();
    let mut chunk = vec![0u8; 1 << 20];
    // Skip the prefix an earlier import already stored (its hash was checked in pass 1), but
    // hash it: new marks cover the whole prefix.
    let mut to_skip = survey.skip_bytes;
    while to_skip > 0 {
        let want = chunk
            .len()
            .min(usize::try_from(to_skip).unwrap_or(usize::MAX));
        let n = read_some(&mut reader, &mut chunk[..want], &input.name)?;
        if n == 0 {
            break;
        }
        prefix.feed(&chunk[..n]);
        to_skip -= n as u64;
    }
    let mut framer = Framer::starting_at(framing(format), survey.skip_bytes, survey.skip_lines + 1);
    let mut frames = Vec::new();
    let mut stored = 0u64;
    let mut batch: Vec<Envelope> = Vec::with_capacity(BATCH_RECORDS + 1);
    let mut batch_bytes = 0usize;
    let mut last_end;
    let mut received = Received::now();
    loop {
        let n = read_some(&mut reader, &mut chunk, &input.name)?;
        let more = n > 0;
        if more {
            prefix.feed(&chunk[..n]);
            framer.push(&chunk[..n], &mut frames);
        } else {
            framer.finish(&mut frames);
        }
        for frame in frames.drain(..) {
            batch_bytes += frame.raw.len();
            last_end = frame.end;
            batch.push(Envelope::Record(RecordEnvelope {
                received,
                observer,
                format,
                hints: hints.clone(),
                origin: match sender {
                    None => Origin::File {
                        path: input.name.clone(),
                        line: frame.line,
                    },
                    Some(s) => Origin::FileFromSender {
                        path: input.name.clone(),
                        line: frame.line,
                        sender: s.to_string(),
                    },
                },
                raw: frame.raw,
            }));
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                stored += flush(
                    pipeline,
                    &mut batch,
                    input,
                    last_end,
                    &mut prefix,
                    false,
                    received,
                    on_receipt,
                )?;
                batch_bytes = 0;
                progress.set_position(last_end);
                received = Received::now();
            }
        }
        if !more {
            break;
        }
    }
    // The last batch carries the completing mark, even when it holds no record (a file whose
    // tail was all separators still completes its import).
    let end = framer.framed_offset();
    if !batch.is_empty() || end > survey.skip_bytes {
        stored += flush(
            pipeline,
            &mut batch,
            input,
            end,
            &mut prefix,
            true,
            received,
            on_receipt,
        )?;
    }
    progress.finish_and_clear();
    Ok(FileSummary {
        path: input.name.clone(),
        format: format.name(),
        bytes: survey.len,
        lines: survey.lines,
        stored,
        skipped_lines: survey.skip_lines,
        skipped_bytes: survey.skip_bytes,
        netflow: None,
    })
}

/// Append `batch` closed by an import mark for the first `end` bytes; returns records stored.
#[allow(clippy::too_many_arguments)]
fn flush(
    pipeline: &mut Pipeline,
    batch: &mut Vec<Envelope>,
    input: &Input,
    end: u64,
    prefix: &mut PrefixHasher,
    complete: bool,
    received: Received,
    on_receipt: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let records = batch.len() as u64;
    let prefix_hash = prefix.hash_to(end);
    batch.push(Envelope::ImportMark(ImportMark {
        received,
        path: input.name.clone(),
        bytes: end,
        // A completed import counts a last line that had no terminator.
        lines: prefix.newlines + u64::from(complete && end > 0 && prefix.last_byte != b'\n'),
        prefix_hash,
        complete,
    }));
    let receipt = pipeline.append(std::mem::take(batch))?;
    let first = receipt.first.get();
    on_receipt(first, first + receipt.count - 1);
    Ok(records)
}

fn read_some(reader: &mut dyn BufRead, buf: &mut [u8], name: &str) -> anyhow::Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        }
    }
}

/// BLAKE3 of the content read so far, up to any offset at or behind the read position: the
/// bytes not yet covered are kept until a mark asks for them.
struct PrefixHasher {
    hasher: blake3::Hasher,
    /// Stream offset up to which `hasher` has been fed.
    pos: u64,
    /// Bytes from `pos` on, read but not yet hashed.
    unhashed: Vec<u8>,
    /// Line terminators in the first `pos` bytes: the mark's line count, so a resumed import
    /// numbers its lines on from there.
    newlines: u64,
    /// The last byte hashed (`\n` before any).
    last_byte: u8,
}

impl Default for PrefixHasher {
    fn default() -> Self {
        PrefixHasher {
            hasher: blake3::Hasher::new(),
            pos: 0,
            unhashed: Vec::new(),
            newlines: 0,
            last_byte: b'\n',
        }
    }
}

impl PrefixHasher {
    fn feed(&mut self, bytes: &[u8]) {
        self.unhashed.extend_from_slice(bytes);
    }

    fn hash_to(&mut self, end: u64) -> [u8; 32] {
        let n = usize::try_from(end.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(self.unhashed.len());
        self.hasher.update(&self.unhashed[..n]);
        self.newlines += memchr_count(&self.unhashed[..n]);
        if n > 0 {
            self.last_byte = self.unhashed[n - 1];
        }
        self.unhashed.drain(..n);
        self.pos += n as u64;
        *self.hasher.clone().finalize().as_bytes()
    }
}

fn progress_bar(len: u64, name: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(name.to_string());
    pb
}

/// One file of a `serve` spool directory (`[spool] dirs`), ingested as `pugmark ingest`
/// would (format detected, the same imports dedup: content already stored is skipped) under
/// the spool entry's observer. A file that is not text is refused (an error naming it).
pub(super) fn ingest_spool_file(
    pipeline: &mut Pipeline,
    dd: &DataDir,
    path: &Path,
    observer: Observer,
) -> anyhow::Result<FileSummary> {
    let name = path.to_string_lossy().into_owned();
    let input = Input::open(&name, dd)?;
    if let Some(why) = not_text(&input)? {
        input.cleanup();
        bail!("{why}");
    }
    let hints = DecodeHints {
        year: input
            .mtime
            .map_or(YearRule::FromReceived, YearRule::Reference),
        tz: None,
    };
    let stored = ingest_one(
        pipeline,
        &input,
        FormatArg::Auto,
        &hints,
        Some(observer),
        None,
        &mut |_, _| {},
    );
    input.cleanup();
    stored
}
