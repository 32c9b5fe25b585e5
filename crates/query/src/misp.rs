//! MISP sightings of `hunt` hits (issue 14): what pugmark tells a MISP instance it saw.
//!
//! One sighting per indicator that hit, at the time of its latest hit, sent as MISP's REST
//! API documents it (`POST /sightings/add`, operation `addSightingByValue` in MISP's
//! `app/webroot/doc/openapi.yaml`): a JSON body `{"values": [VALUE], "timestamp": "EPOCH"}`
//! (both in the request schema `AddSightingsRequest`; the timestamp a string of digits,
//! schema `NullableTimestamp`) plus `type` and `source`, which MISP's `SightingsController::add`
//! reads and its `Sighting` schema carries as strings (`type` "0" sighting, "1" false
//! positive, "2" expiration). The key goes in the `Authorization` header (security scheme
//! `ApiKeyAuth`). This module builds the requests; the binary sends them (`pugmark::misp`).
//! `tests/misp.rs` checks every request against the OpenAPI description in a loopback server.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::hunt::HuntAnswer;

/// The path of MISP's add-sighting-by-value operation.
pub const SIGHTINGS_ADD: &str = "/sightings/add";

/// One sighting to send: an indicator and what pugmark saw of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sighting {
    /// The indicator as the hunt reported it (the value MISP matches attributes by).
    pub value: String,
    /// Hits of this indicator.
    pub hits: usize,
    /// First and latest hit (RFC 3339).
    pub first: String,
    pub last: String,
    /// The latest hit, Unix seconds: the sighting's time.
    pub timestamp: i64,
    /// The ledger positions of the first and latest hits (the evidence to cite back).
    pub first_seq: u64,
    pub last_seq: u64,
}

/// The sightings of a hunt's hits: one per indicator, in indicator order.
pub fn sightings(answer: &HuntAnswer) -> Vec<Sighting> {
    let mut by: BTreeMap<&str, Sighting> = BTreeMap::new();
    for h in &answer.hits {
        let Ok(t) = h.time.parse::<jiff::Timestamp>() else {
            continue;
        };
        let s = by.entry(h.indicator.as_str()).or_insert_with(|| Sighting {
            value: h.indicator.clone(),
            hits: 0,
            first: h.time.clone(),
            last: h.time.clone(),
            timestamp: t.as_second(),
            first_seq: h.seq,
            last_seq: h.seq,
        });
        s.hits += 1;
        let first: Option<jiff::Timestamp> = s.first.parse().ok();
        if first.is_none_or(|f| t < f) {
            s.first = h.time.clone();
            s.first_seq = h.seq;
        }
        if t.as_second() > s.timestamp || (t.as_second() == s.timestamp && h.seq > s.last_seq) {
            s.last = h.time.clone();
            s.timestamp = t.as_second();
            s.last_seq = h.seq;
        }
    }
    by.into_values().collect()
}

/// The JSON body of `POST /sightings/add` for one sighting. `sighting_type`: MISP's
/// sighting type ("0" sighting, "1" false positive, "2" expiration).
pub fn request_body(s: &Sighting, sighting_type: u8) -> Value {
    json!({
        "values": [s.value],
        "timestamp": s.timestamp.to_string(),
        "type": sighting_type.to_string(),
        "source": format!(
            "pugmark: {} hit(s) {} to {}, ledger #{}..#{}",
            s.hits, s.first, s.last, s.first_seq, s.last_seq
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hunt::HuntHit;
    use model::Observer;

    fn hit(ind: &str, time: &str, seq: u64) -> HuntHit {
        HuntHit {
            indicator: ind.into(),
            time: time.into(),
            observer: Observer::Hypervisor,
            summary: String::new(),
            seq,
            flow: None,
            pos: seq,
            matches: Vec::new(),
            reported: None,
            sender: None,
            attribution: None,
        }
    }

    #[test]
    fn one_sighting_per_indicator_at_its_latest_hit() {
        let a = HuntAnswer {
            hits: vec![
                hit("203.0.113.5", "2026-10-14T05:00:00Z", 9),
                hit("evil.example", "2026-10-14T01:00:00Z", 3),
                hit("203.0.113.5", "2026-10-14T04:00:00Z", 7),
                hit("203.0.113.5", "2026-10-14T06:00:01Z", 12),
            ],
            truncated: false,
        };
        let s = sightings(&a);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value, "203.0.113.5");
        assert_eq!(s[0].hits, 3);
        assert_eq!(s[0].first, "2026-10-14T04:00:00Z");
        assert_eq!(s[0].last_seq, 12);
        assert_eq!(s[0].timestamp, 1_791_957_601);
        let b = request_body(&s[0], 0);
        assert_eq!(b["values"], json!(["203.0.113.5"]));
        assert_eq!(b["timestamp"], json!("1791957601"));
        assert_eq!(b["type"], json!("0"));
    }
}
