//! BLAKE3 and SHA-256 of an image, computed while it streams, never whole in memory.
//!
//! Every custody record carries both: BLAKE3 because pugmark's ledger uses it and it is fast,
//! SHA-256 because every forensic tool and examiner can check it. The stream is cut into
//! 1 MiB chunks; the two hashes run on two threads of their own while the calling thread
//! reads and writes, so a copy with hashes costs about what the slowest of read+write,
//! BLAKE3 and SHA-256 (SHA-NI where the CPU has it) costs alone. Memory is bounded by the
//! channel depth (a few chunks per hasher).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Chunk size of the streaming copy.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued per hasher thread.
const DEPTH: usize = 4;

/// Size and hashes of a byte stream, hex lowercase: what custody records and `verify` compare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Bytes hashed.
    pub size: u64,
    /// BLAKE3, 64 hex digits.
    pub blake3: String,
    /// SHA-256, 64 hex digits.
    pub sha256: String,
}

/// Hash everything `reader` yields.
pub fn hash_reader(reader: &mut dyn Read) -> io::Result<Digests> {
    copy_hashed(reader, &mut io::sink())
}

/// Copy `reader` to `writer`, hashing on the way; returns the digests of the bytes copied.
/// The caller syncs `writer` if it must be durable.
pub fn copy_hashed(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<Digests> {
    std::thread::scope(|scope| {
        let (b3_tx, b3_rx) = sync_channel::<Arc<Vec<u8>>>(DEPTH);
        let (sha_tx, sha_rx) = sync_channel::<Arc<Vec<u8>>>(DEPTH);
        let b3 = scope.spawn(move || {
            let mut h = blake3::Hasher::new();
            for chunk in b3_rx {
                h.update(&chunk);
            }
            h.finalize().to_hex().to_string()
        });
        let sha = scope.spawn(move || {
            let mut h = sha2::Sha256::new();
            for chunk in sha_rx {
                h.update(&chunk[..]);
            }
            hex(&h.finalize())
        });
        let mut size = 0u64;
        // Chunks the hashers may still hold, oldest first: one both have dropped is reused
        // (a fresh zeroed 1 MiB buffer per chunk costs 256 page faults).
        let mut inflight: VecDeque<Arc<Vec<u8>>> = VecDeque::new();
        let copied = (|| -> io::Result<()> {
            loop {
                let reusable = inflight.front().is_some_and(|a| Arc::strong_count(a) == 1);
                let mut buf = match inflight.pop_front() {
                    Some(a) if reusable => Arc::try_unwrap(a).unwrap_or_default(),
                    Some(a) => {
                        inflight.push_front(a);
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                buf.resize(CHUNK, 0);
                let n = read_full(reader, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                writer.write_all(&buf)?;
                size += n as u64;
                let chunk = Arc::new(buf);
                // A hasher thread only stops by its receiver being dropped, which happens
                // after these sends; a send error means it panicked — reported below.
                let _ = b3_tx.send(Arc::clone(&chunk));
                let _ = sha_tx.send(Arc::clone(&chunk));
                inflight.push_back(chunk);
                // Bounded: never more than the channels can hold plus the ones being hashed.
                if inflight.len() > 2 * DEPTH + 4 {
                    inflight.pop_front();
                }
            }
        })();
        drop(b3_tx);
        drop(sha_tx);
        let blake3 = b3
            .join()
            .map_err(|_| io::Error::other("blake3 thread panicked"))?;
        let sha256 = sha
            .join()
            .map_err(|_| io::Error::other("sha256 thread panicked"))?;
        copied?;
        writer.flush()?;
        Ok(Digests {
            size,
            blake3,
            sha256,
        })
    })
}

/// Bytes one `copy_file_range` round moves before the hashers are told (8 MiB: large enough
/// that the system calls do not count, small enough that the hashers follow closely and read
/// the copy while it is still in the page cache).
const FILE_ROUND: u64 = 8 << 20;

/// Copy file `src` (from its current offset) to file `dst` in the kernel — `copy_file_range`
/// through `std::io::copy`'s Linux specialisation, with its own fallbacks — and hash the bytes
/// **as written**: a follower reads back each range of `dst` once the copier has written it
/// and streams it through [`copy_hashed`]'s hasher threads.
///
/// Why not [`copy_hashed`]: on the virtual disks this runs on, a `read`/`write` copy through
/// user buffers is 2× slower than `cp` right after a `cp` (the kernel's page-cache copies in
/// `write` cost 3–4× more, measured with `dd` alone; BENCHMARKS.md, issue 13), while an
/// in-kernel copy is not. Reading the fresh copy back costs one page-cache read, done while
/// the copier goes on, on the other core. The caller syncs `dst`.
pub fn copy_file_hashed(src: &std::fs::File, dst: &std::fs::File) -> io::Result<Digests> {
    use std::sync::mpsc::channel;
    std::thread::scope(|scope| {
        // The copier reports how far `dst` is written; dropping the sender ends the stream.
        let (progress_tx, progress_rx) = channel::<u64>();
        let copier = scope.spawn(move || -> io::Result<u64> {
            let mut total = 0u64;
            loop {
                let n = io::copy(&mut Read::take(src, FILE_ROUND), &mut &*dst)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n;
                if progress_tx.send(total).is_err() {
                    // The follower failed; its error is the one reported.
                    return Ok(total);
                }
            }
        });
        let mut follow = Follow {
            file: dst,
            pos: 0,
            written: 0,
            progress: progress_rx,
        };
        let digests = copy_hashed(&mut follow, &mut io::sink());
        drop(follow);
        let copied = copier
            .join()
            .map_err(|_| io::Error::other("copy thread panicked"))??;
        let digests = digests?;
        if digests.size != copied {
            return Err(io::Error::other(format!(
                "hashed {} bytes of the {} copied",
                digests.size, copied
            )));
        }
        Ok(digests)
    })
}

/// Reads `file` from offset 0 no further than the copier has written (blocking until it has
/// written more, end of stream once it stops).
struct Follow<'a> {
    file: &'a std::fs::File,
    pos: u64,
    written: u64,
    progress: std::sync::mpsc::Receiver<u64>,
}

impl Read for Follow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        while self.pos >= self.written {
            match self.progress.recv() {
                Ok(w) => self.written = w,
                Err(_) => return Ok(0),
            }
        }
        let room = usize::try_from(self.written - self.pos).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the copy is shorter than written",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

/// Fill `buf` as far as the reader goes (a short read is not the end; 0 is).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers: the empty string and "abc" (FIPS 180-2 and the BLAKE3 reference).
    #[test]
    fn known_answers() -> io::Result<()> {
        let d = hash_reader(&mut &b""[..])?;
        assert_eq!(d.size, 0);
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            d.blake3,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let d = hash_reader(&mut &b"abc"[..])?;
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }

    /// A stream over several chunks, read in odd pieces, copies exactly and hashes like the
    /// one-shot hashers.
    #[test]
    fn chunked_copy_equals_one_shot() -> io::Result<()> {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        struct Odd<'a>(&'a [u8]);
        impl Read for Odd<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(7777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let d = copy_hashed(&mut Odd(&data), &mut out)?;
        assert_eq!(out, data);
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.blake3, blake3::hash(&data).to_hex().to_string());
        assert_eq!(d.sha256, hex(&sha2::Sha256::digest(&data)));
        Ok(())
    }

    /// A file-to-file copy equals its source and hashes like the one-shot hashers, from
    /// the source's current offset (several copier rounds and a partial last one).
    #[test]
    fn file_copy_hashes_what_it_wrote() -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let dir = std::env::temp_dir().join(format!("pugmark-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let data: Vec<u8> = (0..(2 * FILE_ROUND as usize + 3 * CHUNK + 999))
            .map(|i| (i * 131 % 253) as u8)
            .collect();
        std::fs::write(dir.join("src"), &data)?;
        let mut src = std::fs::File::open(dir.join("src"))?;
        src.seek(SeekFrom::Start(5))?;
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("dst"))?;
        let d = copy_file_hashed(&src, &dst)?;
        let out = std::fs::read(dir.join("dst"))?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(out, data[5..]);
        assert_eq!(d.size, out.len() as u64);
        assert_eq!(d.blake3, blake3::hash(&data[5..]).to_hex().to_string());
        assert_eq!(d.sha256, hex(&sha2::Sha256::digest(&data[5..])));
        Ok(())
    }
}
