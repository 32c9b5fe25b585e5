//! `condor_history -l` / `condor_q -l` job ads: one blank-line-separated block of
//! `Attr = value` lines per record (framing: `Framing::Blocks`), and the ClassAd literal
//! language both this and the JSON decoder map into ([`Value`]).
//!
//! The literal parser understands what job ads carry as data: strings with escapes, integers,
//! reals, booleans, `undefined` / `error`, and lists `{…}` of those. Anything else
//! (`Requirements = (TARGET.Arch == "X86_64") && …`, `CurrentTime = time()`) is an expression
//! and is kept as text ([`Value::Expr`]): evaluating ClassAd expressions is not our job, and no
//! attribute we model needs it. Why our own: there is no maintained Rust ClassAd crate, and
//! the subset needed is small.
//!
//! Attribute names are case-insensitive in ClassAds (`Owner` = `owner`); [`Ad`] looks them up
//! that way. Lines that are not `Attr = value` become `bad_classad` issues; the rest of the ad
//! is still read. What the attributes mean is [`super::job`]'s business.

use model::{DecodeHints, Event, ParseIssue};

use crate::text::{lossy, strip_terminators};

pub(crate) const KIND: &str = "condor-classad";

/// A ClassAd value as far as we read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Undefined,
    Error,
    List(Vec<Value>),
    /// An expression, verbatim (JSON's `"/Expr(…)/"` unwrapped).
    Expr(String),
}

impl Value {
    /// Text for a field: strings unquoted, numbers as written, lists comma-joined;
    /// `None` for `undefined` / `error`.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) | Value::Expr(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Real(r) => Some(r.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Undefined | Value::Error => None,
            Value::List(items) => Some(
                items
                    .iter()
                    .filter_map(Value::text)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }

    /// Whole seconds, for time attributes: integers, integral reals and digit strings.
    pub fn seconds(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Real(r) if r.is_finite() && r.fract() == 0.0 && r.abs() < 1e15 => {
                // Checked above: integral and far inside i64.
                #[allow(clippy::cast_possible_truncation)]
                Some(*r as i64)
            }
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// One attribute: its name as written, its value, and where its line starts in the raw record
/// (`None` when the source has no lines, as in JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: String,
    pub value: Value,
    pub offset: Option<usize>,
}

/// A job ad: attributes looked up case-insensitively. A repeated name keeps the last value,
/// as `condor_q` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ad {
    attrs: std::collections::BTreeMap<String, Attr>,
}

impl Ad {
    pub fn insert(&mut self, attr: Attr) {
        self.attrs.insert(attr.name.to_ascii_lowercase(), attr);
    }

    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(&name.to_ascii_lowercase())
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.get(name).map(|a| &a.value)
    }

    /// The attribute as field text, if present and defined.
    pub fn text(&self, name: &str) -> Option<String> {
        self.value(name).and_then(Value::text)
    }

    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attr> {
        self.attrs.values()
    }
}

/// Parse one ClassAd value (the text right of `=`). Never fails: what is not a literal is an
/// expression.
pub fn parse_value(text: &str) -> Value {
    let t = text.trim();
    if t.is_empty() {
        return Value::Expr(String::new());
    }
    if t.starts_with('"') {
        return match string_literal(t) {
            Some((s, end)) if end == t.len() => Value::Str(s),
            _ => Value::Expr(t.to_string()),
        };
    }
    if t.starts_with('{') && t.ends_with('}') && t.len() >= 2 {
        let inner = &t[1..t.len() - 1];
        return match split_top_level(inner) {
            Some(parts) => {
                if parts.len() == 1 && parts[0].trim().is_empty() {
                    Value::List(Vec::new())
                } else {
                    Value::List(parts.into_iter().map(parse_value).collect())
                }
            }
            None => Value::Expr(t.to_string()),
        };
    }
    if t.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if t.eq_ignore_ascii_case("undefined") {
        return Value::Undefined;
    }
    if t.eq_ignore_ascii_case("error") {
        return Value::Error;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::Int(i);
    }
    if looks_numeric(t)
        && let Ok(r) = t.parse::<f64>()
    {
        return Value::Real(r);
    }
    Value::Expr(t.to_string())
}

/// Digits with at most a sign, a dot and an exponent: keeps `inf` / `nan` words out of
/// `f64::from_str`.
fn looks_numeric(t: &str) -> bool {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    body.bytes()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == b'.')
        && body.bytes().any(|c| c.is_ascii_digit())
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
}

/// A `"…"` literal at the start of `t`: (contents, bytes used). `None` when unterminated.
fn string_literal(t: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = t.char_indices();
    if chars.next().map(|(_, c)| c) != Some('"') {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    '0'..='7' => {
                        // Octal escape: up to three digits.
                        let mut v = e.to_digit(8).unwrap_or(0);
                        let mut ahead = chars.clone();
                        for _ in 0..2 {
                            match ahead.next() {
                                Some((_, d)) if d.is_digit(8) => {
                                    v = v * 8 + d.to_digit(8).unwrap_or(0);
                                    chars = ahead.clone();
                                }
                                _ => break,
                            }
                        }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other), // `\"`, `\\`, `\'` and unknown escapes
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Split at commas outside strings and brackets. `None` when brackets or quotes do not balance.
fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_str || depth != 0 {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// `Attr = value` where Attr is a ClassAd identifier: (name, value text).
pub(crate) fn attr_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let ok = name
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    // `==` is a comparison, not an assignment.
    if !ok || value.starts_with('=') {
        return None;
    }
    Some((name, value))
}

/// Read `Attr = value` lines of a record into an ad; other non-blank lines become issues.
/// `skip` says which lines to leave alone (e.g. a userlog header), by line index.
pub(crate) fn read_ad(
    raw: &[u8],
    start: usize,
    issues: &mut Vec<ParseIssue>,
    mut other: impl FnMut(usize, &str) -> bool,
) -> Ad {
    let mut ad = Ad::default();
    let mut offset = start;
    let body = raw.get(start..).unwrap_or_default();
    for line in body.split(|b| *b == b'\n') {
        let line_start = offset;
        offset += line.len() + 1;
        let text = lossy(strip_terminators(line));
        if text.trim().is_empty() {
            continue;
        }
        if let Some((name, value)) = attr_line(&text) {
            ad.insert(Attr {
                name: name.to_string(),
                value: parse_value(value),
                offset: Some(line_start),
            });
        } else if !other(line_start, &text) {
            issues.push(ParseIssue::new(
                raw,
                line_start,
                "bad_classad",
                "a line `Attr = value` (ClassAd attribute)",
            ));
        }
    }
    ad
}

/// Fill `ev` from one `-l` ad. Never fails: what is not understood becomes a parse issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    ev.source_kind = KIND.to_string();
    let raw = std::mem::take(&mut ev.raw);
    if let Err(e) = std::str::from_utf8(&raw) {
        ev.issues.push(ParseIssue::new(
            &raw,
            e.valid_up_to(),
            "invalid_utf8",
            "UTF-8 text",
        ));
    }
    let mut issues = Vec::new();
    // `condor_q -l` prints `-- Schedd: name : <addr>` headers between ads; they are not
    // attributes but are understood.
    let ad = read_ad(&raw, 0, &mut issues, |_, line| line.starts_with("-- "));
    ev.issues.extend(issues);
    super::job::fill(ev, &raw, &ad);
    ev.raw = raw;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Value) {
        assert_eq!(parse_value(input), expected, "{input}");
    }

    #[test]
    fn literals() {
        check(r#" "bbockelm" "#, Value::Str("bbockelm".into()));
        check(
            r#""$$([ifThenElse(X is undefined, \"Unknown\", X)])""#,
            Value::Str(r#"$$([ifThenElse(X is undefined, "Unknown", X)])"#.into()),
        );
        check(r#""a\\b\n\101""#, Value::Str("a\\b\nA".into()));
        check("1357311627", Value::Int(1_357_311_627));
        check("-1", Value::Int(-1));
        check("0.0", Value::Real(0.0));
        check("1.5e3", Value::Real(1500.0));
        check("TRUE", Value::Bool(true));
        check("false", Value::Bool(false));
        check("undefined", Value::Undefined);
        check("error", Value::Error);
        check("inf", Value::Expr("inf".into()));
        check(
            r#"{ "a", 1, {2}, "x,y" }"#,
            Value::List(vec![
                Value::Str("a".into()),
                Value::Int(1),
                Value::List(vec![Value::Int(2)]),
                Value::Str("x,y".into()),
            ]),
        );
        check("{}", Value::List(vec![]));
        check(r#""a" + "b""#, Value::Expr(r#""a" + "b""#.into()));
        check(r#""unterminated"#, Value::Expr(r#""unterminated"#.into()));
        check("time()", Value::Expr("time()".into()));
        check("{ (1, }", Value::Expr("{ (1, }".into()));
    }

    #[test]
    fn attr_lines() {
        assert_eq!(attr_line("Owner = \"x\""), Some(("Owner", " \"x\"")));
        assert_eq!(attr_line("a == b"), None);
        assert_eq!(attr_line("(x) = 1"), None);
        assert_eq!(attr_line("no equals here"), None);
        assert_eq!(attr_line("X=a=b"), Some(("X", "a=b")));
    }
}
