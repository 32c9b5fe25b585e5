//! Syslog over UDP (RFC 5426): one datagram, one record.
//!
//! UDP cannot push back, so when the writer queue is full the datagrams read are dropped and
//! counted (`pugmark_drops_total{listener="syslog-udp"}`); what the kernel drops before we
//! read is reported from /proc (`pugmark_udp_kernel_drops`). Never silent, never blocking.
//! One trailing LF is removed (rsyslog ends RFC 5424 datagrams with one).

use std::sync::atomic::Ordering::Relaxed;

use model::{Format, Received};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;

use crate::metrics::Listener;
use crate::share::Share;
use crate::sources::{Ctx, Sender, record};
use crate::writer::Submission;

const L: Listener = Listener::SyslogUdp;
/// Datagrams gathered into one submission at most.
const GATHER: usize = 512;

pub async fn serve(sock: UdpSocket, ctx: Ctx) {
    let mut buf = vec![0u8; 65_536];
    // This socket's share of the writer queue: a flood of datagrams drops (counted) once
    // its share is queued, instead of filling the queue other senders need.
    let share = Share::new();
    loop {
        let (n, addr) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                ctx.metrics.problem(L, "receive error", &e.to_string());
                continue;
            }
        };
        let received = Received::now();
        let mut records = vec![datagram(&ctx, &buf[..n], addr, received)];
        // Take what else is already waiting without blocking: one submission per burst.
        while records.len() < GATHER {
            match sock.try_recv_from(&mut buf) {
                Ok((n, addr)) => records.push(datagram(&ctx, &buf[..n], addr, received)),
                Err(_) => break,
            }
        }
        let count = records.len() as u64;
        let Some(permit) = share.try_acquire(records.iter().map(|r| r.raw.len()).sum()) else {
            ctx.metrics.listener(L).drops.fetch_add(count, Relaxed);
            ctx.metrics.problem(
                L,
                "dropped datagrams",
                "this socket's share of the ledger writer queue is full",
            );
            continue;
        };
        match ctx.tx.try_send(Submission {
            listener: L,
            records,
            ack: None,
            share: Some(permit),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                ctx.metrics.listener(L).drops.fetch_add(count, Relaxed);
                ctx.metrics.problem(
                    L,
                    "dropped datagrams",
                    "the ledger writer is behind (queue full)",
                );
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
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
