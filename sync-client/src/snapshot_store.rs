//! Where a downloaded snapshot lands. The server sends a plain SQLite file; for a plain local
//! database it is streamed to disk as it comes, for an encrypted one it is read into memory
//! and written out encrypted with the database's key
//! ([`sync_core::engine::cipher::import_plain`]), so its plain bytes never touch the disk —
//! at the price of memory equal to the snapshot's size while it is stored.

use crate::error::{Error, ErrorKind, Result};
use std::io::Write;
use std::path::Path;

/// Stores a snapshot at `dest` (encrypted with `key`, when given): `download` writes the body
/// to the writer it is given and returns its size.
pub(crate) fn store(
    dest: &Path,
    key: Option<&crate::EncryptionKey>,
    download: impl FnOnce(&mut dyn Write) -> std::io::Result<u64>,
) -> Result<u64> {
    let failed = |e: std::io::Error| {
        Error::new(ErrorKind::Network, format!("snapshot download failed: {e}")).with_source(e)
    };
    match key {
        None => {
            let mut file = std::fs::File::create(dest)?;
            let n = download(&mut file).map_err(failed)?;
            file.sync_all()?;
            Ok(n)
        }
        Some(key) => encrypted(dest, key, download, failed),
    }
}

#[cfg(feature = "encryption")]
fn encrypted(
    dest: &Path,
    key: &crate::EncryptionKey,
    download: impl FnOnce(&mut dyn Write) -> std::io::Result<u64>,
    failed: impl Fn(std::io::Error) -> Error,
) -> Result<u64> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    let n = download(&mut *bytes).map_err(failed)?;
    sync_core::engine::cipher::import_plain(&mut bytes, dest, key)?;
    std::fs::File::open(dest)?.sync_all()?;
    Ok(n)
}

#[cfg(not(feature = "encryption"))]
fn encrypted(
    _dest: &Path,
    _key: &crate::EncryptionKey,
    _download: impl FnOnce(&mut dyn Write) -> std::io::Result<u64>,
    _failed: impl Fn(std::io::Error) -> Error,
) -> Result<u64> {
    Err(sync_core::engine::cipher::CipherError::Unsupported.into())
}

/// An encrypted copy at `dest` (new) of the plain database at `source_uri` (a `file:` URI,
/// opened read-only): `adopt` with a key.
pub(crate) fn encrypt_copy(
    source_uri: &str,
    dest: &Path,
    key: &crate::EncryptionKey,
) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = sync_core::engine::cipher::open(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
        Some(key),
    )?;
    conn.execute("ATTACH DATABASE ?1 AS _sync_plain KEY ''", [source_uri])?;
    let exported = conn.query_row("SELECT sqlcipher_export('main', '_sync_plain')", [], |_| {
        Ok(())
    });
    conn.execute_batch("DETACH DATABASE _sync_plain")?;
    exported?;
    Ok(conn)
}
