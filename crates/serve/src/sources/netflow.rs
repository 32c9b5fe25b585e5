//! NetFlow v5 / v9 and IPFIX over UDP (default 127.0.0.1:2055 and :4739): one datagram, one
//! `netflow-datagram` record, bytes as received, the exporter's address in its origin.
//!
//! This listener does not decode: flows can only be read with templates from earlier
//! datagrams, in ledger order. The views derive them (`pipeline::derive` in the indexer, its
//! template state saved with the flow store), and the NetFlow metrics come from that decoder
//! (they trail the ledger as the views do). The exporter's address (IP; source id /
//! observation domain from the header) scopes its templates.
//!
//! Like syslog UDP it cannot push back: a writer queue full for longer than `UDP_WAIT`
//! drops what was read, counted in
//! `pugmark_drops_total{listener="netflow"}`; kernel drops come from /proc. A datagram that
//! does not look like NetFlow / IPFIX is still stored (evidence) and counted as a parse
//! error; decoder problems are counted by kind by the store.
//!
//! The observer comes from the sender map: `network` for loopback exporters by default (a
//! built-in entry), else what a CIDR entry says; UDP source addresses can be spoofed, so map
//! only exporters on a network that filters spoofed sources.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use model::envelope::RecordEnvelope;
use model::{Format, Received};
use tokio::net::UdpSocket;

use crate::metrics::Listener;
use crate::senders::Proof;
use crate::sources::{Ctx, Sender, record};

const L: Listener = Listener::Netflow;
/// Datagrams gathered into one submission at most (each holds ~30 flows).
const GATHER: usize = 256;

pub async fn serve(sock: UdpSocket, ctx: Ctx) {
    super::receive_datagrams(sock, ctx, L, GATHER, datagram).await;
}

fn datagram(ctx: &Ctx, raw: &[u8], addr: SocketAddr, received: Received) -> Option<RecordEnvelope> {
    let sender = Sender {
        addr,
        identity: None,
    };
    // The observer of the datagram is the observer of every flow derived from it.
    let who = ctx.door(&Proof {
        listener: L,
        ip: Some(addr.ip()),
        cert: None,
        token: None,
    })?;
    if !looks_like_export(raw) {
        ctx.metrics.listener(L).parse_errors.fetch_add(1, Relaxed);
        ctx.metrics.problem(
            L,
            "not a NetFlow v5/v9 or IPFIX datagram",
            &format!("from {addr}, stored as received"),
        );
    }
    ctx.metrics.seen_as(L, &sender.key(), &who, 1, received);
    Some(record(
        ctx,
        L,
        &sender.origin(L),
        who.observer,
        received,
        Format::NetflowDatagram,
        raw.to_vec(),
    ))
}

/// The version field says 5, 9 or 10 (the decoder judges the rest and counts what is wrong).
fn looks_like_export(b: &[u8]) -> bool {
    matches!(b, [0, 5 | 9 | 10, ..])
}
