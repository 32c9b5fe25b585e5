//! One record of a SCIM 2.0 export → an `identity.directory` Event (issue 12).
//!
//! Input: what [`crate::framing::Framing::ScimList`] cuts from `/scim/Users` and
//! `/scim/Groups` ListResponse pages (RFC 7644 §3.4.2): one User or Group resource, or the
//! page's head / tail around the resources (kept, class `other`, with the page's counts).
//! Shapes from RFC 7643 and INDIGO IAM's serialisation (iam-login-service
//! `it/infn/mw/iam/api/scim/model/`: `ScimUser` — `id`, `userName`, `name.formatted` /
//! `givenName` / `familyName`, `displayName`, `active`, `emails[].value` / `primary`,
//! `groups[].value` / `display`; the extension `urn:indigo-dc:scim:schemas:IndigoUser`
//! (`ScimIndigoUser`) — `oidcIds[].issuer` / `subject`, `sshKeys[].fingerprint` / `value`,
//! `certificates[].subjectDn`; `ScimGroup` — `id`, `displayName`, `members[].value`).
//!
//! Fields: DIRECTORY_SOURCE = `scim`, `directory` = `user` / `group`, SCIM_ID, USER_NAME,
//! PERSON_NAME, EMAIL (the primary, else the first), ACTIVE, GROUPS, OIDC_IDS
//! (`issuer subject|…`), CERT_DNS, SSH_KEYS, MEMBERS. A resource without `id` cannot be
//! referred to and stays class `other` with a `missing_field` issue; other missing members
//! are simply absent; members of the wrong type are issues. Observer: the VO (the IAM is the
//! VO's). A dump carries no time: the facts layer dates entries by their received time.

use model::{DecodeHints, Event, EventClass, ParseIssue, fields};
use serde_json::{Map, Value};

use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "scim";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// INDIGO IAM's user extension (`ScimConstants.INDIGO_USER_SCHEMA`).
pub const INDIGO_USER: &str = "urn:indigo-dc:scim:schemas:IndigoUser";

/// Fill `ev` from one record. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse(ev, &raw);
    ev.raw = raw;
}

fn issue(ev: &mut Event, raw: &[u8], key: &str, kind: &str, expected: &str) {
    let at = memchr::memmem::find(raw, format!("\"{key}\"").as_bytes()).unwrap_or(0);
    ev.issues.push(ParseIssue::new(raw, at, kind, expected));
}

fn parse(ev: &mut Event, raw: &[u8]) {
    ev.source_kind = KIND.to_string();
    let body = strip_terminators(raw).trim_ascii();
    ev.message = lossy(body);
    // A ListResponse's head (`{ … "Resources": [`) or tail (`] … }`): the page's bookkeeping.
    if body.ends_with(b"[") && memchr::memmem::find(body, b"\"Resources\"").is_some() {
        let mut whole = body.to_vec();
        whole.extend_from_slice(b"]}");
        if let Ok(Value::Object(page)) = serde_json::from_slice::<Value>(&whole) {
            page_summary(ev, &page, "SCIM ListResponse page");
            return;
        }
    }
    if body.starts_with(b"]") {
        let mut whole = b"{\"Resources\": [".to_vec();
        whole.extend_from_slice(body);
        if let Ok(Value::Object(page)) = serde_json::from_slice::<Value>(&whole) {
            page_summary(ev, &page, "end of a SCIM ListResponse page");
            return;
        }
    }
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            ev.issues.push(ParseIssue::new(
                raw,
                0,
                "not_object",
                "a SCIM resource (a JSON object)",
            ));
            return;
        }
        Err(e) => {
            let expected = format!("a SCIM resource: {e}");
            ev.issues
                .push(ParseIssue::new(raw, 0, "bad_json", &expected));
            return;
        }
    };
    let schemas: Vec<String> = match obj.get("schemas") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let has = |s: &str| schemas.iter().any(|x| x == s);
    let is_user = has(USER_SCHEMA) || (schemas.is_empty() && obj.contains_key("userName"));
    let is_group = has(GROUP_SCHEMA) || (schemas.is_empty() && obj.contains_key("members"));
    let kind = match (is_user, is_group) {
        (true, false) => "user",
        (false, true) => "group",
        _ => {
            issue(
                ev,
                raw,
                "schemas",
                "unknown_resource",
                "a SCIM User or Group (schemas naming core:2.0:User or core:2.0:Group)",
            );
            return;
        }
    };
    let Some(id) = string(ev, raw, &obj, "id") else {
        issue(
            ev,
            raw,
            "id",
            "missing_field",
            "\"id\" (a resource without one cannot be referred to)",
        );
        return;
    };
    ev.class = EventClass::IdentityDirectory;
    let mut put = |k: &str, v: String| {
        ev.fields.insert(k.to_string(), v);
    };
    put(fields::DIRECTORY_SOURCE, KIND.into());
    put("directory", kind.into());
    put(fields::SCIM_ID, id.clone());
    let mut message = format!("SCIM {kind} {id}");
    if kind == "group" {
        if let Some(name) = string(ev, raw, &obj, "displayName") {
            message.push_str(&format!(" name={name}"));
            ev.fields.insert(fields::USER_NAME.into(), name);
        }
        let members = refs(ev, raw, &obj, "members", "value");
        if !members.is_empty() {
            message.push_str(&format!(" members={}", members.len()));
            ev.fields.insert(fields::MEMBERS.into(), members.join(","));
        }
        ev.message = message;
        return;
    }
    // The IAM's own tokens name the person by this id (`sub`) under the IAM's issuer, which a
    // SCIM resource says only through `meta.location` (`https://iam.example.org/scim/Users/ID`).
    if let Some(Value::Object(meta)) = obj.get("meta")
        && let Some(loc) = meta.get("location").and_then(Value::as_str)
        && let Some(origin) = url_origin(loc)
    {
        ev.fields.insert(fields::ISSUER_ORIGIN.into(), origin);
    }
    if let Some(u) = string(ev, raw, &obj, "userName") {
        message.push_str(&format!(" userName={u}"));
        ev.fields.insert(fields::USER_NAME.into(), u);
    }
    if let Some(n) = person_name(ev, raw, &obj) {
        message.push_str(&format!(" name=\"{n}\""));
        ev.fields.insert(fields::PERSON_NAME.into(), n);
    }
    if let Some(e) = email(ev, raw, &obj) {
        message.push_str(&format!(" email={e}"));
        ev.fields.insert(fields::EMAIL.into(), e);
    }
    match obj.get("active") {
        Some(Value::Bool(b)) => {
            ev.fields.insert(fields::ACTIVE.into(), b.to_string());
            if !b {
                message.push_str(" inactive");
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => issue(
            ev,
            raw,
            "active",
            "wrong_type",
            "true or false in \"active\"",
        ),
    }
    let groups = refs(ev, raw, &obj, "groups", "display");
    if !groups.is_empty() {
        message.push_str(&format!(" groups={}", groups.join(",")));
        ev.fields.insert(fields::GROUPS.into(), groups.join(","));
    }
    match obj.get(INDIGO_USER) {
        Some(Value::Object(ext)) => indigo(ev, raw, ext, &mut message),
        None | Some(Value::Null) => {}
        Some(_) => issue(
            ev,
            raw,
            INDIGO_USER,
            "wrong_type",
            "an object for the IndigoUser extension",
        ),
    }
    ev.message = message;
}

/// `https://host[:port]` of a URL (lower-case), the part a token issuer shares with the
/// IAM's SCIM locations.
pub fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !scheme.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        )
    })
}

fn page_summary(ev: &mut Event, page: &Map<String, Value>, what: &str) {
    let mut msg = what.to_string();
    for key in ["totalResults", "startIndex", "itemsPerPage"] {
        if let Some(n) = page.get(key).and_then(Value::as_i64) {
            msg.push_str(&format!(" {key}={n}"));
            ev.fields.insert(format!("scim_{key}"), n.to_string());
        }
    }
    ev.message = msg;
}

/// A string member: None when absent, null or empty; an issue when of another type.
fn string(ev: &mut Event, raw: &[u8], obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        _ => {
            issue(ev, raw, key, "wrong_type", &format!("a string in {key:?}"));
            None
        }
    }
}

/// `key`'s array of objects, each one's `member` string (e.g. `groups[].display`).
fn refs(
    ev: &mut Event,
    raw: &[u8],
    obj: &Map<String, Value>,
    key: &str,
    member: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for item in a {
                let v = item
                    .get(member)
                    .or_else(|| item.get("value"))
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                match v {
                    // `,` separates the list in the field: a name holding one is kept escaped.
                    Some(s) => out.push(s.replace(',', "%2C")),
                    None => issue(ev, raw, key, "missing_field", &format!("{key}[].{member}")),
                }
            }
        }
        Some(_) => issue(ev, raw, key, "wrong_type", &format!("an array in {key:?}")),
    }
    out
}

fn person_name(ev: &mut Event, raw: &[u8], obj: &Map<String, Value>) -> Option<String> {
    if let Some(Value::Object(n)) = obj.get("name") {
        if let Some(f) = string(ev, raw, n, "formatted") {
            return Some(f);
        }
        let given = string(ev, raw, n, "givenName");
        let family = string(ev, raw, n, "familyName");
        let both: Vec<String> = given.into_iter().chain(family).collect();
        if !both.is_empty() {
            return Some(both.join(" "));
        }
    }
    string(ev, raw, obj, "displayName")
}

fn email(ev: &mut Event, raw: &[u8], obj: &Map<String, Value>) -> Option<String> {
    let list = match obj.get("emails")? {
        Value::Array(a) => a,
        Value::Null => return None,
        _ => {
            issue(ev, raw, "emails", "wrong_type", "an array in \"emails\"");
            return None;
        }
    };
    fn value(v: &Value) -> Option<&str> {
        v.get("value")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    list.iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .and_then(value)
        .or_else(|| list.iter().find_map(value))
        .map(str::to_string)
}

/// INDIGO IAM's extension: OIDC ids, certificates, SSH keys.
fn indigo(ev: &mut Event, raw: &[u8], ext: &Map<String, Value>, message: &mut String) {
    let mut oidc = Vec::new();
    if let Some(v) = ext.get("oidcIds") {
        match v {
            Value::Array(a) => {
                for o in a {
                    let iss = o
                        .get("issuer")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|s| !s.is_empty());
                    let sub = o
                        .get("subject")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|s| !s.is_empty());
                    match (iss, sub) {
                        (Some(i), Some(s)) if !i.contains([' ', '|']) && !s.contains('|') => {
                            oidc.push(format!("{i} {s}"))
                        }
                        _ => issue(
                            ev,
                            raw,
                            "oidcIds",
                            "missing_field",
                            "oidcIds[] with an issuer (no spaces) and a subject",
                        ),
                    }
                }
            }
            Value::Null => {}
            _ => issue(ev, raw, "oidcIds", "wrong_type", "an array in \"oidcIds\""),
        }
    }
    let mut dns = Vec::new();
    if let Some(Value::Array(a)) = ext.get("certificates") {
        for c in a {
            match c.get("subjectDn").and_then(Value::as_str).map(str::trim) {
                Some(dn) if !dn.is_empty() && !dn.contains('|') => dns.push(dn.to_string()),
                _ => issue(
                    ev,
                    raw,
                    "certificates",
                    "missing_field",
                    "certificates[].subjectDn",
                ),
            }
        }
    }
    let mut keys = Vec::new();
    if let Some(Value::Array(a)) = ext.get("sshKeys") {
        for k in a {
            let f = k
                .get("fingerprint")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.contains(','));
            match f {
                Some(f) => keys.push(f.to_string()),
                None => issue(ev, raw, "sshKeys", "missing_field", "sshKeys[].fingerprint"),
            }
        }
    }
    if !oidc.is_empty() {
        message.push_str(&format!(" oidc={}", oidc.len()));
        ev.fields.insert(fields::OIDC_IDS.into(), oidc.join("|"));
    }
    if !dns.is_empty() {
        message.push_str(&format!(" certificates={}", dns.len()));
        ev.fields.insert(fields::CERT_DNS.into(), dns.join("|"));
    }
    if !keys.is_empty() {
        message.push_str(&format!(" ssh_keys={}", keys.len()));
        ev.fields.insert(fields::SSH_KEYS.into(), keys.join(","));
    }
}
