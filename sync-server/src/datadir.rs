//! [`DataDir`]: the data directory and the key its SQLite files are encrypted with, if any —
//! what every admin command and the server open the catalog and the database files with.

use std::path::{Path, PathBuf};
use sync_core::engine::cipher::EncryptionKey;

/// A data directory and its encryption key (`None`: the files are plain SQLite).
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
    key: Option<EncryptionKey>,
}

impl DataDir {
    /// A data directory whose files are encrypted with `key` (or plain with `None`).
    pub fn new(path: impl Into<PathBuf>, key: Option<EncryptionKey>) -> DataDir {
        DataDir {
            path: path.into(),
            key,
        }
    }

    /// A plain (unencrypted) data directory.
    pub fn plain(path: impl Into<PathBuf>) -> DataDir {
        DataDir::new(path, None)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of its SQLite files.
    pub fn key(&self) -> Option<&EncryptionKey> {
        self.key.as_ref()
    }

    /// The file of database `id` (`dbs/<id>.db`).
    pub fn db_file(&self, id: i64) -> PathBuf {
        self.path
            .join(crate::storage::DBS_DIR)
            .join(format!("{id}.db"))
    }
}

impl From<&Path> for DataDir {
    fn from(path: &Path) -> DataDir {
        DataDir::plain(path)
    }
}
