//! SQLite's authorizer (`sqlite3_set_authorizer`) as a scoped guard: while an [`Authorizer`]
//! lives, every statement the connection prepares is shown to a judge, action by action,
//! before it runs, and a refused action fails the statement with `SQLITE_AUTH` ("not
//! authorized"). rusqlite's own wrapper sits behind its `hooks` feature, which runs bindgen;
//! this one uses the pre-generated bindings like the rest of this module.
//!
//! The judge sees what SQLite sees, so names are judged after parsing: `"_SYNC_outbox"`,
//! `main._sync_outbox` and a trigger body that writes it all arrive as the table's name.

use rusqlite::{Connection, ffi};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// One action SQLite asks about (the `SQLITE_*` action code and its arguments, see
/// <https://sqlite.org/c3ref/c_alter_table.html>).
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// The action code (`ffi::SQLITE_INSERT`, `ffi::SQLITE_CREATE_TABLE`, …).
    pub code: i32,
    /// The first argument (a table, index, trigger, pragma or file name; by action).
    pub arg1: Option<&'a str>,
    /// The second argument (a table or column name, a pragma's value; by action).
    pub arg2: Option<&'a str>,
    /// The database (`main`, `temp`, an attached name).
    pub database: Option<&'a str>,
    /// The innermost trigger or view the access comes from, if any.
    pub inside: Option<&'a str>,
}

type Judge<'j> = Box<dyn FnMut(&Action<'_>) -> bool + 'j>;

struct State<'j> {
    judge: Judge<'j>,
    /// The first refusal, described (SQLite's own message only says "not authorized").
    refused: Option<String>,
}

/// The authorizer installed on a connection; removed when dropped.
pub struct Authorizer<'c, 'j> {
    conn: &'c Connection,
    // Boxed so its address stays fixed while SQLite holds it.
    state: Box<State<'j>>,
}

impl<'c, 'j> Authorizer<'c, 'j> {
    /// Installs `judge` on `conn`: an action it returns false for is refused.
    pub fn install(
        conn: &'c Connection,
        judge: impl FnMut(&Action<'_>) -> bool + 'j,
    ) -> Authorizer<'c, 'j> {
        let mut state = Box::new(State {
            judge: Box::new(judge),
            refused: None,
        });
        // SAFETY: `conn.handle()` is the live connection. The state is boxed and outlives
        // the registration: `Drop` removes the callback before the box is freed, and the
        // guard borrows the connection, so it cannot be closed meanwhile.
        unsafe {
            ffi::sqlite3_set_authorizer(
                conn.handle(),
                Some(trampoline),
                &mut *state as *mut State<'_> as *mut c_void,
            );
        }
        Authorizer { conn, state }
    }

    /// The first refused action, described, if any.
    pub fn refused(&self) -> Option<&str> {
        self.state.refused.as_deref()
    }
}

impl Drop for Authorizer<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: the connection is live (borrowed); clearing the callback is always valid.
        unsafe {
            ffi::sqlite3_set_authorizer(self.conn.handle(), None, std::ptr::null_mut());
        }
    }
}

/// # Safety
/// `ptr` must be null or a valid NUL-terminated string that lives for `'a`.
unsafe fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per the contract above.
    unsafe { CStr::from_ptr(ptr) }.to_str().ok()
}

unsafe extern "C" fn trampoline(
    data: *mut c_void,
    code: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    inside: *const c_char,
) -> c_int {
    // SAFETY: `data` is the `State` registered by `install`, alive while registered; SQLite
    // passes NUL-terminated strings (or null) valid for the duration of the call.
    let state = unsafe { &mut *(data as *mut State<'_>) };
    let action = unsafe {
        Action {
            code,
            arg1: text(arg1),
            arg2: text(arg2),
            database: text(database),
            inside: text(inside),
        }
    };
    let allowed = catch_unwind(AssertUnwindSafe(|| (state.judge)(&action))).unwrap_or(false);
    if allowed {
        ffi::SQLITE_OK
    } else {
        if state.refused.is_none() {
            state.refused = Some(describe(&action));
        }
        ffi::SQLITE_DENY
    }
}

fn describe(a: &Action<'_>) -> String {
    let what = match a.code {
        ffi::SQLITE_INSERT => "insert into",
        ffi::SQLITE_UPDATE => "update",
        ffi::SQLITE_DELETE => "delete from",
        ffi::SQLITE_READ => "read",
        ffi::SQLITE_CREATE_TABLE | ffi::SQLITE_CREATE_TEMP_TABLE => "create table",
        ffi::SQLITE_DROP_TABLE | ffi::SQLITE_DROP_TEMP_TABLE => "drop table",
        ffi::SQLITE_ALTER_TABLE => "alter table",
        ffi::SQLITE_CREATE_INDEX | ffi::SQLITE_CREATE_TEMP_INDEX => "create index",
        ffi::SQLITE_DROP_INDEX | ffi::SQLITE_DROP_TEMP_INDEX => "drop index",
        ffi::SQLITE_CREATE_TRIGGER | ffi::SQLITE_CREATE_TEMP_TRIGGER => "create trigger",
        ffi::SQLITE_DROP_TRIGGER | ffi::SQLITE_DROP_TEMP_TRIGGER => "drop trigger",
        ffi::SQLITE_CREATE_VIEW | ffi::SQLITE_CREATE_TEMP_VIEW => "create view",
        ffi::SQLITE_DROP_VIEW | ffi::SQLITE_DROP_TEMP_VIEW => "drop view",
        ffi::SQLITE_CREATE_VTABLE => "create virtual table",
        ffi::SQLITE_DROP_VTABLE => "drop virtual table",
        ffi::SQLITE_PRAGMA => "pragma",
        ffi::SQLITE_TRANSACTION => "transaction control",
        ffi::SQLITE_SAVEPOINT => "savepoint",
        ffi::SQLITE_ATTACH => "attach",
        ffi::SQLITE_DETACH => "detach",
        ffi::SQLITE_FUNCTION => "call function",
        _ => "action",
    };
    let temp = matches!(
        a.code,
        ffi::SQLITE_CREATE_TEMP_TABLE
            | ffi::SQLITE_DROP_TEMP_TABLE
            | ffi::SQLITE_CREATE_TEMP_INDEX
            | ffi::SQLITE_DROP_TEMP_INDEX
            | ffi::SQLITE_CREATE_TEMP_TRIGGER
            | ffi::SQLITE_DROP_TEMP_TRIGGER
            | ffi::SQLITE_CREATE_TEMP_VIEW
            | ffi::SQLITE_DROP_TEMP_VIEW
    );
    let names: Vec<&str> = [a.arg1, a.arg2].into_iter().flatten().collect();
    format!(
        "{}{what} {}",
        if temp { "temp " } else { "" },
        names.join(" ")
    )
    .trim_end()
    .to_string()
}
