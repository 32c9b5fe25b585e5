//! Fuzz the OIDC bearer-token path (issue 14, crates/authn): any bytes as a token go through
//! the same checks `Verifier::verify` runs once the keys are cached — size, compact JWS shape,
//! header (alg: none / HS* refused, crit, kid), payload, key choice, signature, exp/nbf/iat,
//! issuer, audience, claims and group merging — and never panic. The first byte picks the
//! entry: 0 a token, 1 a JWKS document, 2 a payload for `Claims`, 3 a payload under a real
//! RS256 header (reaches the signature check with any claims).
//!
//! Included by path (no HTTP, no ureq: the fetching is not part of the sanitizer build). The
//! fixture keys are a real oidc-provider's JWKS (crates/authn/tests/oidc-provider.mjs); the
//! seeds in scripts/fuzz-smoke are tokens it issued with them.
#![no_main]

#[path = "../../crates/authn/src/claims.rs"]
#[allow(dead_code)]
mod claims;
#[path = "../../crates/authn/src/error.rs"]
#[allow(dead_code)]
mod error;
#[path = "../../crates/authn/src/token.rs"]
#[allow(dead_code)]
mod token;

use std::sync::OnceLock;

pub use error::Error;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "http://127.0.0.1:45317";
const JWKS: &str = r#"{"keys":[{"kty":"RSA","use":"sig","kid":"k1","alg":"RS256","e":"AQAB","n":"pJLvVWKCv5QNgC89dI-76AX7liOGRnOtxiS7a_6EUr8afLN6uwazbA3UhLz7v2fEU-YSRklEoQji2w_JhFrfKCTMnA2OAyTp3Jw2CE1Zd_Tr1ce2ja15zf-XRlnulEXHMM_E9quKrX05CQRlC9Q5xfLs5QU7pl8MD27Hb5KORfUOxU0Dl21I7yCmIAWGA5lG4oxq1kYJdJ9zox7_sxiKtWMokkoPVg9fGAviRfkp3gw1UECKHAWoJoDLK3yvb_A-8tbwQlBaf2z9HlK-UF7p1xmpa6sDyeklxbEk_9xNKhUiL8HDdE5257L5s0VQOgxRYWir7ETQyIV8yyJMGiqWdw"},{"kty":"EC","use":"sig","kid":"e1","alg":"ES256","crv":"P-256","x":"tcJwieCJfZXxpXhC92oiCCW9wKlfeYdbZeseMqGG8yo","y":"Csi2Uv8-DbHCDKzDU_QyQh43S4dMxqN_ejwbcBa2dDc"}]}"#;

fn keys() -> &'static token::KeySet {
    static K: OnceLock<token::KeySet> = OnceLock::new();
    K.get_or_init(|| token::KeySet::from_jwks(JWKS.as_bytes()).expect("fixture jwks"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let audiences = ["https://pugmark.example.org".to_owned()];
    let expect = token::Expect { issuer: ISSUER, audiences: &audiences, leeway: 60, now: 1_796_551_004, groups_claim: None };
    match sel % 4 {
        0 => {
            let s = String::from_utf8_lossy(rest);
            let _ = token::peek(&s);
            let _ = token::verify(&s, keys(), &expect);
        }
        1 => {
            if let Ok(set) = token::KeySet::from_jwks(rest) {
                let _ = set.has_kid(Some("k1"));
            }
        }
        2 => {
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(rest) {
                let _ = claims::Claims::from_payload(m.clone(), None);
                let _ = claims::Claims::from_payload(m, Some("wlcg.groups"));
            }
        }
        _ => {
            let head = token::b64_json(&serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}));
            let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rest);
            let t = format!("{head}.{body}.AAAA");
            let _ = token::verify(&t, keys(), &expect);
        }
    }
});
