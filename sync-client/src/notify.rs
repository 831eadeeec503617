//! The notifier: one thread per client that tells subscribers what changed — watched queries
//! re-run after a committed write touched a table they read, status subscribers a fresh
//! [`SyncStatus`] after a commit or a step of a sync.
//!
//! Nothing here holds the writer. The writer only records which tables a commit wrote and
//! wakes this thread ([`Notifier::written`]); queries re-run on the read-only pool, and
//! callbacks run on this thread. Changes coalesce: however many commits land while a query
//! runs or a callback works, the next round runs each touched query once.

use crate::error::{Error, ErrorKind, Result};
use crate::live::{self, Activity, SyncStatus};
use crate::readers::Readers;
use crate::signal::Signal;
use crate::watch::Query;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

type StatusFn = Box<dyn FnMut(&SyncStatus) + Send>;

/// A watched query and whom to tell.
struct Watch {
    id: u64,
    /// Lower-cased names of the tables of `main` the query reads.
    tables: Mutex<Vec<String>>,
    dirty: AtomicBool,
    cancelled: AtomicBool,
    run: Mutex<Option<Query>>,
}

struct StatusSub {
    id: u64,
    fresh: AtomicBool,
    cancelled: AtomicBool,
    f: Mutex<Option<StatusFn>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    watches: Vec<Arc<Watch>>,
    statuses: Vec<Arc<StatusSub>>,
    /// Tables written since the thread last looked (lower-cased).
    written: Vec<String>,
    /// Something a status shows may have changed in the database.
    status_dirty: bool,
    /// The schema changed: every query re-runs (what it reads may have changed).
    reshaped: bool,
}

struct Shared {
    signal: Arc<Signal>,
    stop: AtomicBool,
    state: Mutex<State>,
    activity: Arc<Activity>,
    readers: Arc<Readers>,
    thread: Mutex<Option<ThreadId>>,
}

/// The notifier of one client; its thread starts with the first subscription.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A live subscription (a watched query or the status): cancelled when dropped or by
/// [`Subscription::cancel`]; after either returns, its callback is not called again.
#[must_use = "dropping a Subscription cancels it"]
pub struct Subscription {
    shared: Weak<Shared>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Notifier {
    pub(crate) fn new(readers: Arc<Readers>, activity: Arc<Activity>, signal: Arc<Signal>) -> Self {
        Notifier {
            shared: Arc::new(Shared {
                signal,
                stop: AtomicBool::new(false),
                state: Mutex::default(),
                activity,
                readers,
                thread: Mutex::new(None),
            }),
            thread: Mutex::new(None),
        }
    }

    /// A commit wrote `tables` (of `main`), and changed the schema if `reshaped`. Called on
    /// the writer thread: records and wakes.
    pub(crate) fn written(&self, tables: &[String], reshaped: bool) {
        let mut state = self.shared.lock();
        state.reshaped |= reshaped;
        for t in tables {
            let t = t.to_ascii_lowercase();
            if !state.written.contains(&t) {
                state.written.push(t);
            }
        }
        state.status_dirty = true;
        drop(state);
        self.shared.signal.wake();
    }

    /// Watches `query`: it runs now to find the tables it reads (an error is returned), then
    /// on this notifier's thread — once soon, and after every commit touching those tables.
    pub(crate) fn watch(&self, query: Query) -> Result<Subscription> {
        let tables = self.shared.readers.with(|c| query.tables(c))?;
        self.ensure_started()?;
        let mut state = self.shared.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.watches.push(Arc::new(Watch {
            id,
            tables: Mutex::new(tables),
            dirty: AtomicBool::new(true),
            cancelled: AtomicBool::new(false),
            run: Mutex::new(Some(query)),
        }));
        drop(state);
        self.shared.signal.wake();
        Ok(self.subscription(id))
    }

    /// Subscribes `f` to the status: called soon with the current one, then with each change.
    pub(crate) fn watch_status(&self, f: StatusFn) -> Result<Subscription> {
        self.ensure_started()?;
        let mut state = self.shared.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.statuses.push(Arc::new(StatusSub {
            id,
            fresh: AtomicBool::new(true),
            cancelled: AtomicBool::new(false),
            f: Mutex::new(Some(f)),
        }));
        drop(state);
        self.shared.signal.wake();
        Ok(self.subscription(id))
    }

    fn subscription(&self, id: u64) -> Subscription {
        Subscription {
            shared: Arc::downgrade(&self.shared),
            id,
        }
    }

    fn ensure_started(&self) -> Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Closed, "the database was closed"));
        }
        if thread.is_none() {
            let shared = Arc::clone(&self.shared);
            let handle = std::thread::Builder::new()
                .name("sync-notify".into())
                .spawn(move || run(&shared))?;
            *self.shared.thread.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(handle.thread().id());
            *thread = Some(handle);
        }
        Ok(())
    }

    /// Stops the thread and drops every subscription's callback. Idempotent.
    pub(crate) fn close(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.signal.wake();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
        let mut state = self.shared.lock();
        state.watches.clear();
        state.statuses.clear();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_own_thread(&self) -> bool {
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) == Some(std::thread::current().id())
    }
}

impl Subscription {
    /// Stops the deliveries. When it returns, the callback is not running and will not be
    /// called again — unless called from inside the callback itself, where it only stops the
    /// ones after this.
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        let watch = state
            .watches
            .iter()
            .position(|w| w.id == self.id)
            .map(|i| state.watches.swap_remove(i));
        let status = state
            .statuses
            .iter()
            .position(|s| s.id == self.id)
            .map(|i| state.statuses.swap_remove(i));
        drop(state);
        let own = shared.on_own_thread();
        if let Some(w) = watch {
            w.cancelled.store(true, Ordering::SeqCst);
            // Waits for a delivery in progress; the notifier's own thread holds that lock.
            if !own {
                w.run.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
        }
        if let Some(s) = status {
            s.cancelled.store(true, Ordering::SeqCst);
            if !own {
                s.f.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
        }
    }
}

/// How long the thread sleeps when nothing wakes it (a safety net only).
const IDLE: Duration = Duration::from_secs(1);

fn run(shared: &Shared) {
    let mut delivered: Option<SyncStatus> = None;
    let mut seen_version = u64::MAX;
    loop {
        shared.signal.wait(IDLE);
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (watches, statuses, status_dirty) = {
            let mut state = shared.lock();
            let written = std::mem::take(&mut state.written);
            let reshaped = std::mem::take(&mut state.reshaped);
            for w in &state.watches {
                let tables = w.tables.lock().unwrap_or_else(|p| p.into_inner());
                if reshaped || tables.iter().any(|t| written.contains(t)) {
                    w.dirty.store(true, Ordering::SeqCst);
                }
            }
            let dirty = std::mem::take(&mut state.status_dirty);
            (state.watches.clone(), state.statuses.clone(), dirty)
        };
        for w in watches {
            if w.dirty.swap(false, Ordering::SeqCst) {
                deliver_watch(shared, &w);
            }
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
        }
        let now = shared.activity.now();
        let fresh = statuses.iter().any(|s| s.fresh.load(Ordering::SeqCst));
        if statuses.is_empty() || !(status_dirty || fresh || now.version != seen_version) {
            continue;
        }
        seen_version = now.version;
        let status = match shared.readers.with(|c| live::read(c, now)) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("status for subscribers: {e}");
                continue;
            }
        };
        let changed = delivered.as_ref() != Some(&status);
        for s in &statuses {
            if (changed || s.fresh.swap(false, Ordering::SeqCst))
                && !s.cancelled.load(Ordering::SeqCst)
            {
                s.fresh.store(false, Ordering::SeqCst);
                if let Some(f) = s.f.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    f(&status);
                }
            }
        }
        delivered = Some(status);
    }
}

/// Re-runs a watched query and delivers its rows (or its error). The tables it reads are
/// found again each time: a schema upgrade may have changed what a view reads.
fn deliver_watch(shared: &Shared, w: &Watch) {
    let mut run = w.run.lock().unwrap_or_else(|p| p.into_inner());
    let Some(query) = run.as_mut() else { return };
    if w.cancelled.load(Ordering::SeqCst) {
        return;
    }
    match shared.readers.with(|c| Ok(query.run(c))) {
        Ok(Some(tables)) => *w.tables.lock().unwrap_or_else(|p| p.into_inner()) = tables,
        Ok(None) => {}
        Err(e) => query.fail(e),
    }
}
