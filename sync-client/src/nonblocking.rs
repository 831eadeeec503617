//! Async counterparts of the calls that wait (feature `async`), for apps on an async runtime:
//! none of them blocks the executor thread that polls it, and none needs a particular runtime.
//!
//! A write is queued on the writer thread and its answer awaited — no thread waits for it.
//! What must wait on a blocking call (a read from the pool, a sync over HTTP, opening a file)
//! runs on the `blocking` crate's thread pool. Watched queries and the status also come as
//! [`Stream`]s that always yield the latest value: a slow consumer skips stale ones and never
//! makes the producer wait.

use crate::client::SyncClient;
use crate::config::{ClientConfig, RemoteConfig};
use crate::engine::SyncReport;
use crate::error::Result;
use crate::live::SyncStatus;
use crate::notify::Subscription;
use crate::watch::Rows;
use futures_core::Stream;
use rusqlite::Connection;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

impl SyncClient {
    /// [`SyncClient::open`] without blocking the caller's executor.
    pub async fn open_async(path: impl Into<PathBuf>, config: ClientConfig) -> Result<SyncClient> {
        let path = path.into();
        blocking::unblock(move || SyncClient::open(path, config)).await
    }

    /// [`SyncClient::init`] (needs the network once) without blocking the caller's executor.
    pub async fn init_async(
        path: impl Into<PathBuf>,
        remote: RemoteConfig,
        config: ClientConfig,
    ) -> Result<SyncClient> {
        let path = path.into();
        blocking::unblock(move || SyncClient::init(path, remote, config)).await
    }

    /// [`SyncClient::write`], awaited: `f` runs on the writer thread in a captured
    /// transaction, and no thread waits for it meanwhile.
    pub async fn write_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.inner.writer.submit(self.write_job(f), move |out| {
            let _ = tx.send(out);
        })?;
        let (value, changed) = rx.await.map_err(|_| crate::writer::panicked())??;
        self.wrote(changed);
        Ok(value)
    }

    /// [`SyncClient::read`], awaited (on a pool thread: a read may wait for a connection).
    pub async fn read_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let client = self.clone();
        blocking::unblock(move || client.read(f)).await
    }

    /// [`SyncClient::sync_now`], awaited.
    pub async fn sync_now_async(&self) -> Result<SyncReport> {
        let client = self.clone();
        blocking::unblock(move || client.sync_now()).await
    }

    /// [`SyncClient::verify`], awaited.
    pub async fn verify_async(&self) -> Result<crate::Verification> {
        let client = self.clone();
        blocking::unblock(move || client.verify()).await
    }

    /// [`SyncClient::upgrade`], awaited.
    pub async fn upgrade_async(&self) -> Result<SyncReport> {
        let client = self.clone();
        blocking::unblock(move || client.upgrade()).await
    }

    /// A watched query as a stream: its rows now, then after every commit touching what it
    /// reads (see [`SyncClient::watch`]); only the latest rows wait to be taken. Ends when the
    /// client closes; dropping it cancels the watch.
    pub fn watch_stream(
        &self,
        sql: &str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Latest<Result<Rows>>> {
        let (feed, slot) = Feed::new();
        let sub = self.watch(sql, params, move |rows| feed.put(rows))?;
        Ok(Latest {
            slot,
            _subscription: sub,
        })
    }

    /// The sync status as a stream (see [`SyncClient::watch_status`]): the latest one waits
    /// to be taken. Ends when the client closes.
    pub fn status_stream(&self) -> Result<Latest<SyncStatus>> {
        let (feed, slot) = Feed::new();
        let sub = self.watch_status(move |s| feed.put(s.clone()))?;
        Ok(Latest {
            slot,
            _subscription: sub,
        })
    }
}

/// One value waiting to be taken, and who waits for it.
struct Slot<T> {
    inner: Mutex<SlotInner<T>>,
}

struct SlotInner<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The producer is gone (cancelled, or the client closed).
    ended: bool,
}

impl<T> Slot<T> {
    fn update(&self, f: impl FnOnce(&mut SlotInner<T>)) {
        let waker = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut inner);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The producer's end: what the subscription's callback holds. Dropped with the callback
/// (the subscription cancelled, the client closed), it ends the stream.
struct Feed<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Feed<T> {
    fn new() -> (Feed<T>, Arc<Slot<T>>) {
        let slot = Arc::new(Slot {
            inner: Mutex::new(SlotInner {
                value: None,
                waker: None,
                ended: false,
            }),
        });
        (
            Feed {
                slot: Arc::clone(&slot),
            },
            slot,
        )
    }

    /// Replaces what waits (a stale value is dropped) and wakes the consumer.
    fn put(&self, value: T) {
        self.slot.update(|i| i.value = Some(value));
    }
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        self.slot.update(|i| i.ended = true);
    }
}

/// A stream of the latest value of a subscription (a watched query, the status). Dropping it
/// cancels the subscription.
pub struct Latest<T> {
    slot: Arc<Slot<T>>,
    _subscription: Subscription,
}

impl<T> std::fmt::Debug for Latest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latest").finish_non_exhaustive()
    }
}

impl<T> Stream for Latest<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut inner = self.slot.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = inner.value.take() {
            return Poll::Ready(Some(v));
        }
        if inner.ended {
            return Poll::Ready(None);
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
