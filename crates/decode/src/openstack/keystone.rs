//! One entry of a Keystone directory dump → an `identity.directory` Event.
//!
//! Input: one element of the JSON array that `openstack user list --long -f json` or
//! `openstack project list --long -f json` prints (framing hands out one element per record).
//! User entries (`ID`, `Name`, `Project`, `Domain`, `Description`, `Email`, `Enabled`) give
//! USER_ID, USER_NAME, EMAIL and PROJECT_ID (the user's default project), `domain`,
//! `description`, `enabled` and `directory` = `user`; project entries (`ID`, `Name`,
//! `Domain ID`, `Description`, `Enabled`) give PROJECT_ID, PROJECT_NAME, `domain_id`,
//! `description`, `enabled` and `directory` = `project`. The `--long` columns tell the two
//! apart; a short listing (`ID`, `Name` only) cannot say whether it lists users or projects,
//! so it stays class `other` with an `ambiguous_entry` issue rather than a guess.
//!
//! A user entry's `federated` list (what Keystone's API and `openstack user show -f json`
//! give for a federated user: `[{"idp_id": …, "protocols": [{"protocol_id": "openid",
//! "unique_id": …}]}]`) becomes FEDERATED_IDS, `idp unique_id` pairs separated by `|`
//! (issue 12: the unique id is the `sub` an IAM gave Keystone, which ties the account to the
//! IAM's person).
//!
//! A dump carries no time: the reported time stays empty and the facts layer dates entries by
//! their received time. Observer: the cloud. Never fails; raw bytes untouched.

use model::fields;
use model::{DecodeHints, Event, EventClass, ParseIssue};
use serde_json::{Map, Value};

use super::{json_object, key_offset};
use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "keystone-directory";

/// Fill `ev` from one directory entry. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    let raw = std::mem::take(&mut ev.raw);
    parse(ev, &raw);
    ev.raw = raw;
}

fn issue(ev: &mut Event, raw: &[u8], offset: usize, kind: &str, expected: &str) {
    ev.issues.push(ParseIssue::new(raw, offset, kind, expected));
}

/// A string column: None when absent, null or empty; an issue when of another type.
fn column(ev: &mut Event, raw: &[u8], obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        _ => {
            let expected = format!("a string in column {key:?}");
            issue(ev, raw, key_offset(raw, key), "wrong_type", &expected);
            None
        }
    }
}

fn parse(ev: &mut Event, raw: &[u8]) {
    ev.source_kind = KIND.to_string();
    let body = strip_terminators(raw);
    let Some(obj) = json_object(ev, raw, body, "a directory entry") else {
        ev.message = lossy(body);
        return;
    };
    let is_project = obj.contains_key("Domain ID");
    let is_user = ["Email", "Project", "Domain"]
        .iter()
        .any(|k| obj.contains_key(*k));
    let id = column(ev, raw, &obj, "ID");
    let name = column(ev, raw, &obj, "Name");
    let (id_field, name_field, directory) = match (is_user, is_project) {
        (true, false) => (fields::USER_ID, fields::USER_NAME, "user"),
        (false, true) => (fields::PROJECT_ID, fields::PROJECT_NAME, "project"),
        _ => {
            issue(
                ev,
                raw,
                0,
                "ambiguous_entry",
                "a --long user entry (Email, Project, Domain) or project entry (Domain ID)",
            );
            ev.message = lossy(body);
            return;
        }
    };
    let Some(id) = id else {
        issue(ev, raw, 0, "missing_field", "column \"ID\"");
        ev.message = lossy(body);
        return;
    };
    ev.class = EventClass::IdentityDirectory;
    ev.fields
        .insert("directory".to_string(), directory.to_string());
    ev.fields.insert(id_field.to_string(), id.clone());
    let mut message = format!("{directory} {id}");
    if let Some(name) = name {
        message.push_str(&format!(" name={name}"));
        ev.fields.insert(name_field.to_string(), name);
    }
    let cols: &[(&str, &str)] = if directory == "user" {
        &[
            ("Email", fields::EMAIL),
            ("Project", fields::PROJECT_ID),
            ("Domain", "domain"),
            ("Description", "description"),
        ]
    } else {
        &[("Domain ID", "domain_id"), ("Description", "description")]
    };
    for (key, field) in cols {
        if let Some(v) = column(ev, raw, &obj, key) {
            if *field != "description" {
                message.push_str(&format!(" {field}={v}"));
            }
            ev.fields.insert((*field).to_string(), v);
        }
    }
    if directory == "user" {
        let fed = obj.get("federated").or_else(|| obj.get("Federated"));
        if let Some(Value::Array(list)) = fed {
            let mut pairs = Vec::new();
            for f in list {
                let idp = f.get("idp_id").and_then(Value::as_str).unwrap_or("-");
                if let Some(Value::Array(protos)) = f.get("protocols") {
                    for p in protos {
                        if let Some(u) = p.get("unique_id").and_then(Value::as_str)
                            && !u.trim().is_empty()
                            && !u.contains(['|', ' '])
                        {
                            pairs.push(format!("{} {}", idp.replace([' ', '|'], "_"), u.trim()));
                        }
                    }
                }
            }
            if !pairs.is_empty() {
                message.push_str(&format!(" federated={}", pairs.len()));
                ev.fields
                    .insert(fields::FEDERATED_IDS.to_string(), pairs.join("|"));
            }
        }
    }
    match obj.get("Enabled") {
        Some(Value::Bool(b)) => {
            ev.fields.insert("enabled".to_string(), b.to_string());
            if !b {
                message.push_str(" disabled");
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => issue(
            ev,
            raw,
            key_offset(raw, "Enabled"),
            "wrong_type",
            "true or false in column \"Enabled\"",
        ),
    }
    ev.message = message;
}
