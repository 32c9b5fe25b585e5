//! `hunt`: indicators of compromise from CSIRTs (plain lists, MISP, STIX 2.1) searched over
//! the evidence, each hit answered like `who`.
//!
//! [`parse_iocs`] reads one indicator file: JSON is MISP (an event, `{"Event": …}`, a list of
//! them, or a bare `Attribute` list; attribute types ip-src, ip-dst, ip-dst|port, ip-src|port,
//! domain, hostname, url, also inside `Object`s) or a STIX 2.1 bundle (indicator patterns on
//! ipv4-addr / ipv6-addr / domain-name / url, every `= '…'` comparison of the pattern); other
//! text is a plain list (IPs, CIDRs, domains, URLs, one per line, `#` comments). What cannot be
//! used is counted with the reason, never fatal.
//!
//! [`hunt`] searches flows, netfilter connections and syslog text: addresses and networks as
//! `ip:` queries (the index's IP field, exact and CIDR), domains and URLs as phrases. For each
//! hit the event's endpoint addresses (src/dst, else every address it names) are resolved with
//! [`crate::who::who`] at the time the event is placed ([`Event::placed`]: the collector's time
//! where one exists), so a hit says which VM, owner, payload person and hypervisor were behind
//! the address then. A VM's own syslog (observer `vm`) names its sender too: the VM that held
//! the sender's address when the collector received the line (a live peer, or an archive's
//! `relay_from` at its `relay_received`) is the VM the line came from, and is in `matches`
//! even though the line's text names no address of its own.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context;
use jiff::Timestamp;
use model::{Event, Observer, fields};
use serde::Serialize;
use serde_json::Value;
use views::SearchIndex;
use views::facts::FactStore;

use crate::attrib::{Attribution, Site};
use crate::lang;
use crate::search::{Fetch, SearchRequest, run};
use crate::who::{AddrKind, FactCache, Facts, Match, WhoQuery, who_in};

/// One indicator, as read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indicator {
    Ip(IpAddr),
    Cidr(IpAddr, u8),
    Domain(String),
    Url(String),
}

impl Indicator {
    /// As shown in hits (`10.0.0.0/8`, `evil.example`).
    pub fn text(&self) -> String {
        match self {
            Indicator::Ip(ip) => ip.to_string(),
            Indicator::Cidr(ip, len) => format!("{ip}/{len}"),
            Indicator::Domain(d) | Indicator::Url(d) => d.clone(),
        }
    }

    fn query(&self) -> String {
        match self {
            Indicator::Ip(_) | Indicator::Cidr(..) => format!("ip:{}", self.text()),
            Indicator::Domain(d) | Indicator::Url(d) => {
                format!("\"{}\"", d.replace('\\', "\\\\").replace('"', "\\\""))
            }
        }
    }

    /// Read one value: an address, a network, a URL or a domain name.
    pub fn parse(s: &str) -> Option<Indicator> {
        let s = s.trim().trim_matches(|c| c == '[' || c == ']');
        if s.is_empty() {
            return None;
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Indicator::Ip(ip));
        }
        if let Some((a, l)) = s.split_once('/')
            && let (Ok(ip), Ok(len)) = (a.parse::<IpAddr>(), l.parse::<u8>())
        {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return (len <= max).then_some(Indicator::Cidr(ip, len));
        }
        if s.contains("://") {
            return Some(Indicator::Url(s.to_string()));
        }
        let domain_like = s.contains('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        domain_like.then(|| Indicator::Domain(s.to_lowercase()))
    }
}

/// What one file gave: indicators, and values skipped with why.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IocFile {
    #[serde(skip)]
    pub indicators: Vec<Indicator>,
    /// `misp`, `stix`, `plain`.
    pub kind: &'static str,
    pub skipped: Vec<String>,
}

/// Parse one indicator file (see the module docs).
pub fn parse_iocs(bytes: &[u8]) -> IocFile {
    let mut out = IocFile::default();
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) if v.get("type").and_then(Value::as_str) == Some("bundle") => {
                out.kind = "stix";
                stix(&v, &mut out);
            }
            Ok(v) => {
                out.kind = "misp";
                misp(&v, &mut out);
            }
            Err(e) => {
                out.kind = "json";
                out.skipped.push(format!("not valid JSON: {e}"));
            }
        }
        return out;
    }
    out.kind = "plain";
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match Indicator::parse(line) {
            Some(i) => out.indicators.push(i),
            None => out.skipped.push(format!("line {}: {line:?}", n + 1)),
        }
    }
    out
}

fn misp_attribute(a: &Value, out: &mut IocFile) {
    let (Some(ty), Some(value)) = (
        a.get("type").and_then(Value::as_str),
        a.get("value").and_then(Value::as_str),
    ) else {
        return;
    };
    let v = match ty {
        "ip-src" | "ip-dst" | "domain" | "hostname" | "url" => value,
        "ip-dst|port" | "ip-src|port" | "domain|ip" => value.split('|').next().unwrap_or(""),
        _ => return,
    };
    match Indicator::parse(v) {
        Some(i) => out.indicators.push(i),
        None => out.skipped.push(format!("MISP {ty} {value:?}")),
    }
}

fn misp(v: &Value, out: &mut IocFile) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| misp(i, out)),
        Value::Object(o) => {
            if let Some(e) = o.get("Event") {
                misp(e, out);
            }
            if let Some(Value::Array(attrs)) = o.get("Attribute") {
                attrs.iter().for_each(|a| misp_attribute(a, out));
            }
            if let Some(Value::Array(objs)) = o.get("Object") {
                objs.iter().for_each(|ob| misp(ob, out));
            }
            if o.contains_key("type") && o.contains_key("value") {
                misp_attribute(v, out);
            }
        }
        _ => {}
    }
}

fn stix(v: &Value, out: &mut IocFile) {
    let Some(objects) = v.get("objects").and_then(Value::as_array) else {
        out.skipped.push("STIX bundle without objects".into());
        return;
    };
    for o in objects {
        if o.get("type").and_then(Value::as_str) != Some("indicator") {
            continue;
        }
        let Some(p) = o.get("pattern").and_then(Value::as_str) else {
            continue;
        };
        // Every `object:value = '…'` comparison of the pattern on the kinds we can search.
        let mut rest = p;
        while let Some(at) = rest.find(":value") {
            let object = rest[..at].rsplit(['[', ' ', '(']).next().unwrap_or("");
            let after = &rest[at + 6..];
            let Some(q1) = after.find('\'') else { break };
            let Some(q2) = after[q1 + 1..].find('\'') else {
                break;
            };
            let value = &after[q1 + 1..q1 + 1 + q2];
            let ok = matches!(object, "ipv4-addr" | "ipv6-addr" | "domain-name" | "url");
            match (ok, Indicator::parse(value)) {
                (true, Some(i)) => out.indicators.push(i),
                _ => out.skipped.push(format!("STIX {object} {value:?}")),
            }
            rest = &after[q1 + 1 + q2 + 1..];
        }
        if !p.contains(":value") {
            out.skipped.push(format!("STIX pattern {p:?}"));
        }
    }
}

/// One hit of `hunt --json` (issue 5: `{"hits": [{"indicator", "time", "observer", "summary",
/// "seq", "matches"}]}`).
#[derive(Debug, Clone, Serialize)]
pub struct HuntHit {
    pub indicator: String,
    pub time: String,
    pub observer: Observer,
    pub summary: String,
    /// The ledger position cited (a derived flow's datagram, `crate::cite`).
    pub seq: u64,
    /// A derived flow's place in the datagram at `seq`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<crate::cite::FlowJson>,
    /// The position inside this process (a derived flow's flow position): what hits are
    /// ordered by at one instant. Not part of the answer.
    #[serde(skip)]
    pub pos: u64,
    /// `who` match objects for the event's endpoint addresses at its time, and for a VM's own
    /// syslog the VM that held its sender's address when the collector received it.
    pub matches: Vec<Match>,
    /// What the source claimed, when it differs from `time` by a second or more (`time` is
    /// where the hit is placed: the collector's time where one exists). An extension of the
    /// issue-5 contract; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    /// The address that sent a VM's own syslog line (live peer or an archive's `relay_from`),
    /// resolved into `matches` at the collected time. An extension; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// For a VM's own records: the VM the record is attributed to and how ([`crate::attrib`]:
    /// by claimed UUID, sender address, or only the claimed hostname — ambiguous when two VMs
    /// held it). An extension; absent for other observers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HuntAnswer {
    pub hits: Vec<HuntHit>,
    /// True when an indicator had more hits than the limit.
    pub truncated: bool,
}

/// One hit: the event's endpoint addresses (src/dst, else every address it names) resolved
/// with `who` at the time the event is placed, and for a VM's own syslog its sender's address
/// at the collected time.
fn resolve(
    facts: &mut dyn Facts,
    site: &Site,
    ind: &Indicator,
    seq: u64,
    e: &Event,
) -> anyhow::Result<HuntHit> {
    let at = e.placed();
    let mut addrs: Vec<IpAddr> = [fields::SRC_IP, fields::DST_IP]
        .iter()
        .filter_map(|f| e.field(f).and_then(|v| v.parse().ok()))
        .collect();
    if addrs.is_empty() {
        addrs = e.ips.clone();
    }
    addrs.dedup();
    let mut matches = Vec::new();
    for ip in addrs {
        let a = who_in(
            facts,
            &WhoQuery {
                kind: AddrKind::Ip,
                value: ip.to_string(),
                at,
            },
        )?;
        matches.extend(a.matches);
    }
    // The sender of a VM's own line, where a collector received it: the VM leasing that
    // address then wrote it, whatever the line says about itself.
    let sender = e
        .sender_ip()
        .zip(e.collected())
        .filter(|_| e.observer.forgeable_by_vm_user());
    if let Some((ip, collected)) = sender {
        let a = who_in(
            facts,
            &WhoQuery {
                kind: AddrKind::Ip,
                value: ip.to_string(),
                at: collected,
            },
        )?;
        for m in a.matches {
            if !matches.iter().any(|x| x.vm.uuid == m.vm.uuid) {
                matches.push(m);
            }
        }
    }
    let summary = match (&e.host, &e.app) {
        (Some(host), Some(app)) => format!("{host} {app}: {}", e.message),
        (Some(host), None) => format!("{host}: {}", e.message),
        (None, Some(app)) => format!("{app}: {}", e.message),
        (None, None) => e.message.clone(),
    };
    let cite = crate::cite::of(seq, e);
    Ok(HuntHit {
        indicator: ind.text(),
        time: at.to_string(),
        observer: e.observer,
        summary,
        seq: cite.map_or(seq, |c| c.seq),
        flow: cite.and_then(|c| c.flow).map(crate::cite::FlowJson::from),
        pos: seq,
        matches,
        reported: e.reported_aside().map(|t| t.to_string()),
        sender: sender.map(|(ip, _)| ip.to_string()),
        attribution: (e.observer == Observer::Vm).then(|| site.attribute(e)),
    })
}

fn request(
    ind: &Indicator,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: usize,
) -> SearchRequest {
    SearchRequest {
        query: ind.query(),
        from,
        to,
        limit,
        ..SearchRequest::default()
    }
}

/// Search every indicator inside `[from, to)`; at most `limit` hits per indicator (the
/// earliest). Hits in time order (ties by seq, then by the indicators' order).
///
/// Built for feeds of tens of thousands of indicators over days of tens of millions of
/// events, where almost every indicator misses and a few hit thousands of times:
/// - an indicator is first looked up in the index's term dictionaries
///   ([`SearchIndex::may_match`]: its address, its network's term range, its phrase's
///   tokens); one that cannot match costs a dictionary lookup per segment and nothing more;
/// - the others run the same query as [`hunt_each`] (so the same hits: an address or network
///   is answered exactly by the index, a name's candidates are checked on their events);
/// - every hit's event is then fetched once, in ledger order (the reader decompresses each
///   block once, and an event matching several indicators is read once);
/// - `who` reads the fact store through a [`FactCache`]: a busy address is resolved from
///   memory after its first hit.
///
/// Rejected: one term-set query for all addresses (plus a range per network), which the issue
/// suggested. It finds the matching events in one pass, but then which indicator matched each
/// event must be decided on the fetched event, and the per-indicator limit can only be
/// applied after fetching every match of a busy address (60 k flows where 10 k are shown).
/// Misses were what cost time, and the dictionary lookup removes them without that price.
pub fn hunt(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    indicators: &[Indicator],
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: usize,
) -> anyhow::Result<HuntAnswer> {
    let site = Site::load(store)?;
    hunt_in(index, store, &site, fetch, indicators, (from, to), limit)
}

/// [`hunt`] with the site's attribution model already loaded (`Site::load` of this `store`:
/// a server keeps it while the fact store's `site_version` stays).
pub fn hunt_in(
    index: &SearchIndex,
    store: &FactStore,
    site: &Site,
    fetch: &mut dyn Fetch,
    indicators: &[Indicator],
    (from, to): (Option<Timestamp>, Option<Timestamp>),
    limit: usize,
) -> anyhow::Result<HuntAnswer> {
    let mut truncated = false;
    let mut events: HashMap<u64, Event> = HashMap::new();
    let mut found: Vec<(&Indicator, Vec<u64>)> = Vec::new();
    for ind in indicators {
        let req = request(ind, from, to, limit);
        let expr = req.expr()?;
        let (iq, exact) = lang::lower(&expr);
        let iq = crate::flows::index_part(index, iq)?;
        // Flows are not index documents: the flow store's (exact) matches join the index's.
        let cap = index.flows_cap();
        let (n_flows, flow_keys) = crate::flows::first(index, &expr, cap, fetch, limit)?;
        if n_flows == 0 && !index.may_match(&iq)? {
            continue;
        }
        if exact {
            let (total, keys) = index.first_by_time(&iq, limit)?;
            let total = total + n_flows;
            let keys = crate::flows::merge_first(keys, &flow_keys, limit);
            truncated |= total > keys.len() as u64;
            found.push((ind, keys.into_iter().map(|k| k.seq).collect()));
        } else {
            let out = run(index, &req, fetch)?;
            truncated |= out.truncated;
            let seqs = out.hits.iter().map(|h| h.seq).collect();
            events.extend(out.hits.into_iter().map(|h| (h.seq, h.event)));
            found.push((ind, seqs));
        }
    }
    let mut need: Vec<u64> = found
        .iter()
        .flat_map(|(_, seqs)| seqs.iter().copied())
        .filter(|s| !events.contains_key(s))
        .collect();
    need.sort_unstable();
    need.dedup();
    for seq in need {
        let e = fetch
            .fetch(seq)
            .with_context(|| format!("fetching hit #{seq}"))?;
        events.insert(seq, e);
    }
    let mut facts = FactCache::new(store);
    let mut hits = Vec::new();
    for (ind, seqs) in found {
        for seq in seqs {
            let e = events
                .get(&seq)
                .with_context(|| format!("hit #{seq} was not fetched"))?;
            hits.push(resolve(&mut facts, site, ind, seq, e)?);
        }
    }
    hits.sort_by(|a, b| {
        (&a.time, model::flow::order_key(a.pos)).cmp(&(&b.time, model::flow::order_key(b.pos)))
    });
    Ok(HuntAnswer { hits, truncated })
}

/// [`hunt`] the plain way: one search per indicator, every hit fetched and resolved against
/// the fact store on its own. Kept as the oracle `hunt` is tested against (and as
/// `pugmark hunt --one-query-per-indicator`).
pub fn hunt_each(
    index: &SearchIndex,
    store: &FactStore,
    fetch: &mut dyn Fetch,
    indicators: &[Indicator],
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: usize,
) -> anyhow::Result<HuntAnswer> {
    let mut hits = Vec::new();
    let mut truncated = false;
    let site = Site::load(store)?;
    for ind in indicators {
        let out = run(index, &request(ind, from, to, limit), fetch)?;
        truncated |= out.truncated;
        for h in out.hits {
            hits.push(resolve(&mut &*store, &site, ind, h.seq, &h.event)?);
        }
    }
    hits.sort_by(|a, b| {
        (&a.time, model::flow::order_key(a.pos)).cmp(&(&b.time, model::flow::order_key(b.pos)))
    });
    Ok(HuntAnswer { hits, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_list() {
        let f = parse_iocs(
            b"# feed\n10.0.0.5\n192.0.2.0/24 # net\nevil.example\nhttp://x.example/a\nnot valid!\n",
        );
        assert_eq!(f.indicators.len(), 4);
        assert_eq!(f.skipped.len(), 1);
    }

    #[test]
    fn stix_pattern_values() {
        let b = br#"{"type":"bundle","objects":[{"type":"indicator","pattern":"[ipv4-addr:value = '198.51.100.1'] OR [domain-name:value = 'c2.example']"},{"type":"indicator","pattern":"[file:hashes.'SHA-256' = 'ab']"}]}"#;
        let f = parse_iocs(b);
        assert_eq!(
            f.indicators,
            vec![
                Indicator::Ip("198.51.100.1".parse().unwrap()),
                Indicator::Domain("c2.example".into())
            ]
        );
        assert_eq!(f.kind, "stix");
    }
}
