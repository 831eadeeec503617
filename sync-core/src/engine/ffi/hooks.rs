//! Which tables a connection wrote: SQLite's update hook (called for each row inserted,
//! updated or deleted in a rowid table) and rollback hook (a rolled-back transaction wrote
//! nothing), recorded as table names until taken. rusqlite's own wrappers sit behind its
//! `hooks` feature; these use the pre-generated bindings like the rest of this module.
//!
//! The update hook sees every write the connection makes, whatever made it — a statement, a
//! changeset applied, a trigger — but not rows of `WITHOUT ROWID` tables (SQLite does not
//! report them); a caller that must know of those adds the tables a changeset names.

use rusqlite::{Connection, ffi};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    /// Tables of `main` written since the last take, in first-written order.
    tables: Vec<String>,
}

/// The hooks installed on a connection; removed when dropped.
pub struct TableWrites {
    db: *mut ffi::sqlite3,
    // Boxed so its address stays fixed while SQLite holds it.
    state: Box<Mutex<State>>,
}

// SAFETY: the hooks run on whichever thread uses the connection; the state they write is
// behind a mutex, and the handle is only used to remove them.
unsafe impl Send for TableWrites {}

impl TableWrites {
    /// Installs the hooks on `conn`, replacing any update or rollback hook it had.
    ///
    /// # Safety
    /// The returned value must be dropped before `conn` is closed.
    pub unsafe fn install(conn: &Connection) -> TableWrites {
        let state: Box<Mutex<State>> = Box::default();
        let data = &*state as *const Mutex<State> as *mut c_void;
        // SAFETY: `conn.handle()` is the live connection. The state is boxed and outlives the
        // registration: `Drop` removes both callbacks before the box is freed, and the caller
        // drops this before closing the connection.
        let db = unsafe { conn.handle() };
        unsafe {
            ffi::sqlite3_update_hook(db, Some(on_update), data);
            ffi::sqlite3_rollback_hook(db, Some(on_rollback), data);
        }
        TableWrites { db, state }
    }

    /// The tables of `main` written since the last call (in the order first written), and
    /// forgets them. A transaction rolled back in full took its tables with it; one rolled
    /// back to a savepoint may still name a table it no longer changed.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).tables)
    }
}

impl Drop for TableWrites {
    fn drop(&mut self) {
        // SAFETY: the connection is still open (the contract of `install`); clearing the
        // callbacks is always valid.
        unsafe {
            ffi::sqlite3_update_hook(self.db, None, std::ptr::null_mut());
            ffi::sqlite3_rollback_hook(self.db, None, std::ptr::null_mut());
        }
    }
}

unsafe extern "C" fn on_update(
    data: *mut c_void,
    _op: c_int,
    database: *const c_char,
    table: *const c_char,
    _rowid: ffi::sqlite3_int64,
) {
    // SAFETY: `data` is the state registered by `install`, alive while registered; SQLite
    // passes NUL-terminated names valid for the duration of the call.
    let state = unsafe { &*(data as *const Mutex<State>) };
    let (database, table) = unsafe { (CStr::from_ptr(database), CStr::from_ptr(table)) };
    if database.to_bytes() != b"main" {
        return;
    }
    let Ok(table) = table.to_str() else { return };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        // A transaction writes few tables: a scan beats hashing each row's name.
        if !state.tables.iter().any(|t| t == table) {
            state.tables.push(table.to_string());
        }
    }));
}

unsafe extern "C" fn on_rollback(data: *mut c_void) {
    // SAFETY: as in `on_update`.
    let state = unsafe { &*(data as *const Mutex<State>) };
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tables
        .clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tables_a_committed_write_touched_and_forgets_a_rolled_back_one() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, t TEXT);
             CREATE TABLE tags (id INTEGER PRIMARY KEY, t TEXT);
             CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;",
        )
        .unwrap();
        let writes = unsafe { TableWrites::install(&conn) };
        conn.execute_batch(
            "BEGIN; INSERT INTO notes VALUES (1, 'a'); UPDATE notes SET t = 'b';
             INSERT INTO \"TAGS\" VALUES (1, 'x'); COMMIT;",
        )
        .unwrap();
        assert_eq!(writes.take(), ["notes", "tags"]);
        assert!(writes.take().is_empty(), "taken once");

        conn.execute_batch("BEGIN; DELETE FROM notes; ROLLBACK;")
            .unwrap();
        assert!(
            writes.take().is_empty(),
            "a rolled-back write changed nothing"
        );

        conn.execute_batch("ATTACH ':memory:' AS other; CREATE TABLE other.t (x);")
            .unwrap();
        conn.execute("INSERT INTO other.t VALUES (1)", []).unwrap();
        conn.execute("INSERT INTO kv VALUES ('k', 'v')", [])
            .unwrap();
        assert!(
            writes.take().is_empty(),
            "only rowid tables of main are reported"
        );
        drop(writes);
        conn.execute("INSERT INTO notes VALUES (2, 'c')", [])
            .unwrap();
    }
}
