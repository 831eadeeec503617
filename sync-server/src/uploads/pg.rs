//! Uploads in the PostgreSQL store (`--store`): every part is committed to the store before it
//! is acknowledged, so a client may send each part to another node and push on a third. The
//! statements are `crate::store`'s; this maps their answers to the wire's, and reads a
//! complete upload back into the node's spool (memory when small, else an unlinked file under
//! `tmp/`) for the push.

use super::{
    Complete, CompleteBody, Found, Limits, MAX_PER_DEVICE, budget_used_up, gap, other_total,
    status_of, too_many,
};
use crate::error::ApiError;
use crate::storage::StorageError;
use crate::store::{PartRefused, PgStore, StartRules, StoreError, UploadKey};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use sync_core::engine::spool::{Source, Spool};
use sync_core::protocol::upload::UploadStatus;

/// Uploads as rows of the PostgreSQL store.
#[derive(Debug)]
pub struct PgUploads {
    store: Arc<PgStore>,
    spool_dir: PathBuf,
    pub(super) limits: Limits,
}

fn key(database: i64, device: &str, batch: &str) -> UploadKey {
    UploadKey {
        database,
        device: device.to_string(),
        batch_id: batch.to_string(),
    }
}

/// A store failure: `503 unavailable` when PostgreSQL cannot be reached, else `500`.
fn store_error(e: StoreError) -> ApiError {
    ApiError::Storage(StorageError::Store(e))
}

impl PgUploads {
    /// Uploads in `store`, read back into spools under `spool_dir`.
    pub fn new(store: Arc<PgStore>, spool_dir: PathBuf, limits: Limits) -> PgUploads {
        PgUploads {
            store,
            spool_dir,
            limits,
        }
    }

    /// How far the upload of `batch` has come.
    pub fn status(
        &self,
        database: i64,
        device: &str,
        batch: &str,
    ) -> Result<Option<UploadStatus>, ApiError> {
        let row = self
            .store
            .upload_status(&key(database, device, batch))
            .map_err(store_error)?;
        Ok(row.map(|r| status_of(batch, r.received, r.total)))
    }

    /// Commits one part (checked against the limits by `Uploads::put`).
    pub fn put(
        &self,
        database: i64,
        device: &str,
        batch: &str,
        offset: u64,
        total: u64,
        data: Source<'_>,
    ) -> Result<UploadStatus, ApiError> {
        let rules = StartRules {
            max_per_device: MAX_PER_DEVICE,
            budget: self.limits.budget,
        };
        let k = key(database, device, batch);
        match self
            .store
            .upload_put(&k, offset, total, data, rules)
            .map_err(store_error)?
        {
            Ok(row) => Ok(status_of(batch, row.received, row.total)),
            Err(PartRefused::OtherTotal { declared }) => Err(other_total(declared, total)),
            Err(PartRefused::Gap { received }) => Err(gap(offset, received)),
            Err(PartRefused::TooMany { in_progress }) => Err(too_many(in_progress)),
            Err(PartRefused::Full) => Err(budget_used_up()),
        }
    }

    /// The upload of `batch`: when complete, its bytes in a spool of this node.
    pub fn complete(&self, database: i64, device: &str, batch: &str) -> Result<Found, ApiError> {
        let k = key(database, device, batch);
        let mut spool = Spool::new(&self.spool_dir, crate::body::SPOOL_IN_MEMORY);
        let Some(row) = self
            .store
            .upload_read(&k, &mut spool)
            .map_err(store_error)?
        else {
            return Ok(Found::None);
        };
        if row.received < row.total {
            return Ok(Found::Partial(status_of(batch, row.received, row.total)));
        }
        let spooled = spool
            .finish()
            .map_err(|e| ApiError::from_io("spooling an upload", e))?;
        Ok(Found::Complete(Complete {
            body: CompleteBody::Store {
                spooled,
                store: self.store.clone(),
                key: k,
            },
        }))
    }

    /// Removes uploads no node wrote to for `ttl`; returns how many (0 when the store cannot
    /// be reached: the next pass tries again).
    pub fn expire(&self, ttl: Duration) -> usize {
        match self.store.uploads_expire(ttl) {
            Ok(n) => n as usize,
            Err(e) => {
                tracing::warn!(error = %e, "expiring uploads");
                0
            }
        }
    }
}
