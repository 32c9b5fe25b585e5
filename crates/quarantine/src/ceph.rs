//! The Ceph RBD backend: VM disks of OpenStack (nova) and OpenNebula on Ceph, kept with RBD's
//! own O(1) operations through crate `rbd` (the real `rbd`/`ceph` CLIs).
//!
//! How an image is kept (docs/QUARANTINE.md, "Ceph RBD", for the site's side):
//! - **Take** (the VM is being deleted): snapshot `pugmark-<item>` on the source image,
//!   protect it, clone it into the evidence pool as `EVIDENCE/pugmark-<item>`, tag the clone
//!   (`image-meta pugmark.custody`), then `rbd trash mv` the source with `--expires-at` no
//!   earlier than the policy's keep-until (plus [`CephConfig::deferment_margin_secs`]). Five
//!   CLI calls, each O(1) whatever the image's size. The deleter (nova, OpenNebula) then
//!   finds no image and carries on; the source sits in the trash, pinned by the clone (a
//!   parent with a protected, cloned snapshot cannot be removed, even with `--force`).
//! - **Adoption**: when the deletion came first — a site with `rbd_move_to_trash_on_remove`
//!   makes nova's and OpenNebula's `rbd rm` a trash move — the image is not in the pool but in
//!   its trash: exactly one `USER` entry of that name, without a `pugmark-` snapshot yet, is
//!   restored under its name and taken as above. Several candidates: refused (never a guess).
//!   A `REMOVING` entry is a removal already under way: refused.
//! - **Copy** (a hold on a live VM): snapshot, protect, clone as above; then, with
//!   [`CephConfig::flatten_copies`] (default), the clone is flattened and the snapshot removed,
//!   so the live image carries nothing of ours (a snapshot would make a later plain `rbd rm`
//!   fail with "image has snapshots").
//!
//! Locator (opaque to the core): `EVIDENCE/pugmark-<item>` followed, while the evidence still
//! depends on the source, by ` from [trash:]POOL[/NS]/IMAGE_ID@SNAP` (`trash:` when pugmark
//! moved the source to the trash and must destroy it at purge). Every purge step tolerates a
//! step already done, so an interrupted purge is finished by the next.
//!
//! Read, export, verify: `rbd export EVIDENCE/pugmark-<item> -` streamed (the clone reads
//! through its parent, in the trash or not). Restore: `rbd deep cp --flatten` of the evidence
//! to the target (which must not exist); the kept image stays. A cluster that does not answer
//! is retried with backoff ([`rbd::Retry`]), counted ([`CephBackend::stats`], for
//! `/metrics`), and reported as [`BackendError::Unavailable`] — a capture that did not happen
//! is never reported as kept.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rbd::{ImageSpec, PoolSpec, Rbd, RbdError, Retry};
use serde::{Deserialize, Serialize};

use crate::backend::{
    Backend, BackendError, CaptureMode, CaptureRequest, Health, ImageRef, Kept, Listed, Source,
};

/// The image-meta key on each evidence image: JSON with the item id, VM, source and locator,
/// so [`Backend::list`] can tell what each evidence image is after a crash.
pub const META_KEY: &str = "pugmark.custody";
/// Prefix of the snapshots and evidence images pugmark makes.
pub const PREFIX: &str = "pugmark-";

/// `[rbd]` in quarantine.toml: where the cluster is and how images are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CephConfig {
    /// The site's ceph.conf (default `/etc/ceph/ceph.conf`); the keyring is found through it.
    #[serde(default = "default_conf")]
    pub conf: PathBuf,
    /// The cephx user, `client.<id>` (default `pugmark`; its caps: docs/QUARANTINE.md).
    #[serde(default = "default_id")]
    pub id: String,
    /// The pool evidence clones go to (default `pugmark-evidence`): a pool the cloud's own
    /// users (`client.nova`, `client.libvirt`) have no caps on.
    #[serde(default = "default_evidence")]
    pub evidence_pool: String,
    /// Seconds added to the policy's keep-until for the source's trash deferment (default
    /// 86400): a safety net longer than the policy, never the policy itself.
    #[serde(default = "default_margin")]
    pub deferment_margin_secs: u64,
    /// Trash deferment when the policy has no end (held): default 10 years.
    #[serde(default = "default_held")]
    pub held_deferment_secs: u64,
    /// Flatten the evidence clone of a Copy capture and drop the snapshot from the live image
    /// (default true; O(data), see BENCHMARKS.md).
    #[serde(default = "default_true")]
    pub flatten_copies: bool,
    /// Deadline of one CLI call in seconds (also its mount and op timeouts; default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts when the cluster does not answer (default 4: waits of 1, 2, 4 s).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_conf() -> PathBuf {
    PathBuf::from("/etc/ceph/ceph.conf")
}
fn default_id() -> String {
    "pugmark".into()
}
fn default_evidence() -> String {
    "pugmark-evidence".into()
}
fn default_margin() -> u64 {
    86_400
}
fn default_held() -> u64 {
    10 * 365 * 86_400
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    30
}
fn default_attempts() -> u32 {
    4
}

impl Default for CephConfig {
    fn default() -> Self {
        CephConfig {
            conf: default_conf(),
            id: default_id(),
            evidence_pool: default_evidence(),
            deferment_margin_secs: default_margin(),
            held_deferment_secs: default_held(),
            flatten_copies: true,
            timeout_secs: default_timeout(),
            attempts: default_attempts(),
        }
    }
}

/// Counters for `/metrics` and `status`: how often the cluster did not answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CephStats {
    /// Calls that failed because the cluster did not answer (each attempt counts).
    pub unavailable_total: u64,
    /// Operations that gave up after every attempt.
    pub gave_up_total: u64,
    /// The last such error, one line.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<Timestamp>,
}

/// What the evidence image's `pugmark.custody` key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tag {
    id: String,
    vm: String,
    source: String,
    locator: String,
}

/// A parsed locator.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Locator {
    evidence: ImageSpec,
    parent: Option<ParentRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ParentRef {
    pool: PoolSpec,
    image_id: String,
    snap: String,
    trashed_by_us: bool,
}

impl Locator {
    fn parse(s: &str) -> Result<Locator, BackendError> {
        let bad = || BackendError::Refused(format!("not an rbd locator: {s:?}"));
        let (ev, from) = match s.split_once(" from ") {
            Some((e, f)) => (e, Some(f)),
            None => (s, None),
        };
        let evidence = ImageSpec::parse(ev).map_err(|_| bad())?;
        let parent = match from {
            None => None,
            Some(f) => {
                let (trashed_by_us, f) = match f.strip_prefix("trash:") {
                    Some(rest) => (true, rest),
                    None => (false, f),
                };
                let (img, snap) = f.split_once('@').ok_or_else(bad)?;
                let spec = ImageSpec::parse(img).map_err(|_| bad())?;
                rbd::spec::check_name("snapshot", snap).map_err(|_| bad())?;
                Some(ParentRef {
                    pool: spec.pool_spec(),
                    image_id: spec.image,
                    snap: snap.to_string(),
                    trashed_by_us,
                })
            }
        };
        Ok(Locator { evidence, parent })
    }

    fn render(&self) -> String {
        match &self.parent {
            None => self.evidence.to_string(),
            Some(p) => format!(
                "{} from {}{}/{}@{}",
                self.evidence,
                if p.trashed_by_us { "trash:" } else { "" },
                p.pool,
                p.image_id,
                p.snap
            ),
        }
    }
}

/// The Ceph RBD backend (kind `rbd`).
pub struct CephBackend {
    rbd: Rbd,
    config: CephConfig,
    retry: Retry,
    stats: Mutex<CephStats>,
}

impl CephBackend {
    /// A backend for the cluster and pools `config` names. Makes no call yet.
    pub fn new(config: CephConfig) -> Result<CephBackend, BackendError> {
        rbd::spec::check_name("pool", &config.evidence_pool)
            .map_err(|e| BackendError::Refused(e.to_string()))?;
        let rbd = Rbd::new(&config.conf, &config.id)
            .with_timeout(Duration::from_secs(config.timeout_secs.max(1)));
        Ok(CephBackend {
            rbd,
            retry: Retry {
                attempts: config.attempts.max(1),
                ..Retry::default()
            },
            config,
            stats: Mutex::new(CephStats::default()),
        })
    }

    /// Use another retry policy (tests shorten the waits).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The `rbd` handle (same conf, user and deadlines).
    pub fn rbd(&self) -> &Rbd {
        &self.rbd
    }

    /// How often the cluster did not answer (for `/metrics` and `status`).
    pub fn stats(&self) -> CephStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// One health question with one attempt and `deadline` (a monitor that polls must not
    /// wait out the retries of a capture); a failure is counted like the others.
    pub fn probe(&self, deadline: Duration) -> Health {
        let rbd = self.rbd.clone().with_timeout(deadline);
        let once = CephBackend {
            rbd,
            config: self.config.clone(),
            retry: Retry::once(),
            stats: Mutex::new(CephStats::default()),
        };
        let h = once.health();
        let s = once.stats();
        if s.unavailable_total > 0
            && let Ok(mut mine) = self.stats.lock()
        {
            mine.unavailable_total += s.unavailable_total;
            mine.last_error = s.last_error;
            mine.last_error_at = s.last_error_at;
        }
        h
    }

    /// One CLI operation with retry; every unavailable attempt is counted.
    fn call<T>(&self, f: impl FnMut() -> Result<T, RbdError>) -> Result<T, RbdError> {
        let r = self.retry.run(f);
        let gave_up = r.result.as_ref().err().filter(|e| e.is_unavailable());
        if (!r.failures.is_empty() || gave_up.is_some())
            && let Ok(mut s) = self.stats.lock()
        {
            s.unavailable_total += r.failures.len() as u64 + u64::from(gave_up.is_some());
            if let Some(e) = gave_up.or(r.failures.last()) {
                s.last_error = Some(e.to_string());
                s.last_error_at = Some(crate::now());
            }
            if gave_up.is_some() {
                s.gave_up_total += 1;
            }
        }
        r.result
    }

    fn evidence_spec(&self, id: &str) -> Result<ImageSpec, BackendError> {
        ImageSpec::new(&self.config.evidence_pool, None, format!("{PREFIX}{id}")).map_err(refused)
    }

    fn deferment(&self, keep_until: Option<Timestamp>) -> Option<Timestamp> {
        let now = crate::now();
        let base = keep_until.unwrap_or_else(|| {
            now.checked_add(secs(self.config.held_deferment_secs))
                .unwrap_or(now)
        });
        base.checked_add(secs(self.config.deferment_margin_secs))
            .ok()
    }

    /// Find the one trash entry a deletion left for `src` (see the module docs), restore it
    /// under its name and return its info; or say why not.
    fn adopt(&self, src: &ImageSpec) -> Result<rbd::ImageInfo, BackendError> {
        let pool = src.pool_spec();
        let entries = self.call(|| self.rbd.trash_list(&pool)).map_err(backend)?;
        let named: Vec<_> = entries.iter().filter(|e| e.name == src.image).collect();
        if named.iter().any(|e| e.source == "REMOVING") {
            return Err(BackendError::Refused(format!(
                "{src}: a removal is already under way (trash source REMOVING): set \
                 rbd_move_to_trash_on_remove for the cloud's client (docs/QUARANTINE.md)"
            )));
        }
        let mut candidates = Vec::new();
        for e in named.into_iter().filter(|e| e.source == "USER") {
            let snaps = self
                .call(|| self.rbd.snap_list_by_id(&pool, &e.id))
                .map_err(backend)?;
            if !snaps.iter().any(|s| s.name.starts_with(PREFIX)) {
                candidates.push(e);
            }
        }
        match candidates.as_slice() {
            [] => Err(BackendError::Refused(format!(
                "{src}: no such image, and nothing of that name in the trash to keep"
            ))),
            [one] => {
                self.call(|| self.rbd.trash_restore(&pool, &one.id, None))
                    .map_err(|e| match e {
                        RbdError::Exists { .. } => BackendError::Refused(format!(
                            "{src}: a new image has the deleted one's name; trash id {} left \
                             where it is",
                            one.id
                        )),
                        e => backend(e),
                    })?;
                self.call(|| self.rbd.info(src)).map_err(backend)
            }
            many => Err(BackendError::Refused(format!(
                "{src}: {} trash entries of that name ({}): not guessing which",
                many.len(),
                many.iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The locator of an evidence image without its tag, from `rbd info`'s parent.
    fn untagged_locator(&self, spec: &ImageSpec) -> Result<String, BackendError> {
        let info = self.call(|| self.rbd.info(spec)).map_err(backend)?;
        let parent = match info.parent {
            Some(p) if p.snapshot.starts_with(PREFIX) => {
                let ns = (!p.pool_namespace.is_empty()).then_some(p.pool_namespace.clone());
                Some(ParentRef {
                    pool: PoolSpec::new(&p.pool, ns).map_err(refused)?,
                    image_id: p.id,
                    snap: p.snapshot,
                    trashed_by_us: p.trash,
                })
            }
            _ => None,
        };
        Ok(Locator {
            evidence: spec.clone(),
            parent,
        }
        .render())
    }

    /// Undo the snapshot (and clone) of a capture that failed half-way: best effort, the
    /// source is left as it was found.
    fn undo(&self, src_pool: &PoolSpec, src_id: &str, snap: &str, clone: Option<&ImageSpec>) {
        if let Some(c) = clone {
            let _ = self.call(|| self.rbd.destroy(c));
        }
        let _ = self.call(|| self.rbd.snap_unprotect_by_id(src_pool, src_id, snap));
        let _ = self.call(|| self.rbd.snap_remove_by_id(src_pool, src_id, snap));
    }
}

impl Backend for CephBackend {
    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn capture(&self, req: &CaptureRequest) -> Result<Kept, BackendError> {
        let Source::Rbd {
            pool,
            namespace,
            image,
            snapshot,
        } = &req.source
        else {
            return Err(BackendError::Refused(format!(
                "not an rbd source: {}",
                req.source
            )));
        };
        if snapshot.is_some() {
            return Err(BackendError::Refused(format!(
                "{}: name the image, not a snapshot",
                req.source
            )));
        }
        let src = ImageSpec::new(pool, namespace.clone(), image).map_err(refused)?;
        let src_pool = src.pool_spec();
        let evidence = self.evidence_spec(&req.id)?;
        let snap = format!("{PREFIX}{}", req.id);
        // `info` (id and size) and `snap create` are independent: run them side by side (each
        // is a process start plus a round trip; the capture is a handful of them).
        let (info, snapped) = std::thread::scope(|s| {
            let snapped = s.spawn(|| self.call(|| self.rbd.snap_create(&src, &snap)));
            let info = self.call(|| self.rbd.info(&src));
            (info, snapped.join())
        });
        let snapped = snapped.unwrap_or_else(|_| {
            Err(RbdError::io(
                "snap create",
                std::io::Error::other("thread panicked"),
            ))
        });
        let info = match (info, snapped) {
            (Ok(i), Ok(())) => i,
            (Ok(i), Err(e)) => {
                // The snapshot may exist if only the answer was lost: undo is idempotent.
                self.undo(&src_pool, &i.id, &snap, None);
                return Err(backend(e));
            }
            (Err(RbdError::ImageMissing { .. }), _) if req.mode == CaptureMode::Take => {
                let i = self.adopt(&src)?;
                self.call(|| self.rbd.snap_create(&src, &snap))
                    .map_err(backend)?;
                i
            }
            (Err(RbdError::ImageMissing { .. }), _) => {
                return Err(BackendError::Refused(format!("{src}: no such image")));
            }
            (Err(e), Ok(())) => {
                // Snapshotted but the id is unknown: remove the snapshot by name.
                let _ = self.call(|| self.rbd.snap_remove(&src, &snap));
                return Err(backend(e));
            }
            (Err(e), Err(_)) => return Err(backend(e)),
        };
        if let Err(e) = self.call(|| self.rbd.snap_protect(&src, &snap)) {
            self.undo(&src_pool, &info.id, &snap, None);
            return Err(backend(e));
        }
        // A clone that exists already is another capture's (ids are unique): refuse.
        if let Err(e) = self.call(|| self.rbd.clone_image(&src, &snap, &evidence)) {
            self.undo(&src_pool, &info.id, &snap, None);
            return Err(backend(e));
        }
        let mut loc = Locator {
            evidence: evidence.clone(),
            parent: Some(ParentRef {
                pool: src_pool.clone(),
                image_id: info.id.clone(),
                snap: snap.clone(),
                trashed_by_us: req.mode == CaptureMode::Take,
            }),
        };
        let mut method = "clone";
        if req.mode == CaptureMode::Copy && self.config.flatten_copies {
            if let Err(e) = self.call(|| self.rbd.flatten(&evidence)) {
                self.undo(&src_pool, &info.id, &snap, Some(&evidence));
                return Err(backend(e));
            }
            // The copy stands alone: the live image keeps nothing of ours.
            self.undo(&src_pool, &info.id, &snap, None);
            loc.parent = None;
            method = "copy";
        }
        let tag = Tag {
            id: req.id.clone(),
            vm: req.vm_uuid.clone(),
            source: req.source.to_string(),
            locator: loc.render(),
        };
        let tag_json =
            serde_json::to_string(&tag).map_err(|e| BackendError::Refused(e.to_string()))?;
        // Tag the evidence and move the source out of the deleter's way side by side.
        let take = req.mode == CaptureMode::Take;
        let until = self.deferment(req.keep_until);
        let (tagged, trashed) = std::thread::scope(|s| {
            let trashed =
                take.then(|| s.spawn(|| self.call(|| self.rbd.trash_move_known(&src, until))));
            let tagged = self.call(|| self.rbd.meta_set(&evidence, META_KEY, &tag_json));
            (tagged, trashed.map(|h| h.join()))
        });
        let trashed = trashed.map(|r| {
            r.unwrap_or_else(|_| {
                Err(RbdError::io(
                    "trash mv",
                    std::io::Error::other("thread panicked"),
                ))
            })
        });
        if let Err(e) = tagged {
            if matches!(trashed, Some(Ok(()))) {
                // Put the source back where the deleter expects it: the capture did not happen.
                let _ = self.call(|| self.rbd.trash_restore(&src_pool, &info.id, None));
            }
            self.undo(&src_pool, &info.id, &snap, Some(&evidence));
            return Err(backend(e));
        }
        match trashed {
            Some(Ok(())) => method = "trash",
            Some(Err(e)) => {
                // The evidence is kept; only the source is still in the deleter's way.
                // Report what really happened: a clone, the source untouched.
                if let Some(p) = loc.parent.as_mut() {
                    p.trashed_by_us = false;
                }
                let tag = Tag {
                    locator: loc.render(),
                    ..tag
                };
                if let Ok(j) = serde_json::to_string(&tag) {
                    let _ = self.call(|| self.rbd.meta_set(&evidence, META_KEY, &j));
                }
                if let Ok(mut s) = self.stats.lock() {
                    s.last_error = Some(format!("trash mv {src}: {e}"));
                    s.last_error_at = Some(crate::now());
                }
            }
            None => {}
        }
        Ok(Kept {
            locator: loc.render(),
            size: info.size,
            method: method.into(),
            digests: None,
        })
    }

    fn hold(&self, image: &ImageRef, _until: Option<Timestamp>) -> Result<(), BackendError> {
        // The evidence image lives in a pool nothing else deletes from, and a trashed source
        // with a cloned, protected snapshot cannot be removed (not even `trash rm --force`,
        // tested): nothing in Ceph has to move. Check the evidence is still there.
        let loc = Locator::parse(&image.locator)?;
        self.call(|| self.rbd.info(&loc.evidence))
            .map(drop)
            .map_err(|e| not_found_or(e, &image.locator))
    }

    fn open(&self, image: &ImageRef) -> Result<Box<dyn Read + Send>, BackendError> {
        let loc = Locator::parse(&image.locator)?;
        // Fail early (and typed) when the evidence is gone or the cluster down; the stream
        // itself reports a failed or short export at its end.
        let info = self
            .call(|| self.rbd.info(&loc.evidence))
            .map_err(|e| not_found_or(e, &image.locator))?;
        let stream = self
            .rbd
            .export(&loc.evidence, None, Some(info.size))
            .map_err(backend)?;
        Ok(Box::new(stream))
    }

    fn restore(&self, image: &ImageRef, to: &Source) -> Result<(), BackendError> {
        let loc = Locator::parse(&image.locator)?;
        let Source::Rbd {
            pool,
            namespace,
            image: name,
            snapshot: None,
        } = to
        else {
            return Err(BackendError::Refused(format!(
                "restore an rbd image to an rbd image, not {to}"
            )));
        };
        let dst = ImageSpec::new(pool, namespace.clone(), name).map_err(refused)?;
        match self.call(|| self.rbd.info(&dst)) {
            Ok(_) => {
                return Err(BackendError::Refused(format!(
                    "{dst} exists: restore never overwrites"
                )));
            }
            Err(RbdError::ImageMissing { .. }) => {}
            Err(e) => return Err(backend(e)),
        }
        self.call(|| self.rbd.deep_copy(&loc.evidence, None, &dst, true))
            .map_err(|e| match e {
                RbdError::Exists { spec } => {
                    BackendError::Refused(format!("{spec} exists: restore never overwrites"))
                }
                e => backend(e),
            })
    }

    fn purge(&self, image: &ImageRef) -> Result<(), BackendError> {
        let loc = Locator::parse(&image.locator)?;
        let mut gone = false;
        match self.call(|| self.rbd.destroy(&loc.evidence)) {
            Ok(()) => {}
            Err(RbdError::ImageMissing { .. }) => gone = true,
            Err(e) => return Err(backend(e)),
        }
        if let Some(p) = &loc.parent {
            let tolerate = |r: Result<(), RbdError>| match r {
                Ok(()) | Err(RbdError::ImageMissing { .. }) => Ok(()),
                // Unprotecting a snapshot that is not protected (a second run): EINVAL.
                Err(RbdError::Failed { ref stderr, .. }) if stderr.contains("not protected") => {
                    Ok(())
                }
                Err(e) => Err(backend(e)),
            };
            tolerate(self.call(|| self.rbd.snap_unprotect_by_id(&p.pool, &p.image_id, &p.snap)))?;
            tolerate(self.call(|| self.rbd.snap_remove_by_id(&p.pool, &p.image_id, &p.snap)))?;
            if p.trashed_by_us {
                // The VM's own disk, which its deletion meant to destroy: now it may go.
                match self.call(|| self.rbd.trash_remove(&p.pool, &p.image_id, true)) {
                    Ok(()) | Err(RbdError::ImageMissing { .. }) => {}
                    Err(e) => return Err(backend(e)),
                }
            }
        }
        if gone && loc.parent.is_none() {
            return Err(BackendError::NotFound(image.locator.clone()));
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<Listed>, BackendError> {
        let pool = PoolSpec::new(&self.config.evidence_pool, None).map_err(refused)?;
        let rows = self.call(|| self.rbd.list(&pool)).map_err(backend)?;
        let mut out = Vec::new();
        for row in rows.into_iter().filter(|r| r.snapshot.is_none()) {
            let Some(id) = row.image.strip_prefix(PREFIX) else {
                continue;
            };
            let spec = pool.image(&row.image).map_err(refused)?;
            let tag = self
                .call(|| self.rbd.meta_get(&spec, META_KEY))
                .map_err(backend)?
                .and_then(|j| serde_json::from_str::<Tag>(&j).ok());
            let locator = match tag {
                Some(t) => t.locator,
                // A capture killed before its tag: the clone's parent says which source it
                // pins (and whether that source is in the trash, to be destroyed at purge).
                None => self.untagged_locator(&spec)?,
            };
            out.push(Listed {
                locator,
                id: Some(id.to_string()),
                size: Some(row.size),
            });
        }
        Ok(out)
    }

    fn interrupted(&self, id: &str) {
        // Every call of a capture names its snapshot (`vms/img@pugmark-q-ID`) or its evidence
        // image (named after the snapshot).
        // Waited for as long as a call of ours may take.
        self.rbd.wait_strays(
            &format!("{PREFIX}{id}"),
            self.rbd.timeout() + Duration::from_secs(15),
        );
    }

    fn abandon(&self, id: &str, source: &Source) -> Result<(), BackendError> {
        let Source::Rbd {
            pool,
            namespace,
            image,
            snapshot: None,
        } = source
        else {
            return Ok(());
        };
        let src = ImageSpec::new(pool, namespace.clone(), image).map_err(refused)?;
        let snap = format!("{PREFIX}{id}");
        let info = match self.call(|| self.rbd.info(&src)) {
            Ok(i) => i,
            // Gone from the pool: nothing of this capture can be on it.
            Err(RbdError::ImageMissing { .. }) => return Ok(()),
            Err(e) => return Err(backend(e)),
        };
        // The interrupted capture's calls were waited for (`interrupted`), but a request one sent
        // just before it died may still land (a protect after our unprotect): undo until the
        // snapshot is seen gone.
        for attempt in 0..10 {
            let snaps = self.call(|| self.rbd.snap_list(&src)).map_err(backend)?;
            if !snaps.iter().any(|s| s.name == snap) {
                return Ok(());
            }
            if attempt > 0 {
                // Still there after an undo: let the late request land first.
                std::thread::sleep(Duration::from_millis(200));
            }
            self.undo(&src.pool_spec(), &info.id, &snap, None);
        }
        Err(BackendError::Unavailable(format!(
            "{src}@{snap}: still there after ten removals"
        )))
    }

    fn health(&self) -> Health {
        match self.call(|| self.rbd.health()) {
            Ok(h) => {
                let mut detail = h.status.clone();
                for (name, msg) in &h.checks {
                    detail.push_str(&format!("; {name}: {msg}"));
                }
                Health {
                    up: true,
                    detail,
                    free_bytes: self
                        .rbd
                        .pool_free(&self.config.evidence_pool)
                        .ok()
                        .flatten(),
                }
            }
            Err(e) => Health {
                up: false,
                detail: e.to_string(),
                free_bytes: None,
            },
        }
    }
}

/// The backends a config asks for beyond the file backend (what the binary passes to
/// [`crate::Quarantine::open`]): the RBD backend when `[rbd]` is present.
pub fn backends(config: &crate::policy::Config) -> Result<Vec<Box<dyn Backend>>, BackendError> {
    let mut out: Vec<Box<dyn Backend>> = Vec::new();
    if let Some(c) = &config.rbd {
        out.push(Box::new(CephBackend::new(c.clone())?));
    }
    Ok(out)
}

fn secs(s: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX))
}

fn refused(e: RbdError) -> BackendError {
    BackendError::Refused(e.to_string())
}

fn not_found_or(e: RbdError, locator: &str) -> BackendError {
    match e {
        RbdError::ImageMissing { .. } | RbdError::PoolMissing { .. } => {
            BackendError::NotFound(locator.to_string())
        }
        e => backend(e),
    }
}

/// An `rbd` error as the core sees it.
pub fn backend(e: RbdError) -> BackendError {
    match e {
        e @ (RbdError::ClusterDown { .. } | RbdError::Timeout { .. }) => {
            BackendError::Unavailable(e.to_string())
        }
        e @ (RbdError::ImageMissing { .. } | RbdError::PoolMissing { .. }) => {
            BackendError::NotFound(e.to_string())
        }
        RbdError::NoSpace { detail } => {
            // The CLI does not say how much; the core records the message.
            let _ = detail;
            BackendError::NoSpace { needed: 0, free: 0 }
        }
        e @ (RbdError::InvalidName { .. } | RbdError::Exists { .. }) => {
            BackendError::Refused(e.to_string())
        }
        RbdError::Io { what, source } => BackendError::Io { what, source },
        RbdError::Failed {
            program,
            command,
            status,
            stderr,
        } => BackendError::Tool {
            program: format!("{program} {command}"),
            status,
            stderr,
        },
        e @ (RbdError::Busy { .. } | RbdError::Denied { .. } | RbdError::BadOutput { .. }) => {
            BackendError::Tool {
                program: "rbd".into(),
                status: "error".into(),
                stderr: e.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip_and_refuse_garbage() {
        for s in [
            "pugmark-evidence/pugmark-q-1",
            "pugmark-evidence/pugmark-q-1 from trash:vms/10279e55dc73@pugmark-q-1",
            "ev/pugmark-q-2 from one/ns/abc@pugmark-q-2",
        ] {
            let l = Locator::parse(s).expect(s);
            assert_eq!(l.render(), s);
        }
        let l = Locator::parse("ev/x from trash:vms/id1@s").expect("parses");
        assert!(
            l.parent
                .is_some_and(|p| p.trashed_by_us && p.image_id == "id1")
        );
        for bad in [
            "",
            "x",
            "ev/x from vms/id",
            "ev/x from vms/id@-s",
            "a/b/c/d",
        ] {
            assert!(Locator::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: CephConfig = toml::from_str("conf = \"/etc/ceph/ceph.conf\"").expect("parses");
        assert_eq!(c, CephConfig::default());
        assert!(toml::from_str::<CephConfig>("evidence = \"x\"").is_err());
    }

    #[test]
    fn cluster_down_is_unavailable_and_retryable() {
        let e = backend(RbdError::ClusterDown {
            program: "rbd".into(),
            detail: "couldn't connect to the cluster!".into(),
        });
        assert!(matches!(e, BackendError::Unavailable(_)) && e.retryable());
        let e = backend(RbdError::ImageMissing {
            spec: "vms/x".into(),
        });
        assert!(matches!(e, BackendError::NotFound(_)) && !e.retryable());
    }
}
