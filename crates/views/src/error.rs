//! Typed errors of the search index. The engine's own error type stays inside this crate:
//! callers see what failed and where, with the engine's message as the source.

use std::path::PathBuf;

/// The engine's error, boxed so no tantivy type leaks out of `views`.
pub type EngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The directory holds an index made with another schema (an older pugmark).
    #[error("search index at {path} was built with another schema; run `pugmark reindex`")]
    SchemaMismatch { path: PathBuf },
    /// Opening or creating the index failed.
    #[error("cannot open search index at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// Filesystem trouble around the index directory.
    #[error("search index directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `recreate` refuses to delete a directory that holds something else than an index.
    #[error("refusing to delete {path}: it is not empty and holds no search index (no meta.json)")]
    NotAnIndex { path: PathBuf },
    /// The commit payload is not a ledger position: the index was written by something else.
    #[error("search index commit payload {payload:?} is not a ledger position")]
    BadPayload { payload: String },
    /// Any other engine failure, with the operation that hit it (`add`, `commit`, `search`, …).
    #[error("search index {op}: {source}")]
    Engine {
        op: &'static str,
        #[source]
        source: EngineError,
    },
}

impl SearchError {
    pub(crate) fn engine(op: &'static str) -> impl FnOnce(tantivy::TantivyError) -> SearchError {
        move |e| SearchError::Engine {
            op,
            source: Box::new(e),
        }
    }
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;
