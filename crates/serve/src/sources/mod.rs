//! The listeners, one file per protocol. Each turns what its peers send into
//! [`RecordEnvelope`]s (raw bytes plus sender address, listener name and received time) and
//! submits them to the writer (`crate::writer`); those that acknowledge (RELP, HTTP, AMQP) do
//! so only with the writer's [`crate::writer::Durable`] in hand.
//!
//! The observer of every record is decided at the door by the sender map
//! ([`crate::senders`]): each listener builds the sender's proof (address, verified
//! certificate, token), asks [`Ctx::door`], and either stores the records under the observer it
//! answers or refuses the sender (counted, logged once per listener).

pub mod amqp;
pub mod http;
pub mod netflow;
pub mod relp;
pub mod syslog_tcp;
pub mod syslog_udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Observer, Origin, Received};

use crate::metrics::{Listener, Metrics};
use crate::senders::{Mapped, Proof, SenderMap, Verdict};
use crate::writer::WriterTx;

/// What every listener task holds.
#[derive(Clone)]
pub struct Ctx {
    pub tx: WriterTx,
    pub metrics: Arc<Metrics>,
    pub idle_timeout: std::time::Duration,
    pub limits: Arc<crate::limits::Limits>,
    /// Connection slots shared by every listener (from the descriptor limit).
    pub all_slots: Arc<tokio::sync::Semaphore>,
    /// Who each sender is taken to be.
    pub senders: Arc<SenderMap>,
}

impl Ctx {
    /// The connection slots of one listener.
    pub fn slots(&self) -> crate::limits::Slots {
        crate::limits::Slots::new(self.limits.max_connections, self.all_slots.clone())
    }

    /// The door: the sender map's answer for `p`; a refusal is counted on the listener and
    /// logged (first occurrence, then every 10 000th).
    pub fn door(&self, p: &Proof<'_>) -> Option<Mapped> {
        match self.senders.decide(p) {
            Verdict::Accept(m) => Some(m),
            Verdict::Refuse => {
                self.metrics
                    .listener(p.listener)
                    .refused
                    .fetch_add(1, Relaxed);
                let who =
                    p.ip.map_or_else(|| "the broker".to_string(), |ip| ip.to_string());
                self.metrics.problem(
                    p.listener,
                    "sender refused by the sender map",
                    &format!(
                        "{who}{}",
                        p.cert
                            .map(|c| format!(" ({})", c.subject))
                            .unwrap_or_default()
                    ),
                );
                None
            }
        }
    }
}

/// Who sent a record: the socket address, and for mutual TLS the certificate subject.
#[derive(Debug, Clone)]
pub struct Sender {
    pub addr: SocketAddr,
    pub identity: Option<String>,
}

impl Sender {
    pub fn origin(&self, l: Listener) -> Origin {
        match &self.identity {
            Some(id) => Origin::AuthenticatedPeer {
                addr: self.addr.to_string(),
                listener: l.name().into(),
                identity: id.clone(),
            },
            None => Origin::Peer {
                addr: self.addr.to_string(),
                listener: l.name().into(),
            },
        }
    }

    /// The key for last-seen tracking: the identity when proven, else the IP (source ports
    /// change with every connection).
    pub fn key(&self) -> String {
        match &self.identity {
            Some(id) => id.clone(),
            None => self.addr.ip().to_string(),
        }
    }
}

/// One record as received, counted on its listener, stored under the observer the door
/// decided.
pub fn record(
    ctx: &Ctx,
    l: Listener,
    origin: &Origin,
    observer: Observer,
    received: Received,
    format: Format,
    raw: Vec<u8>,
) -> RecordEnvelope {
    let m = ctx.metrics.listener(l);
    m.messages.fetch_add(1, Relaxed);
    m.bytes.fetch_add(raw.len() as u64, Relaxed);
    RecordEnvelope {
        received,
        observer,
        format,
        hints: DecodeHints::default(),
        origin: origin.clone(),
        raw,
    }
}

/// Decrements the open-connection gauge when a connection task ends, however it ends.
pub struct OpenConn(pub Arc<Metrics>, pub Listener);

impl OpenConn {
    pub fn new(m: &Arc<Metrics>, l: Listener) -> OpenConn {
        let lm = m.listener(l);
        lm.connections.fetch_add(1, Relaxed);
        lm.connections_open.fetch_add(1, Relaxed);
        OpenConn(m.clone(), l)
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0
            .listener(self.1)
            .connections_open
            .fetch_sub(1, Relaxed);
    }
}

/// The receive loop both UDP listeners share (syslog, NetFlow): read a datagram, gather what
/// else is already waiting (up to `gather`) into one submission, and queue it — UDP cannot
/// push back, so what does not fit this socket's share of the writer queue, or a full
/// queue, within [`UDP_WAIT`] is dropped and counted, never silent and never blocking long.
pub(crate) async fn receive_datagrams(
    sock: tokio::net::UdpSocket,
    ctx: Ctx,
    l: Listener,
    gather: usize,
    make: fn(&Ctx, &[u8], SocketAddr, Received) -> Option<RecordEnvelope>,
) {
    use tokio::sync::mpsc::error::TrySendError;
    let mut buf = vec![0u8; 65_536];
    // This socket's share of the writer queue: a flood of datagrams waits, then drops
    // (counted), once its share is queued, instead of filling the queue other senders need.
    let share = crate::share::Share::new();
    loop {
        let (n, addr) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                ctx.metrics.problem(l, "receive error", &e.to_string());
                continue;
            }
        };
        let received = Received::now();
        // A datagram from a refused sender is dropped (`make` counted it).
        let mut records: Vec<RecordEnvelope> =
            make(&ctx, &buf[..n], addr, received).into_iter().collect();
        // Take what else is already waiting without blocking: one submission per burst.
        let mut read = 1;
        while read < gather {
            match sock.try_recv_from(&mut buf) {
                Ok((n, addr)) => {
                    read += 1;
                    records.extend(make(&ctx, &buf[..n], addr, received));
                }
                Err(_) => break,
            }
        }
        if records.is_empty() {
            continue;
        }
        let count = records.len() as u64;
        let bytes = records.iter().map(|r| r.raw.len()).sum();
        // A burst the writer cannot take at once waits a little, unread datagrams queueing
        // in the kernel's receive buffer meanwhile (`grow_recv_buffer`), before it is dropped.
        let Ok(permit) = tokio::time::timeout(UDP_WAIT, share.acquire(bytes)).await else {
            ctx.metrics.listener(l).drops.fetch_add(count, Relaxed);
            ctx.metrics.problem(
                l,
                "dropped datagrams",
                "this socket's share of the ledger writer queue is full",
            );
            continue;
        };
        let sub = crate::writer::Submission {
            listener: l,
            records,
            ack: None,
            share: Some(permit),
        };
        match ctx.tx.try_send(sub) {
            Ok(()) => {}
            Err(TrySendError::Full(sub)) => {
                match tokio::time::timeout(UDP_WAIT, ctx.tx.send(sub)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        ctx.metrics.listener(l).drops.fetch_add(count, Relaxed);
                        ctx.metrics.problem(
                            l,
                            "dropped datagrams",
                            "the ledger writer is behind (queue full)",
                        );
                    }
                }
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

/// How long a UDP listener's burst waits for room in the writer queue before it is dropped
/// (counted). UDP cannot push back on its sender; while it waits, the kernel's receive
/// buffer holds what arrives (a few MiB: ~90 ms of a busy exporter), so a writer's pause of
/// one fsync loses nothing, and a writer that stays behind still loses only what is counted.
const UDP_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
