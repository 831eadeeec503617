//! Encryption at rest: the key of an encrypted database, handed to every connection before it
//! reads a page, and the one place that tells a wrong or missing key from a damaged file.
//!
//! With the crate's `encryption` feature, SQLite is SQLCipher (rusqlite's
//! `bundled-sqlcipher-vendored-openssl`): a database opened with a key is encrypted page by
//! page (AES-256, an HMAC per page), its WAL too; every other file it attaches is named with
//! its key ([`attach`]). Without the feature a key is refused
//! ([`CipherError::Unsupported`]) rather than ignored: plain SQLite would accept `PRAGMA key`
//! silently and write plaintext.
//!
//! Spool files (see [`crate::engine::spool`]) are sealed with a key of their own, made for
//! each file and never written anywhere.

use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// True when this build has SQLCipher (the `encryption` feature).
pub const ENABLED: bool = cfg!(feature = "encryption");

/// The first 16 bytes of every plain SQLite database file.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The key of an encrypted database: a passphrase (stretched by SQLCipher's PBKDF2 with the
/// file's own salt, on every open) or 32 raw bytes (used as the AES key directly: opens are
/// fast). The app supplies it at every open; the library never stores it. The bytes are
/// wiped from memory when the last clone is dropped, and `Debug` does not print them.
#[derive(Clone)]
pub struct EncryptionKey {
    /// What `sqlite3_key` receives: the passphrase, or `x'<64 hex digits>'` for a raw key.
    material: Zeroizing<Vec<u8>>,
}

impl EncryptionKey {
    /// A passphrase (not empty).
    pub fn passphrase(passphrase: impl Into<String>) -> Result<EncryptionKey, CipherError> {
        let p = Zeroizing::new(passphrase.into());
        if p.is_empty() {
            return Err(CipherError::BadKey("the passphrase is empty".into()));
        }
        Ok(EncryptionKey {
            material: Zeroizing::new(p.as_bytes().to_vec()),
        })
    }

    /// 32 raw key bytes.
    pub fn raw(bytes: [u8; 32]) -> EncryptionKey {
        let bytes = Zeroizing::new(bytes);
        let mut material = Zeroizing::new(Vec::with_capacity(67));
        material.extend_from_slice(b"x'");
        for b in bytes.iter() {
            material.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        material.push(b'\'');
        EncryptionKey { material }
    }

    /// A raw key written as 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Result<EncryptionKey, CipherError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(CipherError::BadKey(format!(
                "a raw key is 64 hexadecimal digits, got {} characters",
                hex.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => bytes[i] = (h * 16 + l) as u8,
                _ => {
                    return Err(CipherError::BadKey(
                        "a raw key is hexadecimal digits".into(),
                    ));
                }
            }
        }
        Ok(EncryptionKey::raw(*bytes))
    }

    /// A key file's content: 64 hex digits are a raw key, anything else (one trailing newline
    /// removed) a passphrase.
    pub fn from_file_content(content: &str) -> Result<EncryptionKey, CipherError> {
        let line = content
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(content);
        if line.len() == 64 && line.bytes().all(|c| c.is_ascii_hexdigit()) {
            EncryptionKey::from_hex(line)
        } else {
            EncryptionKey::passphrase(line)
        }
    }

    #[cfg(feature = "encryption")]
    pub(crate) fn material(&self) -> &[u8] {
        &self.material
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

impl PartialEq for EncryptionKey {
    fn eq(&self, other: &Self) -> bool {
        self.material == other.material
    }
}
impl Eq for EncryptionKey {}

/// Why an encrypted database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The key given does not open the file, or a key was given for a plain file, or none for
    /// an encrypted one. `reason` says which.
    #[error("{path}: {reason}")]
    WrongKey {
        /// The file.
        path: String,
        /// Which of the three.
        reason: String,
    },
    /// A key was given to a build without encryption.
    #[error(
        "an encryption key was given, but this build has no encryption (build with the `encryption` feature)"
    )]
    Unsupported,
    /// The key itself is malformed (empty passphrase, bad hex).
    #[error("invalid encryption key: {0}")]
    BadKey(String),
    /// SQLite failed otherwise.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Gives `conn` its key (before it reads anything) and keeps its temporary tables and indices
/// in memory. `None` leaves the connection plain.
pub fn set_key(conn: &Connection, key: Option<&EncryptionKey>) -> Result<(), CipherError> {
    let Some(key) = key else {
        return Ok(());
    };
    apply_key(conn, key)?;
    // SQLCipher is built with SQLITE_TEMP_STORE=2 (memory unless asked otherwise); asked here
    // too, so no temporary b-tree of a keyed connection goes to an (unencrypted) temp file.
    conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
    Ok(())
}

#[cfg(feature = "encryption")]
fn apply_key(conn: &Connection, key: &EncryptionKey) -> Result<(), CipherError> {
    let material = key.material();
    let len = std::os::raw::c_int::try_from(material.len())
        .map_err(|_| CipherError::BadKey("too long".into()))?;
    quiet(conn)?;
    // SAFETY: the handle is the live connection's; SQLCipher copies the key bytes.
    let rc = unsafe { rusqlite::ffi::sqlite3_key(conn.handle(), material.as_ptr().cast(), len) };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(CipherError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("sqlite3_key failed".into()),
        )));
    }
    Ok(())
}

#[cfg(not(feature = "encryption"))]
fn apply_key(_conn: &Connection, _key: &EncryptionKey) -> Result<(), CipherError> {
    Err(CipherError::Unsupported)
}

/// `ATTACH DATABASE file AS schema` with the file's key (`KEY ?`) when given. Always name the
/// key: an ATTACH without a `KEY` clause would take the main database's derived key *and
/// salt*, which opens no other file.
pub fn attach(
    conn: &Connection,
    file: &str,
    schema: &str,
    key: Option<&EncryptionKey>,
) -> Result<(), CipherError> {
    let schema = format!("\"{}\"", schema.replace('"', "\"\""));
    match key {
        None => conn.execute(&format!("ATTACH DATABASE ?1 AS {schema}"), [file])?,
        Some(key) => attach_keyed(conn, file, &schema, key)?,
    };
    Ok(())
}

#[cfg(feature = "encryption")]
fn attach_keyed(
    conn: &Connection,
    file: &str,
    schema: &str,
    key: &EncryptionKey,
) -> Result<usize, CipherError> {
    Ok(conn.execute(
        &format!("ATTACH DATABASE ?1 AS {schema} KEY ?2"),
        rusqlite::params![file, key.material()],
    )?)
}

#[cfg(not(feature = "encryption"))]
fn attach_keyed(
    _conn: &Connection,
    _file: &str,
    _schema: &str,
    _key: &EncryptionKey,
) -> Result<usize, CipherError> {
    Err(CipherError::Unsupported)
}

/// Opens `path` with `key` and proves the key by reading the schema: a wrong or missing key
/// (or a key for a plain file) is [`CipherError::WrongKey`], never "file is not a database".
pub fn open(
    path: &Path,
    flags: OpenFlags,
    key: Option<&EncryptionKey>,
) -> Result<Connection, CipherError> {
    if key.is_some() && !ENABLED {
        // Before the file is touched: nothing is created for a key this build cannot use.
        return Err(CipherError::Unsupported);
    }
    let conn = Connection::open_with_flags(path, flags)?;
    set_key(&conn, key)?;
    check_readable(&conn, path, key.is_some())?;
    Ok(conn)
}

/// Reads the schema of `conn` (just opened on `path`): SQLite's "not a database" becomes
/// [`CipherError::WrongKey`] when the file's first bytes say the key does not fit.
pub fn check_readable(conn: &Connection, path: &Path, keyed: bool) -> Result<(), CipherError> {
    match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(e, path, keyed)),
    }
}

/// Reads the schema of the database attached to `conn` as `schema` (the file `path`), like
/// [`check_readable`].
pub fn check_readable_in(
    conn: &Connection,
    schema: &str,
    path: &Path,
    keyed: bool,
) -> Result<(), CipherError> {
    let sql = format!(
        "SELECT count(*) FROM \"{}\".sqlite_schema",
        schema.replace('"', "\"\"")
    );
    match conn.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(e, path, keyed)),
    }
}

/// Turns SQLite's `SQLITE_NOTADB` on a file into the key error it stands for (by the file's
/// first 16 bytes; without a key, only in a build with encryption); any other error is
/// returned as it is.
pub fn classify(e: rusqlite::Error, path: &Path, keyed: bool) -> CipherError {
    if !is_not_a_database(&e) {
        return CipherError::Sqlite(e);
    }
    let mut head = [0u8; 16];
    let plain = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map(|()| &head == PLAIN_HEADER);
    let reason = match (keyed, plain) {
        (true, Ok(true)) => "an encryption key was given, but the database is not encrypted",
        (true, _) => {
            "the encryption key does not open it (a wrong key, or not an encrypted database)"
        }
        // Without a key, a file that is not plain SQLite is taken for an encrypted one only
        // where this build could have made one: elsewhere it stays "not a database".
        (false, Ok(false)) if ENABLED => {
            "it is not a plain SQLite database: encrypted (open it with its encryption key), \
             or not a database at all"
        }
        (false, _) => return CipherError::Sqlite(e),
    };
    CipherError::WrongKey {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// True for SQLite's "file is not a database" (what a wrong key looks like to SQLite).
pub fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    )
}

/// Builds the encrypted database `dest` (which must not exist) from the bytes of a plain
/// SQLite database held in memory (a downloaded snapshot): the plain bytes never touch the
/// disk. Costs memory equal to their size while it runs.
#[cfg(feature = "encryption")]
pub fn import_plain(bytes: &mut [u8], dest: &Path, key: &EncryptionKey) -> Result<(), CipherError> {
    // A WAL-mode header (read/write versions 2) would ask the in-memory copy for a WAL; the
    // image is complete, so it is read as a rollback-journal database.
    if bytes.len() >= 20 && bytes[..16] == PLAIN_HEADER[..] && bytes[18] == 2 {
        bytes[18] = 1;
        bytes[19] = 1;
    }
    let len = i64::try_from(bytes.len()).map_err(|_| CipherError::BadKey("too large".into()))?;
    // The image is the main database of an unkeyed in-memory connection (deserializing into
    // an attached database would re-attach it with the main database's key), and the new
    // file is attached with the key and filled by SQLCipher's export.
    let conn = Connection::open_in_memory()?;
    // SAFETY: `bytes` outlives `conn` (borrowed for the whole call; `conn` is dropped in it);
    // READONLY: SQLite neither writes nor resizes nor frees the buffer.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_deserialize(
            conn.handle(),
            c"main".as_ptr(),
            bytes.as_mut_ptr(),
            len,
            len,
            rusqlite::ffi::SQLITE_DESERIALIZE_READONLY,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(CipherError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("the snapshot is not a database".into()),
        )));
    }
    quiet(&conn)?;
    conn.execute(
        "ATTACH DATABASE ?1 AS _sync_encrypted KEY ?2",
        rusqlite::params![dest.to_string_lossy(), key.material()],
    )?;
    let exported = conn
        .query_row("SELECT sqlcipher_export('_sync_encrypted')", [], |_| Ok(()))
        .map_err(CipherError::from);
    conn.execute_batch("DETACH DATABASE _sync_encrypted;")?;
    exported?;
    drop(conn);
    Ok(())
}

/// Keeps SQLCipher from logging a failed page check (a wrong key) to stderr: the caller gets
/// [`CipherError::WrongKey`] instead.
#[cfg(feature = "encryption")]
fn quiet(conn: &Connection) -> Result<(), CipherError> {
    conn.query_row("PRAGMA cipher_log_level = NONE", [], |_| Ok(()))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(()),
            e => Err(e),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_hide() {
        let k = EncryptionKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(k, EncryptionKey::raw([0xab; 32]));
        assert_eq!(format!("{k:?}"), "EncryptionKey(..)");
        assert!(EncryptionKey::from_hex("abc").is_err());
        assert!(EncryptionKey::passphrase("").is_err());
        assert_eq!(
            EncryptionKey::from_file_content("secret\n").unwrap(),
            EncryptionKey::passphrase("secret").unwrap()
        );
        assert_eq!(
            EncryptionKey::from_file_content(&format!("{}\n", "0f".repeat(32))).unwrap(),
            EncryptionKey::raw([0x0f; 32])
        );
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn a_plain_image_becomes_an_encrypted_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.db");
        let c = Connection::open(&plain).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (1, 'visible-marker'); PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        drop(c);
        let bytes = std::fs::read(&plain).unwrap();
        let dest = dir.path().join("enc.db");
        let key = EncryptionKey::raw([3; 32]);
        import_plain(&mut bytes.clone(), &dest, &key).unwrap();
        let raw = std::fs::read(&dest).unwrap();
        assert!(!raw.windows(14).any(|w| w == b"visible-marker"));
        let c = open(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY, Some(&key)).unwrap();
        let v: String = c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "visible-marker");
        let err = open(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY, None).unwrap_err();
        assert!(matches!(err, CipherError::WrongKey { .. }), "{err}");
        let err = open(
            &dest,
            OpenFlags::SQLITE_OPEN_READ_ONLY,
            Some(&EncryptionKey::raw([4; 32])),
        )
        .unwrap_err();
        assert!(matches!(err, CipherError::WrongKey { .. }), "{err}");
        let err = open(&plain, OpenFlags::SQLITE_OPEN_READ_ONLY, Some(&key)).unwrap_err();
        assert!(err.to_string().contains("not encrypted"), "{err}");
    }
}
