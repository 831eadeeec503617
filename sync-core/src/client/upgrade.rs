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
use crate::engine::migration::{ScriptError, run_script};
use crate::engine::outbox;
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
    let old = OldShapes::read(conn)?;
    for s in scripts {
        run_script(conn, &s.sql).map_err(|e| match e {
            ScriptError::Sql(e) => fail(format!("migration {} failed: {e}", s.name)),
            refused => fail(format!("migration {}: {refused}", s.name)),
        })?;
    }
    schema::check_trackable(conn).map_err(|e| fail(e.to_string()))?;
    set_schema_version(conn, last.version)?;
    for entry in &pending {
        let bytes = if entry.is_large() {
            let mut bytes = Vec::with_capacity(entry.len as usize);
            let copy = outbox::spool_large(conn, entry, scratch).map_err(ClientError::Io)?;
            if let Some(copy) = copy {
                copy.source()
                    .reader()
                    .read_to_end(&mut bytes)
                    .map_err(ClientError::Io)?;
            }
            bytes
        } else {
            entry.changeset.as_bytes().to_vec()
        };
        match reshape(conn, &old, last.version, &bytes)? {
            Ok(new) => {
                if new != bytes {
                    outbox::replace(conn, entry.seq, &Changeset::from_bytes(new))?;
                }
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
