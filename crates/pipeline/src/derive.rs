//! Flows derived from the stored datagrams, in ledger order (docs/design/flow-derivation.md
//! §2–3): what the indexer will run instead of the writers' per-flow `netflow-record`s.
//!
//! A [`Deriver`] sees every record in ledger order once. Two template decoders keep today's
//! scoping: `live` for the listener's datagrams, `import` for those of captures and payload
//! files, which a `flow-import` admin record (one per `ingest` run) resets, so unrelated
//! imports (payload files all have exporter `0.0.0.0:0`) never decode each other with stale
//! templates. Before the ledger's first `derive-flows` marker a datagram only teaches
//! templates (its flows are the legacy records that follow it); after it, it is decoded into
//! flows, and a `netflow-record` there is superseded (counted, never a second flow). The
//! decoders' state ([`Deriver::snapshot`]) is saved with the flow store's commit, so a restart
//! goes on where the store stands instead of relearning from the ledger.
//!
//! Nothing here writes: the indexer owns the flow store and its commits. Not wired into the
//! indexer yet (step 5 of the design).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use decode::ADMIN_PREFIX;
use flow::{FlowDecoder, Limits, StateError, Stats};
use model::envelope::RecordEnvelope;
use model::flow::FlowRecord;
use model::{Format, Origin};
/// `pugmark_ledger` of the marker from which flows are derived.
pub const MARKER: &str = "derive-flows";
/// `pugmark_ledger` of the record an `ingest` run of flows appends first.
pub const IMPORT: &str = "flow-import";
/// `pugmark_ledger` of a retention record; its [`FLOW_STATE`] key carries the deriver's
/// state after the removed range (docs/design/flow-derivation.md §2.6).
pub const RETENTION: &str = "retention";
/// The key of a retention record holding [`Deriver::snapshot`] in base64.
pub const FLOW_STATE: &str = "flow_state";

const MAGIC: &[u8; 4] = b"PMDV";
const VERSION: u8 = 1;

/// What the deriver made of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A datagram after the marker: the flows its decoding emitted (each with the datagram's
    /// observer), for `FlowStore::add_derived` at this position.
    Flows(Vec<(String, FlowRecord)>),
    /// A datagram before the marker: templates learned, no flows (its flows are the legacy
    /// records after it).
    Learned,
    /// A `netflow-record` before the marker: a legacy flow, into the store as before.
    Legacy,
    /// A `netflow-record` after the marker: superseded by the datagram's derived flows.
    Superseded,
    /// Anything else, or a position seen already.
    Other,
}

/// A deriver's saved state that this build cannot use: the caller rebuilds the flow store
/// from the ledger's start rather than decode with a guess.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeriveStateError {
    #[error("flow deriver state: {0}")]
    Malformed(&'static str),
    #[error("flow deriver state: {0}")]
    Decoder(#[from] StateError),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Deriver {
    live: FlowDecoder,
    import: FlowDecoder,
    limits: Limits,
    marker: Option<u64>,
    position: u64,
    dirty: bool,
    /// What decoding each source's datagrams did in this process, while counting (not
    /// saved): `ingest`'s per-file summary.
    sources: BTreeMap<String, Stats>,
    counting: bool,
    /// The live decoder was fed since [`Deriver::take_live_fed`].
    live_fed: bool,
}

impl Deriver {
    pub fn new(limits: Limits) -> Deriver {
        Deriver {
            live: FlowDecoder::new(limits.clone()),
            import: FlowDecoder::new(limits.clone()),
            limits,
            marker: None,
            position: 0,
            dirty: false,
            sources: BTreeMap::new(),
            counting: false,
            live_fed: false,
        }
    }

    /// A new deriver that has seen every record up to `position` (a flow store built before
    /// derivation: it holds those records' flows already).
    pub fn starting_at(position: u64, limits: Limits) -> Deriver {
        Deriver {
            position,
            ..Deriver::new(limits)
        }
    }

    /// The deriver as [`Deriver::snapshot`] saved it.
    pub fn restore(bytes: &[u8], limits: Limits) -> Result<Deriver, DeriveStateError> {
        let bad = DeriveStateError::Malformed;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], DeriveStateError> {
            let end = at.checked_add(n).ok_or(bad("length"))?;
            let s = bytes.get(at..end).ok_or(bad("truncated"))?;
            at = end;
            Ok(s)
        };
        if take(4)? != MAGIC {
            return Err(bad("not a deriver's state"));
        }
        if take(1)? != [VERSION] {
            return Err(bad("a version this build does not read"));
        }
        let u64_of = |b: &[u8]| {
            b.try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| bad("short"))
        };
        let marker = u64_of(take(8)?)?;
        let position = u64_of(take(8)?)?;
        let mut decoder = || -> Result<FlowDecoder, DeriveStateError> {
            let n = u64_of(take(8)?)?;
            let n = usize::try_from(n).map_err(|_| bad("length"))?;
            Ok(FlowDecoder::restore(take(n)?, limits.clone())?)
        };
        let live = decoder()?;
        let import = decoder()?;
        if at != bytes.len() {
            return Err(bad("bytes after the state"));
        }
        if marker > position {
            return Err(bad("a marker past the position"));
        }
        Ok(Deriver {
            live,
            import,
            limits,
            marker: (marker > 0).then_some(marker),
            position,
            dirty: false,
            sources: BTreeMap::new(),
            counting: false,
            live_fed: false,
        })
    }

    /// The state to save with the flow store's commit at [`Deriver::position`]: magic `PMDV`,
    /// version 1, the marker's position (0: none) and the position (u64 LE each), then each
    /// decoder's own bytes (`FlowDecoder::snapshot`: live, then import) behind its length.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.marker.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        for d in [&self.live, &self.import] {
            let s = d.snapshot();
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(&s);
        }
        out
    }

    /// The last ledger position seen: every record at or before it is in the state.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The first `derive-flows` marker's position, once seen.
    pub fn marker(&self) -> Option<u64> {
        self.marker
    }

    /// Whether what the following datagrams' decoding does is counted per source
    /// ([`Deriver::sources`]): on for the records a writer appends in this process, off for
    /// a catch-up over earlier runs' records.
    pub fn counting(&mut self, on: bool) {
        self.counting = on;
    }

    /// Per source (a capture or payload file's path, a listener's name): what decoding its
    /// datagrams did while counting — flows, templates, options records, sets decoded after
    /// waiting or dropped, bad input by kind; `datagrams` counts the datagrams fed.
    pub fn sources(&self) -> &BTreeMap<String, Stats> {
        &self.sources
    }

    /// Data sets the import decoder holds for a template that has not come (an `ingest`
    /// run's end: the next run's `flow-import` drops them).
    pub fn import_waiting(&self) -> u64 {
        self.import.pending_sets()
    }

    /// … and the live decoder.
    pub fn live_waiting(&self) -> u64 {
        self.live.pending_sets()
    }

    /// What the live decoder counted (flows, templates, sets, problems) since it was made
    /// or restored: `serve`'s NetFlow metrics.
    pub fn live_stats(&self) -> &Stats {
        self.live.stats()
    }

    /// Whether the live decoder decoded a datagram after the marker since the last call.
    pub fn take_live_fed(&mut self) -> bool {
        std::mem::take(&mut self.live_fed)
    }

    /// Goes on from `bytes` ([`Deriver::snapshot`], as a retention record carries it) when
    /// it is past what this deriver has seen: records up to its position were removed by
    /// retention, and their templates and marker are in it. Per-source counts go on.
    /// Returns whether it was taken.
    pub fn carry(&mut self, bytes: &[u8]) -> Result<bool, DeriveStateError> {
        let d = Deriver::restore(bytes, self.limits.clone())?;
        if d.position < self.position {
            return Ok(false);
        }
        self.live = d.live;
        self.import = d.import;
        self.marker = d.marker;
        self.position = d.position;
        self.dirty = true;
        Ok(true)
    }

    /// Whether the state changed since the last call (what a commit saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Sees the record at ledger position `seq` (in ledger order; a position at or before
    /// [`Deriver::position`] was seen and is passed over).
    pub fn see(&mut self, seq: u64, env: &RecordEnvelope) -> Seen {
        if seq <= self.position {
            return Seen::Other;
        }
        self.position = seq;
        let after_marker = self.marker.is_some_and(|m| seq > m);
        match env.format {
            Format::NetflowDatagram => {
                self.dirty = true;
                let exporter = exporter_of(&env.origin);
                let received_ms =
                    i64::try_from(env.received.as_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
                let live = is_live(&env.origin);
                if !after_marker {
                    // Before the marker only the listener's templates can matter: every import
                    // run after it starts with a `flow-import` record, which empties the
                    // import decoder anyway.
                    if live {
                        self.live.relearn(exporter, &env.raw, received_ms);
                    }
                    return Seen::Learned;
                }
                self.live_fed |= live;
                let decoder = if live {
                    &mut self.live
                } else {
                    &mut self.import
                };
                let observer = env.observer.as_str().to_string();
                let before = self.counting.then(|| decoder.stats().clone());
                let flows = decoder.feed(exporter, seq, &env.raw, received_ms);
                if let Some(before) = before {
                    let into = self.sources.entry(source_of(&env.origin)).or_default();
                    add_delta(into, &before, decoder.stats());
                }
                Seen::Flows(flows.into_iter().map(|f| (observer.clone(), f)).collect())
            }
            Format::NetflowRecord if after_marker => Seen::Superseded,
            Format::NetflowRecord => Seen::Legacy,
            _ => {
                match admin_kind(env).as_deref() {
                    Some(MARKER) if self.marker.is_none() => {
                        self.marker = Some(seq);
                        self.dirty = true;
                    }
                    Some(IMPORT) => {
                        self.import = FlowDecoder::new(self.limits.clone());
                        self.dirty = true;
                    }
                    _ => {}
                }
                Seen::Other
            }
        }
    }
}

/// The `pugmark_ledger` kind of a record pugmark wrote about its own ledger, recognised by
/// everything an import cannot forge together: observer collector, raw format, origin
/// `<pugmark ledger>` line 0, text `pugmark-ledger {json}`.
pub fn admin_kind(env: &RecordEnvelope) -> Option<String> {
    admin_json(env)?
        .get("pugmark_ledger")?
        .as_str()
        .map(str::to_string)
}

/// The deriver's state a retention record carries (its `flow_state`), if it is one and
/// carries one.
pub fn carried_state(env: &RecordEnvelope) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let v = admin_json(env)?;
    if v.get("pugmark_ledger")?.as_str()? != RETENTION {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(v.get(FLOW_STATE)?.as_str()?)
        .ok()
}

/// The JSON of a record pugmark wrote about its own ledger (see [`admin_kind`]).
fn admin_json(env: &RecordEnvelope) -> Option<serde_json::Value> {
    if !decode::is_admin(env) {
        return None;
    }
    let text = std::str::from_utf8(&env.raw)
        .ok()?
        .strip_prefix(ADMIN_PREFIX)?;
    serde_json::from_str(text).ok()
}

/// The deriver's state after each of `ends` (ledger positions, ascending), replayed from
/// the ledger before retention removes what leads to them: what each retention record
/// carries. The replay starts after the last range already removed before the first end
/// (from the state its record carries; without one, afresh), and goes on from a later
/// removed range's state when it meets one. `None` per end when the ledger has no flows.
pub fn replay_states(
    reader: &mut ledger::LedgerReader,
    ends: &[u64],
) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    let Some(&first_end) = ends.first() else {
        return Ok(Vec::new());
    };
    let removed = reader.removed_ranges();
    // The last range removed before the first end: the replay starts after it.
    let (mut deriver, from) = match removed
        .iter()
        .filter(|&&(f, c, _)| f + c - 1 < first_end)
        .max_by_key(|&&(f, _, _)| f)
    {
        Some(&(first, count, record)) => {
            let last = first + count - 1;
            let mut d = Deriver::starting_at(last, Limits::default());
            if let Some(s) = carried_at(reader, record) {
                let _ = d.carry(&s);
            }
            (d, last + 1)
        }
        None => (Deriver::new(Limits::default()), 1),
    };
    let mut flows = deriver.marker.is_some() || deriver.dirty;
    let mut out = Vec::with_capacity(ends.len());
    let mut next = 0usize;
    let mut it = reader.iter_from(from);
    while next < ends.len() {
        let Some(item) = it.next_ref() else { break };
        let (seq, payload) = item?;
        let seq = seq.get();
        // A range removed earlier between here and `seq`: go on from what its record carries.
        if let Some(record) = removed_between(&removed, deriver.position, seq)
            && let Some(s) = carried_at(reader, record)
        {
            let _ = deriver.carry(&s);
        }
        while next < ends.len() && ends[next] < seq {
            out.push(flows.then(|| deriver.snapshot()));
            next += 1;
        }
        if next == ends.len() {
            break;
        }
        if let model::envelope::Stored::Whole(model::Envelope::Record(r)) = crate::stored(payload) {
            flows |= r.format == Format::NetflowDatagram || r.format == Format::NetflowRecord;
            let _ = deriver.see(seq, &r);
            flows |= deriver.marker.is_some();
        }
    }
    while out.len() < ends.len() {
        out.push(flows.then(|| deriver.snapshot()));
    }
    Ok(out)
}

/// The retention record of the last range in `removed` (first, count, record — as
/// `LedgerReader::removed_ranges` lists them) that lies wholly between positions `seen` and
/// `next`: the state to go on from before `next`, when a deriver that has seen up to `seen`
/// meets `next` past a removed range.
pub fn removed_between(removed: &[(u64, u64, u64)], seen: u64, next: u64) -> Option<u64> {
    if next <= seen + 1 {
        return None;
    }
    removed
        .iter()
        .rev()
        .find(|&&(f, c, _)| f > seen && f + c - 1 < next)
        .map(|&(_, _, record)| record)
}

/// What the retention record at `record` carries, read from the ledger.
pub fn carried_at(reader: &mut ledger::LedgerReader, record: u64) -> Option<Vec<u8>> {
    let payload = reader.get(record).ok()?;
    match crate::stored(&payload) {
        model::envelope::Stored::Whole(model::Envelope::Record(r)) => carried_state(&r),
        _ => None,
    }
}

/// The source a datagram is counted under: a capture's path (its listener without the
/// `pcap:` prefix and `#frame`), a payload file's path, a listener's name.
pub fn source_of(origin: &Origin) -> String {
    match origin {
        Origin::Peer { listener, .. } => {
            match listener.strip_prefix(model::event::PCAP_LISTENER_PREFIX) {
                Some(rest) => rest
                    .rsplit_once('#')
                    .map_or(rest, |(path, _)| path)
                    .to_string(),
                None => listener.clone(),
            }
        }
        Origin::AuthenticatedPeer { listener, .. } => listener.clone(),
        Origin::File { path, .. } | Origin::FileFromSender { path, .. } => path.clone(),
    }
}

/// `into += after - before`, field by field (one datagram's decoding).
fn add_delta(into: &mut Stats, before: &Stats, after: &Stats) {
    into.datagrams += 1;
    into.flows += after.flows.saturating_sub(before.flows);
    into.options_records += after.options_records.saturating_sub(before.options_records);
    into.templates += after.templates.saturating_sub(before.templates);
    into.options_templates += after
        .options_templates
        .saturating_sub(before.options_templates);
    into.pending_held += after.pending_held.saturating_sub(before.pending_held);
    into.pending_decoded += after.pending_decoded.saturating_sub(before.pending_decoded);
    into.dropped_sets += after.dropped_sets.saturating_sub(before.dropped_sets);
    for (k, n) in &after.problems {
        let was = before.problems.get(k).copied().unwrap_or(0);
        if *n > was {
            *into.problems.entry(k).or_default() += n - was;
        }
    }
}

/// The exporter a datagram came from: the peer of a listener or a capture, else (a payload
/// file) the unspecified address, as `ingest` decodes payload files today.
pub fn exporter_of(origin: &Origin) -> SocketAddr {
    match origin {
        Origin::Peer { addr, .. } | Origin::AuthenticatedPeer { addr, .. } => addr
            .parse()
            .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))),
        _ => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
    }
}

/// Whether a datagram came from a live listener (its decoder lives as long as the ledger)
/// rather than a capture or file (reset per `ingest` run).
fn is_live(origin: &Origin) -> bool {
    match origin {
        Origin::Peer { listener, .. } => !listener.starts_with(model::event::PCAP_LISTENER_PREFIX),
        Origin::AuthenticatedPeer { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
