//! `pugmark keys`: the checkpoint signing key of a data directory.
//!
//! A ledger gets its key once, when it is created (by `keys init`, or by the first `ingest` /
//! `serve`, which say where it is). A ledger whose key is missing or changed is refused by
//! every writer until the key is restored (docs/FORMAT.md "Keys").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::DataArgs;
use pipeline::datadir::{DataDir, KEY_LOCATION_FILE};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new data directory's ledger and its signing key (by default in
    /// DATA/keys/ledger.ed25519; with --key-file elsewhere, e.g. on a separate volume).
    Init(InitArgs),
    /// Where the key is, its public key and the C2SP verifier key of the checkpoint notes.
    Show(ShowArgs),
    /// Replace a lost, changed or compromised key: everything the old key can still sign is
    /// signed with it first; the old public key stays valid for what it signed; a signed
    /// rotation record names both keys and any records no key could vouch for.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Why (kept in the rotation record), e.g. "key disk lost".
    #[arg(long)]
    pub reason: Option<String>,
    /// The new key is in a PKCS#11 token (RFC 7512 URI, see `keys init --pkcs11`); without
    /// it the new key is a file, DATA/keys/ledger.ed25519.
    #[arg(long, value_name = "URI")]
    pub pkcs11: Option<String>,
    /// With --pkcs11: generate the new key pair in the token.
    #[arg(long, requires = "pkcs11")]
    pub generate: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Keep the private key at this path, outside the data directory (recorded in
    /// DATA/keys/ledger.location; the public key is copied to DATA/keys/ledger.ed25519.pub).
    #[arg(long, conflicts_with = "pkcs11")]
    pub key_file: Option<PathBuf>,
    /// The key is in a PKCS#11 token and never leaves it: an RFC 7512 URI, e.g.
    /// `pkcs11:token=T;object=K?module-path=LIB` plus `&pin-source=file:PATH`
    /// (PIN from pin-source or PUGMARK_PKCS11_PIN, never the command line). Recorded in
    /// DATA/keys/ledger.location with the token key's public key in DATA/keys/ledger.ed25519.pub;
    /// writers refuse a token whose key is not that one.
    #[arg(long, value_name = "URI")]
    pub pkcs11: Option<String>,
    /// With --pkcs11: generate the key pair in the token (CKA_SENSITIVE, not extractable);
    /// without it the token must already hold it.
    #[arg(long)]
    pub generate: bool,
    /// Log origin of the checkpoint notes (default `pugmark.<random hex>/ledger`), e.g.
    /// `pugmark.cloud.example.org/ledger`.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Init(a) => init(a),
        KeysCommand::Show(a) => show(a.data, a.json),
        KeysCommand::Rotate(a) => rotate(a),
    }
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, true)?;
    let ledger_dir = dd.ledger();
    if ledger_dir
        .join(ledger::segment_file_name(1))
        .try_exists()
        .with_context(|| format!("checking {}", ledger_dir.display()))?
    {
        bail!(
            "{} already has a ledger and its key ({}); a key is never replaced",
            dd.root().display(),
            dd.signing_key().display()
        );
    }
    if let Some(o) = &args.origin
        && !ledger::valid_origin(o)
    {
        bail!("--origin {o:?}: printable ASCII without spaces or '+'");
    }
    std::fs::create_dir_all(dd.keys())
        .with_context(|| format!("creating {}", dd.keys().display()))?;
    let mut signer: Option<std::sync::Arc<dyn ledger::ExternalSigner>> = None;
    // A key location is a path or a token: `--key-file pkcs11:…` means `--pkcs11 pkcs11:…`.
    let uri_as_path = args
        .key_file
        .as_ref()
        .and_then(|p| p.to_str())
        .filter(|s| pipeline::pkcs11::is_uri(s))
        .map(str::to_string);
    if uri_as_path.is_none() && args.generate && args.pkcs11.is_none() {
        bail!("--generate makes a key pair in a token: give --pkcs11 URI");
    }
    let key_path = match (
        args.pkcs11.as_ref().or(uri_as_path.as_ref()),
        &args.key_file,
    ) {
        (Some(uri), _) => {
            let (token, uri) = record_token(&dd, uri, args.generate)?;
            signer = Some(token);
            PathBuf::from(uri)
        }
        (None, Some(p)) => {
            let abs =
                std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
            ledger::create_key(&abs)?;
            let loc = dd.keys().join(KEY_LOCATION_FILE);
            std::fs::write(&loc, format!("{}\n", abs.display()))
                .with_context(|| format!("writing {}", loc.display()))?;
            let public = ledger::public_key_path(&abs);
            std::fs::copy(&public, dd.keys().join("ledger.ed25519.pub"))
                .with_context(|| format!("copying {}", public.display()))?;
            abs
        }
        (None, None) => {
            let p = dd.signing_key();
            ledger::create_key(&p)?;
            p
        }
    };
    let opts = ledger::LedgerOptions {
        key_path: key_path.clone(),
        origin: args.origin.clone(),
        signer,
        ..ledger::LedgerOptions::default()
    };
    let (l, _) = ledger::Ledger::open(&ledger_dir, opts)
        .with_context(|| format!("creating the ledger in {}", ledger_dir.display()))?;
    l.close()?;
    show(args.data, args.json)
}

fn show(data: DataArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&data.data, false)?;
    let key_path = dd.signing_key();
    let public = ledger::read_public_key(&dd.public_key())?;
    let origin = ledger::read_origin(&dd.ledger())?;
    let vkey = origin
        .as_deref()
        .map(|o| ledger::verifier_key(o, &public))
        .transpose()?;
    let in_token = dd.key_uri().is_some();
    // A token key is not looked up here (that needs the PIN); writers check it.
    let present = in_token || key_path.try_exists().unwrap_or(false);
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "key_file": key_path,
                "key_present": present,
                "key_in_token": in_token,
                "public_key": hex,
                "public_key_file": dd.public_key(),
                "origin": origin,
                "verifier_key": vkey,
            }))?
        );
    } else {
        println!(
            "signing key: {}{}",
            key_path.display(),
            if in_token {
                " (PKCS#11 token)"
            } else if present {
                ""
            } else {
                " (MISSING: writers refuse)"
            }
        );
        println!("public key:  {hex} ({})", dd.public_key().display());
        if let Some(o) = &origin {
            println!("origin:      {o}");
        }
        if let Some(v) = &vkey {
            println!("verifier key (give it to witnesses and CSIRTs): {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens (with `generate`, first makes) the token key `uri` names and records it in `DATA/keys`:
/// `ledger.location` = the URI, `ledger.ed25519.pub` = its public key. Returns the signer and
/// the URI as recorded.
fn record_token(
    dd: &DataDir,
    uri: &str,
    generate: bool,
) -> anyhow::Result<(std::sync::Arc<dyn ledger::ExternalSigner>, String)> {
    let uri = pipeline::pkcs11::Pkcs11Uri::parse(uri).context("--pkcs11")?;
    let token = pipeline::pkcs11::Token::open(&uri, generate)?;
    std::fs::create_dir_all(dd.keys())
        .with_context(|| format!("creating {}", dd.keys().display()))?;
    let public = dd.keys().join("ledger.ed25519.pub");
    std::fs::write(&public, format!("{}\n", hex(&token.public_key())))
        .with_context(|| format!("writing {}", public.display()))?;
    let loc = dd.keys().join(KEY_LOCATION_FILE);
    std::fs::write(&loc, format!("{}\n", uri.text))
        .with_context(|| format!("writing {}", loc.display()))?;
    Ok((std::sync::Arc::new(token), uri.text))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let dd = DataDir::open(&args.data.data, false)?;
    let ledger_dir = dd.ledger();
    let key_path = dd.signing_key();
    let origin = ledger::read_origin(&ledger_dir)?
        .context("the ledger has no origin (run `pugmark migrate` first)")?;
    let from_token = dd.key_uri().is_some();
    // 1. Sign what the current key can still sign (a token key that cannot be opened, or is
    // not the recorded one, is treated like a refused key: it signs nothing more).
    let mut refused = None;
    let opened = match dd.ledger_options() {
        Ok(opts) => ledger::Ledger::open(&ledger_dir, opts),
        Err(e) => Err(ledger::LedgerError::Refused(format!("{e:#}"))),
    };
    let signed_upto = match opened {
        Ok((mut l, _)) => {
            l.checkpoint().context("signing with the current key")?;
            let n = l.tree_size();
            l.close()?;
            n
        }
        Err(ledger::LedgerError::Refused(why)) => {
            refused = Some(why);
            ledger::last_note(&ledger_dir.join(ledger::NOTES_FILE))?
                .map_or(0, |n| n.checkpoint.size)
        }
        Err(e) => return Err(e.into()),
    };
    // 2. The key that signed the last note: the directory's public key or a previous one.
    let pub_file = dd.keys().join("ledger.ed25519.pub");
    let mut prev_file = pub_file.clone().into_os_string();
    prev_file.push(ledger::PREVIOUS_KEYS_SUFFIX);
    let prev_file = PathBuf::from(prev_file);
    let last_note = ledger::last_note(&ledger_dir.join(ledger::NOTES_FILE))?.map(|n| n.note);
    let mut candidates: Vec<[u8; 32]> = ledger::read_public_key(&pub_file).into_iter().collect();
    candidates.extend(
        ledger::read_previous_keys(&prev_file)?
            .into_iter()
            .map(|(k, _)| k),
    );
    let old_pub = match &last_note {
        None => candidates.first().copied(),
        Some(note) => candidates.iter().copied().find(|k| {
            ledger::verifier_key(&origin, k)
                .is_ok_and(|v| ledger::verify_note(note, &v).is_ok())
        }),
    }
    .context("no known public key verifies the last checkpoint note: cannot tell which key signed the ledger")?;
    // 3. The old key stays valid for what it signed; the key file is retired, not deleted.
    if !ledger::read_previous_keys(&prev_file)?
        .iter()
        .any(|(k, _)| *k == old_pub)
    {
        ledger::add_previous_key(&prev_file, &old_pub, signed_upto)?;
    }
    if !from_token && key_path.try_exists().unwrap_or(false) {
        let current = std::fs::read_to_string(&key_path)
            .ok()
            .and_then(|t| ledger::parse_key(&t));
        let tag = current
            .map(|k| hex(&k.verifying_key().to_bytes()[..4]))
            .unwrap_or_else(|| "unreadable".into());
        let mut retired = key_path.clone().into_os_string();
        retired.push(format!(".retired-{tag}"));
        std::fs::rename(&key_path, &retired)
            .with_context(|| format!("retiring {}", key_path.display()))?;
    }
    // The new key: in a token (recorded in DATA/keys like `keys init --pkcs11`), or a file —
    // DATA/keys/ledger.ed25519 when the old key was in a token (the location is dropped).
    let mut signer = None;
    let key_path = match &args.pkcs11 {
        Some(uri) => {
            let (token, uri) = record_token(&dd, uri, args.generate)?;
            signer = Some(token);
            PathBuf::from(uri)
        }
        None => {
            let key_path = if from_token {
                let loc = dd.keys().join(KEY_LOCATION_FILE);
                std::fs::remove_file(&loc)
                    .with_context(|| format!("removing {}", loc.display()))?;
                dd.keys().join("ledger.ed25519")
            } else {
                key_path
            };
            ledger::create_key(&key_path)?;
            if ledger::public_key_path(&key_path) != pub_file {
                std::fs::copy(ledger::public_key_path(&key_path), &pub_file)
                    .with_context(|| format!("copying the public key to {}", pub_file.display()))?;
            }
            key_path
        }
    };
    let new_pub = ledger::read_public_key(&pub_file)?;
    // 4. The rotation record, signed by the new key's first checkpoint.
    let (mut l, _) = ledger::Ledger::open(
        &ledger_dir,
        ledger::LedgerOptions {
            key_path: key_path.clone(),
            rotating: true,
            signer,
            ..ledger::LedgerOptions::default()
        },
    )?;
    let end = l.tree_size();
    let unauthenticated = (end > signed_upto).then(|| json!([signed_upto + 1, end]));
    let text = json!({
        "pugmark_ledger": "rotate-key",
        "previous_public_key": hex(&old_pub),
        "public_key": hex(&new_pub),
        "previous_key_signed_upto": signed_upto,
        "unauthenticated": unauthenticated,
        "why_refused": refused,
        "reason": args.reason,
        "by": crate::cli::migrate::whoami(),
    });
    let env = pipeline::admin_record(format!("pugmark-ledger {text}"));
    let receipt = l.append_batch([env.as_slice()])?;
    l.close()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "rotation_record": receipt.first.get(),
                "previous_public_key": hex(&old_pub),
                "public_key": hex(&new_pub),
                "previous_key_signed_upto": signed_upto,
                "unauthenticated": unauthenticated,
                "verifier_key": ledger::verifier_key(&origin, &new_pub)?,
            }))?
        );
    } else {
        println!(
            "rotated: new key {} (public {}), rotation record #{}; the previous key {} stays valid up to #{signed_upto}",
            key_path.display(),
            hex(&new_pub),
            receipt.first.get(),
            hex(&old_pub)
        );
        if end > signed_upto {
            println!(
                "records #{}..#{end} were not signed by the previous key and could not be authenticated; the rotation record says so",
                signed_upto + 1
            );
        }
        println!("verifier key: {}", ledger::verifier_key(&origin, &new_pub)?);
    }
    Ok(ExitCode::SUCCESS)
}
