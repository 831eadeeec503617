//! The writer: one thread that owns the only read-write connection to the database. Every
//! write, every session and every sync step that changes the database runs here, one job at a
//! time, each in a short transaction; nothing here ever waits on the network.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::thread::JoinHandle;
use sync_core::engine::ffi::hooks::TableWrites;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Told, after each job that left no transaction open, the tables of `main` it wrote and
/// whether it changed the schema (an upgrade).
pub(crate) type OnCommit = Box<dyn Fn(Vec<String>, bool) + Send>;

/// Handle to the writer thread.
pub(crate) struct Writer {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Moves `conn` to a new thread that runs jobs until [`Writer::close`]; `on_commit` hears
    /// of every committed write (whatever job made it: a local write, a sync, a redo).
    pub(crate) fn start(mut conn: Connection, on_commit: OnCommit) -> Result<Writer> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sync-writer".into())
            .spawn(move || {
                // SAFETY: dropped below, before the connection.
                let writes = unsafe { TableWrites::install(&conn) };
                let schema = |c: &Connection| {
                    c.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
                        .ok()
                };
                let mut schema_seen = schema(&conn);
                for job in rx {
                    let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                    // A job that panicked mid-transaction must not leave it open for the next.
                    if outcome.is_err() && !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    // Told only once committed: a job may leave its transaction open for the
                    // next (none does today), and then the tables wait for its commit.
                    if conn.is_autocommit() {
                        let tables = writes.take();
                        let now = schema(&conn);
                        let reshaped = now != schema_seen;
                        schema_seen = now;
                        if !tables.is_empty() || reshaped {
                            on_commit(tables, reshaped);
                        }
                    }
                }
                drop(writes);
                drop(conn);
            })?;
        Ok(Writer {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` on the writer thread and waits for its result.
    pub(crate) fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let (reply_tx, reply_rx) = sync_channel::<T>(1);
        self.submit(f, move |out| {
            let _ = reply_tx.send(out);
        })?;
        reply_rx.recv().map_err(|_| panicked())
    }

    /// Queues `f` on the writer thread; `reply` gets its result there (and is dropped
    /// unheard if `f` panics).
    pub(crate) fn submit<T, F>(&self, f: F, reply: impl FnOnce(T) + Send + 'static) -> Result<()>
    where
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let job: Job = Box::new(move |conn| reply(f(conn)));
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(jobs) = jobs.as_ref() else {
            return Err(closed());
        };
        jobs.send(job).map_err(|_| closed())
    }

    /// Stops accepting jobs, lets queued ones finish, and joins the thread (which closes the
    /// connection). Idempotent.
    pub(crate) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a caller hears when its job panicked.
pub(crate) fn panicked() -> Error {
    Error::new(
        ErrorKind::Internal,
        "the write panicked; its transaction was rolled back",
    )
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the database was closed")
}
