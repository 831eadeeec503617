//! Snapshots on the client: a new local copy made from one, and an existing copy re-based on
//! one (its pending changes kept). A snapshot may hold app tables only.

use super::ClientError;
use super::integrate::apply_exact;
use super::push::settle_batch;
use super::redo::redo_each;
use super::report::{IntegrateReport, Touched};
use super::state::{inflight, schema_version, set_schema_version, set_state, set_sum, set_synced};
use crate::engine::changeset::Changeset;
use crate::engine::checksum::{self, Checksum};
use crate::engine::cipher::{self, EncryptionKey};
use crate::engine::ffi::session::Session;
use crate::engine::outbox;
use crate::engine::schema;
use crate::engine::tx::Tx;
use crate::protocol::lineage::{Hex64, Tip};
use crate::protocol::snapshot::META_TABLE as SNAPSHOT_META_TABLE;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use std::path::Path;

/// What a snapshot file says it is (its `_sync_snapshot` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The seq it corresponds to.
    pub seq: i64,
    /// Its schema version.
    pub schema_version: u32,
    /// Lineage, chain value and checksum at `seq` (`None` from a server before lineages).
    pub tip: Option<Tip>,
}

/// Reads a snapshot file's seq, schema version and position (from its `_sync_snapshot`
/// table). `key`: the snapshot was stored encrypted with it (see
/// [`crate::engine::cipher::import_plain`]).
pub fn snapshot_meta(
    path: &Path,
    key: Option<&EncryptionKey>,
) -> Result<SnapshotInfo, ClientError> {
    let snap = cipher::open(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY, key)
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let get = |key: &str| -> Result<i64, ClientError> {
        snap.query_row(
            "SELECT value FROM _sync_snapshot WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .map_err(|e| ClientError::InvalidSnapshot(format!("no {key} recorded: {e}")))
    };
    let seq = get("seq")?;
    let version = u32::try_from(get("schema_version")?)
        .map_err(|_| ClientError::InvalidSnapshot("schema_version out of range".into()))?;
    check_snapshot_schema(&snap)?;
    let optional = |key: &str| -> Result<Option<rusqlite::types::Value>, ClientError> {
        snap.query_row(
            "SELECT value FROM _sync_snapshot WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))
    };
    use rusqlite::types::Value as V;
    let tip = match (optional("lineage")?, optional("chain")?) {
        (Some(V::Integer(lineage)), Some(V::Integer(chain))) => {
            let sum = match optional("sum")? {
                None => None,
                Some(V::Blob(b)) => Some(Checksum::from_bytes(&b).ok_or_else(|| {
                    ClientError::InvalidSnapshot("its checksum is not 32 bytes".into())
                })?),
                Some(_) => {
                    return Err(ClientError::InvalidSnapshot(
                        "its checksum is not a blob".into(),
                    ));
                }
            };
            Some(Tip {
                lineage: Hex64(lineage),
                seq,
                chain: Hex64(chain),
                sum,
            })
        }
        (None, None) => None,
        _ => {
            return Err(ClientError::InvalidSnapshot(
                "its lineage and chain value are incomplete".into(),
            ));
        }
    };
    Ok(SnapshotInfo {
        seq,
        schema_version: version,
        tip,
    })
}

/// Checks that the app tables (now the snapshot's content) have the snapshot's checksum, and
/// returns it: a damaged or incomplete download is refused before anything is built on it.
fn check_snapshot_sum(
    conn: &Connection,
    info: &SnapshotInfo,
) -> Result<Option<Checksum>, ClientError> {
    let Some(expected) = info.tip.and_then(|t| t.sum) else {
        return Ok(None);
    };
    let found = checksum::table_sum(conn)?;
    if found != expected {
        return Err(ClientError::InvalidSnapshot(format!(
            "its content has checksum {found}, but it says {expected}"
        )));
    }
    Ok(Some(found))
}

fn record_position(
    conn: &Connection,
    info: &SnapshotInfo,
    sum: Option<Checksum>,
) -> Result<(), ClientError> {
    match &info.tip {
        Some(tip) => set_synced(conn, tip, sum)?,
        None => {
            set_state(conn, "cursor", info.seq)?;
            set_state(conn, "rebase_due", 0)?;
            set_state(conn, "lineage", 0)?;
            set_sum(conn, None)?;
        }
    }
    Ok(())
}

/// A snapshot becomes (or replaces the rows of) the local database, so it may hold app tables
/// only: a `_sync_*` table other than its marker would arrive as this device's own internal
/// state (an outbox row pushed as ours, a forged cursor), and a trigger that names one would
/// write it during later applies. Names are judged as SQLite judges them (any letter case).
fn check_snapshot_schema(snap: &Connection) -> Result<(), ClientError> {
    let mut stmt = snap
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema")
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let objects = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    for (kind, name, sql) in objects {
        if kind == "table"
            && schema::is_library_table(&name)
            && !schema::same_name(&name, SNAPSHOT_META_TABLE)
        {
            return Err(ClientError::InvalidSnapshot(format!(
                "it holds table {name:?}, which is internal to session-sync"
            )));
        }
        if kind == "trigger" && sql.to_ascii_lowercase().contains(schema::INTERNAL_PREFIX) {
            return Err(ClientError::InvalidSnapshot(format!(
                "its trigger {name:?} refers to a table internal to session-sync"
            )));
        }
    }
    Ok(())
}

/// Makes a new local database at `dest` from a snapshot file: copies it, removes the
/// snapshot's marker table, installs the client tables and sets cursor and schema version.
/// With `key`, the snapshot is encrypted with it and so is the copy.
pub fn init_from_snapshot(
    snapshot: &Path,
    dest: &Path,
    key: Option<&EncryptionKey>,
) -> Result<Connection, ClientError> {
    let info = snapshot_meta(snapshot, key)?;
    if dest.exists() {
        return Err(ClientError::InvalidSnapshot(format!(
            "{} already exists",
            dest.display()
        )));
    }
    std::fs::copy(snapshot, dest).map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    let conn = Connection::open(dest)?;
    cipher::set_key(&conn, key).map_err(|e| ClientError::InvalidSnapshot(e.to_string()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; DROP TABLE _sync_snapshot;")?;
    super::install(&conn)?;
    let sum = check_snapshot_sum(&conn, &info)?;
    record_position(&conn, &info, sum)?;
    set_schema_version(&conn, info.schema_version)?;
    Ok(conn)
}

/// Installs the client tables and records a snapshot's position (its seq as the cursor with
/// its lineage, chain value and checksum, its schema version): the state of a copy whose synced part is the snapshot's content. `init`
/// uses it on the snapshot's own copy; adopting a file uses it on the file (whose synced part
/// is the snapshot's empty tables). Read the position with [`snapshot_meta`].
pub fn take_snapshot_position(conn: &Connection, info: &SnapshotInfo) -> Result<(), ClientError> {
    super::install(conn)?;
    // The synced part is the snapshot's content, whatever else the tables hold (an adopted
    // file's rows become pending transactions): its checksum is the snapshot's.
    record_position(conn, info, info.tip.and_then(|t| t.sum))?;
    set_schema_version(conn, info.schema_version)?;
    Ok(())
}

/// Re-bases the local database on a snapshot: in one transaction, make every app table equal
/// to the snapshot's, set the cursor to the snapshot's seq, redo pending (large pending
/// transactions through files in `scratch`).
/// Pending local changes survive. A batch in flight must have been answered (its fate known)
/// or this fails with [`ClientError::InflightUnresolved`].
/// `batch_seq` is where the server said the batch in flight stands in the snapshot's history
/// (see [`crate::client::cycle::Reply::Snapshot`]): settled from it when logged at or below the
/// snapshot's seq, its answer forgotten (pushed again) when not in that history; `None` falls
/// back to the answer kept, when it is from the snapshot's lineage.
/// `key`: the snapshot is encrypted with it, as `conn`'s database is.
pub fn bootstrap(
    conn: &Connection,
    snapshot: &Path,
    scratch: Option<&Path>,
    batch_seq: Option<Option<i64>>,
    now_ms: i64,
    key: Option<&EncryptionKey>,
) -> Result<IntegrateReport, ClientError> {
    let info = snapshot_meta(snapshot, key)?;
    let version = info.schema_version;
    if version != schema_version(conn)? {
        return Err(ClientError::InvalidSnapshot(format!(
            "the snapshot is at schema version {version}, the local database at {}",
            schema_version(conn)?
        )));
    }
    cipher::attach(conn, &snapshot.to_string_lossy(), "_sync_snap", key).map_err(|e| match e {
        cipher::CipherError::Sqlite(e) => ClientError::Sqlite(e),
        e => ClientError::InvalidSnapshot(e.to_string()),
    })?;
    let result = bootstrap_attached(conn, &info, scratch, batch_seq, now_ms);
    let detach = conn.execute_batch("DETACH DATABASE _sync_snap");
    let report = result?;
    detach?;
    Ok(report)
}

fn bootstrap_attached(
    conn: &Connection,
    info: &SnapshotInfo,
    scratch: Option<&Path>,
    batch_seq: Option<Option<i64>>,
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    let seq = info.seq;
    let tables = schema::user_tables(conn)?;
    let snap_tables = schema::user_tables_in(conn, "_sync_snap")?;
    for t in snap_tables.iter().chain(&tables) {
        if !(tables.contains(t) && snap_tables.contains(t))
            || schema::table_shape(conn, t)? != schema::table_shape_in(conn, "_sync_snap", t)?
        {
            return Err(ClientError::InvalidSnapshot(format!(
                "table {t:?} differs between the snapshot and the local database"
            )));
        }
    }
    let tx = Tx::begin(conn)?;
    let mut report = IntegrateReport {
        cursor: seq,
        rebased: true,
        ..IntegrateReport::default()
    };
    let mut touched = Touched::default();
    let inflight = inflight(conn)?;
    if let Some(f) = &inflight
        && f.acked_seq.is_none()
    {
        return Err(ClientError::InflightUnresolved {
            batch_id: f.batch_id.clone(),
        });
    }
    // Make main equal to the snapshot: the session's diff records what turns the snapshot
    // into main (server state + pending effects); its inverse turns main into the snapshot.
    // No undo is needed first: the diff takes main from whatever it holds.
    let mut bytes = Vec::new();
    {
        let mut session = Session::new(conn)?;
        for t in &tables {
            session.attach(Some(t.as_str()))?;
            session.diff("_sync_snap", t)?;
        }
        session.changeset_strm(&mut bytes)?;
    }
    let to_snapshot = Changeset::from_bytes(bytes).invert()?;
    touched.add(&to_snapshot);
    apply_exact(
        conn,
        crate::engine::spool::Source::Bytes(to_snapshot.as_bytes()),
        "bootstrap",
    )?;
    let sum = check_snapshot_sum(conn, info)?;
    // Main is now the snapshot: no pending transaction is applied. The batch in flight, if
    // the snapshot contains it (its answer came, its seq is at or below the snapshot's), is
    // settled now; then the pending transactions are redone on the snapshot.
    // Only an answer from the snapshot's own history counts: one from before a restore (another
    // lineage), or naming the snapshot's seq with another chain value, is forgotten and the
    // batch pushed again.
    let same_history = |f: &super::state::Inflight| {
        let answered = f.answer.as_ref().and_then(|a| a.tip);
        match (answered, info.tip) {
            (Some(a), Some(s)) => a.lineage == s.lineage && (a.seq != s.seq || a.chain == s.chain),
            _ => true,
        }
    };
    // The snapshot holds the batch, but the answer we hold is not the one for that entry (the
    // history changed between the re-push and the snapshot): nothing is kept; the caller pushes
    // the batch again for its answer in this history and asks for a snapshot again.
    if let (Some(f), Some(Some(a))) = (&inflight, batch_seq)
        && a <= seq
        && f.acked_seq != Some(a)
    {
        return Err(ClientError::InflightUnresolved {
            batch_id: f.batch_id.clone(),
        });
    }
    let settle = match (&inflight, batch_seq) {
        (None, _) => false,
        // The server said: logged at `a` in this history, with the answer we hold.
        (Some(f), Some(Some(a))) => a <= seq && f.acked_seq == Some(a),
        (Some(_), Some(None)) => false,
        (Some(f), None) => f.acked_seq.is_some_and(|a| a <= seq) && same_history(f),
    };
    let stale = match (&inflight, batch_seq) {
        (Some(f), Some(Some(a))) => f.acked_seq != Some(a),
        (Some(f), Some(None)) => f.acked_seq.is_some(),
        (Some(f), None) => f.acked_seq.is_some() && !same_history(f),
        (None, _) => false,
    };
    if stale {
        super::state::forget_answer(conn)?;
    }
    if let Some(f) = inflight.filter(|_| settle) {
        report.own_batch = f.acked_status;
        let log_seq = f.acked_seq.unwrap_or(seq);
        report.new_rejected += settle_batch(conn, &f, None, log_seq, now_ms)?;
    }
    let redid = redo_each(conn, &outbox::entries(conn)?, scratch, now_ms, &mut touched)?;
    report.new_conflicts += redid.conflicts;
    report.new_rejected += redid.rejected;
    record_position(conn, info, sum)?;
    tx.commit()?;
    (report.touched, report.touched_tables) = touched.into_parts();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot file as the server makes it, plus `extra` SQL.
    fn snapshot_with(dir: &Path, extra: &str) -> std::path::PathBuf {
        let path = dir.join(format!("snap-{}.db", extra.len()));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT);
             CREATE TABLE _sync_snapshot(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO _sync_snapshot VALUES ('seq', 0), ('schema_version', 1);
             {extra}"
        ))
        .unwrap();
        path
    }

    #[test]
    fn snapshots_holding_internal_tables_or_triggers_on_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ok = snapshot_with(dir.path(), "");
        let info = snapshot_meta(&ok, None).unwrap();
        assert_eq!((info.seq, info.schema_version, info.tip), (0, 1, None));
        for extra in [
            "CREATE TABLE _SYNC_OUTBOX(seq INTEGER PRIMARY KEY, changeset BLOB, created_ms INTEGER);",
            "CREATE TABLE _sync_client(key TEXT PRIMARY KEY, value INTEGER);",
            "CREATE TABLE t2(id INTEGER PRIMARY KEY); CREATE TRIGGER tr AFTER INSERT ON notes \
             BEGIN INSERT INTO _Sync_Outbox_x VALUES (1); END;",
        ] {
            let snap = snapshot_with(dir.path(), extra);
            let dest = dir.path().join("local.db");
            let err = init_from_snapshot(&snap, &dest, None).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidSnapshot(_)),
                "{extra}: {err}"
            );
            assert!(!dest.exists(), "{extra}");
        }
    }
}
