//! Whether two databases have the same app schema, and where they differ.
//!
//! Adopting existing data (a server database imported from a file, a local file adopted into a
//! server database) is sound only when both sides have the same tables: changesets address
//! columns by position, and a unique index or foreign key present on one side only makes the
//! same change succeed there and fail on the other. So the comparison covers what decides how
//! a change applies — per table (names folded as SQLite folds them): `WITHOUT ROWID`, each
//! column in order (name, declared type, NOT NULL, default, key position, hidden/generated),
//! the foreign keys with their actions; every index (unique or not, its columns, partial or
//! not); and triggers and views by their SQL (whitespace-normalised). Not compared: `CHECK`
//! constraints and collations inside a `CREATE TABLE` (SQLite keeps them only in the
//! statement's text, which differs cosmetically after `ALTER TABLE`).
//!
//! Internal objects (`_sync_*`, `sqlite_*`, and indexes and triggers on those tables) are
//! ignored on both sides.

use crate::engine::schema::{self, SchemaError};
use rusqlite::Connection;
use std::collections::BTreeMap;

/// A database's app schema as comparable lines: object key (lower-cased) → description.
type Described = BTreeMap<String, String>;

/// The differences between the app schemas of `a` and `b` (their `main` databases), one
/// sentence each, naming the sides `a_name` and `b_name` ("the file", "the server"). Empty
/// when they match.
pub fn differences(
    a: &Connection,
    a_name: &str,
    b: &Connection,
    b_name: &str,
) -> Result<Vec<String>, SchemaError> {
    let da = describe(a)?;
    let db = describe(b)?;
    // Tables first, then indexes, triggers, views; a table missing on one side is one line,
    // not one per column.
    let rank = |key: &str| match key.split(' ').next() {
        Some("table") => 0,
        Some("index") => 1,
        Some("trigger") => 2,
        _ => 3,
    };
    let mut keys: Vec<&String> = da
        .keys()
        .chain(db.keys().filter(|k| !da.contains_key(*k)))
        .collect();
    keys.sort_by_key(|k| (rank(k), (*k).clone()));
    let mut missing_tables: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for key in keys {
        if missing_tables.iter().any(|t| key.starts_with(t.as_str())) {
            continue;
        }
        let table_key = key.starts_with("table ") && key.matches(' ').count() == 1;
        match (da.get(key), db.get(key)) {
            (Some(va), None) => out.push(format!("{key} ({va}) exists in {a_name} only")),
            (None, Some(vb)) => out.push(format!("{key} ({vb}) exists in {b_name} only")),
            (Some(va), Some(vb)) if va != vb => {
                out.push(format!("{key}: {va} in {a_name}, {vb} in {b_name}"));
                continue;
            }
            _ => continue,
        }
        if table_key {
            missing_tables.push(format!("{key} "));
        }
    }
    Ok(out)
}

/// Collapses runs of whitespace to one space, so that indentation does not count.
fn normalise_sql(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn describe(conn: &Connection) -> Result<Described, SchemaError> {
    let mut out = Described::new();
    let tables = schema::user_tables(conn)?;
    for table in &tables {
        describe_table(conn, table, &mut out)?;
    }
    let mut stmt =
        conn.prepare("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema")?;
    let objects = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (kind, name, table, sql) in objects {
        // Indexes SQLite makes for UNIQUE and PRIMARY KEY constraints (`sqlite_autoindex_…`)
        // count: they are constraints. Objects on internal tables do not.
        if schema::is_internal_table(&table) {
            continue;
        }
        let key = format!("{kind} {}", quoted(&name.to_ascii_lowercase()));
        match kind.as_str() {
            "index" => {
                out.insert(key, describe_index(conn, &name, &table, &sql)?);
            }
            "trigger" | "view" => {
                out.insert(key, normalise_sql(&sql));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn describe_table(conn: &Connection, table: &str, out: &mut Described) -> Result<(), SchemaError> {
    let lower = table.to_ascii_lowercase();
    let without_rowid: bool = conn.query_row(
        "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1 COLLATE NOCASE",
        [table],
        |r| Ok(r.get::<_, i64>(0)? != 0),
    )?;
    out.insert(
        format!("table {}", quoted(&lower)),
        if without_rowid {
            "a WITHOUT ROWID table".into()
        } else {
            "a rowid table".into()
        },
    );
    let mut cols = conn.prepare(
        "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)",
    )?;
    let columns = cols
        .query_map([table], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)? != 0,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (position, (_, name, decl, not_null, default, pk, hidden)) in columns.iter().enumerate() {
        let mut d = format!(
            "{} {}",
            quoted(&name.to_ascii_lowercase()),
            decl.to_uppercase()
        );
        if *not_null {
            d.push_str(" NOT NULL");
        }
        if let Some(v) = default {
            d.push_str(&format!(" DEFAULT {v}"));
        }
        if *pk != 0 {
            d.push_str(&format!(" (primary key column {pk})"));
        }
        match hidden {
            0 => {}
            1 => d.push_str(" (hidden)"),
            _ => d.push_str(" (generated)"),
        }
        out.insert(
            format!("table {} column {}", quoted(&lower), position + 1),
            d,
        );
    }
    let mut fks = conn.prepare(
        "SELECT id, seq, \"table\", \"from\", coalesce(\"to\", ''), on_update, on_delete, \"match\" \
         FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
    )?;
    let rows = fks
        .query_map([table], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // One foreign key per id, keyed by its child columns.
    let mut by_id: BTreeMap<i64, (Vec<String>, String, Vec<String>, String)> = BTreeMap::new();
    for (id, parent, from, to, on_update, on_delete, matching) in rows {
        let e = by_id.entry(id).or_insert_with(|| {
            (
                Vec::new(),
                parent.to_ascii_lowercase(),
                Vec::new(),
                format!("ON UPDATE {on_update} ON DELETE {on_delete} MATCH {matching}"),
            )
        });
        e.0.push(from.to_ascii_lowercase());
        e.2.push(to.to_ascii_lowercase());
    }
    for (from, parent, to, actions) in by_id.into_values() {
        out.insert(
            format!("table {} foreign key ({})", quoted(&lower), from.join(", ")),
            format!(
                "REFERENCES {}({}) {actions}",
                quoted(&parent),
                to.join(", ")
            ),
        );
    }
    Ok(())
}

fn describe_index(
    conn: &Connection,
    name: &str,
    table: &str,
    sql: &str,
) -> Result<String, SchemaError> {
    let (unique, partial): (bool, bool) = conn.query_row(
        "SELECT \"unique\", partial FROM pragma_index_list(?1) WHERE name = ?2",
        [table, name],
        |r| Ok((r.get::<_, i64>(0)? != 0, r.get::<_, i64>(1)? != 0)),
    )?;
    let mut stmt = conn.prepare(
        "SELECT coalesce(name, '<expression>'), \"desc\", coalesce(coll, '') \
         FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno",
    )?;
    let columns = stmt
        .query_map([name], |r| {
            Ok(format!(
                "{}{} {}",
                r.get::<_, String>(0)?.to_ascii_lowercase(),
                if r.get::<_, i64>(1)? != 0 {
                    " DESC"
                } else {
                    ""
                },
                r.get::<_, String>(2)?.to_ascii_uppercase()
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut d = format!(
        "{}on {}({})",
        if unique { "UNIQUE " } else { "" },
        quoted(&table.to_ascii_lowercase()),
        columns.join(", ")
    );
    if partial {
        // The WHERE clause lives only in the statement's text.
        d.push_str(&format!(" partial: {}", normalise_sql(sql)));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(sql: &str) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(sql).unwrap();
        c
    }

    #[test]
    fn equal_schemas_match_across_formatting_and_letter_case() {
        let a = db(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT NOT NULL DEFAULT 'a');
                    CREATE INDEX tx ON t(x); CREATE TABLE _sync_outbox(seq INTEGER PRIMARY KEY);",
        );
        let b = db(
            "create table T (\n  ID integer primary key,\n  X text not null default 'a'\n);
                    create index TX on T(X);",
        );
        assert_eq!(differences(&a, "a", &b, "b").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_difference_is_named() {
        let a = db("CREATE TABLE p(id INTEGER PRIMARY KEY);
                    CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT, p INTEGER REFERENCES p(id));
                    CREATE UNIQUE INDEX tx ON t(x); CREATE TABLE only_a(k TEXT PRIMARY KEY);");
        let b = db("CREATE TABLE p(id INTEGER PRIMARY KEY);
                    CREATE TABLE t(id INTEGER PRIMARY KEY, x INT, p INTEGER);
                    CREATE INDEX tx ON t(x);");
        let d = differences(&a, "the file", &b, "the server").unwrap();
        let text = d.join("\n");
        assert!(
            text.contains("table \"t\" column 2: \"x\" TEXT in the file, \"x\" INT in the server"),
            "{text}"
        );
        assert!(text.contains("table \"t\" foreign key (p)"), "{text}");
        assert!(text.contains("index \"tx\": UNIQUE on"), "{text}");
        assert!(
            text.contains("table \"only_a\" (a rowid table) exists in the file only"),
            "{text}"
        );
        // only_a's column is not listed again; the index SQLite made for its TEXT key is.
        assert_eq!(d.len(), 5, "{text}");
        assert!(d[0].starts_with("table "), "tables first: {text}");
    }
}
