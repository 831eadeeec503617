//! Snapshots: a consistent copy of the app tables with the seq it corresponds to, for a
//! device to start from.

use super::ServerError;
use rusqlite::{Connection, params};
use std::path::Path;

/// Writes a consistent copy of the database's app tables to `dest` (which must not exist)
/// and returns the seq and schema version it corresponds to. The copy holds the app tables
/// and a `_sync_snapshot` table with rows `('seq', N)` and `('schema_version', V)`; the
/// server's internal tables are dropped.
pub fn snapshot(conn: &Connection, dest: &Path) -> Result<(i64, u32), ServerError> {
    if dest.exists() {
        return Err(ServerError::internal(format!(
            "snapshot destination {} already exists",
            dest.display()
        )));
    }
    // The backup copies a consistent image (one read transaction on the source); the seq is
    // then read from the copy itself, so it matches the data exactly.
    let mut out = Connection::open(dest)?;
    // The copy is scratch until it is handed out whole: if the process dies, it is made
    // again. No journal and no fsync while building it.
    out.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut out)?;
        backup.step(-1)?;
    }
    let seq = super::meta(&out, "head_seq")?;
    let version = super::schema_version(&out)?;
    out.execute_batch(
        "PRAGMA journal_mode = OFF;
         DROP TABLE _sync_log; DROP TABLE _sync_batches; DROP TABLE _sync_conflicts;
         DROP TABLE _sync_meta; DROP TABLE _sync_leases;
         CREATE TABLE _sync_snapshot (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    out.execute(
        "INSERT INTO _sync_snapshot(key, value) VALUES ('seq', ?1), ('schema_version', ?2)",
        params![seq, version],
    )?;
    out.execute_batch("VACUUM")?;
    Ok((seq, version))
}
