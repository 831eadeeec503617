//! An order-independent checksum of the app tables' content: a multiset hash over cells.
//!
//! Every cell — a table (its name in lower case, as SQLite compares names), a row's primary
//! key, a column's position and the value there, each tagged with its type — hashes (XXH3-128
//! — 128 bits, spread over four 64-bit lanes, the last two through a non-linear mix); a table set's checksum is the lane-wise sum, modulo
//! 2^64, of its cells' hashes. Adding a cell adds its hash and removing one subtracts it, so the
//! checksum follows a changeset from the changeset alone: an INSERT adds the new row's cells, a
//! DELETE removes the old row's, an UPDATE swaps exactly the cells it changed (old value out,
//! new value in) — no row is read back. Two databases with equal content have equal checksums
//! whatever order their rows were written in; a difference in any value of any row changes it
//! (but for a 2^-64-per-lane accident). It detects divergence; it is not a cryptographic
//! commitment (the log's hash chain uses SHA-256).
//!
//! The server keeps the checksum after every log entry; a client keeps the one of its synced
//! state and compares after every pull ([`table_sum`] recomputes it from scratch).

use crate::engine::decode::{self, Op};
use crate::engine::schema::{self, SchemaError, TableShape};
use crate::engine::spool::Source;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::fmt;
use xxhash_rust::xxh3::xxh3_128_with_seed;

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

/// Appends a value's canonical encoding (a type tag, then the value) to `out`.
fn encode_value(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        ValueRef::Real(r) => {
            out.push(2);
            out.extend_from_slice(&r.to_bits().to_be_bytes());
        }
        ValueRef::Text(t) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t);
        }
        ValueRef::Blob(b) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Hashes the cells of one row in turn: the table and the row's key are encoded once, then
/// each cell appends its column and value to that prefix.
struct Cells {
    buf: Vec<u8>,
    prefix: usize,
}

impl Cells {
    fn new() -> Cells {
        Cells {
            buf: Vec::with_capacity(256),
            prefix: 0,
        }
    }

    /// Starts a row of `table` with these key values (in column order).
    fn row<'a>(&mut self, table: &str, key: impl IntoIterator<Item = ValueRef<'a>>) {
        self.buf.clear();
        self.buf
            .extend(table.bytes().map(|b| b.to_ascii_lowercase()));
        self.buf.push(0);
        for v in key {
            encode_value(v, &mut self.buf);
        }
        self.prefix = self.buf.len();
    }

    /// The hash of the cell at column `col` holding `value`, in the current row.
    fn cell(&mut self, col: usize, value: ValueRef<'_>) -> Checksum {
        self.buf.truncate(self.prefix);
        self.buf.extend_from_slice(&(col as u32).to_be_bytes());
        encode_value(value, &mut self.buf);
        let h = xxh3_128_with_seed(&self.buf, 0);
        let (hi, lo) = ((h >> 64) as u64, h as u64);
        // Lanes 3 and 4: the same 128 bits through a non-linear mix, so that their sums are
        // not a function of the first two's.
        Checksum([hi, lo, mix(hi), mix(lo)])
    }
}

/// SplitMix64's finaliser: a bijective, non-linear scramble of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The checksum of one whole row of `table`: the sum of its cells. `values` are in column
/// order; `pk` lists the key columns' indexes, in column order.
pub fn row_hash(table: &str, values: &[ValueRef<'_>], pk: &[usize]) -> Checksum {
    let mut cells = Cells::new();
    cells.row(table, pk.iter().map(|&i| values[i]));
    let mut sum = Checksum::EMPTY;
    for (i, v) in values.iter().enumerate() {
        sum.add(&cells.cell(i, *v));
    }
    sum
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
        let sql = format!("SELECT {} FROM main.{}", column_list(&shape), quote(&table));
        let mut stmt = conn.prepare(&sql)?;
        let n = shape.columns.len();
        let pk = shape.pk_columns();
        let mut cells = Cells::new();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            cells.row(
                &table,
                pk.iter()
                    .map(|&i| row.get_ref(i))
                    .collect::<Result<Vec<_>, _>>()?,
            );
            for i in 0..n {
                sum.add(&cells.cell(i, row.get_ref(i)?));
            }
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

/// How the checksum of the app tables changes by `changeset` (in memory or in a file),
/// computed from the changeset alone: it must describe the rows exactly as they were (an
/// UPDATE's old values are the cells it replaces), which holds for a changeset that was just
/// applied without conflicts, or that a session recorded. Values are read in place, never
/// copied.
pub fn delta(changeset: Source<'_>) -> Result<Checksum, ChecksumError> {
    let mut d = Delta {
        cells: Cells::new(),
        sum: Checksum::EMPTY,
    };
    if changeset.is_empty() {
        return Ok(Checksum::EMPTY);
    }
    match changeset.as_bytes() {
        Some(bytes) => {
            decode::for_each_change(bytes, |t, op, pk, old, new| d.change(t, op, pk, old, new))?
        }
        None => {
            decode::validate_pieces(
                changeset.reader(),
                decode::STREAM_WINDOW,
                |piece| -> Result<(), ChecksumError> {
                    decode::for_each_change(piece, |t, op, pk, old, new| {
                        d.change(t, op, pk, old, new)
                    })
                },
            )??;
        }
    }
    Ok(d.sum)
}

/// A running delta.
struct Delta {
    cells: Cells,
    sum: Checksum,
}

impl Delta {
    fn change(
        &mut self,
        table: &str,
        op: Op,
        pk: &[u8],
        old: &[Option<ValueRef<'_>>],
        new: &[Option<ValueRef<'_>>],
    ) -> Result<(), ChecksumError> {
        let missing =
            || ChecksumError::Mismatch(format!("{op} of a row of {table:?}: a column is missing"));
        let keyed = if op == Op::Insert { new } else { old };
        let key = pk.iter().zip(keyed).filter(|(flag, _)| **flag != 0);
        if key.clone().any(|(_, v)| v.is_none()) {
            return Err(missing());
        }
        self.cells
            .row(table, key.map(|(_, v)| v.unwrap_or(ValueRef::Null)));
        match op {
            Op::Insert => {
                for (i, v) in new.iter().enumerate() {
                    let h = self.cells.cell(i, v.ok_or_else(missing)?);
                    self.sum.add(&h);
                }
            }
            Op::Delete => {
                for (i, v) in old.iter().enumerate() {
                    let h = self.cells.cell(i, v.ok_or_else(missing)?);
                    self.sum.sub(&h);
                }
            }
            Op::Update => {
                for (i, (o, n)) in old.iter().zip(new).enumerate() {
                    // A column the UPDATE set: its old cell out, its new cell in.
                    if let Some(n) = n {
                        let out = self.cells.cell(i, o.ok_or_else(missing)?);
                        self.sum.sub(&out);
                        let into = self.cells.cell(i, *n);
                        self.sum.add(&into);
                    }
                }
            }
        }
        Ok(())
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
        let row = |t: &str, v: ValueRef<'_>| row_hash(t, &[ValueRef::Integer(7), v], &[0]);
        let a = row("t", ValueRef::Integer(1));
        assert_ne!(a, row("u", ValueRef::Integer(1)));
        assert_eq!(a, row("T", ValueRef::Integer(1)));
        // Types count: 1 is not 1.0 is not '1'.
        assert_ne!(a, row("t", ValueRef::Real(1.0)));
        assert_ne!(a, row("t", ValueRef::Text(b"1")));
        // A value belongs to its column and its row: swapping two cells' values changes it.
        let ab = row_hash(
            "t",
            &[
                ValueRef::Integer(1),
                ValueRef::Integer(2),
                ValueRef::Integer(3),
            ],
            &[0],
        );
        let ba = row_hash(
            "t",
            &[
                ValueRef::Integer(1),
                ValueRef::Integer(3),
                ValueRef::Integer(2),
            ],
            &[0],
        );
        assert_ne!(ab, ba);
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
        expected.add(&delta(Source::Bytes(&changeset)).unwrap());
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
