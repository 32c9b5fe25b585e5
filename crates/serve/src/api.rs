//! The query API's HTTP side (issue 14): `GET /api/v1/{search,who,timeline,report,check,hunt,
//! status,audit,openapi.json}` and `POST /api/v1/hunt`, mounted on serve's HTTP listener and
//! served alone by `pugmark ui`.
//!
//! Thin on purpose: this crate fences axum and tokio, and the queries live in the binary
//! (its `Fetch` implementations and views). The binary implements [`Api`], a plain
//! synchronous call from an [`ApiRequest`] (path, query string, headers that matter, body) to
//! an [`ApiResponse`]; each call runs on tokio's blocking pool (`spawn_blocking`), never on
//! the listeners' workers nor on the ledger writer's thread, so a slow query delays neither
//! ingestion nor acknowledgements. Authentication, authorization and the audit record are the
//! binary's (`crates/pugmark/src/api/`); the audit record reaches the ledger through the
//! [`AuditSink`] handed to each call: under `serve` the writer queue (group-committed with
//! everything else, answered only once durable), under `pugmark ui` the ui's own pipeline.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

/// Largest indicator file `POST /api/v1/hunt` accepts.
pub const MAX_API_BODY: usize = 64 << 20;

/// One API request as the binary sees it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// The path after `/api/v1/` (`who`, `search`, `openapi.json`, …).
    pub endpoint: String,
    /// The raw query string (percent-encoded), if any.
    pub query: Option<String>,
    /// `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// `Accept` header, verbatim.
    pub accept: Option<String>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// `Cookie` header, verbatim (the web UI's session; the API ignores it).
    pub cookie: Option<String>,
    /// `Content-Type` header, verbatim (the web UI's form posts).
    pub content_type: Option<String>,
    /// Whether the client reached us over TLS (directly, or `X-Forwarded-Proto: https` from a
    /// proxy): the web UI's cookies are then `Secure`.
    pub secure: bool,
    pub body: Vec<u8>,
}

/// What goes back.
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: ApiBody,
    /// Further headers (`Set-Cookie`, `Location`, `Cache-Control`, …), added as given.
    pub headers: Vec<(&'static str, String)>,
}

/// A whole body, or chunks produced by the blocking call as it goes (NDJSON exports).
pub enum ApiBody {
    Full(Vec<u8>),
    Chunks(std::sync::mpsc::Receiver<Vec<u8>>),
}

impl ApiResponse {
    /// A JSON document with a status.
    pub fn json(status: u16, v: &serde_json::Value) -> ApiResponse {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
        body.push(b'\n');
        ApiResponse {
            status,
            content_type: "application/json",
            body: ApiBody::Full(body),
            headers: Vec::new(),
        }
    }
}

/// Where an audit record goes (the binary makes the record: observer `collector`), durable
/// when this returns `Ok` (its ledger position).
pub trait AuditSink: Send + Sync {
    fn store(&self, record: model::envelope::RecordEnvelope) -> Result<u64, String>;
}

/// serve's sink: the writer queue, like every listener; answered once durable.
pub(crate) struct WriterAudit {
    pub tx: crate::writer::WriterTx,
    pub handle: tokio::runtime::Handle,
}

impl AuditSink for WriterAudit {
    fn store(&self, record: model::envelope::RecordEnvelope) -> Result<u64, String> {
        let (ack, wait) = tokio::sync::oneshot::channel();
        let sub = crate::writer::Submission {
            listener: crate::metrics::Listener::Http,
            records: vec![record],
            ack: Some(ack),
            share: None,
        };
        self.handle
            .block_on(self.tx.send(sub))
            .map_err(|_| "shutting down".to_string())?;
        match wait.blocking_recv() {
            Ok(Ok(d)) => Ok(d.last_seq()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("shutting down".into()),
        }
    }
}

/// The binary's query service.
pub trait Api: Send + Sync + 'static {
    fn call(&self, req: ApiRequest, audit: &dyn AuditSink) -> ApiResponse;

    /// A web UI page: `req.endpoint` is the path after `/ui/` (empty for the start page).
    /// Same blocking pool, same audit sink as [`Api::call`]. Without a UI: 404.
    fn ui(&self, req: ApiRequest, audit: &dyn AuditSink) -> ApiResponse {
        let _ = (req, audit);
        ApiResponse::json(404, &serde_json::json!({"error": "no web UI here"}))
    }
}

struct ApiState {
    api: Arc<dyn Api>,
    audit: Arc<dyn AuditSink>,
    /// Queries running at once: twice the CPUs. More only thrash (each opens its readers,
    /// decodes records, builds proofs); the others wait their turn in order.
    running: Arc<tokio::sync::Semaphore>,
}

/// The router: every method on `/api/v1/{*endpoint}` but `/api/v1/events` (ingestion keeps
/// its own route; axum prefers the static one when both are merged), the web UI's pages on
/// `/ui` and `/ui/{*page}` ([`Api::ui`]), and `/` redirecting to `/ui/`.
pub fn router(api: Arc<dyn Api>, audit: Arc<dyn AuditSink>) -> Router {
    Router::new()
        .route("/api/v1/{*endpoint}", any(handle))
        .route("/ui", any(handle))
        .route("/ui/", any(handle))
        .route("/ui/{*page}", any(handle))
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .with_state(Arc::new(ApiState {
            api,
            audit,
            running: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            )),
        }))
}

async fn handle(
    State(st): State<Arc<ApiState>>,
    conn: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let (is_ui, endpoint) = match path.strip_prefix("/api/v1/") {
        Some(e) => (false, e.to_string()),
        None => (
            true,
            path.strip_prefix("/ui")
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
        ),
    };
    let h = |n: header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let req = ApiRequest {
        method: method.as_str().to_string(),
        endpoint,
        query,
        authorization: h(header::AUTHORIZATION),
        accept: h(header::ACCEPT),
        peer: conn.map(|c| (c.0).0),
        cookie: h(header::COOKIE),
        content_type: h(header::CONTENT_TYPE),
        secure: uri.scheme_str() == Some("https")
            || h(header::HeaderName::from_static("x-forwarded-proto")).as_deref() == Some("https"),
        body: body.to_vec(),
    };
    let st2 = st.clone();
    let Ok(permit) = st.running.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if is_ui {
            st2.api.ui(req, st2.audit.as_ref())
        } else {
            st2.api.call(req, st2.audit.as_ref())
        }
    })
    .await;
    let Ok(r) = answer else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"error\":\"the query failed\"}\n",
        )
            .into_response();
    };
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match r.body {
        ApiBody::Full(b) => Body::from(b),
        ApiBody::Chunks(rx) => {
            // The blocking producer hands lines over a bounded std channel; a blocking task
            // forwards them into the response as they come.
            let (tx, trx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            tokio::task::spawn_blocking(move || {
                while let Ok(chunk) = rx.recv() {
                    if tx.blocking_send(chunk).is_err() {
                        break;
                    }
                }
            });
            let stream = futures_lite::stream::unfold(trx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|c| (Ok::<Bytes, std::io::Error>(Bytes::from(c)), rx))
            });
            Body::from_stream(stream)
        }
    };
    let mut resp = (status, [(header::CONTENT_TYPE, r.content_type)], body).into_response();
    for (name, value) in r.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    if status == StatusCode::UNAUTHORIZED
        && !is_ui
        && let Ok(v) = header::HeaderValue::from_str("Bearer realm=\"pugmark\"")
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// `pugmark ui`: the API alone on `listen`, until SIGTERM or SIGINT. `ready` is called with
/// the bound address (the ui prints it).
pub fn run_standalone(
    listen: SocketAddr,
    api: Arc<dyn Api>,
    audit: Arc<dyn AuditSink>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    use anyhow::Context;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pugmark-ui")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        ready(l.local_addr()?);
        let app = router(api, audit);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(l, svc);
        tokio::select! {
            r = server => r.context("serving"),
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    })
}
