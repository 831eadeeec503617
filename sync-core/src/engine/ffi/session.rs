//! A safe wrapper of SQLite's session extension — sessions, changegroups, streaming invert and
//! concat, and a changeset iterator — over the raw functions of `rusqlite::ffi`.
//!
//! Why our own and not rusqlite's `session` module: that feature regenerates the SQLite
//! bindings with bindgen at build time, which needs libclang on every machine that builds the
//! project, every CI runner and every mobile cross-build toolchain. libsqlite3-sys's
//! pre-generated bindings already declare the whole session API; building the bundled SQLite
//! with `SQLITE_ENABLE_SESSION` and `SQLITE_ENABLE_PREUPDATE_HOOK` (`.cargo/config.toml`,
//! `LIBSQLITE3_FLAGS`) makes them real. The wrapper mirrors the small part of rusqlite's API
//! the project used.

use crate::engine::value::Value;
use rusqlite::{Connection, ffi};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// An error from SQLite, with its message when it gave one.
fn error(rc: c_int, message: Option<String>) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

fn check(rc: c_int) -> rusqlite::Result<()> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(error(rc, None))
    }
}

/// A stream's reader or writer and the first I/O error it met (SQLite sees only a code).
struct Stream<'a, T: ?Sized> {
    inner: &'a mut T,
    error: Option<std::io::Error>,
}

impl<T: ?Sized> Stream<'_, T> {
    /// The result of a streaming call: the stream's own error first, else SQLite's code.
    fn finish(self, rc: c_int) -> rusqlite::Result<()> {
        match self.error {
            Some(e) => Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
            None => check(rc),
        }
    }
}

unsafe extern "C" fn output(ctx: *mut c_void, data: *const c_void, n: c_int) -> c_int {
    // SAFETY: `ctx` is the `Stream<dyn Write>` of the calling function, alive for the call;
    // SQLite calls back on the same thread and passes `n` readable bytes at `data`.
    let stream = unsafe { &mut *(ctx as *mut Stream<'_, dyn Write>) };
    let bytes: &[u8] = if n <= 0 || data.is_null() {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(data as *const u8, n as usize) }
    };
    match catch_unwind(AssertUnwindSafe(|| stream.inner.write_all(bytes))) {
        Ok(Ok(())) => ffi::SQLITE_OK,
        Ok(Err(e)) => {
            stream.error = Some(e);
            ffi::SQLITE_IOERR_WRITE
        }
        Err(_) => {
            stream.error = Some(std::io::Error::other("a changeset writer panicked"));
            ffi::SQLITE_IOERR_WRITE
        }
    }
}

unsafe extern "C" fn input(ctx: *mut c_void, data: *mut c_void, n: *mut c_int) -> c_int {
    // SAFETY: `ctx` is the `Stream<dyn Read>` of the calling function, alive for the call;
    // `data` has `*n` writable bytes.
    let stream = unsafe { &mut *(ctx as *mut Stream<'_, dyn Read>) };
    let want = usize::try_from(unsafe { *n }).unwrap_or(0);
    let buf = unsafe { std::slice::from_raw_parts_mut(data as *mut u8, want) };
    let read = loop {
        match catch_unwind(AssertUnwindSafe(|| stream.inner.read(buf))) {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(r) => break r,
            Err(_) => break Err(std::io::Error::other("a changeset reader panicked")),
        }
    };
    match read {
        Ok(got) => {
            // SAFETY: `got <= want`, which came from a c_int.
            unsafe { *n = got as c_int };
            ffi::SQLITE_OK
        }
        Err(e) => {
            stream.error = Some(e);
            ffi::SQLITE_IOERR_READ
        }
    }
}

/// A table filter, boxed twice: the outer box's address is what SQLite holds, and it stays put.
type Filter<'conn> = Box<Box<dyn Fn(&str) -> bool + 'conn>>;

/// A session recording changes to tables of a connection's `main` database.
pub struct Session<'conn> {
    raw: *mut ffi::sqlite3_session,
    /// The table filter, if any.
    filter: Option<Filter<'conn>>,
    _conn: std::marker::PhantomData<&'conn Connection>,
}

unsafe extern "C" fn filter_trampoline(ctx: *mut c_void, table: *const c_char) -> c_int {
    if ctx.is_null() || table.is_null() {
        return 1;
    }
    // SAFETY: `ctx` is the session's boxed filter, alive as long as the session; SQLite
    // passes a NUL-terminated table name.
    let filter = unsafe { &*(ctx as *const Box<dyn Fn(&str) -> bool>) };
    let table = unsafe { CStr::from_ptr(table) }.to_string_lossy();
    // A panicking filter records nothing for the table rather than unwinding into C.
    catch_unwind(AssertUnwindSafe(|| filter(&table))).map_or(0, c_int::from)
}

impl<'conn> Session<'conn> {
    /// A new session on `conn`'s `main` database, recording nothing until tables are attached.
    pub fn new(conn: &'conn Connection) -> rusqlite::Result<Session<'conn>> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: the connection handle is live for 'conn; "main" is NUL-terminated.
        let rc = unsafe { ffi::sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut raw) };
        check(rc)?;
        Ok(Session {
            raw,
            filter: None,
            _conn: std::marker::PhantomData,
        })
    }

    /// Records only tables for which `filter` returns true (applies to tables attached with
    /// `None`).
    pub fn table_filter(&mut self, filter: Option<impl Fn(&str) -> bool + 'conn>) {
        let boxed = filter.map(|f| Box::new(Box::new(f) as Box<dyn Fn(&str) -> bool + 'conn>));
        let ctx = boxed
            .as_ref()
            .map_or(std::ptr::null_mut(), |b| &**b as *const _ as *mut c_void);
        // SAFETY: the session is live; the boxed filter is kept in `self` (so it outlives the
        // registration) and replaced only after SQLite has the new one.
        unsafe {
            ffi::sqlite3session_table_filter(
                self.raw,
                if boxed.is_some() {
                    Some(filter_trampoline)
                } else {
                    None
                },
                ctx,
            )
        };
        self.filter = boxed;
    }

    /// Records changes to `table`, or to every table with `None`.
    pub fn attach(&mut self, table: Option<&str>) -> rusqlite::Result<()> {
        let name = table.map(CString::new).transpose().map_err(|_| {
            rusqlite::Error::InvalidParameterName("a table name with a NUL byte".into())
        })?;
        // SAFETY: the session is live; the name, if any, is NUL-terminated for the call.
        let rc = unsafe {
            ffi::sqlite3session_attach(
                self.raw,
                name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
            )
        };
        check(rc)
    }

    /// Records the differences between `table` in `from_db` (an attached database) and in
    /// `main`, as if `main` had been changed from `from_db`'s state.
    pub fn diff(&mut self, from_db: &str, table: &str) -> rusqlite::Result<()> {
        let from = CString::new(from_db)
            .map_err(|_| rusqlite::Error::InvalidParameterName(from_db.into()))?;
        let table_c =
            CString::new(table).map_err(|_| rusqlite::Error::InvalidParameterName(table.into()))?;
        let mut message: *mut c_char = std::ptr::null_mut();
        // SAFETY: the session is live; both names are NUL-terminated; SQLite allocates the
        // error message with sqlite3_malloc, freed below.
        let rc = unsafe {
            ffi::sqlite3session_diff(self.raw, from.as_ptr(), table_c.as_ptr(), &mut message)
        };
        let text = (!message.is_null()).then(|| {
            // SAFETY: a NUL-terminated string from SQLite, freed right after copying.
            let s = unsafe { CStr::from_ptr(message) }
                .to_string_lossy()
                .into_owned();
            unsafe { ffi::sqlite3_free(message as *mut c_void) };
            s
        });
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(rc, text))
        }
    }

    /// Marks the changes recorded from now on as indirect (as a trigger's would be).
    pub fn set_indirect(&mut self, indirect: bool) {
        // SAFETY: the session is live.
        unsafe { ffi::sqlite3session_indirect(self.raw, c_int::from(indirect)) };
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        // SAFETY: the session is live.
        unsafe { ffi::sqlite3session_isempty(self.raw) != 0 }
    }

    /// Writes the recorded changeset to `out`, in pieces.
    pub fn changeset_strm(&mut self, out: &mut dyn Write) -> rusqlite::Result<()> {
        let mut stream: Stream<'_, dyn Write> = Stream {
            inner: out,
            error: None,
        };
        // SAFETY: the session is live; `stream` outlives the call and `output` casts the
        // context back to the same type.
        let rc = unsafe {
            ffi::sqlite3session_changeset_strm(
                self.raw,
                Some(output),
                &mut stream as *mut Stream<'_, dyn Write> as *mut c_void,
            )
        };
        stream.finish(rc)
    }
}

impl Session<'_> {
    /// Writes the recorded patchset to `out`, in pieces: like a changeset, but a delete
    /// carries only its primary key and an update only the new values of changed columns —
    /// for replaying onto an exact copy, where no conflict is to be detected.
    pub fn patchset_strm(&mut self, out: &mut dyn Write) -> rusqlite::Result<()> {
        let mut stream: Stream<'_, dyn Write> = Stream {
            inner: out,
            error: None,
        };
        // SAFETY: as in `changeset_strm`.
        let rc = unsafe {
            ffi::sqlite3session_patchset_strm(
                self.raw,
                Some(output),
                &mut stream as *mut Stream<'_, dyn Write> as *mut c_void,
            )
        };
        stream.finish(rc)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: the session is live and deleted once; the filter box outlives this call.
        unsafe { ffi::sqlite3session_delete(self.raw) };
    }
}

/// Combines changesets: the result holds each row's net change (`sqlite3changegroup`).
pub struct Changegroup {
    raw: *mut ffi::sqlite3_changegroup,
}

impl Changegroup {
    /// An empty changegroup.
    pub fn new() -> rusqlite::Result<Changegroup> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: an out-pointer to a local.
        check(unsafe { ffi::sqlite3changegroup_new(&mut raw) })?;
        Ok(Changegroup { raw })
    }

    /// Adds a changeset's changes.
    pub fn add(&mut self, changeset: &[u8]) -> rusqlite::Result<()> {
        let n = c_int::try_from(changeset.len())
            .map_err(|_| error(ffi::SQLITE_TOOBIG, Some("a changeset past 2 GiB".into())))?;
        // SAFETY: the group is live; SQLite reads (never writes) `n` bytes of the buffer,
        // although the signature takes a mutable pointer.
        check(unsafe {
            ffi::sqlite3changegroup_add(self.raw, n, changeset.as_ptr() as *mut c_void)
        })
    }

    /// Writes the combined changeset to `out`.
    pub fn output_strm(&mut self, out: &mut dyn Write) -> rusqlite::Result<()> {
        let mut stream: Stream<'_, dyn Write> = Stream {
            inner: out,
            error: None,
        };
        // SAFETY: as in `Session::changeset_strm`.
        let rc = unsafe {
            ffi::sqlite3changegroup_output_strm(
                self.raw,
                Some(output),
                &mut stream as *mut Stream<'_, dyn Write> as *mut c_void,
            )
        };
        stream.finish(rc)
    }
}

impl Drop for Changegroup {
    fn drop(&mut self) {
        // SAFETY: live, deleted once.
        unsafe { ffi::sqlite3changegroup_delete(self.raw) };
    }
}

/// Writes the inverse of the changeset read from `input` to `out`, both streamed.
pub fn invert_strm(input: &mut dyn Read, out: &mut dyn Write) -> rusqlite::Result<()> {
    let mut from: Stream<'_, dyn Read> = Stream {
        inner: input,
        error: None,
    };
    let mut to: Stream<'_, dyn Write> = Stream {
        inner: out,
        error: None,
    };
    // SAFETY: both streams outlive the call; the callbacks cast their contexts back to the
    // same types.
    let rc = unsafe {
        ffi::sqlite3changeset_invert_strm(
            Some(input_fn),
            &mut from as *mut Stream<'_, dyn Read> as *mut c_void,
            Some(output),
            &mut to as *mut Stream<'_, dyn Write> as *mut c_void,
        )
    };
    if let Some(e) = from.error {
        return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
    }
    to.finish(rc)
}

/// Writes changeset `a` followed by `b`, combined as a changegroup would, to `out`.
pub fn concat_strm(
    a: &mut dyn Read,
    b: &mut dyn Read,
    out: &mut dyn Write,
) -> rusqlite::Result<()> {
    let mut a: Stream<'_, dyn Read> = Stream {
        inner: a,
        error: None,
    };
    let mut b: Stream<'_, dyn Read> = Stream {
        inner: b,
        error: None,
    };
    let mut to: Stream<'_, dyn Write> = Stream {
        inner: out,
        error: None,
    };
    // SAFETY: as in `invert_strm`.
    let rc = unsafe {
        ffi::sqlite3changeset_concat_strm(
            Some(input_fn),
            &mut a as *mut Stream<'_, dyn Read> as *mut c_void,
            Some(input_fn),
            &mut b as *mut Stream<'_, dyn Read> as *mut c_void,
            Some(output),
            &mut to as *mut Stream<'_, dyn Write> as *mut c_void,
        )
    };
    if let Some(e) = a.error.or(b.error) {
        return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
    }
    to.finish(rc)
}

// (Named apart from `input` so the two callbacks read differently at call sites.)
use input as input_fn;

/// One change as SQLite's own iterator reads it (for tests that hold our decoder against it).
#[derive(Debug, Clone, PartialEq)]
pub struct RawChange {
    /// The table.
    pub table: String,
    /// `SQLITE_INSERT`, `SQLITE_UPDATE` or `SQLITE_DELETE`.
    pub op: i32,
    /// The indirect flag.
    pub indirect: bool,
    /// Primary-key flags, one per column.
    pub pk: Vec<u8>,
    /// Old values (UPDATE, DELETE; `None` for an unchanged UPDATE column).
    pub old: Vec<Option<Value>>,
    /// New values (INSERT, UPDATE; `None` for an unchanged UPDATE column).
    pub new: Vec<Option<Value>>,
}

/// Every change of `changeset` as SQLite's iterator (`sqlite3changeset_start`) reads it. Text
/// that is not UTF-8 is an error (`SQLITE_MISMATCH`), never converted lossily: this is an oracle
/// for tests, and a lossy copy could hide a disagreement.
pub fn sqlite_changes(changeset: &[u8]) -> rusqlite::Result<Vec<RawChange>> {
    let n = c_int::try_from(changeset.len())
        .map_err(|_| error(ffi::SQLITE_TOOBIG, Some("a changeset past 2 GiB".into())))?;
    let mut it = std::ptr::null_mut();
    // SAFETY: SQLite reads `n` bytes of the buffer for the iterator's life (this function).
    check(unsafe { ffi::sqlite3changeset_start(&mut it, n, changeset.as_ptr() as *mut c_void) })?;
    let mut out = Vec::new();
    let result = (|| {
        loop {
            // SAFETY: the iterator is live until finalized below.
            let rc = unsafe { ffi::sqlite3changeset_next(it) };
            if rc == ffi::SQLITE_DONE {
                return Ok(());
            }
            if rc != ffi::SQLITE_ROW {
                return Err(error(rc, None));
            }
            let item = super::ConflictItem { it };
            let head = item.op().ok_or_else(|| error(ffi::SQLITE_CORRUPT, None))?;
            let op = match head.op {
                Some(crate::engine::decode::Op::Insert) => ffi::SQLITE_INSERT,
                Some(crate::engine::decode::Op::Update) => ffi::SQLITE_UPDATE,
                Some(crate::engine::decode::Op::Delete) => ffi::SQLITE_DELETE,
                None => return Err(error(ffi::SQLITE_CORRUPT, None)),
            };
            let values = |get: fn(&super::ConflictItem, usize) -> Option<Value>| {
                let values: Vec<Option<Value>> = (0..head.columns).map(|i| get(&item, i)).collect();
                if values
                    .iter()
                    .flatten()
                    .any(|v| matches!(v, Value::Text(t) if t.contains('\u{fffd}')))
                {
                    return Err(error(
                        ffi::SQLITE_MISMATCH,
                        Some("text is not UTF-8".into()),
                    ));
                }
                Ok(values)
            };
            out.push(RawChange {
                table: head.table.clone(),
                op,
                indirect: head.indirect,
                pk: item.pk(),
                old: if op == ffi::SQLITE_INSERT {
                    Vec::new()
                } else {
                    values(super::ConflictItem::old_value)?
                },
                new: if op == ffi::SQLITE_DELETE {
                    Vec::new()
                } else {
                    values(super::ConflictItem::new_value)?
                },
            });
        }
    })();
    // SAFETY: finalized once; its code repeats an error already met.
    let rc = unsafe { ffi::sqlite3changeset_finalize(it) };
    result?;
    check(rc)?;
    Ok(out)
}
