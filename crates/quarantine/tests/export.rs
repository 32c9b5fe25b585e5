//! `quarantine export` through the store with the file backend: the copy equals the kept
//! image and its digests are the custody record's; an export that fails part-way (the
//! destination file system fills up: a real tmpfs) leaves no partial file that could pass
//! for the image, records no `exported` step, and the next export succeeds.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use quarantine::custody::Step;
use quarantine::policy::Config;
use quarantine::{CaptureMode, CaptureSpec, Quarantine, Source};

const VM: &str = "0f6c2e8a-1b2c-4d3e-8f90-a1b2c3d4e5f6";

struct Umount(std::path::PathBuf);
impl Drop for Umount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failed_export_leaves_nothing_and_records_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let roots = tmp.path().join("disks");
    std::fs::create_dir_all(&roots).expect("roots");
    let config = Config::parse(&format!(
        "version = 1\nstore = {:?}\nroots = [{:?}]\nreserve_bytes = 0\n",
        tmp.path().join("store").display().to_string(),
        roots.display().to_string()
    ))
    .expect("config");
    let q = Quarantine::open(config, Vec::new()).expect("open");
    // 4 MiB + a bit of bytes that do not compress or repeat.
    let disk = roots.join("disk.raw");
    let data: Vec<u8> = (0..(4u64 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&disk, &data).expect("disk");
    let item = q
        .capture(&CaptureSpec {
            vm_uuid: VM.into(),
            project: None,
            images: vec![(Source::Path { path: disk }, None)],
            mode: CaptureMode::Take,
            by: "test".into(),
            reason: None,
            hash: true,
        })
        .remove(0)
        .expect("kept");
    let kept = item.digests.clone().expect("hashed at capture");

    let steps = |q: &Quarantine| -> Vec<Step> {
        q.journal()
            .read()
            .expect("journal")
            .into_iter()
            .filter_map(|r| r.step)
            .collect()
    };
    let exported = |q: &Quarantine| steps(q).iter().filter(|s| **s == Step::Exported).count();

    // A full destination: a 1 MiB tmpfs (root only; CI runs as root).
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let _u = Umount(small.clone());
        let out = small.join("image.raw");
        let err = q
            .export(&item.id, &out, "examiner")
            .expect_err("a 4 MiB image does not fit in 1 MiB");
        assert!(
            err.to_string().contains("No space") || err.to_string().contains("space"),
            "{err}"
        );
        assert!(
            !out.try_exists().expect("stat"),
            "no partial export left behind"
        );
        assert_eq!(
            exported(&q),
            0,
            "a failed export is not recorded as exported"
        );
    } else {
        eprintln!("SKIPPED (the full-disk part): needs root to mount a tmpfs");
    }

    // Then a good export: the bytes, the digests of the custody record, mode 0600.
    let out = tmp.path().join("image.raw");
    let (_, d) = q.export(&item.id, &out, "examiner").expect("export");
    assert_eq!(d, kept);
    assert_eq!(std::fs::read(&out).expect("read"), data);
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(exported(&q), 1);
    // Never over an existing file.
    assert!(q.export(&item.id, &out, "examiner").is_err());
    assert_eq!(exported(&q), 1);
}
