//! Upgrading a local copy to a newer app-schema version in place, its pending transactions
//! kept: in one local transaction, undo the pending transactions (they were captured under the
//! old schema, so their inverses apply under it), run the migration scripts the server served
//! (under the checks the server applies: [`crate::engine::migration`]), rewrite each pending
//! transaction for the new schema ([`super::reshape`]) and redo it under a session — or, when
//! the new schema cannot take it (it writes a dropped column or table), move it to the
//! rejected queue with the reason. If anything fails, nothing changed.
//!
//! The caller picks the moment: the scripts are run at the current cursor, which should be
//! where the server ran them (their `at_seq`; the sync cycle pulls up to it first), so that
//! the local copy goes through the server's history exactly.

use super::ClientError;
use super::integrate::undo_all;
use super::redo::redo_each;
use super::rejected::{self, RejectedBy, RejectedReason, Rejection};
use super::report::Touched;
use super::reshape::{OldShapes, reshape};
use super::state::{schema_version, set_schema_version};
use crate::engine::changeset::Changeset;
use crate::engine::migration::{ScriptError, run_script_with};
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::schema;
use crate::engine::tx::Tx;
use crate::protocol::migrations::MigrationScript;
use rusqlite::Connection;
use std::io::Read;
use std::path::Path;

/// What an upgrade did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The schema version before.
    pub from: u32,
    /// The schema version after.
    pub to: u32,
    /// Pending transactions kept (rewritten for the new schema).
    pub kept: usize,
    /// Pending transactions moved to the rejected queue.
    pub rejected: usize,
    /// Changes dropped inside kept transactions, recorded as local conflicts.
    pub new_conflicts: usize,
    /// Tables whose rows may have changed (the scripts' own data changes are not listed).
    pub touched_tables: Vec<String>,
}

/// Runs `scripts` (the versions right after the local one, in order) on the local copy, in
/// one transaction with the rebase of the pending transactions (see the module docs).
/// `scratch` is where large pending transactions are copied (`None`: in memory).
pub fn upgrade(
    conn: &Connection,
    scripts: &[MigrationScript],
    scratch: Option<&Path>,
    now_ms: i64,
) -> Result<UpgradeReport, ClientError> {
    let from = schema_version(conn)?;
    let fail = |what: String| ClientError::Upgrade { from, what };
    for (i, s) in scripts.iter().enumerate() {
        if s.version != from + 1 + i as u32 {
            return Err(fail(format!(
                "script {} ({}) is not the next version",
                s.version, s.name
            )));
        }
    }
    let mut report = UpgradeReport {
        from,
        to: from,
        ..UpgradeReport::default()
    };
    let Some(last) = scripts.last() else {
        return Ok(report);
    };
    let tx = Tx::begin(conn)?;
    let mut touched = Touched::default();
    let pending = outbox::entries(conn)?;
    undo_all(conn, &pending, scratch, &mut touched)?;
    // Each pending transaction's changeset as it stands, or why it cannot be kept.
    let mut current: Vec<Result<Vec<u8>, String>> = Vec::with_capacity(pending.len());
    for entry in &pending {
        current.push(Ok(changeset_of(conn, entry, scratch)?));
    }
    for s in scripts {
        // Followed statement by statement: each schema change rewrites what is pending.
        let mut shapes = OldShapes::read(conn)?;
        let ran = run_script_with(conn, &s.sql, |c| -> Result<(), ClientError> {
            let now = OldShapes::read(c)?;
            if now == shapes {
                return Ok(());
            }
            for slot in current.iter_mut() {
                if let Ok(bytes) = slot {
                    *slot = reshape(c, &shapes, s.version, bytes, false)?;
                }
            }
            shapes = shapes.followed_by(now);
            Ok(())
        });
        match ran {
            Ok(()) => {}
            Err(ClientError::Upgrade { what, .. }) => {
                return Err(fail(format!("migration {}: {what}", s.name)));
            }
            Err(e) => return Err(e),
        }
        for slot in current.iter_mut() {
            if let Ok(bytes) = slot {
                *slot = reshape(conn, &shapes, s.version, bytes, true)?;
            }
        }
    }
    schema::check_trackable(conn).map_err(|e| fail(e.to_string()))?;
    set_schema_version(conn, last.version)?;
    // The scripts changed the synced state without a log entry (columns, backfills): its
    // checksum is recomputed from the tables at the next pull (the server's is too).
    super::state::set_sum(conn, None)?;
    for (entry, now) in pending.iter().zip(current) {
        match now {
            Ok(new) => {
                if !entry.is_large() && new.as_slice() == entry.changeset.as_bytes() {
                    report.kept += 1;
                    continue;
                }
                outbox::replace(conn, entry.seq, &Changeset::from_bytes(new))?;
                report.kept += 1;
            }
            Err(why) => {
                rejected::move_to_queue(
                    conn,
                    entry,
                    &Rejection {
                        reason: RejectedReason::Schema,
                        by: RejectedBy::Upgrade,
                        detail: format!(
                            "upgrading the local copy from schema version {from} to {}: {why}",
                            last.version
                        ),
                        batch_id: None,
                        log_seq: None,
                        conflicts: &[],
                    },
                    now_ms,
                )?;
                report.rejected += 1;
            }
        }
    }
    let remaining = outbox::entries(conn)?;
    let redid = redo_each(conn, &remaining, scratch, now_ms, &mut touched)?;
    report.kept -= redid.rejected;
    report.rejected += redid.rejected;
    report.new_conflicts = redid.conflicts;
    tx.commit()?;
    report.to = last.version;
    report.touched_tables = touched.into_parts().1;
    Ok(report)
}

/// A pending transaction's whole changeset (a large one read out of the outbox: an upgrade
/// rewrites it in memory).
fn changeset_of(
    conn: &Connection,
    entry: &OutboxEntry,
    scratch: Option<&Path>,
) -> Result<Vec<u8>, ClientError> {
    if !entry.is_large() {
        return Ok(entry.changeset.as_bytes().to_vec());
    }
    let mut bytes = Vec::with_capacity(entry.len as usize);
    if let Some(copy) = outbox::spool_large(conn, entry, scratch).map_err(ClientError::Io)? {
        copy.source()
            .reader()
            .read_to_end(&mut bytes)
            .map_err(ClientError::Io)?;
    }
    Ok(bytes)
}

impl From<ScriptError> for ClientError {
    fn from(e: ScriptError) -> Self {
        match e {
            ScriptError::Sql(e) => ClientError::Upgrade {
                from: 0,
                what: format!("failed: {e}"),
            },
            refused => ClientError::Upgrade {
                from: 0,
                what: refused.to_string(),
            },
        }
    }
}
