//! `pugmark who`: which VM held an IP, MAC or hostname at a moment, its owner, the payload
//! users the VO names, its hypervisor — with the evidence. The answer comes from
//! `query::who` over the fact store; this file only parses flags and prints.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use jiff::Timestamp;
use query::who::{AddrKind, NatFilter, WhoAnswer, WhoQuery, who_with};
use views::facts::FactStore;

use crate::cli::{DataArgs, parse_time};
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("address").required(true).args(["ip", "host", "mac"])))]
pub struct WhoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// An IP address (v4 or v6).
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// A hostname as the cloud assigned it to a VM.
    #[arg(long)]
    pub host: Option<String>,
    /// A MAC address (any case).
    #[arg(long)]
    pub mac: Option<String>,
    /// With --ip: the public port of a NAT translation (a router's SNAT address, a floating
    /// IP): names the VM behind that connection.
    #[arg(long, requires = "ip")]
    pub port: Option<u16>,
    /// With --ip: the outside peer of the connection, IP or IP:PORT (an IPv6 address with a
    /// port in brackets), when many connections share the public port.
    #[arg(long, requires = "ip", value_parser = parse_peer)]
    pub peer: Option<(std::net::IpAddr, Option<u16>)>,
    /// With --ip: the connection's protocol (tcp, udp, icmp, … or its number): a NAT may give
    /// the same public port to a TCP and a UDP connection at the same time.
    #[arg(long, requires = "ip", value_parser = parse_proto)]
    pub proto: Option<String>,
    /// The moment (RFC 3339, e.g. 2026-10-14T10:05:00Z).
    #[arg(long, value_parser = parse_time)]
    pub at: Timestamp,
    /// JSON output (the contract: query, matches[vm, owner, payload_users, lease, evidence,
    /// ambiguous, conflicts, contain]; README "Contracts" and "Containment").
    #[arg(long)]
    pub json: bool,
    /// Hold every VM this names in the quarantine (issue 13): kept until an operator
    /// releases it, its disks captured later included.
    #[arg(long)]
    pub hold: bool,
    /// With --hold: the quarantine's config (default: the one named by
    /// DATA/quarantine.config).
    #[arg(long, env = "PUGMARK_QUARANTINE_CONFIG")]
    pub quarantine_config: Option<std::path::PathBuf>,
}

/// `--proto`: a protocol name or number, normalised the way the decoders write it (conntrack
/// and netfilter names in lower case; the numbers they know by name as that name).
fn parse_proto(s: &str) -> Result<String, String> {
    const NAMES: [(u8, &str); 11] = [
        (1, "icmp"),
        (2, "igmp"),
        (6, "tcp"),
        (17, "udp"),
        (33, "dccp"),
        (47, "gre"),
        (50, "esp"),
        (51, "ah"),
        (58, "icmpv6"),
        (132, "sctp"),
        (136, "udplite"),
    ];
    let s = s.trim().to_ascii_lowercase();
    let s = if s == "ipv6-icmp" {
        "icmpv6".to_string()
    } else {
        s
    };
    if let Ok(n) = s.parse::<u8>() {
        return Ok(NAMES
            .iter()
            .find(|(k, _)| *k == n)
            .map_or_else(|| n.to_string(), |(_, name)| (*name).to_string()));
    }
    if NAMES.iter().any(|(_, name)| *name == s) {
        return Ok(s);
    }
    let known: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
    Err(format!(
        "unknown protocol {s:?}: one of {} or a number",
        known.join(", ")
    ))
}

/// `--peer`: `IP`, `IPv4:PORT` or `[IPv6]:PORT`.
fn parse_peer(s: &str) -> Result<(std::net::IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok((ip, None));
    }
    s.parse::<std::net::SocketAddr>()
        .map(|a| (a.ip(), Some(a.port())))
        .map_err(|_| format!("{s:?} is not IP, IP:PORT or [IPv6]:PORT"))
}

/// An answer: the typed answer, its `--json` document (views noted), the ledger reader its
/// views check used (for the answer's proofs) and the fact store it read.
type Answered = (
    WhoAnswer,
    serde_json::Value,
    DataDir,
    ledger::LedgerReader,
    FactStore,
);

/// The answer the CLI prints.
fn answer_with_reader(args: &WhoArgs) -> anyhow::Result<Answered> {
    let dd = DataDir::open(&args.data.data, false)?;
    // A missing, empty or foreign fact store would answer "no VM": refused instead.
    let has_store = dd.facts().join("facts.sqlite").is_file();
    let store = has_store
        .then(|| {
            FactStore::open(dd.facts())
                .with_context(|| format!("opening fact store in {}", dd.facts().display()))
        })
        .transpose()?;
    answer_in(args, dd, store)
}

/// The answer from `store`, a fact store connection open on `dd`'s `facts.sqlite` (`None`:
/// the data directory has none, which is refused), handed back with its read snapshot still
/// open: the CLI's, and the query API's (`crate::api`), which keeps connections between
/// requests. The caller adds the integrity block through the returned ledger reader
/// ([`crate::proofs::add_integrity_with`]), after any scoping, so it cites only what is shown
/// and the ledger is opened once.
pub(crate) fn answer_in(
    args: &WhoArgs,
    dd: DataDir,
    store: Option<FactStore>,
) -> anyhow::Result<Answered> {
    let (kind, value) = subject(args)?;
    if let Some(store) = &store {
        store
            .read_snapshot()
            .with_context(|| format!("reading fact store in {}", dd.facts().display()))?;
    }
    // One ledger reader for the views check and the answer's proofs.
    let ledger_dir = dd.ledger();
    let reader = ledger::LedgerReader::open(&ledger_dir)
        .with_context(|| format!("opening ledger in {}", ledger_dir.display()));
    let (views, reader) = pipeline::viewcheck::check_facts_with(&dd, store.as_ref(), reader?)?;
    let views = views.require("who")?;
    let Some(store) = store else {
        bail!("no fact store in {}", dd.facts().display());
    };
    let filter = NatFilter {
        port: args.port,
        peer_ip: args.peer.map(|(ip, _)| ip.to_string()),
        peer_port: args.peer.and_then(|(_, p)| p),
        proto: args.proto.clone(),
    };
    let answer = who_with(
        &mut &store,
        &WhoQuery {
            kind,
            value,
            at: args.at,
        },
        &filter,
    )?;
    let v = views.annotate(&answer)?;
    Ok((answer, v, dd, reader, store))
}

fn subject(args: &WhoArgs) -> anyhow::Result<(AddrKind, String)> {
    Ok(match (&args.ip, &args.host, &args.mac) {
        (Some(ip), _, _) => (AddrKind::Ip, ip.to_string()),
        (_, Some(h), _) => (AddrKind::Host, h.clone()),
        (_, _, Some(m)) => {
            let ok = m.split(':').count() == 6
                && m.split(':')
                    .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
            if !ok {
                bail!("--mac {m:?} is not a MAC address such as fa:16:3e:4c:2c:30");
            }
            (AddrKind::Mac, m.to_lowercase())
        }
        _ => bail!("one of --ip, --host or --mac is required"),
    })
}

pub fn run(args: WhoArgs) -> anyhow::Result<ExitCode> {
    let (answer, mut v, dd, reader, store) = answer_with_reader(&args)?;
    // Left open for the process's exit to close: closing a SQLite connection that may be the
    // file's last runs WAL upkeep a reader has no need of (~3 % of a `who` process). A reader
    // that exits without closing is what SQLite is built to survive, as after a crash.
    std::mem::forget(store);
    let value = answer.query.value.clone();
    if args.hold {
        hold(&args, &answer, &value)?;
    }
    // Buffered: the answer leaves in one write (a line-buffered stdout made a pretty-printed
    // answer with its proofs ~250 writes, a tenth of a `who` process).
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if args.json {
        // The cited evidence with its bytes and inclusion proofs (issue 11).
        crate::proofs::add_integrity_with(&dd, &mut v, Some(reader))?;
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let code = print_text(&args, &answer, &value, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// The text answer.
fn print_text(
    args: &WhoArgs,
    answer: &WhoAnswer,
    value: &str,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let mut out = out;
    for u in &answer.unresolved {
        let line = match (&u.floating_ip_id, &u.port_id) {
            (Some(fip), Some(port)) => format!(
                "UNKNOWN: floating IP {value} ({fip}) was associated to port {port} (fixed IP {}) from {} to {}, but no VM: {}",
                u.fixed_ip.clone().unwrap_or_else(|| "unknown".into()),
                u.from,
                u.to.clone().unwrap_or_else(|| "now".into()),
                u.reason
            ),
            _ if u.kind == "nat" => format!(
                "UNKNOWN (nat) from {} to {}: {}",
                u.from,
                u.to.clone().unwrap_or_else(|| "open".into()),
                u.reason
            ),
            _ => format!("UNKNOWN ({}) since {}: {}", u.kind, u.from, u.reason),
        };
        super::text_line(&mut out, &line)?;
        for e in &u.evidence {
            super::text_line(&mut out, &super::evidence_line(&args.data.data, e))?;
        }
    }
    if answer.matches.is_empty() {
        super::text_line(&mut out, &format!("no VM held {value} at {}", args.at))?;
        return Ok(ExitCode::SUCCESS);
    }
    if answer.matches.len() > 1 {
        super::text_line(
            &mut out,
            &format!(
                "AMBIGUOUS: {} VMs held {value} at {}; all are listed",
                answer.matches.len(),
                args.at
            ),
        )?;
    }
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    for m in &answer.matches {
        super::text_line(
            &mut out,
            &format!(
                "VM {} ({}, hostname {}) on hypervisor {}, image {}",
                m.vm.uuid,
                or_unknown(&m.vm.name),
                or_unknown(&m.vm.hostname),
                or_unknown(&m.vm.hypervisor),
                or_unknown(&m.vm.image)
            ),
        )?;
        super::text_line(
            &mut out,
            &format!(
                "  owner: user {} ({}), project {} ({})",
                or_unknown(&m.owner.user_id),
                or_unknown(&m.owner.user_name),
                or_unknown(&m.owner.project_id),
                or_unknown(&m.owner.project_name)
            ),
        )?;
        if let Some(f) = &m.floating_ip {
            super::text_line(
                &mut out,
                &format!(
                    "  through floating IP {} on port {} (fixed IP {})",
                    f.id,
                    f.port_id,
                    f.fixed_ip.clone().unwrap_or_else(|| "unknown".into())
                ),
            )?;
        }
        if let Some(b) = &m.behind_router {
            super::text_line(
                &mut out,
                &format!(
                    "  CANDIDATE behind router {} (gateway {}): port {} with {} in subnet {} — \
                     no NAT record says which VM behind the router it was",
                    b.router_id,
                    b.gateway_ip,
                    b.port_id,
                    b.inside_ip,
                    b.subnet_ids.join(", ")
                ),
            )?;
        }
        if let Some(n) = &m.nat {
            let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
            super::text_line(
                &mut out,
                &format!(
                    "  through {} {} {}{} -> inside {}{} (peer {}{}) from {} to {} ({}), reported by {} {}{}",
                    n.kind,
                    n.proto.clone().unwrap_or_else(|| "?".into()),
                    n.public_ip,
                    port(n.public_port),
                    n.inside_ip,
                    port(n.inside_port),
                    n.peer_ip.clone().unwrap_or_else(|| "unknown".into()),
                    port(n.peer_port),
                    n.from,
                    n.to.clone().unwrap_or_else(|| "open".into()),
                    n.end,
                    if n.senders.is_empty() {
                        "unknown".to_string()
                    } else {
                        n.senders.join(", ")
                    },
                    crate::proofs::cite_text(&args.data.data, n.seq),
                    if n.more > 0 {
                        format!(" (+{} more translations)", n.more)
                    } else {
                        String::new()
                    }
                ),
            )?;
        }
        super::text_line(
            &mut out,
            &format!(
                "  held {value} from {} to {}",
                m.lease.from,
                m.lease.to.clone().unwrap_or_else(|| "now".into())
            ),
        )?;
        for p in &m.payload_users {
            super::text_line(
                &mut out,
                &format!(
                    "  payload: job {} of {} ({}) from {} to {}",
                    p.job_id,
                    or_unknown(&p.owner),
                    or_unknown(&p.dn),
                    or_unknown(&p.from),
                    or_unknown(&p.to)
                ),
            )?;
            super::text_line(
                &mut out,
                &format!("    identity: {}", query::contain::payload_identity_text(p)),
            )?;
        }
        for line in query::contain::text_lines(&m.contain) {
            super::text_line(&mut out, &format!("  contain: {line}"))?;
        }
        for c in &m.conflicts {
            super::text_line(&mut out, &format!("  CONFLICT ({}): {}", c.kind, c.summary))?;
        }
        for e in &m.evidence {
            super::text_line(&mut out, &super::evidence_line(&args.data.data, e))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--hold`: the VMs named are held, requester `auto:who (operator NAME)`.
fn hold(args: &WhoArgs, answer: &query::who::WhoAnswer, value: &str) -> anyhow::Result<()> {
    let path = super::autohold::config_for(&args.data.data, args.quarantine_config.as_deref())
        .with_context(|| {
            format!(
                "--hold: {} has no quarantine store (give --quarantine-config)",
                args.data.data.display()
            )
        })?;
    let config = quarantine::policy::Config::load(&path).map_err(anyhow::Error::msg)?;
    let reason = format!("who {value} at {}", args.at);
    let holds: Vec<(String, String)> = answer
        .matches
        .iter()
        .map(|m| (m.vm.uuid.clone(), reason.clone()))
        .collect();
    let by = format!("auto:who ({})", super::quarantine::operator());
    super::autohold::hold(&args.data.data, &path, config, &holds, &by)?;
    Ok(())
}
