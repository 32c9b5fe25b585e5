//! The ledger's signing key in a PKCS#11 token: the URI that names it (RFC 7512), the PIN,
//! and a [`ledger::ExternalSigner`] that signs inside the token with CKM_EDDSA.
//!
//! `cryptoki` (Parsec's maintained wrapper) is used here and nowhere else: the ledger only
//! sees the signer trait. The private key never leaves the token (`--generate` makes it with
//! CKA_SENSITIVE true, CKA_EXTRACTABLE false); what is read from the token is the public key
//! (CKA_EC_POINT) and signatures. The PIN never comes from the command line: the URI's
//! `pin-source=file:PATH`, else the environment variable `PUGMARK_PKCS11_PIN`; a URI with
//! `pin-value` is refused (it would also be kept in `DATA/keys/ledger.location`).

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// The environment variable read for the user PIN when the URI has no `pin-source`.
pub const PIN_ENV: &str = "PUGMARK_PKCS11_PIN";

/// DER of the Ed25519 curve OID 1.3.101.112 (RFC 8410), the CKA_EC_PARAMS of a new key.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Whether a key location names a token rather than a file.
pub fn is_uri(s: &str) -> bool {
    s.starts_with("pkcs11:")
}

/// A PKCS#11 URI (RFC 7512) as far as pugmark uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The URI as given (kept in `DATA/keys/ledger.location`, shown in messages).
    pub text: String,
    pub token: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    /// CKA_LABEL of the key pair.
    pub object: Option<String>,
    /// CKA_ID of the key pair.
    pub id: Option<Vec<u8>>,
    /// The module (shared library) to load: `module-path`.
    pub module_path: PathBuf,
    /// `pin-source`: `file:PATH` or an absolute path.
    pub pin_source: Option<String>,
}

fn pct_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn pct_text(s: &str) -> anyhow::Result<String> {
    String::from_utf8(pct_decode(s)?).with_context(|| format!("{s:?} is not UTF-8"))
}

impl Pkcs11Uri {
    /// Parses `pkcs11:path-attrs?query-attrs`. `module-path` is required (module lookup by
    /// name is platform-specific); `pin-value` is refused.
    pub fn parse(text: &str) -> anyhow::Result<Pkcs11Uri> {
        let text = text.trim();
        let rest = text
            .strip_prefix("pkcs11:")
            .context("a PKCS#11 URI starts with `pkcs11:`")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri {
            text: text.to_string(),
            token: None,
            serial: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: PathBuf::new(),
            pin_source: None,
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .with_context(|| format!("PKCS#11 URI attribute {attr:?} has no `=`"))?;
            match k {
                "token" => uri.token = Some(pct_text(v)?),
                "serial" => uri.serial = Some(pct_text(v)?),
                "slot-id" => {
                    uri.slot_id = Some(
                        v.parse()
                            .with_context(|| format!("slot-id {v:?} is not a number"))?,
                    )
                }
                "object" => uri.object = Some(pct_text(v)?),
                "id" => uri.id = Some(pct_decode(v)?),
                "type" if v == "private" || v == "public" => {}
                "manufacturer"
                | "model"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                k if k.starts_with("x-") => {}
                _ => bail!("PKCS#11 URI attribute {k:?} is not supported"),
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k {
                "module-path" => uri.module_path = PathBuf::from(pct_text(v)?),
                "pin-source" => uri.pin_source = Some(pct_text(v)?),
                "pin-value" => bail!(
                    "the PKCS#11 URI holds the PIN (pin-value): it would be kept in DATA and shown in process lists; use pin-source=file:PATH or {PIN_ENV}"
                ),
                "module-name" => bail!(
                    "module-name is not supported: give the module's path (module-path=/usr/lib/softhsm/libsofthsm2.so)"
                ),
                k if k.starts_with("x-") => {}
                _ => bail!("PKCS#11 URI query attribute {k:?} is not supported"),
            }
        }
        if uri.module_path.as_os_str().is_empty() {
            bail!(
                "the PKCS#11 URI needs module-path, e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so"
            );
        }
        if uri.object.is_none() && uri.id.is_none() {
            bail!("the PKCS#11 URI must name the key: object=LABEL or id=%NN..");
        }
        Ok(uri)
    }

    /// The user PIN: from `pin-source`, else from `PUGMARK_PKCS11_PIN`.
    fn pin(&self) -> anyhow::Result<AuthPin> {
        let pin = match &self.pin_source {
            Some(src) => {
                let path = src.strip_prefix("file:").unwrap_or(src);
                if !path.starts_with('/') {
                    bail!("pin-source {src:?}: expected file:/absolute/path");
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token PIN from {path}"))?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            None => std::env::var(PIN_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "no PIN for {}: add pin-source=file:PATH to the URI or set {PIN_ENV}",
                    self.text
                )
            })?,
        };
        Ok(AuthPin::new(pin.into()))
    }
}

/// A logged-in session on the token and the key pair the URI names.
#[derive(Debug)]
pub struct Token {
    uri: String,
    /// `Session` is `Send` but not `Sync`; the writer signs from one thread at a time anyway.
    session: Mutex<Session>,
    key: ObjectHandle,
    public: [u8; 32],
}

/// A token error with the cases an operator can act on said plainly.
fn ck(uri: &str, what: &str, e: CkError) -> anyhow::Error {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => {
            anyhow::anyhow!("wrong PIN for the token of {uri} (the token refused the login)")
        }
        CkError::Pkcs11(RvError::PinLocked, _) => {
            anyhow::anyhow!("the PIN of the token of {uri} is locked")
        }
        CkError::LibraryLoading(e) => anyhow::anyhow!("loading the PKCS#11 module of {uri}: {e}"),
        e => anyhow::anyhow!("{what} ({uri}): {e}"),
    }
}

/// Finds the one slot whose token the URI names.
fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> anyhow::Result<Slot> {
    let mut found = Vec::new();
    for slot in ctx
        .get_slots_with_token()
        .map_err(|e| ck(&uri.text, "listing slots", e))?
    {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| ck(&uri.text, "reading token info", e))?;
        if uri
            .token
            .as_deref()
            .is_some_and(|t| t != info.label().trim_end())
        {
            continue;
        }
        if uri
            .serial
            .as_deref()
            .is_some_and(|s| s != info.serial_number().trim_end())
        {
            continue;
        }
        if !info.token_initialized() {
            continue;
        }
        found.push(slot);
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no initialised token matches {}", uri.text),
        _ => bail!(
            "{} tokens match {}: name one with token= or serial=",
            found.len(),
            uri.text
        ),
    }
}

fn key_template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
    ];
    if let Some(l) = &uri.object {
        t.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

/// CKA_EC_POINT of an Ed25519 key: a DER OCTET STRING of 32 bytes (PKCS#11 3.0), or, from
/// some tokens, the 32 bytes bare.
fn ec_point_key(v: &[u8]) -> Option<[u8; 32]> {
    let raw = match v {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ if v.len() == 32 => v,
        _ => return None,
    };
    raw.try_into().ok()
}

fn one(uri: &str, what: &str, found: Vec<ObjectHandle>) -> anyhow::Result<ObjectHandle> {
    match found.as_slice() {
        [h] => Ok(*h),
        [] => bail!("no Ed25519 {what} in the token matches {uri}"),
        _ => bail!(
            "{} Ed25519 {what}s in the token match {uri}: name one with object= and id=",
            found.len()
        ),
    }
}

impl Token {
    /// Opens the token the URI names, logs in and finds the key pair. With `generate`, makes
    /// the key pair first (refusing when one with that label or id exists).
    pub fn open(uri: &Pkcs11Uri, generate: bool) -> anyhow::Result<Token> {
        let u = &uri.text;
        let pin = uri.pin()?;
        let ctx = Pkcs11::new(&uri.module_path).map_err(|e| ck(u, "loading the module", e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck(u, "initialising the module", e)),
        }
        let slot = find_slot(&ctx, uri)?;
        // Read-write only to make a key pair; signing needs no more than read-only.
        let session = if generate {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(|e| ck(u, "opening a session", e))?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(ck(u, "logging in", e)),
        }
        let find = |class| {
            session
                .find_objects(&key_template(uri, class))
                .map_err(|e| ck(u, "searching the token", e))
        };
        if generate {
            if !find(ObjectClass::PRIVATE_KEY)?.is_empty()
                || !find(ObjectClass::PUBLIC_KEY)?.is_empty()
            {
                bail!(
                    "the token already holds a key matching {u}: a key is never replaced (drop --generate to use it)"
                );
            }
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(ED25519_OID.to_vec()),
            ];
            let mut private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sign(true),
                // The private key never leaves the token.
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
            ];
            for t in [&mut public, &mut private] {
                if let Some(l) = &uri.object {
                    t.push(Attribute::Label(l.as_bytes().to_vec()));
                }
                if let Some(id) = &uri.id {
                    t.push(Attribute::Id(id.clone()));
                }
            }
            session
                .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
                .map_err(|e| ck(u, "generating an Ed25519 key pair", e))?;
        }
        let key = one(u, "private key", find(ObjectClass::PRIVATE_KEY)?)?;
        if generate {
            // What the token made is what was asked for: read back, not assumed.
            let attrs = session
                .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
                .map_err(|e| ck(u, "reading the new key's attributes", e))?;
            let sealed = attrs.contains(&Attribute::Sensitive(true))
                && attrs.contains(&Attribute::Extractable(false));
            if !sealed {
                bail!(
                    "the token made the key of {u} without CKA_SENSITIVE true and CKA_EXTRACTABLE false; destroy it and use another token"
                );
            }
        }
        let pubh = one(u, "public key", find(ObjectClass::PUBLIC_KEY)?)?;
        let attrs = session
            .get_attributes(pubh, &[AttributeType::EcPoint])
            .map_err(|e| ck(u, "reading the public key", e))?;
        let public = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(v) => ec_point_key(v),
                _ => None,
            })
            .with_context(|| format!("the public key of {u} is not an Ed25519 point"))?;
        let token = Token {
            uri: u.clone(),
            session: Mutex::new(session),
            key,
            public,
        };
        // That the pair belongs together is checked by the ledger: it verifies every
        // signature the token makes against this public key, first at open (the MAC key).
        Ok(token)
    }

    /// The public key read from the token.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }
}

impl ledger::ExternalSigner for Token {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        let session = self
            .session
            .lock()
            .map_err(|_| "the token session lock is poisoned".to_string())?;
        // Pure Ed25519 (RFC 8032 §5.1), no parameters: deterministic, which the MAC key needs.
        let sig = session
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.key,
                msg,
            )
            .map_err(|e| e.to_string())?;
        sig.as_slice()
            .try_into()
            .map_err(|_| format!("the token returned a {}-byte signature", sig.len()))
    }

    fn describe(&self) -> String {
        self.uri.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7512_uri_with_module_and_pin_file() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=pugmark;object=led%20ger;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pugmark/pin",
        )
        .expect("parses");
        assert_eq!(u.token.as_deref(), Some("pugmark"));
        assert_eq!(u.object.as_deref(), Some("led ger"));
        assert_eq!(u.id, Some(vec![1, 2]));
        assert_eq!(
            u.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.pin_source.as_deref(), Some("file:/etc/pugmark/pin"));
    }

    #[test]
    fn refused_uris_say_why() {
        for (uri, why) in [
            (
                "pkcs11:object=a?module-path=/m.so&pin-value=1234",
                "pin-value",
            ),
            ("pkcs11:object=a", "module-path"),
            ("pkcs11:token=t?module-path=/m.so", "object="),
            ("pkcs11:object=a;colour=red?module-path=/m.so", "colour"),
            ("pkcs11:object=%zz?module-path=/m.so", "percent"),
            ("file:/x", "pkcs11:"),
        ] {
            let e = Pkcs11Uri::parse(uri).expect_err(uri).to_string();
            assert!(e.contains(why), "{uri}: {e}");
        }
    }

    #[test]
    fn ec_point_der_or_bare() {
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&[7; 32]);
        assert_eq!(ec_point_key(&der), Some([7; 32]));
        assert_eq!(ec_point_key(&[7; 32]), Some([7; 32]));
        assert_eq!(ec_point_key(&der[..20]), None);
    }
}
