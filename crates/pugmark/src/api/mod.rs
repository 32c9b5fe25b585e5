//! The query API (issue 14): `GET /api/v1/{search,who,timeline,report,check,hunt,status,
//! audit}`, `POST /api/v1/hunt`, `GET /api/v1/openapi.json` — the binary's side of
//! `serve::api` (which fences axum/tokio and calls [`Service`] on its blocking pool).
//!
//! One code path with the CLI: a request's query string is turned into the verb's own clap
//! arguments (`name=value` → `--name value`, so every flag and its validation is the CLI's) and
//! answered by the verb's `answer` function, the one `pugmark VERB --json` prints. Then, in
//! order: authentication ([`auth`]; 401), the role ([`auth::role_of`]; 403 without one), VO
//! scoping ([`scope`]), paging (`offset`, `page_size`), the integrity block (cited records
//! after scoping), the audit record ([`audit`]; durable before the answer leaves), and the
//! answer (JSON, or NDJSON lines for `search` / `timeline` with `format=ndjson` or
//! `Accept: application/x-ndjson`).
//!
//! The web UI ([`crate::ui`]) asks through the same [`Service::query`], with the identity its
//! session cookie proved instead of a bearer token.

pub mod audit;
pub mod auth;
mod cases;
pub mod checkjobs;
pub mod scope;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use clap::FromArgMatches;
use serde_json::{Value, json};
use serve::api::{ApiBody, ApiRequest, ApiResponse, AuditSink};
use serve::config::{ApiConfig, ApiRole};

use crate::cli::{check, hunt, report, search, timeline, who};
use pipeline::datadir::DataDir;

/// The OpenAPI 3 description (hand-written: six verbs whose JSON shapes are the CLI's
/// documented contracts; a generator would need `utoipa` derives on every query type across
/// crates that do not depend on an HTTP stack).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Verbs of the API.
const VERBS: [&str; 8] = [
    "search", "who", "timeline", "report", "check", "hunt", "status", "audit",
];

/// Most hits a VO-scoped search examines before cutting (it filters after searching).
const SCOPED_SEARCH_CAP: usize = 200_000;

/// The query service over one data directory.
pub struct Service {
    pub data: PathBuf,
    pub config: ApiConfig,
    pub auth: auth::Authenticators,
    /// Where a running collector's `/metrics` is (serve), for `/api/v1/status`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// VO scopes by their VOs, with the fact store position they were loaded at: reloaded
    /// only when the fact store moved (a VM created, a lease changed).
    scopes: std::sync::Mutex<ScopeCache>,
    /// `check` answers for the web pages, computed in the background ([`checkjobs`]).
    checks: Arc<checkjobs::CheckJobs>,
    /// The site's attribution model (`query::attrib::Site`) for `timeline` and `hunt`, with
    /// the fact store's `site_version` it was loaded at: a 1000-VM site takes a large share of
    /// a timeline page to load, and it changes only when a VM, port or project record does.
    site: std::sync::Mutex<Option<(u64, Arc<query::attrib::Site>)>>,
    /// Fact store connections kept between `who` requests, each with the file it opened
    /// ([`FactsFile`]): opening one (the schema parsed, the WAL index mapped) and preparing
    /// its statements anew was about a third of a `who` answer's server time.
    facts: std::sync::Mutex<Vec<(views::facts::FactStore, FactsFile)>>,
}

/// Fact store connections kept at most (requests are answered on a few blocking threads).
const FACTS_KEPT: usize = 4;

/// Which file a fact store connection reads (device, inode): `reindex` swaps in a new
/// `facts.sqlite`, and a kept connection to the old one would answer from views that are no
/// longer the data directory's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FactsFile(u64, u64);

impl FactsFile {
    fn of(dd: &DataDir) -> Option<FactsFile> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dd.facts().join("facts.sqlite"))
            .ok()
            .map(|m| FactsFile(m.dev(), m.ino()))
    }
}

/// VO scopes by their VOs, each with the site version it was loaded at.
type ScopeCache = std::collections::HashMap<Vec<String>, (u64, Arc<scope::Scope>)>;

/// A refusal or failure, answered with `{"error": …}`.
struct Refusal {
    status: u16,
    error: String,
    vms: BTreeSet<String>,
}

fn refuse(status: u16, error: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: error.into(),
        vms: BTreeSet::new(),
    }
}

/// An answer before it is sent.
struct Answered {
    json: Value,
    /// The array paged and streamed (`hits`, `entries`, …).
    main: Option<&'static str>,
    /// Pre-rendered bytes (report `format=md|html`).
    raw: Option<(&'static str, Vec<u8>)>,
    vms: BTreeSet<String>,
    count: u64,
}

/// Whether every ledger record in `(from, to]` is a query audit record (observer `collector`,
/// class `audit.query`): records `check` never reads, which every page view appends.
fn only_audits(ledger: &std::path::Path, from: u64, to: u64) -> bool {
    use query::search::Fetch;
    let Ok(reader) = ledger::LedgerReader::open(ledger) else {
        return false;
    };
    let mut fetch = pipeline::LedgerFetch::new(reader);
    (from + 1..=to).all(|seq| {
        fetch.fetch(seq).is_ok_and(|e| {
            e.observer == model::Observer::Collector && e.class == model::EventClass::AuditQuery
        })
    })
}

/// Query-string pairs, decoded.
pub(crate) type Params = Vec<(String, String)>;

fn params_json(p: &Params) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in p {
        match m.get_mut(k) {
            Some(Value::Array(a)) => a.push(Value::String(v.clone())),
            Some(x) => {
                let first = x.take();
                *x = Value::Array(vec![first, Value::String(v.clone())]);
            }
            None => {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(m)
}

/// API-only parameters, not passed to the verb.
const API_PARAMS: [&str; 3] = ["offset", "page_size", "indicator"];

/// The verb's clap arguments from query-string pairs: `k=v` is `--k v` (underscores as
/// dashes), a flag is on for `true`/`1`/`yes`/empty and off for `false`/`0`/`no`; `q` (or
/// `query`) is search's positional query. `data` and `json` are the server's, not the
/// client's: `data` is refused, `json` ignored.
fn parse_args<T: VerbArgs>(verb: &str, p: &Params, dd: &std::path::Path) -> Result<T, Refusal> {
    let cmd = T::augment_args(clap::Command::new("pugmark-api").no_binary_name(true));
    let mut argv: Vec<String> = Vec::new();
    let mut positional: Option<String> = None;
    for (k, v) in p {
        if API_PARAMS.contains(&k.as_str()) {
            continue;
        }
        let k = k.replace('_', "-");
        if API_PARAMS.contains(&k.replace('-', "_").as_str())
            || k == "json"
            || (k == "format" && v == "ndjson")
        {
            continue;
        }
        if k == "data" {
            return Err(refuse(400, "data is the server's, not a parameter"));
        }
        if verb == "search" && (k == "q" || k == "query") {
            positional = Some(v.clone());
            continue;
        }
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(k.as_str()))
        else {
            return Err(refuse(400, format!("unknown parameter {k:?} for {verb}")));
        };
        if arg.get_action().takes_values() {
            argv.push(format!("--{k}"));
            argv.push(v.clone());
        } else {
            match v.as_str() {
                "" | "true" | "1" | "yes" => argv.push(format!("--{k}")),
                "false" | "0" | "no" => {}
                _ => return Err(refuse(400, format!("{k} is a flag: true or false"))),
            }
        }
    }
    if let Some(q) = positional {
        argv.push("--".into());
        argv.push(q);
    }
    let mut m = cmd
        .try_get_matches_from(argv)
        .map_err(|e| refuse(400, e.render().to_string()))?;
    let mut args = T::from_arg_matches_mut(&mut m).map_err(|e| refuse(400, e.to_string()))?;
    args.data_mut().data = dd.to_path_buf();
    Ok(args)
}

/// [`parse_args`] for callers outside the API (saved case questions): the error as text.
pub(crate) fn parse_verb<T: VerbArgs>(
    verb: &str,
    p: &[(String, String)],
    dd: &std::path::Path,
) -> Result<T, String> {
    parse_args(verb, &p.to_vec(), dd).map_err(|r| r.error)
}

/// Whether `verb` accepts these parameters (the verb's own clap parser, as the API runs it).
pub(crate) fn check_params(
    verb: &str,
    p: &[(String, String)],
    dd: &std::path::Path,
) -> Result<(), String> {
    match verb {
        "who" => parse_verb::<who::WhoArgs>(verb, p, dd).map(drop),
        "report" => parse_verb::<report::ReportArgs>(verb, p, dd).map(drop),
        "search" => parse_verb::<search::SearchArgs>(verb, p, dd).map(drop),
        "timeline" => parse_verb::<timeline::TimelineArgs>(verb, p, dd).map(drop),
        "check" => parse_verb::<check::CheckArgs>(verb, p, dd).map(drop),
        "hunt" => parse_verb::<hunt::HuntArgs>(verb, p, dd).map(drop),
        _ => Err(format!("no verb {verb:?}")),
    }
}

/// The verbs' arguments, whose data directory is the server's.
pub(crate) trait VerbArgs: clap::Args + FromArgMatches {
    fn data_mut(&mut self) -> &mut crate::cli::DataArgs;
}

macro_rules! verb_args {
    ($($t:ty),*) => {$(
        impl VerbArgs for $t {
            fn data_mut(&mut self) -> &mut crate::cli::DataArgs {
                &mut self.data
            }
        }
    )*};
}
verb_args!(
    who::WhoArgs,
    search::SearchArgs,
    timeline::TimelineArgs,
    report::ReportArgs,
    check::CheckArgs,
    hunt::HuntArgs
);

fn internal(e: anyhow::Error) -> Refusal {
    // The CLI's refusals (views missing or foreign, bad values) are the client's to read.
    refuse(500, format!("{e:#}"))
}

fn num(p: &Params, k: &str) -> Result<Option<usize>, Refusal> {
    match p.iter().rev().find(|(n, _)| n == k) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| refuse(400, format!("{k} must be a number"))),
    }
}

impl Service {
    fn dd(&self) -> Result<DataDir, Refusal> {
        DataDir::open(&self.data, false).map_err(internal)
    }

    fn scope(&self, roles: &[ApiRole]) -> Result<Option<Arc<scope::Scope>>, Refusal> {
        let vos: Vec<String> = roles
            .iter()
            .filter_map(|r| match r {
                ApiRole::Vo(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if roles
            .iter()
            .any(|r| matches!(r, ApiRole::Site | ApiRole::Csirt))
        {
            return Ok(None);
        }
        if let Some(v) = vos.iter().find(|v| !self.config.vos.contains_key(*v)) {
            return Err(refuse(
                403,
                format!("role vo:{v} has no [[api.vos]] entry in this server's config"),
            ));
        }
        let dd = self.dd()?;
        let at = views::facts::FactStore::open(dd.facts())
            .and_then(|f| f.site_version())
            .map_err(|e| internal(e.into()))?;
        let mut cache = self
            .scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((pos, s)) = cache.get(&vos)
            && *pos == at
        {
            return Ok(Some(s.clone()));
        }
        let s = Arc::new(scope::Scope::load(&dd, &self.config, &vos).map_err(internal)?);
        cache.insert(vos, (at, s.clone()));
        Ok(Some(s))
    }

    /// A fact store connection to the data directory's current `facts.sqlite`: a kept one if
    /// one reads that file (the others dropped), else a new one; `None` without a store.
    /// The file is identified before a new connection opens it, so a swap in between leaves
    /// a connection that is not kept, never one kept under the wrong name.
    fn facts_conn(
        &self,
        dd: &DataDir,
    ) -> anyhow::Result<Option<(views::facts::FactStore, FactsFile)>> {
        let Some(file) = FactsFile::of(dd) else {
            return Ok(None);
        };
        {
            let mut kept = self
                .facts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            kept.retain(|(_, f)| *f == file);
            if let Some(c) = kept.pop() {
                return Ok(Some(c));
            }
        }
        let store =
            anyhow::Context::with_context(views::facts::FactStore::open(dd.facts()), || {
                format!("opening fact store in {}", dd.facts().display())
            })?;
        Ok(Some((store, file)))
    }

    /// Keeps a connection [`Service::facts_conn`] gave, its read snapshot ended (one that
    /// cannot end it is dropped).
    fn keep_facts(&self, store: views::facts::FactStore, file: FactsFile) {
        if store.end_snapshot().is_err() {
            return;
        }
        let mut kept = self
            .facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < FACTS_KEPT {
            kept.push((store, file));
        }
    }

    /// The site's attribution model as of the fact store's current `site_version`, loaded
    /// again only when that moved.
    fn site(&self) -> Result<Arc<query::attrib::Site>, Refusal> {
        let dd = self.dd()?;
        let store = views::facts::FactStore::open(dd.facts()).map_err(|e| internal(e.into()))?;
        let at = store.site_version().map_err(|e| internal(e.into()))?;
        if let Some((v, s)) = self
            .site
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && *v == at
        {
            return Ok(s.clone());
        }
        let s = Arc::new(query::attrib::Site::load(&store).map_err(internal)?);
        *self
            .site
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((at, s.clone()));
        Ok(s)
    }

    /// A `check` answer for a web page ([`checkjobs`]): the kept one while it holds, else
    /// a fresh one if it comes within [`checkjobs::PAGE_WAIT`], else what there is, saying so.
    fn page_check(&self, key: &str, args: check::CheckArgs) -> Result<Value, Refusal> {
        let dd = self.dd()?;
        let last = ledger::LedgerReader::open(&dd.ledger())
            .map_err(|e| internal(e.into()))?
            .len();
        let ledger = dd.ledger();
        let unread = |from: u64, to: u64| only_audits(&ledger, from, to);
        let compute = move || check::answer(&args).map(|(_, v)| v);
        match self
            .checks
            .answer(key, last, &unread, compute, checkjobs::PAGE_WAIT)
        {
            checkjobs::PageCheck::Answer(v) => Ok(v),
            checkjobs::PageCheck::Failed(why) => Err(refuse(500, why)),
        }
    }

    /// Starts the check the web UI's check page shows by default (the whole store), so its
    /// first visit finds it done (`pugmark ui` at start; not `serve`, whose CPU goes to
    /// collecting and whose answer would trail within seconds).
    pub fn warm_check(&self) {
        let key = params_json(&Params::new()).to_string();
        let Ok(args) = parse_args::<check::CheckArgs>("check", &Params::new(), &self.data) else {
            return;
        };
        let Ok(dd) = self.dd() else { return };
        let Ok(last) = ledger::LedgerReader::open(&dd.ledger()).map(|r| r.len()) else {
            return;
        };
        self.checks
            .start(&key, last, move || check::answer(&args).map(|(_, v)| v));
    }

    /// Answers one verb for one role.
    fn answer(
        &self,
        verb: &str,
        p: &Params,
        req: &ApiRequest,
        roles: &[ApiRole],
        ui: bool,
    ) -> Result<Answered, Refusal> {
        let data = self.data.clone();
        let sc = self.scope(roles)?;
        let not_yours = |vms: BTreeSet<String>| Refusal {
            status: 403,
            error: "not yours: nothing this role may see answers this question".into(),
            vms,
        };
        // Everything an unscoped answer names (for the audit of a refusal).
        let named = |v: &Value, sc: &scope::Scope| {
            let mut s = BTreeSet::new();
            scope::vms_named(v, Some(&sc.all_vms), &mut s);
            s
        };
        let mut a = match verb {
            "who" => {
                let args: who::WhoArgs = parse_args(verb, p, &data)?;
                let dd = DataDir::open(&args.data.data, false).map_err(internal)?;
                let (store, file) = self.facts_conn(&dd).map_err(internal)?.unzip();
                let (_, mut v, dd, reader, store) =
                    who::answer_in(&args, dd, store).map_err(internal)?;
                if let Some(f) = file {
                    self.keep_facts(store, f);
                }
                if let Some(sc) = &sc {
                    let before = named(&v, sc);
                    scope::prune(&mut v, sc, false);
                    if v["matches"].as_array().is_none_or(Vec::is_empty) {
                        return Err(not_yours(before));
                    }
                }
                crate::proofs::add_integrity_with(&dd, &mut v, Some(reader)).map_err(internal)?;
                let count = v["matches"].as_array().map_or(0, Vec::len) as u64;
                Answered {
                    json: v,
                    main: None,
                    raw: None,
                    vms: BTreeSet::new(),
                    count,
                }
            }
            "report" => {
                let mut p = p.clone();
                if !p.iter().any(|(k, _)| k == "format") {
                    p.push(("format".into(), "json".into()));
                }
                let args: report::ReportArgs = parse_args(verb, &p, &data)?;
                let (mut rep, mut v, dd) = report::answer(&args).map_err(internal)?;
                if let Some(sc) = &sc {
                    let before = named(&v, sc);
                    scope::prune(&mut v, sc, false);
                    if v["vms"].as_array().is_none_or(Vec::is_empty) {
                        return Err(not_yours(before));
                    }
                    // md and html are rendered from the typed report: cut it the same way
                    // (the integrity section cites what the pruned JSON still cites).
                    rep = scope::scope_report(&rep, sc);
                }
                let count = v["vms"].as_array().map_or(0, Vec::len) as u64;
                let bytes = report::render(&rep, &v, &dd, args.format).map_err(internal)?;
                match args.format {
                    report::ReportFormat::Json => {
                        let json: Value = serde_json::from_slice(&bytes)
                            .map_err(|e| internal(anyhow::anyhow!(e)))?;
                        Answered {
                            json,
                            main: None,
                            raw: None,
                            vms: BTreeSet::new(),
                            count,
                        }
                    }
                    f => Answered {
                        json: v,
                        main: None,
                        raw: Some((
                            if f == report::ReportFormat::Md {
                                "text/markdown; charset=utf-8"
                            } else {
                                "text/html; charset=utf-8"
                            },
                            bytes,
                        )),
                        vms: BTreeSet::new(),
                        count,
                    },
                }
            }
            "timeline" => {
                let args: timeline::TimelineArgs = parse_args(verb, p, &data)?;
                if let (Some(sc), Some(vm)) = (&sc, &args.vm) {
                    let vm = model::fields::parse_opennebula_vm(vm).unwrap_or_else(|| vm.clone());
                    if !sc.owns(&vm) {
                        return Err(not_yours(
                            sc.all_vms.get(&vm).into_iter().cloned().collect(),
                        ));
                    }
                }
                let site = self.site()?;
                let (mut t, mut v) = timeline::answer_in(&args, Some(&site)).map_err(internal)?;
                if let Some(f) = args.format {
                    // The same rule as `scope::prune`: an entry is the VO's by its attribution.
                    if let Some(sc) = &sc {
                        t.entries.retain(|e| {
                            e.attribution
                                .as_ref()
                                .and_then(|a| a.vm.as_deref())
                                .is_some_and(|vm| sc.owns(vm))
                        });
                        if t.entries.is_empty() {
                            return Err(not_yours(BTreeSet::new()));
                        }
                    }
                    let rows = query::export::timeline_rows(&t.entries).map_err(internal)?;
                    let n = rows.len() as u64;
                    let mut a = exported(&rows, f, args.field_names, n)?;
                    for e in &t.entries {
                        if let Some(vm) = e.attribution.as_ref().and_then(|a| a.vm.clone()) {
                            a.vms.insert(vm);
                        }
                    }
                    return Ok(a);
                }
                if let Some(sc) = &sc {
                    let before = named(&v, sc);
                    scope::prune(&mut v, sc, false);
                    // Lanes count records before attribution: another VO's among them could
                    // not be told apart, so a VO gets none (its page draws its entries).
                    if let Some(o) = v.as_object_mut() {
                        o.remove("lanes");
                    }
                    if v["entries"].as_array().is_none_or(Vec::is_empty) {
                        return Err(not_yours(before));
                    }
                }
                let count = v["entries"].as_array().map_or(0, Vec::len) as u64;
                Answered {
                    json: v,
                    main: Some("entries"),
                    raw: None,
                    vms: BTreeSet::new(),
                    count,
                }
            }
            "check" => {
                let args: check::CheckArgs = parse_args(verb, p, &data)?;
                // The whole day's check reads every connection and syslog line (seconds on a
                // 1000-VM day): a web page gets it from the background checks (`checkjobs`:
                // kept while it holds, else trailing or pending, and said); the API always
                // computes. Scoping and the audit come after, per request, as for a fresh one.
                let mut v = if ui {
                    self.page_check(&params_json(p).to_string(), args)?
                } else {
                    check::answer(&args).map_err(internal)?.1
                };
                if let Some(sc) = &sc {
                    scope::prune(&mut v, sc, false);
                    // The counts by kind are of what this role sees.
                    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
                    for f in v["findings"].as_array().into_iter().flatten() {
                        if let Some(k) = f["kind"].as_str() {
                            *by.entry(k.to_string()).or_default() += 1;
                        }
                    }
                    v["by_kind"] = json!(by);
                    // What was examined counts the whole site's records: withheld.
                    if v.get("examined").is_some() {
                        v["examined"] = json!({});
                    }
                }
                let count = v["findings"].as_array().map_or(0, Vec::len) as u64;
                Answered {
                    json: v,
                    main: Some("findings"),
                    raw: None,
                    vms: BTreeSet::new(),
                    count,
                }
            }
            "hunt" => {
                // GET: `indicator=V` (repeatable) is a plain list; POST: the body is an
                // indicator file (plain, MISP or STIX). `iocs` (server paths) is refused.
                if p.iter()
                    .any(|(k, _)| k.starts_with("misp") || k.starts_with("misp-"))
                {
                    return Err(refuse(
                        400,
                        "MISP sightings are sent by `pugmark hunt --misp-url` on the command line, not through the API",
                    ));
                }
                if p.iter().any(|(k, _)| k == "iocs") {
                    return Err(refuse(
                        400,
                        "iocs names files on the server: POST the indicator file as the body, or give indicator=V",
                    ));
                }
                let mut files = Vec::new();
                let inline: Vec<&str> = p
                    .iter()
                    .filter(|(k, _)| k == "indicator")
                    .map(|(_, v)| v.as_str())
                    .collect();
                if !inline.is_empty() {
                    files.push(("indicator".to_string(), inline.join("\n").into_bytes()));
                }
                if req.method == "POST" {
                    files.push(("body".to_string(), req.body.clone()));
                }
                if files.is_empty() {
                    return Err(refuse(
                        400,
                        "no indicators: POST an indicator file, or give indicator=V",
                    ));
                }
                let mut p = p.clone();
                p.push(("iocs".into(), "-".into()));
                let args: hunt::HuntArgs = parse_args(verb, &p, &data)?;
                let (indicators, _) = hunt::indicators(&files);
                let site = self.site()?;
                let (_, mut v) =
                    hunt::answer_in(&args, &indicators, Some(&site)).map_err(internal)?;
                if let Some(sc) = &sc {
                    scope::prune(&mut v, sc, false);
                }
                let count = v["hits"].as_array().map_or(0, Vec::len) as u64;
                Answered {
                    json: v,
                    main: Some("hits"),
                    raw: None,
                    vms: BTreeSet::new(),
                    count,
                }
            }
            "search" => {
                let args: search::SearchArgs = parse_args(verb, p, &data)?;
                match &sc {
                    None => {
                        let (outcome, views, _) = search::answer(&args).map_err(internal)?;
                        if let Some(f) = args.format {
                            let rows =
                                query::export::search_rows(&outcome.hits).map_err(internal)?;
                            return exported(&rows, f, args.field_names, outcome.total);
                        }
                        let v = search::to_json(&args, &outcome, &views).map_err(internal)?;
                        Answered {
                            json: v,
                            main: (!args.count).then_some("hits"),
                            raw: None,
                            vms: BTreeSet::new(),
                            count: outcome.total,
                        }
                    }
                    Some(sc) => {
                        // Every match examined, the VO's kept (by attribution), then cut.
                        let mut wide = args.clone();
                        wide.limit = SCOPED_SEARCH_CAP;
                        wide.count = false;
                        let (mut outcome, views, _) = search::answer(&wide).map_err(internal)?;
                        let capped = outcome.truncated;
                        outcome.hits.retain(|h| sc.event_is_ours(&h.event));
                        let mut vms = BTreeSet::new();
                        for h in &outcome.hits {
                            if let Some(vm) = sc.site.attribute(&h.event).vm {
                                vms.insert(vm);
                            }
                        }
                        outcome.total = outcome.hits.len() as u64;
                        outcome.truncated = capped || outcome.hits.len() > args.limit;
                        outcome.hits.truncate(args.limit);
                        if args.count {
                            outcome.hits.clear();
                        }
                        if let Some(f) = args.format {
                            let rows =
                                query::export::search_rows(&outcome.hits).map_err(internal)?;
                            let mut a = exported(&rows, f, args.field_names, outcome.total)?;
                            a.vms = vms;
                            return Ok(a);
                        }
                        let v = search::to_json(&args, &outcome, &views).map_err(internal)?;
                        Answered {
                            json: v,
                            main: (!args.count).then_some("hits"),
                            raw: None,
                            vms,
                            count: outcome.total,
                        }
                    }
                }
            }
            "status" => {
                if sc.is_some() {
                    return Err(refuse(403, "status is the site's: not for a VO role"));
                }
                let Some(addr) = self.metrics_addr else {
                    return Err(refuse(
                        503,
                        "no pugmark serve runs with this API (pugmark ui): no collector status",
                    ));
                };
                let v = crate::cli::serve::status_json(addr).map_err(internal)?;
                Answered {
                    json: v,
                    main: None,
                    raw: None,
                    vms: BTreeSet::new(),
                    count: 1,
                }
            }
            "audit" => {
                let mut user = None;
                let mut from = None;
                let mut to = None;
                for (k, v) in p {
                    match k.as_str() {
                        "user" => user = Some(v.clone()),
                        "from" => {
                            from = Some(crate::cli::parse_time(v).map_err(|e| refuse(400, e))?)
                        }
                        "to" => to = Some(crate::cli::parse_time(v).map_err(|e| refuse(400, e))?),
                        "offset" | "page_size" | "json" => {}
                        _ => return Err(refuse(400, format!("unknown parameter {k:?} for audit"))),
                    }
                }
                let mut list =
                    audit::list(&self.dd()?, user.as_deref(), from, to).map_err(internal)?;
                if let Some(sc) = &sc {
                    list.retain(|l| {
                        let vms = audit::vms_of(l);
                        !vms.is_empty() && vms.iter().all(|v| sc.owns(v))
                    });
                }
                let total = list.len();
                Answered {
                    json: json!({"audits": list, "total": total}),
                    main: Some("audits"),
                    raw: None,
                    vms: BTreeSet::new(),
                    count: total as u64,
                }
            }
            _ => return Err(refuse(404, format!("no endpoint {verb:?}"))),
        };
        // Every answer cites records by ledger position (a derived flow by its datagram and
        // place): whatever a verb's own path did, nothing else leaves.
        crate::proofs::externalize(&data, &mut a.json).map_err(internal)?;
        if a.vms.is_empty() {
            scope::vms_named(&a.json, sc.as_ref().map(|s| &s.all_vms), &mut a.vms);
        }
        Ok(a)
    }

    fn audit_and(
        &self,
        sink: &dyn AuditSink,
        mut record: audit::Audit,
        status: u16,
        count: u64,
        respond: Reply,
    ) -> Reply {
        record.status = status;
        record.count = count;
        match sink.store(record.record()) {
            Ok(_) => respond,
            Err(e) => Reply::Json(
                503,
                json!({"error": format!("the query could not be audited, so it is not answered: {e}")}),
            ),
        }
    }
}

/// An export (`format=csv|jsonl|timesketch`, `fields=native|ecs`) of search hits or timeline
/// entries: the CLI's writer (`query::export`) into the body.
fn exported(
    rows: &[query::export::Row<'_>],
    format: search::ExportFormat,
    names: search::FieldNames,
    count: u64,
) -> Result<Answered, Refusal> {
    use query::export::{Format, Names};
    let (f, ct) = match format {
        search::ExportFormat::Csv => (Format::Csv, "text/csv; charset=utf-8"),
        search::ExportFormat::Jsonl => (Format::Jsonl, "application/x-ndjson"),
        search::ExportFormat::Timesketch => (Format::Timesketch, "application/x-ndjson"),
    };
    let n = match names {
        search::FieldNames::Native => Names::Native,
        search::FieldNames::Ecs => Names::Ecs,
    };
    let mut body = Vec::new();
    query::export::write(&mut body, rows, f, n).map_err(internal)?;
    Ok(Answered {
        json: Value::Null,
        main: None,
        raw: Some((ct, body)),
        vms: BTreeSet::new(),
        count,
    })
}

/// `offset` / `page_size` over the answer's main array; adds `page`.
fn page(v: &mut Value, main: &str, offset: Option<usize>, size: Option<usize>) {
    if offset.is_none() && size.is_none() {
        return;
    }
    let Some(arr) = v.get_mut(main).and_then(Value::as_array_mut) else {
        return;
    };
    let total = arr.len();
    let off = offset.unwrap_or(0).min(total);
    let size = size.unwrap_or(total);
    let end = off.saturating_add(size).min(total);
    let kept: Vec<Value> = arr.drain(..).skip(off).take(end - off).collect();
    *arr = kept;
    v["page"] = json!({
        "offset": off,
        "page_size": size,
        "total": total,
        "next_offset": (end < total).then_some(end),
    });
}

fn wants_ndjson(p: &Params, req: &ApiRequest) -> bool {
    p.iter().any(|(k, v)| k == "format" && v == "ndjson")
        || req
            .accept
            .as_deref()
            .is_some_and(|a| a.contains("application/x-ndjson"))
}

/// What a query came to, after authentication, scoping, paging and the audit record.
pub(crate) enum Reply {
    /// A JSON answer (200) or a refusal (`{"error": …}` with its status).
    Json(u16, Value),
    /// Pre-rendered bytes (report md/html, exports).
    Raw(&'static str, Vec<u8>),
    /// NDJSON lines (search / timeline with `format=ndjson`).
    Lines(Vec<Value>),
    /// A whole response made by the endpoint itself (`/api/v1/cases…`: its own methods,
    /// statuses and audit record).
    Response(ApiResponse),
}

impl Service {
    /// One query by one identity (or a refused authentication), audited: the API's and the
    /// web UI's one path. `ui` names the UI page asking (kept in the audit record's params as
    /// `ui`) with what the page adds to the question (each `k` kept as `ui_k`: e.g. the
    /// record whose surrounding records a search shows, `ui_around`), none for the API.
    pub(crate) fn query(
        &self,
        who: Result<auth::Identity, auth::AuthError>,
        endpoint: &str,
        p: &Params,
        req: &ApiRequest,
        sink: &dyn AuditSink,
        ui: Option<(&str, &Params)>,
    ) -> Reply {
        let ui_page = ui.map(|(page, _)| page);
        let is_case = endpoint == "cases" || endpoint.starts_with("cases/");
        let verb = if VERBS.contains(&endpoint) {
            endpoint.to_string()
        } else if is_case {
            "case".to_string()
        } else {
            "unknown".to_string()
        };
        let mut params = params_json(p);
        if let (Some((pg, extra)), Some(m)) = (ui, params.as_object_mut()) {
            m.insert("ui".into(), Value::String(pg.to_string()));
            for (k, v) in extra {
                m.insert(format!("ui_{k}"), Value::String(v.clone()));
            }
        }
        let mut record = audit::Audit {
            user: "-".into(),
            subject: None,
            issuer: None,
            via: None,
            role: None,
            verb: verb.clone(),
            params,
            status: 0,
            count: 0,
            vms: BTreeSet::new(),
            peer: req.peer.map(|a| a.to_string()),
            reason: None,
            change: None,
        };
        let id = match who {
            Ok(id) => id,
            Err(e) => {
                record.reason = Some(e.to_string());
                let r = Reply::Json(401, json!({"error": e.to_string()}));
                return self.audit_and(sink, record, 401, 0, r);
            }
        };
        record.user = id.name.clone();
        record.subject = Some(id.subject.clone());
        record.issuer = id.issuer.clone();
        record.via = Some(id.via.to_string());
        let Some(roles) = auth::role_of(&id, &self.config) else {
            record.reason = Some("no role: no [[api.roles]] group matches".into());
            let r = Reply::Json(
                403,
                json!({"error": "this identity has no role here (no [[api.roles]] group matches)"}),
            );
            return self.audit_and(sink, record, 403, 0, r);
        };
        record.role = Some(
            roles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
        if is_case {
            return Reply::Response(self.cases(req, endpoint, p, &id, roles, sink, record));
        }
        let method_ok = req.method == "GET" || (req.method == "POST" && verb == "hunt");
        let answered = if !method_ok {
            Err(refuse(405, "GET, or POST for hunt"))
        } else if verb == "unknown" {
            Err(refuse(404, format!("no endpoint {endpoint:?}")))
        } else {
            self.answer(&verb, p, req, &roles, ui_page.is_some())
        };
        let mut a = match answered {
            Ok(a) => a,
            Err(r) => {
                record.reason = Some(r.error.clone());
                record.vms = r.vms;
                let resp = Reply::Json(r.status, json!({"error": r.error}));
                return self.audit_and(sink, record, r.status, 0, resp);
            }
        };
        let (offset, size) = match (num(p, "offset"), num(p, "page_size")) {
            (Ok(o), Ok(s)) => (o, s),
            (Err(r), _) | (_, Err(r)) => {
                record.reason = Some(r.error.clone());
                let resp = Reply::Json(400, json!({"error": r.error}));
                return self.audit_and(sink, record, 400, 0, resp);
            }
        };
        if let Some(main) = a.main {
            page(&mut a.json, main, offset, size);
            if offset.is_some() || size.is_some() {
                a.count = a.json[main].as_array().map_or(0, Vec::len) as u64;
            }
        }
        record.vms = std::mem::take(&mut a.vms);
        let resp = if let Some((ct, bytes)) = a.raw.take() {
            Reply::Raw(ct, bytes)
        } else if wants_ndjson(p, req) && matches!(verb.as_str(), "search" | "timeline") {
            Reply::Lines(
                a.main
                    .and_then(|m| a.json.get_mut(m))
                    .and_then(Value::as_array_mut)
                    .map(std::mem::take)
                    .unwrap_or_default(),
            )
        } else {
            Reply::Json(200, std::mem::take(&mut a.json))
        };
        self.audit_and(sink, record, 200, a.count, resp)
    }
}

/// The query string's pairs, decoded.
pub(crate) fn params_of(query: Option<&str>) -> Params {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl serve::api::Api for Service {
    fn call(&self, req: ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
        let endpoint = req.endpoint.trim_end_matches('/').to_string();
        if endpoint == "openapi.json" && req.method == "GET" {
            return ApiResponse {
                status: 200,
                content_type: "application/json",
                body: ApiBody::Full(OPENAPI.as_bytes().to_vec()),
                headers: Vec::new(),
            };
        }
        let p = params_of(req.query.as_deref());
        let who = self.auth.authenticate(req.authorization.as_deref());
        match self.query(who, &endpoint, &p, &req, sink, None) {
            Reply::Json(status, v) => ApiResponse::json(status, &v),
            Reply::Raw(ct, bytes) => ApiResponse {
                status: 200,
                content_type: ct,
                body: ApiBody::Full(bytes),
                headers: Vec::new(),
            },
            Reply::Response(r) => r,
            Reply::Lines(items) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
                std::thread::spawn(move || {
                    let mut buf = Vec::with_capacity(1 << 16);
                    for it in items {
                        if serde_json::to_writer(&mut buf, &it).is_err() {
                            break;
                        }
                        buf.push(b'\n');
                        if buf.len() >= 1 << 16 && tx.send(std::mem::take(&mut buf)).is_err() {
                            return;
                        }
                    }
                    if !buf.is_empty() {
                        let _ = tx.send(buf);
                    }
                });
                ApiResponse {
                    status: 200,
                    content_type: "application/x-ndjson",
                    body: ApiBody::Chunks(rx),
                    headers: Vec::new(),
                }
            }
        }
    }

    fn ui(&self, req: ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
        crate::ui::handle(self, req, sink)
    }
}

/// `pugmark ui`'s audit sink: its own pipeline (it owns the ledger), group-committed like
/// serve's writer — one thread appends everything waiting as one durable batch, then answers
/// each request — so concurrent queries share an fsync instead of queueing for one each.
pub struct PipelineAudit {
    tx: std::sync::Mutex<Option<AuditTx>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<Option<pipeline::Pipeline>>>>,
}

type AuditReply = std::sync::mpsc::Sender<Result<u64, String>>;
type AuditTx = std::sync::mpsc::Sender<(model::envelope::RecordEnvelope, AuditReply)>;

impl PipelineAudit {
    pub fn start(mut pipeline: pipeline::Pipeline) -> anyhow::Result<PipelineAudit> {
        let (tx, rx) = std::sync::mpsc::channel::<(model::envelope::RecordEnvelope, AuditReply)>();
        let thread = std::thread::Builder::new()
            .name("pugmark-audit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let envs = records.into_iter().map(model::Envelope::Record).collect();
                    match pipeline.append(envs) {
                        Ok(r) => {
                            let first = r.first.get();
                            for (i, reply) in replies.into_iter().enumerate() {
                                let _ = reply.send(Ok(first + i as u64));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(format!("{e:#}")));
                            }
                        }
                    }
                }
                Some(pipeline)
            })?;
        Ok(PipelineAudit {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Stops taking records and hands the pipeline back (to be finished).
    pub fn stop(&self) -> Option<pipeline::Pipeline> {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let t = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        t.join().ok().flatten()
    }
}

impl AuditSink for PipelineAudit {
    fn store(&self, record: model::envelope::RecordEnvelope) -> Result<u64, String> {
        let (reply, wait) = std::sync::mpsc::channel();
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or("the ui is stopping")?;
        tx.send((record, reply))
            .map_err(|_| "the ui is stopping".to_string())?;
        wait.recv()
            .map_err(|_| "the audit writer stopped".to_string())?
    }
}

/// The service and its sink for `pugmark ui`.
pub fn service(
    data: PathBuf,
    config: ApiConfig,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Arc<Service>> {
    Ok(Arc::new(Service {
        auth: auth::Authenticators {
            tokens: auth::ApiTokens::new(&data),
            oidc: auth::oidc(&config)?,
        },
        data,
        config,
        metrics_addr,
        scopes: Default::default(),
        checks: Default::default(),
        site: Default::default(),
        facts: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept fact store connection is handed out again only while it reads the data
    /// directory's current `facts.sqlite`: once `reindex` has swapped the file in, the kept
    /// one is dropped and a connection to the new file given.
    #[test]
    fn kept_fact_store_connections_follow_the_current_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::open(&dir.path().join("data"), true).expect("data dir");
        let svc = service(dd.root().to_path_buf(), ApiConfig::default(), None).expect("service");
        let kept = |svc: &Service| svc.facts.lock().map(|k| k.len()).unwrap_or(0);
        assert!(svc.facts_conn(&dd).expect("conn").is_none(), "no store yet");
        drop(views::facts::FactStore::open(dd.facts()).expect("store"));
        let (s, old) = svc.facts_conn(&dd).expect("conn").expect("a store");
        s.read_snapshot().expect("snapshot");
        svc.keep_facts(s, old);
        assert_eq!(kept(&svc), 1);
        let (s, f) = svc.facts_conn(&dd).expect("conn").expect("a store");
        assert_eq!((kept(&svc), f), (0, old), "the kept one, handed out");
        svc.keep_facts(s, f);
        // What `reindex` does: a new store built aside, renamed over the old one.
        let aside = dir.path().join("aside");
        drop(views::facts::FactStore::open(&aside).expect("store"));
        std::fs::rename(aside.join("facts.sqlite"), dd.facts().join("facts.sqlite")).expect("swap");
        let new = FactsFile::of(&dd).expect("file");
        assert_ne!(new, old);
        let (_, f) = svc.facts_conn(&dd).expect("conn").expect("a store");
        assert_eq!(
            (kept(&svc), f),
            (0, new),
            "the old file's connection dropped"
        );
    }
}
