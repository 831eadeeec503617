//! The sync engine: a pump that moves [`sync_core::client::cycle`]'s steps over a
//! [`Transport`], with retries and backoff. The cycle decides everything — what to push, what
//! to pull, when to bootstrap, when the sync is done — and runs on the writer; this module
//! only talks to the server, and never holds the writer across a network call.
//!
//! [`Syncer`] is what `sync_now` and the background loop share: the engine, and what a sync
//! notes and tells when it ends (the status notes, the change listener, the indexer).

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::live::{Activity, Progress, ProgressUnit, SyncPhase, Told};
use crate::rowid::Rowids;
use crate::settings;
use crate::transport::{OnBytes, SnapshotRequest, Transport};
use crate::writer::Writer;
use rand::RngExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sync_core::client::cycle::{Cycle, CycleConfig, CycleError, CycleReport, Reply, Step};
use sync_core::client::push::BatchBody;
use sync_core::client::state;

/// A listener told which tables changed after remote changes were applied.
pub type ChangeListener = Arc<dyn Fn(&[String]) + Send + Sync>;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Batches the server processed.
    pub pushed_batches: usize,
    /// Transactions in them.
    pub pushed_transactions: usize,
    /// Transactions moved to the rejected queue by this sync (see `Client::rejected`).
    pub rejected_transactions: usize,
    /// Log entries integrated.
    pub pulled_entries: usize,
    /// Whether the local database was re-based on a snapshot.
    pub bootstrapped: bool,
    /// The schema version the local copy was upgraded to by this sync (its pending
    /// transactions kept), if it was.
    pub upgraded_to: Option<u32>,
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

impl From<CycleReport> for SyncReport {
    fn from(r: CycleReport) -> Self {
        let changed_tables = r.touched_tables;
        SyncReport {
            pushed_batches: r.pushed_batches,
            pushed_transactions: r.pushed_transactions,
            rejected_transactions: r.rejected_transactions,
            pulled_entries: r.pulled_entries,
            bootstrapped: r.bootstrapped,
            upgraded_to: r.upgraded_to,
            new_conflicts: r.new_conflicts,
            server_conflicts: r.server_conflicts,
            cursor: r.cursor,
            changed_tables,
        }
    }
}

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub cycle: CycleConfig,
    pub retries: u32,
    /// Where snapshots are downloaded (next to the database, on the same filesystem).
    pub scratch_dir: std::path::PathBuf,
}

pub(crate) struct Engine {
    pub(crate) writer: Arc<Writer>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) rowids: Arc<Rowids>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) config: EngineConfig,
    /// Where the sync says what it is doing, for status subscribers.
    pub(crate) activity: Arc<Activity>,
    /// One sync at a time per database (the cycle requires it).
    running: Mutex<()>,
    /// `PRAGMA data_version` of the writer after the last full check (`None`: none yet). It
    /// changes when another connection — not the library's writer — wrote the file: then the
    /// next sync recomputes the synced state's checksum from the tables.
    checked_version: Mutex<Option<i64>>,
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
        limits: Arc<Limits>,
        config: EngineConfig,
        activity: Arc<Activity>,
    ) -> Engine {
        Engine {
            writer,
            transport,
            rowids,
            limits,
            config,
            activity,
            running: Mutex::new(()),
            checked_version: Mutex::new(None),
        }
    }

    /// Runs `f`, retrying retryable failures with exponential backoff and jitter (never
    /// sooner than the server's `Retry-After`).
    fn retry<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_retryable() && attempt + 1 < self.config.retries => {
                    attempt += 1;
                    let jitter = rand::rng().random_range(0.5..1.5);
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

    /// One full sync: the cycle's steps, each over the transport, until it is done.
    pub(crate) fn sync_once(&self) -> Result<SyncReport> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.refill_rowids();
        self.learn_limits();
        let data_version = self
            .writer
            .run(|conn| conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)))??;
        let checked = *self
            .checked_version
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut cycle = Cycle::new(CycleConfig {
            max_body_bytes: usize::try_from(self.limits.body()).unwrap_or(usize::MAX),
            scratch_dir: Some(self.config.scratch_dir.clone()),
            full_check: checked != Some(data_version),
            ..self.config.cycle.clone()
        });
        if let Some(version) = self.transport.schema_version_seen() {
            cycle.server_schema_version(version);
        }
        let mut cycle = Some(cycle);
        let mut told = Told::new(&self.activity, &self.writer);
        loop {
            let step = self
                .with_cycle(&mut cycle, |c, conn| c.next(conn, &mut new_batch_id))?
                .map_err(|e| self.explain(e))?;
            // The snapshot's directory lives until its file has been fed to the cycle.
            let mut _scratch = None;
            let reply = match step {
                Step::Done => break,
                Step::Push(batch) => {
                    told.pushing(batch.entries, false);
                    let BatchBody::Inline(body) = &batch.body else {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            "the sync cycle asked to push an upload inline",
                        ));
                    };
                    match self.retry(|| self.transport.push(&batch.headers, body)) {
                        Ok(r) => {
                            told.pushing(batch.entries, true);
                            Reply::Pushed(r)
                        }
                        Err(e) => {
                            // `schema_mismatch` starts an upgrade, a history that changed
                            // a re-base; other refusals fail.
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::UploadStatus { batch_id } => {
                    self.activity.phase(SyncPhase::Pushing);
                    Reply::UploadStatus(self.retry(|| self.transport.upload_status(&batch_id))?)
                }
                Step::Upload {
                    batch_id,
                    offset,
                    total,
                    bytes,
                } => {
                    told.bytes(SyncPhase::Pushing, offset, Some(total));
                    let sent =
                        self.retry(|| self.transport.upload_part(&batch_id, offset, total, &bytes));
                    match sent {
                        Ok(received) => {
                            told.bytes(SyncPhase::Pushing, received, Some(total));
                            Reply::Uploaded(received)
                        }
                        Err(e) => {
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::PushUploaded(headers) => {
                    match self.retry(|| self.transport.push_uploaded(&headers)) {
                        Ok(r) => Reply::Pushed(r),
                        Err(e) => {
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::Pull(query) => {
                    told.pulling(query.effective().0, None);
                    let pulled = self.retry(|| self.transport.pull(&query));
                    match pulled {
                        Ok(page) => {
                            told.pulling(
                                page.entries.last().map_or(query.effective().0, |e| e.seq),
                                Some(page.head_seq),
                            );
                            Reply::Page(page)
                        }
                        Err(e) => {
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::Effect { seq, query } => {
                    self.activity.phase(SyncPhase::Pulling);
                    match self.retry(|| self.transport.effect(seq, &query)) {
                        Ok(bytes) => Reply::Effect(bytes),
                        Err(e) => {
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::Migrations { after } => {
                    self.activity.phase(SyncPhase::Upgrading);
                    match self.retry(|| self.transport.migrations(after)) {
                        Ok(answer) => Reply::Migrations(answer),
                        Err(e) => {
                            self.feed_refusal(&mut cycle, e)?;
                            continue;
                        }
                    }
                }
                Step::Snapshot { batch } => {
                    let dir = tempfile::Builder::new()
                        .prefix(".sync-snapshot")
                        .tempdir_in(&self.config.scratch_dir)?;
                    let path = dir.path().join("snapshot.db");
                    let reason = cycle.as_ref().map_or("cursor", |c| c.snapshot_reason());
                    self.activity.phase(SyncPhase::Bootstrapping);
                    let activity = &self.activity;
                    let on_bytes = |done, total| {
                        activity.progress(
                            SyncPhase::Bootstrapping,
                            Progress {
                                done,
                                total,
                                unit: ProgressUnit::Bytes,
                            },
                        )
                    };
                    let got = self.retry(|| {
                        self.transport.snapshot(
                            &path,
                            &SnapshotRequest {
                                reason,
                                batch: batch.as_deref(),
                                key: self.config.cycle.key.as_ref(),
                                progress: Some(OnBytes(&on_bytes)),
                            },
                        )
                    })?;
                    _scratch = Some(dir);
                    Reply::Snapshot {
                        path,
                        batch_seq: batch.as_ref().and(got.batch_seq),
                    }
                }
            };
            let seen = self.transport.schema_version_seen();
            self.with_cycle(&mut cycle, move |c, conn| {
                if let Some(version) = seen {
                    c.server_schema_version(version);
                }
                c.feed(conn, reply, now_ms())
            })?
            .map_err(|e| self.explain(e))?;
        }
        let report = cycle.map(Cycle::into_report).unwrap_or_default();
        *self
            .checked_version
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(data_version);
        for d in &report.divergences {
            // Reported in the log and the status; recovered from the server's copy.
            tracing::error!(
                "local database diverged from the server ({d}); re-based on a snapshot"
            );
        }
        if report.rejected_transactions > 0 {
            tracing::warn!(
                rejected = report.rejected_transactions,
                "local transactions were rejected and kept in the rejected queue (status lists them; redo or discard each)"
            );
        }
        Ok(report.into())
    }

    /// Asks the server for its size limits once per process (and remembers them); a server
    /// that cannot be asked now is asked on the next sync.
    fn learn_limits(&self) {
        if self.limits.learnt() {
            return;
        }
        let Ok(info) = self.transport.info() else {
            return;
        };
        let limits = Arc::clone(&self.limits);
        let stored = match self.writer.run(move |conn| limits.learn(conn, info.limits)) {
            Ok(r) => r.map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not remember the server's limits");
        }
    }

    /// A request the server refused: the cycle may recover from it (a bootstrap, a restarted
    /// upload) — then `Ok` and the sync goes on — or not, and the sync fails with the server's
    /// own error. A failure that is not a server's answer fails the sync as it is.
    fn feed_refusal(&self, cycle: &mut Option<Cycle>, e: Error) -> Result<()> {
        let Some(code) = e.server_body().map(|b| b.code) else {
            return Err(e);
        };
        let fed = self.with_cycle(cycle, move |c, conn| {
            c.feed(conn, Reply::Refused(code), now_ms())
        })?;
        match fed {
            Ok(()) => Ok(()),
            Err(CycleError::Refused(_)) => Err(e),
            Err(other) => Err(self.explain(other)),
        }
    }

    /// Runs `f` on the cycle and the writer connection, on the writer thread.
    fn with_cycle<T: Send + 'static>(
        &self,
        slot: &mut Option<Cycle>,
        f: impl FnOnce(&mut Cycle, &rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T> {
        let mut cycle = slot
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the sync was interrupted"))?;
        let (cycle, out) = self.writer.run(move |conn| {
            let out = f(&mut cycle, conn);
            (cycle, out)
        })?;
        *slot = Some(cycle);
        Ok(out)
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

    /// The cycle's error as the client's, with a schema problem explained: a pulled change or
    /// snapshot that does not fit the local schema is, when the server's database is at
    /// another schema version than the local copy, a schema mismatch (the app must be
    /// upgraded), not a local schema problem. Pushes learn it from the server's
    /// `schema_mismatch` answer; a device with nothing to push learns it here.
    fn explain(&self, e: CycleError) -> Error {
        let e = match e {
            CycleError::Client(c) => Error::from(c),
            other => Error::new(ErrorKind::Internal, other.to_string()),
        };
        if e.kind() != ErrorKind::Schema {
            return e;
        }
        let Ok(Ok(local)) = self.writer.run(|c| state::schema_version(c)) else {
            return e;
        };
        match self.transport.info() {
            Ok(info) if info.schema_version != local => Error::new(
                ErrorKind::SchemaMismatch,
                format!(
                    "the server's database is at schema version {}, this local copy at {local} \
                     ({e}); a newer server schema is applied by the next sync or `upgrade`",
                    info.schema_version
                ),
            ),
            _ => e,
        }
    }
}

/// What `sync_now` and the background loop share: no reference back to the client, so that
/// the client owns its background threads and nothing owns the client.
pub(crate) struct Syncer {
    pub(crate) engine: Option<Engine>,
    pub(crate) writer: Arc<Writer>,
    pub(crate) listener: Mutex<Option<ChangeListener>>,
    /// Wakes the indexer after remote changes.
    pub(crate) indexer: Arc<crate::signal::Signal>,
    pub(crate) sync_interval: Duration,
    /// Told the tables a sync changed (the writer's hook misses `WITHOUT ROWID` tables).
    pub(crate) notifier: Arc<crate::notify::Notifier>,
}

impl Syncer {
    /// One sync with its bookkeeping: the outcome noted for `status`, the listener and the
    /// indexer told about remote changes.
    pub(crate) fn run(&self) -> Result<SyncReport> {
        let engine = self.engine.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no server configured for this database (run init)",
            )
        })?;
        let result = engine.sync_once();
        let note = result.as_ref().err().map(|e| e.to_string());
        let ok = result.is_ok();
        let _ = self.writer.run(move |c| -> rusqlite::Result<()> {
            settings::set(c, settings::LAST_ERROR, note.as_deref())?;
            if ok {
                settings::set(c, settings::LAST_SYNC, Some(&now_ms().to_string()))?;
            }
            Ok(())
        });
        // After the outcome is noted: the status that shows the sync ended shows it too.
        engine.activity.ended(
            result
                .as_ref()
                .map_or_else(|e| e.kind() != ErrorKind::Network, |_| true),
        );
        let report = result?;
        if !report.changed_tables.is_empty() {
            self.notifier.written(&report.changed_tables, false);
            let listener = self
                .listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(l) = listener {
                l(&report.changed_tables);
            }
            self.indexer.wake();
        }
        Ok(report)
    }
}
