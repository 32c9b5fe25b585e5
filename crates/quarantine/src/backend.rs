//! The seam between the quarantine's core and the places images are kept.
//!
//! The core ([`crate::store`], [`crate::policy`], [`crate::custody`]) decides *what* is kept,
//! for how long, who asked and why, and writes every step to the custody journal and the
//! ledger. A [`Backend`] only moves bytes: it takes an image out of the way of a deletion
//! ([`Backend::capture`]), keeps it (optionally telling its own storage about the deadline,
//! [`Backend::hold`]), streams it back ([`Backend::open`], hence [`Backend::export`] and
//! [`Backend::verify`] with BLAKE3 and SHA-256 computed while streaming), puts it back
//! ([`Backend::restore`]) and destroys it at expiry ([`Backend::purge`]). It never decides
//! retention and never purges on its own initiative (an RBD trash deferment is a safety net
//! the core sets longer than the policy, never the policy itself).
//!
//! Two backends: [`crate::file::FileBackend`] (qcow2/raw files on a hypervisor, this crate)
//! and the Ceph RBD backend (crate `rbd`, through the real `rbd`/`ceph` CLIs). A backend is
//! chosen per captured image by the [`Source`]'s kind: a [`Source::Path`] goes to the file
//! backend, a [`Source::Rbd`] to the RBD backend.
//!
//! Contract every backend keeps (the fault tests hold the file backend to it, the RBD tests
//! the RBD backend):
//! - **Never a deleted disk without a kept copy.** `capture` either returns `Ok` with the image
//!   kept at `Kept::locator`, or returns `Err` with the source untouched (a crash at any point
//!   leaves one of the two; the core's journal records which was intended, and
//!   [`Backend::list`] shows what is really there so the core can settle it at next start).
//! - **Never delete evidence to make room.** A full volume is [`BackendError::NoSpace`].
//! - **Bad input is refused, not followed**: a path outside the configured roots, a symlink,
//!   an image name that does not exist → [`BackendError::Refused`].
//! - **Streams, never whole in memory**: `open` returns a reader; hashing and export run over
//!   it in bounded buffers ([`crate::hash`]).

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::hash::{self, Digests};

/// Where an image was when it was captured: what the custody record calls its `source`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A file on a hypervisor: a libvirt/KVM qcow2 or raw disk, a qcow2 backing file, an
    /// OpenNebula file-system datastore disk, a nova local disk.
    Path {
        /// Absolute path, as the domain XML or qemu-img named it (checked against the roots).
        path: PathBuf,
    },
    /// A Ceph RBD image (OpenStack or OpenNebula on Ceph).
    Rbd {
        /// Pool name.
        pool: String,
        /// RADOS namespace, when the image lives in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Image name (nova: `<uuid>_disk`; OpenNebula: `one-<image>-<vm>-<disk>`).
        image: String,
        /// A snapshot of the image, when the evidence is a snapshot rather than the head.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
}

impl Source {
    /// A source as custody records name it ([`fmt::Display`]) and its backend kind: `file`
    /// → the path; `rbd` → `pool/[namespace/]image[@snapshot]` (None when it is not one).
    pub fn parse(backend: &str, s: &str) -> Option<Source> {
        match backend {
            "file" => Some(Source::Path { path: s.into() }),
            "rbd" => {
                let (spec, snapshot) = match s.split_once('@') {
                    Some((a, b)) => (a, Some(b.to_string())),
                    None => (s, None),
                };
                let parts: Vec<&str> = spec.split('/').collect();
                let (pool, namespace, image) = match parts.as_slice() {
                    [p, i] => (*p, None, *i),
                    [p, n, i] => (*p, Some(n.to_string()), *i),
                    _ => return None,
                };
                if pool.is_empty() || image.is_empty() || namespace.as_deref() == Some("") {
                    return None;
                }
                Some(Source::Rbd {
                    pool: pool.into(),
                    namespace,
                    image: image.into(),
                    snapshot,
                })
            }
            _ => None,
        }
    }

    /// The backend kind that handles this source (`file` or `rbd`).
    pub fn backend_kind(&self) -> &'static str {
        match self {
            Source::Path { .. } => "file",
            Source::Rbd { .. } => "rbd",
        }
    }
}

impl fmt::Display for Source {
    /// `path` for files, `pool/[namespace/]image[@snapshot]` for RBD (the `rbd` CLI's spec).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path { path } => write!(f, "{}", path.display()),
            Source::Rbd {
                pool,
                namespace,
                image,
                snapshot,
            } => {
                write!(f, "{pool}/")?;
                if let Some(ns) = namespace {
                    write!(f, "{ns}/")?;
                }
                write!(f, "{image}")?;
                if let Some(s) = snapshot {
                    write!(f, "@{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// Whether the source must go away (a deletion is under way) or stay (a live VM is held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// The VM is being deleted: take the image out of the deleter's way (file: rename or
    /// reflink/copy then unlink the original only after the copy is durable; RBD: `rbd trash
    /// mv` with a deferment, or snapshot + clone into the evidence pool).
    Take,
    /// Keep a point-in-time copy and leave the source in place (a hold on a running VM, a
    /// backing file shared by other disks): file: reflink or copy; RBD: snapshot (+ clone).
    Copy,
}

/// What the core asks a backend to capture.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    /// The quarantine item id the core allocated (`q-…`); the backend may use it in names.
    pub id: String,
    /// The image to keep.
    pub source: Source,
    /// The VM whose disk this is.
    pub vm_uuid: String,
    /// Take or copy.
    pub mode: CaptureMode,
    /// When the policy lets the image go (None: held until released). A backend with its own
    /// deferment (RBD trash `--expires-at`) sets it no earlier than this; the core purges.
    pub keep_until: Option<Timestamp>,
}

/// What a backend kept, as it reports it to the core (and the core stores in the item).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Backend-specific and opaque to the core: a path under the store for files;
    /// `pool/image@snap`, `trash:pool/<id>` or `evidence-pool/image` for RBD. Passed back
    /// unchanged in [`ImageRef::locator`].
    pub locator: String,
    /// Logical size of the image in bytes (a sparse file's apparent size; RBD's provisioned size).
    pub size: u64,
    /// How it was kept: `rename`, `reflink`, `copy` (file); `trash`, `snapshot`, `clone` (RBD).
    pub method: String,
    /// The digests when the capture read every byte anyway (a copy hashed while copying).
    /// `None` after an O(1) capture (rename, reflink, trash move, snapshot): the core then
    /// hashes the kept image through [`Backend::open`] after the capture is recorded.
    pub digests: Option<Digests>,
}

/// A kept image as the core passes it back to its backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The quarantine item id.
    pub id: String,
    /// [`Kept::locator`] as the backend returned it.
    pub locator: String,
    /// [`Kept::size`].
    pub size: u64,
}

/// One image a backend really holds, for [`Backend::list`] (the core compares it with its
/// items: an image no item names is an orphan of a crashed capture, an item whose image is
/// missing is a loss to report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The locator, as [`Kept::locator`] would name it.
    pub locator: String,
    /// The item id when the backend can tell it (from a name or tag), else None.
    pub id: Option<String>,
    /// Logical size in bytes, when known.
    pub size: Option<u64>,
}

/// A backend's state, for `pugmark status`, `/metrics` and refusing captures early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Whether captures can be made now (the store is writable / the cluster answers).
    pub up: bool,
    /// One line for an operator ("ok", "HEALTH_WARN …", "quarantine volume 98 % full").
    pub detail: String,
    /// Free bytes where new images land, when known.
    pub free_bytes: Option<u64>,
}

/// Why a backend could not do what was asked. `retryable` tells the core whether to try again
/// (and alert meanwhile) or record a refusal.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Bad input refused, never retried: outside the roots, a symlink, not a regular file,
    /// an image that does not exist, an XML that lies.
    #[error("refused: {0}")]
    Refused(String),
    /// No room for the image; nothing was deleted to make room.
    #[error("no space for {needed} bytes ({free} free): evidence is never deleted to make room")]
    NoSpace {
        /// Bytes the capture needs.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The storage does not answer (a Ceph cluster down, a timeout): retry, record, alert.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The kept image is gone or not where its locator says.
    #[error("not found: {0}")]
    NotFound(String),
    /// An external tool failed (`qemu-img`, `rbd`, `ceph`).
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        /// The program run.
        program: String,
        /// Its exit status as text.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// An I/O error with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done ("rename /var/lib/libvirt/images/a.qcow2").
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl BackendError {
    /// Whether trying again later may succeed (storage down, I/O), as opposed to input refused.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable(_) | BackendError::Io { .. } | BackendError::Tool { .. }
        )
    }

    /// Wrap an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where images are kept. See the module docs for the contract every implementation keeps.
///
/// Calls are synchronous and may block for as long as the storage takes (a hook or the
/// `expire` timer calls them on their own thread). Implementations are `Send + Sync` so the
/// core can hold them behind `Arc` in `serve`.
pub trait Backend: Send + Sync {
    /// `file` or `rbd`: what [`Source::backend_kind`] selects and custody records name.
    fn kind(&self) -> &'static str;

    /// Take the image out of a deletion's way (or copy it, [`CaptureMode::Copy`]). Returns
    /// only once the kept image is durable; on `Err` the source is untouched.
    fn capture(&self, req: &CaptureRequest) -> Result<Kept, BackendError>;

    /// Hold or extend: tell the storage the image must stay until `until` (None: no end).
    /// The file backend has nothing to do (the core alone purges); RBD moves the trash
    /// deferment (`rbd trash mv --expires-at` / re-defer) or protects the snapshot.
    fn hold(&self, image: &ImageRef, until: Option<Timestamp>) -> Result<(), BackendError>;

    /// A stream of the image's bytes as kept (raw bytes of the file — a qcow2 stays qcow2 —;
    /// RBD: `rbd export … -`). Read-only; the kept image is never altered by reading it.
    fn open(&self, image: &ImageRef) -> Result<Box<dyn Read + Send>, BackendError>;

    /// Write the image to `out`, hashing while streaming. The default streams [`Self::open`]
    /// through [`hash::copy_hashed`]; override when the storage has a faster path.
    fn export(&self, image: &ImageRef, out: &mut dyn Write) -> Result<Digests, BackendError> {
        let mut reader = self.open(image)?;
        hash::copy_hashed(&mut reader, out)
            .map_err(|e| BackendError::io(format!("export {}", image.locator), e))
    }

    /// [`Self::export`] into a file (`out` open for reading and writing, empty): what
    /// `quarantine export` calls. The default writes through [`Self::export`]; the file
    /// backend copies in the kernel and hashes the bytes written ([`hash::copy_file_hashed`]).
    fn export_file(&self, image: &ImageRef, out: &std::fs::File) -> Result<Digests, BackendError> {
        let mut w = out;
        self.export(image, &mut w)
    }

    /// Rehash the kept image (what `pugmark quarantine verify` compares with the custody
    /// record). The default streams [`Self::open`] into [`hash::hash_reader`].
    fn verify(&self, image: &ImageRef) -> Result<Digests, BackendError> {
        let mut reader = self.open(image)?;
        hash::hash_reader(&mut reader)
            .map_err(|e| BackendError::io(format!("hash {}", image.locator), e))
    }

    /// Put the image back at `to` (usually the source it was captured from), keeping the
    /// kept image. Refuses to overwrite anything that exists at `to`.
    fn restore(&self, image: &ImageRef, to: &Source) -> Result<(), BackendError>;

    /// Destroy the kept image (expiry, or an operator's explicit purge). The core calls it
    /// only when no hold applies and records the purge before and after.
    fn purge(&self, image: &ImageRef) -> Result<(), BackendError>;

    /// Every image this backend really holds (see [`Listed`]).
    fn list(&self) -> Result<Vec<Listed>, BackendError>;

    /// Whether captures can be made now, and free space.
    fn health(&self) -> Health;

    /// Wait out what an interrupted capture of item `id` left running (an external tool its
    /// killed caller did not take along): called by the core for each open intent before it
    /// asks [`Backend::list`] what is held, so nothing lands after the settlement. Default:
    /// a backend that runs no tool of its own leaves nothing running.
    fn interrupted(&self, _id: &str) {}

    /// Undo what an interrupted capture of item `id` may have left on `source` without
    /// keeping anything (e.g. an RBD snapshot taken before a kill -9): called by the core
    /// when it settles such a capture as failed, so the source is left as it was found.
    /// Idempotent; nothing to undo is success. Default: nothing is ever left.
    fn abandon(&self, id: &str, source: &Source) -> Result<(), BackendError> {
        let _ = (id, source);
        Ok(())
    }
}

/// A shared backend is a backend: a long-lived process (serve's quarantine timer) keeps one
/// backend, and its counters ([`crate::ceph::CephBackend::stats`]), across the short-lived
/// stores it opens.
impl<T: Backend + ?Sized> Backend for std::sync::Arc<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn capture(&self, req: &CaptureRequest) -> Result<Kept, BackendError> {
        (**self).capture(req)
    }
    fn hold(&self, image: &ImageRef, until: Option<Timestamp>) -> Result<(), BackendError> {
        (**self).hold(image, until)
    }
    fn open(&self, image: &ImageRef) -> Result<Box<dyn Read + Send>, BackendError> {
        (**self).open(image)
    }
    fn export(&self, image: &ImageRef, out: &mut dyn Write) -> Result<Digests, BackendError> {
        (**self).export(image, out)
    }
    fn export_file(&self, image: &ImageRef, out: &std::fs::File) -> Result<Digests, BackendError> {
        (**self).export_file(image, out)
    }
    fn verify(&self, image: &ImageRef) -> Result<Digests, BackendError> {
        (**self).verify(image)
    }
    fn restore(&self, image: &ImageRef, to: &Source) -> Result<(), BackendError> {
        (**self).restore(image, to)
    }
    fn purge(&self, image: &ImageRef) -> Result<(), BackendError> {
        (**self).purge(image)
    }
    fn list(&self) -> Result<Vec<Listed>, BackendError> {
        (**self).list()
    }
    fn health(&self) -> Health {
        (**self).health()
    }
    fn interrupted(&self, id: &str) {
        (**self).interrupted(id)
    }
    fn abandon(&self, id: &str, source: &Source) -> Result<(), BackendError> {
        (**self).abandon(id, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_back_from_their_display() {
        for src in [
            Source::Path {
                path: "/var/lib/nova/instances/x/disk".into(),
            },
            Source::Rbd {
                pool: "vms".into(),
                namespace: None,
                image: "abc_disk".into(),
                snapshot: None,
            },
            Source::Rbd {
                pool: "one".into(),
                namespace: Some("ns".into()),
                image: "one-7-12-0".into(),
                snapshot: Some("s1".into()),
            },
        ] {
            let back = Source::parse(src.backend_kind(), &src.to_string());
            assert_eq!(back.as_ref(), Some(&src));
        }
        assert_eq!(Source::parse("rbd", "noslash"), None);
        assert_eq!(Source::parse("rbd", "a/b/c/d"), None);
        assert_eq!(Source::parse("rbd", "/img"), None);
        assert_eq!(Source::parse("s3", "x"), None);
    }

    #[test]
    fn sources_display_as_their_tools_name_them() {
        let p = Source::Path {
            path: "/var/lib/libvirt/images/a.qcow2".into(),
        };
        assert_eq!(p.to_string(), "/var/lib/libvirt/images/a.qcow2");
        let r = Source::Rbd {
            pool: "vms".into(),
            namespace: None,
            image: "0f6c_disk".into(),
            snapshot: Some("q-1".into()),
        };
        assert_eq!(r.to_string(), "vms/0f6c_disk@q-1");
        assert_eq!(r.backend_kind(), "rbd");
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"kind":"rbd","pool":"vms","image":"0f6c_disk","snapshot":"q-1"}"#
        );
    }
}
