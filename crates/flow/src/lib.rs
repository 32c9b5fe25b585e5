//! NetFlow v5, v9 and IPFIX (v10) export datagrams → normalised [`FlowRecord`]s.
//!
//! [`FlowDecoder`] is the one stateful decoder in pugmark: v9 and IPFIX data can only be read
//! with the templates an exporter sent earlier, so the decoder keeps, per exporter (address,
//! export version and source id / observation domain), its templates and options templates,
//! the sampling rates and system init time learnt from options data, and data sets that
//! arrived before their template (held briefly, bounded, decoded when the template comes or
//! counted as dropped). Every cache is capped ([`Limits`]); every problem in the input is
//! counted in [`Stats`] and never panics.
//!
//! It does no I/O and reads no clock: the caller says when each datagram was received and
//! which ledger position it will have (the records name it). The collector stores the
//! datagram as evidence and the records beside it (see `model::flow` and ARCHITECTURE.md), so
//! this state is needed only once, at ingest, and never by `pugmark reindex`.
//!
//! Why our own and not the `netflow_parser` crate (1.0.6, evaluated on the corpus, see
//! ARCHITECTURE.md "crates/flow"): it reads v5 records past the header count (30 flows out of
//! `netflow5.dat`, which holds 2) and drops v5 datagrams whose count lies, errors on v9
//! datagrams with zero padding after the last flowset (Cisco ACI, Palo Alto), rejects the H3C
//! variable-length template, decodes none of Procera's 8 IPFIX records, and yields per-field
//! enum vectors that we would have to normalise anyway (~1.5 M v9 records/s with that).
//!
//! [`pcap`] finds the UDP datagrams inside pcap / pcapng captures.

pub mod pcap;
mod state;
mod template;
mod v5;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

pub use model::flow::FlowRecord;
pub use state::StateError;

use template::{ExporterState, Pending};

/// Caps on what the decoder keeps. Defaults suit a site with a few hundred exporters.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Exporters (address, version, domain) holding template state. Datagrams from further
    /// exporters are still counted and v5 still decoded; their templates are refused.
    pub max_exporters: usize,
    /// Templates (data and options) per exporter.
    pub max_templates_per_exporter: usize,
    /// Fields in one template.
    pub max_template_fields: usize,
    /// Data sets waiting for their template, per exporter …
    pub max_pending_per_exporter: usize,
    /// … and their bytes over all exporters.
    pub max_pending_bytes: usize,
    /// How long (by the caller's received times, milliseconds) a data set waits for its
    /// template before it is counted as dropped.
    pub pending_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_exporters: 4096,
            max_templates_per_exporter: 1024,
            max_template_fields: 512,
            max_pending_per_exporter: 256,
            max_pending_bytes: 8 * 1024 * 1024,
            pending_ms: 60_000,
        }
    }
}

/// What the decoder saw, counted. `problems` names every kind of bad input met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams: u64,
    /// Flow (data) records decoded.
    pub flows: u64,
    /// Options data records decoded (sampling rates, system init time, interface tables).
    pub options_records: u64,
    pub templates: u64,
    pub options_templates: u64,
    /// Data sets held because their template had not arrived yet …
    pub pending_held: u64,
    /// … of which decoded later …
    pub pending_decoded: u64,
    /// … or dropped (template never came in time, or the pending cache was full).
    pub dropped_sets: u64,
    /// Bad input by kind (`truncated_header`, `flowset_length`, `template_too_many_fields`,
    /// `zero_length_template`, `unknown_version`, …).
    pub problems: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub(crate) fn problem(&mut self, kind: &'static str) {
        *self.problems.entry(kind).or_default() += 1;
    }

    /// Records of every kind, as tshark counts them (flows plus options data).
    pub fn data_records(&self) -> u64 {
        self.flows + self.options_records
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ExporterKey {
    ip: IpAddr,
    version: u16,
    domain: u32,
}

/// Where a datagram came from and when, carried with data that waits for its template.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    pub version: u16,
    pub exporter: SocketAddr,
    pub domain: u32,
    pub datagram_seq: u64,
    /// v9 header sysUpTime (ms); IPFIX has none.
    pub uptime_ms: Option<u32>,
    /// Export header time, Unix ms.
    pub export_ms: i64,
    pub received_ms: i64,
}

/// The stateful NetFlow/IPFIX decoder (one per collector; see the crate docs).
#[derive(Debug, Default)]
pub struct FlowDecoder {
    limits: Limits,
    exporters: HashMap<ExporterKey, ExporterState>,
    pending_bytes: usize,
    stats: Stats,
}

/// Whether bytes (a datagram, or the first bytes of a payload file) look like the start of a
/// NetFlow v5/v9 or IPFIX export: the version, a non-zero count or a sane IPFIX length, and
/// for v9/IPFIX a first set id that is a template, options template or data set.
pub fn looks_like_datagram(b: &[u8]) -> bool {
    let be16 = |at: usize| b.get(at..at + 2).map(|v| u16::from_be_bytes([v[0], v[1]]));
    let set_id_ok = |id: Option<u16>| id.is_some_and(|id| id <= 3 || id >= 256);
    match (be16(0), be16(2)) {
        (Some(5), Some(count)) => b.len() >= 24 && count > 0,
        (Some(9), Some(count)) => b.len() >= 24 && count > 0 && set_id_ok(be16(20)),
        (Some(10), Some(len)) => b.len() >= 20 && len >= 20 && set_id_ok(be16(16)),
        _ => false,
    }
}

impl FlowDecoder {
    pub fn new(limits: Limits) -> FlowDecoder {
        FlowDecoder {
            limits,
            ..FlowDecoder::default()
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Decode one export datagram (a UDP payload) from `exporter`, received at
    /// `received_ms` (Unix ms, the collector clock), to be stored at ledger position
    /// `datagram_seq`. Returns the flows it holds, plus flows of earlier datagrams whose
    /// template it brought (those name their own datagram). Never panics.
    pub fn feed(
        &mut self,
        exporter: SocketAddr,
        datagram_seq: u64,
        datagram: &[u8],
        received_ms: i64,
    ) -> Vec<FlowRecord> {
        self.stats.datagrams += 1;
        let mut out = Vec::new();
        self.expire_pending(received_ms);
        let Some(v) = datagram.get(0..2) else {
            self.stats.problem("truncated_header");
            return out;
        };
        match u16::from_be_bytes([v[0], v[1]]) {
            5 => v5::decode(exporter, datagram_seq, datagram, &mut self.stats, &mut out),
            9 | 10 => template::decode(
                self,
                exporter,
                datagram_seq,
                datagram,
                received_ms,
                &mut out,
            ),
            _ => self.stats.problem("unknown_version"),
        }
        self.stats.flows += out.len() as u64;
        out
    }

    /// Learn again what a datagram stored by an earlier run taught (templates, options
    /// templates, sampling rates, system init time), without producing flows or counting
    /// anything: its flows are in the ledger already. For a collector restarting after a
    /// crash, so data from exporters that refresh templates rarely (Cisco: every 30 min) is
    /// decoded at once instead of waiting for the next template. Call before any `feed`.
    pub fn relearn(&mut self, exporter: SocketAddr, datagram: &[u8], received_ms: i64) {
        let stats = self.stats.clone();
        let _ = self.feed(exporter, 0, datagram, received_ms);
        for st in self.exporters.values_mut() {
            st.pending.clear();
        }
        self.pending_bytes = 0;
        self.stats = stats;
    }

    /// Data sets waiting for their template now.
    pub fn pending_sets(&self) -> u64 {
        self.exporters
            .values()
            .map(|st| st.pending.len() as u64)
            .sum()
    }

    /// Count every data set still waiting for a template as dropped (end of an import).
    pub fn finish(&mut self) -> u64 {
        let mut n = 0u64;
        for st in self.exporters.values_mut() {
            n += st.pending.len() as u64;
            st.pending.clear();
        }
        self.pending_bytes = 0;
        self.stats.dropped_sets += n;
        n
    }

    fn expire_pending(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.limits.pending_ms);
        let mut dropped = 0u64;
        let mut freed = 0usize;
        for st in self.exporters.values_mut() {
            while st
                .pending
                .front()
                .is_some_and(|p| p.ctx.received_ms < horizon)
            {
                if let Some(p) = st.pending.pop_front() {
                    freed += p.data.len();
                    dropped += 1;
                }
            }
        }
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        self.stats.dropped_sets += dropped;
    }

    /// The state of one exporter, created if the cap allows.
    pub(crate) fn exporter_mut(&mut self, key: ExporterKey) -> Option<&mut ExporterState> {
        if !self.exporters.contains_key(&key) {
            if self.exporters.len() >= self.limits.max_exporters {
                self.stats.problem("exporter_cap");
                return None;
            }
            self.exporters.insert(key, ExporterState::default());
        }
        self.exporters.get_mut(&key)
    }

    pub(crate) fn hold(&mut self, key: ExporterKey, p: Pending) {
        let max_per = self.limits.max_pending_per_exporter;
        let room = self.pending_bytes + p.data.len() <= self.limits.max_pending_bytes;
        let len = p.data.len();
        let held = match self.exporters.get_mut(&key) {
            Some(st) if room && st.pending.len() < max_per => {
                st.pending.push_back(p);
                true
            }
            _ => false,
        };
        if held {
            self.pending_bytes += len;
            self.stats.pending_held += 1;
        } else {
            self.stats.dropped_sets += 1;
            self.stats.problem("pending_cap");
        }
    }

    /// Take the waiting data sets of `key` whose template is now known.
    pub(crate) fn take_ready(&mut self, key: ExporterKey) -> VecDeque<Pending> {
        let Some(st) = self.exporters.get_mut(&key) else {
            return VecDeque::new();
        };
        let (ready, waiting): (VecDeque<Pending>, VecDeque<Pending>) =
            std::mem::take(&mut st.pending)
                .into_iter()
                .partition(|p| st.templates.contains_key(&p.template_id));
        st.pending = waiting;
        let freed: usize = ready.iter().map(|p| p.data.len()).sum();
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        ready
    }
}
