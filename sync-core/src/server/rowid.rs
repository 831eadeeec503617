//! Rowid leases: ranges of `INTEGER PRIMARY KEY` values only one device will use.

use super::ServerError;
use crate::engine::schema;
use crate::engine::tx::Tx;
use crate::protocol::VERSION;
use crate::protocol::rowid::{Lease, MAX_LEASE};
use rusqlite::{Connection, params};

/// Grants `device` a range of `size` ids no one else holds. The first lease starts above the
/// largest `INTEGER PRIMARY KEY` of every table, so existing rows never collide.
pub fn lease_rowids(
    conn: &Connection,
    device: &str,
    size: i64,
    now_ms: i64,
) -> Result<Lease, ServerError> {
    if !(1..=MAX_LEASE).contains(&size) {
        return Err(ServerError::BadRequest(format!(
            "lease size must be between 1 and {MAX_LEASE}, got {size}"
        )));
    }
    let tx = Tx::begin(conn)?;
    let mut next = super::meta(conn, "next_rowid")?;
    if next == 0 {
        next = 1;
        for table in schema::user_tables(conn)? {
            if let Some(shape) = schema::table_shape(conn, &table)?
                && let Some(col) = shape.rowid_alias()
            {
                let sql = format!(
                    "SELECT coalesce(max(\"{}\"), 0) FROM \"{}\"",
                    shape.columns[col].name.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                );
                let max: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
                next = next.max(max.saturating_add(1));
            }
        }
    }
    let end = next
        .checked_add(size)
        .ok_or_else(|| ServerError::BadRequest("the id space is exhausted".into()))?;
    super::set_meta(conn, "next_rowid", end)?;
    conn.execute(
        "INSERT INTO _sync_leases(device, start, end, at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![device, next, end, now_ms],
    )?;
    tx.commit()?;
    Ok(Lease {
        v: VERSION,
        start: next,
        end,
    })
}
