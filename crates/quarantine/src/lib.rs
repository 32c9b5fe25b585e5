//! Image quarantine (issue 13): VM disks kept as evidence for a tunable time after the VM is
//! gone, with every step of their custody recorded.
//!
//! What lives here, and what does not:
//! - [`backend`]: the [`Backend`] trait, the seam between the core and where images are kept
//!   (files on a hypervisor here; Ceph RBD in crate `rbd`), with its contract.
//! - [`hash`]: BLAKE3 + SHA-256 computed while streaming, never whole in memory.
//! - [`policy`]: `quarantine.toml` and retention policies (site, project / VO, VM).
//! - [`custody`]: custody records and the store's journal (what the ledger receives).
//! - [`store`]: the [`Quarantine`]: items, holds, capture, expiry, export, verify, restore.
//! - [`libvirt`]: libvirt domain XML and OpenNebula VM XML → disks; qcow2 backing chains.
//! - [`ceph`]: the Ceph RBD backend (snapshot + clone into an evidence pool, trash with a
//!   deferment) over crate `rbd`.
//! - [`inspect`]: partitions, file systems and the VM's own logs on a kept image, read-only.
//! - [`mod@file`]: the file backend (rename, reflink or hashed copy into `STORE/images`).
//!
//! No tokio and no ledger here: the hypervisor hook runs this code synchronously before
//! libvirt deletes a disk, and the binary turns custody steps into ledger records through the
//! one write path (`pipeline`).

pub mod backend;
pub mod ceph;
pub mod custody;
pub mod file;
pub mod hash;
pub mod inspect;
pub mod libvirt;
pub mod policy;
pub mod store;

pub use backend::{
    Backend, BackendError, CaptureMode, CaptureRequest, Health, ImageRef, Kept, Listed, Source,
};
pub use hash::Digests;
pub use store::{CaptureSpec, Item, Quarantine, StoreError};

/// The time now, from the one collector clock (`model::Received::now`).
pub fn now() -> jiff::Timestamp {
    model::Received::now().timestamp()
}
