//! Copies between encrypted and plain databases, for the server's encrypted data directory:
//! SQLite's backup API refuses to copy between a keyed and an unkeyed database, so these go
//! through SQLCipher's `sqlcipher_export` (which re-creates the schema and copies every row,
//! and `user_version` carried over by hand) on a scratch in-memory connection.
//!
//! - [`plain_copy_in_memory`]: a consistent plain copy of an encrypted file, held in memory
//!   (the server's snapshot is built there, never on disk in the clear);
//! - [`serialize`]: the bytes of an in-memory database, to send;
//! - [`export_file`]: one file into another, each with its own key or none (the import of an
//!   operator's plain file into an encrypted data directory).

use super::cipher::{self, CipherError, EncryptionKey};
use rusqlite::Connection;
use std::path::Path;

/// The schema name a source file is attached as.
const SOURCE: &str = "_sync_source";
/// The schema name a destination file is attached as.
const DEST: &str = "_sync_dest";

/// A plain in-memory database holding a consistent copy of `source` (opened with `key`): one
/// read transaction over the whole copy, so writes to the file meanwhile do not tear it.
/// Costs memory equal to the database's size.
pub fn plain_copy_in_memory(source: &Path, key: &EncryptionKey) -> Result<Connection, CipherError> {
    let conn = Connection::open_in_memory()?;
    attach_checked(&conn, source, SOURCE, Some(key))?;
    export(&conn, "main", SOURCE)?;
    conn.execute_batch(&format!("DETACH DATABASE {SOURCE};"))?;
    Ok(conn)
}

/// Copies the database `source` (opened with `source_key`, or plain) into `dest` (which must
/// not exist; made with `dest_key`, or plain), in one read transaction on the source.
pub fn export_file(
    source: &Path,
    source_key: Option<&EncryptionKey>,
    dest: &Path,
    dest_key: Option<&EncryptionKey>,
) -> Result<(), CipherError> {
    let conn = Connection::open_in_memory()?;
    attach_checked(&conn, source, SOURCE, source_key)?;
    cipher::attach(&conn, &dest.to_string_lossy(), DEST, dest_key)?;
    export(&conn, DEST, SOURCE)?;
    conn.execute_batch(&format!(
        "DETACH DATABASE {SOURCE}; DETACH DATABASE {DEST};"
    ))?;
    Ok(())
}

/// Attaches `file` as `schema` with `key` and reads its schema: a wrong key is
/// [`CipherError::WrongKey`] whether ATTACH or the first read notices it.
fn attach_checked(
    conn: &Connection,
    file: &Path,
    schema: &str,
    key: Option<&EncryptionKey>,
) -> Result<(), CipherError> {
    let keyed = key.is_some();
    match cipher::attach(conn, &file.to_string_lossy(), schema, key) {
        Ok(()) => cipher::check_readable_in(conn, schema, file, keyed),
        Err(CipherError::Sqlite(e)) => Err(cipher::classify(e, file, keyed)),
        Err(e) => Err(e),
    }
}

/// `sqlcipher_export(target, source)` inside one transaction (SQLCipher's function runs one
/// statement per table; the explicit transaction keeps a single read snapshot of `source`).
#[cfg(feature = "encryption")]
fn export(conn: &Connection, target: &str, source: &str) -> Result<(), CipherError> {
    conn.execute_batch("BEGIN")?;
    let done = conn
        .query_row("SELECT sqlcipher_export(?1, ?2)", [target, source], |_| {
            Ok(())
        })
        .and_then(|()| {
            // The export copies schema and rows, not the header's user_version: carried here.
            let version: i64 =
                conn.query_row(&format!("PRAGMA \"{source}\".user_version"), [], |r| {
                    r.get(0)
                })?;
            conn.execute_batch(&format!(
                "PRAGMA \"{target}\".user_version = {version}; COMMIT"
            ))
        });
    if done.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    Ok(done?)
}

#[cfg(not(feature = "encryption"))]
fn export(_conn: &Connection, _target: &str, _source: &str) -> Result<(), CipherError> {
    Err(CipherError::Unsupported)
}

/// The bytes of the main database of `conn` (an SQLite file image).
pub fn serialize(conn: &Connection) -> Result<Vec<u8>, CipherError> {
    let mut size: rusqlite::ffi::sqlite3_int64 = 0;
    // SAFETY: the handle is the live connection's; with flags 0 SQLite returns a copy it
    // allocated with sqlite3_malloc (NULL on failure), `size` bytes long, freed below.
    let ptr =
        unsafe { rusqlite::ffi::sqlite3_serialize(conn.handle(), c"main".as_ptr(), &mut size, 0) };
    if ptr.is_null() {
        return Err(CipherError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOMEM),
            Some("cannot serialize the database".into()),
        )));
    }
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: `ptr` points to `len` initialised bytes owned by us until sqlite3_free.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    // SAFETY: allocated by SQLite, freed once.
    unsafe { rusqlite::ffi::sqlite3_free(ptr.cast()) };
    Ok(bytes)
}

#[cfg(all(test, feature = "encryption"))]
mod tests {
    use super::*;
    use rusqlite::OpenFlags;

    #[test]
    fn an_encrypted_file_copies_to_plain_memory_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = EncryptionKey::raw([7; 32]);
        let enc = dir.path().join("enc.db");
        let c = cipher::open(
            &enc,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            Some(&key),
        )
        .unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA user_version = 3;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'marker-xyz');",
        )
        .unwrap();
        let copy = plain_copy_in_memory(&enc, &key).unwrap();
        let v: String = copy.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "marker-xyz");
        let uv: i64 = copy
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uv, 3);
        let bytes = serialize(&copy).unwrap();
        assert!(bytes.starts_with(b"SQLite format 3\0"));
        assert!(bytes.windows(10).any(|w| w == b"marker-xyz"));

        let other = dir.path().join("other.db");
        export_file(&enc, Some(&key), &other, Some(&key)).unwrap();
        let raw = std::fs::read(&other).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"marker-xyz"));
        let plain = dir.path().join("plain.db");
        export_file(&other, Some(&key), &plain, None).unwrap();
        let raw = std::fs::read(&plain).unwrap();
        assert!(raw.windows(10).any(|w| w == b"marker-xyz"));
        let wrong = EncryptionKey::raw([8; 32]);
        let err = plain_copy_in_memory(&enc, &wrong).unwrap_err();
        assert!(matches!(err, CipherError::WrongKey { .. }), "{err}");
    }
}
