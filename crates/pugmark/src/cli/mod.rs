//! Command-line interface: the verbs, their flags, and dispatch. One file per verb.
//!
//! Flags and `--json` shapes spelled out in issues are contracts (README "Contracts"): extend,
//! never rename.

mod api_token;
mod audit;
mod autohold;
mod case;
mod challenge;
pub(crate) mod check;
mod flows;
pub(crate) mod hunt;
mod ingest;
mod ingest_flow;
mod keys;
mod man;
pub(crate) mod migrate;
mod proof;
pub(crate) mod quarantine;
mod reindex;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod search;
pub(crate) mod serve;
mod site_config;
mod spool;
pub(crate) mod timeline;
mod token;
mod ui;
mod verify;
pub(crate) mod who;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Traceability for cloud and grid sites: who did what, when, and where";
const LONG_ABOUT: &str = "pugmark keeps every log line a site sends it as tamper-evident evidence \
(an append-only, hash-chained, signed ledger) and answers questions over it in milliseconds.";

#[derive(Debug, Parser)]
#[command(name = "pugmark", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Options every verb takes.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Read the checkpoint signing key (64 hex digits) from this open file descriptor instead
    /// of DATA/keys (e.g. `--key-fd 3 3</run/secrets/pugmark.key`, or a memfd from a secrets
    /// agent). It must be a file that can be read again from the start (`/proc/self/fd/N` is
    /// reopened at each ledger open), not a pipe.
    #[arg(long, global = true, env = "PUGMARK_KEY_FD")]
    pub key_fd: Option<u32>,
}

/// Where the data lives; shared by every verb.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Data directory: the ledger (the evidence) and the views derived from it.
    #[arg(
        long,
        env = "PUGMARK_DATA",
        default_value = "./pugmark-data",
        global = true
    )]
    pub data: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import log files into the ledger and index them (format detected per file).
    Ingest(ingest::IngestArgs),
    /// Search the evidence.
    Search(search::SearchArgs),
    /// Check every ledger segment, the hash chain and the signed checkpoints.
    Verify(verify::VerifyArgs),
    /// Rebuild every view (search index, fact store, imports) from the ledger.
    Reindex(reindex::ReindexArgs),
    /// Which VM held an IP, MAC or hostname at a moment: owner, payload users, hypervisor.
    Who(who::WhoArgs),
    /// Everything about a VM, IP, hostname or user, all sources merged in time order.
    Timeline(timeline::TimelineArgs),
    /// The incident answer for an IP or hostname at a moment: who, what, when, where.
    Report(report::ReportArgs),
    /// Search indicators of compromise (plain lists, MISP, STIX 2.1) over flows, connections
    /// and logs; each hit answered like `who`.
    Hunt(hunt::HuntArgs),
    /// nfdump-like flows from the columnar flow store: filter (--src, --dst, --ip, --port,
    /// --proto, --from/--to, --exporter) and top-N (--top N --by srcip|dstip|port|proto|vm|owner
    /// --order bytes|packets|flows).
    Flows(flows::FlowsArgs),
    /// Run the live collector: syslog UDP/TCP/TLS, RELP and HTTP into the ledger.
    Serve(serve::ServeArgs),
    /// What a running `pugmark serve` has received, per listener and per sender.
    Status(serve::StatusArgs),
    /// Make a bearer token for `POST /api/v1/events` and the [[senders.map]] entry that
    /// maps it to an observer (the config keeps only its SHA-256).
    Token(token::TokenArgs),
    /// Write a site's recommended configuration: VM images (cloud-init, the instance UUID in
    /// every message), hypervisors (nftables/iptables LOG, TLS forwarding), the central
    /// logger, OpenStack, OpenNebula, HTCondor feeds and `serve` itself.
    SiteConfig(site_config::SiteConfigArgs),
    /// The traceability challenge: generate a site day with ground truth, or run and score one.
    Challenge(challenge::ChallengeArgs),
    /// Hold the sources against each other: forged hostnames, silent VMs, unknown hosts,
    /// clock trouble, orphan payloads, conflicts.
    Check(check::CheckArgs),
    /// Write the man pages (pugmark.1, pugmark-VERB.1) into a directory; for packaging.
    #[command(hide = true)]
    Man(man::ManArgs),
    /// Print a shell completion script (bash, zsh, fish); for packaging.
    #[command(hide = true)]
    Completions(man::CompletionsArgs),
    /// Run a witness for other sites' ledgers (C2SP tlog-witness): it cosigns each new
    /// checkpoint only if it extends the last one it saw.
    Witness(witness::WitnessArgs),
    /// Check the proofs a report carries, offline: record bytes in the signed (and
    /// cosigned) tree.
    #[command(subcommand)]
    Proof(proof::ProofCommand),
    /// Turn a version-1 data directory into version 2 (Merkle tree, signed checkpoint
    /// notes), keeping every record's bytes: the old chain is verified first and both heads
    /// go into a signed migration record. On a ledger in format 2, rewrite its segments in
    /// ledger format 3 (smaller; same records, chain, checkpoints and proofs), crash-safely
    /// and resumably.
    Migrate(migrate::MigrateArgs),
    /// The ledger's checkpoint signing key: create it (optionally outside the data directory)
    /// or show where it is.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Remove record payloads older than a policy (`--keep 180d`), segment by segment,
    /// keeping their leaf hashes and signing a record of each removal; `hold` / `release`
    /// keep records under investigation.
    Retention(retention::RetentionArgs),
    /// VM disks kept as evidence after the VM is gone: capture (hypervisor hooks), hold,
    /// release, list, show, export with a custody sheet, verify, restore, expire, policy,
    /// inspect. Every step is a custody record in the ledger.
    Quarantine(quarantine::QuarantineArgs),
    /// The web UI (/ui/) and the query API on a data directory alone: GET /api/v1/{search,who,
    /// timeline,report,check,hunt,audit}, every query and page view audited into the ledger.
    Ui(ui::UiArgs),
    /// Local bearer tokens for the query API (scripts): create (the secret is shown once),
    /// list, revoke.
    ApiToken(api_token::ApiTokenArgs),
    /// The query API's audit trail: who asked what, with which role, when, how many results.
    Audit(audit::AuditArgs),
    /// Cases (like Timesketch's sketch): saved questions, starred and annotated records,
    /// shared with users or VOs, exported as the incident report; every change a ledger
    /// record.
    Case(case::CaseArgs),
}

impl Cli {
    /// The command line, parsed. `pugmark who …` builds only its own verb's part of the
    /// command tree ([`WhoOnly`]): clap builds every verb's arguments before parsing, ~0.2 ms
    /// of a 5 ms `who`, the verb scripts run once per complaint. The arguments are the same
    /// `who::WhoArgs` under the same names; the test `who_alone_parses_and_helps_as_the_whole`
    /// holds its help and parse to the whole tree's. Anything else, `--key-fd` before the
    /// verb included, goes through the whole tree.
    pub fn parse_args() -> Cli {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if argv.get(1).is_some_and(|a| a == "who") {
            let w = WhoOnly::parse_from(argv);
            let WhoOnlyCommand::Who(a) = w.command;
            return Cli {
                command: Command::Who(a),
                key: w.key,
            };
        }
        Cli::parse_from(argv)
    }
}

/// `pugmark who` alone (see [`Cli::parse_args`]): the same attributes and options as [`Cli`].
#[derive(Debug, Parser)]
#[command(name = "pugmark", version, about = ABOUT, long_about = LONG_ABOUT)]
struct WhoOnly {
    #[command(subcommand)]
    command: WhoOnlyCommand,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, Subcommand)]
enum WhoOnlyCommand {
    /// Which VM held an IP, MAC or hostname at a moment: owner, payload users, hypervisor.
    Who(who::WhoArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(fd) = cli.key.key_fd {
        pipeline::datadir::set_key_override(PathBuf::from(format!("/proc/self/fd/{fd}")));
    }
    if cli.command.runs_the_pipeline() {
        heap::use_mimalloc();
    }
    match cli.command {
        Command::Ingest(a) => ingest::run(a),
        Command::Search(a) => search::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Reindex(a) => reindex::run(a),
        Command::Who(a) => who::run(a),
        Command::Timeline(a) => timeline::run(a),
        Command::Report(a) => report::run(a),
        Command::Hunt(a) => hunt::run(a),
        Command::Flows(a) => flows::run(a),
        Command::Challenge(a) => challenge::run(a),
        Command::Check(a) => check::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Status(a) => serve::status(a),
        Command::Token(a) => token::run(a),
        Command::Man(a) => man::man(a),
        Command::Completions(a) => man::completions(a),
        Command::SiteConfig(a) => site_config::run(a),
        Command::Witness(a) => witness::run(a),
        Command::Proof(a) => proof::run(a),
        Command::Migrate(a) => migrate::run(a),
        Command::Keys(a) => keys::run(a),
        Command::Retention(a) => retention::run(a),
        Command::Quarantine(a) => quarantine::run(a),
        Command::Ui(a) => ui::run(a),
        Command::ApiToken(a) => api_token::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Case(a) => case::run(a),
    }
}

impl Command {
    /// The verbs that run the ingest pipeline (decoders, ledger writer and indexers in
    /// threads, allocating per line): they allocate with mimalloc, the others with the
    /// system's allocator, whose set-up a short query process does not pay for (crates/heap).
    fn runs_the_pipeline(&self) -> bool {
        matches!(
            self,
            Command::Ingest(_)
                | Command::Reindex(_)
                | Command::Serve(_)
                | Command::Challenge(_)
                | Command::Migrate(_)
                | Command::Retention(_)
        )
    }
}

/// Parse an RFC 3339 time for `--from` / `--to` / `--at`.
pub fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse::<jiff::Timestamp>()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-10-14T08:00:00Z ({e})"))
}

/// Writes one line of text output with the control characters of record text shown escaped
/// ([`model::escape_controls`]): a VM's log line must not clear, retitle or overwrite the
/// analyst's terminal, nor print a line of its own. Every text renderer writes through this;
/// `--json` does not (serde writes JSON escapes).
pub(crate) fn text_line(out: &mut impl std::io::Write, line: &str) -> std::io::Result<()> {
    out.write_all(model::escape_controls(line).as_bytes())?;
    out.write_all(b"\n")
}

/// A `who` or `check` evidence line: the record as cited (`#seq`; a derived flow `#D/F.R`,
/// looked up in the flow store of `data`), its observer, time, source and summary.
pub(crate) fn evidence_line(data: &std::path::Path, e: &query::who::EvidenceJson) -> String {
    format!(
        "  evidence {} [{}] {} {}: {}",
        crate::proofs::cite_text(data, e.seq),
        e.observer,
        e.time,
        e.source,
        e.summary
    )
}

#[cfg(test)]
mod who_only_tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn who_alone_parses_and_helps_as_the_whole() {
        let mut whole = Cli::command();
        let mut alone = WhoOnly::command();
        let (Some(w), Some(a)) = (
            whole
                .find_subcommand_mut("who")
                .map(|c| c.render_long_help().to_string()),
            alone
                .find_subcommand_mut("who")
                .map(|c| c.render_long_help().to_string()),
        ) else {
            panic!("no who subcommand");
        };
        assert_eq!(w, a);
        for argv in [
            &[
                "pugmark",
                "who",
                "--ip",
                "203.0.113.4",
                "--port",
                "1293",
                "--at",
                "2026-10-14T00:16:41Z",
                "--json",
            ][..],
            &[
                "pugmark",
                "who",
                "--data",
                "/d",
                "--mac",
                "fa:16:3e:00:00:01",
                "--at",
                "2026-10-14T00:16:41Z",
                "--key-fd",
                "3",
            ][..],
            &[
                "pugmark",
                "who",
                "--host",
                "vm-1",
                "--at",
                "2026-10-14T00:16:41Z",
                "--peer",
                "192.0.2.1:443",
            ][..],
        ] {
            let whole = Cli::try_parse_from(argv).map(|c| format!("{c:?}"));
            let alone = WhoOnly::try_parse_from(argv).map(|w| {
                let WhoOnlyCommand::Who(a) = w.command;
                format!(
                    "{:?}",
                    Cli {
                        command: Command::Who(a),
                        key: w.key
                    }
                )
            });
            assert_eq!(
                whole.map_err(|e| e.to_string()),
                alone.map_err(|e| e.to_string())
            );
        }
        // A bad flag is refused with the same message.
        let bad = [
            "pugmark",
            "who",
            "--ip",
            "not-an-ip",
            "--at",
            "2026-10-14T00:16:41Z",
        ];
        assert_eq!(
            Cli::try_parse_from(bad)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            WhoOnly::try_parse_from(bad)
                .map(|_| ())
                .map_err(|e| e.to_string())
        );
    }
}
