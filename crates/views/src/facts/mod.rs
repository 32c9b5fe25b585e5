//! The fact store: what the cloud, the directory and the VOs said about VMs, addresses,
//! people and jobs, as rows in SQLite, each citing the ledger position it came from.
//!
//! It stores *observations* — one row per event that says something about a VM, an address
//! lease, a directory entry or a payload job — and lets crate `query` derive the half-open
//! intervals (`[from, to)`) of DESIGN.md's facts from them at read time: lifecycles, placement
//! on hypervisors, IP/MAC/hostname leases, owners, payload runs. Deriving on read keeps the
//! store append-only and order-independent (a directory dump that arrives after the events
//! still names their owners; a delete that arrives before its create is kept and shown as a
//! conflict, never silently resolved), and a who-query touches a few dozen rows through
//! indexes.
//!
//! Like every view it holds nothing that is not in the ledger: `pugmark reindex` rebuilds it,
//! and [`FactStore::last_seq`] tells the pipeline where to catch up after a crash.
//! Times are stored as i64 nanoseconds since the Unix epoch (UTC).

mod ident;
mod natrows;

use std::path::{Path, PathBuf};

use model::{Event, EventClass, Observer, fields};

mod opennebula;
use rusqlite::{Connection, OptionalExtension, params};

pub use ident::{JobExt, ScimEntry, dn_key, issuer_key, origin_key};
pub use natrows::{
    FLUSH_ROWS as NAT_FLUSH_ROWS, FlushFields as NatFlushFields, NatFlush, NatReader, NatRow,
    NatText, RowFilter as NatRowFilter, wide as nat_wide,
};

/// Schema version; a store of another version is rebuilt by `pugmark reindex`.
/// 2: `net_obs` (Neutron ports, floating IPs and routers).
/// 3: `nat_obs` (NAT translation records: conntrack, ulogd2, IPFIX NAT fields; issue 12)
///    and `vm_sub` (the observations an OpenNebula VM document holds at other moments than its
/// own: creation, each placement of its history);
///    and issue 12's identities and payloads (`ident.rs`: `job_ext`, `ident_obs`, `dir_scim`,
/// `dir_oidc`, `dir_cert`, column `dir_user.federated`) — additive.
/// 4: column `net_obs.subnets` and table `net_subnet` (the subnets of ports and router
///    interfaces: which VMs sit behind a router's gateway address; issue 12).
/// 5: `nat_flush` and `nat_block` (NAT records as compressed blocks of rows, `natrows.rs`: no
///    longer a `nat_obs` row and a search-index document each; issue 12).
const SCHEMA_VERSION: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum FactError {
    #[error("fact store at {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("fact store directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fact store at {path}: NAT block: {msg}; run `pugmark reindex`")]
    Nat { path: PathBuf, msg: String },
    #[error(
        "fact store at {path} has schema version {found}, this pugmark uses {SCHEMA_VERSION}; run `pugmark reindex`"
    )]
    Schema { path: PathBuf, found: i64 },
}

pub type Result<T, E = FactError> = std::result::Result<T, E>;

/// One VM lifecycle observation (a notification or a lifecycle log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmObs {
    pub seq: u64,
    pub time_ns: i64,
    pub observer: Observer,
    pub uuid: String,
    /// `instance.create.end`, `compute.instance.delete.end`, or a log line's action.
    pub event_type: Option<String>,
    pub state: Option<String>,
    pub hypervisor: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub image: Option<String>,
    /// The VM's addresses as this observation lists them (`ip`, `mac` pairs kept in order).
    pub ips: Vec<String>,
    pub macs: Vec<String>,
    pub summary: String,
}

/// One Neutron observation (a `port.*`, `floatingip.*` or `router.*` `.end` notification):
/// what the resource looked like after the change (or its deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetObs {
    pub seq: u64,
    pub time_ns: i64,
    /// `port`, `floatingip` or `router`.
    pub resource: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The resource's uuid (lower-case).
    pub id: String,
    /// A port's instance (`device_id` of a `compute:*` port), lower-case.
    pub vm_uuid: Option<String>,
    pub device_owner: Option<String>,
    pub host: Option<String>,
    /// A port's fixed addresses, or a router's gateway (SNAT) addresses.
    pub ips: Vec<String>,
    pub mac: Option<String>,
    /// A floating IP's address.
    pub floating_ip: Option<String>,
    /// A floating IP's port: `Some("-")` when the notification says null (disassociated),
    /// None when it does not say.
    pub fip_port: Option<String>,
    pub fixed_ip: Option<String>,
    pub router_id: Option<String>,
    pub project_id: Option<String>,
    pub summary: String,
    /// A port's subnets (`fixed_ips[].subnet_id`), or a router interface's.
    pub subnets: Vec<String>,
}

/// One NAT translation record (a conntrack or ulogd2 event, an IPFIX/NetFlow v9 record with
/// post-NAT fields): the public side, the inside side and the peer of one connection, as the
/// network node saw it. Only records no VM user can write (observer other than `vm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatObs {
    pub seq: u64,
    /// The record's time (conntrack's stamp, ulogd's flow start/end, else when received).
    pub time_ns: i64,
    pub observer: Observer,
    /// Who reported it: the NetFlow exporter, else the sender's address, else the host name
    /// the record gives; empty when none is known.
    pub sender: String,
    /// The decoder's source kind (`conntrack`, `ulogd-json`, `ulogd-logemu`, `netflow`).
    pub source: String,
    /// `new`, `update`, `destroy` or `flow`.
    pub event: String,
    /// `snat` or `dnat`.
    pub kind: String,
    pub proto: Option<String>,
    pub public_ip: String,
    pub public_port: Option<u16>,
    pub inside_ip: String,
    pub inside_port: Option<u16>,
    pub peer_ip: Option<String>,
    pub peer_port: Option<u16>,
    pub ct_id: Option<String>,
    /// Start and end of the connection when the record says (ulogd's `flow.start`, a flow's
    /// first and last packet).
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// Seconds the entry had left (conntrack's timeout column) and a DESTROY's lifetime.
    pub timeout_s: Option<i64>,
    pub lifetime_s: Option<i64>,
    pub summary: String,
}

/// A nova observation naming a VM's tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapObs {
    /// The device name, lower-case (`tap` + 11 characters of the port id).
    pub tap: String,
    pub uuid: String,
    pub seq: u64,
    pub time_ns: i64,
}

/// The hypervisor tap device Nova and Neutron name after a port: `tap` + the port id's first
/// 11 characters (nova/network/model.py `NIC_NAME_LEN` = 14).
pub fn tap_of_port(port_id: &str) -> Option<String> {
    let p = port_id.trim().to_lowercase();
    p.get(..11).map(|head| format!("tap{head}"))
}

/// The (port id, tap device) pairs of a nova notification's `ip_addresses` (`vm_ports` and
/// `vm_devices`, aligned with `vm_ips`, empty slots where an entry lacks one); the tap is the
/// named device, else derived from the port id.
fn nova_taps(e: &Event) -> Vec<(Option<String>, String)> {
    let split = |f: &str| -> Vec<String> {
        e.field(f)
            .map(|s| s.split(',').map(|x| x.trim().to_lowercase()).collect())
            .unwrap_or_default()
    };
    let ports = split(fields::VM_PORTS);
    let devices = split(fields::VM_DEVICES);
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    for i in 0..ports.len().max(devices.len()) {
        let port = ports.get(i).filter(|p| !p.is_empty()).cloned();
        let device = devices
            .get(i)
            .filter(|d| !d.is_empty())
            .cloned()
            .or_else(|| port.as_deref().and_then(tap_of_port));
        if let Some(tap) = device
            && !out.iter().any(|(_, t)| *t == tap)
        {
            out.push((port, tap));
        }
    }
    out
}

/// A payload job observation (a condor_history ad or a userlog event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObs {
    pub seq: u64,
    pub time_ns: i64,
    pub job_id: String,
    pub owner: Option<String>,
    pub user: Option<String>,
    pub dn: Option<String>,
    pub vo: Option<String>,
    pub exec_ip: Option<String>,
    pub exec_host: Option<String>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub summary: String,
    /// Token, source and attribution inputs (issue 12; empty for rows without them).
    pub ext: JobExt,
}

/// A directory entry for a user or a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub seq: u64,
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub project_id: Option<String>,
}

pub struct FactStore {
    conn: Connection,
    path: PathBuf,
}

fn ns(ts: jiff::Timestamp) -> i64 {
    i64::try_from(ts.as_nanosecond()).unwrap_or(if ts.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn parse_ns(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(ns)
}

fn opt(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_string)
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// `query_row` through the connection's statement cache: a `who` asks some of these several
/// times (a payload probe per candidate, a source probe per source), and each parse of the
/// same SQL again cost tens of microseconds of a process of a few milliseconds.
fn cached_row<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// `execute` through the connection's statement cache: a batch writes thousands of rows
/// with a few dozen statements, and parsing each again per row was ~5 % of ingest's CPU.
fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

impl FactStore {
    /// Open (or create) the store in `dir` (`DATA/facts`).
    pub fn open(dir: impl AsRef<Path>) -> Result<FactStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| FactError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("facts.sqlite");
        let sql = |source| FactError::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        // More than the default 16: `apply_at` cycles through every insert of every table.
        conn.set_prepared_statement_cache_capacity(64);
        // Plans that do not depend on bound values (the query planner stability guarantee):
        // otherwise SQLite marks a statement whose WHERE compares a column with a parameter
        // (`uuid = ?1` pushed into a UNION ALL, an equality it propagates) to be compiled
        // again whenever that parameter is bound anew, and a cached statement asked twice with
        // another VM was parsed twice. The store keeps no ANALYZE statistics for bound values
        // to choose between plans anyway.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(sql)?;
        // A store already at this schema has every table and index (the version is written
        // after the DDL): skip the DDL, which is most of what opening costs a short query
        // process (WAL is a property of the file; `synchronous` is per connection).
        let current: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten();
        if current == Some(SCHEMA_VERSION) {
            conn.execute_batch("PRAGMA synchronous=NORMAL;")
                .map_err(sql)?;
            return Ok(FactStore { conn, path });
        }
        // WAL + NORMAL: a crash can lose the last transactions, never corrupt; the pipeline
        // catches up from the ledger using last_seq.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS vm_obs (
                seq INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, observer TEXT NOT NULL,
                uuid TEXT NOT NULL, event_type TEXT, state TEXT, hypervisor TEXT, name TEXT,
                hostname TEXT, user_id TEXT, project_id TEXT, image TEXT, ips TEXT, macs TEXT,
                summary TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS vm_obs_uuid ON vm_obs (uuid, time_ns);
             CREATE INDEX IF NOT EXISTS vm_obs_hostname ON vm_obs (hostname);
             CREATE INDEX IF NOT EXISTS vm_obs_user ON vm_obs (user_id);
             CREATE TABLE IF NOT EXISTS vm_addr (
                seq INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, uuid TEXT NOT NULL,
                PRIMARY KEY (kind, value, seq));
             CREATE INDEX IF NOT EXISTS vm_addr_uuid ON vm_addr (uuid);
             CREATE TABLE IF NOT EXISTS vm_sub (
                seq INTEGER NOT NULL, idx INTEGER NOT NULL, time_ns INTEGER NOT NULL,
                observer TEXT NOT NULL, uuid TEXT NOT NULL, event_type TEXT, state TEXT,
                hypervisor TEXT, name TEXT, hostname TEXT, user_id TEXT, project_id TEXT,
                image TEXT, ips TEXT, macs TEXT, summary TEXT NOT NULL,
                PRIMARY KEY (seq, idx));
             CREATE INDEX IF NOT EXISTS vm_sub_uuid ON vm_sub (uuid, time_ns);
             CREATE TABLE IF NOT EXISTS net_obs (
                seq INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, resource TEXT NOT NULL,
                action TEXT NOT NULL, id TEXT NOT NULL, vm_uuid TEXT, device_owner TEXT,
                host TEXT, ips TEXT, mac TEXT, floating_ip TEXT, fip_port TEXT, fixed_ip TEXT,
                router_id TEXT, project_id TEXT, summary TEXT NOT NULL, subnets TEXT);
             CREATE INDEX IF NOT EXISTS net_obs_id ON net_obs (resource, id);
             CREATE INDEX IF NOT EXISTS net_obs_router ON net_obs (router_id);
             CREATE TABLE IF NOT EXISTS net_subnet (subnet_id TEXT NOT NULL, seq INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS net_subnet_id ON net_subnet (subnet_id);
             CREATE INDEX IF NOT EXISTS net_subnet_seq ON net_subnet (seq);
             CREATE INDEX IF NOT EXISTS net_obs_fip ON net_obs (floating_ip);
             CREATE INDEX IF NOT EXISTS net_obs_vm ON net_obs (vm_uuid);
             CREATE TABLE IF NOT EXISTS nat_obs (
                seq INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, observer TEXT NOT NULL,
                sender TEXT NOT NULL, source TEXT NOT NULL, event TEXT NOT NULL,
                kind TEXT NOT NULL, proto TEXT, public_ip TEXT NOT NULL, public_port INTEGER,
                inside_ip TEXT NOT NULL, inside_port INTEGER, peer_ip TEXT, peer_port INTEGER,
                ct_id TEXT, start_ns INTEGER, end_ns INTEGER, timeout_s INTEGER,
                lifetime_s INTEGER, summary TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS nat_obs_public ON nat_obs (public_ip, public_port);
             CREATE TABLE IF NOT EXISTS job_obs (
                seq INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, job_id TEXT NOT NULL,
                owner TEXT, user TEXT, dn TEXT, vo TEXT, exec_ip TEXT, exec_host TEXT,
                start_ns INTEGER, end_ns INTEGER, summary TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS job_obs_job ON job_obs (job_id);
             CREATE INDEX IF NOT EXISTS job_obs_ip ON job_obs (exec_ip);
             CREATE INDEX IF NOT EXISTS job_obs_host ON job_obs (exec_host);
             CREATE INDEX IF NOT EXISTS job_obs_dn ON job_obs (dn);
             CREATE TABLE IF NOT EXISTS dir_user (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL, name TEXT, email TEXT, project_id TEXT,
                federated TEXT);
             CREATE INDEX IF NOT EXISTS dir_user_id ON dir_user (id);
             CREATE INDEX IF NOT EXISTS dir_user_name ON dir_user (name);
             CREATE TABLE IF NOT EXISTS dir_project (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL, name TEXT);
             CREATE INDEX IF NOT EXISTS dir_project_id ON dir_project (id);
             CREATE TABLE IF NOT EXISTS ledger_head (
                one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL, head BLOB NOT NULL);",
        )
        .map_err(sql)?;
        conn.execute_batch(ident::SCHEMA).map_err(sql)?;
        conn.execute_batch(natrows::SCHEMA).map_err(sql)?;
        let version: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    params![SCHEMA_VERSION],
                )
                .map_err(sql)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => return Err(FactError::Schema { path, found }),
        }
        Ok(FactStore { conn, path })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> FactError + '_ {
        |source| FactError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads from here on see one snapshot of the store, whatever a writer commits
    /// meanwhile, until the connection closes: for a process that only reads (`who`), so that
    /// its views check and its answer see the same facts, and its statements take the WAL
    /// read lock once (each statement outside a transaction took and released it: three
    /// system calls apiece, ~20 statements a `who`). Not for a store that will be written.
    pub fn read_snapshot(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN").map_err(self.sql())
    }

    /// Ends what [`FactStore::read_snapshot`] began (nothing when none is open), so that a
    /// connection kept for the next question sees the facts written since.
    pub fn end_snapshot(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(self.sql())
    }

    /// The last ledger position whose events are in the store.
    pub fn last_seq(&self) -> Result<Option<u64>> {
        let v: Option<i64> = cached_row(
            &self.conn,
            "SELECT value FROM meta WHERE key = 'last_seq'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql())?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    /// The newest observation of what makes up a site's VMs and their ownership (VM, Neutron
    /// and directory project records): it changes only when one of those does, unlike
    /// [`FactStore::last_seq`], which every ledger record moves. Callers cache what they derive
    /// from them (the query API's VO scopes) under it.
    pub fn site_version(&self) -> Result<u64> {
        let v: i64 = cached_row(
            &self.conn,
            "SELECT MAX(IFNULL((SELECT MAX(seq) FROM vm_obs), 0), \
                            IFNULL((SELECT MAX(seq) FROM net_obs), 0), \
                            IFNULL((SELECT MAX(seq) FROM dir_project), 0))",
            [],
            |r| r.get(0),
        )
        .map_err(self.sql())?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// The last ledger position in the store and, when recorded, the ledger's chain head at
    /// that position (stores written before heads were recorded have none): what
    /// `pugmark`'s view check holds against the ledger.
    pub fn last_position(&self) -> Result<Option<(u64, Option<[u8; 32]>)>> {
        let Some(seq) = self.last_seq()? else {
            return Ok(None);
        };
        let head: Option<(i64, Vec<u8>)> = cached_row(
            &self.conn,
            "SELECT seq, head FROM ledger_head WHERE one = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.sql())?;
        let head = head
            .filter(|(s, _)| u64::try_from(*s).ok() == Some(seq))
            .and_then(|(_, h)| <[u8; 32]>::try_from(h.as_slice()).ok());
        Ok(Some((seq, head)))
    }

    /// Whether an event says anything the store keeps (cheap: decided by class and fields).
    pub fn is_fact_source(event: &Event) -> bool {
        if event.field(fields::NEUTRON_RESOURCE).is_some() {
            return event.field(fields::NEUTRON_ID).is_some();
        }
        if event.field(fields::NAT_IP).is_some() {
            return !event.observer.forgeable_by_vm_user();
        }
        match event.class {
            EventClass::VmLifecycle => event.field(fields::VM_UUID).is_some(),
            _ => ident::is_source(event),
        }
    }

    /// Add the observations of `events` (ledger position, event) and record `last_seq`, in one
    /// transaction. Events that say nothing the store keeps are skipped. Re-adding a seq
    /// replaces its rows, so a catch-up that overlaps is harmless.
    pub fn apply(&mut self, events: &[(u64, Event)], last_seq: u64) -> Result<()> {
        self.apply_at(events, last_seq, None)
    }

    /// [`FactStore::apply`], also recording `head`, the ledger's chain head at `last_seq`.
    pub fn apply_at(
        &mut self,
        events: &[(u64, Event)],
        last_seq: u64,
        head: Option<[u8; 32]>,
    ) -> Result<()> {
        self.apply_with_nat(events, &[], last_seq, head)
    }

    /// [`FactStore::apply_at`], also writing `nat` (NAT records, [`NatRow::from_event`]) as one
    /// flush of blocks, in the same transaction.
    pub fn apply_with_nat(
        &mut self,
        events: &[(u64, Event)],
        nat: &[NatRow],
        last_seq: u64,
        head: Option<[u8; 32]>,
    ) -> Result<()> {
        let path = self.path.clone();
        let sql = |source| FactError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        for (seq, e) in events {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            let time = ns(e.time());
            let summary = summarize(e);
            if e.field(fields::NEUTRON_RESOURCE).is_some() {
                if let Some(n) = net_obs(e, seq, time, &summary) {
                    exec(
                        &tx,
                        "INSERT OR REPLACE INTO net_obs (seq, time_ns, resource, action, id,
                         vm_uuid, device_owner, host, ips, mac, floating_ip, fip_port, fixed_ip,
                         router_id, project_id, summary, subnets)
                         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
                        params![
                            seq,
                            time,
                            n.resource,
                            n.action,
                            n.id,
                            n.vm_uuid,
                            n.device_owner,
                            n.host,
                            n.ips.join(","),
                            n.mac,
                            n.floating_ip,
                            n.fip_port,
                            n.fixed_ip,
                            n.router_id,
                            n.project_id,
                            n.summary,
                            n.subnets.join(","),
                        ],
                    )
                    .map_err(sql)?;
                    exec(&tx, "DELETE FROM net_subnet WHERE seq = ?1", params![seq])
                        .map_err(sql)?;
                    for sub in &n.subnets {
                        exec(
                            &tx,
                            "INSERT INTO net_subnet (subnet_id, seq) VALUES (?1, ?2)",
                            params![sub, seq],
                        )
                        .map_err(sql)?;
                    }
                }
                continue;
            }
            if let Some(n) = nat_obs(e, seq, time, &summary) {
                exec(&tx,
                    "INSERT OR REPLACE INTO nat_obs (seq, time_ns, observer, sender, source,
                     event, kind, proto, public_ip, public_port, inside_ip, inside_port, peer_ip,
                     peer_port, ct_id, start_ns, end_ns, timeout_s, lifetime_s, summary)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
                    params![
                        seq,
                        time,
                        n.observer.as_str(),
                        n.sender,
                        n.source,
                        n.event,
                        n.kind,
                        n.proto,
                        n.public_ip,
                        n.public_port,
                        n.inside_ip,
                        n.inside_port,
                        n.peer_ip,
                        n.peer_port,
                        n.ct_id,
                        n.start_ns,
                        n.end_ns,
                        n.timeout_s,
                        n.lifetime_s,
                        n.summary,
                    ],
                )
                .map_err(sql)?;
                continue;
            }
            match e.class {
                EventClass::VmLifecycle => {
                    let Some(uuid) = e.field(fields::VM_UUID) else {
                        continue;
                    };
                    // A verb or payload version the decoder does not know may mean anything
                    // (its address list could be a release, not a lease): kept in the ledger
                    // and the index, counted, but never a fact.
                    if e.issues
                        .iter()
                        .any(|i| i.kind == "unknown_event_type" || i.kind == "unknown_version")
                    {
                        continue;
                    }
                    let uuid = uuid.to_lowercase();
                    // Service log lines carry the *requester's* ids in their context, not the
                    // owner's: only notifications say who owns a VM.
                    let owner_source = e.source_kind != "oslo-log";
                    // A floating address is NATed to the VM: a lease of it like a fixed one.
                    let mut ips = list(e.field(fields::VM_IPS));
                    for f in list(e.field(fields::VM_FLOATING_IPS)) {
                        if !ips.contains(&f) {
                            ips.push(f);
                        }
                    }
                    let macs: Vec<String> = list(e.field(fields::VM_MACS))
                        .into_iter()
                        .map(|m| m.to_lowercase())
                        .collect();
                    exec(
                        &tx,
                        "INSERT OR REPLACE INTO vm_obs (seq, time_ns, observer, uuid, event_type,
                         state, hypervisor, name, hostname, user_id, project_id, image, ips, macs,
                         summary) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                        params![
                            seq,
                            time,
                            e.observer.as_str(),
                            uuid,
                            opt(e.field(fields::EVENT_TYPE).or(e.field(fields::ACTION))),
                            opt(e.field(fields::STATE)),
                            opt(e.field(fields::HYPERVISOR)),
                            opt(e.field(fields::VM_NAME)),
                            opt(e.field(fields::VM_HOSTNAME)).map(|h| h.to_lowercase()),
                            opt(e.field(fields::USER_ID)).filter(|_| owner_source),
                            opt(e.field(fields::PROJECT_ID)).filter(|_| owner_source),
                            opt(e.field(fields::IMAGE)),
                            ips.join(","),
                            macs.join(","),
                            summary,
                        ],
                    )
                    .map_err(sql)?;
                    exec(&tx, "DELETE FROM vm_addr WHERE seq = ?1", params![seq]).map_err(sql)?;
                    exec(&tx, "DELETE FROM vm_sub WHERE seq = ?1", params![seq]).map_err(sql)?;
                    if e.field(fields::ONE_VM_ID).is_some() {
                        let base = VmObs {
                            seq: u64::try_from(seq).unwrap_or(0),
                            time_ns: time,
                            observer: e.observer,
                            uuid: uuid.clone(),
                            event_type: None,
                            state: None,
                            hypervisor: None,
                            name: opt(e.field(fields::VM_NAME)),
                            hostname: opt(e.field(fields::VM_HOSTNAME)).map(|h| h.to_lowercase()),
                            user_id: opt(e.field(fields::USER_ID)),
                            project_id: opt(e.field(fields::PROJECT_ID)),
                            image: opt(e.field(fields::IMAGE)),
                            ips: Vec::new(),
                            macs: Vec::new(),
                            summary: summary.clone(),
                        };
                        for (idx, o) in opennebula::observations(e, &base).into_iter().enumerate() {
                            exec(
                                &tx,
                                "INSERT OR REPLACE INTO vm_sub (seq, idx, time_ns, observer, uuid,
                                 event_type, state, hypervisor, name, hostname, user_id,
                                 project_id, image, ips, macs, summary)
                                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
                                params![
                                    seq,
                                    i64::try_from(idx + 1).unwrap_or(i64::MAX),
                                    o.time_ns,
                                    o.observer.as_str(),
                                    o.uuid,
                                    o.event_type,
                                    o.state,
                                    o.hypervisor,
                                    o.name,
                                    o.hostname,
                                    o.user_id,
                                    o.project_id,
                                    o.image,
                                    o.ips.join(","),
                                    o.macs.join(","),
                                    o.summary,
                                ],
                            )
                            .map_err(sql)?;
                        }
                        // An OpenNebula VM document names its owner and group: directory
                        // entries (UID → UNAME, GID → GNAME), as a Keystone dump would.
                        if let (Some(uid), Some(uname)) =
                            (e.field(fields::USER_ID), e.field(fields::USER_NAME))
                        {
                            exec(
                                &tx,
                                "INSERT OR REPLACE INTO dir_user (seq, id, name, email, project_id)
                                 VALUES (?1,?2,?3,NULL,?4)",
                                params![seq, uid, uname, opt(e.field(fields::PROJECT_ID))],
                            )
                            .map_err(sql)?;
                        }
                        if let (Some(gid), Some(gname)) =
                            (e.field(fields::PROJECT_ID), e.field(fields::PROJECT_NAME))
                        {
                            exec(&tx,
                                "INSERT OR REPLACE INTO dir_project (seq, id, name) VALUES (?1,?2,?3)",
                                params![seq, gid, gname],
                            )
                            .map_err(sql)?;
                        }
                    }
                    let hostname = opt(e.field(fields::VM_HOSTNAME)).map(|h| h.to_lowercase());
                    let taps = nova_taps(e);
                    let addrs = ips
                        .iter()
                        .map(|v| ("ip", v.clone()))
                        .chain(macs.iter().map(|v| ("mac", v.clone())))
                        .chain(hostname.map(|h| ("hostname", h)))
                        .chain(taps.into_iter().flat_map(|(port, tap)| {
                            port.map(|p| ("port", p))
                                .into_iter()
                                .chain(std::iter::once(("tap", tap)))
                        }));
                    for (kind, value) in addrs {
                        exec(
                            &tx,
                            "INSERT OR REPLACE INTO vm_addr (seq, kind, value, uuid)
                             VALUES (?1, ?2, ?3, ?4)",
                            params![seq, kind, value, uuid],
                        )
                        .map_err(sql)?;
                    }
                }
                EventClass::IdentityDirectory => {
                    if e.field("directory") == Some("project") {
                        if let Some(id) = e.field(fields::PROJECT_ID) {
                            exec(&tx,
                                "INSERT OR REPLACE INTO dir_project (seq, id, name) VALUES (?1,?2,?3)",
                                params![seq, id, opt(e.field(fields::PROJECT_NAME))],
                            )
                            .map_err(sql)?;
                        }
                    } else if let Some(id) = e.field(fields::USER_ID) {
                        exec(
                            &tx,
                            "INSERT OR REPLACE INTO dir_user (seq, id, name, email, project_id)
                             VALUES (?1,?2,?3,?4,?5)",
                            params![
                                seq,
                                id,
                                opt(e.field(fields::USER_NAME)),
                                opt(e.field(fields::EMAIL)),
                                opt(e.field(fields::PROJECT_ID)),
                            ],
                        )
                        .map_err(sql)?;
                    }
                }
                EventClass::JobRun => {
                    let Some(job) = e.field(fields::JOB_ID) else {
                        continue;
                    };
                    exec(
                        &tx,
                        "INSERT OR REPLACE INTO job_obs (seq, time_ns, job_id, owner, user, dn, vo,
                         exec_ip, exec_host, start_ns, end_ns, summary)
                         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                        params![
                            seq,
                            time,
                            job,
                            opt(e.field(fields::JOB_OWNER)),
                            opt(e.field(fields::USER)),
                            opt(e.field(fields::DN)),
                            opt(e.field(fields::VO)),
                            opt(e.field(fields::EXEC_IP)),
                            opt(e.field(fields::EXEC_HOST)).map(|h| h.to_lowercase()),
                            e.field(fields::JOB_START).and_then(parse_ns),
                            e.field(fields::JOB_END).and_then(parse_ns),
                            summary,
                        ],
                    )
                    .map_err(sql)?;
                }
                _ => {}
            }
            ident::apply(&tx, seq, time, e, &summary).map_err(sql)?;
        }
        Self::write_nat(&tx, nat).map_err(sql)?;
        exec(
            &tx,
            "INSERT INTO meta (key, value) VALUES ('last_seq', ?1)
             ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
            params![i64::try_from(last_seq).unwrap_or(i64::MAX)],
        )
        .map_err(sql)?;
        if let Some(head) = head {
            exec(
                &tx,
                "INSERT INTO ledger_head (one, seq, head) VALUES (1, ?1, ?2)
                 ON CONFLICT(one) DO UPDATE SET seq = excluded.seq, head = excluded.head
                 WHERE excluded.seq >= ledger_head.seq",
                params![i64::try_from(last_seq).unwrap_or(i64::MAX), &head[..]],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// VMs that ever held this address (`kind`: `ip`, `mac` or `hostname`; compared lower-case).
    pub fn vms_with(&self, kind: &str, value: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT uuid FROM vm_addr WHERE kind = ?1 AND value = ?2")
            .map_err(self.sql())?;
        let rows = st
            .query_map(params![kind, value.to_lowercase()], |r| r.get(0))
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(self.sql())
    }

    /// Every tap device nova named for a VM (`device_name` in its notification's
    /// `ip_addresses`, else `tap` + 11 characters of `port_uuid`): (tap, VM, ledger seq, time)
    /// of each observation listing it, in time order (ties by ledger position).
    pub fn nova_taps(&self) -> Result<Vec<TapObs>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT a.value, a.uuid, a.seq, o.time_ns FROM vm_addr a
                 JOIN vm_obs o ON o.seq = a.seq WHERE a.kind = 'tap'
                 ORDER BY o.time_ns, a.seq",
            )
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| {
                Ok(TapObs {
                    tap: r.get(0)?,
                    uuid: r.get(1)?,
                    seq: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    time_ns: r.get(3)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// Every Neutron port observation, by port id, then time (ties by ledger position).
    pub fn all_port_observations(&self) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = 'port' ORDER BY id, time_ns, seq",
            params![],
        )
    }

    /// Every observation of one VM, in time order (ties by ledger position).
    pub fn vm_observations(&self, uuid: &str) -> Result<Vec<VmObs>> {
        self.vm_obs_where(
            "WHERE uuid = ?1 ORDER BY time_ns, seq, idx",
            params![uuid.to_lowercase()],
        )
    }

    /// Every observation of every VM, by VM (uuid order), each VM's in time order (ties by
    /// ledger position): one query where attribution loads the whole site's leases.
    /// Every Neutron floating IP observation, by floating IP id, in time order.
    pub fn all_floating_ip_observations(&self) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = 'floatingip' ORDER BY id, time_ns, seq",
            params![],
        )
    }

    pub fn all_vm_observations(&self) -> Result<Vec<VmObs>> {
        self.vm_obs_where("ORDER BY uuid, time_ns, seq, idx", params![])
    }

    fn vm_obs_where(&self, tail: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<VmObs>> {
        // A VM's observations are its rows in vm_obs and the ones an OpenNebula document
        // holds for other moments (vm_sub), cited by the same ledger position.
        let cols = "seq, time_ns, observer, uuid, event_type, state, hypervisor, name,
             hostname, user_id, project_id, image, ips, macs, summary";
        let sql = format!(
            "SELECT {cols} FROM (SELECT {cols}, 0 AS idx FROM vm_obs
             UNION ALL SELECT {cols}, idx FROM vm_sub) {tail}"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.sql())?;
        let rows = st
            .query_map(p, |r| {
                let observer: String = r.get(2)?;
                let ips: Option<String> = r.get(12)?;
                let macs: Option<String> = r.get(13)?;
                Ok(VmObs {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    time_ns: r.get(1)?,
                    observer: observer.parse().unwrap_or(Observer::Collector),
                    uuid: r.get(3)?,
                    event_type: r.get(4)?,
                    state: r.get(5)?,
                    hypervisor: r.get(6)?,
                    name: r.get(7)?,
                    hostname: r.get(8)?,
                    user_id: r.get(9)?,
                    project_id: r.get(10)?,
                    image: r.get(11)?,
                    ips: list(ips.as_deref()),
                    macs: list(macs.as_deref()),
                    summary: r.get(14)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// Every Neutron observation of floating IPs that ever had `address`, by floating IP id,
    /// then time (ties by ledger position; [`NetObs`] order is decided by the reader).
    pub fn floating_ip_observations(&self, address: &str) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = 'floatingip' AND id IN
             (SELECT id FROM net_obs WHERE resource = 'floatingip' AND floating_ip = ?1)
             ORDER BY id, time_ns, seq",
            params![address],
        )
    }

    /// Every observation of the routers whose gateway (SNAT) addresses ever included
    /// `address`, by router id, then time (ties by ledger position).
    pub fn routers_with_gateway(&self, address: &str) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = 'router' AND id IN
             (SELECT id FROM net_obs WHERE resource = 'router'
              AND (',' || ips || ',') LIKE ('%,' || ?1 || ',%'))
             ORDER BY id, time_ns, seq",
            params![address],
        )
    }

    /// The interface records (`router.interface.create|delete`) of a router, in time order.
    pub fn router_interfaces(&self, router_id: &str) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = 'router_interface' AND router_id = ?1 ORDER BY time_ns, seq",
            params![router_id.to_lowercase()],
        )
    }

    /// Every observation of the ports that ever had an address in one of `subnets`, in time
    /// order (each port's whole history, not only the records naming the subnet).
    pub fn ports_in_subnets(&self, subnets: &[String]) -> Result<Vec<NetObs>> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for sub in subnets {
            let ids = self.net_obs_where(
                "WHERE resource = 'port' AND seq IN
                 (SELECT seq FROM net_subnet WHERE subnet_id = ?1) ORDER BY time_ns, seq",
                params![sub.to_lowercase()],
            )?;
            for o in ids {
                if seen.insert(o.id.clone()) {
                    out.extend(self.net_observations("port", &o.id)?);
                }
            }
        }
        out.sort_by_key(|o| (o.time_ns, o.seq));
        Ok(out)
    }

    /// Every observation of one Neutron resource (`port`, `floatingip`, `router`), in time
    /// order (ties by ledger position).
    pub fn net_observations(&self, resource: &str, id: &str) -> Result<Vec<NetObs>> {
        self.net_obs_where(
            "WHERE resource = ?1 AND id = ?2 ORDER BY time_ns, seq",
            params![resource, id.to_lowercase()],
        )
    }

    fn net_obs_where(&self, tail: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<NetObs>> {
        let sql = format!(
            "SELECT seq, time_ns, resource, action, id, vm_uuid, device_owner, host, ips, mac,
             floating_ip, fip_port, fixed_ip, router_id, project_id, summary, subnets
             FROM net_obs {tail}"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.sql())?;
        let rows = st
            .query_map(p, |r| {
                let ips: Option<String> = r.get(8)?;
                Ok(NetObs {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    time_ns: r.get(1)?,
                    resource: r.get(2)?,
                    action: r.get(3)?,
                    id: r.get(4)?,
                    vm_uuid: r.get(5)?,
                    device_owner: r.get(6)?,
                    host: r.get(7)?,
                    ips: list(ips.as_deref()),
                    mac: r.get(9)?,
                    floating_ip: r.get(10)?,
                    fip_port: r.get(11)?,
                    fixed_ip: r.get(12)?,
                    router_id: r.get(13)?,
                    project_id: r.get(14)?,
                    summary: r.get(15)?,
                    subnets: list(r.get::<_, Option<String>>(16)?.as_deref()),
                })
            })
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// Every NAT translation record whose public address is `address` (and, when given, public
    /// port `port`), in time order (ties by ledger position).
    pub fn nat_observations(&self, address: &str, port: Option<u16>) -> Result<Vec<NatObs>> {
        self.nat_observations_with(address, port, true)
    }

    /// [`FactStore::nat_observations`], the records kept as blocks without their summaries
    /// unless `text` (every record of a busy gateway address is hundreds of thousands, of
    /// which an answer cites a few: [`FactStore::fill_nat_summaries`] reads those).
    pub fn nat_observations_with(
        &self,
        address: &str,
        port: Option<u16>,
        text: bool,
    ) -> Result<Vec<NatObs>> {
        let address = address
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| address.to_string(), |i| i.to_string());
        let (cond, p): (&str, Vec<Box<dyn rusqlite::ToSql>>) = match port {
            Some(port) => (
                "public_ip = ?1 AND public_port = ?2",
                vec![Box::new(address.clone()), Box::new(port)],
            ),
            None => ("public_ip = ?1", vec![Box::new(address.clone())]),
        };
        let sql = format!(
            "SELECT seq, time_ns, observer, sender, source, event, kind, proto, public_ip,
             public_port, inside_ip, inside_port, peer_ip, peer_port, ct_id, start_ns, end_ns,
             timeout_s, lifetime_s, summary FROM nat_obs WHERE {cond} ORDER BY time_ns, seq"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.sql())?;
        let refs: Vec<&dyn rusqlite::ToSql> = p.iter().map(|b| b.as_ref()).collect();
        let rows = st
            .query_map(refs.as_slice(), |r| {
                let observer: String = r.get(2)?;
                Ok(NatObs {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    time_ns: r.get(1)?,
                    observer: observer.parse().unwrap_or(Observer::Collector),
                    sender: r.get(3)?,
                    source: r.get(4)?,
                    event: r.get(5)?,
                    kind: r.get(6)?,
                    proto: r.get(7)?,
                    public_ip: r.get(8)?,
                    public_port: r.get(9)?,
                    inside_ip: r.get(10)?,
                    inside_port: r.get(11)?,
                    peer_ip: r.get(12)?,
                    peer_port: r.get(13)?,
                    ct_id: r.get(14)?,
                    start_ns: r.get(15)?,
                    end_ns: r.get(16)?,
                    timeout_s: r.get(17)?,
                    lifetime_s: r.get(18)?,
                    summary: r.get(19)?,
                })
            })
            .map_err(self.sql())?;
        let mut out = rows
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        // NAT records written as blocks (every conntrack/ulogd2 record since schema 5): the
        // same rows, those no VM user can write.
        out.extend(
            self.nat_rows_of(&address, port, text)?
                .into_iter()
                .filter(|r| !r.obs.observer.forgeable_by_vm_user())
                .map(|r| r.obs),
        );
        // Sorted through an index: moving the records themselves (a busy gateway address has
        // hundreds of thousands of ~230-byte records) was a fifth of `who --ip` without a port.
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by_key(|&i| (out[i].time_ns, out[i].seq));
        let mut slots: Vec<Option<NatObs>> = out.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect())
    }

    /// Job observations whose execution address is `ip` or whose execution host is `host`.
    pub fn jobs_at(&self, ip: Option<&str>, host: Option<&str>) -> Result<Vec<JobObs>> {
        self.jobs_where(
            "job_id IN (SELECT job_id FROM job_obs WHERE exec_ip = ?1 OR exec_host = ?2)",
            params![
                ip.unwrap_or("\u{0}"),
                host.map(str::to_lowercase).unwrap_or_default()
            ],
        )
    }

    /// Every VM the store has observations of (lower-case uuids, sorted).
    pub fn all_vms(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT uuid FROM vm_obs ORDER BY uuid")
            .map_err(self.sql())?;
        let rows = st.query_map([], |r| r.get(0)).map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(self.sql())
    }

    /// Every job observation, in time order (cross-checks walk them all).
    pub fn all_jobs(&self) -> Result<Vec<JobObs>> {
        self.jobs_where("1 = 1", params![])
    }

    fn jobs_where(&self, cond: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<JobObs>> {
        let sql = format!(
            "SELECT j.seq, j.time_ns, j.job_id, j.owner, j.user, j.dn, j.vo, j.exec_ip,
             j.exec_host, j.start_ns, j.end_ns, j.summary, x.issuer, x.subject, x.source,
             x.phase, x.corr, x.origin_key, x.sender_ip, x.claimed_uuid, x.host, x.observer,
             x.target_uid, x.fqan, x.placed_ns
             FROM job_obs j LEFT JOIN job_ext x ON x.seq = j.seq
             WHERE {cond} ORDER BY j.time_ns, j.seq"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.sql())?;
        let rows = st
            .query_map(p, |r| {
                Ok(JobObs {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    time_ns: r.get(1)?,
                    job_id: r.get(2)?,
                    owner: r.get(3)?,
                    user: r.get(4)?,
                    dn: r.get(5)?,
                    vo: r.get(6)?,
                    exec_ip: r.get(7)?,
                    exec_host: r.get(8)?,
                    start_ns: r.get(9)?,
                    end_ns: r.get(10)?,
                    summary: r.get(11)?,
                    ext: JobExt {
                        issuer: r.get(12)?,
                        subject: r.get(13)?,
                        source: r.get(14)?,
                        phase: r.get(15)?,
                        corr: r.get(16)?,
                        origin_key: r.get(17)?,
                        sender_ip: r.get(18)?,
                        claimed_uuid: r.get(19)?,
                        host: r.get(20)?,
                        observer: r.get(21)?,
                        target_uid: r.get(22)?,
                        fqan: r.get(23)?,
                        placed_ns: r.get(24)?,
                        ident_seqs: Vec::new(),
                    },
                })
            })
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    /// VMs whose observations name this user id as owner.
    pub fn vms_owned_by(&self, user_id: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT uuid FROM vm_obs WHERE user_id = ?1")
            .map_err(self.sql())?;
        let rows = st
            .query_map(params![user_id], |r| r.get(0))
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(self.sql())
    }

    /// User ids whose latest directory entry has this name (names are not unique).
    pub fn user_ids_named(&self, name: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT id FROM dir_user WHERE name = ?1")
            .map_err(self.sql())?;
        let rows = st
            .query_map(params![name], |r| r.get(0))
            .map_err(self.sql())?;
        rows.collect::<std::result::Result<Vec<String>, _>>()
            .map_err(self.sql())
    }

    /// The latest directory entry for a user id.
    pub fn user(&self, id: &str) -> Result<Option<DirEntry>> {
        cached_row(
            &self.conn,
            "SELECT seq, id, name, email, project_id FROM dir_user WHERE id = ?1
                 ORDER BY seq DESC LIMIT 1",
            params![id],
            |r| {
                Ok(DirEntry {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    id: r.get(1)?,
                    name: r.get(2)?,
                    email: r.get(3)?,
                    project_id: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(self.sql())
    }

    /// The latest directory entry for a project id.
    pub fn project(&self, id: &str) -> Result<Option<DirEntry>> {
        cached_row(
            &self.conn,
            "SELECT seq, id, name FROM dir_project WHERE id = ?1 ORDER BY seq DESC LIMIT 1",
            params![id],
            |r| {
                Ok(DirEntry {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    id: r.get(1)?,
                    name: r.get(2)?,
                    email: None,
                    project_id: None,
                })
            },
        )
        .optional()
        .map_err(self.sql())
    }
}

/// The NAT translation an event proves, if any: a public and an inside address read from a
/// record no VM user can write.
fn nat_obs(e: &Event, seq: i64, time: i64, summary: &str) -> Option<NatObs> {
    if e.observer.forgeable_by_vm_user() {
        return None;
    }
    nat_obs_any(e, seq, time, summary)
}

/// [`nat_obs`] whatever the observer.
fn nat_obs_any(e: &Event, seq: i64, time: i64, summary: &str) -> Option<NatObs> {
    let ip = |k: &str| {
        e.field(k)
            .and_then(|v| v.parse::<std::net::IpAddr>().ok())
            .map(model::text::ip_string)
    };
    let port = |k: &str| e.field(k).and_then(|v| v.parse::<u16>().ok());
    let int = |k: &str| e.field(k).and_then(|v| v.parse::<i64>().ok());
    let sender = e
        .field(fields::EXPORTER)
        .map(str::to_string)
        .or_else(|| e.sender_ip().map(|i| i.to_string()))
        .or_else(|| e.host.clone())
        .unwrap_or_default();
    Some(NatObs {
        seq: u64::try_from(seq).unwrap_or(0),
        time_ns: time,
        observer: e.observer,
        sender,
        source: e.source_kind.clone(),
        event: opt(e.field(fields::NAT_EVENT)).unwrap_or_else(|| "flow".into()),
        kind: opt(e.field(fields::NAT_KIND)).unwrap_or_else(|| "snat".into()),
        proto: opt(e.field(fields::PROTO)),
        public_ip: ip(fields::NAT_IP)?,
        public_port: port(fields::NAT_PORT),
        inside_ip: ip(fields::NAT_INSIDE_IP)?,
        inside_port: port(fields::NAT_INSIDE_PORT),
        peer_ip: ip(fields::NAT_PEER_IP),
        peer_port: port(fields::NAT_PEER_PORT),
        ct_id: opt(e.field(fields::CT_ID)),
        start_ns: e.field(fields::FLOW_START).and_then(parse_ns),
        end_ns: e.field(fields::FLOW_END).and_then(parse_ns),
        timeout_s: int(fields::CT_TIMEOUT),
        lifetime_s: int(fields::CT_LIFETIME),
        summary: summary.to_string(),
    })
}

/// The Neutron observation an event makes, if any: only `.end` notifications (what happened,
/// not what was asked) of a known verb with the resource's id.
fn net_obs(e: &Event, seq: i64, time: i64, summary: &str) -> Option<NetObs> {
    // `router.interface.*` has no phase: it is sent once the interface changed.
    let done = e.field("phase") == Some("end")
        || e.field(fields::NEUTRON_RESOURCE) == Some("router_interface");
    if !done || e.issues.iter().any(|i| i.kind == "unknown_event_type") {
        return None;
    }
    let action = e.field(fields::ACTION)?;
    Some(NetObs {
        seq: u64::try_from(seq).unwrap_or(0),
        time_ns: time,
        resource: e.field(fields::NEUTRON_RESOURCE)?.to_string(),
        action: action.to_string(),
        id: e.field(fields::NEUTRON_ID)?.to_lowercase(),
        vm_uuid: opt(e.field(fields::VM_UUID)).map(|u| u.to_lowercase()),
        device_owner: opt(e.field(fields::DEVICE_OWNER)),
        host: opt(e.field(fields::BINDING_HOST)),
        ips: list(e.field(fields::PORT_IPS).or(e.field(fields::GATEWAY_IPS))),
        mac: opt(e.field(fields::PORT_MAC)),
        floating_ip: opt(e.field(fields::FLOATING_IP)),
        fip_port: opt(e.field(fields::FIP_PORT)).map(|p| p.to_lowercase()),
        fixed_ip: opt(e.field(fields::FIP_FIXED_IP)),
        router_id: opt(e.field(fields::ROUTER_ID)),
        project_id: opt(e.field(fields::PROJECT_ID)),
        summary: summary.to_string(),
        subnets: list(e.field(fields::PORT_SUBNETS)),
    })
}

/// One line for evidence lists: what the event says, shortly.
fn summarize(e: &Event) -> String {
    let mut s = e.message.clone();
    truncate_summary(&mut s);
    s
}

fn truncate_summary(s: &mut String) {
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Origin, Received};
    use std::collections::BTreeMap;

    fn nova(uuid: &str, ips: &str, ports: &str, devices: &str) -> Event {
        let mut fields = BTreeMap::new();
        for (k, v) in [
            (fields::VM_UUID, uuid),
            (fields::EVENT_TYPE, "instance.create.end"),
            (fields::VM_IPS, ips),
            (fields::VM_PORTS, ports),
            (fields::VM_DEVICES, devices),
        ] {
            if !v.is_empty() {
                fields.insert(k.to_string(), v.to_string());
            }
        }
        Event {
            source_kind: "nova-notification".into(),
            fields,
            class: EventClass::VmLifecycle,
            ..Event::blank(
                Received::from_stored(1_000),
                Observer::Cloud,
                Origin::File {
                    path: "n.json".into(),
                    line: 1,
                },
                vec![],
            )
        }
    }

    #[test]
    fn a_read_snapshot_sees_one_state_while_a_writer_commits() {
        // `who`'s views check reads the store's position, then its answer reads the facts:
        // a live ingest committing in between must not make the two disagree.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = FactStore::open(dir.path()).expect("open");
        let a = "aaaaaaaa-0000-4000-8000-000000000001";
        let b = "bbbbbbbb-0000-4000-8000-000000000002";
        writer
            .apply(&[(1, nova(a, "10.0.0.5", "", ""))], 1)
            .expect("apply");
        let reader = FactStore::open(dir.path()).expect("open");
        reader.read_snapshot().expect("snapshot");
        assert_eq!(reader.last_seq().expect("seq"), Some(1));
        writer
            .apply(&[(2, nova(b, "10.0.0.5", "", ""))], 2)
            .expect("a writer is not held back by a reader's snapshot");
        assert_eq!(reader.last_seq().expect("seq"), Some(1));
        assert_eq!(reader.vms_with("ip", "10.0.0.5").expect("vms"), [a]);
        // A reader without a snapshot sees the commit.
        let fresh = FactStore::open(dir.path()).expect("open");
        assert_eq!(fresh.last_seq().expect("seq"), Some(2));
        let mut both = fresh.vms_with("ip", "10.0.0.5").expect("vms");
        both.sort();
        assert_eq!(both, [a, b]);
        // The same connection, its snapshot ended (kept by the query API for the next
        // question), sees the commit too; ending none is no error.
        reader.end_snapshot().expect("end");
        reader.end_snapshot().expect("nothing to end");
        reader.read_snapshot().expect("snapshot");
        assert_eq!(reader.last_seq().expect("seq"), Some(2));
        let mut both = reader.vms_with("ip", "10.0.0.5").expect("vms");
        both.sort();
        assert_eq!(both, [a, b]);
    }

    #[test]
    fn nova_ports_and_tap_devices_are_stored_with_their_vm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = FactStore::open(dir.path()).expect("open");
        let a = "aaaaaaaa-0000-4000-8000-000000000001";
        // Two interfaces: one names its device, one only its port (the tap is derived).
        let e = nova(
            a,
            "10.0.0.5,10.1.0.5",
            "1234abcd-ef01-4000-8000-000000000001,5678ABCD-ef01-4000-8000-000000000002",
            "tap1234abcd-ef,",
        );
        store.apply(&[(7, e)], 7).expect("apply");
        let taps: Vec<(String, String, u64)> = store
            .nova_taps()
            .expect("taps")
            .into_iter()
            .map(|t| (t.tap, t.uuid, t.seq))
            .collect();
        assert_eq!(
            taps,
            [
                ("tap1234abcd-ef".to_string(), a.to_string(), 7),
                ("tap5678abcd-ef".to_string(), a.to_string(), 7),
            ]
        );
        assert_eq!(
            store
                .vms_with("port", "5678abcd-ef01-4000-8000-000000000002")
                .expect("port"),
            [a]
        );
        // Without ports nothing is stored, and the addresses are unchanged.
        store
            .apply(&[(8, nova(a, "10.0.0.5", "", ""))], 8)
            .expect("apply");
        assert_eq!(store.nova_taps().expect("taps").len(), 2);
        assert_eq!(store.vms_with("ip", "10.1.0.5").expect("ip"), [a]);
        assert_eq!(tap_of_port("short"), None);
    }
}
