//! A pending transaction captured under an older schema, rewritten for the newer one.
//!
//! Changesets are positional: each change lists one value per column of the table as it was
//! when captured. After a migration the table may have more columns (`ADD COLUMN`), fewer
//! (`DROP COLUMN`), the same ones under other names (`RENAME COLUMN`), or none at all (`DROP
//! TABLE`). SQLite's own apply takes a changeset with *fewer* columns than the table (checked:
//! `fewer_columns_are_taken_by_sqlite_but_not_by_the_fit_check` below), but not one with more,
//! and its positional reading is wrong whenever a column in the middle went away; and the
//! engine's fit check (rightly) insists on the table's column count. So every change is
//! rewritten by column name to the new shape, before the upgrade's redo re-applies it under a
//! session (which captures the new-shape effect that then stays in the outbox):
//!
//! - a column the new schema added: an insert gets the column's declared default (NULL
//!   without one), an update leaves it undefined, a delete gets the row's current value;
//! - a column the new schema dropped: its old values are left out; a change that *writes* it
//!   (an insert with a non-NULL value, an update that changes it) cannot be kept, and the
//!   whole transaction goes to the rejected queue with the reason;
//! - a renamed column (a new name at the position of a vanished one) keeps its values;
//! - a table that is gone, or whose primary key changed: rejected, with the reason.

use super::ClientError;
use crate::engine::decode::{self, Change, Op};
use crate::engine::encode::encode;
use crate::engine::schema::{self, TableShape};
use crate::engine::value::Value;
use rusqlite::Connection;
use std::collections::HashMap;

/// Table shapes before a schema change, by lowercased name.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct OldShapes(HashMap<String, TableShape>);

impl OldShapes {
    /// The shapes of every app table of `conn` now.
    pub(crate) fn read(conn: &Connection) -> Result<OldShapes, ClientError> {
        let mut map = HashMap::new();
        for t in schema::user_tables(conn)? {
            if let Some(shape) = schema::table_shape(conn, &t)? {
                map.insert(t.to_ascii_lowercase(), shape);
            }
        }
        Ok(OldShapes(map))
    }

    fn get(&self, table: &str) -> Option<&TableShape> {
        self.0.get(&table.to_ascii_lowercase())
    }

    /// `now`, plus the tables of `self` that `now` lacks: a table dropped midway through a
    /// script (the table rebuild of `ALTER` recipes: create, copy, drop, rename) is mapped
    /// from its last shape if it comes back under its name.
    pub(crate) fn followed_by(&self, mut now: OldShapes) -> OldShapes {
        for (name, shape) in &self.0 {
            now.0.entry(name.clone()).or_insert_with(|| shape.clone());
        }
        now
    }
}

/// How one table's columns map from the old shape to the new one.
struct Mapping {
    /// For each new column, the old column it takes its values from (`None`: added).
    source: Vec<Option<usize>>,
    /// Old columns with no new column.
    dropped: Vec<usize>,
    /// The old columns' names (for reasons).
    old_names: Vec<String>,
    new: TableShape,
}

fn mapping(old: &TableShape, new: TableShape) -> Mapping {
    let by_name = |name: &str| {
        old.columns
            .iter()
            .position(|c| schema::same_name(&c.name, name))
    };
    let mut source: Vec<Option<usize>> = new.columns.iter().map(|c| by_name(&c.name)).collect();
    // A rename (one statement changed a name in place, the count unchanged): a new name
    // where an old column vanished, at the same position.
    for (j, s) in source.iter_mut().enumerate() {
        let renamed = s.is_none()
            && old.columns.len() == new.columns.len()
            && !new
                .columns
                .iter()
                .any(|c| schema::same_name(&c.name, &old.columns[j].name));
        if renamed {
            *s = Some(j);
        }
    }
    let dropped = (0..old.columns.len())
        .filter(|i| !source.contains(&Some(*i)))
        .collect();
    Mapping {
        source,
        dropped,
        old_names: old.columns.iter().map(|c| c.name.clone()).collect(),
        new,
    }
}

/// The rewritten changeset, or why the transaction cannot be kept under the new schema. A
/// change to a table that does not exist (now) is kept as it is unless `strict` (at the end
/// of a script: the table is gone for good).
pub(crate) fn reshape(
    conn: &Connection,
    old: &OldShapes,
    version: u32,
    bytes: &[u8],
    strict: bool,
) -> Result<Result<Vec<u8>, String>, ClientError> {
    if bytes.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let changes = decode::decode(bytes).map_err(|e| ClientError::CorruptEntry {
        seq: 0,
        what: format!("a pending transaction does not decode: {e}"),
    })?;
    let mut maps: HashMap<String, Option<Mapping>> = HashMap::new();
    let mut out = Vec::with_capacity(changes.len());
    let mut changed = false;
    for c in changes {
        let key = c.table.to_ascii_lowercase();
        if !maps.contains_key(&key) {
            let m = match (old.get(&c.table), schema::table_shape(conn, &c.table)?) {
                (_, None) if !strict => None,
                (_, None) => {
                    return Ok(Err(format!(
                        "it writes table {:?}, which schema version {version} no longer has",
                        c.table
                    )));
                }
                (Some(o), Some(n)) if o != &n => Some(mapping(o, n)),
                _ => None,
            };
            maps.insert(key.clone(), m);
        }
        match &maps[&key] {
            None => out.push(c),
            Some(m) => match rewrite(conn, m, &c, version)? {
                Ok(new) => {
                    changed = true;
                    out.push(new);
                }
                Err(why) => return Ok(Err(why)),
            },
        }
    }
    Ok(Ok(if changed {
        encode(&out)
    } else {
        bytes.to_vec()
    }))
}

fn rewrite(
    conn: &Connection,
    m: &Mapping,
    c: &Change,
    version: u32,
) -> Result<Result<Change, String>, ClientError> {
    let table = &m.new.name;
    for &i in &m.dropped {
        let writes = match c.op {
            Op::Insert => c
                .new
                .as_ref()
                .and_then(|n| n.get(i).cloned().flatten())
                .is_some_and(|v| v != Value::Null),
            Op::Update => c
                .new
                .as_ref()
                .and_then(|n| n.get(i))
                .is_some_and(Option::is_some),
            Op::Delete => false,
        };
        if writes {
            let column = &m.old_names[i];
            return Ok(Err(format!(
                "it sets column {column:?} of table {table:?}, which schema version {version} drops"
            )));
        }
    }
    let mut pk = Vec::with_capacity(m.source.len());
    for (j, s) in m.source.iter().enumerate() {
        let was_key = s.is_some_and(|i| c.pk.get(i).is_some_and(|f| *f != 0));
        if was_key != (m.new.columns[j].pk != 0) {
            return Ok(Err(format!(
                "the primary key of table {table:?} changed in schema version {version}"
            )));
        }
        pk.push(s.and_then(|i| c.pk.get(i).copied()).unwrap_or(0));
    }
    if m.dropped
        .iter()
        .any(|i| c.pk.get(*i).is_some_and(|f| *f != 0))
    {
        return Ok(Err(format!(
            "the primary key of table {table:?} changed in schema version {version}"
        )));
    }
    let pick = |record: &Option<Vec<Option<Value>>>, added: &dyn Fn(usize) -> Option<Value>| {
        record.as_ref().map(|values| {
            m.source
                .iter()
                .enumerate()
                .map(|(j, s)| match s {
                    Some(i) => values.get(*i).cloned().flatten(),
                    None => added(j),
                })
                .collect::<Vec<_>>()
        })
    };
    let (old, new) = match c.op {
        Op::Insert => {
            let mut defaults = Vec::new();
            for (j, s) in m.source.iter().enumerate() {
                defaults.push(match s {
                    Some(_) => None,
                    None => Some(default_value(conn, table, &m.new.columns[j].name)?),
                });
            }
            (None, pick(&c.new, &|j| defaults[j].clone()))
        }
        Op::Update => (pick(&c.old, &|_| None), pick(&c.new, &|_| None)),
        Op::Delete => {
            let key: Vec<(String, Value)> = m
                .source
                .iter()
                .enumerate()
                .filter(|(j, _)| m.new.columns[*j].pk != 0)
                .map(|(j, s)| {
                    let v = s
                        .and_then(|i| c.old.as_ref()?.get(i).cloned().flatten())
                        .unwrap_or(Value::Null);
                    (m.new.columns[j].name.clone(), v)
                })
                .collect();
            let mut current = Vec::new();
            for (j, s) in m.source.iter().enumerate() {
                current.push(match s {
                    Some(_) => None,
                    None => Some(current_value(conn, table, &m.new.columns[j].name, &key)?),
                });
            }
            (pick(&c.old, &|j| current[j].clone()), None)
        }
    };
    Ok(Ok(Change {
        table: c.table.clone(),
        op: c.op,
        indirect: c.indirect,
        pk,
        old,
        new,
    }))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The value an insert that names no value for `column` gets: its declared default.
fn default_value(conn: &Connection, table: &str, column: &str) -> Result<Value, ClientError> {
    let expr: Option<String> = conn.query_row(
        "SELECT dflt_value FROM pragma_table_xinfo(?1) WHERE name = ?2 COLLATE NOCASE",
        [table, column],
        |r| r.get(0),
    )?;
    Ok(match expr {
        None => Value::Null,
        Some(expr) => conn.query_row(&format!("SELECT ({expr})"), [], |r| {
            Ok(Value::from(r.get_ref(0)?))
        })?,
    })
}

/// `column` of the row with primary key `key` (NULL when there is no such row: the delete
/// then meets no row, which the redo records like any other).
fn current_value(
    conn: &Connection,
    table: &str,
    column: &str,
    key: &[(String, Value)],
) -> Result<Value, ClientError> {
    let filter = key
        .iter()
        .enumerate()
        .map(|(n, (name, _))| format!("{} IS ?{}", quote(name), n + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT {} FROM {} WHERE {filter}",
        quote(column),
        quote(table)
    );
    let mut stmt = conn.prepare(&sql)?;
    let values: Vec<&dyn rusqlite::ToSql> =
        key.iter().map(|(_, v)| v as &dyn rusqlite::ToSql).collect();
    let mut rows = stmt.query(values.as_slice())?;
    Ok(match rows.next()? {
        Some(row) => Value::from(row.get_ref(0)?),
        None => Value::Null,
    })
}
