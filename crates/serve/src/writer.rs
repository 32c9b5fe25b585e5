//! The one writer: group commit from every listener into the ledger, then the acks.
//!
//! Listeners send [`Submission`]s (records, and optionally a oneshot to complete) through a
//! [`WriterTx`]: a channel bounded by count ([`QUEUE`]) and by bytes ([`QUEUE_BYTES`]; a
//! semaphore of byte permits, released only once the writer has appended the records); when
//! it is full their `send().await` waits, which stops them reading their sockets — TCP, RELP
//! and AMQP push back instead of buffering (UDP counts a drop). The
//! writer thread takes everything waiting (up to [`MAX_BATCH_RECORDS`] / [`MAX_BATCH_BYTES`]),
//! appends it as ONE durable ledger batch (one fsync), and only then completes each
//! submission's ack with a [`Durable`] — a value only this module can make, so a listener
//! cannot acknowledge anything the ledger has not made durable.
//!
//! Resends: RELP and AMQP senders resend what they did not see acknowledged (after a crash of
//! ours, or a lost connection), so submissions from those listeners are checked against the
//! BLAKE3 of records already written (the recent ledger tail is loaded at start). A resend is
//! acknowledged — it is durable already — and counted as a duplicate, not stored twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use model::Envelope;
use model::envelope::RecordEnvelope;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

use crate::metrics::{Listener, Metrics};

/// Records per group-commit batch at most.
pub const MAX_BATCH_RECORDS: usize = 16_384;
/// Payload bytes per batch at most.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Submissions waiting for the writer at most (each is one read's worth of frames).
pub const QUEUE: usize = 256;
/// Bytes of submissions waiting for the writer (or inside its current batch) at most, as
/// estimated by `cost`. Bounded by bytes, not only by count: 256 reads of 256 KiB each
/// were ~130 MB of records in memory at full load (BENCHMARKS.md, issue 4's RSS target).
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Memory a queued record holds beyond its raw bytes (envelope, origin strings, slot).
const RECORD_OVERHEAD: usize = 192;
/// Record hashes remembered for resend detection.
pub const DEDUP_WINDOW: usize = 1 << 18;

/// Where records go: the binary implements this over its `Pipeline`.
pub trait Store: Send + 'static {
    /// Append the records as one durable batch; return the position of the last one.
    fn append(&mut self, records: Vec<Envelope>) -> anyhow::Result<u64>;
    /// The last `n` records (at most) received from a network listener, oldest first, to
    /// recognise resends after a restart.
    fn recent_peer_records(&mut self, n: usize) -> anyhow::Result<Vec<RecordEnvelope>>;
    /// Commit views and close the ledger with a signed checkpoint.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
    /// The live counters, given once before serving, for what the store itself derives
    /// (NetFlow: flows decoded from datagrams, decoder problems, derived records stored).
    fn attach_metrics(&mut self, _metrics: Arc<Metrics>) {}
}

/// Proof that a submission's records are durable in the ledger. Only the writer makes one.
#[derive(Debug, Clone, Copy)]
pub struct Durable {
    last_seq: u64,
    stored: usize,
    duplicates: usize,
}

impl Durable {
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
    pub fn stored(&self) -> usize {
        self.stored
    }
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }
}

pub type Ack = oneshot::Sender<Result<Durable, String>>;

/// Records from one listener, one read's worth.
pub struct Submission {
    pub listener: Listener,
    pub records: Vec<RecordEnvelope>,
    pub ack: Option<Ack>,
    /// The sender's share of this queue (`crate::share`), returned when the writer takes
    /// the submission into a batch (dropped with it).
    pub share: Option<crate::share::Permit>,
}

impl Submission {
    /// Whether this listener's senders resend unacknowledged records.
    fn resends(&self) -> bool {
        matches!(self.listener, Listener::Relp | Listener::Amqp)
    }
}

/// What the writer receives: a submission and the byte permits it holds.
pub struct Queued {
    sub: Submission,
    permit: OwnedSemaphorePermit,
}

/// The listeners' end of the writer queue (cheap to clone).
#[derive(Clone)]
pub struct WriterTx {
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
}

/// The writer queue: bounded by [`QUEUE`] submissions and [`QUEUE_BYTES`] bytes.
pub fn channel() -> (WriterTx, mpsc::Receiver<Queued>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    (WriterTx { tx, budget }, rx)
}

/// Bytes a submission counts against [`QUEUE_BYTES`] (capped, so a submission larger than
/// the whole budget waits for an empty queue instead of forever).
fn cost(s: &Submission) -> u32 {
    let b: usize = s
        .records
        .iter()
        .map(|r| r.raw.len() + RECORD_OVERHEAD)
        .sum();
    u32::try_from(b.clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX)
}

impl WriterTx {
    /// Waits for room (by count and by bytes), then queues. Fails only when the writer is gone.
    pub async fn send(&self, sub: Submission) -> Result<(), SendError<Submission>> {
        let permit = match self.budget.clone().acquire_many_owned(cost(&sub)).await {
            Ok(p) => p,
            Err(_) => return Err(SendError(sub)),
        };
        self.tx
            .send(Queued { sub, permit })
            .await
            .map_err(|e| SendError(e.0.sub))
    }

    /// Queues if there is room now (UDP: a full queue is a counted drop).
    pub fn try_send(&self, sub: Submission) -> Result<(), TrySendError<Submission>> {
        let permit = match self.budget.clone().try_acquire_many_owned(cost(&sub)) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(sub)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(sub)),
        };
        self.tx
            .try_send(Queued { sub, permit })
            .map_err(|e| match e {
                TrySendError::Full(q) => TrySendError::Full(q.sub),
                TrySendError::Closed(q) => TrySendError::Closed(q.sub),
            })
    }
}

struct Seen {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

impl Seen {
    fn key(r: &RecordEnvelope) -> [u8; 16] {
        let mut k = [0u8; 16];
        k.copy_from_slice(&blake3::hash(&r.raw).as_bytes()[..16]);
        k
    }
    fn insert(&mut self, k: [u8; 16]) -> bool {
        if !self.set.insert(k) {
            return false;
        }
        self.order.push_back(k);
        if self.order.len() > DEDUP_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Run the writer until every sender is gone, then finish the store. Blocking: call on a
/// thread of its own. Returns the store's error if an append or the finish failed; after a
/// failed append nothing more is accepted (the ledger refuses appends after a failed fsync).
pub fn run(
    mut store: Box<dyn Store>,
    mut rx: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut seen = Seen {
        set: HashSet::new(),
        order: VecDeque::new(),
    };
    for r in store.recent_peer_records(DEDUP_WINDOW)? {
        let resend_listener = matches!(&r.origin,
            model::Origin::Peer { listener, .. } | model::Origin::AuthenticatedPeer { listener, .. }
                if listener == Listener::Relp.name() || listener == Listener::Amqp.name());
        if resend_listener {
            seen.insert(Seen::key(&r));
        }
    }
    let mut failure: Option<anyhow::Error> = None;
    while let Some(first) = rx.blocking_recv() {
        // The byte permits are held until the batch is appended: what the queue bound
        // counts is memory, and the records stay in memory until then.
        let mut permits = vec![first.permit];
        let mut subs = vec![first.sub];
        let mut records = subs[0].records.len();
        let mut bytes: usize = subs[0].records.iter().map(|r| r.raw.len()).sum();
        while records < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    records += q.sub.records.len();
                    bytes += q.sub.records.iter().map(|r| r.raw.len()).sum::<usize>();
                    subs.push(q.sub);
                    permits.push(q.permit);
                }
                Err(_) => break,
            }
        }
        if let Some(e) = &failure {
            let msg = format!("ledger unavailable: {e:#}");
            for s in subs {
                if let Some(a) = s.ack {
                    let _ = a.send(Err(msg.clone()));
                }
            }
            continue;
        }
        let mut batch = Vec::with_capacity(records);
        let mut counts = Vec::with_capacity(subs.len());
        let mut acks = Vec::with_capacity(subs.len());
        for s in subs {
            let resends = s.resends();
            let (mut stored, mut dups) = (0, 0);
            for r in s.records {
                if resends && !seen.insert(Seen::key(&r)) {
                    dups += 1;
                    continue;
                }
                stored += 1;
                batch.push(Envelope::Record(r));
            }
            if dups > 0 {
                metrics
                    .listener(s.listener)
                    .duplicates
                    .fetch_add(dups as u64, Relaxed);
            }
            counts.push((stored, dups));
            acks.push(s.ack);
        }
        let result = if batch.is_empty() {
            Ok(metrics.ledger_last_seq.load(Relaxed))
        } else {
            let n = batch.len() as u64;
            store.append(batch).inspect(|&last| {
                metrics.ledger_batches.fetch_add(1, Relaxed);
                metrics.ledger_records.fetch_add(n, Relaxed);
                metrics.ledger_last_seq.store(last, Relaxed);
            })
        };
        drop(permits);
        match result {
            Ok(last_seq) => {
                for (ack, (stored, duplicates)) in acks.into_iter().zip(counts) {
                    if let Some(a) = ack {
                        let _ = a.send(Ok(Durable {
                            last_seq,
                            stored,
                            duplicates,
                        }));
                    }
                }
            }
            Err(e) => {
                eprintln!(
                    "pugmark serve: ledger append failed, nothing more is acknowledged: {e:#}"
                );
                let msg = format!("ledger append failed: {e:#}");
                for a in acks.into_iter().flatten() {
                    let _ = a.send(Err(msg.clone()));
                }
                failure = Some(e);
            }
        }
    }
    let finished = store.finish();
    match failure {
        Some(e) => Err(e),
        None => finished,
    }
}

/// Seed the writer's last-seq metric (the ledger position before serve starts).
pub fn note_start(metrics: &Metrics, last_seq: u64) {
    metrics.ledger_last_seq.store(last_seq, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{DecodeHints, Format, Observer, Origin, Received};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Mem {
        records: Arc<Mutex<Vec<RecordEnvelope>>>,
        batches: Arc<Mutex<usize>>,
        fail: bool,
    }

    impl Store for Mem {
        fn append(&mut self, records: Vec<Envelope>) -> anyhow::Result<u64> {
            if self.fail {
                anyhow::bail!("disk full");
            }
            let mut all = self.records.lock().unwrap();
            for e in records {
                if let Envelope::Record(r) = e {
                    all.push(r);
                }
            }
            *self.batches.lock().unwrap() += 1;
            Ok(all.len() as u64)
        }
        fn recent_peer_records(&mut self, _n: usize) -> anyhow::Result<Vec<RecordEnvelope>> {
            Ok(self.records.lock().unwrap().clone())
        }
        fn finish(self: Box<Self>) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn rec(listener: Listener, raw: &str) -> RecordEnvelope {
        RecordEnvelope {
            received: Received::from_stored(1),
            observer: Observer::Vm,
            format: Format::Syslog,
            hints: DecodeHints::default(),
            origin: Origin::Peer {
                addr: "127.0.0.1:1".into(),
                listener: listener.name().into(),
            },
            raw: raw.as_bytes().to_vec(),
        }
    }

    /// Runs the writer over `subs` (all queued before it starts, so they form one group).
    fn run_with(store: Mem, subs: Vec<Submission>) -> anyhow::Result<()> {
        let (tx, rx) = channel();
        for s in subs {
            tx.try_send(s).ok().unwrap();
        }
        drop(tx);
        run(Box::new(store), rx, Arc::new(Metrics::new()))
    }

    #[test]
    fn group_commit_then_acks_and_relp_resends_are_not_stored_twice() {
        let records = Arc::new(Mutex::new(vec![rec(Listener::Relp, "<13>1 - a")]));
        let batches = Arc::new(Mutex::new(0));
        let store = Mem {
            records: records.clone(),
            batches: batches.clone(),
            fail: false,
        };
        let (a1, mut w1) = oneshot::channel();
        let (a2, mut w2) = oneshot::channel();
        let subs = vec![
            // A resend of what the ledger already holds (after a crash), and a new record.
            Submission {
                listener: Listener::Relp,
                records: vec![
                    rec(Listener::Relp, "<13>1 - a"),
                    rec(Listener::Relp, "<13>1 - b"),
                ],
                ack: Some(a1),
                share: None,
            },
            // Plain TCP has no resends: identical lines are distinct events.
            Submission {
                listener: Listener::SyslogTcp,
                records: vec![
                    rec(Listener::SyslogTcp, "<13>1 - a"),
                    rec(Listener::SyslogTcp, "<13>1 - a"),
                ],
                ack: Some(a2),
                share: None,
            },
        ];
        run_with(store, subs).unwrap();
        let d1 = w1.try_recv().unwrap().unwrap();
        assert_eq!((d1.stored(), d1.duplicates()), (1, 1));
        let d2 = w2.try_recv().unwrap().unwrap();
        assert_eq!((d2.stored(), d2.duplicates()), (2, 0));
        assert_eq!(*batches.lock().unwrap(), 1, "one group, one durable batch");
        assert_eq!(records.lock().unwrap().len(), 4);
    }

    #[test]
    fn the_queue_is_bounded_by_bytes_until_the_writer_takes_them() {
        let (tx, mut rx) = channel();
        let big = || Submission {
            listener: Listener::SyslogTcp,
            records: vec![rec(Listener::SyslogTcp, &"x".repeat(12 << 20))],
            ack: None,
            share: None,
        };
        // Two 12 MiB submissions fit the 32 MiB budget, a third does not, though the
        // queue has slots for 256.
        assert!(tx.try_send(big()).is_ok());
        assert!(tx.try_send(big()).is_ok());
        assert!(matches!(tx.try_send(big()), Err(TrySendError::Full(_))));
        // The writer holds the permits until it has appended the records; dropping them
        // (after the append) makes room again.
        let taken = rx.try_recv().ok().unwrap();
        assert!(matches!(tx.try_send(big()), Err(TrySendError::Full(_))));
        drop(taken);
        assert!(tx.try_send(big()).is_ok());
    }

    #[test]
    fn a_failed_append_acknowledges_nothing() {
        let store = Mem {
            fail: true,
            ..Mem::default()
        };
        let (a, mut w) = oneshot::channel();
        let r = run_with(
            store,
            vec![Submission {
                listener: Listener::Http,
                records: vec![rec(Listener::Http, "{}")],
                ack: Some(a),
                share: None,
            }],
        );
        assert!(r.is_err());
        assert!(w.try_recv().unwrap().is_err());
    }
}
