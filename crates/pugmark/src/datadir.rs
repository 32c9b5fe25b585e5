//! The data directory: where the ledger and each view live, and its format marker.
//!
//! Layout (docs/FORMAT.md "Data directory"):
//! ```text
//! DATA/FORMAT          "pugmark-data 1": refuses directories of another version
//! DATA/keys/           ed25519 signing key for checkpoints (+ .pub)
//! DATA/ledger/         the evidence: segments, block indexes, checkpoints
//! DATA/index/          view: tantivy search index
//! DATA/imports/        view: what each file import already stored (dedup)
//! DATA/facts/          view: SQLite fact store (VMs, leases, directory, payload jobs)
//! DATA/tmp/            spool for stdin imports
//! ```
//! Views hold nothing that is not in the ledger; deleting them loses no evidence.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Format version of the directory layout written by this build.
pub const DATA_FORMAT_VERSION: u32 = 1;
const MARKER_PREFIX: &str = "pugmark-data ";

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Open an existing data directory, or create it when `create` is set.
    pub fn open(root: &Path, create: bool) -> anyhow::Result<DataDir> {
        let marker = root.join("FORMAT");
        match fs::read_to_string(&marker) {
            Ok(text) => {
                let version = text
                    .trim()
                    .strip_prefix(MARKER_PREFIX)
                    .and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(DATA_FORMAT_VERSION) => {}
                    Some(v) => bail!(
                        "data directory {} has format version {v}, this pugmark reads version {DATA_FORMAT_VERSION}",
                        root.display()
                    ),
                    None => bail!(
                        "{} is not a pugmark data directory marker (expected \"{MARKER_PREFIX}{DATA_FORMAT_VERSION}\")",
                        marker.display()
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    bail!(
                        "no pugmark data directory at {} (run `pugmark ingest` first, or pass --data)",
                        root.display()
                    );
                }
                if root.try_exists().unwrap_or(false)
                    && fs::read_dir(root)
                        .with_context(|| format!("reading {}", root.display()))?
                        .next()
                        .is_some()
                {
                    bail!(
                        "{} exists, is not empty and is not a pugmark data directory",
                        root.display()
                    );
                }
                fs::create_dir_all(root)
                    .with_context(|| format!("creating data directory {}", root.display()))?;
                fs::write(&marker, format!("{MARKER_PREFIX}{DATA_FORMAT_VERSION}\n"))
                    .with_context(|| format!("writing {}", marker.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    pub fn facts(&self) -> PathBuf {
        self.root.join("facts")
    }
    pub fn imports(&self) -> PathBuf {
        self.root.join("imports")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.keys().join("ledger.ed25519")
    }
}
