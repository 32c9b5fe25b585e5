//! Syslog over UDP (RFC 5426): one datagram, one record.
//!
//! UDP cannot push back, so when the writer queue stays full (a quarter second) the
//! datagrams read are dropped and counted (`pugmark_drops_total{listener="syslog-udp"}`); what the kernel drops before we
//! read is reported from /proc (`pugmark_udp_kernel_drops`). Never silent, never blocking.
//! One trailing LF is removed (rsyslog ends RFC 5424 datagrams with one). The source address
//! is all a datagram shows the sender map (and it can be spoofed): a refused sender's
//! datagrams are dropped and counted (`pugmark_refused_total`).

use model::{Format, Received};
use tokio::net::UdpSocket;

use crate::metrics::Listener;
use crate::senders::Proof;
use crate::sources::{Ctx, Sender, record};

const L: Listener = Listener::SyslogUdp;
/// Datagrams gathered into one submission at most.
const GATHER: usize = 512;

pub async fn serve(sock: UdpSocket, ctx: Ctx) {
    super::receive_datagrams(sock, ctx, L, GATHER, datagram).await;
}

fn datagram(
    ctx: &Ctx,
    mut raw: &[u8],
    addr: std::net::SocketAddr,
    received: Received,
) -> Option<model::envelope::RecordEnvelope> {
    let sender = Sender {
        addr,
        identity: None,
    };
    let who = ctx.door(&Proof {
        listener: L,
        ip: Some(addr.ip()),
        cert: None,
        token: None,
    })?;
    if let [rest @ .., b'\n'] = raw {
        raw = rest;
    }
    ctx.metrics.seen_as(L, &sender.key(), &who, 1, received);
    Some(record(
        ctx,
        L,
        &sender.origin(L),
        who.observer,
        received,
        Format::Syslog,
        raw.to_vec(),
    ))
}
