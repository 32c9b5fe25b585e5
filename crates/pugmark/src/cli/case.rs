//! `pugmark case create|list|show|share|star|annotate|tag|query|report` (issue 14): cases on a
//! data directory, for the operator (role site), acting as `--as NAME` or the unix user. Every
//! change is a ledger record (an audit record with a `change`, `crate::cases`) appended here,
//! so the data directory must not be held by a running `serve`/`ui` (use the API there).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use views::cases::Change;

use crate::cases::{self, Access, Actor};
use crate::cli::DataArgs;
use crate::cli::report::ReportFormat;
use pipeline::datadir::DataDir;

#[derive(Debug, Args)]
pub struct CaseArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Act as this user (default: the unix user).
    #[arg(long = "as", global = true, value_name = "NAME")]
    pub as_user: Option<String>,
    /// JSON output: the case as `GET /api/v1/cases/{id}` answers it (with `change_seq` after a
    /// change); `list`: {"cases": [...], "total"}.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Open a case.
    Create {
        #[arg(long)]
        title: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Every case.
    List,
    /// One case: saved questions, starred records, annotations.
    Show { id: String },
    /// Share with named users (name or OIDC subject) and/or VOs.
    Share {
        id: String,
        #[arg(long = "user")]
        users: Vec<String>,
        #[arg(long = "vo")]
        vos: Vec<String>,
    },
    /// Star a record (by its ledger position), or unstar it.
    Star {
        id: String,
        seq: u64,
        /// A flow of the datagram at the position: its place there (`F.R`, as answers
        /// cite it: `#SEQ/F.R`).
        #[arg(long, value_parser = parse_flow)]
        flow: Option<String>,
        #[arg(long)]
        unstar: bool,
    },
    /// Annotate the case, or a record of it with `--seq`.
    Annotate {
        id: String,
        text: String,
        #[arg(long)]
        seq: Option<u64>,
        /// A flow of the datagram at the position: its place there (`F.R`, as answers
        /// cite it: `#SEQ/F.R`).
        #[arg(long, value_parser = parse_flow, requires = "seq")]
        flow: Option<String>,
    },
    /// Tag the case, or a record with `--seq`.
    Tag {
        id: String,
        tag: String,
        #[arg(long)]
        seq: Option<u64>,
        /// A flow of the datagram at the position: its place there (`F.R`, as answers
        /// cite it: `#SEQ/F.R`).
        #[arg(long, value_parser = parse_flow, requires = "seq")]
        flow: Option<String>,
    },
    /// Save a question: `pugmark case query ID who ip=10.0.0.5 at=2026-10-14T10:00:00Z`.
    Query {
        id: String,
        /// who, report, search, timeline, check or hunt.
        verb: String,
        /// NAME=VALUE, the verb's API parameters (`q` for search's query).
        params: Vec<String>,
        #[arg(long)]
        title: Option<String>,
    },
    /// The case as the incident report: its saved who/report questions answered, the starred
    /// records and the annotations.
    Report {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
    },
}

fn unix_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid:{}", rustix::process::getuid().as_raw()))
}

pub fn run(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    pipeline::viewcheck::check(&dd, &[pipeline::viewcheck::View::Index])?
        .refuse_unusable("case")?;
    let name = args.as_user.clone().unwrap_or_else(unix_user);
    let actor = Actor {
        subject: Some(format!("cli:{name}")),
        name,
        roles: vec![serve::config::ApiRole::Site],
    };
    let store = cases::sync(&dd)?;
    let get = |id: &str| -> anyhow::Result<views::cases::Case> {
        store
            .get(id)?
            .with_context(|| format!("no case {id:?} in {}", dd.root().display()))
    };
    let mut out = std::io::stdout().lock();
    let change = match args.command {
        CaseCommand::List => {
            let mut list = Vec::new();
            for id in store.ids()? {
                if let Some(c) = store.get(&id)? {
                    list.push(cases::summary(&c));
                }
            }
            if args.json {
                let n = list.len();
                serde_json::to_writer_pretty(&mut out, &json!({"cases": list, "total": n}))?;
                writeln!(out)?;
            } else {
                for c in &list {
                    super::text_line(
                        &mut out,
                        &format!(
                            "{} {} (owner {}, opened {}): {} questions, {} stars, {} annotations",
                            c["id"].as_str().unwrap_or("-"),
                            c["title"].as_str().unwrap_or("-"),
                            c["owner"].as_str().unwrap_or("-"),
                            c["created"].as_str().unwrap_or("-"),
                            c["queries"],
                            c["stars"],
                            c["annotations"]
                        ),
                    )?;
                }
                if list.is_empty() {
                    writeln!(out, "no cases")?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        CaseCommand::Show { id } => {
            let c = get(&id)?;
            let v = cases::view(&dd, &c, None, Access::Write)?;
            print_case(&mut out, &v, args.json)?;
            return Ok(ExitCode::SUCCESS);
        }
        CaseCommand::Report { id, format } => {
            let c = get(&id)?;
            let (_, bytes, _) = cases::report(&dd, &c, None, Access::Write, format)?;
            out.write_all(&bytes)?;
            return Ok(ExitCode::SUCCESS);
        }
        CaseCommand::Create { title, tags } => {
            if title.trim().is_empty() {
                bail!("--title must not be empty");
            }
            Change::Create {
                case: cases::new_id(),
                title,
                tags,
            }
        }
        CaseCommand::Share { id, users, vos } => {
            if users.is_empty() && vos.is_empty() {
                bail!("whom to share with: --user NAME and/or --vo NAME");
            }
            Change::Share {
                case: get(&id)?.id,
                users,
                vos,
            }
        }
        CaseCommand::Star {
            id,
            seq,
            flow,
            unstar,
        } => {
            let case = get(&id)?.id;
            cited(&dd, seq, flow.as_deref())?;
            if unstar {
                Change::Unstar { case, seq, flow }
            } else {
                Change::Star { case, seq, flow }
            }
        }
        CaseCommand::Annotate {
            id,
            text,
            seq,
            flow,
        } => {
            let case = get(&id)?.id;
            if let Some(s) = seq {
                cited(&dd, s, flow.as_deref())?;
            }
            if text.trim().is_empty() {
                bail!("an annotation needs text");
            }
            Change::Annotate {
                case,
                seq,
                flow,
                text,
            }
        }
        CaseCommand::Tag { id, tag, seq, flow } => {
            let case = get(&id)?.id;
            if let Some(s) = seq {
                cited(&dd, s, flow.as_deref())?;
            }
            Change::Tag {
                case,
                tag,
                seq,
                flow,
            }
        }
        CaseCommand::Query {
            id,
            verb,
            params,
            title,
        } => {
            let case = get(&id)?.id;
            let mut m = serde_json::Map::new();
            for p in &params {
                let Some((k, v)) = p.split_once('=') else {
                    bail!("{p:?}: parameters are NAME=VALUE");
                };
                m.insert(k.to_string(), Value::String(v.to_string()));
            }
            let params = Value::Object(m);
            cases::check_query(&dd, &verb, &params).map_err(anyhow::Error::msg)?;
            Change::Query {
                case,
                verb,
                params: params.to_string(),
                title,
            }
        }
    };
    drop(store);
    let seq = record(&dd, &actor, &change)?;
    let store = cases::sync(&dd)?;
    let c = store
        .get(change.case())?
        .with_context(|| format!("case {} not in the store after #{seq}", change.case()))?;
    let mut v = cases::view(&dd, &c, None, Access::Write)?;
    v["change_seq"] = json!(seq);
    if args.json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} {}: recorded as ledger record #{seq}",
            change.op(),
            c.id
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cited(dd: &DataDir, seq: u64, flow: Option<&str>) -> anyhow::Result<()> {
    if cases::cite(dd, seq, flow, None)?.is_none() {
        match flow {
            Some(f) => {
                bail!("no flow #{seq}/{f}: not a datagram of the ledger, or no such flow in it")
            }
            None => bail!("no record #{seq} in the ledger"),
        }
    }
    Ok(())
}

/// `--flow F.R`: a flow's place in its datagram (flowset, record).
fn parse_flow(s: &str) -> Result<String, String> {
    s.parse::<model::flow::FlowAt>()
        .map(|a| a.to_string())
        .map_err(|_| format!("{s:?}: a flow's place in its datagram, F.R (flowset.record)"))
}

/// Appends the change as an audit record (observer collector) and waits until it is durable
/// and indexed; its ledger position.
fn record(dd: &DataDir, actor: &Actor, change: &Change) -> anyhow::Result<u64> {
    let a = crate::api::audit::Audit {
        user: actor.name.clone(),
        subject: actor.subject.clone(),
        issuer: None,
        via: Some("cli".into()),
        role: Some("site".into()),
        verb: format!("case.{}", change.op()),
        params: json!({"case": change.case()}),
        status: 200,
        count: 1,
        vms: Default::default(),
        peer: None,
        reason: None,
        change: Some(serde_json::to_value(change)?),
    };
    let mut p = pipeline::Pipeline::open(dd).with_context(|| {
        format!(
            "a case change is a ledger record, so pugmark case needs the ledger of {}; is a \
             pugmark serve or ui running on it? Then use its API (POST /api/v1/cases…)",
            dd.root().display()
        )
    })?;
    let r = p.append(vec![model::Envelope::Record(a.record())])?;
    p.finish()?;
    Ok(r.first.get())
}

fn print_case(out: &mut impl Write, v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, v)?;
        writeln!(out)?;
        return Ok(());
    }
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let list = |x: &Value| {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    super::text_line(
        out,
        &format!(
            "{} {} — owner {}, opened {}; users [{}], VOs [{}], tags [{}]",
            s(&v["id"]),
            s(&v["title"]),
            s(&v["owner"]),
            s(&v["created"]),
            list(&v["users"]),
            list(&v["vos"]),
            list(&v["tags"])
        ),
    )?;
    for q in v["queries"].as_array().into_iter().flatten() {
        super::text_line(
            out,
            &format!("question #{}: {} {}", q["seq"], s(&q["verb"]), q["params"]),
        )?;
    }
    // `#SEQ`, or `#SEQ/F.R` for a flow of the datagram at SEQ (as every answer cites it).
    let cite = |r: &Value| match (r["seq"].as_u64(), r.get("flow")) {
        (Some(n), Some(f)) if f.is_object() => format!("#{n}/{}.{}", f["flowset"], f["record"]),
        (Some(n), _) => format!("#{n}"),
        (None, _) => "the case".to_string(),
    };
    for st in v["stars"].as_array().into_iter().flatten() {
        let r = &st["record"];
        super::text_line(
            out,
            &format!(
                "star {} {} {} {}: {}",
                cite(r),
                s(&r["time"]),
                s(&r["observer"]),
                s(&r["host"]),
                s(&r["message"])
            ),
        )?;
    }
    for a in v["annotations"].as_array().into_iter().flatten() {
        let on = cite(&a["record"]);
        super::text_line(
            out,
            &format!(
                "note on {on} by {} at {}: {}",
                s(&a["by"]),
                s(&a["time"]),
                s(&a["text"])
            ),
        )?;
    }
    Ok(())
}
