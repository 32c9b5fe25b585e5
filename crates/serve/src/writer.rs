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
use std::time::Duration;

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

/// An append the store could not make durable.
#[derive(Debug)]
pub struct NotStored {
    pub error: anyhow::Error,
    /// The batch, handed back to be appended again (empty when the store cannot).
    pub records: Vec<Envelope>,
    /// The records themselves were refused (e.g. too large for the ledger): appending them
    /// again cannot succeed. Otherwise the error is a resource fault, retried.
    pub refused: bool,
}

/// Where records go: the binary implements this over its `Pipeline`.
pub trait Store: Send + 'static {
    /// Append the records as one durable batch; return the position of the last one.
    fn append(&mut self, records: Vec<Envelope>) -> Result<u64, NotStored>;
    /// Make the store usable again after a failed append (the ledger cut back to its last
    /// durable batch and reopened), so the batch can be appended again.
    fn recover(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The last `n` records (at most) received from a network listener, oldest first, to
    /// recognise resends after a restart.
    fn recent_peer_records(&mut self, n: usize) -> anyhow::Result<Vec<RecordEnvelope>>;
    /// Commit views and close the ledger with a signed checkpoint.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
    /// The live counters, given once before serving, for what the store itself derives
    /// (NetFlow: flows decoded from datagrams, decoder problems, derived records stored).
    fn attach_metrics(&mut self, _metrics: Arc<Metrics>) {}

    /// Called when no submission came for [`IDLE_TICK`]: the store may sign a checkpoint for
    /// records a time-based checkpoint (taken only at appends) left uncovered.
    fn idle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
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

/// Why a submission was not made durable.
#[derive(Debug, Clone)]
pub enum NotDurable {
    /// Refused for what it contains (too large for the store): resending cannot help.
    /// HTTP answers 413, RELP `rsp 500`.
    Refused(String),
    /// Not stored (serve stopping during a storage fault); the sender may resend.
    Unavailable(String),
}

impl std::fmt::Display for NotDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotDurable::Refused(m) => write!(f, "refused: {m}"),
            NotDurable::Unavailable(m) => f.write_str(m),
        }
    }
}

pub type Ack = oneshot::Sender<Result<Durable, NotDurable>>;

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
/// How long the writer waits for a submission before calling [`Store::idle`].
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// A key whose record was not stored after all: a resend must be stored.
    fn forget(&mut self, k: &[u8; 16]) {
        // Left in `order`; it ages out from there harmlessly.
        self.set.remove(k);
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
/// thread of its own. Returns the store's error if the finish failed.
///
/// Never stops on an append error (issue 10, "never stop, never lose"): an error about the
/// records themselves (`NotStored::refused`) fails only the submissions that hold them
/// (the batch is split by submission to find them) and the writer goes on; any other error
/// is a resource fault (EMFILE, ENOSPC, EIO, a failed fsync…): the store is recovered and
/// the same batch appended again, with backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]),
/// until it is durable. Meanwhile the queue fills and the listeners push back. Only when
/// serve stops during a fault are the held submissions answered "not durable" (nothing of
/// them was acknowledged; senders that resend do so).
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
    // A runtime of this thread's own for the receive with a timeout (the listeners run on
    // the main runtime; this thread only waits on the queue).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    loop {
        let first = match rt.block_on(async { tokio::time::timeout(IDLE_TICK, rx.recv()).await }) {
            Ok(Some(q)) => q,
            Ok(None) => break,
            Err(_) => {
                if let Err(e) = store.idle() {
                    // The ledger is failed now; the next append recovers it.
                    metrics
                        .store
                        .fault(crate::health::fault_kind(&e), &format!("{e:#}"));
                }
                continue;
            }
        };
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
        let mut batch = Vec::with_capacity(records);
        let mut parts = Vec::with_capacity(subs.len());
        for s in subs {
            let resends = s.resends();
            let (mut stored, mut dups) = (0, 0);
            let mut keys = Vec::new();
            for r in s.records {
                if resends {
                    let k = Seen::key(&r);
                    if !seen.insert(k) {
                        dups += 1;
                        continue;
                    }
                    keys.push(k);
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
            parts.push(Part {
                listener: s.listener,
                stored,
                duplicates: dups,
                keys,
                ack: s.ack,
            });
        }
        commit(store.as_mut(), batch, parts, &metrics, &mut seen);
        drop(permits);
    }
    store.finish()
}

/// First wait before retrying a failed append.
pub const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between retries: storage resumes within this of the fault's end (the
/// target is 1 s), and a failed attempt costs one failed write.
pub const RETRY_MAX: Duration = Duration::from_millis(500);

/// One submission's share of a batch.
struct Part {
    listener: Listener,
    /// Records of the batch that are this submission's (in order), resends excluded.
    stored: usize,
    duplicates: usize,
    /// Resend keys of its stored records: forgotten again if they are not stored.
    keys: Vec<[u8; 16]>,
    ack: Option<Ack>,
}

impl Part {
    fn answer(self, r: Result<Durable, NotDurable>) {
        if let Some(a) = self.ack {
            let _ = a.send(r);
        }
    }
}

/// Append `batch` (the records of `parts`, in order) and answer every part.
fn commit(
    store: &mut dyn Store,
    batch: Vec<Envelope>,
    parts: Vec<Part>,
    metrics: &Metrics,
    seen: &mut Seen,
) {
    let result = if batch.is_empty() {
        Ok(metrics.ledger_last_seq.load(Relaxed))
    } else {
        append_retrying(store, batch, metrics)
    };
    match result {
        Ok(last_seq) => {
            for p in parts {
                let d = Durable {
                    last_seq,
                    stored: p.stored,
                    duplicates: p.duplicates,
                };
                p.answer(Ok(d));
            }
        }
        // Refused for what some records contain: one part alone is the culprit; several
        // are appended one by one so that only the culprits fail.
        Err(Unstored::Refused(e, records))
            if parts.len() > 1
                && records.len() == parts.iter().map(|p| p.stored).sum::<usize>() =>
        {
            let mut records = records.into_iter();
            for p in parts {
                let mine: Vec<Envelope> = records.by_ref().take(p.stored).collect();
                commit(store, mine, vec![p], metrics, seen);
            }
            drop(e);
        }
        Err(Unstored::Refused(e, _)) => {
            metrics.store.refused.fetch_add(parts.len() as u64, Relaxed);
            let msg = format!("{e:#}");
            eprintln!("pugmark serve: records refused by the store (the writer goes on): {msg}");
            for p in parts {
                metrics.listener(p.listener).rejected.fetch_add(1, Relaxed);
                for k in &p.keys {
                    seen.forget(k);
                }
                p.answer(Err(NotDurable::Refused(msg.clone())));
            }
        }
        Err(Unstored::Unavailable(msg)) => {
            for p in parts {
                for k in &p.keys {
                    seen.forget(k);
                }
                p.answer(Err(NotDurable::Unavailable(msg.clone())));
            }
        }
    }
}

enum Unstored {
    /// The records themselves were refused (handed back when the store could).
    Refused(anyhow::Error, Vec<Envelope>),
    /// Not stored, and not for what they contain: serve is stopping during a fault.
    Unavailable(String),
}

/// Append, retrying resource faults with backoff until the batch is durable, refused, or
/// serve stops.
fn append_retrying(
    store: &mut dyn Store,
    mut batch: Vec<Envelope>,
    metrics: &Metrics,
) -> Result<u64, Unstored> {
    let n = batch.len() as u64;
    let health = &metrics.store;
    let mut wait = RETRY_FIRST;
    loop {
        match store.append(batch) {
            Ok(last) => {
                metrics.ledger_batches.fetch_add(1, Relaxed);
                metrics.ledger_records.fetch_add(n, Relaxed);
                metrics.ledger_last_seq.store(last, Relaxed);
                if health.retrying.swap(false, Relaxed) {
                    eprintln!("pugmark serve: storage resumed");
                }
                return Ok(last);
            }
            Err(f) if f.refused => return Err(Unstored::Refused(f.error, f.records)),
            Err(f) => {
                let kind = crate::health::fault_kind(&f.error);
                let msg = format!("{:#}", f.error);
                health.fault(kind, &msg);
                if !health.retrying.swap(true, Relaxed) {
                    eprintln!(
                        "pugmark serve: ledger append failed ({kind}), retrying until it succeeds; listeners push back meanwhile: {msg}"
                    );
                }
                if f.records.is_empty() {
                    // The store could not hand the batch back: it cannot be appended again.
                    health.retrying.store(false, Relaxed);
                    return Err(Unstored::Unavailable(format!(
                        "ledger append failed: {msg}"
                    )));
                }
                batch = f.records;
            }
        }
        // Recover (reopen the ledger), waiting longer each time, until it works.
        loop {
            if health.stopping.load(Relaxed) {
                health.retrying.store(false, Relaxed);
                return Err(Unstored::Unavailable(
                    "shutting down during a storage fault: not stored".into(),
                ));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
            match store.recover() {
                Ok(()) => {
                    health.recoveries.fetch_add(1, Relaxed);
                    break;
                }
                Err(e) => health.fault(crate::health::fault_kind(&e), &format!("{e:#}")),
            }
        }
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
        /// Appends that fail with ENOSPC before they succeed again.
        faults: usize,
        /// Records longer than this are refused (as the ledger refuses a too-large record).
        max_len: Option<usize>,
        recovered: Arc<Mutex<usize>>,
    }

    impl Store for Mem {
        fn append(&mut self, records: Vec<Envelope>) -> Result<u64, NotStored> {
            if self.faults > 0 {
                self.faults -= 1;
                return Err(NotStored {
                    error: anyhow::Error::new(std::io::Error::from_raw_os_error(28))
                        .context("ledger i/o error"),
                    records,
                    refused: false,
                });
            }
            let too_long = |e: &Envelope| matches!(e, Envelope::Record(r) if self.max_len.is_some_and(|m| r.raw.len() > m));
            if records.iter().any(too_long) {
                return Err(NotStored {
                    error: anyhow::anyhow!("record too large"),
                    records,
                    refused: true,
                });
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
        fn recover(&mut self) -> anyhow::Result<()> {
            *self.recovered.lock().unwrap() += 1;
            Ok(())
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
    fn run_with(store: Mem, subs: Vec<Submission>) -> anyhow::Result<Arc<Metrics>> {
        let (tx, rx) = channel();
        for s in subs {
            tx.try_send(s).ok().unwrap();
        }
        drop(tx);
        let m = Arc::new(Metrics::new());
        run(Box::new(store), rx, m.clone())?;
        Ok(m)
    }

    fn sub(
        listener: Listener,
        raws: &[&str],
    ) -> (Submission, oneshot::Receiver<Result<Durable, NotDurable>>) {
        let (a, w) = oneshot::channel();
        (
            Submission {
                listener,
                records: raws.iter().map(|r| rec(listener, r)).collect(),
                ack: Some(a),
                share: None,
            },
            w,
        )
    }

    #[test]
    fn group_commit_then_acks_and_relp_resends_are_not_stored_twice() {
        let records = Arc::new(Mutex::new(vec![rec(Listener::Relp, "<13>1 - a")]));
        let batches = Arc::new(Mutex::new(0));
        let store = Mem {
            records: records.clone(),
            batches: batches.clone(),
            ..Mem::default()
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
    fn a_resource_fault_is_retried_until_durable_and_stored_once() {
        let records = Arc::new(Mutex::new(Vec::new()));
        let recovered = Arc::new(Mutex::new(0));
        let store = Mem {
            records: records.clone(),
            recovered: recovered.clone(),
            faults: 3,
            ..Mem::default()
        };
        let (s1, mut w1) = sub(Listener::Relp, &["<13>1 - a", "<13>1 - b"]);
        let (s2, mut w2) = sub(Listener::Http, &["{}"]);
        let t = std::time::Instant::now();
        let m = run_with(store, vec![s1, s2]).unwrap();
        // 50 + 100 + 200 ms of backoff.
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(w1.try_recv().unwrap().unwrap().stored(), 2);
        assert_eq!(w2.try_recv().unwrap().unwrap().stored(), 1);
        assert_eq!(records.lock().unwrap().len(), 3, "stored once");
        assert_eq!(*recovered.lock().unwrap(), 3);
        assert_eq!(m.store.faults("space"), 3);
        assert!(!m.store.retrying.load(Relaxed));
        assert_eq!(m.store.recoveries.load(Relaxed), 3);
    }

    #[test]
    fn a_refused_record_fails_its_submission_only_and_the_writer_goes_on() {
        let records = Arc::new(Mutex::new(Vec::new()));
        let store = Mem {
            records: records.clone(),
            max_len: Some(100),
            ..Mem::default()
        };
        let big = "x".repeat(200);
        let (s1, mut w1) = sub(Listener::Relp, &["<13>1 - a"]);
        let (s2, mut w2) = sub(Listener::Relp, &["<13>1 - b", &big]);
        let (s3, mut w3) = sub(Listener::Http, &["{}"]);
        let m = run_with(store, vec![s1, s2, s3]).unwrap();
        assert_eq!(w1.try_recv().unwrap().unwrap().stored(), 1);
        assert!(matches!(
            w2.try_recv().unwrap(),
            Err(NotDurable::Refused(_))
        ));
        assert_eq!(w3.try_recv().unwrap().unwrap().stored(), 1);
        let raws: Vec<_> = records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.raw.clone())
            .collect();
        assert_eq!(raws, vec![b"<13>1 - a".to_vec(), b"{}".to_vec()]);
        assert_eq!(m.listener(Listener::Relp).rejected.load(Relaxed), 1);
        assert_eq!(m.store.refused.load(Relaxed), 1);
    }

    #[test]
    fn a_refused_resend_is_not_remembered_as_stored() {
        // A RELP frame refused once must be stored when it comes again smaller... or, as
        // here, when the store takes it later: its hash must not count as already stored.
        let mut seen = Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
        };
        let r = rec(Listener::Relp, "<13>1 - a");
        let k = Seen::key(&r);
        assert!(seen.insert(k));
        seen.forget(&k);
        assert!(seen.insert(k), "forgotten: a resend is stored");
    }

    #[test]
    fn stopping_during_a_fault_answers_not_durable_and_finishes() {
        let store = Mem {
            faults: usize::MAX,
            ..Mem::default()
        };
        let (tx, rx) = channel();
        let (s1, mut w1) = sub(Listener::Relp, &["<13>1 - a"]);
        tx.try_send(s1).ok().unwrap();
        drop(tx);
        let m = Arc::new(Metrics::new());
        let m2 = m.clone();
        let h = std::thread::spawn(move || run(Box::new(store), rx, m2));
        std::thread::sleep(Duration::from_millis(300));
        assert!(m.store.retrying.load(Relaxed));
        m.store.stopping.store(true, Relaxed);
        h.join().unwrap().unwrap();
        assert!(matches!(
            w1.try_recv().unwrap(),
            Err(NotDurable::Unavailable(_))
        ));
    }
}
