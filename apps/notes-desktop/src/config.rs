//! The command line, and opening the local copy it names: `init` from the server on the first
//! run (a new file: `--server`, `--token`, `--database` needed), `open` afterwards (offline
//! too; the server settings are stored in the file). The notes' titles and bodies are indexed
//! for search either way.

use clap::Parser;
use std::path::PathBuf;
use sync_client::{ClientConfig, FtsTable, RemoteConfig, SyncClient};

/// An offline-first notes app: a local SQLite copy that syncs with a session-sync server.
#[derive(Debug, Parser)]
#[command(name = "notes-desktop", version)]
pub struct Args {
    /// The local copy. Created from the server on the first run; opened (offline too) on the
    /// next ones.
    #[arg(value_name = "DB")]
    pub db: PathBuf,
    /// The server's URL (first run only), e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A device token from `sync-server token issue USER --device NAME` (first run only);
    /// or in the SYNC_TOKEN environment variable, which keeps it out of `ps`.
    #[arg(long, env = "SYNC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The database's name on the server (first run only).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Do not sync in the background; only the "Sync now" button syncs.
    #[arg(long)]
    pub no_background: bool,
}

/// What the app needs from its configuration: the notes table's title and body indexed.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        fts: vec![FtsTable {
            table: "notes".into(),
            columns: vec!["title".into(), "body".into()],
        }],
        ..ClientConfig::default()
    }
}

/// Why the local copy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A first run without the server settings.
    #[error(
        "{db} does not exist yet: give --server URL, --token TOKEN (or SYNC_TOKEN) and \
         --database NAME to create it from the server (missing: {missing})"
    )]
    Missing {
        /// The local copy's path.
        db: String,
        /// The options not given.
        missing: String,
    },
    /// The client library refused.
    #[error("{db}: {source}")]
    Client {
        /// The local copy's path.
        db: String,
        /// The library's error (its kind says what to do); boxed, it is large.
        source: Box<sync_client::Error>,
    },
}

/// Opens `args.db`, initialising it from the server when it does not exist. Server settings
/// given for a file that exists are ignored (it keeps its own).
pub fn open(args: &Args) -> Result<SyncClient, OpenError> {
    let db = args.db.display().to_string();
    let wrap = |source| OpenError::Client {
        db: db.clone(),
        source: Box::new(source),
    };
    if args.db.exists() {
        return SyncClient::open(&args.db, client_config()).map_err(wrap);
    }
    let missing: Vec<&str> = [
        ("--server", args.server.is_none()),
        ("--token", args.token.is_none()),
        ("--database", args.database.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    let (Some(url), Some(token), Some(database)) = (&args.server, &args.token, &args.database)
    else {
        return Err(OpenError::Missing {
            db: db.clone(),
            missing: missing.join(", "),
        });
    };
    let remote = RemoteConfig {
        url: url.clone(),
        token: token.clone(),
        database: database.clone(),
    };
    SyncClient::init(&args.db, remote, client_config()).map_err(wrap)
}
