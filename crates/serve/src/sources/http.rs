//! The HTTP listener: `GET /metrics` (Prometheus text) and `POST /api/v1/events` (one JSON
//! document, or NDJSON: one per line), answered 200 only once the records are durable.
//!
//! Thin on purpose (STYLE.md convention 14): [`app`] builds the router from the shared state;
//! the handlers only cut the body into records and wait for the writer's [`crate::writer::Durable`].
//! Records are stored as OpenStack notifications (the JSON the cloud sends); a line that is
//! not JSON is stored all the same — raw bytes are evidence — counted as a parse error and
//! reported in the answer.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use model::{Format, Received};
use tokio::sync::oneshot;

use crate::metrics::Listener;
use crate::sources::{Ctx, Sender, record};
use crate::writer::Submission;

const L: Listener = Listener::Http;
/// Largest request body accepted.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

pub fn app(ctx: Ctx) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/events", post(events))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

async fn events(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Response {
    let received = Received::now();
    let sender = Sender {
        addr,
        identity: None,
    };
    let origin = sender.origin(L);
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
        .map(|d| record(&ctx, L, &origin, received, Format::OpenstackNotification, d))
        .collect();
    ctx.metrics
        .seen(L, &sender.key(), records.len() as u64, received);
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
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "shutting down"}),
        );
    }
    match wait.await {
        Ok(Ok(d)) => json(
            StatusCode::OK,
            serde_json::json!({"stored": d.stored(), "duplicates": d.duplicates(), "not_json": bad, "last_seq": d.last_seq()}),
        ),
        Ok(Err(msg)) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": msg}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "shutting down"}),
        ),
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
