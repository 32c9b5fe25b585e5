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

/// Envelope format version written by this build.
pub const ENVELOPE_VERSION: u8 = 1;

const KIND_RECORD: u8 = 1;
const KIND_IMPORT_MARK: u8 = 2;

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
            Format::Unknown(_) => "unknown",
        }
    }

    /// Every format this build writes, for `--format` and detection.
    pub const KNOWN: [Format; 10] = [
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
    ];

    /// Who observes records of this format when nobody says otherwise: the cloud for
    /// OpenStack sources, the VO for HTCondor, the VM for syslog (the forgeable default).
    pub fn default_observer(self) -> crate::Observer {
        match self {
            Format::OpenstackNotification | Format::OsloLog | Format::KeystoneDirectory => {
                crate::Observer::Cloud
            }
            Format::CondorHistoryJson | Format::CondorClassAd | Format::CondorUserlog => {
                crate::Observer::Vo
            }
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
                }
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

    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(version));
        }
        match r.u8()? {
            KIND_RECORD => {
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
                    _ => {
                        return Err(EnvelopeError::Invalid {
                            what: "origin",
                            offset: at,
                        });
                    }
                };
                let raw = r.bytes()?.to_vec();
                Ok(Envelope::Record(RecordEnvelope {
                    received,
                    observer,
                    format,
                    hints: DecodeHints { year, tz },
                    origin,
                    raw,
                }))
            }
            KIND_IMPORT_MARK => {
                let received = Received::from_stored(i128::from(r.i64()?));
                let path = r.string()?;
                let bytes = u64::from_le_bytes(r.array()?);
                let lines = u64::from_le_bytes(r.array()?);
                let prefix_hash = r.array()?;
                let complete = r.u8()? != 0;
                Ok(Envelope::ImportMark(ImportMark {
                    received,
                    path,
                    bytes,
                    lines,
                    prefix_hash,
                    complete,
                }))
            }
            k => Err(EnvelopeError::Kind(k)),
        }
    }
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

    proptest! {
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
