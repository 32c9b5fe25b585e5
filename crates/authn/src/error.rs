//! The one error type of the crate: why a token, a login or a configuration was refused.
//!
//! Every variant has a short stable [`Error::reason`] so the API side can audit refused
//! attempts ("expired", "bad_signature", ...) without parsing messages.

/// Why a token, a login or a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a compact JWS (three base64url parts, JSON header and payload), or too large.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none`, an HMAC algorithm (we only hold public keys), an unknown algorithm, or one
    /// the issuer's key is not for.
    #[error("token algorithm refused: {0}")]
    Algorithm(String),
    /// The token's `iss` is not exactly one of the configured issuers.
    #[error("issuer not accepted: {0:?}")]
    UnknownIssuer(String),
    /// No key with the token's `kid` at the issuer, even after a JWKS refresh.
    #[error("no key {kid:?} at issuer {issuer}")]
    UnknownKey {
        /// The issuer the token claimed.
        issuer: String,
        /// The token header's `kid`, if it had one.
        kid: Option<String>,
    },
    /// The signature does not verify with the issuer's key.
    #[error("signature does not verify")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// No `aud` value is one of the configured audiences.
    #[error("audience not accepted")]
    Audience,
    /// A claim the profile requires is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// A claim has the wrong type or value (`nonce` mismatch, `azp` of another client, ...).
    #[error("invalid claim {0}")]
    InvalidClaim(String),
    /// The issuer's discovery document or JWKS could not be fetched or read, and no usable
    /// cached copy exists.
    #[error("issuer {issuer} unavailable: {what}")]
    Unavailable {
        /// The configured issuer.
        issuer: String,
        /// What failed.
        what: String,
    },
    /// The configuration is not usable.
    #[error("auth config: {0}")]
    Config(String),
    /// The login (authorization code flow) failed: state mismatch, expired attempt, or the
    /// provider's error answer.
    #[error("login failed: {0}")]
    Login(String),
    /// A session or login cookie is forged, damaged or expired.
    #[error("cookie refused: {0}")]
    Cookie(&'static str),
}

impl Error {
    /// A short stable code for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::Algorithm(_) => "algorithm",
            Error::UnknownIssuer(_) => "unknown_issuer",
            Error::UnknownKey { .. } => "unknown_key",
            Error::Signature => "bad_signature",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::Audience => "wrong_audience",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::Unavailable { .. } => "issuer_unavailable",
            Error::Config(_) => "config",
            Error::Login(_) => "login",
            Error::Cookie(_) => "cookie",
        }
    }

    /// True when the caller's credentials are at fault (answer 401), false when the server
    /// side is (issuer unreachable, bad config: answer 503/500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Error::Unavailable { .. } | Error::Config(_))
    }
}
