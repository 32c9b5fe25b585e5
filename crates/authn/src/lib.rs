//! pugmark's authentication (issue 14, "Who may ask what"): OIDC bearer access tokens of the
//! WLCG Common JWT profile / INDIGO IAM verified against the issuers' JWKS, the web UI's
//! login (authorization code + PKCE), signed session cookies, and the mapping of token groups
//! to pugmark roles (`site`, `csirt`, `vo:NAME`).
//!
//! A leaf crate: it knows nothing of queries, the ledger or HTTP serving. The API side calls
//! [`Verifier::verify`] with the bearer token and [`RoleMap::roles_for`] with the claims;
//! local API tokens and the audit live there.
//!
//! Files: `token.rs` (pure JWT checks on a key set; fuzzed), `claims.rs` (payload → [`Claims`],
//! group merging), `verifier.rs` (discovery, JWKS cache and refresh, ureq), `login.rs` (the
//! authorization code flow), `session.rs` (HMAC cookies), `config.rs` (`[[auth.oidc]]`,
//! `[auth.roles]`).

mod claims;
mod config;
mod error;
mod login;
mod session;
pub mod token;
pub use token::looks_like_jwt;
mod verifier;

pub use claims::{Claims, DEFAULT_GROUP_CLAIMS};
pub use config::{AuthConfig, OidcConfig, Role, RoleList, RoleMap, WLCG_ANY_AUDIENCE};
pub use error::Error;
pub use login::{LOGIN_TTL_SECONDS, PendingLogin, Tokens, pkce_challenge};
pub use session::{CookieKey, LOGIN_PURPOSE, SESSION_PURPOSE, Session};
pub use url::Url;
pub use verifier::{Discovery, IssuerStats, Verifier, is_any_audience};
