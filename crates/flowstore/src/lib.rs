//! pugmark's columnar flow store (issue 16): every `net.flow` event of the ledger, column by column,
//! in partition files of at most [`PART_ROWS`] flows (ledger order), each column zstd-compressed,
//! with per partition the time range, the ledger range and the sorted set of addresses it
//! holds with each address's rows (postings), so a query for an address or a window opens only
//! the partitions that may match and reads only the rows and columns it needs ([`Cols`]).
//!
//! Like every view it is derived from the ledger (the pipeline's indexer feeds it the
//! `netflow-record` events, `reindex` rebuilds it) and holds nothing a reader cites but ledger
//! positions: each row keeps its record's seq and the datagram's seq, flowset and index.
//!
//! Layout of `DATA/flows/`: `manifest.json` (the committed partitions, the ledger position and
//! chain head there; replaced by rename) and `part-NNNNNNNNNN.pmf` files (docs/FORMAT.md
//! "Flow store"). A partition file not named by the manifest is debris of an interrupted
//! commit and is deleted at open.

pub mod agg;
pub mod cols;
pub(crate) mod part;

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use model::flow::FlowRecord;
use model::{Event, EventClass};
use serde::{Deserialize, Serialize};

pub use agg::{Agg, Groups, Key, KeyVal};
pub use cols::{Cols, RowSet};
pub use part::{AddrIndex, C_SUB, FlowRow, MAGIC, Part, PartError, PartSummary, Postings, encode};

/// Flows per partition at most. The writer holds a partition's rows (~200 bytes each) until it
/// writes them: 2^18 keeps that near 50 MB in the indexer (2^20 was ~200 MB, against
/// `ingest`'s memory target), ~4 MB a file, and a top-N query opens four times as many files
/// for the same flows, which costs nothing measurable.
pub const PART_ROWS: usize = 1 << 18;
/// Partitions smaller than this are merged with their small neighbours at a commit (a live
/// `serve` commits every second: without merging, one tiny file per second).
const SMALL_PART: usize = PART_ROWS / 8;
/// How many small partitions may pile up before they are merged into one.
const SMALL_RUN: usize = 8;

const MANIFEST: &str = "manifest.json";
/// The manifest of a store of legacy flows only: what every earlier build wrote and reads.
const MANIFEST_VERSION: u32 = 1;
/// The manifest of a store holding derived flows or a decoder state: an earlier build must
/// refuse it ("version 2 is not 1") rather than read a derived row's `seq` (the emitting
/// datagram) as a flow's own record.
const MANIFEST_VERSION_DERIVED: u32 = 2;
/// Bytes a decoder state may inflate to (the decoders' own cap is far below).
const MAX_STATE_BYTES: usize = 1 << 28;
/// zstd level of the decoder state file.
const STATE_ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum FlowStoreError {
    #[error("flow store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flow store manifest {path}: {msg}; run `pugmark reindex`")]
    Manifest { path: PathBuf, msg: String },
    #[error("flow store partition {path}: {source}; run `pugmark reindex`")]
    Part {
        path: PathBuf,
        #[source]
        source: PartError,
    },
    #[error("flow store decoder state {path}: {msg}; run `pugmark reindex`")]
    State { path: PathBuf, msg: String },
}

type Result<T> = std::result::Result<T, FlowStoreError>;

/// What the manifest says about one partition: enough to skip it without opening it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartMeta {
    pub file: String,
    pub rows: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Earliest and latest flow time (first packet, see [`FlowRow::time_ms`]), Unix ms.
    pub min_ms: i64,
    pub max_ms: i64,
    /// The file's size.
    pub bytes: u64,
    /// Every row is placed (`Event::placed()`, where searches put it in time) at its first
    /// packet: each has one and none has an observer a VM's user may forge (whose events
    /// stand at the collector's time). Then `[min_ms, max_ms]` bounds the placed times too and
    /// a search's window skips the partition unopened. Absent (false) in manifests written
    /// before it existed: such partitions are opened.
    #[serde(default)]
    pub placed_is_start: bool,
    /// The smallest datagram position a row names (`rec.datagram_seq`): with `last_seq`, the
    /// partitions a citation (datagram, flowset, record) may lie in ([`FlowStore::find`]).
    /// Absent in manifests written before it existed (such partitions are opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_dseq: Option<u64>,
    /// Some row is a derived flow ([`FlowRow::sub`] > 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub derived: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Manifest {
    version: u32,
    /// Last ledger position the store holds (every flow up to it), and the chain head there.
    position: Option<u64>,
    head: Option<String>,
    next_file: u64,
    parts: Vec<PartMeta>,
    /// The flow decoders' state after every datagram up to `position` (derived flows):
    /// opaque bytes to this crate, written by [`FlowStore::commit_at_with_state`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decoder: Option<StateFile>,
}

/// The derived rows of the partition a reader last looked a flow position up in
/// ([`FlowStore::locate_cached`]).
#[derive(Debug, Default)]
pub struct LocateCache {
    file: Option<String>,
    rows: Vec<FlowRow>,
}

/// A decoder state file the manifest names: its zstd bytes' length and BLAKE3 hash, checked
/// before its bytes are trusted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StateFile {
    file: String,
    bytes: u64,
    blake3: String,
}

/// An address or network: the inclusive range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub lo: IpAddr,
    pub hi: IpAddr,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.lo, self.hi, canonical(ip)) {
            (IpAddr::V4(l), IpAddr::V4(h), IpAddr::V4(a)) => l <= a && a <= h,
            (IpAddr::V6(l), IpAddr::V6(h), IpAddr::V6(a)) => l <= a && a <= h,
            _ => false,
        }
    }

    /// `a.b.c.d`, `a.b.c.d/n`, IPv6 alike.
    pub fn parse(s: &str) -> Option<Net> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let ip = canonical(addr.parse::<IpAddr>().ok()?);
        Some(match ip {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return None;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let v = u32::from(a) & mask;
                Net {
                    lo: IpAddr::V4(v.into()),
                    hi: IpAddr::V4((v | !mask).into()),
                }
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return None;
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let v = u128::from(a) & mask;
                Net {
                    lo: IpAddr::V6(v.into()),
                    hi: IpAddr::V6((v | !mask).into()),
                }
            }
        })
    }

    fn single(&self) -> Option<IpAddr> {
        (self.lo == self.hi).then_some(self.lo)
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// nfdump-like selection of flows; every part must hold (empty: every flow).
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub src: Option<Net>,
    pub dst: Option<Net>,
    /// Either end.
    pub ip: Option<Net>,
    /// Either port.
    pub port: Option<u16>,
    pub proto: Option<u8>,
    /// Flow time (first packet) in `[from_ms, to_ms)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub exporter: Option<IpAddr>,
}

impl FlowFilter {
    pub fn matches(&self, r: &FlowRow) -> bool {
        let t = r.time_ms();
        let inside = |n: &Option<Net>, a: Option<IpAddr>| match n {
            None => true,
            Some(n) => a.is_some_and(|a| n.contains(a)),
        };
        inside(&self.src, r.rec.src)
            && inside(&self.dst, r.rec.dst)
            && self.ip.as_ref().is_none_or(|n| {
                r.rec.src.is_some_and(|a| n.contains(a)) || r.rec.dst.is_some_and(|a| n.contains(a))
            })
            && self
                .port
                .is_none_or(|p| r.rec.src_port == p || r.rec.dst_port == p)
            && self.proto.is_none_or(|p| r.rec.proto == p)
            && self.from_ms.is_none_or(|f| t >= f)
            && self.to_ms.is_none_or(|e| t < e)
            && self.exporter.is_none_or(|x| {
                r.rec
                    .exporter
                    .is_some_and(|e| canonical(e.ip()) == canonical(x))
            })
    }

    /// Whether a partition with this summary may hold a match (no file read).
    fn may_match_meta(&self, m: &PartMeta) -> bool {
        self.from_ms.is_none_or(|f| m.max_ms >= f) && self.to_ms.is_none_or(|e| m.min_ms < e)
    }

    /// Whether the partition's address index admits every address part of the filter.
    fn may_match_part(&self, p: &Part<'_>) -> std::result::Result<bool, PartError> {
        for n in [&self.src, &self.dst, &self.ip].into_iter().flatten() {
            let ok = match n.single() {
                Some(a) => p.has_addr(a)?,
                None => p.has_addr_in(n.lo, n.hi)?,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Which partitions a scan may skip: by the manifest's summary (no file read), then by the
/// opened partition (its address index, its exporters). Both must be supersets: a partition
/// holding a row the scan wants must pass.
pub trait Prune {
    fn meta(&self, m: &PartMeta) -> bool;
    fn part(&self, p: &Part<'_>) -> std::result::Result<bool, PartError>;
    /// Whether the partition's address summary may hold a match; asked (before the file is
    /// read again) only when [`Prune::wants_summary`]: the store keeps each summary it read.
    fn summary(&self, _s: &PartSummary) -> bool {
        true
    }
    fn wants_summary(&self) -> bool {
        false
    }
}

impl Prune for FlowFilter {
    fn meta(&self, m: &PartMeta) -> bool {
        self.may_match_meta(m)
    }
    fn part(&self, p: &Part<'_>) -> std::result::Result<bool, PartError> {
        self.may_match_part(p)
    }
}

/// How a scan went: partitions in the store, opened, skipped by summary or address index.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScanStats {
    pub partitions: u64,
    pub skipped_by_time: u64,
    pub skipped_by_address: u64,
    pub rows_read: u64,
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let io = |source, path: &Path| FlowStoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mpath = dir.join(MANIFEST);
    Ok(match fs::read(&mpath) {
        Ok(b) => {
            let m: Manifest = serde_json::from_slice(&b).map_err(|e| FlowStoreError::Manifest {
                path: mpath.clone(),
                msg: e.to_string(),
            })?;
            if m.version != MANIFEST_VERSION && m.version != MANIFEST_VERSION_DERIVED {
                return Err(FlowStoreError::Manifest {
                    path: mpath,
                    msg: format!(
                        "version {} is not {MANIFEST_VERSION} or {MANIFEST_VERSION_DERIVED}",
                        m.version
                    ),
                });
            }
            m
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest {
            version: MANIFEST_VERSION,
            ..Manifest::default()
        },
        Err(e) => return Err(io(e, &mpath)),
    })
}

/// The flow store of one data directory, for writing (the pipeline's indexer) and reading.
pub struct FlowStore {
    dir: PathBuf,
    manifest: Manifest,
    /// Flows added since the last partition was written.
    pending: Vec<FlowRow>,
    /// Partitions written since the last commit (not yet in the manifest on disk).
    unlisted: Vec<PartMeta>,
    /// The last ledger position added (legacy flow or emitting datagram), or committed: what
    /// a catch-up sending it again is skipped by.
    added_through: Option<u64>,
    /// Address summaries of partitions read so far, by file name (a reader's cache).
    summaries: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<PartSummary>>>,
    /// The thread that encodes and writes full partitions while the next one fills (started at
    /// the first; a writer's only). In a `Mutex` only so that a reader's `FlowStore` stays
    /// `Sync`: the writer reaches it through `&mut self`, without locking.
    parts: std::sync::Mutex<Option<PartWriter>>,
}

/// A full partition on its way to its file: encoded, written and fsynced on the part writer's
/// thread while the indexer goes on deriving the next one. Encoding (the columns, their zstd
/// frames) was ~30 % of a flow capture's ingest CPU, all of it on the indexer's thread, the
/// one that bounds the ingest's wall time. At most one is in flight: the next waits for it,
/// so memory holds two partitions at most and partitions are listed in order.
struct PartWriter {
    jobs: Option<std::sync::mpsc::SyncSender<PartJob>>,
    done: std::sync::mpsc::Receiver<PartDone>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: bool,
}

struct PartJob {
    dir: PathBuf,
    file: String,
    rows: Vec<FlowRow>,
}

struct PartDone {
    meta: Result<PartMeta>,
    /// The job's rows: kept for the error (nothing added is dropped), else cleared for the
    /// next partition to fill (growing a fresh one to `PART_ROWS` rows copied each row ~twice
    /// more and faulted its pages in anew).
    rows: Vec<FlowRow>,
}

impl PartWriter {
    fn start() -> std::io::Result<PartWriter> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<PartJob>(1);
        let (tx, done) = std::sync::mpsc::sync_channel::<PartDone>(1);
        let thread = std::thread::Builder::new()
            .name("pugmark-flowpart".into())
            .spawn(move || {
                for mut job in rx {
                    let meta = part_file(&job.dir, job.file, &job.rows);
                    if meta.is_ok() {
                        job.rows.clear();
                    }
                    if tx
                        .send(PartDone {
                            meta,
                            rows: job.rows,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(PartWriter {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: false,
        })
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        // The partition in flight is finished (unlisted: removed as debris at the next open).
        drop(self.jobs.take());
        if self.in_flight {
            let _ = self.done.recv();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Encodes `rows` into partition file `file` of `dir`, durably (fsynced): its manifest entry.
fn part_file(dir: &Path, file: String, rows: &[FlowRow]) -> Result<PartMeta> {
    let bytes = encode(rows).map_err(|source| FlowStoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_durably(&dir.join(&file), &bytes)?;
    let (mut min_ms, mut max_ms) = (i64::MAX, i64::MIN);
    for r in rows {
        let t = r.time_ms();
        min_ms = min_ms.min(t);
        max_ms = max_ms.max(t);
    }
    // Observers repeat: parsed once per run of equal ones, not per row.
    let mut last: Option<(&str, bool)> = None;
    let placed_is_start = rows.iter().all(|r| {
        let trusted = match last {
            Some((o, t)) if o == r.observer => t,
            _ => {
                let t = r
                    .observer
                    .parse::<model::Observer>()
                    .is_ok_and(|o| !o.forgeable_by_vm_user());
                last = Some((&r.observer, t));
                t
            }
        };
        r.rec.start_ms.is_some() && trusted
    });
    Ok(PartMeta {
        file,
        rows: rows.len() as u64,
        first_seq: rows.first().map_or(0, |r| r.seq),
        last_seq: rows.last().map_or(0, |r| r.seq),
        min_ms,
        max_ms,
        bytes: bytes.len() as u64,
        placed_is_start,
        min_dseq: rows.iter().map(|r| r.rec.datagram_seq).min(),
        derived: rows.iter().any(|r| r.sub > 0),
    })
}

/// Creates `path` with `bytes`, fsynced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| FlowStoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

impl FlowStore {
    /// Opens the committed store in `dir` for reading: creates nothing, removes nothing (a
    /// live writer's uncommitted partitions are not debris to a reader).
    pub fn open_read(dir: impl AsRef<Path>) -> Result<FlowStore> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = read_manifest(&dir)?;
        Ok(FlowStore {
            dir,
            added_through: manifest.position,
            manifest,
            pending: Vec::new(),
            unlisted: Vec::new(),
            summaries: Default::default(),
            parts: Default::default(),
        })
    }

    /// Opens (creating when absent) the store in `dir` for writing: the one writer.
    pub fn open(dir: impl AsRef<Path>) -> Result<FlowStore> {
        let dir = dir.as_ref().to_path_buf();
        let io = |source, path: &Path| FlowStoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        let manifest = read_manifest(&dir)?;
        let s = FlowStore {
            dir,
            added_through: manifest.position,
            manifest,
            pending: Vec::new(),
            unlisted: Vec::new(),
            summaries: Default::default(),
            parts: Default::default(),
        };
        s.remove_debris()?;
        Ok(s)
    }

    /// Whether `dir` holds a flow store (a committed manifest).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(MANIFEST).is_file()
    }

    /// Partition files the manifest does not name: left by a commit that did not finish.
    fn remove_debris(&self) -> Result<()> {
        let rd = fs::read_dir(&self.dir).map_err(|e| FlowStoreError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let listed = self.manifest.parts.iter().any(|p| p.file == name)
                || self
                    .manifest
                    .decoder
                    .as_ref()
                    .is_some_and(|d| d.file == name);
            if (name.ends_with(".pmf") || name.ends_with(".tmp") || name.ends_with(".state"))
                && !listed
            {
                let _ = fs::remove_file(ent.path());
            }
        }
        Ok(())
    }

    /// The last ledger position the store holds and the chain head recorded there.
    pub fn last_position(&self) -> Option<(u64, Option<[u8; 32]>)> {
        let seq = self.manifest.position?;
        let head = self.manifest.head.as_deref().and_then(|h| {
            let mut out = [0u8; 32];
            if h.len() != 64 {
                return None;
            }
            for (i, b) in out.iter_mut().enumerate() {
                *b = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
            }
            Some(out)
        });
        Some((seq, head))
    }

    /// The committed partitions.
    pub fn partitions(&self) -> &[PartMeta] {
        &self.manifest.parts
    }

    /// Flows committed.
    pub fn rows(&self) -> u64 {
        self.manifest.parts.iter().map(|p| p.rows).sum()
    }

    /// Bytes of the committed partition files.
    pub fn bytes(&self) -> u64 {
        self.manifest.parts.iter().map(|p| p.bytes).sum()
    }

    /// Takes `event` (decoded from ledger position `seq`) if it is a flow: returns whether it
    /// did. A position the store already holds is skipped (a catch-up may send it again).
    pub fn add_event(&mut self, seq: u64, event: &Event) -> Result<bool> {
        if event.class != EventClass::NetFlow {
            return Ok(false);
        }
        // `decode` gives class net.flow only to a record whose bytes decoded.
        let Ok(rec) = FlowRecord::decode(&event.raw) else {
            return Ok(false);
        };
        self.add(seq, event.observer.as_str().to_string(), rec)?;
        Ok(true)
    }

    /// Adds one legacy flow: its own `netflow-record` at ledger position `seq`.
    pub fn add(&mut self, seq: u64, observer: String, rec: FlowRecord) -> Result<()> {
        if self.added_through.is_some_and(|h| seq <= h) {
            return Ok(());
        }
        self.added_through = Some(seq);
        self.pending.push(FlowRow::legacy(seq, observer, rec));
        if self.pending.len() >= PART_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Adds the flows emitted when the datagram at ledger position `e` was decoded, in
    /// emission order (each with its envelope's observer; none when the datagram gave no
    /// flow): rows `(e, 1 + k)`. A position the store already holds is skipped whole, as a
    /// catch-up may send it again. More than [`model::flow::MAX_FLOWS_PER_FEED`] flows, or a
    /// position past [`model::flow::MAX_FLOW_SEQ`], cannot be held by a flow position: those
    /// flows are left out and their number returned (the caller counts them).
    pub fn add_derived(&mut self, e: u64, rows: Vec<(String, FlowRecord)>) -> Result<u64> {
        if self.added_through.is_some_and(|h| e <= h) {
            return Ok(0);
        }
        self.added_through = Some(e);
        if e == 0 || e > model::flow::MAX_FLOW_SEQ {
            return Ok(rows.len() as u64);
        }
        let cap = model::flow::MAX_FLOWS_PER_FEED as usize;
        let cut = rows.len().saturating_sub(cap) as u64;
        for (k, (observer, rec)) in rows.into_iter().take(cap).enumerate() {
            self.pending.push(FlowRow {
                seq: e,
                sub: k as u32 + 1,
                observer,
                rec,
            });
        }
        // After the datagram's rows, never between them: they stay in one partition.
        if self.pending.len() >= PART_ROWS {
            self.write_pending()?;
        }
        Ok(cut)
    }

    /// The name of a new file `{stem}-NNNNNNNNNN.{ext}`, after the next file number.
    fn reserve(&mut self, stem: &str, ext: &str) -> String {
        let file = format!("{stem}-{:010}.{ext}", self.manifest.next_file);
        self.manifest.next_file += 1;
        file
    }

    /// Writes `bytes` durably (fsynced) as a new file named by [`FlowStore::reserve`]; its
    /// name.
    fn write_new(&mut self, stem: &str, ext: &str, bytes: &[u8]) -> Result<String> {
        let file = self.reserve(stem, ext);
        write_durably(&self.dir.join(&file), bytes)?;
        Ok(file)
    }

    /// Writes `rows` as a new partition on this thread: its manifest entry.
    fn write_part(&mut self, rows: &[FlowRow]) -> Result<PartMeta> {
        let file = self.reserve("part", "pmf");
        part_file(&self.dir, file, rows)
    }

    /// Waits for the partition in flight on the part writer (if any) and lists it. Its rows,
    /// cleared, become the next pending partition's allocation when that is still empty.
    fn wait_part(&mut self) -> Result<()> {
        let parts = self
            .parts
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(w) = parts.as_mut().filter(|w| w.in_flight) else {
            return Ok(());
        };
        w.in_flight = false;
        let Ok(done) = w.done.recv() else {
            *parts = None;
            return Err(FlowStoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the flow store's part writer stopped"),
            });
        };
        match done.meta {
            Ok(meta) => {
                self.unlisted.push(meta);
                if self.pending.is_empty() {
                    self.pending = done.rows;
                }
                Ok(())
            }
            Err(e) => {
                // Nothing added is dropped: the rows go back before those added since.
                let mut rows = done.rows;
                rows.append(&mut self.pending);
                self.pending = rows;
                Err(e)
            }
        }
    }

    /// Hands the pending rows to the part writer as a new partition (after the one in flight
    /// is listed), or writes them here when its thread cannot be had.
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Taken first: the partition in flight hands its cleared allocation on to `pending`.
        let mut rows = std::mem::take(&mut self.pending);
        if let Err(e) = self.wait_part() {
            self.pending.append(&mut rows);
            return Err(e);
        }
        let file = self.reserve("part", "pmf");
        let parts = self
            .parts
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if parts.is_none() {
            *parts = PartWriter::start().ok();
        }
        let job = PartJob {
            dir: self.dir.clone(),
            file,
            rows,
        };
        let job = match parts
            .as_mut()
            .and_then(|w| w.jobs.as_ref().map(|j| (j, &mut w.in_flight)))
        {
            Some((jobs, in_flight)) => match jobs.send(job) {
                Ok(()) => {
                    *in_flight = true;
                    return Ok(());
                }
                // The thread is gone: written here, and a new one started next time.
                Err(std::sync::mpsc::SendError(job)) => {
                    *parts = None;
                    job
                }
            },
            None => job,
        };
        self.write_here(job.file, job.rows)
    }

    /// Writes `rows` as partition `file` on this thread and lists it; on an error they go back
    /// to `pending`. Their allocation, cleared, becomes `pending`'s.
    fn write_here(&mut self, file: String, mut rows: Vec<FlowRow>) -> Result<()> {
        match part_file(&self.dir, file, &rows) {
            Ok(meta) => {
                self.unlisted.push(meta);
                rows.clear();
                self.pending = rows;
                Ok(())
            }
            Err(e) => {
                rows.append(&mut self.pending);
                self.pending = rows;
                Err(e)
            }
        }
    }

    /// Makes everything added durable and records ledger position `seq` (and its chain head):
    /// the store holds every flow up to it.
    pub fn commit_at(&mut self, seq: u64, head: Option<[u8; 32]>) -> Result<()> {
        self.commit_at_with_state(seq, head, None)
    }

    /// [`FlowStore::commit_at`], with the flow decoders' state after every datagram up to
    /// `seq` when it changed since the last commit (`None`: the state named so far stays).
    /// The state file is durable before the manifest that names it, and the one it replaces
    /// is deleted after: a crash leaves the old manifest with its own state, or the new one
    /// with its.
    pub fn commit_at_with_state(
        &mut self,
        seq: u64,
        head: Option<[u8; 32]>,
        state: Option<&[u8]>,
    ) -> Result<()> {
        let decoder = match state {
            Some(bytes) => Some(self.write_state(bytes)?),
            None => self.manifest.decoder.clone(),
        };
        let replaced = match (&self.manifest.decoder, &decoder) {
            (Some(old), Some(new)) if old.file != new.file => Some(old.file.clone()),
            _ => None,
        };
        // The partition in flight, then what is pending, written here: the manifest waits for
        // both anyway.
        self.wait_part()?;
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            let file = self.reserve("part", "pmf");
            self.write_here(file, rows)?;
        }
        let mut parts = self.manifest.parts.clone();
        parts.append(&mut self.unlisted);
        let mut obsolete = Vec::new();
        // A run of small partitions at the end (a live server's per-second commits) becomes
        // one: the merged file is written before the manifest that names it.
        let small = parts
            .iter()
            .rev()
            .take_while(|p| (p.rows as usize) < SMALL_PART)
            .count();
        if small >= SMALL_RUN {
            let run = parts.split_off(parts.len() - small);
            let mut rows = Vec::new();
            for p in &run {
                rows.extend(self.read_part(p)?);
            }
            parts.push(self.write_part(&rows)?);
            obsolete = run;
        }
        let version = if decoder.is_some() || parts.iter().any(|p| p.derived) {
            MANIFEST_VERSION_DERIVED
        } else {
            MANIFEST_VERSION
        };
        let m = Manifest {
            version,
            position: Some(seq.max(self.manifest.position.unwrap_or(0))),
            head: head.map(|h| h.iter().map(|b| format!("{b:02x}")).collect()),
            next_file: self.manifest.next_file,
            parts,
            decoder,
        };
        let tmp = self.dir.join("manifest.json.tmp");
        let path = self.dir.join(MANIFEST);
        let io = |source| FlowStoreError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.manifest = m;
        self.added_through = self.added_through.max(self.manifest.position);
        for p in obsolete {
            let _ = fs::remove_file(self.dir.join(&p.file));
        }
        if let Some(f) = replaced {
            let _ = fs::remove_file(self.dir.join(f));
        }
        Ok(())
    }

    /// Writes a decoder state file (zstd, fsynced) named after the next file number.
    fn write_state(&mut self, state: &[u8]) -> Result<StateFile> {
        let z =
            zstd::bulk::compress(state, STATE_ZSTD_LEVEL).map_err(|source| FlowStoreError::Io {
                path: self.dir.clone(),
                source,
            })?;
        let file = self.write_new("decoder", "state", &z)?;
        Ok(StateFile {
            file,
            bytes: z.len() as u64,
            blake3: blake3::hash(&z).to_hex().to_string(),
        })
    }

    /// The flow decoders' state the manifest names (see [`FlowStore::commit_at_with_state`]);
    /// `None` when it names none. A file missing, of another length or hash, or that does not
    /// inflate is an error: the caller rebuilds the store rather than decode with a guess.
    pub fn decoder_state(&self) -> Result<Option<Vec<u8>>> {
        let Some(sf) = &self.manifest.decoder else {
            return Ok(None);
        };
        let path = self.dir.join(&sf.file);
        let bad = |msg: String| FlowStoreError::State {
            path: path.clone(),
            msg,
        };
        let z = fs::read(&path).map_err(|e| bad(e.to_string()))?;
        if z.len() as u64 != sf.bytes || blake3::hash(&z).to_hex().as_str() != sf.blake3 {
            return Err(bad(
                "its bytes differ from what the manifest recorded".into()
            ));
        }
        let size = zstd::zstd_safe::get_frame_content_size(&z)
            .ok()
            .flatten()
            .ok_or_else(|| bad("not one zstd frame of known size".into()))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= MAX_STATE_BYTES)
            .ok_or_else(|| bad(format!("claims {size} bytes")))?;
        zstd::bulk::decompress(&z, size)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// The derived flow at flow position `pos` (`model::flow::flow_pos`), from the committed
    /// partitions; `None` when `pos` is not a flow position or no row holds it.
    pub fn locate(&self, pos: u64) -> Result<Option<FlowRow>> {
        self.locate_cached(pos, &mut LocateCache::default())
    }

    /// [`FlowStore::locate`], keeping the derived rows of the last partition read in `cache`:
    /// a reader fetching many flows of one partition decodes it once.
    pub fn locate_cached(&self, pos: u64, cache: &mut LocateCache) -> Result<Option<FlowRow>> {
        let Some((e, k)) = model::flow::split_flow_pos(pos) else {
            return Ok(None);
        };
        let Ok(sub) = u32::try_from(k + 1) else {
            return Ok(None);
        };
        for p in self.parts_covering(e, e) {
            if cache.file.as_deref() != Some(p.file.as_str()) {
                let mut rows: Vec<FlowRow> = self
                    .read_part(p)?
                    .into_iter()
                    .filter(|r| r.sub > 0)
                    .collect();
                rows.sort_by_key(|r| (r.seq, r.sub));
                cache.rows = rows;
                cache.file = Some(p.file.clone());
            }
            if let Ok(i) = cache
                .rows
                .binary_search_by_key(&(e, sub), |r| (r.seq, r.sub))
            {
                return Ok(cache.rows.get(i).cloned());
            }
        }
        Ok(None)
    }

    /// The flow a citation names: the datagram at ledger position `d`, and its place in it
    /// (legacy or derived: a datagram's flows are one or the other, by the ledger's marker).
    pub fn find(&self, d: u64, at: model::flow::FlowAt) -> Result<Option<FlowRow>> {
        let parts = self
            .manifest
            .parts
            .iter()
            .filter(|p| p.last_seq >= d && p.min_dseq.is_none_or(|m| m <= d));
        for p in parts {
            let found = self.rows_where(p, &|_, _, rec| {
                rec.datagram_seq == d && rec.flowset == at.flowset && rec.record == at.record
            })?;
            if let Some(r) = found.into_iter().next() {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Committed partitions whose ledger range meets `[from, to]`.
    fn parts_covering(&self, from: u64, to: u64) -> impl Iterator<Item = &PartMeta> {
        self.manifest
            .parts
            .iter()
            .filter(move |p| p.first_seq <= to && p.last_seq >= from)
    }

    /// Rows of partition `p` that `keep(seq, sub, record)` takes.
    fn rows_where(
        &self,
        p: &PartMeta,
        keep: &dyn Fn(u64, u32, &FlowRecord) -> bool,
    ) -> Result<Vec<FlowRow>> {
        Ok(self
            .read_part(p)?
            .into_iter()
            .filter(|r| keep(r.seq, r.sub, &r.rec))
            .collect())
    }

    fn read_file(&self, p: &PartMeta) -> Result<Vec<u8>> {
        let path = self.dir.join(&p.file);
        fs::read(&path).map_err(|e| FlowStoreError::Io { path, source: e })
    }

    fn read_part(&self, p: &PartMeta) -> Result<Vec<FlowRow>> {
        let bytes = self.read_file(p)?;
        let perr = |source| FlowStoreError::Part {
            path: self.dir.join(&p.file),
            source,
        };
        Part::open(&bytes)
            .and_then(|part| part.decode_all())
            .map_err(perr)
    }

    /// Partition `p`'s file, for [`Part::open_file`] (which reads only the columns asked for).
    pub fn part_file(&self, p: &PartMeta) -> Result<fs::File> {
        let path = self.dir.join(&p.file);
        fs::File::open(&path).map_err(|e| FlowStoreError::Io { path, source: e })
    }

    /// A damaged partition `p`, as the store's error.
    pub fn part_error(&self, p: &PartMeta, source: PartError) -> FlowStoreError {
        FlowStoreError::Part {
            path: self.dir.join(&p.file),
            source,
        }
    }

    /// Partition `p`'s address summary, read once per store opened.
    pub fn summary(&self, p: &PartMeta) -> Result<std::sync::Arc<PartSummary>> {
        if let Ok(c) = self.summaries.lock()
            && let Some(s) = c.get(&p.file)
        {
            return Ok(s.clone());
        }
        let file = self.part_file(p)?;
        let s = Part::open_file(&file)
            .and_then(|part| part.summary())
            .map_err(|source| self.part_error(p, source))?;
        let s = std::sync::Arc::new(s);
        if let Ok(mut c) = self.summaries.lock() {
            c.insert(p.file.clone(), s.clone());
        }
        Ok(s)
    }

    /// Opens partition `p` unless `prune` excludes it (counted in `st`) and hands it to `f`:
    /// the one place `scan`, `scan_rows` and `aggregate` skip partitions.
    fn with_part(
        &self,
        p: &PartMeta,
        prune: &dyn Prune,
        st: &mut ScanStats,
        f: impl FnOnce(&Part<'_>) -> std::result::Result<(), PartError>,
    ) -> Result<()> {
        st.partitions += 1;
        if !prune.meta(p) {
            st.skipped_by_time += 1;
            return Ok(());
        }
        if prune.wants_summary() && !prune.summary(&*self.summary(p)?) {
            st.skipped_by_address += 1;
            return Ok(());
        }
        let bytes = self.read_file(p)?;
        let perr = |source| FlowStoreError::Part {
            path: self.dir.join(&p.file),
            source,
        };
        let part = Part::open(&bytes).map_err(perr)?;
        if !prune.part(&part).map_err(perr)? {
            st.skipped_by_address += 1;
            return Ok(());
        }
        st.rows_read += part.rows() as u64;
        f(&part).map_err(perr)
    }

    /// Every committed flow `filter` selects, in ledger order, to `f`; partitions whose time
    /// range or address index excludes the filter are not decoded, and with an address part
    /// only the rows its postings name are (partitions written before the postings: all).
    pub fn scan(&self, filter: &FlowFilter, f: &mut dyn FnMut(&FlowRow)) -> Result<ScanStats> {
        let nets: Vec<Net> = [filter.src, filter.dst, filter.ip]
            .into_iter()
            .flatten()
            .collect();
        if nets.is_empty() {
            return self.scan_rows(filter, &mut |r| {
                if filter.matches(r) {
                    f(r);
                }
            });
        }
        let mut st = ScanStats::default();
        for p in &self.manifest.parts {
            st.partitions += 1;
            if !filter.may_match_meta(p) {
                st.skipped_by_time += 1;
                continue;
            }
            let file = self.part_file(p)?;
            let perr = |e| self.part_error(p, e);
            let part = Part::open_file(&file).map_err(perr)?;
            if !filter.may_match_part(&part).map_err(perr)? {
                st.skipped_by_address += 1;
                continue;
            }
            st.rows_read += part.rows() as u64;
            let cols = Cols::new(&part);
            let mut sel: Option<RowSet> = None;
            if let Some(ix) = cols.addr_index().map_err(perr)? {
                for n in &nets {
                    let rows = net_rows(ix, *n, part.rows()).map_err(perr)?;
                    match sel.as_mut() {
                        Some(s) => s.and(&rows),
                        None => sel = Some(rows),
                    }
                }
            }
            if sel.as_ref().is_some_and(RowSet::is_empty) {
                continue;
            }
            for r in cols.decode(sel.as_ref()).map_err(perr)? {
                if filter.matches(&r) {
                    f(&r);
                }
            }
        }
        Ok(st)
    }

    /// Every committed flow of the partitions `prune` lets through, in ledger order, to `f`
    /// (the caller decides on each row).
    pub fn scan_rows(&self, prune: &dyn Prune, f: &mut dyn FnMut(&FlowRow)) -> Result<ScanStats> {
        let mut st = ScanStats::default();
        for p in &self.manifest.parts {
            self.with_part(p, prune, &mut st, |part| {
                for r in &part.decode_all()? {
                    f(r);
                }
                Ok(())
            })?;
        }
        Ok(st)
    }
}

/// The rows of a partition whose source or destination may lie in `n` (a superset for
/// [`FlowFilter::matches`]: an IPv4-mapped IPv6 address counts as its IPv4 address).
fn net_rows(ix: &AddrIndex, n: Net, rows: usize) -> std::result::Result<RowSet, PartError> {
    let mut s = RowSet::none(rows);
    let mut add = |list: Vec<u32>| list.iter().for_each(|&r| s.insert(r as usize));
    match (n.lo, n.hi) {
        (IpAddr::V4(lo), IpAddr::V4(hi)) => {
            let (lo, hi) = (u32::from(lo), u32::from(hi));
            let first = ix.addr4.partition_point(|&a| a < lo);
            for (k, &a) in ix.addr4.iter().enumerate().skip(first) {
                if a > hi {
                    break;
                }
                add(ix.post4.rows_of(k)?);
            }
            for (k, a) in ix.addr6.iter().enumerate() {
                if let Some(v4) = std::net::Ipv6Addr::from(*a).to_ipv4_mapped()
                    && (lo..=hi).contains(&u32::from(v4))
                {
                    add(ix.post6.rows_of(k)?);
                }
            }
        }
        (IpAddr::V6(lo), IpAddr::V6(hi)) => {
            let (lo, hi) = (lo.octets(), hi.octets());
            let first = ix.addr6.partition_point(|a| *a < lo);
            for (k, a) in ix.addr6.iter().enumerate().skip(first) {
                if *a > hi {
                    break;
                }
                add(ix.post6.rows_of(k)?);
            }
        }
        _ => {}
    }
    Ok(s)
}

/// Groups, the total and the scan's counts: what [`FlowStore::aggregate`] gives.
pub type Partial = (Groups, Agg, ScanStats);

impl FlowStore {
    /// The flows `filter` selects grouped by `key` (sums per group, and over all), straight
    /// from the columns: only those the key, the filter and the sums need are read. Partitions
    /// are shared among `threads` threads (the machine's cores: 2 here).
    pub fn aggregate(&self, filter: &FlowFilter, key: Key, threads: usize) -> Result<Partial> {
        let parts: Vec<&PartMeta> = self.manifest.parts.iter().collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Result<Partial> {
            let mut groups = Groups::default();
            let mut total = Agg::default();
            let mut st = ScanStats::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = parts.get(i) else { break };
                self.with_part(p, filter, &mut st, |part| {
                    agg::aggregate_part(part, filter, key, &mut groups, &mut total).map(|_| ())
                })?;
            }
            Ok((groups, total, st))
        };
        let results: Vec<Result<Partial>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..threads.max(1)).map(|_| sc.spawn(work)).collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(FlowStoreError::Io {
                            path: self.dir.clone(),
                            source: std::io::Error::other("aggregation thread panicked"),
                        })
                    })
                })
                .collect()
        });
        let mut groups = Groups::default();
        let mut total = Agg::default();
        let mut st = ScanStats::default();
        for r in results {
            let (g, t, s) = r?;
            if groups.is_empty() {
                groups = g;
            } else {
                for (k, a) in g {
                    groups.entry(k).or_default().merge(&a);
                }
            }
            total.merge(&t);
            st.partitions += s.partitions;
            st.skipped_by_time += s.skipped_by_time;
            st.skipped_by_address += s.skipped_by_address;
            st.rows_read += s.rows_read;
        }
        Ok((groups, total, st))
    }
}

/// The `n` largest groups by `metric`, ties by key: what `--top` prints.
pub fn top_n(groups: Groups, metric: impl Fn(&Agg) -> u64, n: usize) -> Vec<(KeyVal, Agg)> {
    let mut v: Vec<(KeyVal, Agg)> = groups.into_iter().collect();
    let cmp = |x: &(KeyVal, Agg), y: &(KeyVal, Agg)| {
        metric(&y.1).cmp(&metric(&x.1)).then_with(|| x.0.cmp(&y.0))
    };
    if v.len() > n && n > 0 {
        v.select_nth_unstable_by(n - 1, cmp);
        v.truncate(n);
    }
    v.sort_by(cmp);
    v
}

#[cfg(test)]
mod tests;
