//! Keys and cosignatures: C2SP `tlog-cosignature` (`cosignature/v1`, Ed25519, timestamped) and
//! the `signed-note` verifier keys (vkeys) of logs (algorithm 0x01) and witnesses (0x04).
//!
//! `signed_note` verifies Ed25519 note signatures but knows no cosignature type, so the
//! cosignature signer and verifier are here (a page of code over `ed25519-dalek`), plugged
//! into `signed_note`'s `Verifier` trait so one `Note::verify` call checks both kinds.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Signature, StandardVerifier, Verifier, is_key_name_valid, key_id};

/// Signature type byte of an Ed25519 note signature (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 `cosignature/v1` (C2SP tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A key or signature that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key: {0}")]
    Format(&'static str),
    #[error("the key's id does not match its name and key material")]
    Id,
    #[error("unsupported key type 0x{0:02x} (want 0x01 for a log, 0x04 for a witness)")]
    Alg(u8),
    #[error("no random bytes from the OS: {0}")]
    Random(String),
}

/// A witness's Ed25519 cosigning key.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// A new key for a witness named `name` (a schema-less URL such as `csirt.example/w1`).
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        if !is_key_name_valid(name) {
            return Err(KeyError::Format(
                "a key name is non-empty, without spaces or '+'",
            ));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(name, seed))
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, &cosig_key_material(&key.verifying_key()));
        Self {
            name: name.to_owned(),
            id,
            key,
        }
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+base64(0x04 ‖ seed)` (the signed-note private key form).
    pub fn from_skey(skey: &str) -> Result<Self, KeyError> {
        let skey = skey.trim();
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Format("a private key starts with PRIVATE+KEY+"))?;
        let (name, rest) = rest.split_once('+').ok_or(KeyError::Format("no key id"))?;
        let (id16, b64) = rest.split_once('+').ok_or(KeyError::Format("no key"))?;
        let id = parse_id(id16)?;
        let raw = BASE64_STANDARD
            .decode(b64)
            .map_err(|_| KeyError::Format("key is not base64"))?;
        let (&alg, seed) = raw.split_first().ok_or(KeyError::Format("empty key"))?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(KeyError::Alg(alg));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| KeyError::Format("an Ed25519 seed is 32 bytes"))?;
        if !is_key_name_valid(name) {
            return Err(KeyError::Format("invalid key name"));
        }
        let c = Self::from_seed(name, seed);
        if c.id != id {
            return Err(KeyError::Id);
        }
        Ok(c)
    }

    /// The private key in signed-note form (keep it secret: `witness init` writes it 0600).
    pub fn skey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64_STANDARD.encode(raw)
        )
    }

    /// The verifier key `<name>+<id>+base64(0x04 ‖ public key)` that logs and verifiers configure.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64_STANDARD.encode(cosig_key_material(&self.key.verifying_key()))
        )
    }

    /// The witness's name (the signature lines' key name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `cosignature/v1` over a checkpoint's note text (body with its final newline, no
    /// signature lines) at POSIX time `timestamp`.
    pub fn cosign(&self, checkpoint_text: &[u8], timestamp: u64) -> Result<Signature, KeyError> {
        let sig = self.key.sign(&cosigned_message(checkpoint_text, timestamp));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        Signature::new(self.name.clone(), self.id, bytes)
            .map_err(|_| KeyError::Format("invalid key name"))
    }
}

fn cosig_key_material(pk: &VerifyingKey) -> Vec<u8> {
    let mut m = vec![ALG_COSIGNATURE_V1];
    m.extend_from_slice(pk.as_bytes());
    m
}

/// The message a `cosignature/v1` signs: header line, time line, then the checkpoint body.
pub fn cosigned_message(checkpoint_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text);
    m
}

fn parse_id(id16: &str) -> Result<u32, KeyError> {
    if id16.len() != 8 {
        return Err(KeyError::Format("a key id is 8 hex digits"));
    }
    u32::from_str_radix(id16, 16).map_err(|_| KeyError::Format("key id is not hex"))
}

/// Verifies `cosignature/v1` signatures of one witness key.
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(timestamp) = cosignature_timestamp(sig) else {
            return false;
        };
        let Ok(ed) = <[u8; 64]>::try_from(&sig[8..]) else {
            return false;
        };
        self.key
            .verify_strict(
                &cosigned_message(msg, timestamp),
                &ed25519_dalek::Signature::from_bytes(&ed),
            )
            .is_ok()
    }
}

/// The timestamp of a `cosignature/v1` signature (the 8 bytes after the key id), if the
/// signature has the right length and the time is in range.
pub fn cosignature_timestamp(sig: &[u8]) -> Option<u64> {
    if sig.len() != 8 + 64 {
        return None;
    }
    let ts = u64::from_be_bytes(sig[..8].try_into().ok()?);
    (ts <= i64::MAX as u64).then_some(ts)
}

/// What a vkey is.
pub enum AnyVerifier {
    /// A log's checkpoint key (0x01).
    Log(StandardVerifier),
    /// A witness's cosignature key (0x04).
    Witness(CosignatureVerifier),
}

impl AnyVerifier {
    /// Boxed for `signed_note::VerifierList`.
    pub fn boxed(self) -> Box<dyn Verifier> {
        match self {
            AnyVerifier::Log(v) => Box::new(v),
            AnyVerifier::Witness(v) => Box::new(v),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        match self {
            AnyVerifier::Log(v) => v.name(),
            AnyVerifier::Witness(v) => v.name(),
        }
    }
}

/// Reads a verifier key `<name>+<id>+base64(type ‖ key)` of type 0x01 or 0x04.
pub fn parse_vkey(vkey: &str) -> Result<AnyVerifier, KeyError> {
    let vkey = vkey.trim();
    let (name, rest) = vkey
        .split_once('+')
        .ok_or(KeyError::Format("a vkey is name+id+key"))?;
    let (id16, b64) = rest
        .split_once('+')
        .ok_or(KeyError::Format("a vkey is name+id+key"))?;
    let id = parse_id(id16)?;
    let raw = BASE64_STANDARD
        .decode(b64)
        .map_err(|_| KeyError::Format("key is not base64"))?;
    if !is_key_name_valid(name) {
        return Err(KeyError::Format("invalid key name"));
    }
    if key_id(name, &raw) != id {
        return Err(KeyError::Id);
    }
    match raw.split_first() {
        Some((&ALG_ED25519, _)) => StandardVerifier::new(vkey)
            .map(AnyVerifier::Log)
            .map_err(|_| KeyError::Format("not an Ed25519 key")),
        Some((&ALG_COSIGNATURE_V1, pk)) => {
            let pk: [u8; 32] = pk
                .try_into()
                .map_err(|_| KeyError::Format("an Ed25519 key is 32 bytes"))?;
            let key = VerifyingKey::from_bytes(&pk)
                .map_err(|_| KeyError::Format("not an Ed25519 point"))?;
            Ok(AnyVerifier::Witness(CosignatureVerifier {
                name: name.to_owned(),
                id,
                key,
            }))
        }
        Some((&alg, _)) => Err(KeyError::Alg(alg)),
        None => Err(KeyError::Format("empty key")),
    }
}

/// Reads a witness vkey (type 0x04) only.
pub fn parse_witness_vkey(vkey: &str) -> Result<CosignatureVerifier, KeyError> {
    match parse_vkey(vkey)? {
        AnyVerifier::Witness(v) => Ok(v),
        AnyVerifier::Log(_) => Err(KeyError::Alg(ALG_ED25519)),
    }
}

/// Reads a log vkey (type 0x01) only.
pub fn parse_log_vkey(vkey: &str) -> Result<StandardVerifier, KeyError> {
    match parse_vkey(vkey)? {
        AnyVerifier::Log(v) => Ok(v),
        AnyVerifier::Witness(_) => Err(KeyError::Alg(ALG_COSIGNATURE_V1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{Note, VerifierList};

    #[test]
    fn cosignature_round_trip_and_key_forms() {
        let c = Cosigner::generate("csirt.example/w1").expect("key");
        let again = Cosigner::from_skey(&c.skey()).expect("skey reads back");
        assert_eq!(again.vkey(), c.vkey());
        let text = b"example.com/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let sig = c.cosign(text, 1_679_315_147).expect("cosign");
        assert_eq!(cosignature_timestamp(sig.signature()), Some(1_679_315_147));
        let v = parse_witness_vkey(&c.vkey()).expect("vkey");
        let note = Note::new(text, &[sig]).expect("note");
        let list = VerifierList::new(vec![Box::new(v.clone())]);
        let (ok, _) = note.verify(&list).expect("cosignature verifies");
        assert_eq!(ok.len(), 1);
        // The same cosignature over another size does not.
        let other = Note::new(
            b"example.com/log\n4\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            note.to_bytes()
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with("—".as_bytes()))
                .map(|l| Signature::from_bytes(l).expect("line"))
                .collect::<Vec<_>>()
                .as_slice(),
        )
        .expect("note");
        assert!(other.verify(&list).is_err());
        // A changed id is refused when the key is read.
        let vk = c.vkey();
        let bad = vk.replacen(&vk[vk.find('+').unwrap_or(0) + 1..][..8], "00000000", 1);
        assert!(parse_vkey(&bad).is_err());
    }

    /// The tlog-cosignature spec's example vkey form (type 0x04) and the signed-note form of
    /// a log key (0x01) are told apart.
    #[test]
    fn log_and_witness_keys_are_told_apart() {
        let c = Cosigner::generate("w").expect("key");
        assert!(parse_log_vkey(&c.vkey()).is_err());
        assert!(parse_witness_vkey(&c.vkey()).is_ok());
    }
}
