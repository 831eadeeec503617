//! `sync-cli remote`: the server settings a local copy keeps — show them, replace the
//! device's token (a revoked one, say), or point the copy at another URL of its server.
//! Nothing else changes: pending transactions, the cursor and the data stay as they are.

use super::{changesets, cli_config, client_error, open_reader};
use crate::changeset_cmds::Outcome;
use crate::error::CliError;
use crate::output::{Format, Stdout};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_client::{ClientConfig, HttpTransport, RemoteConfig, SyncClient};

/// Show or change DB's server settings: the server URL and this device's token.
///
/// `show` prints the server, the database name and whether a token is set (never the token).
/// `set-token` replaces the token — e.g. after `sync-server token revoke` and a new
/// `sync-server token issue` — and `set-url` the server's URL, both in place: pending
/// transactions, the cursor and the data are kept, and the next `sync` uses the new setting.
///
/// Exit status: 0 ok, 2 error (nothing changed).
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the server URL, the database name and whether a token is set.
    Show(ShowArgs),
    /// Replace this device's token (pending transactions kept).
    SetToken(SetTokenArgs),
    /// Replace the server's URL (the same server, reached another way).
    SetUrl(SetUrlArgs),
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct SetTokenArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The new token (or use --token-file, which keeps it out of `ps` and the shell history).
    #[arg(value_name = "TOKEN", required_unless_present = "token_file")]
    token: Option<String>,
    /// Read the token from this file (`-`: standard input); surrounding whitespace is dropped.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SetUrlArgs {
    /// The local database.
    #[arg(value_name = "DB")]
    db: PathBuf,
    /// The server's base URL, e.g. https://sync.example.com.
    #[arg(value_name = "URL")]
    url: String,
}

/// Runs `remote`.
pub fn remote(args: &RemoteArgs) -> Result<Outcome, CliError> {
    match &args.action {
        Action::Show(a) => show(a),
        Action::SetToken(a) => {
            let token = match (&a.token, &a.token_file) {
                (Some(t), _) => t.trim().to_string(),
                (None, Some(file)) => read_token(file)?,
                (None, None) => unreachable!("clap requires TOKEN or --token-file"),
            };
            if token.is_empty() {
                return Err(CliError::Usage("the token is empty".to_string()));
            }
            replace(&a.db, "token", |old| RemoteConfig {
                token: token.clone(),
                ..old.clone()
            })
        }
        Action::SetUrl(a) => replace(&a.db, "server URL", |old| RemoteConfig {
            url: a.url.trim_end_matches('/').to_string(),
            ..old.clone()
        }),
    }
}

fn read_token(file: &Path) -> Result<String, CliError> {
    let read = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    read.map(|t| t.trim().to_string())
        .map_err(|source| CliError::Read {
            what: if file.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                file.display().to_string()
            },
            source,
        })
}

fn show(args: &ShowArgs) -> Result<Outcome, CliError> {
    let client = open_reader(&args.db)?;
    let remote = client.remote().cloned();
    drop(client);
    let mut out = Stdout::new();
    match (args.format, &remote) {
        (Format::Text, Some(r)) => {
            out.line(&format!("server:   {}", r.url))?;
            out.line(&format!("database: {}", r.database))?;
            out.line(&format!(
                "token:    {}",
                if r.token.is_empty() { "none" } else { "set" }
            ))?;
        }
        (Format::Text, None) => out.line("none (local only)")?,
        (Format::Json, r) => out.json(&serde_json::json!({
            "server": r.as_ref().map(|r| &r.url),
            "database": r.as_ref().map(|r| &r.database),
            "token_set": r.as_ref().is_some_and(|r| !r.token.is_empty()),
        }))?,
    }
    out.finish()?;
    Ok(Outcome::Clean)
}

/// Stores `change(current)` as DB's remote settings, after checking it (a bad URL is refused
/// before anything is written).
fn replace(
    db: &Path,
    what: &str,
    change: impl FnOnce(&RemoteConfig) -> RemoteConfig,
) -> Result<Outcome, CliError> {
    let current = open_reader(db)?.remote().cloned().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: a local-only copy has no server settings to change (`sync-cli init` makes a synced copy)",
            db.display()
        ))
    })?;
    let new = change(&current);
    // The same checks an open makes (URL scheme, database name), before anything is stored.
    HttpTransport::new(&new, Duration::from_secs(30))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let client = SyncClient::open(
        db,
        ClientConfig {
            remote: Some(new.clone()),
            ..cli_config()
        },
    )
    .map_err(|e| client_error(db, e))?;
    let status = client.status().map_err(|e| client_error(db, e));
    client.close();
    let status = status?;
    let mut out = Stdout::new();
    out.line(&format!(
        "{what} replaced for database {} on {}; {} pending, kept",
        new.database,
        new.url,
        changesets(status.pending_changesets)
    ))?;
    out.finish()?;
    Ok(Outcome::Clean)
}
