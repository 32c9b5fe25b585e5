//! A blocking client of a witness: `add-checkpoint` (tlog-witness) and the latest-checkpoint
//! read (pugmark's extension, `GET <prefix>/pugmark/v1/latest/<origin>`).

use std::time::Duration;

use signed_note::{Note, Signature, Verifier as _, VerifierList};
use tlog_tiles::Checkpoint;

use crate::cosig::{CosignatureVerifier, cosignature_timestamp, parse_witness_vkey};
use crate::protocol::{AddCheckpoint, parse_decimal};

/// The path of the latest-checkpoint read, under the witness's URL prefix.
pub const LATEST_PATH: &str = "/pugmark/v1/latest/";

/// What went wrong talking to a witness.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {err}")]
    Http { url: String, err: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the answer holds no valid cosignature from {key}")]
    NoCosignature { url: String, key: String },
    #[error("{0}")]
    Key(String),
}

/// The `ClientError::Http` for a failed request or body read of `url`.
fn http_err(url: &str) -> impl Fn(ureq::Error) -> ClientError + '_ {
    move |e| ClientError::Http {
        url: url.to_owned(),
        err: e.to_string(),
    }
}

/// One witness: where it is and the key its cosignatures must verify under.
pub struct WitnessPeer {
    url: String,
    verifier: CosignatureVerifier,
    agent: ureq::Agent,
}

/// The answer to an `add-checkpoint`.
#[derive(Debug)]
pub enum Added {
    /// The witness cosigned: its verified cosignature line(s).
    Cosigned(Vec<Signature>),
    /// The witness holds another size (409): retry with a proof from it.
    Conflict(u64),
}

impl WitnessPeer {
    /// `url` is the witness's submission prefix (`http://host:port`, no trailing slash needed).
    pub fn new(url: &str, vkey: &str) -> Result<Self, ClientError> {
        let verifier = parse_witness_vkey(vkey).map_err(|e| ClientError::Key(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            verifier,
            agent,
        })
    }

    /// The witness's key name.
    pub fn key_name(&self) -> &str {
        self.verifier.name()
    }

    /// The verifier of this witness's cosignatures.
    pub fn verifier(&self) -> &CosignatureVerifier {
        &self.verifier
    }

    /// The URL prefix.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs an `add-checkpoint`; a 200 answer's cosignatures are verified against the
    /// configured key before they are returned.
    pub fn add_checkpoint(&self, req: &AddCheckpoint) -> Result<Added, ClientError> {
        let url = format!("{}/add-checkpoint", self.url);
        let mut resp = self
            .agent
            .post(&url)
            .send(&req.encode()[..])
            .map_err(http_err(&url))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .map_err(http_err(&url))?;
        match status {
            200 => {
                let sigs = cosignatures_in(&req.note, &body, &self.verifier);
                if sigs.is_empty() {
                    return Err(ClientError::NoCosignature {
                        url,
                        key: self.verifier.name().to_owned(),
                    });
                }
                Ok(Added::Cosigned(sigs))
            }
            409 => {
                let size = body
                    .strip_suffix(b"\n")
                    .and_then(parse_decimal)
                    .ok_or_else(|| ClientError::Status {
                        url: url.clone(),
                        status,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    })?;
                Ok(Added::Conflict(size))
            }
            _ => Err(ClientError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            }),
        }
    }

    /// The latest checkpoint the witness cosigned for `origin`, verified: its checkpoint and
    /// the cosignature's time. `None` if the witness holds nothing for it.
    pub fn latest(&self, origin: &str) -> Result<Option<Cosigned>, ClientError> {
        let url = format!("{}{}{}", self.url, LATEST_PATH, encode_origin(origin));
        let mut resp = self.agent.get(&url).call().map_err(http_err(&url))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(http_err(&url))?;
        match status {
            200 => {
                verify_cosigned(&body, &self.verifier)
                    .map(Some)
                    .ok_or(ClientError::NoCosignature {
                        url,
                        key: self.verifier.name().to_owned(),
                    })
            }
            404 => Ok(None),
            _ => Err(ClientError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            }),
        }
    }
}

/// A checkpoint with a verified cosignature of one witness.
#[derive(Debug)]
pub struct Cosigned {
    pub origin: String,
    pub size: u64,
    pub root: tlog_tiles::Hash,
    /// The cosignature's POSIX time.
    pub time: u64,
    /// The note as held (log signatures and cosignatures).
    pub note: Vec<u8>,
}

/// Checks `note` (a signed checkpoint note) for a cosignature by `witness`; the newest valid
/// one's time. The log's own signature is not checked here (the caller does, with the log key
/// it trusts).
pub fn verify_cosigned(note: &[u8], witness: &CosignatureVerifier) -> Option<Cosigned> {
    let parsed = Note::from_bytes(note).ok()?;
    let cp = Checkpoint::from_bytes(parsed.text()).ok()?;
    let list = VerifierList::new(vec![Box::new(witness.clone())]);
    let (ok, _) = parsed.verify(&list).ok()?;
    let time = ok
        .iter()
        .filter_map(|s| cosignature_timestamp(s.signature()))
        .max()?;
    Some(Cosigned {
        origin: cp.origin().to_owned(),
        size: cp.size(),
        root: *cp.hash(),
        time,
        note: note.to_vec(),
    })
}

/// The signature lines of an add-checkpoint answer that are valid cosignatures of `note`'s
/// checkpoint by `witness` (others are ignored, as the spec says).
pub fn cosignatures_in(
    note: &[u8],
    answer: &[u8],
    witness: &CosignatureVerifier,
) -> Vec<Signature> {
    let Ok(parsed) = Note::from_bytes(note) else {
        return Vec::new();
    };
    answer
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| Signature::from_bytes(l).ok())
        .filter(|s| {
            s.name() == witness.name()
                && s.id() == witness.key_id()
                && witness.verify(parsed.text(), s.signature())
        })
        .collect()
}

/// Percent-encodes an origin for the latest-checkpoint path (`/` kept: origins are
/// schema-less URLs).
pub fn encode_origin(origin: &str) -> String {
    let mut out = String::new();
    for b in origin.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 (how checkpoints write hashes).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::prelude::BASE64_STANDARD.encode(bytes)
}

/// GET a small text resource (a witness's `/pugmark/v1/vkey`).
pub fn get_text(url: &str) -> Result<String, ClientError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(http_err(url))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(http_err(url))?;
    if status != 200 {
        return Err(ClientError::Status {
            url: url.to_owned(),
            status,
            body,
        });
    }
    Ok(body)
}

/// Standard base64 decoding; `None` when malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::prelude::BASE64_STANDARD.decode(s).ok()
}
