//! The web UI's login: the OpenID Connect authorization code flow with PKCE (S256), `state`
//! and `nonce` (RFC 6749 §4.1, RFC 7636, OIDC Core §3.1).
//!
//! [`Verifier::authorization_url`] makes the URL to send the browser to and a
//! [`PendingLogin`] to keep until the browser comes back (the UI seals it into a short-lived
//! cookie with [`crate::CookieKey`]); [`Verifier::exchange`] checks `state`, posts the code
//! with the PKCE verifier to the token endpoint (client_secret_basic when a secret is
//! configured, else a public client), and verifies the returned id_token with the same keys
//! as bearer tokens: `aud` = our client_id, `nonce` = ours, `azp` (if present) = our client.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::verifier::unix_now;
use crate::{Claims, Error, Verifier, token};

/// A login is valid this long after `authorization_url` (the user types a password, maybe a
/// second factor).
pub const LOGIN_TTL_SECONDS: i64 = 600;

/// What must be kept between sending the browser to the provider and its return. Secret
/// (holds the PKCE verifier): keep it server-side or in a sealed cookie only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The issuer the login went to.
    pub issuer: String,
    /// The `state` sent; the callback's must be equal.
    pub state: String,
    /// The `nonce` sent; the id_token's must be equal.
    pub nonce: String,
    /// The PKCE code verifier (43 base64url characters).
    pub code_verifier: String,
    /// The redirect URI used (the token request repeats it).
    pub redirect_uri: String,
    /// Seconds since the Unix epoch when the login started.
    pub started: i64,
}

/// What the token endpoint returned, the id_token verified.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token (may be opaque; verify with [`Verifier::verify`] if it is meant for us).
    pub access_token: String,
    /// The id token, as received.
    pub id_token: String,
    /// A refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// `expires_in` of the access token, seconds.
    pub expires_in: Option<u64>,
    /// The verified id_token's claims: who logged in, with groups (when the provider puts them
    /// in the id_token; INDIGO IAM does with the `wlcg.groups` scope).
    pub claims: Claims,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// 32 random bytes, base64url (256 bits: state, nonce, PKCE verifier).
pub(crate) fn random_token() -> Result<String, Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Login(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Constant-time string equality (state values come from the browser).
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Verifier {
    /// The provider URL to redirect the browser to, for the configured issuer `issuer` (which
    /// must have `client_id` and `redirect_uri`), and what to keep until it comes back.
    /// Fetches the issuer's discovery document on first use.
    pub fn authorization_url(&self, issuer: &str) -> Result<(crate::Url, PendingLogin), Error> {
        let i = self.issuer(issuer)?;
        let (Some(client_id), Some(redirect_uri)) = (&i.cfg.client_id, &i.cfg.redirect_uri) else {
            return Err(Error::Config(format!(
                "{issuer}: no client_id/redirect_uri for the web login"
            )));
        };
        let d = self.discovery(i)?;
        let endpoint = d
            .authorization_endpoint
            .as_deref()
            .ok_or_else(|| Error::Login("provider has no authorization_endpoint".into()))?;
        if let Some(m) = &d.code_challenge_methods_supported
            && !m.iter().any(|m| m == "S256")
        {
            return Err(Error::Login("provider does not support PKCE S256".into()));
        }
        let mut url = crate::config::check_url(endpoint, "authorization_endpoint")?;
        let pending = PendingLogin {
            issuer: issuer.to_owned(),
            state: random_token()?,
            nonce: random_token()?,
            code_verifier: random_token()?,
            redirect_uri: redirect_uri.clone(),
            started: unix_now(),
        };
        let scopes = i.cfg.scopes.clone().unwrap_or_else(|| {
            ["openid", "profile", "email", "wlcg.groups"]
                .map(String::from)
                .to_vec()
        });
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.code_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url, pending))
    }

    /// Completes a login: `code` and `state` are the callback's query parameters. Refuses a
    /// wrong `state`, an attempt older than [`LOGIN_TTL_SECONDS`], a provider error, and an
    /// id_token that does not verify (signature, issuer, `aud` = client_id, time, `nonce`).
    pub fn exchange(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<Tokens, Error> {
        if !ct_eq(state, &pending.state) {
            return Err(Error::Login("state does not match this login".into()));
        }
        let age = unix_now() - pending.started;
        if !(0..=LOGIN_TTL_SECONDS).contains(&age) {
            return Err(Error::Login("login attempt expired".into()));
        }
        let i = self.issuer(&pending.issuer)?;
        let Some(client_id) = &i.cfg.client_id else {
            return Err(Error::Config(format!("{}: no client_id", pending.issuer)));
        };
        let d = self.discovery(i)?;
        let endpoint = d
            .token_endpoint
            .as_deref()
            .ok_or_else(|| Error::Login("provider has no token_endpoint".into()))?;
        crate::config::check_url(endpoint, "token_endpoint")?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.redirect_uri),
            ("code_verifier", &pending.code_verifier),
        ];
        let mut req = self
            .agent
            .post(endpoint)
            .header("Accept", "application/json");
        match &i.client_secret {
            Some(secret) => {
                // RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)));
                req = req.header("Authorization", &format!("Basic {basic}"));
            }
            None => form.push(("client_id", client_id)),
        }
        let mut resp = req
            .send_form(form)
            .map_err(|e| Error::Login(format!("token endpoint: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| Error::Login(format!("token endpoint: {e}")))?;
        if status != 200 {
            let why = serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| format!("{}: {}", e.error, e.error_description.unwrap_or_default()))
                .unwrap_or_else(|_| format!("status {status}"));
            return Err(Error::Login(format!("token endpoint refused: {why}")));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Login(format!("token response: {e}")))?;
        if t.token_type
            .as_deref()
            .is_some_and(|tt| !tt.eq_ignore_ascii_case("bearer"))
        {
            return Err(Error::Login("token_type is not Bearer".into()));
        }
        let id_token = t
            .id_token
            .ok_or_else(|| Error::Login("no id_token (was the openid scope granted?)".into()))?;
        let un = token::peek(&id_token)?;
        if un.iss != i.cfg.issuer {
            return Err(Error::UnknownIssuer(un.iss));
        }
        let claims = self.verify_for(
            i,
            &id_token,
            std::slice::from_ref(client_id),
            un.kid.as_deref(),
        )?;
        match claims.raw.get("nonce").and_then(|n| n.as_str()) {
            Some(n) if ct_eq(n, &pending.nonce) => {}
            Some(_) => return Err(Error::InvalidClaim("nonce".into())),
            None => return Err(Error::MissingClaim("nonce".into())),
        }
        if let Some(azp) = claims.raw.get("azp")
            && azp.as_str() != Some(client_id.as_str())
        {
            return Err(Error::InvalidClaim("azp".into()));
        }
        Ok(Tokens {
            access_token: t.access_token,
            id_token,
            refresh_token: t.refresh_token,
            expires_in: t.expires_in,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_base64url_sha256_of_the_verifier() {
        // Oracle: Python's hashlib/base64 (urlsafe_b64encode(sha256(v)).rstrip("=")).
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K9uhvuwkLCRGlyEGfusK4uWmLA"),
            "NFgdcjxU6mbfXReaA98AtnpMQxEPTRUjJRXNO16LO_0"
        );
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token().expect("rng");
        let b = random_token().expect("rng");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
