//! The witness itself: verify an `add-checkpoint`, check it extends what is held, persist the
//! new latest checkpoint durably (fsync before answering), cosign.
//!
//! Layout of the witness's directory:
//!
//! ```text
//! DIR/witness.key          PRIVATE+KEY+<name>+<id>+… (0600), made by `pugmark witness init`
//! DIR/witness.vkey         its verifier key, what logs and verifiers configure
//! DIR/logs/<sha256(origin) hex>.checkpoint
//!                          the latest cosigned checkpoint per origin: the log's note with
//!                          its signatures and this witness's cosignature
//! DIR/forks/<sha256(origin) hex>-<size>-<time>.request
//!                          validly signed requests that were refused because they do not
//!                          extend the held checkpoint (evidence of a fork; at most 1000 kept)
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use signed_note::{Note, Signature, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, check_tree};

use crate::cosig::{Cosigner, KeyError};
use crate::protocol::{AddCheckpoint, BadRequest};

/// File names inside the witness directory.
pub const KEY_FILE: &str = "witness.key";
/// The verifier key file.
pub const VKEY_FILE: &str = "witness.vkey";
const MAX_FORK_FILES: usize = 1000;

/// Why an `add-checkpoint` was not cosigned; each maps to the spec's HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no key configured for the origin.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no signature from a configured key verifies.
    #[error("no valid signature from the log's key")]
    Forbidden,
    /// 409: `old` is not the size held (the body says which), or the same size with another root.
    #[error("conflict: the witness holds size {0}")]
    Conflict(u64),
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof from {old} to {size} does not verify")]
    BadProof { old: u64, size: u64 },
    /// 500: the state could not be read or made durable; nothing was cosigned.
    #[error("witness storage: {0}")]
    Io(#[from] io::Error),
}

impl Refusal {
    /// The HTTP status tlog-witness prescribes.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::UnknownLog(_) => 404,
            Refusal::Forbidden => 403,
            Refusal::Conflict(_) => 409,
            Refusal::BadProof { .. } => 422,
            Refusal::Io(_) => 500,
        }
    }
}

impl From<BadRequest> for Refusal {
    fn from(e: BadRequest) -> Self {
        Refusal::BadRequest(e.to_string())
    }
}

/// A log the witness follows: its origin and checkpoint keys.
pub struct LogKeys {
    pub origin: String,
    pub vkeys: Vec<StandardVerifier>,
}

/// The witness: its key, the logs it follows, its durable state.
pub struct Witness {
    dir: PathBuf,
    cosigner: Cosigner,
    logs: HashMap<String, Vec<StandardVerifier>>,
    // Checking `old` against the held size and persisting the new checkpoint happen under one
    // lock (the race the spec describes: a slower, smaller request must not roll the size back).
    lock: Mutex<()>,
}

/// Makes a witness directory with a new key; refuses if one is there.
pub fn init(dir: &Path, name: &str) -> Result<String, InitError> {
    fs::create_dir_all(dir.join("logs"))?;
    let key_path = dir.join(KEY_FILE);
    if key_path.try_exists()? {
        return Err(InitError::Exists(key_path));
    }
    let c = Cosigner::generate(name)?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&key_path)?;
    writeln!(f, "{}", c.skey())?;
    f.sync_all()?;
    let vkey = c.vkey();
    write_durably(dir, &dir.join(VKEY_FILE), format!("{vkey}\n").as_bytes())?;
    sync_dir(dir)?;
    Ok(vkey)
}

/// Why `init` or `open` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} exists: this directory already has a witness key")]
    Exists(PathBuf),
    #[error("no witness key at {0}: run `pugmark witness init --data DIR` first")]
    NoKey(PathBuf),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Witness {
    /// Opens a witness directory made by [`init`], following `logs`.
    pub fn open(dir: &Path, logs: Vec<LogKeys>) -> Result<Self, InitError> {
        let key_path = dir.join(KEY_FILE);
        let skey = match fs::read_to_string(&key_path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(InitError::NoKey(key_path));
            }
            Err(e) => return Err(e.into()),
        };
        let cosigner = Cosigner::from_skey(&skey)?;
        fs::create_dir_all(dir.join("logs"))?;
        let mut map: HashMap<String, Vec<StandardVerifier>> = HashMap::new();
        for l in logs {
            map.entry(l.origin).or_default().extend(l.vkeys);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cosigner,
            logs: map,
            lock: Mutex::new(()),
        })
    }

    /// The witness's verifier key.
    pub fn vkey(&self) -> String {
        self.cosigner.vkey()
    }

    /// The origins followed.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// Handles one `add-checkpoint` body at POSIX time `now`: the cosignature line(s) to
    /// answer with, after the new checkpoint is durable.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<Vec<u8>, Refusal> {
        let req = AddCheckpoint::parse(body)?;
        let note = Note::from_bytes(&req.note)
            .map_err(|e| Refusal::BadRequest(format!("checkpoint note: {e}")))?;
        let cp = Checkpoint::from_bytes(note.text())
            .map_err(|e| Refusal::BadRequest(format!("checkpoint: {e}")))?;
        let keys = self
            .logs
            .get(cp.origin())
            .ok_or_else(|| Refusal::UnknownLog(cp.origin().to_owned()))?;
        let list = VerifierList::new(
            keys.iter()
                .cloned()
                .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
                .collect(),
        );
        // Unknown keys (other witnesses' cosignatures) are ignored; a bad signature from a
        // known key, or none at all, is refused.
        let (verified, _) = note.verify(&list).map_err(|_| Refusal::Forbidden)?;
        if req.old > cp.size() {
            return Err(Refusal::BadRequest(format!(
                "old size {} is above the checkpoint's size {}",
                req.old,
                cp.size()
            )));
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let held = self.held(cp.origin())?;
        let (held_size, held_root) = match &held {
            Some((c, _)) => (c.size(), Some(*c.hash())),
            None => (0, None),
        };
        if req.old != held_size {
            return Err(Refusal::Conflict(held_size));
        }
        if let Some(root) = held_root {
            if req.old == cp.size() {
                if root != *cp.hash() {
                    self.keep_fork(&cp, body, now);
                    return Err(Refusal::Conflict(held_size));
                }
            } else if check_tree(&req.proof, cp.size(), *cp.hash(), req.old, root).is_err() {
                self.keep_fork(&cp, body, now);
                return Err(Refusal::BadProof {
                    old: req.old,
                    size: cp.size(),
                });
            }
        } else if !req.proof.is_empty() {
            return Err(Refusal::BadRequest(
                "the proof must be empty when the old size is 0".into(),
            ));
        }
        let cosig = self
            .cosigner
            .cosign(note.text(), now)
            .map_err(|e| Refusal::Io(io::Error::other(e.to_string())))?;
        // What is kept: the log's verified signatures and this cosignature.
        let mut sigs: Vec<Signature> = verified;
        sigs.push(cosig.clone());
        let kept = Note::new(note.text(), &sigs)
            .map_err(|e| Refusal::Io(io::Error::other(e.to_string())))?;
        let path = self.state_path(cp.origin());
        write_durably(&self.dir.join("logs"), &path, &kept.to_bytes())?;
        Ok(cosig.to_bytes())
    }

    /// The latest cosigned checkpoint held for `origin` (the log's signatures and this
    /// witness's cosignature), as a signed note.
    pub fn latest(&self, origin: &str) -> io::Result<Option<Vec<u8>>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match fs::read(self.state_path(origin)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn held(&self, origin: &str) -> Result<Option<(Checkpoint, Note)>, Refusal> {
        let bytes = match fs::read(self.state_path(origin)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The state is our own fsynced file; a damaged one is a storage fault, not "never
        // seen" (that would let the log start over from 0).
        let note = Note::from_bytes(&bytes).map_err(|e| {
            Refusal::Io(io::Error::other(format!(
                "damaged state file for {origin:?}: {e}"
            )))
        })?;
        let cp = Checkpoint::from_bytes(note.text()).map_err(|e| {
            Refusal::Io(io::Error::other(format!(
                "damaged state file for {origin:?}: {e}"
            )))
        })?;
        Ok(Some((cp, note)))
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.checkpoint", origin_hex(origin)))
    }

    /// Keeps a validly signed request that forks from the held checkpoint: evidence that the
    /// log (or whoever holds its key) showed two histories. Best effort, bounded.
    fn keep_fork(&self, cp: &Checkpoint, body: &[u8], now: u64) {
        let dir = self.dir.join("forks");
        if fs::create_dir_all(&dir).is_err() {
            return;
        }
        if fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) >= MAX_FORK_FILES {
            return;
        }
        let path = dir.join(format!(
            "{}-{}-{}.request",
            origin_hex(cp.origin()),
            cp.size(),
            now
        ));
        let _ = write_durably(&dir, &path, body);
    }
}

/// Hex SHA-256 of an origin: the state file's name (origins may hold any character).
pub fn origin_hex(origin: &str) -> String {
    Sha256::digest(origin.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `path` atomically and durably: a temporary file in `dir`, fsync, rename, fsync of
/// the directory. A crash leaves the old or the new file, never a torn one.
pub fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(
        ".tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The held size and root hash of a cosigned checkpoint note.
pub fn size_and_root(note: &[u8]) -> Option<(u64, Hash)> {
    let note = Note::from_bytes(note).ok()?;
    let cp = Checkpoint::from_bytes(note.text()).ok()?;
    Some((cp.size(), *cp.hash()))
}
