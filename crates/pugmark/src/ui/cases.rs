//! Case pages (issue 14, like Timesketch's sketch): the list of the cases this user may see
//! (own, shared with them or their VO, every case for the site and the CSIRT), one case
//! (saved questions as links to the pages that answer them, starred and annotated records,
//! tags, members, the report exports), the create form, and the POSTs that change a case —
//! from the case page, and from the "to a case" form on the search, who and timeline pages
//! (a star button on each record; "save this question").
//!
//! Nothing here decides who may do what: every read and every change is a call of the case
//! API (`/api/v1/cases…`, `api/cases.rs`) through [`Service::query`] with the session's
//! identity — the same role, VO scope, refusals and audit record (a change is that record's
//! `change`, durable in the ledger before the page moves on). POSTs carry the session's CSRF
//! token and answer with a redirect (303) back to the page they came from.

use serde_json::{Value, json};
use serve::api::{ApiBody, ApiRequest, ApiResponse, AuditSink};

use super::pages::{Shown, error_page, href};
use super::redirect;
use super::session::UiSession;
use crate::api::{Params, Reply, Service};

/// One call of the case API as the user: the status and the body (JSON for everything but
/// the md/html report exports).
pub(crate) fn call(
    svc: &Service,
    user: &UiSession,
    req: &ApiRequest,
    sink: &dyn AuditSink,
    (method, endpoint): (&str, &str),
    p: &Params,
    body: Option<&Value>,
) -> ApiResponse {
    let r = ApiRequest {
        method: method.into(),
        endpoint: endpoint.into(),
        query: None,
        authorization: None,
        accept: None,
        peer: req.peer,
        cookie: None,
        content_type: body.map(|_| "application/json".to_string()),
        secure: req.secure,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    match svc.query(
        Ok(user.identity()),
        endpoint,
        p,
        &r,
        sink,
        Some(("cases", &Vec::new())),
    ) {
        Reply::Response(r) => r,
        Reply::Json(status, v) => ApiResponse::json(status, &v),
        Reply::Raw(ct, bytes) => ApiResponse {
            status: 200,
            content_type: ct,
            body: ApiBody::Full(bytes),
            headers: Vec::new(),
        },
        Reply::Lines(_) => ApiResponse::json(500, &json!({"error": "no lines here"})),
    }
}

/// A case API answer as JSON, or what the page shows instead.
pub(crate) fn json_of(r: &ApiResponse) -> Result<Value, Shown> {
    let ApiBody::Full(bytes) = &r.body else {
        return Err(Shown {
            status: 500,
            error: "a streamed answer cannot be shown as a page".into(),
        });
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Shown {
        status: 500,
        error: format!("the case API answered no JSON: {e}"),
    })?;
    if r.status >= 300 {
        return Err(Shown {
            status: r.status,
            error: v["error"].as_str().unwrap_or("refused").to_string(),
        });
    }
    Ok(v)
}

/// The cases this user may change, `{"id", "title"}`, for the "to a case" form of the
/// record pages. Read from the case store as it stands (every change made through this
/// server folded it before answering), not audited: it only fills a select; starring then
/// goes through the API, which decides again.
pub(crate) fn writable(svc: &Service, user: &UiSession) -> Vec<Value> {
    let Some(roles) = crate::api::auth::role_of(&user.identity(), &svc.config) else {
        return Vec::new();
    };
    let actor = crate::cases::Actor {
        name: user.name.clone(),
        subject: Some(user.subject.clone()),
        roles,
    };
    let Ok(dd) = pipeline::datadir::DataDir::open(&svc.data, false) else {
        return Vec::new();
    };
    let path = crate::cases::path(&dd);
    if !path.try_exists().unwrap_or(false) {
        return Vec::new();
    }
    let Ok(store) = views::cases::CaseStore::open(&path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in store.ids().unwrap_or_default() {
        if let Ok(Some(c)) = store.get(&id)
            && crate::cases::access(&c, &actor) == crate::cases::Access::Write
        {
            out.push(json!({"id": c.id, "title": c.title}));
        }
    }
    out
}

/// Whom a case is shared with, for reading: users, then `VO x`.
fn members(c: &Value) -> String {
    let users = c["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string);
    let vos = c["vos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|v| format!("VO {v}"));
    users.chain(vos).collect::<Vec<_>>().join(", ")
}

/// Why this user sees a listed case.
fn relation(c: &Value, user: &UiSession, my_vos: &[String]) -> String {
    let is_me = |v: &Value| v == user.name.as_str() || v == user.subject.as_str();
    if is_me(&c["owner"]) {
        return "yours".into();
    }
    if c["users"].as_array().is_some_and(|u| u.iter().any(is_me)) {
        return "shared with you".into();
    }
    if let Some(vo) = c["vos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|v| my_vos.iter().any(|m| m == v))
    {
        return format!("shared with VO {vo}");
    }
    "as the site / CSIRT".into()
}

/// `GET /ui/cases`: the list and the create form.
pub(crate) fn list(cx: &mut super::pages::Cx) -> Result<(), Shown> {
    let r = cx.case_api(("GET", "cases"), &Vec::new(), None);
    let v = json_of(&r)?;
    let roles = crate::api::auth::role_of(&cx.user.identity(), &cx.svc().config);
    let my_vos: Vec<String> = roles
        .iter()
        .flatten()
        .filter_map(|r| match r {
            serve::config::ApiRole::Vo(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    let may_create = roles.as_ref().is_some_and(|r| {
        r.iter().any(|r| {
            matches!(
                r,
                serve::config::ApiRole::Site | serve::config::ApiRole::Vo(_)
            )
        })
    });
    let cases: Vec<Value> = v["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut c = c.clone();
            c["relation"] = json!(relation(&c, cx.user, &my_vos));
            c["href"] = json!(format!("/ui/cases/{}", c["id"].as_str().unwrap_or("")));
            c["members"] = json!(members(&c));
            c
        })
        .collect();
    cx.set_ctx(
        "cases",
        json!({"list": cases, "total": v["total"], "may_create": may_create}),
    );
    Ok(())
}

/// A saved question's parameters as query-string pairs (`{"k": "v" | ["v", …]}`).
fn pairs_of(params: &Value) -> Vec<(String, String)> {
    crate::cases::params_of(params).unwrap_or_default()
}

/// Where a saved question is answered on a page.
fn question_href(verb: &str, params: &Value) -> String {
    let p = pairs_of(params);
    // In the order of `keys`, not the parameters' map order (which depends on serde_json's
    // `preserve_order` feature, unified across the workspace): the same question always
    // gives the same link.
    let pick = |keys: &[&str]| -> Vec<(&str, &str)> {
        keys.iter()
            .flat_map(|want| {
                p.iter()
                    .filter(move |(k, _)| k == want)
                    .map(|(k, v)| (k.as_str(), v.as_str()))
            })
            .collect()
    };
    match verb {
        "search" => {
            let mut q: Vec<(&str, &str)> =
                pick(&["q", "query", "from", "to", "host", "app", "class"])
                    .into_iter()
                    .map(|(k, v)| (if k == "query" { "q" } else { k }, v))
                    .collect();
            q.dedup();
            href("search", &q)
        }
        "who" => href("who", &pick(&["ip", "host", "mac", "port", "peer", "at"])),
        "timeline" => href(
            "timeline",
            &pick(&["vm", "ip", "host", "user", "claimed", "from", "to"]),
        ),
        "report" => href("report", &pick(&["ip", "host", "at", "discovered"])),
        "check" => href("check", &pick(&["from", "to"])),
        "hunt" => {
            let ind: Vec<&str> = p
                .iter()
                .filter(|(k, _)| k == "indicator")
                .map(|(_, v)| v.as_str())
                .collect();
            let joined = ind.join("\n");
            let mut q = vec![("indicators", joined.as_str())];
            q.extend(pick(&["from", "to"]));
            href("hunt", &q)
        }
        _ => href("", &[]),
    }
}

/// A record of a case view, shaped for the page.
fn record(r: &Value) -> Value {
    let obs = r["observer"].as_str().unwrap_or("");
    let time = r["time"].as_str().unwrap_or("");
    let host = r["host"].as_str().unwrap_or("");
    let cite = super::pages::cite_of(r);
    let vm = r["attribution"]["vm"].as_str().unwrap_or("");
    json!({
        "seq": r["seq"],
        "cite": cite,
        "time": time,
        "observer": obs,
        "trust": super::pages::trust(obs),
        "host": host,
        "app": r["app"],
        "class": r["class"],
        "message": r["message"],
        "vm": vm,
        "vm_href": (!vm.is_empty()).then(|| href("timeline", &[("vm", vm)])),
        "around": super::pages::around_href(host, time, obs, &cite),
    })
}

/// `GET /ui/cases/{id}`: the case as this user may see it.
pub(crate) fn view(cx: &mut super::pages::Cx, id: &str) -> Result<(), Shown> {
    let endpoint = format!("cases/{id}");
    let r = cx.case_api(("GET", &endpoint), &Vec::new(), None);
    let v = json_of(&r)?;
    let queries: Vec<Value> = v["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let verb = q["verb"].as_str().unwrap_or("");
            let shown = pairs_of(&q["params"])
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            json!({"verb": verb, "params": shown, "title": q["title"], "by": q["by"],
                   "time": q["time"], "seq": q["seq"], "href": question_href(verb, &q["params"])})
        })
        .collect();
    // Annotations and tags by the record they are on; the rest are the case's own notes.
    // By citation: `SEQ`, or `SEQ/F.R` for one flow of a datagram.
    let notes_on = |key: &str| -> Vec<Value> {
        v["annotations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["record"].is_object() && super::pages::cite_of(&a["record"]) == key)
            .map(|a| json!({"text": a["text"], "by": a["by"], "time": a["time"], "seq": a["seq"]}))
            .collect()
    };
    let tags_on = |key: &str| -> Vec<Value> {
        v["record_tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                let seq = t["record"].as_u64().unwrap_or(0);
                match t["flow"].as_str() {
                    Some(f) => format!("{seq}/{f}") == key,
                    None => seq.to_string() == key,
                }
            })
            .map(|t| t["tag"].clone())
            .collect()
    };
    let mut records: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in v["stars"].as_array().into_iter().flatten() {
        let key = super::pages::cite_of(&s["record"]);
        if !seen.insert(key.clone()) {
            continue;
        }
        let mut r = record(&s["record"]);
        r["starred"] = json!({"by": s["by"], "time": s["time"]});
        r["notes"] = json!(notes_on(&key));
        r["tags"] = json!(tags_on(&key));
        records.push(r);
    }
    // Records annotated without a star.
    for a in v["annotations"].as_array().into_iter().flatten() {
        if !a["record"].is_object() {
            continue;
        }
        let key = super::pages::cite_of(&a["record"]);
        if !seen.insert(key.clone()) {
            continue;
        }
        let mut r = record(&a["record"]);
        r["starred"] = Value::Null;
        r["notes"] = json!(notes_on(&key));
        r["tags"] = json!(tags_on(&key));
        records.push(r);
    }
    let case_notes: Vec<Value> = v["annotations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["record"].is_null())
        .cloned()
        .collect();
    let owner = v["owner"] == cx.user.name.as_str()
        || v["owner_subject"] == cx.user.subject.as_str()
        || crate::api::auth::role_of(&cx.user.identity(), &cx.svc().config)
            .is_some_and(|r| r.iter().any(|r| matches!(r, serve::config::ApiRole::Site)));
    let reports: Vec<Value> = ["html", "md", "json"]
        .iter()
        .map(|f| json!({"format": f, "href": format!("/ui/cases/{id}/report?format={f}")}))
        .collect();
    cx.set_ctx(
        "title",
        json!(format!("Case: {}", v["title"].as_str().unwrap_or(id))),
    );
    cx.set_ctx(
        "case",
        json!({
            "id": v["id"], "title": v["title"], "owner": v["owner"], "created": v["created"],
            "users": v["users"], "vos": v["vos"], "tags": v["tags"], "members": members(&v),
            "queries": queries, "records": records, "notes": case_notes,
            "writable": v["access"] == "write", "may_share": owner,
            "reports": reports, "href": format!("/ui/cases/{id}"),
        }),
    );
    Ok(())
}

/// `GET /ui/cases/{id}/report?format=md|json|html`: the case's incident report, as the API
/// exports it (a standalone document: no script, its own inline style).
pub(crate) fn report(
    svc: &Service,
    user: &UiSession,
    req: &ApiRequest,
    sink: &dyn AuditSink,
    id: &str,
) -> ApiResponse {
    let p: Params = crate::api::params_of(req.query.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "format")
        .collect();
    let endpoint = format!("cases/{id}/report");
    let mut r = call(svc, user, req, sink, ("GET", &endpoint), &p, None);
    if r.status != 200 {
        let error = json_of(&r)
            .err()
            .map_or_else(|| "refused".into(), |s| s.error);
        return error_page(user, r.status, &error);
    }
    r.headers = vec![
        ("cache-control", "no-store".into()),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
                .into(),
        ),
        ("x-content-type-options", "nosniff".into()),
    ];
    r
}

/// Names in a form field: separated by commas or white space.
fn names(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /ui/cases` (create) and `POST /ui/case/{star,unstar,annotate,tag,query,share}`
/// (form fields: `csrf`, `case`, `next`, and the operation's own). The session's CSRF token
/// must come with the form; each change is one call of the case API.
pub(crate) fn post(
    svc: &Service,
    user: &UiSession,
    req: &ApiRequest,
    sink: &dyn AuditSink,
    path: &str,
) -> ApiResponse {
    let form = crate::api::params_of(std::str::from_utf8(&req.body).ok());
    let get = |k: &str| {
        form.iter()
            .rev()
            .find(|(n, v)| n == k && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    };
    if get("csrf") != Some(user.csrf.as_str()) {
        return error_page(
            user,
            403,
            "this form did not come from your session (CSRF token missing or stale): reload the page",
        );
    }
    let back = |id: &str| -> String {
        match get("next") {
            Some(n) if super::session::safe_next(n) == n && n != "/ui/" => n.to_string(),
            _ => format!("/ui/cases/{id}"),
        }
    };
    let refused = |r: &ApiResponse| {
        let error = json_of(r)
            .err()
            .map_or_else(|| "refused".into(), |s| s.error);
        error_page(user, r.status.max(400), &error)
    };
    if path == "cases" {
        let mut body = json!({"title": get("title").unwrap_or("")});
        let tags = names(get("tags"));
        if !tags.is_empty() {
            body["tags"] = json!(tags);
        }
        let r = call(
            svc,
            user,
            req,
            sink,
            ("POST", "cases"),
            &Vec::new(),
            Some(&body),
        );
        return match json_of(&r) {
            Ok(v) => redirect(
                &format!("/ui/cases/{}", v["id"].as_str().unwrap_or("")),
                Vec::new(),
            ),
            Err(_) => refused(&r),
        };
    }
    let Some(op) = path.strip_prefix("case/") else {
        return error_page(user, 404, &format!("no form {path:?}"));
    };
    let Some(case) = get("case").map(str::to_string) else {
        return error_page(user, 400, "which case? (open one first: Cases → New case)");
    };
    if case.contains('/') {
        return error_page(user, 400, "not a case id");
    }
    // `SEQ`, or `SEQ/F.R` for a flow of the datagram at SEQ (`pages::cite_of`).
    let (seq, flow): (Option<u64>, Option<&str>) =
        match get("seq").map(|v| v.split_once('/').map_or((v, None), |(a, b)| (a, Some(b)))) {
            None => (None, None),
            Some((s, f)) => match s.parse() {
                Ok(s) => (Some(s), f),
                Err(_) => return error_page(user, 400, "seq: a ledger position"),
            },
        };
    // The record (or flow) the API is asked about.
    let at = |mut b: Value| {
        if let Some(f) = flow {
            b["flow"] = json!(f);
        }
        b
    };
    let text = get("text").map(str::to_string);
    // (API endpoint, body) calls, in order; the first refusal stops.
    let mut calls: Vec<(&str, Value)> = Vec::new();
    match op {
        "star" => {
            let Some(s) = seq else {
                return error_page(user, 400, "which record? (seq)");
            };
            calls.push(("stars", at(json!({"seq": s}))));
            if let Some(t) = &text {
                calls.push(("annotations", at(json!({"seq": s, "text": t}))));
            }
        }
        "unstar" => {
            let Some(s) = seq else {
                return error_page(user, 400, "which record? (seq)");
            };
            calls.push(("stars", at(json!({"seq": s, "unstar": true}))));
        }
        "annotate" => calls.push(("annotations", at(json!({"seq": seq, "text": text})))),
        "tag" => calls.push(("tags", at(json!({"seq": seq, "tag": get("tag")})))),
        "query" => {
            let verb = get("verb").unwrap_or("");
            let mut params = serde_json::Map::new();
            for (k, v) in crate::api::params_of(get("params")) {
                if v.trim().is_empty() {
                    continue;
                }
                match params.get_mut(&k) {
                    Some(Value::Array(a)) => a.push(json!(v)),
                    Some(x) => *x = json!([x.clone(), v]),
                    None => {
                        params.insert(k, json!(v));
                    }
                }
            }
            let mut b = json!({"verb": verb, "params": params});
            if let Some(t) = text.as_deref().or(get("title")) {
                b["title"] = json!(t);
            }
            calls.push(("queries", b));
        }
        "share" => {
            calls.push((
                "members",
                json!({"users": names(get("users")), "vos": names(get("vos"))}),
            ));
        }
        _ => return error_page(user, 404, &format!("no case form {op:?}")),
    }
    for (what, body) in calls {
        let endpoint = format!("cases/{case}/{what}");
        let r = call(
            svc,
            user,
            req,
            sink,
            ("POST", &endpoint),
            &Vec::new(),
            Some(&body),
        );
        if r.status >= 300 {
            return refused(&r);
        }
    }
    let mut to = back(&case);
    if let Some(s) = seq
        && !to.contains('#')
    {
        // The element id the pages give the record (or the flow: `seq-SEQ/F.R`).
        match flow {
            Some(f) => to.push_str(&format!("#seq-{s}/{f}")),
            None => to.push_str(&format!("#seq-{s}")),
        }
    }
    redirect(&to, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_questions_link_to_their_pages() {
        assert_eq!(
            question_href(
                "who",
                &json!({"ip": "10.0.0.1", "at": "2026-10-14T00:00:00Z"})
            ),
            "/ui/who?ip=10.0.0.1&at=2026-10-14T00%3A00%3A00Z"
        );
        assert_eq!(
            question_href("search", &json!({"q": "sshd", "host": "wn-1"})),
            "/ui/search?q=sshd&host=wn-1"
        );
        assert_eq!(
            question_href("hunt", &json!({"indicator": ["1.2.3.4", "evil.example"]})),
            "/ui/hunt?indicators=1.2.3.4%0Aevil.example"
        );
    }

    #[test]
    fn names_split_on_commas_and_spaces() {
        assert_eq!(names(Some("alice, bob  carol")), ["alice", "bob", "carol"]);
        assert!(names(None).is_empty());
    }
}
