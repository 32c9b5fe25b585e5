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
/// whole every second would not do).
fn latest_own(ledger_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(ledger::last_note(&ledger_dir.join(ledger::NOTES_FILE))?.map(|n| n.note))
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

/// What `verify --witness` found for one witness.
#[derive(Debug, serde::Serialize)]
pub struct WitnessCheck {
    /// The witness's key name.
    pub witness: String,
    /// Its URL when asked over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `witness` (asked by URL) or `stored` (cosigned notes in `ledger/cosignatures`).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosigned_size: Option<u64>,
    /// Base64 root hash the witness cosigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosigned_root: Option<String>,
    /// RFC 3339 time of the cosignature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosigned_time: Option<String>,
    pub local_size: u64,
    pub ok: bool,
    /// What is wrong (names the witness, the size and the time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// Said when the key came from the witness itself (`--witness URL` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One `verify --witness` argument: `URL=VKEY`, `URL` (key asked from the witness: not
/// authenticated) or `VKEY` (the cosignatures stored beside the ledger).
pub enum WitnessSpec {
    Url { url: String, vkey: Option<String> },
    Stored { vkey: String },
}

pub fn parse_spec(s: &str) -> WitnessSpec {
    if s.starts_with("http://") || s.starts_with("https://") {
        // A URL holds no '=' before its path in practice; a vkey never starts with http.
        match s.split_once("=") {
            Some((url, vkey)) if !vkey.starts_with("http") => WitnessSpec::Url {
                url: url.to_owned(),
                vkey: Some(vkey.to_owned()),
            },
            _ => WitnessSpec::Url {
                url: s.to_owned(),
                vkey: None,
            },
        }
    } else {
        WitnessSpec::Stored { vkey: s.to_owned() }
    }
}

fn b64(h: &ledger::Hash) -> String {
    witness::client::base64(&h.0)
}

fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

/// The RFC 6962 root of a growing list of leaves, in O(log n) memory: the complete subtrees
/// of the right edge (what `verify --witness` folds while it reads the records once).
#[derive(Default)]
pub struct Frontier {
    stack: Vec<(u64, ledger::Hash)>,
    size: u64,
}

impl Frontier {
    pub fn push(&mut self, leaf: ledger::Hash) {
        self.stack.push((1, leaf));
        self.size += 1;
        while self.stack.len() >= 2 {
            let n = self.stack.len();
            if self.stack[n - 1].0 != self.stack[n - 2].0 {
                break;
            }
            let (w, right) = self.stack.pop().unwrap_or((0, ledger::EMPTY_HASH));
            let (_, left) = self.stack.pop().unwrap_or((0, ledger::EMPTY_HASH));
            self.stack.push((w * 2, ledger::node_hash(left, right)));
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> ledger::Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return ledger::EMPTY_HASH;
        };
        for &(_, left) in it {
            h = ledger::node_hash(left, h);
        }
        h
    }
}

/// What a witness holds: the cosigned checkpoint, the witness's name, its URL, a note.
type Held = (witness::Cosigned, String, Option<String>, Option<String>);

/// What a witness holds for `origin`, or a finding (and the URL asked).
pub fn cosigned_by(
    ledger_dir: &Path,
    origin: &str,
    spec: &WitnessSpec,
) -> Result<Held, (String, Option<String>)> {
    match spec {
        WitnessSpec::Url { url, vkey } => {
            let (vkey, note) = match vkey {
                Some(v) => (v.clone(), None),
                None => {
                    let v = fetch_vkey(url).map_err(|e| (format!("{e:#}"), Some(url.clone())))?;
                    (
                        v,
                        Some(
                            "the witness's key was asked from the witness itself: give URL=VKEY to pin it"
                                .to_owned(),
                        ),
                    )
                }
            };
            let peer =
                WitnessPeer::new(url, &vkey).map_err(|e| (e.to_string(), Some(url.clone())))?;
            match peer.latest(origin) {
                Ok(Some(c)) => Ok((c, peer.key_name().to_owned(), Some(url.clone()), note)),
                Ok(None) => Err((
                    format!(
                        "witness {} ({url}) holds no checkpoint for origin {origin}: it never cosigned this ledger",
                        peer.key_name()
                    ),
                    Some(url.clone()),
                )),
                Err(e) => Err((
                    format!("witness {} could not be asked: {e}", peer.key_name()),
                    Some(url.clone()),
                )),
            }
        }
        WitnessSpec::Stored { vkey } => {
            let v = witness::parse_witness_vkey(vkey)
                .map_err(|e| (format!("--witness {vkey}: {e}"), None))?;
            let file = ledger::read_notes(&ledger_dir.join(ledger::COSIGNATURES_FILE))
                .map_err(|e| (e.to_string(), None))?;
            let best = file
                .iter()
                .flat_map(|f| f.notes.iter())
                .filter_map(|n| verify_cosigned(&n.note, &v))
                .filter(|c| c.origin == origin)
                .max_by_key(|c| (c.size, c.time));
            match best {
                Some(c) => Ok((
                    c,
                    witness::signed_note::Verifier::name(&v).to_owned(),
                    None,
                    None,
                )),
                None => Err((
                    format!(
                        "no cosignature by witness {} is stored beside the ledger (ledger/cosignatures): \
                         it was never pushed to, or the file was removed; ask the witness by URL",
                        witness::signed_note::Verifier::name(&v)
                    ),
                    None,
                )),
            }
        }
    }
}

fn fetch_vkey(url: &str) -> anyhow::Result<String> {
    let text = witness::client::get_text(&format!("{}/pugmark/v1/vkey", url.trim_end_matches('/')))
        .map_err(anyhow::Error::msg)?;
    Ok(text.trim().to_owned())
}

/// Checks the local ledger against every witness: the first `size` records of the ledger must
/// hash to the root each witness cosigned. Reads the records once.
pub fn check_all(ledger_dir: &Path, specs: &[WitnessSpec]) -> anyhow::Result<Vec<WitnessCheck>> {
    let origin = ledger::read_origin(ledger_dir)?.context("the ledger has no origin")?;
    let mut held = Vec::new();
    let mut out: Vec<Option<WitnessCheck>> = Vec::new();
    for spec in specs {
        match cosigned_by(ledger_dir, &origin, spec) {
            Ok((c, name, url, note)) => {
                held.push((out.len(), c));
                out.push(Some(WitnessCheck {
                    witness: name,
                    url,
                    source: if matches!(spec, WitnessSpec::Url { .. }) {
                        "witness"
                    } else {
                        "stored"
                    },
                    cosigned_size: None,
                    cosigned_root: None,
                    cosigned_time: None,
                    local_size: 0,
                    ok: true,
                    finding: None,
                    note,
                }));
            }
            Err((finding, url)) => out.push(Some(WitnessCheck {
                witness: match spec {
                    WitnessSpec::Url { url, .. } => url.clone(),
                    WitnessSpec::Stored { vkey } => {
                        vkey.split('+').next().unwrap_or_default().to_owned()
                    }
                },
                url,
                source: if matches!(spec, WitnessSpec::Url { .. }) {
                    "witness"
                } else {
                    "stored"
                },
                cosigned_size: None,
                cosigned_root: None,
                cosigned_time: None,
                local_size: 0,
                ok: false,
                finding: Some(finding),
                note: None,
            })),
        }
    }
    // One pass over the records: the root at each cosigned size.
    let mut wanted: Vec<u64> = held.iter().map(|(_, c)| c.size).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut roots = std::collections::HashMap::new();
    let mut f = Frontier::default();
    if wanted.contains(&0) {
        roots.insert(0, f.root());
    }
    let reader = ledger::LedgerReader::open(ledger_dir)?;
    let max = wanted.last().copied().unwrap_or(0).min(reader.len());
    // Leaf hashes from the records (or, for segments a retention policy removed, from the
    // leaves their stubs keep), a million at a time.
    let mut next = 1u64;
    while next <= max {
        let count = (max - next + 1).min(1 << 20);
        for leaf in reader.leaf_hashes(next, count)? {
            f.push(leaf);
            if wanted.binary_search(&f.size()).is_ok() {
                roots.insert(f.size(), f.root());
            }
        }
        next += count;
    }
    let local = reader.len();
    for (i, c) in held {
        let Some(Some(w)) = out.get_mut(i) else {
            continue;
        };
        let time = rfc3339(c.time);
        w.cosigned_size = Some(c.size);
        w.cosigned_root = Some(b64(&c.root));
        w.cosigned_time = Some(time.clone());
        w.local_size = local;
        let who = match &w.url {
            Some(u) => format!("witness {} ({u})", w.witness),
            None => format!("witness {} (stored cosignature)", w.witness),
        };
        if local < c.size {
            w.ok = false;
            w.finding = Some(format!(
                "{who} cosigned tree size {} at {time}, but the local ledger holds only {local} records: \
                 records were removed after the witness saw them (truncation)",
                c.size
            ));
        } else if roots.get(&c.size) != Some(&c.root) {
            w.ok = false;
            w.finding = Some(format!(
                "{who} cosigned tree size {} at {time} with root {}, but the local ledger's first {} records \
                 hash to {}: the history the witness saw was rewritten",
                c.size,
                b64(&c.root),
                c.size,
                roots.get(&c.size).map_or("?".to_owned(), b64)
            ));
        }
    }
    for w in out.iter_mut().flatten() {
        w.local_size = local;
    }
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming root equals the RFC 6962 root of the same leaves (the ledger's
    /// `root_of`, over `tlog_tiles`) at every size up to 300, crossing several powers of 2.
    #[test]
    fn frontier_root_is_the_rfc6962_root_at_every_size() {
        let mut f = Frontier::default();
        let mut leaves = Vec::new();
        assert_eq!(f.root(), ledger::root_of(&leaves));
        for i in 0u32..300 {
            let leaf = ledger::leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            f.push(leaf);
            assert_eq!(f.root(), ledger::root_of(&leaves), "size {}", i + 1);
        }
    }

    /// The last note read from the tail of the notes file is the one `read_notes` parses
    /// last, also with a torn append after it and with more than 64 KiB of notes before.
    #[test]
    fn latest_own_reads_the_last_complete_note_from_the_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(ledger::NOTES_FILE);
        let note = |n: u64| {
            format!(
                "pugmark.t/ledger\n{n}\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n\u{2014} pugmark.t/ledger AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA{n:04}\n"
            )
        };
        assert_eq!(latest_own(dir.path()).expect("read"), None);
        let mut file = String::new();
        for n in 1..=600 {
            file.push_str(&note(n));
            file.push('\n');
        }
        std::fs::write(&path, &file).expect("write");
        assert!(file.len() > 64 * 1024);
        let want = note(600).into_bytes();
        assert_eq!(latest_own(dir.path()).expect("read"), Some(want.clone()));
        for torn in [
            "pugmark.t/led",
            "pugmark.t/ledger\n601\nCQkJ\n\n\u{2014} pugm",
        ] {
            std::fs::write(&path, format!("{file}{torn}")).expect("write");
            assert_eq!(
                latest_own(dir.path()).expect("read"),
                Some(want.clone()),
                "{torn:?}"
            );
        }
    }
}
