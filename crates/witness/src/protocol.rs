//! The `add-checkpoint` request body of C2SP `tlog-witness`, sans I/O:
//!
//! ```text
//! old 20852014
//! <base64 consistency proof hash>   (0 to 63 lines)
//!
//! <checkpoint note, with its signature lines>
//! ```

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use tlog_tiles::Hash;

/// At most this many consistency proof lines (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// The body limit the server applies (a checkpoint note is capped at 1 MB by `signed_note`).
pub const MAX_BODY: usize = 1 << 20;

/// One parsed `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness holds.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: Vec<u8>,
}

/// Why a request body is malformed (answered 400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadRequest {
    #[error("body too large")]
    TooLarge,
    #[error("the first line must be `old N` (N decimal, no leading zeroes)")]
    OldLine,
    #[error("a consistency proof line is not a base64 SHA-256 hash")]
    ProofLine,
    #[error("more than 63 consistency proof lines")]
    TooManyProofLines,
    #[error("no blank line before the checkpoint")]
    NoBlankLine,
}

impl AddCheckpoint {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, BadRequest> {
        if body.len() > MAX_BODY {
            return Err(BadRequest::TooLarge);
        }
        let mut rest = body;
        let next_line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
            let i = rest.iter().position(|&b| b == b'\n')?;
            let line = rest[..i].to_vec();
            *rest = &rest[i + 1..];
            Some(line)
        };
        let old_line = next_line(&mut rest).ok_or(BadRequest::OldLine)?;
        let old = parse_old(&old_line)?;
        let mut proof = Vec::new();
        loop {
            let line = next_line(&mut rest).ok_or(BadRequest::NoBlankLine)?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(BadRequest::TooManyProofLines);
            }
            let raw = BASE64_STANDARD
                .decode(&line)
                .map_err(|_| BadRequest::ProofLine)?;
            let h: [u8; 32] = raw.try_into().map_err(|_| BadRequest::ProofLine)?;
            proof.push(Hash(h));
        }
        Ok(Self {
            old,
            proof,
            note: rest.to_vec(),
        })
    }

    /// Encodes a request body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(BASE64_STANDARD.encode(h.0).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }
}

fn parse_old(line: &[u8]) -> Result<u64, BadRequest> {
    let digits = line.strip_prefix(b"old ").ok_or(BadRequest::OldLine)?;
    parse_decimal(digits).ok_or(BadRequest::OldLine)
}

/// A decimal with no leading zeroes (but `0` itself), as tlog-witness writes sizes.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty()
        || (digits.len() > 1 && digits[0] == b'0')
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses_and_round_trips() {
        let body = b"old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\xe2\x80\x94 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let r = AddCheckpoint::parse(body).expect("parses");
        assert_eq!(r.old, 20_852_014);
        assert_eq!(r.proof.len(), 2);
        assert!(r.note.starts_with(b"example.com/behind-the-sofa\n"));
        assert_eq!(r.encode(), body.to_vec());
    }

    #[test]
    fn malformed_bodies_are_named() {
        assert_eq!(AddCheckpoint::parse(b""), Err(BadRequest::OldLine));
        assert_eq!(
            AddCheckpoint::parse(b"old 01\n\n"),
            Err(BadRequest::OldLine)
        );
        assert_eq!(
            AddCheckpoint::parse(b"old -1\n\n"),
            Err(BadRequest::OldLine)
        );
        assert_eq!(
            AddCheckpoint::parse(b"old 99999999999999999999\n\n"),
            Err(BadRequest::OldLine)
        );
        assert_eq!(
            AddCheckpoint::parse(b"old 1\nAAAA\n\n"),
            Err(BadRequest::ProofLine)
        );
        assert_eq!(
            AddCheckpoint::parse(b"old 1\n"),
            Err(BadRequest::NoBlankLine)
        );
        let mut many = b"old 1\n".to_vec();
        for _ in 0..64 {
            many.extend_from_slice(b"PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n");
        }
        many.push(b'\n');
        assert_eq!(
            AddCheckpoint::parse(&many),
            Err(BadRequest::TooManyProofLines)
        );
        assert_eq!(AddCheckpoint::parse(b"old 0\n\n").map(|r| r.old), Ok(0));
    }
}
