//! Snapshots: a consistent copy of the app tables with the seq it corresponds to, for a
//! device to start from.

use super::ServerError;
use crate::engine::cipher::{CipherError, EncryptionKey};
use crate::engine::cipher_copy;
use crate::protocol::lineage::Tip;
use rusqlite::{Connection, params};
use std::path::Path;

/// What a snapshot holds: its seq, schema version and the position (lineage, chain value,
/// content checksum) there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The log seq it corresponds to.
    pub seq: i64,
    /// Its schema version.
    pub schema_version: u32,
    /// Lineage, chain value and checksum at `seq` — the checksum as recomputed from the copy.
    pub tip: Tip,
    /// The checksum the log kept for `seq` differed from the copy's content:
    /// `tip.sum` is the copy's; the caller should fix the log's ([`super::lineage::correct_sum`]).
    pub sum_corrected: bool,
}

/// Writes a consistent copy of the database's app tables to `dest` (which must not exist)
/// and returns what it holds. The copy holds the app tables and a `_sync_snapshot` table with
/// rows `('seq', N)`, `('schema_version', V)`, `('lineage', L)`, `('chain', C)` and, when
/// known, `('sum', 32-byte blob)`; the server's internal tables are dropped.
pub fn snapshot(conn: &Connection, dest: &Path) -> Result<SnapshotMeta, ServerError> {
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
    finish(&out)
}

/// [`snapshot`] of an encrypted database file (`source`, opened with `key`), built in memory:
/// the plain image a device expects over the wire, returned as bytes, never written to disk.
/// Costs memory of about twice the database's size while it runs.
pub fn snapshot_in_memory(
    source: &Path,
    key: &EncryptionKey,
) -> Result<(Vec<u8>, SnapshotMeta), ServerError> {
    let out = cipher_copy::plain_copy_in_memory(source, key).map_err(cipher_error)?;
    let meta = finish(&out)?;
    let bytes = cipher_copy::serialize(&out).map_err(cipher_error)?;
    Ok((bytes, meta))
}

fn cipher_error(e: CipherError) -> ServerError {
    match e {
        CipherError::Sqlite(e) => e.into(),
        e => ServerError::internal(e.to_string()),
    }
}

/// Turns a full copy of the server database (`out`) into a snapshot: the internal tables
/// dropped, `_sync_snapshot` written, the checksum computed from the copy.
fn finish(out: &Connection) -> Result<SnapshotMeta, ServerError> {
    let seq = super::meta(out, "head_seq")?;
    let version = super::schema_version(out)?;
    let tip = super::lineage::at(out, seq)?
        .ok_or_else(|| ServerError::internal(format!("no chain value at the head {seq}")))?;
    out.execute_batch(
        "PRAGMA journal_mode = OFF;
         DROP TABLE _sync_log; DROP TABLE _sync_batches; DROP TABLE _sync_conflicts;
         DROP TABLE _sync_meta; DROP TABLE _sync_leases; DROP TABLE _sync_chain;
         DROP TABLE IF EXISTS _sync_replica;
         CREATE TABLE _sync_snapshot (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    out.execute(
        "INSERT INTO _sync_snapshot(key, value) VALUES ('seq', ?1), ('schema_version', ?2), \
         ('lineage', ?3), ('chain', ?4)",
        params![seq, version, tip.lineage.0, tip.chain.0],
    )?;
    if let Some(sum) = tip.sum {
        out.execute(
            "INSERT INTO _sync_snapshot(key, value) VALUES ('sum', ?1)",
            [sum.to_bytes().to_vec()],
        )?;
    }
    out.execute_batch("VACUUM")?;
    // The file is what devices build on and check: its checksum is computed from it, and a
    // log that says otherwise (a damaged or hand-edited database) is reported to be fixed.
    let actual = crate::engine::checksum::table_sum(out).map_err(ServerError::internal)?;
    // An unknown one (a migration just ran) stays unknown in the log: a device behind compares
    // at that seq before it has run the migration.
    let sum_corrected = tip.sum.is_some_and(|s| s != actual);
    let tip = Tip {
        sum: Some(actual),
        ..tip
    };
    out.execute("DELETE FROM _sync_snapshot WHERE key = 'sum'", [])?;
    out.execute(
        "INSERT INTO _sync_snapshot(key, value) VALUES ('sum', ?1)",
        [actual.to_bytes().to_vec()],
    )?;
    Ok(SnapshotMeta {
        seq,
        schema_version: version,
        tip,
        sum_corrected,
    })
}
