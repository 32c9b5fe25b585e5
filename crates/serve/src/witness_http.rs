//! `pugmark witness serve`: the C2SP `tlog-witness` HTTP interface over [`witness::Witness`].
//!
//! - `POST /add-checkpoint` (the spec): 200 with the cosignature line(s) once the new
//!   checkpoint is durable; 400 malformed, 403 no valid log signature, 404 unknown origin,
//!   409 `text/x.tlog.size` with the size held, 422 the consistency proof fails.
//! - `GET /pugmark/v1/latest/<origin>` (pugmark's extension, docs/SITES.md "Witnesses"): the
//!   latest checkpoint cosigned for the origin as a signed note (the log's signature and this
//!   witness's cosignature), 404 if none — what `pugmark verify --witness URL` asks, so a
//!   truncated or rewritten ledger is caught even when the collector's copies are gone.
//! - `GET /pugmark/v1/vkey`: the witness's verifier key.
//!
//! The state is touched on a blocking thread (it fsyncs); requests run one at a time through
//! the witness's lock.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use witness::Witness;

/// The router (also what tests mount).
pub fn app(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/pugmark/v1/latest/{*origin}", get(latest))
        .route("/pugmark/v1/vkey", get(vkey))
        .layer(DefaultBodyLimit::max(witness::protocol::MAX_BODY))
        .with_state(w)
}

/// Serves until SIGTERM or SIGINT.
pub fn run(listen: SocketAddr, w: Witness) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let local = listener.local_addr()?;
        let origins: Vec<String> = w.origins().map(str::to_owned).collect();
        eprintln!(
            "pugmark witness: listening on {local} as {}; following {}",
            w.vkey(),
            if origins.is_empty() {
                "no log (add --log ORIGIN=VKEY)".to_owned()
            } else {
                origins.join(", ")
            }
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        axum::serve(listener, app(Arc::new(w)))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            })
            .await
            .context("serving")
    })
}

fn now() -> u64 {
    u64::try_from(model::Received::now().timestamp().as_second()).unwrap_or(0)
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let answer = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now())).await;
    match answer {
        Ok(Ok(lines)) => (StatusCode::OK, lines).into_response(),
        Ok(Err(witness::Refusal::Conflict(size))) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Ok(Err(e)) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                eprintln!("pugmark witness: {e}");
            }
            (status, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn latest(State(w): State<Arc<Witness>>, Path(origin): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || w.latest(&origin)).await {
        Ok(Ok(Some(note))) => (StatusCode::OK, note).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            "no checkpoint held for this origin\n",
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn vkey(State(w): State<Arc<Witness>>) -> Response {
    (StatusCode::OK, format!("{}\n", w.vkey())).into_response()
}
