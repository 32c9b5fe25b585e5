//! Holds through the store with the file backend (issue 13: "held by an operator (`pugmark
//! quarantine hold VM [--until T] --reason TEXT`) ... is kept until released", and findings'
//! holds): a hold made before the capture is honoured by it; a hold's end never shortens the
//! policy; a second hold is `extended`; a release gives an image captured while held its
//! policy's keep-until; a finding's hold is made once and never again after a release.

// Keep-until deadlines are relative to the wall clock.
#![allow(clippy::disallowed_methods)]

use jiff::{SignedDuration, Timestamp};
use quarantine::custody::Step;
use quarantine::policy::Config;
use quarantine::{CaptureMode, CaptureSpec, Quarantine, Source};

const VM: &str = "0f6c2e8a-1b2c-4d3e-8f90-a1b2c3d4e5f6";

fn store(dir: &std::path::Path, retention: &str) -> Quarantine {
    let roots = dir.join("disks");
    std::fs::create_dir_all(&roots).expect("roots");
    let config = Config::parse(&format!(
        "version = 1\nstore = {:?}\nroots = [{:?}]\nreserve_bytes = 0\n[policy]\nretention = \"{retention}\"\n",
        dir.join("store").display().to_string(),
        roots.display().to_string()
    ))
    .expect("config");
    Quarantine::open(config, Vec::new()).expect("open")
}

fn capture(q: &Quarantine, dir: &std::path::Path, name: &str) -> quarantine::Item {
    let disk = dir.join("disks").join(name);
    std::fs::write(&disk, name.as_bytes()).expect("disk");
    let mut r = q.capture(&CaptureSpec {
        vm_uuid: VM.into(),
        project: None,
        images: vec![(Source::Path { path: disk }, None)],
        mode: CaptureMode::Take,
        by: "test".into(),
        reason: None,
        hash: true,
    });
    r.remove(0).expect("kept")
}

fn last_steps(q: &Quarantine, n: usize) -> Vec<Step> {
    let all: Vec<Step> = q
        .journal()
        .read()
        .expect("journal")
        .into_iter()
        .filter_map(|r| r.step)
        .collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

#[test]
fn holds_before_and_after_capture_their_ends_and_their_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = store(tmp.path(), "1d");
    // A hold with an end shorter than the policy does not shorten the policy.
    let soon = quarantine::now() + SignedDuration::from_secs(60);
    assert!(
        q.hold(VM, Some(soon), "case 42", "operator a")
            .expect("hold")
            .is_empty()
    );
    let a = capture(&q, tmp.path(), "a.raw");
    let policy_end = a.captured + SignedDuration::from_hours(24);
    let ku = a.keep_until.expect("an end");
    assert!(
        ku >= policy_end - SignedDuration::from_secs(5),
        "{ku} < {policy_end}"
    );
    assert_eq!(a.policy, "hold (case 42)");
    // A second hold is an extension, recorded per kept image.
    q.hold(VM, None, "case 43", "operator b").expect("hold");
    assert_eq!(last_steps(&q, 1), [Step::Extended]);
    // Held without end: never expired, whatever the time.
    let far = Timestamp::MAX;
    assert!(!q.expired(&a, far).expect("expired"));
    assert!(q.expire(far).expect("expire").is_empty());
    // An image captured while held has no end until the release gives it its policy's.
    let b = capture(&q, tmp.path(), "b.raw");
    assert_eq!(b.keep_until, None);
    assert_eq!(q.release(VM, "done", "operator a").expect("release"), 2);
    let b = q.item(&b.id).expect("item");
    let end = b.keep_until.expect("an end after the release");
    assert!(end >= b.captured + SignedDuration::from_hours(24) - SignedDuration::from_secs(1));
    assert_eq!(b.policy, "site 1d");
    assert_eq!(last_steps(&q, 1), [Step::Released]);
    assert!(q.expire(quarantine::now()).expect("expire").is_empty());
    assert_eq!(q.expire(far).expect("expire").len(), 2);
}

#[test]
fn a_findings_hold_is_made_once_and_not_again_after_a_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = store(tmp.path(), "0");
    let why = "check finding spoofed_source: x";
    assert!(
        q.hold_for_finding(VM, why, "auto:check")
            .expect("hold")
            .is_some()
    );
    assert!(
        q.hold_for_finding(VM, why, "auto:check")
            .expect("hold")
            .is_none()
    );
    // Policy 0 (off): the held VM's disk is kept all the same, without end.
    let a = capture(&q, tmp.path(), "a.raw");
    assert_eq!(a.keep_until, None);
    q.release(VM, "examined", "operator a").expect("release");
    // Released: the same finding does not hold again; a new one does.
    assert!(
        q.hold_for_finding(VM, why, "auto:check")
            .expect("hold")
            .is_none()
    );
    assert!(q.holds().expect("holds").is_empty());
    assert!(
        q.hold_for_finding(VM, "check finding silent_vm: y", "auto:check")
            .expect("hold")
            .is_some()
    );
    // Policy 0 after the release: its image goes at the next expiry.
    q.release(VM, "examined", "operator a").expect("release");
    assert_eq!(q.expire(quarantine::now()).expect("expire"), [a.id]);
}
