//! Bearer-token checks against the catalog, with a cache that can never be stale.
//!
//! The server keeps one read connection to the catalog and remembers recent answers to
//! "token T on database D". Before using a remembered answer it asks SQLite for the catalog's
//! `PRAGMA data_version`, which changes whenever another connection (the admin CLI, in another
//! process) commits. Any change empties the cache, so a revoked token or a removed grant is
//! refused on the very next request, while the common case costs one hash and one cheap pragma.
//! The server never writes the catalog while serving.

use crate::catalog::{self, Authorization, CatalogError};
use crate::datadir::DataDir;
use crate::store::Replica;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// With a PostgreSQL store, the catalog copy is caught up at least this often even when no
/// notification came (one may be lost while the LISTEN connection reconnects).
const MAX_STALENESS: Duration = Duration::from_secs(1);

/// Remembered answers are dropped wholesale beyond this many (they are cheap to recompute).
const MAX_CACHED: usize = 16_384;

/// The token checker.
pub struct Auth {
    inner: Mutex<Inner>,
    /// With a PostgreSQL store: how the catalog copy follows it.
    sync: Option<CatalogSync>,
}

/// The catalog copy's link to the store: caught up when another node announced a catalog
/// write, when [`MAX_STALENESS`] passed, and before refusing a token (it may be newer than the
/// copy).
struct CatalogSync {
    replica: Replica,
    writer: Mutex<Connection>,
    stale: AtomicBool,
    last: Mutex<Instant>,
}

impl CatalogSync {
    fn refresh(&self, force: bool) -> Result<bool, CatalogError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due =
            force || self.stale.swap(false, Ordering::AcqRel) || last.elapsed() >= MAX_STALENESS;
        if !due {
            return Ok(false);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.replica.catch_up(&mut writer)?;
        *last = Instant::now();
        Ok(true)
    }
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
            sync: None,
        })
    }

    /// Opens the catalog of `dir`; with a store, its copy, caught up from the store.
    pub fn open_dir(dir: &DataDir) -> Result<Auth, CatalogError> {
        let Some(replica) = dir.catalog_replica() else {
            return Auth::open_keyed(dir.path(), dir.key());
        };
        let writer = dir.open_or_create_catalog()?;
        let mut auth = Auth::open_keyed(dir.path(), None)?;
        auth.sync = Some(CatalogSync {
            replica,
            writer: Mutex::new(writer),
            stale: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
        });
        Ok(auth)
    }

    /// Another node changed the catalog (or announcements may have been missed): catch the
    /// copy up before the next check.
    pub fn mark_stale(&self) {
        if let Some(s) = &self.sync {
            s.stale.store(true, Ordering::Release);
        }
    }

    fn refresh(&self, force: bool) -> Result<bool, CatalogError> {
        match &self.sync {
            Some(s) => s.refresh(force),
            None => Ok(false),
        }
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
        self.refresh(false)?;
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .conn
            .prepare_cached("SELECT id FROM databases WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// May `token` use `database`? Blocks (SQLite).
    pub fn authorize(&self, token: &str, database: &str) -> Result<Authorization, CatalogError> {
        let refreshed = self.refresh(false)?;
        let found = self.authorize_here(token, database)?;
        // A token or grant made on another machine a moment ago: look again at the newest.
        if !refreshed && !matches!(found, Authorization::Granted(_)) && self.refresh(true)? {
            return self.authorize_here(token, database);
        }
        Ok(found)
    }

    fn authorize_here(&self, token: &str, database: &str) -> Result<Authorization, CatalogError> {
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
