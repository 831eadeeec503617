//! Background work: a sync loop (on an interval, after local writes, on server events), an
//! event listener (server-sent events), and the FTS indexer. Threads hold only a weak
//! reference to the client, so dropping every handle ends them.

use crate::client::{Inner, run_sync};
use crate::error::Result;
use rand::RngExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// A wake-up flag threads can wait on with a timeout.
#[derive(Default)]
pub(crate) struct Signal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    pub(crate) fn wake(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until woken or `timeout`; clears the flag. True when woken.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |set| !*set)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, false)
    }
}

struct Shared {
    stop: AtomicBool,
    sync: Signal,
    index: Signal,
}

/// The running background threads.
pub(crate) struct Background {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    pub(crate) fn start(inner: Weak<Inner>) -> Result<Background> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sync: Signal::default(),
            index: Signal::default(),
        });
        let mut threads = Vec::new();
        let has_engine = inner.upgrade().is_some_and(|i| i.engine.is_some());
        if has_engine {
            let (s, w) = (Arc::clone(&shared), inner.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("sync-loop".into())
                    .spawn(move || sync_loop(&s, &w))?,
            );
            let (s, w) = (Arc::clone(&shared), inner.clone());
            // Not joined on stop: it may sit in a blocking read until the next keep-alive.
            std::thread::Builder::new()
                .name("sync-events".into())
                .spawn(move || event_loop(&s, &w))?;
        }
        let (s, w) = (Arc::clone(&shared), inner);
        threads.push(
            std::thread::Builder::new()
                .name("sync-indexer".into())
                .spawn(move || index_loop(&s, &w))?,
        );
        shared.sync.wake();
        shared.index.wake();
        Ok(Background { shared, threads })
    }

    pub(crate) fn wake_sync(&self) {
        self.shared.sync.wake();
    }

    pub(crate) fn wake_indexer(&self) {
        self.shared.index.wake();
    }

    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.sync.wake();
        self.shared.index.wake();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn sync_loop(shared: &Shared, inner: &Weak<Inner>) {
    let mut backoff = Duration::from_millis(200);
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            shared.sync.wait(wait);
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let interval = inner.sync_interval;
        match run_sync(&inner) {
            Ok(_) => {
                backoff = Duration::from_millis(200);
                wait = interval;
            }
            Err(e) => {
                tracing::warn!("background sync failed: {e}");
                // Errors that retrying will not fix (auth, schema) wait for the interval.
                wait = if e.is_retryable() {
                    jittered(backoff).min(interval)
                } else {
                    interval
                };
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

fn event_loop(shared: &Shared, inner: &Weak<Inner>) {
    let mut backoff = Duration::from_millis(200);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(transport) = inner
            .upgrade()
            .and_then(|i| i.engine.as_ref().map(|e| Arc::clone(&e.transport)))
        else {
            return;
        };
        match transport.events() {
            Ok(mut stream) => {
                backoff = Duration::from_millis(200);
                while let Ok(Some(head)) = stream.next_head() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(i) = inner.upgrade() else { return };
                    let cursor = i
                        .readers
                        .with(|c| Ok(sync_core::client::cursor(c)?))
                        .unwrap_or(0);
                    if head > cursor {
                        shared.sync.wake();
                    }
                }
            }
            Err(e) => tracing::debug!("event stream unavailable: {e}"),
        }
        std::thread::sleep(jittered(backoff));
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn index_loop(shared: &Shared, inner: &Weak<Inner>) {
    loop {
        shared.index.wait(Duration::from_secs(5));
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let Some(fts) = &inner.fts else { return };
        loop {
            match fts.index_batch(&inner.readers, &inner.writer) {
                Ok(0) => break,
                Ok(_) if shared.stop.load(Ordering::SeqCst) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("indexing failed: {e}");
                    break;
                }
            }
        }
    }
}
