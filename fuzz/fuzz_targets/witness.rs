//! Fuzz the witness (issue 11): any `add-checkpoint` body goes through the same checks
//! `pugmark witness serve` runs — request parse, signed note, checkpoint, signature, the held
//! size, the consistency proof — against a real state directory, and never panics; a body that
//! parses re-encodes to itself.
//!
//! Included by path (no HTTP, no ureq: the client is not part of the sanitizer build).
#![no_main]

#[path = "../../crates/witness/src/cosig.rs"]
#[allow(dead_code)]
mod cosig;
#[path = "../../crates/witness/src/protocol.rs"]
#[allow(dead_code)]
mod protocol;
#[path = "../../crates/witness/src/testlog.rs"]
#[allow(dead_code)]
mod testlog;
#[path = "../../crates/witness/src/witness.rs"]
#[allow(dead_code)]
mod witness;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    w: witness::Witness,
    log: testlog::MemLog,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        witness::init(dir.path(), "fuzz.example/w").expect("init");
        let mut log = testlog::MemLog::with_seed("fuzz.example/log", [9; 32]).expect("log");
        for i in 0..7u8 {
            log.append(&[i]).expect("append");
        }
        let keys = vec![witness::LogKeys {
            origin: "fuzz.example/log".into(),
            vkeys: vec![cosig::parse_log_vkey(log.vkey()).expect("vkey")],
        }];
        let w = witness::Witness::open(dir.path(), keys).expect("open");
        // Hold size 3, so `old 3` requests reach the consistency proof check.
        let body = protocol::AddCheckpoint {
            old: 0,
            proof: vec![],
            note: log.checkpoint(3).expect("cp"),
        }
        .encode();
        w.add_checkpoint(&body, 1).expect("first checkpoint");
        Fixture { _dir: dir, w, log }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = protocol::AddCheckpoint::parse(data) {
        assert_eq!(protocol::AddCheckpoint::parse(&r.encode()), Ok(r));
    }
    let f = fixture();
    // The raw input, and the input as a body around a real signed note (so mutations of the
    // proof lines and the old size get past the signature check).
    let _ = f.w.add_checkpoint(data, 2);
    if let Ok(note) = f.log.checkpoint(7) {
        let mut body = data.to_vec();
        body.extend_from_slice(b"\n");
        body.extend_from_slice(&note);
        let _ = f.w.add_checkpoint(&body, 3);
    }
    let _ = cosig::parse_vkey(&String::from_utf8_lossy(data));
});
