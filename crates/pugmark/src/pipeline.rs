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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ledger::{Ledger, LedgerOptions, LedgerReader, OpenReport, Receipt};
use model::{Envelope, Event};
use views::facts::FactStore;
use views::search::SearchIndex;

use crate::datadir::DataDir;
use crate::imports::ImportsView;

/// Memory for tantivy's indexing buffers.
const INDEX_HEAP_BYTES: usize = 200 * 1024 * 1024;
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

/// What decoding found, by parse-issue kind, for the summary.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub events: u64,
    pub events_with_issues: u64,
    pub issues_by_kind: BTreeMap<String, u64>,
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
        first_seq: u64,
        envelopes: Vec<Envelope>,
        counted: bool,
        /// Records at or below these positions are already in the search index / fact store
        /// (catch-up after a crash can overlap one view and not the other).
        index_has: u64,
        facts_has: u64,
    },
    /// Records `from..=to` are in the ledger but were not sent (trailing mode, the indexer
    /// was behind): read them back from the ledger.
    Range { from: u64, to: u64 },
}

struct Indexer {
    tx: SyncSender<ToIndexer>,
    handle: JoinHandle<anyhow::Result<DecodeStats>>,
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
}

impl Pipeline {
    pub fn open(dd: &DataDir) -> anyhow::Result<Pipeline> {
        Pipeline::open_with(dd, INDEX_COMMIT_EVERY)
    }

    /// For a live server: views committed at least every `commit_every`, and `append` never
    /// waits for them. When the indexer is behind, durable batches are not queued for it
    /// (memory stays bounded); it reads them back from the ledger when it gets there, so
    /// the views trail the ledger (searchable later) while acknowledgements do not wait for
    /// indexing.
    pub fn open_trailing(dd: &DataDir, commit_every: Duration) -> anyhow::Result<Pipeline> {
        Pipeline::open_inner(dd, commit_every, true)
    }

    /// Like [`Pipeline::open`], committing the views at least every `commit_every` — also
    /// when no more records arrive, so a live server's last records become searchable
    /// without waiting for the next ones (`pugmark serve` uses a short interval).
    pub fn open_with(dd: &DataDir, commit_every: Duration) -> anyhow::Result<Pipeline> {
        Pipeline::open_inner(dd, commit_every, false)
    }

    fn open_inner(
        dd: &DataDir,
        commit_every: Duration,
        trailing: bool,
    ) -> anyhow::Result<Pipeline> {
        let opts = LedgerOptions {
            key_path: dd.signing_key(),
            ..LedgerOptions::default()
        };
        let (ledger, open_report) = Ledger::open(&dd.ledger(), opts)
            .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
        let index = SearchIndex::open_or_create(dd.index())
            .with_context(|| format!("opening search index in {}", dd.index().display()))?;
        let imports = ImportsView::open(&dd.imports())?;
        let facts = FactStore::open(dd.facts())
            .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
        let indexed = index.last_indexed_seq()?.unwrap_or(0);
        let facts_has = facts.last_seq()?.unwrap_or(0);
        let writer = index.writer_with_threads(index_threads(), INDEX_HEAP_BYTES)?;
        // In trailing mode an idle indexer reads what it has not seen from the ledger.
        let idle_catch_up = trailing.then(|| indexed.min(facts_has));
        let indexer = spawn_indexer(writer, facts, commit_every, dd.ledger(), idle_catch_up);
        let mut p = Pipeline {
            ledger,
            imports,
            indexer: Some(indexer),
            caught_up: 0,
            open_report,
            trailing,
            gap: None,
        };
        p.catch_up(&dd.ledger(), indexed, facts_has)?;
        Ok(p)
    }

    /// Feed the views every ledger record they have not seen (after a crash, or a deleted view).
    fn catch_up(&mut self, ledger_dir: &Path, indexed: u64, facts_has: u64) -> anyhow::Result<()> {
        let last = self.ledger.next_seq().saturating_sub(1);
        let from = indexed.min(facts_has).min(self.imports.last_seq()) + 1;
        if from > last {
            return Ok(());
        }
        let reader = LedgerReader::open(ledger_dir)?;
        let mut batch = Vec::with_capacity(4096);
        let mut first = from;
        for item in reader.iter_from(from) {
            let (seq, payload) = item?;
            let seq = seq.get();
            if seq > last {
                break;
            }
            let env = Envelope::decode(&payload).unwrap_or_else(|_| undecodable(&payload));
            if seq > self.imports.last_seq()
                && let Envelope::ImportMark(m) = &env
            {
                self.imports.apply(seq, m);
            }
            // Records both views already have are skipped: re-adding would duplicate documents.
            if seq <= indexed.min(facts_has) {
                first = seq + 1;
                continue;
            }
            if batch.is_empty() {
                first = seq;
            }
            batch.push(env);
            self.caught_up += 1;
            if batch.len() == 4096 {
                self.send(first, std::mem::take(&mut batch), false, indexed, facts_has)?;
            }
        }
        if !batch.is_empty() {
            self.send(first, batch, false, indexed, facts_has)?;
        }
        self.imports.advance(last);
        Ok(())
    }

    /// The ledger position the next appended record will take (NetFlow flow records name
    /// their datagram's position before the batch is appended: `crate::netflow`).
    pub fn next_seq(&self) -> u64 {
        self.ledger.next_seq()
    }

    pub fn imports(&self) -> &ImportsView {
        &self.imports
    }

    /// Append envelopes as one durable batch, then hand them to the views.
    pub fn append(&mut self, envelopes: Vec<Envelope>) -> anyhow::Result<Receipt> {
        let payloads: Vec<Vec<u8>> = envelopes.iter().map(Envelope::encode).collect();
        let receipt = self
            .ledger
            .append_batch(payloads.iter().map(Vec::as_slice))?;
        let first = receipt.first.get();
        for (i, env) in envelopes.iter().enumerate() {
            if let Envelope::ImportMark(m) = env {
                self.imports.apply(first + i as u64, m);
            }
        }
        let last = first + receipt.count.saturating_sub(1);
        self.imports.advance(last);
        if self.trailing {
            self.send_trailing(first, last, envelopes)?;
        } else {
            self.send(first, envelopes, true, 0, 0)?;
        }
        Ok(receipt)
    }

    /// Hand a durable batch to the indexer if it has room, else remember it as a gap the
    /// indexer reads back from the ledger (gaps are sent first, so the order is kept).
    fn send_trailing(
        &mut self,
        first: u64,
        last: u64,
        envelopes: Vec<Envelope>,
    ) -> anyhow::Result<()> {
        use std::sync::mpsc::TrySendError;
        let tx = &self
            .indexer
            .as_ref()
            .ok_or_else(|| anyhow!("indexer already stopped"))?
            .tx;
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
        if !dead {
            let batch = ToIndexer::Batch {
                first_seq: first,
                envelopes,
                counted: true,
                index_has: 0,
                facts_has: 0,
            };
            match tx.try_send(batch) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {
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
        first_seq: u64,
        envelopes: Vec<Envelope>,
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
                first_seq,
                envelopes,
                counted,
                index_has,
                facts_has,
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
        let Some(Indexer { tx, handle }) = self.indexer.take() else {
            return Ok(DecodeStats::default());
        };
        drop(tx);
        handle
            .join()
            .map_err(|_| anyhow!("indexer thread panicked"))?
    }

    /// Commit the views and close the ledger (which writes a signed checkpoint).
    pub fn finish(mut self) -> anyhow::Result<DecodeStats> {
        if let (Some((from, to)), Some(indexer)) = (self.gap.take(), self.indexer.as_ref()) {
            // Blocking: the views must hold everything the ledger holds when we return.
            let _ = indexer.tx.send(ToIndexer::Range { from, to });
        }
        let stats = self.stop_indexer()?;
        self.imports.save()?;
        self.ledger.close()?;
        Ok(stats)
    }
}

fn spawn_indexer(
    mut writer: views::search::IndexWriter,
    mut facts: FactStore,
    commit_every: Duration,
    ledger_dir: std::path::PathBuf,
    idle_catch_up: Option<u64>,
) -> Indexer {
    let (tx, rx) = sync_channel::<ToIndexer>(8);
    let handle = std::thread::Builder::new()
        .name("pugmark-index".into())
        .spawn(move || -> anyhow::Result<DecodeStats> {
            let mut stats = DecodeStats::default();
            // Trailing mode: everything up to here is in the views already.
            let mut last_seq = idle_catch_up.filter(|&s| s > 0);
            let mut last_commit = Instant::now();
            let mut committed = last_seq;
            loop {
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
                            writer.commit(seq)?;
                            committed = last_seq;
                            last_commit = Instant::now();
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let mut index = |first_seq: u64,
                                 envelopes: &[Envelope],
                                 counted: bool,
                                 index_has: u64,
                                 facts_has: u64|
                 -> anyhow::Result<()> {
                    let mut fact_events = Vec::new();
                    for (i, env) in envelopes.iter().enumerate() {
                        let seq = first_seq + i as u64;
                        // A gap read back from the ledger can overlap what an idle catch-up
                        // already read: positions only move forward.
                        if idle_catch_up.is_some()
                            && let Some(done) = last_seq
                            && seq <= done
                        {
                            continue;
                        }
                        if let Envelope::Record(r) = env {
                            let event = decode::decode(r);
                            if counted {
                                stats.count(&event);
                            }
                            if seq > index_has {
                                writer.add(seq, &event)?;
                            }
                            if seq > facts_has && FactStore::is_fact_source(&event) {
                                fact_events.push((seq, event));
                            }
                        }
                        last_seq = Some(seq);
                    }
                    if let Some(seq) = last_seq {
                        facts.apply(&fact_events, seq)?;
                    }
                    Ok(())
                };
                match msg {
                    ToIndexer::Batch {
                        first_seq,
                        envelopes,
                        counted,
                        index_has,
                        facts_has,
                    } => index(first_seq, &envelopes, counted, index_has, facts_has)?,
                    ToIndexer::Range { from, to } => {
                        // Durable records the writer did not queue: read them back.
                        let reader = LedgerReader::open(&ledger_dir)?;
                        let mut chunk = Vec::with_capacity(4096);
                        let mut first = from;
                        for item in reader.iter_from(from) {
                            let (seq, payload) = item?;
                            let seq = seq.get();
                            if seq > to {
                                break;
                            }
                            if chunk.is_empty() {
                                first = seq;
                            }
                            chunk.push(
                                Envelope::decode(&payload)
                                    .unwrap_or_else(|_| undecodable(&payload)),
                            );
                            if chunk.len() == 4096 {
                                index(first, &chunk, true, 0, 0)?;
                                chunk.clear();
                            }
                        }
                        if !chunk.is_empty() {
                            index(first, &chunk, true, 0, 0)?;
                        }
                    }
                }
                if let Some(seq) = last_seq
                    && committed != last_seq
                    && last_commit.elapsed() >= commit_every
                {
                    writer.commit(seq)?;
                    committed = last_seq;
                    last_commit = Instant::now();
                }
            }
            if let Some(seq) = last_seq {
                writer.commit(seq)?;
            }
            writer.finish()?;
            Ok(stats)
        });
    let handle = match handle {
        Ok(h) => h,
        Err(e) => std::thread::spawn(move || Err(anyhow!("cannot start indexer thread: {e}"))),
    };
    Indexer { tx, handle }
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

/// Turn a ledger payload into the event it records (None for non-record payloads such as
/// import marks).
pub fn event_from_payload(payload: &[u8]) -> Option<Event> {
    match Envelope::decode(payload).unwrap_or_else(|_| undecodable(payload)) {
        Envelope::Record(r) => Some(decode::decode(&r)),
        Envelope::ImportMark(_) => None,
    }
}

/// Fetches events for search results from the ledger by position.
pub struct LedgerFetch {
    pub reader: LedgerReader,
}

impl query::search::Fetch for LedgerFetch {
    fn fetch(&mut self, seq: u64) -> anyhow::Result<Event> {
        let payload = self
            .reader
            .get(seq)
            .with_context(|| format!("reading ledger record #{seq}"))?;
        event_from_payload(&payload).ok_or_else(|| anyhow!("ledger record #{seq} is not an event"))
    }
}

/// What the read-only verbs (`timeline`, `report`) open: the search index, the fact store and
/// the ledger (to turn positions into events).
pub struct Readers {
    pub index: SearchIndex,
    pub facts: FactStore,
    pub fetch: LedgerFetch,
}

impl Readers {
    pub fn open(dd: &DataDir) -> anyhow::Result<Readers> {
        let index = SearchIndex::open_or_create(dd.index())
            .with_context(|| format!("opening search index in {}", dd.index().display()))?;
        let facts = FactStore::open(dd.facts())
            .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
        let reader = LedgerReader::open(&dd.ledger())
            .with_context(|| format!("opening ledger in {}", dd.ledger().display()))?;
        Ok(Readers {
            index,
            facts,
            fetch: LedgerFetch { reader },
        })
    }
}
