//! Proofs in reports (issue 11): for every record a report or a `who` answer cites, its bytes
//! and an inclusion proof against a signed checkpoint (the latest one that witnesses cosigned
//! and that covers the records, else the latest signed one), so `pugmark proof check` can
//! verify the evidence offline with only the site's public key and the witnesses' keys.
//!
//! The `integrity` object (JSON; embedded in Markdown as a ```` ```pugmark-proofs ```` block and
//! in HTML as `<script type="application/json" id="pugmark-proofs">`):
//!
//! ```text
//! format        "pugmark-proofs/1"
//! origin        the log origin
//! checkpoint    the signed checkpoint note, with the witnesses' cosignature lines
//! tree_size     its size; root: its base64 root hash
//! cosignatures  how many signature lines besides the log's own it carries
//! witnesses     their key names (checked by `proof check --witness-key`)
//! records       [{seq, record (base64 of the stored bytes), proof: [base64 hashes]}]
//! unproven      seqs cited but after the checkpoint (signed at the next one)
//! removed       [{seq, removed_by}]: cited records whose payload a retention policy removed
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use witness::client::{base64, base64_decode};
use witness::signed_note::Note;

/// The format tag of the integrity object.
pub const FORMAT: &str = "pugmark-proofs/1";
/// The Markdown fence info string and HTML script id that carry it.
pub const EMBED_TAG: &str = "pugmark-proofs";

/// Every `seq` (> 0) named anywhere in a JSON answer, and every element of a `seqs` list:
/// the records it cites.
pub fn cited(v: &Value, out: &mut BTreeSet<u64>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "seq"
                    && let Some(n) = x.as_u64()
                    && n > 0
                {
                    out.insert(n);
                }
                // Lists of positions (`seqs`: conflicts, `contain`, payloads) are citations too.
                if k == "seqs"
                    && let Some(a) = x.as_array()
                {
                    out.extend(a.iter().filter_map(Value::as_u64).filter(|n| *n > 0));
                }
                cited(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| cited(x, out)),
        _ => {}
    }
}

/// Every derived flow's position in the answer `v` turned into its citation (the datagram's
/// `seq` and the flow's place, `query::cite::externalize`): run on each JSON answer before it
/// is printed, proved or sent. Nothing to do, and the flow store left unopened, when the
/// answer cites no derived flow.
pub fn externalize(data: &Path, v: &mut Value) -> anyhow::Result<()> {
    externalize_noting(data, v, std::iter::empty())
}

/// [`externalize`], told first what the answer's events say of their own flow positions
/// (a flow a search's ledger tail derived is in no flow store yet).
pub fn externalize_noting<'e>(
    data: &Path,
    v: &mut Value,
    events: impl Iterator<Item = (u64, &'e model::Event)>,
) -> anyhow::Result<()> {
    if !query::cite::has_flow_position(v) {
        return Ok(());
    }
    let dd = pipeline::datadir::DataDir::open(data, false)?;
    let store = flowstore::FlowStore::open_read(dd.flows())?;
    let mut r = query::cite::Resolver::new(Some(&store));
    for (pos, e) in events {
        r.note(pos, e);
    }
    query::cite::externalize(v, &mut r)
}

/// How a text answer cites the record at position `seq`: `#seq`, or for a derived flow its
/// datagram and place, `#D/F.R` (`query::cite::text`), looked up in the flow store of the
/// data directory at `data`; `#?` when it cannot say (never the process's own position).
pub fn cite_text(data: &Path, seq: u64) -> String {
    if !model::flow::is_flow_pos(seq) {
        return format!("#{seq}");
    }
    let cite = pipeline::datadir::DataDir::open(data, false)
        .ok()
        .and_then(|dd| flowstore::FlowStore::open_read(dd.flows()).ok())
        .and_then(|store| query::cite::Resolver::new(Some(&store)).cite(seq).ok());
    cite.map_or_else(|| "#?".to_string(), |c| query::cite::text(&c))
}

/// The integrity object for `seqs`, or `None` when the ledger has no signed checkpoint yet.
pub fn integrity(ledger_dir: &Path, seqs: &BTreeSet<u64>) -> anyhow::Result<Option<Value>> {
    integrity_with(ledger_dir, seqs, None)
}

/// [`integrity`] through a reader the caller opened already (reopened if the chosen
/// checkpoint is past its end).
pub fn integrity_with(
    ledger_dir: &Path,
    seqs: &BTreeSet<u64>,
    reader: Option<ledger::LedgerReader>,
) -> anyhow::Result<Option<Value>> {
    // The newest notes only (the file grows by a note a second under `serve`); the whole file
    // only when a cosigned checkpoint is wanted and none is in its tail.
    let notes_path = ledger_dir.join(ledger::NOTES_FILE);
    // Which checkpoint texts carry cosignatures (the file read once, merged from below too).
    let cos = ledger::read_notes(&ledger_dir.join(ledger::COSIGNATURES_FILE))?.unwrap_or_default();
    // Without cosignatures only the newest note is wanted: a few notes' bytes, not the ~60
    // notes of the usual window, each parsed (a tenth of the proofs' time in a `who`).
    let window = if cos.notes.is_empty() {
        ledger::NOTES_TAIL_BYTES / 8
    } else {
        ledger::NOTES_TAIL_BYTES
    };
    let Some((tail, whole)) = ledger::read_notes_tail(&notes_path, window)? else {
        return Ok(None);
    };
    let Some(last) = tail.notes.last().cloned() else {
        return Ok(None);
    };
    let mut cosigned: HashMap<Vec<u8>, usize> = HashMap::new();
    for n in &cos.notes {
        if let Ok(parsed) = Note::from_bytes(&n.note) {
            *cosigned.entry(parsed.text().to_vec()).or_default() += 1;
        }
    }
    let need = seqs.last().copied().unwrap_or(0);
    // The latest cosigned checkpoint that covers every cited record, else the latest.
    let pick = |notes: &[ledger::StoredNote]| {
        notes
            .iter()
            .rev()
            .filter(|n| n.checkpoint.size >= need)
            .find(|n| Note::from_bytes(&n.note).is_ok_and(|p| cosigned.contains_key(p.text())))
            .cloned()
    };
    let found = if cosigned.is_empty() {
        None
    } else {
        match pick(&tail.notes) {
            Some(n) => Some(n),
            None if !whole => ledger::read_notes(&notes_path)?.and_then(|all| pick(&all.notes)),
            None => None,
        }
    };
    let chosen = found.unwrap_or(last);
    let note = ledger::merged_with(&chosen.note, &cos)?;
    let size = chosen.checkpoint.size;
    let parsed = Note::from_bytes(&note).map_err(|e| anyhow::anyhow!("checkpoint note: {e}"))?;
    let text_len = parsed.text().len();
    let sig_names: Vec<String> = note[text_len + 1..]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| witness::signed_note::Signature::from_bytes(l).ok())
        .map(|s| s.name().to_owned())
        .collect();
    let witnesses: Vec<&String> = sig_names
        .iter()
        .filter(|n| **n != chosen.checkpoint.origin)
        .collect();
    let mut reader = match reader {
        Some(r) if r.len() >= size => r,
        _ => ledger::LedgerReader::open(ledger_dir)?,
    };
    let mut unproven = Vec::new();
    let mut removed = Vec::new();
    let mut proven = Vec::new();
    for &seq in seqs {
        if seq > size {
            unproven.push(seq);
        } else if let Some(by) = reader.removed_by(seq) {
            // Its payload is gone by policy: nothing to prove the bytes of.
            removed.push(json!({"seq": seq, "removed_by": by}));
        } else {
            proven.push(seq);
        }
    }
    // One proof session for all: the records' proofs share the tree's right edge. (Two
    // threads, a session each, measured no faster: a thread's start cost what it saved.)
    let proofs = reader
        .inclusion_proofs(&proven, size)
        .with_context(|| format!("inclusion proofs of {} records", proven.len()))?;
    let mut records = Vec::with_capacity(proven.len());
    for (&seq, proof) in proven.iter().zip(&proofs) {
        let bytes = reader
            .get(seq)
            .with_context(|| format!("reading record #{seq}"))?;
        records.push(json!({
            "seq": seq,
            "record": base64(&bytes),
            "proof": proof.iter().map(|h| base64(&h.0)).collect::<Vec<_>>(),
        }));
    }
    Ok(Some(json!({
        "format": FORMAT,
        "origin": chosen.checkpoint.origin,
        "checkpoint": String::from_utf8_lossy(&note),
        "tree_size": size,
        "root": base64(&chosen.checkpoint.root.0),
        "cosignatures": witnesses.len(),
        "witnesses": witnesses,
        "records": records,
        "unproven": unproven,
        "removed": removed,
    })))
}

/// The integrity object as a Markdown section.
pub fn markdown(i: &Value) -> anyhow::Result<String> {
    Ok(format!(
        "\n### Ledger checkpoint and proofs\n\n{}\n\n```{EMBED_TAG}\n{}\n```\n",
        summary(i),
        serde_json::to_string_pretty(i)?
    ))
}

/// The integrity object as an HTML section, before `</body>` when there is one.
pub fn html(page: &str, i: &Value) -> anyhow::Result<String> {
    // `<` escaped so that no record text can close the script element.
    let data = serde_json::to_string(i)?.replace('<', "\\u003c");
    let section = format!(
        "<section><h3>Ledger checkpoint and proofs</h3><p>{}</p>\n<script type=\"application/json\" id=\"{EMBED_TAG}\">{data}</script></section>\n",
        html_escape(&summary(i))
    );
    Ok(match page.rfind("</body>") {
        Some(at) => format!("{}{section}{}", &page[..at], &page[at..]),
        None => format!("{page}{section}"),
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One sentence: how many records are proven, against what, cosigned by how many witnesses.
pub fn summary(i: &Value) -> String {
    let n = i["records"].as_array().map_or(0, Vec::len);
    let k = i["cosignatures"].as_u64().unwrap_or(0);
    let unproven = i["unproven"].as_array().map_or(0, Vec::len);
    format!(
        "{n} cited record(s) carry their bytes and an inclusion proof against the checkpoint of tree size {} (root {}) signed by {}, cosigned by {k} witness(es){}{}. Check offline: `pugmark proof check FILE --pubkey LOG-VKEY --witness-key WITNESS-VKEY`.",
        i["tree_size"],
        i["root"].as_str().unwrap_or("?"),
        i["origin"].as_str().unwrap_or("?"),
        i["witnesses"]
            .as_array()
            .filter(|w| !w.is_empty())
            .map(|w| format!(
                " ({})",
                w.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .unwrap_or_default(),
        if unproven > 0 {
            format!("; {unproven} record(s) are after it (signed at the next checkpoint)")
        } else {
            String::new()
        }
    )
}

/// Finds the integrity object in a report: JSON (`integrity`), Markdown or HTML.
pub fn extract(text: &str) -> anyhow::Result<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if v.get("format").and_then(Value::as_str) == Some(FORMAT) {
            return Ok(v);
        }
        return v
            .get("integrity")
            .cloned()
            .filter(|i| !i.is_null())
            .context("this JSON has no `integrity` object (made before proofs, or no checkpoint)");
    }
    let fence = format!("```{EMBED_TAG}\n");
    if let Some((_, rest)) = text.split_once(&fence) {
        let body = rest.split_once("\n```").map_or(rest, |(b, _)| b);
        return serde_json::from_str(body).context("the pugmark-proofs block is not JSON");
    }
    let open = format!("<script type=\"application/json\" id=\"{EMBED_TAG}\">");
    if let Some((_, rest)) = text.split_once(&open) {
        let body = rest.split_once("</script>").map_or(rest, |(b, _)| b);
        return serde_json::from_str(body).context("the pugmark-proofs script is not JSON");
    }
    bail!(
        "no integrity object found (a JSON report's `integrity`, a Markdown ```pugmark-proofs block, or an HTML script#pugmark-proofs)"
    )
}

/// What `proof check` found.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub origin: String,
    pub tree_size: u64,
    /// The checkpoint's signature verified under `--pubkey`.
    pub signature_ok: bool,
    pub witnesses: Vec<Value>,
    pub records_ok: usize,
    pub records: usize,
    pub problems: Vec<String>,
}

/// Checks an integrity object offline: the checkpoint's signature by `log_vkey`, a valid
/// cosignature by each of `witness_vkeys`, and every record's leaf (recomputed from its bytes)
/// in the tree by its proof.
pub fn check(i: &Value, log_vkey: Option<&str>, witness_vkeys: &[String]) -> CheckReport {
    let mut problems = Vec::new();
    let note = i["checkpoint"].as_str().unwrap_or_default().as_bytes();
    let origin = i["origin"].as_str().unwrap_or_default().to_owned();
    let fields = ledger::parse_checkpoint(note);
    let (size, root) = match &fields {
        Ok(f) => (f.size, f.root),
        Err(e) => {
            problems.push(format!("the checkpoint does not parse: {e}"));
            (0, ledger::EMPTY_HASH)
        }
    };
    if let Ok(f) = &fields {
        if f.origin != origin {
            problems.push(format!(
                "the checkpoint names origin {}, the report {origin}",
                f.origin
            ));
        }
        if i["tree_size"].as_u64() != Some(f.size) {
            problems.push("tree_size differs from the checkpoint's".into());
        }
    }
    let signature_ok = match log_vkey {
        Some(k) => match ledger::verify_note(note, k) {
            Ok(_) => true,
            Err(e) => {
                problems.push(format!(
                    "the checkpoint's signature does not verify under --pubkey: {e}"
                ));
                false
            }
        },
        None => {
            problems.push("no --pubkey: the checkpoint is not authenticated".into());
            false
        }
    };
    let mut witnesses = Vec::new();
    for wk in witness_vkeys {
        let entry = match witness::parse_witness_vkey(wk) {
            Ok(v) => match witness::client::verify_cosigned(note, &v) {
                Some(c) => {
                    json!({"witness": witness::signed_note::Verifier::name(&v), "ok": true, "time": c.time})
                }
                None => {
                    problems.push(format!(
                        "no valid cosignature by witness {} on the checkpoint",
                        witness::signed_note::Verifier::name(&v)
                    ));
                    json!({"witness": witness::signed_note::Verifier::name(&v), "ok": false})
                }
            },
            Err(e) => {
                problems.push(format!("--witness-key {wk}: {e}"));
                json!({"witness": wk, "ok": false})
            }
        };
        witnesses.push(entry);
    }
    let records = i["records"].as_array().cloned().unwrap_or_default();
    let mut records_ok = 0;
    for r in &records {
        let seq = r["seq"].as_u64().unwrap_or(0);
        let bytes = r["record"].as_str().and_then(base64_decode);
        let proof: Option<Vec<ledger::Hash>> = r["proof"].as_array().and_then(|a| {
            a.iter()
                .map(|h| {
                    h.as_str()
                        .and_then(base64_decode)
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .map(ledger::Hash)
                })
                .collect()
        });
        match (bytes, proof) {
            (Some(bytes), Some(proof)) if seq > 0 => {
                let leaf = ledger::leaf_hash(&bytes);
                if ledger::check_inclusion(&proof, size, root, seq, leaf).is_ok() {
                    records_ok += 1;
                } else {
                    problems.push(format!(
                        "record #{seq}: its bytes are not in the tree of size {size} (changed, or the proof is wrong)"
                    ));
                }
            }
            _ => problems.push(format!("record #{seq}: malformed entry")),
        }
    }
    CheckReport {
        ok: problems.is_empty(),
        origin,
        tree_size: size,
        signature_ok,
        witnesses,
        records_ok,
        records: records.len(),
        problems,
    }
}

/// Adds `integrity` (the cited records with their bytes and inclusion proofs, or null
/// without signed notes) to a `--json` answer: what `who` and the query API print (`report`
/// renders it from [`integrity`]); through the ledger reader the caller opened already for
/// its views check, or a new one.
pub fn add_integrity_with(
    dd: &pipeline::datadir::DataDir,
    v: &mut Value,
    reader: Option<ledger::LedgerReader>,
) -> anyhow::Result<()> {
    externalize(dd.root(), v)?;
    let mut seqs = BTreeSet::new();
    cited(v, &mut seqs);
    let integrity = integrity_with(&dd.ledger(), &seqs, reader)?;
    if let Value::Object(m) = v {
        m.insert("integrity".into(), integrity.unwrap_or(Value::Null));
    }
    Ok(())
}
