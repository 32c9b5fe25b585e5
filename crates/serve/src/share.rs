//! Fair sharing of the writer queue: each connection (and each UDP socket) may have at most
//! [`PER_SENDER_BYTES`] of records waiting for the writer.
//!
//! Why: the writer queue is one bounded channel shared by every listener. Bounded by
//! submissions alone, one sender that writes as fast as it can keeps it full (256 reads of
//! 256 KiB each), and every other sender's next record waits behind all of that — measured
//! here at ~10 s for a RELP round trip under a TCP + UDP flood (debug build). With a share
//! per sender, a flooding connection waits for its *own* records to be taken before it may
//! queue more, so the queue never holds more than a share per active sender and another
//! sender's record waits at most for the batch being written plus one share per sender
//! ahead of it. The flooder is pushed back through TCP like any sender on a slow disk; a
//! UDP socket whose share is used up waits a little (its kernel buffer holding what arrives), then drops (counted).
//!
//! A share is released when the writer takes the submission into a batch (the permit is
//! dropped with the submission), not when it is durable: durability is what acks wait for,
//! and holding shares across the fsync would halve a single sender's throughput.
//!
//! 4 MiB is about one full group-commit batch of one sender's reads (16 Ki records of ~250
//! bytes): while the writer appends one batch, a fast connection queues the next. With 1 MiB
//! the writer got batches of ~3 000 records, five times the fsyncs, and a single connection
//! reached ~700 k msgs/s durable instead of ~850 k (bench/serve, 2026-12-03).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of records one sender may have waiting for the writer.
pub const PER_SENDER_BYTES: usize = 4 << 20;

/// One sender's share (a connection, a UDP socket, a RELP session).
#[derive(Debug, Clone)]
pub struct Share(Arc<Semaphore>);

/// Held by a queued submission; dropping it returns the bytes to its sender's share.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Default for Share {
    fn default() -> Self {
        Share::new()
    }
}

impl Share {
    pub fn new() -> Share {
        Share(Arc::new(Semaphore::new(PER_SENDER_BYTES)))
    }

    /// What a submission of `bytes` costs: at least 1 (a record of nothing still waits), at
    /// most the whole share (a submission larger than the share waits for it all).
    fn cost(bytes: usize) -> u32 {
        bytes.clamp(1, PER_SENDER_BYTES) as u32
    }

    /// Wait until this sender has room for `bytes` more in the queue.
    pub async fn acquire(&self, bytes: usize) -> Permit {
        // The semaphore is never closed; if it were, fairness is lost but nothing else.
        Permit(
            self.0
                .clone()
                .acquire_many_owned(Share::cost(bytes))
                .await
                .ok(),
        )
    }

    /// Room for `bytes` now, or None (UDP: the caller drops and counts).
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit> {
        self.0
            .clone()
            .try_acquire_many_owned(Share::cost(bytes))
            .ok()
            .map(|p| Permit(Some(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_share_is_returned_when_the_permit_drops() {
        let s = Share::new();
        let a = s.acquire(PER_SENDER_BYTES / 2).await;
        let b = s.try_acquire(PER_SENDER_BYTES / 2).unwrap();
        assert!(s.try_acquire(1).is_none(), "share used up");
        drop(a);
        assert!(s.try_acquire(PER_SENDER_BYTES / 2).is_some());
        drop(b);
        // Larger than the share: costs the whole share, never blocks forever.
        let _c = s.acquire(10 * PER_SENDER_BYTES).await;
    }
}
