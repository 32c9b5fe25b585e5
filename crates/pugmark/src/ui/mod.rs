//! The web UI (issue 14): server-rendered pages under `/ui/…`, beside the query API on the
//! same router (`serve::api::router` hands every `/ui/…` request to [`handle`] on its blocking
//! pool, through `serve::api::Api::ui`).
//!
//! A page never queries by itself: it calls [`crate::api::Service::query`] — the API's own
//! path, with authentication already done by the session, then role, VO scoping, paging and
//! the audit record (its params carry `ui: PAGE`) — and renders the JSON answer with a
//! template (`templates/`, minijinja, autoescaped). So a page view is audited like an API
//! query and a VO user sees on a page exactly what the API would give it.
//!
//! Login ([`session`]): a local API token posted in a form, or the OIDC authorization-code
//! flow with PKCE (`authn`); either ends in a sealed session cookie (HttpOnly, SameSite=Lax,
//! Secure over TLS). Forms that change state (login, logout) carry a CSRF token bound to a
//! sealed cookie. Unauthenticated pages redirect to `/ui/login?next=…`.

pub mod cases;
pub mod pages;
pub mod session;

use serve::api::{ApiBody, ApiRequest, ApiResponse, AuditSink};

use crate::api::Service;

/// The stylesheet (print rules included) and the one small script (facet clicks, surrounding
/// records, timeline tooltips), compiled in: no CDN, nothing fetched.
const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/ui.js");

/// A rendered HTML page.
pub(crate) fn html(status: u16, body: String) -> ApiResponse {
    ApiResponse {
        status,
        content_type: "text/html; charset=utf-8",
        body: ApiBody::Full(body.into_bytes()),
        headers: vec![
            ("cache-control", "no-store".into()),
            // Pages load only their own stylesheet and script; no frames (clickjacking).
            (
                "content-security-policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self' http: https:".into(),
            ),
            ("x-content-type-options", "nosniff".into()),
            ("referrer-policy", "same-origin".into()),
        ],
    }
}

/// A redirect (303: the browser follows with GET).
pub(crate) fn redirect(to: &str, cookies: Vec<String>) -> ApiResponse {
    let mut headers = vec![
        ("location", to.to_string()),
        ("cache-control", "no-store".into()),
    ];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie", c)));
    ApiResponse {
        status: 303,
        content_type: "text/plain; charset=utf-8",
        body: ApiBody::Full(Vec::new()),
        headers,
    }
}

fn asset(content_type: &'static str, body: &'static str) -> ApiResponse {
    ApiResponse {
        status: 200,
        content_type,
        body: ApiBody::Full(body.as_bytes().to_vec()),
        headers: vec![("cache-control", "max-age=300".into())],
    }
}

/// Every `/ui/…` request, with its server time in a `Server-Timing` header (`page;dur=MS`:
/// session, query, audit record and rendering; what bench/ui/run reports).
pub fn handle(svc: &Service, req: ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let t0 = std::time::Instant::now();
    let mut r = route(svc, req, sink);
    r.headers.push((
        "server-timing",
        format!("page;dur={:.1}", t0.elapsed().as_secs_f64() * 1000.0),
    ));
    r
}

fn route(svc: &Service, req: ApiRequest, sink: &dyn AuditSink) -> ApiResponse {
    let path = req.endpoint.trim_end_matches('/').to_string();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "static/style.css") => return asset("text/css; charset=utf-8", STYLE),
        ("GET", "static/ui.js") => return asset("text/javascript; charset=utf-8", SCRIPT),
        ("GET", "login") => return session::login_page(svc, &req, None),
        ("POST", "login") => return session::login_post(svc, &req, sink),
        ("GET", "login/oidc") => return session::oidc_start(svc, &req),
        ("GET", "callback") => return session::oidc_callback(svc, &req, sink),
        ("POST", "logout") => return session::logout(svc, &req),
        _ => {}
    }
    let Some(user) = session::current(svc, &req) else {
        let mut next = format!("/ui/{path}");
        if let Some(q) = &req.query {
            next.push('?');
            next.push_str(q);
        }
        let to = format!(
            "/ui/login?next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        return redirect(&to, Vec::new());
    };
    if req.method == "POST" && (path == "cases" || path.starts_with("case/")) {
        return cases::post(svc, &user, &req, sink, &path);
    }
    if req.method != "GET" {
        return pages::error_page(&user, 405, "pages are read with GET");
    }
    pages::page(svc, &user, &path, &req, sink)
}
