//! The one transaction idiom: a guard that rolls back unless committed. Write transactions
//! begin `IMMEDIATE` (they take the write lock at once and never fail later upgrading a read
//! lock); reads that need one consistent view begin `DEFERRED`. Begun inside a transaction
//! someone else holds (the server's PostgreSQL store wraps every write in one), a guard is a
//! savepoint of it: its commit releases the savepoint, its rollback undoes only its own work.

use rusqlite::Connection;

/// An open transaction on a borrowed connection: rolled back on drop (error paths, panics)
/// unless [`Tx::commit`] succeeded.
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
    /// A savepoint inside the caller's transaction rather than a transaction of its own.
    nested: bool,
}

/// The savepoint a nested [`Tx`] is.
const SAVEPOINT: &str = "sync_tx";

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE`: takes the write lock now, so the transaction never fails later
    /// upgrading a read lock.
    pub fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::start(conn, "BEGIN IMMEDIATE")
    }

    fn start(conn: &'c Connection, begin: &str) -> rusqlite::Result<Self> {
        let nested = !conn.is_autocommit();
        if nested {
            conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))?;
        } else {
            conn.execute_batch(begin)?;
        }
        Ok(Tx {
            conn,
            open: true,
            nested,
        })
    }

    /// `BEGIN DEFERRED`, for a consistent multi-statement read.
    pub fn begin_read(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::start(conn, "BEGIN DEFERRED")
    }

    /// Commits; on failure the guard still rolls back when dropped.
    pub fn commit(mut self) -> rusqlite::Result<()> {
        if self.nested {
            self.conn.execute_batch(&format!("RELEASE {SAVEPOINT}"))?;
        } else {
            self.conn.execute_batch("COMMIT")?;
        }
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
            let _ = if self.nested {
                self.conn
                    .execute_batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"))
            } else {
                self.conn.execute_batch("ROLLBACK")
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tx;
    use rusqlite::Connection;

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn inside_a_transaction_a_guard_is_a_savepoint() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        {
            let tx = Tx::begin(&c).unwrap();
            c.execute("INSERT INTO t VALUES (2)", []).unwrap();
            drop(tx); // rolled back: only its own row goes
        }
        assert!(!c.is_autocommit(), "the outer transaction is still open");
        assert_eq!(count(&c), 1);
        let tx = Tx::begin(&c).unwrap();
        c.execute("INSERT INTO t VALUES (3)", []).unwrap();
        tx.commit().unwrap();
        assert!(
            !c.is_autocommit(),
            "a nested commit does not commit the outer one"
        );
        c.execute_batch("ROLLBACK").unwrap();
        assert_eq!(count(&c), 0, "the outer rollback takes the nested work too");
    }
}
