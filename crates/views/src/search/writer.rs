//! Adding events to the search index: one document per `(seq, Event)`, made visible (and
//! durable) by [`IndexWriter::commit`], which also records the last ledger position indexed.
//!
//! The writer does not read the ledger and does not decide batch sizes: the ingest pipeline
//! and `pugmark reindex` drive it. Segment merging runs in the background (tantivy's log merge
//! policy); call [`IndexWriter::finish`] after a large ingest so merges complete before exit.

use std::net::IpAddr;

use model::Event;
use tantivy::indexer::LogMergePolicy;
use tantivy::{DateTime, Index, TantivyDocument};

use super::schema::{Fields, KEYWORD_MAX_BYTES, has_kv_term, ip_key, keyword_term, kv_term};
use crate::error::{Result, SearchError};

/// Segments with more documents than this are left out of merges (see [`set_policy`]).
const MERGE_MAX_DOCS: usize = 1_000_000;

fn set_policy(inner: &tantivy::IndexWriter) {
    let mut policy = LogMergePolicy::default();
    // Merge eagerly enough that a big store opens with few segments.
    policy.set_min_num_segments(4);
    // But never merge segments already this large: a merge's memory grows with the documents
    // it merges (anonymous memory for its doc-id maps and columns, and every merged file
    // mapped). At 20 M (merged segments of ~60 M records) `ingest` of 100 M lines peaked at
    // 2.96 GB RSS; at 2.5 M at 554 MB; at 1 M at 464–473 MB with as many segments at 100 M
    // (38–42) and rare-term / IP search no slower (BENCHMARKS.md "100 M lines, smaller
    // merges"). One merge at a time instead of four did not help: a single merge is the peak.
    policy.set_max_docs_before_merge(MERGE_MAX_DOCS);
    inner.set_merge_policy(Box::new(policy));
}

/// Writes events into a [`super::SearchIndex`]. One per index at a time (tantivy holds a lock
/// file while it lives).
pub struct IndexWriter {
    inner: tantivy::IndexWriter,
    fields: Fields,
}

pub(crate) fn date(ts: jiff::Timestamp) -> DateTime {
    // i64 nanoseconds cover 1677..2262; clamp anything outside instead of failing.
    let nanos = ts.as_nanosecond();
    let clamped = nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    DateTime::from_timestamp_nanos(i64::try_from(clamped).unwrap_or(i64::MAX))
}

/// Whether a host or app name is found through its keyword term alone: an ASCII name no longer
/// than [`KEYWORD_MAX_BYTES`] is its term lower-cased, so the words of the term are the words of
/// the name, and a word query finds the record through the names holding the word
/// (`lookup.rs`) instead of a `text` posting per record (~2 of ~16 per syslog line; the index
/// 7 % smaller on bench/gen's day, BENCHMARKS.md). Any other name is indexed as words too.
fn name_is_its_term(name: &str) -> bool {
    name.is_ascii() && name.len() <= KEYWORD_MAX_BYTES
}

impl IndexWriter {
    pub(crate) fn new(
        index: &Index,
        fields: Fields,
        threads: usize,
        heap_bytes: usize,
    ) -> Result<IndexWriter> {
        let threads = threads.max(1);
        // tantivy needs at least 15 MB per thread.
        let heap = heap_bytes.max(threads * 16_000_000);
        let inner: tantivy::IndexWriter = index
            .writer_with_num_threads(threads, heap)
            .map_err(SearchError::engine("open writer"))?;
        set_policy(&inner);
        Ok(IndexWriter { inner, fields })
    }

    /// Starts the writer's threads (indexing workers, merge pool, segment updater) again from
    /// the calling thread, so they inherit its scheduling policy and nice value (Linux threads
    /// take them from the thread that starts them). Whatever was added and not committed is
    /// dropped: call it before adding anything.
    pub fn restart_threads(&mut self) -> Result<()> {
        self.inner
            .rollback()
            .map_err(SearchError::engine("restart writer threads"))?;
        set_policy(&self.inner);
        Ok(())
    }

    /// Adds the event at ledger position `seq`. Not visible until [`IndexWriter::commit`].
    pub fn add(&mut self, seq: u64, event: &Event) -> Result<()> {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.seq, seq);
        doc.add_date(f.placed, date(event.placed()));
        doc.add_date(f.received, date(event.received.timestamp()));
        if let Some(host) = &event.host {
            doc.add_text(f.host, keyword_term(host));
            if !name_is_its_term(host) {
                doc.add_text(f.text, host);
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                doc.add_ip_addr(f.ip, ip_key(ip));
            }
        }
        if let Some(app) = &event.app {
            doc.add_text(f.app, keyword_term(app));
            if !name_is_its_term(app) {
                doc.add_text(f.text, app);
            }
        }
        doc.add_text(f.class, event.class.as_str());
        doc.add_text(f.observer, event.observer.as_str());
        doc.add_text(f.source, keyword_term(&event.source_kind));
        for (name, value) in &event.fields {
            if has_kv_term(name) {
                doc.add_text(f.kv, kv_term(name, value));
            }
        }
        for ip in &event.ips {
            doc.add_ip_addr(f.ip, ip_key(*ip));
        }
        if let Some(src) = event
            .field(model::fields::SRC_IP)
            .and_then(|v| v.parse::<IpAddr>().ok())
        {
            doc.add_ip_addr(f.src, ip_key(src));
        }
        doc.add_text(f.text, &event.message);
        self.inner
            .add_document(doc)
            .map_err(SearchError::engine("add"))?;
        Ok(())
    }

    /// Makes everything added so far durable and visible to newly reloaded readers, recording
    /// `last_seq` as the last ledger position indexed ([`super::SearchIndex::last_indexed_seq`]).
    pub fn commit(&mut self, last_seq: u64) -> Result<()> {
        self.commit_at(last_seq, None)
    }

    /// [`IndexWriter::commit`], also recording `head`, the ledger's chain head at `last_seq`
    /// ([`super::SearchIndex::last_position`]).
    pub fn commit_at(&mut self, last_seq: u64, head: Option<[u8; 32]>) -> Result<()> {
        let mut prepared = self
            .inner
            .prepare_commit()
            .map_err(SearchError::engine("commit"))?;
        let payload = match head {
            Some(h) => format!("{last_seq} {}", super::head_hex(&h)),
            None => last_seq.to_string(),
        };
        prepared.set_payload(&payload);
        prepared.commit().map_err(SearchError::engine("commit"))?;
        Ok(())
    }

    /// Removes every document and commits the empty index (no last indexed seq).
    pub fn delete_all(&mut self) -> Result<()> {
        self.inner
            .delete_all_documents()
            .map_err(SearchError::engine("delete all"))?;
        let mut prepared = self
            .inner
            .prepare_commit()
            .map_err(SearchError::engine("commit"))?;
        prepared.set_payload("");
        prepared.commit().map_err(SearchError::engine("commit"))?;
        Ok(())
    }

    /// Merges every committed segment into one (for after `reindex` or a bulk import: one
    /// segment opens and searches fastest), then waits for background merges.
    pub fn merge_all(mut self) -> Result<()> {
        let ids = self
            .inner
            .index()
            .searchable_segment_ids()
            .map_err(SearchError::engine("merge"))?;
        if ids.len() > 1 {
            self.inner
                .merge(&ids)
                .wait()
                .map_err(SearchError::engine("merge"))?;
        }
        self.finish()
    }

    /// Waits for background merges to finish and releases the writer lock. Uncommitted
    /// documents are dropped: commit first.
    pub fn finish(self) -> Result<()> {
        self.inner
            .wait_merging_threads()
            .map_err(SearchError::engine("finish merges"))
    }
}
