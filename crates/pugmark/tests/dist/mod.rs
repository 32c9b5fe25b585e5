//! Issue 15, "packages and the things admins expect": the files under `dist/` that the
//! packages install — the hardened systemd unit and the default serve config — checked by the
//! programs that read them (`systemd-analyze verify`, `systemd-analyze security`, `pugmark
//! serve --check-config`). Part of the `cli` test binary (`mod dist;` there).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The checkout's `dist/` directory.
pub fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// The unit as shipped, with `/usr/bin/pugmark` replaced by the binary under test and
/// `/etc/pugmark/serve.toml` by the shipped config (this machine has neither installed), written
/// to `dir`; its path.
fn unit_here(dir: &Path) -> PathBuf {
    let unit = fs::read_to_string(dist().join("pugmark.service")).expect("dist/pugmark.service");
    let config = dist().join("serve.toml");
    let here = unit
        .replace("/usr/bin/pugmark", bin())
        .replace("/etc/pugmark/serve.toml", &config.to_string_lossy());
    let path = dir.join("pugmark.service");
    fs::write(&path, here).expect("write unit");
    path
}

fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// systemd's own checker accepts the unit without a single warning (an unknown or misspelt
/// key is only a warning to systemd, so stderr must be empty, not just the exit code zero),
/// and its offline security review rates the exposure at most 2.0 ("OK"; 10 is an
/// unconfined root service): the hardening is what systemd sees, not what we meant.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_and_security() {
    let Some(sa) = need("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path());
    // --man=no: Documentation=man:pugmark-serve(1) is installed by the package, not here.
    let out = Command::new(&sa)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let out = Command::new(&sa)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the brief promises an admin, by name (a stray edit must not drop one silently).
    let text = fs::read_to_string(&unit).unwrap();
    for line in [
        "User=pugmark",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/pugmark",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.lines().any(|l| l == line), "unit lacks {line}");
    }
}

/// The unit's ExecStart= is a command line the real binary accepts: the same arguments plus
/// `--check-config` validate the shipped serve.toml (the flags' names are checked, not
/// assumed), and that config is the safe default the packages promise: the customary ports,
/// HTTP on loopback, TLS off until a certificate exists, unmatched senders deliberately `vm`.
#[test]
fn the_unit_command_line_and_the_default_config_pass_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(unit_here(dir.path())).unwrap();
    let argv = exec_start(&unit);
    assert_eq!(argv[0], bin());
    assert!(argv.iter().any(|a| a == "/var/lib/pugmark"), "{argv:?}");
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("--check-config")
        .output()
        .expect("run pugmark serve --check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "syslog-udp  0.0.0.0:514",
        "syslog-tcp  0.0.0.0:514",
        "relp        0.0.0.0:2514",
        "syslog-tls  off",
        "http        127.0.0.1:9514",
        "netflow     0.0.0.0:2055, 0.0.0.0:4739",
        "unmatched: vm",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
}
