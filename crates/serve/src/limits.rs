//! Bounds on what senders can make the collector hold: connections per listener (and in
//! all, from the descriptor limit), HTTP header (and idle) and body timeouts, the HTTP body size,
//! and the helpers the listeners share to apply them (`[limits]` in the config).
//!
//! ```toml
//! [limits]
//! max_connections = 20000         # per TCP listener (syslog TCP, TLS, RELP, HTTP)
//! http_header_timeout_secs = 10   # request headers must arrive within this; it also
//!                                 # closes a keep-alive connection idle that long (hyper
//!                                 # starts the timer when it waits for the next request)
//! http_body_timeout_secs = 30     # the whole body must arrive within this
//! http_max_body_bytes = 16711680  # at most what one ledger record holds (16 MiB − 64 KiB)
//! ```
//!
//! Connections beyond a listener's limit, or beyond what the process's descriptors allow
//! (`RLIMIT_NOFILE` less [`RESERVED_FDS`] for the ledger, the views and the listeners), are
//! accepted and closed at once, and counted (`pugmark_connections_refused_total`): the
//! kernel's backlog keeps draining, so nothing waits in limbo, and senders see a prompt
//! close they retry later. An `accept` error (EMFILE when descriptors run out all the same)
//! is counted and followed by a short sleep, never a tight loop or a dead listener.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Listener, Metrics};

/// Default connections per TCP listener: above the 10 000 idle connections the issue asks
/// to hold, far below what memory allows (a few KiB each with buffers that start small).
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Descriptors kept for everything but connections: ledger segments and sidecars, the
/// search index's files, the fact store, listening sockets, the AMQP connection.
pub const RESERVED_FDS: u64 = 256;
/// Largest HTTP body: one JSON document is one ledger record, and the ledger's record
/// limit is 16 MiB; 64 KiB is left for the envelope around it (origin, hints).
pub const DEFAULT_HTTP_MAX_BODY: usize = (16 << 20) - (64 << 10);
/// Wait after a failed `accept` (EMFILE, ENFILE, ENOBUFS) before the next one.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Read buffers of stream connections start this small and grow on demand (to the
/// listener's maximum) while reads fill them; idle connections hold only this much.
pub const READ_BUF_START: usize = 8 * 1024;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<usize>,
    pub http_header_timeout_secs: Option<u64>,
    pub http_body_timeout_secs: Option<u64>,
    pub http_max_body_bytes: Option<usize>,
}

/// The validated limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub http_header_timeout: Duration,
    pub http_body_timeout: Duration,
    pub http_max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_raw(&RawLimits::default())
    }
}

impl Limits {
    pub fn from_raw(r: &RawLimits) -> Limits {
        let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d).max(1));
        Limits {
            max_connections: r.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1),
            http_header_timeout: secs(r.http_header_timeout_secs, 10),
            http_body_timeout: secs(r.http_body_timeout_secs, 30),
            // Never above what the store takes in one record.
            http_max_body: r
                .http_max_body_bytes
                .unwrap_or(DEFAULT_HTTP_MAX_BODY)
                .clamp(1, DEFAULT_HTTP_MAX_BODY),
        }
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (idle senders cost a descriptor each),
/// and return the soft limit now in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let mut want = cur;
    want.current = cur.maximum;
    if want.current != cur.current && setrlimit(Resource::Nofile, want).is_ok() {
        return getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    }
    cur.current.unwrap_or(u64::MAX)
}

/// The connection slots of a listener, and of the whole process.
#[derive(Debug, Clone)]
pub struct Slots {
    listener: Arc<Semaphore>,
    all: Arc<Semaphore>,
}

/// Held by a connection task; dropping it frees the slots.
#[derive(Debug)]
pub struct Slot(
    #[allow(dead_code)] OwnedSemaphorePermit,
    #[allow(dead_code)] OwnedSemaphorePermit,
);

impl Slots {
    /// `all` is shared by every listener (see [`process_slots`]).
    pub fn new(max: usize, all: Arc<Semaphore>) -> Slots {
        Slots {
            listener: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            all,
        }
    }

    fn take(&self) -> Option<Slot> {
        let a = self.listener.clone().try_acquire_owned().ok()?;
        let b = self.all.clone().try_acquire_owned().ok()?;
        Some(Slot(a, b))
    }
}

/// Connection slots for the whole process: the descriptor limit less [`RESERVED_FDS`].
pub fn process_slots(nofile: u64) -> Arc<Semaphore> {
    let n = nofile.saturating_sub(RESERVED_FDS).max(16);
    Arc::new(Semaphore::new(
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS),
    ))
}

/// Accept the next connection this listener has a slot for. A connection beyond the
/// limits is closed at once and counted; an accept error is counted and paused on.
pub async fn accept(
    listener: &TcpListener,
    slots: &Slots,
    l: Listener,
    metrics: &Metrics,
) -> (TcpStream, std::net::SocketAddr, Slot) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => match slots.take() {
                Some(slot) => return (stream, addr, slot),
                None => {
                    metrics
                        .listener(l)
                        .connections_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics.problem(
                        l,
                        "connection refused: limit reached",
                        &format!("{addr} closed at once"),
                    );
                    drop(stream);
                }
            },
            Err(e) => {
                metrics.problem(l, "accept error", &e.to_string());
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Grow `buf` (doubling, up to `max`) when the last read filled it: a busy connection
/// reaches `max` in a few reads and keeps it while busy.
pub fn grow_read_buf(buf: &mut Vec<u8>, filled: usize, max: usize) {
    if filled == buf.len() && buf.len() < max {
        let to = (buf.len() * 2).min(max);
        buf.resize(to, 0);
    }
}

/// A connection gone quiet (its idle timeout passed) gives a grown buffer back.
pub fn shrink_read_buf(buf: &mut Vec<u8>) {
    if buf.len() > READ_BUF_START {
        buf.truncate(READ_BUF_START);
        buf.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffers_grow_on_demand_and_shrink_when_quiet() {
        let mut b = vec![0u8; READ_BUF_START];
        grow_read_buf(&mut b, 100, 64 * 1024);
        assert_eq!(b.len(), READ_BUF_START, "a short read does not grow it");
        grow_read_buf(&mut b, READ_BUF_START, 64 * 1024);
        assert_eq!(b.len(), 2 * READ_BUF_START);
        for _ in 0..10 {
            let n = b.len();
            grow_read_buf(&mut b, n, 64 * 1024);
        }
        assert_eq!(b.len(), 64 * 1024, "capped");
        shrink_read_buf(&mut b);
        assert_eq!(b.len(), READ_BUF_START);
        assert!(b.capacity() < 64 * 1024);
    }

    #[test]
    fn the_http_body_never_exceeds_a_ledger_record() {
        let l = Limits::from_raw(&RawLimits {
            http_max_body_bytes: Some(1 << 30),
            ..RawLimits::default()
        });
        assert_eq!(l.http_max_body, DEFAULT_HTTP_MAX_BODY);
        assert_eq!(Limits::default().max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[tokio::test]
    async fn slots_refuse_beyond_the_listener_or_the_process_limit() {
        let all = Arc::new(Semaphore::new(3));
        let a = Slots::new(2, all.clone());
        let b = Slots::new(5, all);
        let a1 = a.take().unwrap();
        let _a2 = a.take().unwrap();
        assert!(a.take().is_none(), "listener limit");
        let _b1 = b.take().unwrap();
        assert!(b.take().is_none(), "process limit");
        drop(a1);
        assert!(b.take().is_some());
    }
}
