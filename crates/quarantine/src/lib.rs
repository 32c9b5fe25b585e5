//! Image quarantine (issue 13): VM disks kept as evidence for a tunable time after the VM is
//! gone, with every step of their custody recorded.
//!
//! What lives here, and what does not:
//! - [`backend`]: the [`Backend`] trait, the seam between the core and where images are kept
//!   (files on a hypervisor here; Ceph RBD in crate `rbd`), with its contract.
//! - [`hash`]: BLAKE3 + SHA-256 computed while streaming, never whole in memory.
//!
//! No tokio and no ledger here: the hypervisor hook runs this code synchronously before
//! libvirt deletes a disk, and the binary turns custody steps into ledger records through the
//! one write path (`pipeline`).

pub mod backend;
pub mod hash;

pub use backend::{
    Backend, BackendError, CaptureMode, CaptureRequest, Health, ImageRef, Kept, Listed, Source,
};
pub use hash::Digests;
