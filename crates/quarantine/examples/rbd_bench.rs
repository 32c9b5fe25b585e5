//! The RBD backend's operations, one per run, timed, for bench/rbd (BENCHMARKS.md, "Ceph RBD
//! quarantine"). Prints one JSON object.
//!
//! ```text
//! rbd_bench CONF capture POOL IMAGE ID        # take: snapshot, protect, clone, tag, trash mv
//! rbd_bench CONF copy POOL IMAGE ID           # copy: … + flatten, snapshot dropped
//! rbd_bench CONF export LOCATOR SIZE OUT      # rbd export … - hashed (BLAKE3 + SHA-256) into OUT (0600)
//! ```

// Deadlines relative to the wall clock (deferments, keep-until), not evidence times.
#![allow(clippy::disallowed_methods)]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use quarantine::ceph::{CephBackend, CephConfig};
use quarantine::{Backend, CaptureMode, CaptureRequest, ImageRef, Source, hash};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rbd_bench CONF capture|copy POOL IMAGE ID | CONF export LOCATOR SIZE OUT";
    let (conf, cmd) = match args.as_slice() {
        [_, conf, cmd, ..] => (conf.clone(), cmd.as_str()),
        _ => return Err(usage.into()),
    };
    let b = CephBackend::new(CephConfig {
        conf: conf.into(),
        id: "admin".into(),
        evidence_pool: "pugmark-evidence".into(),
        ..CephConfig::default()
    })?;
    match (cmd, &args[3..]) {
        ("capture" | "copy", [pool, image, id]) => {
            let t0 = Instant::now();
            let kept = b.capture(&CaptureRequest {
                id: id.clone(),
                source: Source::Rbd {
                    pool: pool.clone(),
                    namespace: None,
                    image: image.clone(),
                    snapshot: None,
                },
                vm_uuid: "bench".into(),
                mode: if cmd == "capture" {
                    CaptureMode::Take
                } else {
                    CaptureMode::Copy
                },
                keep_until: Timestamp::now()
                    .checked_add(SignedDuration::from_hours(168))
                    .ok(),
            })?;
            println!(
                "{{\"op\":\"{cmd}\",\"secs\":{:.3},\"size\":{},\"method\":\"{}\",\"locator\":\"{}\"}}",
                t0.elapsed().as_secs_f64(),
                kept.size,
                kept.method,
                kept.locator
            );
        }
        ("export", [locator, size, out]) => {
            let image = ImageRef {
                id: "bench".into(),
                locator: locator.clone(),
                size: size.parse()?,
            };
            let t0 = Instant::now();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)?;
            let mut reader = b.open(&image)?;
            let d = hash::copy_hashed(&mut reader, &mut f)?;
            f.flush()?;
            f.sync_all()?;
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "{{\"op\":\"export\",\"secs\":{secs:.3},\"bytes\":{},\"mb_s\":{:.1},\"blake3\":\"{}\",\"sha256\":\"{}\"}}",
                d.size,
                d.size as f64 / secs / 1e6,
                d.blake3,
                d.sha256
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
