//! The large-transaction steps of the cycle: a batch uploaded in parts (resumed from what the
//! server has), an effect fetched in ranges into a scratch file.

use super::{Asked, Cycle, CycleError, Step, Uploading};
use crate::client::ClientError;
use crate::client::push::{BatchBody, PushBatch};
use crate::engine::spool::{self, Spool};
use rusqlite::Connection;

impl Cycle {
    pub(super) fn spool(&self) -> Spool {
        match &self.config.scratch_dir {
            Some(dir) => Spool::new(dir, spool::DEFAULT_THRESHOLD),
            None => Spool::in_memory(),
        }
    }

    /// Asks for `batch`: pushed inline, or uploaded first.
    pub(super) fn send(&mut self, batch: PushBatch, asked: Asked) -> Step {
        match &batch.body {
            BatchBody::Inline(_) => self.ask(asked, Step::Push(batch)),
            BatchBody::Upload(_) => {
                let batch_id = batch.headers.batch_id.clone();
                self.uploading = Some(Uploading {
                    batch,
                    received: None,
                    then: asked,
                });
                self.ask(Asked::UploadStatus, Step::UploadStatus { batch_id })
            }
        }
    }

    /// The next step of an upload in progress.
    pub(super) fn upload_step(&mut self, conn: &Connection) -> Result<Step, CycleError> {
        let up = self.uploading.as_ref().expect("an upload in progress");
        let BatchBody::Upload(body) = &up.batch.body else {
            unreachable!("only upload bodies are uploaded");
        };
        let received = up.received.unwrap_or(0);
        if received >= body.total() {
            let headers = up.batch.headers.clone();
            let then = up.then;
            return Ok(self.ask(then, Step::PushUploaded(headers)));
        }
        let part = (self.config.max_body_bytes as u64).max(1);
        let bytes = body.read(conn, received, part).map_err(ClientError::Io)?;
        let step = Step::Upload {
            batch_id: up.batch.headers.batch_id.clone(),
            offset: received,
            total: body.total(),
            bytes,
        };
        Ok(self.ask(Asked::Upload, step))
    }

    /// Starts the upload over: the next step prepares the batch in flight again and asks
    /// the server how much of it it has.
    pub(super) fn restart_upload(&mut self) -> Result<(), CycleError> {
        self.uploading = None;
        Ok(())
    }

    /// The first pulled entry whose large effect is not fetched yet: its seq and size.
    pub(super) fn unfetched(&self) -> Option<(i64, u64)> {
        self.entries
            .iter()
            .find(|e| e.large.is_some() && self.large.get(e.seq).is_none())
            .map(|e| (e.seq, e.large.unwrap_or(0)))
    }

    pub(super) fn on_effect(
        &mut self,
        conn: &Connection,
        bytes: Vec<u8>,
        now_ms: i64,
    ) -> Result<(), CycleError> {
        let f = self
            .fetching
            .as_mut()
            .ok_or(CycleError::Unexpected("no effect being fetched"))?;
        if bytes.is_empty() || f.spool.len() + bytes.len() as u64 > f.len {
            return Err(CycleError::Client(ClientError::CorruptEntry {
                seq: f.seq,
                what: format!(
                    "its effect of {} bytes arrived as {} bytes",
                    f.len,
                    f.spool.len() + bytes.len() as u64
                ),
            }));
        }
        std::io::Write::write_all(&mut f.spool, &bytes).map_err(ClientError::Io)?;
        if f.spool.len() < f.len {
            return Ok(());
        }
        let f = self.fetching.take().expect("checked above");
        let done = f.spool.finish().map_err(ClientError::Io)?;
        self.large.insert(f.seq, done);
        self.after_page(conn, now_ms)
    }
}
