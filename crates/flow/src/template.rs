//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): templates, options templates and data sets.
//!
//! One walker for both: they differ in the header (v9: count, sysUpTime, Unix seconds,
//! sequence, source id; IPFIX: length, export time, sequence, observation domain), in the set
//! ids of templates (0/1 versus 2/3), in the options template layout (scope and option
//! lengths in bytes versus a field count and a scope field count), and in IPFIX's enterprise
//! bit and variable-length fields (accepted in v9 too: H3C NetStream sends them).
//!
//! Robustness: a set whose length runs past the datagram is cut at the datagram's end and
//! counted; a set length below 4 ends the walk (zero padding after the last set, as Palo Alto
//! and Cisco ACI send, is not a problem; other bytes are); a template that lies about its
//! length reads nothing beyond its set; zero-length templates decode no records.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use model::flow::FlowRecord;

use crate::v5::uptime_to_unix_ms;
use crate::{Context, ExporterKey, FlowDecoder, Stats};

/// IPFIX / v9 variable length marker.
const VARLEN: u16 = 0xffff;

#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldSpec {
    pub id: u16,
    pub len: u16,
    /// Enterprise number (IPFIX E bit); 0 for IANA fields.
    pub enterprise: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub fields: Vec<FieldSpec>,
    /// Scope fields at the front (options templates); 0 for data templates.
    pub scope: usize,
    pub options: bool,
    /// Smallest record length (variable-length fields count one byte).
    min_len: usize,
}

impl Template {
    /// A template of these fields (`scope` of them at the front), its smallest record length
    /// computed: the one constructor, for templates read off the wire and from a saved state.
    pub fn new(fields: Vec<FieldSpec>, scope: usize, options: bool) -> Template {
        let min_len: usize = fields
            .iter()
            .map(|f| {
                if f.len == VARLEN {
                    1
                } else {
                    usize::from(f.len)
                }
            })
            .sum();
        Template {
            fields,
            scope,
            options,
            min_len,
        }
    }

    pub fn min_len(&self) -> usize {
        self.min_len
    }
}

#[derive(Debug, Default)]
pub(crate) struct ExporterState {
    pub templates: HashMap<u16, Template>,
    /// Sampling rate per sampler / selector id (0: exporter-wide), from options data.
    pub samplers: HashMap<u64, u32>,
    /// systemInitTimeMilliseconds from options data (IPFIX uptime-relative times).
    pub system_init_ms: Option<i64>,
    pub pending: VecDeque<Pending>,
}

/// A data set that arrived before its template.
#[derive(Debug)]
pub(crate) struct Pending {
    pub template_id: u16,
    pub flowset: u16,
    pub data: Vec<u8>,
    pub ctx: Context,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// An unsigned integer of any reduced-size encoding (RFC 7011 §6.2); longer values keep their
/// low 64 bits.
fn uint(b: &[u8]) -> u64 {
    let tail = &b[b.len().saturating_sub(8)..];
    tail.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

pub(crate) fn decode(
    dec: &mut FlowDecoder,
    exporter: SocketAddr,
    datagram_seq: u64,
    d: &[u8],
    received_ms: i64,
    out: &mut Vec<FlowRecord>,
) {
    let version = be16(d, 0).unwrap_or(0);
    let (header_len, ctx, end) = if version == 9 {
        if d.len() < 20 {
            dec.stats.problem("truncated_header");
            return;
        }
        let uptime = be32(d, 4).unwrap_or(0);
        let secs = be32(d, 8).unwrap_or(0);
        let domain = be32(d, 16).unwrap_or(0);
        let ctx = Context {
            version,
            exporter,
            domain,
            datagram_seq,
            uptime_ms: Some(uptime),
            export_ms: i64::from(secs) * 1000,
            received_ms,
        };
        (20, ctx, d.len())
    } else {
        if d.len() < 16 {
            dec.stats.problem("truncated_header");
            return;
        }
        let length = usize::from(be16(d, 2).unwrap_or(0));
        let secs = be32(d, 4).unwrap_or(0);
        let domain = be32(d, 12).unwrap_or(0);
        let end = if length > d.len() {
            dec.stats.problem("ipfix_length_beyond_datagram");
            d.len()
        } else if length < 16 {
            dec.stats.problem("ipfix_length_below_header");
            d.len()
        } else {
            length
        };
        let ctx = Context {
            version,
            exporter,
            domain,
            datagram_seq,
            uptime_ms: None,
            export_ms: i64::from(secs) * 1000,
            received_ms,
        };
        (16, ctx, end)
    };
    let key = ExporterKey {
        ip: exporter.ip(),
        version,
        domain: ctx.domain,
    };
    let (tpl_id, opt_id) = if version == 9 { (0, 1) } else { (2, 3) };
    let mut pos = header_len;
    let mut flowset: u16 = 0;
    let mut learnt = false;
    while pos + 4 <= end {
        let id = be16(d, pos).unwrap_or(0);
        let len = usize::from(be16(d, pos + 2).unwrap_or(0));
        if len < 4 {
            if !d[pos..end].iter().all(|&b| b == 0) {
                dec.stats.problem("flowset_length");
            }
            break;
        }
        let set_end = if pos + len > end {
            dec.stats.problem("flowset_beyond_datagram");
            end
        } else {
            pos + len
        };
        let body = &d[pos + 4..set_end];
        if id == tpl_id || id == opt_id {
            learnt |= parse_templates(dec, key, version, id == opt_id, body);
        } else if id >= 256 {
            let st = dec.exporter_mut(key);
            match st.and_then(|s| s.templates.get(&id).cloned()) {
                Some(t) => {
                    if let Some(st) = dec.exporters.get_mut(&key) {
                        decode_set(st, &mut dec.stats, &t, id, flowset, body, &ctx, out);
                    }
                }
                None => {
                    if dec.exporters.contains_key(&key) {
                        dec.hold(
                            key,
                            Pending {
                                template_id: id,
                                flowset,
                                data: body.to_vec(),
                                ctx,
                            },
                        );
                    } else {
                        dec.stats.dropped_sets += 1;
                    }
                }
            }
        } else {
            dec.stats.problem("reserved_set_id");
        }
        flowset = flowset.saturating_add(1);
        pos = set_end;
    }
    if learnt {
        for p in dec.take_ready(key) {
            let Some(st) = dec.exporters.get_mut(&key) else {
                break;
            };
            let Some(t) = st.templates.get(&p.template_id).cloned() else {
                continue;
            };
            dec.stats.pending_decoded += 1;
            decode_set(
                st,
                &mut dec.stats,
                &t,
                p.template_id,
                p.flowset,
                &p.data,
                &p.ctx,
                out,
            );
        }
    }
}

/// Parse a template or options template set; true when at least one template was learnt.
fn parse_templates(
    dec: &mut FlowDecoder,
    key: ExporterKey,
    version: u16,
    options: bool,
    body: &[u8],
) -> bool {
    let max_fields = dec.limits.max_template_fields;
    let max_templates = dec.limits.max_templates_per_exporter;
    let mut learnt = false;
    let mut pos = 0usize;
    loop {
        let hdr = if options { 6 } else { 4 };
        if pos + hdr > body.len() {
            break;
        }
        let id = be16(body, pos).unwrap_or(0);
        if id < 256 {
            // Padding (zeros) or a bad id: nothing more to read in this set.
            if !body[pos..].iter().all(|&b| b == 0) {
                dec.stats.problem("template_id_reserved");
            }
            break;
        }
        let a = usize::from(be16(body, pos + 2).unwrap_or(0));
        let (n_fields, scope) = if options && version == 9 {
            let b = usize::from(be16(body, pos + 4).unwrap_or(0));
            if a % 4 != 0 || b % 4 != 0 {
                dec.stats.problem("options_template_length");
                break;
            }
            (a / 4 + b / 4, a / 4)
        } else if options {
            let s = usize::from(be16(body, pos + 4).unwrap_or(0));
            (a, s)
        } else {
            (a, 0)
        };
        pos += hdr;
        if n_fields == 0 {
            // IPFIX template withdrawal (RFC 7011 §8.1).
            if let Some(st) = dec.exporters.get_mut(&key) {
                st.templates.remove(&id);
            }
            continue;
        }
        if n_fields > max_fields || scope > n_fields {
            dec.stats.problem("template_too_many_fields");
            break;
        }
        let mut fields = Vec::with_capacity(n_fields);
        let mut ok = true;
        for _ in 0..n_fields {
            let (Some(fid), Some(flen)) = (be16(body, pos), be16(body, pos + 2)) else {
                ok = false;
                break;
            };
            pos += 4;
            let mut enterprise = 0;
            let mut fid = fid;
            if version == 10 && fid & 0x8000 != 0 {
                let Some(e) = be32(body, pos) else {
                    ok = false;
                    break;
                };
                enterprise = e;
                fid &= 0x7fff;
                pos += 4;
            }
            fields.push(FieldSpec {
                id: fid,
                len: flen,
                enterprise,
            });
        }
        if !ok {
            dec.stats.problem("template_truncated");
            break;
        }
        let template = Template::new(fields, scope, options);
        let min_len = template.min_len();
        let Some(st) = dec.exporter_mut(key) else {
            break;
        };
        if !st.templates.contains_key(&id) && st.templates.len() >= max_templates {
            dec.stats.problem("template_cap");
            continue;
        }
        st.templates.insert(id, template);
        if min_len == 0 {
            dec.stats.problem("zero_length_template");
        }
        if options {
            dec.stats.options_templates += 1;
        } else {
            dec.stats.templates += 1;
        }
        learnt = true;
    }
    learnt
}

/// What one data record says, before it becomes a [`FlowRecord`].
#[derive(Default)]
struct Values {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    icmp: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    proto: u8,
    tcp_flags: u8,
    tos: u8,
    bytes: Option<u64>,
    bytes_alt: Option<u64>,
    packets: Option<u64>,
    packets_alt: Option<u64>,
    in_if: u32,
    out_if: u32,
    first_up: Option<u32>,
    last_up: Option<u32>,
    start_abs: Option<i64>,
    end_abs: Option<i64>,
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    rate: Option<u32>,
    rate_space: Option<u32>,
    sampler: Option<u64>,
    system_init: Option<i64>,
    /// NAT information elements (225–228, 230, 281, 282).
    nat: model::flow::FlowNat,
}

/// NTP 64-bit timestamp (seconds since 1900, fraction) → Unix ms.
fn ntp_to_ms(v: u64) -> i64 {
    let secs = (v >> 32) as i64 - 2_208_988_800;
    let frac = ((v & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac as i64
}

fn take_ip(v: &[u8], stats: &mut Stats) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(v);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => {
            stats.problem("address_field_length");
            None
        }
    }
}

fn apply(f: &FieldSpec, v: &[u8], x: &mut Values, stats: &mut Stats) {
    if f.enterprise != 0 || v.is_empty() {
        return;
    }
    let n = || uint(v);
    match f.id {
        1 => x.bytes = Some(n()),
        85 | 231 => x.bytes_alt = x.bytes_alt.or(Some(n())),
        2 => x.packets = Some(n()),
        86 | 298 => x.packets_alt = x.packets_alt.or(Some(n())),
        4 => x.proto = n() as u8,
        5 => x.tos = n() as u8,
        6 => x.tcp_flags = n() as u8,
        7 => x.src_port = Some(n() as u16),
        11 => x.dst_port = Some(n() as u16),
        180 | 182 => x.src_port = x.src_port.or(Some(n() as u16)),
        181 | 183 => x.dst_port = x.dst_port.or(Some(n() as u16)),
        8 | 27 => x.src = take_ip(v, stats).or(x.src),
        12 | 28 => x.dst = take_ip(v, stats).or(x.dst),
        10 => x.in_if = n() as u32,
        14 => x.out_if = n() as u32,
        22 => x.first_up = Some(n() as u32),
        21 => x.last_up = Some(n() as u32),
        // Saturating: an exporter may send any 8-byte value (a panic in checked builds, a
        // wrapped time otherwise).
        150 => x.start_abs = Some((n() as i64).saturating_mul(1000)),
        151 => x.end_abs = Some((n() as i64).saturating_mul(1000)),
        152 => x.start_abs = Some(n() as i64),
        153 => x.end_abs = Some(n() as i64),
        154 | 156 => x.start_abs = Some(ntp_to_ms(n())),
        155 | 157 => x.end_abs = Some(ntp_to_ms(n())),
        158 => x.start_delta_us = Some(n()),
        159 => x.end_delta_us = Some(n()),
        32 | 139 => x.icmp = Some(n() as u16),
        176 | 178 => x.icmp_type = Some(n() as u8),
        177 | 179 => x.icmp_code = Some(n() as u8),
        34 | 50 => x.rate = Some(u32::try_from(n()).unwrap_or(u32::MAX)),
        305 => x.rate = Some(u32::try_from(n()).unwrap_or(u32::MAX)),
        306 => x.rate_space = Some(u32::try_from(n()).unwrap_or(u32::MAX)),
        48 | 302 => x.sampler = Some(n()),
        160 => x.system_init = Some(n() as i64),
        // NAT (issue 12): post-NAT addresses and ports, and the NAT event; 40001–40004 are
        // the same elements in older Cisco ASA NSEL v9 templates (NF_F_XLATE_*).
        // (an unspecified address, 0.0.0.0 or ::, is "not translated": left out).
        225 | 281 | 40001 => {
            x.nat.src = take_ip(v, stats)
                .filter(|a| !a.is_unspecified())
                .or(x.nat.src);
        }
        226 | 282 | 40002 => {
            x.nat.dst = take_ip(v, stats)
                .filter(|a| !a.is_unspecified())
                .or(x.nat.dst);
        }
        227 | 40003 => x.nat.src_port = Some(n() as u16),
        228 | 40004 => x.nat.dst_port = Some(n() as u16),
        230 => x.nat.event = Some(n() as u8),
        _ => {}
    }
}

/// Decode every record of one data set with template `t`.
#[allow(clippy::too_many_arguments)]
fn decode_set(
    st: &mut ExporterState,
    stats: &mut Stats,
    t: &Template,
    template_id: u16,
    flowset: u16,
    body: &[u8],
    ctx: &Context,
    out: &mut Vec<FlowRecord>,
) {
    if t.min_len == 0 {
        return;
    }
    let mut pos = 0usize;
    let mut record: u16 = 0;
    while body.len() - pos >= t.min_len {
        let start = pos;
        let mut x = Values::default();
        let mut ok = true;
        for (i, f) in t.fields.iter().enumerate() {
            let len = if f.len == VARLEN {
                let Some(&l) = body.get(pos) else {
                    ok = false;
                    break;
                };
                pos += 1;
                if l == 255 {
                    let Some(l2) = be16(body, pos) else {
                        ok = false;
                        break;
                    };
                    pos += 2;
                    usize::from(l2)
                } else {
                    usize::from(l)
                }
            } else {
                usize::from(f.len)
            };
            let Some(v) = body.get(pos..pos + len) else {
                ok = false;
                break;
            };
            pos += len;
            // Options scope fields use another numbering in v9 (system, interface, …).
            if !(t.options && i < t.scope && ctx.version == 9) {
                apply(f, v, &mut x, stats);
            }
        }
        if !ok {
            // A record cut short is only padding when every remaining byte is zero.
            if !body[start..].iter().all(|&b| b == 0) {
                stats.problem("record_truncated");
            }
            break;
        }
        if t.options {
            stats.options_records += 1;
            if let Some(r) = x.rate.filter(|&r| r > 0) {
                let rate = match x.rate_space {
                    Some(s) => r.saturating_add(s) / r,
                    None => r,
                };
                st.samplers.insert(x.sampler.unwrap_or(0), rate.max(1));
            }
            if x.system_init.is_some() {
                st.system_init_ms = x.system_init;
            }
        } else {
            out.push(flow(st, stats, &x, template_id, flowset, record, ctx));
        }
        record = record.saturating_add(1);
    }
}

fn flow(
    st: &ExporterState,
    stats: &mut Stats,
    x: &Values,
    template: u16,
    flowset: u16,
    record: u16,
    ctx: &Context,
) -> FlowRecord {
    let sampling = match x.rate.filter(|&r| r > 0) {
        Some(r) => match x.rate_space {
            Some(s) => r.saturating_add(s) / r,
            None => r,
        },
        None => st
            .samplers
            .get(&x.sampler.unwrap_or(0))
            .or_else(|| st.samplers.get(&0))
            .copied()
            .unwrap_or(1),
    }
    .max(1);
    let mut from_uptime = |stamp: Option<u32>| -> Option<i64> {
        let stamp = stamp?;
        match (ctx.uptime_ms, st.system_init_ms) {
            (Some(up), _) => Some(uptime_to_unix_ms(ctx.export_ms, up, stamp)),
            (None, Some(init)) => Some(init.saturating_add(i64::from(stamp))),
            (None, None) => {
                stats.problem("uptime_time_without_init");
                None
            }
        }
    };
    let delta = |us: Option<u64>| us.map(|u| ctx.export_ms - i64::try_from(u / 1000).unwrap_or(0));
    let start_ms = x
        .start_abs
        .or_else(|| delta(x.start_delta_us))
        .or_else(|| from_uptime(x.first_up));
    let end_ms = x
        .end_abs
        .or_else(|| delta(x.end_delta_us))
        .or_else(|| from_uptime(x.last_up));
    let is_icmp = x.proto == 1 || x.proto == 58;
    let icmp = x.icmp.or(match (x.icmp_type, x.icmp_code) {
        (Some(t), c) => Some(u16::from(t) << 8 | u16::from(c.unwrap_or(0))),
        _ => None,
    });
    let dst_port = match (is_icmp, icmp) {
        (true, Some(ic)) if x.dst_port.unwrap_or(0) == 0 => ic,
        _ => x.dst_port.unwrap_or(0),
    };
    FlowRecord {
        version: ctx.version,
        exporter: (!ctx.exporter.ip().is_unspecified()).then_some(ctx.exporter),
        domain: ctx.domain,
        datagram_seq: ctx.datagram_seq,
        flowset,
        record,
        template,
        src: x.src,
        dst: x.dst,
        src_port: x.src_port.unwrap_or(0),
        dst_port,
        proto: x.proto,
        tcp_flags: x.tcp_flags,
        tos: x.tos,
        packets: x.packets.or(x.packets_alt).unwrap_or(0),
        bytes: x.bytes.or(x.bytes_alt).unwrap_or(0),
        sampling,
        start_ms,
        end_ms,
        export_ms: ctx.export_ms,
        in_if: x.in_if,
        out_if: x.out_if,
        nat: (!x.nat.is_empty()).then(|| x.nat.clone()),
    }
}
