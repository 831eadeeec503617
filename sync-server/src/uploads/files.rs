//! File-based uploads (no `--store`): one file per (database, device, batch) under
//! `<data>/uploads/<database id>/<device, hex>/<batch id>-<total>.part`, written part by part
//! at the part's offset and read back by the push that completes it. A part is flushed to
//! disk before it is acknowledged.

use super::{
    Complete, CompleteBody, Found, Limits, MAX_PER_DEVICE, budget_used_up, gap, other_total,
    status_of, too_many,
};
use crate::error::ApiError;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use sync_core::engine::spool::Source;
use sync_core::protocol::upload::UploadStatus;

/// Uploads as files under the data directory.
#[derive(Debug)]
pub struct FileUploads {
    root: PathBuf,
    pub(super) limits: Limits,
}

fn io(doing: &str) -> impl Fn(io::Error) -> ApiError + '_ {
    move |e| ApiError::from_io(doing, e)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

impl FileUploads {
    /// The store under `data_dir/uploads`.
    pub fn new(data_dir: &Path, limits: Limits) -> FileUploads {
        FileUploads {
            root: data_dir.join("uploads"),
            limits,
        }
    }

    fn device_dir(&self, database: i64, device: &str) -> PathBuf {
        self.root.join(database.to_string()).join(hex(device))
    }

    /// The file of `batch` and its declared total, if there is one.
    fn find(&self, dir: &Path, batch: &str) -> io::Result<Option<(PathBuf, u64)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(total) = name
                .strip_suffix(".part")
                .and_then(|rest| rest.strip_prefix(batch))
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                return Ok(Some((entry.path(), total)));
            }
        }
        Ok(None)
    }

    /// Bytes all uploads have declared.
    fn declared(&self) -> io::Result<u64> {
        let mut sum = 0u64;
        for file in self.files()? {
            if let Some(total) = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".part"))
                .and_then(|n| n.rsplit_once('-'))
                .and_then(|(_, t)| t.parse::<u64>().ok())
            {
                sum = sum.saturating_add(total);
            }
        }
        Ok(sum)
    }

    /// Every upload file.
    fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let dbs = match std::fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for db in dbs {
            for device in std::fs::read_dir(db?.path())? {
                for file in std::fs::read_dir(device?.path())? {
                    out.push(file?.path());
                }
            }
        }
        Ok(out)
    }

    /// How far the upload of `batch` has come.
    pub fn status(
        &self,
        database: i64,
        device: &str,
        batch: &str,
    ) -> Result<Option<UploadStatus>, ApiError> {
        let dir = self.device_dir(database, device);
        let Some((path, total)) = self.find(&dir, batch).map_err(io("reading uploads"))? else {
            return Ok(None);
        };
        let received = std::fs::metadata(&path)
            .map_err(io("reading an upload"))?
            .len();
        Ok(Some(status_of(batch, received, total)))
    }

    /// Writes one part (`data`, the request body) at `offset` of the upload of `batch`,
    /// creating the upload at its first part.
    pub fn put(
        &self,
        database: i64,
        device: &str,
        batch: &str,
        offset: u64,
        total: u64,
        data: Source<'_>,
    ) -> Result<UploadStatus, ApiError> {
        // The limits and the part's bounds were checked by `Uploads::put`.
        let end = offset + data.len();
        let dir = self.device_dir(database, device);
        let path = match self.find(&dir, batch).map_err(io("reading uploads"))? {
            Some((_, declared)) if declared != total => {
                return Err(other_total(declared, total));
            }
            Some((path, _)) => path,
            // A new upload starts at 0: a gap leaves nothing behind.
            None if offset > 0 => return Err(gap(offset, 0)),
            None => {
                std::fs::create_dir_all(&dir).map_err(io("creating an upload"))?;
                let in_progress = std::fs::read_dir(&dir)
                    .map_err(io("reading uploads"))?
                    .count();
                if in_progress >= MAX_PER_DEVICE {
                    return Err(too_many(in_progress));
                }
                let declared = self.declared().map_err(io("reading uploads"))?;
                if declared.saturating_add(total) > self.limits.budget {
                    return Err(budget_used_up());
                }
                dir.join(format!("{batch}-{total}.part"))
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening an upload"))?;
        let received = file.metadata().map_err(io("reading an upload"))?.len();
        if offset > received {
            return Err(gap(offset, received));
        }
        copy_at(data, &file, offset).map_err(io("writing an upload"))?;
        file.sync_data().map_err(io("writing an upload"))?;
        Ok(status_of(batch, received.max(end), total))
    }

    /// The upload of `batch`, for the push that completes it.
    pub fn complete(&self, database: i64, device: &str, batch: &str) -> Result<Found, ApiError> {
        let dir = self.device_dir(database, device);
        let Some((path, total)) = self.find(&dir, batch).map_err(io("reading uploads"))? else {
            return Ok(Found::None);
        };
        let file = File::open(&path).map_err(io("opening an upload"))?;
        let len = file.metadata().map_err(io("reading an upload"))?.len();
        if len < total {
            return Ok(Found::Partial(status_of(batch, len, total)));
        }
        Ok(Found::Complete(Complete {
            body: CompleteBody::File { file, len, path },
        }))
    }

    /// Removes uploads not written to for `ttl`; returns how many.
    pub fn expire(&self, ttl: Duration) -> usize {
        let now = SystemTime::now();
        let mut removed = 0;
        for path in self.files().unwrap_or_default() {
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= ttl);
            if old && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Copies `data` into `file` at `offset`, in pieces.
fn copy_at(data: Source<'_>, file: &File, offset: u64) -> io::Result<()> {
    let mut reader = data.reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = offset;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        write_all_at(file, &buf[..n], at)?;
        at += n as u64;
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
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
    use crate::uploads::Uploads;
    use sync_core::protocol::error::ErrorCode;

    #[test]
    fn parts_arrive_in_any_overlap_gaps_and_overruns_are_refused_and_old_ones_expire() {
        let dir = tempfile::tempdir().unwrap();
        let up = Uploads::new(dir.path(), 100, 250);
        let body: Vec<u8> = (0..60u8).collect();
        let s = up
            .put(1, "phone", "b1", 0, 60, (&body[..25]).into())
            .unwrap();
        assert_eq!((s.received, s.total), (25, 60));
        // A retried part, overlapping what arrived: harmless.
        let s = up
            .put(1, "phone", "b1", 10, 60, (&body[10..40]).into())
            .unwrap();
        assert_eq!(s.received, 40);
        assert!(matches!(
            up.complete(1, "phone", "b1").unwrap(),
            Found::Partial(_)
        ));
        // A gap, an overrun, a different total.
        assert!(
            up.put(1, "phone", "b1", 45, 60, (&body[45..]).into())
                .is_err()
        );
        assert!(
            up.put(1, "phone", "b1", 40, 60, (&[0u8; 30][..]).into())
                .is_err()
        );
        assert!(
            up.put(1, "phone", "b1", 40, 61, (&body[40..]).into())
                .is_err()
        );
        let s = up
            .put(1, "phone", "b1", 40, 60, (&body[40..]).into())
            .unwrap();
        assert_eq!(s.received, 60);
        assert_eq!(up.status(1, "phone", "b1").unwrap().unwrap().received, 60);
        let Found::Complete(done) = up.complete(1, "phone", "b1").unwrap() else {
            panic!("complete");
        };
        let mut back = Vec::new();
        done.source().reader().read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
        done.remove();
        assert!(up.status(1, "phone", "b1").unwrap().is_none());
        // Over the size limit; over the budget (100 + 100 declared, 60 more does not fit).
        assert!(
            up.put(1, "phone", "big", 0, 101, (&[1u8][..]).into())
                .is_err()
        );
        up.put(1, "phone", "x", 0, 100, (&[1u8][..]).into())
            .unwrap();
        up.put(2, "laptop", "y", 0, 100, (&[1u8][..]).into())
            .unwrap();
        let full = up
            .put(1, "tablet", "z", 0, 60, (&[1u8][..]).into())
            .unwrap_err();
        assert!(full.body().code == ErrorCode::InsufficientStorage, "{full}");
        assert_eq!(up.expire(Duration::from_secs(3600)), 0);
        assert_eq!(up.expire(Duration::ZERO), 2);
        assert!(up.status(1, "phone", "x").unwrap().is_none());
    }

    #[test]
    fn one_device_has_a_few_uploads_in_progress_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let up = Uploads::new(dir.path(), 100, 10_000);
        for i in 0..MAX_PER_DEVICE {
            up.put(1, "d", &format!("b{i}"), 0, 10, (&[1u8][..]).into())
                .unwrap();
        }
        let err = up
            .put(1, "d", "one-more", 0, 10, (&[1u8][..]).into())
            .unwrap_err();
        assert_eq!(err.body().code, ErrorCode::TooManyUploads);
        // Continuing one is fine; another device is not affected.
        up.put(1, "d", "b0", 1, 10, (&[2u8][..]).into()).unwrap();
        up.put(1, "e", "b0", 0, 10, (&[2u8][..]).into()).unwrap();
    }
}
