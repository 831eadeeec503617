//! A watched query: its SQL and parameters, how its rows are read, whom to tell, and the
//! tables it reads — found by SQLite itself while preparing it (its authorizer names every
//! table a statement reads, through views and subqueries), so a commit that wrote none of them
//! never re-runs it.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, Statement, params_from_iter};
use sync_core::engine::ffi::authorizer::Authorizer;

/// A query's result as plain values: the column names and each row's values in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The result's column names.
    pub columns: Vec<String>,
    /// Each row's values, one per column.
    pub rows: Vec<Vec<Value>>,
}

type Step = Box<dyn FnMut(Result<&mut Statement<'_>>, &[Value]) + Send>;

/// A query to re-run, with its delivery.
pub(crate) struct Query {
    sql: String,
    params: Vec<Value>,
    step: Step,
}

impl Query {
    /// Rows mapped by `map`, delivered to `f` when they differ from the last delivered.
    pub(crate) fn mapped<T, M, F>(sql: &str, params: Vec<Value>, mut map: M, f: F) -> Query
    where
        T: PartialEq + Clone + Send + 'static,
        M: FnMut(&Row<'_>) -> rusqlite::Result<T> + Send + 'static,
        F: FnMut(Result<Vec<T>>) + Send + 'static,
    {
        let mut deliver = Fresh::new(f);
        Query {
            sql: sql.to_string(),
            params,
            step: Box::new(move |stmt, params| {
                let rows = stmt.and_then(|stmt| {
                    let rows = stmt.query_map(params_from_iter(params), &mut map)?;
                    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
                });
                deliver.offer(rows)
            }),
        }
    }

    /// Rows as plain values, delivered to `f`.
    pub(crate) fn plain<F>(sql: &str, params: Vec<Value>, f: F) -> Query
    where
        F: FnMut(Result<Rows>) + Send + 'static,
    {
        let mut deliver = Fresh::new(f);
        Query {
            sql: sql.to_string(),
            params,
            step: Box::new(move |stmt, params| {
                let rows = stmt.and_then(|stmt| {
                    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
                    let n = columns.len();
                    let rows = stmt.query_map(params_from_iter(params), |r| {
                        (0..n).map(|i| r.get::<_, Value>(i)).collect()
                    })?;
                    Ok(Rows {
                        columns,
                        rows: rows.collect::<rusqlite::Result<_>>()?,
                    })
                });
                deliver.offer(rows)
            }),
        }
    }

    /// The tables of `main` the query reads (lower-cased), checking that it is a query and
    /// that its parameters fit.
    pub(crate) fn tables(&self, conn: &Connection) -> Result<Vec<String>> {
        let (tables, stmt) = prepare(conn, &self.sql)?;
        if stmt.parameter_count() != self.params.len() {
            return Err(Error::new(
                ErrorKind::InvalidSql,
                format!(
                    "the watched query takes {} parameters, {} given",
                    stmt.parameter_count(),
                    self.params.len()
                ),
            ));
        }
        Ok(tables)
    }

    /// Runs the query and delivers its rows or its error; the tables it reads now, when it
    /// could be prepared.
    pub(crate) fn run(&mut self, conn: &Connection) -> Option<Vec<String>> {
        match prepare(conn, &self.sql) {
            Ok((tables, mut stmt)) => {
                (self.step)(Ok(&mut stmt), &self.params);
                Some(tables)
            }
            Err(e) => {
                (self.step)(Err(e), &self.params);
                None
            }
        }
    }

    /// Delivers `e` instead of rows.
    pub(crate) fn fail(&mut self, e: Error) {
        (self.step)(Err(e), &self.params);
    }
}

/// Delivers a result unless it equals the last one delivered: a commit that rewrote a row
/// with the same values, or the several commits of one sync, re-run the query but show
/// nothing new. Errors are always delivered.
struct Fresh<T, F> {
    last: Option<T>,
    f: F,
}

impl<T: PartialEq + Clone, F: FnMut(Result<T>)> Fresh<T, F> {
    fn new(f: F) -> Fresh<T, F> {
        Fresh { last: None, f }
    }

    fn offer(&mut self, result: Result<T>) {
        match result {
            Ok(v) if self.last.as_ref() == Some(&v) => {}
            Ok(v) => {
                self.last = Some(v.clone());
                (self.f)(Ok(v))
            }
            Err(e) => {
                self.last = None;
                (self.f)(Err(e))
            }
        }
    }
}

/// Prepares `sql` afresh (never from the statement cache: only preparing shows the tables)
/// and names the tables of `main` it reads.
fn prepare<'c>(conn: &'c Connection, sql: &str) -> Result<(Vec<String>, Statement<'c>)> {
    let mut tables: Vec<String> = Vec::new();
    let stmt = {
        let _judge = Authorizer::install(conn, |a| {
            // A table no column is read from (`count(*)`) comes without its database.
            if a.code == rusqlite::ffi::SQLITE_READ
                && matches!(a.database, None | Some("main"))
                && let Some(table) = a.arg1
            {
                let table = table.to_ascii_lowercase();
                if !tables.contains(&table) {
                    tables.push(table);
                }
            }
            true
        });
        conn.prepare(sql)?
    };
    if !stmt.readonly() {
        return Err(Error::new(
            ErrorKind::InvalidSql,
            "a watched statement must be a query: it would write",
        ));
    }
    Ok((tables, stmt))
}
