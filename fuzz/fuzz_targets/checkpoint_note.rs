//! Checkpoint notes and Merkle proofs from untrusted hands (a notes file on disk, a witness's
//! reply, a report's proof): the notes-file splitter, the checkpoint parser, note signature
//! verification and the bounded proof checkers must never panic or blow up memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = ledger::parse_notes(data);
    for n in &parsed.notes {
        let _ = ledger::parse_checkpoint(&n.note);
        let _ = ledger::verify_note(
            &n.note,
            "pugmark.fuzz/ledger+2a1b3c4d+AQ9lN0GxzESVb6zkh8XbOwd4l/2Zt4EUfj1gzqU8BQWn",
        );
    }
    let _ = ledger::parse_checkpoint(data);
    // The rest as a proof: sizes from the first 16 bytes, then 32-byte hashes.
    if data.len() >= 16 {
        let size = u64::from_le_bytes(data[0..8].try_into().unwrap_or([0; 8]));
        let other = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
        let proof: Vec<ledger::Hash> = data[16..]
            .chunks_exact(32)
            .map(|c| ledger::Hash(c.try_into().unwrap_or([0; 32])))
            .collect();
        let root = ledger::Hash([1; 32]);
        let _ = ledger::check_inclusion(&proof, size, root, other, ledger::Hash([2; 32]));
        let _ = ledger::check_consistency(&proof, other, root, size, ledger::Hash([3; 32]));
    }
});
