//! The write path: envelopes → ledger (durable) → decode → views.
//!
//! Order is the invariant: a batch is appended to the ledger and fsync'd first; only with the
//! ledger's receipt in hand are its records decoded and handed to the views, and only then does
//! the caller report them stored. Views may trail the ledger (a crash between the two leaves
//! them behind); `Pipeline::open` catches them up from the ledger, so nothing the ledger holds
//! is ever missing from a view for long, and nothing is in a view that the ledger lacks.
//!
//! Decoding and indexing run on a second thread fed by a bounded channel, so reading and
//! hashing/compressing (this thread) overlap with parsing and indexing (that thread) on a
//! 2-core machine, and a slow indexer pushes back instead of buffering without bound.
//!
//! This crate is the write path shared by every program that appends: `pugmark ingest`,
//! `serve` (through the binary's `serve::Store` implementation), `reindex` and the benchmarks.
//! With it live the data directory ([`datadir`]: paths, format marker, signing key — a file or
//! a PKCS#11 token, [`pkcs11`]), the file-import marks ([`imports`]) and the views' check
//! against the ledger ([`viewcheck`]).

pub mod datadir;
pub mod derive;
pub mod imports;
pub mod pkcs11;
pub mod viewcheck;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use flowstore::FlowStore;
use ledger::{Ledger, LedgerOptions, LedgerReader, OpenReport, Receipt};
use model::{Assembled, Envelope, Event, Reassembler, Stored};
use views::facts::{FactStore, NAT_FLUSH_ROWS, NatRow};
use views::search::SearchIndex;

use crate::datadir::DataDir;
use crate::imports::ImportsView;

/// Memory for tantivy's indexing buffers.
const INDEX_HEAP_BYTES: usize = 200 * 1024 * 1024;
/// Trailing mode (`serve`): tantivy's indexing buffers. A long-running server flushes
/// segments often anyway (commits every second when caught up), and memory at load is what
/// issue 4 bounds (RSS ≤ 300 MB); BENCHMARKS.md has the measurement.
const SERVE_INDEX_HEAP_BYTES: usize = 96 * 1024 * 1024;
/// Trailing mode: durable batches waiting for the indexer, at most this many bytes (estimated
/// by [`approx_bytes`]); beyond it a batch becomes a gap the indexer reads back from the
/// ledger, so memory stays bounded however far behind the views are.
const SERVE_INDEX_QUEUE_BYTES: u64 = 24 * 1024 * 1024;
/// Trailing mode: while the indexer is behind the ledger it commits at most this often
/// (each commit flushes small segments that tantivy must merge later; committing once it has
/// caught up makes everything searchable with fewer segments).
const SERVE_COMMIT_WHILE_BEHIND: Duration = Duration::from_secs(10);
/// Trailing mode: zstd level of the ledger's blocks. On 128 KiB blocks of syslog level 1
/// compresses as well as the default 3 (bench/gen's realistic day: 4.635× vs 4.639×; the
/// serve benchmark's payload: 7.8× vs 7.0×) and ~20 % faster, and compression is most of the
/// ledger path's CPU after the chain. Blocks are self-describing zstd frames: readers and
/// `verify` do not care which level wrote them.
const SERVE_ZSTD_LEVEL: i32 = 1;
/// Trailing mode: how often the ledger signs a checkpoint (docs/FORMAT.md "Checkpoint file").
const SERVE_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Trailing mode: the nice value of the indexer thread while it opens the index; then it and
/// the tantivy threads run under SCHED_IDLE ([`set_idle`]). Acknowledgements wait for the
/// ledger only, so under load the ledger path gets the CPU first and the views use what is
/// left (they catch up when the load drops; BENCHMARKS.md measures the lag). Linux nice values
/// and policies are per thread.
const SERVE_INDEXER_NICE: i32 = 10;
/// Commit the index at least this often during long imports so a crash loses little work.
const INDEX_COMMIT_EVERY: Duration = Duration::from_secs(30);

/// tantivy indexing threads. Indexing is the heaviest stage of ingest; on the 2-core
/// reference machine two threads took 1 M lines from 8.7 s to 6.4 s (bench/, BENCHMARKS.md)
/// even though decoding and the ledger share the same cores. More than 4 stops paying.
fn index_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Every envelope takes at most this many bytes in one ledger record; a larger one is stored
/// as a split record (a head and continuations, docs/FORMAT.md "Split records").
pub const MAX_PAYLOAD: usize = ledger::MAX_RECORD_LEN;

/// The ledger positions `env` takes when appended ([`Pipeline::append`] splits envelopes over
/// [`MAX_PAYLOAD`]): for callers that name a record's position before appending its batch.
pub fn ledger_parts(env: &Envelope) -> u64 {
    env.stored_parts(MAX_PAYLOAD)
}

/// What decoding found, by parse-issue kind, for the summary.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub events: u64,
    pub events_with_issues: u64,
    pub issues_by_kind: BTreeMap<String, u64>,
    /// `netflow-record`s after the ledger's `derive-flows` marker: their datagrams' derived
    /// flows stand for them (docs/design/flow-derivation.md §3), so they are not flows again.
    pub superseded_flow_records: u64,
    /// Derived flows no flow position can hold (more than 2^21 from one datagram), left out.
    pub flows_cut: u64,
    /// Flows derived by this process, per source (`derive::source_of`: a capture's or
    /// payload file's path, a listener): `ingest`'s per-file summary.
    pub flows: BTreeMap<String, flow::Stats>,
    /// Data sets the import decoder still holds for a template at the end.
    pub flow_sets_waiting: u64,
    /// … and the live decoder (kept in the flow store's saved state for the next start).
    pub live_sets_waiting: u64,
}

impl DecodeStats {
    fn count(&mut self, event: &Event) {
        self.events += 1;
        if !event.issues.is_empty() {
            self.events_with_issues += 1;
        }
        for issue in &event.issues {
            *self.issues_by_kind.entry(issue.kind.clone()).or_default() += 1;
        }
    }
}

enum ToIndexer {
    Batch {
        /// Each envelope with its ledger position (of its first part when split).
        envelopes: Vec<(u64, Envelope)>,
        /// The batch's last ledger position (a split record's last part).
        last: u64,
        /// The ledger's chain head at `last`, recorded by the views with their position.
        head: Option<[u8; 32]>,
        counted: bool,
        /// Records at or below these positions are already in the search index / fact store
        /// (catch-up after a crash can overlap one view and not the other).
        index_has: u64,
        facts_has: u64,
        /// Bytes this batch added to `queued_bytes` (trailing mode), which the indexer gives
        /// back; 0 for batches sent outside that budget (blocking mode, catch-up at open).
        queued: u64,
    },
    /// Records `from..=to` are in the ledger but were not sent (trailing mode, the indexer
    /// was behind): read them back from the ledger.
    Range { from: u64, to: u64 },
}

struct Indexer {
    tx: SyncSender<ToIndexer>,
    handle: JoinHandle<anyhow::Result<DecodeStats>>,
    /// Trailing mode only: what the writer and the indexer share.
    shared: Option<Arc<Shared>>,
    /// What the deriver's live decoder counted, as of the last batch that fed it.
    live_flows: Arc<std::sync::Mutex<Option<flow::Stats>>>,
}

/// Trailing mode: the writer side tells the indexer how far the ledger is; the indexer tells
/// the writer side how many bytes of batches it has not consumed yet.
#[derive(Default)]
struct Shared {
    /// Last durable ledger position.
    durable_last: AtomicU64,
    /// Estimated bytes of `ToIndexer::Batch`es sent and not yet indexed.
    queued_bytes: AtomicU64,
    /// Last ledger position the index has committed (for /metrics).
    indexed_last: Arc<AtomicU64>,
    /// `finish` has begun: the indexer leaves SCHED_IDLE to flush.
    flushing: std::sync::atomic::AtomicBool,
}

/// Rough memory held by a batch of envelopes (raw bytes plus the per-record structures:
/// envelope, origin strings, the vector slot).
fn approx_bytes<'a>(envelopes: impl Iterator<Item = &'a Envelope>) -> u64 {
    envelopes
        .map(|e| match e {
            Envelope::Record(r) => r.raw.len() as u64 + 192,
            Envelope::ImportMark(_) => 256,
        })
        .sum()
}

/// How the indexer thread makes its tantivy writer: inside the thread, so that in trailing
/// mode the tantivy threads inherit its (lowered) priority.
struct WriterSpec {
    index: SearchIndex,
    threads: usize,
    heap: usize,
    nice: Option<i32>,
}

/// The single writer of a data directory.
pub struct Pipeline {
    ledger: Ledger,
    imports: ImportsView,
    indexer: Option<Indexer>,
    /// Ledger records the views were behind by at open, now caught up.
    pub caught_up: u64,
    pub open_report: OpenReport,
    /// Trailing mode (`pugmark serve`): `append` never waits for the views; batches the
    /// indexer has no room for are read back from the ledger later (`gap`).
    trailing: bool,
    gap: Option<(u64, u64)>,
    /// The encoded envelopes of the batch being appended (reused).
    encode_buf: Vec<u8>,
    /// Trailing mode: why the views stopped, if they did (the ledger goes on without them).
    views_failed: Option<String>,
    /// The ledger's `derive-flows` marker, as the flow store's saved state knew it at open.
    derive_marker: Option<u64>,
}

/// A record no append can ever store (its collector facts alone exceed the ledger's record
/// limit): refused, not retried.
#[derive(Debug)]
pub struct RecordRefused(pub String);

impl std::fmt::Display for RecordRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot store a record: {}", self.0)
    }
}

impl std::error::Error for RecordRefused {}

/// A batch [`Pipeline::try_append`] could not complete.
#[derive(Debug)]
pub struct NotAppended {
    pub error: anyhow::Error,
    /// The batch, when the ledger did not make it durable; empty when it is durable and
    /// only the views failed after (it must not be appended again).
    pub envelopes: Vec<Envelope>,
}

impl Pipeline {
    /// The position of the ledger's `derive-flows` marker when the views knew of one at open
    /// (a writer then need not append another).
    pub fn derive_marker(&self) -> Option<u64> {
        self.derive_marker
    }

    /// What the views' deriver counted decoding the live listener's datagrams (flows,
    /// templates, waiting and dropped sets, bad input), as of the last batch that fed it:
    /// it trails the ledger as the views do. `None` before any.
    pub fn live_flow_stats(&self) -> Option<flow::Stats> {
        let i = self.indexer.as_ref()?;
        i.live_flows.lock().ok()?.clone()
    }

    pub fn open(dd: &DataDir) -> anyhow::Result<Pipeline> {
        Pipeline::open_with(dd, INDEX_COMMIT_EVERY)
    }

    /// For a live server: views committed at least every `commit_every`, and `append` never
    /// waits for them. When the indexer is behind, durable batches are not queued for it
    /// (memory stays bounded); it reads them back from the ledger when it gets there, so
    /// the views trail the ledger (searchable later) while acknowledgements do not wait for
    /// indexing.
    pub fn open_trailing(dd: &DataDir, commit_every: Duration) -> anyhow::Result<Pipeline> {
        Pipeline::open_inner(dd, commit_every, true, false)
    }

    /// For `reindex`: like [`Pipeline::open`] on `dd` (whose views are built aside, empty),
    /// and the ledger's block index sidecars are all checked against their segments and
    /// rewritten where they differ.
    pub fn open_rebuild(dd: &DataDir) -> anyhow::Result<Pipeline> {
        Pipeline::open_inner(dd, INDEX_COMMIT_EVERY, false, true)
    }

    /// Like [`Pipeline::open`], committing the views at least every `commit_every` — also
    /// when no more records arrive, so a live server's last records become searchable
    /// without waiting for the next ones (`pugmark serve` uses a short interval).
    pub fn open_with(dd: &DataDir, commit_every: Duration) -> anyhow::Result<Pipeline> {
        Pipeline::open_inner(dd, commit_every, false, false)
    }

    fn open_inner(
        dd: &DataDir,
        commit_every: Duration,
        trailing: bool,
        check_sidecars: bool,
    ) -> anyhow::Result<Pipeline> {
        let mut opts = LedgerOptions {
            check_sidecars,
            ..dd.ledger_options()?
        };
        // Tests only: small segments, so that retention has whole segments to remove.
        if let Some(n) = std::env::var("PUGMARK_TEST_SEGMENT_BYTES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            opts.segment_max_bytes = n;
        }
        if trailing {
            // A live server signs a checkpoint every second (each is a signature and an
            // fsync of its own), whatever the rate: at low rates that is more often than the
            // default (10 s), at 600 k records/s far less often than every 10 000 records,
            // which was an extra fsync for nearly every group commit.
            opts.checkpoint_every = SERVE_CHECKPOINT_EVERY;
            opts.checkpoint_every_records = u64::MAX;
            opts.zstd_level = SERVE_ZSTD_LEVEL;
        }
        let (ledger, open_report) = Ledger::open(&dd.ledger(), opts)
            .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
        if crate::datadir::key_overridden() {
            // The key came from a descriptor: its public key goes to DATA/keys for verify.
            let p = dd.public_key();
            let want: String = ledger
                .public_key()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if std::fs::read_to_string(&p).unwrap_or_default().trim() != want {
                std::fs::create_dir_all(dd.keys())
                    .and_then(|()| std::fs::write(&p, format!("{want}\n")))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
        }
        if open_report.created {
            // A new ledger got its key just now: say where, once.
            eprintln!(
                "pugmark: new ledger {} (origin {}); its checkpoint signing key is {} and the public key {} (keep a copy of the public key away from this host)",
                dd.ledger().display(),
                ledger.origin(),
                dd.signing_key().display(),
                dd.public_key().display()
            );
        }
        // The ledger's lock is held: no other writer, no `reindex` under way.
        dd.recover_views()?;
        let index = SearchIndex::open_or_create(dd.index())
            .with_context(|| format!("opening search index in {}", dd.index().display()))?;
        let mut imports = ImportsView::open(&dd.imports())?;
        let facts = FactStore::open(dd.facts())
            .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
        let flows = FlowStore::open(dd.flows())
            .with_context(|| format!("opening flow store in {}", dd.flows().display()))?;
        let (flows, deriver) = restore_deriver(dd, flows)?;
        let derive_marker = deriver.marker();
        let index_pos = index.last_position()?;
        let facts_pos = facts.last_position()?;
        let flows_pos = flows.last_position();
        // Views of another ledger are never extended: the search index and fact store are
        // refused (reindex rebuilds them aside), the imports view (which decides what an
        // ingest skips as already stored) is rebuilt here from this ledger.
        let ledger_last = ledger.next_seq().saturating_sub(1);
        let mut reader = LedgerReader::open(&dd.ledger())?;
        let mut foreign = |pos: Option<(u64, Option<[u8; 32]>)>| -> bool {
            match pos {
                None => false,
                Some((seq, _)) if seq > ledger_last => true,
                Some((seq, Some(h))) => reader.head_at(seq).map_or(true, |a| a != h),
                Some((_, None)) => false,
            }
        };
        for (what, dir, pos) in [
            ("search index", dd.index(), index_pos),
            ("fact store", dd.facts(), facts_pos),
            ("flow store", dd.flows(), flows_pos),
        ] {
            if foreign(pos) {
                anyhow::bail!(
                    "the {what} in {} was built from another ledger than the one in {}; run \
                     `pugmark reindex` to rebuild the views from this ledger",
                    dir.display(),
                    dd.ledger().display()
                );
            }
        }
        let (imp_seq, imp_head) = imports.position();
        if imp_seq > 0 && foreign(Some((imp_seq, imp_head))) {
            eprintln!(
                "pugmark: the imports view in {} was built from another ledger; rebuilding it",
                dd.imports().display()
            );
            imports.reset();
        }
        let indexed = index_pos.map_or(0, |p| p.0);
        let facts_has = facts_pos.map_or(0, |p| p.0);
        // The flow store skips positions it holds itself; one behind the other views (new in
        // this build, or deleted) moves the catch-up's start back, and the other views skip
        // what they hold (`index_has`, `facts_has`).
        let flows_has = flows_pos.map_or(0, |p| p.0);
        drop(reader);
        let spec = WriterSpec {
            index,
            threads: index_threads(),
            heap: if trailing {
                SERVE_INDEX_HEAP_BYTES
            } else {
                INDEX_HEAP_BYTES
            },
            nice: trailing.then_some(SERVE_INDEXER_NICE),
        };
        // In trailing mode an idle indexer reads what it has not seen from the ledger.
        let idle_catch_up = trailing.then(|| indexed.min(facts_has).min(flows_has));
        let indexer = spawn_indexer(
            spec,
            facts,
            (flows, deriver),
            commit_every,
            dd.ledger(),
            idle_catch_up,
            (indexed, facts_has),
        )?;
        if let Some(sh) = &indexer.shared {
            sh.durable_last
                .store(ledger.next_seq().saturating_sub(1), Relaxed);
        }
        let mut p = Pipeline {
            ledger,
            imports,
            indexer: Some(indexer),
            caught_up: 0,
            open_report,
            trailing,
            gap: None,
            encode_buf: Vec::new(),
            views_failed: None,
            derive_marker,
        };
        p.catch_up(&dd.ledger(), indexed, facts_has, flows_has)?;
        Ok(p)
    }

    /// Feed the views every ledger record they have not seen (after a crash, or a deleted view).
    fn catch_up(
        &mut self,
        ledger_dir: &Path,
        indexed: u64,
        facts_has: u64,
        flows_has: u64,
    ) -> anyhow::Result<()> {
        let last = self.ledger.next_seq().saturating_sub(1);
        // Records both views already have are skipped: re-adding would duplicate documents.
        let views_from = indexed.min(facts_has).min(flows_has) + 1;
        // Trailing mode (`serve`) must not wait for the views before it listens (after a
        // kill -9 they can be millions of records behind, and the indexer runs at idle
        // priority): their part is a gap the indexer reads back from the ledger before
        // anything appended later (`send_trailing` sends gaps first), skipping per view what
        // each already holds. Only the imports view is brought up to date here.
        let feed_views = !self.trailing;
        if !feed_views && views_from <= last {
            self.gap = Some((views_from, last));
        }
        let imports_from = self.imports.last_seq() + 1;
        let from = if feed_views {
            views_from.min(imports_from)
        } else {
            imports_from
        };
        if from > last {
            return Ok(());
        }
        let mut reader = LedgerReader::open(ledger_dir)?;
        let mut batch = Vec::with_capacity(4096);
        let mut batch_last = from;
        let mut re = Reassembler::new();
        let mut whole = Vec::new();
        for item in reader.iter_from(from) {
            let (seq, payload) = item?;
            if seq.get() > last {
                break;
            }
            re.push(seq.get(), stored(&payload), &mut |a| whole.push(a));
            for a in whole.drain(..) {
                self.catch_up_one(a, views_from, &mut batch, &mut batch_last);
                if batch.len() == 4096 {
                    let head = reader.head_at(batch_last).ok();
                    self.send(
                        std::mem::take(&mut batch),
                        batch_last,
                        head,
                        false,
                        indexed,
                        facts_has,
                    )?;
                }
            }
        }
        // The durable end never cuts a split record (a batch is atomic): what is left is
        // damage, kept as found.
        re.flush(&mut |a| whole.push(a));
        for a in whole.drain(..) {
            self.catch_up_one(a, views_from, &mut batch, &mut batch_last);
        }
        if !batch.is_empty() {
            let head = reader.head_at(batch_last).ok();
            self.send(batch, batch_last, head, false, indexed, facts_has)?;
        }
        self.imports.advance(last);
        Ok(())
    }

    /// One envelope read back at open: the imports view applies its marks, and the views get
    /// it unless they already hold it (or, trailing, read it themselves later).
    fn catch_up_one(
        &mut self,
        a: Assembled,
        views_from: u64,
        batch: &mut Vec<(u64, Envelope)>,
        batch_last: &mut u64,
    ) {
        if a.first > self.imports.last_seq()
            && let Envelope::ImportMark(m) = &a.envelope
        {
            self.imports.apply(a.first, m);
        }
        if self.trailing || a.first < views_from {
            return;
        }
        batch.push((a.first, a.envelope));
        *batch_last = a.last;
        self.caught_up += 1;
    }

    /// Trailing mode: the last ledger position the search index has committed, kept current
    /// by the indexer thread.
    pub fn index_position(&self) -> Option<Arc<AtomicU64>> {
        let sh = self.indexer.as_ref()?.shared.as_ref()?;
        Some(sh.indexed_last.clone())
    }

    /// The ledger position the next appended record will take (NetFlow flow records name
    /// their datagram's position before the batch is appended: the binary's `netflow`).
    /// The ledger writer, for maintenance between appends (`serve`'s retention timer):
    /// records appended through it reach the views as the indexer catches up.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    pub fn next_seq(&self) -> u64 {
        self.ledger.next_seq()
    }

    pub fn imports(&self) -> &ImportsView {
        &self.imports
    }

    /// Append envelopes as one durable batch, then hand them to the views.
    pub fn append(&mut self, envelopes: Vec<Envelope>) -> anyhow::Result<Receipt> {
        self.try_append(envelopes).map_err(|f| f.error)
    }

    /// Like [`Pipeline::append`], for a caller that retries (`serve`): a batch the ledger
    /// did not make durable comes back with the error, to be appended again after
    /// [`Pipeline::recover`]. In trailing mode a failure of the views after the batch is
    /// durable is not an append error (the batch must not be appended twice): it is kept
    /// in [`Pipeline::views_failed`], later batches go to the ledger only, and the views
    /// catch up from the ledger at the next open.
    pub fn try_append(&mut self, envelopes: Vec<Envelope>) -> Result<Receipt, NotAppended> {
        let (receipt, offsets) = match self.append_ledger_only(&envelopes) {
            Ok(r) => r,
            // The batch comes back whole either way: after a resource fault to be appended
            // again, after a refusal (`RecordRefused`) so that the caller can find the
            // records at fault and store the others.
            Err(error) => return Err(NotAppended { error, envelopes }),
        };
        if self.trailing && self.indexer.is_none() {
            return Ok(receipt);
        }
        let first = receipt.first.get();
        let last = first + receipt.count.saturating_sub(1);
        if let Some(sh) = self.indexer.as_ref().and_then(|i| i.shared.as_ref()) {
            sh.durable_last.store(last, Relaxed);
        }
        // Each envelope at the position of its first part (a split record is one event).
        let envelopes: Vec<(u64, Envelope)> = offsets
            .into_iter()
            .map(|off| first + off)
            .zip(envelopes)
            .collect();
        let head = Some(receipt.head);
        let sent = if self.trailing {
            self.send_trailing(first, last, head, envelopes)
        } else {
            self.send(envelopes, last, head, true, 0, 0)
        };
        match sent {
            Ok(()) => Ok(receipt),
            Err(e) if self.trailing => {
                eprintln!(
                    "pugmark: the views stopped ({e:#}); the ledger goes on, the views catch up from it at the next start"
                );
                self.indexer = None;
                self.views_failed = Some(format!("{e:#}"));
                Ok(receipt)
            }
            Err(e) => Err(NotAppended {
                error: e,
                envelopes: Vec::new(),
            }),
        }
    }

    /// Whether a failed ledger write left the ledger refusing appends until [`Pipeline::recover`].
    /// Signs a checkpoint for the ledger's end if the last one does not cover it (serve's
    /// writer calls it when idle: a burst then silence still gets its checkpoint within a
    /// second, and so its witnesses' cosignatures).
    pub fn checkpoint(&mut self) -> anyhow::Result<()> {
        if self.ledger.failed() {
            return Ok(());
        }
        self.ledger.checkpoint().map_err(Into::into)
    }

    pub fn ledger_failed(&self) -> bool {
        self.ledger.failed()
    }

    /// After a failed append: cut what the failed batch left in the ledger and reopen it
    /// (`ledger::Ledger::recover`), so the batch can be appended again.
    pub fn recover(&mut self) -> anyhow::Result<()> {
        for t in self.ledger.recover()?.truncated {
            eprintln!("pugmark: ledger recovery: {t}");
        }
        Ok(())
    }

    /// Why the views stopped while serving (trailing mode), if they did.
    pub fn views_failed(&self) -> Option<&str> {
        self.views_failed.as_deref()
    }

    /// The ledger part of an append: one durable batch, then the imports view (which is
    /// kept in step with the ledger, not trailing).
    fn append_ledger_only(
        &mut self,
        envelopes: &[Envelope],
    ) -> anyhow::Result<(Receipt, Vec<u64>)> {
        // One buffer for the whole batch, not one allocation per record.
        let mut buf = std::mem::take(&mut self.encode_buf);
        buf.clear();
        let mut ends = Vec::with_capacity(envelopes.len());
        // Each envelope's offset from the batch's first position: its parts are contiguous,
        // in this one batch, so no other sender's record can come between them.
        let mut offsets = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            offsets.push(ends.len() as u64);
            if let Err(e) = env.encode_parts_into(MAX_PAYLOAD, &mut buf, &mut ends) {
                // Only the collector's own facts (a path or listener name of megabytes) can
                // do this; the batch is refused before anything is written.
                self.encode_buf = Vec::new();
                return Err(anyhow::Error::new(RecordRefused(e.to_string())));
            }
        }
        let mut start = 0;
        let receipt = self.ledger.append_batch(ends.iter().map(|&end| {
            let s = &buf[start..end];
            start = end;
            s
        }));
        // Keep the buffer for the next batch unless one batch made it huge.
        if buf.capacity() <= 16 << 20 {
            self.encode_buf = buf;
        }
        let receipt = receipt?;
        let first = receipt.first.get();
        for (off, env) in offsets.iter().zip(envelopes) {
            if let Envelope::ImportMark(m) = env {
                self.imports.apply(first + off, m);
            }
        }
        self.imports
            .advance(first + receipt.count.saturating_sub(1));
        Ok((receipt, offsets))
    }

    /// Hand a durable batch to the indexer if it has room, else remember it as a gap the
    /// indexer reads back from the ledger (gaps are sent first, so the order is kept).
    fn send_trailing(
        &mut self,
        first: u64,
        last: u64,
        head: Option<[u8; 32]>,
        envelopes: Vec<(u64, Envelope)>,
    ) -> anyhow::Result<()> {
        use std::sync::mpsc::TrySendError;
        let indexer = self
            .indexer
            .as_ref()
            .ok_or_else(|| anyhow!("indexer already stopped"))?;
        let tx = &indexer.tx;
        let bytes = approx_bytes(envelopes.iter().map(|(_, e)| e));
        let room = indexer.shared.as_ref().is_none_or(|sh| {
            sh.queued_bytes.load(Relaxed).saturating_add(bytes) <= SERVE_INDEX_QUEUE_BYTES
        });
        let mut dead = false;
        if let Some((from, to)) = self.gap {
            match tx.try_send(ToIndexer::Range { from, to }) {
                Ok(()) => self.gap = None,
                Err(TrySendError::Full(_)) => {
                    self.gap = Some((from, last));
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => dead = true,
            }
        }
        if !dead && !room {
            self.gap = Some((first, last));
            return Ok(());
        }
        if !dead {
            if let Some(sh) = &indexer.shared {
                sh.queued_bytes.fetch_add(bytes, Relaxed);
            }
            let batch = ToIndexer::Batch {
                envelopes,
                last,
                head,
                counted: true,
                index_has: 0,
                facts_has: 0,
                queued: bytes,
            };
            match tx.try_send(batch) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {
                    if let Some(sh) = &indexer.shared {
                        sh.queued_bytes.fetch_sub(bytes, Relaxed);
                    }
                    self.gap = Some((first, last));
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        Err(self
            .stop_indexer()
            .err()
            .unwrap_or_else(|| anyhow!("indexer stopped")))
    }

    fn send(
        &mut self,
        envelopes: Vec<(u64, Envelope)>,
        last: u64,
        head: Option<[u8; 32]>,
        counted: bool,
        index_has: u64,
        facts_has: u64,
    ) -> anyhow::Result<()> {
        let indexer = self
            .indexer
            .as_ref()
            .ok_or_else(|| anyhow!("indexer already stopped"))?;
        if indexer
            .tx
            .send(ToIndexer::Batch {
                envelopes,
                last,
                head,
                counted,
                index_has,
                facts_has,
                queued: 0,
            })
            .is_err()
        {
            // The indexer thread ended: its own error is the one worth reporting.
            return Err(self
                .stop_indexer()
                .err()
                .unwrap_or_else(|| anyhow!("indexer stopped")));
        }
        Ok(())
    }

    fn stop_indexer(&mut self) -> anyhow::Result<DecodeStats> {
        let Some(Indexer { tx, handle, .. }) = self.indexer.take() else {
            return Ok(DecodeStats::default());
        };
        drop(tx);
        handle
            .join()
            .map_err(|_| anyhow!("indexer thread panicked"))?
    }

    /// Commit the views and close the ledger (which writes a signed checkpoint).
    pub fn finish(self) -> anyhow::Result<DecodeStats> {
        self.finish_then(|| Ok(()))
    }

    /// [`Pipeline::finish`], running `then` once the views are complete and before the
    /// ledger's lock is released (`reindex` swaps its new views in there).
    pub fn finish_then(
        mut self,
        then: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<DecodeStats> {
        if let Some(sh) = self.indexer.as_ref().and_then(|i| i.shared.as_ref()) {
            sh.flushing.store(true, Relaxed);
        }
        if let (Some((from, to)), Some(indexer)) = (self.gap.take(), self.indexer.as_ref()) {
            // Blocking: the views must hold everything the ledger holds when we return.
            let _ = indexer.tx.send(ToIndexer::Range { from, to });
        }
        let stats = self.stop_indexer()?;
        let head = self.ledger.head();
        self.imports.save_at(head)?;
        then()?;
        self.ledger.close()?;
        Ok(stats)
    }
}

fn spawn_indexer(
    spec: WriterSpec,
    mut facts: FactStore,
    // The flow store and the deriver its last commit saved (`restore_deriver`).
    (mut flows, mut deriver): (FlowStore, derive::Deriver),
    commit_every: Duration,
    ledger_dir: std::path::PathBuf,
    idle_catch_up: Option<u64>,
    // What the index and the fact store held at open: ranges read back from the ledger skip,
    // per view, what that view already has (they may differ after a crash).
    (index_had, facts_had): (u64, u64),
) -> anyhow::Result<Indexer> {
    let (tx, rx) = sync_channel::<ToIndexer>(8);
    let shared = idle_catch_up.map(|_| {
        let sh = Shared::default();
        sh.indexed_last.store(index_had, Relaxed);
        Arc::new(sh)
    });
    let sh = shared.clone();
    let live_flows = Arc::new(std::sync::Mutex::new(None));
    let live = live_flows.clone();
    let (ready_tx, ready_rx) = sync_channel::<anyhow::Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name("pugmark-index".into())
        .spawn(move || -> anyhow::Result<DecodeStats> {
            if let Some(nice) = spec.nice {
                // Best effort: without it the views compete with the ledger for the CPU,
                // which costs throughput, not correctness.
                if let Err(e) = rustix::process::setpriority_process(None, nice) {
                    eprintln!("pugmark: cannot lower the indexer's priority: {e}");
                }
            }
            // Opened before this thread goes SCHED_IDLE: `serve`'s start waits for it, and a
            // thread under SCHED_IDLE may wait seconds for a CPU on a busy machine.
            let mut writer = match spec.index.writer_with_threads(spec.threads, spec.heap) {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(()));
                    w
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::new(e)));
                    return Ok(DecodeStats::default());
                }
            };
            drop(spec.index);
            if spec.nice.is_some() {
                // From now on this thread runs only on a CPU nothing else wants, and so do
                // tantivy's threads once restarted from here (they inherit the policy).
                set_idle(true);
                if let Err(e) = writer.restart_threads() {
                    eprintln!("pugmark: the index threads keep their priority: {e}");
                }
            }
            let mut stats = DecodeStats::default();
            // Trailing mode: everything up to here is in the views already.
            let mut last_seq = idle_catch_up.filter(|&s| s > 0);
            // The ledger's chain head at `last_seq`, when known.
            let mut last_head: Option<[u8; 32]> = None;
            let mut last_commit = Instant::now();
            let mut committed = last_seq;
            // Hidden, for the oracle tests only (`tests/flow_readers.rs`): build the views as
            // builds before issue 16 did, each flow also an index document.
            let flows_in_index = std::env::var_os("PUGMARK_INDEX_FLOWS").is_some();
            // The same for NAT records (`tests/nat_readers.rs`): each an index document and a
            // `nat_obs` fact row, as before they became blocks of rows.
            let nat_in_index = std::env::var_os("PUGMARK_INDEX_NAT").is_some();
            // Ranges retention removed (first, count, retention record): the deriver goes on
            // past one from the state its record carries (docs/design/flow-derivation.md §2.6).
            let removed = LedgerReader::open(&ledger_dir)
                .map(|r| r.removed_ranges())
                .unwrap_or_default();
            // NAT records not written yet (at the next commit, or every NAT_FLUSH_ROWS).
            let mut pending_nat: Vec<NatRow> = Vec::new();
            let mut idle = spec.nice.is_some();
            loop {
                if idle && sh.as_ref().is_some_and(|sh| sh.flushing.load(Relaxed)) {
                    // Shutting down: the flush must not wait for an idle CPU.
                    set_idle(false);
                    idle = false;
                }
                let msg = match rx.recv_timeout(commit_every) {
                    Ok(m) => m,
                    // Trailing mode, quiet: read what the writer did not queue (the views
                    // must not wait for the next append to catch up).
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if idle_catch_up.is_some() => {
                        ToIndexer::Range {
                            from: last_seq.or(idle_catch_up).unwrap_or(0) + 1,
                            to: u64::MAX,
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        // Quiet: make what arrived last searchable.
                        if let Some(seq) = last_seq
                            && committed != last_seq
                        {
                            flush_nat(&mut facts, &mut pending_nat, seq, last_head)?;
                            commit_flows(&mut flows, &mut deriver, seq, last_head)?;
                            writer.commit_at(seq, last_head)?;
                            committed = last_seq;
                            last_commit = Instant::now();
                            if let Some(sh) = &sh {
                                sh.indexed_last.store(seq, Relaxed);
                            }
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                // Indexes envelopes (each at its ledger position, the first part's when split)
                // up to the ledger position `batch_last`.
                let mut index = |envelopes: &[(u64, Envelope)],
                                 batch_last: u64,
                                 head: Option<[u8; 32]>,
                                 counted: bool,
                                 index_has: u64,
                                 facts_has: u64|
                 -> anyhow::Result<()> {
                    let mut fact_events = Vec::new();
                    // Decoded on two threads (decode is pure): it is most of what is left of
                    // the indexer's work per record once NAT records and flows are rows.
                    let mut decoded = decode_batch(envelopes, !nat_in_index);
                    for (i, &(seq, ref env)) in envelopes.iter().enumerate() {
                        // A gap read back from the ledger can overlap what an idle catch-up
                        // already read: positions only move forward.
                        if idle_catch_up.is_some()
                            && let Some(done) = last_seq
                            && seq <= done
                        {
                            continue;
                        }
                        // Flows derived from the stored datagrams (after the ledger's marker):
                        // a datagram's flows into the flow store, NAT ones also fact rows at
                        // their flow positions; the datagram goes on below as a document. A
                        // per-flow record after the marker is superseded by them.
                        if let Envelope::Record(r) = env {
                            if let Some(record) =
                                derive::removed_between(&removed, deriver.position(), seq)
                            {
                                carry_past_removed(&ledger_dir, &mut deriver, record);
                            }
                            deriver.counting(counted);
                            match deriver.see(seq, r) {
                                derive::Seen::Superseded => {
                                    stats.superseded_flow_records += 1;
                                    last_seq = Some(seq);
                                    last_head = None;
                                    continue;
                                }
                                derive::Seen::Flows(rows) => {
                                    if counted {
                                        stats.events += rows.len() as u64;
                                    }
                                    if seq > facts_has {
                                        for (k, (_, rec)) in rows.iter().enumerate() {
                                            if rec.nat.is_none() {
                                                continue;
                                            }
                                            if let Some(pos) = model::flow::flow_pos(seq, k as u64)
                                            {
                                                fact_events.push((pos, derived_event(r, rec)));
                                            }
                                        }
                                    }
                                    stats.flows_cut += flows.add_derived(seq, rows)?;
                                }
                                _ => {}
                            }
                        }
                        // A flow record without NAT elements is a flow-store row and nothing
                        // else (no index document, no fact): its bytes are read straight into
                        // the row, without the event (message, fields) `decode` would build,
                        // which was the indexer's largest cost per flow.
                        if let Envelope::Record(r) = env
                            && !flows_in_index
                            && r.format == model::Format::NetflowRecord
                            && let Ok(rec) = model::flow::FlowRecord::decode(&r.raw)
                            && rec.nat.is_none()
                        {
                            if counted {
                                stats.events += 1;
                            }
                            flows.add(seq, r.observer.as_str().to_string(), rec)?;
                            last_seq = Some(seq);
                            last_head = None;
                            continue;
                        }
                        if let Envelope::Record(r) = env {
                            let event = match decoded.get_mut(i).map(std::mem::take) {
                                Some(Decoded::Event(e)) => *e,
                                // A bare conntrack line read straight into its row.
                                Some(Decoded::Nat(row)) => {
                                    if counted {
                                        stats.events += 1;
                                    }
                                    if seq > facts_has {
                                        push_nat(&mut pending_nat, *row);
                                    }
                                    last_seq = Some(seq);
                                    last_head = None;
                                    continue;
                                }
                                _ => decode::decode(r),
                            };
                            if counted {
                                stats.count(&event);
                            }
                            // Flows go to the flow store only (it skips what it holds):
                            // readers find them there (crate query, `flows`), and a document
                            // per flow was most of the index's cost (issue 16).
                            let is_flow = flows.add_event(seq, &event)?;
                            // A NAT record (conntrack, ulogd2) is a row of the fact store's NAT
                            // blocks and nothing else: readers find it there (crate query,
                            // `flows`), as they find flows in the flow store (issue 12: a
                            // document and a fact row per event were most of its ingest cost).
                            let event = if is_flow || nat_in_index {
                                event
                            } else {
                                match NatRow::from_event(seq, event) {
                                    Ok(row) => {
                                        if seq > facts_has {
                                            push_nat(&mut pending_nat, row);
                                        }
                                        last_seq = Some(seq);
                                        last_head = None;
                                        continue;
                                    }
                                    Err(event) => *event,
                                }
                            };
                            if (!is_flow || flows_in_index) && seq > index_has {
                                writer.add(seq, &event)?;
                            }
                            if seq > facts_has && FactStore::is_fact_source(&event) {
                                fact_events.push((seq, event));
                            }
                        }
                        last_seq = Some(seq);
                        last_head = None;
                    }
                    if !envelopes.is_empty() && last_seq.is_none_or(|s| s <= batch_last) {
                        last_seq = Some(batch_last);
                        last_head = head;
                    }
                    if let Some(seq) = last_seq {
                        if pending_nat.len() >= NAT_FLUSH_ROWS {
                            facts.apply_with_nat(&fact_events, &pending_nat, seq, last_head)?;
                            pending_nat.clear();
                        } else {
                            // The store's position stays before the first NAT record it does
                            // not hold yet (written at the next flush or commit): a crash
                            // before then reads them again.
                            let (pos, head) = match pending_nat.first() {
                                Some(r) if r.obs.seq <= seq => (r.obs.seq.saturating_sub(1), None),
                                _ => (seq, last_head),
                            };
                            facts.apply_at(&fact_events, pos, head)?;
                        }
                    }
                    if deriver.take_live_fed()
                        && let Ok(mut l) = live.lock()
                    {
                        *l = Some(deriver.live_stats().clone());
                    }
                    Ok(())
                };
                match msg {
                    ToIndexer::Batch {
                        envelopes,
                        last,
                        head,
                        counted,
                        index_has,
                        facts_has,
                        queued,
                    } => {
                        index(&envelopes, last, head, counted, index_has, facts_has)?;
                        // Only what was added: catch-up batches at open were never counted,
                        // and subtracting them wrapped the counter (a restart after kill -9
                        // with views behind the ledger then overflowed in `send_trailing`).
                        if let Some(sh) = &sh
                            && queued > 0
                        {
                            sh.queued_bytes.fetch_sub(queued, Relaxed);
                        }
                    }
                    ToIndexer::Range { from, to } => {
                        // Durable records the writer did not queue: read them back.
                        let mut reader = LedgerReader::open(&ledger_dir)?;
                        let mut chunk = Vec::with_capacity(4096);
                        let mut chunk_last = from;
                        let mut re = Reassembler::new();
                        let mut whole = Vec::new();
                        for item in reader.iter_from(from) {
                            let (seq, payload) = item?;
                            let seq = seq.get();
                            if seq > to {
                                break;
                            }
                            re.push(seq, stored(&payload), &mut |a| whole.push(a));
                            for a in whole.drain(..) {
                                chunk.push((a.first, a.envelope));
                                chunk_last = a.last;
                            }
                            if chunk.len() >= 4096 {
                                let head = reader.head_at(chunk_last).ok();
                                index(&chunk, chunk_last, head, true, index_had, facts_had)?;
                                chunk.clear();
                            }
                        }
                        // A bounded range is durable: a split record left open is damage,
                        // kept as found. An open-ended one (idle catch-up) may have read a
                        // batch still being written: its split record is read again next
                        // time, whole.
                        if to != u64::MAX {
                            re.flush(&mut |a| whole.push(a));
                            for a in whole.drain(..) {
                                chunk.push((a.first, a.envelope));
                                chunk_last = a.last;
                            }
                        }
                        if !chunk.is_empty() {
                            let head = reader.head_at(chunk_last).ok();
                            index(&chunk, chunk_last, head, true, index_had, facts_had)?;
                        }
                    }
                }
                // Trailing mode: while the ledger is ahead, commit only every
                // SERVE_COMMIT_WHILE_BEHIND; once caught up, every `commit_every`.
                let behind = sh
                    .as_ref()
                    .is_some_and(|sh| sh.durable_last.load(Relaxed) > last_seq.unwrap_or(0));
                let interval = if behind {
                    SERVE_COMMIT_WHILE_BEHIND
                } else {
                    commit_every
                };
                if let Some(seq) = last_seq
                    && committed != last_seq
                    && last_commit.elapsed() >= interval
                {
                    flush_nat(&mut facts, &mut pending_nat, seq, last_head)?;
                    commit_flows(&mut flows, &mut deriver, seq, last_head)?;
                    writer.commit_at(seq, last_head)?;
                    committed = last_seq;
                    last_commit = Instant::now();
                    if let Some(sh) = &sh {
                        sh.indexed_last.store(seq, Relaxed);
                    }
                }
            }
            if let Some(seq) = last_seq {
                flush_nat(&mut facts, &mut pending_nat, seq, last_head)?;
                commit_flows(&mut flows, &mut deriver, seq, last_head)?;
                writer.commit_at(seq, last_head)?;
            }
            writer.finish()?;
            stats.flows = deriver.sources().clone();
            stats.flow_sets_waiting = deriver.import_waiting();
            stats.live_sets_waiting = deriver.live_waiting();
            Ok(stats)
        });
    let handle = handle.map_err(|e| anyhow!("cannot start indexer thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = handle.join();
            return Err(e.context("opening the search index writer"));
        }
        Err(_) => {
            return Err(match handle.join() {
                Ok(Err(e)) => e,
                _ => anyhow!("indexer thread ended while starting"),
            });
        }
    }
    Ok(Indexer {
        tx,
        handle,
        shared,
        live_flows,
    })
}

/// The deriver goes on past a range retention removed from the state its retention record
/// (at `record`) carries. Without one (removed by an older build, or the record itself
/// removed since), it goes on as it is: templates the range taught are missing, and data
/// sets that needed them wait or drop, counted, as they would with a lost datagram.
fn carry_past_removed(ledger_dir: &Path, deriver: &mut derive::Deriver, record: u64) {
    let state = LedgerReader::open(ledger_dir)
        .ok()
        .and_then(|mut r| derive::carried_at(&mut r, record));
    match state.map(|s| deriver.carry(&s)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => eprintln!(
            "pugmark: the flow state retention record #{record} carries is unusable ({e}); flows after it decode without it"
        ),
        None => {}
    }
}

/// The flow store's commit at `seq`, with the deriver's state when it changed since the last
/// one: the state is that after every record up to `seq` (the indexer has seen them all).
fn commit_flows(
    flows: &mut FlowStore,
    deriver: &mut derive::Deriver,
    seq: u64,
    head: Option<[u8; 32]>,
) -> anyhow::Result<()> {
    let state = deriver.take_dirty().then(|| deriver.snapshot());
    flows.commit_at_with_state(seq, head, state.as_deref())?;
    Ok(())
}

/// The event of a flow derived from the datagram `carrier`: the flow's record in the
/// datagram's envelope (received time, observer, origin), as its per-flow record had it and
/// as `LedgerFetch` rebuilds it.
fn derived_event(
    carrier: &model::envelope::RecordEnvelope,
    rec: &model::flow::FlowRecord,
) -> Event {
    flow_event(
        carrier.received,
        carrier.observer,
        carrier.origin.clone(),
        rec,
    )
}

/// A flow's event: its record decoded in the given collector facts.
fn flow_event(
    received: model::Received,
    observer: model::Observer,
    origin: model::Origin,
    rec: &model::flow::FlowRecord,
) -> Event {
    decode::decode(&model::envelope::RecordEnvelope {
        received,
        observer,
        format: model::Format::NetflowRecord,
        hints: model::DecodeHints::default(),
        origin,
        raw: rec.encode(),
    })
}

/// The flow deriver the flow store saved with its last commit. A store without one (built
/// before derivation) goes on from its position: the listener's templates seen before it are
/// not relearned, and exporters resend theirs. A state this build cannot use is not guessed
/// around: the flow store is rebuilt from the ledger.
fn restore_deriver(dd: &DataDir, flows: FlowStore) -> anyhow::Result<(FlowStore, derive::Deriver)> {
    let limits = flow::Limits::default();
    let why = match flows.decoder_state() {
        Ok(Some(bytes)) => match derive::Deriver::restore(&bytes, limits.clone()) {
            Ok(d) => return Ok((flows, d)),
            Err(e) => e.to_string(),
        },
        Ok(None) => {
            let at = flows.last_position().map_or(0, |p| p.0);
            return Ok((flows, derive::Deriver::starting_at(at, limits)));
        }
        Err(e) => e.to_string(),
    };
    eprintln!("pugmark: {why}; rebuilding the flow store from the ledger");
    drop(flows);
    std::fs::remove_dir_all(dd.flows())
        .with_context(|| format!("removing the flow store in {}", dd.flows().display()))?;
    let flows = FlowStore::open(dd.flows())
        .with_context(|| format!("opening flow store in {}", dd.flows().display()))?;
    Ok((flows, derive::Deriver::new(limits)))
}

/// Gathers a NAT row for the next flush. The vector is sized for a whole flush at its first
/// row and keeps that capacity across flushes: growing 65 536 rows by doubling moved each row
/// many times (a tenth of the indexer thread).
fn push_nat(pending: &mut Vec<NatRow>, row: NatRow) {
    if pending.capacity() == 0 {
        pending.reserve(NAT_FLUSH_ROWS);
    }
    pending.push(row);
}

/// Below this many records a batch is decoded on the indexer's thread alone.
const PARALLEL_DECODE_MIN: usize = 512;

/// A record as the indexer's decode stage leaves it. Its payloads are boxed: a NAT row is
/// ~500 bytes and an event ~400, and the enum (as large as its largest variant), moved whole
/// between the decode threads' vectors, was most of the indexer's `memmove` (−4 % wall on a
/// million conntrack events).
#[derive(Default)]
enum Decoded {
    /// Left to the indexer: NetFlow records (read straight from their bytes when it can) and
    /// envelopes that are not records.
    #[default]
    None,
    Event(Box<Event>),
    /// A bare conntrack line, read straight into its NAT row (`NatRow::from_conntrack`):
    /// what `decode` and `NatRow::from_event` would make of it, without the event.
    Nat(Box<NatRow>),
}

/// The records of `envelopes` decoded (conntrack lines into their NAT rows when `nat_rows`),
/// on the calling thread and one helper for a large batch: decoding is pure, so which thread
/// decodes a record changes nothing.
fn decode_batch(envelopes: &[(u64, Envelope)], nat_rows: bool) -> Vec<Decoded> {
    let one = |(seq, env): &(u64, Envelope)| match env {
        Envelope::Record(r) if r.format != model::Format::NetflowRecord => {
            match nat_rows.then(|| NatRow::from_conntrack(*seq, r)).flatten() {
                Some(row) => Decoded::Nat(Box::new(row)),
                None => Decoded::Event(Box::new(decode::decode(r))),
            }
        }
        _ => Decoded::None,
    };
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    if envelopes.len() < PARALLEL_DECODE_MIN || !two {
        return envelopes.iter().map(one).collect();
    }
    let (a, b) = envelopes.split_at(envelopes.len() / 2);
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| b.iter().map(one).collect::<Vec<_>>());
        let mut out: Vec<Decoded> = a.iter().map(one).collect();
        match helper.join() {
            Ok(rest) => out.extend(rest),
            // A panic in decode is a bug; decoded again here, it shows where.
            Err(_) => out.extend(b.iter().map(one)),
        }
        out
    })
}

/// Writes the NAT records gathered so far as one flush, at position `seq`: called before every
/// index commit, so the fact store's NAT rows reach at least the index's position (a search
/// takes NAT records up to there from them, and the rest from the ledger's tail).
fn flush_nat(
    facts: &mut FactStore,
    pending: &mut Vec<NatRow>,
    seq: u64,
    head: Option<[u8; 32]>,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    facts.apply_with_nat(&[], pending, seq, head)?;
    pending.clear();
    Ok(())
}

/// The envelope of a record pugmark writes about its own ledger (a migration, a key
/// rotation, a retention run): collector-observed raw text, origin `<pugmark ledger>`, so
/// views index it like any record and `search` finds it.
pub fn admin_record(text: String) -> Vec<u8> {
    admin_envelope(text).encode()
}

/// [`admin_record`] as an envelope, for a batch being built.
pub fn admin_envelope(text: String) -> Envelope {
    Envelope::Record(model::envelope::RecordEnvelope {
        received: model::Received::now(),
        observer: model::Observer::Collector,
        format: model::Format::Raw,
        hints: model::DecodeHints::default(),
        origin: model::Origin::File {
            path: decode::ADMIN_PATH.into(),
            line: 0,
        },
        raw: text.into_bytes(),
    })
}

/// A ledger payload this build cannot read as an envelope (damaged, or written by a newer
/// pugmark): still indexed, as raw text, so it stays findable.
fn undecodable(payload: &[u8]) -> Envelope {
    Envelope::Record(model::envelope::RecordEnvelope {
        received: model::Received::from_stored(0),
        observer: model::Observer::Collector,
        format: model::Format::Unknown(0),
        hints: model::DecodeHints::default(),
        origin: model::Origin::File {
            path: "<undecodable envelope>".into(),
            line: 0,
        },
        raw: payload.to_vec(),
    })
}

/// One ledger payload as stored: a whole envelope or one part of a split record; what this
/// build cannot read is a whole raw record (`undecodable`).
pub fn stored(payload: &[u8]) -> Stored {
    Envelope::decode_stored(payload).unwrap_or_else(|_| Stored::Whole(undecodable(payload)))
}

/// The event an envelope records (None for non-record payloads such as import marks).
fn event_from_envelope(env: Envelope) -> Option<Event> {
    match env {
        Envelope::Record(r) => Some(decode::decode(&r)),
        Envelope::ImportMark(_) => None,
    }
}

/// What a query shows for a record whose payload a retention policy removed.
fn removed_placeholder(seq: u64, record: u64) -> model::envelope::RecordEnvelope {
    model::envelope::RecordEnvelope {
        received: model::Received::from_stored(0),
        observer: model::Observer::Collector,
        format: model::Format::Raw,
        hints: model::DecodeHints::default(),
        origin: model::Origin::File {
            path: decode::ADMIN_PATH.into(),
            line: 0,
        },
        raw: format!(
            "record #{seq}: payload removed by policy (retention record #{record}); its leaf hash is kept"
        )
        .into_bytes(),
    }
}

/// Fetches events for search results from the ledger by position, and derived flows (flow
/// positions, `model::flow::flow_pos`) from the flow store when it has one.
pub struct LedgerFetch {
    pub reader: LedgerReader,
    flows: Option<Arc<FlowStore>>,
    flow_cache: flowstore::LocateCache,
}

impl LedgerFetch {
    /// A fetch from `reader` alone: a flow position is an error.
    pub fn new(reader: LedgerReader) -> LedgerFetch {
        LedgerFetch {
            reader,
            flows: None,
            flow_cache: Default::default(),
        }
    }

    /// Derived flows come from `flows` (the store the index reads them from).
    pub fn with_flows(mut self, flows: Option<Arc<FlowStore>>) -> LedgerFetch {
        self.flows = flows;
        self
    }

    /// The event of a derived flow: its row in the flow store, in the envelope of the datagram
    /// whose decoding emitted it (received time, origin: what the per-flow record written at
    /// that datagram's ingest carried), its observer the row's.
    fn fetch_flow(&mut self, pos: u64) -> anyhow::Result<Event> {
        let gone = || {
            anyhow!(
                "a derived flow this answer cites is not in the flow store; run `pugmark reindex`"
            )
        };
        let store = self.flows.as_ref().ok_or_else(gone)?;
        let row = store
            .locate_cached(pos, &mut self.flow_cache)?
            .ok_or_else(gone)?;
        let (received, origin) = match fetch_stored(&mut self.reader, row.seq, row.seq)? {
            Got::Envelope(Envelope::Record(r)) => (r.received, r.origin),
            Got::Envelope(Envelope::ImportMark(_)) => {
                return Err(anyhow!(
                    "ledger record #{} is not the datagram the flow store says; run `pugmark reindex`",
                    row.seq
                ));
            }
            Got::Removed(record) => {
                let p = removed_placeholder(row.seq, record);
                (p.received, p.origin)
            }
        };
        let observer = row.observer.parse::<model::Observer>().map_err(|_| {
            anyhow!(
                "a derived flow of ledger record #{} names an unknown observer {:?}; run `pugmark reindex`",
                row.seq,
                row.observer
            )
        })?;
        Ok(flow_event(received, observer, origin, &row.rec))
    }
}

/// Records a fetch reads on a second thread at least (fewer are not worth a thread).
const PARALLEL_FETCH_MIN: usize = 256;

impl query::search::Fetch for LedgerFetch {
    fn fetch(&mut self, seq: u64) -> anyhow::Result<Event> {
        if model::flow::is_flow_pos(seq) {
            return self.fetch_flow(seq);
        }
        fetch_event(&mut self.reader, seq, seq)
    }

    /// In ledger order (each block decompressed once), split between this thread and a second
    /// one with a twin reader: a VO's search or a VM's timeline reads thousands of records
    /// spread over as many blocks, and zstd is most of its time (2 cores here).
    fn fetch_many(&mut self, seqs: &[u64]) -> Vec<anyhow::Result<Event>> {
        if seqs.iter().any(|&s| model::flow::is_flow_pos(s)) {
            // Derived flows one by one, in position order (the flow store's partitions and the
            // emitting datagrams' blocks then read once each); the rest as below.
            let mut order: Vec<usize> = (0..seqs.len()).collect();
            order.sort_by_key(|&i| seqs[i]);
            let mut out: Vec<Option<anyhow::Result<Event>>> =
                (0..seqs.len()).map(|_| None).collect();
            let (flows, records): (Vec<usize>, Vec<usize>) = order
                .into_iter()
                .partition(|&i| model::flow::is_flow_pos(seqs[i]));
            let plain: Vec<u64> = records.iter().map(|&i| seqs[i]).collect();
            for (i, e) in records.into_iter().zip(self.fetch_many(&plain)) {
                out[i] = Some(e);
            }
            for i in flows {
                out[i] = Some(self.fetch_flow(seqs[i]));
            }
            return out
                .into_iter()
                .map(|e| e.unwrap_or_else(|| Err(anyhow!("record not read"))))
                .collect();
        }
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i]);
        let twin = if seqs.len() >= PARALLEL_FETCH_MIN {
            self.reader.twin().ok()
        } else {
            None
        };
        let mut out: Vec<Option<anyhow::Result<Event>>> = (0..seqs.len()).map(|_| None).collect();
        match twin {
            None => {
                for (i, e) in fetch_sorted(&mut self.reader, seqs, &order) {
                    out[i] = Some(e);
                }
            }
            Some(mut twin) => {
                let (mine, theirs) = order.split_at(order.len() / 2);
                let reader = &mut self.reader;
                let (a, b) = std::thread::scope(|sc| {
                    let other = sc.spawn(move || fetch_sorted(&mut twin, seqs, theirs));
                    (fetch_sorted(reader, seqs, mine), other.join())
                });
                // The other thread panicked: read its share here.
                let b = b.unwrap_or_else(|_| fetch_sorted(&mut self.reader, seqs, theirs));
                for (i, e) in a.into_iter().chain(b) {
                    out[i] = Some(e);
                }
            }
        }
        out.into_iter()
            .map(|e| e.unwrap_or_else(|| Err(anyhow!("record not read"))))
            .collect()
    }
}

/// The events of `seqs[i]` for each `i` of `share` (in ascending seq order), each block
/// decompressed as far as the last of them it holds, once.
fn fetch_sorted(
    reader: &mut LedgerReader,
    seqs: &[u64],
    share: &[usize],
) -> Vec<(usize, anyhow::Result<Event>)> {
    let mut out = Vec::with_capacity(share.len());
    for (j, &i) in share.iter().enumerate() {
        let seq = seqs[i];
        let through = match reader.block_last(seq) {
            Some(last) => {
                let rest = &share[j..];
                rest[rest.partition_point(|&k| seqs[k] <= last).saturating_sub(1)]
            }
            None => i,
        };
        out.push((i, fetch_event(reader, seq, seqs[through].max(seq))));
    }
    out
}

/// The event of ledger record `seq` (a split record reassembled), as the indexer decodes it;
/// records up to `through` of its block are read next ([`LedgerReader::get_through`]).
fn fetch_event(reader: &mut LedgerReader, seq: u64, through: u64) -> anyhow::Result<Event> {
    match fetch_stored(reader, seq, through)? {
        Got::Envelope(env) => {
            event_from_envelope(env).ok_or_else(|| anyhow!("ledger record #{seq} is not an event"))
        }
        // A view built before a retention run still cites the record: answer with what is
        // left of it (until `reindex` drops it) rather than fail the whole query.
        Got::Removed(record) => Ok(decode::decode(&removed_placeholder(seq, record))),
    }
}

/// A ledger record as a fetch finds it.
enum Got {
    Envelope(Envelope),
    /// Its payload was removed by the retention record at this position.
    Removed(u64),
}

/// The envelope of ledger record `seq` (a split record reassembled), or that a retention run
/// removed it; records up to `through` of its block are read next.
fn fetch_stored(reader: &mut LedgerReader, seq: u64, through: u64) -> anyhow::Result<Got> {
    {
        let payload = match reader.get_through(seq, through) {
            Ok(p) => p,
            Err(ledger::LedgerError::Removed { record, .. }) => {
                return Ok(Got::Removed(record));
            }
            Err(e) => return Err(e).with_context(|| format!("reading ledger record #{seq}")),
        };
        let env = match stored(&payload) {
            Stored::Whole(e) => e,
            // A split record: its continuations follow it.
            Stored::Head { record, parts } => {
                let mut re = Reassembler::new();
                let mut got = None;
                re.push(seq, Stored::Head { record, parts }, &mut |a| got = Some(a));
                for item in reader.iter_from(seq + 1).take(parts as usize - 1) {
                    let (s, p) = item.with_context(|| format!("reading ledger record #{seq}"))?;
                    re.push(s.get(), stored(&p), &mut |a| got = got.take().or(Some(a)));
                }
                re.flush(&mut |a| got = got.take().or(Some(a)));
                got.map(|a| a.envelope)
                    .ok_or_else(|| anyhow!("ledger record #{seq}: split record unreadable"))?
            }
            Stored::Continuation { part, parts, .. } => {
                return Err(anyhow!(
                    "ledger record #{seq} is part {} of {parts} of the split record at #{}",
                    part + 1,
                    seq - u64::from(part)
                ));
            }
        };
        Ok(Got::Envelope(env))
    }
}

/// The ledger records past the index's last position, for a search that must cover them
/// ([`query::search::Tail`]). Decodes them exactly as the indexer does.
pub struct LedgerTail {
    records: ledger::Records,
    /// The index's position: records after it are the tail.
    indexed: u64,
    last: u64,
    re: Reassembler,
    /// The flows of the tail's datagrams (docs/design/flow-derivation.md §2.5).
    flows: Option<TailFlows>,
}

/// What a tail needs to show the flows of datagrams past the index: those the flow store
/// holds already (it commits just before the index), and those derived here from its saved
/// decoder state.
struct TailFlows {
    store: Arc<FlowStore>,
    /// The flow store's position: the flows of datagrams up to it are its rows.
    at: u64,
    deriver: derive::Deriver,
    cache: flowstore::LocateCache,
}

impl LedgerTail {
    /// Records `indexed + 1 ..= last` of `reader`.
    pub fn new(reader: &LedgerReader, indexed: u64, last: u64) -> LedgerTail {
        LedgerTail {
            records: reader.iter_from(indexed + 1),
            indexed,
            last,
            re: Reassembler::new(),
            flows: None,
        }
    }

    /// Also the flows of the tail's datagrams, as the views will derive them: rows of `store`
    /// for the datagrams it holds, then the datagrams after it decoded from its saved state
    /// (a flow store behind the index moves the ledger read back to its position; records
    /// the index holds only teach the decoders). A per-flow record after the ledger's
    /// `derive-flows` marker is left out, as the views leave it. Without a store, or with a
    /// state this build cannot read, the tail is the records alone.
    pub fn with_flows(
        mut self,
        reader: &LedgerReader,
        store: Option<Arc<FlowStore>>,
    ) -> LedgerTail {
        let Some(store) = store else {
            return self;
        };
        let at = store.last_position().map_or(0, |p| p.0);
        let limits = flow::Limits::default();
        let deriver = match store.decoder_state() {
            Ok(Some(b)) => derive::Deriver::restore(&b, limits).ok(),
            Ok(None) => Some(derive::Deriver::starting_at(at, limits)),
            Err(_) => None,
        };
        let Some(deriver) = deriver else {
            return self;
        };
        self.records = reader.iter_from(self.indexed.min(at) + 1);
        self.flows = Some(TailFlows {
            store,
            at,
            deriver,
            cache: Default::default(),
        });
        self
    }
}

impl TailFlows {
    /// Visits the flows of record `seq` (`env`); whether the record itself is left out (a
    /// per-flow record the derived flows stand for).
    fn visit(
        &mut self,
        seq: u64,
        env: &model::envelope::RecordEnvelope,
        indexed: u64,
        decode: bool,
        visit: &mut dyn FnMut(u64, Option<Event>),
    ) -> anyhow::Result<bool> {
        if seq > self.at {
            return Ok(match self.deriver.see(seq, env) {
                derive::Seen::Flows(rows) => {
                    for (k, (_, rec)) in rows.iter().enumerate() {
                        if let Some(pos) = model::flow::flow_pos(seq, k as u64) {
                            visit(pos, decode.then(|| derived_event(env, rec)));
                        }
                    }
                    false
                }
                derive::Seen::Superseded => true,
                _ => false,
            });
        }
        if seq <= indexed {
            return Ok(false);
        }
        match env.format {
            model::Format::NetflowDatagram => {
                for k in 0.. {
                    let Some(pos) = model::flow::flow_pos(seq, k) else {
                        break;
                    };
                    let Some(row) = self.store.locate_cached(pos, &mut self.cache)? else {
                        break;
                    };
                    visit(pos, decode.then(|| derived_event(env, &row.rec)));
                }
                Ok(false)
            }
            model::Format::NetflowRecord => Ok(self.deriver.marker().is_some_and(|m| seq > m)),
            _ => Ok(false),
        }
    }
}

impl query::search::Tail for LedgerTail {
    fn scan(
        &mut self,
        decode: bool,
        visit: &mut dyn FnMut(u64, Option<Event>),
    ) -> anyhow::Result<()> {
        let mut whole = Vec::new();
        let indexed = self.indexed;
        let emit = |whole: &mut Vec<Assembled>,
                    flows: &mut Option<TailFlows>,
                    visit: &mut dyn FnMut(u64, Option<Event>)|
         -> anyhow::Result<()> {
            for a in whole.drain(..) {
                if let (Some(f), Envelope::Record(r)) = (flows.as_mut(), &a.envelope)
                    && f.visit(a.first, r, indexed, decode, visit)?
                {
                    continue;
                }
                if a.first <= indexed {
                    continue;
                }
                if decode {
                    if let Some(e) = event_from_envelope(a.envelope) {
                        visit(a.first, Some(e));
                    }
                } else if !matches!(a.envelope, Envelope::ImportMark(_)) {
                    visit(a.first, None);
                }
            }
            Ok(())
        };
        for item in self.records.by_ref() {
            let (seq, payload) = item.context("reading the ledger past the index")?;
            if seq.get() > self.last {
                break;
            }
            self.re
                .push(seq.get(), stored(&payload), &mut |a| whole.push(a));
            emit(&mut whole, &mut self.flows, visit)?;
        }
        // The tail ends at a durable position, never inside a split record.
        self.re.flush(&mut |a| whole.push(a));
        emit(&mut whole, &mut self.flows, visit)?;
        Ok(())
    }
}

/// The data directory's flow store, for reading (a live writer's files are left alone).
pub fn open_flows(dd: &DataDir) -> anyhow::Result<FlowStore> {
    FlowStore::open_read(dd.flows())
        .with_context(|| format!("opening flow store in {}", dd.flows().display()))
}

/// What the read-only verbs (`timeline`, `report`, `check`, `hunt`) open: the search index,
/// the fact store and the ledger (to turn positions into events), after holding both views
/// against the ledger ([`crate::viewcheck`]: a missing or foreign view is refused, a
/// trailing one noted).
pub struct Readers {
    pub index: SearchIndex,
    pub facts: FactStore,
    pub fetch: LedgerFetch,
    /// Where the views stood when opened (`--json` adds it as `views`).
    pub views: crate::viewcheck::ViewsCheck,
}

impl Readers {
    pub fn open(dd: &DataDir) -> anyhow::Result<Readers> {
        use crate::viewcheck::{View, check};
        // `net.flow` events are read from the flow store (not index documents): held against
        // the ledger like the others when present. A directory without one was written
        // before it existed, and its index still holds the flows.
        let has_flows = flowstore::FlowStore::exists(dd.flows());
        let which: &[View] = if has_flows {
            &[View::Index, View::Facts, View::Flows]
        } else {
            &[View::Index, View::Facts]
        };
        let views = check(dd, which)?.require("the query")?;
        let mut index = SearchIndex::open_or_create(dd.index())
            .with_context(|| format!("opening search index in {}", dd.index().display()))?;
        if has_flows {
            // Flows up to the index's position, like the index's own answer.
            let cap = index.snapshot_seq();
            index.attach_flows(open_flows(dd)?, cap);
        }
        let facts = FactStore::open(dd.facts())
            .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
        // NAT records (conntrack, ulogd2) are the fact store's NAT blocks, not documents:
        // up to the index's position too (the fact store holds at least that much of them).
        let cap = index.snapshot_seq();
        index.attach_nat(
            FactStore::open(dd.facts())
                .with_context(|| format!("opening fact store in {}", dd.facts().display()))?,
            cap,
        );
        let reader = LedgerReader::open(&dd.ledger())
            .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
        let fetch = LedgerFetch::new(reader).with_flows(index.flows_shared());
        Ok(Readers {
            index,
            facts,
            fetch,
            views,
        })
    }
}

/// Puts the calling thread under SCHED_IDLE (`idle`), or back under SCHED_OTHER: it runs only
/// on a CPU nothing else wants, and threads it starts inherit that. Nice 10 alone still gave
/// the views about a tenth of a contended core, and on 2 cores that was a quarter of the
/// ledger path's throughput (durable 583k → 758k msgs/s, bench/serve, 2026-12-03). The
/// indexer opens the index writer first (`serve` waits for that, and a SCHED_IDLE thread
/// waits for an idle CPU), then restarts tantivy's threads from here; the flush at shutdown
/// leaves SCHED_IDLE. Best effort.
fn set_idle(idle: bool) {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id, thread_schedule_policy,
    };
    let policy = ThreadSchedulePolicy::Normal(if idle {
        NormalThreadSchedulePolicy::Idle
    } else {
        NormalThreadSchedulePolicy::Other
    });
    // The crate then also sets a nice value (0 for SCHED_IDLE, 19 for SCHED_OTHER with `Min`);
    // an unprivileged process may not lower 10 to 0, which fails the call after the policy
    // itself has changed: what matters is the policy.
    let set = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        policy,
    );
    if let Err(e) = set
        && thread_schedule_policy().ok() != Some(policy)
    {
        eprintln!("pugmark: cannot set the indexer's scheduling policy: {e:?}");
    }
}
