//! Whole-file images in the store: written in parts by the node that made them, read back in
//! parts by a node that starts a copy from one.

use super::StoreError;
use super::pg::{Appended, FrameKind, IMAGE_PART, PgStore, insert_frame, notify, unique_violation};

impl PgStore {
    /// Stores `bytes` as the image of `file` at `version`. With `replace`, the image is also
    /// the frame at `version` (the file was replaced: schema change, import), refused as
    /// [`Appended::Stale`] when that version was taken; without, it is a checkpoint of an
    /// existing version, and frames and images older than it are pruned.
    pub fn put_image(
        &self,
        file: i64,
        version: i64,
        bytes: &[u8],
        replace: bool,
    ) -> Result<Appended, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(StoreError::pg)?;
            if replace
                && insert_frame(&tx, file, version, FrameKind::Image, &[]).await? == Appended::Stale
            {
                return Ok(Appended::Stale);
            }
            let parts = bytes.chunks(IMAGE_PART).count().max(1) as i32;
            let len = bytes.len() as i64;
            match tx
                .execute(
                    "INSERT INTO sync_images(file, version, parts, len) VALUES ($1, $2, $3, $4)",
                    &[&file, &version, &parts, &len],
                )
                .await
            {
                Ok(_) => {}
                // Another node checkpointed the same version: the same bytes, keep theirs.
                Err(e) if unique_violation(&e) && !replace => return Ok(Appended::Done),
                Err(e) => return Err(StoreError::pg(e)),
            }
            for (i, part) in bytes.chunks(IMAGE_PART).enumerate() {
                let i = i as i32;
                tx.execute(
                    "INSERT INTO sync_image_parts(file, version, part, bytes)
                     VALUES ($1, $2, $3, $4)",
                    &[&file, &version, &i, &part],
                )
                .await
                .map_err(StoreError::pg)?;
            }
            // Everything before the newest image is no longer needed to rebuild the file.
            for sql in [
                "DELETE FROM sync_image_parts WHERE file = $1 AND version < $2",
                "DELETE FROM sync_images WHERE file = $1 AND version < $2",
                "DELETE FROM sync_frames WHERE file = $1 AND version < $2",
            ] {
                tx.execute(sql, &[&file, &version])
                    .await
                    .map_err(StoreError::pg)?;
            }
            if replace {
                notify(&tx, file, version, 0).await?;
            }
            tx.commit().await.map_err(StoreError::pg)?;
            Ok(Appended::Done)
        })
    }

    /// The image of `file` at `version`, its parts written to `out` in order.
    pub fn image(
        &self,
        file: i64,
        version: i64,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        let parts: i32 = self.run(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT parts FROM sync_images WHERE file = $1 AND version = $2",
                    &[&file, &version],
                )
                .await
                .map_err(StoreError::pg)?;
            row.map(|r| r.get(0)).ok_or_else(|| {
                StoreError::Invalid(format!("file {file}: no image at version {version}"))
            })
        })?;
        let mut written = 0u64;
        for part in 0..parts {
            let bytes: Vec<u8> = self.run(async {
                let c = self.client().await?;
                let row = c
                    .query_one(
                        "SELECT bytes FROM sync_image_parts
                         WHERE file = $1 AND version = $2 AND part = $3",
                        &[&file, &version, &part],
                    )
                    .await
                    .map_err(StoreError::pg)?;
                Ok::<_, StoreError>(row.get(0))
            })?;
            out.write_all(&bytes).map_err(|source| StoreError::Io {
                path: format!("image of file {file}"),
                source,
            })?;
            written += bytes.len() as u64;
        }
        Ok(written)
    }
}
