//! NAT translation records → `net.connection` events with the translation in fields (issue 12).
//!
//! Three line shapes, recognised by content wherever they arrive (a bare file, or the message
//! of a syslog line when a network node forwards them through rsyslog):
//!
//! - **conntrack events** as `conntrack -E` prints them, with or without `-o timestamp`,
//!   `extended` and `id`: `[1796539857.837620]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT
//!   src=… dst=… sport=… dport=… [UNREPLIED] src=… dst=… sport=… dport=… [ASSURED] id=…`
//!   (`[UPDATE]`, `[DESTROY]` with `delta-time=` and, from `conntrack -F`, `[USERSPACE]
//!   portid=… progname=…`). rsyslog escapes the tab after the stamp as `#011`; both are read.
//!   ICMP tuples carry their own `type= code= id=`: the entry id is the `id=` after the reply
//!   tuple.
//! - **ulogd2 NFCT → JSON** (`ulogd_output_JSON`, one object per line): `ct.event` (1 NEW, 2
//!   UPDATE, 4 DESTROY), `ct.id`, `orig.ip.protocol`, `orig.l4.sport`/`dport`,
//!   `reply.l4.sport`/`dport`, the original addresses as `src_ip`/`dest_ip` (the plugin's names
//!   for `orig.ip.saddr.str`/`daddr.str`; the `.str` keys are read too), the reply addresses
//!   as `reply.ip.saddr.str`/`reply.ip.daddr.str`, `flow.start.sec`/`usec` and
//!   `flow.end.sec`/`usec`. Its `timestamp` is local time without a zone: not used.
//! - **ulogd2 NFCT → PRINTFLOW → LOGEMU** (plain text, syslog-like): `[NEW] ORIG: SRC=… DST=…
//!   PROTO=TCP SPT=… DPT=… PKTS=… BYTES=… , REPLY: SRC=… DST=… PROTO=… SPT=… DPT=… …`.
//!
//! Shapes are those the real programs wrote in a network namespace with nftables SNAT
//! (`testdata/nat/`, conntrack 1.4.7 and ulogd 2.0.8 from Debian 12).
//!
//! The translation: when the reply's destination differs from the original source, the source
//! was rewritten (SNAT, masquerade, a floating IP's outbound SNAT): public = the reply's dst and
//! dport, inside = the original src and sport, peer = the reply's src and sport. When the
//! reply's source differs from the original destination, the destination was rewritten (DNAT,
//! a floating IP's inbound side): public = the original dst and dport, inside = the reply's src
//! and sport, peer = the original src. SNAT wins when both were rewritten. Fields: see
//! `model::fields` (`NAT_*`, `CT_*`, `REPLY_*`), plus the original tuple as `src_ip` … `proto`.
//!
//! Bad input: a line with the shape's head but a missing or unreadable tuple (an address that
//! does not parse — an IPv6 zone id `fe80::1%eth0` included —, a port above 65535) keeps its
//! text, gets a `bad_conntrack` / `bad_ulogd` issue at the offending offset and no
//! translation: counted, never guessed.

use std::net::IpAddr;

use model::{Event, EventClass, ParseIssue, Reported, fields};

pub const KIND_CONNTRACK: &str = "conntrack";
pub const KIND_ULOGD_JSON: &str = "ulogd-json";
pub const KIND_ULOGD_TEXT: &str = "ulogd-logemu";

/// One side of a connection as printed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
}

/// Whether these sample lines are NAT records (bare conntrack, ulogd JSON or LOGEMU lines):
/// what `detect` asks before the syslog vote, so such a file is framed as lines and each line
/// classified here.
pub fn looks_like(sample_lines: &[&[u8]]) -> bool {
    let mut non_empty = 0usize;
    let mut hits = 0usize;
    for line in sample_lines {
        let line = crate::text::strip_terminators(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        non_empty += 1;
        let text = String::from_utf8_lossy(line);
        if conntrack_head(&text).is_some() || is_ulogd_json(&text) || logemu_at(&text).is_some() {
            hits += 1;
        }
    }
    non_empty > 0 && hits * 2 > non_empty
}

/// Classify a line-format event whose message (or, for a non-syslog line, whole text) is a NAT
/// record; leaves others alone.
pub fn classify(ev: &mut Event) {
    if ev.class != EventClass::Other {
        return;
    }
    // Cheap gate first (every syslog line passes here): each shape has one of these words.
    let m = ev.message.as_bytes();
    use crate::text::contains;
    if !(contains!(m, b"[NEW]")
        || contains!(m, b"[UPDATE]")
        || contains!(m, b"[DESTROY]")
        || contains!(m, b"\"ct.event\"")
        || contains!(m, b"\"orig.l4.sport\""))
    {
        return;
    }
    let msg = ev.message.clone();
    let base = Pos::new(&ev.raw, &msg);
    let base = &base;
    let done = if let Some(at) = conntrack_head(&msg) {
        conntrack_into(ev, &msg, at, base);
        true
    } else if is_ulogd_json(&msg) {
        ulogd_json_into(ev, &msg, base);
        true
    } else if let Some(at) = logemu_at(&msg) {
        logemu_into(ev, &msg, at, base);
        true
    } else {
        false
    };
    if done {
        // A bare line of a NAT source is understood even though it is not syslog.
        ev.issues.retain(|i| i.kind != "not_syslog");
        ev.class = EventClass::NetConnection;
    }
}

/// Tokens split at spaces, tabs and rsyslog's `#011` (an escaped tab), with their offsets.
fn tokens(s: &str) -> Vec<(usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i < b.len() {
        let sep = match b[i] {
            b' ' | b'\t' => 1,
            b'#' if b[i..].starts_with(b"#011") => 4,
            _ => 0,
        };
        if sep > 0 {
            if let Some(st) = start.take() {
                out.push((st, &s[st..i]));
            }
            i += sep;
        } else {
            if start.is_none() {
                start = Some(i);
            }
            i += 1;
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

const EVENTS: [(&str, &str); 3] = [
    ("[NEW]", "new"),
    ("[UPDATE]", "update"),
    ("[DESTROY]", "destroy"),
];

/// Where a conntrack event starts: an optional `[sec.usec]` stamp, then `[NEW]`/`[UPDATE]`/
/// `[DESTROY]`, then (before the first `src=`) no `ORIG:` (ulogd's text). Returns the token
/// index of the event word.
fn conntrack_head(s: &str) -> Option<usize> {
    head_at(&tokens(s))
}

/// [`conntrack_head`] on the tokens.
fn head_at(toks: &[(usize, &str)]) -> Option<usize> {
    let mut i = 0;
    if toks.first().is_some_and(|(_, t)| stamp(t).is_some()) {
        i = 1;
    }
    let (_, ev) = toks.get(i)?;
    if !EVENTS.iter().any(|(w, _)| w == ev) {
        return None;
    }
    // The next tokens must be conntrack's: `[ipv4 2] tcp 6`, then key=values with a `src=`.
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mut j = i + 1;
    if toks
        .get(j)
        .is_some_and(|(_, t)| matches!(*t, "ipv4" | "ipv6" | "unknown"))
    {
        j += 2;
    }
    let proto_ok = toks.get(j).is_some_and(|(_, t)| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) && toks.get(j + 1).is_some_and(|(_, t)| digits(t));
    if !proto_ok || !toks.iter().any(|(_, t)| t.starts_with("src=")) {
        return None;
    }
    Some(i)
}

/// `[1796539857.837620]` → the instant.
fn stamp(t: &str) -> Option<jiff::Timestamp> {
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    let (sec, usec) = inner.split_once('.').unwrap_or((inner, "0"));
    if sec.is_empty() || !sec.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if usec.is_empty() || usec.len() > 9 || !usec.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec: i64 = sec.parse().ok()?;
    let frac: i64 = usec.parse().ok()?;
    let nanos = frac * 10i64.pow(9 - u32::try_from(usec.len()).ok()?);
    jiff::Timestamp::new(sec, i32::try_from(nanos).ok()?).ok()
}

/// A conntrack event as read from its tokens: what [`conntrack_into`] puts in the event's
/// fields, and what [`conntrack_line`] hands the indexer without an event.
struct CtParse<'a> {
    event: &'static str,
    proto: Option<String>,
    timeout: Option<&'a str>,
    state: Option<&'a str>,
    tuples: [Tuple; 2],
    /// The entry id (digits only).
    ct_id: Option<&'a str>,
    /// A DESTROY's `delta-time=` (digits only).
    lifetime: Option<&'a str>,
    /// (message offset, what was expected there).
    issues: Vec<(usize, &'static str)>,
}

fn parse_ct<'a>(msg: &'a str, toks: &[(usize, &'a str)], ev_tok: usize) -> CtParse<'a> {
    let mut issues: Vec<(usize, &'static str)> = Vec::new();
    let (_, word) = toks[ev_tok];
    let event = EVENTS
        .iter()
        .find(|(w, _)| *w == word)
        .map_or("update", |(_, e)| e);
    // Head: [l3name l3num] l4name l4num [timeout] [STATE], up to the first key=value.
    let mut i = ev_tok + 1;
    let n_head = toks[i..]
        .iter()
        .take_while(|(_, t)| !t.contains('='))
        .count();
    let head: Vec<&str> = toks[i..i + n_head].iter().map(|(_, t)| *t).collect();
    i += n_head;
    let mut h = head.as_slice();
    if let [l3, num, rest @ ..] = h
        && matches!(*l3, "ipv4" | "ipv6" | "unknown")
        && num.bytes().all(|b| b.is_ascii_digit())
    {
        h = rest;
    }
    let mut proto = None;
    let (mut timeout, mut state) = (None, None);
    if let [l4, num, rest @ ..] = h
        && num.bytes().all(|b| b.is_ascii_digit())
        && !num.is_empty()
    {
        proto = Some(l4.to_ascii_lowercase());
        h = rest;
        if let [t, rest @ ..] = h
            && !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_digit())
        {
            timeout = Some(*t);
            h = rest;
        }
        if let [s, ..] = h
            && !s.starts_with('[')
        {
            state = Some(*s);
        }
    } else {
        let at = toks.get(ev_tok + 1).map_or(msg.len(), |(o, _)| *o);
        issues.push((at, "a protocol name and number (tcp 6)"));
    }
    // Tuples, flags and trailing key=values.
    let mut tuples = [Tuple::default(), Tuple::default()];
    let mut which = 0usize;
    let mut icmp_id_taken = [false, false];
    let mut in_tuple = true;
    let mut ct_id = None;
    let mut lifetime = None;
    for &(at, tok) in &toks[i..] {
        let Some((key, value)) = tok.split_once('=') else {
            // [UNREPLIED] ends the original tuple; [ASSURED] and the rest end the reply's.
            if tok == "[UNREPLIED]" && which == 0 {
                which = 1;
            } else if which == 1 && tuples[1].src.is_some() {
                in_tuple = false;
            }
            continue;
        };
        let vat = at + key.len() + 1;
        match key {
            "src" => {
                if tuples[which].src.is_some() || !in_tuple {
                    if which == 1 {
                        in_tuple = false;
                        continue;
                    }
                    which = 1;
                }
                match value.parse::<IpAddr>() {
                    Ok(ip) => tuples[which].src = Some(ip),
                    Err(_) => issues.push((vat, "an IP address (no zone id)")),
                }
            }
            "dst" if in_tuple && tuples[which].dst.is_none() => match value.parse::<IpAddr>() {
                Ok(ip) => tuples[which].dst = Some(ip),
                Err(_) => issues.push((vat, "an IP address (no zone id)")),
            },
            "sport" | "dport" if in_tuple => match value.parse::<u16>() {
                Ok(p) if key == "sport" => tuples[which].sport = Some(p),
                Ok(p) => tuples[which].dport = Some(p),
                Err(_) => issues.push((vat, "a port number 0..=65535")),
            },
            // ICMP's identifier belongs to the tuple (after type= code=); the entry id follows
            // the reply tuple.
            "id" if in_tuple
                && !icmp_id_taken[which]
                && proto.as_deref().is_some_and(|p| p.starts_with("icmp")) =>
            {
                icmp_id_taken[which] = true;
            }
            "id" => ct_id = Some(value),
            "delta-time" => {
                if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
                    lifetime = Some(value);
                }
            }
            _ => {
                if which == 1 && tuples[1].src.is_some() && !matches!(key, "type" | "code") {
                    in_tuple = false;
                }
            }
        }
    }
    if tuples[0].src.is_none() || tuples[0].dst.is_none() {
        issues.push((msg.len(), "the original tuple (src= dst=)"));
    } else if tuples[1].src.is_none() || tuples[1].dst.is_none() {
        issues.push((msg.len(), "the reply tuple (src= dst=)"));
    }
    CtParse {
        event,
        proto,
        timeout,
        state,
        tuples,
        ct_id: ct_id.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        lifetime,
        issues,
    }
}

fn conntrack_into(ev: &mut Event, msg: &str, ev_tok: usize, base: &Pos) {
    ev.source_kind = KIND_CONNTRACK.to_string();
    let toks = tokens(msg);
    if ev_tok == 1 {
        let (_, text) = toks[0];
        ev.reported = Reported::new(stamp(text), text);
    }
    let p = parse_ct(msg, &toks, ev_tok);
    let mut set = |k: &str, v: Option<&str>| {
        debug_assert!(CONNTRACK_FIELDS.contains(&k), "{k} not in CONNTRACK_FIELDS");
        if let Some(v) = v {
            ev.fields.insert(k.to_string(), v.to_string());
        }
    };
    set(fields::NAT_EVENT, Some(p.event));
    set(fields::CT_TIMEOUT, p.timeout);
    set(fields::CT_STATE, p.state);
    set(fields::CT_LIFETIME, p.lifetime);
    set(fields::CT_ID, p.ct_id);
    let bad = !p.issues.is_empty();
    for (at, expected) in p.issues {
        ev.issues.push(ParseIssue::new(
            &ev.raw,
            base.raw(at),
            "bad_conntrack",
            expected,
        ));
    }
    let [orig, reply] = p.tuples;
    put_tuples(ev, p.proto.as_deref(), &orig, &reply, !bad);
}

/// A bare conntrack line read straight from its bytes into what a NAT row holds, without the
/// event `decode` builds (a map of ~20 strings, the text scanned once per field for
/// addresses): the indexer's fast path, most of a conntrack log's ingest cost (issue 12).
///
/// `None` for anything but the plain shape `decode` reads the same way: a whole line of
/// printable ASCII but its terminator (tabs allowed, no rsyslog `#011`, no syslog header) of
/// an IPv4 conntrack event with a stamp or starting at the event word, both tuples whole, a
/// translation, and no address in it but the tuples'. For such a line `decode` gives an event
/// whose message is the line, without host, app or issues, whose fields are
/// [`conntrack_fields`] of the line and whose addresses are [`ConntrackLine::ips`]: the test
/// `fast_conntrack_rows_are_decodes` in crate views holds the two paths to each other.
pub fn conntrack_line(raw: &[u8]) -> Option<ConntrackLine<'_>> {
    // What the syslog reader reads of a record: the line without its terminator.
    let raw = crate::text::strip_terminators(raw);
    let (&first, &last) = (raw.first()?, raw.last()?);
    if first != b'['
        || last == b' '
        || last == b'\t'
        || !raw
            .iter()
            .all(|&b| (b' '..=b'~').contains(&b) && b != b'#' || b == b'\t')
    {
        return None;
    }
    let msg = std::str::from_utf8(raw).ok()?;
    let toks = tokens(msg);
    let ev_tok = head_at(&toks)?;
    let p = parse_ct(msg, &toks, ev_tok);
    if !p.issues.is_empty() {
        return None;
    }
    let [orig, reply] = &p.tuples;
    let v4 = |ip: Option<IpAddr>| ip.is_some_and(|ip| ip.is_ipv4());
    if !(v4(orig.src) && v4(orig.dst) && v4(reply.src) && v4(reply.dst)) {
        return None;
    }
    let (kind, public, inside, peer) = translation(orig, reply)?;
    // The text's addresses as `extract_ips` finds them, without its scan: it considers only
    // runs of hex digits, dots and colons with three dots or two colons, and such a run lies
    // inside one token (tokens split at spaces and tabs, which end runs). So a line whose
    // every token with three dots or two colons is a `src=`/`dst=` IPv4 address has exactly
    // those addresses, in order; any other such token sends the line to the decoder.
    let mut ips: Vec<IpAddr> = Vec::with_capacity(4);
    for &(_, tok) in &toks {
        let (dots, colons) = tok.bytes().fold((0, 0), |(d, c), b| {
            (d + usize::from(b == b'.'), c + usize::from(b == b':'))
        });
        if dots < 3 && colons < 2 {
            continue;
        }
        let ip = match tok.split_once('=') {
            Some(("src" | "dst", v)) => IpAddr::V4(v.parse::<std::net::Ipv4Addr>().ok()?),
            _ => return None,
        };
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    // Every address the text mentions is a tuple's: the event's addresses are these and
    // nothing the fields would add.
    let tuple_ips = [orig.src, orig.dst, reply.src, reply.dst];
    if !ips.iter().all(|ip| tuple_ips.contains(&Some(*ip))) {
        return None;
    }
    let stamp_text = (ev_tok == 1).then(|| toks[0].1);
    Some(ConntrackLine {
        message: msg,
        reported: stamp_text.map(|t| (stamp(t), t)),
        event: p.event,
        proto: p.proto,
        timeout: p.timeout,
        lifetime: p.lifetime,
        ct_id: p.ct_id,
        kind,
        public: (public.0?, public.1),
        inside: (inside.0?, inside.1),
        peer,
        src: orig.src?,
        ips,
    })
}

/// What [`conntrack_line`] read (every text a slice of the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackLine<'a> {
    /// The whole line: the event's message.
    pub message: &'a str,
    /// The stamp (`[sec.usec]`) as read and as text: the event's reported time.
    pub reported: Option<(Option<jiff::Timestamp>, &'a str)>,
    /// `new`, `update` or `destroy`.
    pub event: &'static str,
    pub proto: Option<String>,
    pub timeout: Option<&'a str>,
    pub lifetime: Option<&'a str>,
    pub ct_id: Option<&'a str>,
    /// `snat` or `dnat`.
    pub kind: &'static str,
    pub public: (IpAddr, Option<u16>),
    pub inside: (IpAddr, Option<u16>),
    pub peer: (Option<IpAddr>, Option<u16>),
    /// The original source (field `src_ip`).
    pub src: IpAddr,
    /// The addresses of the text in order of first mention (`Event::ips`).
    pub ips: Vec<IpAddr>,
}

/// Every field name [`conntrack_fields`] (and the decoder's conntrack path) can give: a
/// reader that asks a NAT row rebuilt from its message for any other field knows the answer
/// without rebuilding (a report's `vm_uuid:` searches over a million conntrack rows). The
/// setters below assert membership in debug builds.
pub const CONNTRACK_FIELDS: [&str; 21] = [
    fields::NAT_EVENT,
    fields::CT_TIMEOUT,
    fields::CT_STATE,
    fields::CT_LIFETIME,
    fields::CT_ID,
    fields::PROTO,
    fields::SRC_IP,
    fields::DST_IP,
    fields::SRC_PORT,
    fields::DST_PORT,
    fields::REPLY_SRC_IP,
    fields::REPLY_DST_IP,
    fields::REPLY_SRC_PORT,
    fields::REPLY_DST_PORT,
    fields::NAT_KIND,
    fields::NAT_IP,
    fields::NAT_PORT,
    fields::NAT_INSIDE_IP,
    fields::NAT_INSIDE_PORT,
    fields::NAT_PEER_IP,
    fields::NAT_PEER_PORT,
];

/// The fields `decode` gives the bare conntrack line `message` (what a NAT row written by the
/// fast path keeps instead of its fields: they are rebuilt from the message on read). Empty
/// when the text is not a conntrack event.
pub fn conntrack_fields(message: &str) -> std::collections::BTreeMap<String, String> {
    let mut ev = Event::blank(
        model::Received::from_stored(0),
        model::Observer::Collector,
        model::Origin::File {
            path: String::new(),
            line: 0,
        },
        message.as_bytes().to_vec(),
    );
    ev.message = message.to_string();
    let toks = tokens(message);
    if let Some(at) = head_at(&toks) {
        let base = Pos::new(message.as_bytes(), message);
        conntrack_into(&mut ev, message, at, &base);
    }
    ev.fields
}

/// Which side was rewritten, and the translation: (kind, public, inside, peer).
type Side = (Option<IpAddr>, Option<u16>);
fn translation(orig: &Tuple, reply: &Tuple) -> Option<(&'static str, Side, Side, Side)> {
    let snat = reply.dst != orig.src || reply.dport != orig.sport;
    let dnat = reply.src != orig.dst || reply.sport != orig.dport;
    if snat {
        Some((
            "snat",
            (reply.dst, reply.dport),
            (orig.src, orig.sport),
            (reply.src, reply.sport),
        ))
    } else if dnat {
        Some((
            "dnat",
            (orig.dst, orig.dport),
            (reply.src, reply.sport),
            (orig.src, orig.sport),
        ))
    } else {
        None
    }
}

/// The connection's fields, and the translation when both tuples are whole (`complete`).
fn put_tuples(ev: &mut Event, proto: Option<&str>, orig: &Tuple, reply: &Tuple, complete: bool) {
    let mut set = |k: &str, v: Option<String>| {
        debug_assert!(CONNTRACK_FIELDS.contains(&k), "{k} not in CONNTRACK_FIELDS");
        if let Some(v) = v {
            ev.fields.insert(k.to_string(), v);
        }
    };
    let s = |ip: Option<IpAddr>| ip.map(model::text::ip_string);
    let p = |port: Option<u16>| port.map(|i| i.to_string());
    set(fields::PROTO, proto.map(str::to_string));
    set(fields::SRC_IP, s(orig.src));
    set(fields::DST_IP, s(orig.dst));
    set(fields::SRC_PORT, p(orig.sport));
    set(fields::DST_PORT, p(orig.dport));
    set(fields::REPLY_SRC_IP, s(reply.src));
    set(fields::REPLY_DST_IP, s(reply.dst));
    set(fields::REPLY_SRC_PORT, p(reply.sport));
    set(fields::REPLY_DST_PORT, p(reply.dport));
    if !complete {
        return;
    }
    let Some((kind, public, inside, peer)) = translation(orig, reply) else {
        return;
    };
    set(fields::NAT_KIND, Some(kind.to_string()));
    set(fields::NAT_IP, s(public.0));
    set(fields::NAT_PORT, p(public.1));
    set(fields::NAT_INSIDE_IP, s(inside.0));
    set(fields::NAT_INSIDE_PORT, p(inside.1));
    set(fields::NAT_PEER_IP, s(peer.0));
    set(fields::NAT_PEER_PORT, p(peer.1));
}

fn is_ulogd_json(s: &str) -> bool {
    let t = s.trim_start();
    t.starts_with('{') && (t.contains("\"ct.event\"") || t.contains("\"orig.l4.sport\""))
}

fn proto_name(num: u64) -> String {
    match num {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        47 => "gre".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

fn ulogd_json_into(ev: &mut Event, msg: &str, base: &Pos) {
    ev.source_kind = KIND_ULOGD_JSON.to_string();
    let lead = msg.len() - msg.trim_start().len();
    let v: serde_json::Value = match serde_json::from_str(msg.trim()) {
        Ok(v) => v,
        Err(e) => {
            let at = line_col_offset(msg, e.line(), e.column());
            ev.issues.push(ParseIssue::new(
                &ev.raw,
                base.raw(at),
                "bad_ulogd",
                "one JSON object (ulogd2 JSON output)",
            ));
            return;
        }
    };
    let Some(o) = v.as_object() else {
        ev.issues.push(ParseIssue::new(
            &ev.raw,
            base.raw(lead),
            "bad_ulogd",
            "a JSON object",
        ));
        return;
    };
    let mut issues: Vec<&'static str> = Vec::new();
    let text = |keys: &[&str]| -> Option<String> {
        keys.iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_string))
    };
    let num = |k: &str| o.get(k).and_then(serde_json::Value::as_u64);
    let ip = |keys: &[&str], issues: &mut Vec<&'static str>| -> Option<IpAddr> {
        let t = text(keys)?;
        match t.parse::<IpAddr>() {
            Ok(i) => Some(i),
            Err(_) => {
                issues.push("an IP address (no zone id)");
                None
            }
        }
    };
    let orig = Tuple {
        src: ip(
            &["src_ip", "orig.ip.saddr.str", "orig.ip.saddr"],
            &mut issues,
        ),
        dst: ip(
            &["dest_ip", "orig.ip.daddr.str", "orig.ip.daddr"],
            &mut issues,
        ),
        sport: port(num("orig.l4.sport"), &mut issues),
        dport: port(num("orig.l4.dport"), &mut issues),
    };
    let reply = Tuple {
        src: ip(&["reply.ip.saddr.str", "reply.ip.saddr"], &mut issues),
        dst: ip(&["reply.ip.daddr.str", "reply.ip.daddr"], &mut issues),
        sport: port(num("reply.l4.sport"), &mut issues),
        dport: port(num("reply.l4.dport"), &mut issues),
    };
    let event = match num("ct.event") {
        Some(e) if e & 4 != 0 => Some("destroy"),
        Some(e) if e & 1 != 0 => Some("new"),
        Some(e) if e & 2 != 0 => Some("update"),
        _ => None,
    };
    match event {
        Some(e) => {
            ev.fields
                .insert(fields::NAT_EVENT.to_string(), e.to_string());
        }
        None => issues.push("ct.event (1 NEW, 2 UPDATE, 4 DESTROY)"),
    }
    if let Some(id) = num("ct.id") {
        ev.fields.insert(fields::CT_ID.to_string(), id.to_string());
    }
    let at = |sec: &str, usec: &str| -> Option<jiff::Timestamp> {
        let s = i64::try_from(num(sec)?).ok()?;
        let us = num(usec).unwrap_or(0).min(999_999);
        jiff::Timestamp::new(s, i32::try_from(us * 1000).ok()?).ok()
    };
    let start = at("flow.start.sec", "flow.start.usec");
    let end = at("flow.end.sec", "flow.end.usec");
    if let Some(s) = start {
        ev.fields
            .insert(fields::FLOW_START.to_string(), s.to_string());
    }
    if let Some(e) = end {
        ev.fields
            .insert(fields::FLOW_END.to_string(), e.to_string());
    }
    // The event's moment: the end of a destroyed entry, else its start.
    let when = if event == Some("destroy") {
        end.or(start)
    } else {
        start
    };
    if let Some(w) = when {
        ev.reported = Reported::new(Some(w), w.to_string());
    }
    let proto = num("orig.ip.protocol").map(proto_name);
    if orig.src.is_none() || orig.dst.is_none() || reply.src.is_none() || reply.dst.is_none() {
        issues.push(
            "both tuples' addresses (src_ip, dest_ip, reply.ip.saddr.str, reply.ip.daddr.str)",
        );
    }
    let complete = issues.is_empty();
    for expected in issues {
        ev.issues.push(ParseIssue::new(
            &ev.raw,
            base.raw(lead),
            "bad_ulogd",
            expected,
        ));
    }
    put_tuples(ev, proto.as_deref(), &orig, &reply, complete);
}

fn port(v: Option<u64>, issues: &mut Vec<&'static str>) -> Option<u16> {
    let v = v?;
    match u16::try_from(v) {
        Ok(p) => Some(p),
        Err(_) => {
            issues.push("a port number 0..=65535");
            None
        }
    }
}

/// Where an offset in the decoded message lies in the raw bytes. The message is the raw
/// bytes' tail as text; when the raw bytes are not UTF-8 it is the lossy rendering (each bad
/// sequence one U+FFFD, 3 bytes), so offsets are mapped back through the rendering instead of
/// added to where the message starts (found by the fuzzer: an issue past the record's end).
struct Pos {
    base: usize,
    /// Lossy rendering of the raw bytes: for each of its bytes, the raw offset (plus the end).
    map: Option<(usize, Vec<usize>)>,
}

impl Pos {
    fn new(raw: &[u8], msg: &str) -> Pos {
        if let Some(base) = crate::text::message_offset(raw, msg.as_bytes()) {
            return Pos { base, map: None };
        }
        let mut text = String::with_capacity(raw.len() + 16);
        let mut map = Vec::with_capacity(raw.len() + 16);
        let mut at = 0;
        for chunk in raw.utf8_chunks() {
            text.push_str(chunk.valid());
            map.extend((0..chunk.valid().len()).map(|i| at + i));
            at += chunk.valid().len();
            if !chunk.invalid().is_empty() {
                text.push(char::REPLACEMENT_CHARACTER);
                map.extend([at; 3]);
                at += chunk.invalid().len();
            }
        }
        map.push(at);
        let start = memchr::memmem::find(text.as_bytes(), msg.as_bytes()).unwrap_or(0);
        Pos {
            base: 0,
            map: Some((start, map)),
        }
    }

    /// The raw offset of message offset `at` (never past the raw bytes' end).
    fn raw(&self, at: usize) -> usize {
        match &self.map {
            None => self.base + at,
            Some((start, map)) => map.get(start + at).or(map.last()).copied().unwrap_or(0),
        }
    }
}

/// Byte offset of serde_json's (1-based line, column) in `s`.
fn line_col_offset(s: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (n, l) in s.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            return (off + col.saturating_sub(1)).min(s.len());
        }
        off += l.len();
    }
    s.len()
}

/// Where ulogd's PRINTFLOW text starts: `[EVENT] ORIG: SRC=`.
fn logemu_at(s: &str) -> Option<usize> {
    let at = s
        .find(" ORIG: SRC=")
        .or_else(|| s.starts_with("ORIG: SRC=").then_some(0))?;
    let head = s[..at].trim_end();
    let word_at = head.rfind(' ').map_or(0, |i| i + 1);
    let word = &head[word_at..];
    (EVENTS.iter().any(|(w, _)| *w == word) && s[at..].contains("REPLY: SRC=")).then_some(word_at)
}

fn logemu_into(ev: &mut Event, msg: &str, at: usize, base: &Pos) {
    ev.source_kind = KIND_ULOGD_TEXT.to_string();
    let rest = &msg[at..];
    let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if let Some((_, e)) = EVENTS.iter().find(|(w, _)| *w == word) {
        ev.fields
            .insert(fields::NAT_EVENT.to_string(), (*e).to_string());
    }
    let body_at = at + word.len() + 1;
    let mut issues: Vec<(usize, &'static str)> = Vec::new();
    let (orig_text, reply_text) = match rest.split_once(", REPLY:") {
        Some((o, r)) => (o, r),
        None => (rest, ""),
    };
    let mut proto = None;
    let mut read = |text: &str, off: usize, issues: &mut Vec<(usize, &'static str)>| {
        let mut t = Tuple::default();
        for (tat, tok) in tokens(text) {
            let Some((k, v)) = tok.split_once('=') else {
                continue;
            };
            let vat = off + tat + k.len() + 1;
            match k {
                "SRC" | "DST" => match v.parse::<IpAddr>() {
                    Ok(ip) if k == "SRC" => t.src = Some(ip),
                    Ok(ip) => t.dst = Some(ip),
                    Err(_) => issues.push((vat, "an IP address (no zone id)")),
                },
                "SPT" | "DPT" => match v.parse::<u16>() {
                    Ok(p) if k == "SPT" => t.sport = Some(p),
                    Ok(p) => t.dport = Some(p),
                    Err(_) => issues.push((vat, "a port number 0..=65535")),
                },
                "PROTO" if proto.is_none() => proto = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        t
    };
    let orig = read(orig_text, body_at, &mut issues);
    let reply_off = body_at + orig_text.len() + ", REPLY:".len();
    let reply = read(reply_text, reply_off, &mut issues);
    if orig.src.is_none() || orig.dst.is_none() || reply.src.is_none() || reply.dst.is_none() {
        issues.push((msg.len(), "ORIG: and REPLY: tuples with SRC= and DST="));
    }
    let complete = issues.is_empty();
    for (off, expected) in issues {
        ev.issues.push(ParseIssue::new(
            &ev.raw,
            base.raw(off),
            "bad_ulogd",
            expected,
        ));
    }
    put_tuples(ev, proto.as_deref(), &orig, &reply, complete);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_on_tabs_and_escaped_tabs() {
        let t: Vec<&str> = tokens("[1.5]#011  [NEW] a\tb")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(t, ["[1.5]", "[NEW]", "a", "b"]);
    }

    #[test]
    fn stamps() {
        assert_eq!(
            stamp("[1796539857.837620]").map(|t| t.to_string()),
            Some("2026-12-06T06:50:57.83762Z".to_string())
        );
        assert!(stamp("[NEW]").is_none());
        assert!(stamp("[1.1234567890]").is_none());
        assert!(stamp("[99999999999999999999.1]").is_none());
    }
}
