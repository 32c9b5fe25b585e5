//! NetFlow / IPFIX into the ledger: one export datagram becomes one `netflow-datagram`
//! envelope (the evidence, bytes as received) followed by one `netflow-record` envelope per
//! flow (derived by `flow::FlowDecoder`, naming the datagram's ledger seq).
//!
//! Used by `pugmark ingest` for captures and bare payload files (`cli/ingest_flow.rs`), and
//! meant for the UDP listener of `pugmark serve` (ports 2055 / 4739): per received datagram,
//! call [`FlowIngest::datagram`] with the position the datagram will take (the ledger's next
//! seq plus what is already in the batch) and append the envelopes as one durable batch
//! before acknowledging anything. Flows of an earlier datagram that waited for their template
//! come out with a later datagram and still name their own.

use std::net::SocketAddr;

use flow::{FlowDecoder, Limits, Stats};
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Envelope, Format, Observer, Origin, Received};

/// The decoder state of one collector (one per listener or per `ingest` run).
#[derive(Debug, Default)]
pub struct FlowIngest {
    decoder: FlowDecoder,
}

impl FlowIngest {
    pub fn new(limits: Limits) -> FlowIngest {
        FlowIngest {
            decoder: FlowDecoder::new(limits),
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
        let received_ms = i64::try_from(received.as_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
        out.push(Envelope::Record(RecordEnvelope {
            received,
            observer,
            format: Format::NetflowDatagram,
            hints: DecodeHints::default(),
            origin: origin.clone(),
            raw: payload.to_vec(),
        }));
        let flows = self
            .decoder
            .feed(exporter, datagram_seq, payload, received_ms);
        let n = flows.len();
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

    /// End of input: data still waiting for a template is counted as dropped.
    pub fn finish(&mut self) -> u64 {
        self.decoder.finish()
    }

    pub fn stats(&self) -> &Stats {
        self.decoder.stats()
    }
}
