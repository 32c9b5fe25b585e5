//! Retry with exponential backoff, for a cluster that does not answer.
//!
//! Only [`RbdError::is_unavailable`] errors are retried (cluster down, call timed out); a
//! missing image or a refusal is returned at once, since waiting will not change it. The
//! caller gets every attempt's error back ([`Retried`]) so it can record the failure (the
//! quarantine writes a custody record and counts it for `/metrics`), never a silent success.

use std::time::Duration;

use crate::error::RbdError;

/// How often and how long to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    pub first_wait: Duration,
    /// Longest wait between two attempts.
    pub max_wait: Duration,
}

impl Default for Retry {
    /// 4 attempts, waiting 1 s, 2 s, 4 s between them.
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// The outcome of a retried call: its value and the errors of the attempts that failed first.
#[derive(Debug)]
pub struct Retried<T> {
    /// The value or the last error.
    pub result: Result<T, RbdError>,
    /// Errors of earlier failed attempts, oldest first (empty when the first attempt decided).
    pub failures: Vec<RbdError>,
}

impl Retry {
    /// No retry: one attempt.
    pub fn once() -> Self {
        Retry {
            attempts: 1,
            ..Retry::default()
        }
    }

    /// Call `f` until it succeeds, fails with an error that waiting will not mend, or the
    /// attempts are used up; sleeping between attempts with `sleep` (tests pass a no-op).
    pub fn run_with<T>(
        &self,
        mut f: impl FnMut() -> Result<T, RbdError>,
        mut sleep: impl FnMut(Duration),
    ) -> Retried<T> {
        let mut failures = Vec::new();
        let mut wait = self.first_wait;
        for attempt in 1..=self.attempts.max(1) {
            match f() {
                Ok(v) => {
                    return Retried {
                        result: Ok(v),
                        failures,
                    };
                }
                Err(e) if e.is_unavailable() && attempt < self.attempts => {
                    failures.push(e);
                    sleep(wait);
                    wait = (wait * 2).min(self.max_wait);
                }
                Err(e) => {
                    return Retried {
                        result: Err(e),
                        failures,
                    };
                }
            }
        }
        // attempts.max(1) ≥ 1 and every arm of the last attempt returns.
        Retried {
            result: Err(RbdError::ClusterDown {
                program: "rbd".into(),
                detail: "no attempt made".into(),
            }),
            failures,
        }
    }

    /// [`Retry::run_with`] sleeping for real.
    pub fn run<T>(&self, f: impl FnMut() -> Result<T, RbdError>) -> Retried<T> {
        self.run_with(f, std::thread::sleep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> RbdError {
        RbdError::ClusterDown {
            program: "rbd".into(),
            detail: "couldn't connect to the cluster!".into(),
        }
    }

    #[test]
    fn backs_off_doubling_then_gives_up_with_every_failure_kept() {
        let mut waits = Vec::new();
        let r = Retry::default().run_with(|| -> Result<(), _> { Err(down()) }, |d| waits.push(d));
        assert!(r.result.is_err());
        assert_eq!(r.failures.len(), 3);
        assert_eq!(
            waits,
            [1, 2, 4].map(Duration::from_secs).to_vec(),
            "1 s, 2 s, 4 s between 4 attempts"
        );
    }

    #[test]
    fn a_missing_image_is_not_retried() {
        let mut calls = 0;
        let r = Retry::default().run_with(
            || -> Result<(), _> {
                calls += 1;
                Err(RbdError::ImageMissing {
                    spec: "vms/x".into(),
                })
            },
            |_| {},
        );
        assert_eq!(calls, 1);
        assert!(r.result.is_err_and(|e| e.is_missing()));
    }

    #[test]
    fn recovers_when_the_cluster_comes_back() {
        let mut calls = 0;
        let r = Retry::default().run_with(
            || {
                calls += 1;
                if calls < 3 { Err(down()) } else { Ok(calls) }
            },
            |_| {},
        );
        assert_eq!(r.result.ok(), Some(3));
        assert_eq!(r.failures.len(), 2);
    }
}
