//! Syslog over TCP (RFC 6587) and over TLS (RFC 5425): one task per connection, framing
//! decided per frame by `crate::framing` (octet counting or LF).
//!
//! Each read's frames go to the writer as one submission; waiting for room in the writer
//! queue stops this connection's reads, so a slow disk slows senders down (TCP window)
//! instead of growing memory. Each connection may have only its share of the writer queue
//! queued (`crate::share`), so one flooding sender cannot starve the others. Plain syslog has no acknowledgement, so nothing
//! is acknowledged here.
//!
//! A connection silent for the idle timeout with a half frame buffered is closed and the half
//! frame stored raw, marked incomplete (an idle connection with nothing buffered stays open,
//! as rsyslog keeps its forwarding connections). TLS: when a client CA is configured, rustls
//! refuses a sender without a certificate it signed during the handshake; the certificate
//! subject becomes the sender identity stored in each record's origin.
//!
//! The sender map decides each connection's observer once, at accept (plain TCP: by address)
//! or after the handshake (TLS: by certificate subject / SANs, then address); a refused sender's
//! connection is closed before anything is read from it.

use std::sync::atomic::Ordering::Relaxed;

use model::{Format, Received};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::TlsConfig;
use crate::framing::StreamFramer;
use crate::metrics::Listener;
use crate::senders::{CertId, Mapped, Proof};
use crate::share::Share;
use crate::sources::{Ctx, OpenConn, Sender, record};
use crate::writer::Submission;

/// Largest read buffer of a busy connection (they start at `limits::READ_BUF_START`).
const READ_BUF: usize = 256 * 1024;

pub async fn serve(listener: TcpListener, tls: Option<TlsConfig>, ctx: Ctx) {
    let l = if tls.is_some() {
        Listener::SyslogTls
    } else {
        Listener::SyslogTcp
    };
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server));
    // Owned here: when this task is aborted (shutdown), every connection task goes with it.
    let mut conns = JoinSet::new();
    let slots = ctx.slots();
    loop {
        let (stream, addr, slot) = tokio::select! {
            a = crate::limits::accept(&listener, &slots, l, &ctx.metrics) => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let _slot = slot;
            let _open = OpenConn::new(&ctx.metrics, l);
            match acceptor {
                None => {
                    let sender = Sender {
                        addr,
                        identity: None,
                    };
                    let Some(who) = ctx.door(&Proof {
                        listener: l,
                        ip: Some(addr.ip()),
                        cert: None,
                        token: None,
                    }) else {
                        return; // refused: the connection is closed unread
                    };
                    read_stream(stream, sender, who, l, &ctx).await;
                }
                Some(acc) => {
                    let handshake =
                        tokio::time::timeout(ctx.idle_timeout, acc.accept(stream)).await;
                    let tls = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            ctx.metrics
                                .listener(l)
                                .tls_handshake_failures
                                .fetch_add(1, Relaxed);
                            ctx.metrics
                                .problem(l, "TLS handshake failed", &format!("{addr}: {e}"));
                            return;
                        }
                        Err(_) => {
                            ctx.metrics
                                .listener(l)
                                .tls_handshake_failures
                                .fetch_add(1, Relaxed);
                            ctx.metrics
                                .problem(l, "TLS handshake timed out", &addr.to_string());
                            return;
                        }
                    };
                    // rustls verified the chain (mutual TLS); what it proves is read here.
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| CertId::from_der(c.as_ref()));
                    let Some(who) = ctx.door(&Proof {
                        listener: l,
                        ip: Some(addr.ip()),
                        cert: cert.as_ref(),
                        token: None,
                    }) else {
                        return; // refused: closed after the handshake, nothing read
                    };
                    let identity = cert.map(|c| c.subject);
                    let sender = Sender { addr, identity };
                    read_stream(tls, sender, who, l, &ctx).await;
                }
            }
        });
    }
}

/// The subject of a DER certificate in RFC 4514 form; the hex of its hash if unparsable
/// (rustls already verified it, so that would be a parser gap, not an attack).
pub fn subject(der: &[u8]) -> String {
    CertId::from_der(der).subject
}

async fn read_stream<S: AsyncRead + Unpin>(
    mut s: S,
    sender: Sender,
    who: Mapped,
    l: Listener,
    ctx: &Ctx,
) {
    let origin = sender.origin(l);
    let key = sender.key();
    let observer = who.observer;
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; crate::limits::READ_BUF_START];
    let share = Share::new();
    loop {
        let n = match tokio::time::timeout(ctx.idle_timeout, s.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                if framer.buffered() > 0 {
                    ctx.metrics.problem(
                        l,
                        "connection error inside a frame",
                        &format!("{}: {e}", sender.addr),
                    );
                }
                break;
            }
            Err(_) if framer.buffered() > 0 => {
                ctx.metrics.problem(
                    l,
                    "stalled inside a frame, closed",
                    &sender.addr.to_string(),
                );
                break;
            }
            Err(_) => {
                crate::limits::shrink_read_buf(&mut buf);
                continue;
            }
        };
        let received = Received::now();
        framer.push(&buf[..n]);
        crate::limits::grow_read_buf(&mut buf, n, READ_BUF);
        // Sized for this read's frames up front (a frame is rarely under 128 bytes): growing
        // from empty reallocated ~10 times per 256 KiB read, each time onto fresh pages the
        // kernel had to zero (a fifth of the reader's CPU in perf).
        let mut records = Vec::with_capacity(n / 128 + 1);
        while let Some(f) = framer.next_frame() {
            let format = match f.issue {
                // Stored as syslog all the same (the decoder keeps what it cannot parse), but
                // a frame with no PRI is garbage more often than a syslog message: counted.
                None if !f.data.starts_with(b"<") => {
                    ctx.metrics.listener(l).parse_errors.fetch_add(1, Relaxed);
                    ctx.metrics.problem(
                        l,
                        "frame without a syslog PRI",
                        &format!("from {}, stored as received", sender.addr),
                    );
                    Format::Syslog
                }
                None => Format::Syslog,
                Some(issue) => {
                    ctx.metrics.listener(l).parse_errors.fetch_add(1, Relaxed);
                    ctx.metrics.problem(
                        l,
                        issue.as_str(),
                        &format!("from {}, stored raw", sender.addr),
                    );
                    Format::Raw
                }
            };
            records.push(record(ctx, l, &origin, observer, received, format, f.data));
        }
        if !records.is_empty() {
            ctx.metrics
                .seen_as(l, &key, &who, records.len() as u64, received);
            // This connection's share of the writer queue first: a flood waits for itself.
            let permit = share
                .acquire(records.iter().map(|r| r.raw.len()).sum())
                .await;
            if ctx
                .tx
                .send(Submission {
                    listener: l,
                    records,
                    ack: None,
                    share: Some(permit),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
    if let Some(f) = framer.finish() {
        let received = Received::now();
        ctx.metrics.listener(l).parse_errors.fetch_add(1, Relaxed);
        let rec = record(ctx, l, &origin, observer, received, Format::Raw, f.data);
        let _ = ctx
            .tx
            .send(Submission {
                listener: l,
                records: vec![rec],
                ack: None,
                share: None,
            })
            .await;
    }
}
