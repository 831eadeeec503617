//! Multi-part uploads in the PostgreSQL store: so that a client may send each part of a large
//! batch to any node (and push it on yet another), the parts live in the store, not on the
//! node that received them.
//!
//! `sync_uploads` holds one row per upload in progress — its declared total, how many bytes
//! have arrived, when it was started and last written to; `sync_upload_parts` holds the bytes
//! in pieces of at most [`IMAGE_PART`], each at its offset. Parts only ever extend what has
//! arrived (the bytes of an overlapping retry are the same, so its overlap is dropped), so the
//! pieces of an upload tile `0..received` without gaps or overlaps. Every part is one
//! transaction that holds the upload's row (`FOR UPDATE`): two nodes writing parts of one
//! upload take turns. Starting an upload takes an advisory lock first, so the per-device
//! count and the budget across all uploads — all nodes — are checked against a total no
//! other node is changing at the same time.

use super::StoreError;
use super::pg::{IMAGE_PART, PgStore};
use std::io::{Read, Write};
use std::time::Duration;
use sync_core::engine::spool::Source;

/// The advisory lock that serialises starting uploads ("upld" in ASCII).
const START_LOCK: i64 = 0x7570_6c64;

/// Which upload: the database, the device that uploads, its batch id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey {
    /// The database id.
    pub database: i64,
    /// The uploading device.
    pub device: String,
    /// The batch id the upload will be pushed under.
    pub batch_id: String,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRow {
    /// The declared size of the batch body.
    pub total: u64,
    /// Bytes `0..received` have arrived.
    pub received: u64,
}

/// What may start a new upload.
#[derive(Debug, Clone, Copy)]
pub struct StartRules {
    /// Uploads one device may have in progress in one database.
    pub max_per_device: usize,
    /// Bytes all uploads of the store may declare together.
    pub budget: u64,
}

/// Why a part was refused (nothing was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRefused {
    /// The upload was started with another total.
    OtherTotal {
        /// The total it was started with.
        declared: u64,
    },
    /// The part starts past what has arrived.
    Gap {
        /// What has arrived.
        received: u64,
    },
    /// A new upload, but the device has as many in progress as allowed.
    TooMany {
        /// How many it has.
        in_progress: usize,
    },
    /// A new upload that does not fit in the budget.
    Full,
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn row_of(r: &tokio_postgres::Row) -> UploadRow {
    UploadRow {
        total: r.get::<_, i64>(0).max(0) as u64,
        received: r.get::<_, i64>(1).max(0) as u64,
    }
}

impl PgStore {
    /// Where the upload `key` stands, if it is in progress.
    pub fn upload_status(&self, key: &UploadKey) -> Result<Option<UploadRow>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT total, received FROM sync_uploads
                     WHERE database = $1 AND device = $2 AND batch_id = $3",
                    &[&key.database, &key.device, &key.batch_id],
                )
                .await
                .map_err(StoreError::pg)?;
            Ok(row.as_ref().map(row_of))
        })
    }

    /// Writes the part `data` at `offset` of upload `key` of `total` bytes, starting the
    /// upload if it is new (under `rules`), in one transaction: when this returns `Ok(Ok(_))`
    /// the part is committed. The caller has checked that the part lies within `total`.
    pub fn upload_put(
        &self,
        key: &UploadKey,
        offset: u64,
        total: u64,
        data: Source<'_>,
        rules: StartRules,
    ) -> Result<Result<UploadRow, PartRefused>, StoreError> {
        let k = (&key.database, &key.device, &key.batch_id);
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(StoreError::pg)?;
            let select = "SELECT total, received FROM sync_uploads
                          WHERE database = $1 AND device = $2 AND batch_id = $3 FOR UPDATE";
            let mut found = tx
                .query_opt(select, &[k.0, k.1, k.2])
                .await
                .map_err(StoreError::pg)?;
            if found.is_none() {
                if offset > 0 {
                    return Ok(Err(PartRefused::Gap { received: 0 }));
                }
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&START_LOCK])
                    .await
                    .map_err(StoreError::pg)?;
                // Another node may have started this very upload while we waited.
                found = tx
                    .query_opt(select, &[k.0, k.1, k.2])
                    .await
                    .map_err(StoreError::pg)?;
                if found.is_none() {
                    let r = tx
                        .query_one(
                            "SELECT (SELECT count(*) FROM sync_uploads
                                     WHERE database = $1 AND device = $2),
                                    (SELECT coalesce(sum(total), 0)::bigint FROM sync_uploads)",
                            &[k.0, k.1],
                        )
                        .await
                        .map_err(StoreError::pg)?;
                    let in_progress = r.get::<_, i64>(0).max(0) as usize;
                    let declared = r.get::<_, i64>(1).max(0) as u64;
                    if in_progress >= rules.max_per_device {
                        return Ok(Err(PartRefused::TooMany { in_progress }));
                    }
                    if declared.saturating_add(total) > rules.budget {
                        return Ok(Err(PartRefused::Full));
                    }
                    tx.execute(
                        "INSERT INTO sync_uploads(database, device, batch_id, total, received)
                         VALUES ($1, $2, $3, $4, 0)",
                        &[k.0, k.1, k.2, &int(total)],
                    )
                    .await
                    .map_err(StoreError::pg)?;
                }
            }
            let now = found.as_ref().map_or(
                UploadRow { total, received: 0 },
                row_of,
            );
            if now.total != total {
                return Ok(Err(PartRefused::OtherTotal {
                    declared: now.total,
                }));
            }
            if offset > now.received {
                return Ok(Err(PartRefused::Gap {
                    received: now.received,
                }));
            }
            let end = offset + data.len();
            let mut at = now.received;
            if end > at {
                // Only the bytes past what arrived; the overlap is the same bytes again.
                let mut reader = data.slice(at - offset, end - at).reader();
                let mut piece = Vec::with_capacity(IMAGE_PART.min((end - at) as usize));
                while at < end {
                    piece.clear();
                    (&mut reader)
                        .take(IMAGE_PART as u64)
                        .read_to_end(&mut piece)
                        .map_err(|source| StoreError::Io {
                            path: "an upload part".into(),
                            source,
                        })?;
                    if piece.is_empty() {
                        return Err(StoreError::Invalid("an upload part ended early".into()));
                    }
                    tx.execute(
                        "INSERT INTO sync_upload_parts(database, device, batch_id, byte_offset, bytes)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[k.0, k.1, k.2, &int(at), &piece],
                    )
                    .await
                    .map_err(StoreError::pg)?;
                    at += piece.len() as u64;
                }
            }
            tx.execute(
                "UPDATE sync_uploads SET received = $4, touched = now()
                 WHERE database = $1 AND device = $2 AND batch_id = $3",
                &[k.0, k.1, k.2, &int(at)],
            )
            .await
            .map_err(StoreError::pg)?;
            tx.commit().await.map_err(StoreError::pg)?;
            Ok(Ok(UploadRow { total, received: at }))
        })
    }

    /// Where upload `key` stands and, when it is complete, its bytes written to `out` in
    /// order — all from one snapshot, so a push of the same batch on another node removing
    /// the upload meanwhile does not cut it short.
    pub fn upload_read(
        &self,
        key: &UploadKey,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<UploadRow>, StoreError> {
        let k = (&key.database, &key.device, &key.batch_id);
        self.run(async {
            let mut c = self.client().await?;
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(StoreError::pg)?;
            let Some(row) = tx
                .query_opt(
                    "SELECT total, received FROM sync_uploads
                     WHERE database = $1 AND device = $2 AND batch_id = $3",
                    &[k.0, k.1, k.2],
                )
                .await
                .map_err(StoreError::pg)?
                .as_ref()
                .map(row_of)
            else {
                return Ok(None);
            };
            if row.received < row.total {
                return Ok(Some(row));
            }
            let mut at = 0u64;
            while at < row.total {
                let piece = tx
                    .query_opt(
                        "SELECT bytes FROM sync_upload_parts
                         WHERE database = $1 AND device = $2 AND batch_id = $3
                           AND byte_offset = $4",
                        &[k.0, k.1, k.2, &int(at)],
                    )
                    .await
                    .map_err(StoreError::pg)?
                    .map(|r| r.get::<_, Vec<u8>>(0))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "upload of batch {} in database {}: no part at offset {at}",
                            key.batch_id, key.database
                        ))
                    })?;
                out.write_all(&piece).map_err(|source| StoreError::Io {
                    path: "a completed upload".into(),
                    source,
                })?;
                at += piece.len() as u64;
            }
            tx.commit().await.map_err(StoreError::pg)?;
            Ok(Some(row))
        })
    }

    /// Removes upload `key` and its parts; false when there was none.
    pub fn upload_remove(&self, key: &UploadKey) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let n = c
                .execute(
                    "DELETE FROM sync_uploads
                     WHERE database = $1 AND device = $2 AND batch_id = $3",
                    &[&key.database, &key.device, &key.batch_id],
                )
                .await
                .map_err(StoreError::pg)?;
            Ok(n > 0)
        })
    }

    /// Removes the uploads no node wrote to for `ttl` (by PostgreSQL's clock); returns how
    /// many.
    pub fn uploads_expire(&self, ttl: Duration) -> Result<u64, StoreError> {
        let secs = ttl.as_secs_f64();
        self.run(async {
            let c = self.client().await?;
            c.execute(
                "DELETE FROM sync_uploads
                 WHERE touched <= now() - make_interval(secs => $1)",
                &[&secs],
            )
            .await
            .map_err(StoreError::pg)
        })
    }
}
