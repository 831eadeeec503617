//! [`SyncDatabase`]: the object apps hold.

use crate::call::{guard, not_in_body};
use crate::error::SyncError;
use crate::sql::{run_query, run_statements};
use crate::types::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_client::{ClientConfig, FtsTable, RemoteConfig, RowidStrategy, SyncClient, Value};

/// Told which tables changed after remote changes arrived, so a UI can refresh. Implemented
/// in Swift/Kotlin/Python. Called on a background thread.
#[uniffi::export(foreign)]
pub trait ChangeListener: Send + Sync {
    /// `tables` changed.
    fn on_change(&self, tables: Vec<String>);
}

/// A local SQLite database that syncs.
#[derive(uniffi::Object)]
pub struct SyncDatabase {
    client: Mutex<Option<SyncClient>>,
}

impl SyncDatabase {
    /// The client, unless the database was shut down or this is a call from inside a
    /// transaction body (which would wait for itself).
    pub(crate) fn client(&self) -> Result<SyncClient, SyncError> {
        not_in_body()?;
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(SyncError::Closed)
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// Opens the database at `path`. With server settings and no file yet, first makes a
    /// local copy of the server's database (needs the network once); with `adopt_existing`
    /// and a plain SQLite file there, makes that file a copy keeping its rows (needs the
    /// network once); afterwards it opens offline.
    #[uniffi::constructor]
    pub fn open(path: String, config: DatabaseConfig) -> Result<Arc<Self>, SyncError> {
        SyncDatabase::open_with(path, config, None)
    }
}

impl SyncDatabase {
    /// [`SyncDatabase::open`], with tokens from `credentials` when given
    /// (`open_with_credentials`): then `token` stays unset.
    pub(crate) fn open_with(
        path: String,
        config: DatabaseConfig,
        credentials: Option<Arc<dyn sync_client::Credentials>>,
    ) -> Result<Arc<Self>, SyncError> {
        guard(|| {
            let token = match (&config.token, &credentials) {
                (Some(t), None) => Some(t.clone()),
                (None, Some(_)) => Some(String::new()),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(SyncError::Config {
                        reason: "give a token or a credentials provider, not both".into(),
                    });
                }
            };
            let remote = match (&config.server_url, token, &config.database) {
                (Some(url), Some(token), Some(database)) => Some(RemoteConfig {
                    url: url.clone(),
                    token,
                    database: database.clone(),
                }),
                (None, _, None) if credentials.is_some() => None,
                (None, None, None) => None,
                _ => {
                    return Err(SyncError::Config {
                        reason: "server_url, token and database go together".into(),
                    });
                }
            };
            let client_config = ClientConfig {
                remote: remote.clone(),
                rowids: match config.rowids.unwrap_or(RowidMode::Random) {
                    RowidMode::Random => RowidStrategy::Random,
                    RowidMode::Ranges {
                        lease_size,
                        refill_below,
                    } => RowidStrategy::Ranges {
                        lease_size,
                        refill_below,
                    },
                },
                fts: config
                    .fts
                    .iter()
                    .map(|f| FtsTable {
                        table: f.table.clone(),
                        columns: f.columns.clone(),
                    })
                    .collect(),
                sync_interval: Duration::from_millis(config.sync_interval_ms.max(100) as u64),
                credentials,
                encryption_key: config
                    .encryption_key
                    .as_deref()
                    .map(sync_client::EncryptionKey::from_file_content)
                    .transpose()
                    .map_err(sync_client::Error::from)?,
                ..ClientConfig::default()
            };
            let client = match remote {
                Some(remote) if !Path::new(&path).exists() => {
                    SyncClient::init(&path, remote, client_config)?
                }
                Some(remote)
                    if config.adopt_existing
                        && sync_client::file_kind(Path::new(&path))?
                            == sync_client::FileKind::Plain =>
                {
                    SyncClient::adopt(&path, remote, client_config)?
                }
                _ => SyncClient::open(&path, client_config)?,
            };
            if config.background_sync {
                client.start_background()?;
            }
            Ok(Arc::new(SyncDatabase {
                client: Mutex::new(Some(client)),
            }))
        })
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// Runs one write statement as its own captured transaction; returns rows changed.
    pub fn execute(&self, sql: String, params: Vec<Value>) -> Result<i64, SyncError> {
        self.execute_batch(vec![Statement { sql, params }])
    }

    /// Runs statements in one captured transaction (all or nothing); returns rows changed.
    pub fn execute_batch(&self, statements: Vec<Statement>) -> Result<i64, SyncError> {
        guard(|| {
            Ok(self
                .client()?
                .write(move |conn| run_statements(conn, &statements))?)
        })
    }

    /// Runs a query on a read-only connection; writes are refused by SQLite. (Inside
    /// `transaction()`, the transaction object's `query` sees the transaction's own writes.)
    pub fn query(&self, sql: String, params: Vec<Value>) -> Result<QueryResult, SyncError> {
        guard(|| Ok(self.client()?.read(|conn| run_query(conn, &sql, &params))?))
    }

    /// Syncs now: pushes local changes, pulls and applies remote ones.
    pub fn sync_now(&self) -> Result<SyncReport, SyncError> {
        guard(|| Ok(self.client()?.sync_now()?.into()))
    }

    /// Brings the local copy to the server's schema version now (the migration scripts the
    /// server serves, run in place; pending transactions kept, or rejected with the reason
    /// when the new schema cannot take them), then syncs. Every sync does the same when it
    /// learns of a newer version; `upgraded_to` in the report says whether it happened.
    pub fn upgrade(&self) -> Result<SyncReport, SyncError> {
        guard(|| Ok(self.client()?.upgrade()?.into()))
    }

    /// Starts background sync (interval, after local writes, on server events).
    pub fn start_background_sync(&self) -> Result<(), SyncError> {
        guard(|| Ok(self.client()?.start_background()?))
    }

    /// Compares the local synced state with the server's at the local cursor (lineage, chain
    /// value, content checksum); changes nothing. A difference is repaired by the next sync.
    pub fn verify(&self) -> Result<Verification, SyncError> {
        guard(|| Ok(self.client()?.verify()?.into()))
    }

    /// Where the database stands.
    pub fn status(&self) -> Result<SyncStatus, SyncError> {
        guard(|| {
            let s = self.client()?.status()?;
            Ok(SyncStatus {
                cursor: s.cursor,
                pending_changesets: s.pending_changesets as i64,
                pending_bytes: s.pending_bytes as i64,
                last_sync_ms: s.last_sync_ms,
                last_error: s.last_error,
                conflicts: s
                    .local_conflicts
                    .into_iter()
                    .map(|c| ConflictInfo {
                        id: c.id,
                        kind: c.kind.as_str().to_string(),
                        table: c.table,
                        pk: c.pk,
                        detail: c.detail,
                        at_ms: c.at_ms,
                    })
                    .collect(),
                server_conflicts: s
                    .server_conflicts
                    .into_iter()
                    .map(|c| ServerConflictInfo {
                        id: c.id,
                        kind: c.conflict.kind.as_str().to_string(),
                        resolution: c.conflict.resolution.as_str().to_string(),
                        table: c.conflict.table,
                        pk: c.conflict.pk,
                        current: c.conflict.current,
                        batch_id: c.batch_id,
                        seq: c.seq,
                        at_ms: c.at_ms,
                    })
                    .collect(),
                rejected: s.rejected.iter().map(Into::into).collect(),
                fts_lag: s.fts_lag as i64,
                rowids_remaining: s.rowids_remaining,
                repairs: s.repairs as i64,
                checksum: s.checksum,
            })
        })
    }

    /// Forgets the conflicts listed in `seen` — a `status()` the app has shown — local and
    /// server ones, so later statuses stop listing them; conflicts recorded after `seen` was
    /// taken stay. Returns how many were removed.
    pub fn clear_conflicts(&self, seen: SyncStatus) -> Result<i64, SyncError> {
        guard(|| {
            let local = seen.conflicts.iter().map(|c| c.id).max();
            let server = seen.server_conflicts.iter().map(|c| c.id).max();
            Ok(self.client()?.clear_conflicts_through(local, server)? as i64)
        })
    }

    /// Full-text search, best matches first, at most `limit` hits. Indexes pending rows first.
    pub fn search(&self, query: String, limit: i32) -> Result<Vec<SearchResult>, SyncError> {
        guard(|| {
            let client = self.client()?;
            client.index_now()?;
            Ok(client
                .search(&query, limit.max(0) as usize)?
                .into_iter()
                .map(|h| SearchResult {
                    table: h.table,
                    id: h.id,
                    rank: h.rank,
                    columns: h
                        .columns
                        .into_iter()
                        .map(|(name, value)| NamedValue { name, value })
                        .collect(),
                })
                .collect())
        })
    }

    /// A new id for an `INTEGER PRIMARY KEY` (also `sync_id()` in SQL).
    pub fn new_id(&self) -> Result<i64, SyncError> {
        guard(|| Ok(self.client()?.new_id()?))
    }

    /// Sets (or clears) the listener told about remote changes.
    pub fn set_change_listener(
        &self,
        listener: Option<Arc<dyn ChangeListener>>,
    ) -> Result<(), SyncError> {
        guard(|| {
            let client = self.client()?;
            client.set_change_listener(listener.map(|l| {
                let f: sync_client::ChangeListener = Arc::new(move |tables: &[String]| {
                    // A failing foreign callback must not take the sync thread down.
                    let _ = catch_unwind(AssertUnwindSafe(|| l.on_change(tables.to_vec())));
                });
                f
            }));
            Ok(())
        })
    }

    /// Stops background work and closes the database; later calls fail with `Closed`. (Not
    /// named `close`: Kotlin objects already have `close()`, which frees the handle.)
    /// `InvalidUse` from inside a transaction body, which runs on the writer being shut down.
    pub fn shutdown(&self) -> Result<(), SyncError> {
        not_in_body()?;
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(c) = client {
            let _ = catch_unwind(AssertUnwindSafe(|| c.close()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration with no server.
    pub(crate) fn local_config() -> DatabaseConfig {
        DatabaseConfig {
            server_url: None,
            token: None,
            database: None,
            rowids: None,
            fts: vec![],
            background_sync: false,
            sync_interval_ms: 30_000,
            adopt_existing: false,
            encryption_key: None,
        }
    }

    #[test]
    fn every_call_after_shutdown_is_closed_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db").to_string_lossy().into_owned();
        let db = SyncDatabase::open(path, local_config()).unwrap();
        db.shutdown().unwrap();
        db.shutdown().unwrap();
        assert!(matches!(
            db.query("SELECT 1".into(), vec![]),
            Err(SyncError::Closed)
        ));
        assert!(matches!(db.sync_now(), Err(SyncError::Closed)));
        assert!(matches!(db.status(), Err(SyncError::Closed)));
        assert!(matches!(db.new_id(), Err(SyncError::Closed)));
    }
}
