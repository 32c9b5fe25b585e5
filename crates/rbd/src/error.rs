//! What went wrong in a call to `rbd` or `ceph`, told apart so callers can act on it.
//!
//! The CLIs exit with the positive errno of the failed librbd/librados call (`rbd info` of a
//! missing image exits 2 = ENOENT) and say on stderr which object was missing ("error opening
//! pool 'x'" vs "error opening image y"). `classify` turns exit code and stderr into one
//! [`RbdError`]; the tests in `tests/cluster.rs` hold each arm to the real program's answer
//! (missing pool, missing image, a cluster that does not answer).

use std::time::Duration;

/// One failed call, typed by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RbdError {
    /// The cluster did not answer: no monitor reachable, an op timed out (ETIMEDOUT,
    /// "couldn't connect to the cluster"). Retry later, record, alert.
    #[error("ceph cluster unavailable ({program}): {detail}")]
    ClusterDown {
        /// `rbd` or `ceph`.
        program: String,
        /// The tool's last stderr line or what timed out.
        detail: String,
    },
    /// The call ran longer than its deadline and was killed (the cluster hangs, an OSD is down).
    #[error("{program} {command} killed after {after:?} (cluster not answering)")]
    Timeout {
        /// `rbd` or `ceph`.
        program: String,
        /// The subcommand (`trash mv`, `export`).
        command: String,
        /// The deadline.
        after: Duration,
    },
    /// The pool does not exist (or this client may not see it).
    #[error("pool missing: {pool}")]
    PoolMissing {
        /// Pool name as asked.
        pool: String,
    },
    /// The image (or snapshot, or trash entry) does not exist.
    #[error("image missing: {spec}")]
    ImageMissing {
        /// What was asked (`pool/image`, `pool/image@snap`, `pool/<trash id>`).
        spec: String,
    },
    /// The target already exists (EEXIST): a clone or restore never overwrites.
    #[error("already exists: {spec}")]
    Exists {
        /// The spec that exists.
        spec: String,
    },
    /// The image is in use or has dependents (EBUSY, ENOTEMPTY: snapshots, clones, watchers).
    #[error("busy: {spec}: {detail}")]
    Busy {
        /// What was busy.
        spec: String,
        /// The tool's explanation.
        detail: String,
    },
    /// No space (ENOSPC) or over quota (EDQUOT).
    #[error("no space: {detail}")]
    NoSpace {
        /// The tool's explanation.
        detail: String,
    },
    /// Permission denied (EPERM/EACCES): the cephx user lacks a cap (docs/QUARANTINE.md).
    #[error("permission denied ({program} {command}): {detail}")]
    Denied {
        /// `rbd` or `ceph`.
        program: String,
        /// The subcommand.
        command: String,
        /// The tool's explanation.
        detail: String,
    },
    /// Any other failure of the tool.
    #[error("{program} {command} failed ({status}): {stderr}")]
    Failed {
        /// `rbd` or `ceph`.
        program: String,
        /// The subcommand.
        command: String,
        /// Exit status as text.
        status: String,
        /// The tool's stderr, last lines.
        stderr: String,
    },
    /// The tool answered, but not in the JSON shape expected (another Ceph version?).
    #[error("{program} {command}: unexpected output: {detail}")]
    BadOutput {
        /// `rbd` or `ceph`.
        program: String,
        /// The subcommand.
        command: String,
        /// What did not parse.
        detail: String,
    },
    /// A name that would not be passed to the CLI (empty, `-`-leading, `/`, `@`, controls).
    #[error("invalid {what}: {value:?}")]
    InvalidName {
        /// `pool`, `image`, `snapshot`, `namespace`, `trash id`.
        what: &'static str,
        /// The name.
        value: String,
    },
    /// Running the tool or writing its output failed locally.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl RbdError {
    /// Whether the cluster itself is the problem (retry with backoff, alert), as opposed to a
    /// missing object or a refusal that will not change by waiting.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RbdError::ClusterDown { .. } | RbdError::Timeout { .. }
        )
    }

    /// Whether the object asked for does not exist (image, snapshot, trash entry or pool).
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            RbdError::ImageMissing { .. } | RbdError::PoolMissing { .. }
        )
    }

    /// A local I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RbdError::Io {
            what: what.into(),
            source,
        }
    }
}

// errno values the CLIs exit with (Linux).
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const EBUSY: i32 = 16;
const EEXIST: i32 = 17;
const ENOSPC: i32 = 28;
const ENOTEMPTY: i32 = 39;
const ENOTCONN: i32 = 107;
const ESHUTDOWN: i32 = 108;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;
const EDQUOT: i32 = 122;

/// The last few non-empty stderr lines, without the progress chatter, at most 500 bytes.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("% complete"))
        .collect();
    let start = lines.len().saturating_sub(3);
    let mut tail = lines[start..].join(" | ");
    if tail.len() > 500 {
        let mut cut = tail.len() - 500;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail.split_off(cut);
    }
    tail
}

/// Turn a failed run (exit `code`, `stderr`) of `program command` on `spec` into an error.
/// `pool` is the pool the call named, for [`RbdError::PoolMissing`].
pub(crate) fn classify(
    program: &str,
    command: &str,
    spec: &str,
    pool: &str,
    code: Option<i32>,
    stderr: &[u8],
) -> RbdError {
    let detail = stderr_tail(stderr);
    let lower = detail.to_ascii_lowercase();
    if lower.contains("couldn't connect to the cluster")
        || lower.contains("authenticate timed out")
        || matches!(code, Some(ETIMEDOUT | ESHUTDOWN | ENOTCONN | ECONNREFUSED))
    {
        return RbdError::ClusterDown {
            program: program.into(),
            detail,
        };
    }
    match code {
        Some(ENOENT) if lower.contains("error opening pool") => {
            RbdError::PoolMissing { pool: pool.into() }
        }
        Some(ENOENT) => RbdError::ImageMissing { spec: spec.into() },
        Some(EEXIST) => RbdError::Exists { spec: spec.into() },
        Some(EBUSY | ENOTEMPTY) => RbdError::Busy {
            spec: spec.into(),
            detail,
        },
        Some(ENOSPC | EDQUOT) => RbdError::NoSpace { detail },
        Some(EPERM | EACCES) => RbdError::Denied {
            program: program.into(),
            command: command.into(),
            detail,
        },
        _ => RbdError::Failed {
            program: program.into(),
            command: command.into(),
            status: code.map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
            stderr: detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stderr lines as rbd 16.2.15 prints them (seen in tests/cluster.rs against the real CLI).
    #[test]
    fn rbd_pacific_messages_classify() {
        let pool = classify(
            "rbd",
            "ls",
            "nopool",
            "nopool",
            Some(2),
            b"rbd: error opening pool 'nopool': (2) No such file or directory\nrbd: listing images failed: (2) No such file or directory\n",
        );
        assert!(matches!(pool, RbdError::PoolMissing { ref pool } if pool == "nopool"));
        let image = classify(
            "rbd",
            "info",
            "rbd/x",
            "rbd",
            Some(2),
            b"rbd: error opening image x: (2) No such file or directory\n",
        );
        assert!(matches!(image, RbdError::ImageMissing { .. }));
        let down = classify(
            "rbd",
            "ls",
            "rbd",
            "rbd",
            Some(110),
            b"2026-12-06T06:45:17.236+0000 7f8e 0 monclient(hunting): authenticate timed out after 5\nrbd: couldn't connect to the cluster!\n",
        );
        assert!(down.is_unavailable(), "{down}");
        let snaps = classify(
            "rbd",
            "rm",
            "rbd/a",
            "rbd",
            Some(39),
            b"Removing image: 0% complete...failed.\nrbd: image has snapshots - these must be deleted with 'rbd snap purge' before the image can be removed.\n",
        );
        assert!(
            matches!(snaps, RbdError::Busy { ref detail, .. } if detail.contains("has snapshots") && !detail.contains("complete"))
        );
    }

    #[test]
    fn stderr_tail_is_bounded_and_cuts_on_char_boundaries() {
        let long = "é".repeat(600);
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.len() <= 501);
        assert!(tail.chars().all(|c| c == 'é'));
    }
}
