//! crate `rbd` against a real single-node Ceph (scripts/ceph-single-node: Debian's ceph-mon,
//! ceph-osd, ceph-common 16.2 Pacific). One test function, one cluster: the steps share it
//! and run in order, and the cluster is stopped when the test ends, also on a failure.
//!
//! The oracle for bytes is the file the image was imported from; for errors, the real CLI's
//! answer to a missing pool, a missing image and a cluster whose monitor is gone. What runs
//! only in the bench (bench/rbd): 10 GiB images, timings of capture, clone + flatten against
//! deep cp, export with hashes against `rbd export` to a file.

// Deadlines relative to the wall clock (deferments, keep-until), not evidence times.
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use rbd::testing::SingleNode;
use rbd::{ImageSpec, PoolSpec, Rbd, RbdError};
use sha2::Digest as _;

fn rbd_import(conf: &std::path::Path, file: &std::path::Path, spec: &ImageSpec) {
    let st = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(["import", "--no-progress"])
        .arg(file)
        .arg(spec.to_string())
        .status()
        .expect("run rbd import");
    assert!(st.success(), "rbd import {spec}");
}

/// Pseudo-random bytes with runs of zeros (sparse regions), seeded.
fn disk_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (v.len() / (1 << 20)) % 3 == 1 {
            v.push(0);
        } else {
            v.push(x as u8);
        }
    }
    v
}

#[test]
fn rbd_operations_against_a_single_node_ceph() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cluster = SingleNode::start(&tmp.path().join("ceph")).expect("start single-node ceph");
    eprintln!("single-node ceph up in {:?}", cluster.started_in);
    assert!(
        cluster.started_in < Duration::from_secs(60),
        "start must stay CI-tolerable: {:?}",
        cluster.started_in
    );
    let client = Rbd::new(cluster.conf(), "pugmark").with_timeout(Duration::from_secs(10));
    assert!(
        client
            .version()
            .expect("rbd --version")
            .contains("ceph version")
    );
    let vms = PoolSpec::new("rbd", None).expect("pool");

    // Typed errors, from the real CLI's answers.
    let nopool = PoolSpec::new("nopool", None).expect("pool");
    assert!(
        matches!(client.list(&nopool), Err(RbdError::PoolMissing { ref pool }) if pool == "nopool")
    );
    let ghost = vms.image("ghost").expect("spec");
    assert!(matches!(
        client.info(&ghost),
        Err(RbdError::ImageMissing { .. })
    ));
    assert!(client.list(&vms).expect("ls").is_empty());

    // A VM disk with known bytes (the oracle), 12 MiB, a third of it zeros.
    let bytes = disk_bytes(12 << 20, 7);
    let file = tmp.path().join("disk.raw");
    std::fs::write(&file, &bytes).expect("write disk");
    let disk = vms.image("0f6c7a4e_disk").expect("spec");
    rbd_import(cluster.conf(), &file, &disk);
    let info = client.info(&disk).expect("info");
    assert_eq!(info.size, bytes.len() as u64);

    // Snapshot + protect + clone into the evidence pool: O(1) each.
    let t0 = Instant::now();
    client
        .snap_create(&disk, "pugmark-q-1")
        .expect("snap create");
    client
        .snap_protect(&disk, "pugmark-q-1")
        .expect("snap protect");
    let evidence = ImageSpec::new("evidence", None, "pugmark-q-1").expect("spec");
    client
        .clone_image(&disk, "pugmark-q-1", &evidence)
        .expect("clone");
    client
        .meta_set(&evidence, "pugmark.vm", "0f6c7a4e")
        .expect("meta set");
    // The deleter's path: the original goes to the trash with a deferment.
    let keep_until = Timestamp::now() + 2.hours();
    let id = client
        .trash_move(&disk, Some(keep_until))
        .expect("trash mv");
    eprintln!(
        "snapshot + protect + clone + meta + trash mv: {:?}",
        t0.elapsed()
    );
    assert_eq!(id, info.id, "the trash is keyed by the image id");
    assert!(matches!(
        client.info(&disk),
        Err(RbdError::ImageMissing { .. })
    ));
    let trash = client.trash_list(&vms).expect("trash ls");
    let entry = trash.iter().find(|e| e.id == id).expect("in the trash");
    assert_eq!(
        (entry.name.as_str(), entry.source.as_str()),
        ("0f6c7a4e_disk", "USER")
    );
    let until = entry.protected_until.expect("a deferment");
    assert!(
        (until.as_second() - keep_until.as_second()).abs() <= 2,
        "deferment {until} vs asked {keep_until}"
    );
    // A clone's parent may sit in the trash; the clone still reads through it.
    let parent = client
        .info(&evidence)
        .expect("info")
        .parent
        .expect("parent");
    assert!(parent.trash && parent.id == id);
    assert_eq!(
        client.meta_get(&evidence, "pugmark.vm").expect("meta get"),
        Some("0f6c7a4e".into())
    );
    assert_eq!(client.meta_get(&evidence, "nokey").expect("meta get"), None);
    let info_in_trash = client.info_by_id(&vms, &id).expect("info by id");
    assert_eq!(info_in_trash.size, bytes.len() as u64);

    // Export streams exactly the image's bytes (oracle: the imported file).
    let mut stream = client
        .export(&evidence, None, Some(bytes.len() as u64))
        .expect("export");
    let mut sha = sha2::Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stream.read(&mut buf).expect("read export");
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        got += n as u64;
    }
    assert_eq!(got, bytes.len() as u64);
    assert_eq!(sha.finalize()[..], sha2::Sha256::digest(&bytes)[..]);
    // An export of an image that is not there fails at the end of the stream, typed.
    let mut missing = client.export(&ghost, None, None).expect("spawn export");
    let err = std::io::copy(&mut missing, &mut std::io::sink()).expect_err("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    // A stream shorter than the image is an error, never a whole image.
    let mut short = client
        .export(&evidence, None, Some(bytes.len() as u64 + 1))
        .expect("export");
    assert!(std::io::copy(&mut short, &mut std::io::sink()).is_err());

    // The trash deferment refuses a plain `trash rm` and `trash purge` before it ends.
    let refused = client.trash_remove(&vms, &id, false);
    assert!(refused.is_err(), "trash rm before expiry must be refused");
    client.trash_purge(&vms).expect("trash purge");
    assert!(
        client
            .trash_list(&vms)
            .expect("ls")
            .iter()
            .any(|e| e.id == id)
    );

    // rbd_move_to_trash_on_remove: what nova's and OpenNebula's `rbd rm` becomes.
    let nova_disk = vms.image("1a2b_disk").expect("spec");
    client.create(&nova_disk, 64 << 20).expect("create");
    let nova = Rbd::new(cluster.conf(), "nova")
        .with_option("rbd_move_to_trash_on_remove", "true")
        .with_option("rbd_move_to_trash_on_remove_expire_seconds", "604800");
    let nova_id = client.info(&nova_disk).expect("info").id;
    nova.remove(&nova_disk).expect("nova's rbd rm");
    let entry = client
        .trash_list(&vms)
        .expect("ls")
        .into_iter()
        .find(|e| e.id == nova_id)
        .expect("a plain rbd rm lands in the trash");
    assert_eq!(entry.name, "1a2b_disk");
    let left = entry
        .protected_until
        .map(|t| t.as_second() - Timestamp::now().as_second())
        .expect("a deferment");
    assert!(
        (604_800 - 60..=604_800 + 2).contains(&left),
        "7 days of deferment (rbd_move_to_trash_on_remove_expire_seconds), {left} s left"
    );
    // Without the option the same rm destroys the image (what the option is for).
    let plain_disk = vms.image("3c4d_disk").expect("spec");
    client.create(&plain_disk, 1 << 20).expect("create");
    client.remove(&plain_disk).expect("plain rm");
    assert!(
        !client
            .trash_list(&vms)
            .expect("ls")
            .iter()
            .any(|e| e.name == "3c4d_disk")
    );

    // Restore under a new name; never over an existing image.
    client
        .trash_restore(&vms, &nova_id, Some("1a2b_disk.restored"))
        .expect("restore");
    assert_eq!(
        client
            .info(&vms.image("1a2b_disk.restored").expect("spec"))
            .expect("restored")
            .id,
        nova_id
    );
    let taken = vms.image("taken").expect("spec");
    client.create(&taken, 1 << 20).expect("create");
    let t_id = client.trash_move(&taken, None).expect("mv");
    client.create(&taken, 1 << 20).expect("create again");
    assert!(matches!(
        client.trash_restore(&vms, &t_id, None),
        Err(RbdError::Exists { .. })
    ));
    client
        .trash_remove(&vms, &t_id, false)
        .expect("no deferment: plain rm works");

    // Purge the evidence chain: clone, then the parent's snapshot (by id, in the trash), then
    // the parent itself.
    client.remove(&evidence).expect("rm clone");
    client
        .snap_unprotect_by_id(&vms, &id, "pugmark-q-1")
        .expect("unprotect in trash");
    client
        .snap_remove_by_id(&vms, &id, "pugmark-q-1")
        .expect("snap rm in trash");
    client
        .trash_remove(&vms, &id, true)
        .expect("trash rm --force");
    assert!(
        !client
            .trash_list(&vms)
            .expect("ls")
            .iter()
            .any(|e| e.id == id)
    );

    // The cluster is healthy enough to answer.
    let health = client.health().expect("ceph health");
    assert!(health.status.starts_with("HEALTH_"), "{health:?}");

    // A cluster that does not answer: typed as unavailable, within the deadline.
    cluster.kill_mon().expect("kill mon");
    let short = Rbd::new(cluster.conf(), "pugmark").with_timeout(Duration::from_secs(3));
    let t0 = Instant::now();
    let down = short.list(&vms).expect_err("no monitor");
    assert!(down.is_unavailable(), "{down}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(short.health().is_err_and(|e| e.is_unavailable()));
    drop(cluster);
}
