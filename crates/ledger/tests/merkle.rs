//! The Merkle tree over the ledger: roots, inclusion and consistency proofs out of the store,
//! checked by `tlog_tiles`' independent checkers and by a Python `hashlib` RFC 6962 root, and
//! the signed checkpoint notes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ledger::{
    Ledger, LedgerOptions, LedgerReader, check_record, check_tree, leaf_hash, verify_note,
};

fn opts(root: &Path) -> LedgerOptions {
    LedgerOptions {
        checkpoint_every_records: 300,
        checkpoint_every: Duration::from_secs(3600),
        segment_max_bytes: 64 << 10,
        block_max_bytes: 4096,
        sync: false,
        key_path: root.join("keys/ledger.ed25519"),
        origin: Some("pugmark.test/ledger".into()),
        ..LedgerOptions::default()
    }
}

fn record(i: u64) -> Vec<u8> {
    format!(
        "<13>1 2024-05-01T10:00:00Z host app - - - record {i} {}",
        "y".repeat((i % 40) as usize)
    )
    .into_bytes()
}

fn make(root: &Path, n: u64, batch: u64) -> PathBuf {
    let dir = root.join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(root)).expect("open");
    let mut i = 1;
    while i <= n {
        let recs: Vec<Vec<u8>> = (i..(i + batch).min(n + 1)).map(record).collect();
        l.append_batch(recs.iter().map(|r| r.as_slice()))
            .expect("append");
        i += recs.len() as u64;
    }
    l.close().expect("close");
    dir
}

/// RFC 6962 roots computed by Python's hashlib from the same payloads: an implementation
/// that shares no code with ours.
fn python_roots(n: u64, sizes: &[u64]) -> Vec<String> {
    let script = format!(
        r#"
import hashlib, sys
def rec(i):
    return ("<13>1 2024-05-01T10:00:00Z host app - - - record %d %s" % (i, "y" * (i % 40))).encode()
def mth(l):
    if len(l) == 1: return l[0]
    k = 1
    while k * 2 < len(l): k *= 2
    return hashlib.sha256(b"\x01" + mth(l[:k]) + mth(l[k:])).digest()
leaves = [hashlib.sha256(b"\x00" + rec(i)).digest() for i in range(1, {n} + 1)]
for s in [{sizes}]:
    print(mth(leaves[:s]).hex())
"#,
        sizes = sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect()
}

fn hex(h: &ledger::Hash) -> String {
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn roots_and_proofs_from_the_store_check_independently() {
    let t = tempfile::tempdir().expect("tmp");
    let n = 1300;
    let dir = make(t.path(), n, 37);
    // The tree files hold only level 8 and up: 1300 >> 8 = 5 hashes at level 8.
    let l8 = std::fs::metadata(ledger::level_path(&dir, 8))
        .expect("level 8")
        .len();
    assert_eq!(l8, 5 * 32);
    // Level 5 (32-leaf subgroups) is stored too: 1300 >> 5 = 40 hashes.
    let l5 = std::fs::metadata(ledger::level_path(&dir, ledger::SUB_LEVEL))
        .expect("level 5")
        .len();
    assert_eq!(l5, 40 * 32);
    let sizes = [1, 2, 3, 255, 256, 257, 511, 512, 513, 1024, 1299, 1300];
    let want = python_roots(n, &sizes);
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert_eq!(r.tree_size(), n);
    for (s, w) in sizes.iter().zip(&want) {
        assert_eq!(&hex(&r.root(*s).expect("root")), w, "root of size {s}");
    }
    for &size in &[1u64, 300, 1024, 1300] {
        let root = r.root(size).expect("root");
        for seq in [1, 2, size / 2 + 1, size.saturating_sub(1).max(1), size] {
            if seq > size {
                continue;
            }
            let proof = r.inclusion_proof(seq, size).expect("proof");
            let leaf = r.leaf_hash(seq).expect("leaf");
            check_record(&proof, size, root, seq - 1, leaf).expect("inclusion proof checks");
            // A proof for another record does not check.
            let other = leaf_hash(b"not the record");
            assert!(check_record(&proof, size, root, seq - 1, other).is_err());
        }
        for old in [1u64, 2, 255, 256, 700, size] {
            if old > size {
                continue;
            }
            let old_root = r.root(old).expect("old root");
            let proof = r.consistency_proof(old, size).expect("consistency");
            check_tree(&proof, size, root, old, old_root).expect("consistency proof checks");
        }
    }
    assert!(r.inclusion_proof(n + 1, n).is_err());
    assert!(r.root(n + 1).is_err());
}

#[test]
fn checkpoint_notes_are_signed_c2sp_checkpoints_of_the_tree() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 1000, 100);
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(l.origin(), "pugmark.test/ledger");
    let vkey = l.verifier_key().expect("vkey");
    assert!(vkey.starts_with("pugmark.test/ledger+"), "{vkey}");
    let note = l.latest_checkpoint().expect("read").expect("a note");
    let text = String::from_utf8(note.clone()).expect("utf8");
    let ck = verify_note(&note, &vkey).expect("the note verifies");
    assert_eq!(ck.size, 1000);
    assert_eq!(ck.root, l.root().expect("root"));
    let mut r = LedgerReader::open(&dir).expect("reader");
    assert_eq!(r.root(1000).expect("root"), ck.root);
    assert!(text.starts_with("pugmark.test/ledger\n1000\n"), "{text}");
    // Every note in the file verifies and sizes only grow.
    let all = ledger::read_notes(&dir.join(ledger::NOTES_FILE))
        .expect("notes")
        .expect("file");
    assert!(all.notes.len() >= 4, "{}", all.notes.len());
    let mut last = 0;
    for n in &all.notes {
        let c = verify_note(&n.note, &vkey).expect("verifies");
        assert!(c.size >= last);
        last = c.size;
        assert_eq!(r.root(c.size).expect("root"), c.root);
    }
}

#[test]
fn tree_files_lost_or_damaged_are_rebuilt_and_checked_against_the_note() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 2000, 250);
    let want = LedgerReader::open(&dir)
        .expect("r")
        .root(2000)
        .expect("root");
    std::fs::remove_dir_all(dir.join(ledger::TREE_DIR)).expect("rm tree");
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("reopen rebuilds");
    assert_eq!(l.root().expect("root"), want);
    drop(l);
    // Garbage past the signed size is recomputed; the root still matches.
    let p = ledger::level_path(&dir, 8);
    let mut b = std::fs::read(&p).expect("read");
    let len = b.len();
    b[len - 1] ^= 0xff;
    std::fs::write(&p, &b).expect("write");
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(l.root().expect("root"), want);
}

#[test]
fn tree_hashes_past_the_synced_mark_are_recomputed_not_trusted() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 2000, 250);
    // A clean close leaves the mark at the last checkpoint.
    assert_eq!(ledger::read_tree_synced(&dir).expect("mark"), Some(2000));
    let want = LedgerReader::open(&dir)
        .expect("r")
        .root(2000)
        .expect("root");
    // As after a crash that lost the tail of a level file the syncer had not reached: the
    // last level-8 hash (leaves 1537..1792, inside the signed size, read at open) is wrong. With the mark at the end, open finds the root differs
    // from the note and rebuilds the whole tree (the backstop).
    let p = ledger::level_path(&dir, 8);
    let damage = |p: &Path| {
        let mut b = std::fs::read(p).expect("read");
        let len = b.len();
        b[len - 1] ^= 0xff;
        std::fs::write(p, &b).expect("write");
    };
    damage(&p);
    let (l, report) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(l.root().expect("root"), want);
    assert!(report.index_rebuilt.iter().any(|x| x == ledger::TREE_DIR));
    drop(l);
    // With a mark that does not check (torn), nothing in the files is trusted: the tree is
    // recomputed from the records, no rebuild after a mismatch is needed.
    damage(&p);
    let mark = dir.join(ledger::TREE_DIR).join(ledger::TREE_SYNCED_FILE);
    std::fs::write(&mark, [7u8; 16]).expect("torn mark");
    assert_eq!(ledger::read_tree_synced(&dir).expect("mark"), Some(0));
    let (l, report) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(l.root().expect("root"), want);
    assert!(!report.index_rebuilt.iter().any(|x| x == ledger::TREE_DIR));
    drop(l);
    // Open made its recomputation durable and moved the mark to the end.
    assert_eq!(ledger::read_tree_synced(&dir).expect("mark"), Some(2000));
    // A ledger written before the mark existed (no file) trusts its files up to the note.
    std::fs::remove_file(&mark).expect("rm mark");
    assert_eq!(ledger::read_tree_synced(&dir).expect("mark"), None);
    let (l, report) = Ledger::open(&dir, opts(t.path())).expect("reopen");
    assert_eq!(l.root().expect("root"), want);
    assert!(!report.index_rebuilt.iter().any(|x| x == ledger::TREE_DIR));
}

#[test]
fn deleted_notes_file_is_not_recreated() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 500, 100);
    std::fs::remove_file(dir.join(ledger::NOTES_FILE)).expect("rm");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("refused");
    assert!(e.to_string().contains("not recreated"), "{e}");
    assert!(!dir.join(ledger::NOTES_FILE).try_exists().expect("stat"));
    // The same for the binary checkpoint file.
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 500, 100);
    std::fs::remove_file(dir.join(ledger::CHECKPOINT_FILE)).expect("rm");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("refused");
    assert!(e.to_string().contains("not recreated"), "{e}");
    assert!(
        !dir.join(ledger::CHECKPOINT_FILE)
            .try_exists()
            .expect("stat")
    );
}

/// Roots of sizes that cut subgroups and groups everywhere, checked against Python, and an
/// inclusion proof of every 7th record.
fn check_roots_and_proofs(dir: &Path, n: u64) {
    let sizes = [1, 31, 32, 33, 255, 256, 257, 700, 703, 1024, 1299, n];
    let want = python_roots(n, &sizes);
    let mut r = LedgerReader::open(dir).expect("reader");
    for (s, w) in sizes.iter().zip(&want) {
        assert_eq!(&hex(&r.root(*s).expect("root")), w, "root of size {s}");
    }
    let root = r.root(n).expect("root");
    for seq in (1..=n).step_by(7) {
        let proof = r.inclusion_proof(seq, n).expect("proof");
        let leaf = r.leaf_hash(seq).expect("leaf");
        check_record(&proof, n, root, seq - 1, leaf).expect("inclusion proof checks");
    }
}

#[test]
fn a_tree_without_the_subgroup_level_keeps_working_and_a_rebuild_adds_it() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 700, 37);
    let l5 = ledger::level_path(&dir, ledger::SUB_LEVEL);
    // A tree written before level 5 existed: the file is not there.
    std::fs::remove_file(&l5).expect("remove level 5");
    {
        let (mut l, _) = Ledger::open(&dir, opts(t.path())).expect("reopen");
        let recs: Vec<Vec<u8>> = (701..=1300).map(record).collect();
        l.append_batch(recs.iter().map(|r| r.as_slice()))
            .expect("append");
        l.close().expect("close");
    }
    assert!(
        !l5.try_exists().expect("stat level 5"),
        "not started mid-way: its first entries would be missing"
    );
    check_roots_and_proofs(&dir, 1300);
    // A rebuild from the records (the tree directory gone) starts it.
    std::fs::remove_dir_all(dir.join(ledger::TREE_DIR)).expect("remove tree");
    drop(Ledger::open(&dir, opts(t.path())).expect("reopen"));
    assert_eq!(
        std::fs::metadata(&l5).expect("level 5").len(),
        (1300 >> 5) * 32
    );
    check_roots_and_proofs(&dir, 1300);
}

#[test]
fn a_short_or_damaged_subgroup_level_is_refilled_or_refused_by_the_proof() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 1300, 37);
    let l5 = ledger::level_path(&dir, ledger::SUB_LEVEL);
    let full = std::fs::read(&l5).expect("level 5");
    // Torn: the last entries lost and half of one written.
    std::fs::write(&l5, &full[..full.len() - 3 * 32 - 16]).expect("cut");
    drop(Ledger::open(&dir, opts(t.path())).expect("reopen"));
    assert_eq!(
        std::fs::read(&l5).expect("level 5"),
        full,
        "refilled in place"
    );
    check_roots_and_proofs(&dir, 1300);
    // A flipped entry is not trusted blindly: the proof built from it does not check
    // against the signed root (derived data; the writer's open rebuilds on a root mismatch).
    let mut bad = full.clone();
    bad[5 * 32] ^= 1;
    std::fs::write(&l5, &bad).expect("flip");
    let mut r = LedgerReader::open(&dir).expect("reader");
    let good_root = {
        std::fs::write(&l5, &full).expect("restore");
        let root = r.root(1300).expect("root");
        std::fs::write(&l5, &bad).expect("flip");
        root
    };
    let mut r = LedgerReader::open(&dir).expect("reader");
    let seq = 5 * 32 + 40; // under the flipped subgroup's sibling
    let proof = r.inclusion_proof(seq, 1300).expect("proof");
    let leaf = r.leaf_hash(seq).expect("leaf");
    assert!(check_record(&proof, 1300, good_root, seq - 1, leaf).is_err());
}
