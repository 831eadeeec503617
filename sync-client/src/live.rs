//! [`SyncStatus`]: what a status subscription delivers — the phase a sync is in and its
//! progress, with what is pending and what went wrong — and [`Activity`], where the sync
//! engine says what it is doing as it goes.

use crate::error::Result;
use crate::settings;
use crate::signal::Signal;
use crate::writer::Writer;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use sync_core::client::{conflicts, rejected, state};

/// What a sync is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyncPhase {
    /// No sync is running.
    #[default]
    Idle,
    /// Sending local transactions to the server (inline batches or an upload in parts).
    Pushing,
    /// Fetching and applying the server's log.
    Pulling,
    /// Downloading a snapshot to re-base the local copy on (first sync, a restore, a repair).
    Bootstrapping,
    /// Bringing the local copy to the server's schema version.
    Upgrading,
}

/// What [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressUnit {
    /// Bytes (an upload in parts, a snapshot download).
    Bytes,
    /// Local transactions pushed in inline batches.
    Transactions,
    /// Server log entries pulled.
    Entries,
}

/// How far the current phase has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Done so far, in `unit`s.
    pub done: u64,
    /// The whole, when known.
    pub total: Option<u64>,
    /// What is counted.
    pub unit: ProgressUnit,
}

/// What a status subscription delivers: a fresh one whenever any of it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncStatus {
    /// What the sync is doing now.
    pub phase: SyncPhase,
    /// How far the phase has come (`None` when idle, or before the first step says).
    pub progress: Option<Progress>,
    /// Local transactions waiting to be pushed.
    pub pending_transactions: u64,
    /// Their size in bytes.
    pub pending_bytes: u64,
    /// Transactions in the rejected queue, waiting to be redone or discarded.
    pub rejected: u64,
    /// Conflicts recorded and not cleared (local and server ones; details in `status()`).
    pub conflicts: u64,
    /// The last sync's error, cleared by a successful sync.
    pub last_error: Option<String>,
    /// When the last sync succeeded (ms since the Unix epoch).
    pub last_sync_ms: Option<i64>,
    /// Last log seq integrated.
    pub cursor: i64,
    /// Whether the server answered the last sync attempt (`None`: none attempted since open).
    pub online: Option<bool>,
}

/// What the engine is doing, told to the status subscribers. Cheap to update from the sync's
/// own thread: it only records and wakes the notifier.
pub(crate) struct Activity {
    now: Mutex<Now>,
    wake: Arc<Signal>,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Now {
    pub(crate) phase: SyncPhase,
    pub(crate) progress: Option<Progress>,
    pub(crate) online: Option<bool>,
    /// Bumped by every change, so the notifier can tell whether anything moved.
    pub(crate) version: u64,
}

impl Activity {
    pub(crate) fn new(wake: Arc<Signal>) -> Activity {
        Activity {
            now: Mutex::new(Now::default()),
            wake,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Now)) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        let before = (now.phase, now.progress, now.online);
        f(&mut now);
        if before != (now.phase, now.progress, now.online) {
            now.version += 1;
            drop(now);
            self.wake.wake();
        }
    }

    /// The sync entered `phase` (progress unknown yet).
    pub(crate) fn phase(&self, phase: SyncPhase) {
        self.update(|n| {
            if n.phase != phase {
                n.phase = phase;
                n.progress = None;
            }
        });
    }

    /// The sync is in `phase`, this far.
    pub(crate) fn progress(&self, phase: SyncPhase, progress: Progress) {
        self.update(|n| {
            n.phase = phase;
            n.progress = Some(progress);
        });
    }

    /// The sync ended; `online`: whether the server answered.
    pub(crate) fn ended(&self, online: bool) {
        self.update(|n| {
            n.phase = SyncPhase::Idle;
            n.progress = None;
            n.online = Some(online);
        });
    }

    pub(crate) fn now(&self) -> Now {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one sync has told its [`Activity`]: the counts its progress is made of.
pub(crate) struct Told<'a> {
    activity: &'a Activity,
    writer: &'a Writer,
    /// Transactions pushed so far, and how many were pending when the first push began.
    pushed: u64,
    to_push: Option<u64>,
    /// Where the first pull of this sync started.
    pull_from: Option<i64>,
    pull_head: Option<i64>,
}

impl<'a> Told<'a> {
    pub(crate) fn new(activity: &'a Activity, writer: &'a Writer) -> Told<'a> {
        Told {
            activity,
            writer,
            pushed: 0,
            to_push: None,
            pull_from: None,
            pull_head: None,
        }
    }

    /// A batch of `entries` transactions is being pushed (`done`: it was answered).
    pub(crate) fn pushing(&mut self, entries: usize, done: bool) {
        if self.to_push.is_none() {
            let pending = self
                .writer
                .run(|c| sync_core::engine::outbox::stats(c))
                .ok()
                .and_then(|r| r.ok())
                .map_or(entries as u64, |(n, _)| n);
            self.to_push = Some(pending);
        }
        if done {
            self.pushed += entries as u64;
        }
        let total = self.to_push.unwrap_or(0).max(self.pushed);
        self.activity.progress(
            SyncPhase::Pushing,
            Progress {
                done: self.pushed,
                total: Some(total),
                unit: ProgressUnit::Transactions,
            },
        );
    }

    pub(crate) fn bytes(&self, phase: SyncPhase, done: u64, total: Option<u64>) {
        self.activity.progress(
            phase,
            Progress {
                done,
                total,
                unit: ProgressUnit::Bytes,
            },
        );
    }

    /// Pulled through `seq`; the server's head when a page told it.
    pub(crate) fn pulling(&mut self, seq: i64, head: Option<i64>) {
        let from = *self.pull_from.get_or_insert(seq);
        if head.is_some() {
            self.pull_head = head;
        }
        let done = (seq - from).max(0) as u64;
        self.activity.progress(
            SyncPhase::Pulling,
            Progress {
                done,
                total: self.pull_head.map(|h| ((h - from).max(0) as u64).max(done)),
                unit: ProgressUnit::Entries,
            },
        );
    }
}

/// The status as the database and the engine tell it now.
pub(crate) fn read(conn: &Connection, now: Now) -> Result<SyncStatus> {
    let (pending_transactions, pending_bytes) = sync_core::engine::outbox::stats(conn)?;
    let conflicts = conflicts::count(conn)?;
    Ok(SyncStatus {
        phase: now.phase,
        progress: now.progress,
        pending_transactions,
        pending_bytes,
        rejected: rejected::count(conn)?,
        conflicts,
        last_error: settings::get(conn, settings::LAST_ERROR)?,
        last_sync_ms: settings::get(conn, settings::LAST_SYNC)?.and_then(|v| v.parse().ok()),
        cursor: state::cursor(conn)?,
        online: now.online,
    })
}
