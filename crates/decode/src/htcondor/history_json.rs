//! `condor_history -json` (and `condor_q -json`): one element of the top-level JSON array per
//! record (framing: `Framing::JsonArray`), each a job ClassAd as a JSON object.
//!
//! Values map to [`Value`]: strings, numbers, booleans, `null` (undefined), arrays (lists);
//! HTCondor writes expressions as strings `"/Expr(…)/"`, which become [`Value::Expr`] with the
//! wrapper removed, and nested ads (objects) are kept as their JSON text. Parsing is
//! `serde_json`'s; a record that is not JSON or not an object is a `bad_json` issue with the
//! byte offset serde_json reports. The attributes' meaning is [`super::job`]'s business.

use model::{DecodeHints, Event, ParseIssue};

use super::classad::{Ad, Attr, Value};

pub(crate) const KIND: &str = "condor-history-json";

/// JSON value → ClassAd value.
fn value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Undefined,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => match s.strip_prefix("/Expr(").and_then(|r| r.strip_suffix(")/")) {
            Some(expr) => Value::Expr(expr.to_string()),
            None => Value::Str(s.clone()),
        },
        J::Array(items) => Value::List(items.iter().map(value).collect()),
        J::Object(_) => Value::Expr(v.to_string()),
    }
}

/// Byte offset of serde_json's 1-based line / column in `raw`.
fn offset_of(raw: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match memchr::memchr(b'\n', raw.get(start..).unwrap_or_default()) {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(raw.len())
}

/// Fill `ev` from one array element. Never fails: what is not understood becomes an issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let raw = std::mem::take(&mut ev.raw);
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(map)) => {
            let mut ad = Ad::default();
            for (name, v) in &map {
                ad.insert(Attr {
                    name: name.clone(),
                    value: value(v),
                    offset: None,
                });
            }
            super::job::fill(ev, &raw, &ad);
        }
        Ok(_) => {
            ev.issues.push(ParseIssue::new(
                &raw,
                0,
                "bad_json",
                "a JSON object (one job ClassAd of condor_history -json)",
            ));
            ev.message = crate::text::lossy(&raw);
        }
        Err(e) => {
            let offset = offset_of(&raw, e.line(), e.column());
            let expected = format!("a JSON object (one job ClassAd): {e}");
            ev.issues
                .push(ParseIssue::new(&raw, offset, "bad_json", &expected));
            ev.message = crate::text::lossy(&raw);
        }
    }
    ev.raw = raw;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let j: serde_json::Value = serde_json::from_str(
            r#"[null, true, 3, 2.5, "x", "/Expr(a && b)/", [1, "y"], {"a": 1}]"#,
        )
        .unwrap();
        let got: Vec<Value> = j.as_array().unwrap().iter().map(value).collect();
        assert_eq!(
            got,
            vec![
                Value::Undefined,
                Value::Bool(true),
                Value::Int(3),
                Value::Real(2.5),
                Value::Str("x".into()),
                Value::Expr("a && b".into()),
                Value::List(vec![Value::Int(1), Value::Str("y".into())]),
                Value::Expr(r#"{"a":1}"#.into()),
            ]
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(offset_of(b"{\n  \"a\": x", 2, 8), 9);
        assert_eq!(offset_of(b"", 5, 5), 0);
    }
}
