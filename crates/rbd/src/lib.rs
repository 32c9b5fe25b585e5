//! Ceph RBD operations for the image quarantine (issue 13), through the real `rbd` and `ceph`
//! programs.
//!
//! What lives here: [`Rbd`] (one handle on a cluster: image info/list, snapshots, protect,
//! clone, flatten, deep copy, trash move/list/restore/remove/purge, image metadata, a streaming
//! [`ExportStream`] of `rbd export … -`, `ceph health` and free space), typed errors
//! ([`RbdError`]: cluster down vs pool missing vs image missing vs busy …), [`Retry`] with
//! backoff for a cluster that does not answer, the JSON shapes of the CLIs' output
//! ([`json`]), and a test cluster ([`testing::SingleNode`]). What does not: retention,
//! custody and hashing (crate `quarantine`, whose `ceph` module is the RBD backend built on
//! this crate).
//!
//! Why the CLIs and not librbd bindings (looked up 2026-12-06): the one maintained Rust crate
//! for Ceph, `ceph` (ceph/ceph-rust 3.2.5), binds librados and the admin sockets but not
//! librbd (no trash, snapshot, clone or export API), and crates.io has no `librbd` or `rbd`
//! binding; writing our own would mean `unsafe` FFI (forbidden in this workspace) and linking
//! against the site's exact librbd. The CLIs are
//! what every site already has with its ceph-common, print stable `--format json`, report
//! failures as `-errno` exit codes, and run each call in its own process, so a call that hangs
//! on a dead cluster is killed without taking pugmark with it. The cost is ~50–100 ms of
//! process start per call (measured in BENCHMARKS.md; a capture is 4–5 calls).

pub mod cli;
pub mod error;
pub mod json;
pub mod retry;
pub mod spec;
pub mod testing;

pub use cli::{ExportStream, Rbd};
pub use error::RbdError;
pub use json::{Health, ImageInfo, ListEntry, SnapEntry, TrashEntry};
pub use retry::{Retried, Retry};
pub use spec::{ImageSpec, PoolSpec};
