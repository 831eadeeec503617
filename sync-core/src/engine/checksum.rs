//! An order-independent checksum of the app tables' content: a multiset hash.
//!
//! Every row hashes (SHA-256 of its table's name in lower case and its values in column order,
//! each tagged with its type) to four 64-bit lanes; a table set's checksum is the lane-wise sum,
//! modulo 2^64, of its rows' hashes. Adding a row adds its hash, removing one subtracts it, so
//! the checksum follows a changeset without reading the tables again: an INSERT adds the new
//! row, a DELETE removes the old one, an UPDATE removes the row as it was and adds it as it is
//! (the columns a changeset leaves out of an UPDATE are read from the table, after the apply).
//! Two databases with equal content have equal checksums whatever order their rows were written
//! in; a difference in any value of any row changes it (but for a 2^-64-per-lane accident).
//!
//! The server keeps the checksum after every log entry; a client keeps the one of its synced
//! state and compares after every pull ([`table_sum`] recomputes it from scratch).

use crate::engine::decode::{self, Change, Op};
use crate::engine::schema::{self, SchemaError, TableShape};
use crate::engine::spool::Source;
use crate::engine::value::Value;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

/// The checksum of a set of rows (or the change of one: a delta), four 64-bit lanes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub [u64; 4]);

impl Checksum {
    /// The checksum of no rows.
    pub const EMPTY: Checksum = Checksum([0; 4]);

    /// Adds `other` (a row's hash, or a delta) lane by lane.
    pub fn add(&mut self, other: &Checksum) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_add(b);
        }
    }

    /// Subtracts `other` lane by lane.
    pub fn sub(&mut self, other: &Checksum) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_sub(b);
        }
    }

    /// The 32 bytes (big-endian lanes), as stored and sent.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, lane) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&lane.to_be_bytes());
        }
        out
    }

    /// The checksum of 32 bytes from [`Checksum::to_bytes`]; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Checksum> {
        if bytes.len() != 32 {
            return None;
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().ok()?);
        }
        Some(Checksum(lanes))
    }

    /// Parses the 64 hex digits of [`fmt::Display`].
    pub fn from_hex(text: &str) -> Option<Checksum> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_str_radix(&text[i * 16..i * 16 + 16], 16).ok()?;
        }
        Some(Checksum(lanes))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for lane in self.0 {
            write!(f, "{lane:016x}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checksum, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Checksum::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a checksum"))
    }
}

/// Hashes one row: `table` (compared as SQLite does, so in ASCII lower case) and its values in
/// column order.
pub fn row_hash<'a>(table: &str, values: impl IntoIterator<Item = ValueRef<'a>>) -> Checksum {
    let mut h = Sha256::new();
    h.update(table.to_ascii_lowercase().as_bytes());
    h.update([0u8]);
    for v in values {
        match v {
            ValueRef::Null => h.update([0u8]),
            ValueRef::Integer(i) => {
                h.update([1u8]);
                h.update(i.to_be_bytes());
            }
            ValueRef::Real(r) => {
                h.update([2u8]);
                h.update(r.to_bits().to_be_bytes());
            }
            ValueRef::Text(t) => {
                h.update([3u8]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t);
            }
            ValueRef::Blob(b) => {
                h.update([4u8]);
                h.update((b.len() as u64).to_be_bytes());
                h.update(b);
            }
        }
    }
    Checksum::from_bytes(&h.finalize()).expect("SHA-256 has 32 bytes")
}

fn value_ref(v: &Value) -> ValueRef<'_> {
    match v {
        Value::Null => ValueRef::Null,
        Value::Integer(i) => ValueRef::Integer(*i),
        Value::Real(r) => ValueRef::Real(*r),
        Value::Text(t) => ValueRef::Text(t.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    }
}

/// Why a checksum could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Reading the schema failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The changeset does not decode.
    #[error("the changeset does not decode: {0}")]
    Decode(#[from] decode::DecodeError),
    /// Reading a changeset from its file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The changeset does not describe this database (a table or a row it updated is missing
    /// after it was applied).
    #[error("{0}")]
    Mismatch(String),
}

/// The checksum of every row of the app tables of `main` (every table but the internal ones).
pub fn table_sum(conn: &Connection) -> Result<Checksum, ChecksumError> {
    let mut sum = Checksum::EMPTY;
    for table in schema::user_tables(conn)? {
        let Some(shape) = schema::table_shape(conn, &table)? else {
            continue;
        };
        let sql = format!("SELECT {} FROM {}", column_list(&shape), quote(&table));
        let mut stmt = conn.prepare(&sql)?;
        let n = shape.columns.len();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..n)
                .map(|i| row.get_ref(i))
                .collect::<Result<Vec<_>, _>>()?;
            sum.add(&row_hash(&table, values));
        }
    }
    Ok(sum)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_list(shape: &TableShape) -> String {
    if shape.columns.is_empty() {
        return "NULL".into();
    }
    shape
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the checksum of `conn`'s app tables changed by `changeset`, which has just been applied
/// to it (exactly: every change took effect). Reads the rows its UPDATEs left, by key.
pub fn delta(conn: &Connection, changeset: Source<'_>) -> Result<Checksum, ChecksumError> {
    let mut d = Delta::new(conn);
    if changeset.is_empty() {
        return Ok(Checksum::EMPTY);
    }
    match changeset.as_bytes() {
        Some(bytes) => {
            for change in decode::changes(bytes) {
                d.change(&change?)?;
            }
        }
        None => {
            decode::validate_pieces(
                changeset.reader(),
                decode::STREAM_WINDOW,
                |piece| -> Result<(), ChecksumError> {
                    for change in decode::changes(piece) {
                        d.change(&change?)?;
                    }
                    Ok(())
                },
            )??;
        }
    }
    Ok(d.sum)
}

/// A running delta, with the tables' shapes looked up once each.
struct Delta<'c> {
    conn: &'c Connection,
    shapes: HashMap<String, (TableShape, String)>,
    sum: Checksum,
}

impl<'c> Delta<'c> {
    fn new(conn: &'c Connection) -> Delta<'c> {
        Delta {
            conn,
            shapes: HashMap::new(),
            sum: Checksum::EMPTY,
        }
    }

    fn change(&mut self, change: &Change) -> Result<(), ChecksumError> {
        let all = |record: &Option<Vec<Option<Value>>>| -> Result<Vec<Value>, ChecksumError> {
            record
                .iter()
                .flatten()
                .map(|v| {
                    v.clone()
                        .ok_or_else(|| self.mismatch(change, "a column is missing"))
                })
                .collect()
        };
        match change.op {
            Op::Insert => {
                let new = all(&change.new)?;
                self.sum
                    .add(&row_hash(&change.table, new.iter().map(value_ref)));
            }
            Op::Delete => {
                let old = all(&change.old)?;
                self.sum
                    .sub(&row_hash(&change.table, old.iter().map(value_ref)));
            }
            Op::Update => {
                let now = self.current_row(change)?;
                self.sum
                    .add(&row_hash(&change.table, now.iter().map(value_ref)));
                let before: Vec<Value> = match &change.old {
                    Some(old) => now
                        .iter()
                        .zip(old)
                        .map(|(n, o)| o.clone().unwrap_or_else(|| n.clone()))
                        .collect(),
                    None => now,
                };
                self.sum
                    .sub(&row_hash(&change.table, before.iter().map(value_ref)));
            }
        }
        Ok(())
    }

    fn mismatch(&self, change: &Change, what: &str) -> ChecksumError {
        ChecksumError::Mismatch(format!(
            "{} of a row of {:?}: {what}",
            change.op, change.table
        ))
    }

    /// The row `change` (an UPDATE) left, read by its key.
    fn current_row(&mut self, change: &Change) -> Result<Vec<Value>, ChecksumError> {
        let key = change.table.to_ascii_lowercase();
        if !self.shapes.contains_key(&key) {
            let shape = schema::table_shape(self.conn, &change.table)?
                .ok_or_else(|| self.mismatch(change, "no such table"))?;
            let pk = shape.pk_columns();
            let filter = pk
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} IS ?{}", quote(&shape.columns[*c].name), i + 1))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "SELECT {} FROM {} WHERE {filter}",
                column_list(&shape),
                quote(&shape.name)
            );
            self.shapes.insert(key.clone(), (shape, sql));
        }
        let (shape, sql) = &self.shapes[&key];
        if shape.columns.len() != change.column_count() {
            return Err(self.mismatch(change, "its column count differs from the table's"));
        }
        let pk = change.pk_values();
        let n = shape.columns.len();
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(pk.iter()))?;
        match rows.next()? {
            Some(row) => (0..n)
                .map(|i| row.get_ref(i).map(Value::from))
                .collect::<Result<_, _>>()
                .map_err(Into::into),
            None => Err(self.mismatch(change, "the row is not there after the apply")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b REAL);
             CREATE TABLE k(x TEXT, y INTEGER, v BLOB, PRIMARY KEY (x, y)) WITHOUT ROWID;",
        )
        .unwrap();
        conn
    }

    #[test]
    fn order_does_not_matter_and_every_value_does() {
        let one = db();
        one.execute_batch(
            "INSERT INTO t VALUES (1, 'a', 1.5), (2, NULL, 2); INSERT INTO k VALUES ('x', 1, x'00');",
        )
        .unwrap();
        let two = db();
        two.execute_batch(
            "INSERT INTO k VALUES ('x', 1, x'00'); INSERT INTO t VALUES (2, NULL, 2), (1, 'a', 1.5);",
        )
        .unwrap();
        assert_eq!(table_sum(&one).unwrap(), table_sum(&two).unwrap());
        assert_ne!(table_sum(&one).unwrap(), Checksum::EMPTY);
        two.execute("UPDATE k SET v = x'01'", []).unwrap();
        assert_ne!(table_sum(&one).unwrap(), table_sum(&two).unwrap());
        // The same values in another table are another row.
        let a = row_hash("t", [ValueRef::Integer(1)]);
        assert_ne!(a, row_hash("u", [ValueRef::Integer(1)]));
        assert_eq!(a, row_hash("T", [ValueRef::Integer(1)]));
        // Types count: 1 is not 1.0 is not '1'.
        assert_ne!(a, row_hash("t", [ValueRef::Real(1.0)]));
        assert_ne!(a, row_hash("t", [ValueRef::Text(b"1")]));
    }

    #[test]
    fn a_delta_follows_an_applied_changeset() {
        let conn = db();
        conn.execute_batch(
            "INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', 2), (3, 'c', 3);
             INSERT INTO k VALUES ('x', 1, x'00');",
        )
        .unwrap();
        let before = table_sum(&conn).unwrap();
        let mut changeset = Vec::new();
        {
            let mut session = crate::engine::ffi::session::Session::new(&conn).unwrap();
            session.attach(None).unwrap();
            conn.execute_batch(
                "UPDATE t SET a = 'A' WHERE id = 1; DELETE FROM t WHERE id = 2;
                 INSERT INTO t VALUES (4, 'd', NULL); UPDATE k SET v = x'02';",
            )
            .unwrap();
            session.changeset_strm(&mut changeset).unwrap();
        }
        let mut expected = before;
        expected.add(&delta(&conn, Source::Bytes(&changeset)).unwrap());
        assert_eq!(expected, table_sum(&conn).unwrap());
    }

    #[test]
    fn bytes_and_hex_round_trip() {
        let c = Checksum([1, u64::MAX, 0, 42]);
        assert_eq!(Checksum::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(Checksum::from_hex(&c.to_string()), Some(c));
        assert_eq!(Checksum::from_hex("zz"), None);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checksum>(&json).unwrap(), c);
    }
}
