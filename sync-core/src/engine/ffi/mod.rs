//! Safe wrappers over SQLite's session extension: `sqlite3changeset_apply_v2` (flags such as
//! FKNOACTION) and the conflict-handler accessors here, sessions, changegroups, streaming
//! invert and concat and SQLite's own iterator in [`session`]. (Not the streaming apply: SQLite
//! keeps every change it has read until that apply ends, so large changesets are applied in
//! pieces instead — `engine::apply`.)
//!
//! Everything `unsafe` in the crate lives in this module. The contract each call relies on is
//! stated next to it.

pub mod authorizer;
pub mod hooks;
pub mod session;

use crate::engine::conflict::{ConflictKind, Resolution};
use crate::engine::decode::Op;
use crate::engine::value::Value;
use rusqlite::{Connection, ffi};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Flags for [`apply_v2`], mirroring `SQLITE_CHANGESETAPPLY_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyFlags {
    /// Do not wrap the apply in a savepoint (the caller owns the transaction).
    pub no_savepoint: bool,
    /// Treat foreign keys as `NO ACTION`: cascades are not run (the changeset already carries
    /// the cascaded rows).
    pub fk_no_action: bool,
    /// Do not report conflicts for changes that would not modify the database.
    pub ignore_noop: bool,
    /// Apply the inverse of the changeset.
    pub invert: bool,
}

impl ApplyFlags {
    fn bits(self) -> c_int {
        let mut bits = 0;
        if self.no_savepoint {
            bits |= ffi::SQLITE_CHANGESETAPPLY_NOSAVEPOINT;
        }
        if self.fk_no_action {
            bits |= ffi::SQLITE_CHANGESETAPPLY_FKNOACTION;
        }
        if self.ignore_noop {
            bits |= ffi::SQLITE_CHANGESETAPPLY_IGNORENOOP;
        }
        if self.invert {
            bits |= ffi::SQLITE_CHANGESETAPPLY_INVERT;
        }
        bits as c_int
    }
}

/// The change SQLite is asking about, valid only during the conflict callback.
pub struct ConflictItem {
    it: *mut ffi::sqlite3_changeset_iter,
}

/// The operation header of a [`ConflictItem`].
#[derive(Debug, Clone)]
pub struct ItemOp {
    /// Table name.
    pub table: String,
    /// Column count.
    pub columns: usize,
    /// The operation (`None` only if SQLite reports an unknown code).
    pub op: Option<Op>,
    /// Indirect flag.
    pub indirect: bool,
}

impl ConflictItem {
    /// Table, column count, operation and indirect flag.
    pub fn op(&self) -> Option<ItemOp> {
        let mut table: *const c_char = std::ptr::null();
        let (mut columns, mut op, mut indirect) = (0, 0, 0);
        // SAFETY: `it` is the live iterator SQLite passed to the callback; the out-pointers
        // are valid locals. The table name is a NUL-terminated string owned by the iterator
        // and copied before the callback returns.
        let rc = unsafe {
            ffi::sqlite3changeset_op(self.it, &mut table, &mut columns, &mut op, &mut indirect)
        };
        if rc != ffi::SQLITE_OK || table.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, valid for the duration of the callback.
        let table = unsafe { CStr::from_ptr(table) }
            .to_string_lossy()
            .into_owned();
        Some(ItemOp {
            table,
            columns: usize::try_from(columns).unwrap_or(0),
            op: Op::from_code(op),
            indirect: indirect != 0,
        })
    }

    /// Primary-key flags per column.
    pub fn pk(&self) -> Vec<u8> {
        let mut flags: *mut u8 = std::ptr::null_mut();
        let mut n = 0;
        // SAFETY: as in `op`; SQLite returns a pointer to `n` bytes owned by the iterator.
        let rc = unsafe { ffi::sqlite3changeset_pk(self.it, &mut flags, &mut n) };
        if rc != ffi::SQLITE_OK || flags.is_null() || n <= 0 {
            return Vec::new();
        }
        // SAFETY: `flags` points to `n` readable bytes for the duration of the callback.
        unsafe { std::slice::from_raw_parts(flags, n as usize) }.to_vec()
    }

    /// The change's old value of column `col` (UPDATE/DELETE); `None` if not present.
    pub fn old_value(&self, col: usize) -> Option<Value> {
        self.value(col, ffi::sqlite3changeset_old)
    }

    /// The change's new value of column `col` (INSERT/UPDATE); `None` if not present.
    pub fn new_value(&self, col: usize) -> Option<Value> {
        self.value(col, ffi::sqlite3changeset_new)
    }

    /// The target row's current value of column `col` (DATA and CONFLICT conflicts only).
    pub fn current_value(&self, col: usize) -> Option<Value> {
        self.value(col, ffi::sqlite3changeset_conflict)
    }

    /// Number of foreign-key violations (FOREIGN_KEY conflicts only).
    pub fn fk_violations(&self) -> Option<i64> {
        let mut n = 0;
        // SAFETY: as in `op`.
        let rc = unsafe { ffi::sqlite3changeset_fk_conflicts(self.it, &mut n) };
        (rc == ffi::SQLITE_OK).then_some(i64::from(n))
    }

    fn value(
        &self,
        col: usize,
        getter: unsafe extern "C" fn(
            *mut ffi::sqlite3_changeset_iter,
            c_int,
            *mut *mut ffi::sqlite3_value,
        ) -> c_int,
    ) -> Option<Value> {
        let col = c_int::try_from(col).ok()?;
        let mut value: *mut ffi::sqlite3_value = std::ptr::null_mut();
        // SAFETY: `getter` is one of SQLite's accessors; it checks `col` against the column
        // count and the operation type and returns an error code instead of reading out of
        // bounds.
        let rc = unsafe { getter(self.it, col, &mut value) };
        if rc != ffi::SQLITE_OK || value.is_null() {
            return None;
        }
        // SAFETY: a non-null protected value owned by the iterator, read before returning.
        Some(unsafe { value_from_raw(value) })
    }
}

/// Copies an `sqlite3_value` into an owned [`Value`].
///
/// # Safety
/// `value` must be a valid, non-null `sqlite3_value` pointer for the duration of the call.
unsafe fn value_from_raw(value: *mut ffi::sqlite3_value) -> Value {
    // SAFETY: guaranteed by the caller; pointers returned by text/blob are valid for
    // `sqlite3_value_bytes` bytes until the value changes, and we copy them at once.
    unsafe {
        match ffi::sqlite3_value_type(value) {
            ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_value_int64(value)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_value_double(value)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(value);
                let n = ffi::sqlite3_value_bytes(value);
                if p.is_null() || n <= 0 {
                    Value::Text(String::new())
                } else {
                    let bytes = std::slice::from_raw_parts(p, n as usize);
                    Value::Text(String::from_utf8_lossy(bytes).into_owned())
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_value_blob(value) as *const u8;
                let n = ffi::sqlite3_value_bytes(value);
                if p.is_null() || n <= 0 {
                    Value::Blob(Vec::new())
                } else {
                    Value::Blob(std::slice::from_raw_parts(p, n as usize).to_vec())
                }
            }
            _ => Value::Null,
        }
    }
}

/// Called for every table in the changeset; return false to skip the table's changes.
pub type TableFilter<'a> = &'a mut dyn FnMut(&str) -> bool;
/// Called for every conflict; returns the resolution to use.
pub type ConflictHandler<'a> = &'a mut dyn FnMut(ConflictKind, &ConflictItem) -> Resolution;

struct Callbacks<'a> {
    filter: Option<TableFilter<'a>>,
    conflict: ConflictHandler<'a>,
    /// Set when a callback panicked; the apply is then aborted and the panic reported.
    panicked: bool,
}

unsafe extern "C" fn filter_trampoline(ctx: *mut c_void, table: *const c_char) -> c_int {
    // SAFETY: `ctx` is the `Callbacks` passed to `apply_v2`, alive for the whole call;
    // SQLite calls back on the same thread, never concurrently.
    let callbacks = unsafe { &mut *(ctx as *mut Callbacks<'_>) };
    if table.is_null() {
        return 0;
    }
    // SAFETY: SQLite passes a NUL-terminated table name.
    let table = unsafe { CStr::from_ptr(table) }.to_string_lossy();
    let Some(filter) = callbacks.filter.as_mut() else {
        return 1;
    };
    match catch_unwind(AssertUnwindSafe(|| filter(&table))) {
        Ok(keep) => c_int::from(keep),
        Err(_) => {
            callbacks.panicked = true;
            0
        }
    }
}

unsafe extern "C" fn conflict_trampoline(
    ctx: *mut c_void,
    kind: c_int,
    it: *mut ffi::sqlite3_changeset_iter,
) -> c_int {
    // SAFETY: as in `filter_trampoline`.
    let callbacks = unsafe { &mut *(ctx as *mut Callbacks<'_>) };
    let Some(kind) = ConflictKind::from_code(kind) else {
        return ffi::SQLITE_CHANGESET_ABORT;
    };
    let item = ConflictItem { it };
    let handler = &mut callbacks.conflict;
    match catch_unwind(AssertUnwindSafe(|| handler(kind, &item))) {
        Ok(resolution) => resolution.code(),
        Err(_) => {
            callbacks.panicked = true;
            ffi::SQLITE_CHANGESET_ABORT
        }
    }
}

/// Outcome of [`apply_v2`] when SQLite did not finish applying.
#[derive(Debug, thiserror::Error)]
pub enum RawApplyError {
    /// A conflict handler returned [`Resolution::Abort`]; SQLite rolled the apply back.
    #[error("the apply was aborted by the conflict handler")]
    Aborted,
    /// A callback panicked; the apply was aborted and rolled back.
    #[error("a conflict handler panicked; the apply was rolled back")]
    Panicked,
    /// SQLite reported an error (corrupt input, misuse, I/O).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies changeset bytes to the `main` database of `conn` with `sqlite3changeset_apply_v2`.
///
/// Unless `flags.no_savepoint` is set, SQLite wraps the apply in a savepoint and rolls it back
/// on any error or abort, so the database is unchanged when this returns `Err`.
pub fn apply_v2<'a>(
    conn: &Connection,
    changeset: &[u8],
    flags: ApplyFlags,
    filter: Option<TableFilter<'a>>,
    conflict: ConflictHandler<'a>,
) -> Result<(), RawApplyError> {
    let len = c_int::try_from(changeset.len()).map_err(|_| {
        rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_TOOBIG),
            Some(format!(
                "changeset of {} bytes exceeds 2 GiB",
                changeset.len()
            )),
        )
    })?;
    let has_filter = filter.is_some();
    let mut callbacks = Callbacks {
        filter,
        conflict,
        panicked: false,
    };
    // SAFETY: `conn.handle()` is the live connection, used on this thread only for the call.
    // SQLite reads (never writes) `len` bytes of `changeset` although the C signature takes a
    // mutable pointer. `callbacks` outlives the call and the trampolines cast it back to the
    // same type. No rebase buffer is requested.
    let rc = unsafe {
        let db = conn.handle();
        ffi::sqlite3changeset_apply_v2(
            db,
            len,
            changeset.as_ptr() as *mut c_void,
            if has_filter {
                Some(filter_trampoline)
            } else {
                None
            },
            Some(conflict_trampoline),
            &mut callbacks as *mut Callbacks<'_> as *mut c_void,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags.bits(),
        )
    };
    outcome(conn, rc, callbacks.panicked)
}

fn outcome(conn: &Connection, rc: c_int, panicked: bool) -> Result<(), RawApplyError> {
    if panicked {
        return Err(RawApplyError::Panicked);
    }
    match rc {
        ffi::SQLITE_OK => Ok(()),
        ffi::SQLITE_ABORT => Err(RawApplyError::Aborted),
        code => {
            // SAFETY: the connection is live; the message is copied immediately.
            let message = unsafe {
                let msg = ffi::sqlite3_errmsg(conn.handle());
                (!msg.is_null()).then(|| CStr::from_ptr(msg).to_string_lossy().into_owned())
            };
            Err(RawApplyError::Sqlite(rusqlite::Error::SqliteFailure(
                ffi::Error::new(code),
                message,
            )))
        }
    }
}
