//! The envelope: what the ledger stores for each record, and how it is laid out in bytes.
//!
//! An envelope holds what the collector knows for certain (received time, origin, observer,
//! which decoder to use and the hints it needs) plus the raw bytes exactly as received. It
//! deliberately holds no parsed fields: decoding is a pure function of the envelope, so every
//! view can be rebuilt from the ledger (`pugmark reindex`) and a parser fix applies to old
//! evidence too.
//!
//! The byte layout is written by hand rather than by a serde binary format because it is part
//! of the evidence format (docs/FORMAT.md): it must stay readable byte for byte by every later
//! version, and hand-written it is both stable and fast (no per-field tags). All integers are
//! little-endian; strings are u32-length-prefixed UTF-8.

use jiff::Timestamp;
use thiserror::Error;

use crate::event::{Observer, Origin};
use crate::time::Received;

/// Envelope format version written by this build. Version 2 added the split record (kinds 3
/// and 4: [`Stored::Head`], [`Stored::Continuation`]); its kinds 1 and 2 are laid out exactly
/// as in version 1, which this build still reads byte for byte (docs/FORMAT.md).
pub const ENVELOPE_VERSION: u8 = 2;

const KIND_RECORD: u8 = 1;
const KIND_IMPORT_MARK: u8 = 2;
/// Version 2: the first part of a record split over several ledger records.
const KIND_RECORD_HEAD: u8 = 3;
/// Version 2: a further part of a split record; continues the previous ledger record.
const KIND_CONTINUATION: u8 = 4;
/// Bytes a continuation adds around its part of the raw bytes: version, kind, part, parts,
/// length.
const CONTINUATION_OVERHEAD: usize = 1 + 1 + 4 + 4 + 4;

/// Which decoder turns the raw bytes into an event. Stored as one byte; codes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Syslog in any of its on-disk and on-wire shapes (RFC 5424, RFC 3164, rsyslog file
    /// formats), recognised per line.
    Syslog,
    /// Not a known format: stored and searchable as text, with a parse issue.
    Raw,
    /// An OpenStack notification, one JSON document per record: versioned
    /// (`nova_object.data` payload), legacy (`compute.instance.*`), bare or wrapped in the
    /// oslo.messaging envelope (`{"oslo.version": "2.0", "oslo.message": "…"}`).
    OpenstackNotification,
    /// One line of an OpenStack service log in oslo.log layout (nova-api, nova-compute,
    /// nova-scheduler), optionally prefixed with its file name as loghub does.
    OsloLog,
    /// One element of a Keystone directory dump (`openstack user list --long -f json` or
    /// `openstack project list --long -f json`).
    KeystoneDirectory,
    /// One job ClassAd from `condor_history -json` (an element of the JSON array).
    CondorHistoryJson,
    /// One job ClassAd in `Attr = value` lines, as `condor_history -l` prints them
    /// (ads separated by blank lines).
    CondorClassAd,
    /// One event of an HTCondor job event log (userlog), ending with its `...` line.
    CondorUserlog,
    /// One NetFlow v5/v9 or IPFIX export datagram (the UDP payload) exactly as received: the
    /// evidence. Decoded alone into a summary event (its flows need templates from earlier
    /// datagrams, so they are stored beside it as `netflow-record`s).
    NetflowDatagram,
    /// One flow, normalised at ingest from a `netflow-datagram` (crate `flow`) into the
    /// compact encoding of [`crate::flow::FlowRecord`], naming the datagram's ledger seq and
    /// the record's place in it. Decodes without template state.
    NetflowRecord,
    /// One OpenNebula XML document (code 20): a `<VM>` of `onevm show -x` / an element of
    /// `onevm list -x`'s `VM_POOL`, what the site kit's state hook writes (the VM template
    /// OpenNebula passes as `$TEMPLATE`), a whole `<HOOK_MESSAGE>`, or a `<VNET>` of
    /// `onevnet show -x` with its leases.
    OpennebulaXml,
    /// One line of OpenNebula's own logs (code 21): `oned.log` (API request and result lines)
    /// or a VM's `/var/log/one/<id>.log` (state changes; the VM id comes from the file name).
    OpennebulaLog,
    /// One resource (a User or a Group) of a SCIM 2.0 directory export (`/scim/Users`,
    /// `/scim/Groups` ListResponse pages, INDIGO IAM or any SCIM server), or a fragment of the
    /// ListResponse around the resources (issue 12). Code 22.
    ScimDirectory,
    /// One line of an ARC CE A-REX job log (code 23) (`Started - job id: …` / `Finished - job id: …`).
    ArcJobLog,
    /// One line of an HTCondor(-CE) schedd audit log (code 24) (`SCHEDD_AUDIT_LOG`, `(D_AUDIT)` lines).
    CondorAuditLog,
    /// A code written by a newer pugmark; decoded as raw with an issue.
    Unknown(u8),
}

impl Format {
    pub fn code(self) -> u8 {
        match self {
            Format::Syslog => 1,
            Format::Raw => 2,
            Format::OpenstackNotification => 3,
            Format::OsloLog => 4,
            Format::KeystoneDirectory => 5,
            Format::CondorHistoryJson => 6,
            Format::CondorClassAd => 7,
            Format::CondorUserlog => 8,
            Format::NetflowDatagram => 9,
            Format::NetflowRecord => 10,
            Format::OpennebulaXml => 20,
            Format::OpennebulaLog => 21,
            Format::ScimDirectory => 22,
            Format::ArcJobLog => 23,
            Format::CondorAuditLog => 24,
            Format::Unknown(c) => c,
        }
    }

    pub fn from_code(code: u8) -> Format {
        match code {
            1 => Format::Syslog,
            2 => Format::Raw,
            3 => Format::OpenstackNotification,
            4 => Format::OsloLog,
            5 => Format::KeystoneDirectory,
            6 => Format::CondorHistoryJson,
            7 => Format::CondorClassAd,
            8 => Format::CondorUserlog,
            9 => Format::NetflowDatagram,
            10 => Format::NetflowRecord,
            20 => Format::OpennebulaXml,
            21 => Format::OpennebulaLog,
            22 => Format::ScimDirectory,
            23 => Format::ArcJobLog,
            24 => Format::CondorAuditLog,
            c => Format::Unknown(c),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Syslog => "syslog",
            Format::Raw => "raw",
            Format::OpenstackNotification => "openstack-notification",
            Format::OsloLog => "oslo-log",
            Format::KeystoneDirectory => "keystone-directory",
            Format::CondorHistoryJson => "condor-history-json",
            Format::CondorClassAd => "condor-classad",
            Format::CondorUserlog => "condor-userlog",
            Format::NetflowDatagram => "netflow-datagram",
            Format::NetflowRecord => "netflow-record",
            Format::OpennebulaXml => "opennebula-xml",
            Format::OpennebulaLog => "opennebula-log",
            Format::ScimDirectory => "scim-directory",
            Format::ArcJobLog => "arc-job-log",
            Format::CondorAuditLog => "condor-audit-log",
            Format::Unknown(_) => "unknown",
        }
    }

    /// Every format this build writes, for `--format` and detection.
    pub const KNOWN: [Format; 15] = [
        Format::Syslog,
        Format::Raw,
        Format::OpenstackNotification,
        Format::OsloLog,
        Format::KeystoneDirectory,
        Format::CondorHistoryJson,
        Format::CondorClassAd,
        Format::CondorUserlog,
        Format::NetflowDatagram,
        Format::NetflowRecord,
        Format::OpennebulaXml,
        Format::OpennebulaLog,
        Format::ScimDirectory,
        Format::ArcJobLog,
        Format::CondorAuditLog,
    ];

    /// Who observes records of this format when nobody says otherwise: the cloud for
    /// OpenStack sources, the VO for HTCondor, the VM for syslog (the forgeable default).
    pub fn default_observer(self) -> crate::Observer {
        match self {
            Format::OpenstackNotification
            | Format::OsloLog
            | Format::KeystoneDirectory
            | Format::OpennebulaXml
            | Format::OpennebulaLog => crate::Observer::Cloud,
            // The IAM is the VO's directory; an ARC CE or HTCondor-CE reports the grid jobs
            // it accepted, like the VO's own HTCondor records.
            Format::CondorHistoryJson
            | Format::CondorClassAd
            | Format::CondorUserlog
            | Format::ScimDirectory
            | Format::ArcJobLog
            | Format::CondorAuditLog => crate::Observer::Vo,
            Format::NetflowDatagram | Format::NetflowRecord => crate::Observer::Network,
            Format::Syslog | Format::Raw | Format::Unknown(_) => crate::Observer::Vm,
        }
    }
}

/// How to give a year to year-less (RFC 3164) timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearRule {
    /// No information: year-less stamps get the year of the received time, with rollover.
    FromReceived,
    /// The user said which year (`--year`).
    Fixed(i16),
    /// Infer from a reference instant (the file's mtime): the latest year in which the stamp is
    /// not more than one day after the reference (New-Year rollover).
    Reference(Timestamp),
}

/// Everything a decoder needs beyond the bytes, fixed at reception so decoding is repeatable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeHints {
    pub year: YearRule,
    /// Zone for zone-less timestamps: an IANA name (`Europe/Zurich`) or a fixed offset
    /// (`+02:00`). `None` means UTC.
    pub tz: Option<String>,
}

impl Default for DecodeHints {
    fn default() -> Self {
        DecodeHints {
            year: YearRule::FromReceived,
            tz: None,
        }
    }
}

/// A record as received: collector facts and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEnvelope {
    pub received: Received,
    pub observer: Observer,
    pub format: Format,
    pub hints: DecodeHints,
    pub origin: Origin,
    pub raw: Vec<u8>,
}

/// Progress of a file import, written in the same durable batch as the records it covers.
/// The imports view uses these to skip bytes already stored when the same content is
/// ingested again (see docs/FORMAT.md "Import marks").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMark {
    pub received: Received,
    /// The path as given to `ingest` (canonicalised when it is a real file).
    pub path: String,
    /// Length in bytes of the (decompressed) content prefix stored so far.
    pub bytes: u64,
    /// Lines stored so far.
    pub lines: u64,
    /// BLAKE3 of that prefix.
    pub prefix_hash: [u8; 32],
    /// True on the last mark of a completed import.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    Record(RecordEnvelope),
    ImportMark(ImportMark),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope truncated at byte {0}")]
    Truncated(usize),
    #[error("envelope version {0} is newer than this pugmark understands")]
    Version(u8),
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    #[error("invalid {what} in envelope at byte {offset}")]
    Invalid { what: &'static str, offset: usize },
    #[error("envelope is one part of a split record (part {part} of {parts})")]
    Part { part: u32, parts: u32 },
    #[error("the collector facts of a record take {len} bytes, over the {max}-byte record limit")]
    TooLarge { len: usize, max: usize },
}

/// What one ledger payload holds: a whole envelope, or one part of a record too large for one
/// ledger record (envelope version 2). The parts of a split record are consecutive ledger
/// records of one batch: the head (part 0, with every collector fact and the first bytes of
/// the raw record), then continuations 1..parts-1 carrying the rest of the raw bytes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Whole(Envelope),
    Head { record: RecordEnvelope, parts: u32 },
    Continuation { part: u32, parts: u32, raw: Vec<u8> },
}

/// Turns ledger payloads read in order back into whole envelopes: a split record comes out
/// once, when its last part has been read, with the position of its first part (the one
/// search hits and views cite) and of its last.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    first: u64,
    last: u64,
    record: RecordEnvelope,
    parts: u32,
}

/// One envelope put back together by a [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// Ledger position of the envelope (of its first part).
    pub first: u64,
    /// Ledger position of its last part (`first` unless split).
    pub last: u64,
    pub envelope: Envelope,
    /// False when parts were missing (a damaged ledger; `verify` reports it): the envelope
    /// holds the bytes that were found.
    pub complete: bool,
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// True while a split record has been started and not finished.
    pub fn in_split(&self) -> bool {
        self.pending.is_some()
    }

    /// Position of the first part of the split record being read, if any.
    pub fn pending_first(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.first)
    }

    /// Feed the payload at `seq` (positions in increasing order). Whatever became whole is
    /// passed to `emit`: nothing while a split record is incomplete, its pieces as one envelope
    /// once complete. A part out of place (a damaged ledger) ends the split record before it
    /// as incomplete; a continuation without its head comes out as a raw record of the least
    /// trusted observer, so its bytes stay findable.
    pub fn push(&mut self, seq: u64, stored: Stored, emit: &mut dyn FnMut(Assembled)) {
        match stored {
            Stored::Continuation { part, parts, raw } => {
                if let Some(p) = &mut self.pending
                    && p.parts == parts
                    && p.last + 1 == seq
                    && part == (p.last - p.first) as u32 + 1
                {
                    p.record.raw.extend_from_slice(&raw);
                    p.last = seq;
                    if part + 1 == parts
                        && let Some(p) = self.pending.take()
                    {
                        emit(Assembled {
                            first: p.first,
                            last: p.last,
                            envelope: Envelope::Record(p.record),
                            complete: true,
                        });
                    }
                    return;
                }
                self.flush(emit);
                emit(Assembled {
                    first: seq,
                    last: seq,
                    envelope: Envelope::Record(RecordEnvelope {
                        received: Received::from_stored(0),
                        observer: Observer::Vm,
                        format: Format::Raw,
                        hints: DecodeHints::default(),
                        origin: Origin::File {
                            path: "<continuation without its first part>".into(),
                            line: 0,
                        },
                        raw,
                    }),
                    complete: false,
                });
            }
            Stored::Head { record, parts } => {
                self.flush(emit);
                self.pending = Some(Pending {
                    first: seq,
                    last: seq,
                    record,
                    parts,
                });
            }
            Stored::Whole(envelope) => {
                self.flush(emit);
                emit(Assembled {
                    first: seq,
                    last: seq,
                    envelope,
                    complete: true,
                });
            }
        }
    }

    /// End an incomplete split record: it comes out with the parts found.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Assembled)) {
        if let Some(p) = self.pending.take() {
            emit(Assembled {
                first: p.first,
                last: p.last,
                envelope: Envelope::Record(p.record),
                complete: false,
            });
        }
    }
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(ENVELOPE_VERSION);
        match self {
            Envelope::Record(r) => {
                out.push(KIND_RECORD);
                put_record_fields(out, r);
                put_bytes(out, &r.raw);
            }
            Envelope::ImportMark(m) => {
                out.push(KIND_IMPORT_MARK);
                put_i64(out, received_nanos(m.received));
                put_str(out, &m.path);
                out.extend_from_slice(&m.bytes.to_le_bytes());
                out.extend_from_slice(&m.lines.to_le_bytes());
                out.extend_from_slice(&m.prefix_hash);
                out.push(u8::from(m.complete));
            }
        }
    }

    /// Encode for a store whose records hold at most `max` bytes: one payload when the
    /// envelope fits, else a split record (a [`Stored::Head`] and as many
    /// [`Stored::Continuation`]s as the raw bytes need, every payload at most `max` bytes).
    /// Appends the payloads to `out` and the end offset of each in `out` to `ends`; returns
    /// how many payloads it wrote. Fails only when the collector facts alone (origin path,
    /// zone…) leave no room for raw bytes.
    pub fn encode_parts_into(
        &self,
        max: usize,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> Result<u32, EnvelopeError> {
        let start = out.len();
        self.encode_into(out);
        let r = match self {
            Envelope::Record(r) if out.len() - start > max => r,
            _ => {
                ends.push(out.len());
                return Ok(1);
            }
        };
        out.truncate(start);
        // The head: version, kind, part count, the record's facts, then as many raw bytes as fit.
        let mut head = vec![ENVELOPE_VERSION, KIND_RECORD_HEAD, 0, 0, 0, 0];
        put_record_fields(&mut head, r);
        let head_room = max.checked_sub(head.len() + 4).filter(|&n| n > 0);
        let cont_room = max.saturating_sub(CONTINUATION_OVERHEAD);
        let (Some(head_room), true) = (head_room, cont_room > 0) else {
            return Err(EnvelopeError::TooLarge {
                len: head.len() + 4,
                max,
            });
        };
        let raw = &r.raw;
        let first = head_room.min(raw.len());
        let rest = raw.len() - first;
        let parts = 1 + rest.div_ceil(cont_room);
        let parts32 = u32::try_from(parts).map_err(|_| EnvelopeError::TooLarge {
            len: raw.len(),
            max,
        })?;
        head[2..6].copy_from_slice(&parts32.to_le_bytes());
        out.extend_from_slice(&head);
        put_bytes(out, &raw[..first]);
        ends.push(out.len());
        for (i, chunk) in raw[first..].chunks(cont_room).enumerate() {
            out.push(ENVELOPE_VERSION);
            out.push(KIND_CONTINUATION);
            out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
            out.extend_from_slice(&parts32.to_le_bytes());
            put_bytes(out, chunk);
            ends.push(out.len());
        }
        Ok(parts32)
    }

    /// How many payloads [`Envelope::encode_parts_into`] writes for this envelope: the ledger
    /// positions it takes (a batch's later positions are known before it is appended).
    pub fn stored_parts(&self, max: usize) -> u64 {
        let mut out = Vec::new();
        match self {
            // Only the facts are encoded to measure; the raw bytes' length is known.
            Envelope::Record(r) => {
                put_record_fields(&mut out, r);
                if 2 + out.len() + 4 + r.raw.len() <= max {
                    return 1;
                }
                let head_room = max.saturating_sub(6 + out.len() + 4);
                let cont_room = max.saturating_sub(CONTINUATION_OVERHEAD);
                if head_room == 0 || cont_room == 0 {
                    return 1;
                }
                1 + r.raw.len().saturating_sub(head_room).div_ceil(cont_room) as u64
            }
            Envelope::ImportMark(_) => 1,
        }
    }

    /// Decode a whole envelope. One part of a split record is refused with
    /// [`EnvelopeError::Part`]: read those with [`Envelope::decode_stored`] and a
    /// [`Reassembler`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        match Envelope::decode_stored(bytes)? {
            Stored::Whole(e) => Ok(e),
            Stored::Head { parts, .. } => Err(EnvelopeError::Part { part: 0, parts }),
            Stored::Continuation { part, parts, .. } => Err(EnvelopeError::Part { part, parts }),
        }
    }

    /// Decode one ledger payload: a whole envelope (versions 1 and 2) or one part of a split
    /// record (version 2).
    pub fn decode_stored(bytes: &[u8]) -> Result<Stored, EnvelopeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version == 0 || version > ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let kind = r.u8()?;
        match kind {
            KIND_RECORD => {
                let mut record = read_record_fields(&mut r)?;
                record.raw = r.bytes()?.to_vec();
                Ok(Stored::Whole(Envelope::Record(record)))
            }
            KIND_RECORD_HEAD if version >= 2 => {
                let at = r.pos;
                let parts = u32::from_le_bytes(r.array()?);
                if parts < 2 {
                    return Err(EnvelopeError::Invalid {
                        what: "part count",
                        offset: at,
                    });
                }
                let mut record = read_record_fields(&mut r)?;
                record.raw = r.bytes()?.to_vec();
                Ok(Stored::Head { record, parts })
            }
            KIND_CONTINUATION if version >= 2 => {
                let at = r.pos;
                let part = u32::from_le_bytes(r.array()?);
                let parts = u32::from_le_bytes(r.array()?);
                if part == 0 || part >= parts {
                    return Err(EnvelopeError::Invalid {
                        what: "part number",
                        offset: at,
                    });
                }
                let raw = r.bytes()?.to_vec();
                Ok(Stored::Continuation { part, parts, raw })
            }
            KIND_IMPORT_MARK => {
                let received = Received::from_stored(i128::from(r.i64()?));
                let path = r.string()?;
                let bytes = u64::from_le_bytes(r.array()?);
                let lines = u64::from_le_bytes(r.array()?);
                let prefix_hash = r.array()?;
                let complete = r.u8()? != 0;
                Ok(Stored::Whole(Envelope::ImportMark(ImportMark {
                    received,
                    path,
                    bytes,
                    lines,
                    prefix_hash,
                    complete,
                })))
            }
            k => Err(EnvelopeError::Kind(k)),
        }
    }
}

/// Every field of a record but its raw bytes (kinds 1 and 3).
fn put_record_fields(out: &mut Vec<u8>, r: &RecordEnvelope) {
    put_i64(out, received_nanos(r.received));
    out.push(r.observer.code());
    out.push(r.format.code());
    match r.hints.year {
        YearRule::FromReceived => out.push(0),
        YearRule::Fixed(y) => {
            out.push(1);
            out.extend_from_slice(&y.to_le_bytes());
        }
        YearRule::Reference(ts) => {
            out.push(2);
            put_i64(out, ts.as_second());
        }
    }
    put_str(out, r.hints.tz.as_deref().unwrap_or(""));
    match &r.origin {
        Origin::File { path, line } => {
            out.push(1);
            put_str(out, path);
            out.extend_from_slice(&line.to_le_bytes());
        }
        Origin::Peer { addr, listener } => {
            out.push(2);
            put_str(out, addr);
            put_str(out, listener);
        }
        Origin::AuthenticatedPeer {
            addr,
            listener,
            identity,
        } => {
            out.push(3);
            put_str(out, addr);
            put_str(out, listener);
            put_str(out, identity);
        }
        Origin::FileFromSender { path, line, sender } => {
            out.push(4);
            put_str(out, path);
            out.extend_from_slice(&line.to_le_bytes());
            put_str(out, sender);
        }
    }
}

/// Every field of a record but its raw bytes (kinds 1 and 3); `raw` is left empty.
fn read_record_fields(r: &mut Reader<'_>) -> Result<RecordEnvelope, EnvelopeError> {
    let received = Received::from_stored(i128::from(r.i64()?));
    let at = r.pos;
    let observer = Observer::from_code(r.u8()?).ok_or(EnvelopeError::Invalid {
        what: "observer",
        offset: at,
    })?;
    let format = Format::from_code(r.u8()?);
    let at = r.pos;
    let year = match r.u8()? {
        0 => YearRule::FromReceived,
        1 => YearRule::Fixed(i16::from_le_bytes(r.array()?)),
        2 => {
            let at = r.pos;
            let secs = r.i64()?;
            YearRule::Reference(Timestamp::from_second(secs).map_err(|_| {
                EnvelopeError::Invalid {
                    what: "year reference",
                    offset: at,
                }
            })?)
        }
        _ => {
            return Err(EnvelopeError::Invalid {
                what: "year rule",
                offset: at,
            });
        }
    };
    let tz = r.string()?;
    let tz = if tz.is_empty() { None } else { Some(tz) };
    let at = r.pos;
    let origin = match r.u8()? {
        1 => {
            let path = r.string()?;
            let line = u64::from_le_bytes(r.array()?);
            Origin::File { path, line }
        }
        2 => {
            let addr = r.string()?;
            let listener = r.string()?;
            Origin::Peer { addr, listener }
        }
        3 => {
            let addr = r.string()?;
            let listener = r.string()?;
            let identity = r.string()?;
            Origin::AuthenticatedPeer {
                addr,
                listener,
                identity,
            }
        }
        4 => {
            let path = r.string()?;
            let line = u64::from_le_bytes(r.array()?);
            let sender = r.string()?;
            Origin::FileFromSender { path, line, sender }
        }
        _ => {
            return Err(EnvelopeError::Invalid {
                what: "origin",
                offset: at,
            });
        }
    };
    Ok(RecordEnvelope {
        received,
        observer,
        format,
        hints: DecodeHints { year, tz },
        origin,
        raw: Vec::new(),
    })
}

fn received_nanos(r: Received) -> i64 {
    i64::try_from(r.as_unix_nanos()).unwrap_or(i64::MAX)
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Records are capped far below 4 GiB by every source; saturate rather than panic.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&b[..len as usize]);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(EnvelopeError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn i64(&mut self) -> Result<i64, EnvelopeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], EnvelopeError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, EnvelopeError> {
        let at = self.pos;
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::Invalid {
            what: "string",
            offset: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(raw: Vec<u8>, line: u64, year: YearRule, tz: Option<String>) -> Envelope {
        Envelope::Record(RecordEnvelope {
            received: Received::from_stored(1_700_000_000_123_456_789),
            observer: Observer::Vm,
            format: Format::Syslog,
            hints: DecodeHints { year, tz },
            origin: Origin::File {
                path: "/var/log/auth.log".into(),
                line,
            },
            raw,
        })
    }

    #[test]
    fn import_mark_round_trips() {
        let m = Envelope::ImportMark(ImportMark {
            received: Received::from_stored(5),
            path: "x.log".into(),
            bytes: 10,
            lines: 2,
            prefix_hash: [7; 32],
            complete: true,
        });
        assert_eq!(Envelope::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn peer_origins_round_trip() {
        for origin in [
            Origin::Peer {
                addr: "192.0.2.7:5140".into(),
                listener: "syslog-tcp".into(),
            },
            Origin::AuthenticatedPeer {
                addr: "192.0.2.7:5141".into(),
                listener: "syslog-tls".into(),
                identity: "CN=client.test".into(),
            },
            Origin::FileFromSender {
                path: "/var/log/remote/2001:db8::7/2026-12-06.log".into(),
                line: 42,
                sender: "2001:db8::7".into(),
            },
        ] {
            let e = Envelope::Record(RecordEnvelope {
                received: Received::from_stored(1),
                observer: Observer::Vm,
                format: Format::Syslog,
                hints: DecodeHints::default(),
                origin,
                raw: b"<13>1 - - - - - - x".to_vec(),
            });
            assert_eq!(Envelope::decode(&e.encode()), Ok(e));
        }
    }

    #[test]
    fn newer_version_is_refused_not_misread() {
        let mut b = record(b"x".to_vec(), 1, YearRule::FromReceived, None).encode();
        b[0] = 9;
        assert_eq!(Envelope::decode(&b), Err(EnvelopeError::Version(9)));
    }

    /// Every payload of `env` split for records of at most `max` bytes, read back in order.
    fn split_and_join(env: &Envelope, max: usize) -> (Vec<Vec<u8>>, Vec<Assembled>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let n = env.encode_parts_into(max, &mut out, &mut ends).unwrap();
        assert_eq!(n as usize, ends.len());
        assert_eq!(u64::from(n), env.stored_parts(max));
        let mut payloads = Vec::new();
        let mut start = 0;
        for end in ends {
            payloads.push(out[start..end].to_vec());
            start = end;
        }
        let mut re = Reassembler::new();
        let mut got = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            re.push(
                10 + i as u64,
                Envelope::decode_stored(p).unwrap(),
                &mut |a| got.push(a),
            );
        }
        assert!(!re.in_split());
        (payloads, got)
    }

    #[test]
    fn version_1_records_still_read_byte_for_byte() {
        // A version-1 record as pugmark wrote it before split records existed.
        let e = record(
            b"hello".to_vec(),
            3,
            YearRule::Fixed(2024),
            Some("UTC".into()),
        );
        let mut v1 = e.encode();
        assert_eq!(v1[0], 2);
        v1[0] = 1;
        assert_eq!(Envelope::decode(&v1), Ok(e));
        // Kinds 3 and 4 do not exist in version 1.
        v1[1] = KIND_RECORD_HEAD;
        assert_eq!(Envelope::decode(&v1), Err(EnvelopeError::Kind(3)));
    }

    #[test]
    fn an_over_long_record_is_split_and_put_back_together() {
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let e = record(raw, 7, YearRule::FromReceived, None);
        let (payloads, got) = split_and_join(&e, 1000);
        assert!(payloads.len() > 10);
        assert!(payloads.iter().all(|p| p.len() <= 1000));
        assert_eq!(
            Envelope::decode(&payloads[1]),
            Err(EnvelopeError::Part {
                part: 1,
                parts: payloads.len() as u32
            })
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].first, 10);
        assert_eq!(got[0].last, 10 + payloads.len() as u64 - 1);
        assert!(got[0].complete);
        assert_eq!(got[0].envelope, e);
    }

    #[test]
    fn a_damaged_split_comes_out_incomplete_not_lost() {
        let e = record(vec![b'x'; 5000], 7, YearRule::FromReceived, None);
        let mut out = Vec::new();
        let mut ends = Vec::new();
        e.encode_parts_into(1000, &mut out, &mut ends).unwrap();
        let mut payloads = Vec::new();
        let mut start = 0;
        for end in ends {
            payloads.push(out[start..end].to_vec());
            start = end;
        }
        let whole = record(b"next".to_vec(), 8, YearRule::FromReceived, None).encode();
        let mut re = Reassembler::new();
        let mut got = Vec::new();
        // Head, part 1, then (part 2 missing) part 3, then a whole record.
        for (seq, p) in [
            (1, &payloads[0]),
            (2, &payloads[1]),
            (4, &payloads[3]),
            (5, &whole),
        ] {
            re.push(seq, Envelope::decode_stored(p).unwrap(), &mut |a| {
                got.push(a)
            });
        }
        assert_eq!(got.len(), 3);
        assert!(!got[0].complete);
        assert_eq!((got[0].first, got[0].last), (1, 2));
        assert!(!got[1].complete, "orphan continuation kept as raw");
        assert_eq!(got[1].first, 4);
        assert!(got[2].complete);
    }

    #[test]
    fn facts_too_large_for_any_record_are_an_error() {
        let mut e = record(vec![b'x'; 10], 1, YearRule::FromReceived, None);
        if let Envelope::Record(r) = &mut e {
            r.origin = Origin::File {
                path: "p".repeat(2000),
                line: 1,
            };
            r.raw = vec![b'x'; 5000];
        }
        let mut out = Vec::new();
        let mut ends = Vec::new();
        assert!(matches!(
            e.encode_parts_into(1000, &mut out, &mut ends),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn split_records_reassemble(raw in proptest::collection::vec(any::<u8>(), 0..5000),
                                    max in 120usize..2000,
                                    tz in proptest::option::of("[A-Za-z/_+:0-9]{1,20}")) {
            let e = record(raw.clone(), 42, YearRule::FromReceived, tz);
            let (payloads, got) = split_and_join(&e, max);
            prop_assert!(payloads.iter().all(|p| p.len() <= max));
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0].first, 10);
            prop_assert_eq!(got[0].last, 10 + payloads.len() as u64 - 1);
            prop_assert_eq!(&got[0].envelope, &e);
            if payloads.len() == 1 {
                prop_assert_eq!(&payloads[0], &e.encode());
            }
        }

        #[test]
        fn record_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..300),
                              line in any::<u64>(), y in any::<i16>(), secs in -1_000_000_000i64..4_000_000_000,
                              tz in proptest::option::of("[A-Za-z/_+:0-9]{1,20}")) {
            for year in [YearRule::FromReceived, YearRule::Fixed(y), YearRule::Reference(Timestamp::from_second(secs).unwrap())] {
                let e = record(raw.clone(), line, year, tz.clone());
                prop_assert_eq!(Envelope::decode(&e.encode()), Ok(e));
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
