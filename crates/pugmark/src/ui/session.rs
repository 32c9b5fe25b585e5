//! Who is logged in to the web UI: the session cookie, the two logins (a local API token in a
//! form; OIDC authorization code + PKCE through `authn`) and logout.
//!
//! The session cookie (`pugmark_session`) is an `authn::CookieKey`-sealed [`UiSession`]
//! (HMAC-SHA256, purpose-bound, expiring): the identity the API would have built from a bearer
//! token, plus a CSRF token for the logout form. Roles are not in it: they are recomputed from
//! the groups on every request (`api::auth::role_of`), like the API. A session made from an
//! API token names the token's id, and the token must still be listed and unrevoked at each
//! request, so a revocation logs the browser out at once.
//!
//! The key: `[auth] session_key_file` when configured (several servers behind one name share
//! it), else `DATA/api/ui-session.key`, made (0600) at the first login.
//!
//! Login CSRF: the login form carries a random token that must equal the one sealed in the
//! short-lived `pugmark_login` cookie (double submit, bound by the seal); logout carries the
//! session's own. Pages are GET only and change nothing.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serve::api::{ApiRequest, ApiResponse, AuditSink};

use super::{html, redirect};
use crate::api::Service;
use crate::api::auth::Identity;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pugmark_session";
/// The login form's CSRF cookie.
const LOGIN_COOKIE: &str = "pugmark_login";
/// The pending OIDC login (state, nonce, PKCE verifier), sealed.
const OIDC_COOKIE: &str = "pugmark_oidc";
/// A session lasts this long (a working day), then the user logs in again.
pub const SESSION_TTL_SECONDS: i64 = 12 * 3600;

/// What the session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiSession {
    /// `api-token` or `oidc`.
    pub via: String,
    pub issuer: Option<String>,
    /// OIDC `sub`, or the API token's id.
    pub subject: String,
    pub name: String,
    pub groups: Vec<String>,
    /// The logout form's CSRF token.
    pub csrf: String,
}

impl UiSession {
    pub fn identity(&self) -> Identity {
        Identity {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            name: self.name.clone(),
            groups: self.groups.clone(),
            via: if self.via == "oidc" {
                "oidc"
            } else {
                "api-token"
            },
        }
    }
}

fn now() -> i64 {
    // Session expiry is not evidence, but the collector clock is the one clock pugmark reads.
    model::time::Received::now().timestamp().as_second()
}

fn random() -> String {
    let mut b = [0u8; 24];
    // A failed OS generator leaves zeros: the seal still binds the value, but say so loudly.
    if getrandom_fill(&mut b).is_err() {
        eprintln!("pugmark ui: no randomness from the OS for a CSRF token");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_fill(b: &mut [u8]) -> std::io::Result<()> {
    // The OS generator through std (no extra crate): /dev/urandom.
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(b)
}

/// The cookie key (see the module doc), loaded once per process.
fn key(svc: &Service) -> Result<&'static authn::CookieKey, String> {
    static KEY: OnceLock<Result<authn::CookieKey, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        if let Some(f) = &svc.config.session_key_file {
            return authn::CookieKey::from_file(f).map_err(|e| e.to_string());
        }
        let path = svc.data.join("api").join("ui-session.key");
        if let Ok(k) = authn::CookieKey::from_file(&path) {
            return Ok(k);
        }
        let mut b = [0u8; 32];
        getrandom_fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        std::fs::create_dir_all(svc.data.join("api")).map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(hex.as_bytes()).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
        }
        authn::CookieKey::from_file(&path).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A cookie's value from the `Cookie` header.
pub(crate) fn cookie<'a>(req: &'a ApiRequest, name: &str) -> Option<&'a str> {
    req.cookie.as_deref()?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn set_cookie(req: &ApiRequest, name: &str, value: &str, max_age: i64) -> String {
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if req.secure { "; Secure" } else { "" }
    )
}

/// The logged-in user of a request, if any (a valid, unexpired session whose API token, if it
/// came from one, is still valid).
pub fn current(svc: &Service, req: &ApiRequest) -> Option<UiSession> {
    let k = key(svc).ok()?;
    let s: UiSession = k
        .open("pugmark-ui-session", cookie(req, SESSION_COOKIE)?)
        .ok()?;
    if s.via == "api-token" {
        let live = svc.auth.tokens.list().ok()?.into_iter().any(|t| {
            s.subject.strip_prefix("api-token:") == Some(t.id.as_str()) && t.revoked.is_none()
        });
        if !live {
            return None;
        }
    }
    Some(s)
}

/// Failed logins allowed per client address, and per user name, within
/// [`FAILURE_WINDOW_SECONDS`]; the next attempt is refused with 429 and `Retry-After` until the
/// oldest of them leaves the window.
pub const MAX_FAILURES: usize = 10;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW_SECONDS: u64 = 300;
/// Keys (addresses, names) remembered at most; past it, keys with no failure in the window go.
const MAX_KEYS: usize = 100_000;

type FailureLog = std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>;

/// Recent failed logins by key (`addr IP`, `user NAME`), in this process. Hand-written (a few
/// lines over a map) rather than a rate-limiting crate: the counts are of failures, recorded
/// after the fact, not of requests admitted by a token bucket.
fn failures() -> std::sync::MutexGuard<'static, FailureLog> {
    static F: OnceLock<std::sync::Mutex<FailureLog>> = OnceLock::new();
    F.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The keys a login attempt is counted under: its client address and, when known, the user
/// it is for (the identity when it was established but refused, else the `iss`/`sub` a JWT
/// claims — unverified, only a name to count by).
fn limit_keys(req: &ApiRequest, user: Option<&str>, token: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(p) = req.peer {
        keys.push(format!("addr {}", p.ip()));
    }
    if let Some(u) = user {
        keys.push(format!("user {u}"));
    } else if let Some(t) = token.filter(|t| authn::looks_like_jwt(t))
        && let Ok(u) = authn::token::peek(t)
        && let Some(sub) = u.sub
    {
        keys.push(format!("user {} {sub}", u.iss));
    }
    keys
}

/// Seconds until an attempt under `keys` may be made (none: now), and the key that waits.
fn blocked(keys: &[String]) -> Option<(u64, String)> {
    let window = std::time::Duration::from_secs(FAILURE_WINDOW_SECONDS);
    let now = std::time::Instant::now();
    let mut f = failures();
    let mut worst: Option<(u64, String)> = None;
    for k in keys {
        let Some(q) = f.get_mut(k) else { continue };
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= MAX_FAILURES
            && let Some(oldest) = q.front()
        {
            let left = window.saturating_sub(now.duration_since(*oldest)).as_secs() + 1;
            if worst.as_ref().is_none_or(|(w, _)| left > *w) {
                worst = Some((left, k.clone()));
            }
        }
    }
    worst
}

/// Counts a failed login under `keys`.
fn failed(keys: &[String]) {
    let window = std::time::Duration::from_secs(FAILURE_WINDOW_SECONDS);
    let now = std::time::Instant::now();
    let mut f = failures();
    if f.len() >= MAX_KEYS {
        f.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
    }
    for k in keys {
        let q = f.entry(k.clone()).or_default();
        q.push_back(now);
        while q.len() > MAX_FAILURES {
            q.pop_front();
        }
    }
}

/// The refusal of a login attempt past the limit: audited, 429 with `Retry-After`.
fn too_many(
    svc: &Service,
    req: &ApiRequest,
    sink: &dyn AuditSink,
    how: &str,
    (wait, key): (u64, String),
) -> ApiResponse {
    let why = format!(
        "too many failed logins ({MAX_FAILURES} in {} minutes) for {key}: try again in {wait} s",
        FAILURE_WINDOW_SECONDS / 60
    );
    let _ = audit_login(sink, req, how, None, 429, Some(why.clone()));
    let mut r = login_page(svc, req, Some(&why));
    r.status = 429;
    r.headers.push(("retry-after", wait.to_string()));
    r
}

/// A login, made or refused, into the ledger like a query (verb `login`): who, how, and why not.
/// A login that cannot be audited is not made.
fn audit_login(
    sink: &dyn AuditSink,
    req: &ApiRequest,
    how: &str,
    id: Option<&Identity>,
    status: u16,
    reason: Option<String>,
) -> Result<(), String> {
    let record = crate::api::audit::Audit {
        user: id.map_or_else(|| "-".to_string(), |i| i.name.clone()),
        subject: id.map(|i| i.subject.clone()),
        issuer: id.and_then(|i| i.issuer.clone()),
        via: Some(how.to_string()),
        role: None,
        verb: "login".into(),
        params: serde_json::json!({"ui": "login"}),
        status,
        count: 0,
        vms: Default::default(),
        peer: req.peer.map(|a| a.to_string()),
        reason,
        change: None,
    };
    sink.store(record.record()).map(|_| ())
}

fn start_session(
    svc: &Service,
    req: &ApiRequest,
    sink: &dyn AuditSink,
    id: &Identity,
    next: &str,
) -> ApiResponse {
    if let Err(e) = audit_login(sink, req, id.via, Some(id), 200, None) {
        return login_page(
            svc,
            req,
            Some(&format!("the login could not be audited: {e}")),
        );
    }
    let s = UiSession {
        via: id.via.to_string(),
        issuer: id.issuer.clone(),
        subject: id.subject.clone(),
        name: id.name.clone(),
        groups: id.groups.clone(),
        csrf: random(),
    };
    let sealed = match key(svc).and_then(|k| {
        k.seal("pugmark-ui-session", &s, now() + SESSION_TTL_SECONDS)
            .map_err(|e| e.to_string())
    }) {
        Ok(v) => v,
        Err(e) => return login_page(svc, req, Some(&format!("cannot start a session: {e}"))),
    };
    redirect(
        safe_next(next),
        vec![
            set_cookie(req, SESSION_COOKIE, &sealed, SESSION_TTL_SECONDS),
            set_cookie(req, LOGIN_COOKIE, "", 0),
            set_cookie(req, OIDC_COOKIE, "", 0),
        ],
    )
}

/// Only our own pages: no open redirect.
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("/ui//") && !next.contains('\\') {
        next
    } else {
        "/ui/"
    }
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

/// The login page: the token form, and one button per OIDC issuer with a web client.
pub fn login_page(svc: &Service, req: &ApiRequest, error: Option<&str>) -> ApiResponse {
    let p = crate::api::params_of(req.query.as_deref());
    let next = param(&p, "next").unwrap_or("/ui/").to_string();
    let csrf = random();
    let sealed = key(svc).and_then(|k| {
        k.seal("pugmark-ui-login", &csrf, now() + 3600)
            .map_err(|e| e.to_string())
    });
    let (cookie_hdr, error) = match sealed {
        Ok(v) => (
            Some(set_cookie(req, LOGIN_COOKIE, &v, 3600)),
            error.map(str::to_string),
        ),
        Err(e) => (None, Some(format!("no session key: {e}"))),
    };
    let issuers: Vec<serde_json::Value> = svc
        .config
        .oidc
        .iter()
        .enumerate()
        .filter(|(_, o)| o.client_id.is_some() && o.redirect_uri.is_some())
        .map(|(i, o)| serde_json::json!({"index": i, "issuer": o.issuer}))
        .collect();
    let ctx = serde_json::json!({
        "title": "Log in",
        "csrf": csrf,
        "next": safe_next(&next),
        "error": error,
        "issuers": issuers,
    });
    let status = if error.is_some() { 401 } else { 200 };
    let mut r = html(status, super::pages::render("login.html", &ctx));
    if let Some(c) = cookie_hdr {
        r.headers.push(("set-cookie", c));
    }
    r
}

/// `POST /ui/login`: `token`, `csrf`, `next` (form-urlencoded).
pub fn login_post(svc: &Service, req: &ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let form = crate::api::params_of(std::str::from_utf8(&req.body).ok());
    let sent = param(&form, "csrf").unwrap_or("");
    let sealed_ok = key(svc).ok().and_then(|k| {
        k.open::<String>("pugmark-ui-login", cookie(req, LOGIN_COOKIE)?)
            .ok()
    });
    if sealed_ok.as_deref() != Some(sent) || sent.is_empty() {
        return login_page(
            svc,
            req,
            Some("the form expired or did not come from this site: try again"),
        );
    }
    let token = param(&form, "token").unwrap_or("").trim();
    let next = param(&form, "next").unwrap_or("/ui/").to_string();
    let keys = limit_keys(req, None, Some(token));
    if let Some(b) = blocked(&keys) {
        return too_many(svc, req, sink, "api-token", b);
    }
    match svc.auth.authenticate(Some(&format!("Bearer {token}"))) {
        Ok(id) => {
            if crate::api::auth::role_of(&id, &svc.config).is_none() {
                failed(&limit_keys(req, Some(&id.name), None));
                let why = "this identity has no role here (no [[api.roles]] group matches)";
                let _ = audit_login(sink, req, id.via, Some(&id), 403, Some(why.into()));
                return login_page(svc, req, Some(why));
            }
            start_session(svc, req, sink, &id, &next)
        }
        Err(e) => {
            failed(&keys);
            let _ = audit_login(sink, req, "api-token", None, 401, Some(e.to_string()));
            login_page(svc, req, Some(&e.to_string()))
        }
    }
}

/// The OIDC verifier for logins (its own key cache; the API's verifies bearer tokens).
fn verifier(svc: &Service) -> Result<&'static authn::Verifier, String> {
    static V: OnceLock<Result<authn::Verifier, String>> = OnceLock::new();
    V.get_or_init(|| authn::Verifier::new(svc.config.oidc.clone()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

#[derive(Serialize, Deserialize)]
struct PendingUi {
    pending: authn::PendingLogin,
    next: String,
}

/// `GET /ui/login/oidc?issuer=N&next=…`: to the provider's authorization endpoint.
pub fn oidc_start(svc: &Service, req: &ApiRequest) -> ApiResponse {
    let p = crate::api::params_of(req.query.as_deref());
    let Some(issuer) = param(&p, "issuer")
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| svc.config.oidc.get(i))
        .map(|o| o.issuer.clone())
    else {
        return login_page(svc, req, Some("no such issuer"));
    };
    let next = param(&p, "next").unwrap_or("/ui/").to_string();
    let started = verifier(svc).and_then(|v| {
        let (url, pending) = v.authorization_url(&issuer).map_err(|e| e.to_string())?;
        let sealed = key(svc)?
            .seal(
                "pugmark-ui-oidc",
                &PendingUi { pending, next },
                now() + authn::LOGIN_TTL_SECONDS,
            )
            .map_err(|e| e.to_string())?;
        Ok((url, sealed))
    });
    match started {
        Ok((url, sealed)) => redirect(
            url.as_str(),
            vec![set_cookie(
                req,
                OIDC_COOKIE,
                &sealed,
                authn::LOGIN_TTL_SECONDS,
            )],
        ),
        Err(e) => login_page(svc, req, Some(&format!("{issuer}: {e}"))),
    }
}

/// `GET /ui/callback?code=…&state=…`: the code exchanged (PKCE), the id_token verified.
pub fn oidc_callback(svc: &Service, req: &ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let keys = limit_keys(req, None, None);
    if let Some(b) = blocked(&keys) {
        return too_many(svc, req, sink, "oidc", b);
    }
    let r = oidc_callback_counted(svc, req, sink);
    if r.status != 303 {
        // Every callback that does not end in a session is a failed login (a refused code, a
        // forged or stale state, no role).
        failed(&keys);
    }
    r
}

fn oidc_callback_counted(svc: &Service, req: &ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let p = crate::api::params_of(req.query.as_deref());
    let refused = |why: String| {
        let _ = audit_login(sink, req, "oidc", None, 401, Some(why.clone()));
        login_page(svc, req, Some(&why))
    };
    if let Some(e) = param(&p, "error") {
        let d = param(&p, "error_description").unwrap_or("");
        return refused(format!("the provider refused: {e} {d}"));
    }
    let (Some(code), Some(state)) = (param(&p, "code"), param(&p, "state")) else {
        return refused("the provider sent no code".into());
    };
    let pending = key(svc).ok().and_then(|k| {
        k.open::<PendingUi>("pugmark-ui-oidc", cookie(req, OIDC_COOKIE)?)
            .ok()
    });
    let Some(pu) = pending else {
        return refused("this login was not started here or has expired: try again".into());
    };
    let tokens = verifier(svc).and_then(|v| {
        v.exchange(&pu.pending, code, state)
            .map_err(|e| e.to_string())
    });
    match tokens {
        Ok(t) => {
            let c = &t.claims;
            let id = Identity {
                issuer: Some(c.iss.clone()),
                subject: c.sub.clone(),
                name: c.display_name().to_string(),
                groups: c.groups.clone(),
                via: "oidc",
            };
            if crate::api::auth::role_of(&id, &svc.config).is_none() {
                let why = format!(
                    "{} has no role here (no [[api.roles]] group matches {:?})",
                    id.name, id.groups
                );
                failed(&[format!("user {}", id.name)]);
                let _ = audit_login(sink, req, "oidc", Some(&id), 403, Some(why.clone()));
                return login_page(svc, req, Some(&why));
            }
            start_session(svc, req, sink, &id, &pu.next)
        }
        Err(e) => refused(format!("login failed: {e}")),
    }
}

/// `POST /ui/logout` (`csrf` = the session's).
pub fn logout(svc: &Service, req: &ApiRequest) -> ApiResponse {
    let form = crate::api::params_of(std::str::from_utf8(&req.body).ok());
    if let Some(s) = current(svc, req)
        && param(&form, "csrf") != Some(s.csrf.as_str())
    {
        return super::pages::error_page(&s, 403, "logout needs the form of this session");
    }
    redirect("/ui/login", vec![set_cookie(req, SESSION_COOKIE, "", 0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_our_pages() {
        assert_eq!(safe_next("/ui/who?ip=1"), "/ui/who?ip=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/api/v1/who",
            "/ui/\\evil",
            "",
        ] {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let req = ApiRequest {
            method: "GET".into(),
            endpoint: String::new(),
            query: None,
            authorization: None,
            accept: None,
            peer: None,
            cookie: Some("x_pugmark_session=no; pugmark_session=yes; other=1".into()),
            content_type: None,
            secure: true,
            body: Vec::new(),
        };
        assert_eq!(cookie(&req, SESSION_COOKIE), Some("yes"));
        let c = set_cookie(&req, SESSION_COOKIE, "v", 60);
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/ui"] {
            assert!(c.contains(attr), "{c}");
        }
    }
}
