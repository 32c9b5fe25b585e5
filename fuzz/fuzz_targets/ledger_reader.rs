//! Fuzz the ledger reader and verifier on arbitrary segment bytes: verify must report
//! problems, never panic, never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let ledger_dir = dir.path().join("ledger");
    if std::fs::create_dir_all(&ledger_dir).is_err() {
        return;
    }
    if std::fs::write(ledger_dir.join(ledger::segment_file_name(1)), data).is_err() {
        return;
    }
    let _ = ledger::verify(&ledger_dir, &ledger::VerifyOptions::default());
    if let Ok(mut reader) = ledger::LedgerReader::open(&ledger_dir) {
        let n = reader.len();
        for item in reader.iter_from(1).take(10_000) {
            if item.is_err() {
                break;
            }
        }
        let _ = reader.get(n);
    }
});
