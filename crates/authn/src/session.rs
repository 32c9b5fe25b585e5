//! Signed, expiring cookie values: the UI's session (who logged in, with which groups) and the
//! pending login between redirect and callback. HMAC-SHA256 over a versioned payload with a
//! key from config (`session_key_file`); not encrypted (the payload is base64url JSON the user
//! may read — it holds nothing the user does not know, except a pending login's PKCE verifier,
//! which only proves the login the same browser started).
//!
//! Hand-written on hmac/sha2 rather than a cookie crate: the format is ~40 lines, and the UI's
//! web framework (axum) sets the cookie attributes (`HttpOnly; Secure; SameSite=Lax; Path=/`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;

use crate::verifier::unix_now;
use crate::{Claims, Error};

/// Domain separation: a value sealed for one purpose never opens for another.
const VERSION: &str = "pugmark-cookie-v1";

/// The key that signs cookies; at least 32 bytes.
#[derive(Clone)]
pub struct CookieKey(Vec<u8>);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    p: String,
    exp: i64,
    v: T,
}

impl CookieKey {
    /// A key from bytes (≥ 32).
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 32 {
            return Err(Error::Config("cookie key shorter than 32 bytes".into()));
        }
        Ok(CookieKey(bytes.to_vec()))
    }

    /// Reads the key file (its bytes, trailing whitespace removed).
    pub fn from_file(path: &std::path::Path) -> Result<Self, Error> {
        let b = std::fs::read(path)
            .map_err(|e| Error::Config(format!("session_key_file {}: {e}", path.display())))?;
        let end = b
            .iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        Self::new(&b[..end])
    }

    /// A fresh random key (a key file's content: `head -c 48 /dev/urandom | base64`).
    pub fn generate() -> Result<Self, Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| Error::Config(format!("no randomness: {e}")))?;
        Ok(CookieKey(b.to_vec()))
    }

    fn mac(&self, purpose: &str, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts any key length; `new_from_slice` cannot fail for HMAC.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        m.update(VERSION.as_bytes());
        m.update(b"\0");
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(payload.as_bytes());
        m
    }

    /// Seals `value` for `purpose` until `expires` (seconds since the Unix epoch):
    /// `base64url(json).base64url(hmac)`, cookie-safe.
    pub fn seal<T: Serialize>(
        &self,
        purpose: &str,
        value: &T,
        expires: i64,
    ) -> Result<String, Error> {
        let env = Envelope {
            p: purpose.to_owned(),
            exp: expires,
            v: value,
        };
        let json = serde_json::to_vec(&env).map_err(|e| Error::Config(format!("seal: {e}")))?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(purpose, &payload).finalize().into_bytes());
        Ok(format!("{payload}.{tag}"))
    }

    /// Opens a sealed value: the tag must verify (constant time), the purpose match, and it
    /// must not have expired.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, cookie: &str) -> Result<T, Error> {
        if cookie.len() > 16 * 1024 {
            return Err(Error::Cookie("too long"));
        }
        let (payload, tag) = cookie.split_once('.').ok_or(Error::Cookie("not sealed"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| Error::Cookie("bad tag"))?;
        self.mac(purpose, payload)
            .verify_slice(&tag)
            .map_err(|_| Error::Cookie("bad signature"))?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Error::Cookie("bad payload"))?;
        let env: Envelope<T> =
            serde_json::from_slice(&json).map_err(|_| Error::Cookie("bad payload"))?;
        if env.p != purpose {
            return Err(Error::Cookie("wrong purpose"));
        }
        if env.exp < unix_now() {
            return Err(Error::Cookie("expired"));
        }
        Ok(env.v)
    }
}

/// Who is logged in to the web UI: what the API needs to decide and audit, from the verified
/// id_token at login. Roles are recomputed from `groups` on every request (a config change
/// takes effect without logging everyone out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The issuer.
    pub iss: String,
    /// The subject at that issuer.
    pub sub: String,
    /// A display name.
    pub name: String,
    /// `email`, if known.
    pub email: Option<String>,
    /// Groups at login.
    pub groups: Vec<String>,
    /// Seconds since the Unix epoch after which the session is refused.
    pub expires: i64,
}

/// The purpose string of session cookies.
pub const SESSION_PURPOSE: &str = "session";
/// The purpose string of pending-login cookies.
pub const LOGIN_PURPOSE: &str = "login";

impl Session {
    /// A session for `claims` lasting `ttl_seconds` (but never past the id_token's own `exp`
    /// plus 12 h: the provider's idea of the login's life bounds ours).
    pub fn from_claims(claims: &Claims, ttl_seconds: i64) -> Self {
        let expires = (unix_now() + ttl_seconds).min(claims.exp.saturating_add(12 * 3600));
        Session {
            iss: claims.iss.clone(),
            sub: claims.sub.clone(),
            name: claims.display_name().to_owned(),
            email: claims.email.clone(),
            groups: claims.groups.clone(),
            expires,
        }
    }

    /// The cookie value.
    pub fn seal(&self, key: &CookieKey) -> Result<String, Error> {
        key.seal(SESSION_PURPOSE, self, self.expires)
    }

    /// The session in a cookie value, if genuine and not expired.
    pub fn open(key: &CookieKey, cookie: &str) -> Result<Self, Error> {
        key.open(SESSION_PURPOSE, cookie)
    }

    /// Claims for [`crate::RoleMap::roles_for`] (groups, identity; no token).
    pub fn claims(&self) -> Claims {
        Claims {
            iss: self.iss.clone(),
            sub: self.sub.clone(),
            aud: Vec::new(),
            exp: self.expires,
            name: Some(self.name.clone()),
            preferred_username: None,
            email: self.email.clone(),
            groups: self.groups.clone(),
            raw: serde_json::Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: i64) -> Session {
        Session {
            iss: "https://iam.example/".into(),
            sub: "u1".into(),
            name: "alice".into(),
            email: None,
            groups: vec!["/atlas".into()],
            expires,
        }
    }

    #[test]
    fn a_sealed_session_opens_with_its_key_only_and_not_after_expiry() {
        let k = CookieKey::new(&[7; 32]).expect("key");
        let s = session(unix_now() + 60);
        let c = s.seal(&k).expect("seal");
        assert_eq!(Session::open(&k, &c), Ok(s.clone()));
        let other = CookieKey::new(&[8; 32]).expect("key");
        assert_eq!(
            Session::open(&other, &c),
            Err(Error::Cookie("bad signature"))
        );
        // One changed payload byte.
        let mut bad = c.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(Session::open(&k, &bad).is_err());
        let old = session(unix_now() - 1).seal(&k).expect("seal");
        assert_eq!(Session::open(&k, &old), Err(Error::Cookie("expired")));
        // A pending-login cookie is not a session.
        let login = k.seal(LOGIN_PURPOSE, &s, unix_now() + 60).expect("seal");
        assert!(Session::open(&k, &login).is_err());
        assert!(CookieKey::new(&[1; 31]).is_err());
    }
}
