//! The one signer behind checkpoints, signed notes and the block MAC key: a key file's seed,
//! or a key the caller holds elsewhere (a PKCS#11 token) and only lends signatures from.
//!
//! The ledger never talks to a token itself: the binary implements [`ExternalSigner`] (with
//! `cryptoki`, fenced there) and passes it in `LedgerOptions::signer`. Everything that signs
//! (`checkpoint::sign`, `note::sign_checkpoint`) and the block MAC key go through [`KeySigner`].

use std::fmt;
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::error::LedgerError;

/// An Ed25519 key that signs without revealing its private part (e.g. in a PKCS#11 token).
///
/// `sign` must be plain Ed25519 (RFC 8032, "pure", no context): deterministic, so the same
/// message always gives the same signature. The token MAC key depends on that
/// ([`token_mac_key`]); the writer checks it at open.
pub trait ExternalSigner: Send + Sync + fmt::Debug {
    /// The public key (32 bytes, RFC 8032 encoding).
    fn public_key(&self) -> [u8; 32];
    /// An Ed25519 signature of `msg`, or why the token refused.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String>;
    /// Where the key is, for messages (e.g. the PKCS#11 URI without its PIN source).
    fn describe(&self) -> String;
}

/// Context for the MAC key of a ledger whose key is in a token (docs/FORMAT.md "Block MAC").
const TOKEN_MAC_CONTEXT: &str = "pugmark ledger v2 block mac from token signature";
/// The fixed message whose signature the token MAC key is derived from. Never signed for any
/// other purpose: it is not a checkpoint, a note or any other text the writer signs.
pub const TOKEN_MAC_MESSAGE: &[u8] = b"pugmark ledger v2 block mac key\n";

/// The block MAC key of a token-held key: `derive_key(TOKEN_MAC_CONTEXT, sig)`, where `sig`
/// is the Ed25519 signature of [`TOKEN_MAC_MESSAGE`].
///
/// Why a signature: a token never reveals the seed that a key file's MAC key is derived from
/// (`format::mac_key`). An Ed25519 signature is a deterministic function of the seed and the
/// message (RFC 8032 §5.1.6), so only the key's holder can compute it, and it computes the
/// same value at every open. It is also a secret: this message is never signed for anything
/// published. The file-key derivation is unchanged, so key-file ledgers stay byte-identical.
pub fn token_mac_key(signature: &[u8; 64]) -> [u8; 32] {
    blake3::derive_key(TOKEN_MAC_CONTEXT, signature)
}

/// The ledger's signing key: a seed read from a key file, or an external signer.
#[derive(Clone)]
pub(crate) enum KeySigner {
    // Boxed: a SigningKey (224 bytes) beside a fat pointer.
    File(Box<SigningKey>),
    External(Arc<dyn ExternalSigner>),
}

impl fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySigner::File(_) => f.write_str("KeySigner::File(..)"),
            KeySigner::External(s) => write!(f, "KeySigner::External({})", s.describe()),
        }
    }
}

impl KeySigner {
    pub(crate) fn public_key(&self) -> [u8; 32] {
        match self {
            KeySigner::File(k) => k.verifying_key().to_bytes(),
            KeySigner::External(s) => s.public_key(),
        }
    }

    /// Signs `msg`; an external signature is checked against the public key before use (a
    /// token answering garbage must not end up in a checkpoint).
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<[u8; 64], LedgerError> {
        match self {
            KeySigner::File(k) => Ok(k.sign(msg).to_bytes()),
            KeySigner::External(s) => {
                let sig = s.sign(msg).map_err(|e| {
                    LedgerError::Refused(format!("the key {} did not sign: {e}", s.describe()))
                })?;
                let ok = VerifyingKey::from_bytes(&s.public_key())
                    .is_ok_and(|vk| vk.verify_strict(msg, &Signature::from_bytes(&sig)).is_ok());
                if !ok {
                    return Err(LedgerError::Refused(format!(
                        "the key {} returned a signature its public key does not verify",
                        s.describe()
                    )));
                }
                Ok(sig)
            }
        }
    }

    /// The secret block MAC key: from the seed for a key file (`format::mac_key`, unchanged),
    /// from a signature for a token ([`token_mac_key`]), which is asked twice to make sure
    /// it signs deterministically (a randomised signer would change the MAC key per open).
    pub(crate) fn mac_key(&self) -> Result<[u8; 32], LedgerError> {
        match self {
            KeySigner::File(k) => Ok(crate::format::mac_key(&k.to_bytes())),
            KeySigner::External(s) => {
                let a = self.sign(TOKEN_MAC_MESSAGE)?;
                let b = self.sign(TOKEN_MAC_MESSAGE)?;
                if a != b {
                    return Err(LedgerError::Refused(format!(
                        "the key {} signs non-deterministically (not RFC 8032 Ed25519): no block MAC key can be derived",
                        s.describe()
                    )));
                }
                Ok(token_mac_key(&a))
            }
        }
    }

    pub(crate) fn describe(&self) -> Option<String> {
        match self {
            KeySigner::File(_) => None,
            KeySigner::External(s) => Some(s.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A software stand-in for a token: signs with a seed it never hands out.
    #[derive(Debug)]
    struct Soft(SigningKey);
    impl ExternalSigner for Soft {
        fn public_key(&self) -> [u8; 32] {
            self.0.verifying_key().to_bytes()
        }
        fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
            Ok(self.0.sign(msg).to_bytes())
        }
        fn describe(&self) -> String {
            "soft".into()
        }
    }

    #[test]
    fn token_mac_key_differs_from_the_seed_mac_key_and_is_stable() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let file = KeySigner::File(Box::new(k.clone()));
        let ext = KeySigner::External(Arc::new(Soft(k)));
        assert_eq!(file.public_key(), ext.public_key());
        let (a, b) = (file.mac_key().unwrap(), ext.mac_key().unwrap());
        assert_ne!(a, b, "two derivations, two keys: a token ledger is marked");
        assert_eq!(b, ext.mac_key().unwrap());
        assert_eq!(a, crate::format::mac_key(&[9; 32]));
    }
}
