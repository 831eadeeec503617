//! The one transaction idiom: a guard that rolls back unless committed. Write transactions
//! begin `IMMEDIATE` (they take the write lock at once and never fail later upgrading a read
//! lock); reads that need one consistent view begin `DEFERRED`.

use rusqlite::Connection;

/// An open transaction on a borrowed connection: rolled back on drop (error paths, panics)
/// unless [`Tx::commit`] succeeded.
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE`: takes the write lock now, so the transaction never fails later
    /// upgrading a read lock.
    pub fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Tx { conn, open: true })
    }

    /// `BEGIN DEFERRED`, for a consistent multi-statement read.
    pub fn begin_read(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")?;
        Ok(Tx { conn, open: true })
    }

    /// Commits; on failure the guard still rolls back when dropped.
    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// Marks the transaction as already ended by someone else.
    pub fn forget(mut self) {
        self.open = false;
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
