//! [`NotesApp`]: everything the window shows and every action it offers, with no drawing in
//! it — the notes list (a watched query), the editor, search, the sync status (the status
//! subscription) and the conflicts panel. `ui.rs` draws it; tests drive the same state
//! through the drawn widgets.
//!
//! Nothing here waits on the network on the UI thread: a sync (the "Sync now" button) and a
//! search run on a short-lived thread and report back through a channel, picked up at the
//! next frame; saves are local writes (milliseconds, on the client's writer thread).

use crate::live::{Inbox, Note};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{SystemTime, UNIX_EPOCH};
use sync_client::rusqlite::params;
use sync_client::{Status, Subscription, SyncClient, SyncPhase, SyncStatus};

/// How the app runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Sync in the background (on an interval, soon after each save, and when the server
    /// announces changes). Off, only "Sync now" syncs: tests use it to order two devices'
    /// pushes.
    pub background: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { background: true }
    }
}

/// The editor's contents: the selected note, or a new one not saved yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editor {
    /// The note being edited (`None`: a new note, inserted by the first save).
    pub id: Option<i64>,
    /// Title as typed.
    pub title: String,
    /// Body as typed.
    pub body: String,
    /// Typed since the last save or load: a remote change to the note does not overwrite it.
    pub dirty: bool,
}

/// What a background job reports when it ends.
enum Done {
    Sync(Result<String, String>),
    Search(String, Result<Vec<i64>, String>),
}

/// The app's state.
pub struct NotesApp {
    client: SyncClient,
    inbox: Arc<Inbox>,
    _subscriptions: Vec<Subscription>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// Every note, newest first, as the watched query last delivered it.
    pub notes: Vec<Note>,
    /// The latest status delivery.
    pub status: SyncStatus,
    /// The conflicts and rejected transactions (`status()`), re-read when the counts move.
    pub details: Option<Status>,
    /// The editor.
    pub editor: Editor,
    /// The search box's text.
    pub search: String,
    /// Ids of the notes matching `search` (best first); `None` when not searching.
    pub hits: Option<Vec<i64>>,
    /// A sync started with "Sync now" has not finished.
    pub syncing: bool,
    /// The last thing worth telling (an error, a sync's outcome), shown in the status bar.
    pub message: Option<String>,
    /// The counts the details were read at.
    details_at: Option<(u64, u64)>,
}

/// How a search's error starts in `message` (a later successful search clears it).
const SEARCH_FAILED: &str = "search failed: ";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl NotesApp {
    /// An app over `client` (opened or initialised by the caller, with the notes FTS index
    /// configured): subscribes to the notes list and the status, and starts background sync
    /// when `options` say so.
    pub fn new(client: SyncClient, options: Options) -> sync_client::Result<NotesApp> {
        let inbox = Arc::new(Inbox::default());
        let subscriptions = inbox.subscribe(&client)?;
        if options.background {
            client.start_background()?;
        }
        let (done_tx, done_rx) = channel();
        let mut app = NotesApp {
            client,
            inbox,
            _subscriptions: subscriptions,
            done_tx,
            done_rx,
            notes: Vec::new(),
            status: SyncStatus::default(),
            details: None,
            editor: Editor::default(),
            search: String::new(),
            hits: None,
            syncing: false,
            message: None,
            details_at: None,
        };
        app.status = app.client.sync_status()?;
        app.refresh_details();
        Ok(app)
    }

    /// The client (for tests and the binary).
    pub fn client(&self) -> &SyncClient {
        &self.client
    }

    /// Takes what the subscriptions and jobs delivered since the last frame; the first call
    /// also remembers `ctx` so later deliveries can ask for a repaint.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.inbox.attach(ctx);
        if let Some(notes) = self.inbox.take_notes() {
            match notes {
                Ok(notes) => self.notes_changed(notes),
                Err(e) => self.message = Some(format!("cannot read the notes: {e}")),
            }
        }
        if let Some(status) = self.inbox.take_status() {
            self.status = status;
        }
        if self.details_at != Some((self.status.rejected, self.status.conflicts)) {
            self.refresh_details();
        }
        while let Ok(done) = self.done_rx.try_recv() {
            match done {
                Done::Sync(r) => {
                    self.syncing = false;
                    self.message = Some(r.unwrap_or_else(|e| format!("sync failed: {e}")));
                }
                // An answer to an older text (typing goes on) is dropped, its error too: a
                // half-typed `plan OR` is not worth a message once `plan OR lisbon` is there.
                Done::Search(q, _) if q != self.search.trim() => {}
                Done::Search(_, Ok(ids)) => {
                    self.hits = Some(ids);
                    if self
                        .message
                        .as_deref()
                        .is_some_and(|m| m.starts_with(SEARCH_FAILED))
                    {
                        self.message = None;
                    }
                }
                Done::Search(_, Err(e)) => self.message = Some(format!("{SEARCH_FAILED}{e}")),
            }
        }
    }

    fn notes_changed(&mut self, notes: Vec<Note>) {
        self.notes = notes;
        if let Some(id) = self.editor.id {
            match self.notes.iter().find(|n| n.id == id) {
                // Another device (or a sync's rebase) changed the note: show it, unless the
                // user is typing in it.
                Some(n) if !self.editor.dirty => {
                    self.editor.title = n.title.clone();
                    self.editor.body = n.body.clone();
                }
                Some(_) => {}
                None if !self.editor.dirty => self.editor = Editor::default(),
                None => self.editor.id = None,
            }
        }
        if !self.search.trim().is_empty() {
            // The rows changed: the matches may have too.
            self.start_search();
        }
    }

    fn refresh_details(&mut self) {
        match self.client.status() {
            Ok(s) => {
                self.details_at = Some((self.status.rejected, self.status.conflicts));
                self.details = Some(s);
            }
            Err(e) => self.message = Some(format!("cannot read the status: {e}")),
        }
    }

    /// The notes the list shows: every note, or the search's matches in rank order.
    pub fn visible_notes(&self) -> Vec<&Note> {
        match &self.hits {
            None => self.notes.iter().collect(),
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.notes.iter().find(|n| n.id == *id))
                .collect(),
        }
    }

    /// Opens note `id` in the editor (what was typed and not saved is dropped).
    pub fn select(&mut self, id: i64) {
        if let Some(n) = self.notes.iter().find(|n| n.id == id) {
            self.editor = Editor {
                id: Some(id),
                title: n.title.clone(),
                body: n.body.clone(),
                dirty: false,
            };
        }
    }

    /// Clears the editor for a new note (inserted by the next save).
    pub fn new_note(&mut self) {
        self.editor = Editor::default();
    }

    /// Saves the editor: one local write transaction (an INSERT for a new note, an UPDATE
    /// otherwise), durable when this returns and pushed by the next sync.
    pub fn save(&mut self) {
        let (title, body, at) = (
            self.editor.title.clone(),
            self.editor.body.clone(),
            now_ms(),
        );
        let result = match self.editor.id {
            Some(id) => self
                .client
                .write(move |tx| {
                    tx.execute(
                        "UPDATE notes SET title = ?1, body = ?2, updated_at = ?3 WHERE id = ?4",
                        params![title, body, at, id],
                    )?;
                    Ok(id)
                })
                .map(Some),
            None => self
                .client
                .write(move |tx| {
                    tx.execute(
                        "INSERT INTO notes(id, title, body, updated_at) \
                         VALUES (sync_id(), ?1, ?2, ?3)",
                        params![title, body, at],
                    )?;
                    Ok(tx.last_insert_rowid())
                })
                .map(Some),
        };
        match result {
            Ok(id) => {
                self.editor.id = id;
                self.editor.dirty = false;
                self.message = None;
            }
            Err(e) => self.message = Some(format!("cannot save: {e}")),
        }
    }

    /// Deletes the note in the editor (a local write like a save).
    pub fn delete(&mut self) {
        let Some(id) = self.editor.id else {
            self.editor = Editor::default();
            return;
        };
        let result = self.client.write(move |tx| {
            tx.execute("DELETE FROM notes WHERE id = ?1", [id])?;
            Ok(())
        });
        match result {
            Ok(()) => self.editor = Editor::default(),
            Err(e) => self.message = Some(format!("cannot delete: {e}")),
        }
    }

    /// Starts a sync on a thread of its own (with background sync running, it waits for the
    /// one in progress, then runs another). Its outcome lands in `message`.
    pub fn sync_now(&mut self) {
        if self.syncing {
            return;
        }
        self.syncing = true;
        let (client, tx, inbox) = (
            self.client.clone(),
            self.done_tx.clone(),
            self.inbox.clone(),
        );
        std::thread::spawn(move || {
            let r = client
                .sync_now()
                .map(|r| {
                    format!(
                        "synced: {} pushed, {} pulled, {} rejected",
                        r.pushed_transactions, r.pulled_entries, r.rejected_transactions
                    )
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(Done::Sync(r));
            inbox.repaint();
        });
    }

    /// Sets the search box's text and searches the notes' titles and bodies (FTS5 syntax:
    /// words, `"phrases"`, `prefix*`, `OR`, `NOT`); an empty text shows every note again.
    pub fn set_search(&mut self, text: &str) {
        self.search = text.to_string();
        if self.search.trim().is_empty() {
            self.hits = None;
        } else {
            self.start_search();
        }
    }

    fn start_search(&self) {
        let q = self.search.trim().to_string();
        let (client, tx, inbox) = (
            self.client.clone(),
            self.done_tx.clone(),
            self.inbox.clone(),
        );
        std::thread::spawn(move || {
            // Index what is waiting first: the index may lag the rows by a moment.
            let r = client
                .index_now()
                .and_then(|_| client.search(&q, 200))
                .map(|hits| hits.into_iter().map(|h| h.id).collect())
                .map_err(|e| e.to_string());
            let _ = tx.send(Done::Search(q, r));
            inbox.repaint();
        });
    }

    /// Re-applies rejected transaction `id` as a new local write over the current state.
    pub fn redo(&mut self, id: i64) {
        match self.client.redo_rejected(id) {
            Ok(_) => self.message = Some(format!("transaction {id} redone; it syncs next")),
            Err(e) => self.message = Some(format!("cannot redo {id}: {e}")),
        }
        self.refresh_details();
    }

    /// Forgets rejected transaction `id`.
    pub fn discard(&mut self, id: i64) {
        match self.client.discard_rejected(id) {
            Ok(_) => self.message = Some(format!("transaction {id} discarded")),
            Err(e) => self.message = Some(format!("cannot discard {id}: {e}")),
        }
        self.refresh_details();
    }

    /// Clears the conflict records the panel shows (exactly those: one recorded meanwhile
    /// stays).
    pub fn clear_conflicts(&mut self) {
        if let Some(shown) = &self.details
            && let Err(e) = self.client.clear_conflicts(shown)
        {
            self.message = Some(format!("cannot clear the conflicts: {e}"));
        }
        self.refresh_details();
    }

    /// The status bar's words for the sync state.
    pub fn sync_state(&self) -> String {
        let s = &self.status;
        match s.phase {
            SyncPhase::Idle => {}
            phase => {
                let what = match phase {
                    SyncPhase::Pushing => "pushing",
                    SyncPhase::Pulling => "pulling",
                    SyncPhase::Bootstrapping => "downloading a snapshot",
                    _ => "upgrading",
                };
                return match s.progress.and_then(|p| p.total.map(|t| (p.done, t))) {
                    Some((done, total)) => format!("syncing ({what} {done}/{total})"),
                    None => format!("syncing ({what})"),
                };
            }
        }
        match (s.online, &s.last_error) {
            (Some(false), _) => "offline".into(),
            (_, Some(_)) => "sync failed".into(),
            (None, _) => "not synced yet".into(),
            _ if s.pending_transactions > 0 => "changes waiting".into(),
            _ => "synced".into(),
        }
    }
}
