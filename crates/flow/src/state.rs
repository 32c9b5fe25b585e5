//! The decoder's state as bytes: what it learnt (templates, options templates, sampling
//! rates, system init times) and the data sets waiting for their templates, per exporter.
//! docs/design/flow-derivation.md §2.2: a flow store that derives flows from the stored
//! datagrams saves this with each commit, so a restart or a crash catch-up decodes the
//! datagrams after its position exactly as one uninterrupted run would have.
//!
//! Hand-written, versioned, little-endian (like `model::flow::FlowRecord`): the bytes are
//! ours, small, and must be read back by later builds; a serde format would tie them to a
//! crate's representation choices. The output is deterministic (exporters, templates and
//! samplers in key order; waiting sets in arrival order), so equal states are equal bytes.
//! The counters (`Stats`) are not state: they belong to a run.
//!
//! Layout (version 1):
//! ```text
//! "PMFD" 1u8  exporters:u32  { key  init  samplers:u32 {id:u64 rate:u32}
//!                              templates:u32 {id:u16 scope:u32 options:u8 fields:u32 {id:u16 len:u16 enterprise:u32}}
//!                              pending:u32 {template:u16 flowset:u16 ctx len:u32 bytes} }
//! key  = ip version:u16 domain:u32          ip   = 4 a.b.c.d | 6 16 bytes
//! init = 0 | 1 i64                          ctx  = version:u16 ip port:u16 domain:u32 seq:u64
//!                                                  (0 | 1 uptime:u32) export_ms:i64 received_ms:i64
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use model::flow::put_ip;

use crate::template::{ExporterState, FieldSpec, Pending, Template};
use crate::{Context, ExporterKey, FlowDecoder, Limits};

const MAGIC: &[u8; 4] = b"PMFD";
const VERSION: u8 = 1;

/// Why saved decoder state was refused. A refused state is never half-applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not decoder state, cut short, or with bytes left over.
    Malformed(&'static str),
    /// Written by a newer build.
    Version(u8),
    /// More exporters, templates, fields or waiting bytes than the limits allow.
    Limits(&'static str),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Malformed(what) => write!(f, "decoder state malformed: {what}"),
            StateError::Version(v) => {
                write!(
                    f,
                    "decoder state version {v} is newer than this build reads"
                )
            }
            StateError::Limits(what) => write!(f, "decoder state over the limits: {what}"),
        }
    }
}

impl std::error::Error for StateError {}

impl FlowDecoder {
    /// What the decoder has learnt and holds, as bytes ([`FlowDecoder::restore`] reads them).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let mut keys: Vec<&ExporterKey> = self.exporters.keys().collect();
        keys.sort_by_key(|k| (k.ip, k.version, k.domain));
        put_len(&mut out, keys.len());
        for key in keys {
            let Some(st) = self.exporters.get(key) else {
                continue;
            };
            put_ip(&mut out, key.ip);
            out.extend_from_slice(&key.version.to_le_bytes());
            out.extend_from_slice(&key.domain.to_le_bytes());
            match st.system_init_ms {
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.to_le_bytes());
                }
                None => out.push(0),
            }
            let mut samplers: Vec<(&u64, &u32)> = st.samplers.iter().collect();
            samplers.sort();
            put_len(&mut out, samplers.len());
            for (id, rate) in samplers {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&rate.to_le_bytes());
            }
            let mut ids: Vec<&u16> = st.templates.keys().collect();
            ids.sort();
            put_len(&mut out, ids.len());
            for id in ids {
                let Some(t) = st.templates.get(id) else {
                    continue;
                };
                out.extend_from_slice(&id.to_le_bytes());
                put_len(&mut out, t.scope);
                out.push(u8::from(t.options));
                put_len(&mut out, t.fields.len());
                for f in &t.fields {
                    out.extend_from_slice(&f.id.to_le_bytes());
                    out.extend_from_slice(&f.len.to_le_bytes());
                    out.extend_from_slice(&f.enterprise.to_le_bytes());
                }
            }
            put_len(&mut out, st.pending.len());
            for p in &st.pending {
                out.extend_from_slice(&p.template_id.to_le_bytes());
                out.extend_from_slice(&p.flowset.to_le_bytes());
                put_ctx(&mut out, &p.ctx);
                put_len(&mut out, p.data.len());
                out.extend_from_slice(&p.data);
            }
        }
        out
    }

    /// A decoder in the state `bytes` describe ([`FlowDecoder::snapshot`]), under `limits`,
    /// with fresh counters. Never panics: anything that is not such state, or state beyond
    /// the limits, is refused whole.
    pub fn restore(bytes: &[u8], limits: Limits) -> Result<FlowDecoder, StateError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(StateError::Malformed("not decoder state"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let mut dec = FlowDecoder::new(limits);
        let n_exporters = r.len()?;
        if n_exporters > dec.limits.max_exporters {
            return Err(StateError::Limits("exporters"));
        }
        // Keys in strictly increasing order, as `snapshot` writes them: the bytes of an
        // accepted state are the one encoding of it (no repeats, nothing to reorder).
        let mut last_key = None;
        for _ in 0..n_exporters {
            let ip = r.ip()?;
            let key = ExporterKey {
                ip,
                version: r.u16()?,
                domain: r.u32()?,
            };
            let order = (key.ip, key.version, key.domain);
            if last_key.is_some_and(|l| l >= order) {
                return Err(StateError::Malformed("exporters out of order"));
            }
            last_key = Some(order);
            let mut st = ExporterState {
                system_init_ms: match r.u8()? {
                    0 => None,
                    1 => Some(r.i64()?),
                    _ => return Err(StateError::Malformed("system init tag")),
                },
                ..ExporterState::default()
            };
            let mut last_id = None;
            for _ in 0..r.len()? {
                let id = r.u64()?;
                let rate = r.u32()?;
                if last_id.is_some_and(|l| l >= id) {
                    return Err(StateError::Malformed("samplers out of order"));
                }
                last_id = Some(id);
                st.samplers.insert(id, rate);
            }
            let n_templates = r.len()?;
            if n_templates > dec.limits.max_templates_per_exporter {
                return Err(StateError::Limits("templates per exporter"));
            }
            let mut last_id = None;
            for _ in 0..n_templates {
                let id = r.u16()?;
                if last_id.is_some_and(|l| l >= id) {
                    return Err(StateError::Malformed("templates out of order"));
                }
                last_id = Some(id);
                let scope = r.len()?;
                let options = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(StateError::Malformed("options flag")),
                };
                let n_fields = r.len()?;
                if n_fields > dec.limits.max_template_fields {
                    return Err(StateError::Limits("template fields"));
                }
                // What the wire parser accepts: at least one field, the scope among them.
                if n_fields == 0 || scope > n_fields {
                    return Err(StateError::Malformed("template shape"));
                }
                let mut fields = Vec::with_capacity(n_fields);
                for _ in 0..n_fields {
                    fields.push(FieldSpec {
                        id: r.u16()?,
                        len: r.u16()?,
                        enterprise: r.u32()?,
                    });
                }
                st.templates
                    .insert(id, Template::new(fields, scope, options));
            }
            let n_pending = r.len()?;
            if n_pending > dec.limits.max_pending_per_exporter {
                return Err(StateError::Limits("waiting sets per exporter"));
            }
            let mut pending = VecDeque::with_capacity(n_pending);
            for _ in 0..n_pending {
                let template_id = r.u16()?;
                let flowset = r.u16()?;
                let ctx = r.ctx()?;
                let n = r.len()?;
                let data = r.take(n)?.to_vec();
                dec.pending_bytes += data.len();
                if dec.pending_bytes > dec.limits.max_pending_bytes {
                    return Err(StateError::Limits("waiting bytes"));
                }
                pending.push_back(Pending {
                    template_id,
                    flowset,
                    data,
                    ctx,
                });
            }
            st.pending = pending;
            dec.exporters.insert(key, st);
        }
        if r.at != bytes.len() {
            return Err(StateError::Malformed("bytes after the state"));
        }
        Ok(dec)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Every count and length the decoder holds is far below 2^32 (its limits and a UDP
    // datagram's size); saturate rather than wrap should that ever change.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_ctx(out: &mut Vec<u8>, c: &Context) {
    out.extend_from_slice(&c.version.to_le_bytes());
    put_ip(out, c.exporter.ip());
    out.extend_from_slice(&c.exporter.port().to_le_bytes());
    out.extend_from_slice(&c.domain.to_le_bytes());
    out.extend_from_slice(&c.datagram_seq.to_le_bytes());
    match c.uptime_ms {
        Some(u) => {
            out.push(1);
            out.extend_from_slice(&u.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&c.export_ms.to_le_bytes());
    out.extend_from_slice(&c.received_ms.to_le_bytes());
}

/// Bounds-checked reads over the saved bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(StateError::Malformed("cut short"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, StateError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, StateError> {
        self.array().map(i64::from_le_bytes)
    }

    /// A count or length: a `u32`, never more than the bytes left could hold (each counted
    /// item takes at least one byte), so a forged count cannot make us reserve gigabytes.
    fn len(&mut self) -> Result<usize, StateError> {
        let n = usize::try_from(self.u32()?).map_err(|_| StateError::Malformed("length"))?;
        if n > self.b.len() - self.at {
            return Err(StateError::Malformed("count beyond the bytes"));
        }
        Ok(n)
    }

    fn ip(&mut self) -> Result<IpAddr, StateError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => Err(StateError::Malformed("address tag")),
        }
    }

    fn ctx(&mut self) -> Result<Context, StateError> {
        let version = self.u16()?;
        let ip = self.ip()?;
        let port = self.u16()?;
        Ok(Context {
            version,
            exporter: SocketAddr::new(ip, port),
            domain: self.u32()?,
            datagram_seq: self.u64()?,
            uptime_ms: match self.u8()? {
                0 => None,
                1 => Some(self.u32()?),
                _ => return Err(StateError::Malformed("uptime tag")),
            },
            export_ms: self.i64()?,
            received_ms: self.i64()?,
        })
    }
}
