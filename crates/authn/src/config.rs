//! The configuration: `[[auth.oidc]]` (one table per trusted issuer) and `[auth.roles]`
//! (token groups → pugmark roles), raw serde types with `deny_unknown_fields`, validated by
//! [`crate::Verifier::new`] and [`RoleMap::roles_for`]'s parse of the role strings.
//!
//! docs/API.md "Authentication" shows a full example; a unit test parses that exact text.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Claims, Error};

/// The WLCG Common JWT profile's "any audience" value: accepted only when configured.
pub const WLCG_ANY_AUDIENCE: &str = "https://wlcg.cern.ch/jwt/v1/any";

/// The `[auth]` section as far as this crate is concerned (the API side may embed `oidc` and
/// `roles` in its own `[auth]` struct instead, beside its local API tokens).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Trusted issuers, `[[auth.oidc]]`.
    #[serde(default)]
    pub oidc: Vec<OidcConfig>,
    /// Groups → roles, `[auth.roles]`.
    #[serde(default)]
    pub roles: RoleMap,
    /// File holding the key (≥ 32 bytes) that signs session and login cookies; the web UI
    /// needs it, bearer tokens do not.
    #[serde(default)]
    pub session_key_file: Option<PathBuf>,
}

/// One trusted issuer, `[[auth.oidc]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, compared byte for byte with `iss` and with the discovery document's
    /// `issuer` (INDIGO IAM's end in `/`). `https://`, or `http://` on a loopback host only.
    pub issuer: String,
    /// Accepted `aud` values of bearer access tokens: one string or a list. The WLCG "any"
    /// audience (`https://wlcg.cern.ch/jwt/v1/any`) is accepted only if listed here.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// The web UI's client at this issuer (authorization code flow); absent: bearer tokens only.
    #[serde(default)]
    pub client_id: Option<String>,
    /// File holding the client secret (first line); absent: a public client (PKCE only).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back: the UI's callback URL, registered at the
    /// provider.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Read groups from this claim only, instead of merging `wlcg.groups`, `groups` and
    /// `eduperson_entitlement`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Scopes asked for at login. Default `openid profile email wlcg.groups`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`, in seconds. Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// A token with an unknown `kid` refetches the JWKS at most once per this many seconds
    /// (a flood of made-up kids must not become a flood of fetches). Default 60.
    #[serde(default = "default_refresh_min")]
    pub jwks_refresh_min_seconds: u64,
    /// The JWKS is refetched when older than this, so withdrawn keys stop verifying. Default 3600.
    #[serde(default = "default_max_age")]
    pub jwks_max_age_seconds: u64,
}

fn default_leeway() -> u64 {
    60
}
fn default_refresh_min() -> u64 {
    60
}
fn default_max_age() -> u64 {
    3600
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl OidcConfig {
    /// Bearer-token settings for `issuer` and `audience` with the defaults for the rest.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audience: vec![audience.into()],
            client_id: None,
            client_secret_file: None,
            redirect_uri: None,
            groups_claim: None,
            scopes: None,
            leeway_seconds: default_leeway(),
            jwks_refresh_min_seconds: default_refresh_min(),
            jwks_max_age_seconds: default_max_age(),
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        check_url(&self.issuer, "issuer")?;
        if self.audience.is_empty() || self.audience.iter().any(String::is_empty) {
            return Err(Error::Config(format!(
                "{}: audience must name at least one value",
                self.issuer
            )));
        }
        if let Some(r) = &self.redirect_uri {
            url::Url::parse(r).map_err(|e| Error::Config(format!("redirect_uri {r:?}: {e}")))?;
        }
        if self.client_id.is_some() != self.redirect_uri.is_some() {
            return Err(Error::Config(format!(
                "{}: client_id and redirect_uri go together (the web login needs both)",
                self.issuer
            )));
        }
        if self.client_secret_file.is_some() && self.client_id.is_none() {
            return Err(Error::Config(format!(
                "{}: client_secret_file without client_id",
                self.issuer
            )));
        }
        Ok(())
    }
}

/// `https://` anywhere, `http://` only to a loopback host (test providers, a local proxy).
pub(crate) fn check_url(s: &str, what: &str) -> Result<url::Url, Error> {
    let u = url::Url::parse(s).map_err(|e| Error::Config(format!("{what} {s:?}: {e}")))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err(Error::Config(format!(
            "{what} {s:?}: must be https (http only on loopback)"
        ))),
    }
}

/// A pugmark role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything.
    Site,
    /// Everything, read-only.
    Csirt,
    /// Only what concerns the named VO's VMs and payloads.
    Vo(String),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Site => f.write_str("site"),
            Role::Csirt => f.write_str("csirt"),
            Role::Vo(n) => write!(f, "vo:{n}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "site" => Ok(Role::Site),
            "csirt" => Ok(Role::Csirt),
            _ => match s.strip_prefix("vo:") {
                Some(n)
                    if !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
                {
                    Ok(Role::Vo(n.to_owned()))
                }
                _ => Err(Error::Config(format!(
                    "role {s:?}: expected site, csirt or vo:NAME (NAME of letters, digits, . _ -)"
                ))),
            },
        }
    }
}

/// `[auth.roles]`: a group (as it appears in [`Claims::groups`]) → one role or a list of roles.
///
/// ```toml
/// [auth.roles]
/// "/pugmark/admins" = "site"
/// "/atlas" = ["vo:atlas"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RoleMap(pub BTreeMap<String, RoleList>);

/// One role or several (TOML string or array).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RoleList {
    /// `"site"`
    One(String),
    /// `["csirt", "vo:atlas"]`
    Many(Vec<String>),
}

impl RoleList {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let s: Vec<&str> = match self {
            RoleList::One(s) => vec![s.as_str()],
            RoleList::Many(v) => v.iter().map(String::as_str).collect(),
        };
        s.into_iter()
    }
}

impl RoleMap {
    /// Every role string parses (call at startup, so a typo is a config error, not a silent
    /// lack of access).
    pub fn validate(&self) -> Result<(), Error> {
        for roles in self.0.values() {
            for r in roles.iter() {
                r.parse::<Role>()?;
            }
        }
        Ok(())
    }

    /// The roles the token's groups map to, sorted, without duplicates. Exact string match on
    /// the group; no group, no role (the API refuses a token without a role).
    pub fn roles_for(&self, claims: &Claims) -> Vec<Role> {
        let mut out: Vec<Role> = claims
            .groups
            .iter()
            .filter_map(|g| self.0.get(g))
            .flat_map(|roles| roles.iter().filter_map(|r| r.parse().ok()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/API.md's "Authentication" section: its TOML block, exactly as printed.
    fn documented_config() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md");
        let doc = std::fs::read_to_string(path).expect("docs/API.md");
        let section = doc
            .split("## Authentication")
            .nth(1)
            .expect("Authentication section");
        let block = section.split("```toml\n").nth(1).expect("toml block");
        block.split("```").next().expect("closed block").to_owned()
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        auth: AuthConfig,
    }

    #[test]
    fn the_documented_config_parses_and_validates() {
        let f: File = toml::from_str(&documented_config()).expect("docs/API.md config parses");
        let a = f.auth;
        assert_eq!(
            a.session_key_file.as_deref(),
            Some(std::path::Path::new("/etc/pugmark/session.key"))
        );
        assert_eq!(a.oidc.len(), 2);
        assert_eq!(
            a.oidc[0].audience,
            ["https://pugmark.site.example", WLCG_ANY_AUDIENCE]
        );
        assert_eq!(a.oidc[1].audience, ["https://pugmark.site.example"]);
        assert_eq!(
            a.oidc[1].groups_claim.as_deref(),
            Some("eduperson_entitlement")
        );
        assert_eq!(
            (a.oidc[0].leeway_seconds, a.oidc[1].leeway_seconds),
            (60, 30)
        );
        // Roles are mapped by serve's [[api.roles]] (one mapping for every kind of token).
        assert!(a.roles.0.is_empty());
        // The real consumer: Verifier::new (no network), with the secret file made real.
        let dir = tempfile::tempdir().expect("tmp");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        let mut oidc = a.oidc.clone();
        oidc[0].client_secret_file = Some(secret);
        crate::Verifier::new(oidc).expect("verifier from the documented config");
    }

    #[test]
    fn config_mistakes_are_refused_at_start() {
        let bad = [
            // unknown key
            "[[auth.oidc]]\nissuer = \"https://i.example/\"\naudience = \"a\"\naudiance = \"b\"\n",
            // plain http to a remote issuer
            "[[auth.oidc]]\nissuer = \"http://i.example/\"\naudience = \"a\"\n",
            // no audience
            "[[auth.oidc]]\nissuer = \"https://i.example/\"\naudience = []\n",
            // login half configured
            "[[auth.oidc]]\nissuer = \"https://i.example/\"\naudience = \"a\"\nclient_id = \"c\"\n",
            // the same issuer twice
            "[[auth.oidc]]\nissuer = \"https://i.example/\"\naudience = \"a\"\n[[auth.oidc]]\nissuer = \"https://i.example/\"\naudience = \"b\"\n",
        ];
        for text in bad {
            let refused = match toml::from_str::<File>(text) {
                Err(_) => true,
                Ok(f) => crate::Verifier::new(f.auth.oidc).is_err(),
            };
            assert!(refused, "accepted: {text}");
        }
        for role in ["admin", "vo:", "vo:a b", "VO:atlas"] {
            let m: RoleMap = toml::from_str(&format!("\"/g\" = \"{role}\"")).expect("toml");
            assert!(m.validate().is_err(), "{role}");
        }
    }
}
