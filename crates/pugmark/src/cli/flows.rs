//! `pugmark flows` (issue 16): nfdump-like listing and top-N over the columnar flow store
//! (crate `flowstore`), plus what nfdump cannot do: aggregation by the VM that held an address at
//! the flow's time and by that VM's owner (the fact store's leases, `query::attrib::Site`).
//!
//! Every row names its ledger record (`seq`) and the datagram it came from, so an answer still
//! cites evidence. Packets and bytes are as `search` shows them: sampling applied.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flowstore::{Agg, FlowFilter, FlowRow, FlowStore, Net};
use jiff::Timestamp;
use model::flow::proto_name;
use serde::Serialize;

use crate::cli::{DataArgs, parse_time, text_line};
use pipeline::datadir::DataDir;
use pipeline::viewcheck::View;

#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Source address or network (CIDR).
    #[arg(long, value_parser = parse_net)]
    pub src: Option<Net>,
    /// Destination address or network (CIDR).
    #[arg(long, value_parser = parse_net)]
    pub dst: Option<Net>,
    /// Either end's address or network (CIDR).
    #[arg(long, value_parser = parse_net)]
    pub ip: Option<Net>,
    /// Either end's port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Protocol: a number or tcp, udp, icmp, icmp6, gre, esp, sctp.
    #[arg(long, value_parser = parse_proto)]
    pub proto: Option<u8>,
    /// Flows whose first packet is at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Flows whose first packet is before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// The exporter's address.
    #[arg(long)]
    pub exporter: Option<IpAddr>,
    /// Top N by `--by`, ordered by `--order` (nfdump's `-s KEY/ORDER -n N`).
    #[arg(long)]
    pub top: Option<usize>,
    /// What `--top` aggregates by.
    #[arg(long, value_enum, default_value_t = By::Srcip, requires = "top")]
    pub by: By,
    /// What `--top` orders by (descending).
    #[arg(long, value_enum, default_value_t = Order::Bytes)]
    pub order: Order,
    /// Without --top: list at most this many flows (0: all), in ledger order.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// JSON output: `{"flows": [...]}` or, with --top, `{"top": [...]}` (README "Contracts").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Srcip,
    Dstip,
    Port,
    Proto,
    Vm,
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Bytes,
    Packets,
    Flows,
}

fn parse_net(s: &str) -> Result<Net, String> {
    Net::parse(s).ok_or_else(|| format!("{s:?} is not an address or a network such as 10.0.0.0/8"))
}

fn parse_proto(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return Ok(n);
    }
    Ok(match s.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "icmp6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        _ => return Err(format!("{s:?} is not a protocol number or name")),
    })
}

/// One flow as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct FlowJson {
    pub seq: u64,
    pub datagram_seq: u64,
    pub flowset: u16,
    pub record: u16,
    pub start: Option<String>,
    pub end: Option<String>,
    pub src_ip: Option<String>,
    pub src_port: u16,
    pub dst_ip: Option<String>,
    pub dst_port: u16,
    pub proto: String,
    pub tcp_flags: u8,
    pub packets: u64,
    pub bytes: u64,
    pub exporter: Option<String>,
    /// 5, 9 or 10 (IPFIX).
    pub version: u16,
    pub observer: String,
}

/// One `--top` bucket.
#[derive(Debug, Serialize, Clone)]
pub struct TopJson {
    pub key: String,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Earliest and latest first-packet time of its flows.
    pub first: Option<String>,
    pub last: Option<String>,
}

fn ms_text(ms: i64) -> Option<String> {
    Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
}

fn flow_json(r: &FlowRow) -> FlowJson {
    FlowJson {
        // A derived flow has no record of its own: cited by its datagram, as every answer
        // cites it (`datagram_seq`, `flowset`, `record` name its place there).
        seq: if r.sub > 0 { r.rec.datagram_seq } else { r.seq },
        datagram_seq: r.rec.datagram_seq,
        flowset: r.rec.flowset,
        record: r.rec.record,
        start: r.rec.start_ms.and_then(ms_text),
        end: r.rec.end_ms.and_then(ms_text),
        src_ip: r.rec.src.map(|a| a.to_string()),
        src_port: r.rec.src_port,
        dst_ip: r.rec.dst.map(|a| a.to_string()),
        dst_port: r.rec.dst_port,
        proto: proto_name(r.rec.proto),
        tcp_flags: r.rec.tcp_flags,
        packets: r.rec.packets_scaled(),
        bytes: r.rec.bytes_scaled(),
        exporter: r.rec.exporter.map(|e| e.ip().to_string()),
        version: r.rec.version,
        observer: r.observer.clone(),
    }
}

/// Adds one flow row to a group's sums (flowstore's [`Agg`], the one the columns fill).
fn add_row(a: &mut Agg, r: &FlowRow) {
    a.add(r.rec.packets_scaled(), r.rec.bytes_scaled(), r.time_ms());
}

/// The answer, shared by the CLI (and a future API verb): the `--json` document.
pub(crate) fn answer(args: &FlowsArgs) -> anyhow::Result<serde_json::Value> {
    let dd = DataDir::open(&args.data.data, false)?;
    let mut which = vec![View::Flows];
    if matches!(args.by, By::Vm | By::Owner) && args.top.is_some() {
        which.push(View::Facts);
    }
    let views = pipeline::viewcheck::check(&dd, &which)?.require("flows")?;
    let store = FlowStore::open_read(dd.flows())
        .with_context(|| format!("opening flow store in {}", dd.flows().display()))?;
    let filter = FlowFilter {
        src: args.src,
        dst: args.dst,
        ip: args.ip,
        port: args.port,
        proto: args.proto,
        from_ms: args.from.map(|t| t.as_millisecond()),
        to_ms: args.to.map(|t| t.as_millisecond()),
        exporter: args.exporter,
    };
    let mut v = match args.top {
        None => {
            let mut flows = Vec::new();
            let mut matched = 0u64;
            let scan = store.scan(&filter, &mut |r| {
                matched += 1;
                if args.limit == 0 || flows.len() < args.limit {
                    flows.push(flow_json(r));
                }
            })?;
            serde_json::json!({
                "flows": flows,
                "matched": matched,
                "truncated": (flows.len() as u64) < matched,
                "scan": scan,
            })
        }
        Some(n) => {
            let site = if matches!(args.by, By::Vm | By::Owner) {
                let facts = views::facts::FactStore::open(dd.facts())
                    .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
                Some(query::attrib::Site::load(&facts)?)
            } else {
                None
            };
            let mut total = Agg::default();
            let mut by_str: HashMap<String, Agg> = HashMap::new();
            let mut keys: Vec<String> = Vec::with_capacity(4);
            let column_key = match args.by {
                By::Srcip => Some(flowstore::Key::Src),
                By::Dstip => Some(flowstore::Key::Dst),
                By::Port => Some(flowstore::Key::Port),
                By::Proto => Some(flowstore::Key::Proto),
                By::Vm | By::Owner => None,
            };
            let scan = if let Some(key) = column_key {
                // Straight from the columns, on every core.
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let (groups, t, st) = store.aggregate(&filter, key, threads)?;
                total = t;
                for (k, a) in groups {
                    let k = match k {
                        flowstore::KeyVal::Ip(a) => a.to_string(),
                        flowstore::KeyVal::Port(p) => p.to_string(),
                        flowstore::KeyVal::Proto(p) => proto_name(p),
                    };
                    by_str.entry(k).or_default().merge(&a);
                }
                st
            } else {
                let Some(site) = &site else {
                    bail!("no fact store to attribute flows with");
                };
                store.scan(&filter, &mut |r| {
                    add_row(&mut total, r);
                    let t = r.time_ms().saturating_mul(1_000_000);
                    keys.clear();
                    for a in [r.rec.src, r.rec.dst].into_iter().flatten() {
                        for h in site.ip_at(a, t) {
                            let k = if args.by == By::Vm {
                                h.uuid.clone()
                            } else {
                                owner_of(site, &h.uuid, t)
                            };
                            if !keys.contains(&k) {
                                keys.push(k);
                            }
                        }
                    }
                    for k in &keys {
                        add_row(by_str.entry(k.clone()).or_default(), r);
                    }
                })?
            };
            let mut rows: Vec<(String, Agg)> = by_str.into_iter().collect();
            let metric = |a: &Agg| match args.order {
                Order::Bytes => a.bytes,
                Order::Packets => a.packets,
                Order::Flows => a.flows,
            };
            rows.sort_by(|x, y| metric(&y.1).cmp(&metric(&x.1)).then_with(|| x.0.cmp(&y.0)));
            rows.truncate(n);
            let top: Vec<TopJson> = rows
                .into_iter()
                .map(|(key, a)| TopJson {
                    key,
                    flows: a.flows,
                    packets: a.packets,
                    bytes: a.bytes,
                    first: ms_text(a.first_ms),
                    last: ms_text(a.last_ms),
                })
                .collect();
            serde_json::json!({
                "by": args.by,
                "order": args.order,
                "top": top,
                "total": {"flows": total.flows, "packets": total.packets, "bytes": total.bytes},
                "scan": scan,
            })
        }
    };
    views.add_to(&mut v)?;
    Ok(v)
}

/// The VM's owner (user id) as the cloud last said before `t`, else `unknown`.
fn owner_of(site: &query::attrib::Site, uuid: &str, t: i64) -> String {
    site.observations(uuid)
        .iter()
        .rfind(|o| o.time_ns <= t && o.user_id.is_some())
        .or_else(|| site.observations(uuid).iter().find(|o| o.user_id.is_some()))
        .and_then(|o| o.user_id.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn run(args: FlowsArgs) -> anyhow::Result<ExitCode> {
    if args.top == Some(0) {
        bail!("--top needs at least 1");
    }
    let v = answer(&args)?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    if let Some(top) = v["top"].as_array() {
        let title = match args.by {
            By::Srcip => "Src IP Addr",
            By::Dstip => "Dst IP Addr",
            By::Port => "Port",
            By::Proto => "Protocol",
            By::Vm => "VM",
            By::Owner => "Owner",
        };
        let order = match args.order {
            Order::Bytes => "bytes",
            Order::Packets => "packets",
            Order::Flows => "flows",
        };
        text_line(
            &mut out,
            &format!("Top {} {title} ordered by {order}:", top.len()),
        )?;
        text_line(
            &mut out,
            &format!(
                "{:<24} {:<24} {:>40} {:>10} {:>12} {:>14}",
                "Date first seen", "Date last seen", title, "Flows", "Packets", "Bytes"
            ),
        )?;
        for t in top {
            text_line(
                &mut out,
                &format!(
                    "{:<24} {:<24} {:>40} {:>10} {:>12} {:>14}",
                    s(&t["first"]),
                    s(&t["last"]),
                    s(&t["key"]),
                    u(&t["flows"]),
                    u(&t["packets"]),
                    u(&t["bytes"])
                ),
            )?;
        }
        let tot = &v["total"];
        text_line(
            &mut out,
            &format!(
                "Summary: total flows: {}, total bytes: {}, total packets: {}",
                u(&tot["flows"]),
                u(&tot["bytes"]),
                u(&tot["packets"])
            ),
        )?;
    } else {
        text_line(
            &mut out,
            &format!(
                "{:<24} {:>9} {:<6} {:>45} {:>45} {:>8} {:>10} {:>10}",
                "Date first seen",
                "Duration",
                "Proto",
                "Src IP Addr:Port",
                "Dst IP Addr:Port",
                "Packets",
                "Bytes",
                "Seq"
            ),
        )?;
        let empty = Vec::new();
        for f in v["flows"].as_array().unwrap_or(&empty) {
            let dur = match (
                f["start"]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok()),
                f["end"].as_str().and_then(|t| t.parse::<Timestamp>().ok()),
            ) {
                (Some(a), Some(b)) => {
                    format!(
                        "{:.3}",
                        (b.as_millisecond() - a.as_millisecond()) as f64 / 1000.0
                    )
                }
                _ => "-".to_string(),
            };
            let ep = |ip: &serde_json::Value, port: &serde_json::Value| {
                let ip = s(ip);
                if ip.contains(':') {
                    format!("{ip}.{}", u(port))
                } else {
                    format!("{ip}:{}", u(port))
                }
            };
            text_line(
                &mut out,
                &format!(
                    "{:<24} {:>9} {:<6} {:>45} {:>45} {:>8} {:>10} {:>10}",
                    s(&f["start"]),
                    dur,
                    s(&f["proto"]),
                    ep(&f["src_ip"], &f["src_port"]),
                    ep(&f["dst_ip"], &f["dst_port"]),
                    u(&f["packets"]),
                    u(&f["bytes"]),
                    u(&f["seq"])
                ),
            )?;
        }
        text_line(
            &mut out,
            &format!(
                "Summary: {} flows matched{}",
                u(&v["matched"]),
                if v["truncated"].as_bool() == Some(true) {
                    format!(
                        ", {} shown (--limit)",
                        v["flows"].as_array().map_or(0, Vec::len)
                    )
                } else {
                    String::new()
                }
            ),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
