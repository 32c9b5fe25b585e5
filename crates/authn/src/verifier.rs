//! `Verifier`: the trusted issuers, their discovery documents and JWKS (fetched with ureq,
//! cached, refreshed), and `verify(token) -> Claims`.
//!
//! Network use: discovery (`{issuer}/.well-known/openid-configuration`) and the JWKS are
//! fetched lazily, at the first token of an issuer (or eagerly by [`Verifier::prefetch`]), so
//! the server starts while an issuer is down. The JWKS is refetched when older than
//! `jwks_max_age_seconds`, and when a token names an unknown `kid` (key rotation), at most
//! once per `jwks_refresh_min_seconds`; a failed refresh keeps the cached keys. All fetching
//! for one issuer is serialised by a mutex, so a burst of unknown-kid tokens costs one fetch.
//!
//! `verify` blocks only while fetching (otherwise it is a signature check, tens of µs): call
//! it from `spawn_blocking` in async code, or accept the rare stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::config::{OidcConfig, WLCG_ANY_AUDIENCE, check_url};
use crate::token::{self, Expect, KeySet};
use crate::{Claims, Error};

/// Largest discovery document or JWKS read (IAM's are a few kB).
const MAX_DOC_BYTES: u64 = 1 << 20;

/// What this crate reads from an issuer's discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer exactly (OpenID Connect Discovery §4.3).
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// The login's first stop.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where the login's code is exchanged.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// PKCE methods; S256 must be among them when listed.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<Arc<Discovery>>,
    keys: Option<Arc<KeySet>>,
    /// When `keys` was fetched.
    keys_at: Option<Instant>,
    /// When a JWKS fetch was last attempted (successful or not): the rate limit.
    tried_at: Option<Instant>,
}

pub(crate) struct Issuer {
    pub(crate) cfg: OidcConfig,
    /// `cfg.audience`, the accepted `aud` values.
    audiences: Vec<String>,
    /// The web client's secret, read from `client_secret_file` at start.
    pub(crate) client_secret: Option<String>,
    cache: RwLock<Cache>,
    fetching: Mutex<()>,
    jwks_fetches: AtomicU64,
}

/// Counters for tests and `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IssuerStats {
    /// JWKS fetches attempted since start.
    pub jwks_fetches: u64,
    /// Usable keys in the cached JWKS.
    pub keys: usize,
}

/// Verifies OIDC bearer tokens of the configured issuers; also drives the web login
/// ([`Verifier::authorization_url`], [`Verifier::exchange`]). `Send + Sync`: share one behind an
/// `Arc`.
pub struct Verifier {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) agent: ureq::Agent,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| &i.cfg.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Verifier {
    /// Checks the configuration (no network): URLs, audiences, login settings, no issuer twice.
    pub fn new(cfg: Vec<OidcConfig>) -> Result<Self, Error> {
        let mut issuers: Vec<Issuer> = Vec::with_capacity(cfg.len());
        for c in cfg {
            c.validate()?;
            if issuers.iter().any(|i| i.cfg.issuer == c.issuer) {
                return Err(Error::Config(format!(
                    "issuer {} configured twice",
                    c.issuer
                )));
            }
            let audiences = c.audience.clone();
            let client_secret = match &c.client_secret_file {
                None => None,
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| {
                        Error::Config(format!("client_secret_file {}: {e}", p.display()))
                    })?;
                    let secret = text.lines().next().unwrap_or("").trim().to_owned();
                    if secret.is_empty() {
                        return Err(Error::Config(format!(
                            "client_secret_file {} is empty",
                            p.display()
                        )));
                    }
                    Some(secret)
                }
            };
            issuers.push(Issuer {
                cfg: c,
                audiences,
                client_secret,
                cache: RwLock::new(Cache::default()),
                fetching: Mutex::new(()),
                jwks_fetches: AtomicU64::new(0),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Verifier { issuers, agent })
    }

    /// Fetches every issuer's discovery document and JWKS now; the first failure is returned
    /// (the verifier stays usable and retries lazily).
    pub fn prefetch(&self) -> Result<(), Error> {
        for i in &self.issuers {
            self.keys(i, true)?;
        }
        Ok(())
    }

    /// The configured issuers, in config order.
    pub fn issuers(&self) -> impl Iterator<Item = &OidcConfig> {
        self.issuers.iter().map(|i| &i.cfg)
    }

    /// Fetch counters of `issuer`.
    pub fn stats(&self, issuer: &str) -> Option<IssuerStats> {
        let i = self.issuer(issuer).ok()?;
        let keys = read(&i.cache).keys.as_ref().map_or(0, |k| k.keys.len());
        Some(IssuerStats {
            jwks_fetches: i.jwks_fetches.load(Ordering::Relaxed),
            keys,
        })
    }

    /// Verifies a bearer access token: the issuer named by its `iss` must be configured
    /// (exact match), the signature must verify with a key of that issuer's JWKS, `exp`,
    /// `nbf`, `iat` must hold within the leeway, and one `aud` must be a configured audience.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        let un = token::peek(token.trim())?;
        let issuer = self.issuer(&un.iss)?;
        self.verify_for(issuer, token.trim(), &issuer.audiences, un.kid.as_deref())
    }

    pub(crate) fn issuer(&self, iss: &str) -> Result<&Issuer, Error> {
        self.issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or_else(|| Error::UnknownIssuer(iss.chars().take(200).collect()))
    }

    pub(crate) fn verify_for(
        &self,
        issuer: &Issuer,
        token: &str,
        audiences: &[String],
        kid: Option<&str>,
    ) -> Result<Claims, Error> {
        let mut keys = self.keys(issuer, false)?;
        if !keys.has_kid(kid) {
            // Rotation: the issuer may have published a new key since our fetch.
            keys = self.refresh_for_kid(issuer, kid)?;
        }
        let expect = Expect {
            issuer: &issuer.cfg.issuer,
            audiences,
            leeway: issuer.cfg.leeway_seconds,
            now: unix_now(),
            groups_claim: issuer.cfg.groups_claim.as_deref(),
        };
        token::verify(token, &keys, &expect)
    }

    /// The discovery document (fetched once; refetched with the JWKS when that is refreshed).
    pub(crate) fn discovery(&self, issuer: &Issuer) -> Result<Arc<Discovery>, Error> {
        if let Some(d) = read(&issuer.cache).discovery.clone() {
            return Ok(d);
        }
        let _g = lock(&issuer.fetching);
        if let Some(d) = read(&issuer.cache).discovery.clone() {
            return Ok(d);
        }
        let d = Arc::new(self.fetch_discovery(issuer)?);
        write(&issuer.cache).discovery = Some(d.clone());
        Ok(d)
    }

    /// The cached keys, fetched when absent or older than the max age (`force`: always).
    fn keys(&self, issuer: &Issuer, force: bool) -> Result<Arc<KeySet>, Error> {
        let max_age = Duration::from_secs(issuer.cfg.jwks_max_age_seconds);
        {
            let c = read(&issuer.cache);
            if let (Some(k), Some(at), false) = (&c.keys, c.keys_at, force)
                && at.elapsed() < max_age
            {
                return Ok(k.clone());
            }
        }
        let _g = lock(&issuer.fetching);
        let (cached, fresh, tried_recently) = {
            let c = read(&issuer.cache);
            let fresh = c.keys_at.is_some_and(|at| at.elapsed() < max_age);
            (c.keys.clone(), fresh, self.tried_recently(issuer, &c))
        };
        match cached {
            Some(k) if fresh && !force => Ok(k),
            // A fetch just failed: keep the stale keys, or refuse at once, until the next
            // window (an issuer that is down must not cost every request a timeout).
            Some(k) if tried_recently && !force => Ok(k),
            None if tried_recently && !force => Err(Error::Unavailable {
                issuer: issuer.cfg.issuer.clone(),
                what: "the last fetch failed; retried after jwks_refresh_min_seconds".into(),
            }),
            _ => match self.fetch_keys(issuer) {
                Ok(k) => Ok(k),
                Err(e) => cached.ok_or(e),
            },
        }
    }

    fn refresh_for_kid(&self, issuer: &Issuer, kid: Option<&str>) -> Result<Arc<KeySet>, Error> {
        let _g = lock(&issuer.fetching);
        let (cached, tried_recently) = {
            let c = read(&issuer.cache);
            (c.keys.clone(), self.tried_recently(issuer, &c))
        };
        // Another thread may have fetched the new key while we waited for the lock.
        if let Some(k) = &cached
            && (k.has_kid(kid) || tried_recently)
        {
            return Ok(k.clone());
        }
        match self.fetch_keys(issuer) {
            Ok(k) => Ok(k),
            Err(e) => cached.ok_or(e),
        }
    }

    fn tried_recently(&self, issuer: &Issuer, c: &Cache) -> bool {
        c.tried_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(issuer.cfg.jwks_refresh_min_seconds))
    }

    /// Fetches discovery (again) and the JWKS; the caller holds `fetching`.
    fn fetch_keys(&self, issuer: &Issuer) -> Result<Arc<KeySet>, Error> {
        write(&issuer.cache).tried_at = Some(Instant::now());
        issuer.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let d = Arc::new(self.fetch_discovery(issuer)?);
        let body = self.get(&issuer.cfg.issuer, &d.jwks_uri)?;
        let keys = KeySet::from_jwks(&body).map_err(|e| Error::Unavailable {
            issuer: issuer.cfg.issuer.clone(),
            what: e.to_string(),
        })?;
        if keys.keys.is_empty() {
            return Err(Error::Unavailable {
                issuer: issuer.cfg.issuer.clone(),
                what: format!("jwks at {} has no usable signing key", d.jwks_uri),
            });
        }
        let keys = Arc::new(keys);
        let mut c = write(&issuer.cache);
        c.discovery = Some(d);
        c.keys = Some(keys.clone());
        c.keys_at = Some(Instant::now());
        Ok(keys)
    }

    fn fetch_discovery(&self, issuer: &Issuer) -> Result<Discovery, Error> {
        let iss = &issuer.cfg.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            iss.trim_end_matches('/')
        );
        let body = self.get(iss, &url)?;
        let unavailable = |what: String| Error::Unavailable {
            issuer: iss.clone(),
            what,
        };
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("discovery document: {e}")))?;
        if &d.issuer != iss {
            return Err(unavailable(format!(
                "discovery names issuer {:?}",
                d.issuer
            )));
        }
        check_url(&d.jwks_uri, "jwks_uri").map_err(|e| unavailable(e.to_string()))?;
        Ok(d)
    }

    pub(crate) fn get(&self, issuer: &str, url: &str) -> Result<Vec<u8>, Error> {
        let unavailable = |what: String| Error::Unavailable {
            issuer: issuer.to_owned(),
            what,
        };
        let mut resp = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| unavailable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOC_BYTES)
            .read_to_vec()
            .map_err(|e| unavailable(format!("{url}: {e}")))?;
        if status != 200 {
            return Err(unavailable(format!("{url} answered {status}")));
        }
        Ok(body)
    }
}

/// Whether `aud` values include the WLCG "any" audience (for the API's audit: such a token
/// was accepted because the site configured it).
pub fn is_any_audience(claims: &Claims) -> bool {
    claims.aud.iter().any(|a| a == WLCG_ANY_AUDIENCE)
}

/// The wall clock, for token and cookie lifetimes only (never for evidence times: nothing
/// here is a Received or Reported time; jsonwebtoken reads the same clock for `exp`/`nbf`,
/// and this leaf crate does not depend on `model`).
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// A poisoned lock only means another thread panicked mid-update of a cache; the cache is
// still a valid value (every update is one assignment), so keep going.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
fn lock(l: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_verifier_is_shareable_between_request_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Verifier>();
    }

    #[test]
    fn an_unreachable_issuer_is_unavailable_and_not_asked_again_within_the_window() {
        // A loopback port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let issuer = format!("http://127.0.0.1:{port}");
        let v = Verifier::new(vec![OidcConfig::new(&issuer, "aud")]).expect("verifier");
        let t = format!(
            "{}.{}.AAAA",
            token::b64_json(&json!({"alg": "RS256", "kid": "k"})),
            token::b64_json(&json!({"iss": issuer, "sub": "s", "aud": "aud", "exp": 1}))
        );
        for _ in 0..5 {
            let e = v.verify(&t).expect_err("no keys");
            assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
            assert!(!e.is_client_error());
        }
        assert_eq!(v.stats(&issuer).map(|s| s.jwks_fetches), Some(1));
        // A token of an issuer that is not configured costs no fetch at all.
        let other = t.replace(
            &token::b64_json(&json!({"iss": issuer, "sub": "s", "aud": "aud", "exp": 1})),
            &token::b64_json(&json!({"iss": "https://evil.example", "sub": "s"})),
        );
        assert!(matches!(v.verify(&other), Err(Error::UnknownIssuer(_))));
        assert_eq!(v.stats(&issuer).map(|s| s.jwks_fetches), Some(1));
    }
}
