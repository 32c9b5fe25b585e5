//! Views that know where they stand: before a query verb answers, each view it reads is held
//! against the ledger.
//!
//! Every view records the ledger position it reflects and the ledger's chain head at that
//! position (the search index in its commit payload, the fact store in its `ledger_head`
//! table, the imports view in `marks.json`). [`check`] compares both with the ledger for the
//! views a query reads (the imports view is held against the ledger by `Pipeline::open`,
//! which rebuilds it when it belongs to another ledger):
//!
//! - **current**: the view holds everything the ledger holds;
//! - **trailing**: the view is behind by some records (a live `serve` keeps its views a few
//!   seconds behind on purpose; an interrupted ingest leaves them behind until the next
//!   `ingest`/`serve` catches them up). The verb answers, with a note on stderr and the
//!   standing in `--json` (`views`);
//! - **missing**: the view's files are absent while the ledger holds records. The verb refuses
//!   (non-zero exit): an answer from it would be a silent "nothing". A view that exists and
//!   holds nothing yet (a `serve` just started) is trailing by the whole ledger;
//! - **foreign**: the view is ahead of the ledger or its recorded head differs from the
//!   ledger's at that position: it was built from another ledger. The verb refuses.
//!
//! Views written before heads were recorded carry none: their position is still checked.

use std::path::Path;

use anyhow::{Context, bail};
use ledger::LedgerReader;
use serde::Serialize;
use views::facts::FactStore;
use views::search::SearchIndex;

use crate::datadir::DataDir;

/// A view a verb reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The search index (`DATA/index`).
    Index,
    /// The fact store (`DATA/facts`).
    Facts,
    /// The columnar flow store (`DATA/flows`).
    Flows,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Index => "search index",
            View::Facts => "fact store",
            View::Flows => "flow store",
        }
    }

    fn key(self) -> &'static str {
        match self {
            View::Index => "index",
            View::Facts => "facts",
            View::Flows => "flows",
        }
    }
}

/// Where one view stands against the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    Current,
    Trailing,
    Missing,
    Foreign,
}

/// One view's check, as `--json` shows it under `views`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewStatus {
    pub view: &'static str,
    pub standing: Standing,
    /// The last ledger position the view holds (none: nothing).
    pub position: Option<u64>,
    /// Ledger records the view does not hold yet.
    pub behind: u64,
    /// Whether the view recorded the ledger's head at its position (older views did not).
    pub head_checked: bool,
    /// Why, for a view that is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Every checked view, with the ledger's last position at the time.
#[derive(Debug, Clone, Serialize)]
pub struct ViewsCheck {
    pub ledger_last: u64,
    pub views: Vec<ViewStatus>,
}

/// Position and recorded head of a view, or None when its files are absent.
type Position = Option<(Option<u64>, Option<[u8; 32]>)>;

fn read_position(dd: &DataDir, view: View) -> anyhow::Result<Position> {
    Ok(match view {
        View::Index => {
            if !SearchIndex::exists(dd.index()) {
                return Ok(None);
            }
            let index = SearchIndex::open_or_create(dd.index())
                .with_context(|| format!("opening search index in {}", dd.index().display()))?;
            let p = index.last_position()?;
            Some((p.map(|p| p.0), p.and_then(|p| p.1)))
        }
        View::Facts => {
            if !dd.facts().join("facts.sqlite").is_file() {
                return Ok(None);
            }
            let facts = FactStore::open(dd.facts())
                .with_context(|| format!("opening fact store in {}", dd.facts().display()))?;
            return facts_position(Some(&facts));
        }
        View::Flows => {
            if !flowstore::FlowStore::exists(dd.flows()) {
                return Ok(None);
            }
            let flows = flowstore::FlowStore::open(dd.flows())
                .with_context(|| format!("opening flow store in {}", dd.flows().display()))?;
            let p = flows.last_position();
            Some((p.map(|p| p.0), p.and_then(|p| p.1)))
        }
    })
}

/// Holds each of `which` against the ledger in `dd`.
pub fn check(dd: &DataDir, which: &[View]) -> anyhow::Result<ViewsCheck> {
    // Positions first, then the ledger: a live `serve` appends to the ledger before its views,
    // so a reader opened after reading a position sees at least that far.
    let mut positions = Vec::with_capacity(which.len());
    for &v in which {
        positions.push((v, read_position(dd, v)?));
    }
    judge_all(dd, positions)
}

/// [`check`] of the fact store alone, read through `facts`, the store the query will use
/// (`None`: there is none), so a short query opens it once.
pub fn check_facts(dd: &DataDir, facts: Option<&FactStore>) -> anyhow::Result<ViewsCheck> {
    judge_all(dd, vec![(View::Facts, facts_position(facts)?)])
}

/// The fact store's position (`None`: there is no store).
fn facts_position(facts: Option<&FactStore>) -> anyhow::Result<Position> {
    Ok(match facts {
        None => None,
        Some(f) => {
            let p = f.last_position()?;
            Some((p.map(|p| p.0), p.and_then(|p| p.1)))
        }
    })
}

/// [`check_facts`] with a ledger reader the caller opened (`who`: one reader for the check
/// and the answer's proofs, handed back). The ledger must be read after the store's position
/// (a live `serve` appends to the ledger before its views): a reader that ends before the
/// position is opened again.
pub fn check_facts_with(
    dd: &DataDir,
    facts: Option<&FactStore>,
    reader: LedgerReader,
) -> anyhow::Result<(ViewsCheck, LedgerReader)> {
    let pos = facts_position(facts)?;
    let mut reader = reader;
    if let Some((Some(at), _)) = pos
        && at > reader.len()
    {
        reader = open_reader(&dd.ledger())?;
    }
    let ledger_last = reader.len();
    let views = vec![judge(&mut reader, ledger_last, View::Facts, pos)];
    Ok((ViewsCheck { ledger_last, views }, reader))
}

fn judge_all(dd: &DataDir, positions: Vec<(View, Position)>) -> anyhow::Result<ViewsCheck> {
    let mut reader = open_reader(&dd.ledger())?;
    let ledger_last = reader.len();
    let mut views = Vec::with_capacity(positions.len());
    for (view, pos) in positions {
        views.push(judge(&mut reader, ledger_last, view, pos));
    }
    Ok(ViewsCheck { ledger_last, views })
}

fn open_reader(dir: &Path) -> anyhow::Result<LedgerReader> {
    LedgerReader::open(dir).with_context(|| format!("opening ledger in {}", dir.display()))
}

fn judge(reader: &mut LedgerReader, ledger_last: u64, view: View, pos: Position) -> ViewStatus {
    let mut st = ViewStatus {
        view: view.key(),
        standing: Standing::Current,
        position: None,
        behind: 0,
        head_checked: false,
        why: None,
    };
    let Some((position, head)) = pos else {
        if ledger_last > 0 {
            st.standing = Standing::Missing;
            st.behind = ledger_last;
            st.why = Some(format!("the {} is missing", view.name()));
        }
        return st;
    };
    st.position = position;
    let at = position.unwrap_or(0);
    if at > ledger_last {
        st.standing = Standing::Foreign;
        st.why = Some(format!(
            "the {} holds records up to #{at}, past the ledger's end #{ledger_last}: it was \
             built from another ledger",
            view.name()
        ));
        return st;
    }
    if let Some(h) = head {
        match reader.head_at(at) {
            Ok(actual) if actual == h => st.head_checked = true,
            Ok(_) => {
                st.standing = Standing::Foreign;
                st.why = Some(format!(
                    "the {} was built from another ledger (its chain head at #{at} is not this \
                     ledger's)",
                    view.name()
                ));
                return st;
            }
            Err(e) => {
                st.standing = Standing::Foreign;
                st.why = Some(format!(
                    "the {}'s position #{at} cannot be read in the ledger: {e}",
                    view.name()
                ));
                return st;
            }
        }
    }
    if at < ledger_last {
        st.behind = ledger_last - at;
        // An existing view that holds nothing yet (a `serve` just started on it) trails by
        // the whole ledger: noted, not refused.
        st.standing = Standing::Trailing;
        st.why = Some(format!(
            "the {} trails the ledger by {} records (#{at} of #{ledger_last})",
            view.name(),
            st.behind
        ));
    }
    st
}

impl ViewsCheck {
    /// For a query verb: refuse when a view is missing or foreign (one line naming each, and
    /// what to run), else print a note on stderr for each trailing view and go on.
    pub fn require(self, verb: &str) -> anyhow::Result<ViewsCheck> {
        let checked = self.refuse_unusable(verb)?;
        checked.print_notes();
        Ok(checked)
    }

    /// Refuse when a view is missing or foreign; trailing views pass silently (for a verb
    /// that covers the trailing records itself, as `search` does).
    pub fn refuse_unusable(self, verb: &str) -> anyhow::Result<ViewsCheck> {
        let bad: Vec<&str> = self
            .views
            .iter()
            .filter(|v| matches!(v.standing, Standing::Missing | Standing::Foreign))
            .filter_map(|v| v.why.as_deref())
            .collect();
        if !bad.is_empty() {
            bail!(
                "{verb} cannot answer: {}; run `pugmark reindex` to rebuild the views from the ledger",
                bad.join("; ")
            );
        }
        Ok(self)
    }

    /// A note on stderr for each trailing view.
    pub fn print_notes(&self) {
        for v in &self.views {
            if v.standing == Standing::Trailing
                && let Some(why) = &v.why
            {
                eprintln!(
                    "pugmark: note: {why}; the answer may miss the latest records (a running \
                     `serve` catches up within seconds; otherwise the next `ingest` does)"
                );
            }
        }
    }

    /// `answer` as JSON with this check added under `views` (when it is a JSON object).
    pub fn annotate<T: Serialize>(&self, answer: &T) -> anyhow::Result<serde_json::Value> {
        let mut v = serde_json::to_value(answer)?;
        self.add_to(&mut v)?;
        Ok(v)
    }

    /// Inserts this check under `views` into a JSON object.
    pub fn add_to(&self, v: &mut serde_json::Value) -> anyhow::Result<()> {
        if let serde_json::Value::Object(map) = v {
            map.insert("views".into(), serde_json::to_value(self)?);
        }
        Ok(())
    }
}
