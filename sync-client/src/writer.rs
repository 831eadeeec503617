//! The writer: one thread that owns the only read-write connection to the database. Every
//! write, every session and every sync step that changes the database runs here, one job at a
//! time, each in a short transaction; nothing here ever waits on the network.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread.
pub(crate) struct Writer {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Moves `conn` to a new thread that runs jobs until [`Writer::close`].
    pub(crate) fn start(mut conn: Connection) -> Result<Writer> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sync-writer".into())
            .spawn(move || {
                for job in rx {
                    let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                    // A job that panicked mid-transaction must not leave it open for the next.
                    if outcome.is_err() && !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
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
        let job: Job = Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        });
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(jobs) = jobs.as_ref() else {
                return Err(closed());
            };
            jobs.send(job).map_err(|_| closed())?;
        }
        reply_rx.recv().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "the write panicked; its transaction was rolled back",
            )
        })
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

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the database was closed")
}
