//! The admin commands (`user`, `db`, `token`) over the catalog of a data directory, and the
//! first-start bootstrap. Safe while the server runs: each command is one short catalog
//! transaction, and the server sees it on its next request.

use crate::catalog::{self, CatalogError, TokenSelector};
use crate::datadir::DataDir;
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use sync_core::protocol::info::Access;

/// Output format of list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Text,
    /// JSON for scripts.
    Json,
}

/// `sync-server user …`
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        /// 1-63 characters of a-z, 0-9, '-' and '_'.
        name: String,
    },
}

/// `sync-server db …`
#[derive(Debug, Clone, Subcommand)]
pub enum DbCommand {
    /// Create a database; its owner gets read-write access.
    Create {
        /// Database name (1-63 characters of a-z, 0-9, '-' and '_').
        name: String,
        /// The owning user.
        #[arg(long)]
        owner: String,
    },
    /// Make an existing SQLite file's schema and rows a new database; its owner gets
    /// read-write access. The file is read with one consistent read and never written.
    ///
    /// With --schema (the directory the server runs with) the file's schema must equal the
    /// one those migrations make, and the database follows later migrations. Without it the
    /// file's schema becomes the database's own migration 1: the server's migrations are
    /// never applied to it (docs/operations.md, "Importing existing data").
    Import {
        /// Database name (1-63 characters of a-z, 0-9, '-' and '_'); must not exist.
        name: String,
        /// The SQLite file to import.
        #[arg(long, value_name = "FILE")]
        from: std::path::PathBuf,
        /// The owning user.
        #[arg(long)]
        owner: String,
        /// The server's migrations directory: the file's schema must be the one it makes.
        #[arg(long, value_name = "DIR")]
        schema: Option<std::path::PathBuf>,
    },
    /// Give a user access to a database (read-write unless --read-only).
    Grant {
        /// The database.
        db: String,
        /// The user.
        user: String,
        /// Pull only: pushes and rowid leases are refused with 403 read_only.
        #[arg(long)]
        read_only: bool,
    },
    /// Take a user's access to a database away.
    Revoke {
        /// The database.
        db: String,
        /// The user.
        user: String,
    },
    /// List databases with their owners and grants.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Copy a database — content, log, lineage — to FILE, online and consistent (safe while
    /// the server runs).
    Backup {
        /// The database.
        name: String,
        /// The backup file to write (must not exist).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: std::path::PathBuf,
    },
    /// Replace a database with a backup — as it is, rewound to a seq or time along its own
    /// log, or rolled forward along the live database's retained log. The result starts a new
    /// lineage: devices re-base on a snapshot at their next sync, keeping pending changes.
    Restore {
        /// The database.
        name: String,
        /// The backup file (`db backup`, or a copy of the database file).
        #[arg(long, value_name = "FILE")]
        from: std::path::PathBuf,
        /// Restore to this log seq.
        #[arg(long, value_name = "N", conflicts_with = "to_time")]
        to_seq: Option<i64>,
        /// Restore to the newest entry logged at or before this time: milliseconds since the
        /// epoch, or YYYY-MM-DDTHH:MM:SSZ (UTC).
        #[arg(long, value_name = "TIME", value_parser = crate::lifecycle::parse_time)]
        to_time: Option<i64>,
    },
    /// Undo one logged batch: its inverse is applied as a new log entry that every device
    /// pulls. Rows changed since keep their current values (reported as conflicts).
    Revert {
        /// The database.
        name: String,
        /// The log seq of the batch to undo.
        #[arg(long)]
        seq: i64,
    },
}

/// `sync-server token …`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user's device (created if new) and print only the token. It is
    /// shown once: the server stores only its SHA-256 hash.
    Issue {
        /// The user.
        user: String,
        /// The device the token belongs to (its pushes are logged under this name; device
        /// names are unique across users).
        #[arg(long)]
        device: String,
    },
    /// Revoke a token (the whole token, or its first characters as `token list` shows them),
    /// or every token of a device. Takes effect on the server's next request.
    Revoke {
        /// The token or its shown prefix (e.g. sst_AbCdEfGh).
        #[arg(required_unless_present = "device")]
        token: Option<String>,
        /// Revoke every active token of this device instead.
        #[arg(long, conflicts_with = "token")]
        device: Option<String>,
    },
    /// List tokens (their shown prefix, never the secret).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Errors of admin commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// An import was refused or failed (nothing was created).
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A backup, restore or revert failed.
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
}

/// Runs `user …`.
pub fn user(dir: &DataDir, cmd: &UserCommand, out: &mut dyn Write) -> Result<(), AdminError> {
    let mut conn = dir.open_catalog()?;
    match cmd {
        UserCommand::Add { name } => {
            dir.catalog_write(&mut conn, |c| catalog::add_user(c, name))?;
            writeln!(out, "created user {name}")?;
        }
    }
    Ok(())
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::ReadWrite => "read-write",
        Access::ReadOnly => "read-only",
    }
}

/// Runs `db …`.
pub fn db(dir: &DataDir, cmd: &DbCommand, out: &mut dyn Write) -> Result<(), AdminError> {
    use crate::lifecycle::{self, RestorePoint};
    let mut conn = dir.open_catalog()?;
    let stored = dir.store().is_some();
    match cmd {
        DbCommand::Backup { name, output } if stored => {
            crate::lifecycle_store::backup(dir, name, output, out)?
        }
        DbCommand::Backup { name, output } => lifecycle::backup(dir, name, output, out)?,
        DbCommand::Restore {
            name,
            from,
            to_seq,
            to_time,
        } => {
            let point = match (to_seq, to_time) {
                (Some(s), _) => RestorePoint::Seq(*s),
                (None, Some(t)) => RestorePoint::Time(*t),
                (None, None) => RestorePoint::Backup,
            };
            if stored {
                crate::lifecycle_store::restore(dir, name, from, point, out)?
            } else {
                lifecycle::restore(dir, name, from, point, out)?
            }
        }
        DbCommand::Revert { name, seq } if stored => {
            crate::lifecycle_store::revert(dir, name, *seq, out)?
        }
        DbCommand::Revert { name, seq } => lifecycle::revert(dir, name, *seq, out)?,
        DbCommand::Create { name, owner } => {
            let id = dir.catalog_write(&mut conn, |c| catalog::create_database(c, name, owner))?;
            writeln!(
                out,
                "created database {name} (owner {owner}, file dbs/{id}.db)"
            )?;
        }
        DbCommand::Import {
            name,
            from,
            owner,
            schema,
        } => {
            drop(conn);
            let made = crate::import::import(dir, name, from, owner, schema.as_deref())?;
            let schema_text = if made.own_schema {
                "its own schema, version 1".to_string()
            } else {
                format!("schema version {}", made.schema_version)
            };
            writeln!(
                out,
                "imported {} as database {name} (owner {owner}, file dbs/{}.db): {} tables, {} rows, {schema_text}",
                from.display(),
                made.id,
                made.tables,
                made.rows
            )?;
        }
        DbCommand::Grant {
            db,
            user,
            read_only,
        } => {
            let access = if *read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            };
            dir.catalog_write(&mut conn, |c| catalog::grant(c, db, user, access))?;
            writeln!(out, "granted {user} {} access to {db}", access_name(access))?;
        }
        DbCommand::Revoke { db, user } => {
            if dir.catalog_write(&mut conn, |c| catalog::revoke_grant(c, db, user))? {
                writeln!(out, "revoked {user}'s access to {db}")?;
            } else {
                writeln!(out, "{user} had no access to {db}")?;
            }
        }
        DbCommand::List { format } => {
            let rows = catalog::list_databases(&conn)?;
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(&mut *out, &rows)
                        .map_err(std::io::Error::other)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    writeln!(out, "{:<24} {:>6}  {:<16} grants", "name", "id", "owner")?;
                    for r in rows {
                        let grants = r
                            .grants
                            .iter()
                            .map(|(u, a)| format!("{u}:{}", access_name(*a)))
                            .collect::<Vec<_>>()
                            .join(",");
                        writeln!(out, "{:<24} {:>6}  {:<16} {grants}", r.name, r.id, r.owner)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs `token …`. `issue` writes only the token and a newline to `out`.
pub fn token(dir: &DataDir, cmd: &TokenCommand, out: &mut dyn Write) -> Result<(), AdminError> {
    let mut conn = dir.open_catalog()?;
    match cmd {
        TokenCommand::Issue { user, device } => {
            let t = dir.catalog_write(&mut conn, |c| catalog::issue_token(c, user, device))?;
            writeln!(out, "{}", t.token)?;
        }
        TokenCommand::Revoke { token, device } => {
            let selector = match (token, device) {
                (_, Some(d)) => TokenSelector::Device(d.clone()),
                (Some(t), None) => TokenSelector::TokenOrPrefix(t.clone()),
                (None, None) => unreachable!("clap requires a token or --device"),
            };
            let n = dir.catalog_write(&mut conn, |c| catalog::revoke_tokens(c, &selector))?;
            writeln!(out, "revoked {n} token(s)")?;
        }
        TokenCommand::List { format } => {
            let rows = catalog::list_tokens(&conn)?;
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(&mut *out, &rows)
                        .map_err(std::io::Error::other)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    writeln!(out, "{:<14} {:<16} {:<20} state", "token", "user", "device")?;
                    for r in rows {
                        let state = if r.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        writeln!(
                            out,
                            "{:<14} {:<16} {:<20} {state}",
                            format!("{}…", r.shown),
                            r.user,
                            r.device
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Names the first start creates.
pub const DEMO_USER: &str = "demo";
/// The demo database.
pub const DEMO_DATABASE: &str = "demo";
/// The demo device.
pub const DEMO_DEVICE: &str = "demo-device";
/// The columns of the embedded demo schema (`schema/0001_init.sql`) that the first-start
/// banner's `sync-cli init` indexes for full-text search (`--fts`).
pub const DEMO_FTS: &str = "notes:title,body";
/// How the first-start banner tells a newcomer to get `sync-cli`: run from the root of the
/// source tree, as README's walk-through does.
pub const DEMO_INSTALL_CLI: &str = "cargo install --locked --path sync-cli";

/// On a data directory whose catalog has no user yet: creates user `demo`, database `demo`
/// and a token for device `demo-device`, and returns the token. Otherwise `None`.
pub fn bootstrap_demo(dir: &DataDir) -> Result<Option<String>, CatalogError> {
    let mut conn = dir.open_or_create_catalog()?;
    // One write: nodes starting together on an empty store make one demo between them.
    dir.catalog_write(&mut conn, |c| {
        if !catalog::is_empty(c)? {
            return Ok(None);
        }
        catalog::add_user(c, DEMO_USER)?;
        catalog::create_database(c, DEMO_DATABASE, DEMO_USER)?;
        Ok(Some(catalog::issue_token(c, DEMO_USER, DEMO_DEVICE)?.token))
    })
}
