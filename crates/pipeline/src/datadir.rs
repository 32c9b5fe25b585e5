//! The data directory: where the ledger and each view live, and its format marker.
//!
//! Layout (docs/FORMAT.md "Data directory"):
//! ```text
//! DATA/FORMAT          "pugmark-data 1": refuses directories of another version
//! DATA/keys/           ed25519 signing key for checkpoints (+ .pub); or `ledger.location`
//!                      naming a PKCS#11 token (`pkcs11:` URI) and the token key's `.pub`
//! DATA/ledger/         the evidence: segments, block indexes, checkpoints
//! DATA/index/          view: tantivy search index
//! DATA/imports/        view: what each file import already stored (dedup)
//! DATA/facts/          view: SQLite fact store (VMs, leases, directory, payload jobs)
//! DATA/flows/          view: columnar flow store (crate `flowstore`, docs/FORMAT.md "Flow store")
//! DATA/tmp/            spool for stdin imports
//! DATA/quarantine.config  the quarantine config whose custody is stored here (`cli/autohold.rs`)
//! DATA/views.new/      `reindex` only: new views being built aside (index, facts, imports),
//!                      swapped in when complete (`COMPLETE` marker), else removed at open
//! DATA/views.old/      `reindex` only: the replaced views during the swap
//! ```
//! Views hold nothing that is not in the ledger; deleting them loses no evidence.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The signing key given on the command line (`--key-fd`), for every data directory opened.
static KEY_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the key path every [`DataDir::signing_key`] returns (`--key-fd N`).
pub fn set_key_override(path: PathBuf) {
    let _ = KEY_OVERRIDE.set(path);
}

/// Whether the signing key comes from `--key-fd`.
pub fn key_overridden() -> bool {
    KEY_OVERRIDE.get().is_some()
}

/// Format version of the directory layout written by this build: 2 since the ledger's Merkle
/// tree, signed checkpoint notes and block MACs (ledger format 2). Version 1 is turned into 2
/// by `pugmark migrate`; every other verb refuses it.
pub const DATA_FORMAT_VERSION: u32 = 2;
/// The layout version `pugmark migrate` upgrades from.
pub const MIGRATES_FROM: u32 = 1;
/// In `DATA/keys/`: the path of a signing key kept outside the data directory
/// (`pugmark keys init --key-file PATH`), one line.
pub const KEY_LOCATION_FILE: &str = "ledger.location";
const MARKER_PREFIX: &str = "pugmark-data ";

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    /// Where the views live: `root`, or `root/views.new` while `reindex` builds aside.
    views: PathBuf,
}

/// The view directories, in the order they are swapped.
const VIEW_DIRS: [&str; 4] = ["index", "facts", "imports", "flows"];
const ASIDE: &str = "views.new";
const REPLACED: &str = "views.old";
const COMPLETE: &str = "COMPLETE";

impl DataDir {
    /// Open an existing data directory, or create it when `create` is set.
    pub fn open(root: &Path, create: bool) -> anyhow::Result<DataDir> {
        match DataDir::open_any(root, create)? {
            (dd, DATA_FORMAT_VERSION) => Ok(dd),
            (_, v) => bail!(
                "data directory {} is in format version {v}: run `pugmark migrate --data {}` to turn it into version {DATA_FORMAT_VERSION}",
                root.display(),
                root.display()
            ),
        }
    }

    /// Opens a data directory of this version or of [`MIGRATES_FROM`] (for `pugmark migrate`),
    /// returning its version.
    pub fn open_any(root: &Path, create: bool) -> anyhow::Result<(DataDir, u32)> {
        let marker = root.join("FORMAT");
        let mut found = DATA_FORMAT_VERSION;
        match fs::read_to_string(&marker) {
            Ok(text) => {
                let version = text
                    .trim()
                    .strip_prefix(MARKER_PREFIX)
                    .and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(v @ (DATA_FORMAT_VERSION | MIGRATES_FROM)) => found = v,
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
        Ok((
            DataDir {
                root: root.to_path_buf(),
                views: root.to_path_buf(),
            },
            found,
        ))
    }

    /// Marks the directory as [`DATA_FORMAT_VERSION`] (the last step of `pugmark migrate`):
    /// written aside, synced, renamed over `FORMAT`, directory synced.
    pub fn mark_current(&self) -> anyhow::Result<()> {
        let marker = self.root.join("FORMAT");
        let tmp = self.root.join("FORMAT.new");
        fs::write(&tmp, format!("{MARKER_PREFIX}{DATA_FORMAT_VERSION}\n"))
            .and_then(|()| fs::File::open(&tmp)?.sync_all())
            .and_then(|()| fs::rename(&tmp, &marker))
            .and_then(|()| sync_dir(&self.root))
            .with_context(|| format!("writing {}", marker.display()))
    }

    /// The root of the data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The same data directory with its views in `DATA/views.new/`: where `reindex` builds
    /// new views while the old ones stay in place ([`DataDir::recover_views`] empties it).
    pub fn aside(&self) -> DataDir {
        DataDir {
            root: self.root.clone(),
            views: self.root.join(ASIDE),
        }
    }

    /// Whether this is the aside copy made by [`DataDir::aside`].
    pub fn is_aside(&self) -> bool {
        self.views != self.root
    }

    /// The views built aside are complete: mark them so (durably) and swap them in for the
    /// old ones, which are then deleted. Call with the ledger's lock held (no writer runs);
    /// a crash part-way is finished by [`DataDir::recover_views`] at the next open.
    pub fn swap_in_aside(&self) -> anyhow::Result<()> {
        let aside = self.root.join(ASIDE);
        let marker = aside.join(COMPLETE);
        fs::write(&marker, b"complete\n")
            .and_then(|()| fs::File::open(&marker)?.sync_all())
            .and_then(|()| sync_dir(&aside))
            .with_context(|| format!("writing {}", marker.display()))?;
        self.finish_swap()
    }

    /// Moves each view from `views.new` into place (the old one to `views.old` first), then
    /// deletes `views.old` and `views.new`. Idempotent: a view already moved is skipped.
    fn finish_swap(&self) -> anyhow::Result<()> {
        let aside = self.root.join(ASIDE);
        let replaced = self.root.join(REPLACED);
        fs::create_dir_all(&replaced)
            .with_context(|| format!("creating {}", replaced.display()))?;
        for name in VIEW_DIRS {
            let new = aside.join(name);
            if !exists(&new)? {
                continue;
            }
            let live = self.root.join(name);
            if exists(&live)? {
                let old = replaced.join(name);
                remove_dir(&old)?;
                fs::rename(&live, &old)
                    .with_context(|| format!("moving {} aside", live.display()))?;
            }
            fs::rename(&new, &live)
                .with_context(|| format!("moving {} into place", new.display()))?;
        }
        sync_dir(&self.root).with_context(|| format!("syncing {}", self.root.display()))?;
        remove_dir(&replaced)?;
        remove_dir(&aside)?;
        sync_dir(&self.root).with_context(|| format!("syncing {}", self.root.display()))?;
        Ok(())
    }

    /// At open, with the ledger's lock held: finish a swap that a crash interrupted (the new
    /// views were complete), or delete views a failed or killed `reindex` left half-built
    /// (the old ones were never touched).
    /// For the aside copy: empty `views.new` (what an earlier `reindex` left there).
    pub fn recover_views(&self) -> anyhow::Result<()> {
        if self.is_aside() {
            remove_dir(&self.views)?;
            return fs::create_dir_all(&self.views)
                .with_context(|| format!("creating {}", self.views.display()));
        }
        let aside = self.root.join(ASIDE);
        if exists(&aside.join(COMPLETE))? {
            return self.finish_swap();
        }
        remove_dir(&aside)?;
        remove_dir(&self.root.join(REPLACED))
    }

    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger")
    }
    pub fn index(&self) -> PathBuf {
        self.views.join("index")
    }
    pub fn facts(&self) -> PathBuf {
        self.views.join("facts")
    }
    pub fn flows(&self) -> PathBuf {
        self.views.join("flows")
    }
    pub fn imports(&self) -> PathBuf {
        self.views.join("imports")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// The checkpoint signing key: `DATA/keys/ledger.ed25519`, or the path named in
    /// `DATA/keys/ledger.location` when the key is kept outside the data directory.
    pub fn signing_key(&self) -> PathBuf {
        if let Some(p) = KEY_OVERRIDE.get() {
            return p.clone();
        }
        match fs::read_to_string(self.keys().join(KEY_LOCATION_FILE)) {
            Ok(p) if !p.trim().is_empty() => PathBuf::from(p.trim_end_matches('\n')),
            _ => self.keys().join("ledger.ed25519"),
        }
    }

    /// The public key file that goes with [`DataDir::signing_key`] (in `DATA/keys/` when the
    /// key comes from a descriptor or a token).
    pub fn public_key(&self) -> PathBuf {
        if KEY_OVERRIDE.get().is_some() || self.key_uri().is_some() {
            return self.keys().join("ledger.ed25519.pub");
        }
        ledger::public_key_path(&self.signing_key())
    }

    /// The PKCS#11 URI of the signing key when `DATA/keys/ledger.location` names a token
    /// (`pugmark keys init --pkcs11`); `--key-fd` overrides it.
    pub fn key_uri(&self) -> Option<String> {
        if KEY_OVERRIDE.get().is_some() {
            return None;
        }
        let p = self.signing_key();
        let s = p.to_str()?;
        crate::pkcs11::is_uri(s).then(|| s.to_string())
    }

    /// Writer options naming this directory's key: the key file, or the token (opened and
    /// logged in here) whose public key must be the one recorded in `DATA/keys` — a
    /// different token key is refused before the ledger is opened, so nothing is written.
    pub fn ledger_options(&self) -> anyhow::Result<ledger::LedgerOptions> {
        let mut opts = ledger::LedgerOptions {
            key_path: self.signing_key(),
            ..ledger::LedgerOptions::default()
        };
        if let Some(uri) = self.key_uri() {
            let uri = crate::pkcs11::Pkcs11Uri::parse(&uri)
                .with_context(|| format!("the key location in {}", self.keys().display()))?;
            let token = crate::pkcs11::Token::open(&uri, false)?;
            let recorded = ledger::read_public_key(&self.public_key())?;
            if token.public_key() != recorded {
                bail!(
                    "the key in the token ({}) has public key {}, but {} records {}: a different token key; restore the token key, or run `pugmark keys rotate --pkcs11 URI`",
                    uri.text,
                    hex(&token.public_key()),
                    self.public_key().display(),
                    hex(&recorded)
                );
            }
            opts.signer = Some(std::sync::Arc::new(token));
        }
        Ok(opts)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Deletes a directory tree if it exists.
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Makes renames and creations in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn exists(p: &Path) -> anyhow::Result<bool> {
    p.try_exists()
        .with_context(|| format!("looking for {}", p.display()))
}
