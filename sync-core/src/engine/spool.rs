//! Bytes that stay in memory while they are small and move to a temporary file when they grow:
//! an uploaded push body, a push's effect, an encoded pull page. Large changesets are then
//! validated and applied from disk in pieces and never sit in memory whole, so one large
//! request cannot grow a process by its own size.
//!
//! A [`Spool`] is written once; [`Spool::finish`] turns it into a [`Spooled`], which can be
//! read any number of times (by position, so several readers need no `&mut`) as a
//! [`Source`]. The file is created unlinked (`tempfile::tempfile_in`): nothing is left behind
//! when the process dies.
//!
//! With the `encryption` feature every file a spool spills to is sealed: its bytes are XORed
//! with a ChaCha20 key stream (seekable, so positioned reads decrypt in place) under a key
//! made for that file from SQLite's CSPRNG and held only in memory. A spooled changeset is
//! thus never plaintext on disk, and nothing is left to decrypt once the process is gone.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

#[cfg(feature = "encryption")]
mod seal;
#[cfg(feature = "encryption")]
pub use seal::Seal;

/// Below this size a spool keeps its bytes in memory, unless told otherwise.
pub const DEFAULT_THRESHOLD: usize = 1 << 20;

/// A write-once buffer: memory up to a threshold, then an unlinked temporary file.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    threshold: usize,
    mem: Vec<u8>,
    file: Option<BufWriter<File>>,
    len: u64,
    #[cfg(feature = "encryption")]
    seal: Option<Seal>,
}

impl Spool {
    /// A spool that moves to a file in `dir` once it holds more than `threshold` bytes.
    pub fn new(dir: &Path, threshold: usize) -> Spool {
        Spool {
            dir: Some(dir.to_path_buf()),
            threshold,
            mem: Vec::new(),
            file: None,
            len: 0,
            #[cfg(feature = "encryption")]
            seal: None,
        }
    }

    /// A spool that never leaves memory (small, bounded data; tests).
    pub fn in_memory() -> Spool {
        Spool {
            dir: None,
            threshold: usize::MAX,
            mem: Vec::new(),
            file: None,
            len: 0,
            #[cfg(feature = "encryption")]
            seal: None,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes and returns the readable result.
    pub fn finish(self) -> io::Result<Spooled> {
        let data = match self.file {
            None => Data::Memory(self.mem),
            Some(w) => Data::File(w.into_inner().map_err(io::IntoInnerError::into_error)?),
        };
        Ok(Spooled {
            data,
            len: self.len,
            #[cfg(feature = "encryption")]
            seal: self.seal,
        })
    }

    /// Forgets everything written after the first `len` bytes (a rejected transaction's
    /// effect), so that the next write continues from there. (A sealed file then writes new
    /// bytes under the key stream of the forgotten ones: only the server truncates, and its
    /// files are not meant to be secret — see docs/operations.md.)
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        if len >= self.len {
            return Ok(());
        }
        match &mut self.file {
            None => self.mem.truncate(len as usize),
            Some(w) => {
                w.flush()?;
                let f = w.get_mut();
                f.set_len(len)?;
                f.seek(io::SeekFrom::Start(len))?;
            }
        }
        self.len = len;
        Ok(())
    }

    /// Hands what was written from byte `from` on to `f` as a [`Source`] (flushing first), and
    /// writing may go on after: a reader of the last part written, while the spool grows.
    pub fn with_tail<R>(&mut self, from: u64, f: impl FnOnce(Source<'_>) -> R) -> io::Result<R> {
        let from = from.min(self.len);
        match &mut self.file {
            None => Ok(f(Source::Bytes(&self.mem[from as usize..]))),
            Some(w) => {
                w.flush()?;
                #[cfg(feature = "encryption")]
                if let Some(seal) = &self.seal {
                    return Ok(f(Source::Sealed {
                        file: w.get_ref(),
                        seal,
                        offset: from,
                        len: self.len - from,
                    }));
                }
                Ok(f(Source::File {
                    file: w.get_ref(),
                    offset: from,
                    len: self.len - from,
                }))
            }
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        let dir = self.dir.as_deref().unwrap_or(Path::new("."));
        let mut file = BufWriter::with_capacity(64 * 1024, tempfile::tempfile_in(dir)?);
        #[cfg(feature = "encryption")]
        {
            let seal = Seal::new();
            seal.apply(0, &mut self.mem);
            self.seal = Some(seal);
        }
        file.write_all(&self.mem)?;
        self.mem = Vec::new();
        self.file = Some(file);
        Ok(())
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.mem.len() + buf.len() > self.threshold {
            self.spill()?;
        }
        match &mut self.file {
            #[cfg(feature = "encryption")]
            Some(f) if self.seal.is_some() => {
                let mut sealed = buf.to_vec();
                if let Some(seal) = &self.seal {
                    seal.apply(self.len, &mut sealed);
                }
                f.write_all(&sealed)?;
            }
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[derive(Debug)]
enum Data {
    Memory(Vec<u8>),
    File(File),
}

/// A finished spool: its bytes in memory or in an unlinked file.
#[derive(Debug)]
pub struct Spooled {
    data: Data,
    len: u64,
    #[cfg(feature = "encryption")]
    seal: Option<Seal>,
}

impl Spooled {
    /// Bytes held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Spooled {
        Spooled {
            len: bytes.len() as u64,
            data: Data::Memory(bytes),
            #[cfg(feature = "encryption")]
            seal: None,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, when they are in memory.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            Data::Memory(b) => Some(b),
            Data::File(_) => None,
        }
    }

    /// The bytes as a [`Source`] to validate, apply or copy.
    pub fn source(&self) -> Source<'_> {
        match &self.data {
            Data::Memory(b) => Source::Bytes(b),
            #[cfg(feature = "encryption")]
            Data::File(file) if self.seal.is_some() => Source::Sealed {
                file,
                seal: self.seal.as_ref().expect("checked"),
                offset: 0,
                len: self.len,
            },
            Data::File(file) => Source::File {
                file,
                offset: 0,
                len: self.len,
            },
        }
    }

    /// The bytes in memory: read back from the file if they were spilled (only for data the
    /// caller knows to be small).
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.data {
            Data::Memory(b) => Ok(b),
            Data::File(_) => {
                let mut out = Vec::with_capacity(self.len as usize);
                self.source().reader().read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// The open file positioned at its first byte, when the bytes are on disk (to stream
    /// it elsewhere); the bytes themselves otherwise. A sealed file is decrypted in place
    /// first (the server streams pull pages this way; see docs/operations.md).
    pub fn into_file(self) -> io::Result<Result<File, Vec<u8>>> {
        #[cfg(feature = "encryption")]
        if let (Data::File(file), Some(seal)) = (&self.data, &self.seal) {
            unseal_in_place(file, seal, self.len)?;
        }
        match self.data {
            Data::File(mut f) => {
                f.seek(io::SeekFrom::Start(0))?;
                Ok(Ok(f))
            }
            Data::Memory(b) => Ok(Err(b)),
        }
    }
}

/// Where changeset (or other) bytes are read from: memory, or a file read by position in
/// pieces, so it can be read several times through a shared reference.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        /// The file (read with positioned reads; its cursor is not used).
        file: &'a File,
        /// Where the bytes start.
        offset: u64,
        /// How many bytes it holds.
        len: u64,
    },
    /// `len` bytes of a sealed spool file from `offset`, decrypted as they are read.
    #[cfg(feature = "encryption")]
    Sealed {
        /// The file (positioned reads).
        file: &'a File,
        /// Its key stream.
        seal: &'a Seal,
        /// Where the bytes start.
        offset: u64,
        /// How many bytes it holds.
        len: u64,
    },
}

impl<'a> Source<'a> {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { len, .. } => *len,
            #[cfg(feature = "encryption")]
            Source::Sealed { len, .. } => *len,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when in memory.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Source::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The `len` bytes from `offset` (both clamped to this source).
    pub fn slice(&self, offset: u64, len: u64) -> Source<'a> {
        let offset = offset.min(self.len());
        let len = len.min(self.len() - offset);
        match *self {
            Source::Bytes(b) => Source::Bytes(&b[offset as usize..(offset + len) as usize]),
            Source::File {
                file, offset: o, ..
            } => Source::File {
                file,
                offset: o + offset,
                len,
            },
            #[cfg(feature = "encryption")]
            Source::Sealed {
                file,
                seal,
                offset: o,
                ..
            } => Source::Sealed {
                file,
                seal,
                offset: o + offset,
                len,
            },
        }
    }

    /// A reader from the start.
    pub fn reader(&self) -> SourceReader<'a> {
        SourceReader {
            source: *self,
            pos: 0,
        }
    }
}

impl<'a> From<&'a [u8]> for Source<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Source::Bytes(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for Source<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Source::Bytes(bytes)
    }
}

/// Reads a [`Source`] front to back.
#[derive(Debug)]
pub struct SourceReader<'a> {
    source: Source<'a>,
    pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = match self.source {
            Source::Bytes(b) => {
                let at = self.pos as usize;
                buf[..want].copy_from_slice(&b[at..at + want]);
                want
            }
            Source::File { file, offset, .. } => {
                read_at(file, &mut buf[..want], offset + self.pos)?
            }
            #[cfg(feature = "encryption")]
            Source::Sealed {
                file, seal, offset, ..
            } => {
                let at = offset + self.pos;
                let n = read_at(file, &mut buf[..want], at)?;
                seal.apply(at, &mut buf[..n]);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(feature = "encryption")]
fn unseal_in_place(file: &File, seal: &Seal, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < len {
        let want = buf
            .len()
            .min(usize::try_from(len - at).unwrap_or(usize::MAX));
        let n = read_at(file, &mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool file shrank",
            ));
        }
        seal.apply(at, &mut buf[..n]);
        write_all_at(file, &buf[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(all(feature = "encryption", unix))]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(all(feature = "encryption", windows))]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_data_stays_in_memory_and_large_data_moves_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = Spool::new(dir.path(), 16);
        small.write_all(b"0123456789").unwrap();
        let small = small.finish().unwrap();
        assert_eq!(small.as_bytes(), Some(&b"0123456789"[..]));

        let mut large = Spool::new(dir.path(), 16);
        for i in 0..100u8 {
            large.write_all(&[i; 10]).unwrap();
        }
        let large = large.finish().unwrap();
        assert_eq!(large.len(), 1000);
        assert!(large.as_bytes().is_none(), "spilled to a file");
        // Read twice through shared references, in odd-sized pieces.
        for _ in 0..2 {
            let mut r = large.source().reader();
            let mut out = Vec::new();
            let mut piece = [0u8; 7];
            loop {
                let n = r.read(&mut piece).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&piece[..n]);
            }
            assert_eq!(out.len(), 1000);
            assert!(out.chunks(10).enumerate().all(|(i, c)| c == [i as u8; 10]));
        }
        assert_eq!(large.into_bytes().unwrap().len(), 1000);
        // The file is unlinked: nothing in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn truncating_forgets_the_tail_and_slices_read_their_range() {
        let dir = tempfile::tempdir().unwrap();
        for threshold in [4, 1 << 20] {
            let mut spool = Spool::new(dir.path(), threshold);
            spool.write_all(b"keep-").unwrap();
            spool.write_all(b"this part goes").unwrap();
            spool.truncate(5).unwrap();
            spool.write_all(b"more").unwrap();
            let done = spool.finish().unwrap();
            assert_eq!(done.len(), 9);
            let mut all = String::new();
            done.source().reader().read_to_string(&mut all).unwrap();
            assert_eq!(all, "keep-more", "threshold {threshold}");
            let mut part = String::new();
            done.source()
                .slice(2, 4)
                .slice(1, 100)
                .reader()
                .read_to_string(&mut part)
                .unwrap();
            assert_eq!(part, "p-m", "threshold {threshold}");
        }
    }

    #[test]
    fn a_spilled_spool_hands_over_its_file_from_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), 4);
        spool.write_all(b"hello, file").unwrap();
        let mut file = spool.finish().unwrap().into_file().unwrap().unwrap();
        let mut all = String::new();
        file.read_to_string(&mut all).unwrap();
        assert_eq!(all, "hello, file");

        let mut small = Spool::new(dir.path(), 64);
        small.write_all(b"memory").unwrap();
        let bytes = small.finish().unwrap().into_file().unwrap().unwrap_err();
        assert_eq!(bytes, b"memory");
    }
}
