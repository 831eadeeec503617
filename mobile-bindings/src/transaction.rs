//! `transaction(body)`: reads and writes in one local transaction, captured as one.
//!
//! The body is the app's callback; it runs on the writer's thread, inside
//! [`sync_client::SyncClient::write`], with a [`Transaction`] whose `execute` and `query` use
//! the writer's connection — so a query sees the transaction's own uncommitted writes. When the
//! body returns, the transaction commits (and is captured for sync); when it throws, it rolls
//! back and the exception comes out of `transaction()`. The object is dead once the body has
//! returned: any later use is `InvalidUse`, never a use of a connection that moved on.

use crate::call::{BodyScope, guard, panic_message};
use crate::database::SyncDatabase;
use crate::error::SyncError;
use crate::sql::{run_query, run_statements};
use crate::types::{QueryResult, Statement};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use sync_client::Value;
use sync_client::rusqlite::Connection;

/// The body of a `transaction()`: implemented by the app (Kotlin: the `transaction { tx -> }`
/// helper wraps a lambda).
#[uniffi::export(foreign)]
pub trait TransactionBody: Send + Sync {
    /// Runs the transaction's statements through `tx`. Returning commits; throwing rolls back.
    fn run(&self, tx: Arc<Transaction>) -> Result<(), SyncError>;
}

/// The writer's connection, lent for the length of one body.
struct Lent(*const Connection);

// SAFETY: the pointer is only dereferenced while `Transaction::conn` is locked and holds it;
// it is set before the body starts and taken (under the same lock, so after any call in
// flight) before `write`'s closure returns, while the connection it points to is alive and
// unused by its own thread, which is inside the body. A `Connection` is `Send`; the lock makes
// the uses one at a time.
unsafe impl Send for Lent {}

/// Statements and queries inside one `transaction()`. Valid only while its body runs.
#[derive(uniffi::Object)]
pub struct Transaction {
    conn: Mutex<Option<Lent>>,
}

impl Transaction {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> sync_client::Result<T>,
    ) -> Result<T, SyncError> {
        let lent = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Lent(conn)) = lent.as_ref() else {
            return Err(SyncError::InvalidUse {
                reason: "this transaction has ended (its body returned); run further \
                         statements through the database or a new transaction()"
                    .into(),
            });
        };
        // SAFETY: see `Lent`: set, and alive, while the lock holds `Some`.
        let conn = unsafe { &**conn };
        Ok(f(conn)?)
    }
}

#[uniffi::export]
impl Transaction {
    /// Runs one statement in the transaction; returns rows changed.
    pub fn execute(&self, sql: String, params: Vec<Value>) -> Result<i64, SyncError> {
        guard(|| self.with(|c| run_statements(c, &[Statement { sql, params }])))
    }

    /// Runs statements in the transaction, in order; returns rows changed.
    pub fn execute_batch(&self, statements: Vec<Statement>) -> Result<i64, SyncError> {
        guard(|| self.with(|c| run_statements(c, &statements)))
    }

    /// Runs a query in the transaction: it sees the transaction's own writes.
    pub fn query(&self, sql: String, params: Vec<Value>) -> Result<QueryResult, SyncError> {
        guard(|| self.with(|c| run_query(c, &sql, &params)))
    }
}

impl SyncDatabase {
    /// Runs `body` in one local write transaction (see the module docs).
    pub(crate) fn run_transaction(&self, body: Arc<dyn TransactionBody>) -> Result<(), SyncError> {
        let client = self.client()?;
        let failure: Arc<Mutex<Option<SyncError>>> = Arc::default();
        let slot = Arc::clone(&failure);
        let written = client.write(move |conn| {
            let tx = Arc::new(Transaction {
                conn: Mutex::new(Some(Lent(conn as *const Connection))),
            });
            let outcome = {
                let _scope = BodyScope::enter();
                catch_unwind(AssertUnwindSafe(|| body.run(Arc::clone(&tx))))
            };
            // Waits for a call still in flight on another thread, then ends the lease.
            tx.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
            let error = match outcome {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(panic) => SyncError::Internal {
                    reason: panic_message(&*panic),
                },
            };
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
            Err(sync_client::Error::new(
                sync_client::ErrorKind::Internal,
                "the transaction body failed; rolled back",
            ))
        });
        match written {
            Ok(()) => Ok(()),
            Err(e) => Err(failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| e.into())),
        }
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// Runs `body` in one local transaction: its `execute` and `query` calls share it, queries
    /// see its writes, and it is captured and synced as one. Returning from the body commits;
    /// throwing rolls back and rethrows (an exception that is not a `SyncError` arrives as
    /// `SyncError.Callback`; the Kotlin helper rethrows the original). Inside the body, use
    /// only the transaction object: a call on the database there is `InvalidUse`.
    pub fn transaction(&self, body: Arc<dyn TransactionBody>) -> Result<(), SyncError> {
        guard(|| self.run_transaction(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::tests::local_config;

    struct Body<F>(F);
    impl<F: Fn(Arc<Transaction>) -> Result<(), SyncError> + Send + Sync> TransactionBody for Body<F> {
        fn run(&self, tx: Arc<Transaction>) -> Result<(), SyncError> {
            (self.0)(tx)
        }
    }

    fn count(db: &SyncDatabase) -> Value {
        db.query("SELECT count(*) FROM t".into(), vec![])
            .unwrap()
            .rows[0][0]
            .clone()
    }

    #[test]
    fn a_body_reads_its_own_writes_commits_or_rolls_back_whole_and_its_object_dies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db").to_string_lossy().into_owned();
        let db = SyncDatabase::open(path, local_config()).unwrap();
        db.execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)".into(),
            vec![],
        )
        .unwrap();
        let kept: Arc<Mutex<Option<Arc<Transaction>>>> = Arc::default();
        let keep = Arc::clone(&kept);
        db.transaction(Arc::new(Body(move |tx: Arc<Transaction>| {
            tx.execute("INSERT INTO t VALUES (1, 'a')".into(), vec![])?;
            let seen = tx.query("SELECT count(*) FROM t".into(), vec![])?;
            assert_eq!(seen.rows, vec![vec![Value::Integer(1)]]);
            *keep.lock().unwrap() = Some(tx);
            Ok(())
        })))
        .unwrap();
        assert_eq!(count(&db), Value::Integer(1));
        let tx = kept.lock().unwrap().take().unwrap();
        assert!(matches!(
            tx.query("SELECT 1".into(), vec![]),
            Err(SyncError::InvalidUse { .. })
        ));
        // A failing statement inside: nothing of the body stays, its error comes out.
        let err = db
            .transaction(Arc::new(Body(|tx: Arc<Transaction>| {
                tx.execute("INSERT INTO t VALUES (2, 'b')".into(), vec![])?;
                tx.execute("INSERT INTO t VALUES (1, 'duplicate')".into(), vec![])?;
                Ok(())
            })))
            .unwrap_err();
        assert!(matches!(err, SyncError::InvalidSql { .. }), "{err:?}");
        assert_eq!(count(&db), Value::Integer(1));
        // The database itself refuses calls from inside the body instead of deadlocking.
        let inner = Arc::clone(&db);
        let err = db
            .transaction(Arc::new(Body(move |_tx: Arc<Transaction>| {
                inner.execute("INSERT INTO t VALUES (3, 'c')".into(), vec![])?;
                Ok(())
            })))
            .unwrap_err();
        assert!(matches!(err, SyncError::InvalidUse { .. }), "{err:?}");
        assert_eq!(count(&db), Value::Integer(1));
        db.shutdown().unwrap();
    }
}
