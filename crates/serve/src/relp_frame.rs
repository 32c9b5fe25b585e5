//! RELP frames (what librelp, rsyslog's omrelp, speaks), sans I/O.
//!
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`: TXNR 1–9 digits, COMMAND 1–32 ASCII letters
//! (`open`, `syslog`, `close`, `rsp`, `serverclose`), DATALEN 1–9 digits, DATA exactly DATALEN
//! bytes. [`RelpParser`] buffers a stream and returns whole frames; a malformed header is a
//! [`RelpError`] after which the stream cannot be resynchronised (RELP has no frame marker),
//! so the session must end. The unparsed bytes are handed back by [`RelpParser::take_rest`]
//! so they are stored raw, not lost.

use thiserror::Error;

/// Largest DATALEN accepted. librelp's default maximum message size is 128 KiB; the cap keeps
/// one connection from making us buffer without bound.
pub const MAX_DATA: usize = 1024 * 1024;

const MAX_TXNR_DIGITS: usize = 9;
const MAX_COMMAND: usize = 32;
const MAX_LEN_DIGITS: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpFrame {
    pub txnr: u64,
    pub command: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelpError {
    #[error("invalid transaction number")]
    Txnr,
    #[error("invalid command")]
    Command,
    #[error("invalid data length")]
    DataLen,
    /// Not fatal: the parser skips the frame's data (as it arrives) and goes on with the
    /// next frame, so the session answers this one with an error `rsp` and continues.
    #[error("data length {len} above the cap of {MAX_DATA}")]
    TooLarge { txnr: u64, len: usize },
    #[error("frame not terminated by LF")]
    Trailer,
}

#[derive(Debug, Default)]
pub struct RelpParser {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of an oversized frame still to be discarded as they arrive.
    skip: usize,
}

/// Parse `digits` starting at `i`, ending at a space (or LF if `lf_ok`). Returns value and
/// the index of the terminator, `Ok(None)` if more bytes are needed.
fn number(
    b: &[u8],
    i: usize,
    max_digits: usize,
    err: RelpError,
    lf_ok: bool,
) -> Result<Option<(u64, usize)>, RelpError> {
    let mut n: u64 = 0;
    let mut j = i;
    loop {
        let Some(&c) = b.get(j) else {
            return if j - i > max_digits {
                Err(err)
            } else {
                Ok(None)
            };
        };
        if c.is_ascii_digit() {
            if j - i >= max_digits {
                return Err(err);
            }
            n = n * 10 + u64::from(c - b'0');
            j += 1;
        } else if (c == b' ' || (lf_ok && c == b'\n')) && j > i {
            return Ok(Some((n, j)));
        } else {
            return Err(err);
        }
    }
}

impl RelpParser {
    pub fn new() -> RelpParser {
        RelpParser::default()
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let k = self.skip.min(bytes.len());
            self.skip -= k;
            bytes = &bytes[k..];
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<RelpFrame>, RelpError> {
        let b = &self.buf[self.pos..];
        if b.is_empty() {
            return Ok(None);
        }
        let Some((txnr, sp)) = number(b, 0, MAX_TXNR_DIGITS, RelpError::Txnr, false)? else {
            return Ok(None);
        };
        let cmd_start = sp + 1;
        let mut j = cmd_start;
        loop {
            match b.get(j) {
                None => {
                    return if j - cmd_start > MAX_COMMAND {
                        Err(RelpError::Command)
                    } else {
                        Ok(None)
                    };
                }
                Some(c) if c.is_ascii_alphabetic() && j - cmd_start < MAX_COMMAND => j += 1,
                Some(b' ') if j > cmd_start => break,
                Some(_) => return Err(RelpError::Command),
            }
        }
        // The command is ASCII letters only, so this is valid UTF-8.
        let command = String::from_utf8_lossy(&b[cmd_start..j]).into_owned();
        let Some((len, term)) = number(b, j + 1, MAX_LEN_DIGITS, RelpError::DataLen, true)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| RelpError::DataLen)?;
        if len > MAX_DATA && b[term] == b' ' {
            // Skip its data and the trailing LF: what is here now, the rest as it comes.
            let here = (b.len() - (term + 1)).min(len + 1);
            self.pos += term + 1 + here;
            self.skip = len + 1 - here;
            return Err(RelpError::TooLarge { txnr, len });
        }
        let (data_start, end) = if b[term] == b'\n' {
            if len != 0 {
                return Err(RelpError::DataLen);
            }
            (term, term)
        } else {
            (term + 1, term + 1 + len)
        };
        if b.len() <= end {
            return Ok(None);
        }
        if b[end] != b'\n' {
            return Err(RelpError::Trailer);
        }
        let frame = RelpFrame {
            txnr,
            command,
            data: b[data_start..end].to_vec(),
        };
        self.pos += end + 1;
        Ok(Some(frame))
    }

    /// Everything not yet returned as a frame (after an error or at the end of the stream).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.pos..].to_vec();
        self.buf.clear();
        self.pos = 0;
        rest
    }
}

/// Encode a response frame: `TXNR rsp LEN DATA\n` (or `TXNR rsp 0\n`).
pub fn encode(out: &mut Vec<u8>, txnr: u64, command: &str, data: &[u8]) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{txnr} {command} {}", data.len());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<RelpFrame>, Option<RelpError>) {
        let mut p = RelpParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c);
            loop {
                match p.next_frame() {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    // Exactly what rsyslog 8.2302 / librelp 1.11 sent (PEERS.md §1).
    const LIBRELP_SESSION: &[u8] = b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n2 syslog 12 <13>1 - x y\n\n4 close 0\n";

    #[test]
    fn librelp_session() {
        let (frames, err) = parse_all(&[LIBRELP_SESSION]);
        assert_eq!(err, None);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].command, "open");
        assert!(frames[0].data.starts_with(b"relp_version=0\n"));
        assert_eq!(frames[1].txnr, 2);
        assert_eq!(frames[1].data, b"<13>1 - x y\n");
        assert_eq!(frames[2].command, "close");
        assert!(frames[2].data.is_empty());
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        let chunks: Vec<&[u8]> = LIBRELP_SESSION.chunks(1).collect();
        assert_eq!(parse_all(&chunks), parse_all(&[LIBRELP_SESSION]));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for (wire, e) in [
            (&b"x open 0\n"[..], RelpError::Txnr),
            (b"1 op3n 0\n", RelpError::Command),
            (b"1 syslog 99999999999 x\n", RelpError::DataLen),
            (
                b"1 syslog 2000000 x",
                RelpError::TooLarge {
                    txnr: 1,
                    len: 2_000_000,
                },
            ),
            (b"1 syslog 3 abcX", RelpError::Trailer),
            (b"1234567890 syslog 1 a\n", RelpError::Txnr),
        ] {
            assert_eq!(
                parse_all(&[wire]).1,
                Some(e),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_skipped_and_the_next_one_parses() {
        let big = MAX_DATA + 10;
        let mut wire = format!("2 syslog {big} ").into_bytes();
        wire.resize(wire.len() + big, b'x');
        wire.extend_from_slice(b"\n3 syslog 3 abc\n");
        for chunk in [7usize, 4096, wire.len()] {
            let mut p = RelpParser::new();
            let mut frames = Vec::new();
            let mut errors = Vec::new();
            for c in wire.chunks(chunk) {
                p.push(c);
                loop {
                    match p.next_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(e) => errors.push(e),
                    }
                }
            }
            assert_eq!(errors, vec![RelpError::TooLarge { txnr: 2, len: big }]);
            assert_eq!(frames.len(), 1, "chunk {chunk}");
            assert_eq!((frames[0].txnr, &frames[0].data[..]), (3, &b"abc"[..]));
            assert_eq!(p.buffered(), 0);
        }
    }

    #[test]
    fn encode_rsp() {
        let mut v = Vec::new();
        encode(&mut v, 7, "rsp", b"200 OK");
        encode(&mut v, 0, "serverclose", b"");
        assert_eq!(v, b"7 rsp 6 200 OK\n0 serverclose 0\n");
    }
}
