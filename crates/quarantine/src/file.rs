//! The file backend: qcow2/raw disks on a hypervisor kept under `STORE/images/`.
//!
//! Capture, in order of preference:
//! - **rename** ([`CaptureMode::Take`], same file system): `renameat2(RENAME_NOREPLACE)`,
//!   O(1) whatever the size; atomic, so a crash leaves the disk at exactly one of its two
//!   names.
//! - **reflink** (XFS, btrfs; [`CaptureMode::Copy`], or a take across file systems that
//!   share extents): `FICLONE` into `STORE/images/.ID.partial`, fsync, rename to `ID`.
//! - **copy**: a streaming copy into `.ID.partial` hashed on the way (BLAKE3 + SHA-256),
//!   all-zero chunks skipped as holes so a sparse disk stays sparse, fsync, rename to `ID`.
//!   For a take, the original is unlinked only after the copy is durable.
//!
//! So a kill -9 at any point leaves the original in place (and maybe a `.partial`, removed
//! at next open) or the kept image in place; never neither. Refused: a path that is not
//! absolute, contains `..`, is a symlink (itself or a directory on the way, found by
//! canonicalising the parent), is not a regular file, or lies outside every configured
//! root. A copy that would leave less than the reserve free is refused with
//! [`BackendError::NoSpace`]; nothing is deleted to make room.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use jiff::Timestamp;

use crate::backend::{
    Backend, BackendError, CaptureMode, CaptureRequest, Health, ImageRef, Kept, Listed, Source,
};
use crate::hash::{self, Digests};

/// Images kept as files under one directory.
pub struct FileBackend {
    images: PathBuf,
    roots: Vec<PathBuf>,
    reserve: u64,
}

impl FileBackend {
    /// Images under `images` (created 0700), taken only from under `roots`; copies must
    /// leave `reserve` bytes free.
    pub fn new(images: PathBuf, roots: Vec<PathBuf>, reserve: u64) -> io::Result<FileBackend> {
        fs::create_dir_all(&images)?;
        fs::set_permissions(&images, fs::Permissions::from_mode(0o700))?;
        // Leftovers of a capture killed mid-copy: the original is still in place.
        for e in fs::read_dir(&images)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".partial") {
                fs::remove_file(e.path())?;
            }
        }
        let roots = roots
            .into_iter()
            .map(|r| fs::canonicalize(&r).unwrap_or(r))
            .collect();
        Ok(FileBackend {
            images,
            roots,
            reserve,
        })
    }

    /// Check a source path; returns it (absolute, no symlink anywhere on the way).
    pub fn check_path(&self, path: &Path) -> Result<PathBuf, BackendError> {
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(BackendError::Refused(format!(
                "{} is not an absolute path without ..",
                path.display()
            )));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(BackendError::Refused(format!(
                "{} has no file name",
                path.display()
            )));
        };
        let real_parent = fs::canonicalize(parent)
            .map_err(|e| BackendError::Refused(format!("{}: {e}", parent.display())))?;
        if real_parent != parent {
            return Err(BackendError::Refused(format!(
                "{} goes through a symlink ({} is {})",
                path.display(),
                parent.display(),
                real_parent.display()
            )));
        }
        if !self.roots.iter().any(|r| real_parent.starts_with(r)) {
            return Err(BackendError::Refused(format!(
                "{} is outside the configured roots ({})",
                path.display(),
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let md = fs::symlink_metadata(path)
            .map_err(|e| BackendError::Refused(format!("{}: {e}", path.display())))?;
        if md.file_type().is_symlink() {
            return Err(BackendError::Refused(format!(
                "{} is a symlink",
                path.display()
            )));
        }
        if !md.file_type().is_file() {
            return Err(BackendError::Refused(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(real_parent.join(name))
    }

    fn kept_path(&self, id: &str) -> Result<PathBuf, BackendError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(BackendError::Refused(format!("bad item id {id:?}")));
        }
        Ok(self.images.join(id))
    }

    fn free(&self) -> io::Result<u64> {
        let s = rustix::fs::statvfs(&self.images).map_err(io::Error::from)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Copy `src` to `dst` (which must not exist): reflink if the file system can, else a
    /// streaming hashed copy. Durable (file and directory synced) when it returns.
    fn copy_into(&self, src: &Path, dst: &Path) -> Result<(String, Option<Digests>), BackendError> {
        let partial = dst.with_file_name(format!(
            ".{}.partial",
            dst.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let mut input =
            File::open(src).map_err(|e| BackendError::io(format!("open {}", src.display()), e))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&partial)
            .map_err(|e| BackendError::io(format!("create {}", partial.display()), e))?;
        let result = (|| {
            let (method, digests) = if rustix::fs::ioctl_ficlone(&out, &input).is_ok() {
                ("reflink".to_string(), None)
            } else {
                let md = input
                    .metadata()
                    .map_err(|e| BackendError::io(format!("stat {}", src.display()), e))?;
                let needed = md.blocks() * 512;
                let free = self
                    .free()
                    .map_err(|e| BackendError::io("statvfs of the store", e))?;
                if free < needed.saturating_add(self.reserve) {
                    return Err(BackendError::NoSpace { needed, free });
                }
                let mut w = SparseWriter {
                    file: &mut out,
                    pos: 0,
                };
                let d = hash::copy_hashed(&mut input, &mut w)
                    .map_err(|e| BackendError::io(format!("copy {}", src.display()), e))?;
                out.set_len(d.size)
                    .map_err(|e| BackendError::io("set length", e))?;
                ("copy".to_string(), Some(d))
            };
            out.sync_all()
                .map_err(|e| BackendError::io(format!("fsync {}", partial.display()), e))?;
            rename_noreplace(&partial, dst)?;
            sync_dir(dst)?;
            Ok((method, digests))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    }
}

/// `OpenOptions` with mode 0600 (the store's files are readable by root/pugmark only).
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// A writer that turns all-zero chunks into holes (seek instead of write): a sparse disk
/// stays sparse in the quarantine. The caller sets the final length.
struct SparseWriter<'a> {
    file: &'a mut File,
    pos: u64,
}

impl Write for SparseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.iter().all(|b| *b == 0) {
            self.pos += buf.len() as u64;
            return Ok(buf.len());
        }
        self.file.seek(SeekFrom::Start(self.pos))?;
        self.file.write_all(buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Rename without replacing anything at `to` (EEXIST if something is there).
fn rename_noreplace(from: &Path, to: &Path) -> Result<(), BackendError> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| {
        BackendError::io(
            format!("rename {} to {}", from.display(), to.display()),
            e.into(),
        )
    })
}

/// fsync the directory holding `path` (a rename or unlink is durable only then).
fn sync_dir(path: &Path) -> Result<(), BackendError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackendError::io(format!("fsync {}", dir.display()), e))
}

impl Backend for FileBackend {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn capture(&self, req: &CaptureRequest) -> Result<Kept, BackendError> {
        let Source::Path { path } = &req.source else {
            return Err(BackendError::Refused(format!(
                "{} is not a file source",
                req.source
            )));
        };
        let src = self.check_path(path)?;
        let dst = self.kept_path(&req.id)?;
        let size = fs::metadata(&src)
            .map_err(|e| BackendError::io(format!("stat {}", src.display()), e))?
            .len();
        let (method, digests) = match req.mode {
            CaptureMode::Take => match rename_noreplace(&src, &dst) {
                Ok(()) => {
                    sync_dir(&dst)?;
                    sync_dir(&src)?;
                    ("rename".to_string(), None)
                }
                Err(BackendError::Io { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) =>
                {
                    let got = self.copy_into(&src, &dst)?;
                    // Only now, with the copy durable, does the original go.
                    fs::remove_file(&src)
                        .map_err(|e| BackendError::io(format!("unlink {}", src.display()), e))?;
                    sync_dir(&src)?;
                    got
                }
                Err(e) => return Err(e),
            },
            CaptureMode::Copy => self.copy_into(&src, &dst)?,
        };
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o600))
            .map_err(|e| BackendError::io(format!("chmod {}", dst.display()), e))?;
        Ok(Kept {
            locator: dst.display().to_string(),
            size,
            method,
            digests,
        })
    }

    fn hold(&self, _image: &ImageRef, _until: Option<Timestamp>) -> Result<(), BackendError> {
        // Files have no deferment of their own: only the core purges them.
        Ok(())
    }

    fn open(&self, image: &ImageRef) -> Result<Box<dyn Read + Send>, BackendError> {
        let p = self.kept_path(&image.id)?;
        let f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BackendError::NotFound(p.display().to_string()),
            _ => BackendError::io(format!("open {}", p.display()), e),
        })?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }

    fn export_file(&self, image: &ImageRef, out: &File) -> Result<Digests, BackendError> {
        let p = self.kept_path(&image.id)?;
        let f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BackendError::NotFound(p.display().to_string()),
            _ => BackendError::io(format!("open {}", p.display()), e),
        })?;
        hash::copy_file_hashed(&f, out)
            .map_err(|e| BackendError::io(format!("export {}", p.display()), e))
    }

    fn restore(&self, image: &ImageRef, to: &Source) -> Result<(), BackendError> {
        let Source::Path { path } = to else {
            return Err(BackendError::Refused(format!("{to} is not a file path")));
        };
        if fs::symlink_metadata(path).is_ok() {
            return Err(BackendError::Refused(format!(
                "{} exists: restore never overwrites",
                path.display()
            )));
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let real = fs::canonicalize(parent)
            .map_err(|e| BackendError::Refused(format!("{}: {e}", parent.display())))?;
        if !self.roots.iter().any(|r| real.starts_with(r)) {
            return Err(BackendError::Refused(format!(
                "{} is outside the configured roots",
                path.display()
            )));
        }
        let src = self.kept_path(&image.id)?;
        self.copy_into(&src, path)?;
        Ok(())
    }

    fn purge(&self, image: &ImageRef) -> Result<(), BackendError> {
        let p = self.kept_path(&image.id)?;
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(&p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BackendError::NotFound(p.display().to_string()))
            }
            Err(e) => Err(BackendError::io(format!("unlink {}", p.display()), e)),
        }
    }

    fn list(&self) -> Result<Vec<Listed>, BackendError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.images)
            .map_err(|e| BackendError::io(format!("list {}", self.images.display()), e))?;
        for e in rd {
            let e = e.map_err(|e| BackendError::io("list images", e))?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            out.push(Listed {
                locator: e.path().display().to_string(),
                size: e.metadata().ok().map(|m| m.len()),
                id: Some(name),
            });
        }
        out.sort_by(|a, b| a.locator.cmp(&b.locator));
        Ok(out)
    }

    fn health(&self) -> Health {
        match self.free() {
            Ok(free) => Health {
                up: free > self.reserve,
                detail: if free > self.reserve {
                    "ok".into()
                } else {
                    format!(
                        "store volume has {free} bytes free, reserve {}",
                        self.reserve
                    )
                },
                free_bytes: Some(free),
            },
            Err(e) => Health {
                up: false,
                detail: format!("statvfs {}: {e}", self.images.display()),
                free_bytes: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> io::Result<(tempfile::TempDir, FileBackend, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("images");
        fs::create_dir(&root)?;
        let b = FileBackend::new(dir.path().join("store/images"), vec![root.clone()], 0)?;
        Ok((dir, b, root))
    }

    fn req(id: &str, path: &Path, mode: CaptureMode) -> CaptureRequest {
        CaptureRequest {
            id: id.into(),
            source: Source::Path { path: path.into() },
            vm_uuid: "u".into(),
            mode,
            keep_until: None,
        }
    }

    #[test]
    fn take_renames_copy_copies_and_hashes_match() -> Result<(), Box<dyn std::error::Error>> {
        let (_d, b, root) = setup()?;
        let disk = root.join("a.raw");
        fs::write(&disk, b"disk bytes")?;
        let k = b.capture(&req("q-1", &disk, CaptureMode::Copy))?;
        assert!(disk.try_exists()?);
        let k2 = b.capture(&req("q-2", &disk, CaptureMode::Take))?;
        assert_eq!(k2.method, "rename");
        assert!(!disk.try_exists()?);
        let r = ImageRef {
            id: "q-2".into(),
            locator: k2.locator,
            size: k2.size,
        };
        let v = b.verify(&r)?;
        if let Some(d) = k.digests {
            assert_eq!(d, v);
        }
        assert_eq!(
            fs::metadata(b.kept_path("q-2")?)?.permissions().mode() & 0o777,
            0o600
        );
        b.restore(&r, &Source::Path { path: disk.clone() })?;
        assert_eq!(fs::read(&disk)?, b"disk bytes");
        assert!(b.restore(&r, &Source::Path { path: disk.clone() }).is_err());
        assert_eq!(b.list()?.len(), 2);
        b.purge(&r)?;
        assert_eq!(b.list()?.len(), 1);
        Ok(())
    }

    #[test]
    fn refuses_symlinks_outside_roots_and_non_files() -> Result<(), Box<dyn std::error::Error>> {
        let (d, b, root) = setup()?;
        let outside = d.path().join("secret");
        fs::write(&outside, b"x")?;
        std::os::unix::fs::symlink(&outside, root.join("link.qcow2"))?;
        std::os::unix::fs::symlink(d.path(), root.join("dirlink"))?;
        fs::create_dir(root.join("sub"))?;
        for (p, why) in [
            (outside.clone(), "outside"),
            (root.join("link.qcow2"), "symlink"),
            (root.join("dirlink/secret"), "symlink"),
            (root.join("sub"), "regular"),
            (root.join("../secret"), ".."),
            (PathBuf::from("rel.qcow2"), "absolute"),
        ] {
            let e = b.capture(&req("q-x", &p, CaptureMode::Take));
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(why), "{}: {msg}", p.display());
        }
        assert!(outside.try_exists()?);
        Ok(())
    }
}
