//! The search query language: text in, [`Expr`] out, and what an [`Expr`] means for one event.
//!
//! [`parse`] reads the syntax documented in [`QUERY_SYNTAX_HELP`] (the CLI prints it in
//! `pugmark search --help`). [`Expr::matches`] is the exact meaning of a query on one event;
//! [`lower`] turns an expression into an index query plus whether the index answers it exactly
//! (else the index gives candidates and `search` keeps those for which `matches` holds). The
//! tests hold the two to each other and to a brute-force oracle.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use model::{Event, EventClass, Observer};
use views::search::{
    IndexQuery, Keyword, has_kv_term, has_text_token, keyword_term, kv_term, text_tokens,
};

/// Printed by `pugmark search --help`.
pub const QUERY_SYNTAX_HELP: &str = "\
QUERY SYNTAX
  failed password        events containing both words (AND is implied); words match
                         whole words of the message, host or app, case-insensitively
  \"Failed password\"      a phrase: case-insensitive substring of the message, host or app
                         that begins at a word start (\"Failed pass\" finds \"Failed
                         password\"; \"ail\" does not find \"fail\")
  ZQX-7781-NEEDLE        a word with punctuation is matched like a phrase
  a OR b                 either (OR binds looser than AND: `a b OR c` is `(a b) OR c`)
  -word, NOT word        exclude; AND may be written explicitly
  ( ... )                grouping
  *                      everything
  203.0.113.7            events mentioning this IP address (IPv4 or IPv6)
  10.0.0.0/8             events mentioning an address in this network (CIDR, v4 or v6)
  ip:2001:db8::/32       the same, explicitly
  host:NAME  app:NAME    exact host / program (case-insensitive)
  class:auth.login       event class: auth.login, auth.failure, auth.identity_change,
                         auth.session, net.connection, net.flow, vm.lifecycle, job.run,
                         identity.directory, vm.custody, other
  observer:vm            who observed it: collector, cloud, hypervisor, network, vo, vm, image
  source:syslog-rfc5424  the decoder that made the event
  user:alice             any normalised field, exact value (src_ip, dst_port, command, ...);
  user:\"john smith\"      quote values with spaces
  src_ip:10.0.0.0/8      a *_ip field inside a network
  Operators OR, AND, NOT are upper case; everything else is case-insensitive. To search
  text containing ':' (a URL, a time), quote it: \"http://example.org\".
  Numbers inside addresses are not words: a run of digits next to '.' (10.0.0.1, 50.98,
  2.6.32) and up to 4 hex digits next to ':' (fe80::1, fa:16:3e:00:00:01, 06:55:46) are
  not matched by a bare word (`22` does not find 10.0.0.22 or 06:22:10); search the
  address itself, or quote it as a phrase (\"50.98\" finds it, but reads more events).";

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `*`: every event.
    All,
    /// A bare word as typed: a whole-word match when it is one clean token, else like a phrase.
    Word(String),
    /// A quoted phrase: case-insensitive substring of message, host or app, beginning at a
    /// word start.
    Phrase(String),
    /// `host:`, `app:`, `class:`, `observer:`, `source:` with a value.
    Keyword(Keyword, String),
    /// A normalised field with an exact value (case-insensitive).
    Field {
        name: String,
        value: String,
    },
    /// A normalised field whose value is an address inside `net`.
    FieldNet {
        name: String,
        net: Net,
    },
    /// Events mentioning an address inside `net` (a single address is a /32 or /128).
    Ip(Net),
    /// Time filter `[from, to)` on `Event::placed()` (from the CLI flags, not the query text).
    Time {
        from: Option<jiff::Timestamp>,
        to: Option<jiff::Timestamp>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

/// An IP network: an address and a prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<Net> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    /// First and last address, inclusive.
    pub fn range(self) -> (IpAddr, IpAddr) {
        match self.addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                (
                    IpAddr::V4((bits & mask).into()),
                    IpAddr::V4((bits | !mask).into()),
                )
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                (
                    IpAddr::V6((bits & mask).into()),
                    IpAddr::V6((bits | !mask).into()),
                )
            }
        }
    }

    /// Whether `ip` is inside (IPv4 and IPv4-mapped IPv6 are the same address).
    pub fn contains(self, ip: IpAddr) -> bool {
        let (first, last) = self.range();
        let (f, l, x) = (mapped(first), mapped(last), mapped(ip));
        // Ranges of one family stay within that family once mapped.
        f <= x && x <= l
    }

    fn is_single(self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

fn mapped(ip: IpAddr) -> u128 {
    let v6: Ipv6Addr = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    u128::from(v6)
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn keyword_name(k: Keyword) -> &'static str {
    match k {
        Keyword::Host => "host",
        Keyword::App => "app",
        Keyword::Class => "class",
        Keyword::Observer => "observer",
        Keyword::Source => "source",
    }
}

/// A compact, unambiguous rendering used by tests and debugging: `(and word:a (not ip:1.2.3.4))`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, op: &str, xs: &[Expr]| -> fmt::Result {
            write!(f, "({op}")?;
            for x in xs {
                write!(f, " {x}")?;
            }
            write!(f, ")")
        };
        match self {
            Expr::All => write!(f, "*"),
            Expr::Word(w) => write!(f, "word:{w:?}"),
            Expr::Phrase(p) => write!(f, "phrase:{p:?}"),
            Expr::Keyword(k, v) => write!(f, "{}:{v:?}", keyword_name(*k)),
            Expr::Field { name, value } => write!(f, "field:{name}={value:?}"),
            Expr::FieldNet { name, net } => write!(f, "field:{name}~{net}"),
            Expr::Ip(net) => write!(f, "ip:{net}"),
            Expr::Time { from, to } => {
                let b = |t: &Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
                write!(f, "time:[{},{})", b(from), b(to))
            }
            Expr::And(xs) => list(f, "and", xs),
            Expr::Or(xs) => list(f, "or", xs),
            Expr::Not(x) => write!(f, "(not {x})"),
        }
    }
}

/// A query that does not parse: where (1-based character column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query error at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Minus,
    Or,
    And,
    Not,
    /// A quoted string.
    Quoted(String),
    /// A bare word; `quoted_value` is set for `name:"value"`.
    Word(String, Option<String>),
}

struct Lexed {
    tok: Tok,
    /// 0-based char index where the token starts.
    at: usize,
}

fn err(at: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        column: at + 1,
        message: message.into(),
    }
}

fn lex(input: &str) -> Result<Vec<Lexed>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let read_quoted = |start: usize| -> Result<(String, usize), ParseError> {
        // chars[start] is the opening quote.
        let mut s = String::new();
        let mut j = start + 1;
        while j < chars.len() {
            match chars[j] {
                '"' => return Ok((s, j + 1)),
                '\\' if j + 1 < chars.len() && matches!(chars[j + 1], '"' | '\\') => {
                    s.push(chars[j + 1]);
                    j += 2;
                }
                c => {
                    s.push(c);
                    j += 1;
                }
            }
        }
        Err(err(start, "unterminated quote"))
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        match c {
            '(' => {
                out.push(Lexed { tok: Tok::Open, at });
                i += 1;
            }
            ')' => {
                out.push(Lexed {
                    tok: Tok::Close,
                    at,
                });
                i += 1;
            }
            '"' => {
                let (s, next) = read_quoted(i)?;
                out.push(Lexed {
                    tok: Tok::Quoted(s),
                    at,
                });
                i = next;
            }
            '-' if chars
                .get(i + 1)
                .is_some_and(|n| !n.is_whitespace() && *n != ')') =>
            {
                out.push(Lexed {
                    tok: Tok::Minus,
                    at,
                });
                i += 1;
            }
            _ => {
                let mut j = i;
                while j < chars.len()
                    && !chars[j].is_whitespace()
                    && !matches!(chars[j], '(' | ')' | '"')
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                if word.ends_with(':') && chars.get(j) == Some(&'"') {
                    let (value, next) = read_quoted(j)?;
                    out.push(Lexed {
                        tok: Tok::Word(word, Some(value)),
                        at,
                    });
                    i = next;
                    continue;
                }
                let tok = match word.as_str() {
                    "OR" => Tok::Or,
                    "AND" => Tok::And,
                    "NOT" => Tok::Not,
                    _ => Tok::Word(word, None),
                };
                out.push(Lexed { tok, at });
                i = j;
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Lexed>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|l| l.at).unwrap_or(self.end)
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.and_expr()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                None | Some(Tok::Or) | Some(Tok::Close) => break,
                Some(Tok::And) => {
                    self.pos += 1;
                    parts.push(self.unary()?);
                }
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Some(Tok::Not) | Some(Tok::Minus) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let at = self.at();
        let Some(lexed) = self.toks.get(self.pos) else {
            return Err(err(at, "expected a term at the end of the query"));
        };
        let tok = lexed.tok.clone();
        self.pos += 1;
        match tok {
            Tok::Open => {
                if self.peek() == Some(&Tok::Close) {
                    return Err(err(at, "empty parentheses"));
                }
                let e = self.or_expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(err(at, "unclosed '('"));
                }
                self.pos += 1;
                Ok(e)
            }
            Tok::Close => Err(err(at, "unexpected ')'")),
            Tok::Or | Tok::And => Err(err(at, "expected a term before this operator")),
            Tok::Not | Tok::Minus => Err(err(at, "expected a term")),
            Tok::Quoted(s) => Ok(Expr::Phrase(s)),
            Tok::Word(w, quoted) => word(&w, quoted, at),
        }
    }
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn word(w: &str, quoted: Option<String>, at: usize) -> Result<Expr, ParseError> {
    if quoted.is_none() {
        if w == "*" {
            return Ok(Expr::All);
        }
        if let Some(net) = Net::parse(w) {
            return Ok(Expr::Ip(net));
        }
    }
    let Some((name, value)) = w.split_once(':').filter(|(n, _)| is_field_name(n)) else {
        return Ok(Expr::Word(w.to_string()));
    };
    let value = match quoted {
        Some(q) => q,
        None => value.to_string(),
    };
    let value_at = at + name.chars().count() + 1;
    let lname = name.to_ascii_lowercase();
    if value.is_empty() {
        return Err(err(value_at, format!("expected a value after '{name}:'")));
    }
    let kw = |k| Ok(Expr::Keyword(k, value.clone()));
    match lname.as_str() {
        "host" => kw(Keyword::Host),
        "app" => kw(Keyword::App),
        "source" => kw(Keyword::Source),
        "class" => match value.to_ascii_lowercase().parse::<EventClass>() {
            Ok(c) => Ok(Expr::Keyword(Keyword::Class, c.as_str().to_string())),
            Err(e) => Err(err(value_at, e)),
        },
        "observer" => match value.to_ascii_lowercase().parse::<Observer>() {
            Ok(o) => Ok(Expr::Keyword(Keyword::Observer, o.as_str().to_string())),
            Err(e) => Err(err(value_at, e)),
        },
        "ip" => Net::parse(&value).map(Expr::Ip).ok_or_else(|| {
            err(
                value_at,
                format!("{value:?} is not an IP address or CIDR network"),
            )
        }),
        _ => {
            if lname.ends_with("_ip")
                && let Some(net) = Net::parse(&value).filter(|n| !n.is_single())
            {
                return Ok(Expr::FieldNet { name: lname, net });
            }
            Ok(Expr::Field { name: lname, value })
        }
    }
}

/// Parses a query (see [`QUERY_SYNTAX_HELP`]).
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let toks = lex(input)?;
    let end = input.chars().count();
    if toks.is_empty() {
        return Err(err(0, "empty query (use * to match everything)"));
    }
    let mut p = Parser { toks, pos: 0, end };
    let e = p.or_expr()?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected ')'"));
    }
    Ok(e)
}

/// Whether `word` is answered exactly by the index: one clean token, as typed.
pub(crate) fn is_clean_token(word: &str) -> bool {
    let toks = text_tokens(word);
    toks.len() == 1 && toks[0] == word.to_lowercase()
}

/// The index query for `e`, and whether its result is exact (true) or a superset of candidates
/// that must be checked with [`Expr::matches`] (false).
pub fn lower(e: &Expr) -> (IndexQuery, bool) {
    match e {
        Expr::All => (IndexQuery::All, true),
        Expr::Word(w) if is_clean_token(w) => (IndexQuery::Text(w.clone()), true),
        Expr::Word(p) | Expr::Phrase(p) => (IndexQuery::TextPhrase(p.clone()), false),
        Expr::Keyword(k, v) => (
            IndexQuery::Keyword(*k, v.clone()),
            keyword_term(v) == v.to_lowercase(),
        ),
        Expr::Field { name, value } => (
            IndexQuery::Field {
                name: name.clone(),
                value: value.clone(),
            },
            // Fields without `kv` terms (addresses, ports of text, fingerprints, commands)
            // get candidates from `ip` or `text`.
            has_kv_term(name) && kv_term(name, value) == format!("{name}={value}").to_lowercase(),
        ),
        Expr::FieldNet { net, .. } => {
            let (first, last) = net.range();
            (IndexQuery::IpRange { first, last }, false)
        }
        Expr::Ip(net) => {
            if net.is_single() {
                (IndexQuery::Ip(net.addr), true)
            } else {
                let (first, last) = net.range();
                (IndexQuery::IpRange { first, last }, true)
            }
        }
        Expr::Time { from, to } => (
            IndexQuery::Time {
                from: *from,
                to: *to,
            },
            true,
        ),
        Expr::And(xs) => {
            let (qs, exact): (Vec<_>, Vec<_>) = xs.iter().map(lower).unzip();
            (IndexQuery::And(qs), exact.iter().all(|x| *x))
        }
        Expr::Or(xs) => {
            let (qs, exact): (Vec<_>, Vec<_>) = xs.iter().map(lower).unzip();
            (IndexQuery::Or(qs), exact.iter().all(|x| *x))
        }
        Expr::Not(x) => match lower(x) {
            (q, true) => (IndexQuery::Not(Box::new(q)), true),
            // The complement of a superset is a subset: no candidate may be excluded.
            (_, false) => (IndexQuery::All, false),
        },
    }
}

/// Case-insensitive substring that begins at a word start (the start of the text or after a
/// non-alphanumeric character), unless the needle itself begins with punctuation. This is the
/// meaning the index can answer exactly with whole-token and last-token-prefix terms, and it
/// is what people mean by a phrase: `"Failed pass"` finds `Failed password`, `"ail"` does not
/// find `fail`.
fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    let hay = hay.to_lowercase();
    let needs_boundary = needle_lower
        .chars()
        .next()
        .is_some_and(char::is_alphanumeric);
    let mut start = 0;
    while let Some(pos) = hay[start..].find(needle_lower) {
        let at = start + pos;
        if !needs_boundary
            || hay[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
        {
            return true;
        }
        start = at + hay[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

fn text_parts(e: &Event) -> impl Iterator<Item = &str> {
    std::iter::once(e.message.as_str())
        .chain(e.host.as_deref())
        .chain(e.app.as_deref())
}

impl Expr {
    /// A field leaf ([`Expr::Field`], [`Expr::FieldNet`]) judged on an event's fields alone,
    /// as [`Expr::matches`] judges it; `None` for any other expression.
    pub fn matches_fields(
        &self,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Option<bool> {
        match self {
            Expr::Field { name, value } => {
                let (n, v) = (name.to_lowercase(), value.to_lowercase());
                Some(
                    fields
                        .iter()
                        .any(|(k, x)| k.to_lowercase() == n && x.to_lowercase() == v),
                )
            }
            Expr::FieldNet { name, net } => Some(fields.iter().any(|(k, x)| {
                k.to_lowercase() == *name && x.parse::<IpAddr>().is_ok_and(|ip| net.contains(ip))
            })),
            _ => None,
        }
    }

    /// A word or phrase leaf judged on an event's texts alone (its message, host and app, as
    /// [`Expr::matches`] reads them); `None` for any other expression.
    pub fn matches_text<'a>(&self, mut parts: impl Iterator<Item = &'a str>) -> Option<bool> {
        match self {
            Expr::Word(w) if is_clean_token(w) => {
                let t = w.to_lowercase();
                Some(parts.any(|p| has_text_token(p, &t)))
            }
            Expr::Word(s) | Expr::Phrase(s) => {
                let n = s.to_lowercase();
                Some(parts.any(|p| contains_ci(p, &n)))
            }
            _ => None,
        }
    }

    /// The field a field leaf reads, lower-cased (what it compares names with).
    pub fn field_name(&self) -> Option<String> {
        match self {
            Expr::Field { name, .. } => Some(name.to_lowercase()),
            Expr::FieldNet { name, .. } => Some(name.clone()),
            _ => None,
        }
    }

    /// The exact meaning of the query on one event.
    pub fn matches(&self, e: &Event) -> bool {
        match self {
            Expr::All => true,
            Expr::Word(_) | Expr::Phrase(_) => self.matches_text(text_parts(e)).unwrap_or(false),
            Expr::Keyword(k, v) => {
                let v = v.to_lowercase();
                match k {
                    Keyword::Host => e.host.as_deref().is_some_and(|h| h.to_lowercase() == v),
                    Keyword::App => e.app.as_deref().is_some_and(|a| a.to_lowercase() == v),
                    Keyword::Class => e.class.as_str() == v,
                    Keyword::Observer => e.observer.as_str() == v,
                    Keyword::Source => e.source_kind.to_lowercase() == v,
                }
            }
            Expr::Field { .. } | Expr::FieldNet { .. } => {
                self.matches_fields(&e.fields).unwrap_or(false)
            }
            Expr::Ip(net) => {
                e.ips.iter().any(|ip| net.contains(*ip))
                    || e.host
                        .as_deref()
                        .and_then(|h| h.parse::<IpAddr>().ok())
                        .is_some_and(|ip| net.contains(ip))
            }
            Expr::Time { from, to } => {
                let t = e.placed();
                from.is_none_or(|f| t >= f) && to.is_none_or(|x| t < x)
            }
            Expr::And(xs) => xs.iter().all(|x| x.matches(e)),
            Expr::Or(xs) => xs.iter().any(|x| x.matches(e)),
            Expr::Not(x) => !x.matches(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and compares the rendering (or the error) with `expected`.
    fn check(input: &str, expected: &str) {
        let got = match parse(input) {
            Ok(e) => e.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn parses_the_documented_syntax() {
        let cases = [
            ("*", "*"),
            ("failed", r#"word:"failed""#),
            ("failed password", r#"(and word:"failed" word:"password")"#),
            (
                "failed AND password",
                r#"(and word:"failed" word:"password")"#,
            ),
            (r#""Failed password""#, r#"phrase:"Failed password""#),
            (r#"say "a \"b\"""#, r#"(and word:"say" phrase:"a \"b\"")"#),
            ("a b OR c", r#"(or (and word:"a" word:"b") word:"c")"#),
            ("a (b OR c)", r#"(and word:"a" (or word:"b" word:"c"))"#),
            ("-cron sshd", r#"(and (not word:"cron") word:"sshd")"#),
            ("NOT cron", r#"(not word:"cron")"#),
            (r#"-"bad thing""#, r#"(not phrase:"bad thing")"#),
            ("a - b", r#"(and word:"a" word:"-" word:"b")"#),
            ("ZQX-7781-NEEDLE-4402", r#"word:"ZQX-7781-NEEDLE-4402""#),
            ("or and", r#"(and word:"or" word:"and")"#),
            ("203.0.113.7", "ip:203.0.113.7"),
            ("10.0.0.0/8", "ip:10.0.0.0/8"),
            ("2001:db8::1", "ip:2001:db8::1"),
            ("ip:2001:db8::/32", "ip:2001:db8::/32"),
            ("ip:10.1.2.3", "ip:10.1.2.3"),
            ("host:VM-01", r#"host:"VM-01""#),
            ("APP:sshd", r#"app:"sshd""#),
            ("class:AUTH.LOGIN", r#"class:"auth.login""#),
            ("observer:vm", r#"observer:"vm""#),
            ("source:syslog-rfc5424", r#"source:"syslog-rfc5424""#),
            ("user:alice", r#"field:user="alice""#),
            (
                r#"user:"john smith" x"#,
                r#"(and field:user="john smith" word:"x")"#,
            ),
            ("src_ip:10.0.0.0/8", "field:src_ip~10.0.0.0/8"),
            ("src_ip:10.0.0.1", r#"field:src_ip="10.0.0.1""#),
            ("sd.origin.ip:1.2.3.4", r#"field:sd.origin.ip="1.2.3.4""#),
            ("http://x", r#"field:http="//x""#),
            (r#""http://x""#, r#"phrase:"http://x""#),
            ("time:12:00", r#"field:time="12:00""#),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            (
                "",
                "error: query error at column 1: empty query (use * to match everything)",
            ),
            (
                "   ",
                "error: query error at column 1: empty query (use * to match everything)",
            ),
            ("(a b", "error: query error at column 1: unclosed '('"),
            ("a b)", "error: query error at column 4: unexpected ')'"),
            ("()", "error: query error at column 1: empty parentheses"),
            (
                "a OR",
                "error: query error at column 5: expected a term at the end of the query",
            ),
            (
                "OR a",
                "error: query error at column 1: expected a term before this operator",
            ),
            (
                "a NOT",
                "error: query error at column 6: expected a term at the end of the query",
            ),
            (
                r#"a "open"#,
                "error: query error at column 3: unterminated quote",
            ),
            (
                "host:",
                "error: query error at column 6: expected a value after 'host:'",
            ),
            (
                "ip:nope",
                r#"error: query error at column 4: "nope" is not an IP address or CIDR network"#,
            ),
            (
                "ip:10.0.0.0/33",
                r#"error: query error at column 4: "10.0.0.0/33" is not an IP address or CIDR network"#,
            ),
            (
                "observer:god",
                r#"error: query error at column 10: unknown observer "god" (expected collector, cloud, hypervisor, network, vo or vm)"#,
            ),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
        assert!(
            parse("class:nope").is_err_and(|e| e.message.starts_with("unknown class \"nope\""))
        );
    }

    #[test]
    fn networks_cover_their_range() {
        let n = Net::parse("10.1.0.0/16").expect("net");
        assert!(n.contains("10.1.255.3".parse().expect("ip")));
        assert!(!n.contains("10.2.0.0".parse().expect("ip")));
        assert!(n.contains("::ffff:10.1.0.1".parse().expect("ip")));
        let all4 = Net::parse("0.0.0.0/0").expect("net");
        assert!(all4.contains("255.255.255.255".parse().expect("ip")));
        assert!(!all4.contains("2001:db8::1".parse().expect("ip")));
        let v6 = Net::parse("2001:db8::/32").expect("net");
        assert!(v6.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::".parse().expect("ip")));
    }

    #[test]
    fn lowering_marks_what_the_index_cannot_decide() {
        let exact = |q: &str| lower(&parse(q).expect("parse")).1;
        assert!(exact("failed password host:x user:alice 10.0.0.0/8 -cron"));
        assert!(!exact(r#""failed password""#));
        assert!(!exact("ZQX-7781"));
        assert!(!exact("src_ip:10.0.0.0/8"));
        // High-cardinality fields without kv terms are candidates from `ip` / `text`.
        assert!(!exact("src_ip:10.0.0.1"));
        assert!(!exact("key_fingerprint:SHA256:abc"));
        assert!(exact("src_port:22 sd.origin.ip:1.2.3.4 action:sshd.failed"));
        assert!(!exact(r#"-"a b" x"#));
        assert_eq!(
            lower(&parse(r#"x -"a b""#).expect("parse")).0,
            IndexQuery::And(vec![IndexQuery::Text("x".into()), IndexQuery::All])
        );
    }
}
