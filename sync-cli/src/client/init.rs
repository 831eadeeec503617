//! `sync-cli init`: a new local copy of a server database.

use super::{cli_config, client_error};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::Stdout;
use crate::progress::{Bar, Ticker};
use std::path::PathBuf;
use sync_client::{ClientConfig, FtsTable, Progress, ProgressUnit, RemoteConfig, SyncClient};

/// Create DB, a local copy of a server database, from a snapshot; or, with --adopt, make the
/// existing file DB a synced copy that keeps its rows.
///
/// Downloads a snapshot of DATABASE and stores the server settings (and the search
/// configuration) in DB, so later commands need only DB. DB must not exist. With --adopt, DB
/// is an existing SQLite file (closed by every other program) whose schema equals DATABASE's
/// and DATABASE has no rows: DB's rows become its first pending transactions, pushed by the
/// next `sync-cli sync` (parents before children, uploaded in parts when large). A refusal or
/// failure leaves DB unchanged. The token is a device token from `sync-server token issue USER --device NAME`;
/// pass it with --token or in the SYNC_TOKEN environment variable (keeps it out of `ps` and
/// the shell history).
///
/// Exit status: 0 created, 2 error (nothing is left behind).
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The local database to create.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The server's base URL, e.g. http://127.0.0.1:8787.
    #[arg(long, value_name = "URL")]
    server: String,
    /// This device's bearer token.
    #[arg(long, env = "SYNC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: String,
    /// The database's name on the server.
    #[arg(long, value_name = "NAME")]
    database: String,
    /// Index these columns of TABLE for `search` (repeatable), e.g. --fts notes:title,body.
    /// The index is a separate file, DB.fts, never synced.
    #[arg(long = "fts", value_name = "TABLE:COLUMN,…")]
    fts: Vec<FtsTable>,
    /// DB exists and has data: keep it, and make its rows pending transactions.
    #[arg(long)]
    adopt: bool,
}

/// Runs `init`.
pub fn init(args: &InitArgs) -> Result<Outcome, CliError> {
    let remote = RemoteConfig {
        url: args.server.clone(),
        token: args.token.clone(),
        database: args.database.clone(),
    };
    let config = ClientConfig {
        fts: args.fts.clone(),
        ..cli_config()
    };
    let bar = Bar::new();
    let client = if args.adopt {
        // Adopting has no steps to count: the line shows the time spent.
        let ticking = Ticker::start(bar.clone(), "adopting");
        let adopted = SyncClient::adopt(&args.db, remote, config);
        drop(ticking);
        adopted
    } else {
        SyncClient::init_with_progress(&args.db, remote, config, &|done, total| {
            bar.show(
                "downloading snapshot",
                Some(Progress {
                    done,
                    total,
                    unit: ProgressUnit::Bytes,
                }),
            )
        })
    };
    bar.finish();
    let client = client.map_err(|e| client_error(&args.db, e))?;
    let status = client.status().map_err(|e| client_error(&args.db, e))?;
    client.close();
    let mut out = Stdout::new();
    if args.adopt {
        out.line(&format!(
            "adopted {} into database {} on {} at seq {} (schema version {}): {} pending ({} bytes); `sync-cli sync {}` pushes them",
            args.db.display(),
            args.database,
            args.server,
            status.cursor,
            status.schema_version,
            super::changesets(status.pending_changesets),
            status.pending_bytes,
            args.db.display(),
        ))?;
        out.finish()?;
        return Ok(Outcome::Clean);
    }
    out.line(&format!(
        "initialized {} from database {} on {} at seq {} (schema version {})",
        args.db.display(),
        args.database,
        args.server,
        status.cursor,
        status.schema_version
    ))?;
    out.finish()?;
    Ok(Outcome::Clean)
}
