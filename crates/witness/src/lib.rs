//! pugmark's witness (issue 11): an outside party that holds the latest checkpoint of each
//! log it follows and cosigns a new one only if it extends that one, so history it has seen
//! cannot be rewritten or truncated by whoever holds the collector's keys.
//!
//! - [`protocol`]: the C2SP `tlog-witness` `add-checkpoint` body, sans I/O.
//! - [`cosig`]: C2SP `tlog-cosignature` (`cosignature/v1`, Ed25519) and vkeys.
//! - [`witness`]: the checks, the durable state (fsync before answering), the fork evidence.
//! - [`client`]: a blocking client (ureq) for `add-checkpoint` and the latest-checkpoint read.
//! - [`config`]: `witness serve --config`.
//!
//! The HTTP server is `serve::witness_http`.

pub mod client;
pub mod config;
pub mod cosig;
pub mod protocol;
#[doc(hidden)]
pub mod testlog;
pub mod witness;

pub use client::{Added, Cosigned, WitnessPeer};
pub use cosig::{CosignatureVerifier, Cosigner, parse_vkey, parse_witness_vkey};
pub use protocol::AddCheckpoint;
pub use witness::{LogKeys, Refusal, Witness};
// What callers need to name proofs and checkpoints without depending on the crates themselves.
pub use signed_note;
pub use tlog_tiles;
