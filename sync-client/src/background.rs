//! Background work: a sync loop (on an interval, after local writes, on server events), an
//! event listener (server-sent events), and the FTS indexer.
//!
//! Ownership runs one way: the client owns the [`Background`] handle, and the threads hold
//! only the parts they use (the [`Syncer`], the readers, the index) — never the client. The
//! client stops and joins them on `close` or when its last handle is dropped; they are told
//! to work through [`Signal`]s, never by taking the client's locks.

use crate::engine::Syncer;
use crate::error::Result;
use crate::fts::Fts;
use crate::readers::Readers;
use crate::signal::Signal;
use crate::writer::Writer;
use rand::RngExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the threads work on.
pub(crate) struct Parts {
    pub(crate) syncer: Arc<Syncer>,
    pub(crate) readers: Arc<Readers>,
    pub(crate) writer: Arc<Writer>,
    pub(crate) fts: Option<Arc<Fts>>,
}

struct Shared {
    stop: AtomicBool,
    sync: Signal,
}

/// The running background threads.
pub(crate) struct Background {
    shared: Arc<Shared>,
    indexer: Arc<Signal>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    pub(crate) fn start(parts: Parts) -> Result<Background> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sync: Signal::default(),
        });
        let indexer = Arc::clone(&parts.syncer.indexer);
        let parts = Arc::new(parts);
        let mut threads = Vec::new();
        if parts.syncer.engine.is_some() {
            let (s, p) = (Arc::clone(&shared), Arc::clone(&parts));
            threads.push(
                std::thread::Builder::new()
                    .name("sync-loop".into())
                    .spawn(move || sync_loop(&s, &p))?,
            );
            let (s, p) = (Arc::clone(&shared), Arc::clone(&parts));
            // Not joined on stop: it may sit in a blocking read until the next keep-alive.
            std::thread::Builder::new()
                .name("sync-events".into())
                .spawn(move || event_loop(&s, &p))?;
        }
        let (s, p) = (Arc::clone(&shared), parts);
        threads.push(
            std::thread::Builder::new()
                .name("sync-indexer".into())
                .spawn(move || index_loop(&s, &p))?,
        );
        shared.sync.wake();
        indexer.wake();
        Ok(Background {
            shared,
            indexer,
            threads,
        })
    }

    pub(crate) fn wake_sync(&self) {
        self.shared.sync.wake();
    }

    pub(crate) fn wake_indexer(&self) {
        self.indexer.wake();
    }

    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.sync.wake();
        self.indexer.wake();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn sync_loop(shared: &Shared, parts: &Parts) {
    let mut backoff = Duration::from_millis(200);
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            shared.sync.wait(wait);
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let interval = parts.syncer.sync_interval;
        match parts.syncer.run() {
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

fn event_loop(shared: &Shared, parts: &Parts) {
    let mut backoff = Duration::from_millis(200);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(transport) = parts
            .syncer
            .engine
            .as_ref()
            .map(|e| Arc::clone(&e.transport))
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
                    let cursor = parts
                        .readers
                        .with(|c| Ok(sync_core::client::state::cursor(c)?))
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

fn index_loop(shared: &Shared, parts: &Parts) {
    let Some(fts) = &parts.fts else { return };
    loop {
        parts.syncer.indexer.wait(Duration::from_secs(5));
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        loop {
            match fts.index_batch(&parts.readers, &parts.writer) {
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
