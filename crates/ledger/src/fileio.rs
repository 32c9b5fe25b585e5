//! The thin file layer under the writer: append, sync, and a fault injector for tests.
//!
//! Every byte the writer puts on disk goes through [`DataFile`], so a test can make the Nth
//! write or sync fail (a write fails after writing half its buffer, like a torn write on a
//! full disk) and then check that a reopened ledger holds every receipted record. Reads do
//! not go through here.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts write and sync operations down to an injected failure.
#[derive(Debug)]
pub(crate) struct Faults {
    remaining: AtomicU64,
}

impl Faults {
    /// Lets `ops` writes/syncs succeed; every later one fails.
    pub(crate) fn new(ops: u64) -> Arc<Faults> {
        Arc::new(Faults {
            remaining: AtomicU64::new(ops),
        })
    }

    fn hit(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
    }
}

/// A file the writer appends to.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: File,
    faults: Option<Arc<Faults>>,
}

impl DataFile {
    pub(crate) fn new(file: File, faults: Option<Arc<Faults>>) -> DataFile {
        DataFile { file, faults }
    }

    fn injected(&self) -> bool {
        self.faults.as_ref().is_some_and(|f| f.hit())
    }

    /// Writes all of `buf` at the current end of the file.
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.injected() {
            let half = buf.len() / 2;
            self.file.write_all(&buf[..half])?;
            return Err(io::Error::other("injected write failure"));
        }
        self.file.write_all(buf)
    }

    /// fdatasync.
    pub(crate) fn sync_data(&mut self) -> io::Result<()> {
        if self.injected() {
            return Err(io::Error::other("injected sync failure"));
        }
        self.file.sync_data()
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// fsyncs a directory so that a created or removed file name is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
