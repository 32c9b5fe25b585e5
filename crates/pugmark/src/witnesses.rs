//! Pushing the ledger's checkpoints to witnesses (C2SP tlog-witness) and recording their
//! cosignatures (`ledger/cosignatures`, through `ledger::append_cosigned`, synced before it
//! counts). Used by `serve` (a thread of its own, every second: ingestion never waits for a
//! witness) and after `ingest --witness`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use witness::client::verify_cosigned;
use witness::signed_note::{Note, Signature};
use witness::{AddCheckpoint, Added, WitnessPeer};

/// One witness the collector pushes to.
pub struct Target {
    pub name: String,
    pub peer: WitnessPeer,
    /// The size we believe it holds (None: not known yet; learnt from the cosignatures file,
    /// else from its 409).
    pub held: Option<u64>,
    /// The checkpoint it last cosigned (size, root): not pushed again.
    done: Option<(u64, [u8; 32])>,
}

impl Target {
    pub fn new(name: &str, url: &str, vkey: &str) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            peer: WitnessPeer::new(url, vkey).map_err(anyhow::Error::msg)?,
            held: None,
            done: None,
        })
    }
}

/// `URL=VKEY` (ingest --witness; the name is the key's name).
pub fn parse_url_vkey(s: &str) -> anyhow::Result<Target> {
    let Some((url, vkey)) = s.split_once('=') else {
        bail!("--witness {s:?}: want URL=VKEY");
    };
    let peer = WitnessPeer::new(url, vkey).map_err(anyhow::Error::msg)?;
    Ok(Target {
        name: peer.key_name().to_owned(),
        peer,
        held: None,
        done: None,
    })
}

/// What one push did.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    /// No checkpoint yet, or the witness already holds the latest one.
    Nothing,
    /// The witness cosigned this size; the cosignature is recorded.
    Cosigned { size: u64, time: u64 },
}

/// The largest size this witness has a valid cosignature for in `ledger/cosignatures`.
fn recorded(ledger_dir: &Path, t: &Target) -> Option<(u64, u64)> {
    let file = ledger::read_notes(&ledger_dir.join(ledger::COSIGNATURES_FILE))
        .ok()
        .flatten()?;
    file.notes
        .iter()
        .filter_map(|n| verify_cosigned(&n.note, t.peer.verifier()))
        .map(|c| (c.size, c.time))
        .max()
}

/// Pushes the latest checkpoint to one witness, with a consistency proof from the size it
/// holds (a 409 tells that size: retried once from it). The cosignature is on disk before
/// this returns `Cosigned`.
pub fn push(ledger_dir: &Path, t: &mut Target) -> anyhow::Result<Pushed> {
    let Some(ours) = latest_own(ledger_dir)? else {
        return Ok(Pushed::Nothing);
    };
    let cp = ledger::parse_checkpoint(&ours)?;
    if t.held.is_none() {
        t.held = recorded(ledger_dir, t).map(|(s, _)| s);
    }
    if t.done == Some((cp.size, cp.root.0)) {
        return Ok(Pushed::Nothing);
    }
    let mut old = t.held.unwrap_or(0);
    for _ in 0..3 {
        if old > cp.size {
            bail!(
                "witness {} holds tree size {old}, beyond this ledger's latest checkpoint ({}): \
                 records were removed or the ledger is not the one it witnessed",
                t.name,
                cp.size
            );
        }
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            let mut r = ledger::LedgerReader::open(ledger_dir)?;
            r.consistency_proof(old, cp.size)
                .with_context(|| format!("consistency proof {old} → {}", cp.size))?
        };
        let req = AddCheckpoint {
            old,
            proof,
            note: ours.clone(),
        };
        match t.peer.add_checkpoint(&req).map_err(anyhow::Error::msg)? {
            Added::Cosigned(sigs) => {
                let cosigned = with_sigs(&ours, &sigs)?;
                ledger::append_cosigned(ledger_dir, &cosigned)
                    .context("recording the cosignature")?;
                t.held = Some(cp.size);
                t.done = Some((cp.size, cp.root.0));
                let time = sigs
                    .iter()
                    .filter_map(|s| witness::cosig::cosignature_timestamp(s.signature()))
                    .max()
                    .unwrap_or(0);
                return Ok(Pushed::Cosigned {
                    size: cp.size,
                    time,
                });
            }
            Added::Conflict(n) => {
                t.held = Some(n);
                old = n;
            }
        }
    }
    bail!("witness {} kept answering 409 (it holds {old})", t.name)
}

/// The ledger's latest own checkpoint note (its signature only), read from the end of
/// `ledger/checkpoint-notes` (the file grows by a note a second under `serve`; reading it
/// whole every second would not do). Entries are `text \n\n sigs \n\n`, so the last two
/// pieces between blank lines are the last note's text and signatures.
fn latest_own(ledger_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let path = ledger_dir.join(ledger::NOTES_FILE);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    // A torn append leaves bytes after the last "\n\n": cut them.
    let Some(end) = tail.windows(2).rposition(|w| w == b"\n\n") else {
        return Ok(None);
    };
    let body = &tail[..end];
    let Some(sep) = body.windows(2).rposition(|w| w == b"\n\n") else {
        return Ok(None);
    };
    let sigs = &body[sep + 2..];
    let text_start = body[..sep]
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(if from == 0 { 0 } else { usize::MAX }, |i| i + 2);
    if text_start == usize::MAX || !sigs.starts_with("—".as_bytes()) {
        // Not a clean tail: read the file whole.
        return Ok(ledger::read_notes(&path)?.and_then(|n| n.notes.last().map(|s| s.note.clone())));
    }
    let mut note = body[text_start..sep].to_vec();
    note.extend_from_slice(b"\n\n");
    note.extend_from_slice(sigs);
    note.push(b'\n');
    Ok(Some(note))
}

fn with_sigs(note: &[u8], sigs: &[Signature]) -> anyhow::Result<Vec<u8>> {
    let mut out = note.to_vec();
    for s in sigs {
        out.extend_from_slice(&s.to_bytes());
    }
    Note::from_bytes(&out).map_err(|e| anyhow::anyhow!("cosigned note: {e}"))?;
    Ok(out)
}

/// Starts `serve`'s pusher: every second, each witness gets the latest checkpoint if it is
/// new to it. Failures are counted and logged (first, then every 60th), never fatal.
pub fn spawn(
    ledger_dir: PathBuf,
    mut targets: Vec<Target>,
    metrics: Arc<serve::metrics::Metrics>,
) -> std::io::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    if let Ok(mut m) = metrics.witnesses.lock() {
        for t in &targets {
            let mut stat = serve::metrics::WitnessStat::default();
            if let Some((size, time)) = recorded(&ledger_dir, t) {
                stat.cosigned_size = size;
                stat.last_cosign_unix = time as f64;
            }
            m.insert(t.name.clone(), stat);
        }
    }
    std::thread::Builder::new()
        .name("witness-push".into())
        .spawn(move || {
            loop {
                for t in &mut targets {
                    let result = push(&ledger_dir, t);
                    let Ok(mut m) = metrics.witnesses.lock() else {
                        continue;
                    };
                    let stat = m.entry(t.name.clone()).or_default();
                    match result {
                        Ok(Pushed::Cosigned { size, time }) => {
                            stat.cosigned_size = size;
                            stat.last_cosign_unix = time as f64;
                            stat.last_error = None;
                        }
                        Ok(Pushed::Nothing) => {}
                        Err(e) => {
                            if stat.failures % 60 == 0 {
                                eprintln!("pugmark serve: witness {}: {e:#}", t.name);
                            }
                            stat.failures += 1;
                            stat.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .map(|_| ())
}
