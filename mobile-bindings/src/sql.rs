//! Running the app's SQL on a connection the client lent: statements and queries, shared by
//! `SyncDatabase` (writer and readers) and `Transaction`.

use crate::types::{QueryResult, Statement};
use crate::value::read_value;
use sync_client::Value;
use sync_client::rusqlite::{Connection, params_from_iter};

/// Runs `statements` on `conn` in order; returns the rows they changed.
pub(crate) fn run_statements(
    conn: &Connection,
    statements: &[Statement],
) -> sync_client::Result<i64> {
    let mut total = 0i64;
    for s in statements {
        total += conn.execute(&s.sql, params_from_iter(s.params.iter()))? as i64;
    }
    Ok(total)
}

/// Runs one query on `conn`: its column names and every row.
pub(crate) fn run_query(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> sync_client::Result<QueryResult> {
    let mut stmt = conn.prepare(sql)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let n = columns.len();
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |r| {
            (0..n)
                .map(|i| r.get_ref(i).map(read_value))
                .collect::<Result<Vec<_>, _>>()
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryResult { columns, rows })
}
