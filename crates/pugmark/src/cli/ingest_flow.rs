//! `pugmark ingest` for NetFlow / IPFIX: packet captures (pcap, pcapng) holding export
//! datagrams, and bare export payload files (one datagram per file, as the logstash corpus
//! keeps them).
//!
//! Each UDP datagram that looks like a NetFlow v5/v9 or IPFIX export is stored as a
//! `netflow-datagram` record, after the run's `flow-import` record (`crate::netflow`); the
//! views derive its flows with one import decoder for the whole run, so templates in one file
//! decode data in the next (give template captures first). The run's per-file flow figures
//! come from that decoder ([`fill_from_views`]) once the views have caught up. A capture's exporter is the
//! datagram's source address; a bare payload file has none (its origin is the file).
//! Other UDP traffic in a capture is counted and not stored.
//!
//! A file that starts like a capture but of which not one frame parses is stored as raw text
//! lines instead (with a message). Known gap: bytes after the last frame that parses in a
//! damaged capture are reported ("cut short"), not stored.
//!
//! Dedup: the whole content is hashed; a content already imported completely stores nothing.
//! Marks are written only at the end (binary content has no line boundaries to resume at), so
//! an import interrupted half-way stores its first batches again when repeated.

use std::io::Read;
use std::net::SocketAddr;

use anyhow::Context;
use model::envelope::ImportMark;
use model::{Envelope, Observer, Origin, Received};
use serde::Serialize;

use super::ingest::{FileSummary, Input};
use crate::netflow::FlowIngest;
use pipeline::Pipeline;
use pipeline::imports::hex;

/// Envelopes per durable batch.
const BATCH: usize = 8192;

/// What kind of NetFlow input a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowInput {
    Capture,
    Payload,
}

impl FlowInput {
    /// Sniff the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Option<FlowInput> {
        if flow::pcap::is_capture(head) {
            Some(FlowInput::Capture)
        } else if flow::looks_like_datagram(head) {
            Some(FlowInput::Payload)
        } else {
            None
        }
    }
}

/// A file that starts like a capture but whose header does not parse: the caller stores it
/// as raw text lines instead (never lost).
#[derive(Debug)]
pub struct NotACapture(pub String);

impl std::fmt::Display for NotACapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotACapture {}

/// Flow figures for one file, in the ingest summary.
#[derive(Debug, Default, Serialize)]
pub struct FlowSummary {
    /// Export datagrams stored.
    pub datagrams: u64,
    /// Flow records stored.
    pub flows: u64,
    /// Capture frames, and UDP datagrams in them that were not NetFlow / IPFIX (not stored).
    pub frames: u64,
    pub other_udp: u64,
    /// Frames that were not UDP, IP fragments, or undecodable.
    pub other_frames: u64,
    /// The capture ended inside a packet or had a damaged block.
    pub capture_damaged: bool,
    pub templates: u64,
    pub options_records: u64,
    /// Data sets that waited for their template, decoded later, and dropped (no template).
    pub pending_decoded: u64,
    pub dropped_sets: u64,
    /// Bad input met while decoding, by kind.
    pub problems: std::collections::BTreeMap<String, u64>,
}

pub(super) fn ingest(
    pipeline: &mut Pipeline,
    fi: &mut FlowIngest,
    input: &Input,
    kind: FlowInput,
    observer: Option<Observer>,
    on_receipt: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<FileSummary> {
    let mut content = Vec::new();
    input
        .reader()?
        .read_to_end(&mut content)
        .with_context(|| format!("reading {}", input.name))?;
    let len = content.len() as u64;
    let hash = blake3::hash(&content);
    let hash_hex = hex(hash.as_bytes());
    let format = model::Format::NetflowDatagram;
    let observer = observer.unwrap_or_else(|| format.default_observer());
    let mut fsum = FlowSummary::default();
    let already = pipeline
        .imports()
        .candidates(&input.name, len)
        .iter()
        .any(|m| m.complete && m.bytes == len && m.prefix_hash == hash_hex);
    let mut summary = FileSummary {
        path: input.name.clone(),
        format: match kind {
            FlowInput::Capture => "pcap",
            FlowInput::Payload => "netflow",
        },
        bytes: len,
        lines: 0,
        stored: 0,
        skipped_lines: 0,
        skipped_bytes: 0,
        netflow: None,
    };
    if already {
        summary.skipped_bytes = len;
        summary.netflow = Some(fsum);
        return Ok(summary);
    }
    let before = fi.stats().clone();
    // (exporter, origin, payload) per datagram.
    let grams: Vec<(SocketAddr, Origin, Vec<u8>)> = match kind {
        FlowInput::Payload => vec![(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Origin::File {
                path: input.name.clone(),
                line: 1,
            },
            content,
        )],
        FlowInput::Capture => {
            let (grams, cs) = flow::pcap::udp_datagrams(&content)
                .map_err(|e| NotACapture(format!("{}: {e}", input.name)))?;
            if cs.damaged && cs.frames == 0 {
                return Err(NotACapture(format!(
                    "{}: starts like a capture but not one frame parses",
                    input.name
                ))
                .into());
            }
            fsum.frames = cs.frames;
            fsum.other_frames = cs.not_udp + cs.fragments + cs.undecodable;
            fsum.capture_damaged = cs.damaged;
            let mut out = Vec::with_capacity(grams.len());
            for g in grams {
                if !flow::looks_like_datagram(&g.payload) {
                    fsum.other_udp += 1;
                    continue;
                }
                // The exporter is in the origin (the listener name cites file and frame).
                let origin = Origin::Peer {
                    addr: g.src.to_string(),
                    listener: format!(
                        "{}{}#{}",
                        model::event::PCAP_LISTENER_PREFIX,
                        input.name,
                        g.frame
                    ),
                };
                out.push((g.src, origin, g.payload));
            }
            out
        }
    };
    summary.lines = grams.len() as u64;
    let mut batch: Vec<Envelope> = Vec::with_capacity(BATCH + 64);
    let mut received = Received::now();
    let total = grams.len();
    // Ledger positions the batch takes so far (a payload file over the record limit is
    // split by `Pipeline::append` and takes more than one).
    let mut batch_parts = 0u64;
    if total > 0 {
        fi.announce(&mut batch);
        batch_parts += batch.iter().map(pipeline::ledger_parts).sum::<u64>();
    }
    for (i, (exporter, origin, payload)) in grams.into_iter().enumerate() {
        let seq = pipeline.next_seq() + batch_parts;
        let before = batch.len();
        let flows = fi.datagram(
            exporter, &payload, &origin, observer, received, seq, &mut batch,
        );
        batch_parts += batch[before..]
            .iter()
            .map(pipeline::ledger_parts)
            .sum::<u64>();
        fsum.datagrams += 1;
        fsum.flows += flows as u64;
        let last = i + 1 == total;
        if batch.len() >= BATCH && !last {
            summary.stored += batch.len() as u64;
            let receipt = pipeline.append(std::mem::take(&mut batch))?;
            batch_parts = 0;
            let first = receipt.first.get();
            on_receipt(first, first + receipt.count - 1);
            received = Received::now();
        }
    }
    summary.stored += batch.len() as u64;
    batch.push(Envelope::ImportMark(ImportMark {
        received,
        path: input.name.clone(),
        bytes: len,
        lines: summary.lines,
        prefix_hash: *hash.as_bytes(),
        complete: true,
    }));
    let receipt = pipeline.append(batch)?;
    let first = receipt.first.get();
    on_receipt(first, first + receipt.count - 1);
    if fi.is_deriving() {
        // Decoded by the views: `fill_from_views` after the pipeline's end.
        summary.netflow = Some(fsum);
        return Ok(summary);
    }
    let after = fi.stats();
    fsum.templates = (after.templates + after.options_templates)
        .saturating_sub(before.templates + before.options_templates);
    fsum.options_records = after.options_records.saturating_sub(before.options_records);
    fsum.pending_decoded = after.pending_decoded.saturating_sub(before.pending_decoded);
    fsum.dropped_sets = after.dropped_sets.saturating_sub(before.dropped_sets);
    for (k, n) in &after.problems {
        let was = before.problems.get(k).copied().unwrap_or(0);
        if *n > was {
            fsum.problems.insert((*k).to_string(), n - was);
        }
    }
    summary.netflow = Some(fsum);
    Ok(summary)
}

/// The flow figures of each file of a run whose flows the views derived, from what the
/// indexer's deriver counted per source (`pipeline::DecodeStats::flows`, keyed by the same
/// path): flows, templates, options records, sets decoded after waiting or dropped, bad
/// input. A file stored again by path in one run is counted once, under its first entry.
pub(super) fn fill_from_views(
    files: &mut [FileSummary],
    by_source: &mut std::collections::BTreeMap<String, flow::Stats>,
) {
    for f in files {
        let Some(n) = f.netflow.as_mut() else {
            continue;
        };
        let Some(s) = by_source.remove(&f.path) else {
            continue;
        };
        n.flows = s.flows;
        n.templates = s.templates + s.options_templates;
        n.options_records = s.options_records;
        n.pending_decoded = s.pending_decoded;
        n.dropped_sets = s.dropped_sets;
        n.problems = s
            .problems
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }
}
