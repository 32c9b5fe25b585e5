//! Framing: where one record ends and the next begins, for each format's files.
//!
//! Syslog and service logs are one record per line; a Keystone dump or `condor_history -json`
//! is one JSON array whose elements are the records; `condor_history -l` separates ads with
//! blank lines; a userlog event ends with a line `...`. [`Framer`] is fed bytes in chunks of any
//! size (streaming: a file is never held whole) and hands back complete records with the line
//! they start on and the byte offset just past them, which the ingest's import marks use.
//!
//! Pure: no I/O. It never drops content: bytes that belong to no record are only the
//! separators themselves (line terminators, blank lines, the array's `[` `,` `]` and the
//! whitespace between elements); anything else — a JSON file that is not an array, text
//! after the array — becomes a record of its own, which its decoder then reports as not
//! understood. Records longer than [`MAX_RECORD`] are cut into consecutive records.

use model::Format;

/// Longest single record; longer content is cut into consecutive records of this size.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

/// How a format's files are cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One record per line (`\n`; a `\r` before it stays in the record, as received).
    Lines,
    /// The elements of one top-level JSON array.
    JsonArray,
    /// Blocks of lines separated by blank lines.
    Blocks,
    /// Blocks of lines each ending with a line equal to the terminator (userlog `...`).
    Terminated(&'static [u8]),
    /// Top-level XML elements (OpenNebula): one record per document, and one per child of a
    /// top-level `*_POOL` element (`VM_POOL`, `VNET_POOL`), so `onevm list -x` is cut into
    /// one record per VM. Prologs and comments between documents are separators.
    Xml,
    /// SCIM exports (issue 12): a sequence of JSON values. A ListResponse object is cut into
    /// its head (from `{` through `"Resources": [`), one record per element of `Resources`,
    /// and its tail (from the closing `]` through `}`); any other object, and each element of
    /// a top-level array, is one record. Text that is not JSON is one record per line.
    ScimList,
}

pub fn framing(format: Format) -> Framing {
    match format {
        Format::KeystoneDirectory | Format::CondorHistoryJson => Framing::JsonArray,
        Format::ScimDirectory => Framing::ScimList,
        Format::CondorClassAd => Framing::Blocks,
        Format::CondorUserlog => Framing::Terminated(b"..."),
        Format::OpennebulaXml => Framing::Xml,
        Format::Syslog
        | Format::Raw
        | Format::OpenstackNotification
        | Format::OsloLog
        | Format::OpennebulaLog
        // Binary NetFlow is never framed as text: ingest stores it per datagram
        // (cli/ingest_flow.rs); as lines it would at least stay stored.
        | Format::NetflowDatagram
        | Format::NetflowRecord
        | Format::ArcJobLog
        | Format::CondorAuditLog
        | Format::Unknown(_) => Framing::Lines,
    }
}

/// One record cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub raw: Vec<u8>,
    /// 1-based line number of the record's first byte.
    pub line: u64,
    /// Byte offset just past the record and its separator: everything before it is framed.
    pub end: u64,
}

/// Streaming framer. Feed with [`Framer::push`], close with [`Framer::finish`].
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    /// Bytes not yet framed, starting at stream offset `base`.
    pending: Vec<u8>,
    base: u64,
    /// Line number at `base`.
    base_line: u64,
    /// JSON state, carried across pushes.
    json: JsonState,
    /// XML: inside a top-level `*_POOL` element (its children are the records).
    xml_in_pool: bool,
    /// SCIM state, carried across pushes.
    scim: ScimState,
}

/// Where the SCIM framer is (see [`Framing::ScimList`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScimTop {
    /// Between values.
    #[default]
    Outside,
    /// Inside a top-level object (its head, a whole object, or a ListResponse's tail).
    Object,
    /// Inside a ListResponse's `Resources` array.
    Resources,
    /// Inside a top-level array.
    Array,
    /// Text that is not JSON, up to the end of its line.
    Junk,
}

/// Looking for the `"Resources"` key among a top-level object's members.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScimKey {
    #[default]
    Expect,
    In(usize),
    After(bool),
    Colon(bool),
    Value,
}

#[derive(Debug, Default, Clone, Copy)]
struct ScimState {
    pos: usize,
    top: ScimTop,
    key: ScimKey,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Start of the record being read inside `pending`.
    start: Option<usize>,
}

#[derive(Debug, Default, Clone, Copy)]
struct JsonState {
    /// Scan position inside `pending`.
    pos: usize,
    /// Saw the top-level `[`.
    opened: bool,
    /// The array closed: everything after it is trailing content.
    closed: bool,
    /// Not an array at all: the rest is one record (per MAX_RECORD).
    not_array: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Start of the current element inside `pending`, if one is open.
    elem_start: Option<usize>,
}

impl Framer {
    pub fn new(framing: Framing) -> Framer {
        Framer::starting_at(framing, 0, 1)
    }

    /// A framer for a stream whose first `offset` bytes (lines up to `line - 1`) were already
    /// framed by an earlier import: offsets and line numbers continue from there.
    pub fn starting_at(framing: Framing, offset: u64, line: u64) -> Framer {
        Framer {
            framing,
            pending: Vec::new(),
            base: offset,
            base_line: line,
            // Records end inside the array, so a resumed JSON stream is inside it too.
            json: JsonState {
                opened: offset > 0,
                ..JsonState::default()
            },
            xml_in_pool: false,
            scim: ScimState::default(),
        }
    }

    /// Offset just past the last byte handed out in a frame or skipped as a separator.
    pub fn framed_offset(&self) -> u64 {
        self.base
    }

    /// Add bytes; complete records are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Frame>) {
        self.pending.extend_from_slice(chunk);
        match self.framing {
            Framing::Lines => self.lines(out, false),
            Framing::Blocks => self.blocks(out, None, false),
            Framing::Terminated(t) => self.blocks(out, Some(t), false),
            Framing::JsonArray => self.json_array(out, false),
            Framing::Xml => self.xml(out, false),
            Framing::ScimList => self.scim(out, false),
        }
    }

    /// End of input: whatever is left becomes the last record(s).
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        match self.framing {
            Framing::Lines => self.lines(out, true),
            Framing::Blocks => self.blocks(out, None, true),
            Framing::Terminated(t) => self.blocks(out, Some(t), true),
            Framing::JsonArray => self.json_array(out, true),
            Framing::Xml => self.xml(out, true),
            Framing::ScimList => self.scim(out, true),
        }
    }

    /// Hand out `pending[start..end]` as a record and consume `pending[..consumed]`.
    fn emit(&mut self, start: usize, end: usize, consumed: usize, out: &mut Vec<Frame>) {
        self.frame_at(0, start, end, consumed, out);
        self.pending.drain(..consumed);
    }

    /// Hand out `pending[off + start..off + end]` as a record and count `pending[off..off +
    /// consumed]` as consumed (offsets, line numbers) without moving any bytes: the caller
    /// drains once for many records.
    fn frame_at(
        &mut self,
        off: usize,
        start: usize,
        end: usize,
        consumed: usize,
        out: &mut Vec<Frame>,
    ) {
        let p = &self.pending[off..];
        let line = self.base_line + count_lines(&p[..start]);
        let mut s = start;
        loop {
            let e = (s + MAX_RECORD).min(end);
            out.push(Frame {
                raw: p[s..e].to_vec(),
                line,
                end: self.base + if e == end { consumed } else { e } as u64,
            });
            s = e;
            if s >= end {
                break;
            }
        }
        self.base_line += count_lines(&p[..consumed]);
        self.base += consumed as u64;
    }

    fn consume(&mut self, n: usize) {
        self.base_line += count_lines(&self.pending[..n]);
        self.base += n as u64;
        self.pending.drain(..n);
    }

    fn lines(&mut self, out: &mut Vec<Frame>, at_end: bool) {
        // One drain per push, not one per line: taking each line off the front of a
        // multi-megabyte chunk moved the rest of the chunk every time (a third of the CPU of
        // `ingest` on a conntrack log).
        let mut off = 0;
        loop {
            let rest = &self.pending[off..];
            let (end, consumed) = match memchr::memchr(b'\n', rest) {
                Some(nl) => (nl, nl + 1),
                None if rest.len() >= MAX_RECORD => (MAX_RECORD, MAX_RECORD),
                None if at_end && !rest.is_empty() => (rest.len(), rest.len()),
                None => break,
            };
            self.frame_at(off, 0, end, consumed, out);
            off += consumed;
        }
        self.pending.drain(..off);
    }

    /// Blank-line separated blocks, or blocks ended by a terminator line (kept in the record).
    fn blocks(&mut self, out: &mut Vec<Frame>, terminator: Option<&[u8]>, at_end: bool) {
        let mut line_start = 0;
        let mut block_start: Option<usize> = None;
        // Re-scans pending from the start each push: blocks are small (an ad, an event), and
        // pending never holds more than one unfinished block plus one chunk.
        while let Some(rel) = memchr::memchr(b'\n', &self.pending[line_start..]) {
            let nl = line_start + rel;
            let line = strip_cr(&self.pending[line_start..nl]);
            let blank = line.iter().all(u8::is_ascii_whitespace);
            match terminator {
                None if blank => {
                    if let Some(s) = block_start.take() {
                        self.emit(s, line_start.saturating_sub(1).max(s), nl + 1, out);
                        line_start = 0;
                        continue;
                    }
                    // Blank lines between blocks are separators.
                    self.consume(nl + 1);
                    line_start = 0;
                    continue;
                }
                Some(t) if line == t => {
                    let s = block_start.take().unwrap_or(line_start);
                    self.emit(s, nl, nl + 1, out);
                    line_start = 0;
                    continue;
                }
                Some(_) if blank && block_start.is_none() => {
                    self.consume(nl + 1);
                    line_start = 0;
                    continue;
                }
                _ => {
                    block_start.get_or_insert(line_start);
                }
            }
            line_start = nl + 1;
            if nl + 1 - block_start.unwrap_or(0) >= MAX_RECORD {
                let s = block_start.take().unwrap_or(0);
                self.emit(s, nl, nl + 1, out);
                line_start = 0;
            }
        }
        if self.pending.len() >= MAX_RECORD {
            let n = self.pending.len();
            self.emit(0, n, n, out);
            return;
        }
        if at_end {
            let rest = &self.pending;
            if rest.iter().all(u8::is_ascii_whitespace) {
                let n = rest.len();
                self.consume(n);
            } else {
                let start = block_start.unwrap_or(0);
                let mut end = self.pending.len();
                while end > start && self.pending[end - 1].is_ascii_whitespace() {
                    end -= 1;
                }
                let n = self.pending.len();
                self.emit(start, end, n, out);
            }
        }
    }

    fn json_array(&mut self, out: &mut Vec<Frame>, at_end: bool) {
        let mut st = self.json;
        let mut i = st.pos;
        while i < self.pending.len() {
            let b = self.pending[i];
            if st.not_array || st.closed {
                break;
            }
            if !st.opened {
                if b.is_ascii_whitespace() || (i == 0 && self.base == 0 && b == 0xEF) {
                    i += 1;
                    continue;
                }
                if b == b'[' {
                    st.opened = true;
                    i += 1;
                    self.json = JsonState { pos: i, ..st };
                    self.consume(i);
                    st = self.json;
                    st.pos = 0;
                    i = 0;
                    continue;
                }
                st.not_array = true;
                break;
            }
            if st.in_string {
                if st.escaped {
                    st.escaped = false;
                } else if b == b'\\' {
                    st.escaped = true;
                } else if b == b'"' {
                    st.in_string = false;
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    st.in_string = true;
                    st.elem_start.get_or_insert(i);
                }
                b'{' | b'[' => {
                    st.depth += 1;
                    st.elem_start.get_or_insert(i);
                }
                b'}' | b']' if st.depth > 0 => st.depth -= 1,
                b']' => {
                    // End of the top-level array.
                    if let Some(s) = st.elem_start.take() {
                        let end = trim_end(&self.pending, s, i);
                        self.json = JsonState { pos: 0, ..st };
                        self.emit(s, end, i + 1, out);
                    } else {
                        self.consume(i + 1);
                    }
                    st = self.json;
                    st.closed = true;
                    st.elem_start = None;
                    i = 0;
                    continue;
                }
                b',' if st.depth == 0 => {
                    if let Some(s) = st.elem_start.take() {
                        let end = trim_end(&self.pending, s, i);
                        self.json = JsonState { pos: 0, ..st };
                        self.emit(s, end, i + 1, out);
                        st = self.json;
                        st.elem_start = None;
                    } else {
                        self.consume(i + 1);
                    }
                    i = 0;
                    continue;
                }
                c if c.is_ascii_whitespace() => {}
                _ => {
                    st.elem_start.get_or_insert(i);
                }
            }
            i += 1;
            if let Some(s) = st.elem_start
                && i - s >= MAX_RECORD
            {
                self.json = JsonState { pos: 0, ..st };
                self.emit(s, i, i, out);
                st = self.json;
                st.elem_start = Some(0);
                i = 0;
            }
        }
        st.pos = i;
        self.json = st;
        if (st.not_array || st.closed) && !self.pending.is_empty() {
            // Content outside the array: kept, as lines, for its decoder to report.
            if self.pending.iter().all(u8::is_ascii_whitespace) {
                let n = self.pending.len();
                self.consume(n);
            } else if at_end || self.pending.len() >= MAX_RECORD {
                let n = self.pending.len();
                let end = trim_end(&self.pending, 0, n);
                let start = self
                    .pending
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                self.emit(start, end.max(start), n, out);
            }
        } else if at_end && !self.pending.is_empty() {
            // An array that never closed: the open element (if any) is the last record.
            let n = self.pending.len();
            let start = st.elem_start.unwrap_or(0);
            let end = trim_end(&self.pending, start, n);
            if end > start {
                self.emit(start, end, n, out);
            } else {
                self.consume(n);
            }
        }
    }
}

/// What the XML framer found at a position.
enum XmlStep {
    /// More bytes are needed to decide.
    Wait,
    /// Skip to this offset (a separator: prolog, comment, a pool's own tags).
    Skip(usize),
    /// A record from the position to this offset.
    Record(usize),
}

impl Framer {
    /// Top-level XML elements. Re-scans the pending unfinished element each push (an element
    /// is one VM or VNET: small; a pool's children are handed out as they complete).
    fn xml(&mut self, out: &mut Vec<Frame>, at_end: bool) {
        loop {
            let Some(i) = self.pending.iter().position(|b| !b.is_ascii_whitespace()) else {
                let n = self.pending.len();
                self.consume(n);
                return;
            };
            let step = self.xml_step(i);
            match step {
                XmlStep::Skip(to) => self.consume(to),
                XmlStep::Record(end) => {
                    let e = trim_end(&self.pending, i, end);
                    self.emit(i, e, end, out);
                }
                XmlStep::Wait => {
                    let n = self.pending.len();
                    if at_end {
                        let e = trim_end(&self.pending, i, n);
                        self.emit(i, e, n, out);
                    } else if n - i >= MAX_RECORD {
                        self.emit(i, i + MAX_RECORD, i + MAX_RECORD, out);
                        continue;
                    }
                    return;
                }
            }
        }
    }

    fn xml_step(&mut self, i: usize) -> XmlStep {
        let b = &self.pending;
        let rest = &b[i..];
        if rest[0] != b'<' {
            // Text outside any element: a record of its own up to the next tag.
            return match memchr::memchr(b'<', rest) {
                Some(j) => XmlStep::Record(i + j),
                None => XmlStep::Wait,
            };
        }
        for (open, close) in [(&b"<?"[..], &b"?>"[..]), (b"<!--", b"-->")] {
            if rest.len() < open.len() && open.starts_with(rest) {
                return XmlStep::Wait;
            }
            if rest.starts_with(open) {
                return match memchr::memmem::find(&rest[open.len()..], close) {
                    Some(j) => XmlStep::Skip(i + open.len() + j + close.len()),
                    None => XmlStep::Wait,
                };
            }
        }
        let Some(tag_end) = xml_tag_end(b, i) else {
            return XmlStep::Wait;
        };
        let name = xml_tag_name(&b[i..tag_end]);
        let is_pool = name.ends_with(b"_POOL");
        let self_closing = tag_end >= 2 && b[tag_end - 2] == b'/';
        if rest.get(1) == Some(&b'/') {
            if is_pool && self.xml_in_pool {
                self.xml_in_pool = false;
                return XmlStep::Skip(tag_end);
            }
            // A stray closing tag: kept, for the decoder to report.
            return XmlStep::Record(tag_end);
        }
        if is_pool && !self.xml_in_pool && !self_closing {
            self.xml_in_pool = true;
            return XmlStep::Skip(tag_end);
        }
        match xml_element_end(b, i) {
            Some(e) => XmlStep::Record(e),
            None => XmlStep::Wait,
        }
    }
}

/// The offset just past the `>` ending the tag that starts at `i` (quoted attribute values
/// may hold `>`), or None when the buffer ends first.
fn xml_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (k, &c) in b.iter().enumerate().skip(i + 1) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => return Some(k + 1),
            None => {}
        }
    }
    None
}

/// The element name of a tag's bytes (`<NAME attr>`, `</NAME>`).
fn xml_tag_name(tag: &[u8]) -> &[u8] {
    let start = tag
        .iter()
        .position(|&c| c != b'<' && c != b'/')
        .unwrap_or(tag.len());
    let end = tag[start..]
        .iter()
        .position(|&c| c.is_ascii_whitespace() || c == b'>' || c == b'/')
        .map_or(tag.len(), |e| start + e);
    &tag[start..end]
}

/// The offset just past the end of the element starting at `i` (nested elements, comments,
/// CDATA and processing instructions skipped), or None when the buffer ends first. Depth is
/// only counted, never recursed into, so a deep document costs no stack.
fn xml_element_end(b: &[u8], i: usize) -> Option<usize> {
    let mut depth: u64 = 0;
    let mut at = i;
    loop {
        let lt = at + memchr::memchr(b'<', &b[at..])?;
        let rest = &b[lt..];
        let mut skipped = false;
        for (open, close) in [
            (&b"<!--"[..], &b"-->"[..]),
            (b"<![CDATA[", b"]]>"),
            (b"<?", b"?>"),
        ] {
            if rest.len() < open.len() && open.starts_with(rest) {
                return None;
            }
            if rest.starts_with(open) {
                let j = memchr::memmem::find(&rest[open.len()..], close)?;
                at = lt + open.len() + j + close.len();
                skipped = true;
                break;
            }
        }
        if skipped {
            continue;
        }
        let end = xml_tag_end(b, lt)?;
        if rest.get(1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return Some(end);
            }
        } else if rest.get(1) == Some(&b'!') || b[end - 2] == b'/' {
            if depth == 0 {
                return Some(end);
            }
        } else {
            depth += 1;
        }
        at = end;
    }
}

impl Framer {
    /// Emit `pending[start..end]`, consume through `consumed`, and rescan from 0.
    fn scim_emit(
        &mut self,
        st: &mut ScimState,
        start: usize,
        end: usize,
        consumed: usize,
        out: &mut Vec<Frame>,
    ) {
        let end = trim_end(&self.pending, start, end);
        if end > start {
            self.emit(start, end, consumed, out);
        } else {
            self.consume(consumed);
        }
        st.pos = 0;
        st.start = None;
    }

    /// The SCIM framer: a hand-written scanner (no JSON library streams *into* one member's
    /// array while keeping every other byte), resumable across pushes like `json_array`.
    fn scim(&mut self, out: &mut Vec<Frame>, at_end: bool) {
        let mut st = self.scim;
        let mut i = st.pos;
        while i < self.pending.len() {
            let b = self.pending[i];
            if st.in_string {
                if st.escaped {
                    st.escaped = false;
                } else if b == b'\\' {
                    st.escaped = true;
                } else if b == b'"' {
                    st.in_string = false;
                    if let ScimKey::In(k) = st.key {
                        st.key = ScimKey::After(&self.pending[k + 1..i] == b"Resources");
                    }
                }
                i += 1;
                continue;
            }
            match st.top {
                ScimTop::Outside => match b {
                    b'{' => {
                        st.top = ScimTop::Object;
                        st.key = ScimKey::Expect;
                        st.depth = 1;
                        st.start = Some(i);
                    }
                    b'[' => {
                        st.top = ScimTop::Array;
                        st.depth = 1;
                        self.consume(i + 1);
                        i = 0;
                        continue;
                    }
                    c if c.is_ascii_whitespace() || (c == b',') => {}
                    // A byte-order mark: the file's first three bytes, by their offset in the
                    // file, not in what this push holds (a mark split across pushes framed
                    // differently from a whole one: fuzz target `framing`).
                    0xEF | 0xBB | 0xBF if self.base + (i as u64) < 3 => {}
                    _ => {
                        st.top = ScimTop::Junk;
                        st.start = Some(i);
                    }
                },
                ScimTop::Junk => {
                    if b == b'\n' {
                        let s = st.start.unwrap_or(0);
                        let end = if i > s && self.pending[i - 1] == b'\r' {
                            i - 1
                        } else {
                            i
                        };
                        st.top = ScimTop::Outside;
                        self.scim_emit(&mut st, s, end, i + 1, out);
                        i = 0;
                        continue;
                    }
                }
                ScimTop::Object => match b {
                    b'"' => {
                        st.in_string = true;
                        if st.depth == 1 && st.key == ScimKey::Expect {
                            st.key = ScimKey::In(i);
                        } else if st.depth == 1 {
                            st.key = ScimKey::Value;
                        }
                    }
                    b':' if st.depth == 1 => {
                        if let ScimKey::After(r) = st.key {
                            st.key = ScimKey::Colon(r);
                        }
                    }
                    b',' if st.depth == 1 => st.key = ScimKey::Expect,
                    b'[' if st.depth == 1 && st.key == ScimKey::Colon(true) => {
                        // The head: `{` … `"Resources": [`.
                        let s = st.start.unwrap_or(0);
                        st.top = ScimTop::Resources;
                        st.depth = 2;
                        self.scim_emit(&mut st, s, i + 1, i + 1, out);
                        i = 0;
                        continue;
                    }
                    b'{' | b'[' => {
                        if st.depth == 1 {
                            st.key = ScimKey::Value;
                        }
                        st.depth += 1;
                    }
                    b'}' | b']' => {
                        st.depth = st.depth.saturating_sub(1);
                        if st.depth == 0 {
                            let s = st.start.unwrap_or(0);
                            st.top = ScimTop::Outside;
                            self.scim_emit(&mut st, s, i + 1, i + 1, out);
                            i = 0;
                            continue;
                        }
                    }
                    c if c.is_ascii_whitespace() => {}
                    _ => {
                        if st.depth == 1 && matches!(st.key, ScimKey::Colon(_)) {
                            st.key = ScimKey::Value;
                        }
                    }
                },
                ScimTop::Resources | ScimTop::Array => {
                    let level = if st.top == ScimTop::Resources { 2 } else { 1 };
                    match b {
                        b'"' => {
                            st.in_string = true;
                            st.start.get_or_insert(i);
                        }
                        b'{' | b'[' => {
                            st.depth += 1;
                            st.start.get_or_insert(i);
                        }
                        b',' if st.depth == level => {
                            match st.start {
                                Some(s) => self.scim_emit(&mut st, s, i, i + 1, out),
                                None => {
                                    self.consume(i + 1);
                                    st.pos = 0;
                                }
                            }
                            i = 0;
                            continue;
                        }
                        b']' if st.depth == level => {
                            if let Some(s) = st.start {
                                self.scim_emit(&mut st, s, i, i, out);
                            } else {
                                self.consume(i);
                                st.pos = 0;
                            }
                            if st.top == ScimTop::Resources {
                                // The tail: `]` … `}`.
                                st.top = ScimTop::Object;
                                st.key = ScimKey::Value;
                                st.depth = 1;
                                st.start = Some(0);
                                i = 1;
                            } else {
                                st.top = ScimTop::Outside;
                                st.depth = 0;
                                self.consume(1);
                                i = 0;
                            }
                            continue;
                        }
                        b'}' | b']' => st.depth = st.depth.saturating_sub(1),
                        c if c.is_ascii_whitespace() => {}
                        _ => {
                            st.start.get_or_insert(i);
                        }
                    }
                }
            }
            i += 1;
            if let Some(s) = st.start
                && i - s >= MAX_RECORD
            {
                self.emit(s, i, i, out);
                st.start = Some(0);
                i = 0;
            }
        }
        st.pos = i;
        if at_end {
            let n = self.pending.len();
            let s = st.start.unwrap_or(0);
            let s = (s..n)
                .find(|&k| !self.pending[k].is_ascii_whitespace())
                .unwrap_or(n);
            self.scim_emit(&mut st, s, n, n, out);
            st = ScimState::default();
        } else if st.start.is_none() && st.top == ScimTop::Outside {
            // Only separators so far: framed.
            let n = self.pending.len();
            self.consume(n);
            st.pos = 0;
        }
        self.scim = st;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

fn count_lines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame `input` fed in chunks of every size from 1 to 7 and whole: the result must not
    /// depend on how the bytes arrived.
    fn frames(framing: Framing, input: &[u8]) -> Vec<(String, u64, u64)> {
        let mut reference = None;
        for chunk in [1usize, 2, 3, 5, 7, input.len().max(1)] {
            let mut f = Framer::new(framing);
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                f.push(c, &mut out);
            }
            f.finish(&mut out);
            let got: Vec<(String, u64, u64)> = out
                .into_iter()
                .map(|fr| {
                    (
                        String::from_utf8_lossy(&fr.raw).into_owned(),
                        fr.line,
                        fr.end,
                    )
                })
                .collect();
            assert_eq!(
                f.framed_offset(),
                input.len() as u64,
                "chunk {chunk}: all framed"
            );
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_eq!(&got, r, "chunk size {chunk} changed the framing"),
            }
        }
        reference.unwrap_or_default()
    }

    #[test]
    fn lines_keep_cr_and_a_last_line_without_terminator() {
        assert_eq!(
            frames(Framing::Lines, b"a\r\nbb\n\nc"),
            [
                ("a\r".into(), 1, 3),
                ("bb".into(), 2, 6),
                ("".into(), 3, 7),
                ("c".into(), 4, 8)
            ]
        );
    }

    #[test]
    fn json_array_elements_with_nested_brackets_and_strings() {
        let input = br#"[
  {"ID": "u1", "Name": "a,]}b", "x": [1, {"y": "\"]"}]},
  {"ID": "u2"}
]
"#;
        assert_eq!(
            frames(Framing::JsonArray, input),
            [
                (
                    r#"{"ID": "u1", "Name": "a,]}b", "x": [1, {"y": "\"]"}]}"#.into(),
                    2,
                    58
                ),
                (r#"{"ID": "u2"}"#.into(), 3, 75),
            ]
        );
    }

    #[test]
    fn json_that_is_not_an_array_is_one_record_and_an_empty_array_none() {
        assert_eq!(
            frames(Framing::JsonArray, b"  {\"a\": 1}\n"),
            [("{\"a\": 1}".into(), 1, 11)]
        );
        assert!(frames(Framing::JsonArray, b"[ ]\n").is_empty());
        assert_eq!(
            frames(Framing::JsonArray, b"[{\"a\":1}, {\"b\""),
            [("{\"a\":1}".into(), 1, 9), ("{\"b\"".into(), 1, 14)]
        );
        assert_eq!(
            frames(Framing::JsonArray, b"[1,2] trailing"),
            [
                ("1".into(), 1, 3),
                ("2".into(), 1, 5),
                ("trailing".into(), 1, 14)
            ]
        );
    }

    /// RFC 7644 §3.4.2 ListResponse, as INDIGO IAM's `ScimListResponse` serialises it
    /// (iam-login-service …/api/scim/model/ScimListResponse.java): head, resources, tail.
    #[test]
    fn a_byte_order_mark_split_across_pushes_frames_as_a_whole_one() {
        // `frames` requires every chunking (1, 2, 3, 5, 7 bytes, whole) to frame alike.
        let got: Vec<String> = frames(
            Framing::ScimList,
            b"\xEF\xBB\xBF{\"id\": \"u1\"}\n\xEF\xEF\xEF\xEF[{\"id\": \"u2\"}]\n",
        )
        .into_iter()
        .map(|(r, _, _)| r)
        .collect();
        assert_eq!(got[0], r#"{"id": "u1"}"#);
        // After the file's first three bytes, those bytes are text like any other.
        assert!(got[1].starts_with('\u{fffd}'), "{got:?}");
    }

    #[test]
    fn scim_list_response_is_cut_into_head_resources_and_tail() {
        let input = br#"{"totalResults": 2, "itemsPerPage": 2, "startIndex": 1,
 "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
 "Resources": [
  {"id": "u1", "userName": "a,]}b", "groups": [{"display": "x"}]},
  {"id": "u2"}
 ], "x": "Resources"}
{"id": "u3", "userName": "alone"}
[{"id": "u4"}, {"id": "u5"}]
not json
"#;
        let got: Vec<String> = frames(Framing::ScimList, input)
            .into_iter()
            .map(|(r, _, _)| r)
            .collect();
        assert_eq!(
            got,
            [
                "{\"totalResults\": 2, \"itemsPerPage\": 2, \"startIndex\": 1,\n \"schemas\": [\"urn:ietf:params:scim:api:messages:2.0:ListResponse\"],\n \"Resources\": [",
                r#"{"id": "u1", "userName": "a,]}b", "groups": [{"display": "x"}]}"#,
                r#"{"id": "u2"}"#,
                r#"], "x": "Resources"}"#,
                r#"{"id": "u3", "userName": "alone"}"#,
                r#"{"id": "u4"}"#,
                r#"{"id": "u5"}"#,
                "not json",
            ]
        );
        // A page cut short: what was read is kept.
        let got: Vec<String> = frames(Framing::ScimList, br#"{"Resources": [{"id": "u1"}, {"id""#)
            .into_iter()
            .map(|(r, _, _)| r)
            .collect();
        assert_eq!(got, [r#"{"Resources": ["#, r#"{"id": "u1"}"#, r#"{"id""#]);
    }

    #[test]
    fn classad_blocks_split_on_blank_lines() {
        let input = b"\nA = 1\nB = \"x\"\n\n\nC = 2\r\n\r\nD = 3";
        assert_eq!(
            frames(Framing::Blocks, input),
            [
                ("A = 1\nB = \"x\"".into(), 2, 16),
                ("C = 2\r".into(), 6, 26),
                ("D = 3".into(), 8, 31)
            ]
        );
    }

    #[test]
    fn userlog_events_end_with_their_terminator_line() {
        let input = b"000 (1.0.0) 01/02 03:04:05 Job submitted\n\tfrom host\n...\n001 (1.0.0) x\n...\ntrailing";
        assert_eq!(
            frames(Framing::Terminated(b"..."), input),
            [
                (
                    "000 (1.0.0) 01/02 03:04:05 Job submitted\n\tfrom host\n...".into(),
                    1,
                    56
                ),
                ("001 (1.0.0) x\n...".into(), 4, 74),
                ("trailing".into(), 6, 82),
            ]
        );
    }

    #[test]
    fn xml_pools_are_cut_per_child_and_documents_per_document() {
        // `onevm list -x` (one VM_POOL), then a hook's VM document, a comment, a quoted `>`,
        // CDATA holding a fake close tag, and stray text: every byte framed, nothing lost.
        let input = b"<?xml version=\"1.0\"?>\n<VM_POOL>\n  <VM><ID>1</ID><T a=\"x>y\"/></VM>\n  <VM><ID>2</ID></VM>\n</VM_POOL>\n<!-- next -->\n<VM><ID>3</ID><C><![CDATA[</VM>]]></C></VM>\njunk\n<VNET><AR_POOL><AR/></AR_POOL></VNET>";
        assert_eq!(
            frames(Framing::Xml, input),
            [
                ("<VM><ID>1</ID><T a=\"x>y\"/></VM>".into(), 3, 65),
                ("<VM><ID>2</ID></VM>".into(), 4, 87),
                ("<VM><ID>3</ID><C><![CDATA[</VM>]]></C></VM>".into(), 7, 156),
                ("junk".into(), 8, 162),
                ("<VNET><AR_POOL><AR/></AR_POOL></VNET>".into(), 9, 199),
            ]
        );
        // An element that never closes is the last record, whole.
        assert_eq!(
            frames(Framing::Xml, b"<VM><ID>4</ID>"),
            [("<VM><ID>4</ID>".into(), 1, 14)]
        );
    }
}
