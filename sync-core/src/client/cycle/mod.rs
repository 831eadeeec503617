//! One sync, as a sans-IO state machine. [`Cycle::next`] says what to send — a batch to push,
//! a page to pull, a snapshot to download — or that the sync is done; [`Cycle::feed`] takes
//! the server's answer. The pump moves the bytes: the client library over HTTP (with its
//! retries), the in-process convergence test straight into the server's steps (with its
//! faults). The rules live here once:
//!
//! 1. **Push** the outbox batch by batch until it is empty or an answer needs a pull to settle
//!    (anything but a clean answer with nothing interleaved). A batch larger than one request
//!    (one large transaction) is uploaded in parts first — resuming from what the server
//!    already has — and then pushed by name.
//! 2. **Pull** pages and integrate them, several pages per local transaction up to a byte
//!    budget, until the server has nothing more. An effect too large for a page is fetched in
//!    ranges into a scratch file first.
//! 3. **Bootstrap** when the server says the cursor is out of its log (`cursor_too_old`,
//!    `cursor_ahead`) or integrating finds divergence: first push the batch in flight again if
//!    its answer never came (a snapshot cannot tell whether it contains that batch), then
//!    download a snapshot and re-base on it, keeping pending changes. At most
//!    [`CycleConfig::max_bootstraps`] per round.
//! 4. **Upgrade** when the server's schema version is newer than the local copy's
//!    (`schema_mismatch`, or a version an answer showed): the scripts are fetched and run in
//!    place, each at the log position the server ran it at, pending changes kept
//!    (`cycle/upgrade.rs`).
//! 5. **Again** while the round left work (pending changes and progress), at most
//!    [`CycleConfig::max_rounds`] rounds.
//!
//! The cycle borrows the writer connection only inside `next` and `feed`, never across the
//! network. A failure to reach the server is the pump's business: it drops the cycle (all
//! state that matters is in the database) and the next sync starts a new one.

mod config;
mod large;
mod upgrade;

use super::ClientError;
use super::bootstrap::bootstrap;
use super::integrate::{LargeEffects, integrate_with};
use super::push::{PushBatch, PushOutcome, on_push_response, prepare_push};
use super::report::TouchedRow;
use super::state::{cursor, inflight};
use crate::engine::outbox;
use crate::engine::spool::Spool;
use crate::protocol::error::ErrorCode;
use crate::protocol::migrations::Migrations;
use crate::protocol::pull::{LogEntry, LogPage, PullQuery};
use crate::protocol::push::PushHeaders;
use crate::protocol::push::PushResponse;
use rusqlite::Connection;
use std::path::PathBuf;
use upgrade::Upgrading;

pub use config::CycleConfig;

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
        /// First byte.
        offset: u64,
        /// Most bytes.
        len: u64,
    },
    /// Download a snapshot to a file; answer with [`Reply::Snapshot`].
    Snapshot,
    /// Fetch the migration scripts after this schema version; answer with
    /// [`Reply::Migrations`].
    Migrations {
        /// The local schema version.
        after: u32,
    },
    /// The sync is complete; [`Cycle::report`] says what it did.
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
    Snapshot(PathBuf),
    /// The migration scripts.
    Migrations(Migrations),
    /// The server answered with an error envelope of this code.
    Refused(ErrorCode),
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    /// Batches the server processed.
    pub pushed_batches: usize,
    /// Transactions in them.
    pub pushed_transactions: usize,
    /// Transactions moved to the rejected queue (by the server's answers, or by a rebase).
    pub rejected_transactions: usize,
    /// Log entries integrated.
    pub pulled_entries: usize,
    /// Whether the local database was re-based on a snapshot.
    pub bootstrapped: bool,
    /// The schema version the local copy was upgraded to, if it was.
    pub upgraded_to: Option<u32>,
    /// Local conflicts recorded.
    pub new_conflicts: usize,
    /// Conflicts the server reported for this sync's pushes, newly recorded.
    pub server_conflicts: usize,
    /// Divergences found while integrating (and repaired by a bootstrap), described.
    pub divergences: Vec<String>,
    /// The cursor at the end.
    pub cursor: i64,
    /// Rows that may have changed (remote changes and re-based pending ones; none listed
    /// past [`crate::client::report::MAX_TOUCHED_ROWS`] per integration).
    pub touched: Vec<TouchedRow>,
    /// Tables with rows that may have changed, sorted, each once.
    pub touched_tables: Vec<String>,
}

/// Why a cycle stopped before it was done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CycleError {
    /// A local step failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server refused a request in a way the cycle does not recover from; the pump reports
    /// the server's own error.
    #[error("the server refused with {0}")]
    Refused(ErrorCode),
    /// `feed` got an answer to something that was not asked (a pump bug).
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
}

impl From<rusqlite::Error> for CycleError {
    fn from(e: rusqlite::Error) -> Self {
        CycleError::Client(ClientError::Sqlite(e))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Push,
    Pull,
    /// Large effects of pulled entries being fetched.
    Fetch,
    Bootstrap,
    /// The local schema is behind the server's (`upgrade.rs`).
    Upgrade,
    EndOfRound,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Push,
    /// The in-flight batch, pushed again before a snapshot.
    BootstrapPush,
    UploadStatus,
    Upload,
    Pull,
    Effect,
    Snapshot,
    Migrations,
}

/// A batch being uploaded.
#[derive(Debug)]
struct Uploading {
    batch: PushBatch,
    /// Bytes the server has; `None` until asked.
    received: Option<u64>,
    /// Pushed as [`Asked::Push`] or [`Asked::BootstrapPush`] once complete.
    then: Asked,
}

/// A large effect being fetched.
#[derive(Debug)]
struct Fetching {
    seq: i64,
    len: u64,
    spool: Spool,
}

/// One sync in progress. See the module docs.
#[derive(Debug)]
pub struct Cycle {
    config: CycleConfig,
    phase: Phase,
    asked: Option<Asked>,
    round: u32,
    bootstraps: u32,
    pushed_in_round: usize,
    pulled_in_round: usize,
    /// Pulled entries not integrated yet, and their effects' size.
    entries: Vec<LogEntry>,
    entry_bytes: usize,
    /// Whether the last page said more entries follow.
    more: bool,
    /// Large effects of `entries`, fetched.
    large: LargeEffects,
    fetching: Option<Fetching>,
    uploading: Option<Uploading>,
    upgrade: Upgrading,
    report: CycleReport,
}

impl Cycle {
    /// A sync about to start.
    pub fn new(config: CycleConfig) -> Cycle {
        Cycle {
            config,
            phase: Phase::Push,
            asked: None,
            round: 0,
            bootstraps: 0,
            pushed_in_round: 0,
            pulled_in_round: 0,
            entries: Vec::new(),
            entry_bytes: 0,
            more: false,
            large: LargeEffects::default(),
            fetching: None,
            uploading: None,
            upgrade: Upgrading::default(),
            report: CycleReport::default(),
        }
    }

    /// What the sync did so far (complete once [`Step::Done`] was returned).
    pub fn report(&self) -> &CycleReport {
        &self.report
    }

    /// Gives the report back.
    pub fn into_report(self) -> CycleReport {
        self.report
    }

    /// The next step. `new_batch_id` names a new batch and must never repeat for this device.
    pub fn next(
        &mut self,
        conn: &Connection,
        new_batch_id: &mut dyn FnMut() -> String,
    ) -> Result<Step, CycleError> {
        loop {
            match self.phase {
                _ if self
                    .uploading
                    .as_ref()
                    .is_some_and(|u| u.received.is_some()) =>
                {
                    return self.upload_step(conn);
                }
                Phase::Push if self.wants_upgrade(conn)? => self.start_upgrade(),
                Phase::Upgrade => return self.upgrade_step(conn),
                Phase::Push => {
                    let (max, body) = (self.config.push_max_bytes, self.config.max_body_bytes);
                    match prepare_push(conn, max, body, &mut *new_batch_id)? {
                        Some(batch) => return Ok(self.send(batch, Asked::Push)),
                        None => self.phase = Phase::Pull,
                    }
                }
                Phase::Fetch => {
                    if self.fetching.is_none() {
                        let (seq, len) = self
                            .unfetched()
                            .ok_or(CycleError::Unexpected("nothing left to fetch"))?;
                        self.fetching = Some(Fetching {
                            seq,
                            len,
                            spool: self.spool(),
                        });
                    }
                    let f = self.fetching.as_ref().expect("just set");
                    let offset = f.spool.len();
                    let len = (f.len - offset).min(self.config.effect_part_bytes.max(1));
                    let seq = f.seq;
                    return Ok(self.ask(Asked::Effect, Step::Effect { seq, offset, len }));
                }
                Phase::Pull => {
                    let since = match self.entries.last() {
                        Some(e) => e.seq,
                        None => cursor(conn)?,
                    };
                    let limit = self.pull_limit(since);
                    let query = PullQuery::after(since, limit, self.config.pull_max_bytes);
                    return Ok(self.ask(Asked::Pull, Step::Pull(query)));
                }
                Phase::Bootstrap => {
                    let unanswered = inflight(conn)?.is_some_and(|f| f.acked_seq.is_none());
                    if unanswered
                        && let Some(batch) = prepare_push(
                            conn,
                            usize::MAX,
                            self.config.max_body_bytes,
                            &mut *new_batch_id,
                        )?
                    {
                        return Ok(self.send(batch, Asked::BootstrapPush));
                    }
                    return Ok(self.ask(Asked::Snapshot, Step::Snapshot));
                }
                Phase::EndOfRound => {
                    self.round += 1;
                    let pending = outbox::stats(conn)?.0;
                    let progress = self.pushed_in_round + self.pulled_in_round > 0;
                    if pending == 0 || !progress || self.round >= self.config.max_rounds {
                        self.phase = Phase::Done;
                    } else {
                        self.pushed_in_round = 0;
                        self.pulled_in_round = 0;
                        self.bootstraps = 0;
                        self.phase = Phase::Push;
                    }
                }
                Phase::Done => {
                    self.report.cursor = cursor(conn)?;
                    self.report.touched_tables.sort();
                    self.report.touched_tables.dedup();
                    return Ok(Step::Done);
                }
            }
        }
    }

    fn ask(&mut self, asked: Asked, step: Step) -> Step {
        self.asked = Some(asked);
        step
    }

    /// Takes the answer to the last step.
    pub fn feed(&mut self, conn: &Connection, reply: Reply, now_ms: i64) -> Result<(), CycleError> {
        let asked = self
            .asked
            .take()
            .ok_or(CycleError::Unexpected("nothing was asked"))?;
        match (asked, reply) {
            (Asked::Push | Asked::BootstrapPush, Reply::Pushed(response)) => {
                self.uploading = None;
                self.report.pushed_batches += 1;
                self.report.pushed_transactions += response.transactions.len();
                let settled = on_push_response(conn, &response, now_ms)?;
                self.report.server_conflicts += settled.new_conflicts;
                self.pushed_in_round += 1;
                if asked == Asked::Push {
                    self.phase = match settled.outcome {
                        PushOutcome::Settled { .. } => Phase::Push,
                        PushOutcome::AwaitPull { .. } => Phase::Pull,
                    };
                }
                Ok(())
            }
            (Asked::Push | Asked::BootstrapPush, Reply::Refused(ErrorCode::SchemaMismatch)) => {
                self.on_schema_mismatch(conn)
            }
            (Asked::Migrations, Reply::Migrations(answer)) => {
                self.on_migrations(conn, answer, now_ms)
            }
            (Asked::Push | Asked::BootstrapPush, Reply::Refused(ErrorCode::UploadIncomplete))
                if self.uploading.is_some() =>
            {
                // The server lost or expired part of the upload: ask again, resume from there.
                self.restart_upload()
            }
            (Asked::UploadStatus, Reply::UploadStatus(received)) => {
                let up = self
                    .uploading
                    .as_mut()
                    .ok_or(CycleError::Unexpected("no upload in progress"))?;
                up.received = Some(received.unwrap_or(0));
                Ok(())
            }
            (Asked::Upload, Reply::Uploaded(received)) => {
                let up = self
                    .uploading
                    .as_mut()
                    .ok_or(CycleError::Unexpected("no upload in progress"))?;
                if up.received.is_some_and(|had| received <= had) {
                    return Err(CycleError::Unexpected("an upload part made no progress"));
                }
                up.received = Some(received);
                Ok(())
            }
            (Asked::Upload, Reply::Refused(ErrorCode::BadRequest)) if self.uploading.is_some() => {
                // A part the server found out of place (its upload expired meanwhile).
                self.restart_upload()
            }
            (Asked::Pull, Reply::Page(page)) => self.on_page(conn, page, now_ms),
            (Asked::Effect, Reply::Effect(bytes)) => self.on_effect(conn, bytes, now_ms),
            (
                Asked::Pull | Asked::Effect,
                Reply::Refused(
                    ErrorCode::CursorTooOld | ErrorCode::CursorAhead | ErrorCode::NotFound,
                ),
            ) if self.bootstraps < self.config.max_bootstraps => {
                // Pages pulled before the log moved out of reach are superseded by the
                // snapshot (an effect compacted away while it was fetched, likewise).
                self.entries.clear();
                self.entry_bytes = 0;
                self.large.clear();
                self.fetching = None;
                self.bootstraps += 1;
                self.phase = Phase::Bootstrap;
                Ok(())
            }
            (Asked::Snapshot, Reply::Snapshot(path)) => {
                if !self.upgrade_for_snapshot(conn, &path, now_ms)? {
                    return Ok(());
                }
                let scratch = self.config.scratch_dir.clone();
                let r = bootstrap(conn, &path, scratch.as_deref(), now_ms)?;
                self.report.bootstrapped = true;
                self.report.new_conflicts += r.new_conflicts;
                self.report.rejected_transactions += r.new_rejected;
                self.report.touched.extend(r.touched);
                self.report.touched_tables.extend(r.touched_tables);
                self.phase = Phase::Pull;
                Ok(())
            }
            (_, Reply::Refused(code)) => Err(CycleError::Refused(code)),
            (Asked::Push | Asked::BootstrapPush, _) => Err(CycleError::Unexpected(
                "a push was answered with something else",
            )),
            (Asked::UploadStatus | Asked::Upload, _) => Err(CycleError::Unexpected(
                "an upload was answered with something else",
            )),
            (Asked::Pull, _) => Err(CycleError::Unexpected(
                "a pull was answered with something else",
            )),
            (Asked::Effect, _) => Err(CycleError::Unexpected(
                "an effect range was answered with something else",
            )),
            (Asked::Snapshot, _) => Err(CycleError::Unexpected(
                "a snapshot was answered with something else",
            )),
            (Asked::Migrations, _) => Err(CycleError::Unexpected(
                "migrations were answered with something else",
            )),
        }
    }

    fn on_page(&mut self, conn: &Connection, page: LogPage, now_ms: i64) -> Result<(), CycleError> {
        self.more = page.more && !page.entries.is_empty();
        self.entry_bytes += page
            .entries
            .iter()
            .map(|e| e.large.map_or(e.effect.len(), |n| n as usize))
            .sum::<usize>();
        self.entries.extend(page.entries);
        self.after_page(conn, now_ms)
    }

    /// After a page (or the last range of a large effect): fetch what is large, pull more
    /// while under the budget, else integrate what was pulled.
    fn after_page(&mut self, conn: &Connection, now_ms: i64) -> Result<(), CycleError> {
        if self.wants_upgrade(conn)? {
            self.start_upgrade();
            return Ok(());
        }
        if self.unfetched().is_some() {
            self.phase = Phase::Fetch;
            return Ok(());
        }
        let more = self.more && !self.pull_bound_reached();
        if more && self.entry_bytes < self.config.integrate_budget {
            self.phase = Phase::Pull;
            return Ok(());
        }
        let entries = std::mem::take(&mut self.entries);
        self.entry_bytes = 0;
        if entries.is_empty() {
            if self.upgrading() {
                return self.after_upgrade_pull(conn, 0, now_ms);
            }
            self.phase = Phase::EndOfRound;
            return Ok(());
        }
        let n = entries.len();
        let scratch = self.config.scratch_dir.clone();
        let integrated = integrate_with(conn, &entries, &self.large, scratch.as_deref(), now_ms);
        self.large.clear();
        match integrated {
            Ok(r) => {
                self.pulled_in_round += n;
                self.report.pulled_entries += n;
                self.report.new_conflicts += r.new_conflicts;
                self.report.rejected_transactions += r.new_rejected;
                self.report.touched.extend(r.touched);
                self.report.touched_tables.extend(r.touched_tables);
                if self.upgrading() {
                    return self.after_upgrade_pull(conn, n, now_ms);
                }
                self.phase = if more { Phase::Pull } else { Phase::EndOfRound };
                Ok(())
            }
            Err(e @ (ClientError::Diverged { .. } | ClientError::Gap { .. }))
                if self.bootstraps < self.config.max_bootstraps =>
            {
                // Recovered from the server's copy, and reported.
                self.bootstraps += 1;
                self.report.divergences.push(e.to_string());
                self.phase = Phase::Bootstrap;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
