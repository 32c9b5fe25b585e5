//! `check` answers for the web pages: computed in the background, kept while they hold.
//!
//! `check` over a whole store reads every VM syslog line and every connection (seconds on a
//! 1000-VM day, minutes on months), far beyond what a page may take (issue 14: ≤ 200 ms). So a
//! page never computes one itself: it asks [`CheckJobs::answer`], which
//!
//! - gives the last finished answer for the same parameters while it still **holds**: the
//!   ledger has not grown since, or grew only by records `check` never reads (the query audit
//!   records every page view itself appends; the caller says which);
//! - otherwise starts one computation for those parameters (never two at once), waits a short
//!   while for it, and answers with what there is, saying so: the older answer marked
//!   **trailing** (with the ledger position it holds up to and the records since), or
//!   **pending** (no answer yet), with when the running check started; the page reloads itself
//!   until the fresh answer is there.
//!
//! `pugmark ui` starts the default page's check when it starts, so the first visit usually
//! finds it done. The API (`GET /api/v1/check`) does not come here: it always computes, like
//! the CLI. Answers are kept unscoped; scoping and the audit come after, per request.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

/// How long a page waits for a check it started (or found running) before it answers with
/// what there is: a short check (a narrow window, a small site) is answered fresh.
pub const PAGE_WAIT: Duration = Duration::from_millis(120);

/// Most newer ledger records read to decide whether a kept answer still holds; beyond that the
/// answer is recomputed (reading them would cost more than a page may).
pub const HOLD_SCAN_MAX: u64 = 4096;

/// The nice value of a background check's thread (Linux nice values are per thread).
const CHECK_NICE: i32 = 10;

/// Parameter sets kept (each a whole `check` answer).
const KEPT_MAX: usize = 32;

/// Finished and running checks by their parameters.
#[derive(Default)]
pub struct CheckJobs {
    state: Mutex<HashMap<String, Entry>>,
    finished: Condvar,
}

#[derive(Default)]
struct Entry {
    done: Option<Done>,
    /// When the running computation started (RFC 3339), if one runs.
    running: Option<String>,
    /// Why the last computation failed, until the next one starts.
    failed: Option<String>,
}

struct Done {
    /// The unscoped answer (`check --json`).
    value: Value,
    /// When it was computed (RFC 3339).
    computed: String,
    /// The ledger's last record it is known to hold for: the last record when computed, moved
    /// on when every newer record was one `check` does not read.
    holds_to: u64,
}

/// What a page gets.
#[derive(Debug)]
pub enum PageCheck {
    /// An answer (with `computed`, `holds_to`, `ledger_last`, `standing` and, while a fresher
    /// one is computed, `running_since` added).
    Answer(Value),
    /// The last computation failed and there is no answer to show.
    Failed(String),
}

impl CheckJobs {
    /// The answer for `key` with the ledger's last record now `last`. `unread(from, to)` says
    /// whether every record in `(from, to]` is one `check` does not read; `compute` computes a
    /// fresh answer (on a thread of its own; its answer's `views.ledger_last` is the position it
    /// covers, `last` when it has none).
    pub fn answer(
        self: &Arc<Self>,
        key: &str,
        last: u64,
        unread: &dyn Fn(u64, u64) -> bool,
        compute: impl FnOnce() -> anyhow::Result<Value> + Send + 'static,
        wait: Duration,
    ) -> PageCheck {
        if let Some(v) = self.holding(key, last, unread) {
            return PageCheck::Answer(v);
        }
        self.start(key, last, compute);
        let deadline = std::time::Instant::now() + wait;
        let mut st = self.lock();
        loop {
            let running = st.get(key).is_some_and(|e| e.running.is_some());
            let now = std::time::Instant::now();
            if !running || now >= deadline {
                break;
            }
            st = self
                .finished
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // A check that finished while this page waited covers the ledger as it was when it
        // started: it holds now if what came since is unread by `check` (the pages' audits).
        if st.get(key).is_some_and(|e| e.done.is_some()) {
            drop(st);
            if let Some(v) = self.holding(key, last, unread) {
                return PageCheck::Answer(v);
            }
            st = self.lock();
        }
        let Some(e) = st.get(key) else {
            return PageCheck::Failed("the check's state was dropped".into());
        };
        match (&e.done, &e.failed, &e.running) {
            (Some(d), _, running) => {
                let standing = if d.holds_to >= last {
                    "current"
                } else {
                    "trailing"
                };
                PageCheck::Answer(shown(d, last, standing, running.as_deref()))
            }
            (None, Some(why), None) => PageCheck::Failed(why.clone()),
            (None, _, running) => PageCheck::Answer(json!({
                "findings": [],
                "by_kind": {},
                "examined": {},
                "standing": "pending",
                "ledger_last": last,
                "running_since": running,
            })),
        }
    }

    /// Starts computing `key`'s answer unless that already runs (also what `pugmark ui` does
    /// for its default page when it starts).
    pub fn start(
        self: &Arc<Self>,
        key: &str,
        last: u64,
        compute: impl FnOnce() -> anyhow::Result<Value> + Send + 'static,
    ) {
        {
            let mut st = self.lock();
            if st.len() >= KEPT_MAX && !st.contains_key(key) {
                // Forget a finished one (never a running one: its thread writes back).
                if let Some(k) = st
                    .iter()
                    .find(|(_, e)| e.running.is_none())
                    .map(|(k, _)| k.clone())
                {
                    st.remove(&k);
                }
            }
            let e = st.entry(key.to_string()).or_default();
            if e.running.is_some() {
                return;
            }
            e.running = Some(model::Received::now().timestamp().to_string());
            e.failed = None;
        }
        let jobs = Arc::clone(self);
        let key = key.to_string();
        let spawned = std::thread::Builder::new().name("ui-check".into()).spawn({
            let key = key.clone();
            move || {
                // Below the pages (and a collector's ledger path) in the CPU's queue: a
                // background answer must not slow the answers asked now. Best effort.
                let _ = rustix::process::setpriority_process(None, CHECK_NICE);
                let started = model::Received::now().timestamp().to_string();
                let r = compute();
                let mut st = jobs.lock();
                let e = st.entry(key).or_default();
                e.running = None;
                match r {
                    Ok(value) => {
                        let covers = value["views"]["ledger_last"].as_u64().unwrap_or(last);
                        e.done = Some(Done {
                            value,
                            computed: started,
                            holds_to: covers,
                        });
                    }
                    Err(err) => e.failed = Some(format!("{err:#}")),
                }
                drop(st);
                jobs.finished.notify_all();
            }
        });
        if let Err(err) = spawned {
            let mut st = self.lock();
            let e = st.entry(key).or_default();
            e.running = None;
            e.failed = Some(format!("cannot start the check: {err}"));
        }
    }

    /// The finished answer for `key` if it still holds at `last` (moving its mark on when
    /// the newer records are all unread by `check`).
    fn holding(&self, key: &str, last: u64, unread: &dyn Fn(u64, u64) -> bool) -> Option<Value> {
        let holds_to = self.lock().get(key)?.done.as_ref()?.holds_to;
        // Read outside the lock: other pages go on meanwhile.
        let holds =
            holds_to >= last || (last - holds_to <= HOLD_SCAN_MAX && unread(holds_to, last));
        if !holds {
            return None;
        }
        let mut st = self.lock();
        let e = st.get_mut(key)?;
        let d = e.done.as_mut()?;
        d.holds_to = d.holds_to.max(last);
        Some(shown(d, last, "current", e.running.as_deref()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A kept answer as a page shows it.
fn shown(d: &Done, last: u64, standing: &str, running: Option<&str>) -> Value {
    let mut v = d.value.clone();
    v["computed"] = json!(d.computed);
    v["holds_to"] = json!(d.holds_to);
    v["ledger_last"] = json!(last);
    v["standing"] = json!(standing);
    if let Some(r) = running {
        v["running_since"] = json!(r);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answer_at(n: u64) -> Value {
        json!({"findings": [{"kind": "silent_vm"}], "views": {"ledger_last": n}})
    }

    fn standing(p: &PageCheck) -> &str {
        match p {
            PageCheck::Answer(v) => v["standing"].as_str().unwrap_or(""),
            PageCheck::Failed(_) => "failed",
        }
    }

    fn wait_idle(jobs: &Arc<CheckJobs>, key: &str) {
        for _ in 0..500 {
            if jobs.lock().get(key).is_some_and(|e| e.running.is_none()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the check never finished");
    }

    #[test]
    fn a_slow_check_answers_pending_then_current_and_holds_over_unread_records() {
        let jobs = Arc::new(CheckJobs::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let slow = |n: u64, runs: &Arc<AtomicUsize>| {
            let runs = runs.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                Ok(answer_at(n))
            }
        };
        // A page asking with the ledger's last record at `last`.
        let ask = |last: u64, unread: &dyn Fn(u64, u64) -> bool, wait_ms: u64| {
            jobs.answer(
                "{}",
                last,
                unread,
                slow(last, &runs),
                Duration::from_millis(wait_ms),
            )
        };
        let never = |_: u64, _: u64| panic!("nothing to hold yet");
        let t = std::time::Instant::now();
        let p = ask(100, &never, 20);
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "the page did not wait it out"
        );
        assert_eq!(standing(&p), "pending");
        let PageCheck::Answer(v) = &p else { panic!() };
        assert!(v["running_since"].is_string());
        assert_eq!(v["findings"].as_array().map(Vec::len), Some(0));
        // A second page while it runs starts nothing more.
        let p = ask(100, &never, 0);
        assert_eq!(standing(&p), "pending");
        wait_idle(&jobs, "{}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Done: current, as computed, without computing again.
        let p = ask(100, &never, 0);
        assert_eq!(standing(&p), "current");
        let PageCheck::Answer(v) = &p else { panic!() };
        assert_eq!(v["findings"][0]["kind"], "silent_vm");
        assert!(v["computed"].is_string());
        // The ledger grew by records check does not read (the pages' own audits): still current.
        let asked = Mutex::new(Vec::new());
        let audits = |a: u64, b: u64| {
            asked.lock().unwrap().push((a, b));
            true
        };
        let p = ask(103, &audits, 0);
        assert_eq!(standing(&p), "current");
        assert_eq!(*asked.lock().unwrap(), vec![(100, 103)]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Then by evidence: the old answer, trailing, while a fresh one runs; then the fresh one.
        let evidence = |_: u64, _: u64| false;
        let p = ask(110, &evidence, 10);
        assert_eq!(standing(&p), "trailing");
        let PageCheck::Answer(v) = &p else { panic!() };
        assert_eq!(v["holds_to"], 103);
        assert_eq!(v["ledger_last"], 110);
        assert!(v["running_since"].is_string());
        wait_idle(&jobs, "{}");
        let p = ask(110, &evidence, 0);
        assert_eq!(standing(&p), "current");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // Too many newer records to read: recomputed without reading them.
        let p = ask(110 + HOLD_SCAN_MAX + 1, &never, 10);
        assert_eq!(standing(&p), "trailing");
    }

    #[test]
    fn a_check_done_while_the_page_waits_holds_over_the_audits_since_it_started() {
        let jobs = Arc::new(CheckJobs::default());
        // Computed over the ledger up to #100; the page asks at #104 (its own audits since).
        let audits = |a: u64, b: u64| a == 100 && b == 104;
        let p = jobs.answer(
            "{}",
            104,
            &audits,
            || {
                std::thread::sleep(Duration::from_millis(50));
                Ok(answer_at(100))
            },
            Duration::from_secs(5),
        );
        assert_eq!(standing(&p), "current");
        let PageCheck::Answer(v) = &p else { panic!() };
        assert_eq!(v["holds_to"], 104);
        let evidence = |_: u64, _: u64| false;
        let p = jobs.answer(
            "{\"x\":\"1\"}",
            104,
            &evidence,
            || Ok(answer_at(100)),
            Duration::from_secs(5),
        );
        assert_eq!(standing(&p), "trailing", "newer evidence is not held over");
    }

    #[test]
    fn a_fast_check_is_answered_fresh_and_a_failure_is_said() {
        let jobs = Arc::new(CheckJobs::default());
        let never = |_: u64, _: u64| false;
        let p = jobs.answer(
            "{\"from\":\"x\"}",
            5,
            &never,
            || Ok(answer_at(5)),
            Duration::from_secs(5),
        );
        assert_eq!(standing(&p), "current");
        let p = jobs.answer(
            "{\"to\":\"y\"}",
            5,
            &never,
            || anyhow::bail!("the search index is missing"),
            Duration::from_secs(5),
        );
        match p {
            PageCheck::Failed(why) => assert!(why.contains("index is missing"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
