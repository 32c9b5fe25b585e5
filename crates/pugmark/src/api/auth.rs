//! Who is asking (authentication) and with which role (authorization input), for the query
//! API. Handlers see only an [`Identity`] and an [`ApiRole`]; where the identity comes from is
//! behind [`Authenticator`]:
//!
//! - **local API tokens** ([`ApiTokens`], `pugmark api-token create|list|revoke`): for
//!   scripts. The secret (`pmk_` + 64 hex digits, 256 random bits) is printed once;
//!   `DATA/api/tokens.json` keeps only its SHA-256 (a high-entropy secret needs no slow hash),
//!   the name, the role and when it was made or revoked. The file is read at each request, so
//!   a revocation takes effect at once in a running `serve` or `ui`.
//! - **OIDC bearer tokens** (the WLCG Common JWT profile; crate `authn`): [`oidc`] builds
//!   an `authn::Verifier` over the `[[auth.oidc]]` issuers; a JWT goes to it, and its `iss`,
//!   `sub` and groups (`wlcg.groups`, `eduperson_entitlement`, merged) become an [`Identity`]
//!   with `via: "oidc"`. Roles then come from `[[api.roles]]` (group → role).
//!
//! An API token carries its role itself (it was chosen at `create`): [`Identity::groups`] holds
//! it as `pugmark-api-token:ROLE`, which [`role_of`] honours only for `via == "api-token"`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serve::config::{ApiConfig, ApiRole};

/// Who is asking, however proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token issuer (OIDC `iss`); none for local API tokens.
    pub issuer: Option<String>,
    /// OIDC `sub`, or the API token's id.
    pub subject: String,
    /// A name for people: the OIDC preferred name, or the API token's name.
    pub name: String,
    pub groups: Vec<String>,
    /// `oidc` or `api-token`.
    pub via: &'static str,
}

/// Why a bearer token was refused (answered 401, audited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that no authenticator accepts: unknown, revoked, expired, badly signed.
    Invalid(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => f.write_str("a bearer token is required"),
            AuthError::Invalid(why) => write!(f, "the bearer token is not valid: {why}"),
        }
    }
}

/// One way of proving who one is. `None`: not this authenticator's kind of token.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, token: &str) -> Option<Result<Identity, String>>;
}

/// Every authenticator the API accepts, tried in order.
pub struct Authenticators {
    pub tokens: ApiTokens,
    /// The OIDC verifier (crate `authn`), plugged in here at merge: a JWT (three
    /// dot-separated parts) goes to it; without one, JWTs are refused as unknown tokens.
    pub oidc: Option<Box<dyn Authenticator>>,
}

impl Authenticators {
    /// The identity behind an `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let token = authorization
            .and_then(|v| {
                let (scheme, t) = v.trim().split_once(' ')?;
                let t = t.trim();
                (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then_some(t)
            })
            .ok_or(AuthError::Missing)?;
        if let Some(r) = self.tokens.authenticate(token) {
            return r.map_err(AuthError::Invalid);
        }
        if let Some(o) = &self.oidc
            && let Some(r) = o.authenticate(token)
        {
            return r.map_err(AuthError::Invalid);
        }
        Err(AuthError::Invalid("unknown token".into()))
    }
}

/// The OIDC verifier over the configured issuers (`[[auth.oidc]]`); none configured, none
/// built (a JWT is then an unknown token: 401, audited). Fails when an issuer's client secret
/// file cannot be read (no network here: keys are fetched at the first token).
pub fn oidc(config: &ApiConfig) -> anyhow::Result<Option<Box<dyn Authenticator>>> {
    if config.oidc.is_empty() {
        return Ok(None);
    }
    let v = authn::Verifier::new(config.oidc.clone())
        .map_err(|e| anyhow::anyhow!("the OIDC issuers of [[auth.oidc]]: {e}"))?;
    Ok(Some(Box::new(Oidc(v))))
}

/// A JWT → the verified claims → an [`Identity`]. `verify` may block to fetch keys (rarely:
/// cached, rate-limited); the API calls it on its blocking pool.
struct Oidc(authn::Verifier);

impl Authenticator for Oidc {
    fn authenticate(&self, token: &str) -> Option<Result<Identity, String>> {
        if !authn::looks_like_jwt(token) {
            return None;
        }
        Some(
            self.0
                .verify(token)
                .map(|c| Identity {
                    issuer: Some(c.iss.clone()),
                    subject: c.sub.clone(),
                    name: c.display_name().to_string(),
                    groups: c.groups.clone(),
                    via: "oidc",
                })
                .map_err(|e| format!("{} ({})", e, e.reason())),
        )
    }
}

/// The group an API token's role is carried in.
const TOKEN_ROLE_GROUP: &str = "pugmark-api-token:";

/// The role of an identity: an API token's own; for OIDC the strongest role any of its groups
/// maps to in `[[api.roles]]` (site, then csirt, then the VOs — several VOs together are one
/// scope over all their VMs; [`roles_of`]). None: no role, refused (403).
pub fn role_of(id: &Identity, config: &ApiConfig) -> Option<Vec<ApiRole>> {
    let roles = roles_of(id, config);
    if roles.is_empty() {
        return None;
    }
    if roles.contains(&ApiRole::Site) {
        return Some(vec![ApiRole::Site]);
    }
    if roles.contains(&ApiRole::Csirt) {
        return Some(vec![ApiRole::Csirt]);
    }
    Some(roles)
}

fn roles_of(id: &Identity, config: &ApiConfig) -> Vec<ApiRole> {
    let mut out = Vec::new();
    if id.via == "api-token" {
        for g in &id.groups {
            if let Some(r) = g.strip_prefix(TOKEN_ROLE_GROUP)
                && let Ok(r) = r.parse::<ApiRole>()
            {
                out.push(r);
            }
        }
        return out;
    }
    for (group, role) in &config.roles {
        if id.groups.iter().any(|g| g == group) && !out.contains(role) {
            out.push(role.clone());
        }
    }
    out.sort();
    out
}

/// One stored API token (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub sha256: String,
    pub created: String,
    pub revoked: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// The local API tokens of a data directory: `DATA/api/tokens.json`.
pub struct ApiTokens {
    path: PathBuf,
}

/// What an API token starts with (and how it is told from a JWT).
pub const TOKEN_PREFIX: &str = "pmk_";

impl ApiTokens {
    pub fn new(data: &Path) -> ApiTokens {
        ApiTokens {
            path: data.join("api").join("tokens.json"),
        }
    }

    fn read(&self) -> anyhow::Result<TokenFile> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("reading {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, f: &TokenFile) -> anyhow::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut bytes = serde_json::to_vec_pretty(f)?;
        bytes.push(b'\n');
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        Ok(())
    }

    /// Makes a token; returns it (the secret, shown once) and what is stored.
    pub fn create(&self, name: &str, role: &ApiRole) -> anyhow::Result<(String, StoredToken)> {
        if name.is_empty() || name.chars().any(char::is_control) {
            bail!("--name must be a non-empty name without control characters");
        }
        let mut f = self.read()?;
        if f.tokens
            .iter()
            .any(|t| t.name == name && t.revoked.is_none())
        {
            bail!("a token named {name:?} exists; revoke it first or pick another name");
        }
        // `new_token` is `pmk_` + 64 hex digits already (tokens before 2026-12-07 carried the
        // prefix twice, `pmk_pmk_…`; they still start with it and keep working).
        let secret = serve::senders::new_token()?;
        let sha = serve::senders::token_sha256(&secret);
        let stored = StoredToken {
            id: sha[..12].to_string(),
            name: name.to_string(),
            role: role.to_string(),
            sha256: sha,
            created: model::Received::now().timestamp().to_string(),
            revoked: None,
        };
        f.tokens.push(stored.clone());
        self.write(&f)?;
        Ok((secret, stored))
    }

    pub fn list(&self) -> anyhow::Result<Vec<StoredToken>> {
        Ok(self.read()?.tokens)
    }

    /// Revokes the live tokens whose name or id is `which`; returns them.
    pub fn revoke(&self, which: &str) -> anyhow::Result<Vec<StoredToken>> {
        let mut f = self.read()?;
        let now = model::Received::now().timestamp().to_string();
        let mut done = Vec::new();
        for t in &mut f.tokens {
            if (t.name == which || t.id == which) && t.revoked.is_none() {
                t.revoked = Some(now.clone());
                done.push(t.clone());
            }
        }
        if done.is_empty() {
            bail!("no live token is named or has the id {which:?}");
        }
        self.write(&f)?;
        Ok(done)
    }
}

impl Authenticator for ApiTokens {
    fn authenticate(&self, token: &str) -> Option<Result<Identity, String>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let f = match self.read() {
            Ok(f) => f,
            Err(e) => return Some(Err(format!("token store unreadable: {e:#}"))),
        };
        let sha = serve::senders::token_sha256(token);
        // Looked up by the hash of a 256-bit secret: timing reveals nothing usable.
        let Some(t) = f.tokens.iter().find(|t| t.sha256 == sha) else {
            return Some(Err("unknown token".into()));
        };
        if t.revoked.is_some() {
            return Some(Err(format!("token {} was revoked", t.id)));
        }
        Some(Ok(Identity {
            issuer: None,
            subject: format!("api-token:{}", t.id),
            name: t.name.clone(),
            groups: vec![format!("{TOKEN_ROLE_GROUP}{}", t.role)],
            via: "api-token",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_revocation_takes_effect() {
        let d = tempfile::tempdir().expect("tempdir");
        let t = ApiTokens::new(d.path());
        let (secret, stored) = t
            .create("ci", &ApiRole::Vo("atlas".into()))
            .expect("create");
        // The documented shape: `pmk_` once, then 64 hex digits (it was `pmk_pmk_…`).
        let rest = secret.strip_prefix(TOKEN_PREFIX).expect("prefix");
        assert!(
            rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{secret}"
        );
        let file = std::fs::read_to_string(d.path().join("api/tokens.json")).expect("file");
        assert!(!file.contains(&secret), "the secret is not stored");
        let auth = Authenticators {
            tokens: ApiTokens::new(d.path()),
            oidc: None,
        };
        let id = auth
            .authenticate(Some(&format!("Bearer {secret}")))
            .expect("valid");
        assert_eq!(id.name, "ci");
        let config = ApiConfig::default();
        assert_eq!(
            role_of(&id, &config),
            Some(vec![ApiRole::Vo("atlas".into())])
        );
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert!(matches!(
            auth.authenticate(Some("Bearer pmk_nope")),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.authenticate(Some("Bearer a.b.c")),
            Err(AuthError::Invalid(_))
        ));
        t.revoke(&stored.id).expect("revoke");
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {secret}"))),
            Err(AuthError::Invalid(w)) if w.contains("revoked")
        ));
    }

    #[test]
    fn oidc_groups_map_to_the_strongest_role() {
        let config = ApiConfig {
            roles: vec![
                ("/atlas".into(), ApiRole::Vo("atlas".into())),
                ("/site".into(), ApiRole::Site),
            ],
            ..Default::default()
        };
        let id = |groups: &[&str]| Identity {
            issuer: Some("https://iam".into()),
            subject: "s".into(),
            name: "n".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            via: "oidc",
        };
        assert_eq!(
            role_of(&id(&["/atlas"]), &config),
            Some(vec![ApiRole::Vo("atlas".into())])
        );
        assert_eq!(
            role_of(&id(&["/atlas", "/site"]), &config),
            Some(vec![ApiRole::Site])
        );
        assert_eq!(role_of(&id(&["/cms"]), &config), None);
        // A forged API-token group in an OIDC token gives nothing.
        assert_eq!(role_of(&id(&["pugmark-api-token:site"]), &config), None);
    }
}
