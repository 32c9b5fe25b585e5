//! `pugmark quarantine inspect`: what an examiner needs first from a kept image, read-only,
//! without booting or mounting it.
//!
//! 1. A qcow2 image (header `QFI\xfb`) is first flattened by the real `qemu-img convert -O
//!    raw` into a sparse temporary file inside the store (0600, removed afterwards); its
//!    backing chain is given to qemu through `json:` options naming the *kept* backing items,
//!    because the header still names the path the backing file had before capture (the kept
//!    image is never rebased or otherwise written).
//! 2. Partitions: GPT (crate `gpt`, opened read-only), else MBR (crate `mbrman`), else the
//!    whole disk as one file system.
//! 3. File systems: ext2/3/4 are opened by `ext4-view` (pure Rust, read-only by design); each
//!    is searched for the VM's own logs — `/var/log/secure`, `auth.log`, `messages`, `syslog`
//!    and their `.1` rotations, and systemd journal files (`/var/log/journal/*/*.journal`,
//!    listed, and exported as text by the real `journalctl --file` when it is installed).
//!    Other file systems are named by their magic and left to the examiner.
//!
//! Log contents are bounded ([`MAX_LOG`] per file): a VM's root can fill its disk with "logs".
//! What is found is the VM's own account, forgeable by its root: stored as observer `image`.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::store::{Item, Quarantine, StoreError};

/// Most bytes read from one log file on an image.
pub const MAX_LOG: u64 = 64 << 20;

/// Log files looked for on each ext file system.
pub const LOG_PATHS: &[&str] = &[
    "/var/log/secure",
    "/var/log/secure.1",
    "/var/log/auth.log",
    "/var/log/auth.log.1",
    "/var/log/messages",
    "/var/log/messages.1",
    "/var/log/syslog",
    "/var/log/syslog.1",
];

/// One partition (or the whole disk, number 0, table `none`).
#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    /// Partition number (1-based; 0 = whole disk).
    pub number: u32,
    /// `gpt`, `mbr` or `none`.
    pub table: String,
    /// Byte offset.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// GPT name or MBR type.
    pub label: String,
    /// `ext4` (ext2/3/4), `xfs`, `btrfs`, `swap`, `vfat`, … when recognised.
    pub filesystem: Option<String>,
}

/// A log file found on a file system of the image.
#[derive(Clone, Debug, Serialize)]
pub struct Log {
    /// Partition number.
    pub partition: u32,
    /// Path on the image's file system.
    pub path: String,
    /// Size on the image.
    pub size: u64,
    /// Lines read (for journal files: lines `journalctl` printed).
    pub lines: u64,
    /// `text` or `journal`.
    pub kind: String,
    /// The text (bounded), for ingestion; not in the JSON.
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// What `inspect` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The item.
    pub id: String,
    /// The VM.
    pub vm_uuid: String,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Logs found.
    pub logs: Vec<Log>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// Removes the temporary raw image when dropped.
struct TempRaw(Option<PathBuf>);

impl Drop for TempRaw {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn is_qcow2(path: &Path) -> std::io::Result<bool> {
    let mut b = [0u8; 4];
    let mut f = File::open(path)?;
    Ok(f.read(&mut b)? == 4 && b == *b"QFI\xfb")
}

/// The qemu `json:` description of a kept qcow2 item with its kept backing chain.
fn qemu_json(q: &Quarantine, item: &Item, depth: usize) -> Result<serde_json::Value, StoreError> {
    let path = PathBuf::from(&item.locator);
    let qcow = is_qcow2(&path).map_err(|e| StoreError::Io {
        what: format!("read {}", path.display()),
        source: e,
    })?;
    let file = serde_json::json!({"driver": "file", "filename": item.locator});
    if !qcow {
        return Ok(serde_json::json!({"driver": "raw", "file": file}));
    }
    let backing = q
        .items()?
        .into_iter()
        .find(|b| b.backing_of.as_deref() == Some(item.id.as_str()));
    let backing = match backing {
        Some(b) if depth < 16 => qemu_json(q, &b, depth + 1)?,
        _ => serde_json::Value::Null,
    };
    Ok(serde_json::json!({"driver": "qcow2", "file": file, "backing": backing}))
}

/// Inspect a kept file image (RBD images: export it first).
pub fn inspect(q: &Quarantine, item: &Item) -> Result<Report, StoreError> {
    let mut report = Report {
        id: item.id.clone(),
        vm_uuid: item.vm_uuid.clone(),
        ..Report::default()
    };
    if item.backend != "file" {
        report.notes.push(format!(
            "{} images are inspected after `pugmark quarantine export`",
            item.backend
        ));
        return Ok(report);
    }
    let kept = PathBuf::from(&item.locator);
    let io = |what: String| move |e: std::io::Error| StoreError::Io { what, source: e };
    let mut temp = TempRaw(None);
    let raw = if is_qcow2(&kept).map_err(io(format!("read {}", kept.display())))? {
        report.format = "qcow2".into();
        let spec = qemu_json(q, item, 0)?;
        let out = q.dir().join(format!(".inspect-{}.raw", item.id));
        let _ = fs::remove_file(&out);
        temp.0 = Some(out.clone());
        let st = Command::new("qemu-img")
            .args(["convert", "-O", "raw", "-S", "4k"])
            .arg(format!("json:{spec}"))
            .arg(&out)
            .output()
            .map_err(io("qemu-img convert".into()))?;
        if !st.status.success() {
            report.notes.push(format!(
                "qemu-img convert: {}",
                String::from_utf8_lossy(&st.stderr).trim()
            ));
            return Ok(report);
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&out, fs::Permissions::from_mode(0o600));
        out
    } else {
        report.format = "raw".into();
        kept
    };
    let disk_size = fs::metadata(&raw)
        .map_err(io(format!("stat {}", raw.display())))?
        .len();
    report.partitions = partitions(&raw, disk_size, &mut report.notes);
    for p in report.partitions.iter_mut() {
        p.filesystem = sniff(&raw, p.start).ok().flatten();
    }
    for p in report.partitions.clone() {
        if p.filesystem.as_deref() == Some("ext4") {
            read_logs(&raw, &p, &mut report);
        }
    }
    Ok(report)
}

fn partitions(raw: &Path, disk_size: u64, notes: &mut Vec<String>) -> Vec<Partition> {
    let mut out = Vec::new();
    match gpt::GptConfig::new().writable(false).open(raw) {
        Ok(disk) => {
            let lb: u64 = (*disk.logical_block_size()).into();
            for (n, p) in disk.partitions() {
                out.push(Partition {
                    number: *n,
                    table: "gpt".into(),
                    start: p.first_lba.saturating_mul(lb),
                    size: (p.last_lba.saturating_sub(p.first_lba) + 1).saturating_mul(lb),
                    label: p.name.clone(),
                    filesystem: None,
                });
            }
            return out;
        }
        Err(e) => notes.push(format!("no GPT: {e}")),
    }
    if let Ok(mut f) = File::open(raw)
        && let Ok(mbr) = mbrman::MBR::read_from(&mut f, 512)
    {
        for (n, p) in mbr.iter() {
            if p.is_used() {
                out.push(Partition {
                    number: n as u32,
                    table: "mbr".into(),
                    start: u64::from(p.starting_lba) * 512,
                    size: u64::from(p.sectors) * 512,
                    label: format!("type 0x{:02x}", p.sys),
                    filesystem: None,
                });
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    out.push(Partition {
        number: 0,
        table: "none".into(),
        start: 0,
        size: disk_size,
        label: "whole disk".into(),
        filesystem: None,
    });
    out
}

/// The file system at `start` by its magic.
fn sniff(raw: &Path, start: u64) -> std::io::Result<Option<String>> {
    let mut f = File::open(raw)?;
    let mut b = vec![0u8; 70 * 1024];
    f.seek(SeekFrom::Start(start))?;
    let n = f.read(&mut b)?;
    b.truncate(n);
    let at = |o: usize, m: &[u8]| b.get(o..o + m.len()) == Some(m);
    Ok(if at(1024 + 56, &[0x53, 0xef]) {
        Some("ext4".into())
    } else if at(0, b"XFSB") {
        Some("xfs".into())
    } else if at(0x10040, b"_BHRfS_M") {
        Some("btrfs".into())
    } else if at(4086, b"SWAPSPACE2") {
        Some("swap".into())
    } else if at(82, b"FAT32") || at(54, b"FAT16") || at(54, b"FAT12") {
        Some("vfat".into())
    } else {
        None
    })
}

/// Reads an ext file system at an offset of the raw image.
struct At {
    file: File,
    start: u64,
}

impl ext4_view::Ext4Read for At {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.file
            .seek(SeekFrom::Start(self.start.saturating_add(start_byte)))?;
        self.file.read_exact(dst)?;
        Ok(())
    }
}

fn read_logs(raw: &Path, p: &Partition, report: &mut Report) {
    let ext = match File::open(raw).map_err(|e| e.to_string()).and_then(|file| {
        ext4_view::Ext4::load(Box::new(At {
            file,
            start: p.start,
        }))
        .map_err(|e| e.to_string())
    }) {
        Ok(ext) => ext,
        Err(e) => {
            report
                .notes
                .push(format!("partition {}: ext4: {e}", p.number));
            return;
        }
    };
    for path in LOG_PATHS {
        let Ok(md) = ext.metadata(*path) else {
            continue;
        };
        if md.is_dir() {
            continue;
        }
        let mut content = Vec::new();
        let read = ext.open(*path).map_err(|e| e.to_string()).and_then(|f| {
            f.take(MAX_LOG)
                .read_to_end(&mut content)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = read {
            report.notes.push(format!("{path}: {e}"));
            continue;
        }
        if md.len() > MAX_LOG {
            report
                .notes
                .push(format!("{path}: only the first {MAX_LOG} bytes read"));
        }
        report.logs.push(Log {
            partition: p.number,
            path: path.to_string(),
            size: md.len(),
            lines: content.iter().filter(|b| **b == b'\n').count() as u64,
            kind: "text".into(),
            content,
        });
    }
    // systemd journal files.
    let Ok(dirs) = ext.read_dir("/var/log/journal") else {
        return;
    };
    for d in dirs.flatten() {
        let dir = d.path();
        let Ok(files) = ext.read_dir(&dir) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            let name = path.to_str().unwrap_or_default().to_string();
            if !name.ends_with(".journal") {
                continue;
            }
            let size = ext.metadata(&path).map(|m| m.len()).unwrap_or(0);
            let mut log = Log {
                partition: p.number,
                path: name.clone(),
                size,
                lines: 0,
                kind: "journal".into(),
                content: Vec::new(),
            };
            match journal_text(&ext, &path, size) {
                Ok(t) => {
                    log.lines = t.iter().filter(|b| **b == b'\n').count() as u64;
                    log.content = t;
                }
                Err(e) => report.notes.push(format!("{name}: {e}")),
            }
            report.logs.push(log);
        }
    }
}

/// A journal file as text, through the real `journalctl --file` (short-iso, which the syslog
/// parser reads), from a bounded temporary copy.
fn journal_text(
    ext: &ext4_view::Ext4,
    path: &ext4_view::PathBuf,
    size: u64,
) -> Result<Vec<u8>, String> {
    if size > MAX_LOG {
        return Err(format!(
            "journal of {size} bytes not exported (limit {MAX_LOG})"
        ));
    }
    let bytes = ext.read(path).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("pugmark-journal-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tmp = dir.join("x.journal");
    let result = (|| {
        fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
        let out = Command::new("journalctl")
            .arg("--file")
            .arg(&tmp)
            .args(["-o", "short-iso", "--no-pager", "-q"])
            .output()
            .map_err(|e| format!("journalctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "journalctl: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}
