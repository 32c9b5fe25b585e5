//! The witness's checks, on its real on-disk state, with logs made by `testlog::MemLog`.

use witness::client::{cosignatures_in, verify_cosigned};
use witness::testlog::MemLog;
use witness::{AddCheckpoint, LogKeys, Refusal, Witness, parse_witness_vkey};

const ORIGIN: &str = "collector.site-a.example/pugmark";

fn log_keys(log: &MemLog) -> Vec<LogKeys> {
    vec![LogKeys {
        origin: ORIGIN.into(),
        vkeys: vec![witness::cosig::parse_log_vkey(log.vkey()).expect("log vkey")],
    }]
}

fn add(w: &Witness, log: &MemLog, old: u64, new: u64) -> Result<Vec<u8>, Refusal> {
    let req = AddCheckpoint {
        old,
        proof: log.consistency(old, new).expect("proof"),
        note: log.checkpoint(new).expect("checkpoint"),
    };
    w.add_checkpoint(&req.encode(), 1_800_000_000 + new)
}

fn grow(log: &mut MemLog, to: u64, tag: &str) {
    while log.size() < to {
        log.append(format!("{tag} record {}", log.size()).as_bytes())
            .expect("append");
    }
}

#[test]
fn extends_conflicts_and_forks() {
    let dir = tempfile::tempdir().expect("tmp");
    let vkey = witness::witness::init(dir.path(), "csirt.example/w1").expect("init");
    let wv = parse_witness_vkey(&vkey).expect("witness vkey");
    let mut log = MemLog::with_seed(ORIGIN, [7; 32]).expect("log");
    let w = Witness::open(dir.path(), log_keys(&log)).expect("open");

    grow(&mut log, 5, "a");
    let lines = add(&w, &log, 0, 5).expect("first checkpoint cosigned");
    let note = log.checkpoint(5).expect("cp");
    assert_eq!(cosignatures_in(&note, &lines, &wv).len(), 1);

    grow(&mut log, 12, "a");
    add(&w, &log, 5, 12).expect("an extension with its consistency proof is cosigned");
    // Same size and root again: cosigned again (a fresh time).
    add(&w, &log, 12, 12).expect("the same checkpoint again");

    // A client that thinks the witness holds 5 is told 12.
    match add(&w, &log, 5, 12) {
        Err(Refusal::Conflict(12)) => {}
        other => panic!("want 409 with 12, got {other:?}"),
    }

    // The same key (stolen), another history: same size → 409; larger → proof fails (422).
    let mut forged = MemLog::with_seed(ORIGIN, [7; 32]).expect("forged");
    grow(&mut forged, 12, "forged");
    match add(&w, &forged, 12, 12) {
        Err(Refusal::Conflict(12)) => {}
        other => panic!("want 409 for a rewritten tree of the same size, got {other:?}"),
    }
    grow(&mut forged, 20, "forged");
    let req = AddCheckpoint {
        old: 12,
        proof: forged.consistency(12, 20).expect("proof"),
        note: forged.checkpoint(20).expect("cp"),
    };
    let e = w
        .add_checkpoint(&req.encode(), 1)
        .expect_err("forked tree refused");
    assert_eq!(e.status(), 422, "{e}");
    // Truncation: a smaller tree is a conflict with what is held.
    let e = add(&w, &log, 0, 3).expect_err("smaller tree refused");
    assert_eq!(e.status(), 409);
    assert!(
        std::fs::read_dir(dir.path().join("forks"))
            .expect("forks kept")
            .count()
            >= 2
    );

    // Unknown origin → 404, another key → 403, garbage → 400.
    let other = MemLog::new("elsewhere.example/log").expect("log");
    let req = AddCheckpoint {
        old: 0,
        proof: vec![],
        note: other.checkpoint(0).expect("cp"),
    };
    assert_eq!(
        w.add_checkpoint(&req.encode(), 1)
            .expect_err("unknown")
            .status(),
        404
    );
    let mut impostor = MemLog::with_seed(ORIGIN, [8; 32]).expect("log");
    grow(&mut impostor, 13, "x");
    let e = add(&w, &impostor, 12, 13).expect_err("another key");
    assert_eq!(e.status(), 403, "{e}");
    assert_eq!(
        w.add_checkpoint(b"old 1\n", 1)
            .expect_err("garbage")
            .status(),
        400
    );

    // The state is on disk: a reopened witness holds 12 and serves the cosigned note.
    drop(w);
    let w = Witness::open(dir.path(), log_keys(&log)).expect("reopen");
    match add(&w, &log, 0, 12) {
        Err(Refusal::Conflict(12)) => {}
        other => panic!("want 409 with 12 after reopen, got {other:?}"),
    }
    let held = w.latest(ORIGIN).expect("read").expect("held");
    let c = verify_cosigned(&held, &wv).expect("held note carries a valid cosignature");
    assert_eq!((c.size, c.root), (12, log.root(12).expect("root")));
    assert_eq!(c.time, 1_800_000_012);
}

#[test]
fn log_flags_and_config() {
    let log = MemLog::new(ORIGIN).expect("log");
    let k = witness::config::parse_log_flag(log.vkey()).expect("VKEY alone");
    assert_eq!(k.origin, ORIGIN);
    let k = witness::config::parse_log_flag(&format!("other.example/x={}", log.vkey()))
        .expect("ORIGIN=VKEY");
    assert_eq!(k.origin, "other.example/x");
    let toml = format!(
        "version = 1\nlisten = \"127.0.0.1:7380\"\n[[logs]]\nvkey = \"{}\"\n",
        log.vkey()
    );
    witness::config::WitnessConfig::parse(&toml).expect("config");
    assert!(witness::config::WitnessConfig::parse("version = 1\nlisten = 3\n").is_err());
    assert!(
        witness::config::WitnessConfig::parse("version = 1\n[[logs]]\nvkey = \"nope\"\n").is_err()
    );
}
