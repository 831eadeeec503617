//! The upgrade step of the cycle: the server's database is at a newer app-schema version than
//! the local copy, so the local copy is upgraded in place, its pending transactions kept
//! ([`crate::client::upgrade`]).
//!
//! It starts when a push is refused with `schema_mismatch`, or when an answer shows a newer
//! version (the pump reports it: [`Cycle::server_schema_version`]; pull answers carry it).
//! Then: ask for the scripts after the local version ([`Step::Migrations`]); for each, pull
//! the log up to the seq the server ran it at (pages bounded to end there: those entries were
//! written under the older version), run it — with every other script applicable at that same
//! cursor — in one local transaction with the rebase of the pending transactions, and go on;
//! once the local version is the server's, the sync continues as usual (pushing what was
//! pending). A snapshot newer than the local copy (a bootstrap during an upgrade) takes the
//! remaining scripts first: the snapshot then makes the rows equal to the server's anyway.

use super::{Asked, Cycle, CycleError, Phase, Step};
use crate::client::ClientError;
use crate::client::bootstrap::snapshot_meta;
use crate::client::state::{clear_inflight, cursor, schema_version};
use crate::client::upgrade::upgrade;
use crate::protocol::migrations::{MigrationScript, Migrations};
use rusqlite::Connection;
use std::path::Path;

/// An upgrade in progress.
#[derive(Debug, Default)]
pub(super) struct Upgrading {
    /// The newest version an answer showed.
    server_version: Option<u32>,
    /// Between the start of an upgrade and its end.
    active: bool,
    /// The scripts still to run, once the server sent them.
    scripts: Option<Vec<MigrationScript>>,
    /// Pulls stop at this seq (where the next script was run on the server).
    until: Option<i64>,
}

impl Cycle {
    /// The pump reports the schema version an answer showed (pull answers carry it); a newer
    /// one than the local copy's starts an upgrade at the next step.
    pub fn server_schema_version(&mut self, version: u32) {
        let known = self.upgrade.server_version.unwrap_or(0);
        self.upgrade.server_version = Some(known.max(version));
    }

    /// Between the start of an upgrade and its end.
    pub(super) fn upgrading(&self) -> bool {
        self.upgrade.active
    }

    /// Whether the pulled entries reach the seq pulls stop at during an upgrade.
    pub(super) fn pull_bound_reached(&self) -> bool {
        match (self.upgrade.active, self.upgrade.until, self.entries.last()) {
            (true, Some(until), Some(last)) => last.seq >= until,
            _ => false,
        }
    }

    /// Whether an upgrade should start now (an answer showed a newer version).
    pub(super) fn wants_upgrade(&self, conn: &Connection) -> Result<bool, CycleError> {
        Ok(!self.upgrade.active
            && self
                .upgrade
                .server_version
                .is_some_and(|v| v > schema_version(conn).unwrap_or(0)))
    }

    /// Drops an upgrade in progress (the server's history changed under it: its scripts' log
    /// positions may be gone); the version seen stays, so the next step starts it again.
    pub(super) fn abandon_upgrade(&mut self) {
        self.upgrade = Upgrading {
            server_version: self.upgrade.server_version,
            ..Upgrading::default()
        };
    }

    /// Starts an upgrade: what was pulled and not integrated is dropped (it is pulled again,
    /// in bounded pages), the scripts are asked for.
    pub(super) fn start_upgrade(&mut self) {
        self.entries.clear();
        self.entry_bytes = 0;
        self.large.clear();
        self.fetching = None;
        self.upgrade.active = true;
        self.upgrade.scripts = None;
        self.upgrade.until = None;
        self.phase = Phase::Upgrade;
    }

    /// A push refused with `schema_mismatch`: the server checks a batch's stored answer
    /// first, so it never processed this one — the batch is no longer in flight (its
    /// transactions stay pending and go in a new batch, whose id is new), and an upgrade
    /// starts unless one is under way (a bootstrap during an upgrade goes on).
    pub(super) fn on_schema_mismatch(&mut self, conn: &Connection) -> Result<(), CycleError> {
        clear_inflight(conn)?;
        self.uploading = None;
        if !self.upgrade.active {
            self.start_upgrade();
        }
        Ok(())
    }

    /// The step of [`Phase::Upgrade`]: ask for the scripts.
    pub(super) fn upgrade_step(&mut self, conn: &Connection) -> Result<Step, CycleError> {
        let after = schema_version(conn)?;
        Ok(self.ask(Asked::Migrations, Step::Migrations { after }))
    }

    /// The most entries the next pull may ask for: up to the seq of the next script.
    pub(super) fn pull_limit(&self, since: i64) -> usize {
        match self.upgrade.until {
            Some(until) if self.upgrade.active => {
                usize::try_from(until - since).map_or(1, |n| n.clamp(1, self.config.pull_limit))
            }
            _ => self.config.pull_limit,
        }
    }

    /// The scripts arrived.
    pub(super) fn on_migrations(
        &mut self,
        conn: &Connection,
        answer: Migrations,
        now_ms: i64,
    ) -> Result<(), CycleError> {
        let from = schema_version(conn)?;
        answer
            .check(from)
            .map_err(|what| ClientError::Upgrade { from, what })?;
        self.server_schema_version(answer.schema_version);
        self.upgrade.scripts = Some(answer.migrations);
        self.advance(conn, now_ms)
    }

    /// Runs the scripts whose seq the cursor has reached; then pulls up to the next one's, or
    /// ends the upgrade.
    fn advance(&mut self, conn: &Connection, now_ms: i64) -> Result<(), CycleError> {
        let at = cursor(conn)?;
        let scripts = self.upgrade.scripts.take().unwrap_or_default();
        let due = scripts
            .iter()
            .take_while(|s| s.at_seq.is_none_or(|seq| seq <= at))
            .count();
        let (now, later) = scripts.split_at(due);
        self.run_scripts(conn, now, now_ms)?;
        match later.first() {
            Some(next) => {
                self.upgrade.until = next.at_seq;
                self.upgrade.scripts = Some(later.to_vec());
                self.phase = Phase::Pull;
            }
            None => {
                self.upgrade = Upgrading {
                    server_version: self.upgrade.server_version,
                    ..Upgrading::default()
                };
                self.phase = Phase::Push;
            }
        }
        Ok(())
    }

    fn run_scripts(
        &mut self,
        conn: &Connection,
        scripts: &[MigrationScript],
        now_ms: i64,
    ) -> Result<(), CycleError> {
        if scripts.is_empty() {
            return Ok(());
        }
        let scratch = self.config.scratch_dir.clone();
        let r = upgrade(conn, scripts, scratch.as_deref(), now_ms)?;
        self.report.upgraded_to = Some(r.to);
        self.report.rejected_transactions += r.rejected;
        self.report.new_conflicts += r.new_conflicts;
        self.report.touched_tables.extend(r.touched_tables);
        Ok(())
    }

    /// After pulled pages were integrated during an upgrade: run what is due, or pull on.
    pub(super) fn after_upgrade_pull(
        &mut self,
        conn: &Connection,
        pulled: usize,
        now_ms: i64,
    ) -> Result<(), CycleError> {
        let reached = self
            .upgrade
            .until
            .is_none_or(|u| cursor(conn).is_ok_and(|c| c >= u));
        if reached {
            return self.advance(conn, now_ms);
        }
        if pulled == 0 && self.bootstraps < self.config.max_bootstraps {
            // The log ends before the script's position: the server's history changed since
            // the scripts were sent (a restore). Ask for them again.
            self.bootstraps += 1;
            self.start_upgrade();
            return Ok(());
        }
        if pulled == 0 {
            let from = schema_version(conn)?;
            return Err(ClientError::Upgrade {
                from,
                what: format!(
                    "the server's log ends before seq {}, where the next migration was applied",
                    self.upgrade.until.unwrap_or_default()
                ),
            }
            .into());
        }
        self.phase = Phase::Pull;
        Ok(())
    }

    /// A snapshot arrived: if it is newer than the local copy and the scripts are known, run
    /// them all first (the snapshot then sets every row). A newer snapshot whose scripts are
    /// not known yet is put aside: the upgrade starts, and bootstraps again later.
    pub(super) fn upgrade_for_snapshot(
        &mut self,
        conn: &Connection,
        snapshot: &Path,
        now_ms: i64,
    ) -> Result<bool, CycleError> {
        let version = snapshot_meta(snapshot, self.config.key.as_ref())?.schema_version;
        if version <= schema_version(conn)? {
            return Ok(true);
        }
        self.server_schema_version(version);
        match self.upgrade.scripts.take() {
            Some(scripts) if self.upgrade.active => {
                let (now, _) =
                    scripts.split_at(scripts.iter().take_while(|s| s.version <= version).count());
                self.run_scripts(conn, now, now_ms)?;
                self.upgrade = Upgrading {
                    server_version: self.upgrade.server_version,
                    ..Upgrading::default()
                };
                Ok(true)
            }
            _ => {
                self.start_upgrade();
                Ok(false)
            }
        }
    }
}
