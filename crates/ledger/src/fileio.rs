//! The thin file layer under the writer: append, sync, and a fault injector for tests.
//!
//! Every byte the writer puts on disk goes through [`DataFile`], so a test can make the Nth
//! write or sync fail (a write fails after writing half its buffer, like a torn write on a
//! full disk) and then check that a reopened ledger holds every receipted record. Reads do
//! not go through here.
//!
//! A second, test-only hook works across processes: with the environment variable
//! [`FAULT_ENV`] set when the ledger is opened, every sync fails with EIO while a file named
//! [`FAULT_FILE`] exists in the ledger directory (the fault-injection suite creates and
//! removes it under a running `pugmark serve`). Without the variable nothing is checked.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable that arms the EIO-on-sync test hook (see the module docs).
pub const FAULT_ENV: &str = "PUGMARK_TEST_FAULTS";
/// While this file exists in the ledger directory (and [`FAULT_ENV`] was set at open), every
/// sync fails with EIO.
pub const FAULT_FILE: &str = "FAULT-EIO";

/// Injected failures.
#[derive(Debug)]
pub(crate) enum Faults {
    /// Counts write and sync operations down (`.0`); then the next `.1` fail, later ones
    /// succeed again (a transient fault).
    Countdown(AtomicU64, AtomicU64),
    /// Syncs fail with EIO while this file exists (the cross-process test hook).
    WhileFileExists(PathBuf),
}

impl Faults {
    /// Lets `ops` writes/syncs succeed; every later one fails.
    pub(crate) fn new(ops: u64) -> Arc<Faults> {
        Faults::transient(ops, u64::MAX)
    }

    /// Lets `ops` writes/syncs succeed, fails the next `failures`, then lets all succeed.
    pub(crate) fn transient(ops: u64, failures: u64) -> Arc<Faults> {
        Arc::new(Faults::Countdown(
            AtomicU64::new(ops),
            AtomicU64::new(failures),
        ))
    }

    /// The cross-process hook for a ledger in `dir`, if [`FAULT_ENV`] is set.
    pub(crate) fn from_env(dir: &Path) -> Option<Arc<Faults>> {
        std::env::var_os(FAULT_ENV).map(|_| Arc::new(Faults::WhileFileExists(dir.join(FAULT_FILE))))
    }

    fn hit_write(&self) -> bool {
        match self {
            Faults::Countdown(remaining, failing) => {
                let down = |a: &AtomicU64| {
                    a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                };
                !down(remaining) && down(failing)
            }
            Faults::WhileFileExists(_) => false,
        }
    }

    fn sync_error(&self) -> Option<io::Error> {
        match self {
            Faults::Countdown(..) => self
                .hit_write()
                .then(|| io::Error::other("injected sync failure")),
            // A file that cannot be checked counts as present: the test asked for faults.
            Faults::WhileFileExists(p) => p
                .try_exists()
                .unwrap_or(true)
                .then(|| io::Error::from_raw_os_error(5)),
        }
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
        self.faults.as_ref().is_some_and(|f| f.hit_write())
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
        if let Some(e) = self.faults.as_ref().and_then(|f| f.sync_error()) {
            return Err(e);
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
