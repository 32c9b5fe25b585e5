//! The pages: each turns its query string into the API verb's parameters, asks
//! [`Service::query`] (audited, scoped: the API's own path) and shapes the JSON answer into
//! what its template draws (facets, histogram, lanes…). Shaping is here, in Rust; templates
//! only lay out and escape.
//!
//! To add a page: a `fn NAME(cx: &mut Cx) -> Result<(), Shown>` below, its arm in [`page`],
//! its template `templates/NAME.html` (`{% extends "base.html" %}`, fill `content`) registered
//! in [`env()`], and a [`NAV`] entry if it belongs in the bar. The caller is `cx.user`
//! (a [`UiSession`]: name, groups, via), its roles `cx.roles`; query with `cx.ask(verb, params)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::{Value, json};
use serve::api::{ApiRequest, ApiResponse, AuditSink};

use super::html;
use super::session::UiSession;
use crate::api::{Params, Reply, Service};

/// The navigation bar: (page, label, href).
pub const NAV: [(&str, &str, &str); 6] = [
    ("search", "Search", "/ui/search"),
    ("who", "Who", "/ui/who"),
    ("timeline", "Timeline", "/ui/timeline"),
    ("check", "Check", "/ui/check"),
    ("hunt", "Hunt", "/ui/hunt"),
    ("cases", "Cases", "/ui/cases"),
];

/// Most search hits a page examines for its facets and histogram (one query).
pub const SEARCH_EXAMINED: usize = 500;
/// Hits listed on a search page.
pub const SEARCH_SHOWN: usize = 200;
/// Timeline rows listed under the lanes.
pub const TIMELINE_ROWS: usize = 200;
/// The timeline page's first page: at most this many entries from each underlying search
/// (each is read from the ledger: a busy VM's day is thousands, most of a page's time). The
/// lanes are drawn from every record of the window all the same (`timeline --lanes`).
pub const TIMELINE_FIRST: usize = 200;
/// Time slices of the lanes (each 0.4 % of the width).
const LANE_SLICES: usize = 250;
/// The deepest row a page lists (the CLI's default `--limit`).
pub const TIMELINE_ALL: usize = 10_000;
/// Histogram bars.
const BARS: usize = 48;
/// "Surrounding records": this long either side of a hit.
const AROUND_SECONDS: i64 = 300;
/// The timeline's lanes, one per observer, in this order.
pub const LANES: [&str; 6] = ["cloud", "hypervisor", "network", "vm", "vo", "collector"];

/// The templates, compiled in.
fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = minijinja::Environment::new();
        for (name, src) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("home.html", include_str!("templates/home.html")),
            ("error.html", include_str!("templates/error.html")),
            ("search.html", include_str!("templates/search.html")),
            ("who.html", include_str!("templates/who.html")),
            ("timeline.html", include_str!("templates/timeline.html")),
            ("check.html", include_str!("templates/check.html")),
            ("hunt.html", include_str!("templates/hunt.html")),
            ("cases.html", include_str!("templates/cases.html")),
            ("case.html", include_str!("templates/case.html")),
            ("macros.html", include_str!("templates/macros.html")),
        ] {
            // A template that does not parse is a build-time mistake; the unit test
            // `templates_parse` catches it, and here it is reported on the page instead.
            if let Err(err) = e.add_template(name, src) {
                eprintln!("pugmark ui: template {name}: {err}");
            }
        }
        e
    })
}

/// Renders a template (a rendering error is shown, never a panic).
pub fn render(name: &str, ctx: &Value) -> String {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(s) => s,
        Err(e) => format!(
            "<!doctype html><title>pugmark: page error</title><p>page error: {}</p>",
            escape(&format!("{e:#}"))
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Trust of an observer's records (docs/DESIGN.md): the site's own components, a VO's claim,
/// or what a VM says about itself (forgeable: its user owns it).
pub fn trust(observer: &str) -> &'static str {
    match observer {
        "vm" => "forgeable",
        "vo" => "vo-claim",
        "cloud" | "hypervisor" | "network" | "collector" => "site",
        _ => "unknown",
    }
}

/// One page being answered.
pub struct Cx<'a> {
    svc: &'a Service,
    req: &'a ApiRequest,
    sink: &'a dyn AuditSink,
    pub user: &'a UiSession,
    pub page: &'static str,
    /// The path after `/ui/`.
    pub path: String,
    /// The page's own query string.
    pub params: Params,
    /// What the template gets (`user`, `nav`, `page` added by [`page`]).
    pub ctx: serde_json::Map<String, Value>,
    /// What the page adds to its question, for the audit record (`ui_K` in its params).
    pub audit_context: Params,
}

/// Why a page shows no answer: the API's refusal (403 "not yours", 400 bad parameter, …).
pub struct Shown {
    pub status: u16,
    pub error: String,
}

impl Cx<'_> {
    /// A parameter of the page's query string (last wins; empty is none).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, v)| n == k && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// The API's answer to `verb` with `params`, as this user (audited, scoped).
    pub fn ask(&mut self, verb: &str, params: Params) -> Result<Value, Shown> {
        let req = ApiRequest {
            method: "GET".into(),
            endpoint: verb.into(),
            query: None,
            authorization: None,
            accept: None,
            peer: self.req.peer,
            cookie: None,
            content_type: None,
            secure: self.req.secure,
            body: Vec::new(),
        };
        match self.svc.query(
            Ok(self.user.identity()),
            verb,
            &params,
            &req,
            self.sink,
            Some((self.page, &self.audit_context)),
        ) {
            Reply::Json(200, v) => {
                if let Some(views) = v.get("views") {
                    self.ctx.insert("views".into(), views.clone());
                }
                Ok(v)
            }
            Reply::Json(status, v) => Err(Shown {
                status,
                error: v["error"].as_str().unwrap_or("refused").to_string(),
            }),
            Reply::Raw(..) | Reply::Lines(_) | Reply::Response(_) => Err(Shown {
                status: 500,
                error: "an export cannot be shown as a page".into(),
            }),
        }
    }

    /// The page's parameters named in `keys`, non-empty, as API params.
    fn pass(&self, keys: &[&str]) -> Params {
        keys.iter()
            .filter_map(|k| self.get(k).map(|v| ((*k).to_string(), v.to_string())))
            .collect()
    }

    fn set(&mut self, k: &str, v: Value) {
        self.ctx.insert(k.into(), v);
    }

    /// What the template gets under `k`.
    pub(crate) fn set_ctx(&mut self, k: &str, v: Value) {
        self.set(k, v);
    }

    pub(crate) fn svc(&self) -> &Service {
        self.svc
    }

    /// A call of the case API as this user (audited, scoped: `super::cases::call`).
    pub(crate) fn case_api(
        &self,
        to: (&str, &str),
        p: &Params,
        body: Option<&Value>,
    ) -> ApiResponse {
        super::cases::call(self.svc, self.user, self.req, self.sink, to, p, body)
    }

    /// The "to a case" form of a record page: the cases this user may change, the question
    /// of this page (saved with "save this question"), and where to come back.
    fn offer_cases(&mut self, verb: &str, keys: &[&str]) {
        let cases = super::cases::writable(self.svc, self.user);
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pass(keys) {
            q.append_pair(&k, &v);
        }
        let next = match &self.req.query {
            Some(qs) => format!("/ui/{}?{qs}", self.page),
            None => format!("/ui/{}", self.page),
        };
        self.set(
            "to_case",
            json!({"cases": cases, "verb": verb, "params": q.finish(), "next": next}),
        );
    }
}

/// A link to a page with parameters.
pub fn href(page: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() {
        format!("/ui/{page}")
    } else {
        format!("/ui/{page}?{q}")
    }
}

fn user_json(user: &UiSession, svc: &Service) -> Value {
    let role = crate::api::auth::role_of(&user.identity(), &svc.config)
        .map(|r| {
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "no role".into());
    json!({
        "name": user.name,
        "via": user.via,
        "issuer": user.issuer,
        "role": role,
        "csrf": user.csrf,
    })
}

fn nav_json() -> Value {
    Value::Array(
        NAV.iter()
            .map(|(p, l, h)| json!({"page": p, "label": l, "href": h}))
            .collect(),
    )
}

/// A page that only says what went wrong.
pub fn error_page(user: &UiSession, status: u16, error: &str) -> ApiResponse {
    let ctx = json!({
        "title": "Error",
        "user": {"name": user.name, "via": user.via, "issuer": user.issuer, "role": "", "csrf": user.csrf},
        "nav": nav_json(),
        "error": error,
    });
    html(status, render("error.html", &ctx))
}

/// What answers one page.
type PageFn = fn(&mut Cx) -> Result<(), Shown>;

/// A logged-in user's page.
pub fn page(
    svc: &Service,
    user: &UiSession,
    path: &str,
    req: &ApiRequest,
    sink: &dyn AuditSink,
) -> ApiResponse {
    let case_id = path.strip_prefix("cases/").map(str::to_string);
    if let Some(id) = case_id.as_deref().and_then(|p| p.strip_suffix("/report")) {
        return super::cases::report(svc, user, req, sink, id);
    }
    let (name, f): (&'static str, PageFn) = match path {
        "report" => return report(svc, user, req, sink),
        "cases" => ("cases", super::cases::list),
        p if p.starts_with("cases/") && !p[6..].contains('/') => ("case", |cx| {
            let id = cx
                .path
                .strip_prefix("cases/")
                .unwrap_or_default()
                .to_string();
            super::cases::view(cx, &id)
        }),
        "" => ("home", |_| Ok(())),
        "search" => ("search", search),
        "who" => ("who", who),
        "timeline" => ("timeline", timeline),
        "check" => ("check", check),
        "hunt" => ("hunt", hunt),
        _ => return error_page(user, 404, &format!("no page {path:?}")),
    };
    let mut cx = Cx {
        svc,
        req,
        sink,
        user,
        page: name,
        path: path.to_string(),
        params: crate::api::params_of(req.query.as_deref()),
        ctx: serde_json::Map::new(),
        audit_context: Vec::new(),
    };
    let title = NAV
        .iter()
        .find(|(p, ..)| *p == name)
        .map_or(if name == "case" { "Case" } else { "Start" }, |(_, l, _)| l);
    cx.set("title", json!(title));
    let form: BTreeMap<String, String> = cx.params.iter().cloned().collect();
    cx.set("form", json!(form));
    let status = match f(&mut cx) {
        Ok(()) => 200,
        Err(s) => {
            cx.set("error", json!(s.error));
            s.status
        }
    };
    cx.set("user", user_json(user, svc));
    cx.set("nav", nav_json());
    cx.set("page", json!(name));
    html(
        status,
        render(&format!("{name}.html"), &Value::Object(cx.ctx)),
    )
}

/// The incident report (`report --format html`, the CLI's own rendering, styled for reading
/// and printing), as the API answers it: the site's and the CSIRT's; a VO role gets the API's
/// refusal (its report is JSON only, scoped).
fn report(svc: &Service, user: &UiSession, req: &ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let mut p: Params = crate::api::params_of(req.query.as_deref())
        .into_iter()
        .filter(|(k, v)| ["ip", "host", "at", "discovered"].contains(&k.as_str()) && !v.is_empty())
        .collect();
    p.push(("format".into(), "html".into()));
    let get = ApiRequest {
        method: "GET".into(),
        endpoint: "report".into(),
        query: None,
        authorization: None,
        accept: None,
        peer: req.peer,
        cookie: None,
        content_type: None,
        secure: req.secure,
        body: Vec::new(),
    };
    match svc.query(
        Ok(user.identity()),
        "report",
        &p,
        &get,
        sink,
        Some(("report", &Vec::new())),
    ) {
        Reply::Raw(ct, bytes) => ApiResponse {
            status: 200,
            content_type: ct,
            body: serve::api::ApiBody::Full(bytes),
            // The report is a standalone document with its own inline stylesheet; no script.
            headers: vec![
                ("cache-control", "no-store".into()),
                (
                    "content-security-policy",
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'".into(),
                ),
            ],
        },
        Reply::Json(status, v) => error_page(
            user,
            if status == 200 { 500 } else { status },
            v["error"].as_str().unwrap_or("no report"),
        ),
        Reply::Lines(_) | Reply::Response(_) => error_page(user, 500, "no report"),
    }
}

fn ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

fn shift(t: &str, secs: i64) -> String {
    ts(t)
        .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(secs)).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Search: query box, time window, histogram, facets, hits marked by observer and trust,
/// surrounding records.
fn search(cx: &mut Cx) -> Result<(), Shown> {
    let keys = ["q", "from", "to", "host", "app", "class"];
    let asked = keys.iter().any(|k| cx.get(k).is_some()) || cx.get("observer").is_some();
    if !asked {
        return Ok(());
    }
    let mut p = cx.pass(&keys);
    if cx.get("q").is_none() {
        // Filters alone (a facet, surrounding records): everything they let through.
        p.push(("q".into(), "*".into()));
    }
    p.push(("limit".into(), SEARCH_EXAMINED.to_string()));
    // The record whose surrounding records these are, into the audit record (`ui_around`).
    if let Some(a) = cx.get("around").map(str::to_string) {
        cx.audit_context.push(("around".into(), a));
    }
    let v = cx.ask("search", p)?;
    let observer = cx.get("observer").map(str::to_string);
    // `SEQ`, or `SEQ/F.R` for one flow of a datagram (its flows share the datagram's SEQ).
    let around: Option<String> = cx.get("around").map(str::to_string);
    let all = v["hits"].as_array().cloned().unwrap_or_default();
    let examined = all.len();
    let hits: Vec<&Value> = all
        .iter()
        .filter(|h| observer.as_deref().is_none_or(|o| h["observer"] == o))
        .collect();
    // The current filters, to build facet and bar links from.
    let current: Vec<(String, String)> = keys
        .iter()
        .chain(["observer"].iter())
        .filter_map(|k| cx.get(k).map(|v| ((*k).to_string(), v.to_string())))
        .collect();
    let link_with = |k: &str, v: Option<&str>, extra: &[(&str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = current
            .iter()
            .filter(|(n, _)| n != k && !extra.iter().any(|(e, _)| e == n))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(v) = v {
            pairs.push((k, v));
        }
        pairs.extend_from_slice(extra);
        href("search", &pairs)
    };
    // Facets over what was examined (after the observer filter).
    let mut facets = Vec::new();
    for field in ["observer", "class", "host", "app"] {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for h in &hits {
            if let Some(s) = h[field].as_str() {
                *counts.entry(s.to_string()).or_default() += 1;
            }
        }
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let active = cx.get(field).map(str::to_string);
        let values: Vec<Value> = counts
            .iter()
            .take(15)
            .map(|(val, n)| {
                let on = active.as_deref() == Some(val.as_str());
                json!({
                    "value": val,
                    "count": n,
                    "active": on,
                    "href": if on { link_with(field, None, &[]) } else { link_with(field, Some(val), &[]) },
                })
            })
            .collect();
        facets.push(
            json!({"field": field, "values": values, "more": counts.len().saturating_sub(15)}),
        );
    }
    // The histogram over the hits' times.
    let times: Vec<jiff::Timestamp> = hits
        .iter()
        .filter_map(|h| h["time"].as_str().and_then(ts))
        .collect();
    let mut bars = Vec::new();
    if let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) {
        let span = (hi.as_millisecond() - lo.as_millisecond()).max(1);
        let width = (span / BARS as i64).max(1);
        let mut n = vec![0usize; BARS];
        for t in &times {
            let i = ((t.as_millisecond() - lo.as_millisecond()) / width) as usize;
            n[i.min(BARS - 1)] += 1;
        }
        let peak = n.iter().copied().max().unwrap_or(1).max(1);
        for (i, c) in n.iter().enumerate() {
            let from = jiff::Timestamp::from_millisecond(lo.as_millisecond() + width * i as i64)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let to = jiff::Timestamp::from_millisecond(if i + 1 == BARS {
                hi.as_millisecond() + 1
            } else {
                lo.as_millisecond() + width * (i as i64 + 1)
            })
            .map(|t| t.to_string())
            .unwrap_or_default();
            bars.push(json!({
                "count": c,
                "level": (c * 10).div_ceil(peak),
                "from": from,
                "to": to,
                "href": link_with("from", Some(&from), &[("to", &to)]),
            }));
        }
    }
    let shown: Vec<Value> = hits
        .iter()
        .take(SEARCH_SHOWN)
        .map(|h| {
            let obs = h["observer"].as_str().unwrap_or("");
            let time = h["time"].as_str().unwrap_or("");
            let host = h["host"].as_str().unwrap_or("");
            let seq = h["seq"].as_u64().unwrap_or(0);
            let cite = cite_of(h);
            let from = shift(time, -AROUND_SECONDS);
            let to = shift(time, AROUND_SECONDS);
            let around_href = (!host.is_empty()).then(|| {
                href(
                    "search",
                    &[("host", host), ("from", &from), ("to", &to), ("around", &cite)],
                )
            });
            let here = around.as_deref() == Some(cite.as_str());
            json!({
                "seq": seq,
                "cite": cite,
                "time": time,
                "reported": h["reported"]["text"].as_str().filter(|_| h["reported"]["time"] != h["time"]),
                "observer": obs,
                "trust": trust(obs),
                "class": h["class"],
                "host": host,
                "app": h["app"],
                "message": h["message"],
                "vm": h["fields"]["vm_uuid"],
                "issues": h["issues"],
                "around": around_href,
                "here": here,
            })
        })
        .collect();
    cx.set(
        "search",
        json!({
            "total": v["total"],
            "truncated": v["truncated"],
            "examined": examined,
            "matching": hits.len(),
            "shown": shown.len(),
            "facets": facets,
            "bars": bars,
            "hits": shown,
            "around": cx.get("around"),
            "clear_observer": observer.as_ref().map(|_| link_with("observer", None, &[])),
        }),
    );
    cx.offer_cases("search", &keys);
    Ok(())
}

/// "Surrounding records" of a record: ±[`AROUND_SECONDS`] on its host (else its observer),
/// this one marked.
pub(crate) fn around_href(host: &str, time: &str, observer: &str, seq: &str) -> String {
    let from = shift(time, -AROUND_SECONDS);
    let to = shift(time, AROUND_SECONDS);
    if host.is_empty() {
        href(
            "search",
            &[
                ("from", &from),
                ("to", &to),
                ("observer", observer),
                ("around", seq),
            ],
        )
    } else {
        href(
            "search",
            &[
                ("host", host),
                ("from", &from),
                ("to", &to),
                ("around", seq),
            ],
        )
    }
}

/// How a page cites a record, and what its star button sends: `SEQ`, or `SEQ/F.R` for a flow
/// of the datagram at SEQ (an answer's `seq` + `flow`).
pub(super) fn cite_of(v: &Value) -> String {
    let seq = v["seq"].as_u64().unwrap_or(0);
    match v.get("flow") {
        Some(f) if f.is_object() => format!("{seq}/{}.{}", f["flowset"], f["record"]),
        _ => seq.to_string(),
    }
}

/// Links for one piece of evidence (a record by seq and time): the records around it, this
/// one (`SEQ`, or `SEQ/F.R` for a flow) marked.
fn evidence_links(e: &Value) -> Value {
    let time = e["time"].as_str().unwrap_or("");
    let cite = e["seq"].as_u64().map(|_| cite_of(e)).unwrap_or_default();
    let from = shift(time, -AROUND_SECONDS);
    let to = shift(time, AROUND_SECONDS);
    let obs = e["observer"].as_str().unwrap_or("");
    json!({
        "seq": e["seq"],
        "cite": cite_of(e),
        "time": time,
        "observer": obs,
        "trust": trust(obs),
        "source": e["source"],
        "summary": e["summary"],
        "href": href("search", &[("from", &from), ("to", &to), ("observer", obs), ("around", &cite)]),
    })
}

/// `who` as a card per match: VM, owner, project, VO, payload person, hypervisor, lease,
/// conflicts, evidence.
fn who(cx: &mut Cx) -> Result<(), Shown> {
    if cx.get("at").is_none() || !["ip", "host", "mac"].iter().any(|k| cx.get(k).is_some()) {
        return Ok(());
    }
    let at = cx.get("at").unwrap_or("").to_string();
    let v = cx.ask("who", cx.pass(&["ip", "host", "mac", "port", "peer", "at"]))?;
    let mut cards = Vec::new();
    for m in v["matches"].as_array().into_iter().flatten() {
        let uuid = m["vm"]["uuid"].as_str().unwrap_or("");
        let vos: Vec<&str> = m["payload_users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["vo"].as_str())
            .collect();
        cards.push(json!({
            "vm": m["vm"],
            "owner": m["owner"],
            "email": m["contain"]["project"]["owner_email"],
            "payload_users": m["payload_users"],
            "vos": vos,
            "lease": m["lease"],
            "ambiguous": m["ambiguous"],
            "conflicts": m["conflicts"],
            "contain": m["contain"],
            "evidence": m["evidence"].as_array().into_iter().flatten().map(evidence_links).collect::<Vec<_>>(),
            "timeline": href("timeline", &[("vm", uuid)]),
            "report": href("report", &[
                ("ip", cx.get("ip").unwrap_or("")),
                ("host", cx.get("host").unwrap_or("")),
                ("at", &at),
            ]),
            "timeline_around": href("timeline", &[("vm", uuid), ("from", &shift(&at, -3600)), ("to", &shift(&at, 3600))]),
        }));
    }
    cx.set(
        "who",
        json!({"query": v["query"], "cards": cards, "integrity": {
            "tree_size": v["integrity"]["tree_size"],
            "records": v["integrity"]["records"].as_array().map_or(0, Vec::len),
        }}),
    );
    cx.offer_cases("who", &["ip", "host", "mac", "port", "peer", "at"]);
    Ok(())
}

/// The lane an entry is drawn in (its observer; an unknown observer goes to `collector`).
fn lane_of(observer: &str) -> usize {
    LANES
        .iter()
        .position(|l| *l == observer)
        .unwrap_or(LANES.len() - 1)
}

/// A timeline of a VM / address / host / user: one lane per observer, lease hand-overs and
/// migrations drawn across the lanes, both times shown where the source's clock lies.
fn timeline(cx: &mut Cx) -> Result<(), Shown> {
    if !["vm", "ip", "host", "user"]
        .iter()
        .any(|k| cx.get(k).is_some())
    {
        return Ok(());
    }
    // Rows `row..row + TIMELINE_ROWS` of the timeline: each underlying search's first
    // `row + TIMELINE_ROWS` entries by time (the verb's own `limit`, so the API and the CLI
    // answer the same with it) hold them exactly — an entry among the first N of the merge
    // is among the first N of its search. Fetching and attributing thousands of records per
    // search is what a busy VM's page spent its time on; the lanes need none of them.
    let mut p = cx.pass(&["vm", "ip", "host", "user", "claimed", "from", "to"]);
    let row = cx
        .get("row")
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(0)
        .min(TIMELINE_ALL - TIMELINE_ROWS);
    let limit = cx
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(TIMELINE_FIRST)
        .max(row + TIMELINE_ROWS)
        .to_string();
    p.push(("limit".into(), limit.clone()));
    p.push(("lanes".into(), LANE_SLICES.to_string()));
    let v = cx.ask("timeline", p)?;
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    let times: Vec<Option<jiff::Timestamp>> = entries
        .iter()
        .map(|e| e["time"].as_str().and_then(ts))
        .collect();
    // The whole window's counts per observer and slice (absent for a VO, whose answer
    // cannot carry records before attribution: its lanes are its entries).
    let counted = v
        .get("lanes")
        .filter(|l| l["total"].as_u64().unwrap_or(0) > 0);
    let bound = |k: &str| {
        counted
            .and_then(|l| l[k].as_str())
            .and_then(ts)
            .map(|t| t.as_millisecond())
    };
    let ms = || times.iter().flatten().map(|t| t.as_millisecond());
    let lo = ms().chain(bound("first")).min();
    let hi = ms().chain(bound("last")).max();
    let (lo, hi) = (lo.unwrap_or(0), hi.unwrap_or(0));
    let span = (hi - lo).max(1) as f64;
    let x = |t: &Option<jiff::Timestamp>| {
        t.map_or(0.0, |t| {
            ((t.as_millisecond() - lo) as f64 / span * 1000.0).round() / 10.0
        })
    };
    let mut dots: BTreeMap<(usize, i64, bool, bool), (String, usize)> = BTreeMap::new();
    let mut marks = Vec::new();
    let mut rows = Vec::new();
    let mut per_lane = [0usize; LANES.len()];
    if let Some(l) = counted {
        let (first, last) = (bound("first").unwrap_or(lo), bound("last").unwrap_or(hi));
        let slices = l["slices"].as_u64().unwrap_or(1).max(1) as i64;
        let width = (last - first + 1) as f64 / slices as f64;
        for (obs, counts) in l["counts"].as_object().into_iter().flatten() {
            let lane = lane_of(obs);
            for (i, n) in counts.as_array().into_iter().flatten().enumerate() {
                let n = n.as_u64().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                per_lane[lane] += n as usize;
                let from = first + (i as f64 * width) as i64;
                let to = first + ((i + 1) as f64 * width) as i64;
                let pos = x(&jiff::Timestamp::from_millisecond((from + to) / 2).ok());
                let fmt = |ms| {
                    jiff::Timestamp::from_millisecond(ms)
                        .map(|t| t.strftime("%H:%M:%S").to_string())
                        .unwrap_or_default()
                };
                dots.insert(
                    (lane, (pos * 10.0) as i64, false, false),
                    (
                        format!(
                            "{n} {obs} record{} {}–{}",
                            if n == 1 { "" } else { "s" },
                            fmt(from),
                            fmt(to)
                        ),
                        1,
                    ),
                );
            }
        }
    }
    for (k, (e, t)) in entries.iter().zip(&times).enumerate() {
        let obs = e["observer"].as_str().unwrap_or("collector");
        let lane = lane_of(obs);
        let kind = e["kind"].as_str().unwrap_or("");
        // Counted in the lanes already, but for facts (entries only).
        if counted.is_none() || kind == "fact" {
            per_lane[lane] += 1;
        }
        let summary = e["summary"].as_str().unwrap_or("");
        // The source's own claim of time, kept beside the collector's (`[reported T]`).
        let (text, reported) = match summary.rsplit_once(" [reported ") {
            Some((s, r)) => (s, r.strip_suffix(']')),
            None => (summary, None),
        };
        let source = e["source"].as_str().unwrap_or("");
        let lower = text.to_ascii_lowercase();
        let mark = if kind == "fact" && source == "lease" {
            Some("lease")
        } else if (kind == "fact" && source == "placement" && text.contains(" moves from "))
            || lower.contains("migrat")
        {
            Some("migration")
        } else {
            None
        };
        let pos = x(t);
        if let Some(m) = mark {
            marks.push(json!({"x": pos, "kind": m, "time": e["time"], "summary": text}));
        }
        // One mark per lane, 0.1 % of the width, kind and clock: a day of a busy VM is
        // thousands of entries; the page stays small and the lanes look the same. With the
        // window's counts drawn, an event entry adds a mark of its own only where its
        // source's clock disagrees (shown apart).
        let drawn_by_its_slice = counted.is_some() && kind == "event" && reported.is_none();
        if !drawn_by_its_slice {
            let key = (
                lane,
                (pos * 10.0) as i64,
                kind == "fact",
                reported.is_some(),
            );
            match dots.get_mut(&key) {
                Some((_, n)) => *n += 1,
                None => {
                    dots.insert(
                        key,
                        (
                            format!("{} {}: {}", e["time"].as_str().unwrap_or(""), obs, text),
                            1usize,
                        ),
                    );
                }
            }
        }
        if k >= row && rows.len() < TIMELINE_ROWS {
            let vm = e["attribution"]["vm"].as_str().unwrap_or("");
            rows.push(json!({
                "time": e["time"],
                "reported": reported,
                "observer": obs,
                "trust": trust(obs),
                "kind": kind,
                "mark": mark,
                "source": source,
                "summary": text,
                "seq": e["seq"],
                "cite": cite_of(e),
                "vm": vm,
                "how": e["attribution"]["how"],
                "vm_href": (!vm.is_empty()).then(|| href("timeline", &[("vm", vm)])),
                "around": evidence_links(e)["href"],
            }));
        }
    }
    let lanes: Vec<Value> = LANES
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"name": l, "index": i, "count": per_lane[i], "trust": trust(l)}))
        .collect();
    let fmt = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    cx.set(
        "timeline",
        json!({
            "query": v["query"],
            "follows": v["follows"],
            "count": entries.len(),
            "records": counted.map(|l| &l["total"]),
            "row": row + 1,
            "truncated": v["truncated"],
            "first": (!entries.is_empty()).then(|| fmt(lo)),
            "last": (!entries.is_empty()).then(|| fmt(hi)),
            "lanes": lanes,
            "dots": dots.into_iter().map(|((lane, x10, fact, lied), (title, n))| json!({
                "lane": lane,
                "x": x10 as f64 / 10.0,
                "kind": if fact { "fact" } else { "event" },
                "reported": lied,
                "title": if n > 1 { format!("{title} (and {} more here)", n - 1) } else { title },
            })).collect::<Vec<_>>(),
            "marks": marks,
            "rows": rows,
            "limit": limit,
            "previous": (row > 0).then(|| rows_at(cx, row.saturating_sub(TIMELINE_ROWS))),
            "next": ((entries.len() > row + TIMELINE_ROWS || v["truncated"] == true)
                && row + 2 * TIMELINE_ROWS <= TIMELINE_ALL)
                .then(|| rows_at(cx, row + TIMELINE_ROWS)),
        }),
    );
    cx.offer_cases(
        "timeline",
        &["vm", "ip", "host", "user", "claimed", "from", "to"],
    );
    Ok(())
}

/// The timeline page listing rows from `row` on.
fn rows_at(cx: &Cx, row: usize) -> String {
    let mut pairs = cx.pass(&["vm", "ip", "host", "user", "claimed", "from", "to"]);
    if row > 0 {
        pairs.push(("row".into(), row.to_string()));
    }
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    href("timeline", &pairs)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

/// Where an entity a finding names leads: a VM to its timeline, an address to `who` at the
/// finding's time, anything else to a search.
fn entity_link(entity: &str, time: &str) -> Value {
    let bare = entity.split('@').next().unwrap_or(entity);
    let link = if is_uuid(bare) || bare.starts_with("one-") {
        href("timeline", &[("vm", bare)])
    } else if bare.parse::<std::net::IpAddr>().is_ok() && !time.is_empty() {
        href("who", &[("ip", bare), ("at", time)])
    } else {
        href("search", &[("q", bare)])
    };
    json!({"text": entity, "href": link})
}

/// How often a check page whose answer is still being computed reloads itself.
const CHECK_REFRESH_SECONDS: u64 = 2;

/// The `check` findings, each linking to its entities and evidence.
fn check(cx: &mut Cx) -> Result<(), Shown> {
    let v = cx.ask("check", cx.pass(&["from", "to"]))?;
    let findings: Vec<Value> = v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let time = f["time"].as_str().unwrap_or("");
            json!({
                "kind": f["kind"],
                "time": time,
                "summary": f["summary"],
                "count": f["count"],
                "entities": f["entities"].as_array().into_iter().flatten()
                    .filter_map(Value::as_str).map(|e| entity_link(e, time)).collect::<Vec<_>>(),
                "evidence": f["evidence"].as_array().into_iter().flatten().map(evidence_links).collect::<Vec<_>>(),
            })
        })
        .collect();
    // A check still running (`api::checkjobs`): the page reloads itself until it is done.
    let standing = v["standing"].as_str().unwrap_or("current");
    if standing != "current" {
        cx.set("refresh", json!(CHECK_REFRESH_SECONDS));
    }
    let behind = v["ledger_last"]
        .as_u64()
        .zip(v["holds_to"].as_u64())
        .map_or(0, |(l, h)| l.saturating_sub(h));
    cx.set(
        "check",
        json!({"findings": findings, "by_kind": v["by_kind"], "examined": v["examined"],
               "computed": v["computed"], "standing": standing, "holds_to": v["holds_to"],
               "behind": behind, "running_since": v["running_since"]}),
    );
    Ok(())
}

/// `hunt`: indicators (one a line) → hits, each linking to who / timeline / search.
fn hunt(cx: &mut Cx) -> Result<(), Shown> {
    let Some(text) = cx.get("indicators").map(str::to_string) else {
        return Ok(());
    };
    let mut p: Params = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| ("indicator".to_string(), l.to_string()))
        .collect();
    p.extend(cx.pass(&["from", "to"]));
    // The page lists SEARCH_SHOWN hits: asking for more per indicator only costs (each hit is
    // attributed, a `who` apiece).
    p.push(("limit".into(), SEARCH_SHOWN.to_string()));
    let v = cx.ask("hunt", p)?;
    let hits: Vec<Value> = v["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .take(SEARCH_SHOWN)
        .map(|h| {
            let time = h["time"].as_str().unwrap_or("");
            let obs = h["observer"].as_str().unwrap_or("");
            let vms: Vec<Value> = h["matches"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["vm"]["uuid"].as_str())
                .map(|u| json!({"uuid": u, "href": href("timeline", &[("vm", u)])}))
                .collect();
            let ind = h["indicator"].as_str().unwrap_or("");
            let who_href = ind
                .parse::<std::net::IpAddr>()
                .is_ok()
                .then(|| href("who", &[("ip", ind), ("at", time)]));
            json!({
                "indicator": ind,
                "time": time,
                "observer": obs,
                "trust": trust(obs),
                "summary": h["summary"],
                "vms": vms,
                "who": who_href,
                "around": evidence_links(h)["href"],
            })
        })
        .collect();
    let total = v["hits"].as_array().map_or(0, Vec::len);
    cx.set(
        "hunt",
        json!({"hits": hits, "total": total, "truncated": v["truncated"], "shown": hits.len()}),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        let e = env();
        for name in [
            "base.html",
            "login.html",
            "home.html",
            "error.html",
            "search.html",
            "who.html",
            "timeline.html",
            "check.html",
            "hunt.html",
            "cases.html",
            "case.html",
        ] {
            assert!(e.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn escaping_is_on_for_html() {
        let out = render(
            "error.html",
            &json!({"title": "t", "error": "<script>x</script>", "nav": []}),
        );
        assert!(out.contains("&lt;script&gt;x&lt;"), "{out}");
        assert!(!out.contains("<script>x"));
    }

    #[test]
    fn entity_links_go_where_the_entity_is_answered() {
        assert_eq!(
            entity_link("10.42.0.15@archive", "2026-10-14T00:13:48Z")["href"],
            "/ui/who?ip=10.42.0.15&at=2026-10-14T00%3A13%3A48Z"
        );
        assert_eq!(
            entity_link("fc9b63a7-1589-4067-86b4-93d7937fc201", "")["href"],
            "/ui/timeline?vm=fc9b63a7-1589-4067-86b4-93d7937fc201"
        );
        assert_eq!(entity_link("wn-005", "")["href"], "/ui/search?q=wn-005");
    }

    #[test]
    fn vm_lines_are_forgeable() {
        assert_eq!(trust("vm"), "forgeable");
        assert_eq!(trust("hypervisor"), "site");
    }
}
