//! One sync, as a sans-IO state machine. [`Cycle::next`] says what to send — a batch to push,
//! a page to pull, a snapshot to download — or that the sync is done; [`Cycle::feed`] takes
//! the server's answer. The pump moves the bytes: the client library over HTTP (with its
//! retries), the in-process convergence test straight into the server's steps (with its
//! faults). The rules live here once:
//!
//! 1. **Push** the outbox batch by batch until it is empty or an answer needs a pull to settle
//!    (anything but a clean answer with nothing interleaved).
//! 2. **Pull** pages and integrate them, several pages per local transaction up to a byte
//!    budget, until the server has nothing more.
//! 3. **Bootstrap** when the server says the cursor is out of its log (`cursor_too_old`,
//!    `cursor_ahead`) or integrating finds divergence: first push the batch in flight again if
//!    its answer never came (a snapshot cannot tell whether it contains that batch), then
//!    download a snapshot and re-base on it, keeping pending changes. At most
//!    [`CycleConfig::max_bootstraps`] per round.
//! 4. **Again** while the round left work (pending changes and progress), at most
//!    [`CycleConfig::max_rounds`] rounds.
//!
//! The cycle borrows the writer connection only inside `next` and `feed`, never across the
//! network. A failure to reach the server is the pump's business: it drops the cycle (all
//! state that matters is in the database) and the next sync starts a new one.

use super::ClientError;
use super::bootstrap::bootstrap;
use super::integrate::integrate;
use super::push::{PushBatch, PushOutcome, on_push_response, prepare_push};
use super::report::TouchedRow;
use super::state::{cursor, inflight};
use crate::engine::outbox;
use crate::protocol::error::ErrorCode;
use crate::protocol::pull::{DEFAULT_LIMIT, DEFAULT_MAX_BYTES, LogEntry, LogPage, PullQuery};
use crate::protocol::push::PushResponse;
use rusqlite::Connection;
use std::path::PathBuf;

/// The cycle's limits.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// About the most bytes of pending changesets in one push.
    pub push_max_bytes: usize,
    /// Entries asked for per pull page.
    pub pull_limit: usize,
    /// Bytes asked for per pull page.
    pub pull_max_bytes: usize,
    /// Pages are integrated together, in one local transaction, up to about this many bytes.
    pub integrate_budget: usize,
    /// Push-and-pull rounds in one sync.
    pub max_rounds: u32,
    /// Bootstraps in one round.
    pub max_bootstraps: u32,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            push_max_bytes: 1 << 20,
            pull_limit: DEFAULT_LIMIT,
            pull_max_bytes: DEFAULT_MAX_BYTES,
            integrate_budget: 16 << 20,
            max_rounds: 4,
            max_bootstraps: 2,
        }
    }
}

/// What the pump should do next.
#[derive(Debug)]
pub enum Step {
    /// Push this batch; answer with [`Reply::Pushed`].
    Push(PushBatch),
    /// Pull this page; answer with [`Reply::Page`].
    Pull(PullQuery),
    /// Download a snapshot to a file; answer with [`Reply::Snapshot`].
    Snapshot,
    /// The sync is complete; [`Cycle::report`] says what it did.
    Done,
}

/// The server's answer to the last [`Step`].
#[derive(Debug)]
pub enum Reply {
    /// The push answer (200, or a `push_rejected` answer read with
    /// [`PushResponse::from_rejection`]).
    Pushed(PushResponse),
    /// The pulled page.
    Page(LogPage),
    /// The downloaded snapshot file (it may be removed once `feed` returns).
    Snapshot(PathBuf),
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
    /// Local conflicts recorded.
    pub new_conflicts: usize,
    /// Conflicts the server reported for this sync's pushes, newly recorded.
    pub server_conflicts: usize,
    /// Divergences found while integrating (and repaired by a bootstrap), described.
    pub divergences: Vec<String>,
    /// The cursor at the end.
    pub cursor: i64,
    /// Rows that may have changed (remote changes and re-based pending ones).
    pub touched: Vec<TouchedRow>,
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
    Bootstrap,
    EndOfRound,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Push,
    /// The in-flight batch, pushed again before a snapshot.
    BootstrapPush,
    Pull,
    Snapshot,
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
                Phase::Push => {
                    match prepare_push(conn, self.config.push_max_bytes, &mut *new_batch_id)? {
                        Some(batch) => return Ok(self.ask(Asked::Push, Step::Push(batch))),
                        None => self.phase = Phase::Pull,
                    }
                }
                Phase::Pull => {
                    let since = match self.entries.last() {
                        Some(e) => e.seq,
                        None => cursor(conn)?,
                    };
                    let query =
                        PullQuery::after(since, self.config.pull_limit, self.config.pull_max_bytes);
                    return Ok(self.ask(Asked::Pull, Step::Pull(query)));
                }
                Phase::Bootstrap => {
                    let unanswered = inflight(conn)?.is_some_and(|f| f.acked_seq.is_none());
                    if unanswered
                        && let Some(batch) = prepare_push(conn, usize::MAX, &mut *new_batch_id)?
                    {
                        return Ok(self.ask(Asked::BootstrapPush, Step::Push(batch)));
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
            (Asked::Pull, Reply::Page(page)) => self.on_page(conn, page, now_ms),
            (Asked::Pull, Reply::Refused(ErrorCode::CursorTooOld | ErrorCode::CursorAhead))
                if self.bootstraps < self.config.max_bootstraps =>
            {
                // Pages pulled before the log moved out of reach are superseded by the
                // snapshot.
                self.entries.clear();
                self.entry_bytes = 0;
                self.bootstraps += 1;
                self.phase = Phase::Bootstrap;
                Ok(())
            }
            (Asked::Snapshot, Reply::Snapshot(path)) => {
                let r = bootstrap(conn, &path, now_ms)?;
                self.report.bootstrapped = true;
                self.report.new_conflicts += r.new_conflicts;
                self.report.rejected_transactions += r.new_rejected;
                self.report.touched.extend(r.touched);
                self.phase = Phase::Pull;
                Ok(())
            }
            (_, Reply::Refused(code)) => Err(CycleError::Refused(code)),
            (Asked::Push | Asked::BootstrapPush, _) => Err(CycleError::Unexpected(
                "a push was answered with something else",
            )),
            (Asked::Pull, _) => Err(CycleError::Unexpected(
                "a pull was answered with something else",
            )),
            (Asked::Snapshot, _) => Err(CycleError::Unexpected(
                "a snapshot was answered with something else",
            )),
        }
    }

    fn on_page(&mut self, conn: &Connection, page: LogPage, now_ms: i64) -> Result<(), CycleError> {
        let more = page.more;
        self.entry_bytes += page.entries.iter().map(|e| e.effect.len()).sum::<usize>();
        let got_any = !page.entries.is_empty();
        self.entries.extend(page.entries);
        if more && got_any && self.entry_bytes < self.config.integrate_budget {
            self.phase = Phase::Pull;
            return Ok(());
        }
        let entries = std::mem::take(&mut self.entries);
        self.entry_bytes = 0;
        if entries.is_empty() {
            self.phase = Phase::EndOfRound;
            return Ok(());
        }
        let n = entries.len();
        match integrate(conn, &entries, now_ms) {
            Ok(r) => {
                self.pulled_in_round += n;
                self.report.pulled_entries += n;
                self.report.new_conflicts += r.new_conflicts;
                self.report.rejected_transactions += r.new_rejected;
                self.report.touched.extend(r.touched);
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
