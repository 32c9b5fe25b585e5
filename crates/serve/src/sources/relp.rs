//! RELP server (what rsyslog's omrelp speaks): `open` / `syslog` / `close`, answered with
//! `rsp`; a `syslog` frame is answered `200 OK` only after the ledger batch holding it is
//! durable.
//!
//! Per connection a reader parses frames (`crate::relp_frame`) and submits each read's
//! `syslog` frames to the writer as one submission with an ack; the frames' transaction
//! numbers and the ack's receiver go, in arrival order, to a responder task that awaits each
//! ack and writes the `rsp`s. librelp pipelines up to its window (128 frames by default)
//! before waiting; the responder queue (`IN_FLIGHT`) bounds how far we read ahead, so a
//! slow disk stops our reads and thus the sender.
//!
//! A frame above the size cap is answered `rsp 500` and skipped; the session goes on. A
//! malformed frame ends the session (RELP cannot resynchronise): responses owed are sent,
//! the bytes not understood are stored raw and counted, then `serverclose`. On our crash the
//! sender resends what it did not see acknowledged; the writer recognises resends of records
//! already in the ledger and acknowledges them without storing them twice.

use std::sync::atomic::Ordering::Relaxed;

use model::{Format, Received};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::metrics::Listener;
use crate::relp_frame::{MAX_DATA, RelpError, RelpParser, encode};
use crate::senders::{Mapped, Proof};
use crate::share::Share;
use crate::sources::{Ctx, OpenConn, Sender, record};
use crate::writer::{Durable, NotDurable, Submission};

const L: Listener = Listener::Relp;
/// Responses owed (acks outstanding) per connection before we stop reading.
const IN_FLIGHT: usize = 64;
/// Largest read buffer of a busy connection (they start at `limits::READ_BUF_START`).
const READ_BUF: usize = 256 * 1024;

enum Owed {
    /// Send now (in order): the rsp to `open`, errors.
    Now(Vec<u8>),
    /// `200 OK` for each txnr once durable.
    Durable(Vec<u64>, oneshot::Receiver<Result<Durable, NotDurable>>),
    /// The rsp to `close`, then `serverclose`, then end.
    Close(u64),
    /// `serverclose` (after a protocol error), then end.
    Abort,
}

pub async fn serve(listener: TcpListener, ctx: Ctx) {
    let mut conns = JoinSet::new();
    let slots = ctx.slots();
    loop {
        let (stream, addr, slot) = tokio::select! {
            a = crate::limits::accept(&listener, &slots, L, &ctx.metrics) => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        conns.spawn(async move {
            let _slot = slot;
            let _open = OpenConn::new(&ctx.metrics, L);
            let Some(who) = ctx.door(&Proof {
                listener: L,
                ip: Some(addr.ip()),
                cert: None,
                token: None,
            }) else {
                // Refused: RELP's way to end a session from the server side, then close.
                let mut stream = stream;
                let mut out = Vec::new();
                encode(&mut out, 0, "serverclose", b"");
                let _ = stream.write_all(&out).await;
                return;
            };
            let (rd, wr) = stream.into_split();
            let (owed_tx, owed_rx) = mpsc::channel(IN_FLIGHT);
            let responder = tokio::spawn(respond(wr, owed_rx));
            let sender = Sender {
                addr,
                identity: None,
            };
            read(rd, sender, who, &ctx, owed_tx).await;
            let _ = responder.await;
        });
    }
}

async fn read(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    sender: Sender,
    who: Mapped,
    ctx: &Ctx,
    owed: mpsc::Sender<Owed>,
) {
    let origin = sender.origin(L);
    let key = sender.key();
    let observer = who.observer;
    let mut parser = RelpParser::new();
    let mut buf = vec![0u8; crate::limits::READ_BUF_START];
    let share = Share::new();
    loop {
        let n = match tokio::time::timeout(ctx.idle_timeout, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) if parser.buffered() > 0 => {
                ctx.metrics.problem(
                    L,
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
        parser.push(&buf[..n]);
        crate::limits::grow_read_buf(&mut buf, n, READ_BUF);
        // Sized up front, as in syslog_tcp.rs (growing from empty reallocates onto fresh pages).
        let mut records = Vec::with_capacity(n / 128 + 1);
        let mut txnrs = Vec::new();
        let mut end: Option<Owed> = None;
        let mut now = Vec::new();
        loop {
            match parser.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => match f.command.as_str() {
                    "syslog" => {
                        let mut data = f.data;
                        if data.last() == Some(&b'\n') {
                            data.pop();
                        }
                        records.push(record(
                            ctx,
                            L,
                            &origin,
                            observer,
                            received,
                            Format::Syslog,
                            data,
                        ));
                        txnrs.push(f.txnr);
                    }
                    "open" => {
                        let offers =
                            b"200 OK\nrelp_version=0\nrelp_software=pugmark\ncommands=syslog";
                        encode(&mut now, f.txnr, "rsp", offers);
                    }
                    "close" => {
                        end = Some(Owed::Close(f.txnr));
                        break;
                    }
                    other => {
                        ctx.metrics.listener(L).parse_errors.fetch_add(1, Relaxed);
                        ctx.metrics.problem(
                            L,
                            "unknown RELP command",
                            &format!("{other:?} from {}", sender.addr),
                        );
                        encode(&mut now, f.txnr, "rsp", b"500 unknown command");
                    }
                },
                // A frame above the cap: RELP's error for it, the session goes on (the
                // parser skips its data).
                Err(RelpError::TooLarge { txnr, len }) => {
                    ctx.metrics.listener(L).rejected.fetch_add(1, Relaxed);
                    ctx.metrics.problem(
                        L,
                        "RELP frame above the cap, refused",
                        &format!("{len} bytes from {}", sender.addr),
                    );
                    encode(
                        &mut now,
                        txnr,
                        "rsp",
                        format!("500 frame of {len} bytes above the cap of {MAX_DATA}").as_bytes(),
                    );
                }
                Err(e) => {
                    let rest = parser.take_rest();
                    ctx.metrics.listener(L).parse_errors.fetch_add(1, Relaxed);
                    ctx.metrics.problem(
                        L,
                        "malformed RELP frame, session closed",
                        &format!("{e} from {}; bytes stored raw", sender.addr),
                    );
                    records.push(record(
                        ctx,
                        L,
                        &origin,
                        observer,
                        received,
                        Format::Raw,
                        rest,
                    ));
                    end = Some(Owed::Abort);
                    break;
                }
            }
        }
        // `open` answers precede the acks of frames that followed it in the same read.
        if !now.is_empty() && owed.send(Owed::Now(now)).await.is_err() {
            return;
        }
        if !records.is_empty() {
            ctx.metrics
                .seen_as(L, &key, &who, records.len() as u64, received);
            let (ack, wait) = oneshot::channel();
            let permit = share
                .acquire(records.iter().map(|r| r.raw.len()).sum())
                .await;
            if ctx
                .tx
                .send(Submission {
                    listener: L,
                    records,
                    ack: Some(ack),
                    share: Some(permit),
                })
                .await
                .is_err()
            {
                return;
            }
            if !txnrs.is_empty() && owed.send(Owed::Durable(txnrs, wait)).await.is_err() {
                return;
            }
        }
        if let Some(e) = end {
            let _ = owed.send(e).await;
            return;
        }
    }
    if parser.buffered() > 0 {
        let rest = parser.take_rest();
        ctx.metrics.listener(L).parse_errors.fetch_add(1, Relaxed);
        let rec = record(
            ctx,
            L,
            &origin,
            observer,
            Received::now(),
            Format::Raw,
            rest,
        );
        let _ = ctx
            .tx
            .send(Submission {
                listener: L,
                records: vec![rec],
                ack: None,
                share: None,
            })
            .await;
    }
}

async fn respond(mut wr: OwnedWriteHalf, mut owed: mpsc::Receiver<Owed>) {
    // Small at first: idle sessions hold it (it grows with the acks owed).
    let mut out = Vec::with_capacity(1024);
    while let Some(first) = owed.recv().await {
        let mut next = Some(first);
        // Write everything owed that is ready in one syscall.
        while let Some(o) = next.take() {
            match o {
                Owed::Now(b) => out.extend_from_slice(&b),
                Owed::Durable(txnrs, mut wait) => {
                    let result = match wait.try_recv() {
                        Ok(r) => Ok(r),
                        Err(oneshot::error::TryRecvError::Closed) => return,
                        Err(oneshot::error::TryRecvError::Empty) => {
                            // Not durable yet: send what is owed before waiting.
                            if !out.is_empty() {
                                if wr.write_all(&out).await.is_err() {
                                    return;
                                }
                                out.clear();
                            }
                            wait.await
                        }
                    }
                    .ok();
                    match result {
                        None => return,
                        Some(Ok(_)) => {
                            for t in txnrs {
                                encode(&mut out, t, "rsp", b"200 OK");
                            }
                        }
                        // Refused for what the frames hold: RELP's error for them, and
                        // the session goes on (a per-record problem stays per-record).
                        Some(Err(NotDurable::Refused(msg))) => {
                            for t in txnrs {
                                encode(
                                    &mut out,
                                    t,
                                    "rsp",
                                    format!("500 refused: {msg}").as_bytes(),
                                );
                            }
                        }
                        // Not durable: say so (librelp will resend), then end the session.
                        Some(Err(msg)) => {
                            for t in txnrs {
                                encode(&mut out, t, "rsp", format!("500 {msg}").as_bytes());
                            }
                            encode(&mut out, 0, "serverclose", b"");
                            let _ = wr.write_all(&out).await;
                            return;
                        }
                    }
                }
                Owed::Close(t) => {
                    encode(&mut out, t, "rsp", b"");
                    encode(&mut out, 0, "serverclose", b"");
                    let _ = wr.write_all(&out).await;
                    let _ = wr.shutdown().await;
                    return;
                }
                Owed::Abort => {
                    encode(&mut out, 0, "serverclose", b"");
                    let _ = wr.write_all(&out).await;
                    let _ = wr.shutdown().await;
                    return;
                }
            }
            next = owed.try_recv().ok();
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}
