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
mod outcome;
mod steps;
mod upgrade;
mod verify;

pub use config::CycleConfig;
pub use outcome::{CycleError, CycleReport};
pub use steps::{Reply, Step};
pub use verify::synced_sum;

use super::ClientError;
use super::bootstrap::bootstrap;
use super::integrate::{Expect, LargeEffects, integrate_with};
use super::push::{PushBatch, PushOutcome, on_push_response, prepare_push};
use super::state::{cursor, inflight};
use crate::engine::outbox;
use crate::engine::spool::Spool;
use crate::protocol::error::ErrorCode;
use crate::protocol::lineage::Tip;
use crate::protocol::pull::{LogEntry, LogPage, PullQuery};
use crate::protocol::upload::EffectQuery;
use rusqlite::Connection;
use upgrade::Upgrading;

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
    /// The last page's position (after its last entry).
    tip: Option<Tip>,
    /// The full check of [`CycleConfig::full_check`] was done.
    checked: bool,
    /// Why the next snapshot is wanted.
    snapshot_reason: &'static str,
    /// The server's head as the last page said.
    head_seq: Option<i64>,
    /// The batch in flight was pushed again for the bootstrap under way.
    repushed: bool,
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
            tip: None,
            checked: false,
            snapshot_reason: "cursor",
            head_seq: None,
            repushed: false,
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
                    let query = EffectQuery {
                        offset,
                        len,
                        lineage: self.tip.map(|t| t.lineage),
                        at: self.tip.map(|t| t.seq),
                        chain: self.tip.map(|t| t.chain),
                    };
                    return Ok(self.ask(Asked::Effect, Step::Effect { seq, query }));
                }
                Phase::Pull => {
                    if let Some(phase) = self.rebase_first(conn)? {
                        self.phase = phase;
                        continue;
                    }
                    let since = match self.entries.last() {
                        Some(e) => e.seq,
                        None => cursor(conn)?,
                    };
                    let limit = self.pull_limit(since);
                    let query = PullQuery::after(since, limit, self.config.pull_max_bytes)
                        .at(self.claimed(conn)?)
                        .schema(super::state::schema_version(conn)?);
                    return Ok(self.ask(Asked::Pull, Step::Pull(query)));
                }
                Phase::Bootstrap => {
                    // The batch in flight is pushed again first, answered or not: the server's
                    // idempotency record says where it stands in the history the snapshot
                    // comes from (an answer kept from before may name an entry a restore or a
                    // lost tail took away).
                    if !self.repushed && inflight(conn)?.is_some() {
                        super::state::forget_answer(conn)?;
                        self.repushed = true;
                    }
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
                    let batch = inflight(conn)?.map(|f| f.batch_id);
                    return Ok(self.ask(Asked::Snapshot, Step::Snapshot { batch }));
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
            (
                Asked::Push | Asked::BootstrapPush | Asked::Pull | Asked::Effect,
                Reply::Refused(code @ (ErrorCode::LineageMismatch | ErrorCode::ChainMismatch)),
            ) if self.bootstraps < self.config.max_bootstraps => self.history_changed(conn, code),
            (Asked::Push | Asked::BootstrapPush, Reply::Refused(ErrorCode::SchemaMismatch)) => {
                self.on_schema_mismatch(conn)
            }
            (Asked::Pull, Reply::Refused(ErrorCode::SchemaMismatch))
                if self.bootstraps < self.config.max_bootstraps =>
            {
                // The cursor reached the position of a migration this copy has not run (the
                // server says where it ran it, in its history as it is now): upgrade first.
                self.bootstraps += 1;
                self.abandon_upgrade();
                self.start_upgrade();
                Ok(())
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
                    code @ (ErrorCode::CursorTooOld | ErrorCode::CursorAhead | ErrorCode::NotFound),
                ),
            ) if self.bootstraps < self.config.max_bootstraps => {
                // Pages pulled before the log moved out of reach are superseded by the
                // snapshot (an effect compacted away while it was fetched, likewise). A cursor
                // ahead of the head means the history was rewound: the answer of a batch in
                // flight may name an entry that is gone, so it is pushed again first.
                if code == ErrorCode::CursorAhead {
                    super::state::forget_position(conn)?;
                    self.abandon_upgrade();
                }
                self.entries.clear();
                self.entry_bytes = 0;
                self.large.clear();
                self.fetching = None;
                self.bootstraps += 1;
                self.snapshot_reason = "cursor";
                self.phase = Phase::Bootstrap;
                Ok(())
            }
            (Asked::Snapshot, Reply::Snapshot { path, batch_seq }) => {
                if !self.upgrade_for_snapshot(conn, &path, now_ms)? {
                    return Ok(());
                }
                self.repushed = false;
                let scratch = self.config.scratch_dir.clone();
                let key = self.config.key.clone();
                let r = match bootstrap(
                    conn,
                    &path,
                    scratch.as_deref(),
                    batch_seq,
                    now_ms,
                    key.as_ref(),
                ) {
                    Err(ClientError::InflightUnresolved { .. })
                        if self.bootstraps < self.config.max_bootstraps =>
                    {
                        // Its answer is from another history: push it again, then re-base.
                        super::state::forget_answer(conn)?;
                        self.bootstraps += 1;
                        self.phase = Phase::Bootstrap;
                        return Ok(());
                    }
                    r => r?,
                };
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
        self.tip = page.tip;
        self.head_seq = Some(page.head_seq);
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
            return self.verify_idle(conn);
        }
        let n = entries.len();
        let scratch = self.config.scratch_dir.clone();
        let tip = self.tip;
        let full = self.config.full_check && !self.checked;
        let expect = Expect {
            tip: tip.as_ref(),
            full,
        };
        let integrated = integrate_with(
            conn,
            &entries,
            &self.large,
            scratch.as_deref(),
            expect,
            now_ms,
        );
        self.large.clear();
        match integrated {
            Ok(r) => {
                self.checked |= full;
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
            Err(
                e @ (ClientError::Diverged { .. }
                | ClientError::Gap { .. }
                | ClientError::ChecksumMismatch { .. }),
            ) if self.bootstraps < self.config.max_bootstraps => self.repair(conn, e),
            Err(e) => Err(e.into()),
        }
    }
}
