//! [`SyncClient::adopt`]: an existing SQLite file with data becomes a synced copy of an empty
//! server database, its rows the copy's first pending transactions.
//!
//! Crash safety: the file is never written in place. A consistent copy (SQLite's backup API,
//! from a read-only connection) is converted in a scratch directory beside it, checked
//! against the server's schema, made durable and then renamed over the original in one step.
//! A failure or a kill at any point before the rename leaves the original as it was; after
//! it, the file is a complete copy. The rename is refused if the original changed meanwhile
//! (another program writing it).

use crate::client::SyncClient;
use crate::config::{ClientConfig, RemoteConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::fts::Fts;
use crate::open::{remove_database_files, remove_stale_scratch};
use crate::probe::{FileKind, companion, file_kind, immutable_uri};
use crate::settings;
use crate::transport::{HttpTransport, Transport};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::SystemTime;
use sync_core::client::adopt::{AdoptError, capture_existing_rows, check_foreign_keys};
use sync_core::client::bootstrap::{snapshot_meta, take_snapshot_position};
use sync_core::engine::schema;
use sync_core::engine::schema_match::differences;
use sync_core::protocol::info::Access;

/// Adopted rows are cut into transactions of about this size (never more than the server's
/// per-transaction limit). Chinook (15,607 rows) is about 1 MiB: one transaction.
pub const ADOPT_TRANSACTION_BYTES: u64 = 64 * 1024 * 1024;

/// Most differences an error message lists.
const SHOWN_DIFFERENCES: usize = 8;

/// The size and modification time of a file and its `-wal`: what tells that someone wrote it.
fn fingerprint(path: &Path) -> Vec<Option<(u64, Option<SystemTime>)>> {
    [path.to_path_buf(), companion(path, "-wal")]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
        .collect()
}

fn adopt_error(e: AdoptError) -> Error {
    let kind = match &e {
        AdoptError::ForeignKeys { .. } => ErrorKind::Schema,
        AdoptError::TooLarge { .. } => ErrorKind::TooLarge,
        AdoptError::Io(_) => ErrorKind::Io,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string()).with_source(e)
}

impl SyncClient {
    /// Turns the existing SQLite database at `path` into a synced copy of `remote`'s database,
    /// keeping its rows: they become the copy's first pending transactions (cut where no
    /// foreign key can dangle, parents first) and reach the server on the next sync, uploaded
    /// in parts when large.
    ///
    /// The server database must have the same schema (tables, columns, keys, indexes,
    /// triggers; see `sync_core::engine::schema_match`) and no rows; the file must be a plain
    /// SQLite database whose tables can be synced and whose foreign keys hold. Any refusal or
    /// failure leaves the file unchanged; the conversion happens on a copy that replaces the
    /// file in one rename. Close every other program using the file first: a change to it
    /// during the adoption makes the adoption fail.
    pub fn adopt(
        path: impl AsRef<Path>,
        remote: RemoteConfig,
        config: ClientConfig,
    ) -> Result<SyncClient> {
        SyncClient::adopt_in_transactions_of(path, remote, config, ADOPT_TRANSACTION_BYTES)
    }

    /// [`adopt`](Self::adopt) with another transaction size (tests cut small files into many
    /// transactions this way).
    #[doc(hidden)]
    pub fn adopt_in_transactions_of(
        path: impl AsRef<Path>,
        remote: RemoteConfig,
        config: ClientConfig,
        target_bytes: u64,
    ) -> Result<SyncClient> {
        let path = path.as_ref();
        match file_kind(path)? {
            FileKind::Plain => {}
            FileKind::SyncCopy => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} is already a synced copy", path.display()),
                ));
            }
            FileKind::Missing => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: no such file (adopt converts an existing database; plain init creates a new one)",
                        path.display()
                    ),
                ));
            }
            FileKind::NotSqlite => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} is not an SQLite database", path.display()),
                ));
            }
        }
        let lock_file = crate::lock::lock_path(
            &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        );
        let lock_existed = lock_file.exists();
        let mut writer_lock = crate::lock::acquire(path)?;
        let result = SyncClient::adopt_locked(path, remote, config, target_bytes, &mut writer_lock);
        if result.is_err() && writer_lock.is_some() && !lock_existed {
            let _ = std::fs::remove_file(&lock_file);
        }
        result
    }

    fn adopt_locked(
        path: &Path,
        remote: RemoteConfig,
        mut config: ClientConfig,
        target_bytes: u64,
        writer_lock: &mut Option<crate::lock::WriterLock>,
    ) -> Result<SyncClient> {
        let before = fingerprint(path);
        let wal = companion(path, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} has an unfinished write-ahead log ({}); close every program using it \
                     (its last close checkpoints the log) and adopt again",
                    path.display(),
                    wal.display()
                ),
            ));
        }
        let device = settings::new_device_id();
        let transport = HttpTransport::with_credentials(
            &remote,
            config.http_timeout,
            config.credentials.clone(),
        )?
        .with_device(device.clone());
        let info = transport.info()?;
        if info.access == Access::ReadOnly {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "the token's grant on database {} is read-only: adopted rows could never be pushed",
                    remote.database
                ),
            ));
        }
        let max_transaction = info
            .limits
            .as_ref()
            .map_or(crate::limits::DEFAULT_MAX_TRANSACTION_BYTES, |l| {
                l.max_transaction_bytes
            });
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let prefix = format!(
            ".{}.sync-adopt",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        remove_stale_scratch(dir, &prefix);
        let scratch = tempfile::Builder::new().prefix(&prefix).tempdir_in(dir)?;
        let snap = scratch.path().join("snapshot.db");
        transport.snapshot(
            &snap,
            &crate::transport::SnapshotRequest {
                reason: "new",
                batch: None,
                key: config.encryption_key.as_ref(),
                progress: None,
            },
        )?;
        let staged = scratch.path().join("local.db");
        {
            // `immutable=1`: no lock and no `-wal`/`-shm` beside the original (its log is
            // empty, checked above); a writer meanwhile is caught by the fingerprint below.
            let key = config.encryption_key.as_ref();
            let conn = match key {
                None => {
                    let source = Connection::open_with_flags(
                        immutable_uri(path)?,
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_URI
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    let mut conn = Connection::open(&staged)?;
                    rusqlite::backup::Backup::new(&source, &mut conn)?.step(-1)?;
                    conn
                }
                // The plain file becomes an encrypted copy (SQLite's backup cannot copy
                // between a plain and an encrypted database; SQLCipher's export can).
                Some(key) => {
                    crate::snapshot_store::encrypt_copy(&immutable_uri(path)?, &staged, key)?
                }
            };
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")?;
            check_file(&conn, &snap, &remote.database, key)?;
            check_foreign_keys(&conn).map_err(adopt_error)?;
            let info = snapshot_meta(&snap, key)?;
            take_snapshot_position(&conn, &info)?;
            settings::install(&conn)?;
            settings::store_remote(&conn, &remote, config.credentials.is_none())?;
            settings::store_device_id(&conn, &device)?;
            if !config.fts.is_empty() {
                Fts::check(&config.fts, &conn)?;
                settings::store_fts(&conn, &config.fts)?;
            }
            let now = crate::engine::now_ms();
            conn.execute_batch("BEGIN IMMEDIATE")?;
            capture_existing_rows(
                &conn,
                scratch.path(),
                target_bytes.min(max_transaction),
                max_transaction,
                now,
            )
            .map_err(adopt_error)?;
            conn.execute_batch("COMMIT")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        std::fs::File::open(&staged)?.sync_all()?;
        if fingerprint(path) != before {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} changed while it was being adopted (another program wrote it); it was \
                     left as that program made it — close it and adopt again",
                    path.display()
                ),
            ));
        }
        // An empty `-wal` and a `-shm` left by earlier programs belong to the old file and
        // must not meet the new one; the old file is complete without them (its log is empty).
        for suffix in ["-wal", "-shm"] {
            let p = companion(path, suffix);
            if std::fs::metadata(&p).is_ok_and(|m| suffix == "-shm" || m.len() == 0) {
                let _ = std::fs::remove_file(p);
            }
        }
        remove_database_files(&Fts::path_for(path));
        std::fs::rename(&staged, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        config.remote = Some(remote);
        SyncClient::open_locked(path.to_path_buf(), config, writer_lock)
    }
}

/// The checks before anything is converted: the file's tables can be synced, it uses no
/// internal name, its schema equals the server database's, and that database has no rows.
fn check_file(
    conn: &Connection,
    snapshot: &Path,
    database: &str,
    key: Option<&crate::EncryptionKey>,
) -> Result<()> {
    let reserved: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|t| schema::is_library_table(t))
        .collect();
    if let Some(t) = reserved.first() {
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "the file has table {t:?}, but names starting with _sync_ (in any letter case) \
                 are reserved for session-sync"
            ),
        ));
    }
    schema::check_trackable(conn)?;
    let snap = sync_core::engine::cipher::open(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY, key)?;
    let diffs = differences(conn, "the file", &snap, "the server")?;
    if !diffs.is_empty() {
        let mut shown: Vec<String> = diffs.iter().take(SHOWN_DIFFERENCES).cloned().collect();
        if diffs.len() > SHOWN_DIFFERENCES {
            shown.push(format!("… {} more", diffs.len() - SHOWN_DIFFERENCES));
        }
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "the file's schema differs from that of database {database} on the server \
                 ({} difference(s)): {}",
                diffs.len(),
                shown.join("; ")
            ),
        ));
    }
    for table in schema::user_tables(&snap)? {
        let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
        let rows: i64 = snap.query_row(&sql, [], |r| r.get(0))?;
        if rows > 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "database {database} on the server already has rows ({rows} in table \
                     {table:?}); adopt starts a database from a file's rows, so it needs an \
                     empty one (plain init makes a copy of the server's data)"
                ),
            ));
        }
    }
    Ok(())
}
