//! A single-node Ceph for tests: starts `scripts/ceph-single-node` in a directory and stops it
//! when dropped (also when the test panics).
//!
//! One mon, one BlueStore osd on a sparse file, no auth, loopback only, pools `rbd` and
//! `evidence` (the script's header says how). Needs Debian's ceph-mon, ceph-osd and
//! ceph-common (installed by scripts/test). Used by this crate's tests, crate `quarantine`'s
//! Ceph tests and the bench (which runs the script itself).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running test cluster.
#[derive(Debug)]
pub struct SingleNode {
    dir: PathBuf,
    conf: PathBuf,
    /// How long `start` took (mon + osd + pools ready).
    pub started_in: Duration,
}

/// The script, from this crate's manifest directory (the checkout), or `$PUGMARK_CEPH_SCRIPT`.
pub fn script() -> PathBuf {
    std::env::var_os("PUGMARK_CEPH_SCRIPT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-single-node"),
        PathBuf::from,
    )
}

impl SingleNode {
    /// Start a cluster whose files all live under `dir` (created; must not hold one), with
    /// pools `rbd` and `evidence`.
    pub fn start(dir: &Path) -> io::Result<SingleNode> {
        SingleNode::start_with_pools(dir, &["rbd", "evidence"])
    }

    /// [`SingleNode::start`] with these replicated, `rbd pool init`ed pools.
    pub fn start_with_pools(dir: &Path, pools: &[&str]) -> io::Result<SingleNode> {
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir)
            .env("CEPH_POOLS", pools.join(" "))
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ceph-single-node start failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .ok_or_else(|| io::Error::other("ceph-single-node printed no conf path"))?;
        Ok(SingleNode {
            dir: dir.to_path_buf(),
            conf,
            started_in: t0.elapsed(),
        })
    }

    /// The cluster's ceph.conf (what `-c` takes).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The directory holding everything (logs under `log/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stop the osd (the mon keeps answering): what a cluster whose data is unreachable does.
    pub fn kill_osd(&self) -> io::Result<()> {
        self.kill_daemon("osd.0")
    }

    /// Stop the mon: the cluster stops answering at all.
    pub fn kill_mon(&self) -> io::Result<()> {
        self.kill_daemon("mon.a")
    }

    /// Start the mon again after [`SingleNode::kill_mon`] (its data is kept) and wait until it
    /// answers.
    pub fn restart_mon(&self) -> io::Result<()> {
        let st = Command::new("ceph-mon")
            .arg("-c")
            .arg(&self.conf)
            .args(["--id", "a"])
            .status()?;
        if !st.success() {
            return Err(io::Error::other(format!("ceph-mon: {st}")));
        }
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let ok = Command::new("ceph")
                .arg("-c")
                .arg(&self.conf)
                .args(["--connect-timeout", "5", "health"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(io::Error::other("mon did not answer after restart"))
    }

    fn kill_daemon(&self, name: &str) -> io::Result<()> {
        let pidfile = self.dir.join("run").join(format!("{name}.pid"));
        let pid = std::fs::read_to_string(&pidfile)?;
        let pid = pid.trim();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(io::Error::other(format!(
                "bad pid file {}",
                pidfile.display()
            )));
        }
        Command::new("kill").arg("-KILL").arg(pid).status()?;
        Ok(())
    }

    /// Stop the daemons and remove the directory.
    pub fn stop(self) {
        // Drop does it.
    }
}

impl Drop for SingleNode {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
