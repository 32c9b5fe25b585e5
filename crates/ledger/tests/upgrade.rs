//! Format 3 and the migration of a version-2 ledger (docs/FORMAT.md "Version 3"): a v2
//! ledger keeps working as v2, `upgrade_segment` rewrites its segments block by block into
//! envelope columns, and afterwards every record reads back byte for byte, `verify` is
//! clean, every checkpoint note made under v2 still checks and proofs made before the
//! rewrite check against roots computed after it.

use std::path::Path;
use std::time::Duration;

use ledger::testing;
use ledger::{Ledger, LedgerOptions, LedgerReader, VerifyOptions, verify};

fn opts(root: &Path) -> LedgerOptions {
    LedgerOptions {
        checkpoint_every_records: 300,
        checkpoint_every: Duration::from_secs(3600),
        segment_max_bytes: 8 << 10,
        block_max_bytes: 4096,
        sync: false,
        key_path: root.join("keys/ledger.ed25519"),
        ..LedgerOptions::default()
    }
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s);
}

/// Record `i`: mostly kind-1 envelopes of a file import (docs/FORMAT.md "Payloads"), some
/// from peers, and now and then a payload that is no envelope at all (stored verbatim).
fn record(i: u64) -> Vec<u8> {
    if i.is_multiple_of(97) {
        return format!("not an envelope {i}").into_bytes();
    }
    let mut b = vec![2, 1];
    b.extend_from_slice(&(1_780_000_000_000_000_000i64 + i as i64 * 1_234_567).to_le_bytes());
    b.extend_from_slice(&[2, 1, 0]);
    put_str(&mut b, b"");
    if i.is_multiple_of(13) {
        b.push(2);
        put_str(&mut b, format!("10.0.0.{}:514", i % 5).as_bytes());
        put_str(&mut b, b"syslog-udp");
    } else {
        b.push(1);
        put_str(&mut b, format!("/var/log/host{}/syslog", i % 3).as_bytes());
        b.extend_from_slice(&i.to_le_bytes());
    }
    let raw = format!(
        "Dec  6 10:{:02}:{:02} hv{:03} sshd[{}]: Accepted publickey for user{} from 192.0.2.{} port {}",
        (i / 60) % 60,
        i % 60,
        i % 40,
        1000 + i % 977,
        i % 11,
        i % 250,
        40000 + i % 9000
    );
    put_str(&mut b, raw.as_bytes());
    b
}

fn append(l: &mut Ledger, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i <= to {
        let recs: Vec<Vec<u8>> = (i..(i + batch).min(to + 1)).map(record).collect();
        let r = l
            .append_batch(recs.iter().map(|r| r.as_slice()))
            .expect("append");
        assert_eq!(r.first.get(), i);
        i += recs.len() as u64;
    }
}

fn segment_versions(dir: &Path) -> Vec<u32> {
    testing::segment_paths(dir)
        .expect("segments")
        .iter()
        .map(|p| {
            let b = std::fs::read(p).expect("read");
            u32::from_le_bytes([b[8], b[9], b[10], b[11]])
        })
        .collect()
}

fn ledger_bytes(dir: &Path) -> u64 {
    testing::segment_paths(dir)
        .expect("segments")
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .sum()
}

fn check_all(dir: &Path, n: u64) {
    let mut r = LedgerReader::open(dir).expect("reader");
    assert_eq!(r.len(), n);
    for i in (1..=n).step_by(7) {
        assert_eq!(r.get(i).expect("get"), record(i), "record {i}");
    }
    let mut it = r.iter_from(1);
    let mut seen = 0;
    while let Some(x) = it.next_ref() {
        let (s, p) = x.expect("iter");
        assert_eq!(p, record(s.get()).as_slice(), "record {}", s.get());
        seen += 1;
    }
    assert_eq!(seen, n);
}

fn clean(dir: &Path, root: &Path) -> ledger::VerifyReport {
    let key = ledger::read_public_key(&root.join("keys/ledger.ed25519.pub")).expect("pub");
    let rep = verify(
        dir,
        &VerifyOptions {
            trusted_public_key: Some(key),
            ..VerifyOptions::default()
        },
    )
    .expect("verify runs");
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(
        rep.signed_size,
        Some(rep.records),
        "every record under a signed note"
    );
    rep
}

#[test]
fn new_ledgers_are_format_3_and_v2_ledgers_stay_v2_until_migrated() {
    let t = tempfile::tempdir().expect("tmp");
    let v3 = t.path().join("a/ledger");
    let (mut l, _) = Ledger::open(&v3, opts(&t.path().join("a"))).expect("open");
    append(&mut l, 1, 2000, 100);
    l.close().expect("close");
    let vs = segment_versions(&v3);
    assert!(vs.len() > 2 && vs.iter().all(|v| *v == 3), "{vs:?}");
    assert_eq!(
        ledger::upgradable_segments(&v3).expect("list"),
        Vec::<u32>::new()
    );

    let v2 = t.path().join("b/ledger");
    let (mut l, _) =
        testing::open_creating_version(&v2, opts(&t.path().join("b")), 2).expect("open v2");
    append(&mut l, 1, 1000, 100);
    l.close().expect("close");
    // A later writer of this build appends to it, and rolls over, in format 2.
    let (mut l, _) = Ledger::open(&v2, opts(&t.path().join("b"))).expect("reopen");
    append(&mut l, 1001, 2000, 100);
    l.close().expect("close");
    let vs = segment_versions(&v2);
    assert!(vs.len() > 2 && vs.iter().all(|v| *v == 2), "{vs:?}");
    check_all(&v2, 2000);
    clean(&v2, &t.path().join("b"));
    // Same records, same chain: format 3 is smaller.
    let (a, b) = (ledger_bytes(&v3), ledger_bytes(&v2));
    assert!(a * 10 < b * 9, "format 3 {a} bytes, format 2 {b}");
    assert_eq!(
        LedgerReader::open(&v3)
            .expect("r")
            .head_at(2000)
            .expect("head"),
        LedgerReader::open(&v2)
            .expect("r")
            .head_at(2000)
            .expect("head")
    );
}

#[test]
fn upgrade_keeps_chain_notes_and_proofs_and_shrinks_the_ledger() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path();
    let dir = root.join("ledger");
    let (mut l, _) = testing::open_creating_version(&dir, opts(root), 2).expect("open v2");
    append(&mut l, 1, 3000, 150);
    l.close().expect("close");
    let before_bytes = ledger_bytes(&dir);
    let notes_before = std::fs::read(dir.join(ledger::NOTES_FILE)).expect("notes");
    let ckpts_before = std::fs::read(dir.join(ledger::CHECKPOINT_FILE)).expect("ckpts");
    let mut r = LedgerReader::open(&dir).expect("reader");
    let old_root = r.root(2000).expect("root");
    let proof = r.inclusion_proof(1234, 2000).expect("proof");
    let head_before = r.head_at(3000).expect("head");
    drop(r);

    // Migration mode: appends go to a new format-3 segment, the old ones are rewritten.
    let (mut l, _) = Ledger::open(
        &dir,
        LedgerOptions {
            migrating: true,
            ..opts(root)
        },
    )
    .expect("open migrating");
    let todo = ledger::upgradable_segments(&dir).expect("list");
    assert!(todo.len() > 3, "{todo:?}");
    let mut records = 0;
    for n in &todo {
        let u = l
            .upgrade_segment(*n)
            .expect("upgrade")
            .expect("something to do");
        assert!(u.bytes_after < u.bytes_before, "{u:?}");
        records += u.records;
        // A second pass over the same segment has nothing to do.
        assert_eq!(l.upgrade_segment(*n).expect("again"), None);
    }
    assert_eq!(records, 3000);
    append(&mut l, 3001, 3100, 50);
    l.close().expect("close");
    assert!(segment_versions(&dir).iter().all(|v| *v == 3));
    let after_bytes = ledger_bytes(&dir);
    assert!(
        after_bytes * 10 < before_bytes * 9,
        "{after_bytes} vs {before_bytes}"
    );

    check_all(&dir, 3100);
    let rep = clean(&dir, root);
    assert!(rep.notes > 10, "{}", rep.notes);
    // The signed files are appended to, never rewritten.
    let notes_after = std::fs::read(dir.join(ledger::NOTES_FILE)).expect("notes");
    let ckpts_after = std::fs::read(dir.join(ledger::CHECKPOINT_FILE)).expect("ckpts");
    assert!(notes_after.starts_with(&notes_before));
    assert!(ckpts_after.starts_with(&ckpts_before));
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert_eq!(r.head_at(3000).expect("head"), head_before);
    // A proof made under format 2 checks against the root recomputed from format 3.
    assert_eq!(r.root(2000).expect("root"), old_root);
    let leaf = ledger::leaf_hash(&record(1234));
    ledger::check_inclusion(&proof.to_vec(), 2000, old_root, 1234, leaf).expect("old proof");
    // And the tree rebuilt from the rewritten records gives the same roots.
    std::fs::remove_dir_all(dir.join(ledger::TREE_DIR)).expect("rm tree");
    let (l, _) = Ledger::open(&dir, opts(root)).expect("reopen rebuilds the tree");
    l.close().expect("close");
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert_eq!(r.root(2000).expect("root"), old_root);
}

#[test]
fn an_interrupted_upgrade_leaves_a_valid_ledger_that_a_rerun_finishes() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path();
    let dir = root.join("ledger");
    let (mut l, _) = testing::open_creating_version(&dir, opts(root), 2).expect("open v2");
    append(&mut l, 1, 1500, 100);
    l.close().expect("close");
    let mig = || LedgerOptions {
        migrating: true,
        ..opts(root)
    };
    let (mut l, _) = Ledger::open(&dir, mig()).expect("open");
    let todo = ledger::upgradable_segments(&dir).expect("list");
    l.upgrade_segment(todo[0]).expect("upgrade first");
    drop(l);

    // A crash before a rename leaves the half-made copy beside the old segment: the next
    // writer open removes it, the segment itself is whole.
    let seg2 = &testing::segment_paths(&dir).expect("segs")[1];
    let leftover = seg2.with_extension("dat.upgrading");
    std::fs::write(&leftover, b"PUGMSEG\0 half a segment").expect("leftover");
    std::fs::remove_file(seg2.with_extension("idx")).expect("sidecar gone too");
    clean(&dir, root);
    check_all(&dir, 1500);
    let (mut l, _) = Ledger::open(&dir, mig()).expect("reopen");
    assert!(!leftover.try_exists().expect("stat"));
    for n in ledger::upgradable_segments(&dir).expect("list") {
        l.upgrade_segment(n).expect("upgrade");
    }
    l.close().expect("close");
    assert!(segment_versions(&dir).iter().all(|v| *v == 3));
    clean(&dir, root);
    check_all(&dir, 1500);
}

#[test]
fn tampering_in_an_upgraded_segment_is_located_to_the_record() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path();
    let dir = root.join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(root)).expect("open");
    append(&mut l, 1, 800, 100);
    l.close().expect("close");
    let blocks = testing::blocks(&dir).expect("blocks");
    let b = &blocks[3];
    let target = b.first_seq + 2;
    // An attacker who re-encodes the columns and fixes the checksum: the tag names the record.
    testing::rewrite_block(b, |recs| {
        let p = &mut recs[2].1;
        let n = p.len();
        p[n - 1] ^= 1;
    })
    .expect("tamper");
    let rep = verify(&dir, &VerifyOptions::default()).expect("verify");
    let first = rep.problems.first().expect("a problem");
    assert_eq!(first.seq, Some(target), "{first}");
    // A flipped byte in the stored columns: the block checksum fails first.
    let t2 = tempfile::tempdir().expect("tmp");
    let dir2 = t2.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir2, opts(t2.path())).expect("open");
    append(&mut l, 1, 800, 100);
    l.close().expect("close");
    let b = &testing::blocks(&dir2).expect("blocks")[2];
    let mut bytes = std::fs::read(&b.path).expect("read");
    bytes[(b.offset + 90) as usize] ^= 0x40;
    std::fs::write(&b.path, bytes).expect("write");
    let rep = verify(&dir2, &VerifyOptions::default()).expect("verify");
    let first = rep.problems.first().expect("a problem");
    assert_eq!(first.seq, Some(b.first_seq), "{first}");
    assert!(first.to_string().contains("checksum"), "{first}");
    // A format-3 block relabelled as format 2 (codec 1), checksum fixed up: the block.
    let t3 = tempfile::tempdir().expect("tmp");
    let dir3 = t3.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir3, opts(t3.path())).expect("open");
    append(&mut l, 1, 800, 100);
    l.close().expect("close");
    let b = &testing::blocks(&dir3).expect("blocks")[4];
    testing::set_codec(b, 1).expect("tamper");
    let rep = verify(&dir3, &VerifyOptions::default()).expect("verify");
    let first = rep.problems.first().expect("a problem");
    assert_eq!(first.seq, Some(b.first_seq), "{first}");
    assert!(first.to_string().contains("codec"), "{first}");
    let mut r = LedgerReader::open(&dir3).expect("reader");
    assert!(r.get(b.first_seq).is_err());
    assert_eq!(
        r.get(b.first_seq - 1).expect("get"),
        record(b.first_seq - 1)
    );
}
