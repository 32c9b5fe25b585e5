//! The HTTP listener: `GET /metrics` (Prometheus text) and `POST /api/v1/events` (one JSON
//! document, or NDJSON: one per line), answered 200 only once the records are durable.
//!
//! Thin on purpose (STYLE.md convention 14): [`app`] builds the router from the shared state;
//! the handlers only cut the body into records and wait for the writer's [`crate::writer::Durable`].
//! Records are stored as OpenStack notifications (the JSON the cloud sends); a line that is
//! not JSON is stored all the same — raw bytes are evidence — counted as a parse error and
//! reported in the answer.
//!
//! Ingestion needs a credential: an `Authorization: Bearer` token whose SHA-256 a
//! `[[senders.map]]` entry holds; the entry gives the observer (a nova token `cloud`, a VO's
//! `vo`) and its name, stored as the origin identity `bearer:NAME`. Without any token entry
//! `POST /api/v1/events` answers 404; a missing or wrong token 401. Every refusal is counted
//! (`pugmark_refused_total{listener="http"}`) and nothing of its body is stored.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use model::{Format, Received};
use tokio::sync::oneshot;

use crate::metrics::Listener;
use crate::senders::{Proof, Verdict};
use crate::sources::{Ctx, OpenConn, Sender, record};
use crate::writer::{NotDurable, Submission};

const L: Listener = Listener::Http;
/// Largest request body accepted by default: what one ledger record holds
/// (`[limits] http_max_body_bytes` may lower it, never raise it above this).
pub const MAX_BODY: usize = crate::limits::DEFAULT_HTTP_MAX_BODY;
/// Longest wait for the writer's answer before a 503.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// What a 503 tells the client to wait before retrying, in seconds.
const RETRY_AFTER: &str = "1";

/// `/metrics` and `/api/v1/events` on one listener (no separate metrics address).
pub fn app(ctx: Ctx) -> Router {
    let limit = ctx.limits.http_max_body;
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/events", post(events))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(ctx))
}

/// Serve HTTP connections with hyper directly (what `axum::serve` does, plus bounds): a
/// connection slot per connection (`crate::limits`), and a header-read timeout that also
/// closes keep-alive connections left idle.
///
/// `app` is [`app`], or [`events_app`] and [`metrics_app`] on two listeners when `/metrics`
/// has an address of its own.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Ctx, app: Router) {
    let slots = ctx.slots();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, addr, slot) = tokio::select! {
            a = crate::limits::accept(&listener, &slots, L, &ctx.metrics) => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(ConnectInfo(addr))),
        );
        let metrics = ctx.metrics.clone();
        let header_timeout = ctx.limits.http_header_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let _open = OpenConn::new(&metrics, L);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = conn.await;
        });
    }
}

fn unavailable(why: &str) -> Response {
    let mut r = json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": why}),
    );
    if let Ok(v) = header::HeaderValue::from_str(RETRY_AFTER) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `/api/v1/events` only: the HTTP listener when `/metrics` has an address of its own.
pub fn events_app(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/events", post(events))
        .layer(DefaultBodyLimit::max(ctx.limits.http_max_body))
        .with_state(Arc::new(ctx))
}

/// `/metrics` only (`--metrics ADDR`): what a Prometheus scraper may reach without reaching
/// ingestion.
pub fn metrics_app(ctx: Ctx) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(ctx))
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
        .into_response()
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Cut a body into documents: the whole body if it is one JSON value, else its non-empty
/// lines (NDJSON). Returns the documents and how many are not JSON.
pub fn documents(body: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return (Vec::new(), 0);
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return (vec![trimmed.to_vec()], 0);
    }
    let mut docs = Vec::new();
    let mut bad = 0;
    for line in body.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
            bad += 1;
        }
        docs.push(line.to_vec());
    }
    (docs, bad)
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme without case, RFC 6750).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A refusal at the door: counted, logged once per kind, answered with a JSON error.
fn refuse(
    ctx: &Ctx,
    status: StatusCode,
    kind: &'static str,
    addr: std::net::SocketAddr,
) -> Response {
    ctx.metrics.listener(L).refused.fetch_add(1, Relaxed);
    ctx.metrics.problem(L, kind, &addr.to_string());
    let mut r = json(status, serde_json::json!({ "error": kind }));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = header::HeaderValue::from_str("Bearer realm=\"pugmark\"")
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn events(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The door first: the body is not even read before the sender proved who it is (an
    // unauthenticated client must not make us buffer up to MAX_BODY).
    if !ctx.senders.http_open() {
        return refuse(
            &ctx,
            StatusCode::NOT_FOUND,
            "HTTP ingestion is off: no token is configured ([[senders.map]] with token_sha256; see pugmark token)",
            addr,
        );
    }
    let Some(token) = bearer(&headers) else {
        return refuse(
            &ctx,
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer TOKEN)",
            addr,
        );
    };
    let decided = ctx.senders.decide(&Proof {
        listener: L,
        ip: Some(addr.ip()),
        cert: None,
        token: Some(token),
    });
    let Verdict::Accept(who) = decided else {
        return refuse(
            &ctx,
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid",
            addr,
        );
    };
    // The token's entry name is the proven identity, stored in every record's origin.
    let sender = Sender {
        addr,
        identity: Some(format!("bearer:{}", who.name.as_deref().unwrap_or("-"))),
    };
    let origin = sender.origin(L);
    // The store is retrying a fault: say so now rather than hold the request.
    if ctx.metrics.store.retrying.load(Relaxed) {
        return unavailable("storage is recovering from a fault; retry");
    }
    let limit = ctx.limits.http_max_body;
    let body = match tokio::time::timeout(
        ctx.limits.http_body_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            ctx.metrics.listener(L).rejected.fetch_add(1, Relaxed);
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": format!("body larger than {limit} bytes (one ledger record); send NDJSON in smaller requests")}),
            );
        }
        Err(_) => {
            return json(
                StatusCode::REQUEST_TIMEOUT,
                serde_json::json!({"error": "body not received in time"}),
            );
        }
    };
    let received = Received::now();
    let (docs, bad) = documents(&body);
    if docs.is_empty() {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "empty body: send one JSON document or NDJSON"}),
        );
    }
    if bad > 0 {
        ctx.metrics
            .listener(L)
            .parse_errors
            .fetch_add(bad as u64, Relaxed);
        ctx.metrics.problem(
            L,
            "body line is not JSON",
            &format!("{bad} from {addr}, stored raw"),
        );
    }
    let records: Vec<_> = docs
        .into_iter()
        .map(|d| {
            record(
                &ctx,
                L,
                &origin,
                who.observer,
                received,
                Format::OpenstackNotification,
                d,
            )
        })
        .collect();
    ctx.metrics
        .seen_as(L, &sender.key(), &who, records.len() as u64, received);
    let (ack, wait) = oneshot::channel();
    if ctx
        .tx
        .send(Submission {
            listener: L,
            records,
            ack: Some(ack),
            share: None,
        })
        .await
        .is_err()
    {
        return unavailable("shutting down");
    }
    // Bounded: a request queued just before a storage fault is not held for the fault's
    // whole length. It may still be stored after the 503 (the client's retry then stores
    // it again: HTTP has no resend detection; the window is this long wait only).
    let Ok(answer) = tokio::time::timeout(ACK_WAIT, wait).await else {
        return unavailable("not durable yet (storage is recovering from a fault); retry");
    };
    match answer {
        Ok(Ok(d)) => json(
            StatusCode::OK,
            serde_json::json!({"stored": d.stored(), "duplicates": d.duplicates(), "not_json": bad, "last_seq": d.last_seq()}),
        ),
        Ok(Err(NotDurable::Refused(msg))) => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"error": msg}),
        ),
        Ok(Err(NotDurable::Unavailable(msg))) => unavailable(&msg),
        Err(_) => unavailable("shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_or_ndjson() {
        assert_eq!(
            documents(b" {\"a\":\n 1}\n"),
            (vec![b"{\"a\":\n 1}".to_vec()], 0)
        );
        assert_eq!(
            documents(b"{\"a\":1}\n\n{\"b\":2}\nnot json\n"),
            (
                vec![
                    b"{\"a\":1}".to_vec(),
                    b"{\"b\":2}".to_vec(),
                    b"not json".to_vec()
                ],
                1
            )
        );
        assert_eq!(documents(b"  \n"), (vec![], 0));
    }
}
