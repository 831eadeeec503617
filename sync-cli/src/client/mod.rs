//! The client commands: `init`, `exec`, `query`, `sync`, `upgrade`, `status`, `rejected`,
//! `search`, `remote`, `conflicts` — a sync client at
//! the terminal. They go through the `sync-client` library, the same code an app runs: writes
//! are captured into the outbox by the writer, reads use read-only connections, `sync` is one
//! `sync_now`.
//!
//! Settings live in the local database: `init` stores the server, token, database name and the
//! full-text search tables, and every other command opens the database with them. A database
//! is never created except by `init`.

mod conflicts;
mod exec;
mod init;
mod rejected;
mod remote;
mod search;
mod status;
mod sync;
mod upgrade;
mod verify;

pub use conflicts::{ConflictsArgs, conflicts};
pub use exec::{ExecArgs, QueryArgs, exec, query};
pub use init::{InitArgs, init};
pub use rejected::{RejectedArgs, rejected};
pub use remote::{RemoteArgs, remote};
pub use search::{SearchArgs, search};
pub use status::{StatusArgs, status};
pub use sync::{SyncArgs, sync};
pub use upgrade::{UpgradeArgs, upgrade};
pub use verify::{VerifyArgs, verify};

use crate::error::CliError;
use crate::{output, sql_values};
use std::path::Path;
use sync_client::{
    ClientConfig, Error, FtsTable, LocalConflict, ReadOnlyClient, ServerConflict, Status,
    SyncClient, Value,
};

/// Settings of a command-line client: fewer read connections than an app's pool.
pub(super) fn cli_config() -> ClientConfig {
    ClientConfig {
        read_connections: 2,
        ..ClientConfig::default()
    }
}

/// Opens an existing local database (never creates one) with its stored settings; `fts`
/// replaces the stored search configuration when not empty. A plain SQLite file (not made by
/// `init`) becomes a local-only copy: only `exec` does that (see [`open_copy`]).
pub(super) fn open(db: &Path, fts: Vec<FtsTable>) -> Result<SyncClient, CliError> {
    if !db.is_file() {
        return Err(CliError::Usage(format!(
            "{}: no such database (`sync-cli init` creates one)",
            db.display()
        )));
    }
    open_client(db, fts)
}

/// [`open`] for every command but `exec`: the file must already be a synced (or local-only)
/// copy. Anything else is refused before the file is touched — no WAL switch, no tables, no
/// lock file — so that commands which only read never convert a file.
pub(super) fn open_copy(db: &Path, fts: Vec<FtsTable>) -> Result<SyncClient, CliError> {
    sync_client::probe::require_sync_copy(db).map_err(|e| match e.kind() {
        sync_client::ErrorKind::Config => CliError::Usage(e.to_string()),
        _ => client_error(db, e),
    })?;
    open_client(db, fts)
}

/// Opens a synced copy for reading only ([`SyncClient::open_read_only`]): no writer lock, so
/// it works while another process (`sync-cli sync --watch`, an app) holds the writer, and
/// nothing is written. Refuses anything but a copy, as [`open_copy`] does.
pub(super) fn open_reader(db: &Path) -> Result<ReadOnlyClient, CliError> {
    SyncClient::open_read_only(db, &cli_config()).map_err(|e| match e.kind() {
        sync_client::ErrorKind::Config => CliError::Usage(e.to_string()),
        _ => client_error(db, e),
    })
}

/// Reads DB through a [`ReadOnlyClient`] (`ro`); should that fail once it is open — a copy
/// made by an older version may lack a table this one reads — through an ordinary open
/// (`rw`), which brings the copy's internal tables up to date first. If the writer is busy
/// elsewhere (or that fails too), the read-only error stands.
pub(super) fn read_copy<T>(
    db: &Path,
    ro: impl FnOnce(&ReadOnlyClient) -> sync_client::Result<T>,
    rw: impl FnOnce(&SyncClient) -> sync_client::Result<T>,
) -> Result<T, CliError> {
    let first = match open_reader(db) {
        Ok(reader) => match ro(&reader) {
            Ok(value) => return Ok(value),
            Err(e) => client_error(db, e),
        },
        // Not a copy (or no such file): nothing to retry.
        Err(e @ CliError::Usage(_)) => return Err(e),
        Err(e) => e,
    };
    let Ok(client) = open_client(db, Vec::new()) else {
        return Err(first);
    };
    let result = rw(&client);
    client.close();
    result.map_err(|_| first)
}

fn open_client(db: &Path, fts: Vec<FtsTable>) -> Result<SyncClient, CliError> {
    SyncClient::open(
        db,
        ClientConfig {
            fts,
            ..cli_config()
        },
    )
    .map_err(|e| client_error(db, e))
}

pub(super) fn client_error(db: &Path, source: Error) -> CliError {
    CliError::Client {
        path: db.to_path_buf(),
        source: Box::new(source),
    }
}

pub(super) fn parse_params(args: &[String]) -> Result<Vec<Value>, CliError> {
    args.iter()
        .map(|a| sql_values::parse_param(a).map_err(CliError::Usage))
        .collect()
}

pub(super) fn remote_text(s: &Status) -> String {
    match (&s.database, &s.server) {
        (Some(db), Some(server)) => format!("database {db} on {server}"),
        _ => "none (local only)".to_string(),
    }
}

pub(super) fn changesets(n: u64) -> String {
    format!("{n} {}", if n == 1 { "changeset" } else { "changesets" })
}

pub(super) fn server_conflict_text(c: &ServerConflict) -> String {
    format!(
        "{} (batch {}, seq {})",
        output::conflict_text(&c.conflict),
        c.batch_id,
        c.seq
    )
}

pub(super) fn local_conflict_text(c: &LocalConflict) -> String {
    let mut text = format!("#{} {}", c.id, kind_name(c));
    if !c.table.is_empty() {
        let pk: Vec<String> = c.pk.iter().map(output::literal).collect();
        let op = c.op.map(|o| format!("{} ", o.as_str())).unwrap_or_default();
        text.push_str(&format!(
            " {op}{} pk({})",
            output::ident(&c.table),
            pk.join(", ")
        ));
    }
    text.push_str(&format!(": {}", c.detail));
    text
}

fn kind_name(c: &LocalConflict) -> &'static str {
    c.kind.as_str()
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub(super) fn datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `HH:MM:SS` in UTC.
pub(super) fn clock(ms: i64) -> String {
    datetime(ms)[11..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_utc_calendar_dates() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(datetime(1_763_700_000_123), "2025-11-21 04:40:00");
        assert_eq!(clock(1_763_700_000_123), "04:40:00");
    }
}
