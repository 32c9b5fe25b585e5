//! `serve`'s spool directories (`[spool] dirs` in its TOML): files the site's own feeds write
//! (Keystone dumps, `condor_history -json` exports, OpenNebula hooks; `pugmark site-config`)
//! are ingested once, by content, under the observer of their directory's entry.
//!
//! A thread looks at each directory every `interval_secs`. A regular file (not a symlink,
//! not a name starting with `.`, not in a subdirectory) is taken once its size and
//! modification time are the same at two looks in a row, so a file still being written is
//! left for later. It is then ingested through `ingest`'s own path (`ingest_spool_file`):
//! format detection, framing and the imports view's dedup, so content already stored — the
//! same file seen again after a restart, a copy under another name — stores nothing, and a
//! file that grew stores its new part. The pipeline is shared with serve's writer thread
//! under a mutex (`SharedStore`); a file holds it for its whole import, which is what keeps
//! the dedup exact. Files are never deleted or moved: serve's unit may only read them.
//!
//! The observer comes from the entry, not from the file: the directory's permissions are
//! the proof (docs/SITES.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pipeline::datadir::DataDir;

use super::serve::PipelineStore;

/// What was last seen of a file: its size and modification time, and whether that state was
/// ingested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    mtime: Option<SystemTime>,
    done: bool,
}

/// The watcher: its thread and the flag that stops it.
pub(super) struct Spool {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spool {
    pub(super) fn start(
        dirs: Vec<serve::config::SpoolDir>,
        interval: Duration,
        store: Arc<Mutex<PipelineStore>>,
        dd: DataDir,
    ) -> anyhow::Result<Spool> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        for d in &dirs {
            eprintln!(
                "pugmark serve: spool {} as {} (every {} s)",
                d.path.display(),
                d.observer,
                interval.as_secs()
            );
        }
        let thread = std::thread::Builder::new()
            .name("pugmark-spool".into())
            .spawn(move || watch(&dirs, interval, &store, &dd, &flag))?;
        Ok(Spool {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop and wait for the thread (a file being ingested is finished first).
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(
    dirs: &[serve::config::SpoolDir],
    interval: Duration,
    store: &Mutex<PipelineStore>,
    dd: &DataDir,
    stop: &AtomicBool,
) {
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    let mut complained: HashMap<PathBuf, String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        for d in dirs {
            let files = match list(&d.path) {
                Ok(f) => f,
                Err(e) => {
                    complain(&mut complained, &d.path, &format!("{e:#}"));
                    continue;
                }
            };
            for (path, len, mtime) in files {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let now = Seen {
                    len,
                    mtime,
                    done: false,
                };
                let before = seen.insert(path.clone(), now);
                let stable = before.is_some_and(|b| b.len == len && b.mtime == mtime);
                if before.is_some_and(|b| b.done && b.len == len && b.mtime == mtime) {
                    // Already ingested in this state.
                    seen.insert(path, Seen { done: true, ..now });
                    continue;
                }
                if !stable {
                    continue;
                }
                let result = match store.lock() {
                    Ok(mut s) => {
                        super::ingest::ingest_spool_file(s.pipeline_mut(), dd, &path, d.observer)
                    }
                    Err(_) => return,
                };
                match result {
                    Ok(sum) => {
                        if sum.stored > 0 {
                            eprintln!(
                                "pugmark serve: spool: {} stored {} records ({} lines already stored) as {}",
                                path.display(),
                                sum.stored,
                                sum.skipped_lines,
                                d.observer
                            );
                        }
                        complained.remove(&path);
                        seen.insert(path, Seen { done: true, ..now });
                    }
                    Err(e) => {
                        // Tried again at the next look; said once per file and reason.
                        complain(&mut complained, &path, &format!("{e:#}"));
                    }
                }
            }
        }
        let mut slept = Duration::ZERO;
        while slept < interval && !stop.load(Ordering::Relaxed) {
            let step = Duration::from_millis(200).min(interval - slept);
            std::thread::sleep(step);
            slept += step;
        }
    }
}

fn complain(said: &mut HashMap<PathBuf, String>, path: &Path, why: &str) {
    if said.get(path).map(String::as_str) != Some(why) {
        eprintln!("pugmark serve: spool: {}: {why}", path.display());
        said.insert(path.to_path_buf(), why.to_string());
    }
}

/// The regular files directly in `dir` whose names do not start with `.`, sorted by name.
fn list(dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64, Option<SystemTime>)>> {
    use anyhow::Context;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.file_type().is_file() {
            continue;
        }
        out.push((entry.path(), meta.len(), meta.modified().ok()));
    }
    out.sort();
    Ok(out)
}
