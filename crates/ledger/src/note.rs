//! Checkpoints as C2SP `tlog-checkpoint` signed notes, the log origin, and cosignatures.
//!
//! A checkpoint note's text is `<origin>\n<tree size>\n<base64 root>\n` (no extension lines),
//! signed with the ledger's Ed25519 key under the key name = the origin (C2SP signed-note
//! `name+keyid+base64(0x01 || public key)` verifier keys). Parsing, signing and verification
//! are `tlog_tiles::Checkpoint` and `signed_note`; this module only keeps the files:
//!
//! - `ledger/origin`: the log origin, one line, chosen when the ledger is created.
//! - `ledger/checkpoint-notes`: append-only, the writer's signed notes, each followed by one
//!   empty line (a note already ends its text with an empty line before the signatures).
//! - `ledger/cosignatures`: append-only, notes in the same framing holding the same text as
//!   one of ours and the witnesses' signature lines (`witness` appends them through
//!   [`append_cosigned`]). A reader merges them by text: [`latest_checkpoint`].

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::signer::KeySigner;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::error::LedgerError;

/// File holding the log origin.
pub const ORIGIN_FILE: &str = "origin";
/// Append-only file of the writer's signed checkpoint notes.
pub const NOTES_FILE: &str = "checkpoint-notes";
/// Append-only file of cosigned notes (witness signatures).
pub const COSIGNATURES_FILE: &str = "cosignatures";

/// Ed25519 algorithm byte of a signed-note key.
const ALG_ED25519: u8 = 0x01;

/// Reads the origin of the ledger in `dir` (`None` if the ledger has none yet).
pub fn read_origin(dir: &Path) -> Result<Option<String>, LedgerError> {
    let path = dir.join(ORIGIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let o = s.trim_end_matches('\n');
            if !valid_origin(o) {
                return Err(LedgerError::Note(format!(
                    "{}: not a valid log origin: {o:?}",
                    path.display()
                )));
            }
            Ok(Some(o.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LedgerError::io(path)(e)),
    }
}

/// Whether `o` can be a log origin and a signed-note key name: non-empty, printable ASCII
/// without spaces or `+`.
pub fn valid_origin(o: &str) -> bool {
    signed_note::is_key_name_valid(o) && o.bytes().all(|b| b.is_ascii_graphic())
}

/// A new origin: `pugmark.<16 random hex digits>/ledger`.
pub(crate) fn new_origin() -> Result<String, LedgerError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| LedgerError::Note(format!("no randomness: {e}")))?;
    Ok(format!("pugmark.{}/ledger", crate::format::to_hex(&b)))
}

/// Writes the origin file (once, at creation).
pub(crate) fn write_origin(dir: &Path, origin: &str) -> Result<(), LedgerError> {
    let path = dir.join(ORIGIN_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    f.write_all(format!("{origin}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(LedgerError::io(&path))?;
    crate::fileio::sync_dir(dir).map_err(LedgerError::io(dir))
}

/// The C2SP verifier key (`name+keyid+base64`) of `public_key` under key name `origin`.
pub fn verifier_key(origin: &str, public_key: &[u8; 32]) -> Result<String, LedgerError> {
    let vk = VerifyingKey::from_bytes(public_key)
        .map_err(|e| LedgerError::Note(format!("bad public key: {e}")))?;
    Ok(signed_note::new_ed25519_verifier_key(origin, &vk))
}

/// The ledger key as a signed-note signer under the origin's name.
pub(crate) struct NoteSigner<'a> {
    pub(crate) name: &'a str,
    pub(crate) key: &'a KeySigner,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn key_id(&self) -> u32 {
        let mut pk = vec![ALG_ED25519];
        pk.extend_from_slice(&self.key.public_key());
        signed_note::key_id(self.name, &pk)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        // The note API has no room for our error: the token's reason is kept as the source.
        self.key
            .sign(msg)
            .map(|s| s.to_vec())
            .map_err(ed25519_dalek::SignatureError::from_source)
    }
}

/// A signed checkpoint note for (`size`, `root`) under `origin`.
pub(crate) fn sign_checkpoint(
    origin: &str,
    key: &KeySigner,
    size: u64,
    root: Hash,
) -> Result<Vec<u8>, LedgerError> {
    let ck =
        Checkpoint::new(origin, size, root, "").map_err(|e| LedgerError::Note(e.to_string()))?;
    let mut note = Note::new(&ck.to_bytes(), &[]).map_err(|e| LedgerError::Note(e.to_string()))?;
    note.add_sigs(&[&NoteSigner { name: origin, key }])
        .map_err(|e| LedgerError::Note(e.to_string()))?;
    Ok(note.to_bytes())
}

/// A checkpoint read back from a notes file: the parsed checkpoint and the whole note.
#[derive(Debug, Clone)]
pub struct StoredNote {
    /// Byte offset of the note in its file.
    pub offset: u64,
    /// Origin, size, root.
    pub checkpoint: CheckpointFields,
    /// The note as stored (text, empty line, signature lines), without the separating line.
    pub note: Vec<u8>,
}

/// The three lines of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointFields {
    /// The log origin.
    pub origin: String,
    /// The tree size (= the ledger's last seq covered).
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

/// A notes file as read: the notes that parse, the ones that do not, and a torn tail.
#[derive(Debug, Default)]
pub struct NotesFile {
    /// Notes that parse as checkpoints (signatures not checked here).
    pub notes: Vec<StoredNote>,
    /// (offset, why) for entries that are complete but do not parse.
    pub bad: Vec<(u64, String)>,
    /// Length of the complete entries.
    pub valid_len: u64,
    /// Bytes after the last complete entry (a torn append).
    pub torn_bytes: u64,
}

/// Parses the checkpoint fields of a note's text.
pub fn parse_checkpoint(note: &[u8]) -> Result<CheckpointFields, LedgerError> {
    let n = Note::from_bytes(note).map_err(|e| LedgerError::Note(e.to_string()))?;
    let ck = Checkpoint::from_bytes(n.text()).map_err(|e| LedgerError::Note(e.to_string()))?;
    Ok(CheckpointFields {
        origin: ck.origin().to_string(),
        size: ck.size(),
        root: *ck.hash(),
    })
}

/// Reads a notes file (`checkpoint-notes` or `cosignatures`); `Ok(None)` if it does not exist.
pub fn read_notes(path: &Path) -> Result<Option<NotesFile>, LedgerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LedgerError::io(path)(e)),
    };
    Ok(Some(parse_notes(&bytes)))
}

/// Bytes of a notes file's end read first by [`read_notes_tail`] (a note is ~200–300 bytes).
pub const NOTES_TAIL_BYTES: u64 = 16 << 10;

/// The last complete entries of a notes file, read from its end (at least `window` bytes, more
/// until one complete entry is in), and whether they are the whole file: what a reader wanting
/// the newest checkpoint needs. `serve` appends a note every second the ledger grows (up to
/// ~19 MB a day), so reading the file whole per query grew with the ledger's age. The notes are
/// a suffix of what [`read_notes`] gives (the first entry the window cuts is left out), with
/// the same offsets; `Ok(None)` if the file does not exist.
pub fn read_notes_tail(path: &Path, window: u64) -> Result<Option<(NotesFile, bool)>, LedgerError> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LedgerError::io(path)(e)),
    };
    let len = file.metadata().map_err(LedgerError::io(path))?.len();
    let mut want = window.max(1);
    loop {
        let start = len.saturating_sub(want);
        let n = usize::try_from(len - start)
            .map_err(|_| LedgerError::Note("notes file too large".into()))?;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, start)
            .map_err(LedgerError::io(path))?;
        let from = if start == 0 {
            Some(0)
        } else {
            entry_start(&buf)
        };
        if let Some(from) = from {
            let mut nf = parse_notes(&buf[from..]);
            if !nf.notes.is_empty() || start == 0 {
                let base = start + from as u64;
                for n in &mut nf.notes {
                    n.offset += base;
                }
                for b in &mut nf.bad {
                    b.0 += base;
                }
                nf.valid_len += base;
                return Ok(Some((nf, start == 0)));
            }
        }
        want = want.saturating_mul(4);
    }
}

/// The last checkpoint note of a notes file that parses, read from the file's end
/// ([`read_notes_tail`]); `Ok(None)` if there is none or no file.
pub fn last_note(path: &Path) -> Result<Option<StoredNote>, LedgerError> {
    Ok(read_notes_tail(path, NOTES_TAIL_BYTES)?.and_then(|(mut nf, _)| nf.notes.pop()))
}

/// The offset of the first entry that starts inside `buf` after its first byte: an entry ends
/// with an empty line, and the next begins with its text (an origin line), while the empty
/// line inside an entry is followed by a signature line (`— `).
fn entry_start(buf: &[u8]) -> Option<usize> {
    let dash = "—".as_bytes();
    let mut at = 0;
    while let Some(i) = find(&buf[at..], b"\n\n") {
        let p = at + i + 2;
        match buf.get(p) {
            None => return None,
            Some(b'\n') => {}
            Some(_) if !buf[p..].starts_with(dash) => return Some(p),
            Some(_) => {}
        }
        at = p;
    }
    None
}

/// Splits the bytes of a notes file into entries. An entry is text lines, an empty line,
/// signature lines, an empty line; anything after the last complete entry is torn.
pub fn parse_notes(bytes: &[u8]) -> NotesFile {
    let mut out = NotesFile::default();
    let mut pos = 0usize;
    loop {
        // Entry end: the second empty line (i.e. "\n\n" twice) after `pos`.
        let rest = &bytes[pos..];
        let Some(first) = find(rest, b"\n\n") else {
            break;
        };
        let Some(second) = find(&rest[first + 2..], b"\n\n") else {
            break;
        };
        let note_len = first + 2 + second + 1;
        let note = &rest[..note_len];
        let offset = pos as u64;
        match parse_checkpoint(note) {
            Ok(checkpoint) => out.notes.push(StoredNote {
                offset,
                checkpoint,
                note: note.to_vec(),
            }),
            Err(e) => out.bad.push((offset, e.to_string())),
        }
        pos += note_len + 1;
    }
    out.valid_len = pos as u64;
    out.torn_bytes = (bytes.len() - pos) as u64;
    out
}

// Not `memchr::memmem`: its first call detects the CPU's features (`cpuid`, a trap to the
// hypervisor in a VM), which cost more than scanning the few KiB of notes a query reads.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Verifies a note's signature by the verifier key `vkey` and returns its checkpoint.
pub fn verify_note(note: &[u8], vkey: &str) -> Result<CheckpointFields, LedgerError> {
    let v = StandardVerifier::new(vkey).map_err(|e| LedgerError::Note(format!("{vkey}: {e}")))?;
    let n = Note::from_bytes(note).map_err(|e| LedgerError::Note(e.to_string()))?;
    let list = VerifierList::new(vec![Box::new(v)]);
    n.verify(&list)
        .map_err(|e| LedgerError::Note(e.to_string()))?;
    parse_checkpoint(note)
}

/// Appends one note (plus its separating empty line) to `path` and syncs it.
pub(crate) fn append_note(file: &mut std::fs::File, note: &[u8]) -> std::io::Result<()> {
    let mut b = note.to_vec();
    b.push(b'\n');
    file.write_all(&b)?;
    file.sync_data()
}

/// Records witnesses' cosignatures: `note` must carry the same text as one of the ledger's
/// own checkpoint notes; it is appended, whole, to `ledger/cosignatures` (O_APPEND, synced
/// before returning: a cosignature acknowledged to the caller survives a crash). Safe while a
/// writer holds the ledger: nothing else writes that file.
pub fn append_cosigned(dir: &Path, note: &[u8]) -> Result<(), LedgerError> {
    let parsed = Note::from_bytes(note).map_err(|e| LedgerError::Note(e.to_string()))?;
    let ours = read_notes(&dir.join(NOTES_FILE))?.unwrap_or_default();
    let known = ours
        .notes
        .iter()
        .any(|n| Note::from_bytes(&n.note).is_ok_and(|o| o.text() == parsed.text()));
    if !known {
        return Err(LedgerError::Note(
            "cosigned note does not match any checkpoint of this ledger".into(),
        ));
    }
    let path = dir.join(COSIGNATURES_FILE);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(LedgerError::io(&path))?;
    append_note(&mut f, &parsed.to_bytes()).map_err(LedgerError::io(&path))
}

/// The ledger's latest checkpoint note with every cosignature recorded for it merged in (our
/// signature first, then the witnesses' lines, each once); `None` before the first checkpoint.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<Vec<u8>>, LedgerError> {
    let Some(last) = last_note(&dir.join(NOTES_FILE))? else {
        return Ok(None);
    };
    merged(dir, &last.note).map(Some)
}

/// `note` with the signature lines of every cosigned copy of the same text appended.
pub fn merged(dir: &Path, note: &[u8]) -> Result<Vec<u8>, LedgerError> {
    let cos = read_notes(&dir.join(COSIGNATURES_FILE))?.unwrap_or_default();
    merged_with(note, &cos)
}

/// [`merged`] with the cosignatures file already read (`cos`).
pub fn merged_with(note: &[u8], cos: &NotesFile) -> Result<Vec<u8>, LedgerError> {
    let mut n = Note::from_bytes(note).map_err(|e| LedgerError::Note(e.to_string()))?;
    let mut out = n.to_bytes();
    for c in &cos.notes {
        let Ok(cn) = Note::from_bytes(&c.note) else {
            continue;
        };
        if cn.text() != n.text() {
            continue;
        }
        let bytes = cn.to_bytes();
        let sigs = &bytes[cn.text().len() + 1..];
        for line in sigs.split_inclusive(|&b| b == b'\n') {
            if !out.windows(line.len()).any(|w| w == line) {
                out.extend_from_slice(line);
            }
        }
    }
    n = Note::from_bytes(&out).map_err(|e| LedgerError::Note(e.to_string()))?;
    Ok(n.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    /// Every window size, every cut: the tail's notes are a suffix of the whole file's, with the
    /// same offsets and the same last note, and a torn append is seen the same way.
    #[test]
    fn a_notes_files_tail_is_a_suffix_of_the_whole() {
        let key = KeySigner::File(Box::new(SigningKey::from_bytes(&[7; 32])));
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(NOTES_FILE);
        let mut file = Vec::new();
        for size in 1..=40u64 {
            let note = sign_checkpoint(
                "pugmark.test/ledger",
                &key,
                size * 1000,
                Hash([size as u8; 32]),
            )
            .expect("sign");
            file.extend_from_slice(&note);
            file.push(b'\n');
        }
        for torn in [0usize, 7, 120] {
            let mut bytes = file.clone();
            bytes.extend_from_slice(&file[..torn]);
            std::fs::write(&path, &bytes).expect("write");
            let whole = read_notes(&path).expect("read").expect("exists");
            for window in (1..=bytes.len() as u64 + 10).step_by(13) {
                let (tail, all) = read_notes_tail(&path, window)
                    .expect("tail")
                    .expect("exists");
                assert!(!tail.notes.is_empty(), "window {window}");
                // Whole when the window (perhaps grown) reached the start; then every note.
                assert!(window < bytes.len() as u64 || all, "window {window}");
                assert!(
                    !all || tail.notes.len() == whole.notes.len(),
                    "window {window}"
                );
                let k = whole.notes.len() - tail.notes.len();
                for (a, b) in tail.notes.iter().zip(&whole.notes[k..]) {
                    assert_eq!(
                        (a.offset, &a.note, &a.checkpoint),
                        (b.offset, &b.note, &b.checkpoint)
                    );
                }
                assert_eq!(
                    (tail.valid_len, tail.torn_bytes),
                    (whole.valid_len, whole.torn_bytes)
                );
            }
        }
        assert!(
            read_notes_tail(&dir.path().join("none"), 100)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let origin = "pugmark.test/ledger";
        let note = sign_checkpoint(
            origin,
            &KeySigner::File(Box::new(key.clone())),
            42,
            Hash([9; 32]),
        )
        .expect("sign");
        let text = String::from_utf8(note.clone()).expect("utf8");
        assert!(text.starts_with("pugmark.test/ledger\n42\n"), "{text}");
        assert!(text.contains("\n\n\u{2014} pugmark.test/ledger "), "{text}");
        let vkey = verifier_key(origin, key.verifying_key().as_bytes()).expect("vkey");
        let ck = verify_note(&note, &vkey).expect("verify");
        assert_eq!((ck.size, ck.root), (42, Hash([9; 32])));
        let other = SigningKey::from_bytes(&[8; 32]);
        let vkey2 = verifier_key(origin, other.verifying_key().as_bytes()).expect("vkey");
        assert!(verify_note(&note, &vkey2).is_err());
        let mut file = note.clone();
        file.push(b'\n');
        file.extend_from_slice(&note);
        file.push(b'\n');
        file.extend_from_slice(&note[..10]);
        let parsed = parse_notes(&file);
        assert_eq!(parsed.notes.len(), 2);
        assert_eq!(parsed.torn_bytes, 10);
    }
}
