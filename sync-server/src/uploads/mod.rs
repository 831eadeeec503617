//! Uploads of large batches ([`sync_core::protocol::upload`]): a batch body too large for one
//! request arrives in parts, is kept until it is complete, and becomes the body of the push
//! that names it. Where the parts are kept depends on the store:
//!
//! | module | where | when |
//! |---|---|---|
//! | `files` | one file per upload under `<data>/uploads/` | the data directory is the store (one node) |
//! | `pg` | rows of the PostgreSQL store (`sync_uploads`, `sync_upload_parts`) | `--store postgres://…`: every node sees every upload |
//!
//! [`Uploads`] is the one the server runs with; routes do not care which. Both apply the same
//! limits with the same wire codes: a body's size by the declared total (at most
//! `max_transaction_bytes`), the uploads one device may have in progress ([`MAX_PER_DEVICE`]),
//! the bytes all uploads declare together (`upload_budget_bytes` — in PostgreSQL mode counted
//! in the store, so across all nodes), and their idleness (`upload_ttl`, enforced by the
//! maintenance pass). A part is durable (flushed to disk, or committed in PostgreSQL) before
//! it is acknowledged, so "received" never counts bytes a crash could lose.

mod files;
mod pg;

use crate::error::ApiError;
use crate::store::PgStore;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use sync_core::engine::spool::{Source, Spooled};
use sync_core::protocol::VERSION;
use sync_core::protocol::error::{ErrorBody, ErrorCode};
use sync_core::protocol::upload::UploadStatus;

pub use files::FileUploads;
pub use pg::PgUploads;

/// Uploads one device may have in progress at once (a client has one batch in flight).
pub const MAX_PER_DEVICE: usize = 4;

/// The limits every upload is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes one upload may declare (`max_transaction_bytes`).
    pub max_total: u64,
    /// The most bytes all uploads may declare together (`upload_budget_bytes`).
    pub budget: u64,
}

/// The upload store of a server.
#[derive(Debug)]
pub enum Uploads {
    /// Files under the data directory (no `--store`).
    Files(FileUploads),
    /// Rows of the PostgreSQL store.
    Pg(PgUploads),
}

/// An upload that has fully arrived, ready to be the body of its push.
#[derive(Debug)]
pub struct Complete {
    body: CompleteBody,
}

#[derive(Debug)]
enum CompleteBody {
    /// The upload's own file (file-based uploads).
    File { file: File, len: u64, path: PathBuf },
    /// The parts read back from the store into the node's spool (an unlinked file when
    /// large), and what to delete once the push committed.
    Store {
        spooled: Spooled,
        store: Arc<PgStore>,
        key: crate::store::UploadKey,
    },
}

impl Complete {
    /// The batch body.
    pub fn source(&self) -> Source<'_> {
        match &self.body {
            CompleteBody::File { file, len, .. } => Source::File {
                file,
                offset: 0,
                len: *len,
            },
            CompleteBody::Store { spooled, .. } => spooled.source(),
        }
    }

    /// Removes the upload (after the push that used it committed). A failure only leaves it
    /// for the maintenance pass: a retried push of the batch gets the stored answer anyway.
    pub fn remove(self) {
        match self.body {
            CompleteBody::File { file, path, .. } => {
                drop(file);
                let _ = std::fs::remove_file(&path);
            }
            CompleteBody::Store { store, key, .. } => {
                if let Err(e) = store.upload_remove(&key) {
                    tracing::warn!(error = %e, batch = %key.batch_id, "removing a pushed upload");
                }
            }
        }
    }
}

/// What [`Uploads::complete`] found.
#[derive(Debug)]
pub enum Found {
    /// No upload of this batch.
    None,
    /// Not all of it has arrived.
    Partial(UploadStatus),
    /// Ready.
    Complete(Complete),
}

impl Uploads {
    /// File-based uploads under `data_dir/uploads`.
    pub fn new(data_dir: &Path, max_total: u64, budget: u64) -> Uploads {
        Uploads::Files(FileUploads::new(data_dir, Limits { max_total, budget }))
    }

    /// Uploads in the PostgreSQL `store`; complete ones are read back into spool files under
    /// `spool_dir` (the node's `tmp/`).
    pub fn in_store(
        store: Arc<PgStore>,
        spool_dir: PathBuf,
        max_total: u64,
        budget: u64,
    ) -> Uploads {
        Uploads::Pg(PgUploads::new(
            store,
            spool_dir,
            Limits { max_total, budget },
        ))
    }

    /// The limits uploads are held to.
    pub fn limits(&self) -> Limits {
        match self {
            Uploads::Files(f) => f.limits,
            Uploads::Pg(p) => p.limits,
        }
    }

    /// How far the upload of `batch` has come.
    pub fn status(
        &self,
        database: i64,
        device: &str,
        batch: &str,
    ) -> Result<Option<UploadStatus>, ApiError> {
        match self {
            Uploads::Files(f) => f.status(database, device, batch),
            Uploads::Pg(p) => p.status(database, device, batch),
        }
    }

    /// Writes one part (`data`, the request body) at `offset` of the upload of `batch`,
    /// creating the upload at its first part.
    pub fn put(
        &self,
        database: i64,
        device: &str,
        batch: &str,
        offset: u64,
        total: u64,
        data: Source<'_>,
    ) -> Result<UploadStatus, ApiError> {
        check_part(self.limits(), offset, total, data.len())?;
        match self {
            Uploads::Files(f) => f.put(database, device, batch, offset, total, data),
            Uploads::Pg(p) => p.put(database, device, batch, offset, total, data),
        }
    }

    /// The upload of `batch`, for the push that completes it.
    pub fn complete(&self, database: i64, device: &str, batch: &str) -> Result<Found, ApiError> {
        match self {
            Uploads::Files(f) => f.complete(database, device, batch),
            Uploads::Pg(p) => p.complete(database, device, batch),
        }
    }

    /// Removes uploads not written to for `ttl`; returns how many.
    pub fn expire(&self, ttl: Duration) -> usize {
        match self {
            Uploads::Files(f) => f.expire(ttl),
            Uploads::Pg(p) => p.expire(ttl),
        }
    }
}

/// The checks of a part that need no upload: a total within the limit, a part within the
/// total. Returns where the part ends.
fn check_part(limits: Limits, offset: u64, total: u64, len: u64) -> Result<u64, ApiError> {
    if total == 0 {
        return Err(bad("an upload has at least one byte".into()));
    }
    if total > limits.max_total {
        return Err(ApiError::Wire(
            ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a batch of {total} bytes is larger than this server takes ({} bytes, max_transaction_bytes)",
                    limits.max_total
                ),
            )
            .with("limit", limits.max_total),
        ));
    }
    offset
        .checked_add(len)
        .filter(|e| *e <= total)
        .ok_or_else(|| {
            bad(format!(
                "a part of {len} bytes at offset {offset} passes the total of {total}"
            ))
        })
}

/// `400 bad_request` with `what`.
fn bad(what: String) -> ApiError {
    ApiError::Wire(ErrorBody::new(ErrorCode::BadRequest, what))
}

/// `400`: a part for an upload started with another total.
fn other_total(declared: u64, total: u64) -> ApiError {
    bad(format!(
        "this upload was started with a total of {declared} bytes, not {total}"
    ))
}

/// `400`: a part that starts past what has arrived.
fn gap(offset: u64, received: u64) -> ApiError {
    bad(format!(
        "a part at offset {offset} leaves a gap: {received} bytes have arrived"
    ))
}

/// `429 too_many_uploads`.
fn too_many(in_progress: usize) -> ApiError {
    ApiError::Wire(
        ErrorBody::new(
            ErrorCode::TooManyUploads,
            format!(
                "this device has {in_progress} uploads in progress (at most {MAX_PER_DEVICE}); finish or abandon one"
            ),
        )
        .with("limit", MAX_PER_DEVICE),
    )
}

/// `507 insufficient_storage`: the upload budget is used up.
fn budget_used_up() -> ApiError {
    ApiError::Wire(ErrorBody::new(
        ErrorCode::InsufficientStorage,
        "the server's room for uploads is used up; retry later",
    ))
}

/// The status answer.
fn status_of(batch: &str, received: u64, total: u64) -> UploadStatus {
    UploadStatus {
        v: VERSION,
        batch_id: batch.to_string(),
        received,
        total,
    }
}
