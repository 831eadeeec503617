//! The sync engine: one sync cycle = push the outbox, pull the log and rebase, bootstrap when
//! the cursor fell out of the server's log. The protocol steps are sync-core's
//! ([`sync_core::client`]); this module moves bytes between them and a [`Transport`], with
//! retries, and never holds the writer across a network call.

use crate::error::{Error, ErrorKind, Result};
use crate::rowid::Rowids;
use crate::server_conflicts;
use crate::transport::Transport;
use crate::writer::Writer;
use rand::RngExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sync_core::client::{self, ClientError, PushOutcome};
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::log::LogEntry;
use sync_core::protocol::push::{PushResponse, PushStatus};

/// Entries are pulled in pages of this many…
const PULL_LIMIT: usize = 1000;
/// …and of about this many bytes.
const PULL_MAX_BYTES: usize = 4 << 20;
/// Pages are integrated together (one local transaction) up to about this many bytes.
const INTEGRATE_BUDGET: usize = 16 << 20;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Batches the server processed.
    pub pushed_batches: usize,
    /// Of which rejected.
    pub rejected_batches: usize,
    /// Log entries integrated.
    pub pulled_entries: usize,
    /// Whether the local database was re-based on a snapshot.
    pub bootstrapped: bool,
    /// Local conflicts recorded by this sync.
    pub new_conflicts: usize,
    /// Conflicts the server met in this sync's pushed batches and resolved by its policy
    /// (details in `status().server_conflicts`).
    pub server_conflicts: usize,
    /// Cursor afterwards.
    pub cursor: i64,
    /// Tables with rows changed by remote changes (for UI refresh).
    pub changed_tables: Vec<String>,
}

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub push_max_bytes: usize,
    pub retries: u32,
    /// Where snapshots are downloaded (next to the database, on the same filesystem).
    pub scratch_dir: std::path::PathBuf,
}

pub(crate) struct Engine {
    pub(crate) writer: Arc<Writer>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) rowids: Arc<Rowids>,
    pub(crate) config: EngineConfig,
    /// One sync at a time per database (the client steps require it).
    running: Mutex<()>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 128 random bits in hex: a batch id that never repeats for this device.
fn new_batch_id() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

impl Engine {
    pub(crate) fn new(
        writer: Arc<Writer>,
        transport: Arc<dyn Transport>,
        rowids: Arc<Rowids>,
        config: EngineConfig,
    ) -> Engine {
        Engine {
            writer,
            transport,
            rowids,
            config,
            running: Mutex::new(()),
        }
    }

    /// Runs `f`, retrying retryable failures with exponential backoff and jitter.
    fn retry<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_retryable() && attempt + 1 < self.config.retries => {
                    attempt += 1;
                    let jitter = rand::rng().random_range(0.5..1.5);
                    // A busy server says how long to wait; never retry sooner than that.
                    let wait = delay
                        .mul_f64(jitter)
                        .max(e.retry_after().unwrap_or_default());
                    std::thread::sleep(wait);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// One full sync: push, pull + rebase (bootstrapping if needed), and again while the
    /// first round left work (a batch settled by the pull, more pending changes).
    pub(crate) fn sync_once(&self) -> Result<SyncReport> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = SyncReport::default();
        self.refill_rowids();
        for _ in 0..4 {
            let pushed = self.push_phase(&mut report)?;
            let pulled = self
                .pull_phase(&mut report)
                .map_err(|e| self.explain_schema_error(e))?;
            let pending = self.writer.run(|c| sync_core::outbox::stats(c))??.0;
            if pending == 0 || (pushed == 0 && pulled == 0) {
                break;
            }
        }
        report.cursor = self.writer.run(|c| client::cursor(c))??;
        report.changed_tables.sort();
        report.changed_tables.dedup();
        Ok(report)
    }

    /// Leases more rowids when the ranges run low; failures only matter once they run out.
    fn refill_rowids(&self) {
        let Some(size) = self.rowids.wants_lease() else {
            return;
        };
        match self.transport.lease(size) {
            Ok(lease) => {
                let rowids = Arc::clone(&self.rowids);
                let _ = self
                    .writer
                    .run(move |c| rowids.add_lease(c, lease.start, lease.end));
            }
            Err(e) => tracing::debug!("rowid lease failed: {e}"),
        }
    }

    /// Pushes batches until the outbox is empty or a batch needs a pull to settle. Returns
    /// the number of batches the server processed.
    fn push_phase(&self, report: &mut SyncReport) -> Result<usize> {
        let mut processed = 0;
        loop {
            let max = self.config.push_max_bytes;
            let batch = self
                .writer
                .run(move |c| client::prepare_push(c, max, new_batch_id))??;
            let Some(batch) = batch else {
                return Ok(processed);
            };
            let response = self.retry(|| self.transport.push(&batch.headers, &batch.changeset))?;
            processed += 1;
            report.pushed_batches += 1;
            if response.status == PushStatus::Rejected {
                report.rejected_batches += 1;
            }
            let (outcome, conflicts) = self.settle(response)?;
            report.server_conflicts += conflicts;
            if let PushOutcome::AwaitPull { .. } = outcome {
                return Ok(processed);
            }
        }
    }

    /// Records the conflicts a push answer reports (idempotently: a repeated answer adds
    /// nothing), then settles the answer. Returns the outcome and the conflicts newly recorded.
    fn settle(&self, response: PushResponse) -> Result<(PushOutcome, usize)> {
        self.writer.run(move |c| -> Result<(PushOutcome, usize)> {
            let recorded = server_conflicts::record(c, &response, now_ms())?;
            Ok((client::on_push_response(c, &response)?, recorded))
        })?
    }

    /// A pulled change or snapshot that does not fit the local schema is, when the server's
    /// database is at another schema version than the local copy, a schema mismatch (the app
    /// must be upgraded), not a local schema problem: say so. Pushes learn it from the
    /// server's `schema_mismatch` answer; a device with nothing to push learns it here.
    fn explain_schema_error(&self, e: Error) -> Error {
        if e.kind() != ErrorKind::Schema {
            return e;
        }
        let Ok(Ok(local)) = self.writer.run(|c| client::schema_version(c)) else {
            return e;
        };
        match self.transport.info() {
            Ok(info) if info.schema_version != local => Error::new(
                ErrorKind::SchemaMismatch,
                format!(
                    "the server's database is at schema version {}, this local copy at {local}; \
                     upgrade the app and initialise a new local copy ({e})",
                    info.schema_version
                ),
            ),
            _ => e,
        }
    }

    /// Pulls until the cursor reaches the head, integrating in bounded transactions.
    fn pull_phase(&self, report: &mut SyncReport) -> Result<usize> {
        let mut integrated = 0;
        let mut cursor = self.writer.run(|c| client::cursor(c))??;
        let mut bootstraps = 0;
        loop {
            let mut entries: Vec<LogEntry> = Vec::new();
            let mut bytes = 0;
            let mut more = true;
            while more && bytes < INTEGRATE_BUDGET {
                let since = entries.last().map_or(cursor, |e| e.seq);
                let page =
                    match self.retry(|| self.transport.pull(since, PULL_LIMIT, PULL_MAX_BYTES)) {
                        Ok(page) => page,
                        Err(e) if needs_bootstrap(&e) && entries.is_empty() && bootstraps < 2 => {
                            bootstraps += 1;
                            self.bootstrap(report)?;
                            cursor = report.cursor;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                more = page.more;
                bytes += page.entries.iter().map(|e| e.effect.len()).sum::<usize>();
                entries.extend(page.entries);
            }
            if entries.is_empty() {
                return Ok(integrated);
            }
            let n = entries.len();
            let result = self
                .writer
                .run(move |c| client::integrate(c, &entries, now_ms()))?;
            let r = match result {
                Ok(r) => r,
                Err(e @ (ClientError::Diverged { .. } | ClientError::Gap { .. }))
                    if bootstraps < 2 =>
                {
                    bootstraps += 1;
                    // Reported in the log and the status; recovered from the server's copy.
                    tracing::error!(
                        "local database diverged from the server ({e}); re-basing on a snapshot"
                    );
                    self.bootstrap(report)?;
                    cursor = report.cursor;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            integrated += n;
            report.pulled_entries += n;
            report.new_conflicts += r.new_conflicts;
            if r.own_batch == Some(PushStatus::Rejected) {
                tracing::warn!(
                    "the server rejected a pushed batch; see status for the dropped changes"
                );
            }
            report
                .changed_tables
                .extend(r.touched.into_iter().map(|(t, _)| t));
            cursor = r.cursor;
            if !more {
                return Ok(integrated);
            }
        }
    }

    /// Re-bases the local database on a fresh snapshot. A batch sent but not answered is
    /// pushed again first (same id: the stored answer comes back), because the snapshot
    /// cannot tell whether it contains that batch.
    fn bootstrap(&self, report: &mut SyncReport) -> Result<()> {
        if let Some(f) = self.writer.run(|c| client::inflight(c))??
            && f.acked_seq.is_none()
        {
            let batch = self
                .writer
                .run(|c| client::prepare_push(c, usize::MAX, new_batch_id))??;
            if let Some(batch) = batch {
                let response =
                    self.retry(|| self.transport.push(&batch.headers, &batch.changeset))?;
                report.server_conflicts += self.settle(response)?.1;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(".sync-snapshot")
            .tempdir_in(&self.config.scratch_dir)?;
        let path = dir.path().join("snapshot.db");
        let (seq, _) = self.retry(|| self.transport.snapshot(&path))?;
        let r = self
            .writer
            .run(move |c| client::bootstrap(c, &path, now_ms()))??;
        report.bootstrapped = true;
        report.new_conflicts += r.new_conflicts;
        report.cursor = seq;
        report
            .changed_tables
            .extend(r.touched.into_iter().map(|(t, _)| t));
        Ok(())
    }
}

fn needs_bootstrap(e: &Error) -> bool {
    e.server_body()
        .is_some_and(|b| matches!(b.code, ErrorCode::CursorTooOld | ErrorCode::CursorAhead))
}
