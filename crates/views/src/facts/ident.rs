//! Identities beyond Keystone and X.509, and payloads beyond HTCondor job ads (issue 12): the
//! SCIM directory (INDIGO IAM users and groups, their OIDC identities and certificate
//! subjects), the extras of a payload observation (token issuer and subject, where its record
//! came from, the correlation id its identity lines share), and those identity lines
//! (glexec's `Used DN/VO/FQAN`, an HTCondor-CE audit log's `AuthMethod`/`proxy` lines).
//!
//! Rows are observations, each citing its ledger seq, like the rest of the store; who a token
//! or a DN is, and which identity lines belong to which payload, is decided on read
//! ([`FactStore::person_by_token`], [`FactStore::person_by_dn`],
//! [`FactStore::fill_identities`]), so arrival order never matters. Tables (schema 3, all
//! new): `job_ext` (one row per `job_obs` row), `ident_obs`, `dir_scim`, `dir_oidc`,
//! `dir_cert`, and the column `dir_user.federated` (Keystone federated ids).

use model::{Event, EventClass, Origin, fields};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{FactStore, JobObs, Result, cached_row, opt};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS job_ext (
        seq INTEGER PRIMARY KEY, issuer TEXT, subject TEXT, source TEXT, phase TEXT,
        corr TEXT, origin_key TEXT, sender_ip TEXT, claimed_uuid TEXT, host TEXT,
        observer TEXT, target_uid TEXT, fqan TEXT, placed_ns INTEGER);
    CREATE INDEX IF NOT EXISTS job_ext_sender ON job_ext (sender_ip);
    CREATE INDEX IF NOT EXISTS job_ext_host ON job_ext (host);
    CREATE INDEX IF NOT EXISTS job_ext_uuid ON job_ext (claimed_uuid);
    CREATE INDEX IF NOT EXISTS job_ext_source ON job_ext (source);
    CREATE TABLE IF NOT EXISTS ident_obs (
        seq INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, source TEXT, origin_key TEXT NOT NULL,
        corr TEXT NOT NULL, issuer TEXT, subject TEXT, dn TEXT, vo TEXT, fqan TEXT, user TEXT,
        summary TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ident_obs_corr ON ident_obs (origin_key, corr, time_ns);
    CREATE TABLE IF NOT EXISTS dir_scim (
        seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL, user_name TEXT,
        name TEXT, email TEXT, active TEXT, groups TEXT, members TEXT, issuer_origin TEXT,
        ssh_keys TEXT);
    CREATE INDEX IF NOT EXISTS dir_scim_id ON dir_scim (id);
    CREATE TABLE IF NOT EXISTS dir_oidc (
        seq INTEGER NOT NULL, issuer TEXT NOT NULL, subject TEXT NOT NULL, scim_id TEXT NOT NULL,
        PRIMARY KEY (seq, issuer, subject));
    CREATE INDEX IF NOT EXISTS dir_oidc_sub ON dir_oidc (subject);
    CREATE TABLE IF NOT EXISTS dir_cert (
        seq INTEGER NOT NULL, dn_key TEXT NOT NULL, dn TEXT NOT NULL, scim_id TEXT NOT NULL,
        PRIMARY KEY (seq, dn_key));
    CREATE INDEX IF NOT EXISTS dir_cert_dn ON dir_cert (dn_key);
";

/// A payload observation's extras (issue 12); all None for a plain HTCondor ad.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobExt {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// `glexec`, `arc`, `ce-audit`; None for HTCondor ads and userlogs.
    pub source: Option<String>,
    /// `start`, `end`, `submit`.
    pub phase: Option<String>,
    /// The id its identity lines share (glexec `MON#ID`, audit `cid:N`).
    pub corr: Option<String>,
    /// Which source the record came from (sender address or file, and host), for the join.
    pub origin_key: Option<String>,
    /// What the one attribution rule reads (crate `query`, `attrib.rs`): the record's
    /// sender address, claimed instance UUID, claimed host, observer.
    pub sender_ip: Option<String>,
    pub claimed_uuid: Option<String>,
    pub host: Option<String>,
    pub observer: Option<String>,
    pub target_uid: Option<String>,
    pub fqan: Option<String>,
    /// `Event::placed` of the record (what attribution times by), nanoseconds.
    pub placed_ns: Option<i64>,
    /// Ledger positions of the identity lines joined to it ([`FactStore::fill_identities`]).
    pub ident_seqs: Vec<u64>,
}

/// A SCIM user (or group) entry: the latest at read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimEntry {
    pub seq: u64,
    pub kind: String,
    pub id: String,
    pub user_name: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    pub groups: Vec<String>,
    pub issuer_origin: Option<String>,
}

/// Where a record came from, for joining lines of one source: sender address (else the
/// file), and the host the record names.
pub fn origin_key(e: &Event) -> String {
    let from = match e.sender_ip() {
        Some(ip) => ip.to_string(),
        None => match &e.origin {
            Origin::File { path, .. } | Origin::FileFromSender { path, .. } => path.clone(),
            Origin::Peer { addr, .. } | Origin::AuthenticatedPeer { addr, .. } => addr.clone(),
        },
    };
    format!("{from}|{}", e.host.as_deref().unwrap_or("").to_lowercase())
}

/// A DN in one comparable form: `/`-separated, most significant first, lower-case, no spaces
/// around `=` (RFC 2253 `CN=a,O=b` and OpenSSL `/O=b/CN=a` meet).
pub fn dn_key(dn: &str) -> String {
    let dn = dn.trim();
    let parts: Vec<String> = if dn.starts_with('/') {
        dn.split('/').map(str::to_string).collect()
    } else {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut esc = false;
        for c in dn.chars() {
            match c {
                '\\' if !esc => esc = true,
                ',' if !esc => parts.push(std::mem::take(&mut cur)),
                c => {
                    esc = false;
                    cur.push(c);
                }
            }
        }
        parts.push(cur);
        parts.reverse();
        parts
    };
    parts
        .iter()
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((k, v)) => format!("{}={}", k.trim(), v.trim()),
                None => p.to_string(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
        .to_lowercase()
}

/// An issuer compared: lower-case, without a trailing `/`.
pub fn issuer_key(iss: &str) -> String {
    iss.trim().trim_end_matches('/').to_lowercase()
}

fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!(
        "{}://{}",
        scheme.to_lowercase(),
        host.to_lowercase()
    ))
}

/// Whether the event says something this module keeps (beside `job.run` rows).
pub(super) fn is_source(e: &Event) -> bool {
    match e.class {
        EventClass::IdentityDirectory => true,
        EventClass::JobRun => e.field(fields::JOB_ID).is_some(),
        _ => e.field(fields::CORRELATION).is_some() && has_identity(e),
    }
}

fn has_identity(e: &Event) -> bool {
    [
        fields::DN,
        fields::VO,
        fields::FQAN,
        fields::TOKEN_SUBJECT,
        fields::TOKEN_ISSUER,
    ]
    .iter()
    .any(|f| e.field(f).is_some())
}

/// The rows of one event beside the base tables (called inside the store's transaction).
pub(super) fn apply(
    tx: &Transaction<'_>,
    seq: i64,
    time: i64,
    e: &Event,
    summary: &str,
) -> rusqlite::Result<()> {
    match e.class {
        EventClass::JobRun if e.field(fields::JOB_ID).is_some() => {
            super::exec(
                tx,
                "INSERT OR REPLACE INTO job_ext (seq, issuer, subject, source, phase, corr,
                 origin_key, sender_ip, claimed_uuid, host, observer, target_uid, fqan, placed_ns)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
                params![
                    seq,
                    opt(e.field(fields::TOKEN_ISSUER)),
                    opt(e.field(fields::TOKEN_SUBJECT)),
                    opt(e.field(fields::PAYLOAD_SOURCE)),
                    opt(e.field(fields::PAYLOAD_PHASE)),
                    opt(e.field(fields::CORRELATION)),
                    origin_key(e),
                    e.sender_ip().map(|ip| ip.to_string()),
                    opt(e.field(fields::CLAIMED_VM_UUID)).map(|u| u.to_lowercase()),
                    e.host.as_deref().map(str::to_lowercase),
                    e.observer.as_str(),
                    opt(e.field(fields::TARGET_UID)),
                    opt(e.field(fields::FQAN)),
                    super::ns(e.placed()),
                ],
            )?;
        }
        EventClass::IdentityDirectory if e.field(fields::DIRECTORY_SOURCE) == Some("scim") => {
            let Some(id) = e.field(fields::SCIM_ID) else {
                return Ok(());
            };
            let kind = e.field("directory").unwrap_or("user");
            super::exec(tx,
                "INSERT OR REPLACE INTO dir_scim (seq, kind, id, user_name, name, email, active,
                 groups, members, issuer_origin, ssh_keys) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                params![
                    seq,
                    kind,
                    id,
                    opt(e.field(fields::USER_NAME)),
                    opt(e.field(fields::PERSON_NAME)),
                    opt(e.field(fields::EMAIL)),
                    opt(e.field(fields::ACTIVE)),
                    opt(e.field(fields::GROUPS)),
                    opt(e.field(fields::MEMBERS)),
                    opt(e.field(fields::ISSUER_ORIGIN)),
                    opt(e.field(fields::SSH_KEYS)),
                ],
            )?;
            super::exec(tx, "DELETE FROM dir_oidc WHERE seq = ?1", params![seq])?;
            super::exec(tx, "DELETE FROM dir_cert WHERE seq = ?1", params![seq])?;
            for pair in e.field(fields::OIDC_IDS).unwrap_or("").split('|') {
                if let Some((iss, sub)) = pair.split_once(' ') {
                    super::exec(
                        tx,
                        "INSERT OR REPLACE INTO dir_oidc (seq, issuer, subject, scim_id) VALUES (?1,?2,?3,?4)",
                        params![seq, issuer_key(iss), sub.trim(), id],
                    )?;
                }
            }
            for dn in e
                .field(fields::CERT_DNS)
                .unwrap_or("")
                .split('|')
                .filter(|d| !d.trim().is_empty())
            {
                super::exec(
                    tx,
                    "INSERT OR REPLACE INTO dir_cert (seq, dn_key, dn, scim_id) VALUES (?1,?2,?3,?4)",
                    params![seq, dn_key(dn), dn.trim(), id],
                )?;
            }
        }
        EventClass::IdentityDirectory => {
            if let Some(fed) = e.field(fields::FEDERATED_IDS) {
                super::exec(
                    tx,
                    "UPDATE dir_user SET federated = ?2 WHERE seq = ?1",
                    params![seq, fed],
                )?;
            }
        }
        _ => {
            if let Some(corr) = e.field(fields::CORRELATION)
                && has_identity(e)
            {
                super::exec(
                    tx,
                    "INSERT OR REPLACE INTO ident_obs (seq, time_ns, source, origin_key, corr,
                     issuer, subject, dn, vo, fqan, user, summary)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                    params![
                        seq,
                        time,
                        opt(e.field(fields::PAYLOAD_SOURCE)),
                        origin_key(e),
                        corr,
                        opt(e.field(fields::TOKEN_ISSUER)),
                        opt(e.field(fields::TOKEN_SUBJECT)),
                        opt(e.field(fields::DN)),
                        opt(e.field(fields::VO)),
                        opt(e.field(fields::FQAN)),
                        opt(e.field(fields::USER)),
                        summary,
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// How far apart a payload's record and its identity lines may be (one connection's audit
/// lines share a second; glexec's monitor writes `Used DN` right after `Started`, and its
/// `Terminated` hours later, so the window is wide; a reused pid or cid further away is
/// another payload).
const IDENT_WINDOW_NS: i64 = 48 * 3600 * 1_000_000_000;

impl FactStore {
    /// Join each payload observation with the identity lines of its source and correlation
    /// id (nearest in time, within 48 hours, per field): fills DN, VO, issuer,
    /// subject and FQAN where the observation itself does not say, and records the lines'
    /// seqs in `ext.ident_seqs`.
    pub fn fill_identities(&self, jobs: &mut [JobObs]) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, time_ns, issuer, subject, dn, vo, fqan FROM ident_obs
                 WHERE origin_key = ?1 AND corr = ?2 AND time_ns BETWEEN ?3 AND ?4
                 ORDER BY abs(time_ns - ?5), seq",
            )
            .map_err(self.sql())?;
        type Row = (
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        for j in jobs.iter_mut() {
            let (Some(ok), Some(corr)) = (j.ext.origin_key.clone(), j.ext.corr.clone()) else {
                continue;
            };
            let rows: Vec<Row> = st
                .query_map(
                    params![
                        ok,
                        corr,
                        j.time_ns.saturating_sub(IDENT_WINDOW_NS),
                        j.time_ns.saturating_add(IDENT_WINDOW_NS),
                        j.time_ns
                    ],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .map_err(self.sql())?
                .collect::<std::result::Result<_, _>>()
                .map_err(self.sql())?;
            for (seq, _, iss, sub, dn, vo, fqan) in rows {
                let mut used = false;
                let mut fill = |slot: &mut Option<String>, v: Option<String>| {
                    if slot.is_none() && v.is_some() {
                        *slot = v;
                        used = true;
                    }
                };
                fill(&mut j.dn, dn);
                fill(&mut j.vo, vo);
                fill(&mut j.ext.issuer, iss);
                fill(&mut j.ext.subject, sub);
                fill(&mut j.ext.fqan, fqan);
                if used {
                    j.ext.ident_seqs.push(u64::try_from(seq).unwrap_or(0));
                }
            }
        }
        Ok(())
    }

    /// Payload observations from sources other than job ads (glexec, ARC, CE audit) whose
    /// record came from `sender` or named `host` (first label compared) or claimed `uuid`:
    /// the candidates the attribution rule decides on.
    pub fn payloads_from(
        &self,
        sender: Option<&str>,
        host: Option<&str>,
        uuid: Option<&str>,
    ) -> Result<Vec<JobObs>> {
        // Most sites have none of these sources: one indexed probe instead of a scan.
        let any: Option<i64> = cached_row(
            &self.conn,
            "SELECT 1 FROM job_ext WHERE source IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql())?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let short = host.map(|h| h.split('.').next().unwrap_or(h).to_lowercase());
        // The few rows with a source, found through their index: with the OR across
        // columns SQLite otherwise scans every job (0.46 ms a call on the 1000-VM day, and a
        // hunt asks it for every hit: half of a hunt page's time).
        self.jobs_where(
            "j.seq IN (SELECT seq FROM job_ext INDEXED BY job_ext_source
              WHERE source IS NOT NULL AND (sender_ip = ?1
              OR (host = ?2 OR host LIKE (?2 || '.%')) OR claimed_uuid = ?3))",
            params![
                sender.unwrap_or("\u{0}"),
                short.unwrap_or_else(|| "\u{0}".into()),
                uuid.map(str::to_lowercase)
                    .unwrap_or_else(|| "\u{0}".into())
            ],
        )
    }

    /// The observations from `source` (e.g. `ce-audit`) of the jobs with these ids (HTCondor's
    /// short `cluster.proc` too): nothing asked per id when no record of that source exists
    /// (one indexed probe: most sites have no CE audit log, and a hunt asks this for every
    /// hit's VM).
    pub fn jobs_from_source_with_ids(&self, source: &str, ids: &[String]) -> Result<Vec<JobObs>> {
        let any: Option<i64> = cached_row(
            &self.conn,
            "SELECT 1 FROM job_ext WHERE source = ?1 LIMIT 1",
            params![source],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql())?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.jobs_where("j.job_id = ?1 AND x.source = ?2", params![id, source])?);
        }
        Ok(out)
    }

    fn scim_where(&self, cond: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<ScimEntry>> {
        // The latest entry of each matching id.
        let sql = format!(
            "SELECT seq, kind, id, user_name, name, email, active, groups, issuer_origin
             FROM dir_scim d WHERE {cond} AND seq = (SELECT max(seq) FROM dir_scim e WHERE e.id = d.id)
             ORDER BY id"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.sql())?;
        let rows = st
            .query_map(p, |r| {
                let active: Option<String> = r.get(6)?;
                let groups: Option<String> = r.get(7)?;
                Ok(ScimEntry {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    kind: r.get(1)?,
                    id: r.get(2)?,
                    user_name: r.get(3)?,
                    name: r.get(4)?,
                    email: r.get(5)?,
                    active: active.map(|a| a == "true"),
                    groups: super::list(groups.as_deref()),
                    issuer_origin: r.get(8)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// VMs that ever held a hostname whose first label is `label` (what attribution compares).
    pub fn vms_with_host_label(&self, label: &str) -> Result<Vec<String>> {
        let label = label.split('.').next().unwrap_or(label).to_lowercase();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT uuid FROM vm_addr WHERE kind = 'hostname'
                 AND (value = ?1 OR value LIKE (?1 || '.%'))",
            )
            .map_err(self.sql())?;
        let rows = st
            .query_map(params![label], |r| r.get(0))
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(self.sql())
    }

    /// The SCIM user entry with this id.
    pub fn scim_user(&self, id: &str) -> Result<Option<ScimEntry>> {
        Ok(self
            .scim_where("kind = 'user' AND id = ?1", params![id])?
            .pop())
    }

    /// The SCIM users a token (issuer, subject) names: an IAM's own token (subject = the SCIM
    /// id, issuer at the IAM's address) or a linked OIDC identity (`oidcIds`). Several →
    /// the caller says ambiguous; none → unknown. With the seqs of the rows that say so.
    pub fn person_by_token(&self, issuer: &str, subject: &str) -> Result<Vec<(ScimEntry, u64)>> {
        let mut out: Vec<(ScimEntry, u64)> = Vec::new();
        if let Some(origin) = origin_of(issuer) {
            for e in self.scim_where(
                "kind = 'user' AND id = ?1 AND issuer_origin = ?2",
                params![subject.trim(), origin],
            )? {
                let s = e.seq;
                out.push((e, s));
            }
        }
        let linked: Vec<(String, i64)> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT DISTINCT scim_id, max(seq) FROM dir_oidc WHERE issuer = ?1 AND subject = ?2 GROUP BY scim_id")
                .map_err(self.sql())?;
            st.query_map(params![issuer_key(issuer), subject.trim()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(self.sql())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.sql())?
        };
        for (id, seq) in linked {
            if let Some(e) = self.scim_user(&id)?
                && !out.iter().any(|(o, _)| o.id == e.id)
            {
                out.push((e, u64::try_from(seq).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// The SCIM users with a certificate of this subject.
    pub fn person_by_dn(&self, dn: &str) -> Result<Vec<(ScimEntry, u64)>> {
        let ids: Vec<(String, i64)> = {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT scim_id, max(seq) FROM dir_cert WHERE dn_key = ?1 GROUP BY scim_id",
                )
                .map_err(self.sql())?;
            st.query_map(params![dn_key(dn)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.sql())?
                .collect::<std::result::Result<_, _>>()
                .map_err(self.sql())?
        };
        let mut out = Vec::new();
        for (id, seq) in ids {
            if let Some(e) = self.scim_user(&id)? {
                out.push((e, u64::try_from(seq).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// The Keystone user a SCIM person is, where Keystone's federated id is the IAM's id for
    /// them (the `sub` the IAM gave Keystone) or one of their linked OIDC subjects: (user id,
    /// directory seq).
    pub fn keystone_for_scim(&self, scim_id: &str) -> Result<Vec<(String, u64)>> {
        let mut subjects = vec![scim_id.to_string()];
        {
            let mut st = self
                .conn
                .prepare_cached("SELECT DISTINCT subject FROM dir_oidc WHERE scim_id = ?1")
                .map_err(self.sql())?;
            for s in st
                .query_map(params![scim_id], |r| r.get::<_, String>(0))
                .map_err(self.sql())?
            {
                subjects.push(s.map_err(self.sql())?);
            }
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT id, max(seq), federated FROM dir_user WHERE federated IS NOT NULL GROUP BY id")
            .map_err(self.sql())?;
        let rows: Vec<(String, i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.sql())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.sql())?;
        Ok(rows
            .into_iter()
            .filter(|(_, _, fed)| {
                fed.split('|')
                    .filter_map(|p| p.split_once(' ').map(|(_, u)| u.trim()))
                    .any(|u| subjects.iter().any(|s| s == u))
            })
            .map(|(id, seq, _)| (id, u64::try_from(seq).unwrap_or(0)))
            .collect())
    }

    /// The latest directory entry for a user id, with its e-mail (Keystone).
    pub fn user_email(&self, id: &str) -> Result<Option<(String, u64)>> {
        cached_row(&self.conn,
                "SELECT email, seq FROM dir_user WHERE id = ?1 AND email IS NOT NULL ORDER BY seq DESC LIMIT 1",
                params![id],
                |r| Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0))),
            )
            .optional()
            .map_err(self.sql())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_in_both_orders_meet() {
        assert_eq!(
            dn_key("CN=Jane Doe,OU=Users,O=Example,DC=example,DC=org"),
            dn_key("/DC=org/DC=example/O=Example/OU=Users/CN=Jane Doe")
        );
        assert_eq!(dn_key("CN=a\\,b,O=x"), "o=x/cn=a,b");
        assert_ne!(dn_key("/CN=a"), dn_key("/CN=b"));
        assert_eq!(
            issuer_key("https://iam.example.org/"),
            issuer_key("https://IAM.example.org")
        );
    }
}

#[cfg(test)]
mod store_tests {
    use std::collections::BTreeMap;

    use model::{Event, EventClass, Observer, Origin, Received, Reported, fields};

    use crate::facts::FactStore;

    fn ev(class: EventClass, t_s: i64, host: &str, kv: &[(&str, &str)]) -> Event {
        let mut f = BTreeMap::new();
        for (k, v) in kv {
            f.insert((*k).to_string(), (*v).to_string());
        }
        let ts = jiff::Timestamp::from_second(t_s).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Event {
            reported: Reported::new(Some(ts), ""),
            source_kind: "syslog".into(),
            host: (!host.is_empty()).then(|| host.to_string()),
            fields: f,
            class,
            ..Event::blank(
                Received::from_stored(1_000),
                Observer::Vm,
                Origin::File {
                    path: "glexec.log".into(),
                    line: 1,
                },
                vec![],
            )
        }
    }

    /// The directory entry, the payload start and its `Used DN` line in any order: the same
    /// person, the same joined identity (the store derives on read).
    #[test]
    fn identities_join_whatever_the_arrival_order() {
        let scim = ev(
            EventClass::IdentityDirectory,
            0,
            "",
            &[
                (fields::DIRECTORY_SOURCE, "scim"),
                ("directory", "user"),
                (fields::SCIM_ID, "u-jane"),
                (fields::USER_NAME, "jdoe"),
                (fields::EMAIL, "jane@example.org"),
                (fields::ISSUER_ORIGIN, "https://iam.example.org"),
                (fields::CERT_DNS, "CN=Jane Doe,O=Example,DC=example,DC=org"),
                (fields::OIDC_IDS, "https://accounts.google.com 1054"),
            ],
        );
        let start = ev(
            EventClass::JobRun,
            1_792_000_000,
            "wn-06",
            &[
                (fields::JOB_ID, "glexec:wn-06:1#2"),
                (fields::PAYLOAD_SOURCE, "glexec"),
                (fields::CORRELATION, "glexec.mon:1#2"),
                (fields::JOB_START, "2026-10-14T09:30:00Z"),
            ],
        );
        let used = ev(
            EventClass::Other,
            1_792_000_001,
            "wn-06",
            &[
                (fields::PAYLOAD_SOURCE, "glexec"),
                (fields::CORRELATION, "glexec.mon:1#2"),
                (fields::DN, "/DC=org/DC=example/O=Example/CN=Jane Doe"),
            ],
        );
        let all = [scim, start, used];
        let mut answers = Vec::new();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = FactStore::open(dir.path()).expect("open");
            for (n, i) in order.iter().enumerate() {
                let seq = (*i + 1) as u64;
                store
                    .apply(&[(seq, all[*i].clone())], n as u64 + 1)
                    .expect("apply");
            }
            let mut jobs = store.all_jobs().expect("jobs");
            store.fill_identities(&mut jobs).expect("fill");
            let dn = jobs[0].dn.clone().expect("joined DN");
            let person = store.person_by_dn(&dn).expect("dn");
            let by_token = store
                .person_by_token("https://iam.example.org/", "u-jane")
                .expect("own token");
            let linked = store
                .person_by_token("https://accounts.google.com", "1054")
                .expect("linked");
            let nobody = store
                .person_by_token("https://other.example.org/", "u-jane")
                .expect("other issuer");
            answers.push((
                dn,
                jobs[0].ext.ident_seqs.clone(),
                person.iter().map(|(e, _)| e.id.clone()).collect::<Vec<_>>(),
                by_token.len(),
                linked.len(),
                nobody.len(),
            ));
        }
        assert_eq!(
            answers[0],
            (
                "/DC=org/DC=example/O=Example/CN=Jane Doe".to_string(),
                vec![3],
                vec!["u-jane".to_string()],
                1,
                1,
                0
            )
        );
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    }
}
