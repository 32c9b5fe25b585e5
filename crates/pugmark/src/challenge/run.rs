//! `pugmark challenge run`: ingest a challenge directory into a fresh store, answer every
//! question through `query::who::who` (the code behind `pugmark who`, called directly over the
//! fact store), and score the answers against the ground truth in `answers.json`.
//!
//! Ingest goes through the real `pugmark ingest` (this same executable, one invocation per
//! observer the manifest names, `--year` from the manifest), so the challenge measures what a
//! site would run. A question is right when the set of VMs matches and, for each, the
//! hypervisor, user id and name, project id and payload DNs are as expected, and the
//! ambiguity flag is set exactly when more than one VM matches. A question with a `port` asks
//! `who --ip PUBLIC --port P` (the NAT path narrowed to that public port, issue 12). A `report` question is also
//! answered through `query::report::report` (the code behind `pugmark report`), and is right
//! only when the report's sessions (the VM's own syslog attributed to it) and connections
//! (the hypervisor's lines of its address) are exactly the lines the ground truth lists.
//!
//! When the directory has `findings.json` (the problems `generate` planted, inject.rs), the run
//! also asks `pugmark check --json` (again this executable, as a site would run it) and scores
//! it: every planted problem must be reported (a finding of its kind naming its entities), and
//! every finding must be one of them — a finding that explains nothing is a false alarm, and
//! one naming a clean control doubly so.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use query::who::{AddrKind, NatFilter, WhoAnswer, WhoQuery, who_with};
use serde::Serialize;
use views::facts::FactStore;

use super::generate::list_key;
use super::inject::{CheckTruth, ExpectedFinding, FINDINGS};
use super::{ANSWERS, ExpectedMatch, MANIFEST, Manifest, Question};
use pipeline::Readers;
use pipeline::datadir::DataDir;

pub struct RunOptions {
    pub dir: PathBuf,
    pub data: Option<PathBuf>,
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Scored {
    id: String,
    kind: String,
    right: bool,
    ms: f64,
    /// For wrong answers: what was expected and what pugmark said, one line each.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    got: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    dir: String,
    questions: Vec<Scored>,
    right: usize,
    wrong: usize,
    events: u64,
    ingest_seconds: f64,
    who_p50_ms: f64,
    who_p99_ms: f64,
    /// The slowest `report` (who, then each VM's timeline around the moment), ms.
    report_max_ms: f64,
    /// `pugmark check` against the planted problems; absent for a directory without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckScore>,
}

/// A finding as `check --json` reports it (the parts scored).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct GotFinding {
    kind: String,
    time: String,
    entities: Vec<String>,
    summary: String,
}

#[derive(Debug, Serialize)]
struct CheckScore {
    planted: usize,
    found: usize,
    /// Planted problems no finding reported.
    missed: Vec<ExpectedFinding>,
    /// Findings that match no planted problem (false alarms).
    unexplained: Vec<GotFinding>,
    /// Of those, the ones naming a clean control.
    on_controls: usize,
    controls: usize,
    findings: usize,
    seconds: f64,
}

impl CheckScore {
    fn right(&self) -> bool {
        self.missed.is_empty() && self.unexplained.is_empty()
    }
}

/// Whether `got` reports `want`: same kind, and it names every entity `want` names.
fn reports(got: &GotFinding, want: &ExpectedFinding) -> bool {
    got.kind == want.kind && want.entities.iter().all(|e| got.entities.contains(e))
}

fn score_check(truth: &CheckTruth, got: Vec<GotFinding>, seconds: f64) -> CheckScore {
    let missed: Vec<ExpectedFinding> = truth
        .expect
        .iter()
        .filter(|w| !got.iter().any(|g| reports(g, w)))
        .cloned()
        .collect();
    let findings = got.len();
    let unexplained: Vec<GotFinding> = got
        .into_iter()
        .filter(|g| !truth.expect.iter().any(|w| reports(g, w)))
        .collect();
    let on_controls = unexplained
        .iter()
        .filter(|g| g.entities.iter().any(|e| truth.controls.contains(e)))
        .count();
    CheckScore {
        planted: truth.expect.len(),
        found: truth.expect.len() - missed.len(),
        missed,
        unexplained,
        on_controls,
        controls: truth.controls.len(),
        findings,
        seconds,
    }
}

/// Run `pugmark check --json` over the store; returns its findings and the seconds it took.
fn run_check(data: &Path) -> Result<(Vec<GotFinding>, f64)> {
    #[derive(serde::Deserialize)]
    struct Out {
        findings: Vec<GotFinding>,
    }
    let exe = std::env::current_exe().context("locating the pugmark executable")?;
    let t0 = Instant::now();
    let out = Command::new(exe)
        .arg("check")
        .arg("--data")
        .arg(data)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .context("running pugmark check")?;
    let seconds = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "check failed: {}",
            err.lines().next().unwrap_or("no message")
        );
    }
    let parsed: Out = serde_json::from_slice(&out.stdout).context("check's --json report")?;
    Ok((parsed.findings, seconds))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a challenge file", path.display()))
}

/// A fresh data directory: `--data` must not hold anything yet; the default under DIR is ours
/// and is emptied first.
fn fresh_store(dir: &Path, data: Option<&Path>) -> Result<PathBuf> {
    match data {
        Some(d) => {
            if d.try_exists()? && fs::read_dir(d)?.next().is_some() {
                bail!(
                    "--data {} is not empty; the challenge needs a fresh store",
                    d.display()
                );
            }
            Ok(d.to_path_buf())
        }
        None => {
            let d = dir.join("run-store");
            if d.try_exists()? {
                fs::remove_dir_all(&d).with_context(|| format!("emptying {}", d.display()))?;
            }
            Ok(d)
        }
    }
}

/// Run `pugmark ingest --json` on `files`; returns the events it stored.
fn ingest(data: &Path, year: i16, observer: Option<&str>, files: &[PathBuf]) -> Result<u64> {
    let exe = std::env::current_exe().context("locating the pugmark executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("ingest")
        .arg("--data")
        .arg(data)
        .arg("--year")
        .arg(year.to_string())
        .arg("--json");
    if let Some(o) = observer {
        cmd.arg("--observer").arg(o);
    }
    let out = cmd
        .args(files)
        .stdin(Stdio::null())
        .output()
        .context("running pugmark ingest")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "ingest failed: {}",
            err.lines().next().unwrap_or("no message")
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ingest's --json summary")?;
    Ok(summary["events"].as_u64().unwrap_or(0))
}

fn got_matches(a: &WhoAnswer) -> Vec<ExpectedMatch> {
    let mut v: Vec<ExpectedMatch> = a
        .matches
        .iter()
        .map(|m| {
            let mut dns: Vec<String> = m
                .payload_users
                .iter()
                .filter_map(|p| p.dn.clone())
                .collect();
            dns.sort();
            dns.dedup();
            let mut tokens: Vec<String> = m
                .payload_users
                .iter()
                .filter_map(|p| match (&p.issuer, &p.subject) {
                    (Some(i), Some(s)) => Some(format!("{i} {s}")),
                    _ => None,
                })
                .collect();
            tokens.sort();
            tokens.dedup();
            ExpectedMatch {
                vm_uuid: m.vm.uuid.clone(),
                hypervisor: m.vm.hypervisor.clone(),
                user_id: m.owner.user_id.clone(),
                user_name: m.owner.user_name.clone(),
                project_id: m.owner.project_id.clone(),
                payload_dns: dns,
                payload_tokens: tokens,
            }
        })
        .collect();
    v.sort();
    v
}

fn brief(ms: &[ExpectedMatch], ambiguous: bool) -> String {
    if ms.is_empty() {
        return "no match".into();
    }
    let list: Vec<String> = ms.iter().map(ExpectedMatch::brief).collect();
    format!(
        "{}{}",
        if ambiguous { "AMBIGUOUS " } else { "" },
        list.join(" | ")
    )
}

fn query_of(q: &Question) -> Result<WhoQuery> {
    let at: Timestamp =
        q.at.parse()
            .with_context(|| format!("question {}: {:?} is not an RFC 3339 time", q.id, q.at))?;
    let (kind, value) = match (&q.ip, &q.host, &q.mac) {
        (Some(ip), _, _) => {
            let ip: std::net::IpAddr = ip
                .parse()
                .with_context(|| format!("question {}: {ip:?} is not an IP address", q.id))?;
            (AddrKind::Ip, ip.to_string())
        }
        (_, Some(h), _) => (AddrKind::Host, h.clone()),
        (_, _, Some(m)) => (AddrKind::Mac, m.to_lowercase()),
        _ => bail!("question {} names no ip, host or mac", q.id),
    };
    if q.kind != "who" && q.kind != "report" {
        bail!(
            "question {}: kind {:?} is not supported (who, report)",
            q.id,
            q.kind
        );
    }
    Ok(WhoQuery { kind, value, at })
}

/// A report list's entries as the ground truth names them ([`list_key`]): the second each is
/// placed at and what it says, without the `[reported …]` note a skewed clock adds.
fn listed(entries: &[query::timeline::Entry]) -> Vec<String> {
    let mut v: Vec<String> = entries
        .iter()
        .map(|e| {
            let t = e.time.parse::<Timestamp>().map_or(0, |t| t.as_second());
            let said = e
                .summary
                .rfind(" [reported ")
                .map_or(e.summary.as_str(), |i| &e.summary[..i]);
            list_key(t, said)
        })
        .collect();
    v.sort();
    v
}

/// What differs between two sorted lists, in one line.
fn list_diff(what: &str, want: &[String], got: &[String]) -> Option<String> {
    if want == got {
        return None;
    }
    let missing = want.iter().find(|w| got.binary_search(w).is_err());
    let extra = got.iter().find(|g| want.binary_search(g).is_err());
    Some(format!(
        "{what}: {} expected, {} listed{}{}",
        want.len(),
        got.len(),
        missing.map_or(String::new(), |m| format!("; missing {m:?}")),
        extra.map_or(String::new(), |x| format!("; not expected {x:?}"))
    ))
}

/// Score a report question's lists: its one VM's sessions and connections, exactly.
fn score_report(q: &Question, r: &query::report::Report) -> Option<String> {
    let (sessions, connections) = match r.vms.as_slice() {
        [one] => (listed(&one.sessions), listed(&one.connections)),
        _ => (Vec::new(), Vec::new()),
    };
    let want_s = q.sessions.clone().unwrap_or_default();
    let want_c = q.connections.clone().unwrap_or_default();
    let diffs: Vec<String> = [
        list_diff("sessions", &want_s, &sessions),
        list_diff("connections", &want_c, &connections),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(opts: RunOptions) -> Result<ExitCode> {
    let manifest: Manifest = read_json(&opts.dir.join(MANIFEST))?;
    let questions: Vec<Question> = read_json(&opts.dir.join(ANSWERS))?;
    let data = fresh_store(&opts.dir, opts.data.as_deref())?;

    // One ingest per observer, in manifest order of first appearance.
    let started = Instant::now();
    let mut events = 0;
    let mut groups: Vec<(Option<String>, Vec<PathBuf>)> = Vec::new();
    for f in &manifest.files {
        let path = opts.dir.join(&f.path);
        match groups.iter_mut().find(|g| g.0 == f.observer) {
            Some(g) => g.1.push(path),
            None => groups.push((f.observer.clone(), vec![path])),
        }
    }
    for (observer, files) in &groups {
        events += ingest(&data, manifest.year, observer.as_deref(), files)?;
    }
    let ingest_seconds = started.elapsed().as_secs_f64();

    let dd = DataDir::open(&data, false)?;
    let store = FactStore::open(dd.facts())
        .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
    let mut scored = Vec::with_capacity(questions.len());
    let mut readers = None;
    let mut report_max_ms: f64 = 0.0;
    for q in &questions {
        let wq = query_of(q)?;
        let t0 = Instant::now();
        let filter = NatFilter {
            port: q.port,
            ..NatFilter::default()
        };
        let answer =
            who_with(&mut &store, &wq, &filter).with_context(|| format!("question {}", q.id))?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let got = got_matches(&answer);
        let got_ambiguous = answer.matches.iter().any(|m| m.ambiguous);
        let mut want = q.expect.matches.clone();
        want.sort();
        let mut right = got == want && got_ambiguous == q.expect.ambiguous;
        let mut expected = (!right).then(|| brief(&want, q.expect.ambiguous));
        let mut said = (!right).then(|| brief(&got, got_ambiguous));
        if q.kind == "report" {
            if readers.is_none() {
                readers = Some(Readers::open(&dd)?);
            }
            if let Some(r) = readers.as_mut() {
                let t0 = Instant::now();
                let rep = query::report::report(&r.index, &r.facts, &mut r.fetch, &wq)
                    .with_context(|| format!("question {}: report", q.id))?;
                report_max_ms = report_max_ms.max(t0.elapsed().as_secs_f64() * 1000.0);
                if let Some(diff) = score_report(q, &rep) {
                    right = false;
                    expected.get_or_insert_with(|| brief(&want, q.expect.ambiguous));
                    said = Some(match said {
                        Some(s) => format!("{s}; {diff}"),
                        None => diff,
                    });
                }
            }
        }
        scored.push(Scored {
            id: q.id.clone(),
            kind: q.kind.clone(),
            right,
            ms,
            expected,
            got: said,
        });
    }
    let findings_path = opts.dir.join(FINDINGS);
    let check = if findings_path.try_exists()? {
        let truth: CheckTruth = read_json(&findings_path)?;
        let (got, seconds) = run_check(&data)?;
        Some(score_check(&truth, got, seconds))
    } else {
        None
    };
    let mut times: Vec<f64> = scored.iter().map(|s| s.ms).collect();
    times.sort_by(f64::total_cmp);
    let right = scored.iter().filter(|s| s.right).count();
    let report = Report {
        dir: opts.dir.display().to_string(),
        right,
        wrong: scored.len() - right,
        events,
        ingest_seconds,
        who_p50_ms: percentile(&times, 50.0),
        who_p99_ms: percentile(&times, 99.0),
        report_max_ms,
        questions: scored,
        check,
    };
    let mut out = io::stdout().lock();
    if opts.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{:<6} {:<5} {:<6} {:>9}", "id", "kind", "result", "ms")?;
        for s in &report.questions {
            writeln!(
                out,
                "{:<6} {:<5} {:<6} {:>9.3}",
                s.id,
                s.kind,
                if s.right { "right" } else { "WRONG" },
                s.ms
            )?;
            if let (Some(e), Some(g)) = (&s.expected, &s.got) {
                writeln!(out, "       expected {e}; got {g}")?;
            }
        }
        writeln!(
            out,
            "challenge: {}/{} right; {} events ingested in {:.2} s; who p50 {:.3} ms, p99 {:.3} ms; slowest report {:.1} ms",
            report.right,
            report.questions.len(),
            report.events,
            report.ingest_seconds,
            report.who_p50_ms,
            report.who_p99_ms,
            report.report_max_ms
        )?;
        if let Some(c) = &report.check {
            for m in &c.missed {
                writeln!(
                    out,
                    "check  MISSED {} [{}]: {}",
                    m.kind,
                    m.entities.join(", "),
                    m.why
                )?;
            }
            for g in &c.unexplained {
                writeln!(out, "check  FALSE  {} {}: {}", g.time, g.kind, g.summary)?;
            }
            writeln!(
                out,
                "check: {}/{} planted problems found; {} findings explain nothing ({} name one of {} clean controls); {} findings in {:.2} s",
                c.found,
                c.planted,
                c.unexplained.len(),
                c.on_controls,
                c.controls,
                c.findings,
                c.seconds
            )?;
        }
    }
    if let Some(c) = report.check.as_ref().filter(|c| !c.right()) {
        eprintln!(
            "pugmark: challenge: check missed {} planted problems and raised {} false alarms",
            c.missed.len(),
            c.unexplained.len()
        );
        if report.wrong == 0 {
            return Ok(ExitCode::FAILURE);
        }
    }
    if report.wrong > 0 {
        let ids: Vec<&str> = report
            .questions
            .iter()
            .filter(|s| !s.right)
            .map(|s| s.id.as_str())
            .collect();
        eprintln!(
            "pugmark: challenge: {} wrong: {}",
            report.wrong,
            ids.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
