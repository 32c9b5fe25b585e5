//! `GET/POST /api/v1/cases`, `GET /api/v1/cases/{id}`, `POST /api/v1/cases/{id}/{queries,
//! stars,annotations,members,tags}`, `GET /api/v1/cases/{id}/report?format=md|json|html`:
//! the query API's side of [`crate::cases`] (who may do what is there).
//!
//! Every request is one audit record like any query (verbs `case.list`, `case.create`,
//! `case.show`, `case.report`, `case.query`, `case.star`, `case.annotate`, `case.share`,
//! `case.tag`); an accepted change is that record's `change`, durable in the ledger before
//! the case store folds it and the answer (the case as the asker sees it, with `change_seq`,
//! the record's position) leaves.

use serde_json::{Value, json};
use serve::api::{ApiRequest, ApiResponse, AuditSink};
use serve::config::ApiRole;
use views::cases::Change;

use super::{Params, Refusal, Reply, Service, audit, auth, internal, refuse};
use crate::cases::{self, Access, Actor};
use crate::cli::report::ReportFormat;

/// Longest annotation, title or tag accepted.
const MAX_TEXT: usize = 64 << 10;

enum Outcome {
    Read {
        resp: ApiResponse,
        count: u64,
        vms: std::collections::BTreeSet<String>,
    },
    Write {
        change: Change,
        created: bool,
        vms: std::collections::BTreeSet<String>,
    },
}

fn text_of(b: &Value, k: &str, required: bool) -> Result<Option<String>, Refusal> {
    match b.get(k) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_TEXT => {
            Ok(Some(s.clone()))
        }
        _ => Err(refuse(
            400,
            format!("{k}: a non-empty string of at most {MAX_TEXT} bytes"),
        )),
    }
}

fn strings_of(b: &Value, k: &str) -> Result<Vec<String>, Refusal> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_TEXT => Ok(s.clone()),
                _ => Err(refuse(400, format!("{k}: a list of non-empty strings"))),
            })
            .collect(),
        _ => Err(refuse(400, format!("{k}: a list of strings"))),
    }
}

fn seq_of(b: &Value, required: bool) -> Result<Option<u64>, Refusal> {
    match b.get("seq") {
        None | Some(Value::Null) if !required => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| refuse(400, "seq: a ledger position (a positive integer)")),
        None => Err(refuse(400, "seq: the record's ledger position is required")),
    }
}

/// A flow's place in the datagram `seq` names: `"flow": "F.R"` or `{"flowset", "record"}`, as
/// answers cite it.
fn flow_of(b: &Value) -> Result<Option<String>, Refusal> {
    let bad = || {
        refuse(
            400,
            "flow: a flow's place in its datagram, \"F.R\" or {\"flowset\", \"record\"}",
        )
    };
    let at = match b.get("flow") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) => t.parse::<model::flow::FlowAt>().map_err(|_| bad())?,
        Some(o) => {
            let n = |k: &str| {
                o.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|v| u16::try_from(v).ok())
            };
            model::flow::FlowAt {
                flowset: n("flowset").ok_or_else(bad)?,
                record: n("record").ok_or_else(bad)?,
            }
        }
    };
    Ok(Some(at.to_string()))
}

fn vm_of_record(r: &Value) -> std::collections::BTreeSet<String> {
    r["attribution"]["vm"]
        .as_str()
        .map(|v| std::iter::once(v.to_string()).collect())
        .unwrap_or_default()
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cases(
        &self,
        req: &ApiRequest,
        endpoint: &str,
        p: &Params,
        id: &auth::Identity,
        roles: Vec<ApiRole>,
        sink: &dyn AuditSink,
        mut record: audit::Audit,
    ) -> ApiResponse {
        let actor = Actor {
            name: id.name.clone(),
            subject: Some(id.subject.clone()),
            roles,
        };
        let parts: Vec<&str> = endpoint.split('/').collect();
        if let Some(case) = parts.get(1)
            && let Value::Object(m) = &mut record.params
        {
            m.insert("case".into(), Value::String((*case).to_string()));
        }
        let outcome = self.case_call(req, &parts, p, &actor, &mut record);
        match outcome {
            Err(r) => {
                record.reason = Some(r.error.clone());
                record.vms = r.vms;
                let resp = ApiResponse::json(r.status, &json!({"error": r.error}));
                response(self.audit_and(sink, record, r.status, 0, Reply::Response(resp)))
            }
            Ok(Outcome::Read { resp, count, vms }) => {
                record.vms = vms;
                response(self.audit_and(sink, record, 200, count, Reply::Response(resp)))
            }
            Ok(Outcome::Write {
                change,
                created,
                vms,
            }) => {
                let case_id = change.case().to_string();
                record.vms = vms;
                record.status = 200;
                record.count = 1;
                record.change = serde_json::to_value(&change).ok();
                let seq = match sink.store(record.record()) {
                    Ok(s) => s,
                    Err(e) => {
                        return ApiResponse::json(
                            503,
                            &json!({"error": format!("the change could not be recorded in the ledger, so it is not made: {e}")}),
                        );
                    }
                };
                // The change is in the ledger; the answer is the case as the store folds it.
                let answer = (|| -> anyhow::Result<Value> {
                    let dd = pipeline::datadir::DataDir::open(&self.data, false)?;
                    let store = cases::sync(&dd)?;
                    let c = store
                        .get(&case_id)?
                        .ok_or_else(|| anyhow::anyhow!("case {case_id} not in the store"))?;
                    let sc = self
                        .scope(&actor.roles)
                        .map_err(|r| anyhow::anyhow!(r.error))?;
                    let mut v = cases::view(&dd, &c, sc.as_deref(), cases::access(&c, &actor))?;
                    v["change_seq"] = json!(seq);
                    Ok(v)
                })();
                match answer {
                    Ok(v) => ApiResponse::json(if created { 201 } else { 200 }, &v),
                    Err(e) => ApiResponse::json(
                        500,
                        &json!({"error": format!("recorded as ledger record #{seq}, but the case could not be read back: {e:#}"), "change_seq": seq}),
                    ),
                }
            }
        }
    }

    fn case_call(
        &self,
        req: &ApiRequest,
        parts: &[&str],
        p: &Params,
        actor: &Actor,
        record: &mut audit::Audit,
    ) -> Result<Outcome, Refusal> {
        let dd = self.dd()?;
        let sc = self.scope(&actor.roles)?;
        let scope = sc.as_deref();
        let store = cases::sync(&dd).map_err(internal)?;
        let body = || -> Result<Value, Refusal> {
            if req.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            match serde_json::from_slice(&req.body) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(_) => Err(refuse(400, "the body must be a JSON object")),
                Err(e) => Err(refuse(400, format!("the body must be JSON: {e}"))),
            }
        };
        let no_case =
            |id: &str| refuse(404, format!("no case {id:?} here (or not shared with you)"));
        let load = |id: &str, need: Access| -> Result<(views::cases::Case, Access), Refusal> {
            let c = store
                .get(id)
                .map_err(|e| internal(e.into()))?
                .ok_or_else(|| no_case(id))?;
            let a = cases::access(&c, actor);
            if a == Access::None {
                return Err(no_case(id));
            }
            if a < need {
                return Err(refuse(
                    403,
                    "read-only: this role may read the case, not change it",
                ));
            }
            Ok((c, a))
        };
        let set_verb = |record: &mut audit::Audit, v: &str| record.verb = format!("case.{v}");
        match (req.method.as_str(), parts) {
            ("GET", ["cases"]) => {
                set_verb(record, "list");
                let mut list = Vec::new();
                for id in store.ids().map_err(|e| internal(e.into()))? {
                    if let Some(c) = store.get(&id).map_err(|e| internal(e.into()))?
                        && cases::access(&c, actor) != Access::None
                    {
                        list.push(cases::summary(&c));
                    }
                }
                let n = list.len();
                Ok(Outcome::Read {
                    resp: ApiResponse::json(200, &json!({"cases": list, "total": n})),
                    count: n as u64,
                    vms: Default::default(),
                })
            }
            ("POST", ["cases"]) => {
                set_verb(record, "create");
                if !actor.may_create() {
                    return Err(refuse(403, "read-only: this role may not open cases"));
                }
                let b = body()?;
                let title = text_of(&b, "title", true)?.unwrap_or_default();
                Ok(Outcome::Write {
                    change: Change::Create {
                        case: cases::new_id(),
                        title,
                        tags: strings_of(&b, "tags")?,
                    },
                    created: true,
                    vms: Default::default(),
                })
            }
            ("GET", ["cases", id]) => {
                set_verb(record, "show");
                let (c, a) = load(id, Access::Read)?;
                let v = cases::view(&dd, &c, scope, a).map_err(internal)?;
                let count = v["stars"].as_array().map_or(0, Vec::len) as u64;
                Ok(Outcome::Read {
                    vms: cases::vms_named(&v, scope),
                    resp: ApiResponse::json(200, &v),
                    count,
                })
            }
            ("GET", ["cases", id, "report"]) => {
                set_verb(record, "report");
                let (c, a) = load(id, Access::Read)?;
                let format = match p.iter().rev().find(|(k, _)| k == "format") {
                    None => ReportFormat::Json,
                    Some((_, f)) => match f.as_str() {
                        "json" => ReportFormat::Json,
                        "md" => ReportFormat::Md,
                        "html" => ReportFormat::Html,
                        _ => return Err(refuse(400, "format: md, json or html")),
                    },
                };
                let (ct, bytes, v) = cases::report(&dd, &c, scope, a, format).map_err(internal)?;
                let count = v["questions"].as_array().map_or(0, Vec::len) as u64;
                Ok(Outcome::Read {
                    vms: cases::vms_named(&v, scope),
                    resp: ApiResponse {
                        status: 200,
                        content_type: ct,
                        body: serve::api::ApiBody::Full(bytes),
                        headers: Vec::new(),
                    },
                    count,
                })
            }
            ("POST", ["cases", id, what]) => {
                let op = match *what {
                    "queries" => "query",
                    "stars" => "star",
                    "annotations" => "annotate",
                    "members" => "share",
                    "tags" => "tag",
                    _ => return Err(refuse(404, format!("no endpoint cases/{{id}}/{what}"))),
                };
                set_verb(record, op);
                let (c, _) = load(id, Access::Write)?;
                let b = body()?;
                let case = c.id.clone();
                // A flow has no record of its own: `seq` is its datagram's, `flow` its place.
                let flow = flow_of(&b)?;
                let cite = |seq: u64| -> Result<Value, Refusal> {
                    cases::cite(&dd, seq, flow.as_deref(), scope)
                        .map_err(internal)?
                        .ok_or_else(|| {
                            let what = match &flow {
                                Some(f) => format!("flow #{seq}/{f}"),
                                None => format!("record #{seq}"),
                            };
                            refuse(
                                404,
                                format!(
                                    "no {what} this role may see (not in the ledger, or not yours)"
                                ),
                            )
                        })
                };
                let mut vms = Default::default();
                let change = match op {
                    "query" => {
                        let verb = text_of(&b, "verb", true)?.unwrap_or_default();
                        let params = b.get("params").cloned().unwrap_or_else(|| json!({}));
                        cases::check_query(&dd, &verb, &params).map_err(|e| refuse(400, e))?;
                        Change::Query {
                            case,
                            verb,
                            params: params.to_string(),
                            title: text_of(&b, "title", false)?,
                        }
                    }
                    "star" => {
                        let seq = seq_of(&b, true)?.unwrap_or_default();
                        vms = vm_of_record(&cite(seq)?);
                        if b.get("unstar").and_then(Value::as_bool) == Some(true) {
                            Change::Unstar { case, seq, flow }
                        } else {
                            Change::Star { case, seq, flow }
                        }
                    }
                    "annotate" => {
                        let seq = seq_of(&b, false)?;
                        if let Some(s) = seq {
                            vms = vm_of_record(&cite(s)?);
                        }
                        Change::Annotate {
                            case,
                            seq,
                            flow: flow.filter(|_| seq.is_some()),
                            text: text_of(&b, "text", true)?.unwrap_or_default(),
                        }
                    }
                    "tag" => {
                        let seq = seq_of(&b, false)?;
                        if let Some(s) = seq {
                            vms = vm_of_record(&cite(s)?);
                        }
                        Change::Tag {
                            case,
                            seq,
                            flow: flow.filter(|_| seq.is_some()),
                            tag: text_of(&b, "tag", true)?.unwrap_or_default(),
                        }
                    }
                    _ => {
                        // Sharing is the owner's (or the site's), not every member's.
                        let owner = actor.name == c.owner
                            || actor.subject.is_some() && actor.subject == c.owner_subject;
                        if !owner && !actor.roles.iter().any(|r| matches!(r, ApiRole::Site)) {
                            return Err(refuse(
                                403,
                                "only the case's owner (or the site) shares it",
                            ));
                        }
                        let users = strings_of(&b, "users")?;
                        let vos = strings_of(&b, "vos")?;
                        if let Some(v) = vos.iter().find(|v| !self.config.vos.contains_key(*v)) {
                            return Err(refuse(
                                400,
                                format!("no VO {v:?} in this server's [[api.vos]]"),
                            ));
                        }
                        if users.is_empty() && vos.is_empty() {
                            return Err(refuse(400, "users or vos: whom to share with"));
                        }
                        Change::Share { case, users, vos }
                    }
                };
                Ok(Outcome::Write {
                    change,
                    created: false,
                    vms,
                })
            }
            (m, ["cases", ..]) if m != "GET" && m != "POST" => {
                Err(refuse(405, "GET, or POST to change a case"))
            }
            _ => Err(refuse(404, format!("no endpoint {:?}", parts.join("/")))),
        }
    }
}

/// The response of an audited case answer (its own, or the refusal when the audit failed).
fn response(r: Reply) -> ApiResponse {
    match r {
        Reply::Response(r) => r,
        Reply::Json(status, v) => ApiResponse::json(status, &v),
        Reply::Raw(ct, bytes) => ApiResponse {
            status: 200,
            content_type: ct,
            body: serve::api::ApiBody::Full(bytes),
            headers: Vec::new(),
        },
        Reply::Lines(_) => ApiResponse::json(500, &json!({"error": "no lines here"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow's place as answers cite it (`{"flowset", "record"}`) or as text (`"F.R"`);
    /// anything else is refused, never read as a record.
    #[test]
    fn a_flow_is_named_by_its_place_in_the_datagram() {
        let of = |b: Value| flow_of(&b).map_err(|r| r.status);
        assert_eq!(of(json!({"seq": 4})), Ok(None));
        assert_eq!(of(json!({"flow": "2.17"})), Ok(Some("2.17".into())));
        assert_eq!(
            of(json!({"flow": {"flowset": 2, "record": 17}})),
            Ok(Some("2.17".into()))
        );
        for bad in [
            json!({"flow": "2"}),
            json!({"flow": "2.x"}),
            json!({"flow": {"flowset": 2}}),
            json!({"flow": {"flowset": 70000, "record": 1}}),
            json!({"flow": 3}),
        ] {
            assert_eq!(of(bad.clone()), Err(400), "{bad}");
        }
    }
}
