//! The awaitable calls: Kotlin `suspend`, Swift `async`, Python coroutines.
//!
//! Each is the blocking call of the same name without `_async`, run on a thread of its own
//! ([`crate::call::off_thread`]): no async runtime is needed on either side, and the caller's
//! executor thread never waits on SQLite or the network. Cancelling the caller (dropping the
//! future) does not stop the work: a write commits or rolls back whole, a sync runs to its end.

use crate::call::off_thread;
use crate::database::SyncDatabase;
use crate::error::SyncError;
use crate::transaction::TransactionBody;
use crate::types::{DatabaseConfig, QueryResult, Statement, SyncReport, Verification};
use std::sync::Arc;
use sync_client::Value;

#[uniffi::export]
impl SyncDatabase {
    /// [`SyncDatabase::open`], awaitable (opening a new copy downloads it first).
    #[uniffi::constructor]
    pub async fn open_async(
        path: String,
        config: DatabaseConfig,
    ) -> Result<Arc<SyncDatabase>, SyncError> {
        off_thread(move || SyncDatabase::open(path, config)).await
    }

    /// [`SyncDatabase::execute`], awaitable.
    pub async fn execute_async(
        self: Arc<Self>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<i64, SyncError> {
        off_thread(move || self.execute(sql, params)).await
    }

    /// [`SyncDatabase::execute_batch`], awaitable.
    pub async fn execute_batch_async(
        self: Arc<Self>,
        statements: Vec<Statement>,
    ) -> Result<i64, SyncError> {
        off_thread(move || self.execute_batch(statements)).await
    }

    /// [`SyncDatabase::transaction`], awaitable; the body itself is not (it runs on the
    /// writer's thread and should be quick).
    pub async fn transaction_async(
        self: Arc<Self>,
        body: Arc<dyn TransactionBody>,
    ) -> Result<(), SyncError> {
        off_thread(move || self.transaction(body)).await
    }

    /// [`SyncDatabase::query`], awaitable.
    pub async fn query_async(
        self: Arc<Self>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<QueryResult, SyncError> {
        off_thread(move || self.query(sql, params)).await
    }

    /// [`SyncDatabase::sync_now`], awaitable.
    pub async fn sync_now_async(self: Arc<Self>) -> Result<SyncReport, SyncError> {
        off_thread(move || self.sync_now()).await
    }

    /// [`SyncDatabase::upgrade`], awaitable.
    pub async fn upgrade_async(self: Arc<Self>) -> Result<SyncReport, SyncError> {
        off_thread(move || self.upgrade()).await
    }

    /// [`SyncDatabase::verify`], awaitable.
    pub async fn verify_async(self: Arc<Self>) -> Result<Verification, SyncError> {
        off_thread(move || self.verify()).await
    }
}
