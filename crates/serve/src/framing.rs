//! Syslog stream framing (RFC 6587): octet counting and LF (non-transparent) framing,
//! decided per frame, sans I/O.
//!
//! A TCP or TLS syslog stream is fed in with [`StreamFramer::push`] and cut into frames with
//! [`StreamFramer::next_frame`]. At each frame start a digit means octet counting
//! (`LEN SP MSG`, what rsyslog's `TCP_Framing="octet-counted"`, `logger --octet-count` and
//! `loggen -P` send); anything else means one message per LF (what `logger` and rsyslog send
//! by default). Deciding per frame rather than per connection costs nothing and also survives
//! a sender that changes its mind (or garbage in front of the first frame).
//!
//! Nothing is dropped: bytes that are not a well-formed frame (garbage, an octet count larger
//! than [`MAX_FRAME`], a count not followed by a space) come out as [`Frame`]s with a
//! [`FrameIssue`], so the caller stores them raw and counts them. A LF-framed message longer
//! than [`MAX_FRAME`] is cut into consecutive frames, not truncated. What remains at the end
//! of the stream (a half frame when the sender stalled or vanished) is returned by
//! [`StreamFramer::finish`], marked incomplete.
//!
//! Frame content excludes the framing: the `LEN SP` prefix, and one trailing LF (rsyslog's
//! `RSYSLOG_SyslogProtocol23Format` and `loggen -P` put the message's LF *inside* the octet
//! count; LF framing ends every message with one).

use memchr::memchr;

/// Largest frame accepted, in bytes. rsyslog's default `maxMessageSize` is 8 KiB and
/// librelp's 128 KiB; 1 MiB leaves room for big OpenStack payloads forwarded as syslog and
/// still bounds what one connection can make us buffer.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Digits allowed in an octet count (`1048576` has 7).
const MAX_COUNT_DIGITS: usize = 7;

/// Why a frame is not a clean message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameIssue {
    /// An octet count above [`MAX_FRAME`] (or with too many digits): the line is kept raw and
    /// framing resumes after its LF.
    CountTooLarge,
    /// A LF-framed message longer than [`MAX_FRAME`]: this is one piece of it.
    Split,
    /// The stream ended (EOF, timeout, reset) inside a frame: what had arrived.
    Incomplete,
}

impl FrameIssue {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameIssue::CountTooLarge => "octet count too large",
            FrameIssue::Split => "over-long message split",
            FrameIssue::Incomplete => "stream ended inside a frame",
        }
    }
}

/// How a frame was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    OctetCounted,
    Lf,
}

/// One message cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    pub framing: Framing,
    pub issue: Option<FrameIssue>,
    /// Bytes of the stream this frame consumed (content plus framing).
    pub wire_bytes: usize,
}

/// The streaming framer of one connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf` (compacted on push).
    pos: usize,
}

enum Head {
    /// `LEN SP` parsed: content length and prefix length.
    Count(usize, usize),
    /// Starts with digits that are not a usable count and should be taken as a LF line.
    NotCount,
    /// Count too large: swallow the line.
    TooLarge,
    /// Need more bytes to decide.
    More,
}

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || self.pos > 64 * 1024) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn head(&self) -> Head {
        let data = &self.buf[self.pos..];
        let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == data.len() {
            // All digits so far: a count whose space has not arrived, or a line of digits.
            return if digits > MAX_COUNT_DIGITS {
                Head::TooLarge
            } else {
                Head::More
            };
        }
        if data[digits] != b' ' {
            return Head::NotCount;
        }
        if digits > MAX_COUNT_DIGITS {
            return Head::TooLarge;
        }
        let mut n: usize = 0;
        for &d in &data[..digits] {
            n = n * 10 + usize::from(d - b'0');
        }
        if n > MAX_FRAME {
            Head::TooLarge
        } else if n == 0 {
            // `0 ` is not a message; treat the line as LF-framed text.
            Head::NotCount
        } else {
            Head::Count(n, digits + 1)
        }
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let first = self.buf[self.pos];
        if first.is_ascii_digit() {
            match self.head() {
                Head::Count(n, prefix) => {
                    let start = self.pos + prefix;
                    if self.buf.len() - start < n {
                        return None;
                    }
                    let mut data = &self.buf[start..start + n];
                    if let [rest @ .., b'\n'] = data {
                        data = rest;
                    }
                    let frame = Frame {
                        data: data.to_vec(),
                        framing: Framing::OctetCounted,
                        issue: None,
                        wire_bytes: prefix + n,
                    };
                    self.pos = start + n;
                    return Some(frame);
                }
                Head::More => return None,
                Head::TooLarge => return self.lf_frame(Some(FrameIssue::CountTooLarge)),
                Head::NotCount => {}
            }
        }
        self.lf_frame(None)
    }

    fn lf_frame(&mut self, issue: Option<FrameIssue>) -> Option<Frame> {
        let data = &self.buf[self.pos..];
        let limit = data.len().min(MAX_FRAME + 1);
        match memchr(b'\n', &data[..limit]) {
            Some(i) => {
                let mut line = &data[..i];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                let frame = Frame {
                    data: line.to_vec(),
                    framing: Framing::Lf,
                    issue,
                    wire_bytes: i + 1,
                };
                self.pos += i + 1;
                Some(frame)
            }
            None if data.len() > MAX_FRAME => {
                let frame = Frame {
                    data: data[..MAX_FRAME].to_vec(),
                    framing: Framing::Lf,
                    issue: Some(issue.unwrap_or(FrameIssue::Split)),
                    wire_bytes: MAX_FRAME,
                };
                self.pos += MAX_FRAME;
                Some(frame)
            }
            None => None,
        }
    }

    /// The stream ended: whatever is buffered, as one incomplete frame (`None` if nothing).
    pub fn finish(&mut self) -> Option<Frame> {
        let data = &self.buf[self.pos..];
        if data.is_empty() {
            return None;
        }
        let frame = Frame {
            data: data.to_vec(),
            framing: if data[0].is_ascii_digit() {
                Framing::OctetCounted
            } else {
                Framing::Lf
            },
            issue: Some(FrameIssue::Incomplete),
            wire_bytes: data.len(),
        };
        self.buf.clear();
        self.pos = 0;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<(Vec<u8>, Option<FrameIssue>)> {
        let mut f = StreamFramer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(fr) = f.next_frame() {
                out.push((fr.data, fr.issue));
            }
        }
        out.extend(f.finish().map(|fr| (fr.data, fr.issue)));
        out
    }

    fn text(v: &[(Vec<u8>, Option<FrameIssue>)]) -> Vec<(String, Option<FrameIssue>)> {
        v.iter()
            .map(|(d, i)| (String::from_utf8_lossy(d).into_owned(), *i))
            .collect()
    }

    #[test]
    fn rsyslog_omfwd_octet_counted_counts_the_lf() {
        // PEERS.md: RSYSLOG_SyslogProtocol23Format puts the LF inside the count.
        let wire = b"12 <13>1 - a b\n11 <13>1 - cd\n";
        assert_eq!(
            text(&frames(&[wire])),
            vec![("<13>1 - a b".into(), None), ("<13>1 - cd".into(), None)]
        );
    }

    #[test]
    fn logger_octet_count_has_no_lf_between_frames() {
        let wire = b"5 hello5 world";
        assert_eq!(
            text(&frames(&[wire])),
            vec![("hello".into(), None), ("world".into(), None)]
        );
    }

    #[test]
    fn lf_framing_and_crlf() {
        assert_eq!(
            text(&frames(&[b"<13>a\r\n<13>b\n"])),
            vec![("<13>a".into(), None), ("<13>b".into(), None)]
        );
    }

    #[test]
    fn garbage_before_a_frame_is_kept_as_its_own_record() {
        assert_eq!(
            text(&frames(&[b"\x00\xffjunk\n5 hello"])),
            vec![("\u{0}\u{fffd}junk".into(), None), ("hello".into(), None)]
        );
    }

    #[test]
    fn absurd_count_is_kept_raw_and_framing_resumes() {
        let out = text(&frames(&[b"99999999999 <13>x\n5 hello"]));
        assert_eq!(
            out,
            vec![
                ("99999999999 <13>x".into(), Some(FrameIssue::CountTooLarge)),
                ("hello".into(), None)
            ]
        );
        let out = text(&frames(&[b"2000000 <13>x\n"]));
        assert_eq!(out[0].1, Some(FrameIssue::CountTooLarge));
    }

    #[test]
    fn half_frame_at_the_end_is_returned_incomplete() {
        let out = text(&frames(&[b"5 hello", b"10 <13>1", b" -"]));
        assert_eq!(
            out,
            vec![
                ("hello".into(), None),
                ("10 <13>1 -".into(), Some(FrameIssue::Incomplete))
            ]
        );
    }

    #[test]
    fn digits_without_space_are_a_line() {
        assert_eq!(text(&frames(&[b"12345\n"])), vec![("12345".into(), None)]);
    }

    #[test]
    fn overlong_lf_message_is_split_not_lost() {
        let big = vec![b'a'; MAX_FRAME + 10];
        let mut wire = big.clone();
        wire.push(b'\n');
        let out = frames(&[&wire]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, Some(FrameIssue::Split));
        assert_eq!(out[0].0.len() + out[1].0.len(), big.len());
    }

    #[test]
    fn chunking_does_not_change_framing() {
        let wire: &[u8] = b"12 <13>1 - a b\nplain line\n5 hello7 x\ny\nz\nlast";
        let whole = frames(&[wire]);
        for cut in 1..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(frames(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(frames(&bytes), whole);
    }
}
