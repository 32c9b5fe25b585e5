//! End-to-end tests of the ledger, in one binary: round trips, recovery of torn tails,
//! injected I/O failures, random tampering that `verify` must locate, format versioning, the
//! single-writer lock and the committed v1 fixture every later version must still read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger::testing::{self, BlockInfo};
use ledger::{Ledger, LedgerError, LedgerOptions, LedgerReader, VerifyOptions, verify};
use proptest::prelude::*;

fn opts(dir: &Path) -> LedgerOptions {
    LedgerOptions {
        checkpoint_every_records: 50,
        checkpoint_every: Duration::from_secs(3600),
        segment_max_bytes: 8 << 10,
        block_max_bytes: 1024,
        zstd_level: 3,
        sync: false,
        key_path: dir.join("keys/ledger.ed25519"),
        check_sidecars: false,
        origin: None,
        migrating: false,
        rotating: false,
        signer: None,
    }
}

fn record(i: u64) -> Vec<u8> {
    format!(
        "<13>1 2024-05-01T10:00:{:02}Z host{} app - - - record number {i} {}",
        i % 60,
        i % 7,
        "x".repeat((i % 50) as usize)
    )
    .into_bytes()
}

/// Makes a ledger in `root/ledger` holding records 1..=n in batches of `batch`, closed cleanly.
fn make(root: &Path, n: u64, batch: u64) -> PathBuf {
    let dir = root.join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(root)).expect("open");
    let mut i = 1;
    while i <= n {
        let recs: Vec<Vec<u8>> = (i..(i + batch).min(n + 1)).map(record).collect();
        let r = l
            .append_batch(recs.iter().map(|r| r.as_slice()))
            .expect("append");
        assert_eq!(r.first.get(), i);
        i += recs.len() as u64;
    }
    l.close().expect("close");
    dir
}

fn check_all(dir: &Path, n: u64) {
    let mut r = LedgerReader::open(dir).expect("reader");
    assert_eq!(r.len(), n);
    for i in (1..=n).rev() {
        assert_eq!(r.get(i).expect("get"), record(i), "record {i}");
    }
    let all: Vec<_> = r.iter_from(1).map(|x| x.expect("iter")).collect();
    assert_eq!(all.len() as u64, n);
    for (s, p) in all {
        assert_eq!(p, record(s.get()));
    }
}

fn verified(dir: &Path) -> ledger::VerifyReport {
    verify(dir, &VerifyOptions::default()).expect("verify runs")
}

#[test]
fn round_trip_across_blocks_and_segments_and_reopen() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 500, 37);
    assert!(
        testing::segment_paths(&dir).expect("segs").len() > 2,
        "test needs several segments"
    );
    check_all(&dir, 500);
    // Reopen continues the chain.
    let (mut l, rep) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(rep.next_seq, 501);
    assert!(rep.truncated.is_empty());
    let recs: Vec<Vec<u8>> = (501..=600).map(record).collect();
    let r = l
        .append_batch(recs.iter().map(|r| r.as_slice()))
        .expect("append");
    assert_eq!((r.first.get(), r.count), (501, 100));
    assert_eq!(r.first.to_string(), "#501");
    l.close().expect("close");
    check_all(&dir, 600);
    let rep = verified(&dir);
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 600);
    assert!(rep.checkpoints >= 2);
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert!(matches!(r.get(0), Err(LedgerError::NotFound { .. })));
    assert!(matches!(r.get(601), Err(LedgerError::NotFound { .. })));
    let tail: Vec<u64> = r.iter_from(598).map(|x| x.expect("iter").0.get()).collect();
    assert_eq!(tail, vec![598, 599, 600]);
}

/// A reader reads a block only as far as the record asked for (`columns::unpack_prefix`)
/// and the rest of it when asked later: in every order, the records, leaf hashes and chain
/// heads are the stream's.
#[test]
fn records_read_in_any_order_equal_the_stream() {
    let t = tempfile::tempdir().expect("tmp");
    let n = 3000;
    // Blocks as the service writes them (128 KiB: several zstd blocks of raw bytes each).
    let dir = t.path().join("ledger");
    let (mut l, _) = Ledger::open(
        &dir,
        LedgerOptions {
            block_max_bytes: 128 << 10,
            segment_max_bytes: 64 << 20,
            ..opts(t.path())
        },
    )
    .expect("open");
    let recs: Vec<Vec<u8>> = (1..=n).map(record).collect();
    l.append_batch(recs.iter().map(|r| r.as_slice()))
        .expect("append");
    l.close().expect("close");
    let stream: Vec<Vec<u8>> = LedgerReader::open(&dir)
        .expect("reader")
        .iter_from(1)
        .map(|x| x.expect("iter").1)
        .collect();
    assert_eq!(stream.len() as u64, n);
    let mut r = LedgerReader::open(&dir).expect("reader");
    for i in 1..=n {
        assert_eq!(
            r.get(i).expect("get"),
            stream[i as usize - 1],
            "forward #{i}"
        );
    }
    // Backwards: each block first read from a late record, then asked for earlier ones.
    let mut r = LedgerReader::open(&dir).expect("reader");
    for i in (1..=n).rev() {
        assert_eq!(
            r.get(i).expect("get"),
            stream[i as usize - 1],
            "backward #{i}"
        );
    }
    // A fixed permutation, then a record early in a block followed by ranges reaching past
    // it (a proof's group of leaves) and chain heads.
    let mut r = LedgerReader::open(&dir).expect("reader");
    for k in 0..n {
        let i = (k * 1_237) % n + 1;
        assert_eq!(
            r.get(i).expect("get"),
            stream[i as usize - 1],
            "shuffled #{i}"
        );
    }
    let mut plain = LedgerReader::open(&dir).expect("reader");
    for first in [1, 2, 700, 1_500, 2_990] {
        let mut r = LedgerReader::open(&dir).expect("reader");
        assert_eq!(r.get(first).expect("get"), stream[first as usize - 1]);
        let count = (n + 1 - first).min(256);
        assert_eq!(
            r.leaf_hashes_cached(first, count).expect("cached"),
            plain.leaf_hashes(first, count).expect("plain"),
            "leaves from #{first}"
        );
        let last = first + count - 1;
        let mut fresh = LedgerReader::open(&dir).expect("reader");
        fresh.get(first).expect("get");
        assert_eq!(
            fresh.head_at(last).expect("head"),
            plain.head_at(last).expect("head"),
            "head at #{last}"
        );
    }
}

#[test]
fn reader_runs_beside_a_live_writer() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(t.path())).expect("open");
    let recs: Vec<Vec<u8>> = (1..=80).map(record).collect();
    l.append_batch(recs.iter().map(|r| r.as_slice()))
        .expect("append");
    let mut r = LedgerReader::open(&dir).expect("reader while writing");
    assert_eq!(r.len(), 80);
    assert_eq!(r.get(80).expect("get"), record(80));
    let more: Vec<Vec<u8>> = (81..=90).map(record).collect();
    l.append_batch(more.iter().map(|r| r.as_slice()))
        .expect("append");
    assert_eq!(r.len(), 80, "a reader sees the ledger as of its open");
    assert_eq!(LedgerReader::open(&dir).expect("reader").len(), 90);
    l.close().expect("close");
}

#[test]
fn big_record_and_empty_batch() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(t.path())).expect("open");
    let e = l.append_batch(std::iter::empty()).expect("empty");
    assert_eq!((e.first.get(), e.count), (1, 0));
    let big = vec![7u8; 20_000];
    l.append_batch([big.as_slice(), b"".as_slice()])
        .expect("append");
    l.close().expect("close");
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert_eq!(r.get(1).expect("get"), big);
    assert_eq!(r.get(2).expect("get"), b"");
    assert!(verified(&dir).ok());
}

#[test]
fn sidecar_index_missing_or_wrong_is_rebuilt() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 300, 20);
    for p in testing::segment_paths(&dir).expect("segs") {
        let idx = p.with_extension("idx");
        if p.ends_with("seg-00000001.dat") {
            std::fs::remove_file(&idx).expect("rm");
        } else {
            std::fs::write(&idx, b"garbage").expect("write");
        }
    }
    check_all(&dir, 300);
    let (l, rep) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert!(!rep.index_rebuilt.is_empty());
    l.close().expect("close");
    check_all(&dir, 300);
}

/// A byte flipped anywhere in a sidecar (header, any entry's seq or offset, the last entry) is
/// derived damage: every read still works (the reader rebuilds the block list from the
/// segment, also inside an iterator), `verify` passes and names the sidecar as derived, and a
/// writer opened with `check_sidecars` rewrites it.
#[test]
fn flipped_bytes_in_a_sidecar_never_fail_a_read() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 300, 20);
    let seg = testing::segment_paths(&dir).expect("segs")[0].clone();
    let idx = seg.with_extension("idx");
    let pristine = std::fs::read(&idx).expect("read idx");
    assert!(pristine.len() >= 16 + 3 * 16, "test needs several entries");
    let len = pristine.len();
    for at in [
        0,
        5,
        16,
        17,
        24,
        31,
        32 + 3,
        32 + 9,
        len / 2,
        len - 16,
        len - 9,
        len - 1,
    ] {
        for bit in [0x01u8, 0x40] {
            let mut bytes = pristine.clone();
            bytes[at] ^= bit;
            std::fs::write(&idx, &bytes).expect("write idx");
            check_all(&dir, 300);
            let rep = verified(&dir);
            assert!(
                rep.ok(),
                "byte {at}: evidence is intact: {:?}",
                rep.problems
            );
            assert!(
                rep.derived.iter().any(|p| p.segment.ends_with(".idx")),
                "byte {at} ^ {bit:#x}: verify reports the sidecar as derived"
            );
        }
    }
    // A writer that checks its sidecars rewrites the damaged one.
    let mut bytes = pristine.clone();
    bytes[len / 2] ^= 0x40;
    std::fs::write(&idx, &bytes).expect("write idx");
    let mut o = opts(t.path());
    o.check_sidecars = true;
    let (l, rep) = Ledger::open(&dir, o).expect("reopen");
    assert!(!rep.index_rebuilt.is_empty());
    l.close().expect("close");
    assert_eq!(std::fs::read(&idx).expect("read idx"), pristine);
    assert!(verified(&dir).derived.is_empty());
}

#[test]
fn torn_tail_is_truncated_reported_and_verifies() {
    let t = tempfile::tempdir().expect("tmp");
    // Checkpoint only at close; then append one more batch without close (a crash).
    let dir = make(t.path(), 100, 25);
    let (mut l, _) = Ledger::open(&dir, opts(t.path())).expect("open");
    let recs: Vec<Vec<u8>> = (101..=110).map(record).collect();
    l.append_batch(recs.iter().map(|r| r.as_slice()))
        .expect("append");
    drop(l);
    let blocks = testing::blocks(&dir).expect("blocks");
    let last: BlockInfo = blocks.last().cloned().expect("a block");
    assert_eq!(last.first_seq, 101);
    let pristine = std::fs::read(&last.path).expect("read");
    let keep = t.path().join("keep");
    for cut in (last.offset + 1..last.offset + last.len).step_by(7) {
        let _ = std::fs::remove_dir_all(&keep);
        copy_dir(&dir, &keep);
        let seg = keep.join(last.path.file_name().expect("name"));
        std::fs::write(&seg, &pristine[..cut as usize]).expect("cut");
        let before = verified(&keep);
        assert!(
            before.ok(),
            "a torn tail beyond the last checkpoint is not a problem: {:?}",
            before.problems
        );
        assert!(before.torn_tail.is_some());
        let (l, rep) = Ledger::open(&keep, opts(t.path())).expect("open torn");
        assert_eq!(rep.truncated.len(), 1, "cut at {cut}");
        assert_eq!(rep.truncated[0].offset, last.offset);
        assert_eq!(rep.next_seq, 101);
        l.close().expect("close");
        check_all(&keep, 100);
        let after = verified(&keep);
        assert!(
            after.ok() && after.torn_tail.is_none(),
            "{:?}",
            after.problems
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// Injects a failure at every write/sync point (N = 0..40) while appending batches of 13
/// records, with blocks of 1024 bytes (one or two blocks per batch) and of 200 bytes (every
/// batch spans several blocks). After reopening, the ledger holds a prefix of whole batches:
/// - every receipted batch, whole;
/// - the failed batch either whole or not at all: not at all when the failure was a write to a
///   segment (the batch-end block cannot have reached the disk; this is the ENOSPC case),
///   whole when the failure was the checkpoint after the batch was durable, either when it was
///   the segment sync (the page cache may or may not have kept the bytes);
/// - a reader opened before the writer recovers shows exactly what recovery keeps.
#[test]
fn injected_io_failures_never_lose_a_receipted_record() {
    for block_max_bytes in [1024usize, 200] {
        let mut saw_multi_block_batches = false;
        for fail_after in 0..40u64 {
            let t = tempfile::tempdir().expect("tmp");
            let dir = t.path().join("ledger");
            let mut o = opts(t.path());
            o.sync = true;
            o.checkpoint_every_records = 30;
            o.block_max_bytes = block_max_bytes;
            let mut receipted = 0u64;
            // (last seq of the failed batch, failed file, whether a write failed)
            let mut failed: Option<(u64, PathBuf, String)> = None;
            match testing::open_with_faults(&dir, o.clone(), fail_after) {
                Err(_) => {}
                Ok((mut l, _)) => {
                    let mut i = 1;
                    loop {
                        let recs: Vec<Vec<u8>> = (i..i + 13).map(record).collect();
                        match l.append_batch(recs.iter().map(|r| r.as_slice())) {
                            Ok(r) => {
                                receipted = r.first.get() + r.count - 1;
                                i += 13;
                            }
                            // A failed checkpoint after a durable batch: the batch was
                            // receipted, the writer refuses the next one.
                            Err(LedgerError::PreviousIo) => {
                                failed = Some((
                                    receipted,
                                    dir.join(ledger::CHECKPOINT_FILE),
                                    "checkpoint".into(),
                                ));
                                break;
                            }
                            Err(e) => {
                                let LedgerError::Io { path, source } = e else {
                                    panic!("fault {fail_after}: unexpected error {e}");
                                };
                                failed = Some((i + 12, path, source.to_string()));
                                let again = l.append_batch([b"x".as_slice()]);
                                assert!(matches!(again, Err(LedgerError::PreviousIo)), "{again:?}");
                                break;
                            }
                        }
                        assert!(i < 10_000, "faults never fired");
                    }
                }
            }
            let shown = LedgerReader::open(&dir).map(|r| r.len());
            let (l, rep) = Ledger::open(&dir, o)
                .unwrap_or_else(|e| panic!("reopen after fault {fail_after}: {e}"));
            let n = rep.next_seq - 1;
            let ctx = format!(
                "block_max {block_max_bytes}, fault {fail_after}: kept {n}, receipted {receipted}, failed {failed:?}"
            );
            if let Ok(shown) = shown {
                assert_eq!(
                    shown, n,
                    "{ctx}: a reader before recovery showed other records"
                );
            }
            match &failed {
                None => assert_eq!(n, receipted, "{ctx}"),
                Some((end, path, what)) => {
                    let segment = path.extension().is_some_and(|e| e == "dat");
                    if segment && what.contains("write") {
                        assert_eq!(n, receipted, "{ctx}: part or all of a torn batch survived");
                    } else if !segment {
                        assert_eq!(n, *end, "{ctx}: a durable batch was lost");
                    } else {
                        assert!(
                            n == receipted || n == *end,
                            "{ctx}: batch neither whole nor absent"
                        );
                    }
                }
            }
            saw_multi_block_batches |= testing::blocks(&dir)
                .expect("blocks")
                .iter()
                .any(|b| !b.batch_end);
            l.close().expect("close");
            let mut r = LedgerReader::open(&dir).expect("reader");
            assert_eq!(r.len(), n);
            for s in 1..=n {
                assert_eq!(r.get(s).expect("get"), record(s));
            }
            let v = verified(&dir);
            assert!(v.ok(), "{ctx}: {:?}", v.problems);
            assert!(v.torn_tail.is_none(), "{ctx}: {:?}", v.torn_tail);
            assert_eq!(v.records, n);
        }
        assert!(saw_multi_block_batches, "block_max {block_max_bytes}");
    }
}

/// A crash after some blocks of a multi-block batch are complete: verify calls the whole
/// batch the torn tail, a reader shows none of it, and open removes it whole and reports it.
/// Transient faults (1 or 3 failing writes/syncs at every point N = 0..40): the writer's
/// `recover` cuts what the failed batch left and reopens under its lock; appending the
/// failed batch again stores it once. At the end the ledger holds every batch exactly once,
/// in order, and verifies.
#[test]
fn recover_after_transient_faults_stores_every_batch_once() {
    for failures in [1u64, 3] {
        for fail_after in 0..40u64 {
            let t = tempfile::tempdir().expect("tmp");
            let dir = t.path().join("ledger");
            let mut o = opts(t.path());
            o.sync = true;
            o.checkpoint_every_records = 30;
            o.block_max_bytes = 200;
            o.segment_max_bytes = 4096;
            let Ok((mut l, _)) =
                testing::open_with_transient_faults(&dir, o.clone(), fail_after, failures)
            else {
                continue;
            };
            let ctx = format!("{failures} failure(s) after {fail_after} ops");
            let mut i = 1;
            let mut recoveries = 0;
            while i < 13 * 20 {
                let recs: Vec<Vec<u8>> = (i..i + 13).map(record).collect();
                match l.append_batch(recs.iter().map(|r| r.as_slice())) {
                    Ok(r) => {
                        assert_eq!(r.first.get(), i, "{ctx}");
                        i += 13;
                    }
                    Err(_) => {
                        assert!(l.failed(), "{ctx}");
                        // The fault passes after a few attempts.
                        let mut tries = 0;
                        while l.recover().is_err() {
                            tries += 1;
                            assert!(tries < 10, "{ctx}: recover never succeeded");
                        }
                        assert!(!l.failed(), "{ctx}");
                        recoveries += 1;
                    }
                }
            }
            // The last checkpoint may have failed after its batch was durable.
            if l.failed() {
                l.recover().expect("recover");
            }
            l.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
            assert!(recoveries > 0 || fail_after > 30, "{ctx}: no fault fired");
            check_all(&dir, i - 1);
            assert!(verified(&dir).problems.is_empty(), "{ctx}");
        }
    }
}

#[test]
fn unfinished_multi_block_batch_is_removed_whole() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 100, 25);
    let mut o = opts(t.path());
    o.block_max_bytes = 256;
    let (mut l, _) = Ledger::open(&dir, o.clone()).expect("open");
    let recs: Vec<Vec<u8>> = (101..=140).map(record).collect();
    l.append_batch(recs.iter().map(|r| r.as_slice()))
        .expect("append");
    drop(l); // a crash: no checkpoint covers the batch
    let batch: Vec<BlockInfo> = testing::blocks(&dir)
        .expect("blocks")
        .into_iter()
        .filter(|b| b.first_seq > 100)
        .collect();
    assert!(batch.len() >= 3, "the batch must span several blocks");
    assert!(batch.iter().all(|b| b.path == batch[0].path), "one segment");
    let ends: Vec<bool> = batch.iter().map(|b| b.batch_end).collect();
    assert_eq!(ends.iter().filter(|&&e| e).count(), 1);
    assert_eq!(ends.last(), Some(&true));
    let start = batch[0].offset;
    let pristine = std::fs::read(&batch[0].path).expect("read");
    assert_eq!(
        pristine.len() as u64,
        batch[batch.len() - 1].offset + batch[batch.len() - 1].len
    );

    let mut cuts = Vec::new();
    for b in &batch[1..] {
        cuts.extend([b.offset, b.offset + 40, b.offset + 100]);
    }
    cuts.push(pristine.len() as u64 - 1);
    let keep = t.path().join("keep");
    for cut in cuts {
        let _ = std::fs::remove_dir_all(&keep);
        copy_dir(&dir, &keep);
        let seg = keep.join(batch[0].path.file_name().expect("name"));
        std::fs::write(&seg, &pristine[..cut as usize]).expect("cut");
        // Records of complete blocks, plus the cut block's when its header survived.
        let lost: u64 = batch
            .iter()
            .filter(|b| b.offset + b.len <= cut || (b.offset < cut && cut >= b.offset + 80))
            .map(|b| b.count as u64)
            .sum();

        assert_eq!(
            LedgerReader::open(&keep).expect("reader").len(),
            100,
            "cut {cut}"
        );
        let v = verified(&keep);
        assert!(v.ok(), "cut {cut}: {:?}", v.problems);
        let torn = v.torn_tail.clone().expect("torn tail");
        assert_eq!(
            (torn.seq, torn.offset),
            (Some(101), start),
            "cut {cut}: {torn}"
        );
        assert_eq!(v.records, 100, "cut {cut}");

        let (l, rep) = Ledger::open(&keep, o.clone()).expect("open torn");
        assert_eq!(rep.truncated.len(), 1, "cut {cut}: {:?}", rep.truncated);
        let tr = &rep.truncated[0];
        assert_eq!(tr.offset, start, "cut {cut}: {tr}");
        assert_eq!(tr.bytes, cut - start, "cut {cut}: {tr}");
        assert_eq!(tr.records_lost, Some(lost), "cut {cut}: {tr}");
        assert!(tr.why.contains("batch from #101 unfinished"), "{tr}");
        assert_eq!(rep.next_seq, 101);
        l.close().expect("close");
        check_all(&keep, 100);
        let after = verified(&keep);
        assert!(after.ok() && after.torn_tail.is_none(), "{:?}", after);
    }

    // Uncut, the batch is complete (though unreceipted by a checkpoint) and is kept.
    let (l, rep) = Ledger::open(&dir, o).expect("open");
    assert!(rep.truncated.is_empty());
    assert_eq!(rep.next_seq, 141);
    l.close().expect("close");
    check_all(&dir, 140);
}

/// The batch-end flag is covered by the block checksum; an attacker who recomputes the
/// checksum to move a batch boundary where a checkpoint sits is caught by the checkpoint.
#[test]
fn batch_end_flag_tampering_is_detected() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 200, 20); // checkpoints at #60, #120, #180 and #200
    let blocks = testing::blocks(&dir).expect("blocks");
    assert!(blocks.iter().any(|b| !b.batch_end), "batches span blocks");
    let end_of = |b: &BlockInfo| b.first_seq + b.count as u64 - 1;
    let keep = t.path().join("keep");
    let fresh = || {
        let _ = std::fs::remove_dir_all(&keep);
        copy_dir(&dir, &keep);
        testing::blocks(&keep).expect("blocks")
    };

    // A flipped flag bit in the middle of the ledger: the checksum fails at that block.
    let bs = fresh();
    let b = bs
        .iter()
        .find(|b| b.batch_end && end_of(b) == 100)
        .expect("block");
    let mut bytes = std::fs::read(&b.path).expect("read");
    bytes[b.offset as usize + 57] ^= 1;
    std::fs::write(&b.path, bytes).expect("write");
    let v = verified(&keep);
    assert!(!v.ok());
    assert_eq!(v.problems[0].seq, Some(b.first_seq), "{}", v.problems[0]);
    assert!(v.problems[0].what.contains("checksum"), "{}", v.problems[0]);

    // Cleared with a fixed-up checksum where checkpoint #60 sits.
    let bs = fresh();
    let b = bs.iter().find(|b| end_of(b) == 60).expect("block");
    assert!(b.batch_end);
    testing::set_batch_end(b, false).expect("tamper");
    let v = verified(&keep);
    assert!(!v.ok());
    assert_eq!(v.problems[0].seq, Some(60), "{}", v.problems[0]);
    assert!(v.problems[0].what.contains("not at the end of a batch"));

    // Cleared on the ledger's last block: the whole last batch would look unfinished, but
    // checkpoint #200 covers it, so it is a problem and the writer refuses to cut it.
    let bs = fresh();
    let b = bs.last().expect("block");
    testing::set_batch_end(b, false).expect("tamper");
    let v = verified(&keep);
    assert!(!v.ok() && v.torn_tail.is_none(), "{v:?}");
    let e = Ledger::open(&keep, opts(t.path())).expect_err("writer must refuse");
    assert!(matches!(e, LedgerError::Corrupted { .. }), "{e}");

    // Set inside a batch with a fixed-up checksum: batch boundaries are recovery metadata,
    // not evidence; no record, seq or head changes, so nothing is wrong with the evidence.
    let bs = fresh();
    let b = bs.iter().find(|b| !b.batch_end).expect("block");
    testing::set_batch_end(b, true).expect("tamper");
    assert!(verified(&keep).ok());
    check_all(&keep, 200);
}

#[test]
fn version_mismatch_is_a_clear_error() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 10, 10);
    let seg = &testing::segment_paths(&dir).expect("segs")[0];
    let mut b = std::fs::read(seg).expect("read");
    b[8] = 4;
    std::fs::write(seg, b).expect("write");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("must refuse");
    assert!(
        matches!(
            e,
            LedgerError::VersionMismatch {
                found: 4,
                expected: 3
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "ledger format version 4 is not supported (this build reads version 3)"
    );
    assert!(matches!(
        LedgerReader::open(&dir),
        Err(LedgerError::VersionMismatch { .. })
    ));
    assert!(matches!(
        verify(&dir, &VerifyOptions::default()),
        Err(LedgerError::VersionMismatch { .. })
    ));
}

#[test]
fn second_writer_is_locked_out() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("ledger");
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("open");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("second writer");
    assert!(matches!(e, LedgerError::Locked));
    assert_eq!(e.to_string(), "ledger is locked by another writer");
    l.close().expect("close");
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("open after close");
    l.close().expect("close");
}

#[test]
fn tail_removed_by_an_attacker_is_caught_by_the_checkpoint() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 200, 20);
    let last = testing::blocks(&dir)
        .expect("blocks")
        .last()
        .cloned()
        .expect("block");
    let b = std::fs::read(&last.path).expect("read");
    std::fs::write(&last.path, &b[..last.offset as usize]).expect("cut");
    let rep = verified(&dir);
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].seq, Some(last.first_seq));
    let e = Ledger::open(&dir, opts(t.path())).expect_err("writer must refuse");
    assert!(matches!(e, LedgerError::Corrupted { .. }), "{e}");
}

#[test]
fn pinned_key_rejects_a_resigned_ledger() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 60, 20);
    let good = ledger::read_public_key(&t.path().join("keys/ledger.ed25519.pub")).expect("pub");
    let pinned = VerifyOptions {
        trusted_public_key: Some(good),
        ..VerifyOptions::default()
    };
    assert!(verify(&dir, &pinned).expect("verify").ok());
    let other = VerifyOptions {
        trusted_public_key: Some([3; 32]),
        ..VerifyOptions::default()
    };
    let rep = verify(&dir, &other).expect("verify");
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].segment, "checkpoints");
}

/// The committed v1 ledger (crates/ledger/testdata/v1) must be readable and verify forever.
#[test]
fn committed_v1_fixture_reads_and_verifies() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v1");
    if std::env::var_os("PUGMARK_WRITE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        let mut o = opts(&fixture);
        o.segment_max_bytes = 4096;
        let dir = fixture.join("ledger");
        let (mut l, _) = Ledger::open(&dir, o).expect("open");
        for i in (1..=120).step_by(30) {
            let recs: Vec<Vec<u8>> = (i..i + 30).map(record).collect();
            l.append_batch(recs.iter().map(|r| r.as_slice()))
                .expect("append");
        }
        l.close().expect("close");
        for p in testing::segment_paths(&dir).expect("segs") {
            let _ = std::fs::remove_file(p.with_extension("idx"));
        }
        let _ = std::fs::remove_file(dir.join(ledger::LOCK_FILE));
        // Only the public key is committed.
        let _ = std::fs::remove_file(fixture.join("keys/ledger.ed25519"));
    }
    let dir = fixture.join("ledger");
    let key = ledger::read_public_key(&fixture.join("keys/ledger.ed25519.pub")).expect("pub");
    let rep = verify(
        &dir,
        &VerifyOptions {
            trusted_public_key: Some(key),
            ..VerifyOptions::default()
        },
    )
    .expect("verify");
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.records, 120);
    assert!(rep.segments >= 2);
    // Four batches of 30 records, each several blocks with only its last one flagged.
    let ends: Vec<u64> = testing::blocks(&dir)
        .expect("blocks")
        .iter()
        .filter(|b| b.batch_end)
        .map(|b| b.first_seq + b.count as u64 - 1)
        .collect();
    assert_eq!(ends, vec![30, 60, 90, 120]);
    assert!(testing::blocks(&dir).expect("blocks").len() > 4);
    // Read through a copy: the reader must cope without sidecars, and the fixture stays untouched.
    let t = tempfile::tempdir().expect("tmp");
    copy_dir(&dir, &t.path().join("ledger"));
    check_all(&t.path().join("ledger"), 120);
}

/// A tampering and where `verify` must report the first bad record.
#[derive(Debug, Clone)]
enum Tamper {
    FlipByte { pos: u64, bit: u8 },
    Delete { block: usize, at: usize },
    Insert { block: usize, at: usize },
    Swap { block: usize, at: usize },
    Alter { block: usize, at: usize },
    Truncate { pos: u64 },
    AlterCheckpoint { entry: usize, byte: usize },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        3 => (any::<u64>(), 0u8..8).prop_map(|(pos, bit)| Tamper::FlipByte { pos, bit }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(block, at)| Tamper::Delete { block, at }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(block, at)| Tamper::Insert { block, at }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(block, at)| Tamper::Swap { block, at }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(block, at)| Tamper::Alter { block, at }),
        1 => any::<u64>().prop_map(|pos| Tamper::Truncate { pos }),
        1 => (any::<usize>(), 0usize..152).prop_map(|(entry, byte)| Tamper::AlterCheckpoint { entry, byte }),
    ]
}

/// Applies the tampering; returns (expected first bad seq, expected file of the problem).
fn apply(dir: &Path, t: &Tamper) -> (Option<u64>, Option<String>) {
    let blocks = testing::blocks(dir).expect("blocks");
    let segs = testing::segment_paths(dir).expect("segs");
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    match *t {
        Tamper::FlipByte { pos, bit } => {
            let total: u64 = segs
                .iter()
                .map(|p| std::fs::metadata(p).expect("meta").len())
                .sum();
            let mut pos = pos % total;
            for p in &segs {
                let len = std::fs::metadata(p).expect("meta").len();
                if pos < len {
                    let mut b = std::fs::read(p).expect("read");
                    b[pos as usize] ^= 1 << bit;
                    std::fs::write(p, b).expect("write");
                    let expect = blocks
                        .iter()
                        .find(|b| &b.path == p && b.offset <= pos && pos < b.offset + b.len)
                        .map(|b| b.first_seq)
                        .or_else(|| blocks.iter().find(|b| &b.path == p).map(|b| b.first_seq));
                    return (expect, name(p));
                }
                pos -= len;
            }
            unreachable!()
        }
        Tamper::Truncate { pos } => {
            let p = &segs[(pos % segs.len() as u64) as usize];
            let len = std::fs::metadata(p).expect("meta").len();
            let cut = 128 + (pos / 7) % (len - 128);
            let b = std::fs::read(p).expect("read");
            std::fs::write(p, &b[..cut as usize]).expect("write");
            let first = blocks
                .iter()
                .find(|b| &b.path == p && cut < b.offset + b.len)
                .map(|b| b.first_seq);
            (first, None)
        }
        Tamper::AlterCheckpoint { entry, byte } => {
            let p = dir.join("checkpoints");
            let mut b = std::fs::read(&p).expect("read");
            let n = (b.len() - 16) / 152;
            let off = 16 + (entry % n) * 152;
            b[off + byte] ^= 0x40;
            std::fs::write(&p, b).expect("write");
            (None, Some("checkpoints".into()))
        }
        Tamper::Delete { block, at }
        | Tamper::Insert { block, at }
        | Tamper::Swap { block, at }
        | Tamper::Alter { block, at } => {
            let blk = &blocks[block % blocks.len()];
            let n = blk.count as usize;
            let i = match t {
                Tamper::Insert { .. } => at % (n + 1),
                Tamper::Swap { .. } if n < 2 => return apply(dir, &Tamper::Alter { block, at }),
                Tamper::Swap { .. } => at % (n - 1),
                _ => at % n,
            };
            testing::rewrite_block(blk, |recs| match t {
                Tamper::Delete { .. } => {
                    recs.remove(i);
                }
                Tamper::Insert { .. } => recs.insert(i, ([1, 2, 3, 4], b"forged record".to_vec())),
                Tamper::Swap { .. } => recs.swap(i, i + 1),
                _ => recs[i].1.push(b'!'),
            })
            .expect("rewrite");
            (Some(blk.first_seq + i as u64), name(&blk.path))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_tampering_is_detected_and_located(t in tamper()) {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = make(tmp.path(), 240, 40);
        let (seq, file) = apply(&dir, &t);
        let rep = match verify(&dir, &VerifyOptions::default()) {
            // A flipped version field is indistinguishable from another format version.
            Err(LedgerError::VersionMismatch { .. }) => {
                let flipped = matches!(t, Tamper::FlipByte { .. });
                prop_assert!(flipped);
                return Ok(());
            }
            r => r.expect("verify runs"),
        };
        prop_assert!(!rep.ok(), "undetected: {:?}", t);
        let first = &rep.problems[0];
        if let Some(seq) = seq {
            prop_assert_eq!(first.seq, Some(seq), "{:?}: {}", t, first);
        }
        if let Some(file) = file {
            prop_assert_eq!(&first.segment, &file, "{:?}: {}", t, first);
        }
    }
}
