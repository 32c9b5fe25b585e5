//! Signed checkpoints and the key that signs them.
//!
//! The writer holds an ed25519 key (a 32-byte seed, hex, in `DATA/keys/ledger.ed25519`, mode
//! 0600, generated from OS randomness on first use) and appends signed (seq, chain head,
//! time) entries to `DATA/ledger/checkpoints`. The public key is written beside the private
//! one as `ledger.ed25519.pub` (hex) so a verifier can pin it. This module reads and writes
//! those files; deciding when to checkpoint is the writer's job, checking entries against
//! the chain is `verify`'s.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use crate::error::LedgerError;
use crate::format::{
    CHECKPOINT_FILE_HEADER_LEN, CHECKPOINT_FILE_VERSION, CHECKPOINT_LEN, CheckpointEntry,
    check_checkpoint_file_header, from_hex32, to_hex,
};
use crate::signer::KeySigner;

/// Name of the checkpoint file inside the ledger directory.
pub const CHECKPOINT_FILE: &str = "checkpoints";

/// Path of the public key file that goes with a private key file.
pub fn public_key_path(key_path: &Path) -> PathBuf {
    let mut s = key_path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Reads a hex public key file (`ledger.ed25519.pub`), e.g. to pin it for `verify`.
pub fn read_public_key(path: &Path) -> Result<[u8; 32], LedgerError> {
    let text = std::fs::read_to_string(path).map_err(LedgerError::io(path))?;
    from_hex32(&text).ok_or_else(|| LedgerError::Key {
        path: path.to_path_buf(),
        what: "expected 64 hex digits".into(),
    })
}

/// Loads the signing key; `Ok(None)` if the file does not exist.
pub(crate) fn load_key(path: &Path) -> Result<Option<SigningKey>, LedgerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed = from_hex32(&text).ok_or_else(|| LedgerError::Key {
                path: path.to_path_buf(),
                what: "expected 64 hex digits".into(),
            })?;
            Ok(Some(SigningKey::from_bytes(&seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LedgerError::io(path)(e)),
    }
}

/// Creates a new signing key at `path` (refusing to replace an existing file) and its public
/// key file beside it; returns the public key. `pugmark keys init` / `keys rotate`.
pub fn create_key(path: &Path) -> Result<[u8; 32], LedgerError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            return Err(LedgerError::Key {
                path: path.to_path_buf(),
                what: "already exists; a key is never replaced".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LedgerError::io(path)(e)),
    }
    Ok(load_or_create_key(path)?.verifying_key().to_bytes())
}

/// Parses a key as written in a key file (64 hex digits of the seed).
pub fn parse_key(text: &str) -> Option<SigningKey> {
    from_hex32(text).map(|s| SigningKey::from_bytes(&s))
}

/// Loads the signing key, creating it (and its public key file) if absent.
pub(crate) fn load_or_create_key(path: &Path) -> Result<SigningKey, LedgerError> {
    let key = match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed = from_hex32(&text).ok_or_else(|| LedgerError::Key {
                path: path.to_path_buf(),
                what: "expected 64 hex digits".into(),
            })?;
            SigningKey::from_bytes(&seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| LedgerError::Key {
                path: path.to_path_buf(),
                what: format!("no randomness for a new key: {e}"),
            })?;
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(LedgerError::io(dir))?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(LedgerError::io(path))?;
            f.write_all(format!("{}\n", to_hex(&seed)).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(LedgerError::io(path))?;
            crate::fileio::sync_dir(dir).map_err(LedgerError::io(dir))?;
            SigningKey::from_bytes(&seed)
        }
        Err(e) => return Err(LedgerError::io(path)(e)),
    };
    let pub_path = public_key_path(path);
    let want = to_hex(key.verifying_key().as_bytes());
    let have = std::fs::read_to_string(&pub_path).unwrap_or_default();
    if have.trim() != want {
        std::fs::write(&pub_path, format!("{want}\n")).map_err(LedgerError::io(&pub_path))?;
    }
    Ok(key)
}

/// Writes the public key file beside `path` if it does not say `key`'s public key; errors are
/// ignored (it is a convenience copy: verify pins the key or reads `DATA/keys`).
pub(crate) fn sync_public_key(path: &Path, key: &[u8; 32]) {
    let pub_path = public_key_path(path);
    let want = to_hex(key);
    let have = std::fs::read_to_string(&pub_path).unwrap_or_default();
    if have.trim() != want {
        let _ = std::fs::write(&pub_path, format!("{want}\n"));
    }
}

/// Signs a checkpoint for (seq, head) at `unix_time`.
pub(crate) fn sign(
    key: &KeySigner,
    seq: u64,
    head: [u8; 32],
    unix_time: u64,
) -> Result<CheckpointEntry, LedgerError> {
    let mut e = CheckpointEntry {
        seq,
        head,
        unix_time,
        public_key: key.public_key(),
        signature: [0; 64],
    };
    e.signature = key.sign(&e.message())?;
    Ok(e)
}

/// Whether the entry's signature is valid for the public key it names.
pub(crate) fn signature_ok(e: &CheckpointEntry) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&e.public_key) else {
        return false;
    };
    vk.verify_strict(&e.message(), &Signature::from_bytes(&e.signature))
        .is_ok()
}

/// The checkpoint file as read from disk.
#[derive(Debug, Default)]
pub(crate) struct CheckpointFile {
    /// (byte offset, decoded entry or why it does not decode) for every complete entry.
    pub entries: Vec<(u64, Result<CheckpointEntry, &'static str>)>,
    /// Length covered by the header and complete entries.
    pub valid_len: u64,
    /// Bytes of a partial entry at the end (a torn append).
    pub torn_bytes: u64,
}

/// Reads the checkpoint file; `Ok(None)` if it does not exist.
pub(crate) fn read_checkpoints(path: &Path) -> Result<Option<CheckpointFile>, LedgerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LedgerError::io(path)(e)),
    };
    match check_checkpoint_file_header(&bytes) {
        Ok(()) => {}
        Err(Some(found)) => {
            return Err(LedgerError::VersionMismatch {
                found,
                expected: CHECKPOINT_FILE_VERSION,
            });
        }
        Err(None) => {
            return Err(LedgerError::corrupted(
                CHECKPOINT_FILE,
                0,
                "checkpoint file header damaged",
            ));
        }
    }
    let body = &bytes[CHECKPOINT_FILE_HEADER_LEN..];
    let mut out = CheckpointFile::default();
    for (i, chunk) in body.chunks_exact(CHECKPOINT_LEN).enumerate() {
        let mut a = [0u8; CHECKPOINT_LEN];
        a.copy_from_slice(chunk);
        let offset = (CHECKPOINT_FILE_HEADER_LEN + i * CHECKPOINT_LEN) as u64;
        out.entries.push((offset, CheckpointEntry::decode(&a)));
    }
    let whole = body.len() - body.len() % CHECKPOINT_LEN;
    out.valid_len = (CHECKPOINT_FILE_HEADER_LEN + whole) as u64;
    out.torn_bytes = (body.len() - whole) as u64;
    Ok(Some(out))
}
