//! Large blobs in and out of SQLite in pieces, through incremental blob I/O: a value is never
//! bound or read whole. A row is inserted with `zeroblob(len)` in place of the value — which
//! must be the table's **last** column, or SQLite expands the zeroblob into memory whole to
//! build the record — and then filled from a [`Source`]; a value is copied out to any writer,
//! or read by range.

use crate::engine::spool::Source;
use rusqlite::Connection;
use std::io::{self, Read, Write};

/// Bytes copied at a time.
pub const CHUNK: usize = 64 * 1024;

/// A blob cell: `table.column` of row `rowid` in `main`.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    /// The table.
    pub table: &'a str,
    /// The column.
    pub column: &'a str,
    /// The row.
    pub rowid: i64,
}

/// Fills a cell that holds a zeroblob of `source.len()` bytes with `source`.
pub fn fill(conn: &Connection, cell: Cell<'_>, source: Source<'_>) -> io::Result<()> {
    let mut blob = conn
        .blob_open(
            rusqlite::MAIN_DB,
            cell.table,
            cell.column,
            cell.rowid,
            false,
        )
        .map_err(io::Error::other)?;
    let mut reader = source.reader();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        blob.write_all(&buf[..n])?;
    }
}

/// The size of a cell's value.
pub fn len(conn: &Connection, cell: Cell<'_>) -> rusqlite::Result<u64> {
    let blob = conn.blob_open(rusqlite::MAIN_DB, cell.table, cell.column, cell.rowid, true)?;
    Ok(blob.len() as u64)
}

/// Copies a cell's whole value to `out`.
pub fn copy(conn: &Connection, cell: Cell<'_>, out: &mut dyn Write) -> io::Result<u64> {
    let mut blob = conn
        .blob_open(rusqlite::MAIN_DB, cell.table, cell.column, cell.rowid, true)
        .map_err(io::Error::other)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = blob.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Reads bytes `offset..offset + buf.len()` of a cell's value into `buf` (which must lie
/// inside the value).
pub fn read_at(conn: &Connection, cell: Cell<'_>, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let blob = conn
        .blob_open(rusqlite::MAIN_DB, cell.table, cell.column, cell.rowid, true)
        .map_err(io::Error::other)?;
    let at = usize::try_from(offset).map_err(io::Error::other)?;
    blob.read_at_exact(buf, at).map_err(io::Error::other)
}

/// A cell's value as a reader, read by position in [`CHUNK`]-sized steps (each step opens the
/// blob anew, so the reader holds no SQLite handle between reads).
pub struct Reader<'c> {
    conn: &'c Connection,
    cell: Cell<'c>,
    len: u64,
    pos: u64,
}

impl<'c> Reader<'c> {
    /// A reader of `cell`'s value.
    pub fn new(conn: &'c Connection, cell: Cell<'c>) -> rusqlite::Result<Reader<'c>> {
        Ok(Reader {
            conn,
            cell,
            len: len(conn, cell)?,
            pos: 0,
        })
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        read_at(self.conn, self.cell, self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies one cell's value into another that holds a zeroblob of the same size.
pub fn copy_cell(conn: &Connection, from: Cell<'_>, to: Cell<'_>) -> io::Result<()> {
    let mut reader = Reader::new(conn, from).map_err(io::Error::other)?;
    let mut blob = conn
        .blob_open(rusqlite::MAIN_DB, to.table, to.column, to.rowid, false)
        .map_err(io::Error::other)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        blob.write_all(&buf[..n])?;
    }
}
