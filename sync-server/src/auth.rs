//! Bearer-token checks against the catalog, with a cache that can never be stale.
//!
//! The server keeps one read connection to the catalog and remembers recent answers to
//! "token T on database D". Before using a remembered answer it asks SQLite for the catalog's
//! `PRAGMA data_version`, which changes whenever another connection (the admin CLI, in another
//! process) commits. Any change empties the cache, so a revoked token or a removed grant is
//! refused on the very next request, while the common case costs one hash and one cheap pragma.
//! The server never writes the catalog while serving.

use crate::catalog::{self, Authorization, CatalogError};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Remembered answers are dropped wholesale beyond this many (they are cheap to recompute).
const MAX_CACHED: usize = 16_384;

/// The token checker.
pub struct Auth {
    inner: Mutex<Inner>,
}

struct Inner {
    conn: Connection,
    data_version: i64,
    cache: HashMap<([u8; 32], String), Authorization>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    /// Opens the catalog of `data_dir` (creating it if needed).
    pub fn open(data_dir: &Path) -> Result<Auth, CatalogError> {
        Auth::open_keyed(data_dir, None)
    }

    /// [`Auth::open`] with the data directory's encryption key.
    pub fn open_keyed(
        data_dir: &Path,
        key: Option<&sync_core::engine::cipher::EncryptionKey>,
    ) -> Result<Auth, CatalogError> {
        let conn = catalog::open_keyed(data_dir, key)?;
        Ok(Auth {
            inner: Mutex::new(Inner {
                conn,
                data_version: -1,
                cache: HashMap::new(),
            }),
        })
    }

    /// Checkpoints and truncates the catalog's WAL (at shutdown, so that the data directory
    /// holds no WAL content once the server has stopped). Blocks.
    pub fn checkpoint(&self) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = inner.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "catalog checkpoint failed");
        }
    }

    /// The internal id of database `name`, if there is one (for JWTs, whose grants name
    /// databases). Blocks (SQLite).
    pub fn database_id(&self, name: &str) -> Result<Option<i64>, CatalogError> {
        use rusqlite::OptionalExtension;
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .conn
            .prepare_cached("SELECT id FROM databases WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// May `token` use `database`? Blocks (SQLite).
    pub fn authorize(&self, token: &str, database: &str) -> Result<Authorization, CatalogError> {
        let hash = catalog::token_hash(token);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let version: i64 = inner
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if version != inner.data_version {
            inner.cache.clear();
            inner.data_version = version;
        }
        let key = (hash, database.to_string());
        if let Some(found) = inner.cache.get(&key) {
            return Ok(found.clone());
        }
        let found = catalog::authorize(&inner.conn, &hash, database)?;
        if inner.cache.len() >= MAX_CACHED {
            inner.cache.clear();
        }
        inner.cache.insert(key, found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_by_another_connection_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let admin = catalog::open(dir.path()).unwrap();
        catalog::add_user(&admin, "u").unwrap();
        catalog::create_database(&admin, "d", "u").unwrap();
        let t = catalog::issue_token(&admin, "u", "dev").unwrap();
        let auth = Auth::open(dir.path()).unwrap();
        assert!(matches!(
            auth.authorize(&t.token, "d").unwrap(),
            Authorization::Granted(_)
        ));
        assert!(matches!(
            auth.authorize(&t.token, "d").unwrap(),
            Authorization::Granted(_)
        ));
        catalog::revoke_tokens(
            &admin,
            &catalog::TokenSelector::TokenOrPrefix(t.token.clone()),
        )
        .unwrap();
        assert_eq!(
            auth.authorize(&t.token, "d").unwrap(),
            Authorization::BadToken
        );
    }
}
