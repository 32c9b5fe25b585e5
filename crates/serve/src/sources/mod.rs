//! The listeners, one file per protocol. Each turns what its peers send into
//! [`RecordEnvelope`]s (raw bytes plus sender address, listener name and received time) and
//! submits them to the writer (`crate::writer`); those that acknowledge (RELP, HTTP, AMQP) do
//! so only with the writer's [`crate::writer::Durable`] in hand.

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
use model::{DecodeHints, Format, Origin, Received};

use crate::metrics::{Listener, Metrics};
use crate::writer::WriterTx;

/// What every listener task holds.
#[derive(Clone)]
pub struct Ctx {
    pub tx: WriterTx,
    pub metrics: Arc<Metrics>,
    pub idle_timeout: std::time::Duration,
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

/// One record as received, counted on its listener.
pub fn record(
    ctx: &Ctx,
    l: Listener,
    origin: &Origin,
    received: Received,
    format: Format,
    raw: Vec<u8>,
) -> RecordEnvelope {
    let m = ctx.metrics.listener(l);
    m.messages.fetch_add(1, Relaxed);
    m.bytes.fetch_add(raw.len() as u64, Relaxed);
    RecordEnvelope {
        received,
        observer: format.default_observer(),
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
