//! Watched queries and the live sync status, as callback interfaces the app implements (the
//! Kotlin `Flow` and Swift `AsyncSequence` helpers in `foreign/` wrap them).
//!
//! Both wrap [`sync_client::SyncClient::watch`] / [`sync_client::SyncClient::watch_status`]:
//! the first delivery is the current result, then a fresh one after every committed write —
//! local or pulled by a sync — that touched a table the query reads (coalesced: a slow
//! callback sees the latest, not every step). Callbacks run on the client's notifier thread,
//! one at a time; an exception thrown by one is dropped, never taking that thread down.

use crate::database::SyncDatabase;
use crate::error::SyncError;
use crate::types::QueryResult;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use sync_client::Value;

/// Told a watched query's rows (implemented by the app).
#[uniffi::export(foreign)]
pub trait QueryWatcher: Send + Sync {
    /// The query's rows now: first the current ones, then after each change.
    fn on_rows(&self, result: QueryResult);
    /// The query failed when re-run (a schema upgrade dropped a column it reads, say).
    fn on_error(&self, error: SyncError);
}

/// Told the sync status whenever any of it changes (implemented by the app).
#[uniffi::export(foreign)]
pub trait StatusWatcher: Send + Sync {
    /// The status now.
    fn on_status(&self, status: LiveStatus);
}

/// What a sync is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncPhase {
    /// No sync is running.
    Idle,
    /// Sending local transactions to the server.
    Pushing,
    /// Fetching and applying the server's log.
    Pulling,
    /// Downloading a snapshot to re-base the local copy on.
    Bootstrapping,
    /// Bringing the local copy to the server's schema version.
    Upgrading,
}

/// What [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ProgressUnit {
    /// Bytes (an upload in parts, a snapshot download).
    Bytes,
    /// Local transactions pushed.
    Transactions,
    /// Server log entries pulled.
    Entries,
}

/// How far the current phase has come.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct Progress {
    /// Done so far, in `unit`s.
    pub done: i64,
    /// The whole, when known.
    pub total: Option<i64>,
    /// What is counted.
    pub unit: ProgressUnit,
}

/// The live sync status: what `watch_status` delivers and `sync_status` returns. (`status()`
/// has the details: conflicts, rejected transactions, search lag.)
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
#[uniffi::export(Debug)]
pub struct LiveStatus {
    /// What the sync is doing now.
    pub phase: SyncPhase,
    /// How far the phase has come (`None` when idle, or before its first step).
    pub progress: Option<Progress>,
    /// Local transactions waiting to be pushed.
    pub pending_transactions: i64,
    /// Their size in bytes.
    pub pending_bytes: i64,
    /// Transactions in the rejected queue.
    pub rejected: i64,
    /// Conflicts recorded and not cleared.
    pub conflicts: i64,
    /// The last sync's error, cleared by a successful sync.
    pub last_error: Option<String>,
    /// When the last sync succeeded (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// Last log seq integrated.
    pub cursor: i64,
    /// Whether the server answered the last sync attempt (`None`: none since open).
    pub online: Option<bool>,
}

impl From<&sync_client::SyncStatus> for LiveStatus {
    fn from(s: &sync_client::SyncStatus) -> Self {
        LiveStatus {
            phase: match s.phase {
                sync_client::SyncPhase::Idle => SyncPhase::Idle,
                sync_client::SyncPhase::Pushing => SyncPhase::Pushing,
                sync_client::SyncPhase::Pulling => SyncPhase::Pulling,
                sync_client::SyncPhase::Bootstrapping => SyncPhase::Bootstrapping,
                sync_client::SyncPhase::Upgrading => SyncPhase::Upgrading,
            },
            progress: s.progress.map(|p| Progress {
                done: p.done as i64,
                total: p.total.map(|t| t as i64),
                unit: match p.unit {
                    sync_client::ProgressUnit::Bytes => ProgressUnit::Bytes,
                    sync_client::ProgressUnit::Transactions => ProgressUnit::Transactions,
                    sync_client::ProgressUnit::Entries => ProgressUnit::Entries,
                },
            }),
            pending_transactions: s.pending_transactions as i64,
            pending_bytes: s.pending_bytes as i64,
            rejected: s.rejected as i64,
            conflicts: s.conflicts as i64,
            last_error: s.last_error.clone(),
            last_sync_ms: s.last_sync_ms,
            cursor: s.cursor,
            online: s.online,
        }
    }
}

/// A live watch: deliveries stop on `cancel()`, when the database shuts down, or when the
/// object is freed.
#[derive(uniffi::Object)]
pub struct Subscription {
    inner: Mutex<Option<sync_client::Subscription>>,
}

impl Subscription {
    fn new(inner: sync_client::Subscription) -> Arc<Self> {
        Arc::new(Subscription {
            inner: Mutex::new(Some(inner)),
        })
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops the deliveries (one already under way finishes). Idempotent.
    pub fn cancel(&self) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = inner {
            s.cancel();
        }
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// Watches a query: `watcher.on_rows` gets its rows soon after this returns, then fresh
    /// rows after every committed local or remote write that touched a table it reads. A query
    /// that does not prepare, would write, or has the wrong number of parameters fails here.
    pub fn watch(
        &self,
        sql: String,
        params: Vec<Value>,
        watcher: Arc<dyn QueryWatcher>,
    ) -> Result<Arc<Subscription>, SyncError> {
        crate::call::guard(|| {
            let params = params.into_iter().map(Into::into).collect();
            let sub = self.client()?.watch(&sql, params, move |rows| {
                let _ = catch_unwind(AssertUnwindSafe(|| match rows {
                    Ok(rows) => watcher.on_rows(QueryResult {
                        columns: rows.columns,
                        rows: rows
                            .rows
                            .into_iter()
                            .map(|row| row.into_iter().map(Value::from).collect())
                            .collect(),
                    }),
                    Err(e) => watcher.on_error(e.into()),
                }));
            })?;
            Ok(Subscription::new(sub))
        })
    }

    /// Subscribes to the live sync status: `watcher.on_status` gets it soon after this
    /// returns, then whenever any of it changes (a sync's phase and progress, pending work
    /// after a write or a push, the rejected and conflict counts, the last error).
    pub fn watch_status(
        &self,
        watcher: Arc<dyn StatusWatcher>,
    ) -> Result<Arc<Subscription>, SyncError> {
        crate::call::guard(|| {
            let sub = self.client()?.watch_status(move |status| {
                let status = LiveStatus::from(status);
                let _ = catch_unwind(AssertUnwindSafe(|| watcher.on_status(status)));
            })?;
            Ok(Subscription::new(sub))
        })
    }

    /// The live sync status now (what `watch_status` delivers).
    pub fn sync_status(&self) -> Result<LiveStatus, SyncError> {
        crate::call::guard(|| Ok(LiveStatus::from(&self.client()?.sync_status()?)))
    }
}
