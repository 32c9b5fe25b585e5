//! [`Rbd`]: one handle on a cluster, running the `rbd` and `ceph` programs for each operation.
//!
//! Every call is `rbd -c CONF --id ID <timeouts> <command> … --format json` (or `ceph …`),
//! with no shell, no inherited `CEPH_ARGS`, standard input closed and `TZ=UTC` (the CLIs print
//! local ctime strings). Three deadlines bound a call against a cluster that does not answer:
//! `client_mount_timeout` (finding a monitor), `rados_mon_op_timeout` and
//! `rados_osd_op_timeout` (each operation, so a streaming export whose OSD goes away fails
//! instead of hanging), and a wall-clock deadline after which the child is killed
//! ([`RbdError::Timeout`]). Failures become typed errors (`error::classify`).
//!
//! What this module deliberately does not do: decide what to keep (crate `quarantine`), retry
//! (the caller's [`crate::Retry`] does, for [`RbdError::is_unavailable`] errors only), or read
//! a whole image into memory ([`Rbd::export`] is a stream).

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use crate::error::{RbdError, classify, stderr_tail};
use crate::json::{self, Health, ImageInfo, ListEntry, SnapEntry, TrashEntry};
use crate::spec::{ImageSpec, PoolSpec, check_name};
use jiff::Timestamp;

/// Default deadline of one non-streaming call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle on one cluster as one cephx user. Cheap to clone; holds no connection (each call
/// is its own process, so a wedged call never poisons the next).
#[derive(Clone, Debug)]
pub struct Rbd {
    conf: PathBuf,
    id: String,
    timeout: Duration,
    rbd: PathBuf,
    ceph: PathBuf,
    options: Vec<(String, String)>,
}

impl Rbd {
    /// A handle using `conf` (the site's ceph.conf, or a test cluster's) as user `client.ID`
    /// (`--id ID`: its keyring is found through the conf, as for any Ceph client).
    pub fn new(conf: impl Into<PathBuf>, id: impl Into<String>) -> Self {
        Rbd {
            conf: conf.into(),
            id: id.into(),
            timeout: DEFAULT_TIMEOUT,
            rbd: PathBuf::from("rbd"),
            ceph: PathBuf::from("ceph"),
            options: Vec::new(),
        }
    }

    /// Set the per-call deadline (also the mount and per-operation timeouts).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// Use other `rbd` / `ceph` programs (default: found on `PATH`).
    pub fn with_programs(mut self, rbd: impl Into<PathBuf>, ceph: impl Into<PathBuf>) -> Self {
        self.rbd = rbd.into();
        self.ceph = ceph.into();
        self
    }

    /// Pass a client option on every call (`--KEY=VALUE`), e.g. what a nova client would run
    /// with (`rbd_move_to_trash_on_remove`).
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    /// The conf this handle uses.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The cephx id (`client.ID`) this handle uses.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn command(&self, program: &Path) -> Command {
        let secs = self.timeout.as_secs().max(1).to_string();
        let mut cmd = Command::new(program);
        cmd.arg("-c")
            .arg(&self.conf)
            .arg("--id")
            .arg(&self.id)
            .arg(format!("--client_mount_timeout={secs}"))
            .arg(format!("--rados_mon_op_timeout={secs}"))
            .arg(format!("--rados_osd_op_timeout={secs}"));
        for (k, v) in &self.options {
            cmd.arg(format!("--{k}={v}"));
        }
        cmd.env_remove("CEPH_ARGS")
            .env_remove("CEPH_CONF")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run `program args…` to completion within the deadline; stdout on success.
    fn run(
        &self,
        program: &Path,
        command: &str,
        args: &[OsString],
        spec: &str,
        pool: &str,
    ) -> Result<Vec<u8>, RbdError> {
        let name = program_name(program);
        let mut cmd = self.command(program);
        cmd.args(args);
        let mut child = cmd
            .spawn()
            .map_err(|e| RbdError::io(format!("run {name} {command}"), e))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        // The CLIs' own timeouts fire first; this deadline is for a tool wedged elsewhere.
        let deadline = self.timeout + Duration::from_secs(15);
        let status = match wait_until(&mut child, deadline) {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(RbdError::Timeout {
                    program: name,
                    command: command.into(),
                    after: deadline,
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RbdError::io(format!("wait for {name} {command}"), e));
            }
        };
        let stdout = join(out);
        let stderr = join(err);
        if status.success() {
            Ok(stdout)
        } else {
            Err(classify(&name, command, spec, pool, status.code(), &stderr))
        }
    }

    fn rbd(
        &self,
        command: &str,
        args: Vec<OsString>,
        spec: &str,
        pool: &str,
    ) -> Result<Vec<u8>, RbdError> {
        self.run(&self.rbd, command, &args, spec, pool)
    }

    fn parse<T>(
        &self,
        command: &str,
        bytes: &[u8],
        f: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, RbdError> {
        f(bytes).map_err(|detail| RbdError::BadOutput {
            program: "rbd".into(),
            command: command.into(),
            detail,
        })
    }

    /// Waits for this host's `rbd` calls that name `word` (a snapshot name) and whose caller
    /// is gone: a killed caller does not take its calls with it, and one left running creates
    /// or protects the snapshot after the caller's successor has settled the interrupted work.
    /// They are waited for, not killed: a client killed halfway through a clone leaves a
    /// half-made image. One still running after `grace` (a wedged tool) is killed. Calls of
    /// this process are left alone. Returns how many there were.
    pub fn wait_strays(&self, word: &str, grace: Duration) -> usize {
        let strays = self.strays(word);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline && strays.iter().any(|p| running(*p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut killed = false;
        for p in strays.iter().filter(|p| running(**p)) {
            killed |= rustix::process::kill_process(*p, rustix::process::Signal::KILL).is_ok();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while killed && std::time::Instant::now() < deadline && strays.iter().any(|p| running(*p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        strays.len()
    }

    /// The pids of this host's calls of this handle's `rbd` program with `word` in an argument
    /// whose parent is not this process.
    fn strays(&self, word: &str) -> Vec<rustix::process::Pid> {
        let me = rustix::process::getpid();
        let program = self.rbd.file_name().map(|n| n.to_os_string());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw)
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let mut args = cmdline.split(|b| *b == 0);
            let argv0 = args
                .next()
                .map(|a| Path::new(std::str::from_utf8(a).unwrap_or("")));
            if argv0.and_then(Path::file_name) != program.as_deref()
                || !args.any(|a| a.windows(word.len()).any(|w| w == word.as_bytes()))
            {
                continue;
            }
            // Field 4 of /proc/PID/stat, after the parenthesised command name.
            let ppid = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                });
            if ppid != Some(me.as_raw_nonzero().get()) && pid != me && running(pid) {
                out.push(pid);
            }
        }
        out
    }

    /// `rbd --version`: the client's Ceph version line.
    pub fn version(&self) -> Result<String, RbdError> {
        let out = Command::new(&self.rbd)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RbdError::io("run rbd --version", e))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `rbd create --size BYTES`: a new (sparse, format 2) image.
    pub fn create(&self, spec: &ImageSpec, size: u64) -> Result<(), RbdError> {
        let s = spec.to_string();
        self.rbd(
            "create",
            args(["create", "--size", &format!("{size}B"), &s]),
            &s,
            &spec.pool,
        )
        .map(drop)
    }

    /// `rbd info --format json`.
    pub fn info(&self, spec: &ImageSpec) -> Result<ImageInfo, RbdError> {
        let s = spec.to_string();
        let out = self.rbd(
            "info",
            args(["info", "--format", "json", &s]),
            &s,
            &spec.pool,
        )?;
        self.parse("info", &out, json::parse_info)
    }

    /// `rbd info --image-id ID`: an image by id, also while it is in the trash.
    pub fn info_by_id(&self, pool: &PoolSpec, id: &str) -> Result<ImageInfo, RbdError> {
        check_name("image id", id)?;
        let mut a = args(["info", "--format", "json", "--pool", &pool.pool]);
        push_ns(&mut a, pool);
        a.extend(args(["--image-id", id]));
        let out = self.rbd("info", a, &format!("{pool}/{id}"), &pool.pool)?;
        self.parse("info", &out, json::parse_info)
    }

    /// `rbd ls -l --format json`: images (and snapshot rows) of a pool.
    pub fn list(&self, pool: &PoolSpec) -> Result<Vec<ListEntry>, RbdError> {
        let p = pool.to_string();
        let out = self.rbd(
            "ls",
            args(["ls", "-l", "--format", "json", &p]),
            &p,
            &pool.pool,
        )?;
        self.parse("ls", &out, json::parse_list)
    }

    /// `rbd rm` that really destroys, whatever `rbd_move_to_trash_on_remove` says in the
    /// conf (pugmark's own purge of an evidence image).
    pub fn destroy(&self, spec: &ImageSpec) -> Result<(), RbdError> {
        let s = spec.to_string();
        self.run_long(
            "rm",
            args([
                "rm",
                "--no-progress",
                "--rbd_move_to_trash_on_remove=false",
                &s,
            ]),
            &s,
            &spec.pool,
        )
    }

    /// `rbd rm`: what nova and OpenNebula run to delete a disk. With the client option
    /// `rbd_move_to_trash_on_remove` (in the conf, the pool's config, or [`Rbd::with_option`])
    /// librbd moves the image to the trash instead.
    pub fn remove(&self, spec: &ImageSpec) -> Result<(), RbdError> {
        let s = spec.to_string();
        self.rbd("rm", args(["rm", "--no-progress", &s]), &s, &spec.pool)
            .map(drop)
    }

    /// `rbd snap create POOL/IMAGE@SNAP`.
    pub fn snap_create(&self, spec: &ImageSpec, snap: &str) -> Result<(), RbdError> {
        check_name("snapshot", snap)?;
        let s = spec.at(snap);
        self.rbd(
            "snap create",
            args(["snap", "create", "--no-progress", &s]),
            &s,
            &spec.pool,
        )
        .map(drop)
    }

    /// `rbd snap rm POOL/IMAGE@SNAP` (must not be protected).
    pub fn snap_remove(&self, spec: &ImageSpec, snap: &str) -> Result<(), RbdError> {
        check_name("snapshot", snap)?;
        let s = spec.at(snap);
        self.rbd(
            "snap rm",
            args(["snap", "rm", "--no-progress", &s]),
            &s,
            &spec.pool,
        )
        .map(drop)
    }

    /// `rbd snap protect` (clone v1 parents must be protected).
    pub fn snap_protect(&self, spec: &ImageSpec, snap: &str) -> Result<(), RbdError> {
        check_name("snapshot", snap)?;
        let s = spec.at(snap);
        self.rbd(
            "snap protect",
            args(["snap", "protect", &s]),
            &s,
            &spec.pool,
        )
        .map(drop)
    }

    /// `rbd snap unprotect` of an image by id (it may be in the trash).
    pub fn snap_unprotect_by_id(
        &self,
        pool: &PoolSpec,
        image_id: &str,
        snap: &str,
    ) -> Result<(), RbdError> {
        self.snap_by_id("snap unprotect", pool, image_id, snap)
    }

    /// `rbd snap rm` of an image by id (it may be in the trash).
    pub fn snap_remove_by_id(
        &self,
        pool: &PoolSpec,
        image_id: &str,
        snap: &str,
    ) -> Result<(), RbdError> {
        self.snap_by_id("snap rm", pool, image_id, snap)
    }

    fn snap_by_id(
        &self,
        command: &str,
        pool: &PoolSpec,
        image_id: &str,
        snap: &str,
    ) -> Result<(), RbdError> {
        check_name("image id", image_id)?;
        check_name("snapshot", snap)?;
        let mut a: Vec<OsString> = command.split(' ').map(OsString::from).collect();
        a.extend(args(["--pool", &pool.pool]));
        push_ns(&mut a, pool);
        a.extend(args(["--image-id", image_id, "--snap", snap]));
        if command == "snap rm" {
            a.push("--no-progress".into());
        }
        self.rbd(command, a, &format!("{pool}/{image_id}@{snap}"), &pool.pool)
            .map(drop)
    }

    /// `rbd snap ls --format json` of an image by id (it may be in the trash).
    pub fn snap_list_by_id(&self, pool: &PoolSpec, id: &str) -> Result<Vec<SnapEntry>, RbdError> {
        check_name("image id", id)?;
        let mut a = args(["snap", "ls", "--format", "json", "--pool", &pool.pool]);
        push_ns(&mut a, pool);
        a.extend(args(["--image-id", id]));
        let out = self.rbd("snap ls", a, &format!("{pool}/{id}"), &pool.pool)?;
        self.parse("snap ls", &out, json::parse_snaps)
    }

    /// `rbd snap ls --format json`.
    pub fn snap_list(&self, spec: &ImageSpec) -> Result<Vec<SnapEntry>, RbdError> {
        let s = spec.to_string();
        let out = self.rbd(
            "snap ls",
            args(["snap", "ls", "--format", "json", &s]),
            &s,
            &spec.pool,
        )?;
        self.parse("snap ls", &out, json::parse_snaps)
    }

    /// `rbd clone PARENT@SNAP CHILD`: an O(1) copy-on-write child (the parent's snapshot must
    /// be protected for clone format 1).
    pub fn clone_image(
        &self,
        parent: &ImageSpec,
        snap: &str,
        child: &ImageSpec,
    ) -> Result<(), RbdError> {
        check_name("snapshot", snap)?;
        let p = parent.at(snap);
        let c = child.to_string();
        self.rbd("clone", args(["clone", &p, &c]), &c, &child.pool)
            .map(drop)
    }

    /// `rbd flatten`: copy the parent's data into a clone so it stands alone (O(data)).
    pub fn flatten(&self, spec: &ImageSpec) -> Result<(), RbdError> {
        let s = spec.to_string();
        self.run_long(
            "flatten",
            args(["flatten", "--no-progress", &s]),
            &s,
            &spec.pool,
        )
    }

    /// `rbd deep cp SRC[@SNAP] DST [--flatten]`: a full copy with its own snapshots (O(data));
    /// `flatten` makes a copy of a clone stand alone.
    pub fn deep_copy(
        &self,
        src: &ImageSpec,
        snap: Option<&str>,
        dst: &ImageSpec,
        flatten: bool,
    ) -> Result<(), RbdError> {
        let s = match snap {
            Some(sn) => {
                check_name("snapshot", sn)?;
                src.at(sn)
            }
            None => src.to_string(),
        };
        let d = dst.to_string();
        let mut a = args(["deep", "cp", "--no-progress", &s, &d]);
        if flatten {
            a.push("--flatten".into());
        }
        self.run_long("deep cp", a, &d, &dst.pool)
    }

    /// A data-moving call (flatten, deep cp): no wall-clock deadline beyond the per-operation
    /// timeouts the CLI itself enforces (a 10 GiB copy legitimately takes minutes).
    fn run_long(
        &self,
        command: &str,
        a: Vec<OsString>,
        spec: &str,
        pool: &str,
    ) -> Result<(), RbdError> {
        // The op timeouts stay short: only the wall clock is lifted, to a day.
        let wall = Duration::from_secs(24 * 3600);
        let mut cmd = self.command(&self.rbd);
        cmd.args(&a);
        let name = program_name(&self.rbd);
        let mut child = cmd
            .spawn()
            .map_err(|e| RbdError::io(format!("run {name} {command}"), e))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = wait_until(&mut child, wall)
            .map_err(|e| RbdError::io(format!("wait for {name} {command}"), e))?;
        let Some(status) = status else {
            return Err(RbdError::Timeout {
                program: name,
                command: command.into(),
                after: wall,
            });
        };
        let _ = join(out);
        let stderr = join(err);
        if status.success() {
            Ok(())
        } else {
            Err(classify(&name, command, spec, pool, status.code(), &stderr))
        }
    }

    /// `rbd trash mv [--expires-at T]`: O(1); the image leaves the pool's directory and stays
    /// in its trash, protected from `trash rm` (without `--force`) and `trash purge` until T.
    /// Returns the image id (the trash entry's key), read before the move.
    pub fn trash_move(
        &self,
        spec: &ImageSpec,
        expires_at: Option<Timestamp>,
    ) -> Result<String, RbdError> {
        let id = self.info(spec)?.id;
        self.trash_move_known(spec, expires_at)?;
        Ok(id)
    }

    /// [`Rbd::trash_move`] when the caller already knows the image id (one call fewer).
    pub fn trash_move_known(
        &self,
        spec: &ImageSpec,
        expires_at: Option<Timestamp>,
    ) -> Result<(), RbdError> {
        let s = spec.to_string();
        let mut a = args(["trash", "mv", &s]);
        if let Some(t) = expires_at {
            // rbd parses this in the process's zone (TZ=UTC) and turns it into a delay from
            // its own clock, truncated to whole seconds: callers add a margin.
            a.extend(args([
                "--expires-at",
                &t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            ]));
        }
        self.rbd("trash mv", a, &s, &spec.pool).map(drop)
    }

    /// `rbd trash ls --long --format json` (every source: USER, MIRRORING, MIGRATION, REMOVING).
    pub fn trash_list(&self, pool: &PoolSpec) -> Result<Vec<TrashEntry>, RbdError> {
        let p = pool.to_string();
        let out = self.rbd(
            "trash ls",
            args(["trash", "ls", "--all", "--long", "--format", "json", &p]),
            &p,
            &pool.pool,
        )?;
        self.parse("trash ls", &out, json::parse_trash)
    }

    /// `rbd trash restore [--image NAME] POOL/ID`: back into the pool's directory, under its
    /// old name or `name`. Fails with [`RbdError::Exists`] rather than overwrite.
    pub fn trash_restore(
        &self,
        pool: &PoolSpec,
        id: &str,
        name: Option<&str>,
    ) -> Result<(), RbdError> {
        check_name("trash id", id)?;
        let mut a = args(["trash", "restore", "--pool", &pool.pool]);
        push_ns(&mut a, pool);
        if let Some(n) = name {
            check_name("image", n)?;
            a.extend(args(["--image", n]));
        }
        a.extend(args(["--image-id", id]));
        let spec = format!("{pool}/{}", name.unwrap_or(id));
        self.rbd("trash restore", a, &spec, &pool.pool).map(drop)
    }

    /// `rbd trash rm [--force] POOL/ID`: destroy a trashed image (`force` before its
    /// deferment ends).
    pub fn trash_remove(&self, pool: &PoolSpec, id: &str, force: bool) -> Result<(), RbdError> {
        check_name("trash id", id)?;
        let mut a = args(["trash", "rm", "--no-progress", "--pool", &pool.pool]);
        push_ns(&mut a, pool);
        a.extend(args(["--image-id", id]));
        if force {
            a.push("--force".into());
        }
        self.run_long("trash rm", a, &format!("{pool}/{id}"), &pool.pool)
    }

    /// `rbd trash purge POOL`: destroy every entry whose deferment has ended.
    pub fn trash_purge(&self, pool: &PoolSpec) -> Result<(), RbdError> {
        let p = pool.to_string();
        self.run_long(
            "trash purge",
            args(["trash", "purge", "--no-progress", &p]),
            &p,
            &pool.pool,
        )
    }

    /// `rbd image-meta set`: a key on the image (pugmark tags its evidence images with the
    /// quarantine id, VM and source so `list` can tell what each is after a crash).
    pub fn meta_set(&self, spec: &ImageSpec, key: &str, value: &str) -> Result<(), RbdError> {
        check_name("meta key", key)?;
        let s = spec.to_string();
        self.rbd(
            "image-meta set",
            args(["image-meta", "set", &s, key, value]),
            &s,
            &spec.pool,
        )
        .map(drop)
    }

    /// `rbd image-meta get`; None when the key is not set.
    pub fn meta_get(&self, spec: &ImageSpec, key: &str) -> Result<Option<String>, RbdError> {
        check_name("meta key", key)?;
        let s = spec.to_string();
        match self.rbd(
            "image-meta get",
            args(["image-meta", "get", &s, key]),
            &s,
            &spec.pool,
        ) {
            Ok(out) => Ok(Some(String::from_utf8_lossy(&out).trim_end().to_string())),
            // ENOENT for a missing key as for a missing image: tell them apart by asking again.
            Err(RbdError::ImageMissing { .. }) => self.info(spec).map(|_| None),
            Err(e) => Err(e),
        }
    }

    /// `rbd export SPEC -`: the image's bytes as a stream (never whole in memory). The stream
    /// reports a failed export (non-zero exit, fewer bytes than `expected_size`) as an error
    /// at its end, so a short read is never taken for the whole image.
    pub fn export(
        &self,
        spec: &ImageSpec,
        snap: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<ExportStream, RbdError> {
        let s = match snap {
            Some(sn) => {
                check_name("snapshot", sn)?;
                spec.at(sn)
            }
            None => spec.to_string(),
        };
        let mut cmd = self.command(&self.rbd);
        cmd.args(args(["export", "--no-progress", &s, "-"]));
        let mut child = cmd
            .spawn()
            .map_err(|e| RbdError::io(format!("run rbd export {s}"), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RbdError::io("rbd export", io::Error::other("no stdout pipe")))?;
        let stderr = drain(child.stderr.take());
        Ok(ExportStream {
            child: Some(child),
            stdout,
            stderr: Some(stderr),
            spec: s,
            pool: spec.pool.clone(),
            read: 0,
            expected_size,
            started: Instant::now(),
        })
    }

    /// `ceph health --format json` (a monitor command: answers without a mgr).
    pub fn health(&self) -> Result<Health, RbdError> {
        let out = self.run(
            &self.ceph,
            "health",
            &args(["health", "--format", "json"]),
            "cluster",
            "",
        )?;
        json::parse_health(&out).map_err(|detail| RbdError::BadOutput {
            program: "ceph".into(),
            command: "health".into(),
            detail,
        })
    }

    /// `ceph df --format json`: bytes still writable to `pool`, None when the cluster does not
    /// know (statistics come from the mgr).
    pub fn pool_free(&self, pool: &str) -> Result<Option<u64>, RbdError> {
        check_name("pool", pool)?;
        let out = self.run(
            &self.ceph,
            "df",
            &args(["df", "--format", "json"]),
            pool,
            pool,
        )?;
        json::parse_pool_free(&out, pool).map_err(|detail| RbdError::BadOutput {
            program: "ceph".into(),
            command: "df".into(),
            detail,
        })
    }
}

/// The bytes of `rbd export … -`, read from the child's stdout as they come.
///
/// At end of stream the child is reaped: a non-zero exit, or a byte count other than the
/// expected size, turns the final read into an error (what the hashing copy then reports),
/// so an interrupted export can never pass for a complete one. Dropping the stream early kills
/// the child.
pub struct ExportStream {
    child: Option<Child>,
    stdout: ChildStdout,
    stderr: Option<Receiver<Vec<u8>>>,
    spec: String,
    pool: String,
    read: u64,
    expected_size: Option<u64>,
    started: Instant,
}

impl ExportStream {
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Time since the export started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status: ExitStatus = child.wait()?;
        let stderr = self.stderr.take().map(join).unwrap_or_default();
        if !status.success() {
            let e = classify(
                "rbd",
                "export",
                &self.spec,
                &self.pool,
                status.code(),
                &stderr,
            );
            let kind = if e.is_missing() {
                io::ErrorKind::NotFound
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(kind, e));
        }
        if let Some(want) = self.expected_size
            && want != self.read
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "rbd export {}: {} bytes, image is {want} ({})",
                    self.spec,
                    self.read,
                    stderr_tail(&stderr)
                ),
            ));
        }
        Ok(())
    }
}

impl Read for ExportStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.finish()?;
        }
        self.read += n as u64;
        Ok(n)
    }
}

impl Drop for ExportStream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn args<const N: usize>(a: [&str; N]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn push_ns(a: &mut Vec<OsString>, pool: &PoolSpec) {
    if let Some(ns) = &pool.namespace {
        a.push("--namespace".into());
        a.push(ns.into());
    }
}

/// Whether `pid` runs: not once reaped, nor as a zombie (a container's init may never reap).
fn running(pid: rustix::process::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

fn program_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

/// Read a pipe to its end on a thread of its own (so neither pipe fills and blocks the child).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<Vec<u8>> {
    let (tx, rx) = sync_channel(1);
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// What a drained pipe held. Bounded wait: a pipe that some other process inherited and keeps
/// open must not hang the caller once the child itself has exited.
fn join(rx: Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
}

/// Wait for `child` until `deadline` passes: Some(status), or None after killing it. Polls
/// (1 ms growing to 50 ms) instead of relying on SIGCHLD, which a library must not take over.
fn wait_until(child: &mut Child, deadline: Duration) -> io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}
