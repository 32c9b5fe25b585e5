//! Pure JWT checks: a compact JWS, a set of issuer keys (a JWKS) and what to expect
//! (issuer, audiences, leeway) in, [`Claims`] or a precise [`Error`] out. No I/O: the
//! [`crate::Verifier`] fetches the keys and picks the issuer; the fuzz target drives this file
//! directly.
//!
//! Refused before any key is touched: tokens over [`MAX_TOKEN_BYTES`], `alg: none`, every
//! HMAC algorithm (we only hold the issuer's public keys, so `HS256` "signed with the public
//! key" is the classic confusion attack), `crit` headers, and algorithms the selected key is not
//! for (an RSA key never verifies an `ES256` token). Signature and `exp`/`nbf` are checked by
//! jsonwebtoken; `iat` in the future and the profile's required claims (`iss`, `sub`, `aud`,
//! `exp`) here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::Error;
use crate::claims::{Claims, numeric_date};

/// Tokens larger than this are refused unread (IAM tokens with hundreds of groups stay far
/// below; the header carries the bound for a server reading `Authorization` lines).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The signature algorithms accepted: RSA PKCS#1 and PSS, ECDSA P-256/P-384, Ed25519.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A token's header and payload, read but NOT verified: only for picking the issuer and key.
#[derive(Debug, Clone)]
pub struct Unverified {
    /// The header's `alg`, already checked to be one of [`ACCEPTED_ALGORITHMS`].
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The payload's `iss` (a string, or the token is malformed).
    pub iss: String,
    /// The payload's `sub` when it is a string: whom the token claims to be (for counting
    /// failed logins per claimed user; never an identity).
    pub sub: Option<String>,
}

/// Whether `token` has the shape of a JWT (three dot-separated parts, the first a base64url
/// JSON object): how an API that also takes opaque local tokens decides which verifier to ask.
/// Says nothing about validity.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(_), Some(_), None) => {
            token.len() <= MAX_TOKEN_BYTES && json_part(h, "header").is_ok()
        }
        _ => false,
    }
}

/// Reads the header and the payload's `iss` without verifying anything.
pub fn peek(token: &str) -> Result<Unverified, Error> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Malformed(format!(
            "{} bytes, over the limit",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("not three dot-separated parts".into()));
    };
    let header = json_part(h, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(Error::Malformed("header without alg".into())),
    };
    let alg = accepted_alg(alg)?;
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: we understand no extension, so a critical one must be refused.
        return Err(Error::Malformed("crit header".into()));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Error::Malformed("kid not a string".into())),
    };
    let payload = json_part(p, "payload")?;
    let iss = match payload.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::InvalidClaim("iss".into())),
        None => return Err(Error::MissingClaim("iss".into())),
    };
    let sub = payload
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Unverified { alg, kid, iss, sub })
}

fn accepted_alg(alg: &str) -> Result<Algorithm, Error> {
    if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") {
        return Err(Error::Algorithm(alg.into()));
    }
    ACCEPTED_ALGORITHMS
        .iter()
        .find(|a| format!("{a:?}") == alg)
        .copied()
        .ok_or_else(|| Error::Algorithm(alg.chars().take(32).collect()))
}

fn json_part(b64: &str, what: &str) -> Result<Map<String, Value>, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| Error::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Malformed(format!("{what} is not a JSON object"))),
    }
}

/// One usable verification key from a JWKS.
pub struct Key {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// The algorithms this key may verify: its JWK `alg` if given, else every accepted
    /// algorithm of its type and curve.
    pub algs: Vec<Algorithm>,
    key: DecodingKey,
}

/// The keys of one issuer, from its JWKS document.
#[derive(Default)]
pub struct KeySet {
    /// The usable signature keys.
    pub keys: Vec<Key>,
    /// How many JWKs were skipped (encryption keys, symmetric keys, unknown types).
    pub skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`). Keys this crate cannot use are skipped and
    /// counted, never fatal: an issuer may publish encryption keys beside its signing keys.
    /// Symmetric (`oct`) keys are always skipped.
    pub fn from_jwks(json: &[u8]) -> Result<Self, Error> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| Error::Malformed(format!("jwks: {e}")))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(Error::Malformed("jwks without a keys array".into()));
        };
        let mut set = KeySet::default();
        for v in list {
            match usable_key(v) {
                Some(k) => set.keys.push(k),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// Whether a key with this `kid` is in the set (`None`: any key).
    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(k) => self.keys.iter().any(|x| x.kid.as_deref() == Some(k)),
            None => !self.keys.is_empty(),
        }
    }
}

fn usable_key(v: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    let algs = match jwk.common.key_algorithm {
        None => by_type,
        Some(ka) => {
            let a = key_alg(ka)?;
            if !by_type.contains(&a) {
                return None;
            }
            vec![a]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        algs,
        key,
    })
}

fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// What a verified token must say.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The exact `iss`.
    pub issuer: &'a str,
    /// At least one `aud` value must be one of these.
    pub audiences: &'a [String],
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// Seconds since the Unix epoch (for `iat`; jsonwebtoken reads the clock for `exp`/`nbf`).
    pub now: i64,
    /// The issuer's `groups_claim`, if configured.
    pub groups_claim: Option<&'a str>,
}

/// Verifies `token` with the key set of the issuer it names, against `expect`.
pub fn verify(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Result<Claims, Error> {
    let un = peek(token)?;
    if un.iss != expect.issuer {
        return Err(Error::UnknownIssuer(un.iss));
    }
    let candidates: Vec<&Key> = keys
        .keys
        .iter()
        .filter(|k| match &un.kid {
            Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(Error::UnknownKey {
            issuer: un.iss,
            kid: un.kid,
        });
    }
    let usable: Vec<&Key> = candidates
        .into_iter()
        .filter(|k| k.algs.contains(&un.alg))
        .collect();
    if usable.is_empty() {
        return Err(Error::Algorithm(format!("{:?} not for this key", un.alg)));
    }
    let mut v = Validation::new(un.alg);
    v.leeway = expect.leeway;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_audience(expect.audiences);
    v.set_issuer(&[expect.issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let mut last = Error::Signature;
    // Without a kid, every key of the right type is tried (the set is small); with one,
    // usually exactly one key matches.
    for k in usable {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
            Ok(data) => {
                if let Some(iat) = data.claims.get("iat") {
                    let iat = numeric_date(iat).ok_or_else(|| Error::InvalidClaim("iat".into()))?;
                    if iat > expect.now.saturating_add(expect.leeway as i64) {
                        return Err(Error::NotYetValid);
                    }
                }
                return Claims::from_payload(data.claims, expect.groups_claim);
            }
            Err(e) => {
                last = map_jwt_error(e.kind());
                if !matches!(last, Error::Signature) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn map_jwt_error(kind: &ErrorKind) -> Error {
    match kind {
        ErrorKind::InvalidSignature => Error::Signature,
        ErrorKind::ExpiredSignature => Error::Expired,
        ErrorKind::ImmatureSignature => Error::NotYetValid,
        ErrorKind::InvalidAudience => Error::Audience,
        ErrorKind::InvalidIssuer => Error::UnknownIssuer("(payload)".into()),
        ErrorKind::MissingRequiredClaim(c) => Error::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => Error::InvalidClaim(c.clone()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => Error::Algorithm("refused by the key".into()),
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            Error::Signature
        }
        other => Error::Malformed(format!("{other:?}").chars().take(80).collect()),
    }
}

/// Encodes a JSON value as one base64url JWT part (tests and the fuzz target build tokens).
pub fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok(header: Value, payload: Value) -> String {
        format!("{}.{}.c2ln", b64_json(&header), b64_json(&payload))
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused_before_any_key_is_used() {
        for alg in ["none", "None", "HS256", "HS512", "XX1"] {
            let t = tok(json!({"alg": alg}), json!({"iss": "i"}));
            assert!(matches!(peek(&t), Err(Error::Algorithm(_))), "{alg}");
        }
        // An unsigned token has an empty third part; still refused on alg.
        let t = format!(
            "{}.{}.",
            b64_json(&json!({"alg": "none"})),
            b64_json(&json!({"iss": "i"}))
        );
        assert!(matches!(peek(&t), Err(Error::Algorithm(_))));
    }

    #[test]
    fn shapes_that_are_not_a_compact_jws_are_malformed() {
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.x",
            "e30.e30.x",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(peek(t).is_err(), "{t:.20}");
        }
        let crit = tok(
            json!({"alg": "RS256", "crit": ["exp"]}),
            json!({"iss": "i"}),
        );
        assert!(matches!(peek(&crit), Err(Error::Malformed(_))));
    }

    #[test]
    fn jwks_keeps_signing_keys_and_skips_the_rest() {
        let jwks = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "ec2",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let set = KeySet::from_jwks(jwks.to_string().as_bytes()).expect("jwks");
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped, 3);
        assert!(set.has_kid(Some("ec2")));
        assert!(!set.has_kid(Some("sym")));
        // An RS256 token naming the EC key's kid is refused on algorithm, not tried.
        let t = tok(json!({"alg": "RS256", "kid": "ec2"}), json!({"iss": "i"}));
        let e = verify(
            &t,
            &set,
            &Expect {
                issuer: "i",
                audiences: &[],
                leeway: 0,
                now: 0,
                groups_claim: None,
            },
        );
        assert!(matches!(e, Err(Error::Algorithm(_))), "{e:?}");
    }
}
