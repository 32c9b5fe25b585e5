//! `Claims`: what a verified token says about its bearer, in the shape the API needs, plus the
//! raw claim map for audit and for claims this crate does not interpret.
//!
//! Groups are merged from the WLCG Common JWT profile's `wlcg.groups`, the common `groups`
//! (INDIGO IAM's id tokens) and `eduperson_entitlement` (EGI Check-in, AARC), each either a
//! JSON array of strings or one space-separated string. An issuer configured with
//! `groups_claim` uses that one claim instead. Pure: no I/O, no clock.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Error;

/// The claims this crate reads from a token's payload; everything else stays in `raw`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    /// The issuer, exactly as configured.
    pub iss: String,
    /// The subject: unique and stable within `iss` only (key users by `(iss, sub)`).
    pub sub: String,
    /// The audiences (`aud` as a string becomes one element).
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// `name`, if present.
    pub name: Option<String>,
    /// `preferred_username`, if present.
    pub preferred_username: Option<String>,
    /// `email`, if present.
    pub email: Option<String>,
    /// Groups and entitlements, merged in claim order, duplicates removed.
    pub groups: Vec<String>,
    /// The whole payload as received.
    pub raw: Map<String, Value>,
}

/// The claims groups are merged from when an issuer has no `groups_claim`.
pub const DEFAULT_GROUP_CLAIMS: [&str; 3] = ["wlcg.groups", "groups", "eduperson_entitlement"];

impl Claims {
    /// Reads the claims from a payload that was already verified (signature, time, issuer,
    /// audience). `groups_claim` replaces [`DEFAULT_GROUP_CLAIMS`] when given.
    pub fn from_payload(
        raw: Map<String, Value>,
        groups_claim: Option<&str>,
    ) -> Result<Self, Error> {
        let iss = required_str(&raw, "iss")?;
        let sub = required_str(&raw, "sub")?;
        if sub.is_empty() {
            return Err(Error::InvalidClaim("sub".into()));
        }
        let aud = match raw.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::InvalidClaim("aud".into()))?,
            Some(_) => return Err(Error::InvalidClaim("aud".into())),
        };
        let exp = match raw.get("exp") {
            Some(v) => numeric_date(v).ok_or_else(|| Error::InvalidClaim("exp".into()))?,
            None => return Err(Error::MissingClaim("exp".into())),
        };
        let mut groups: Vec<String> = Vec::new();
        let claim_names: Vec<&str> = match groups_claim {
            Some(c) => vec![c],
            None => DEFAULT_GROUP_CLAIMS.to_vec(),
        };
        for name in claim_names {
            for g in string_list(raw.get(name)).ok_or_else(|| Error::InvalidClaim(name.into()))? {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
        Ok(Claims {
            iss,
            sub,
            aud,
            exp,
            name: optional_str(&raw, "name")?,
            preferred_username: optional_str(&raw, "preferred_username")?,
            email: optional_str(&raw, "email")?,
            groups,
            raw,
        })
    }

    /// A display name for logs and the UI: `preferred_username`, else `name`, else `sub`.
    pub fn display_name(&self) -> &str {
        self.preferred_username
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.sub)
    }
}

/// A NumericDate (RFC 7519 §2): JSON number of seconds, possibly fractional.
pub(crate) fn numeric_date(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    // Fractional seconds are allowed; anything outside i64 is not a date.
    if f.is_finite() && f.abs() < 9.0e15 {
        Some(f.floor() as i64)
    } else {
        None
    }
}

fn required_str(raw: &Map<String, Value>, name: &str) -> Result<String, Error> {
    match raw.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::InvalidClaim(name.into())),
        None => Err(Error::MissingClaim(name.into())),
    }
}

fn optional_str(raw: &Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match raw.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::InvalidClaim(name.into())),
    }
}

/// An absent claim is an empty list; an array must hold only strings; a string is split on
/// whitespace (WLCG allows `wlcg.groups` as one space-separated string).
fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .filter(|s| s.as_deref().is_none_or(|s| !s.is_empty()))
            .collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn groups_merge_wlcg_array_groups_and_entitlements_without_duplicates() {
        let c = Claims::from_payload(
            payload(
                json!({"iss": "https://iam.example", "sub": "u1", "aud": "a", "exp": 10,
                "wlcg.groups": ["/atlas", "/atlas/production"], "groups": ["/atlas", "admins"],
                "eduperson_entitlement": "urn:mace:egi.eu:group:atlas:role=member#aai.egi.eu"}),
            ),
            None,
        )
        .expect("claims");
        assert_eq!(
            c.groups,
            [
                "/atlas",
                "/atlas/production",
                "admins",
                "urn:mace:egi.eu:group:atlas:role=member#aai.egi.eu"
            ]
        );
        assert_eq!(c.aud, ["a"]);
    }

    #[test]
    fn wlcg_groups_as_space_separated_string_and_groups_claim_override() {
        let p = payload(json!({"iss": "i", "sub": "s", "exp": 10.7,
            "wlcg.groups": "/cms /cms/pilot", "groups": ["ignored"], "roles": ["x"]}));
        let c = Claims::from_payload(p.clone(), None).expect("claims");
        assert_eq!(c.groups, ["/cms", "/cms/pilot", "ignored"]);
        assert_eq!(c.exp, 10);
        let c = Claims::from_payload(p, Some("roles")).expect("claims");
        assert_eq!(c.groups, ["x"]);
    }

    #[test]
    fn wrong_claim_types_are_refused_not_guessed() {
        for bad in [
            json!({"iss": "i", "sub": 5, "exp": 1}),
            json!({"iss": "i", "sub": "s", "exp": "1"}),
            json!({"iss": "i", "sub": "s", "exp": 1, "wlcg.groups": [1]}),
            json!({"iss": "i", "sub": "s", "exp": 1, "aud": {"a": 1}}),
            json!({"iss": "i", "sub": "", "exp": 1}),
            json!({"sub": "s", "exp": 1}),
        ] {
            assert!(
                Claims::from_payload(payload(bad.clone()), None).is_err(),
                "{bad}"
            );
        }
    }
}
