//! The whole quarantine cycle for VMs on Ceph RBD, through the core ([`Quarantine`]) and the
//! RBD backend, against a real single-node Ceph (scripts/ceph-single-node: Debian's ceph-mon,
//! ceph-osd, ceph-common 16.2 Pacific; one mon, one BlueStore osd on a sparse file, no auth,
//! loopback). One test function and one cluster; the steps run in order.
//!
//! The story: a nova VM on pool `vms` is deleted → its disk is kept (snapshot + clone into
//! `pugmark-evidence`, source to the trash with a deferment) with custody records → listed,
//! shown, exported with hashes to a 0600 file, verified → restored under a new name → held →
//! purged at expiry, leaving nothing in the pools or the trash. An OpenNebula VM on pool `one`
//! whose client runs with docs/CEPH.md's `rbd_move_to_trash_on_remove` block (extracted from
//! the doc and fed to the real client) is deleted by a plain `rbd rm` *before* pugmark acts:
//! the image is found in the trash and kept all the same. A hold on a live VM copies its disk
//! and leaves nothing on it. A dead monitor: the capture fails as unavailable after retries,
//! is recorded as failed and queued for a retry, health says down, and the source is
//! untouched once the mon is back (the retry by serve's timer: crates/pugmark/tests/quarantine.rs).
//!
//! Oracles: the bytes imported into each image (BLAKE3 and SHA-256 computed here), `rbd`'s own
//! listings. Bench only (bench/rbd, BENCHMARKS.md "Ceph RBD quarantine"): 10 GiB sparse images,
//! the ≤ 1 s capture target, clone + flatten against deep cp, export with hashes against
//! `rbd export` to a file.

// Deadlines relative to the wall clock (deferments, keep-until), not evidence times.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use quarantine::ceph::{CephBackend, CephConfig};
use quarantine::custody::Step;
use quarantine::policy::Config;
use quarantine::{Backend, BackendError, CaptureMode, CaptureSpec, Quarantine, Source, StoreError};
use rbd::testing::SingleNode;
use rbd::{PoolSpec, Rbd, Retry};
use sha2::Digest as _;

fn disk_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i >> 20) % 3 == 1 { 0 } else { x as u8 }
        })
        .collect()
}

fn import(conf: &Path, tmp: &Path, spec: &str, bytes: &[u8]) {
    let f = tmp.join("import.raw");
    std::fs::write(&f, bytes).expect("write");
    let st = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(["import", "--no-progress"])
        .arg(&f)
        .arg(spec)
        .status()
        .expect("rbd import");
    assert!(st.success(), "import {spec}");
}

fn rbd_source(pool: &str, image: &str) -> Source {
    Source::Rbd {
        pool: pool.into(),
        namespace: None,
        image: image.into(),
        snapshot: None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The ```ini block of docs/CEPH.md: the client options a site sets.
fn doc_client_block() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CEPH.md"))
            .expect("docs/CEPH.md");
    let start = doc.find("```ini\n").expect("an ini block") + "```ini\n".len();
    let len = doc[start..].find("```").expect("closed");
    doc[start..start + len].to_string()
}

/// The ```toml [rbd] block of docs/CEPH.md.
fn doc_rbd_block() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CEPH.md"))
            .expect("docs/CEPH.md");
    let start = doc.find("```toml\n[rbd]").expect("a toml block") + "```toml\n".len();
    let len = doc[start..].find("```").expect("closed");
    doc[start..start + len].to_string()
}

fn steps(q: &Quarantine, id: &str) -> Vec<Step> {
    q.custody(id)
        .expect("custody")
        .into_iter()
        .filter_map(|r| r.step)
        .collect()
}

#[test]
fn rbd_quarantine_cycle_against_a_single_node_ceph() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cluster = SingleNode::start_with_pools(
        &tmp.path().join("ceph"),
        &["vms", "one", "pugmark-evidence"],
    )
    .expect("start single-node ceph");
    eprintln!("ceph up in {:?}", cluster.started_in);
    let conf = cluster.conf().to_path_buf();
    // The site's client options, as docs/CEPH.md shows them, appended to the cluster's conf.
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push('\n');
    text.push_str(&doc_client_block());
    std::fs::write(&conf, text).expect("conf");
    let admin = Rbd::new(&conf, "admin");
    let vms = PoolSpec::new("vms", None).expect("pool");
    let one = PoolSpec::new("one", None).expect("pool");
    let evidence = PoolSpec::new("pugmark-evidence", None).expect("pool");

    // docs/CEPH.md's [rbd] block with this cluster's conf: the config the store opens with.
    let store = tmp.path().join("store");
    let rbd_block = doc_rbd_block().replace(
        "conf = \"/etc/ceph/ceph.conf\"",
        &format!("conf = {:?}", conf.display().to_string()),
    );
    let config = Config::parse(&format!(
        "version = 1\nstore = {:?}\n[policy]\nretention = \"7d\"\n{rbd_block}",
        store.display().to_string()
    ))
    .expect("config");
    let ceph_config: CephConfig = config.rbd.clone().expect("[rbd] present");
    assert_eq!(ceph_config.evidence_pool, "pugmark-evidence");
    let backends = quarantine::ceph::backends(&config).expect("backends");
    assert_eq!(backends.len(), 1);
    let q = Quarantine::open(config, backends).expect("open the store");

    // --- A nova VM on `vms`: deleted → kept.
    let nova_vm = "0f6c7a4e-3c1e-4f0c-9d2a-1b2c3d4e5f60";
    let nova_img = format!("{nova_vm}_disk");
    let nova_bytes = disk_bytes(10 << 20, 11);
    import(&conf, tmp.path(), &format!("vms/{nova_img}"), &nova_bytes);
    let t0 = Instant::now();
    let results = q.capture(&CaptureSpec {
        vm_uuid: nova_vm.into(),
        project: Some("atlas".into()),
        images: vec![(rbd_source("vms", &nova_img), None)],
        mode: CaptureMode::Take,
        by: "nova instance.delete.start".into(),
        reason: Some("policy".into()),
        hash: false,
    });
    let capture_time = t0.elapsed();
    eprintln!("capture (take, 10 MiB; O(1) calls): {capture_time:?}");
    let item = match results.as_slice() {
        [Ok(item)] => item.clone(),
        other => panic!("capture: {other:?}"),
    };
    assert_eq!(
        (item.backend.as_str(), item.method.as_str()),
        ("rbd", "trash")
    );
    assert_eq!(item.size, nova_bytes.len() as u64);
    assert!(
        item.locator.starts_with("pugmark-evidence/pugmark-q-")
            && item.locator.contains(" from trash:vms/"),
        "{}",
        item.locator
    );
    // The deleter's path is clear: nova's own rbd rm finds nothing (nova ignores ImageNotFound).
    let nova_spec = vms.image(&nova_img).expect("spec");
    assert!(admin.info(&nova_spec).is_err_and(|e| e.is_missing()));
    let trash = admin.trash_list(&vms).expect("trash ls");
    let entry = trash
        .iter()
        .find(|e| e.name == nova_img)
        .expect("source in the trash");
    let keep_until = item.keep_until.expect("7d policy");
    assert!(
        entry.protected_until.is_some_and(|u| u >= keep_until),
        "trash deferment {:?} must reach the policy's keep-until {keep_until}",
        entry.protected_until
    );
    // Pinned: even a forced trash rm of the source cannot destroy it while the evidence lives.
    assert!(admin.trash_remove(&vms, &entry.id, true).is_err());
    // Hash it now (the core hashes O(1) captures through the backend's stream).
    let item = q.hash_item(item).expect("hash");
    let d = item.digests.clone().expect("digests");
    assert_eq!(d.size, nova_bytes.len() as u64);
    assert_eq!(d.sha256, hex(&sha2::Sha256::digest(&nova_bytes)));
    assert_eq!(d.blake3, blake3::hash(&nova_bytes).to_hex().to_string());
    assert_eq!(
        steps(&q, &item.id),
        [Step::Capturing, Step::Captured, Step::Hashed]
    );

    // --- An OpenNebula VM on `one`, deleted by `rbd rm` as client.libvirt before pugmark acts.
    let one_vm = "7d1c0a8e-0000-4000-8000-000000000042";
    let one_img = "one-7-42-0";
    let one_bytes = disk_bytes(6 << 20, 23);
    import(&conf, tmp.path(), &format!("one/{one_img}"), &one_bytes);
    let oned = Rbd::new(&conf, "libvirt");
    oned.remove(&one.image(one_img).expect("spec"))
        .expect("OpenNebula's rbd rm");
    let in_trash = admin.trash_list(&one).expect("trash ls");
    let e = in_trash
        .iter()
        .find(|e| e.name == one_img)
        .expect("docs/CEPH.md's client option turned rbd rm into a trash move");
    assert_eq!(e.source, "USER");
    let results = q.capture(&CaptureSpec {
        vm_uuid: one_vm.into(),
        project: None,
        images: vec![(rbd_source("one", one_img), None)],
        mode: CaptureMode::Take,
        by: "opennebula hook DONE".into(),
        reason: None,
        hash: true,
    });
    let one_item = match results.as_slice() {
        [Ok(item)] => item.clone(),
        other => panic!("adoption from the trash: {other:?}"),
    };
    assert_eq!(
        one_item.digests.as_ref().map(|d| d.sha256.clone()),
        Some(hex(&sha2::Sha256::digest(&one_bytes)))
    );
    // The same trash entry is not adopted twice (it now carries pugmark's snapshot).
    let again = q.capture(&CaptureSpec {
        vm_uuid: one_vm.into(),
        project: None,
        images: vec![(rbd_source("one", one_img), None)],
        mode: CaptureMode::Take,
        by: "opennebula hook DONE (repeated)".into(),
        reason: None,
        hash: false,
    });
    assert!(
        matches!(
            again.as_slice(),
            [Err(StoreError::Backend(BackendError::Refused(_)))]
        ),
        "{again:?}"
    );

    // --- list / show: the store's items and what the backend really holds agree.
    let items = q.items().expect("items");
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [item.id.as_str(), one_item.id.as_str()]);
    let backend = CephBackend::new(ceph_config.clone()).expect("backend");
    let mut held: Vec<(Option<String>, String)> = backend
        .list()
        .expect("list")
        .into_iter()
        .map(|l| (l.id, l.locator))
        .collect();
    held.sort();
    let mut want: Vec<(Option<String>, String)> = items
        .iter()
        .map(|i| (Some(i.id.clone()), i.locator.clone()))
        .collect();
    want.sort();
    assert_eq!(
        held, want,
        "the evidence pool's tags name the items and their locators"
    );
    assert!(backend.health().up);

    // --- export with hashes into a 0600 file; verify.
    let out = tmp.path().join("export").join("nova.raw");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let (_, exported) = q.export(&item.id, &out, "operator alice").expect("export");
    assert_eq!(exported, d);
    let meta = std::fs::metadata(&out).expect("exported file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&out).expect("read"), nova_bytes);
    assert!(
        q.export(&item.id, &out, "operator alice").is_err(),
        "export never overwrites"
    );
    let (_, _, ok) = q.verify(&item.id, "operator alice").expect("verify");
    assert!(ok);

    // --- restore under a new name (the kept image stays); never over an existing image.
    let restored = rbd_source("vms", &format!("{nova_img}.restored"));
    q.restore(
        &item.id,
        Some(restored.clone()),
        "operator alice",
        "examination",
    )
    .expect("restore");
    let mut back = admin
        .export(
            &vms.image(&format!("{nova_img}.restored")).expect("spec"),
            None,
            None,
        )
        .expect("export restored");
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut back, &mut buf).expect("read restored");
    assert!(buf == nova_bytes, "restored bytes equal the original");
    assert!(matches!(
        q.restore(&item.id, Some(restored), "operator alice", "again"),
        Err(StoreError::Backend(BackendError::Refused(_)))
    ));
    let (_, _, ok) = q
        .verify(&item.id, "operator alice")
        .expect("verify after restore");
    assert!(ok, "restore leaves the kept image as it was");

    // --- a hold on a live VM: copy, and nothing of ours left on its image.
    let live_vm = "11111111-2222-4333-8444-555555555555";
    let live_img = format!("{live_vm}_disk");
    let live_bytes = disk_bytes(5 << 20, 5);
    import(&conf, tmp.path(), &format!("vms/{live_img}"), &live_bytes);
    q.hold(live_vm, None, "incident 4711", "operator alice")
        .expect("hold");
    let results = q.capture(&CaptureSpec {
        vm_uuid: live_vm.into(),
        project: None,
        images: vec![(rbd_source("vms", &live_img), None)],
        mode: CaptureMode::Copy,
        by: "operator alice".into(),
        reason: Some("incident 4711".into()),
        hash: true,
    });
    let live_item = match results.as_slice() {
        [Ok(i)] => i.clone(),
        other => panic!("copy: {other:?}"),
    };
    assert_eq!(live_item.method, "copy");
    assert_eq!(live_item.keep_until, None, "held without end");
    assert_eq!(
        live_item.digests.as_ref().map(|d| d.blake3.clone()),
        Some(blake3::hash(&live_bytes).to_hex().to_string())
    );
    let live_spec = vms.image(&live_img).expect("spec");
    assert!(admin.snap_list(&live_spec).expect("snap ls").is_empty());
    // so the cloud's plain rm of that image still works
    Rbd::new(&conf, "admin")
        .remove(&live_spec)
        .expect("rm live image");

    // --- expiry: holds keep their images; the rest go, leaving nothing behind.
    q.hold(
        nova_vm,
        Some(Timestamp::now() + (30 * 24).hours()),
        "case 12",
        "operator bob",
    )
    .expect("hold nova vm");
    let later = Timestamp::now() + (8 * 24).hours();
    let purged = q.expire(later).expect("expire");
    assert_eq!(
        purged,
        std::slice::from_ref(&one_item.id),
        "only the unheld OpenNebula disk is due"
    );
    assert!(steps(&q, &one_item.id).contains(&Step::Purged));
    assert!(
        !admin
            .trash_list(&one)
            .expect("ls")
            .iter()
            .any(|e| e.name == one_img),
        "the trashed source is destroyed with its evidence"
    );
    q.release(nova_vm, "case closed", "operator bob")
        .expect("release");
    q.release(live_vm, "case closed", "operator bob")
        .expect("release");
    // Released, the copy made while held falls back to its policy (7 days from its capture,
    // `released` record), so eight days on both go.
    let purged = q.expire(later).expect("expire");
    assert_eq!(
        purged,
        [item.id.clone(), live_item.id.clone()],
        "the released copy is kept for its policy, not forever"
    );
    assert!(steps(&q, &live_item.id).contains(&Step::Released));
    assert!(
        admin.list(&evidence).expect("ls").is_empty(),
        "evidence pool empty"
    );
    assert!(
        admin.trash_list(&vms).expect("ls").is_empty(),
        "vms trash empty: {:?}",
        admin.trash_list(&vms)
    );
    assert!(admin.trash_list(&one).expect("ls").is_empty());

    // --- a cluster that does not answer: retried, recorded as failed, health down; the
    // source is untouched.
    let down_vm = "99999999-0000-4000-8000-000000000001";
    let down_img = format!("{down_vm}_disk");
    import(
        &conf,
        tmp.path(),
        &format!("vms/{down_img}"),
        &disk_bytes(1 << 20, 3),
    );
    drop(q);
    let short = CephConfig {
        timeout_secs: 2,
        attempts: 2,
        ..ceph_config.clone()
    };
    let down_backend = CephBackend::new(short.clone())
        .expect("backend")
        .with_retry(Retry {
            attempts: 2,
            first_wait: Duration::from_millis(100),
            max_wait: Duration::from_millis(100),
        });
    let config = Config::parse(&format!(
        "version = 1\nstore = {:?}\n[policy]\nretention = \"7d\"\n",
        store.display().to_string()
    ))
    .expect("config");
    let q = Quarantine::open(config, vec![Box::new(down_backend)]).expect("reopen");
    cluster.kill_mon().expect("kill mon");
    let t0 = Instant::now();
    let results = q.capture(&CaptureSpec {
        vm_uuid: down_vm.into(),
        project: None,
        images: vec![(rbd_source("vms", &down_img), None)],
        mode: CaptureMode::Take,
        by: "nova instance.delete.start".into(),
        reason: None,
        hash: false,
    });
    eprintln!("capture with the mon down failed after {:?}", t0.elapsed());
    // Failed, recorded, and queued to be tried again (`[retry]`).
    let err = match results.as_slice() {
        [
            Err(StoreError::Retrying {
                error, attempt: 1, ..
            }),
        ] => match error.as_ref() {
            StoreError::Backend(e) => e.to_string(),
            other => panic!("not the backend's error: {other:?}"),
        },
        other => panic!("a capture that cannot happen must fail: {other:?}"),
    };
    assert_eq!(q.pending().expect("pending").len(), 1);
    assert!(err.starts_with("unavailable:"), "{err}");
    assert!(
        q.items().expect("items").is_empty(),
        "no item for a capture that did not happen"
    );
    let journal = q.journal().read().expect("journal");
    let failed = journal.last().expect("records");
    assert_eq!(failed.step, Some(Step::Failed));
    assert!(
        failed
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("unavailable"))
    );
    let probe = CephBackend::new(short)
        .expect("backend")
        .with_retry(Retry::once());
    let h = probe.health();
    assert!(!h.up, "{h:?}");
    let stats = q.backends()[1].kind();
    assert_eq!(stats, "rbd");
    cluster.restart_mon().expect("mon back");
    let info = admin
        .info(&vms.image(&down_img).expect("spec"))
        .expect("the source is untouched");
    assert!(
        admin
            .snap_list(&vms.image(&down_img).expect("spec"))
            .expect("snaps")
            .is_empty()
    );
    assert_eq!(info.size, 1 << 20);
    assert!(probe.health().up);
    drop(cluster);
}

#[test]
fn cluster_down_counts_for_metrics() {
    // No cluster at all: a conf naming a port nobody listens on.
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("ceph.conf");
    std::fs::write(
        &conf,
        "[global]\nfsid = 00000000-0000-0000-0000-000000000000\nmon host = 127.0.0.1:9\nauth client required = none\n",
    )
    .expect("conf");
    let b = CephBackend::new(CephConfig {
        conf,
        timeout_secs: 1,
        ..CephConfig::default()
    })
    .expect("backend")
    .with_retry(Retry {
        attempts: 3,
        first_wait: Duration::from_millis(10),
        max_wait: Duration::from_millis(10),
    });
    let h = b.health();
    assert!(!h.up);
    let s = b.stats();
    assert_eq!((s.unavailable_total, s.gave_up_total), (3, 1), "{s:?}");
    assert!(s.last_error.is_some_and(|e| e.contains("unavailable")));
}
