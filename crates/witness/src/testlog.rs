//! An in-memory RFC 6962 log with a C2SP checkpoint key, for tests and fuzzing of the witness
//! protocol without a ledger (also what an attacker holding a log key can make).

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use ed25519_dalek::SigningKey;
use signed_note::{Note, StandardSigner, key_id};
use tlog_tiles::{
    Checkpoint, Hash, HashReader, TreeProof, prove_tree, stored_hash_index, stored_hashes,
    tree_hash,
};

/// A log: its stored hashes (tlog order) and checkpoint key.
pub struct MemLog {
    origin: String,
    signer: StandardSigner,
    vkey: String,
    hashes: Vec<Hash>,
    size: u64,
}

struct Reader<'a>(&'a [Hash]);

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// A failure of the test log (never expected).
#[derive(Debug, thiserror::Error)]
#[error("test log: {0}")]
pub struct TestLogError(String);

fn err(e: impl std::fmt::Display) -> TestLogError {
    TestLogError(e.to_string())
}

impl MemLog {
    /// A new empty log with a fresh key named after `origin`.
    pub fn new(origin: &str) -> Result<Self, TestLogError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(err)?;
        Self::with_seed(origin, seed)
    }

    /// A new empty log whose key comes from `seed` (two logs with one seed share a key: a
    /// stolen key).
    pub fn with_seed(origin: &str, seed: [u8; 32]) -> Result<Self, TestLogError> {
        let sk = SigningKey::from_bytes(&seed);
        let mut pubkey = vec![0x01];
        pubkey.extend_from_slice(sk.verifying_key().as_bytes());
        let id = key_id(origin, &pubkey);
        let mut raw = vec![0x01];
        raw.extend_from_slice(&seed);
        let skey = format!(
            "PRIVATE+KEY+{origin}+{id:08x}+{}",
            BASE64_STANDARD.encode(raw)
        );
        let signer = StandardSigner::new(&skey).map_err(err)?;
        let vkey = format!("{origin}+{id:08x}+{}", BASE64_STANDARD.encode(pubkey));
        Ok(Self {
            origin: origin.to_owned(),
            signer,
            vkey,
            hashes: Vec::new(),
            size: 0,
        })
    }

    /// The log's verifier key.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one record.
    pub fn append(&mut self, record: &[u8]) -> Result<(), TestLogError> {
        let new = stored_hashes(self.size, record, &Reader(&self.hashes)).map_err(err)?;
        self.hashes.extend(new);
        self.size += 1;
        debug_assert_eq!(self.hashes.len() as u64, stored_hash_index(0, self.size));
        Ok(())
    }

    /// The root of the tree of the first `n` records.
    pub fn root(&self, n: u64) -> Result<Hash, TestLogError> {
        tree_hash(n, &Reader(&self.hashes)).map_err(err)
    }

    /// A signed checkpoint note of the tree of size `n`.
    pub fn checkpoint(&self, n: u64) -> Result<Vec<u8>, TestLogError> {
        let cp = Checkpoint::new(&self.origin, n, self.root(n)?, "").map_err(err)?;
        let mut note = Note::new(&cp.to_bytes(), &[]).map_err(err)?;
        note.add_sigs(&[&self.signer]).map_err(err)?;
        Ok(note.to_bytes())
    }

    /// A consistency proof from size `old` to size `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Result<TreeProof, TestLogError> {
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        prove_tree(new, old, &Reader(&self.hashes)).map_err(err)
    }
}
