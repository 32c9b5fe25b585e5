#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::PathBuf;

use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Observer, Origin, Received};

use super::*;
use decode::ADMIN_PATH;

fn corpus() -> PathBuf {
    match std::env::var("PUGMARK_CORPUS") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    }
}

/// A logstash payload file (ORACLES.md §1d) as the datagram `ingest` stores for it.
fn payload(name: &str, line: u64) -> RecordEnvelope {
    let path = corpus()
        .join("netflow/logstash-codec-netflow_raw_udp_payloads")
        .join(name);
    RecordEnvelope {
        received: Received::from_stored(1_700_000_000_000_000_000 + i128::from(line)),
        observer: Observer::Network,
        format: Format::NetflowDatagram,
        hints: DecodeHints::default(),
        origin: Origin::File {
            path: path.display().to_string(),
            line,
        },
        raw: std::fs::read(&path).unwrap(),
    }
}

/// The same bytes from a live listener's peer.
fn live(mut env: RecordEnvelope) -> RecordEnvelope {
    env.origin = Origin::Peer {
        addr: "192.0.2.9:2055".into(),
        listener: "netflow".into(),
    };
    env
}

fn admin(kind: &str) -> RecordEnvelope {
    match model::Envelope::decode(&crate::admin_record(format!(
        "pugmark-ledger {{\"pugmark_ledger\":\"{kind}\",\"by\":\"test\"}}"
    )))
    .unwrap()
    {
        model::Envelope::Record(r) => r,
        model::Envelope::ImportMark(_) => panic!("an admin record is a record"),
    }
}

const MIKROTIK: [&str; 3] = [
    "ipfix_test_mikrotik_tpl.dat",
    "ipfix_test_mikrotik_data258.dat",
    "ipfix_test_mikrotik_data259.dat",
];

fn flows_of(seen: &[Seen]) -> Vec<(String, FlowRecord)> {
    seen.iter()
        .flat_map(|s| match s {
            Seen::Flows(f) => f.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// After the marker a datagram is decoded into flows: the ORACLES count (46), each naming
/// its own datagram's position, equal to one decoder fed the same bytes; before it, only
/// templates are learned, and they serve the datagrams after it.
#[test]
fn datagrams_after_the_marker_become_flows_and_before_it_teach_templates() {
    let stream: Vec<RecordEnvelope> = std::iter::once(admin(MARKER))
        .chain(
            MIKROTIK
                .iter()
                .enumerate()
                .map(|(i, n)| payload(n, i as u64 + 1)),
        )
        .collect();
    let mut d = Deriver::new(Limits::default());
    let seen: Vec<Seen> = stream
        .iter()
        .enumerate()
        .map(|(i, e)| d.see(i as u64 + 1, e))
        .collect();
    assert_eq!(d.marker(), Some(1));
    let flows = flows_of(&seen);
    assert_eq!(flows.len(), 46);
    let mut plain = FlowDecoder::new(Limits::default());
    let want: Vec<FlowRecord> = stream[1..]
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            let ms = i64::try_from(e.received.as_unix_nanos() / 1_000_000).unwrap();
            plain.feed(exporter_of(&e.origin), i as u64 + 2, &e.raw, ms)
        })
        .collect();
    assert_eq!(
        flows.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(
        flows
            .iter()
            .all(|(o, f)| o == "network" && f.datagram_seq >= 3)
    );

    // A listener's template before the marker, its data after it.
    let mut d = Deriver::new(Limits::default());
    assert_eq!(d.see(1, &live(payload(MIKROTIK[0], 1))), Seen::Learned);
    assert_eq!(d.see(2, &admin(MARKER)), Seen::Other);
    let later = [
        d.see(3, &live(payload(MIKROTIK[1], 2))),
        d.see(4, &live(payload(MIKROTIK[2], 3))),
    ];
    assert_eq!(flows_of(&later).len(), 46);
    // An import's template before the marker is of an earlier run: not kept (every run
    // after the marker starts with its `flow-import` record).
    let mut d = Deriver::new(Limits::default());
    assert_eq!(d.see(1, &payload(MIKROTIK[0], 1)), Seen::Learned);
    d.see(2, &admin(MARKER));
    assert_eq!(d.see(3, &payload(MIKROTIK[1], 2)), Seen::Flows(Vec::new()));
    // Without a marker nothing is derived: every flow is a legacy record.
    let mut d = Deriver::new(Limits::default());
    for (i, n) in MIKROTIK.iter().enumerate() {
        assert_eq!(
            d.see(i as u64 + 1, &payload(n, i as u64 + 1)),
            Seen::Learned
        );
    }
    assert_eq!(d.marker(), None);
}

/// A second marker changes nothing; per-flow records before the first are legacy flows and
/// after it superseded; a position seen already is passed over.
#[test]
fn the_first_marker_counts_and_records_are_legacy_or_superseded() {
    let mut rec = payload(MIKROTIK[0], 1);
    rec.format = Format::NetflowRecord;
    let mut d = Deriver::new(Limits::default());
    assert_eq!(d.see(1, &rec), Seen::Legacy);
    d.see(2, &admin(MARKER));
    d.see(3, &admin(MARKER));
    assert_eq!(d.marker(), Some(2));
    assert_eq!(d.see(4, &rec), Seen::Superseded);
    assert_eq!(d.see(4, &payload(MIKROTIK[0], 1)), Seen::Other);
    assert_eq!(d.see(3, &payload(MIKROTIK[0], 1)), Seen::Other);
    assert_eq!(d.position(), 4);
}

/// A marker or import record is pugmark's own only with everything an import cannot forge:
/// the same text from a file, or from the collector under another origin, is not one.
#[test]
fn a_forged_marker_is_not_a_marker() {
    let real = admin(MARKER);
    assert_eq!(admin_kind(&real).as_deref(), Some(MARKER));
    let mut from_file = real.clone();
    from_file.origin = Origin::File {
        path: "/var/log/evil.log".into(),
        line: 0,
    };
    let mut from_vm = real.clone();
    from_vm.observer = Observer::Vm;
    let mut other_line = real.clone();
    other_line.origin = Origin::File {
        path: ADMIN_PATH.into(),
        line: 7,
    };
    for forged in [from_file, from_vm, other_line] {
        assert_eq!(admin_kind(&forged), None);
        let mut d = Deriver::new(Limits::default());
        d.see(1, &forged);
        assert_eq!(d.marker(), None);
    }
}

/// An import run's record resets the import decoder (its templates gone: the next run's data
/// waits), never the live one.
#[test]
fn an_import_forgets_the_previous_imports_templates_but_not_the_listeners() {
    let mut d = Deriver::new(Limits::default());
    d.see(1, &admin(MARKER));
    d.see(2, &payload(MIKROTIK[0], 1));
    d.see(3, &live(payload(MIKROTIK[0], 1)));
    d.see(4, &admin(IMPORT));
    assert_eq!(d.see(5, &payload(MIKROTIK[1], 2)), Seen::Flows(Vec::new()));
    match d.see(6, &live(payload(MIKROTIK[1], 2))) {
        Seen::Flows(f) => assert!(!f.is_empty()),
        other => panic!("{other:?}"),
    }
}

/// Saved and restored after any record, the deriver goes on as one that never stopped: the
/// same flows and the same final state. Damaged state is refused whole, never a panic.
#[test]
fn a_restored_deriver_goes_on_as_one_that_never_stopped() {
    let mut stream = vec![live(payload(MIKROTIK[0], 1)), admin(MARKER)];
    stream.push(payload(MIKROTIK[0], 2));
    stream.push(live(payload(MIKROTIK[0], 1)));
    stream.push(payload(MIKROTIK[1], 2));
    stream.push(admin(IMPORT));
    stream.push(payload(MIKROTIK[0], 3));
    stream.push(live(payload(MIKROTIK[2], 3)));
    stream.push(payload(MIKROTIK[2], 4));
    let run = |d: &mut Deriver, from: usize| -> Vec<Seen> {
        stream[from..]
            .iter()
            .enumerate()
            .map(|(i, e)| d.see((from + i) as u64 + 1, e))
            .collect()
    };
    let mut whole = Deriver::new(Limits::default());
    let want = run(&mut whole, 0);
    assert!(flows_of(&want).len() > 46);
    for cut in 0..=stream.len() {
        let mut d = Deriver::new(Limits::default());
        let mut got = run_prefix(&mut d, &stream, cut);
        let saved = d.snapshot();
        let mut d = Deriver::restore(&saved, Limits::default()).unwrap();
        assert_eq!(d.position(), cut as u64);
        got.extend(run(&mut d, cut));
        assert_eq!(got, want, "cut after {cut} records");
        assert_eq!(d.snapshot(), whole.snapshot(), "cut after {cut} records");
    }
    let saved = whole.snapshot();
    for n in 0..saved.len() {
        assert!(Deriver::restore(&saved[..n], Limits::default()).is_err());
    }
    let mut longer = saved.clone();
    longer.push(0);
    assert!(Deriver::restore(&longer, Limits::default()).is_err());
    for i in 0..saved.len() {
        let mut flipped = saved.clone();
        flipped[i] ^= 0x5a;
        // Refused or read, never a panic.
        let _ = Deriver::restore(&flipped, Limits::default());
    }
}

fn run_prefix(d: &mut Deriver, stream: &[RecordEnvelope], cut: usize) -> Vec<Seen> {
    stream[..cut]
        .iter()
        .enumerate()
        .map(|(i, e)| d.see(i as u64 + 1, e))
        .collect()
}

/// The state to go on from past removed ranges is the last range wholly between what the
/// deriver saw and the record it meets; none when nothing was skipped or the range is not
/// passed yet.
#[test]
fn removed_between_takes_the_last_range_wholly_skipped() {
    let removed = [(10, 5, 100), (30, 5, 200)];
    assert_eq!(removed_between(&removed, 9, 15), Some(100));
    assert_eq!(removed_between(&removed, 9, 40), Some(200));
    assert_eq!(removed_between(&removed, 14, 15), None);
    assert_eq!(removed_between(&removed, 20, 30), None);
    assert_eq!(removed_between(&removed, 20, 35), Some(200));
    assert_eq!(removed_between(&[], 0, 50), None);
}
