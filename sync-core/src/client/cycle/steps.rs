//! What the cycle asks the pump to do ([`Step`]) and what the pump answers ([`Reply`]).

use crate::client::push::PushBatch;
use crate::protocol::error::ErrorCode;
use crate::protocol::migrations::Migrations;
use crate::protocol::pull::{LogPage, PullQuery};
use crate::protocol::push::{PushHeaders, PushResponse};
use crate::protocol::upload::EffectQuery;
use std::path::PathBuf;

/// What the pump should do next.
#[derive(Debug)]
pub enum Step {
    /// Push this batch (its body is [`BatchBody::Inline`]); answer with [`Reply::Pushed`].
    Push(PushBatch),
    /// Ask how much of the upload of this batch the server has; answer with
    /// [`Reply::UploadStatus`].
    UploadStatus {
        /// The batch.
        batch_id: String,
    },
    /// Upload a part; answer with [`Reply::Uploaded`].
    Upload {
        /// The batch.
        batch_id: String,
        /// Where the part goes.
        offset: u64,
        /// The whole body's size.
        total: u64,
        /// The part.
        bytes: Vec<u8>,
    },
    /// Push the uploaded batch by name; answer with [`Reply::Pushed`].
    PushUploaded(PushHeaders),
    /// Pull this page; answer with [`Reply::Page`].
    Pull(PullQuery),
    /// Fetch a range of log entry `seq`'s effect; answer with [`Reply::Effect`].
    Effect {
        /// The entry.
        seq: i64,
        /// The range, with the position of the page the entry came in (checked by the
        /// server: the effect must be from the same history).
        query: EffectQuery,
    },
    /// Download a snapshot to a file, asking where the batch in flight (`batch`, if any)
    /// stands in its history; answer with [`Reply::Snapshot`].
    Snapshot {
        /// The id of the batch in flight.
        batch: Option<String>,
    },
    /// Fetch the migration scripts after this schema version; answer with
    /// [`Reply::Migrations`].
    Migrations {
        /// The local schema version.
        after: u32,
    },
    /// The sync is complete; [`super::Cycle::report`] says what it did.
    Done,
}

/// The server's answer to the last [`Step`].
#[derive(Debug)]
pub enum Reply {
    /// The push answer (200, or a `push_rejected` answer read with
    /// [`PushResponse::from_rejection`]).
    Pushed(PushResponse),
    /// How much of an upload the server has (`None`: nothing).
    UploadStatus(Option<u64>),
    /// A part was stored: bytes received from the start.
    Uploaded(u64),
    /// The pulled page.
    Page(LogPage),
    /// The bytes of an effect range.
    Effect(Vec<u8>),
    /// The downloaded snapshot file (it may be removed once `feed` returns).
    Snapshot {
        /// The file.
        path: PathBuf,
        /// Where the batch asked about stands: `Some(Some(seq))` logged at `seq` in the
        /// snapshot's history, `Some(None)` not in it, `None` not asked or not told.
        batch_seq: Option<Option<i64>>,
    },
    /// The migration scripts.
    Migrations(Migrations),
    /// The server answered with an error envelope of this code.
    Refused(ErrorCode),
}
