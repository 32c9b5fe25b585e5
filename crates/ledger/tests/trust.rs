//! The attacks of issue 11 that the ledger itself stops, without witnesses: records appended
//! with the public chain key, a missing or changed signing key (in a file or a token), a
//! deleted notes file.
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
    let root = l.root().expect("root");
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

/// A stand-in for a PKCS#11 token: signs with a seed it never hands out; `salted`, it answers
/// with a different key's signature at each call (a broken or swapped token), which a ledger
/// must refuse.
#[derive(Debug)]
struct Token {
    key: ed25519_dalek::SigningKey,
    randomised: std::sync::atomic::AtomicU8,
    salted: bool,
}

impl Token {
    fn new(seed: u8, salted: bool) -> std::sync::Arc<Token> {
        std::sync::Arc::new(Token {
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            randomised: std::sync::atomic::AtomicU8::new(0),
            salted,
        })
    }
}

impl ledger::ExternalSigner for Token {
    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        use ed25519_dalek::Signer as _;
        if self.salted {
            // A different key per call.
            let n = self
                .randomised
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(ed25519_dalek::SigningKey::from_bytes(&[n; 32])
                .sign(msg)
                .to_bytes());
        }
        Ok(self.key.sign(msg).to_bytes())
    }
    fn describe(&self) -> String {
        "pkcs11:object=test".into()
    }
}

/// A ledger whose key is in a token: no key file, the MAC key derived from the token's
/// signature, and the same attacks refused as with a key file.
#[test]
fn a_token_keyed_ledger_refuses_forged_appends_and_a_different_token_key() {
    use ledger::ExternalSigner as _;
    let t = tempfile::tempdir().expect("tmp");
    let token = Token::new(5, false);
    let with = |s: std::sync::Arc<Token>| LedgerOptions {
        signer: Some(s),
        ..opts(t.path())
    };
    let dir = t.path().join("ledger");
    let (mut l, _) = Ledger::open(&dir, with(token.clone())).expect("open");
    for i in 0..250 {
        l.append_batch([format!("record {i}").as_bytes()])
            .expect("append");
    }
    l.close().expect("close");
    assert!(
        !t.path().join("keys").try_exists().expect("stat"),
        "nothing written beside key_path"
    );
    let (l, _) = Ledger::open(&dir, with(token.clone())).expect("reopens: the MAC key is stable");
    assert_eq!(l.public_key(), token.public_key());
    l.close().expect("close");
    // The token's MAC key, not the seed's, is what the blocks carry.
    let sig = token.sign(ledger::TOKEN_MAC_MESSAGE).expect("sign");
    let token_mac = ledger::token_mac_key(&sig);
    assert_ne!(token_mac, ledger::mac_key(&[5; 32]));
    testing::append_forged(&dir, &[b"<13>forged hypervisor line".as_slice()]).expect("forge");
    let rep = verify(
        &dir,
        &VerifyOptions {
            mac_key: Some(token_mac),
            ..VerifyOptions::default()
        },
    )
    .expect("verify");
    assert_eq!(rep.problems[0].seq, Some(251), "{:?}", rep.problems);
    let e = Ledger::open(&dir, with(token.clone())).expect_err("refused");
    assert!(e.to_string().contains("#251..#251"), "{e}");
    // Another key in the token: refused as a changed key.
    let t2 = tempfile::tempdir().expect("tmp");
    let d2 = t2.path().join("ledger");
    let (l, _) = Ledger::open(
        &d2,
        LedgerOptions {
            signer: Some(Token::new(6, false)),
            ..opts(t2.path())
        },
    )
    .expect("open");
    let mut l = l;
    l.append_batch([b"x".as_slice()]).expect("append");
    l.close().expect("close");
    let e = Ledger::open(
        &d2,
        LedgerOptions {
            signer: Some(Token::new(7, false)),
            ..opts(t2.path())
        },
    )
    .expect_err("refused");
    assert!(e.to_string().contains("key changed"), "{e}");
    assert!(e.to_string().contains("pkcs11:object=test"), "{e}");
    // A token whose signatures its public key does not verify signs nothing, keys no MAC.
    let e = Ledger::open(
        &d2,
        LedgerOptions {
            signer: Some(Token::new(6, true)),
            ..opts(t2.path())
        },
    )
    .expect_err("refused");
    assert!(
        e.to_string()
            .contains("signature its public key does not verify"),
        "{e}"
    );
}
