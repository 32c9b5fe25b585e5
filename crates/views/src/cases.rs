//! The case store (issue 14: a case, like Timesketch's sketch): cases with their members,
//! saved queries, starred records, annotations and tags, in SQLite (`DATA/cases.sqlite`).
//!
//! Derived state like every view: each change is first a ledger record (the binary's
//! `cases.rs` writes it as an audit record with a `change`, observer `collector`), and this
//! store is only the fold of those records in ledger order — [`CaseStore::apply`] with the
//! record's position, [`CaseStore::last_seq`] to catch up, and deleting the file rebuilds it.
//! A change that does not apply (unknown case, a second create of one id) is skipped and
//! counted, never an error: the ledger is the truth, this is its reading.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One change to a case, as recorded in the ledger (`{"op": …, "case": …, …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Create {
        case: String,
        title: String,
        #[serde(default)]
        tags: Vec<String>,
    },
    Share {
        case: String,
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        vos: Vec<String>,
    },
    Star {
        case: String,
        seq: u64,
        /// A flow of the datagram at `seq` (no record of its own): its place there, `F.R`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
    },
    Unstar {
        case: String,
        seq: u64,
        /// A flow of the datagram at `seq` (no record of its own): its place there, `F.R`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
    },
    Annotate {
        case: String,
        /// The record annotated; none: a note on the case.
        #[serde(default)]
        seq: Option<u64>,
        /// A flow of the datagram at `seq` (no record of its own): its place there, `F.R`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
        text: String,
    },
    Tag {
        case: String,
        tag: String,
        #[serde(default)]
        seq: Option<u64>,
        /// A flow of the datagram at `seq` (no record of its own): its place there, `F.R`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
    },
    Query {
        case: String,
        verb: String,
        /// The query's parameters, a JSON object as text (`{"ip": …, "at": …}`).
        params: String,
        #[serde(default)]
        title: Option<String>,
    },
}

impl Change {
    pub fn case(&self) -> &str {
        match self {
            Change::Create { case, .. }
            | Change::Share { case, .. }
            | Change::Star { case, .. }
            | Change::Unstar { case, .. }
            | Change::Annotate { case, .. }
            | Change::Tag { case, .. }
            | Change::Query { case, .. } => case,
        }
    }

    /// The op's name (`create`, `star`, …).
    pub fn op(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Share { .. } => "share",
            Change::Star { .. } => "star",
            Change::Unstar { .. } => "unstar",
            Change::Annotate { .. } => "annotate",
            Change::Tag { .. } => "tag",
            Change::Query { .. } => "query",
        }
    }
}

/// Who made a change and where it is in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    /// The ledger record holding the change.
    pub seq: u64,
    /// Its time (RFC 3339).
    pub time: String,
    /// The identity's name.
    pub by: String,
    /// The identity's subject (OIDC `sub`, `api-token:ID`, `cli:NAME`).
    pub subject: Option<String>,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub title: String,
    pub owner: String,
    pub owner_subject: Option<String>,
    pub created: String,
    /// The ledger record that created it.
    pub created_seq: u64,
    /// Named users it is shared with (name or subject).
    pub users: Vec<String>,
    /// VOs it is shared with.
    pub vos: Vec<String>,
    /// Tags on the case itself.
    pub tags: Vec<String>,
    pub queries: Vec<SavedQuery>,
    pub stars: Vec<Star>,
    pub annotations: Vec<Annotation>,
    /// Tags on records.
    pub record_tags: Vec<RecordTag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQuery {
    pub verb: String,
    /// JSON object as text.
    pub params: String,
    pub title: Option<String>,
    pub made: Made,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Star {
    /// The starred record's ledger position (a flow's: its datagram's).
    pub record: u64,
    /// A flow of that datagram: its place there (`F.R`).
    pub flow: Option<String>,
    pub made: Made,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// The annotated record; none for a note on the case.
    pub record: Option<u64>,
    /// A flow of that datagram (`F.R`).
    pub flow: Option<String>,
    pub text: String,
    pub made: Made,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTag {
    pub record: u64,
    /// A flow of that datagram (`F.R`).
    pub flow: Option<String>,
    pub tag: String,
    pub made: Made,
}

/// The SQLite case store.
pub struct CaseStore {
    conn: Connection,
}

/// Errors of the case store (SQLite's).
pub type Error = rusqlite::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cases (id TEXT PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL,
  owner_subject TEXT, created TEXT NOT NULL, created_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (case_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
  PRIMARY KEY (case_id, kind, name));
CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, case_id TEXT NOT NULL, kind TEXT NOT NULL,
  record INTEGER, text TEXT, params TEXT, title TEXT, time TEXT NOT NULL, by TEXT NOT NULL, subject TEXT,
  flow TEXT);
CREATE INDEX IF NOT EXISTS items_case ON items (case_id, seq);
";

impl CaseStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<CaseStore, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        conn.execute_batch(SCHEMA)?;
        // A store made before flows could be starred (a flow of a datagram, `F.R`).
        let has_flow = conn
            .prepare("SELECT 1 FROM pragma_table_info('items') WHERE name = 'flow'")?
            .exists([])?;
        if !has_flow {
            conn.execute_batch("ALTER TABLE items ADD COLUMN flow TEXT")?;
        }
        Ok(CaseStore { conn })
    }

    /// The last ledger position applied (0: none).
    pub fn last_seq(&self) -> Result<u64, Error> {
        Ok(self
            .conn
            .query_row("SELECT v FROM meta WHERE k = 'last_seq'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, |v| v as u64))
    }

    /// Changes skipped because they did not apply (unknown case, duplicate create).
    pub fn skipped(&self) -> Result<u64, Error> {
        Ok(self
            .conn
            .query_row("SELECT v FROM meta WHERE k = 'skipped'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, |v| v as u64))
    }

    /// Applies changes in ledger order, in one transaction; those at or before
    /// [`CaseStore::last_seq`] are ignored (already applied). Returns how many applied.
    pub fn apply(&mut self, changes: &[(Made, Change)]) -> Result<usize, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last: u64 = tx
            .query_row("SELECT v FROM meta WHERE k = 'last_seq'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, |v| v as u64);
        let mut applied = 0;
        let mut skipped = 0i64;
        let mut top = last;
        for (m, c) in changes {
            if m.seq <= last {
                continue;
            }
            top = top.max(m.seq);
            let exists = tx
                .query_row("SELECT 1 FROM cases WHERE id = ?1", [c.case()], |_| Ok(()))
                .optional()?
                .is_some();
            let seq = m.seq as i64;
            let ok = match c {
                Change::Create { case, title, tags } => {
                    if exists {
                        false
                    } else {
                        tx.execute(
                            "INSERT INTO cases VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![case, title, m.by, m.subject, m.time, seq],
                        )?;
                        for (i, t) in tags.iter().enumerate() {
                            tx.execute(
                                "INSERT INTO items (seq, case_id, kind, text, time, by, subject) VALUES (?1, ?2, 'tag', ?3, ?4, ?5, ?6)",
                                params![-(seq * 1000 + i as i64), case, t, m.time, m.by, m.subject],
                            )?;
                        }
                        true
                    }
                }
                _ if !exists => false,
                Change::Share { case, users, vos } => {
                    for (kind, names) in [("user", users), ("vo", vos)] {
                        for n in names {
                            tx.execute(
                                "INSERT OR IGNORE INTO members VALUES (?1, ?2, ?3)",
                                params![case, kind, n],
                            )?;
                        }
                    }
                    true
                }
                Change::Star { case, seq: r, flow } => {
                    tx.execute(
                        "INSERT INTO items (seq, case_id, kind, record, flow, time, by, subject) VALUES (?1, ?2, 'star', ?3, ?4, ?5, ?6, ?7)",
                        params![seq, case, *r as i64, flow, m.time, m.by, m.subject],
                    )?;
                    true
                }
                Change::Unstar { case, seq: r, flow } => {
                    tx.execute(
                        "DELETE FROM items WHERE case_id = ?1 AND kind = 'star' AND record = ?2 AND flow IS ?3",
                        params![case, *r as i64, flow],
                    )?;
                    true
                }
                Change::Annotate {
                    case,
                    seq: r,
                    flow,
                    text,
                } => {
                    tx.execute(
                        "INSERT INTO items (seq, case_id, kind, record, flow, text, time, by, subject) VALUES (?1, ?2, 'note', ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![seq, case, r.map(|r| r as i64), flow, text, m.time, m.by, m.subject],
                    )?;
                    true
                }
                Change::Tag {
                    case,
                    tag,
                    seq: r,
                    flow,
                } => {
                    tx.execute(
                        "INSERT INTO items (seq, case_id, kind, record, flow, text, time, by, subject) VALUES (?1, ?2, 'tag', ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![seq, case, r.map(|r| r as i64), flow, tag, m.time, m.by, m.subject],
                    )?;
                    true
                }
                Change::Query {
                    case,
                    verb,
                    params: p,
                    title,
                } => {
                    tx.execute(
                        "INSERT INTO items (seq, case_id, kind, text, params, title, time, by, subject) VALUES (?1, ?2, 'query', ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![seq, case, verb, p, title, m.time, m.by, m.subject],
                    )?;
                    true
                }
            };
            if ok {
                applied += 1;
            } else {
                skipped += 1;
            }
        }
        tx.execute(
            "INSERT INTO meta VALUES ('last_seq', ?1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            [top as i64],
        )?;
        tx.execute(
            "INSERT INTO meta VALUES ('skipped', ?1) ON CONFLICT (k) DO UPDATE SET v = v + excluded.v",
            [skipped],
        )?;
        tx.commit()?;
        Ok(applied)
    }

    /// Every case id, oldest first.
    pub fn ids(&self) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM cases ORDER BY created_seq")?;
        let ids = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// One case with everything in it.
    pub fn get(&self, id: &str) -> Result<Option<Case>, Error> {
        let Some(mut c) = self
            .conn
            .query_row(
                "SELECT id, title, owner, owner_subject, created, created_seq FROM cases WHERE id = ?1",
                [id],
                |r| {
                    Ok(Case {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        owner: r.get(2)?,
                        owner_subject: r.get(3)?,
                        created: r.get(4)?,
                        created_seq: r.get::<_, i64>(5)? as u64,
                        users: Vec::new(),
                        vos: Vec::new(),
                        tags: Vec::new(),
                        queries: Vec::new(),
                        stars: Vec::new(),
                        annotations: Vec::new(),
                        record_tags: Vec::new(),
                    })
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut st = self
            .conn
            .prepare("SELECT kind, name FROM members WHERE case_id = ?1 ORDER BY kind, name")?;
        let rows = st.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (k, n) = row?;
            if k == "vo" {
                c.vos.push(n);
            } else {
                c.users.push(n);
            }
        }
        let mut st = self.conn.prepare(
            "SELECT seq, kind, record, text, params, title, time, by, subject, flow FROM items WHERE case_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                Made {
                    seq: 0,
                    time: r.get(6)?,
                    by: r.get(7)?,
                    subject: r.get(8)?,
                },
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        for row in rows {
            let (seq, kind, record, text, params, title, mut made, flow) = row?;
            // Tags given at creation are stored under negative positions (before the create).
            made.seq = if seq < 0 { c.created_seq } else { seq as u64 };
            let record = record.map(|r| r as u64);
            match (kind.as_str(), record) {
                ("star", Some(record)) => c.stars.push(Star { record, flow, made }),
                ("note", record) => c.annotations.push(Annotation {
                    record,
                    flow,
                    text: text.unwrap_or_default(),
                    made,
                }),
                ("tag", None) => c.tags.push(text.unwrap_or_default()),
                ("tag", Some(record)) => c.record_tags.push(RecordTag {
                    record,
                    flow,
                    tag: text.unwrap_or_default(),
                    made,
                }),
                ("query", _) => c.queries.push(SavedQuery {
                    verb: text.unwrap_or_default(),
                    params: params.unwrap_or_else(|| "{}".into()),
                    title,
                    made,
                }),
                _ => {}
            }
        }
        c.tags.sort();
        c.tags.dedup();
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(seq: u64) -> Made {
        Made {
            seq,
            time: "2026-10-14T10:00:00Z".into(),
            by: "alice".into(),
            subject: Some("cli:alice".into()),
        }
    }

    #[test]
    fn changes_fold_in_ledger_order_and_are_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = CaseStore::open(&dir.path().join("cases.sqlite")).expect("open");
        let c = |op: Change, seq| (made(seq), op);
        let changes = vec![
            c(
                Change::Star {
                    case: "k1".into(),
                    seq: 7,
                    flow: None,
                },
                3,
            ),
            c(
                Change::Create {
                    case: "k1".into(),
                    title: "t".into(),
                    tags: vec!["ssh".into()],
                },
                4,
            ),
            c(
                Change::Star {
                    case: "k1".into(),
                    seq: 7,
                    flow: None,
                },
                5,
            ),
            c(
                Change::Annotate {
                    case: "k1".into(),
                    seq: Some(7),
                    flow: None,
                    text: "decisive".into(),
                },
                6,
            ),
            c(
                Change::Share {
                    case: "k1".into(),
                    users: vec!["bob".into()],
                    vos: vec!["atlas".into()],
                },
                8,
            ),
        ];
        assert_eq!(s.apply(&changes).expect("apply"), 4);
        // Applying again changes nothing.
        assert_eq!(s.apply(&changes).expect("apply"), 0);
        assert_eq!(s.last_seq().expect("last"), 8);
        assert_eq!(s.skipped().expect("skipped"), 1);
        let k = s.get("k1").expect("get").expect("case");
        assert_eq!(k.stars.len(), 1);
        assert_eq!(k.stars[0].made.seq, 5);
        assert_eq!(k.annotations[0].record, Some(7));
        assert_eq!(k.tags, vec!["ssh".to_string()]);
        assert_eq!(k.users, vec!["bob".to_string()]);
        assert_eq!(k.vos, vec!["atlas".to_string()]);
        assert_eq!(s.ids().expect("ids"), vec!["k1".to_string()]);
    }

    /// A store made before flows could be starred gains the column; two flows of one
    /// datagram are two stars, and unstarring one leaves the other.
    #[test]
    fn flows_of_one_datagram_are_starred_apart_in_an_older_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cases.sqlite");
        let old = SCHEMA.replace(",\n  flow TEXT);", ");");
        assert_ne!(old, SCHEMA);
        Connection::open(&path)
            .and_then(|c| c.execute_batch(&old))
            .expect("old store");
        let mut s = CaseStore::open(&path).expect("open");
        let star = |flow: &str| Change::Star {
            case: "k".into(),
            seq: 9,
            flow: Some(flow.into()),
        };
        let changes = vec![
            (
                made(1),
                Change::Create {
                    case: "k".into(),
                    title: "t".into(),
                    tags: vec![],
                },
            ),
            (made(2), star("0.1")),
            (made(3), star("0.2")),
            (
                made(4),
                Change::Unstar {
                    case: "k".into(),
                    seq: 9,
                    flow: Some("0.1".into()),
                },
            ),
        ];
        assert_eq!(s.apply(&changes).expect("apply"), 4);
        let k = s.get("k").expect("get").expect("case");
        assert_eq!(k.stars.len(), 1);
        assert_eq!(
            (k.stars[0].record, k.stars[0].flow.as_deref()),
            (9, Some("0.2"))
        );
    }
}
