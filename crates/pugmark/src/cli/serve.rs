//! `pugmark serve`: run the live collector (crate `serve`) over this data directory, and
//! `pugmark status`: what a running server's `/metrics` says.
//!
//! The binary's part is small: parse flags, open the `Pipeline` (the single writer of the
//! data directory; its lock keeps a second writer out), and hand it to `serve::run` behind
//! the `serve::Store` trait, which the writer thread drives with group-committed batches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ledger::LedgerReader;
use model::Envelope;
use model::envelope::RecordEnvelope;

use crate::cli::DataArgs;
use crate::netflow::FlowIngest;
use pipeline::Pipeline;
use pipeline::datadir::DataDir;

/// Views are committed (made searchable) at least this often while serving.
const SERVE_INDEX_COMMIT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
#[command(
    after_long_help = "Default listeners (all on loopback; set ADDR:PORT or none):
  --syslog-udp   127.0.0.1:5514  syslog over UDP (RFC 5426)
  --syslog-tcp   127.0.0.1:5514  syslog over TCP, LF or octet-counted framing (RFC 6587)
  --syslog-tls   127.0.0.1:6514  syslog over TLS (RFC 5425), on only when [tls] is configured
  --relp         127.0.0.1:2514  RELP (rsyslog omrelp); acks only once durable
  --http         127.0.0.1:9514  GET /metrics, POST /api/v1/events (JSON or NDJSON)
  --netflow      127.0.0.1:2055,127.0.0.1:4739  NetFlow v5/v9 and IPFIX over UDP (any version on each)
  --amqp         none            RabbitMQ URL: OpenStack notifications, acked once durable
  --metrics      none            GET /metrics on its own address (then not on --http)
Senders: [senders] in the config maps each sender (listener, CIDR, TLS client certificate
subject/SAN, HTTP bearer token) to an observer; unmatched senders are `vm` (or refused with
--unmatched refuse). POST /api/v1/events needs a token (`pugmark token`). --check-config
prints the listeners and the sender map in matching order, and exits.
SIGTERM or SIGINT flushes everything to the ledger and exits; restarting resumes the same ledger."
)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// TOML configuration (listeners, tls.cert / tls.key / tls.client_ca, tcp.idle_timeout_secs,
    /// amqp, senders). Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Syslog UDP listener, ADDR:PORT or none [default: 127.0.0.1:5514].
    #[arg(long, value_name = "ADDR|none")]
    pub syslog_udp: Option<String>,
    /// Syslog TCP listener (LF or octet-counted, detected per frame), ADDR:PORT or none
    /// [default: 127.0.0.1:5514].
    #[arg(long, value_name = "ADDR|none")]
    pub syslog_tcp: Option<String>,
    /// Syslog TLS listener, ADDR:PORT or none [default: 127.0.0.1:6514 when tls.cert is
    /// configured, else none].
    #[arg(long, value_name = "ADDR|none")]
    pub syslog_tls: Option<String>,
    /// RELP listener, ADDR:PORT or none [default: 127.0.0.1:2514].
    #[arg(long, value_name = "ADDR|none")]
    pub relp: Option<String>,
    /// HTTP listener (/metrics, /api/v1/events), ADDR:PORT or none [default: 127.0.0.1:9514].
    #[arg(long, value_name = "ADDR|none")]
    pub http: Option<String>,
    /// Consume OpenStack notifications from this AMQP broker, e.g.
    /// amqp://guest:guest@127.0.0.1:5672/%2f (exchanges, routing keys and queue from the
    /// config, defaults nova / versioned_notifications.info, notifications.info /
    /// pugmark.notifications) [default: none].
    #[arg(long, value_name = "URL|none")]
    pub amqp: Option<String>,
    /// NetFlow v5/v9 and IPFIX UDP listener, ADDR:PORT[,ADDR:PORT...] or none; every datagram
    /// is stored with the flows decoded from it (class net.flow)
    /// [default: 127.0.0.1:2055,127.0.0.1:4739].
    #[arg(long, value_name = "ADDR[,ADDR]|none")]
    pub netflow: Option<String>,
    /// GET /metrics on an address of its own, ADDR:PORT or none; when set, the HTTP
    /// listener serves ingestion only [default: none, /metrics on --http].
    #[arg(long, value_name = "ADDR|none")]
    pub metrics: Option<String>,
    /// Senders no [[senders.map]] entry matches: stored as observer vm, or refused
    /// (connections closed, datagrams dropped, counted) [default: vm, or the config's senders.unmatched].
    #[arg(long, value_name = "vm|refuse", value_parser = ["vm", "refuse"])]
    pub unmatched: Option<String>,
    /// Validate the configuration (TLS files included), print the listeners and the sender
    /// map in matching order, and exit without opening the data directory.
    #[arg(long)]
    pub check_config: bool,
}

pub(super) struct PipelineStore {
    pipeline: Pipeline,
    ledger_dir: PathBuf,
    /// The NetFlow / IPFIX decoder of the live listener: templates per exporter, bounded
    /// by `flow::Limits` (exporters, templates, pending sets and bytes).
    flows: FlowIngest,
    metrics: Option<Arc<serve::metrics::Metrics>>,
    /// The batch handed back by a failed append already holds its derived flow records:
    /// appended again as it is (decoding the datagrams twice would store their flows twice).
    expanded: bool,
    /// `[[witnesses]]`: the pusher thread starts once the metrics it reports to exist.
    witnesses: Vec<crate::witnesses::Target>,
    /// `[retention] keep`, its data directory and when it last ran (checked after appends).
    retention: Option<(String, DataDir, Option<std::time::Instant>)>,
    /// `[quarantine]`: custody records shipped from its journal, deletions marked.
    quarantine: Option<QuarantineLink>,
}

/// serve's side of the image quarantine: the store's journal is shipped into the ledger by
/// the writer thread (it owns the ledger); expiry and marks run on a thread of their own
/// (`quarantine_thread`), which takes the store's lock as every quarantine verb does.
pub(super) struct QuarantineLink {
    store: PathBuf,
    /// Journal length last seen, so an idle tick costs one stat.
    seen: u64,
    /// VMs nova announced deleted, for the quarantine thread to mark.
    marks: std::sync::mpsc::Sender<String>,
    /// Where the quarantine thread publishes backend health, once the metrics exist.
    metrics: Arc<std::sync::OnceLock<Arc<serve::metrics::Metrics>>>,
}

/// The quarantine thread: every `every`, try again the captures whose storage did not answer,
/// purge expired images, poll each backend's health and publish it all to `/metrics` (once
/// the metrics exist); mark each VM received. The RBD backend lives as long as the thread, so
/// its counters do; the store is opened (and locked) only for the time of each tick.
fn quarantine_thread(
    config: quarantine::policy::Config,
    every: std::time::Duration,
    marks: std::sync::mpsc::Receiver<String>,
    metrics: Arc<std::sync::OnceLock<Arc<serve::metrics::Metrics>>>,
) {
    let ceph = match config
        .rbd
        .clone()
        .map(quarantine::ceph::CephBackend::new)
        .transpose()
    {
        Ok(c) => c.map(Arc::new),
        Err(e) => {
            eprintln!("pugmark serve: quarantine: [rbd]: {e}");
            return;
        }
    };
    let mut stats: BTreeMap<String, serve::metrics::QuarantineStat> = BTreeMap::new();
    let mut journal_len = u64::MAX;
    let mut next = std::time::Instant::now();
    loop {
        let wait = next.saturating_duration_since(std::time::Instant::now());
        let mark = match marks.recv_timeout(wait) {
            Ok(vm) => Some(vm),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let r = (|| -> anyhow::Result<()> {
            let extra: Vec<Box<dyn quarantine::Backend>> = ceph
                .iter()
                .map(|c| Box::new(c.clone()) as Box<dyn quarantine::Backend>)
                .collect();
            let q = quarantine::Quarantine::open(config.clone(), extra)?;
            if let Some(vm) = &mark {
                q.mark(vm, "serve", "nova instance.delete.start")?;
            }
            if std::time::Instant::now() >= next {
                next = std::time::Instant::now() + every;
                for r in q.retry_due(quarantine::now())? {
                    match r {
                        Ok(item) => eprintln!(
                            "pugmark serve: quarantine kept {} as {} on retry",
                            item.source, item.id
                        ),
                        Err(e) => eprintln!("pugmark serve: quarantine: {e}"),
                    }
                }
                let purged = q.expire(quarantine::now())?;
                if !purged.is_empty() {
                    eprintln!("pugmark serve: quarantine purged {}", purged.join(" "));
                }
                poll_quarantine(&q, ceph.as_deref(), every, &mut stats, &mut journal_len)?;
                if let Some(m) = metrics.get()
                    && let Ok(mut g) = m.quarantine.lock()
                {
                    *g = stats.clone();
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            eprintln!("pugmark serve: quarantine: {e:#}");
        }
    }
}

/// One health poll of each backend, with what it keeps and what waits for it.
fn poll_quarantine(
    q: &quarantine::Quarantine,
    ceph: Option<&quarantine::ceph::CephBackend>,
    every: std::time::Duration,
    stats: &mut BTreeMap<String, serve::metrics::QuarantineStat>,
    journal_len: &mut u64,
) -> anyhow::Result<()> {
    let items = q.items()?;
    let pending = q.pending()?;
    // Failed captures per backend, counted again only when the journal grew.
    let len = std::fs::metadata(q.journal().path()).map_or(0, |m| m.len());
    let failures: Option<BTreeMap<String, u64>> = if len == *journal_len {
        None
    } else {
        *journal_len = len;
        let mut n = BTreeMap::new();
        for r in q.journal().read()? {
            if r.step == Some(quarantine::custody::Step::Failed)
                && r.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("; retry ") || d.contains("; gave up after"))
                && let Some(b) = r.backend
            {
                *n.entry(b).or_insert(0) += 1;
            }
        }
        Some(n)
    };
    for b in q.backends() {
        let kind = b.kind();
        let h = match (kind, ceph) {
            // One attempt, a short deadline: a poll must not wait out a capture's retries.
            ("rbd", Some(c)) => c.probe(every.clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(10),
            )),
            _ => b.health(),
        };
        let st = stats.entry(kind.to_string()).or_default();
        if !h.up {
            st.down_polls += 1;
        }
        st.up = h.up;
        st.detail = h.detail;
        st.free_bytes = h.free_bytes;
        let mine: Vec<&quarantine::Item> = items.iter().filter(|i| i.backend == kind).collect();
        st.images = mine.len() as u64;
        st.bytes = mine.iter().map(|i| i.size).sum();
        st.captures_waiting = pending
            .iter()
            .filter(|p| p.source.backend_kind() == kind)
            .count() as u64;
        if let Some(f) = &failures {
            st.capture_failures = f.get(kind).copied().unwrap_or(0);
        }
        if let (Some(c), "rbd") = (ceph, kind) {
            let cs = c.stats();
            st.unavailable = cs.unavailable_total;
            st.gave_up = cs.gave_up_total;
        }
    }
    Ok(())
}

impl PipelineStore {
    /// VMs whose deletion nova announces in these records (`instance.delete.start`, seen
    /// from a cloud observer; decoded to take the UUID from the notification itself).
    fn deletions(&self, records: &[Envelope]) -> Vec<String> {
        if self.quarantine.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in records {
            let Envelope::Record(r) = r else { continue };
            if r.observer != model::Observer::Cloud
                || memchr::memmem::find(&r.raw, b"instance.delete.start").is_none()
            {
                continue;
            }
            let ev = decode::decode(r);
            if ev
                .field("event_type")
                .is_some_and(|t| t.ends_with("instance.delete.start"))
                && let Some(u) = ev.field(model::fields::VM_UUID)
            {
                out.push(u.to_ascii_lowercase());
            }
        }
        out
    }

    /// Ships the quarantine journal's new records into the ledger (writer thread).
    fn ship_custody(&mut self) {
        let Some(link) = &mut self.quarantine else {
            return;
        };
        let len = std::fs::metadata(link.store.join("journal.jsonl")).map_or(0, |m| m.len());
        if len == link.seen {
            return;
        }
        let store = link.store.clone();
        let r = (|| -> anyhow::Result<()> {
            let todo = crate::cli::quarantine::unshipped(&store)?;
            if !todo.is_empty() {
                let envs = todo
                    .iter()
                    .map(crate::cli::quarantine::custody_envelope)
                    .collect();
                let receipt = self.pipeline.try_append(envs).map_err(|f| f.error)?;
                crate::cli::quarantine::record_shipped_from(&store, &todo, receipt.first.get())?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                if let Some(link) = &mut self.quarantine {
                    link.seen = len;
                }
            }
            Err(e) => eprintln!("pugmark serve: quarantine custody not stored yet: {e:#}"),
        }
    }
}

/// How often serve applies `[retention]` (tests: `PUGMARK_TEST_RETENTION_EVERY_MS`).
fn retention_every() -> std::time::Duration {
    std::env::var("PUGMARK_TEST_RETENTION_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(
            std::time::Duration::from_secs(3600),
            std::time::Duration::from_millis,
        )
}

impl PipelineStore {
    /// Applies the retention policy when due, in the writer thread (it owns the ledger):
    /// segments older than the policy and not held are removed with a signed record each.
    /// A failure is reported and retried at the next period; it never stops serving.
    fn maintain(&mut self) {
        let Some((keep, dd, last)) = &mut self.retention else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < retention_every()) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let (keep, dd) = (keep.clone(), dd.clone());
        let r = (|| -> anyhow::Result<crate::cli::retention::Outcome> {
            let secs = crate::cli::retention::parse_keep(&keep)?;
            let holds = crate::cli::retention::read_holds(&dd)?;
            let cutoff = model::Received::now().as_unix_nanos() - i128::from(secs) * 1_000_000_000;
            let mut reader = ledger::LedgerReader::open(&dd.ledger())?;
            let plan = crate::cli::retention::plan(&reader, &holds, cutoff)?;
            let mut out = crate::cli::retention::Outcome {
                policy: format!("keep {keep}"),
                cutoff: model::Received::from_stored(cutoff).timestamp().to_string(),
                ..Default::default()
            };
            if !plan.remove.is_empty() {
                let (policy, cut) = (out.policy.clone(), out.cutoff.clone());
                let carry = crate::cli::retention::flow_carry(&mut reader, &plan.remove)?;
                crate::cli::retention::remove_with(
                    self.pipeline.ledger_mut(),
                    &plan.remove,
                    &carry,
                    &policy,
                    &cut,
                    &mut out,
                )?;
            }
            Ok(out)
        })();
        match r {
            Ok(o) if !o.removed.is_empty() => eprintln!(
                "pugmark serve: retention ({}) removed {} record(s) in {} segment(s)",
                o.policy,
                o.records_removed,
                o.removed.len()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("pugmark serve: retention failed (retried in an hour): {e:#}"),
        }
    }
}

/// The exporter of a datagram the live NetFlow listener stored (its origin's address).
fn netflow_exporter(origin: &model::Origin) -> Option<SocketAddr> {
    match origin {
        model::Origin::Peer { addr, listener }
            if listener == serve::metrics::Listener::Netflow.name() =>
        {
            addr.parse().ok()
        }
        _ => None,
    }
}

impl PipelineStore {
    /// Each datagram of the netflow listener is followed by the flow records derived from
    /// it, as `pugmark ingest` stores a capture; everything else passes unchanged. The
    /// positions are known here: the ledger's next seq plus what precedes in the batch.
    fn expand_netflow(&mut self, records: Vec<Envelope>) -> (Vec<Envelope>, u64) {
        let netflow = serve::metrics::Listener::Netflow.name();
        if !records
            .iter()
            .any(|e| matches!(e, Envelope::Record(r) if r.format == model::Format::NetflowDatagram))
        {
            return (records, 0);
        }
        // The next position in the ledger: an over-long record before a datagram takes more
        // than one (`Pipeline::append` splits it).
        if self.flows.is_deriving() {
            // Datagrams only: the views derive their flows (docs/design/flow-derivation.md
            // §4), after the ledger's marker, which goes before the first of them.
            let mut out = Vec::with_capacity(records.len() + 1);
            self.flows.announce_live(&mut out);
            out.extend(records);
            return (out, 0);
        }
        let mut seq = self.pipeline.next_seq();
        let mut out = Vec::with_capacity(records.len() * 8);
        let mut flows = 0u64;
        for e in records {
            match e {
                Envelope::Record(r)
                    if r.format == model::Format::NetflowDatagram
                        && matches!(&r.origin, model::Origin::Peer { listener, .. } if listener == netflow) =>
                {
                    let exporter =
                        netflow_exporter(&r.origin).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                    let before = out.len();
                    flows += self.flows.record(exporter, r, seq, &mut out) as u64;
                    seq += out[before..]
                        .iter()
                        .map(pipeline::ledger_parts)
                        .sum::<u64>();
                }
                other => {
                    seq += pipeline::ledger_parts(&other);
                    out.push(other);
                }
            }
        }
        (out, flows)
    }

    fn publish_flow_stats(&self, derived: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(m) = &self.metrics else { return };
        let st = if self.flows.is_deriving() {
            // What the views derived so far: these figures trail the ledger as they do.
            match self.pipeline.live_flow_stats() {
                Some(s) => std::borrow::Cow::Owned(s),
                None => return,
            }
        } else {
            std::borrow::Cow::Borrowed(self.flows.stats())
        };
        let f = &m.netflow;
        f.flows.store(st.flows, Relaxed);
        f.templates
            .store(st.templates + st.options_templates, Relaxed);
        f.pending_decoded.store(st.pending_decoded, Relaxed);
        f.dropped_sets.store(st.dropped_sets, Relaxed);
        if let Ok(mut p) = f.problems.lock() {
            for (k, n) in &st.problems {
                p.insert((*k).to_string(), *n);
            }
        }
        // The writer counts the records it handed over; the derived ones are added here.
        m.ledger_records.fetch_add(derived, Relaxed);
    }
}

impl PipelineStore {
    /// The pipeline, for the spool watcher (`cli/spool.rs`), which holds the store's lock.
    pub(super) fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }
}

/// The store shared between serve's writer thread and the spool watcher: each takes the lock
/// for what it appends (a batch; a whole spool file). Used only when `[spool] dirs` is set.
struct SharedStore {
    inner: Arc<std::sync::Mutex<PipelineStore>>,
    spool: Option<super::spool::Spool>,
}

impl SharedStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipelineStore> {
        // A panic in the spool thread while it held the lock leaves the pipeline as the
        // ledger's own recovery would: go on with it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl serve::Store for SharedStore {
    fn append(&mut self, records: Vec<Envelope>) -> Result<u64, serve::writer::NotStored> {
        self.lock().append(records)
    }

    fn recover(&mut self) -> anyhow::Result<()> {
        self.lock().recover()
    }

    fn attach_metrics(&mut self, metrics: Arc<serve::metrics::Metrics>) {
        self.lock().attach_metrics(metrics);
    }

    fn recent_peer_records(&mut self, n: usize) -> anyhow::Result<Vec<RecordEnvelope>> {
        self.lock().recent_peer_records(n)
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        if let Some(s) = self.spool.take() {
            s.stop();
        }
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| anyhow::anyhow!("the spool watcher still holds the store"))?
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serve::Store::finish(Box::new(inner))
    }
}

impl serve::Store for PipelineStore {
    fn append(&mut self, records: Vec<Envelope>) -> Result<u64, serve::writer::NotStored> {
        let (records, derived) = if std::mem::take(&mut self.expanded) {
            (records, 0)
        } else {
            self.expand_netflow(records)
        };
        let deleted = self.deletions(&records);
        match self.pipeline.try_append(records) {
            Ok(receipt) => {
                if let Some(link) = &self.quarantine {
                    for vm in deleted {
                        let _ = link.marks.send(vm);
                    }
                }
                self.ship_custody();
                if self.metrics.is_some()
                    && (self.flows.is_deriving() || self.flows.stats().datagrams > 0)
                {
                    self.publish_flow_stats(derived);
                }
                if let (Some(m), Some(why)) = (&self.metrics, self.pipeline.views_failed()) {
                    m.store.views_stopped(why);
                }
                self.maintain();
                Ok(receipt.last().map_or(0, |s| s.get()))
            }
            Err(e) => {
                let refused = matches!(
                    e.error.downcast_ref::<ledger::LedgerError>(),
                    Some(ledger::LedgerError::RecordTooLarge { .. })
                ) || e.error.downcast_ref::<pipeline::RecordRefused>().is_some();
                self.expanded = !e.envelopes.is_empty() && !refused;
                Err(serve::writer::NotStored {
                    error: e.error,
                    records: e.envelopes,
                    refused,
                })
            }
        }
    }

    fn recover(&mut self) -> anyhow::Result<()> {
        self.pipeline.recover()
    }

    fn idle(&mut self) -> anyhow::Result<()> {
        self.ship_custody();
        if self.flows.is_deriving() {
            // The views go on deriving after the last append.
            self.publish_flow_stats(0);
        }
        self.pipeline.checkpoint()
    }

    fn attach_metrics(&mut self, metrics: Arc<serve::metrics::Metrics>) {
        if let Some(pos) = self.pipeline.index_position() {
            let _ = metrics.index_last_seq.set(pos);
        }
        let targets = std::mem::take(&mut self.witnesses);
        if let Err(e) = crate::witnesses::spawn(self.ledger_dir.clone(), targets, metrics.clone()) {
            eprintln!("pugmark serve: cannot start the witness pusher: {e}");
        }
        if let Some(q) = &self.quarantine {
            let _ = q.metrics.set(metrics.clone());
        }
        self.metrics = Some(metrics);
    }

    fn recent_peer_records(&mut self, n: usize) -> anyhow::Result<Vec<RecordEnvelope>> {
        let next = self.pipeline.next_seq();
        if next <= 1 {
            return Ok(Vec::new());
        }
        let from = next.saturating_sub(n as u64).max(1);
        let reader = LedgerReader::open(&self.ledger_dir)?;
        let mut out = Vec::new();
        for item in reader.iter_from(from) {
            let (seq, payload) = item?;
            if seq.get() >= next {
                break;
            }
            if let Ok(Envelope::Record(r)) = Envelope::decode(&payload)
                && matches!(
                    r.origin,
                    model::Origin::Peer { .. } | model::Origin::AuthenticatedPeer { .. }
                )
            {
                // The live NetFlow listener's datagrams teach the decoder its templates
                // again: a restart (even after kill -9) does not wait for the next refresh.
                if r.format == model::Format::NetflowDatagram
                    && let Some(exporter) = netflow_exporter(&r.origin)
                {
                    // Deriving, the views' decoder state is saved with the flow store.
                    if !self.flows.is_deriving() {
                        self.flows.relearn(exporter, &r);
                    }
                    continue;
                }
                out.push(r);
            }
        }
        Ok(out)
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        // Stopped during a storage fault: the ledger is cut back to its last durable batch
        // so that it closes with a checkpoint (else the next start recovers it).
        if self.pipeline.ledger_failed() {
            self.pipeline.recover()?;
        }
        let waiting = self.flows.finish();
        if waiting > 0 {
            eprintln!(
                "pugmark serve: netflow: {waiting} data sets still waiting for their template were dropped at shutdown (their datagrams are stored)"
            );
        }
        let stats = self.pipeline.finish()?;
        if stats.live_sets_waiting > 0 {
            eprintln!(
                "pugmark serve: netflow: {} data sets wait for their template (kept with the flow store for the next start; their datagrams are stored)",
                stats.live_sets_waiting
            );
        }
        Ok(())
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let over = serve::Overrides {
        syslog_udp: args.syslog_udp,
        syslog_tcp: args.syslog_tcp,
        syslog_tls: args.syslog_tls,
        relp: args.relp,
        http: args.http,
        amqp: args.amqp,
        netflow: args.netflow,
        metrics: args.metrics,
        unmatched: args.unmatched,
    };
    let config = serve::Config::load(args.config.as_deref(), &over)?;
    let retention = config.retention_keep.clone();
    if args.check_config {
        print!("{}", config.describe());
        return Ok(ExitCode::SUCCESS);
    }
    let witnesses = config
        .witnesses
        .iter()
        .map(|w| crate::witnesses::Target::new(&w.name, &w.url, &w.vkey))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let quarantine = match &config.quarantine {
        Some((path, every)) => {
            let qc = quarantine::policy::Config::load(path).map_err(anyhow::Error::msg)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let store = qc.store.clone();
            let every = *every;
            let metrics = Arc::new(std::sync::OnceLock::new());
            let m = metrics.clone();
            std::thread::Builder::new()
                .name("quarantine".into())
                .spawn(move || quarantine_thread(qc, every, rx, m))?;
            Some(QuarantineLink {
                store,
                seen: u64::MAX,
                marks: tx,
                metrics,
            })
        }
        None => None,
    };
    let dd = DataDir::open(&args.data.data, true)?;
    if let Some((path, _)) = &config.quarantine {
        // `check` and `hunt` on this data directory hold the VMs they find in this store.
        super::autohold::link(&args.data.data, path);
    }
    let pipeline = Pipeline::open_trailing(&dd, SERVE_INDEX_COMMIT)?;
    for t in &pipeline.open_report.truncated {
        eprintln!("pugmark: ledger recovery: {t}");
    }
    let last = pipeline.next_seq().saturating_sub(1);
    eprintln!(
        "pugmark serve: data {} (ledger at #{last})",
        args.data.data.display()
    );
    let marker = pipeline.derive_marker();
    let store = PipelineStore {
        pipeline,
        ledger_dir: dd.ledger(),
        // Datagrams only; the views derive their flows (`FlowIngest::collector`).
        flows: FlowIngest::collector(flow::Limits::default(), marker),
        metrics: None,
        expanded: false,
        witnesses,
        retention: retention.map(|k| (k, dd.clone(), None)),
        quarantine,
    };
    // The query API on the HTTP listener (issue 14; `[api] enabled = false` turns it off).
    let query_api: Option<Arc<dyn serve::api::Api>> = if config.api.enabled && config.http.is_some()
    {
        Some(crate::api::service(
            args.data.data.clone(),
            config.api.clone(),
            config.metrics.or(config.http),
        )? as Arc<dyn serve::api::Api>)
    } else {
        None
    };
    let summary = if config.spool.is_empty() {
        serve::run_with_api(config, Box::new(store), last, query_api)?
    } else {
        let inner = Arc::new(std::sync::Mutex::new(store));
        let spool = super::spool::Spool::start(
            config.spool.clone(),
            config.spool_interval,
            inner.clone(),
            dd.clone(),
        )?;
        serve::run_with_api(
            config,
            Box::new(SharedStore {
                inner,
                spool: Some(spool),
            }),
            last,
            query_api,
        )?
    };
    eprintln!(
        "pugmark serve: stopped; {} records stored in {} durable batches, ledger closed",
        summary.records, summary.batches
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The address serving the running `pugmark serve`'s /metrics: its HTTP listener, or
    /// its --metrics address when it has one.
    #[arg(long, default_value = serve::config::DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// Mark senders not heard from for this many seconds as SILENT.
    #[arg(long, default_value_t = 300)]
    pub silent_after: u64,
    /// Print the raw Prometheus text instead of the summary.
    #[arg(long)]
    pub raw: bool,
    /// JSON: {"samples": [{"name", "labels", "value"}]} (what `GET /api/v1/status` answers).
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
}

/// The running collector's metrics as JSON (`status --json`, `GET /api/v1/status`).
pub(crate) fn status_json(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let text = serve::status::fetch(addr).context("is pugmark serve running?")?;
    let samples: Vec<serde_json::Value> = serve::status::samples(&text)
        .into_iter()
        .map(|(name, labels, value)| serde_json::json!({"name": name, "labels": labels, "value": value}))
        .collect();
    Ok(serde_json::json!({ "samples": samples }))
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        let v = status_json(args.http)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = serve::status::fetch(args.http).context("is pugmark serve running?")?;
    let shown = if args.raw {
        text
    } else {
        let now = model::Received::now().as_unix_nanos() as f64 / 1e9;
        serve::status::render(&text, now, args.silent_after as f64)
    };
    // Sender names and certificate subjects come from the peers: escaped like record text.
    let mut out = std::io::stdout().lock();
    for line in shown.lines() {
        super::text_line(&mut out, line)?;
    }
    Ok(ExitCode::SUCCESS)
}
