//! [`DataDir`]: the data directory, the key its SQLite files are encrypted with, if any, and
//! the PostgreSQL store it caches, if any — what every admin command and the server open the
//! catalog and the database files with.
//!
//! Without a store the data directory *is* the store. With one (`--store postgres://…`) it
//! holds only copies: catalog writes go through [`DataDir::catalog_write`], which appends
//! them to the store before committing the copy, and reads first catch the copy up.

use crate::catalog::{self, CatalogError};
use crate::store::{CATALOG_FILE, PgStore, Replica};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sync_core::engine::cipher::EncryptionKey;

/// A data directory and its encryption key (`None`: the files are plain SQLite).
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
    key: Option<EncryptionKey>,
    store: Option<Arc<PgStore>>,
}

impl DataDir {
    /// A data directory whose files are encrypted with `key` (or plain with `None`).
    pub fn new(path: impl Into<PathBuf>, key: Option<EncryptionKey>) -> DataDir {
        DataDir {
            path: path.into(),
            key,
            store: None,
        }
    }

    /// A plain (unencrypted) data directory.
    pub fn plain(path: impl Into<PathBuf>) -> DataDir {
        DataDir::new(path, None)
    }

    /// The same directory as the cache of `store`.
    pub fn with_store(mut self, store: Arc<PgStore>) -> DataDir {
        self.store = Some(store);
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of its SQLite files.
    pub fn key(&self) -> Option<&EncryptionKey> {
        self.key.as_ref()
    }

    /// The PostgreSQL store it caches, if any.
    pub fn store(&self) -> Option<&Arc<PgStore>> {
        self.store.as_ref()
    }

    /// The file of database `id` (`dbs/<id>.db`).
    pub fn db_file(&self, id: i64) -> PathBuf {
        self.path
            .join(crate::storage::DBS_DIR)
            .join(format!("{id}.db"))
    }

    /// The catalog's replica in the store, if there is a store.
    pub fn catalog_replica(&self) -> Option<Replica> {
        self.store.as_ref().map(|s| {
            Replica::new(
                s.clone(),
                CATALOG_FILE,
                false,
                self.path.join(crate::storage::IMAGES_DIR),
            )
        })
    }

    /// Opens the catalog for an admin command: with a store, the local copy (created if
    /// needed, the data directory too: it is only a cache) brought to the store's head;
    /// without, the directory's catalog, which must exist.
    pub fn open_catalog(&self) -> Result<Connection, CatalogError> {
        match self.catalog_replica() {
            Some(r) => open_replicated(&self.path, &r),
            None => catalog::open_existing_keyed(&self.path, self.key()),
        }
    }

    /// [`DataDir::open_catalog`] creating a missing data directory (for `serve`).
    pub fn open_or_create_catalog(&self) -> Result<Connection, CatalogError> {
        match self.catalog_replica() {
            Some(r) => open_replicated(&self.path, &r),
            None => catalog::open_keyed(&self.path, self.key()),
        }
    }

    /// Runs the catalog write `f` on `conn` (from [`DataDir::open_catalog`]): with a store,
    /// appended to it before the copy commits, and run again if another machine wrote first;
    /// without, simply run.
    pub fn catalog_write<T>(
        &self,
        conn: &mut Connection,
        f: impl FnMut(&Connection) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut f = f;
        match self.catalog_replica() {
            Some(r) => r.write(conn, f)?,
            None => f(conn),
        }
    }
}

/// Opens the catalog copy in `dir` and brings it to the store's head (the first machine to
/// use an empty store installs the catalog there).
fn open_replicated(dir: &Path, replica: &Replica) -> Result<Connection, CatalogError> {
    if replica.is_new()? {
        let file = dir.join(catalog::CATALOG_FILE);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = file.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
    let mut conn = catalog::open_keyed(dir, None)?;
    replica.reshape(&mut conn, |_| ())?;
    Ok(conn)
}

impl From<&Path> for DataDir {
    fn from(path: &Path) -> DataDir {
        DataDir::plain(path)
    }
}
