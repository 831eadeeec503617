//! What the client's subscriptions hand over: the notes list from a watched query and the sync
//! status, delivered on the client's notifier thread and picked up by the UI thread at its next
//! frame. Only the latest value is kept (a UI needs no history), and each delivery asks egui
//! for a repaint, so a change from another device shows without any input.

use std::sync::{Arc, Mutex, MutexGuard};
use sync_client::rusqlite::types::Value;
use sync_client::{Subscription, SyncClient, SyncStatus};

/// One row of the notes list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `notes.id` (an `INTEGER PRIMARY KEY` taken from `sync_id()`).
    pub id: i64,
    /// The title as stored (may be empty).
    pub title: String,
    /// The body as stored.
    pub body: String,
    /// Milliseconds since the Unix epoch, set by every save; the list is newest first.
    pub updated_at: i64,
}

/// The watched query behind the notes list: every table it reads is watched, so a local save
/// and a sync that applied another device's change both re-run it.
pub const NOTES_QUERY: &str =
    "SELECT id, title, body, updated_at FROM notes ORDER BY updated_at DESC, id DESC";

/// The latest deliveries, not yet taken by the UI.
#[derive(Default)]
struct Latest {
    notes: Option<Result<Vec<Note>, String>>,
    status: Option<SyncStatus>,
}

/// Where the notifier thread leaves deliveries for the UI thread.
#[derive(Default)]
pub(crate) struct Inbox {
    latest: Mutex<Latest>,
    /// The window's context once the first frame ran: deliveries ask it to repaint.
    ctx: Mutex<Option<egui::Context>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inbox {
    /// Subscribes to the notes list and the status; deliveries stop when the subscriptions
    /// are dropped.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        client: &SyncClient,
    ) -> sync_client::Result<Vec<Subscription>> {
        let notes_inbox = Arc::clone(self);
        let notes = client.watch_map(
            NOTES_QUERY,
            Vec::<Value>::new(),
            |row| {
                Ok(Note {
                    id: row.get(0)?,
                    title: row.get(1)?,
                    body: row.get(2)?,
                    updated_at: row.get(3)?,
                })
            },
            move |rows| {
                lock(&notes_inbox.latest).notes = Some(rows.map_err(|e| e.to_string()));
                notes_inbox.repaint();
            },
        )?;
        let status_inbox = Arc::clone(self);
        let status = client.watch_status(move |s| {
            lock(&status_inbox.latest).status = Some(s.clone());
            status_inbox.repaint();
        })?;
        Ok(vec![notes, status])
    }

    /// Remembers the window's context (the first frame calls this).
    pub(crate) fn attach(&self, ctx: &egui::Context) {
        let mut slot = lock(&self.ctx);
        if slot.is_none() {
            *slot = Some(ctx.clone());
        }
    }

    /// Asks the window for a frame (from any thread).
    pub(crate) fn repaint(&self) {
        if let Some(ctx) = lock(&self.ctx).as_ref() {
            ctx.request_repaint();
        }
    }

    /// The notes list delivered since the last call, if any.
    pub(crate) fn take_notes(&self) -> Option<Result<Vec<Note>, String>> {
        lock(&self.latest).notes.take()
    }

    /// The status delivered since the last call, if any.
    pub(crate) fn take_status(&self) -> Option<SyncStatus> {
        lock(&self.latest).status.take()
    }
}
