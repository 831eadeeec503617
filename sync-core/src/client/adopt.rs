//! Adopting existing data: the rows a local file already holds become its first pending
//! transactions, so that a file made without session-sync starts syncing with its data.
//!
//! The copy then keeps the client's equation — local state = server state at the cursor +
//! pending transactions — with an empty server state: undoing the pending transactions (the
//! inverse of an INSERT of every row) gives empty tables. So adopt only on top of a server
//! position whose app tables are empty; the caller checks that on the snapshot.
//!
//! Rows are recorded as INSERT changes in primary-key order, written straight from the tables
//! (no statement re-runs them, so no trigger fires twice and generated columns stay derived).
//! Foreign keys decide how they are cut into transactions: the server applies each transaction
//! on its own and rejects one that leaves a dangling reference, so a table's transactions come
//! after those of every table it references. Tables that reference each other (or
//! themselves) form one group that is never cut; other tables may be cut between any two rows
//! once a transaction reaches the target size.

use super::state::schema_version;
use crate::engine::decode::{Change, Op};
use crate::engine::encode::encode;
use crate::engine::outbox;
use crate::engine::schema::{self, SchemaError, TableShape};
use crate::engine::spool::Spool;
use crate::engine::value::Value;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;

/// Why existing rows could not be adopted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// Rows reference rows that do not exist: the server would reject the transaction that
    /// carries them.
    #[error(
        "{count} row(s) break a foreign key, e.g. table {table:?} rowid {rowid} references a missing row of {parent:?}; fix them before adopting (PRAGMA foreign_key_check lists them)"
    )]
    ForeignKeys {
        /// Violations found.
        count: usize,
        /// The first child table.
        table: String,
        /// Its rowid.
        rowid: i64,
        /// The table it references.
        parent: String,
    },
    /// Tables that must travel in one transaction hold more than one transaction may.
    #[error(
        "tables {tables} reference each other (or themselves) and must travel in one transaction, but it is {bytes} bytes; the server takes at most {limit}"
    )]
    TooLarge {
        /// The group, comma-separated.
        tables: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The schema could not be read.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// SQLite failed.
    #[error("SQLite failed while adopting rows: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A scratch file failed.
    #[error("cannot write a scratch file while adopting rows: {0}")]
    Io(#[from] std::io::Error),
}

/// How the rows were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Pending transactions made.
    pub transactions: u64,
    /// Rows recorded.
    pub rows: u64,
    /// Changeset bytes recorded.
    pub bytes: u64,
}

/// A set of tables that travel together: one table, or tables in a reference cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableGroup {
    /// The tables, by name.
    pub tables: Vec<String>,
    /// Whether the group may be cut between rows (one table that does not reference itself).
    pub splittable: bool,
}

/// The app tables of `conn` in groups, each after every group it references (parents first).
pub fn table_groups(conn: &Connection) -> Result<Vec<TableGroup>, SchemaError> {
    let tables = schema::user_tables(conn)?;
    let index: HashMap<String, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_ascii_lowercase(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    let mut self_ref = vec![false; tables.len()];
    for (i, t) in tables.iter().enumerate() {
        let mut stmt =
            conn.prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")?;
        let parents = stmt
            .query_map([t], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for p in parents {
            match index.get(&p.to_ascii_lowercase()) {
                Some(&j) if j == i => self_ref[i] = true,
                Some(&j) => edges[i].push(j),
                None => {} // a reference to a table that does not exist is no ordering
            }
        }
    }
    Ok(strongly_connected(&edges)
        .into_iter()
        .map(|members| TableGroup {
            splittable: members.len() == 1 && !self_ref[members[0]],
            tables: members.into_iter().map(|i| tables[i].clone()).collect(),
        })
        .collect())
}

/// Tarjan's algorithm over "references" edges. A component is emitted only after every
/// component it reaches, so the result lists referenced tables first.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [Vec<usize>],
        next: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.edges[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut members = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                members.push(w);
                if w == v {
                    break;
                }
            }
            members.sort_unstable();
            s.out.push(members);
        }
    }
    let n = edges.len();
    let mut s = State {
        edges,
        next: 0,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Fails with [`AdoptError::ForeignKeys`] when a row references a missing row.
pub fn check_foreign_keys(conn: &Connection) -> Result<(), AdoptError> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(t, _, _)| !schema::is_internal_table(t))
        .collect();
    match rows.first() {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(AdoptError::ForeignKeys {
            count: rows.len(),
            table: table.clone(),
            rowid: rowid.unwrap_or_default(),
            parent: parent.clone(),
        }),
    }
}

/// Rows encoded per piece of a transaction (a table header starts each piece).
const PIECE_ROWS: usize = 512;

/// Records every row of every app table of `conn` as INSERTs in the outbox, in transactions
/// of about `target_bytes` (cut only where no foreign key can dangle, see the module docs),
/// each at most `max_transaction_bytes`. Large transactions go through unlinked files in
/// `scratch`. Runs in the caller's transaction if one is open; the client tables must be
/// installed.
pub fn capture_existing_rows(
    conn: &Connection,
    scratch: &Path,
    target_bytes: u64,
    max_transaction_bytes: u64,
    now_ms: i64,
) -> Result<AdoptReport, AdoptError> {
    // The schema version is only read to fail early on a database without client tables.
    schema_version(conn)?;
    let mut report = AdoptReport::default();
    let mut tx = Spool::new(scratch, 1 << 20);
    for group in table_groups(conn)? {
        let group_start = tx.len();
        for table in &group.tables {
            let Some(shape) = schema::table_shape(conn, table)? else {
                continue;
            };
            let mut rows = TableRows::new(conn, &shape)?;
            loop {
                let piece = rows.next_piece(conn)?;
                if piece.is_empty() {
                    break;
                }
                report.rows += piece.len() as u64;
                std::io::Write::write_all(&mut tx, &encode(&piece))?;
                if group.splittable && tx.len() >= target_bytes {
                    flush(
                        conn,
                        &mut tx,
                        scratch,
                        max_transaction_bytes,
                        now_ms,
                        &mut report,
                    )?;
                }
            }
        }
        let group_bytes = tx.len() - group_start.min(tx.len());
        if !group.splittable && group_bytes > max_transaction_bytes {
            return Err(AdoptError::TooLarge {
                tables: group.tables.join(", "),
                bytes: group_bytes,
                limit: max_transaction_bytes,
            });
        }
        if tx.len() >= target_bytes {
            flush(
                conn,
                &mut tx,
                scratch,
                max_transaction_bytes,
                now_ms,
                &mut report,
            )?;
        }
    }
    flush(
        conn,
        &mut tx,
        scratch,
        max_transaction_bytes,
        now_ms,
        &mut report,
    )?;
    Ok(report)
}

fn flush(
    conn: &Connection,
    tx: &mut Spool,
    scratch: &Path,
    max_transaction_bytes: u64,
    now_ms: i64,
    report: &mut AdoptReport,
) -> Result<(), AdoptError> {
    if tx.is_empty() {
        return Ok(());
    }
    let full = std::mem::replace(tx, Spool::new(scratch, 1 << 20)).finish()?;
    if full.len() > max_transaction_bytes {
        return Err(AdoptError::TooLarge {
            tables: "(one table's rows)".into(),
            bytes: full.len(),
            limit: max_transaction_bytes,
        });
    }
    outbox::push_source(conn, full.source(), now_ms)?;
    report.transactions += 1;
    report.bytes += full.len();
    Ok(())
}

/// A table's rows in primary-key order, read in pieces (keyset pagination, so no statement
/// stays open across pieces).
struct TableRows {
    table: String,
    pk_flags: Vec<u8>,
    select: String,
    /// `WHERE (k1, k2) > (?, ?)` after the first piece.
    select_after: String,
    last_key: Option<Vec<Value>>,
    key_columns: Vec<usize>,
}

impl TableRows {
    fn new(_conn: &Connection, shape: &TableShape) -> Result<TableRows, AdoptError> {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let columns: Vec<String> = shape.columns.iter().map(|c| quote(&c.name)).collect();
        // Key columns in key order (the PRIMARY KEY's order, not the table's).
        let mut key_columns: Vec<usize> = shape.pk_columns();
        key_columns.sort_by_key(|&i| shape.columns[i].pk);
        let keys: Vec<String> = key_columns.iter().map(|&i| columns[i].clone()).collect();
        let base = format!("SELECT {} FROM {}", columns.join(", "), quote(&shape.name));
        let order = format!("ORDER BY {} LIMIT {PIECE_ROWS}", keys.join(", "));
        let placeholders = vec!["?"; keys.len()].join(", ");
        Ok(TableRows {
            table: shape.name.clone(),
            pk_flags: shape.columns.iter().map(|c| c.pk).collect(),
            select: format!("{base} {order}"),
            select_after: format!(
                "{base} WHERE ({}) > ({placeholders}) {order}",
                keys.join(", ")
            ),
            last_key: None,
            key_columns,
        })
    }

    fn next_piece(&mut self, conn: &Connection) -> Result<Vec<Change>, AdoptError> {
        let (sql, params): (&str, Vec<Value>) = match &self.last_key {
            None => (&self.select, Vec::new()),
            Some(k) => (&self.select_after, k.clone()),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let width = self.pk_flags.len();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                (0..width)
                    .map(|i| r.get_ref(i).map(Value::from))
                    .collect::<Result<Vec<Value>, _>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = rows.last() {
            self.last_key = Some(self.key_columns.iter().map(|&i| last[i].clone()).collect());
        }
        Ok(rows
            .into_iter()
            .map(|values| Change {
                table: self.table.clone(),
                op: Op::Insert,
                indirect: false,
                pk: self.pk_flags.clone(),
                old: None,
                new: Some(values.into_iter().map(Some).collect()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_tables_come_first_and_cycles_stay_together() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE line(id INTEGER PRIMARY KEY, inv INTEGER REFERENCES invoice(id));
             CREATE TABLE invoice(id INTEGER PRIMARY KEY, cust INTEGER REFERENCES customer(id));
             CREATE TABLE customer(id INTEGER PRIMARY KEY, rep INTEGER REFERENCES employee(id));
             CREATE TABLE employee(id INTEGER PRIMARY KEY, boss INTEGER REFERENCES employee(id));
             CREATE TABLE a(id INTEGER PRIMARY KEY, b INTEGER REFERENCES b(id));
             CREATE TABLE b(id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id));",
        )
        .unwrap();
        let groups = table_groups(&c).unwrap();
        let pos = |t: &str| {
            groups
                .iter()
                .position(|g| g.tables.iter().any(|x| x == t))
                .unwrap()
        };
        assert!(pos("employee") < pos("customer"));
        assert!(pos("customer") < pos("invoice"));
        assert!(pos("invoice") < pos("line"));
        assert_eq!(pos("a"), pos("b"));
        assert!(!groups[pos("a")].splittable);
        assert!(!groups[pos("employee")].splittable, "self-referencing");
        assert!(groups[pos("line")].splittable);
    }
}
