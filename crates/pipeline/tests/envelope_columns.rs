//! The ledger's format 3 stores a record envelope as columns only when it recognises the
//! envelope's byte layout (crates/ledger/src/columns.rs, docs/FORMAT.md "Version 3"); anything
//! else is stored verbatim, correctly but without the size gain. The ledger does not depend
//! on `model`, so this test, beside both, holds every kind of record envelope `model` writes
//! against the ledger's encoder: if the envelope layout changes without the ledger following,
//! this fails instead of the ledger silently growing by ~20 %.

use ledger::testing::{column_parts, push_framed};
use model::envelope::{DecodeHints, Envelope, RecordEnvelope, YearRule};
use model::{Format, Observer, Origin, Received};

fn envelopes() -> Vec<Vec<u8>> {
    let origins = [
        Origin::File {
            path: "/var/log/syslog".into(),
            line: 7,
        },
        Origin::Peer {
            addr: "10.0.0.5:41234".into(),
            listener: "syslog-tcp".into(),
        },
        Origin::AuthenticatedPeer {
            addr: "10.0.0.6:6514".into(),
            listener: "syslog-tls".into(),
            identity: "CN=vm1.example.org,O=Site".into(),
        },
        Origin::FileFromSender {
            path: "/var/log/remote/10.0.0.7/x.log".into(),
            line: 99,
            sender: "10.0.0.7".into(),
        },
    ];
    let hints = [
        DecodeHints::default(),
        DecodeHints {
            year: YearRule::Fixed(2026),
            tz: Some("Europe/Zurich".into()),
        },
    ];
    let mut out = Vec::new();
    for (i, origin) in origins.iter().enumerate() {
        for h in &hints {
            out.push(
                Envelope::Record(RecordEnvelope {
                    received: Received::from_stored(1_780_000_000_000_000_000 + i as i128),
                    observer: Observer::Hypervisor,
                    format: Format::Syslog,
                    hints: h.clone(),
                    origin: origin.clone(),
                    raw: format!("<13>Dec  6 10:00:0{i} hv1 sshd[1]: line {i}").into_bytes(),
                })
                .encode(),
            );
        }
    }
    // What `pugmark` itself appends (migration and retention records, audit records).
    out.push(pipeline::admin_record("pugmark-ledger {}".into()));
    out
}

#[test]
fn every_record_envelope_model_writes_is_stored_as_columns() {
    let all = envelopes();
    let mut framed = Vec::new();
    for (i, e) in all.iter().enumerate() {
        push_framed(&mut framed, (i as u32).to_le_bytes(), e);
    }
    let [_, context, _, _, _, lengths, raw] = column_parts(&framed).expect("columns");
    // One context number per record (each < 128: one byte), none 0 (= verbatim).
    assert_eq!(context.len(), all.len(), "{context:?}");
    assert!(context.iter().all(|&k| k > 0), "{context:?}");
    // The raw column holds exactly the raw lines: the envelope fields went to the dictionary
    // and the received/line columns.
    assert!(raw.starts_with(b"<13>Dec  6 10:00:00 hv1 sshd[1]: line 0"));
    assert!(raw.ends_with(b"pugmark-ledger {}"));
    assert_eq!(lengths.len(), all.len());
    // And it comes back byte for byte through the block codec.
    let (u, comp) =
        ledger::testing::pack_block(ledger::testing::CODEC_COLUMNS, &framed, 3).expect("pack");
    let back =
        ledger::testing::unpack_block(ledger::testing::CODEC_COLUMNS, all.len() as u32, u, &comp)
            .expect("unpack");
    assert_eq!(back, framed);
}
