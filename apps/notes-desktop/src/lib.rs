//! # notes-desktop
//!
//! An offline-first notes app on [`sync_client`]: the local copy is a SQLite file that works
//! without the network and syncs with a session-sync server. The window (egui, through
//! eframe in `main.rs`) is drawn from a state that tests drive headlessly with
//! `egui_kittest`.
//!
//! | module | its one job |
//! |---|---|
//! | [`app`] | [`NotesApp`]: the notes, the editor, search, the sync status, the conflicts; every action |
//! | [`ui`] | draws a [`NotesApp`] and turns clicks and typing into its actions |
//! | [`live`] | what the client's subscriptions (a watched query, the status) hand to the UI thread |
//! | [`config`] | the command line; `init` on the first run, `open` afterwards |

#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod live;
pub mod ui;

pub use app::{Editor, NotesApp, Options};
pub use live::Note;
