//! The quarantine store: items (one kept image each), holds, expiry, and the journal.
//!
//! Layout (the directory is 0700, every file in it 0600):
//! ```text
//! STORE/lock             flock held by every operation that changes the store
//! STORE/journal.jsonl    custody records, numbered, fsync'd (custody.rs)
//! STORE/items/ID.json    one item: source, where kept, hashes, policy, keep-until, holds
//! STORE/holds.json       holds per VM (operator's and findings'), until released
//! STORE/released.json    holds an operator released (a finding does not hold again)
//! STORE/policy.toml      `policy set` overrides of the config's [policy]
//! STORE/shipped          the journal number last stored in the ledger (binary)
//! STORE/retry.json       captures waiting for their storage to answer (Pending)
//! STORE/images/ID        the file backend's images
//! ```
//! A backend is chosen per source by [`Source::backend_kind`]. Every step is journaled before
//! it is reported done; a capture's intent (`capturing`) is journaled before the disk is
//! touched, and [`Quarantine::open`] settles intents a crash left open from what the backend
//! really holds.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, CaptureMode, CaptureRequest, ImageRef, Source};
use crate::custody::{Journal, Record, Step};
use crate::hash::Digests;
use crate::policy::{Config, Policies, Retention};

/// One kept image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// `q-YYYYMMDDTHHMMSSZ-xxxxxxxx`.
    pub id: String,
    /// The VM's UUID (lowercase).
    pub vm_uuid: String,
    /// Project / VO when known.
    #[serde(default)]
    pub project: Option<String>,
    /// Where the image was.
    pub source: Source,
    /// `file` or `rbd`.
    pub backend: String,
    /// Backend locator.
    pub locator: String,
    /// How it was kept.
    pub method: String,
    /// Size in bytes.
    pub size: u64,
    /// Hashes from the custody record (None until hashed).
    #[serde(default)]
    pub digests: Option<Digests>,
    /// When captured (RFC 3339).
    pub captured: Timestamp,
    /// The policy that applied at capture.
    pub policy: String,
    /// When the policy lets it go (None: no end).
    pub keep_until: Option<Timestamp>,
    /// The item this one backs (qcow2 backing chain), if any.
    #[serde(default)]
    pub backing_of: Option<String>,
    /// Who asked, and why.
    pub by: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Journal numbers of this item's custody records.
    #[serde(default)]
    pub custody: Vec<u64>,
}

/// A hold on a VM's images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Until when (None: until released).
    pub until: Option<Timestamp>,
    /// Why.
    pub reason: String,
    /// Who (`operator NAME`, `finding check:silent_vm`, …).
    pub by: String,
    /// Since when.
    pub since: Timestamp,
}

/// What to capture for one VM.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// The VM.
    pub vm_uuid: String,
    /// Its project / VO, when known.
    pub project: Option<String>,
    /// Its images, each with the index (in this list) of the image it backs, if any.
    pub images: Vec<(Source, Option<usize>)>,
    /// Take or copy.
    pub mode: CaptureMode,
    /// Who asks.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
    /// Hash images an O(1) capture did not hash, before returning.
    pub hash: bool,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// From a backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The store's own files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Bad request.
    #[error("{0}")]
    Invalid(String),
    /// No such item.
    #[error("no quarantine item {0}")]
    NoItem(String),
    /// The storage did not answer: recorded, and the capture is tried again at `at`.
    #[error("{error}; the capture is tried again at {at} (retry {attempt})")]
    Retrying {
        /// What failed.
        error: Box<StoreError>,
        /// When it is tried again.
        at: Timestamp,
        /// The retry number.
        attempt: u32,
    },
}

/// A capture waiting for its storage to answer again (`STORE/retry.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The VM.
    pub vm_uuid: String,
    /// Its project / VO.
    #[serde(default)]
    pub project: Option<String>,
    /// The image.
    pub source: Source,
    /// Take or copy.
    pub mode: CaptureMode,
    /// Who asked.
    pub by: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Hash after an O(1) capture.
    pub hash: bool,
    /// Retries made so far (the next is number `attempts`).
    pub attempts: u32,
    /// When the next one is due.
    pub next_at: Timestamp,
    /// The last error.
    pub last_error: String,
}

fn ioe(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// The quarantine: store directory, journal, backends, policies.
pub struct Quarantine {
    dir: PathBuf,
    config: Config,
    backends: Vec<Box<dyn Backend>>,
    journal: Journal,
    host: String,
    _lock: File,
}

/// The kept image's reference for its backend.
pub fn image_ref(item: &Item) -> ImageRef {
    ImageRef {
        id: item.id.clone(),
        locator: item.locator.clone(),
        size: item.size,
    }
}

impl Quarantine {
    /// Open (creating) the store the config names, with the file backend and any others
    /// (e.g. RBD) given; takes the store's lock and settles captures a crash left open.
    pub fn open(config: Config, extra: Vec<Box<dyn Backend>>) -> Result<Quarantine, StoreError> {
        let dir = config.store.clone();
        fs::create_dir_all(dir.join("items")).map_err(ioe(format!("create {}", dir.display())))?;
        for d in [dir.clone(), dir.join("items")] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .map_err(ioe(format!("chmod {}", d.display())))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(ioe("open the store lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            StoreError::Io {
                what: "lock the store".into(),
                source: e.into(),
            }
        })?;
        let file = crate::file::FileBackend::new(
            dir.join("images"),
            config.roots.clone(),
            config.reserve_bytes,
        )
        .map_err(ioe("open the file backend"))?;
        let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(file)];
        backends.extend(extra);
        let host = config.host.clone().unwrap_or_else(hostname);
        let q = Quarantine {
            journal: Journal::new(dir.join("journal.jsonl")),
            dir,
            config,
            backends,
            host,
            _lock: lock,
        };
        q.settle()?;
        Ok(q)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The host name custody records carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The backends.
    pub fn backends(&self) -> &[Box<dyn Backend>] {
        &self.backends
    }

    fn backend(&self, kind: &str) -> Result<&dyn Backend, StoreError> {
        self.backends
            .iter()
            .find(|b| b.kind() == kind)
            .map(|b| b.as_ref())
            .ok_or_else(|| StoreError::Invalid(format!("no `{kind}` backend configured")))
    }

    /// Append a custody record (fsync'd; also to syslog when configured).
    pub fn record(&self, r: Record) -> Result<Record, StoreError> {
        let r = self
            .journal
            .append(r)
            .map_err(ioe("append to the journal"))?;
        if self.config.syslog {
            // Best effort: the journal is the durable copy; the binary ships it too.
            let _ = send_syslog(&r, &self.config.syslog_socket);
        }
        Ok(r)
    }

    fn rec(&self, step: Step) -> Record {
        Record::new(step, &self.host)
    }

    /// The effective policies (config overlaid by `STORE/policy.toml`).
    pub fn policies(&self) -> Result<Policies, StoreError> {
        Ok(self.config.policy.overlaid(&self.overrides()?))
    }

    fn overrides(&self) -> Result<Policies, StoreError> {
        let p = self.dir.join("policy.toml");
        match fs::read_to_string(&p) {
            Ok(t) => {
                toml::from_str(&t).map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Policies::default()),
            Err(e) => Err(ioe(format!("read {}", p.display()))(e)),
        }
    }

    /// Set (Some) or remove (None) one policy entry: `scope` is `site`, `project P` or `vm U`.
    pub fn set_policy(
        &self,
        scope: &PolicyScope,
        retention: Option<Retention>,
        by: &str,
    ) -> Result<Policies, StoreError> {
        let mut o = self.overrides()?;
        let label = match scope {
            PolicyScope::Site => {
                o.retention = retention;
                "site".to_string()
            }
            PolicyScope::Project(p) => {
                match retention {
                    Some(r) => o.projects.insert(p.clone(), r),
                    None => o.projects.remove(p),
                };
                format!("project {p}")
            }
            PolicyScope::Vm(v) => {
                let v = v.to_ascii_lowercase();
                match retention {
                    Some(r) => o.vms.insert(v.clone(), r),
                    None => o.vms.remove(&v),
                };
                format!("vm {v}")
            }
        };
        let text = toml::to_string(&o).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("policy.toml"), text.as_bytes())?;
        let mut r = self.rec(Step::Policy);
        r.policy = Some(match retention {
            Some(ret) => format!("{label} {ret}"),
            None => format!("{label} unset"),
        });
        r.by = Some(by.into());
        if let PolicyScope::Vm(v) = scope {
            r.vm_uuid = Some(v.to_ascii_lowercase());
        }
        self.record(r)?;
        self.policies()
    }

    fn new_id(&self, source: &Source, n: usize) -> String {
        let now = crate::now();
        let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut h = blake3::Hasher::new();
        h.update(&now.as_nanosecond().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&n.to_le_bytes());
        h.update(source.to_string().as_bytes());
        format!("q-{stamp}-{}", &h.finalize().to_hex()[..8])
    }

    /// Holds per VM.
    pub fn holds(&self) -> Result<BTreeMap<String, Vec<Hold>>, StoreError> {
        let p = self.dir.join("holds.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ioe(format!("read {}", p.display()))(e)),
        }
    }

    fn active_hold(&self, vm: &str, now: Timestamp) -> Result<Option<Hold>, StoreError> {
        Ok(self
            .holds()?
            .remove(vm)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.until.is_none_or(|u| u > now))
            .max_by_key(|h| h.until.map_or(i128::MAX, |u| u.as_nanosecond())))
    }

    /// Capture a VM's images. Images the policy does not keep (0) are skipped and the skip
    /// recorded, unless the VM is held. Each image is an item; a refusal or failure of one
    /// image is recorded and returned with the others' results.
    /// A capture that fails because its storage does not answer ([`BackendError::retryable`])
    /// is recorded (`failed`, with when it is tried again) and queued in `STORE/retry.json`;
    /// [`Quarantine::retry_due`] tries it again with a bounded backoff (`[retry]`). The source
    /// is never touched by a capture that did not keep it.
    pub fn capture(&self, spec: &CaptureSpec) -> Vec<Result<Item, StoreError>> {
        self.capture_attempt(spec, 0)
    }

    fn capture_attempt(&self, spec: &CaptureSpec, attempt: u32) -> Vec<Result<Item, StoreError>> {
        let vm = spec.vm_uuid.to_ascii_lowercase();
        let now = crate::now();
        let (applied, hold) = match (|| {
            Ok::<_, StoreError>((
                self.policies()?.resolve(&vm, spec.project.as_deref()),
                self.active_hold(&vm, now)?,
            ))
        })() {
            Ok(x) => x,
            Err(e) => return vec![Err(e)],
        };
        let (policy, keep_until) = match (&hold, applied.retention) {
            // A hold with an end never shortens the policy's retention.
            (Some(h), Retention::For(d)) => (
                format!("hold ({})", h.reason),
                h.until.map(|u| now.checked_add(d).map_or(u, |p| p.max(u))),
            ),
            (Some(h), Retention::Off) => (format!("hold ({})", h.reason), h.until),
            (None, Retention::Off) => {
                let mut r = self.rec(Step::Skipped);
                r.vm_uuid = Some(vm.clone());
                r.project = spec.project.clone();
                r.policy = Some(applied.to_string());
                r.by = Some(spec.by.clone());
                r.reason = spec.reason.clone();
                r.source = Some(
                    spec.images
                        .iter()
                        .map(|(s, _)| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                return match self.record(r) {
                    Ok(_) => Vec::new(),
                    Err(e) => vec![Err(e)],
                };
            }
            (None, Retention::For(d)) => (applied.to_string(), now.checked_add(d).ok()),
        };
        let ids: Vec<String> = spec
            .images
            .iter()
            .enumerate()
            .map(|(n, (s, _))| self.new_id(s, n))
            .collect();
        let mut out = Vec::new();
        for (n, (source, backs)) in spec.images.iter().enumerate() {
            let backing_of = backs.and_then(|i| ids.get(i).cloned());
            out.push(self.capture_one(
                spec, &vm, &ids[n], source, backing_of, &policy, keep_until, attempt,
            ));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn capture_one(
        &self,
        spec: &CaptureSpec,
        vm: &str,
        id: &str,
        source: &Source,
        backing_of: Option<String>,
        policy: &str,
        keep_until: Option<Timestamp>,
        attempt: u32,
    ) -> Result<Item, StoreError> {
        let base = |step| {
            let mut r = self.rec(step);
            r.item = Some(id.to_string());
            r.vm_uuid = Some(vm.to_string());
            r.project = spec.project.clone();
            r.source = Some(source.to_string());
            r.backend = Some(source.backend_kind().to_string());
            r.policy = Some(policy.to_string());
            r.keep_until = keep_until.map(|t| t.to_string());
            r.by = Some(spec.by.clone());
            r.reason = spec.reason.clone();
            r.backing_of = backing_of.clone();
            r
        };
        let intent = self.record(base(Step::Capturing))?;
        let result = self.backend(source.backend_kind()).and_then(|b| {
            b.capture(&CaptureRequest {
                id: id.to_string(),
                source: source.clone(),
                vm_uuid: vm.to_string(),
                // A backing file may back other VMs' disks too (nova's `_base`): never taken.
                mode: if backing_of.is_some() {
                    CaptureMode::Copy
                } else {
                    spec.mode
                },
                keep_until,
            })
            .map_err(StoreError::from)
        });
        let kept = match result {
            Ok(k) => k,
            Err(e) => {
                let mut r = base(Step::Failed);
                let retryable = matches!(&e, StoreError::Backend(b) if b.retryable());
                let rc = &self.config.retry;
                if !retryable {
                    r.detail = Some(e.to_string());
                    self.record(r)?;
                    return Err(e);
                }
                if attempt >= rc.attempts {
                    r.detail = Some(format!("{e}; gave up after {attempt} retries"));
                    self.record(r)?;
                    return Err(e);
                }
                let at = crate::now()
                    .checked_add(rc.backoff(attempt + 1))
                    .unwrap_or_else(|_| crate::now());
                r.detail = Some(format!(
                    "{e}; retry {} of {} at {at}",
                    attempt + 1,
                    rc.attempts
                ));
                self.record(r)?;
                self.queue_retry(Pending {
                    vm_uuid: vm.to_string(),
                    project: spec.project.clone(),
                    source: source.clone(),
                    mode: spec.mode,
                    by: spec.by.clone(),
                    reason: spec.reason.clone(),
                    hash: spec.hash,
                    attempts: attempt + 1,
                    next_at: at,
                    last_error: e.to_string(),
                })?;
                return Err(StoreError::Retrying {
                    error: Box::new(e),
                    at,
                    attempt: attempt + 1,
                });
            }
        };
        let mut item = Item {
            id: id.to_string(),
            vm_uuid: vm.to_string(),
            project: spec.project.clone(),
            source: source.clone(),
            backend: source.backend_kind().to_string(),
            locator: kept.locator.clone(),
            method: kept.method.clone(),
            size: kept.size,
            digests: kept.digests.clone(),
            captured: crate::now(),
            policy: policy.to_string(),
            keep_until,
            backing_of: backing_of.clone(),
            by: spec.by.clone(),
            reason: spec.reason.clone(),
            custody: vec![intent.n],
        };
        self.save_item(&item)?;
        let mut r = base(Step::Captured);
        r.locator = Some(kept.locator);
        r.method = Some(kept.method);
        r.size = Some(kept.size);
        if let Some(d) = &kept.digests {
            r = r.with_digests(d);
        }
        let r = self.record(r)?;
        item.custody.push(r.n);
        self.save_item(&item)?;
        if item.digests.is_none() && spec.hash {
            item = self.hash_item(item)?;
        }
        Ok(item)
    }

    /// Captures waiting for their storage (`STORE/retry.json`).
    pub fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let p = self.dir.join("retry.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ioe(format!("read {}", p.display()))(e)),
        }
    }

    fn save_pending(&self, list: &[Pending]) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(list).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("retry.json"), &bytes)
    }

    fn queue_retry(&self, p: Pending) -> Result<(), StoreError> {
        let mut list = self.pending()?;
        list.retain(|x| x.source != p.source);
        list.push(p);
        self.save_pending(&list)
    }

    /// Try again every queued capture that is due at `now` (serve's quarantine timer, and
    /// `pugmark quarantine expire`). One whose storage still does not answer is queued again
    /// with a longer wait (recorded), until `[retry] attempts`; the results of those tried.
    pub fn retry_due(&self, now: Timestamp) -> Result<Vec<Result<Item, StoreError>>, StoreError> {
        let list = self.pending()?;
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            list.into_iter().partition(|p| p.next_at <= now);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        // Taken off the queue first: a failing attempt queues itself again.
        self.save_pending(&later)?;
        let mut out = Vec::new();
        for p in due {
            let spec = CaptureSpec {
                vm_uuid: p.vm_uuid.clone(),
                project: p.project.clone(),
                images: vec![(p.source.clone(), None)],
                mode: p.mode,
                by: p.by.clone(),
                reason: Some(match &p.reason {
                    Some(r) => format!("{r} (retry {})", p.attempts),
                    None => format!("retry {} after: {}", p.attempts, p.last_error),
                }),
                hash: p.hash,
            };
            out.extend(self.capture_attempt(&spec, p.attempts));
        }
        Ok(out)
    }

    /// Hash an item captured without hashes and record it.
    pub fn hash_item(&self, mut item: Item) -> Result<Item, StoreError> {
        let d = self.backend(&item.backend)?.verify(&image_ref(&item))?;
        let mut r = self.item_rec(Step::Hashed, &item).with_digests(&d);
        r.by = Some("pugmark".into());
        let r = self.record(r)?;
        item.digests = Some(d);
        item.custody.push(r.n);
        self.save_item(&item)?;
        Ok(item)
    }

    fn item_rec(&self, step: Step, item: &Item) -> Record {
        let mut r = self.rec(step);
        r.item = Some(item.id.clone());
        r.vm_uuid = Some(item.vm_uuid.clone());
        r.project = item.project.clone();
        r.source = Some(item.source.to_string());
        r.backend = Some(item.backend.clone());
        r.locator = Some(item.locator.clone());
        r.size = Some(item.size);
        r
    }

    fn item_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if id.is_empty() || !id.starts_with("q-") || id.contains(['/', '.']) {
            return Err(StoreError::NoItem(id.to_string()));
        }
        Ok(self.dir.join("items").join(format!("{id}.json")))
    }

    fn save_item(&self, item: &Item) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(item).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.item_path(&item.id)?, &bytes)
    }

    /// One item.
    pub fn item(&self, id: &str) -> Result<Item, StoreError> {
        let p = self.item_path(id)?;
        let b = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NoItem(id.to_string()),
            _ => ioe(format!("read {}", p.display()))(e),
        })?;
        serde_json::from_slice(&b).map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display())))
    }

    /// Every item, oldest first.
    pub fn items(&self) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.dir.join("items")).map_err(ioe("list items"))? {
            let e = e.map_err(ioe("list items"))?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".json")
                && !name.starts_with('.')
            {
                out.push(self.item(id)?);
            }
        }
        out.sort_by(|a, b| (a.captured, &a.id).cmp(&(b.captured, &b.id)));
        Ok(out)
    }

    /// The custody records of an item, in order.
    pub fn custody(&self, id: &str) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .journal
            .read()
            .map_err(ioe("read the journal"))?
            .into_iter()
            .filter(|r| r.item.as_deref() == Some(id))
            .collect())
    }

    /// Hold a VM's images (present and future) until `until` or release.
    pub fn hold(
        &self,
        vm: &str,
        until: Option<Timestamp>,
        reason: &str,
        by: &str,
    ) -> Result<Vec<String>, StoreError> {
        let vm = vm.to_ascii_lowercase();
        let mut holds = self.holds()?;
        let now = crate::now();
        let list = holds.entry(vm.clone()).or_default();
        let extends = !list.is_empty();
        list.push(Hold {
            until,
            reason: reason.to_string(),
            by: by.to_string(),
            since: now,
        });
        let bytes =
            serde_json::to_vec_pretty(&holds).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("holds.json"), &bytes)?;
        let mut touched = Vec::new();
        for mut item in self.items()?.into_iter().filter(|i| i.vm_uuid == vm) {
            self.backend(&item.backend)?
                .hold(&image_ref(&item), until)?;
            let mut r = self.item_rec(if extends { Step::Extended } else { Step::Held }, &item);
            r.keep_until = until.map(|t| t.to_string());
            r.reason = Some(reason.into());
            r.by = Some(by.into());
            r.policy = Some("hold".into());
            let r = self.record(r)?;
            item.custody.push(r.n);
            self.save_item(&item)?;
            touched.push(item.id);
        }
        if touched.is_empty() {
            let mut r = self.rec(Step::Held);
            r.vm_uuid = Some(vm);
            r.keep_until = until.map(|t| t.to_string());
            r.reason = Some(reason.into());
            r.by = Some(by.into());
            r.policy = Some("hold".into());
            self.record(r)?;
        }
        Ok(touched)
    }

    /// Holds released by an operator, per VM (`STORE/released.json`): a finding whose hold
    /// was released does not hold the VM again when the same check or hunt is run again.
    pub fn released_holds(&self) -> Result<BTreeMap<String, Vec<Hold>>, StoreError> {
        let p = self.dir.join("released.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ioe(format!("read {}", p.display()))(e)),
        }
    }

    /// A hold asked by a finding (`by` = `auto:check`, `auto:hunt`, `auto:who …`; `reason`
    /// names the finding's kind and indicator, and is the finding's identity): made unless the
    /// VM already has this hold, or an operator released it (a release is final for that
    /// finding; a new finding holds again). Returns None when nothing was done, else the
    /// items held now (empty: the VM's disks are not captured yet — the capture honours it).
    pub fn hold_for_finding(
        &self,
        vm: &str,
        reason: &str,
        by: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let vm = vm.to_ascii_lowercase();
        let now = crate::now();
        let same = |h: &Hold| h.by == by && h.reason == reason;
        let active = self.holds()?.remove(&vm).unwrap_or_default();
        if active
            .iter()
            .any(|h| same(h) && h.until.is_none_or(|u| u > now))
        {
            return Ok(None);
        }
        let released = self.released_holds()?.remove(&vm).unwrap_or_default();
        if released.iter().any(same) {
            return Ok(None);
        }
        self.hold(&vm, None, reason, by).map(Some)
    }

    /// Release every hold on a VM: its images fall back to their policy's keep-until (an
    /// image captured while held, which had none, is kept for its policy's retention from
    /// its capture, and at least until now; each such change is a `released` record).
    pub fn release(&self, vm: &str, reason: &str, by: &str) -> Result<usize, StoreError> {
        let vm = vm.to_ascii_lowercase();
        let mut holds = self.holds()?;
        let gone = holds.remove(&vm).unwrap_or_default();
        let n = gone.len();
        if !gone.is_empty() {
            let mut released = self.released_holds()?;
            released.entry(vm.clone()).or_default().extend(gone);
            let bytes = serde_json::to_vec_pretty(&released)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            write_atomic(&self.dir.join("released.json"), &bytes)?;
        }
        let bytes =
            serde_json::to_vec_pretty(&holds).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("holds.json"), &bytes)?;
        let mut r = self.rec(Step::Released);
        r.vm_uuid = Some(vm.clone());
        r.reason = Some(reason.into());
        r.by = Some(by.into());
        r.detail = Some(format!("{n} hold(s) released"));
        self.record(r)?;
        let now = crate::now();
        let policies = self.policies()?;
        for mut item in self.items()?.into_iter().filter(|i| i.vm_uuid == vm) {
            if item.keep_until.is_some() {
                continue;
            }
            let applied = policies.resolve(&vm, item.project.as_deref());
            let until = match applied.retention {
                Retention::Off => now,
                Retention::For(d) => item.captured.checked_add(d).unwrap_or(now).max(now),
            };
            item.keep_until = Some(until);
            item.policy = applied.to_string();
            let mut r = self.item_rec(Step::Released, &item);
            r.reason = Some(reason.into());
            r.by = Some(by.into());
            r.policy = Some(item.policy.clone());
            r.keep_until = Some(until.to_string());
            r.detail = Some("held without end until now: kept for its policy".into());
            let r = self.record(r)?;
            item.custody.push(r.n);
            self.save_item(&item)?;
        }
        Ok(n)
    }

    /// Whether `item` may go at `now`: its keep-until passed and no hold covers its VM.
    pub fn expired(&self, item: &Item, now: Timestamp) -> Result<bool, StoreError> {
        Ok(item.keep_until.is_some_and(|u| u <= now)
            && self.active_hold(&item.vm_uuid, now)?.is_none())
    }

    /// Purge every expired item; returns the ids purged (a failing purge is recorded and
    /// left for the next run).
    pub fn expire(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let mut purged = Vec::new();
        for item in self.items()? {
            if !self.expired(&item, now)? {
                continue;
            }
            self.purge(&item, "expire", "retention ended")?;
            purged.push(item.id);
        }
        Ok(purged)
    }

    /// Destroy a kept image and its item; recorded.
    pub fn purge(&self, item: &Item, by: &str, reason: &str) -> Result<(), StoreError> {
        let b = self.backend(&item.backend)?;
        match b.purge(&image_ref(item)) {
            Ok(()) | Err(BackendError::NotFound(_)) => {}
            Err(e) => {
                let mut r = self.item_rec(Step::Failed, item);
                r.detail = Some(format!("purge: {e}"));
                r.by = Some(by.into());
                self.record(r)?;
                return Err(e.into());
            }
        }
        let mut r = self.item_rec(Step::Purged, item);
        r.by = Some(by.into());
        r.reason = Some(reason.into());
        r.policy = Some(item.policy.clone());
        r.keep_until = item.keep_until.map(|t| t.to_string());
        self.record(r)?;
        let p = self.item_path(&item.id)?;
        fs::remove_file(&p).map_err(ioe(format!("remove {}", p.display())))?;
        Ok(())
    }

    /// Export an item to `out` (created 0600, never overwriting); returns the digests of the
    /// bytes written and whether they match the custody record.
    pub fn export(&self, id: &str, out: &Path, by: &str) -> Result<(Item, Digests), StoreError> {
        let mut item = self.item(id)?;
        // Readable too: the file backend hashes the bytes as written by reading them back.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(ioe(format!("create {}", out.display())))?;
        let written = self
            .backend(&item.backend)
            .and_then(|b| Ok(b.export_file(&image_ref(&item), &f)?))
            .and_then(|d| {
                f.sync_all()
                    .map_err(ioe(format!("fsync {}", out.display())))?;
                Ok(d)
            });
        // A failed export (a full disk, an unreadable image) leaves no partial file that
        // could pass for the image: the file was created here, so it is ours to remove.
        let d = match written {
            Ok(d) => d,
            Err(e) => {
                drop(f);
                let _ = std::fs::remove_file(out);
                return Err(e);
            }
        };
        let mut r = self.item_rec(Step::Exported, &item).with_digests(&d);
        r.by = Some(by.into());
        r.detail = Some(format!("to {}", out.display()));
        let r = self.record(r)?;
        item.custody.push(r.n);
        if item.digests.is_none() {
            item.digests = Some(d.clone());
        }
        self.save_item(&item)?;
        Ok((item, d))
    }

    /// Rehash an item; returns (item, digests now, whether they equal the custody record's).
    pub fn verify(&self, id: &str, by: &str) -> Result<(Item, Digests, bool), StoreError> {
        let mut item = self.item(id)?;
        let d = self.backend(&item.backend)?.verify(&image_ref(&item))?;
        let ok = item.digests.as_ref().is_none_or(|k| *k == d);
        let mut r = self.item_rec(Step::Verified, &item).with_digests(&d);
        r.by = Some(by.into());
        r.detail = Some(if ok { "match" } else { "MISMATCH" }.into());
        let r = self.record(r)?;
        item.custody.push(r.n);
        if item.digests.is_none() {
            item.digests = Some(d.clone());
        }
        self.save_item(&item)?;
        Ok((item, d, ok))
    }

    /// Put an item's image back where it came from (or `to`), keeping the item.
    pub fn restore(
        &self,
        id: &str,
        to: Option<Source>,
        by: &str,
        reason: &str,
    ) -> Result<Item, StoreError> {
        let mut item = self.item(id)?;
        let to = to.unwrap_or_else(|| item.source.clone());
        self.backend(&item.backend)?
            .restore(&image_ref(&item), &to)?;
        let mut r = self.item_rec(Step::Restored, &item);
        r.by = Some(by.into());
        r.reason = Some(reason.into());
        r.detail = Some(format!("to {to}"));
        let r = self.record(r)?;
        item.custody.push(r.n);
        self.save_item(&item)?;
        Ok(item)
    }

    /// Record that the cloud announced a VM's deletion (nova `instance.delete.start`).
    pub fn mark(&self, vm: &str, by: &str, reason: &str) -> Result<Record, StoreError> {
        let mut r = self.rec(Step::Marked);
        let vm = vm.to_ascii_lowercase();
        r.policy = Some(self.policies()?.resolve(&vm, None).to_string());
        r.vm_uuid = Some(vm);
        r.by = Some(by.into());
        r.reason = Some(reason.into());
        self.record(r)
    }

    /// Settle captures a crash left open: an intent (`capturing`) with no outcome becomes
    /// `captured` when the backend holds the image (its item written if missing), else
    /// `failed` (the source was never touched: backends only remove it once the copy is kept).
    fn settle(&self) -> Result<(), StoreError> {
        let records = self.journal.read().map_err(ioe("read the journal"))?;
        let mut open: BTreeMap<String, Record> = BTreeMap::new();
        for r in &records {
            let Some(id) = &r.item else { continue };
            match r.step {
                Some(Step::Capturing) => {
                    open.insert(id.clone(), r.clone());
                }
                Some(_) => {
                    open.remove(id);
                }
                None => {}
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        for (id, intent) in &open {
            if let Some(b) = intent.backend.as_deref().and_then(|k| self.backend(k).ok()) {
                b.interrupted(id);
            }
        }
        let mut held: BTreeMap<String, crate::backend::Listed> = BTreeMap::new();
        // A backend that cannot say what it holds (a cluster that is down) has its intents
        // left open for a later open: settling them as failed could orphan a kept image.
        let mut unknown: Vec<&'static str> = Vec::new();
        for b in &self.backends {
            match b.list() {
                Ok(list) => {
                    for l in list {
                        if let Some(id) = l.id.clone() {
                            held.insert(id, l);
                        }
                    }
                }
                Err(_) => unknown.push(b.kind()),
            }
        }
        for (id, intent) in open {
            if intent
                .backend
                .as_deref()
                .is_some_and(|k| unknown.contains(&k))
            {
                continue;
            }
            let mut r = intent.clone();
            r.n = 0;
            r.time = crate::now().to_string();
            r.host = self.host.clone();
            if let Some(l) = held.get(&id) {
                r.step = Some(Step::Captured);
                r.locator = Some(l.locator.clone());
                r.size = l.size;
                r.detail = Some("settled after an interrupted capture: image kept".into());
                let r = self.record(r)?;
                if self.item(&id).is_err() {
                    let source = intent
                        .source
                        .as_deref()
                        .and_then(|s| Source::parse(intent.backend.as_deref()?, s))
                        .unwrap_or_else(|| Source::Path {
                            path: intent.source.clone().unwrap_or_default().into(),
                        });
                    let item = Item {
                        id: id.clone(),
                        vm_uuid: intent.vm_uuid.clone().unwrap_or_default(),
                        project: intent.project.clone(),
                        source,
                        backend: intent.backend.clone().unwrap_or_else(|| "file".into()),
                        locator: l.locator.clone(),
                        method: "settled".into(),
                        size: l.size.unwrap_or(0),
                        digests: None,
                        captured: crate::now(),
                        policy: intent.policy.clone().unwrap_or_default(),
                        keep_until: intent.keep_until.as_deref().and_then(|t| t.parse().ok()),
                        backing_of: intent.backing_of.clone(),
                        by: intent.by.clone().unwrap_or_default(),
                        reason: intent.reason.clone(),
                        custody: vec![intent.n, r.n],
                    };
                    self.save_item(&item)?;
                }
            } else {
                r.step = Some(Step::Failed);
                // What the backend may have left on the source (an RBD snapshot) goes.
                let undone = match (intent.backend.as_deref(), intent.source.as_deref()) {
                    (Some(kind), Some(src)) => match (self.backend(kind), Source::parse(kind, src))
                    {
                        (Ok(b), Some(source)) => b.abandon(&id, &source).err(),
                        _ => None,
                    },
                    _ => None,
                };
                r.detail = Some(match undone {
                    None => "interrupted capture: nothing kept, source untouched".into(),
                    Some(e) => format!(
                        "interrupted capture: nothing kept, source untouched (left over on it, not removed: {e})"
                    ),
                });
                self.record(r)?;
            }
        }
        Ok(())
    }
}

/// Which policy entry `policy set` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyScope {
    /// The site default.
    Site,
    /// A project / VO.
    Project(String),
    /// A VM.
    Vm(String),
}

/// Write a file (0600) atomically: temp, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })()
    .map_err(ioe(format!("write {}", path.display())))
}

/// The machine's host name (for custody records).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Send a custody record to the local syslog socket (`/dev/log`, RFC 3164 as glibc does).
fn send_syslog(r: &Record, socket: &Path) -> io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let msg = format!("<110>{}: {}", crate::custody::APP, r.syslog_message());
    sock.send_to(msg.as_bytes(), socket)?;
    Ok(())
}

/// `SignedDuration` helper for callers: now + d.
pub fn after(now: Timestamp, d: SignedDuration) -> Option<Timestamp> {
    now.checked_add(d).ok()
}
