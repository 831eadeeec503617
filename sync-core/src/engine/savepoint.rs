//! Nested transactional functions that compose: `savepoint(conn, |conn| …)`.
//!
//! The pattern of Go's `sqlitex.Save`: open a SAVEPOINT, run the function, RELEASE on `Ok`,
//! ROLLBACK TO (then RELEASE) on `Err` or panic. Savepoints nest inside each other and inside
//! an outer transaction; a failing inner function undoes only its own writes. Every level
//! uses the same savepoint name — SQLite resolves a name to the innermost savepoint.

use rusqlite::Connection;

const NAME: &str = "_sync_savepoint";

/// Runs `f` inside a savepoint on `conn`. Its writes are kept when it returns `Ok`, undone when
/// it returns `Err` or panics (the panic then continues).
pub fn savepoint<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<rusqlite::Error>,
{
    conn.execute_batch(&format!("SAVEPOINT {NAME}"))?;
    let mut guard = Guard {
        conn,
        finished: false,
    };
    match f(conn) {
        Ok(value) => {
            conn.execute_batch(&format!("RELEASE {NAME}"))?;
            guard.finished = true;
            Ok(value)
        }
        Err(e) => {
            guard.finished = true;
            rollback(conn)?;
            Err(e)
        }
    }
}

fn rollback(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("ROLLBACK TO {NAME}; RELEASE {NAME}"))
}

/// Undoes the savepoint if `f` panicked.
struct Guard<'c> {
    conn: &'c Connection,
    finished: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort while unwinding: the panic is the error that matters.
            let _ = rollback(self.conn);
        }
    }
}
