//! `inspect --format sql`: a changeset as SQL statements that make the same changes — an
//! `INSERT` per inserted row, an `UPDATE … SET` of the changed columns and a `DELETE` per
//! deleted row, each keyed by its primary key — for reading, or for `sqlite3` to run.
//!
//! The statements carry no conflict detection: an UPDATE writes its new values whatever the
//! row holds, where `sync-cli apply` would report a DATA conflict first.

use crate::output::{ident, literal};
use sync_core::engine::decode::{Change, Op};
use sync_core::engine::value::Value;

/// The statement that makes `change`, naming columns by `names` (the table's columns in
/// declared order). Ends with `;`.
pub fn statement(change: &Change, names: &[String]) -> String {
    let table = ident(&change.table);
    let value = |side: Option<&Vec<Option<Value>>>, column: usize| {
        side.and_then(|v| v.get(column))
            .and_then(Option::as_ref)
            .map(literal)
    };
    let key: Vec<String> = (0..change.column_count())
        .filter(|&c| change.pk.get(c).is_some_and(|f| *f != 0))
        .map(|c| {
            let v = value(change.old.as_ref(), c)
                .or_else(|| value(change.new.as_ref(), c))
                .unwrap_or_else(|| "NULL".to_string());
            format!("{} = {v}", ident(&names[c]))
        })
        .collect();
    match change.op {
        Op::Insert => {
            let (columns, values): (Vec<String>, Vec<String>) = (0..change.column_count())
                .map(|c| {
                    (
                        ident(&names[c]),
                        value(change.new.as_ref(), c).unwrap_or_else(|| "NULL".to_string()),
                    )
                })
                .unzip();
            format!(
                "INSERT INTO {table}({}) VALUES ({});",
                columns.join(", "),
                values.join(", ")
            )
        }
        Op::Delete => format!("DELETE FROM {table} WHERE {};", key.join(" AND ")),
        Op::Update => {
            let set: Vec<String> = (0..change.column_count())
                .filter(|&c| change.pk.get(c).is_none_or(|f| *f == 0))
                .filter_map(|c| {
                    value(change.new.as_ref(), c).map(|v| format!("{} = {v}", ident(&names[c])))
                })
                .collect();
            if set.is_empty() {
                return format!(
                    "-- UPDATE {table} WHERE {}: no column changes",
                    key.join(" AND ")
                );
            }
            format!(
                "UPDATE {table} SET {} WHERE {};",
                set.join(", "),
                key.join(" AND ")
            )
        }
    }
}
