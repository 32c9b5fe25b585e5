//! Oracle tests of the readers (`flow_readers.rs`, `nat_readers.rs`): the same question asked
//! of two data directories built two ways must get the same answer. What differs by design is
//! left out: where the views stood, each directory's own ledger key and chain, the receive
//! times of this run.

use std::path::Path;

use serde_json::Value;

use super::ok;

/// splitmix64: the seeded generator of the readers' oracle tests (bench/gen has its own;
/// a test cannot use the bench crate).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Receive times of this run (each directory received its records at its own ingest): `NOW`.
pub fn normalise(v: &mut Value, now: jiff::Timestamp) {
    match v {
        Value::String(s) => {
            if let Ok(t) = s.parse::<jiff::Timestamp>()
                && (t.as_second() - now.as_second()).abs() < 3600
            {
                *s = "NOW".into();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalise(x, now)),
        Value::Object(o) => o.values_mut().for_each(|x| normalise(x, now)),
        _ => {}
    }
}

/// The answer without `views` (where each view stood: the directories differ in which views
/// they have), without a report's `integrity`, and with this run's receive times as `NOW`.
pub fn answer(data: &Path, args: &[&str]) -> Value {
    let text = ok(data, args);
    let mut v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"));
    if let Some(o) = v.as_object_mut() {
        o.remove("views");
        // A report's ledger checkpoint: each directory has its own key and chain.
        o.remove("integrity");
    }
    normalise(&mut v, model::Received::now().timestamp());
    v
}

/// The first place two answers differ (whole answers are megabytes).
pub fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(p, q, &format!("{at}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{at}: {} vs {} items", x.len(), y.len()))
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, p) in x {
                match y.get(k) {
                    Some(q) => {
                        if let Some(d) = first_difference(p, q, &format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{at}.{k}: only on the left")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}.{k}: only on the right"))
        }
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

pub fn same(got: &Value, want: &Value, what: &str) {
    if let Some(d) = first_difference(got, want, "") {
        panic!("{what}: differs from the old path at {d}");
    }
}

/// The questions of every verb that reads the records under test, asked alike of both
/// directories: the timelines of `ips` and `vms`, a report of `report.0` at `report.1`, the
/// hunt of `iocs` (whole, and from `hunt_from` cut to 5), and `check` (plain, with `net` as
/// the site's network, and that one from the events).
pub fn verb_questions(
    ips: &[&str],
    vms: &[&str],
    report: (&str, &str),
    iocs: &str,
    hunt_from: &str,
    net: &str,
) -> Vec<Vec<String>> {
    let q = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    for ip in ips {
        out.push(q(&["timeline", "--ip", ip, "--json"]));
    }
    for vm in vms {
        out.push(q(&["timeline", "--vm", vm, "--json"]));
    }
    out.push(q(&[
        "report", "--ip", report.0, "--at", report.1, "--format", "json",
    ]));
    out.push(q(&["hunt", "--iocs", iocs, "--json"]));
    out.push(q(&[
        "hunt", "--iocs", iocs, "--from", hunt_from, "--limit", "5", "--json",
    ]));
    out.push(q(&["check", "--json"]));
    out.push(q(&["check", "--json", "--site-net", net]));
    out.push(q(&["check", "--json", "--from-events", "--site-net", net]));
    out
}
