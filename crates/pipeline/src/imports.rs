//! The imports view: what earlier file imports already stored, so the same content is never
//! stored twice.
//!
//! How dedup works: every ingest batch ends with an `ImportMark` envelope in the same durable
//! ledger batch as its records, saying "the first `bytes` bytes (`lines` lines) of `path`,
//! whose BLAKE3 is `prefix_hash`, are stored". A later ingest hashes the new file's prefixes
//! at the offsets of candidate marks (same path, or any completed import) and skips the longest
//! prefix that matches. So re-ingesting a file stores nothing, a grown log file stores only the
//! new lines, a copy under another name stores nothing, and an import killed half-way resumes
//! where its last durable batch ended. Content, not names or mtimes, decides.
//!
//! Like every view this is derived from the ledger (marks are ledger records) and rebuilt by
//! `pugmark reindex`; the JSON file is a cache with the ledger seq it is current to.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use model::envelope::ImportMark;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMark {
    pub path: String,
    pub bytes: u64,
    pub lines: u64,
    /// Hex BLAKE3 of the first `bytes` bytes.
    pub prefix_hash: String,
    pub complete: bool,
    /// Ledger position of the mark.
    pub seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The view is current up to and including this ledger seq.
    last_seq: u64,
    /// Hex chain head of the ledger at `last_seq`, when saved by a build that records it:
    /// tells a view of another ledger apart (`crate::viewcheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_head: Option<String>,
    marks: Vec<StoredMark>,
}

#[derive(Debug)]
pub struct ImportsView {
    file: PathBuf,
    state: State,
}

impl ImportsView {
    pub fn open(dir: &Path) -> anyhow::Result<ImportsView> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("marks.json");
        let state = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // A damaged cache is rebuilt from the ledger by the caller's catch-up.
                State::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        Ok(ImportsView { file, state })
    }

    pub fn last_seq(&self) -> u64 {
        self.state.last_seq
    }

    /// The position the view is current to and the ledger's chain head there, if recorded.
    pub fn position(&self) -> (u64, Option<[u8; 32]>) {
        let head = self.state.last_head.as_deref().and_then(unhex32);
        (self.state.last_seq, head)
    }

    /// Forget everything: the view is rebuilt from the ledger (it was built from another).
    pub fn reset(&mut self) {
        self.state = State::default();
    }

    /// Note that the view has seen the ledger up to `seq`.
    pub fn advance(&mut self, seq: u64) {
        self.state.last_seq = self.state.last_seq.max(seq);
    }

    /// Take in a mark read from (or just written to) the ledger at `seq`.
    pub fn apply(&mut self, seq: u64, mark: &ImportMark) {
        let stored = StoredMark {
            path: mark.path.clone(),
            bytes: mark.bytes,
            lines: mark.lines,
            prefix_hash: hex(&mark.prefix_hash),
            complete: mark.complete,
            seq,
        };
        // A run of one import writes growing marks for its path; keep only its latest.
        if let Some(last) = self
            .state
            .marks
            .iter_mut()
            .rev()
            .find(|m| m.path == mark.path)
            && !last.complete
            && mark.bytes >= last.bytes
        {
            *last = stored;
        } else {
            self.state.marks.push(stored);
        }
        self.advance(seq);
    }

    /// Marks that may describe a prefix of a file imported as `path` with `len` bytes.
    pub fn candidates(&self, path: &str, len: u64) -> Vec<&StoredMark> {
        self.state
            .marks
            .iter()
            .filter(|m| m.bytes > 0 && m.bytes <= len && (m.path == path || m.complete))
            .collect()
    }

    /// Write the view, recording `head`, the ledger's chain head at [`ImportsView::last_seq`].
    pub fn save_at(&mut self, head: [u8; 32]) -> anyhow::Result<()> {
        self.state.last_head = Some(hex(&head));
        self.save()
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let tmp = self.file.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.state)?;
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.file).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    }
}

/// 64 hex digits as 32 bytes.
pub fn unhex32(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Received;

    fn mark(path: &str, bytes: u64, complete: bool) -> ImportMark {
        ImportMark {
            received: Received::from_stored(0),
            path: path.into(),
            bytes,
            lines: bytes / 10,
            prefix_hash: [1; 32],
            complete,
        }
    }

    #[test]
    fn a_run_keeps_only_its_latest_mark_and_completed_runs_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = ImportsView::open(dir.path()).unwrap();
        v.apply(1, &mark("a", 10, false));
        v.apply(2, &mark("a", 20, false));
        v.apply(3, &mark("a", 30, true));
        v.apply(4, &mark("a", 5, false));
        v.apply(5, &mark("b", 30, true));
        assert_eq!(v.state.marks.len(), 3);
        assert_eq!(
            v.candidates("a", 100).len(),
            3,
            "own marks and b's completed import"
        );
        assert_eq!(
            v.candidates("c", 100).len(),
            2,
            "only completed imports for other paths"
        );
        assert_eq!(
            v.candidates("a", 10).len(),
            1,
            "marks longer than the file are useless"
        );
        v.save().unwrap();
        let again = ImportsView::open(dir.path()).unwrap();
        assert_eq!(again.state.marks, v.state.marks);
        assert_eq!(again.last_seq(), 5);
    }
}
