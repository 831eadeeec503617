//! `sync-server db backup | restore | revert`: a database's history, from the command line,
//! while the server runs.
//!
//! - **backup**: SQLite's online backup of the database file — consistent, with its log,
//!   lineage and chain — to a file of the operator's.
//! - **restore**: a new file built from a backup — rewound to `--to-seq`/`--to-time` along the
//!   backup's own log, or rolled forward along the live database's retained log — with a new
//!   lineage, swapped in for the database under a new internal id in one catalog
//!   transaction. Devices find the new lineage at their next sync and re-base on a snapshot,
//!   keeping their pending transactions.
//! - **revert**: the undo of one logged batch, applied to the live database as a new log entry
//!   every device pulls.

use crate::catalog::{self, CatalogError};
use crate::datadir::DataDir;
use rusqlite::{Connection, OpenFlags};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use sync_core::engine::cipher::{self, CipherError, EncryptionKey};
use sync_core::engine::cipher_copy;
use sync_core::protocol::lineage::Hex64;
use sync_core::server::{self, ServerError, lineage, rewind};

/// Why a lifecycle command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A database file could not be read or written.
    #[error("{what}: {source}")]
    Sqlite {
        /// What was being done.
        what: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database's history does not allow it (a seq outside the log, another history).
    #[error("{0}")]
    History(#[from] ServerError),
    /// The input is not usable.
    #[error("{0}")]
    Invalid(String),
    /// The data directory's encryption key does not open a file (or a backup).
    #[error("{0}")]
    Key(CipherError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn sqlite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> LifecycleError {
    let what = what.into();
    move |source| LifecycleError::Sqlite { what, source }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let what = what.into();
    move |source| LifecycleError::Io { what, source }
}

/// Opens `path` with the data directory's key: a wrong or missing key is
/// [`LifecycleError::Key`].
fn open_keyed(
    path: &Path,
    flags: OpenFlags,
    key: Option<&EncryptionKey>,
) -> Result<Connection, LifecycleError> {
    cipher::open(path, flags, key).map_err(|e| match e {
        CipherError::Sqlite(source) => LifecycleError::Sqlite {
            what: format!("cannot open {}", path.display()),
            source,
        },
        e => LifecycleError::Key(e),
    })
}

/// A copy of the database file `from` at `to` (which must not exist), consistent, both
/// with `key`: SQLite's backup for plain files, SQLCipher's export for encrypted ones.
fn copy_file(from: &Path, to: &Path, key: Option<&EncryptionKey>) -> Result<(), LifecycleError> {
    if let Some(key) = key {
        return cipher_copy::export_file(from, Some(key), to, Some(key)).map_err(|e| match e {
            CipherError::Sqlite(source) => LifecycleError::Sqlite {
                what: format!("cannot copy {}", from.display()),
                source,
            },
            e => LifecycleError::Key(e),
        });
    }
    let src = open_keyed(from, OpenFlags::SQLITE_OPEN_READ_ONLY, None)?;
    let mut copy = Connection::open(to).map_err(sqlite("cannot open the copy"))?;
    // One step: one read transaction, so writes meanwhile cannot restart it.
    let b = rusqlite::backup::Backup::new(&src, &mut copy).map_err(sqlite("the copy failed"))?;
    b.step(-1).map_err(sqlite("the copy failed"))?;
    Ok(())
}

fn open_live(path: &Path, key: Option<&EncryptionKey>) -> Result<Connection, LifecycleError> {
    let conn = open_keyed(path, OpenFlags::SQLITE_OPEN_READ_WRITE, key)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sqlite("busy timeout"))?;
    Ok(conn)
}

/// `db backup NAME -o FILE`. From an encrypted data directory, the backup is encrypted with
/// the same key (and restorable only with it).
pub fn backup(
    dir: &DataDir,
    name: &str,
    output: &Path,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let conn = catalog::open_existing_keyed(dir.path(), dir.key())?;
    let id = catalog::database_id(&conn, name)?;
    let live = dir.db_file(id);
    if !live.exists() {
        return Err(LifecycleError::Invalid(format!(
            "database {name} has never been used: there is nothing to back up yet"
        )));
    }
    if output.exists() {
        return Err(LifecycleError::Invalid(format!(
            "{} already exists",
            output.display()
        )));
    }
    // The live file opens with the key before anything is copied.
    drop(open_live(&live, dir.key())?);
    let tmp = output.with_extension("backup-tmp");
    let _ = std::fs::remove_file(&tmp);
    copy_file(&live, &tmp, dir.key())?;
    let copy = open_keyed(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE, dir.key())?;
    let head = lineage::head(&copy)?;
    copy.execute_batch("PRAGMA journal_mode = DELETE")
        .map_err(sqlite("cannot finish the copy"))?;
    drop(copy);
    std::fs::rename(&tmp, output).map_err(io(format!("cannot write {}", output.display())))?;
    writeln!(
        out,
        "backed up {name} at seq {} (lineage {}) to {}",
        head.seq,
        Hex64(head.lineage),
        output.display()
    )
    .map_err(io("output"))?;
    Ok(())
}

/// Where a restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// The backup as it is.
    Backup,
    /// This seq (rewound along the backup's log, or forward along the live log).
    Seq(i64),
    /// The newest entry logged at or before this time (ms since the epoch).
    Time(i64),
}

/// `db restore NAME --from FILE [--to-seq N | --to-time T]`. The backup is opened with the
/// data directory's key.
pub fn restore(
    dir: &DataDir,
    name: &str,
    from: &Path,
    point: RestorePoint,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let data_dir = dir.path();
    let cat = catalog::open_existing_keyed(data_dir, dir.key())?;
    let old_id = catalog::database_id(&cat, name)?;
    let live_path = dir.db_file(old_id);
    let tmp = restore_scratch(dir)?;
    let cleanup = scopeguard(&tmp);
    // The live database is write-locked from here until the swap: no push lands in it after
    // the restore point was chosen (pushes wait, then retry, and reach the new file), and it
    // is marked retired before the lock is released, so one that waited past the swap is
    // refused (`503 unavailable`) rather than acknowledged into a file nobody serves.
    let live = if live_path.exists() {
        let l = open_live(&live_path, dir.key())?;
        l.execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite("cannot lock the live database"))?;
        Some(l)
    } else {
        None
    };
    let (restored, new_lineage) = build_restored(dir, from, point, live.as_ref(), &tmp)?;
    if let Some(l) = &live {
        l.execute(
            "INSERT OR REPLACE INTO _sync_meta(key, value) VALUES ('retired', 1)",
            [],
        )
        .map_err(sqlite("cannot retire the live database"))?;
    }
    let (_, new_id) = catalog::replace_database(&cat, name, |id| {
        std::fs::rename(&tmp, dir.db_file(id)).map_err(io("cannot move the restored file"))
    })?;
    cleanup.disarm();
    if let Some(l) = live {
        // The old file stays where it is (a server may still hold it open); it serves nothing
        // more and can be removed once the server restarted.
        l.execute_batch("COMMIT")
            .map_err(sqlite("cannot retire the live database"))?;
    }
    print_restored(out, name, restored.seq, from, new_lineage, new_id)
}

/// Where a restore builds its file (`dbs/restore-PID.tmp`, removed first if there).
pub(crate) fn restore_scratch(dir: &DataDir) -> Result<std::path::PathBuf, LifecycleError> {
    let dbs = dir.path().join("dbs");
    std::fs::create_dir_all(&dbs).map_err(io("cannot create dbs/"))?;
    let tmp = dbs.join(format!("restore-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    Ok(tmp)
}

pub(crate) fn print_restored(
    out: &mut dyn Write,
    name: &str,
    seq: i64,
    from: &Path,
    new_lineage: i64,
    new_id: i64,
) -> Result<(), LifecycleError> {
    writeln!(
        out,
        "restored {name} to seq {seq} from {} (new lineage {}, file dbs/{new_id}.db); \
         devices re-base on a snapshot at their next sync, keeping their pending changes",
        from.display(),
        Hex64(new_lineage)
    )
    .map_err(io("output"))
}

/// Builds the restored file at `tmp` from the backup `from`: rewound along the backup's log
/// or rolled forward along `live`'s (the live database, if it exists), with `live`'s rowid
/// leases and a new lineage. Returns its head and the new lineage.
pub(crate) fn build_restored(
    dir: &DataDir,
    from: &Path,
    point: RestorePoint,
    live: Option<&Connection>,
    tmp: &Path,
) -> Result<(sync_core::protocol::lineage::Position, i64), LifecycleError> {
    {
        let src = open_keyed(from, OpenFlags::SQLITE_OPEN_READ_ONLY, dir.key())?;
        let is_server_db: bool = src
            .query_row(
                "SELECT count(*) = 2 FROM sqlite_schema WHERE name IN ('_sync_meta', '_sync_log')",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite(format!(
                "{} is not an SQLite database",
                from.display()
            )))?;
        if !is_server_db {
            return Err(LifecycleError::Invalid(format!(
                "{} is not a sync-server database backup (no _sync_meta and _sync_log)",
                from.display()
            )));
        }
        drop(src);
        copy_file(from, tmp, dir.key())?;
    }
    let copy = open_keyed(tmp, OpenFlags::SQLITE_OPEN_READ_WRITE, dir.key())?;
    server::install(&copy, 0).map_err(sqlite("cannot prepare the copy"))?;
    let target = match point {
        RestorePoint::Backup => None,
        RestorePoint::Seq(s) => Some(s),
        RestorePoint::Time(ms) => {
            let in_backup = rewind::seq_at_time(&copy, ms)?;
            let in_live = match live {
                Some(l) => rewind::seq_at_time(l, ms)?,
                None => 0,
            };
            Some(in_backup.max(in_live))
        }
    };
    let head = server::bounds(&copy)
        .map_err(sqlite("cannot read the copy"))?
        .head_seq;
    match target {
        Some(seq) if seq < head => rewind::rewind(&copy, seq)?,
        Some(seq) if seq > head => {
            let live = live.ok_or_else(|| {
                LifecycleError::Invalid(format!(
                    "seq {seq} is past the backup's head {head} and the database has no live log"
                ))
            })?;
            rewind::roll_forward(&copy, live, seq)?;
        }
        _ => {}
    }
    if let Some(l) = live {
        keep_leases(&copy, l)?;
    }
    copy.execute("DELETE FROM _sync_meta WHERE key = 'retired'", [])
        .map_err(sqlite("cannot prepare the copy"))?;
    let new_lineage = lineage::new_lineage(&copy).map_err(sqlite("cannot start a lineage"))?;
    let restored = lineage::head(&copy)?;
    copy.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = WAL;")
        .map_err(sqlite("cannot finish the copy"))?;
    Ok((restored, new_lineage))
}

/// Rowid ranges granted since the backup stay granted: a restore must not lease them again
/// (devices keep theirs), so the copy takes the live database's leases and next free id.
fn keep_leases(copy: &Connection, live: &Connection) -> Result<(), LifecycleError> {
    let s = sqlite("cannot carry the rowid leases over");
    let next: i64 = live
        .query_row(
            "SELECT coalesce((SELECT value FROM _sync_meta WHERE key = 'next_rowid'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite("cannot read the live leases"))?;
    let leases: Vec<(i64, String, i64, i64, i64)> = live
        .prepare("SELECT id, device, start, end, at_ms FROM _sync_leases")
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()
        })
        .map_err(sqlite("cannot read the live leases"))?;
    (|| -> rusqlite::Result<()> {
        for (id, device, start, end, at) in leases {
            copy.execute(
                "INSERT OR IGNORE INTO _sync_leases(id, device, start, end, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![id, device, start, end, at],
            )?;
        }
        copy.execute(
            "INSERT INTO _sync_meta(key, value) VALUES ('next_rowid', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
            [next],
        )?;
        Ok(())
    })()
    .map_err(s)
}

/// `db revert NAME --seq N`.
pub fn revert(
    dir: &DataDir,
    name: &str,
    seq: i64,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let cat = catalog::open_existing_keyed(dir.path(), dir.key())?;
    let id = catalog::database_id(&cat, name)?;
    let live_path = dir.db_file(id);
    if !live_path.exists() {
        return Err(LifecycleError::Invalid(format!(
            "database {name} has no log entry {seq}"
        )));
    }
    let conn = open_live(&live_path, dir.key())?;
    let now = catalog::now_ms();
    let batch_id = format!("revert-{seq}-{now}");
    let answer = rewind::revert(&conn, seq, &batch_id, now)?;
    print_reverted(out, name, seq, &answer)
}

pub(crate) fn print_reverted(
    out: &mut dyn Write,
    name: &str,
    seq: i64,
    answer: &sync_core::protocol::push::PushResponse,
) -> Result<(), LifecycleError> {
    let conflicts: usize = answer.transactions.iter().map(|t| t.conflicts.len()).sum();
    writeln!(
        out,
        "reverted entry {seq} of {name} as entry {} ({}; {} change(s), {conflicts} conflict(s): rows changed since keep their current values)",
        answer.seq, answer.status, answer.changes
    )
    .map_err(io("output"))?;
    for c in answer.conflicts() {
        writeln!(out, "  conflict: {} {} {:?}", c.kind, c.table, c.pk).map_err(io("output"))?;
    }
    Ok(())
}

/// Removes a scratch file unless disarmed.
struct Guard<'a> {
    path: &'a Path,
    armed: std::cell::Cell<bool>,
}

impl Guard<'_> {
    fn disarm(&self) {
        self.armed.set(false);
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed.get() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }
}

fn scopeguard(path: &Path) -> Guard<'_> {
    Guard {
        path,
        armed: std::cell::Cell::new(true),
    }
}

/// Parses `--to-time`: milliseconds since the Unix epoch, or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("{text:?} is not milliseconds since the epoch or YYYY-MM-DDTHH:MM:SSZ");
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let h: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), h.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("2026-12-01T00:00:00Z").unwrap(),
            1_796_083_200_000
        );
        assert_eq!(parse_time("2000-02-29T12:30:00Z").unwrap(), 951_827_400_000);
        for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-12-01 00:00:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
