//! `pugmark serve`: the live collector.
//!
//! Listeners (`sources/`: syslog UDP, TCP, TLS, RELP, HTTP, NetFlow / IPFIX, and an AMQP consumer) run as tokio tasks and send what
//! they receive to one writer thread (`writer.rs`) that owns the store — the binary's
//! `Pipeline` — and group-commits: everything waiting becomes one durable ledger batch, then
//! every acknowledgement owed for it is sent. Nothing is acknowledged before it is durable;
//! the writer queue is bounded, so a slow disk slows senders down instead of growing memory.
//!
//! This crate fences the network stack (tokio, rustls, axum): the binary calls [`run`] with
//! a validated [`Config`] and a [`Store`], nothing else. Framing and RELP parsing are sans
//! I/O (`framing.rs`, `relp_frame.rs`) so they are fuzzed and tested without sockets.

pub mod api;
pub mod config;
pub mod framing;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod relp_frame;
pub mod senders;
pub mod share;
pub mod sources;
pub mod status;
pub mod witness_http;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

pub use config::{Config, Overrides};
pub use writer::Store;

use crate::metrics::Metrics;
use crate::sources::Ctx;

/// What `run` reports when it returns.
#[derive(Debug, Default)]
pub struct Summary {
    pub records: u64,
    pub batches: u64,
}

/// Serve until SIGTERM or SIGINT (or until the writer fails), then flush: every record
/// received is made durable and the store is finished (views committed, ledger closed with a
/// signed checkpoint). `last_seq` is the ledger position before serving.
pub fn run(config: Config, store: Box<dyn Store>, last_seq: u64) -> anyhow::Result<Summary> {
    run_with_api(config, store, last_seq, None)
}

/// [`run`], with the query API ([`api::Api`], the binary's) mounted on the HTTP listener
/// beside ingestion; its audit records go through the writer queue like every record.
pub fn run_with_api(
    config: Config,
    store: Box<dyn Store>,
    last_seq: u64,
    query_api: Option<Arc<dyn api::Api>>,
) -> anyhow::Result<Summary> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pugmark-serve")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let metrics = Arc::new(Metrics::new());
    writer::note_start(&metrics, last_seq);
    let mut store = store;
    store.attach_metrics(metrics.clone());
    let (tx, rx) = writer::channel();
    let writer_metrics = metrics.clone();
    let (writer_done_tx, writer_done_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = std::thread::Builder::new()
        .name("pugmark-writer".into())
        .spawn(move || {
            let r = writer::run(store, rx, writer_metrics);
            let _ = writer_done_tx.send(());
            r
        })
        .context("starting the writer thread")?;
    // Idle senders cost a descriptor each: take what the hard limit allows.
    let nofile = limits::raise_nofile();
    let ctx = Ctx {
        tx,
        metrics: metrics.clone(),
        idle_timeout: config.idle_timeout,
        limits: Arc::new(config.limits.clone()),
        all_slots: limits::process_slots(nofile),
        senders: config.senders.clone(),
    };
    let served = rt.block_on(serve(config, ctx, writer_done_rx, query_api));
    // A writer retrying a storage fault gives up now instead of holding the shutdown.
    metrics.store.stopping.store(true, Relaxed);
    // Dropping the tasks drops every sender: the writer drains what is queued and finishes.
    rt.shutdown_timeout(Duration::from_secs(5));
    let written = writer
        .join()
        .map_err(|_| anyhow!("writer thread panicked"))?;
    served?;
    written?;
    Ok(Summary {
        records: metrics.ledger_records.load(Relaxed),
        batches: metrics.ledger_batches.load(Relaxed),
    })
}

async fn bind_tcp(what: &str, a: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(a)
        .await
        .with_context(|| format!("{what}: cannot listen on {a}"))
}

/// A UDP listener's kernel receive buffer, asked for: what the kernel holds while the
/// receive task waits for a CPU. The default (`net.core.rmem_default`, 208 KiB here) is
/// ~150 NetFlow datagrams, which a busy exporter fills in a millisecond; nfcapd is run with
/// `-B 4194304` for the same reason.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Asks for [`UDP_RECV_BUFFER`]: past `net.core.rmem_max` where allowed (root), else up to
/// it. Best effort: a smaller buffer drops more under bursts, counted in
/// `pugmark_udp_kernel_drops`.
fn grow_recv_buffer(sock: UdpSocket) -> UdpSocket {
    use rustix::net::sockopt;
    if sockopt::set_socket_recv_buffer_size_force(&sock, UDP_RECV_BUFFER).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(&sock, UDP_RECV_BUFFER);
    }
    sock
}

async fn serve(
    config: Config,
    ctx: Ctx,
    writer_done: tokio::sync::oneshot::Receiver<()>,
    query_api: Option<Arc<dyn api::Api>>,
) -> anyhow::Result<()> {
    // Bind everything first: a port in use is one clear error before anything runs.
    let udp = match config.syslog_udp {
        Some(a) => {
            Some(grow_recv_buffer(UdpSocket::bind(a).await.with_context(
                || format!("syslog-udp: cannot listen on {a}"),
            )?))
        }
        None => None,
    };
    let tcp = match config.syslog_tcp {
        Some(a) => Some(bind_tcp("syslog-tcp", a).await?),
        None => None,
    };
    let tls = match (config.syslog_tls, &config.tls) {
        (Some(a), Some(t)) => Some((bind_tcp("syslog-tls", a).await?, t.clone())),
        _ => None,
    };
    let relp = match config.relp {
        Some(a) => Some(bind_tcp("relp", a).await?),
        None => None,
    };
    let http = match config.http {
        Some(a) => Some(bind_tcp("http", a).await?),
        None => None,
    };
    let metrics_listener = match config.metrics {
        Some(a) => Some(bind_tcp("metrics", a).await?),
        None => None,
    };
    let mut netflow = Vec::new();
    for a in &config.netflow {
        netflow.push(grow_recv_buffer(
            UdpSocket::bind(a)
                .await
                .with_context(|| format!("netflow: cannot listen on {a}"))?,
        ));
    }
    let mut tasks = JoinSet::new();
    let mut listening = Vec::new();
    if let Some(s) = udp {
        let a = s.local_addr()?;
        ctx.metrics
            .udp_bound(metrics::Listener::SyslogUdp, a.port());
        listening.push(format!("syslog-udp {a}"));
        tasks.spawn(sources::syslog_udp::serve(s, ctx.clone()));
    }
    if let Some(l) = tcp {
        listening.push(format!("syslog-tcp {}", l.local_addr()?));
        tasks.spawn(sources::syslog_tcp::serve(l, None, ctx.clone()));
    }
    if let Some((l, t)) = tls {
        listening.push(format!(
            "syslog-tls {}{}",
            l.local_addr()?,
            if t.mutual {
                " (client certificates required)"
            } else {
                ""
            }
        ));
        tasks.spawn(sources::syslog_tcp::serve(l, Some(t), ctx.clone()));
    }
    if let Some(l) = relp {
        listening.push(format!("relp {}", l.local_addr()?));
        tasks.spawn(sources::relp::serve(l, ctx.clone()));
    }
    if let Some(l) = http {
        listening.push(format!("http {}", l.local_addr()?));
        // /metrics moves to its own address when one is configured, so the port opened to
        // a Prometheus scraper does not also open ingestion.
        let mut app = if metrics_listener.is_some() {
            sources::http::events_app(ctx.clone())
        } else {
            sources::http::app(ctx.clone())
        };
        if let Some(q) = &query_api {
            let audit = Arc::new(api::WriterAudit {
                tx: ctx.tx.clone(),
                handle: tokio::runtime::Handle::current(),
            });
            app = app.merge(api::router(q.clone(), audit));
            listening.push("query api on http (/api/v1/openapi.json)".into());
        }
        tasks.spawn(sources::http::serve(l, ctx.clone(), app));
    }
    if let Some(l) = metrics_listener {
        listening.push(format!("metrics {}", l.local_addr()?));
        let app = sources::http::metrics_app(ctx.clone());
        tasks.spawn(sources::http::serve(l, ctx.clone(), app));
    }
    for s in netflow {
        let a = s.local_addr()?;
        ctx.metrics.udp_bound(metrics::Listener::Netflow, a.port());
        listening.push(format!("netflow {a}"));
        tasks.spawn(sources::netflow::serve(s, ctx.clone()));
    }
    if let Some(a) = config.amqp.clone() {
        listening.push(format!(
            "amqp {} queue {}",
            sources::amqp::broker(&a.url),
            a.queue
        ));
        tasks.spawn(sources::amqp::serve(a, ctx.clone()));
    }
    drop(ctx);
    eprintln!("pugmark serve: listening: {}", listening.join(", "));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = writer_done => "the ledger writer stopped",
    };
    eprintln!("pugmark serve: {why}: closing listeners and flushing to the ledger");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
