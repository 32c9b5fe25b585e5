//! `Rbd::wait_strays`: calls whose caller was killed are waited for (a wedged one killed),
//! others are left alone. No cluster needed: stand-in calls play the strays.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Starts `program args…` detached from this process (its parent, a shell, exits at once, as
/// a killed caller's would): the pid of the call.
fn orphan(program: &Path, args: &str) -> i32 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {args} >/dev/null 2>&1 </dev/null & echo $!",
            program.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn which(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name} on PATH"))
}

fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

#[test]
fn a_killed_callers_calls_naming_the_word_are_waited_for_and_a_wedged_one_killed() {
    let dir = tempfile::tempdir().unwrap();
    // Stand-ins: `timeout N tail -F FILE` copied as `rbd`, so argv[0] is the CLI's name, the
    // word is in the arguments, and the call ends by itself after N seconds.
    let rbd = dir.path().join("rbd");
    fs::copy(which("timeout"), &rbd).unwrap();
    let other = dir.path().join("rados");
    fs::copy(which("timeout"), &other).unwrap();
    let missing = dir.path().join("absent");
    let call = |secs: u32, word: &str| format!("{secs} tail -F {}/vms@{word}", missing.display());
    let stray = orphan(&rbd, &call(2, "pugmark-q-abc"));
    let unrelated = orphan(&rbd, &call(60, "pugmark-q-xyz"));
    let not_rbd = orphan(&other, &call(60, "pugmark-q-abc"));
    let wedged = orphan(&rbd, &call(60, "pugmark-q-def"));
    let t = Instant::now();
    while ![stray, unrelated, not_rbd, wedged].into_iter().all(running) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the stand-ins did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let h = rbd::Rbd::new("/nonexistent.conf", "admin").with_programs(&rbd, "ceph");
    let t = Instant::now();
    assert_eq!(h.wait_strays("pugmark-q-abc", Duration::from_secs(30)), 1);
    let waited = t.elapsed();
    assert!(!running(stray), "returned while the stray call still runs");
    assert!(
        waited >= Duration::from_millis(1500),
        "the stray was killed, not waited for ({waited:?})"
    );
    assert!(
        running(unrelated),
        "a call naming another snapshot was ended"
    );
    assert!(running(not_rbd), "another program was ended");
    // A call still running after the grace is killed.
    let t = Instant::now();
    assert_eq!(
        h.wait_strays("pugmark-q-def", Duration::from_millis(500)),
        1
    );
    assert!(!running(wedged), "the wedged call still runs");
    assert!(t.elapsed() < Duration::from_secs(10));
    for p in [unrelated, not_rbd] {
        let _ = Command::new("kill").arg(p.to_string()).status();
    }
    // The wedged stand-in's own child (`tail -F`) outlives the SIGKILL of its `timeout`
    // (a real `rbd` call is one process): end every process naming this test's directory,
    // or it runs on after the suite (seen: a `tail -F …/vms@pugmark-q-def` left by CI).
    let _ = Command::new("pkill")
        .arg("-f")
        .arg(missing.display().to_string())
        .status();
}
