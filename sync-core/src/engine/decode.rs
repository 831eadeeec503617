//! A pure-Rust reader for SQLite's changeset format, used by `inspect` and `validate`.
//!
//! Why not SQLite's own iterator? It reports only `SQLITE_CORRUPT`, with no position, and it is
//! deliberately lenient. This reader walks the same format (documented in SQLite's
//! `sqlite3session.h` / `ext/session/sqlite3session.c`, "CHANGESET FORMAT") and reports *what*
//! is wrong and *where* (byte offset), without panicking on any input. It accepts every
//! changeset SQLite's session module produces; tests check that it agrees with SQLite's
//! iterator on them.
//!
//! Layout, in brief: a sequence of table blocks. A block is `'T'`, a varint column count, one
//! primary-key byte per column (0 = not part of the key, k = k-th key column), a NUL-terminated
//! table name, then one or more changes. A change is an op byte (INSERT 0x12, UPDATE 0x17,
//! DELETE 0x09), an indirect flag byte, then records: DELETE old, INSERT new, UPDATE old + new.
//! A record holds one field per column: a type byte (0 undefined, 1 integer, 2 real, 3 text,
//! 4 blob, 5 NULL) and for 1/2 eight big-endian bytes, for 3/4 a varint length and the bytes.

use crate::engine::value::Value;
use crate::names::named_enum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bound on the column count of a table header. SQLite's hard limit is 32767.
pub const MAX_COLUMNS: u64 = 32767;

named_enum! {
    /// The kind of a change.
    #[derive(PartialOrd, Ord)]
    pub enum Op {
        /// A row was inserted.
        Insert = "INSERT",
        /// Some columns of a row were updated.
        Update = "UPDATE",
        /// A row was deleted.
        Delete = "DELETE",
    }
}

impl Op {
    /// Maps SQLite's operation code (`SQLITE_INSERT` etc.) to an [`Op`].
    pub fn from_code(code: i32) -> Option<Op> {
        match code {
            OP_INSERT => Some(Op::Insert),
            OP_UPDATE => Some(Op::Update),
            OP_DELETE => Some(Op::Delete),
            _ => None,
        }
    }
}

const OP_INSERT: i32 = 0x12;
const OP_UPDATE: i32 = 0x17;
const OP_DELETE: i32 = 0x09;

/// One decoded change, owning its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Unqualified table name.
    pub table: String,
    /// INSERT, UPDATE or DELETE.
    pub op: Op,
    /// True when the change was made indirectly (by a trigger, a foreign-key action, or while
    /// the session was marked indirect).
    pub indirect: bool,
    /// One entry per column: 0 if the column is not part of the primary key, otherwise its
    /// 1-based position in the key.
    pub pk: Vec<u8>,
    /// The row before the change (UPDATE, DELETE). For an UPDATE, `None` marks a column that
    /// did not change and is not part of the key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub old: Option<Vec<Option<Value>>>,
    /// The row after the change (INSERT, UPDATE). For an UPDATE, `None` marks an unchanged
    /// column.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub new: Option<Vec<Option<Value>>>,
}

impl Change {
    /// Number of columns of the table, as recorded in the changeset.
    pub fn column_count(&self) -> usize {
        self.pk.len()
    }

    /// The primary-key values identifying the row, in column order.
    pub fn pk_values(&self) -> Vec<Value> {
        let record = match self.op {
            Op::Insert => self.new.as_ref(),
            Op::Update | Op::Delete => self.old.as_ref(),
        };
        let Some(record) = record else {
            return Vec::new();
        };
        self.pk
            .iter()
            .zip(record)
            .filter(|(flag, _)| **flag != 0)
            .map(|(_, v)| v.clone().unwrap_or(Value::Null))
            .collect()
    }
}

/// Where and why a changeset failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid changeset at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// What is wrong with a changeset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input has no bytes at all.
    #[error("the changeset is empty (0 bytes)")]
    Empty,
    /// The input is a patchset ('P' table header); only changesets are accepted.
    #[error(
        "this is a patchset, not a changeset (patchsets carry no old values and are not supported)"
    )]
    Patchset,
    /// A byte where a table header ('T') was expected.
    #[error("expected a table header ('T', 0x54), found byte 0x{byte:02x}")]
    BadTableHeader {
        /// The byte found.
        byte: u8,
    },
    /// The input ends in the middle of something.
    #[error("truncated: input ends inside {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A varint that is longer than 9 bytes or too large for its use.
    #[error("{what} is out of range ({value})")]
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A table header with no primary-key column.
    #[error("table {table:?} has no primary-key column in its header")]
    NoPrimaryKey {
        /// The table.
        table: String,
    },
    /// A primary-key flag that is larger than the number of columns.
    #[error("primary-key flag {flag} of column {column} exceeds the column count {columns}")]
    BadPkFlag {
        /// Column index.
        column: usize,
        /// The flag byte.
        flag: u8,
        /// Column count.
        columns: usize,
    },
    /// The table name is not UTF-8 or is empty.
    #[error("table name is empty or not valid UTF-8")]
    BadTableName,
    /// A second header for a table already seen, with a different column count or key.
    #[error("table {table:?} appears again with a different column count or primary key")]
    TableShapeChanged {
        /// The table.
        table: String,
    },
    /// An operation byte that is not INSERT/UPDATE/DELETE.
    #[error(
        "unknown operation byte 0x{byte:02x} (expected 0x12 INSERT, 0x17 UPDATE or 0x09 DELETE)"
    )]
    BadOp {
        /// The byte found.
        byte: u8,
    },
    /// An indirect flag other than 0 or 1.
    #[error("indirect flag must be 0 or 1, found {byte}")]
    BadIndirectFlag {
        /// The byte found.
        byte: u8,
    },
    /// A field type byte outside 0..=5.
    #[error("unknown value type 0x{byte:02x} in column {column}")]
    BadValueType {
        /// Column index.
        column: usize,
        /// The byte found.
        byte: u8,
    },
    /// A field that must be present is "undefined".
    #[error("{op} on {table:?}: column {column} is missing from the {record} record")]
    MissingValue {
        /// The table.
        table: String,
        /// The operation.
        op: Op,
        /// `old` or `new`.
        record: &'static str,
        /// Column index.
        column: usize,
    },
    /// A primary-key column is NULL (sessions never record such rows).
    #[error("{op} on {table:?}: primary-key column {column} is NULL")]
    NullPrimaryKey {
        /// The table.
        table: String,
        /// The operation.
        op: Op,
        /// Column index.
        column: usize,
    },
    /// An UPDATE that changes a primary-key column (sessions record that as DELETE + INSERT).
    #[error("UPDATE on {table:?} changes primary-key column {column}")]
    PrimaryKeyChanged {
        /// The table.
        table: String,
        /// Column index.
        column: usize,
    },
}

/// Counts of changes by operation, for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// INSERT changes.
    pub insert: u64,
    /// UPDATE changes.
    pub update: u64,
    /// DELETE changes.
    pub delete: u64,
}

impl OpCounts {
    /// All changes.
    pub fn total(&self) -> u64 {
        self.insert + self.update + self.delete
    }

    fn add(&mut self, op: Op) {
        match op {
            Op::Insert => self.insert += 1,
            Op::Update => self.update += 1,
            Op::Delete => self.delete += 1,
        }
    }
}

/// What a changeset holds for one table: the table's shape as recorded in its header, and
/// counts by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    /// Column count from the table header.
    pub columns: usize,
    /// Primary-key flags from the table header (0 = not in the key, k = k-th key column).
    pub pk: Vec<u8>,
    /// Changes by operation.
    #[serde(flatten)]
    pub counts: OpCounts,
}

/// Per-table counts of a changeset, plus its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Size of the changeset in bytes.
    pub bytes: u64,
    /// By table name (sorted).
    pub tables: BTreeMap<String, TableSummary>,
}

impl Summary {
    /// Total number of changes.
    pub fn changes(&self) -> u64 {
        self.tables.values().map(|t| t.counts.total()).sum()
    }
}

/// Iterates over the changes of a changeset, decoding each one. After the first error the
/// iterator yields nothing more.
pub struct Changes<'a> {
    reader: Reader<'a>,
    table: Option<TableHeader>,
    /// Offset of the current table header.
    table_offset: usize,
    /// Offset just past the current table header.
    header_end: usize,
    /// How many table headers were read so far.
    headers: u64,
    /// Offset of the change last returned.
    change_start: usize,
    done: bool,
}

#[derive(Clone)]
struct TableHeader {
    name: String,
    pk: Vec<u8>,
}

/// Decodes `bytes` lazily. An empty input is reported as [`DecodeErrorKind::Empty`].
pub fn changes(bytes: &[u8]) -> Changes<'_> {
    Changes {
        reader: Reader { bytes, pos: 0 },
        table: None,
        table_offset: 0,
        header_end: 0,
        headers: 0,
        change_start: 0,
        done: false,
    }
}

/// Decodes every change, or reports the first problem.
pub fn decode(bytes: &[u8]) -> Result<Vec<Change>, DecodeError> {
    changes(bytes).collect()
}

/// Walks the whole changeset without keeping the values and returns per-table counts, or the
/// first problem found. Values are checked in place, not copied: this is the fast path that
/// guards every apply.
pub fn validate(bytes: &[u8]) -> Result<Summary, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::Empty,
        });
    }
    let mut summary = Summary {
        bytes: bytes.len() as u64,
        tables: BTreeMap::new(),
    };
    match walk(bytes, &mut summary).error {
        None => Ok(summary),
        Some(e) => Err(e),
    }
}

/// Input read at a time by [`validate_reader`] (a window grows beyond it only to hold one
/// change that is larger).
pub const STREAM_WINDOW: usize = 1 << 20;

/// [`validate`] over a reader, for changesets too large to hold in memory (a spooled upload):
/// the same checks and the same summary, holding one `window` of input at a time (or the
/// largest single change, if larger). Error offsets count from the start of the stream. The
/// outer `Err` is a failure to read; the inner one, invalid content.
pub fn validate_reader(
    input: impl std::io::Read,
    window: usize,
) -> std::io::Result<Result<Summary, DecodeError>> {
    validate_pieces(input, window, |_| Ok::<(), std::io::Error>(()))
}

/// [`validate_reader`] that also hands each window's whole changes to `on_piece`, in order,
/// as a changeset of its own (the governing table header repeated at its start): the pieces
/// concatenated hold every change of the input exactly once. A piece is handed over only once
/// its changes are valid; the input may still turn out invalid later, so a caller that acts
/// on pieces must be able to undo them. An error from `on_piece` stops the walk.
pub fn validate_pieces<E: From<std::io::Error>>(
    mut input: impl std::io::Read,
    window: usize,
    mut on_piece: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Result<Summary, DecodeError>, E> {
    let window = window.max(16);
    let mut summary = Summary::default();
    // `buf` = [a repeated table header (`carried` bytes)] + input from stream offset `base`.
    let mut buf: Vec<u8> = Vec::new();
    let mut carried = 0usize;
    let mut carried_from = 0u64;
    let mut base = 0u64;
    let mut total = 0u64;
    let mut eof = false;
    let mut want = window;
    loop {
        while !eof && buf.len() < carried + want {
            let start = buf.len();
            buf.resize(carried + want, 0);
            let n = loop {
                match input.read(&mut buf[start..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            buf.truncate(start + *n.as_ref().unwrap_or(&0));
            let n = n.map_err(E::from)?;
            eof = n == 0;
            total += n as u64;
        }
        if total == 0 {
            return Ok(Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::Empty,
            }));
        }
        if buf.len() == carried {
            break; // the input ended exactly after a complete change
        }
        let (c, cf, b) = (carried, carried_from, base);
        let to_stream = move |offset: usize| {
            if offset < c {
                cf + offset as u64
            } else {
                b + (offset - c) as u64
            }
        };
        let walked = walk(&buf, &mut summary);
        match walked.error {
            None if eof => {
                on_piece(&buf)?;
                break;
            }
            Some(e) if eof || !matches!(e.kind, DecodeErrorKind::Truncated { .. }) => {
                return Ok(Err(DecodeError {
                    offset: usize::try_from(to_stream(e.offset)).unwrap_or(usize::MAX),
                    kind: e.kind,
                }));
            }
            _ => {}
        }
        if walked.resume <= carried {
            // Not one whole change in the window: read more before walking again.
            want = want.saturating_mul(2);
            continue;
        }
        on_piece(&buf[..walked.resume])?;
        let mut next = Vec::with_capacity(window + 1024);
        match walked.header {
            Some(h) => {
                carried_from = to_stream(h.start);
                carried = h.len();
                next.extend_from_slice(&buf[h]);
            }
            None => carried = 0,
        }
        base = to_stream(walked.resume);
        next.extend_from_slice(&buf[walked.resume..]);
        buf = next;
        want = window;
    }
    summary.bytes = total;
    Ok(Ok(summary))
}

/// How far [`walk`] got.
struct Walked {
    /// Where the first incomplete or invalid item starts (the end, when all was valid).
    resume: usize,
    /// The table header that governs the change at `resume`, when `resume` is inside a
    /// table's changes (a window starting there must repeat it).
    header: Option<std::ops::Range<usize>>,
    /// The first problem, if any.
    error: Option<DecodeError>,
}

/// Validates the changes of `bytes`, adding them to `summary`, up to the first problem.
fn walk(bytes: &[u8], summary: &mut Summary) -> Walked {
    let mut it = changes(bytes);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    loop {
        let step = it.next_raw(&mut old, &mut new);
        // A header that was read completely ends after it starts; one that failed has not
        // moved `header_end` yet.
        let header_complete = it.table.is_some() && it.header_end > it.table_offset;
        let current_header = header_complete.then_some(it.table_offset..it.header_end);
        let op = match step {
            Ok(Some((op, _))) => op,
            Ok(None) => {
                return Walked {
                    resume: bytes.len(),
                    header: current_header,
                    error: None,
                };
            }
            Err(e) => {
                let resume = if header_complete {
                    it.change_start.max(it.header_end)
                } else {
                    it.table_offset
                };
                return Walked {
                    resume,
                    header: current_header.filter(|h| h.end <= resume),
                    error: Some(e),
                };
            }
        };
        let table = it.table.as_ref().expect("a change follows a table header");
        let entry = match summary.tables.get_mut(table.name.as_str()) {
            Some(entry) => entry,
            None => summary
                .tables
                .entry(table.name.clone())
                .or_insert_with(|| TableSummary {
                    columns: table.pk.len(),
                    pk: table.pk.clone(),
                    counts: OpCounts::default(),
                }),
        };
        if entry.pk != table.pk {
            return Walked {
                resume: it.table_offset,
                header: None,
                error: Some(DecodeError {
                    offset: it.table_offset,
                    kind: DecodeErrorKind::TableShapeChanged {
                        table: table.name.clone(),
                    },
                }),
            };
        }
        entry.counts.add(op);
    }
}

impl Iterator for Changes<'_> {
    type Item = Result<Change, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.next_change();
        match result {
            Ok(Some(change)) => Some(Ok(change)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> Changes<'a> {
    fn next_change(&mut self) -> Result<Option<Change>, DecodeError> {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let Some((op, indirect)) = self.next_raw(&mut old, &mut new)? else {
            return Ok(None);
        };
        let table = self
            .table
            .as_ref()
            .expect("a change follows a table header");
        let owned = |fields: &[Field<'_>]| fields.iter().map(|f| f.to_value()).collect();
        Ok(Some(Change {
            table: table.name.clone(),
            op,
            indirect,
            pk: table.pk.clone(),
            old: (op != Op::Insert).then(|| owned(&old)),
            new: (op != Op::Delete).then(|| owned(&new)),
        }))
    }

    /// Reads table headers up to the next change and that change's fields (borrowed, into the
    /// caller's buffers), checked; `None` at the end.
    fn next_raw(
        &mut self,
        old: &mut Vec<Field<'a>>,
        new: &mut Vec<Field<'a>>,
    ) -> Result<Option<(Op, bool)>, DecodeError> {
        if self.reader.bytes.is_empty() {
            return Err(self.reader.error_at(0, DecodeErrorKind::Empty));
        }
        loop {
            if self.reader.at_end() {
                return Ok(None);
            }
            let byte = self.reader.peek().unwrap_or(0);
            match byte {
                b'T' => {
                    // A header followed by no change is valid: `sqldiff --changeset` writes
                    // one for every table without differences, and SQLite applies such files.
                    self.table_offset = self.reader.pos;
                    self.table = Some(self.reader.table_header()?);
                    self.header_end = self.reader.pos;
                    self.headers += 1;
                }
                b'P' => return Err(self.reader.error(DecodeErrorKind::Patchset)),
                _ => {
                    let Some(table) = &self.table else {
                        return Err(self.reader.error(DecodeErrorKind::BadTableHeader { byte }));
                    };
                    self.change_start = self.reader.pos;
                    return self.reader.change(table, old, new).map(Some);
                }
            }
        }
    }
}

/// Calls `f` for every change of `bytes` with its values borrowed from the input — the table,
/// the operation, the key flags (as [`Change::pk`]) and the old and new records (`None` for a
/// column a record leaves out; a record the operation has not is empty) — without copying a
/// value: the fast path for walks that only read values (checksums). Stops at the first
/// problem, or at the first error `f` returns.
pub fn for_each_change<'a, E: From<DecodeError>>(
    bytes: &'a [u8],
    mut f: impl FnMut(
        &str,
        Op,
        &[u8],
        &[Option<rusqlite::types::ValueRef<'a>>],
        &[Option<rusqlite::types::ValueRef<'a>>],
    ) -> Result<(), E>,
) -> Result<(), E> {
    let mut changes = changes(bytes);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let (mut old_refs, mut new_refs) = (Vec::new(), Vec::new());
    loop {
        old.clear();
        new.clear();
        let Some((op, _)) = changes.next_raw(&mut old, &mut new)? else {
            return Ok(());
        };
        let table = changes
            .table
            .as_ref()
            .expect("a change follows a table header");
        old_refs.clear();
        old_refs.extend(old.iter().map(|f| f.as_value_ref()));
        new_refs.clear();
        new_refs.extend(new.iter().map(|f| f.as_value_ref()));
        f(&table.name, op, &table.pk, &old_refs, &new_refs)?;
    }
}

/// One field of a record, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field<'a> {
    /// Not part of the record (an unchanged column of an UPDATE).
    Undefined,
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> Field<'a> {
    fn as_value_ref(self) -> Option<rusqlite::types::ValueRef<'a>> {
        use rusqlite::types::ValueRef;
        Some(match self {
            Field::Undefined => return None,
            Field::Null => ValueRef::Null,
            Field::Integer(i) => ValueRef::Integer(i),
            Field::Real(r) => ValueRef::Real(r),
            Field::Text(t) => ValueRef::Text(t),
            Field::Blob(b) => ValueRef::Blob(b),
        })
    }

    fn to_value(self) -> Option<Value> {
        Some(match self {
            Field::Undefined => return None,
            Field::Null => Value::Null,
            Field::Integer(i) => Value::Integer(i),
            Field::Real(r) => Value::Real(r),
            // SQLite stores any bytes as TEXT and sessions record them verbatim, so non-UTF-8
            // text is valid here: show it lossily (as `Value::from` does); apply moves the
            // original bytes.
            Field::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            Field::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        self.error_at(self.pos, kind)
    }

    fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = self
            .peek()
            .ok_or_else(|| self.error(DecodeErrorKind::Truncated { what }))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error(DecodeErrorKind::Truncated { what }))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// SQLite's record varint: 1-9 bytes, big-endian 7-bit groups, the 9th byte contributes 8.
    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..9 {
            let b = self.byte(what)?;
            if i == 8 {
                return Ok((value << 8) | u64::from(b));
            }
            value = (value << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        unreachable!("the loop returns by the 9th byte")
    }

    fn table_header(&mut self) -> Result<TableHeader, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'T'
        let columns_at = self.pos;
        let columns = self.varint("a table header's column count")?;
        if columns == 0 || columns > MAX_COLUMNS {
            return Err(self.error_at(
                columns_at,
                DecodeErrorKind::OutOfRange {
                    what: "column count",
                    value: columns,
                },
            ));
        }
        let columns = columns as usize;
        let flags_at = self.pos;
        let pk = self
            .take(columns, "a table header's primary-key flags")?
            .to_vec();
        let name_at = self.pos;
        let rest = &self.bytes[self.pos..];
        let nul = rest.iter().position(|b| *b == 0).ok_or_else(|| {
            self.error(DecodeErrorKind::Truncated {
                what: "a table name (no NUL terminator)",
            })
        })?;
        let name = std::str::from_utf8(&rest[..nul])
            .ok()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.error_at(name_at, DecodeErrorKind::BadTableName))?
            .to_string();
        self.pos += nul + 1;
        if let Some((column, flag)) = pk
            .iter()
            .enumerate()
            .find(|(_, f)| usize::from(**f) > columns)
        {
            return Err(self.error_at(
                flags_at + column,
                DecodeErrorKind::BadPkFlag {
                    column,
                    flag: *flag,
                    columns,
                },
            ));
        }
        if pk.iter().all(|f| *f == 0) {
            return Err(self.error_at(start, DecodeErrorKind::NoPrimaryKey { table: name }));
        }
        Ok(TableHeader { name, pk })
    }

    fn change(
        &mut self,
        table: &TableHeader,
        old: &mut Vec<Field<'a>>,
        new: &mut Vec<Field<'a>>,
    ) -> Result<(Op, bool), DecodeError> {
        let op_at = self.pos;
        let op_byte = self.byte("an operation byte")?;
        let op = Op::from_code(i32::from(op_byte))
            .ok_or_else(|| self.error_at(op_at, DecodeErrorKind::BadOp { byte: op_byte }))?;
        let flag_at = self.pos;
        let indirect = match self.byte("a change's indirect flag")? {
            0 => false,
            1 => true,
            byte => {
                return Err(self.error_at(flag_at, DecodeErrorKind::BadIndirectFlag { byte }));
            }
        };
        let columns = table.pk.len();
        old.clear();
        new.clear();
        if op != Op::Insert {
            self.record(columns, old)?;
        }
        if op != Op::Delete {
            self.record(columns, new)?;
        }
        check_change(table, op, old, new).map_err(|kind| self.error_at(op_at, kind))?;
        Ok((op, indirect))
    }

    fn record(&mut self, columns: usize, out: &mut Vec<Field<'a>>) -> Result<(), DecodeError> {
        for column in 0..columns {
            out.push(self.field(column)?);
        }
        Ok(())
    }

    fn field(&mut self, column: usize) -> Result<Field<'a>, DecodeError> {
        let type_at = self.pos;
        let ty = self.byte("a record (value type byte)")?;
        Ok(match ty {
            0 => Field::Undefined,
            1 => Field::Integer(i64::from_be_bytes(self.eight("an INTEGER value")?)),
            2 => Field::Real(f64::from_be_bytes(self.eight("a REAL value")?)),
            3 | 4 => {
                let len_at = self.pos;
                let len = self.varint("a TEXT/BLOB length")?;
                if len > i32::MAX as u64 {
                    return Err(self.error_at(
                        len_at,
                        DecodeErrorKind::OutOfRange {
                            what: "TEXT/BLOB length",
                            value: len,
                        },
                    ));
                }
                if ty == 3 {
                    Field::Text(self.take(len as usize, "a TEXT value")?)
                } else {
                    Field::Blob(self.take(len as usize, "a BLOB value")?)
                }
            }
            5 => Field::Null,
            byte => {
                return Err(self.error_at(type_at, DecodeErrorKind::BadValueType { column, byte }));
            }
        })
    }

    fn eight(&mut self, what: &'static str) -> Result<[u8; 8], DecodeError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8, what)?);
        Ok(out)
    }
}

/// The rules a well-formed change keeps beyond its byte layout: full rows for INSERT/DELETE,
/// key columns present and non-NULL, and an UPDATE never changes its key.
fn check_change(
    table: &TableHeader,
    op: Op,
    old: &[Field<'_>],
    new: &[Field<'_>],
) -> Result<(), DecodeErrorKind> {
    let missing = |record: &'static str, column: usize| DecodeErrorKind::MissingValue {
        table: table.name.clone(),
        op,
        record,
        column,
    };
    let full = |record: &'static str, values: &[Field<'_>]| match values
        .iter()
        .position(|f| *f == Field::Undefined)
    {
        Some(column) => Err(missing(record, column)),
        None => Ok(()),
    };
    match op {
        Op::Insert => full("new", new)?,
        Op::Delete => full("old", old)?,
        Op::Update => {
            for (column, flag) in table.pk.iter().enumerate() {
                if *flag != 0 {
                    if old[column] == Field::Undefined {
                        return Err(missing("old", column));
                    }
                    if new[column] != Field::Undefined && new[column] != old[column] {
                        return Err(DecodeErrorKind::PrimaryKeyChanged {
                            table: table.name.clone(),
                            column,
                        });
                    }
                }
            }
        }
    }
    let key_record = if op == Op::Insert { new } else { old };
    for (column, flag) in table.pk.iter().enumerate() {
        if *flag != 0 && key_record[column] == Field::Null {
            return Err(DecodeErrorKind::NullPrimaryKey {
                table: table.name.clone(),
                op,
                column,
            });
        }
    }
    Ok(())
}

/// The same changeset with each table block's changes in primary-key order (a stable sort, so
/// the relative order of any two changes to one row is kept). Sessions write changes in hash
/// order; inserting rows in key order lets SQLite append to its B-trees instead of splitting
/// pages all over them, which makes large applies markedly faster. Changes to different rows
/// of one table do not depend on each other, and table blocks keep their order.
pub fn sorted_by_key(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    /// A change's primary key: one INTEGER (rowid tables, the common case: no allocation,
    /// cheap comparisons) or the key fields in key order.
    enum Key<'a> {
        Int(i64),
        Fields(Vec<Field<'a>>),
    }
    impl<'a> Key<'a> {
        fn fields(&self) -> std::borrow::Cow<'_, [Field<'a>]> {
            match self {
                Key::Int(k) => std::borrow::Cow::Owned(vec![Field::Integer(*k)]),
                Key::Fields(f) => std::borrow::Cow::Borrowed(f),
            }
        }
    }
    struct Entry<'a> {
        key: Key<'a>,
        range: std::ops::Range<usize>,
    }
    fn flush(
        out: &mut Vec<u8>,
        bytes: &[u8],
        header: std::ops::Range<usize>,
        block: &mut Vec<Entry<'_>>,
    ) {
        out.extend_from_slice(&bytes[header]);
        // Stable sorts: changes to one row keep their relative order.
        if block.iter().all(|e| matches!(e.key, Key::Int(_))) {
            block.sort_by_key(|e| match e.key {
                Key::Int(k) => k,
                Key::Fields(_) => unreachable!("checked above"),
            });
        } else {
            block.sort_by(|a, b| match (&a.key, &b.key) {
                (Key::Int(x), Key::Int(y)) => x.cmp(y),
                _ => compare_keys(&a.key.fields(), &b.key.fields()),
            });
        }
        for e in block.drain(..) {
            out.extend_from_slice(&bytes[e.range]);
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut it = changes(bytes);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let mut header = 0..0;
    let mut block_headers = 0;
    let mut block: Vec<Entry<'_>> = Vec::new();
    while let Some((op, _)) = it.next_raw(&mut old, &mut new)? {
        if it.headers != block_headers {
            // A table header was read before this change: a new block starts. (Headers
            // followed by no change are dropped; they carry nothing.)
            if !block.is_empty() {
                flush(&mut out, bytes, header.clone(), &mut block);
            }
            header = it.table_offset..it.header_end;
            block_headers = it.headers;
        }
        let table = it.table.as_ref().expect("a change follows a table header");
        let record = if op == Op::Insert { &new } else { &old };
        let mut keyed = table
            .pk
            .iter()
            .zip(record.iter())
            .filter(|(flag, _)| **flag != 0);
        let key = match (keyed.next(), keyed.next()) {
            (Some((_, Field::Integer(k))), None) => Key::Int(*k),
            _ => {
                let mut ordinals: Vec<(u8, Field<'_>)> = table
                    .pk
                    .iter()
                    .zip(record.iter())
                    .filter(|(flag, _)| **flag != 0)
                    .map(|(flag, field)| (*flag, *field))
                    .collect();
                ordinals.sort_by_key(|(flag, _)| *flag);
                Key::Fields(ordinals.into_iter().map(|(_, f)| f).collect())
            }
        };
        block.push(Entry {
            key,
            range: it.change_start..it.reader.pos,
        });
    }
    if !block.is_empty() {
        flush(&mut out, bytes, header, &mut block);
    }
    Ok(out)
}

/// SQLite's order for key values (BINARY collation): NULL, numbers, text, blobs.
fn compare_keys(a: &[Field<'_>], b: &[Field<'_>]) -> std::cmp::Ordering {
    fn class(f: &Field<'_>) -> u8 {
        match f {
            Field::Undefined | Field::Null => 0,
            Field::Integer(_) | Field::Real(_) => 1,
            Field::Text(_) => 2,
            Field::Blob(_) => 3,
        }
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Field::Integer(x), Field::Integer(y)) => x.cmp(y),
            (Field::Integer(x), Field::Real(y)) => (*x as f64).total_cmp(y),
            (Field::Real(x), Field::Integer(y)) => x.total_cmp(&(*y as f64)),
            (Field::Real(x), Field::Real(y)) => x.total_cmp(y),
            (Field::Text(x), Field::Text(y)) | (Field::Blob(x), Field::Blob(y)) => x.cmp(y),
            _ => class(x).cmp(&class(y)),
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}
