//! Small byte helpers shared by the decoders: terminator stripping, lossy text, token scans.
//! Everything here is linear in its input and panic-free on any bytes.

/// Strip one line terminator (`\n`, `\r\n`) and any further trailing `\r`. The raw bytes keep
/// what they were given; only the parsed view loses the terminator.
pub(crate) fn strip_terminators(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// Lossy UTF-8 text of some bytes.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Index of the first byte at or after `from` that is not a space (or `b.len()`).
pub(crate) fn skip_spaces(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    i
}

/// End (exclusive) of the token starting at `from`: the next space, or `b.len()`.
pub(crate) fn token_end(b: &[u8], from: usize) -> usize {
    match b.get(from..) {
        Some(rest) => memchr::memchr(b' ', rest).map_or(b.len(), |i| from + i),
        None => b.len(),
    }
}

/// Where the parsed `msg` starts inside `raw`: the message is usually the raw line's tail
/// (checked first, no search), else the first occurrence; `None` when the message is not
/// in the raw bytes as they are (a lossy rendering of bytes that are not UTF-8).
pub(crate) fn message_offset(raw: &[u8], msg: &[u8]) -> Option<usize> {
    let body = strip_terminators(raw);
    if body.ends_with(msg) {
        return Some(body.len() - msg.len());
    }
    memchr::memmem::find(raw, msg)
}

/// `memchr::memmem::find(hay, NEEDLE).is_some()` with the searcher built once per call site:
/// the decoders' cheap gates run on every line, and building a searcher per call cost more
/// than the search (~3 % of ingest).
macro_rules! contains {
    ($hay:expr, $needle:expr) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        FINDER.find($hay).is_some()
    }};
}
pub(crate) use contains;

/// One of pugmark's own JSON records inside syslog (program `app`, message `prefix {JSON}`,
/// e.g. custody and audit records): the JSON object when `ev` is one and `trusted` accepts its
/// observer; a parse issue when it is one but untrusted (`{what}_untrusted`: anyone can send a
/// line with that program name) or not a JSON object (`bad_{what}`); None for other events.
pub(crate) fn own_json_record(
    ev: &mut model::Event,
    app: &str,
    prefix: &str,
    what: &str,
    trusted: impl Fn(model::Observer) -> bool,
    trusted_expected: &str,
) -> Option<serde_json::Value> {
    if ev.app.as_deref() != Some(app) {
        return None;
    }
    let json = ev.message.trim_start().strip_prefix(prefix)?.to_string();
    if !trusted(ev.observer) {
        ev.issues.push(model::ParseIssue {
            offset: 0,
            kind: format!("{what}_untrusted"),
            expected: trusted_expected.into(),
            sample: ev.observer.as_str().into(),
        });
        return None;
    }
    match serde_json::from_str(&json) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => {
            ev.issues.push(model::ParseIssue {
                offset: 0,
                kind: format!("bad_{what}"),
                expected: format!("a JSON object after `{prefix}`"),
                sample: json.chars().take(40).collect(),
            });
            None
        }
    }
}

/// A JSON member as text: a non-empty string, or a number written out.
pub(crate) fn json_text(v: &serde_json::Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}
