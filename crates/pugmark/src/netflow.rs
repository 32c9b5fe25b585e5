//! NetFlow / IPFIX into the ledger: one export datagram becomes one `netflow-datagram`
//! envelope, the evidence. The views derive its flows in ledger order (`pipeline::derive`,
//! docs/design/flow-derivation.md); the collector's part is the ledger's one `derive-flows`
//! marker before the first datagram and, per `ingest` run, a `flow-import` record
//! ([`FlowIngest::collector`]).
//!
//! Used by `pugmark ingest` for captures and bare payload files (`cli/ingest_flow.rs`), and
//! by the UDP listener of `pugmark serve` (`cli/serve.rs`, in `Store::append`).
//!
//! Under `PUGMARK_FLOW_RECORDS=1` (the oracle tests' other side) it writes as builds before
//! derivation did: per datagram, call [`FlowIngest::datagram`] (or [`FlowIngest::record`])
//! with the position the datagram will take (the ledger's next seq plus what is already in
//! the batch); it is followed by one `netflow-record` per flow, decoded here. Flows of an
//! earlier datagram that waited for their template come out with a later datagram and still
//! name their own.

use std::net::SocketAddr;

use flow::{FlowDecoder, Limits, Stats};
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Envelope, Format, Observer, Origin, Received};

/// The decoder state of one collector (one per listener or per `ingest` run).
#[derive(Debug, Default)]
pub struct FlowIngest {
    decoder: FlowDecoder,
    /// Store datagrams only: the views derive their flows (the default; not under
    /// `PUGMARK_FLOW_RECORDS=1`).
    derive: bool,
    /// The ledger's marker and this run's `flow-import` record have been queued.
    announced: bool,
    /// The ledger has its `derive-flows` marker already (`Pipeline::derive_marker`).
    marked: bool,
}

impl FlowIngest {
    /// The collector of `ingest` and `serve`: datagrams only, the views derive the flows
    /// (docs/design/flow-derivation.md), after the ledger's marker, which `marker` (from
    /// `Pipeline::derive_marker`) says is there already. `PUGMARK_FLOW_RECORDS=1` stores a
    /// `netflow-record` per flow after each datagram, as builds before derivation did: kept
    /// for the oracle tests that compare the two, and for benchmarks.
    pub fn collector(limits: Limits, marker: Option<u64>) -> FlowIngest {
        if std::env::var_os("PUGMARK_FLOW_RECORDS").is_some() {
            FlowIngest::new(limits)
        } else {
            FlowIngest::deriving(limits).marked(marker)
        }
    }

    /// A collector that stores a `netflow-record` per flow (see [`FlowIngest::collector`]).
    pub fn new(limits: Limits) -> FlowIngest {
        FlowIngest {
            decoder: FlowDecoder::new(limits),
            derive: false,
            announced: false,
            marked: false,
        }
    }

    /// The ledger holds its `derive-flows` marker already: one per ledger is enough.
    pub fn marked(mut self, marker: Option<u64>) -> FlowIngest {
        self.marked = marker.is_some();
        self
    }

    /// A collector that stores datagrams only and lets the views derive their flows (the
    /// run's flow figures come from the indexer's deriver: `DecodeStats::flows`).
    pub fn deriving(limits: Limits) -> FlowIngest {
        FlowIngest {
            derive: true,
            ..FlowIngest::new(limits)
        }
    }

    /// Before this run's first datagram (deriving only): the ledger's `derive-flows` marker
    /// (unless it has one) and the `flow-import` record that starts the views' import
    /// decoder afresh, as this run's own decoder is.
    pub fn announce(&mut self, out: &mut Vec<Envelope>) {
        self.announce_as(out, true);
    }

    /// Before a live listener's first datagram (deriving only): the ledger's `derive-flows`
    /// marker, unless it has one. The listener's decoder lives as long as the ledger,
    /// so no `flow-import` starts it afresh.
    pub fn announce_live(&mut self, out: &mut Vec<Envelope>) {
        self.announce_as(out, false);
    }

    fn announce_as(&mut self, out: &mut Vec<Envelope>, import: bool) {
        if !self.derive || self.announced {
            return;
        }
        self.announced = true;
        if !self.marked {
            out.push(admin(pipeline::derive::MARKER));
        }
        if import {
            out.push(admin(pipeline::derive::IMPORT));
        }
    }

    /// Push the envelopes for one datagram onto `out`: the datagram itself, which will be
    /// stored at `datagram_seq`, then its flows (and any flows of earlier datagrams it
    /// completed). Returns the number of flow records pushed.
    #[allow(clippy::too_many_arguments)] // the collector facts of one datagram, each needed
    pub fn datagram(
        &mut self,
        exporter: SocketAddr,
        payload: &[u8],
        origin: &Origin,
        observer: Observer,
        received: Received,
        datagram_seq: u64,
        out: &mut Vec<Envelope>,
    ) -> usize {
        let env = RecordEnvelope {
            received,
            observer,
            format: Format::NetflowDatagram,
            hints: DecodeHints::default(),
            origin: origin.clone(),
            raw: payload.to_vec(),
        };
        self.record(exporter, env, datagram_seq, out)
    }

    /// [`FlowIngest::datagram`] for a `netflow-datagram` envelope already made (the live
    /// listener's): pushes it, then the flow records derived from it (same received time,
    /// observer and origin). Returns the number of flow records pushed.
    pub fn record(
        &mut self,
        exporter: SocketAddr,
        datagram: RecordEnvelope,
        datagram_seq: u64,
        out: &mut Vec<Envelope>,
    ) -> usize {
        if self.derive {
            // The views decode it, in ledger order (`pipeline::derive`).
            out.push(Envelope::Record(datagram));
            return 0;
        }
        let received = datagram.received;
        let received_ms = i64::try_from(received.as_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let flows = self
            .decoder
            .feed(exporter, datagram_seq, &datagram.raw, received_ms);
        let n = flows.len();
        let (observer, origin) = (datagram.observer, datagram.origin.clone());
        out.push(Envelope::Record(datagram));
        for f in flows {
            out.push(Envelope::Record(RecordEnvelope {
                received,
                observer,
                format: Format::NetflowRecord,
                hints: DecodeHints::default(),
                origin: origin.clone(),
                raw: f.encode(),
            }));
        }
        n
    }

    /// Relearn templates from a datagram stored by an earlier run (`flow::FlowDecoder::relearn`).
    pub fn relearn(&mut self, exporter: SocketAddr, datagram: &RecordEnvelope) {
        let ms = i64::try_from(datagram.received.as_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
        self.decoder.relearn(exporter, &datagram.raw, ms);
    }

    /// End of input: data still waiting for a template is counted as dropped.
    pub fn finish(&mut self) -> u64 {
        self.decoder.finish()
    }

    /// Whether the views derive the flows (datagrams only are stored).
    pub fn is_deriving(&self) -> bool {
        self.derive
    }

    pub fn stats(&self) -> &Stats {
        self.decoder.stats()
    }
}

/// A `pugmark-ledger` record of this `kind` about the flows in the ledger.
fn admin(kind: &str) -> Envelope {
    let text = serde_json::json!({
        "pugmark_ledger": kind,
        "by": crate::cli::migrate::whoami(),
    });
    pipeline::admin_envelope(format!("pugmark-ledger {text}"))
}
