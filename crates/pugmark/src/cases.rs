//! Cases (issue 14, like Timesketch's sketch): a title, an owner, members (named users and/or
//! VOs), saved queries, starred records, annotations and tags — shared by the query API
//! (`GET/POST /api/v1/cases…`, in `api/mod.rs`) and `pugmark case` (`cli/case.rs`).
//!
//! **The ledger is the truth.** Every change is an audit record (`api::audit::Audit` with a
//! `change`: `{"op": "create"|"share"|"star"|"unstar"|"annotate"|"tag"|"query", "case", …}`),
//! observer `collector`, durable before it is answered, so annotations are tamper-evident and
//! `pugmark audit` lists who changed what. `DATA/cases.sqlite` (`views::cases::CaseStore`) is
//! only their fold: [`sync`] applies the audit records past the store's last position (read
//! like `pugmark audit`: only observer `collector` records count), [`rebuild`] deletes it and
//! folds the whole ledger (`pugmark reindex` does).
//!
//! **Who may see what.** [`access`]: site everything (read and write); the owner, a named
//! member (name or subject), a member of a VO the case is shared with: read and write; csirt:
//! read-only; nobody else (answered like an unknown case). Whatever the access, a VO role sees
//! only its own VO's records through a case ([`view`] applies the VO scope to every record
//! shown: a star or annotation on another VO's record is not shown), and saved questions are
//! answered with the asker's role ([`report()`]).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};
use serve::config::ApiRole;
use views::cases::{Case, CaseStore, Change, Made};

use crate::api::scope::Scope;
use crate::cli::report::{self, ReportFormat};
use pipeline::datadir::DataDir;

/// The store's file in the data directory.
pub const FILE: &str = "cases.sqlite";

/// Verbs a case may save a question for.
pub const QUERY_VERBS: [&str; 6] = ["who", "report", "search", "timeline", "check", "hunt"];

pub fn path(dd: &DataDir) -> PathBuf {
    dd.root().join(FILE)
}

/// Who acts on a case.
pub struct Actor {
    pub name: String,
    pub subject: Option<String>,
    pub roles: Vec<ApiRole>,
}

impl Actor {
    fn is(&self, who: &str) -> bool {
        self.name == who || self.subject.as_deref() == Some(who)
    }
    fn site(&self) -> bool {
        self.roles.iter().any(|r| matches!(r, ApiRole::Site))
    }
    fn csirt(&self) -> bool {
        self.roles.iter().any(|r| matches!(r, ApiRole::Csirt))
    }
    fn vos(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().filter_map(|r| match r {
            ApiRole::Vo(n) => Some(n.as_str()),
            _ => None,
        })
    }
    /// Whether this actor may create cases (everyone with a role but a csirt-only one).
    pub fn may_create(&self) -> bool {
        self.site() || self.vos().next().is_some()
    }
}

/// What an actor may do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    Read,
    Write,
}

/// The actor's access to `c` (module docs).
pub fn access(c: &Case, a: &Actor) -> Access {
    if a.site()
        || a.is(&c.owner)
        || c.owner_subject.as_deref().is_some_and(|s| a.is(s))
        || c.users.iter().any(|u| a.is(u))
        || a.vos().any(|v| c.vos.iter().any(|x| x == v))
    {
        Access::Write
    } else if a.csirt() {
        Access::Read
    } else {
        Access::None
    }
}

/// A new case id: `case-` and 12 hex digits of a hash of the time, the process and a counter.
pub fn new_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = model::Received::now().timestamp().as_nanosecond();
    let h = blake3::hash(format!("{t}/{}/{n}", std::process::id()).as_bytes());
    format!("case-{}", &h.to_hex()[..12])
}

/// The store, caught up with the ledger's case changes.
pub fn sync(dd: &DataDir) -> anyhow::Result<CaseStore> {
    let p = path(dd);
    let mut store =
        CaseStore::open(&p).with_context(|| format!("opening case store {}", p.display()))?;
    let last = store.last_seq()?;
    let changes: Vec<(Made, Change)> = crate::api::audit::list(dd, None, None, None)?
        .into_iter()
        .filter(|l| l.seq > last && l.audit.get("status").and_then(Value::as_u64) == Some(200))
        .filter_map(|l| {
            let c: Change = serde_json::from_value(l.audit.get("change")?.clone()).ok()?;
            let s = |k: &str| l.audit.get(k).and_then(Value::as_str).map(str::to_string);
            Some((
                Made {
                    seq: l.seq,
                    time: l.time.clone(),
                    by: s("user").unwrap_or_else(|| "-".into()),
                    subject: s("subject"),
                },
                c,
            ))
        })
        .collect();
    if !changes.is_empty() {
        store.apply(&changes)?;
    }
    Ok(store)
}

/// Deletes the store and folds every case change of the ledger again.
pub fn rebuild(dd: &DataDir) -> anyhow::Result<CaseStore> {
    let p = path(dd);
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", p.display()));
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
        }
    }
    sync(dd)
}

/// A case's summary for lists.
pub fn summary(c: &Case) -> Value {
    json!({
        "id": c.id, "title": c.title, "owner": c.owner, "created": c.created,
        "users": c.users, "vos": c.vos, "tags": c.tags,
        "queries": c.queries.len(), "stars": c.stars.len(), "annotations": c.annotations.len(),
    })
}

/// Reads records by position and says whose they are.
pub struct Records {
    fetch: pipeline::LedgerFetch,
    flows: Option<std::sync::Arc<flowstore::FlowStore>>,
    len: u64,
    site: Option<query::attrib::Site>,
}

impl Records {
    pub fn open(dd: &DataDir, scope: Option<&Scope>) -> anyhow::Result<Records> {
        let reader = ledger::LedgerReader::open(&dd.ledger())
            .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
        let len = reader.len();
        let site = match scope {
            Some(_) => None,
            None => {
                let store = views::facts::FactStore::open(dd.facts())
                    .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
                Some(query::attrib::Site::load(&store)?)
            }
        };
        // Flows are rows of the flow store, cited by their datagram (none: no flow to show).
        let flows = pipeline::open_flows(dd).ok().map(std::sync::Arc::new);
        Ok(Records {
            fetch: pipeline::LedgerFetch::new(reader).with_flows(flows.clone()),
            flows,
            len,
            site,
        })
    }

    /// [`Records::get`] for a record, or for a flow of the datagram at `seq` when `flow`
    /// says its place there (`F.R`): `"seq"` is then the datagram's and `"flow"` the place.
    pub fn get_at(&mut self, seq: u64, flow: Option<&str>, scope: Option<&Scope>) -> Option<Value> {
        let Some(flow) = flow else {
            return self.get(seq, scope);
        };
        let at = flow.parse::<model::flow::FlowAt>().ok()?;
        if seq == 0 || seq > self.len {
            return None;
        }
        let row = self.flows.as_ref()?.find(seq, at).ok()??;
        let mut v = self.get_pos(row.position()?, scope)?;
        v["seq"] = json!(seq);
        v["flow"] = json!({"flowset": at.flowset, "record": at.record});
        Some(v)
    }

    /// The record at `seq` as JSON (with its attribution), or `None` when there is no such
    /// record or the scope may not see it.
    pub fn get(&mut self, seq: u64, scope: Option<&Scope>) -> Option<Value> {
        if seq == 0 || seq > self.len {
            return None;
        }
        self.get_pos(seq, scope)
    }

    /// The record (or derived flow) at position `seq` as JSON, if the scope may see it.
    fn get_pos(&mut self, seq: u64, scope: Option<&Scope>) -> Option<Value> {
        use query::search::Fetch;
        let e = self.fetch.fetch(seq).ok()?;
        let attribution = match (scope, &self.site) {
            (Some(s), _) => {
                let a = s.site.attribute(&e);
                if !a.vm.as_deref().is_some_and(|v| s.owns(v)) {
                    return None;
                }
                a
            }
            (None, Some(site)) => site.attribute(&e),
            (None, None) => return None,
        };
        Some(json!({
            "seq": seq,
            "time": e.placed().to_string(),
            "observer": e.observer,
            "host": e.host,
            "app": e.app,
            "class": e.class,
            "message": e.message,
            "attribution": attribution,
        }))
    }
}

/// The case as its viewer may see it: `{"id", "title", "owner", "owner_subject", "created",
/// "created_seq", "users", "vos", "tags", "queries": [{"verb", "params", "title", "by",
/// "time", "seq"}], "stars": [{"record": RECORD, "by", "time", "seq"}], "annotations":
/// [{"record": RECORD|null, "text", "by", "time", "seq"}], "record_tags": [...], "access":
/// "read"|"write"}` where RECORD is `{"seq", "time", "observer", "host", "app", "class",
/// "message", "attribution"}`. Under a VO scope, what concerns a record the VO may not see
/// is left out.
pub fn view(dd: &DataDir, c: &Case, scope: Option<&Scope>, acc: Access) -> anyhow::Result<Value> {
    let mut recs = Records::open(dd, scope)?;
    let made = |m: &Made| json!({"by": m.by, "subject": m.subject, "time": m.time, "seq": m.seq});
    let with = |m: &Made, extra: Value| {
        let mut v = made(m);
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        v
    };
    let queries: Vec<Value> = c
        .queries
        .iter()
        .map(|q| {
            let params: Value = serde_json::from_str(&q.params).unwrap_or(Value::Null);
            with(
                &q.made,
                json!({"verb": q.verb, "params": params, "title": q.title}),
            )
        })
        .collect();
    let mut stars = Vec::new();
    for s in &c.stars {
        if let Some(r) = recs.get_at(s.record, s.flow.as_deref(), scope) {
            stars.push(with(&s.made, json!({ "record": r })));
        }
    }
    let mut annotations = Vec::new();
    for a in &c.annotations {
        let record = match a.record {
            None => Value::Null,
            Some(seq) => match recs.get_at(seq, a.flow.as_deref(), scope) {
                Some(r) => r,
                None => continue,
            },
        };
        annotations.push(with(&a.made, json!({"record": record, "text": a.text})));
    }
    let mut record_tags = Vec::new();
    for t in &c.record_tags {
        if recs.get_at(t.record, t.flow.as_deref(), scope).is_some() {
            let mut v = json!({"record": t.record, "tag": t.tag});
            if let Some(f) = &t.flow {
                v["flow"] = json!(f);
            }
            record_tags.push(with(&t.made, v));
        }
    }
    Ok(json!({
        "id": c.id, "title": c.title, "owner": c.owner, "owner_subject": c.owner_subject,
        "created": c.created, "created_seq": c.created_seq, "users": c.users, "vos": c.vos,
        "tags": c.tags, "queries": queries, "stars": stars, "annotations": annotations,
        "record_tags": record_tags,
        "access": if acc == Access::Write { "write" } else { "read" },
    }))
}

/// The record at `seq` if the actor may star or annotate it (it exists; the VO's own under
/// a VO scope).
pub fn cite(
    dd: &DataDir,
    seq: u64,
    flow: Option<&str>,
    scope: Option<&Scope>,
) -> anyhow::Result<Option<Value>> {
    Ok(Records::open(dd, scope)?.get_at(seq, flow, scope))
}

/// Validates a saved question: a known verb whose parameters the verb's own CLI parser
/// accepts (as the API would run it). `params`: a JSON object of strings.
pub fn check_query(dd: &DataDir, verb: &str, params: &Value) -> Result<(), String> {
    if !QUERY_VERBS.contains(&verb) {
        return Err(format!(
            "a case saves questions of {}: not {verb:?}",
            QUERY_VERBS.join(", ")
        ));
    }
    let p = params_of(params)?;
    crate::api::check_params(verb, &p, dd.root())
}

/// `{"k": "v" | ["v", …]}` as query-string pairs.
pub fn params_of(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(m) = v else {
        return Err("params must be an object of strings".into());
    };
    let mut out = Vec::new();
    for (k, x) in m {
        match x {
            Value::String(s) => out.push((k.clone(), s.clone())),
            Value::Number(n) => out.push((k.clone(), n.to_string())),
            Value::Bool(b) => out.push((k.clone(), b.to_string())),
            Value::Array(a) => {
                for y in a {
                    match y {
                        Value::String(s) => out.push((k.clone(), s.clone())),
                        _ => return Err(format!("params.{k}: strings only")),
                    }
                }
            }
            _ => return Err(format!("params.{k}: a string")),
        }
    }
    Ok(out)
}

/// One saved `who`/`report` question answered as the incident report (JSON), with its
/// Markdown/HTML rendering; both cut to a VO role's scope.
struct Answered {
    json: Value,
    rendered: Option<Vec<u8>>,
}

fn answer_question(
    dd: &DataDir,
    params: &Value,
    scope: Option<&Scope>,
    format: ReportFormat,
) -> Result<Answered, String> {
    let mut p: Vec<(String, String)> = params_of(params)?
        .into_iter()
        .filter(|(k, _)| matches!(k.as_str(), "ip" | "host" | "at" | "discovered"))
        .collect();
    p.push(("format".into(), "json".into()));
    let args: report::ReportArgs = crate::api::parse_verb("report", &p, dd.root())?;
    let (mut rep, mut v, dd2) = report::answer(&args).map_err(|e| format!("{e:#}"))?;
    if let Some(s) = scope {
        crate::api::scope::prune(&mut v, s, false);
        if v["vms"].as_array().is_none_or(Vec::is_empty) {
            return Err("not yours: nothing this role may see answers this question".into());
        }
        // md and html from the typed report, cut the same way (as `GET /api/v1/report`).
        rep = crate::api::scope::scope_report(&rep, s);
    }
    let rendered = match format {
        ReportFormat::Json => None,
        f => Some(report::render(&rep, &v, &dd2, f).map_err(|e| format!("{e:#}"))?),
    };
    Ok(Answered { json: v, rendered })
}

/// The case exported as the incident report: each saved `who`/`report` question answered
/// as `pugmark report` would (the answer, what to do, evidence), then the starred records
/// and the annotations. JSON: the [`view`] with `"questions": [{"verb", "params", "title",
/// "report"} | {…, "error"}]`; Markdown and HTML with each question's rendering (VO-scoped
/// like `GET /api/v1/report`'s). Returns the content type, the bytes and the JSON.
pub fn report(
    dd: &DataDir,
    c: &Case,
    scope: Option<&Scope>,
    acc: Access,
    format: ReportFormat,
) -> anyhow::Result<(&'static str, Vec<u8>, Value)> {
    let mut v = view(dd, c, scope, acc)?;
    let mut questions = Vec::new();
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for q in &c.queries {
        if q.verb != "who" && q.verb != "report" {
            continue;
        }
        let params: Value = serde_json::from_str(&q.params).unwrap_or(Value::Null);
        let label = question_label(&q.verb, &params, q.title.as_deref());
        let mut e = json!({"verb": q.verb, "params": params, "title": q.title});
        match answer_question(dd, &params, scope, format) {
            Ok(a) => {
                e["report"] = a.json;
                if let Some(r) = a.rendered {
                    parts.push((label, r));
                }
            }
            Err(why) => {
                parts.push((
                    label,
                    format!("The question could not be answered: {why}\n").into_bytes(),
                ));
                e["error"] = Value::String(why);
            }
        }
        questions.push(e);
    }
    v["questions"] = Value::Array(questions);
    let bytes = match format {
        ReportFormat::Json => {
            let mut b = serde_json::to_vec_pretty(&v)?;
            b.push(b'\n');
            return Ok(("application/json", b, v));
        }
        ReportFormat::Md => markdown(&v, &parts).into_bytes(),
        ReportFormat::Html => html(&v, &parts).into_bytes(),
    };
    Ok((
        if format == ReportFormat::Md {
            "text/markdown; charset=utf-8"
        } else {
            "text/html; charset=utf-8"
        },
        bytes,
        v,
    ))
}

fn question_label(verb: &str, params: &Value, title: Option<&str>) -> String {
    let mut s = verb.to_string();
    if let Value::Object(m) = params {
        for (k, v) in m {
            s.push_str(&format!(
                " {k}={}",
                v.as_str().map_or(v.to_string(), str::to_string)
            ));
        }
    }
    match title {
        Some(t) => format!("{t} ({s})"),
        None => s,
    }
}

fn rec_line(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
    format!(
        "#{} {} {} {} {}: {}",
        r["seq"],
        s("time"),
        s("observer"),
        s("host"),
        s("app"),
        s("message")
    )
}

fn header_md(v: &Value) -> String {
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "# Case {}: {}\n\nOwner {}, opened {} (ledger record #{}). Shared with users: {}; VOs: {}. Tags: {}.\n\n",
        v["id"].as_str().unwrap_or("-"),
        v["title"].as_str().unwrap_or("-"),
        v["owner"].as_str().unwrap_or("-"),
        v["created"].as_str().unwrap_or("-"),
        v["created_seq"],
        list("users"),
        list("vos"),
        list("tags"),
    )
}

fn tail_md(v: &Value) -> String {
    let mut md = String::from("## Starred records\n\n");
    let stars = v["stars"].as_array().cloned().unwrap_or_default();
    if stars.is_empty() {
        md.push_str("None.\n");
    }
    for s in &stars {
        md.push_str(&format!(
            "- `{}` (starred by {} at {})\n",
            rec_line(&s["record"]).replace('`', "'"),
            s["by"].as_str().unwrap_or("-"),
            s["time"].as_str().unwrap_or("-")
        ));
    }
    md.push_str("\n## Annotations\n\n");
    let notes = v["annotations"].as_array().cloned().unwrap_or_default();
    if notes.is_empty() {
        md.push_str("None.\n");
    }
    for a in &notes {
        let on = match a["record"]["seq"].as_u64() {
            Some(s) => format!("on record #{s}"),
            None => "on the case".into(),
        };
        md.push_str(&format!(
            "- {} {} at {} (ledger record #{}): {}\n",
            a["by"].as_str().unwrap_or("-"),
            on,
            a["time"].as_str().unwrap_or("-"),
            a["seq"],
            a["text"].as_str().unwrap_or("")
        ));
    }
    md
}

fn markdown(v: &Value, parts: &[(String, Vec<u8>)]) -> String {
    let mut md = header_md(v);
    for (label, body) in parts {
        md.push_str(&format!("## Question: {label}\n\n"));
        // The report's own headings one level down, under the question.
        for line in String::from_utf8_lossy(body).lines() {
            if line.starts_with('#') {
                md.push('#');
            }
            md.push_str(line);
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str(&tail_md(v));
    md
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(v: &Value, parts: &[(String, Vec<u8>)]) -> String {
    let mut style = String::new();
    let mut body = String::new();
    for (label, b) in parts {
        let page = String::from_utf8_lossy(b);
        if style.is_empty()
            && let (Some(s), Some(e)) = (page.find("<style>"), page.find("</style>"))
            && s < e
        {
            style = page[s..e + 8].to_string();
        }
        body.push_str(&format!(
            "<section class=\"question\"><h2>Question: {}</h2>\n",
            esc(label)
        ));
        match (page.find("<body>"), page.rfind("</body>")) {
            (Some(s), Some(e)) if s < e => body.push_str(&page[s + 6..e]),
            _ => body.push_str(&format!("<p>{}</p>", esc(&page))),
        }
        body.push_str("</section>\n");
    }
    let head = header_md(v);
    let tail = tail_md(v);
    let to_html = |md: &str| {
        let mut h = String::new();
        let mut in_list = false;
        for line in md.lines() {
            if let Some(item) = line.strip_prefix("- ") {
                if !in_list {
                    h.push_str("<ul>");
                    in_list = true;
                }
                h.push_str(&format!("<li>{}</li>", esc(item)));
                continue;
            }
            if in_list {
                h.push_str("</ul>\n");
                in_list = false;
            }
            if let Some(t) = line.strip_prefix("## ") {
                h.push_str(&format!("<h2>{}</h2>\n", esc(t)));
            } else if let Some(t) = line.strip_prefix("# ") {
                h.push_str(&format!("<h1>{}</h1>\n", esc(t)));
            } else if !line.is_empty() {
                h.push_str(&format!("<p>{}</p>\n", esc(line)));
            }
        }
        if in_list {
            h.push_str("</ul>\n");
        }
        h
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Case {}</title>{style}</head><body>\n{}{body}{}</body></html>\n",
        esc(v["title"].as_str().unwrap_or("")),
        to_html(&head),
        to_html(&tail)
    )
}

/// VMs a case's answer names (for the audit record).
pub fn vms_named(v: &Value, scope: Option<&Scope>) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    crate::api::scope::vms_named(v, scope.map(|s| &s.all_vms), &mut s);
    s
}
