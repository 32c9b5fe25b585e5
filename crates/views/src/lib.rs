//! pugmark's views: data derived from the ledger, rebuildable from it at any time.
//!
//! What is here: [`search::SearchIndex`], the full-text and field index over events (tantivy,
//! fenced in this crate: no other crate names a tantivy type). It maps queries to ledger
//! positions (`seq`) ordered by event time; the events themselves always come back from the
//! ledger, so the index stores nothing a reader would show.
//!
//! What is not here: the query language (crate `query` parses it and lowers it to
//! [`search::IndexQuery`]), ledger access (the caller feeds `(seq, Event)` pairs and catches up
//! from [`search::SearchIndex::last_indexed_seq`]).
//!
//! Also here: [`facts::FactStore`] (SQLite, fenced here like tantivy): observations about VMs,
//! address leases, directory entries and payload jobs, from which crate `query` derives the
//! intervals `who`, `timeline` and `report` answer with.

pub mod error;
pub mod facts;
pub mod search;

pub use error::SearchError;
pub use search::{DocKey, IndexQuery, IndexWriter, Keyword, SearchIndex};
