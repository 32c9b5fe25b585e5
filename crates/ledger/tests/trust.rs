//! The attacks of issue 11 that the ledger itself stops, without witnesses: records appended
//! with the public chain key, a missing or changed signing key, a deleted notes file.
//! (Rewriting with a stolen key and truncation of ledger + notes are what witnesses catch.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger::{Ledger, LedgerError, LedgerOptions, VerifyOptions, testing, verify};

fn opts(root: &Path) -> LedgerOptions {
    LedgerOptions {
        checkpoint_every_records: 100,
        checkpoint_every: Duration::from_secs(3600),
        block_max_bytes: 2048,
        sync: false,
        key_path: root.join("keys/ledger.ed25519"),
        ..LedgerOptions::default()
    }
}

fn make(root: &Path, n: u64) -> PathBuf {
    let dir = root.join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(root)).expect("open");
    for i in 0..n {
        let r = format!("record {i}");
        l.append_batch([r.as_bytes()]).expect("append");
    }
    l.close().expect("close");
    dir
}

fn mac_key(root: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(root.join("keys/ledger.ed25519")).expect("key");
    let key = ledger::parse_key(&text).expect("parse");
    ledger::mac_key(&key.to_bytes())
}

#[test]
fn append_with_the_public_chain_key_is_refused_and_reported() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 250);
    testing::append_forged(&dir, &[b"<13>forged hypervisor line".as_slice()]).expect("forge");
    // Without the secret: the chain is intact, but the record is covered by no signature.
    let rep = verify(&dir, &VerifyOptions::default()).expect("verify");
    assert_eq!(rep.records, 251);
    assert_eq!(rep.signed_size, Some(250));
    assert_eq!(rep.unsigned_records, 1);
    assert!(!rep.macs_checked);
    // With the secret MAC key (what `pugmark verify` reads from DATA/keys): a problem at the
    // forged record.
    let rep = verify(
        &dir,
        &VerifyOptions {
            mac_key: Some(mac_key(t.path())),
            ..VerifyOptions::default()
        },
    )
    .expect("verify");
    assert!(!rep.ok());
    assert_eq!(rep.problems[0].seq, Some(251), "{:?}", rep.problems);
    assert!(rep.problems[0].what.contains("MAC"), "{:?}", rep.problems);
    // The next writer refuses to sign it.
    let e = Ledger::open(&dir, opts(t.path())).expect_err("refused");
    assert!(matches!(e, LedgerError::Refused(_)), "{e}");
    assert!(e.to_string().contains("#251..#251"), "{e}");
}

#[test]
fn honest_unsigned_tail_after_a_crash_is_accepted() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir, opts(t.path())).expect("open");
    for i in 0..130 {
        let r = format!("record {i}");
        l.append_batch([r.as_bytes()]).expect("append");
    }
    // Dropped without close(): records 101..130 are after the last checkpoint (a crash).
    drop(l);
    let rep = verify(
        &dir,
        &VerifyOptions {
            mac_key: Some(mac_key(t.path())),
            ..VerifyOptions::default()
        },
    )
    .expect("verify");
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.unsigned_records, 30);
    let (l, _) = Ledger::open(&dir, opts(t.path())).expect("the writer's own tail is accepted");
    assert_eq!(l.next_seq(), 131);
}

#[test]
fn missing_key_is_refused_not_recreated() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 10);
    let key = t.path().join("keys/ledger.ed25519");
    std::fs::remove_file(&key).expect("rm");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("refused");
    assert!(e.to_string().contains("keys rotate"), "{e}");
    assert!(!key.try_exists().expect("stat"), "no key was made");
}

#[test]
fn changed_key_is_refused() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 10);
    let key = t.path().join("keys/ledger.ed25519");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("replace key");
    let e = Ledger::open(&dir, opts(t.path())).expect_err("refused");
    assert!(e.to_string().contains("key changed"), "{e}");
}

#[test]
fn retention_removes_payloads_and_keeps_the_tree_verifiable() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("ledger");
    let mut o = opts(t.path());
    o.segment_max_bytes = 4096;
    let (mut l, _) = Ledger::open(&dir, o.clone()).expect("open");
    for i in 0..600u64 {
        let r = format!("record {i} {}", "z".repeat((i % 30) as usize));
        l.append_batch([r.as_bytes()]).expect("append");
    }
    l.checkpoint().expect("checkpoint");
    let size = l.tree_size();
    let root = l.root();
    let segs = testing::segment_paths(&dir).expect("segs").len();
    assert!(segs >= 4, "{segs} segments");
    // Remove segments 1 and 2 (the writer signs a retention record for each first).
    let mut removed = Vec::new();
    for n in [1u32, 2] {
        let r = l
            .remove_segment(n, |f| {
                format!("retention: segment {} records #{}..", f.segment, f.first).into_bytes()
            })
            .expect("remove");
        removed.push(r);
    }
    assert!(
        l.remove_segment(1, |_| Vec::new()).is_err(),
        "already removed"
    );
    let current = testing::segment_paths(&dir).expect("segs").len() as u32;
    assert!(
        l.remove_segment(current, |_| Vec::new()).is_err(),
        "never the current segment"
    );
    l.close().expect("close");

    let mut r = ledger::LedgerReader::open(&dir).expect("reader");
    let gone = removed[0].first;
    match r.get(gone) {
        Err(LedgerError::Removed { seq, record }) => {
            assert_eq!((seq, record), (gone, removed[0].record));
        }
        other => panic!("expected Removed, got {other:?}"),
    }
    // Iteration passes over removed payloads and counts them.
    let mut it = r.iter_from(1);
    let mut n = 0;
    while let Some(x) = it.next_ref() {
        x.expect("read");
        n += 1;
    }
    let removed_count: u64 = removed.iter().map(|x| x.count).sum();
    assert_eq!(it.skipped(), removed_count);
    assert_eq!(n + removed_count, r.len());
    // The tree and the old checkpoint still verify; proofs of kept records still check.
    assert_eq!(r.root(size).expect("root"), root);
    let kept = removed[1].first + removed[1].count + 3;
    let proof = r.inclusion_proof(kept, size).expect("proof");
    let leaf = r.leaf_hash(kept).expect("leaf");
    ledger::check_inclusion(&proof, size, root, kept, leaf).expect("checks");
    let p = r
        .inclusion_proof(gone, size)
        .expect("proof of a removed record, from its kept leaf");
    let leaf = r.leaf_hashes(gone, 1).expect("kept leaf")[0];
    ledger::check_inclusion(&p, size, root, gone, leaf).expect("checks");
    let rep = verify(
        &dir,
        &VerifyOptions {
            mac_key: Some(mac_key(t.path())),
            ..VerifyOptions::default()
        },
    )
    .expect("verify");
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.removed.len(), 2);
    assert_eq!(
        rep.removed[0],
        (removed[0].first, removed[0].count, removed[0].record)
    );
    assert_eq!(rep.unsigned_records, 0);
    // The writer reopens and goes on.
    let (mut l, _) = Ledger::open(&dir, o).expect("reopen");
    l.append_batch([b"after".as_slice()]).expect("append");
    l.close().expect("close");
    assert!(
        verify(&dir, &VerifyOptions::default())
            .expect("verify")
            .ok()
    );
    // A forged stub (a changed leaf hash) no longer matches the signed notes.
    let seg1 = &testing::segment_paths(&dir).expect("segs")[0];
    let mut b = std::fs::read(seg1).expect("read");
    let at = b.len() - 1;
    b[at] ^= 1;
    std::fs::write(seg1, &b).expect("write");
    let rep = verify(&dir, &VerifyOptions::default()).expect("verify");
    assert!(!rep.ok());
}

/// A note signed by the ledger's own key over a root the records do not have (what a writer
/// bug or a key holder's forgery would leave) is reported at that note.
#[test]
fn a_signed_note_over_another_root_is_reported() {
    struct S(ed25519_dalek::SigningKey, String);
    impl signed_note::Signer for S {
        fn name(&self) -> &str {
            &self.1
        }
        fn key_id(&self) -> u32 {
            let mut pk = vec![1u8];
            pk.extend_from_slice(self.0.verifying_key().as_bytes());
            signed_note::key_id(&self.1, &pk)
        }
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
            use ed25519_dalek::Signer as _;
            Ok(self.0.sign(msg).to_bytes().to_vec())
        }
    }
    let t = tempfile::tempdir().expect("tmp");
    let dir = make(t.path(), 50);
    let text = std::fs::read_to_string(t.path().join("keys/ledger.ed25519")).expect("key");
    let key = ledger::parse_key(&text).expect("parse");
    let origin = ledger::read_origin(&dir).expect("origin").expect("some");
    let ck = tlog_tiles::Checkpoint::new(&origin, 50, ledger::Hash([7; 32]), "").expect("ck");
    let mut note = signed_note::Note::new(&ck.to_bytes(), &[]).expect("note");
    note.add_sigs(&[&S(key, origin)]).expect("sign");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(ledger::NOTES_FILE))
        .expect("open");
    let mut b = note.to_bytes();
    b.push(b'\n');
    std::io::Write::write_all(&mut f, &b).expect("append");
    let rep = verify(&dir, &VerifyOptions::default()).expect("verify");
    assert!(!rep.ok());
    let p = rep
        .problems
        .iter()
        .find(|p| p.segment == ledger::NOTES_FILE)
        .expect("a notes problem");
    assert_eq!(p.seq, Some(50));
    assert!(p.what.contains("does not match the Merkle root"), "{p}");
}
