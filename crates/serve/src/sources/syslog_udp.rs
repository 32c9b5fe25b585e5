//! Syslog over UDP (RFC 5426): one datagram, one record.
//!
//! UDP cannot push back, so when the writer queue is full the datagrams read are dropped and
//! counted (`pugmark_drops_total{listener="syslog-udp"}`); what the kernel drops before we
//! read is reported from /proc (`pugmark_udp_kernel_drops`). Never silent, never blocking.
//! One trailing LF is removed (rsyslog ends RFC 5424 datagrams with one).

use model::{Format, Received};
use tokio::net::UdpSocket;

use crate::metrics::Listener;
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
) -> model::envelope::RecordEnvelope {
    let sender = Sender {
        addr,
        identity: None,
    };
    if let [rest @ .., b'\n'] = raw {
        raw = rest;
    }
    ctx.metrics.seen(L, &sender.key(), 1, received);
    record(
        ctx,
        L,
        &sender.origin(L),
        received,
        Format::Syslog,
        raw.to_vec(),
    )
}
