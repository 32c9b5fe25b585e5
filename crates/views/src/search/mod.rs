//! The search index: one tantivy document per ledger record, answering "which ledger positions
//! match" in placed-time order (`Event::placed()`).
//!
//! Schema (see `schema.rs`): `seq` (the ledger position) and `placed` (`Event::placed()`: collector time, else reported)/`received` as fast columns
//! for ordering and time ranges; `host`, `app`, `class`, `observer`, `source` and `kv`
//! (`name=value`, except the high-cardinality [`TEXT_ONLY_FIELDS`]) as lower-cased exact
//! terms; `ip` as IP terms (IPv4 mapped into IPv6) so `ip:10.0.0.0/8` is a term range; `text`
//! (the message; host and app words come from their keyword terms) as lower-cased word tokens, without the parts of addresses
//! ([`text_tokens`]), with doc ids only — no positions, frequencies or norms, and nothing
//! stored. Phrases, punctuated words and text-only fields are answered as a conjunction of
//! tokens: a superset that crate `query` narrows by checking the events it fetches from the
//! ledger.
//!
//! Data flow: the ingest pipeline calls [`IndexWriter::add`] for each `(seq, Event)` and
//! [`IndexWriter::commit`] with the last seq it added; after a crash it resumes from
//! [`SearchIndex::last_indexed_seq`]. `pugmark reindex` calls [`SearchIndex::recreate`].
//! Queries arrive as [`IndexQuery`] trees (built by crate `query`) and leave as [`DocKey`]s.

mod lookup;
mod schema;
mod writer;

use std::path::{Path, PathBuf};

use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::error::{Result, SearchError};

pub use lookup::{DocKey, IndexQuery, Keyword, SrcRow};
pub use schema::{
    KEYWORD_MAX_BYTES, TEXT_ONLY_FIELDS, TOKEN_MAX_BYTES, has_kv_term, has_text_token,
    keyword_term, kv_term, text_tokens,
};
pub use writer::IndexWriter;

use schema::Fields;

/// Settings of a new index (an existing one keeps those in its `meta.json`). The document
/// store holds nothing but tantivy's 4-byte offset per document; zstd packs those to ~2.4
/// bytes where lz4 (the default) leaves them at ~4: the index 4 % smaller on bench/gen's day
/// (BENCHMARKS.md, issue 16). The store is never read, so its codec costs no query time.
fn index_settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings {
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: Some(1),
        }),
        ..tantivy::IndexSettings::default()
    }
}

/// The search index in one directory (`DATA/index/`).
pub struct SearchIndex {
    path: PathBuf,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// Host and app names of the searcher generation they were read from (`lookup.rs`).
    names: std::sync::Mutex<Option<(u64, std::sync::Arc<lookup::Names>)>>,
    /// The flow store readers query beside the index (`net.flow` events are not documents:
    /// crate `query`'s `flows` module reads them there), when attached.
    flows: Option<std::sync::Arc<flowstore::FlowStore>>,
    /// The last ledger position whose flows a query takes from `flows`.
    flows_cap: Option<u64>,
    /// The fact store's NAT records (not documents either, issue 12), when attached, and the
    /// last position a query takes them from there.
    nat: Option<crate::facts::NatReader>,
    nat_cap: Option<u64>,
    /// The commit payload of the commit `reader`'s snapshot holds
    /// ([`SearchIndex::snapshot_position`]).
    snapshot: std::sync::Mutex<Option<Position>>,
}

/// A ledger position and, when recorded, the ledger's chain head there (a commit payload).
pub type Position = (u64, Option<[u8; 32]>);

/// How many times a reader is loaded again when a commit lands while it loads, before the
/// older position is taken (a search then scans a few records twice instead of missing some).
const SNAPSHOT_TRIES: usize = 20;

impl SearchIndex {
    /// Opens the index in `dir`, creating the directory and an empty index when missing.
    /// An index built with another schema is refused with [`SearchError::SchemaMismatch`].
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<SearchIndex> {
        let path = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| SearchError::Io {
            path: path.clone(),
            source,
        })?;
        let mmap = MmapDirectory::open(&path).map_err(|e| SearchError::Open {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let (schema, fields) = schema::build();
        let index = Index::builder()
            .schema(schema)
            .settings(index_settings())
            .open_or_create(mmap)
            .map_err(|e| match e {
                tantivy::TantivyError::SchemaError(_) => {
                    SearchError::SchemaMismatch { path: path.clone() }
                }
                other => SearchError::Open {
                    path: path.clone(),
                    source: Box::new(other),
                },
            })?;
        schema::register_tokenizers(&index);
        let before = last_position_of(&index)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| SearchError::Open {
                path: path.clone(),
                source: Box::new(e),
            })?;
        let snapshot = pin_snapshot(&index, &reader, Some(before))?;
        Ok(SearchIndex {
            path,
            index,
            fields,
            reader,
            names: std::sync::Mutex::new(None),
            flows: None,
            flows_cap: None,
            nat: None,
            nat_cap: None,
            snapshot: std::sync::Mutex::new(snapshot),
        })
    }

    /// The ledger position (and chain head) of the commit the searches of this handle see,
    /// as of opening or the last [`SearchIndex::reload`]: what a search must scan the ledger
    /// after. Unlike [`SearchIndex::last_position`], which reads the newest commit on disk, a
    /// live writer's later commits do not move it.
    pub fn snapshot_position(&self) -> Option<Position> {
        self.snapshot.lock().ok().and_then(|s| *s)
    }

    /// [`SearchIndex::snapshot_position`]'s seq.
    pub fn snapshot_seq(&self) -> Option<u64> {
        self.snapshot_position().map(|(seq, _)| seq)
    }

    /// Deletes the index in `dir` (if any) and creates an empty one: the first step of
    /// `pugmark reindex`. Refuses to delete a non-empty directory without `meta.json`, so a
    /// wrong `--data` cannot wipe unrelated files.
    pub fn recreate(dir: impl AsRef<Path>) -> Result<SearchIndex> {
        let path = dir.as_ref();
        let io = |source| SearchError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.try_exists().map_err(io)? {
            let has_meta = path.join("meta.json").try_exists().map_err(io)?;
            let empty = std::fs::read_dir(path).map_err(io)?.next().is_none();
            if !has_meta && !empty {
                return Err(SearchError::NotAnIndex {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_dir_all(path).map_err(io)?;
        }
        SearchIndex::open_or_create(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Attaches the data directory's flow store (opened for reading): queries through crate
    /// `query` then find `net.flow` events there, those at ledger positions up to `cap` (where
    /// the caller's reading of the ledger's tail starts, so no flow is counted twice; `None`:
    /// all).
    pub fn attach_flows(&mut self, flows: flowstore::FlowStore, cap: Option<u64>) {
        self.flows = Some(std::sync::Arc::new(flows));
        self.flows_cap = cap;
    }

    /// The attached flow store, if any.
    pub fn flows(&self) -> Option<&flowstore::FlowStore> {
        self.flows.as_deref()
    }

    /// The attached flow store, shared (a fetch reads derived flows from the same store).
    pub fn flows_shared(&self) -> Option<std::sync::Arc<flowstore::FlowStore>> {
        self.flows.clone()
    }

    /// The last ledger position whose flows come from the attached store.
    pub fn flows_cap(&self) -> Option<u64> {
        self.flows_cap
    }

    /// Attaches the data directory's fact store for its NAT records (conntrack and ulogd2
    /// events are not documents: crate `query` reads them from its NAT blocks), those at
    /// ledger positions up to `cap`.
    pub fn attach_nat(&mut self, facts: crate::facts::FactStore, cap: Option<u64>) {
        self.nat = Some(crate::facts::NatReader::new(facts));
        self.nat_cap = cap;
    }

    /// The attached NAT records, if any.
    pub fn nat(&self) -> Option<&crate::facts::NatReader> {
        self.nat.as_ref()
    }

    /// The last ledger position whose NAT records come from the attached fact store.
    pub fn nat_cap(&self) -> Option<u64> {
        self.nat_cap
    }

    /// A writer using `heap_bytes` of indexing memory (at least 15 MB) and one indexing thread,
    /// which keeps up with ingest on a 2-core machine (see `examples/index_bench.rs`).
    pub fn writer(&self, heap_bytes: usize) -> Result<IndexWriter> {
        self.writer_with_threads(1, heap_bytes)
    }

    /// A writer with `threads` indexing threads sharing `heap_bytes`.
    pub fn writer_with_threads(&self, threads: usize, heap_bytes: usize) -> Result<IndexWriter> {
        IndexWriter::new(&self.index, self.fields, threads, heap_bytes)
    }

    /// The last ledger position whose event is in the committed index (`None` for an empty
    /// or freshly recreated index). The pipeline re-indexes from the ledger after it.
    pub fn last_indexed_seq(&self) -> Result<Option<u64>> {
        Ok(self.last_position()?.map(|(seq, _)| seq))
    }

    /// The last ledger position in the committed index and, when recorded, the ledger's chain
    /// head at that position. The commit payload is `SEQ` or `SEQ HEAD` (64 hex digits;
    /// indexes committed before heads were recorded have none).
    pub fn last_position(&self) -> Result<Option<Position>> {
        last_position_of(&self.index)
    }

    /// Whether `dir` holds an index at all (a `meta.json`): a missing index is not the same
    /// as an empty one.
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join("meta.json").is_file()
    }

    /// Makes commits made since opening (or the last reload) visible to searches.
    pub fn reload(&self) -> Result<()> {
        let snapshot = pin_snapshot(&self.index, &self.reader, None)?;
        if let Ok(mut s) = self.snapshot.lock() {
            *s = snapshot;
        }
        Ok(())
    }

    /// Number of indexed events (as of the last reload).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Number of segments (as of the last reload): fewer means a faster open and search.
    pub fn num_segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }
}

/// The commit `reader`'s snapshot holds, (re)loading it: `opened` is the commit payload read
/// just before `reader` was opened (`None`: reload it here). The payload is read before and
/// after each (re)load; equal, no commit landed in between and the snapshot is that commit
/// (payloads only grow, and a commit is one atomic `meta.json` write). Otherwise it is
/// loaded again. Reading the payload once after opening the reader is the race this closes:
/// a commit in between gives a position past the snapshot, and the records between them
/// were in neither the index's answer nor the ledger tail a search scans after it.
fn pin_snapshot(
    index: &Index,
    reader: &IndexReader,
    mut opened: Option<Option<Position>>,
) -> Result<Option<Position>> {
    let mut before = None;
    for _ in 0..SNAPSHOT_TRIES {
        let b = match opened.take() {
            Some(b) => b,
            None => {
                let b = last_position_of(index)?;
                reader.reload().map_err(SearchError::engine("reload"))?;
                b
            }
        };
        let after = last_position_of(index)?;
        if after == b {
            return Ok(b);
        }
        before = Some(b);
    }
    // Commits kept landing: the last payload read before a (re)load is at most the snapshot's
    // commit, so a tail scan after it may see a few records twice, never miss one.
    Ok(before.flatten())
}

/// The newest commit's payload on disk: `SEQ` or `SEQ HEAD` (64 hex digits).
fn last_position_of(index: &Index) -> Result<Option<Position>> {
    let metas = index
        .load_metas()
        .map_err(SearchError::engine("load metas"))?;
    let Some(p) = metas.payload.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let mut words = p.split(' ');
    let seq = words.next().and_then(|w| w.parse::<u64>().ok());
    let head = words.next().map(parse_head);
    match (seq, head, words.next()) {
        (Some(seq), None, None) => Ok(Some((seq, None))),
        (Some(seq), Some(Some(h)), None) => Ok(Some((seq, Some(h)))),
        _ => Err(SearchError::BadPayload { payload: p }),
    }
}

/// 64 hex digits as 32 bytes.
fn parse_head(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// 32 bytes as 64 lower-case hex digits.
pub(crate) fn head_hex(head: &[u8; 32]) -> String {
    head.iter().map(|b| format!("{b:02x}")).collect()
}
