//! The client's own state in `_sync_client` (cursor, schema version) and `_sync_inflight`
//! (the batch being pushed and, once answered, the server's answer).

use crate::protocol::push::{PushResponse, PushStatus};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn get_state(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM _sync_client WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

pub(crate) fn set_state(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO _sync_client(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// The last log seq integrated into the local database.
pub fn cursor(conn: &Connection) -> rusqlite::Result<i64> {
    get_state(conn, "cursor")
}

/// The schema version the local database was bootstrapped at.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    Ok(u32::try_from(get_state(conn, "schema_version")?).unwrap_or(0))
}

/// Records the schema version (after `init`).
pub fn set_schema_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    set_state(conn, "schema_version", i64::from(version))
}

/// The batch being pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Inflight {
    /// Its idempotency key.
    pub batch_id: String,
    /// Outbox entries with `seq <= through_seq` are in it.
    pub through_seq: i64,
    /// The seq the server answered with, once answered.
    pub acked_seq: Option<i64>,
    /// The status the server answered, once answered.
    pub acked_status: Option<PushStatus>,
    /// The whole answer, once answered: every transaction's outcome.
    pub answer: Option<PushResponse>,
}

/// The batch in flight, if any.
pub fn inflight(conn: &Connection) -> rusqlite::Result<Option<Inflight>> {
    conn.prepare_cached(
        "SELECT batch_id, through_seq, acked_seq, acked_status, answer FROM _sync_inflight \
         WHERE id = 1",
    )?
    .query_row([], |r| {
        Ok(Inflight {
            batch_id: r.get(0)?,
            through_seq: r.get(1)?,
            acked_seq: r.get(2)?,
            acked_status: r
                .get::<_, Option<String>>(3)?
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
            answer: r
                .get::<_, Option<String>>(4)?
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
        })
    })
    .optional()
}

pub(crate) fn clear_inflight(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM _sync_inflight", [])?;
    Ok(())
}
