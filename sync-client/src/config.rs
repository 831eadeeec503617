//! Client configuration.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where and as whom to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8787`.
    pub url: String,
    /// Bearer token for this device (stored in the database by `init`/`open`). Ignored, and
    /// may be empty, when [`ClientConfig::credentials`] is set.
    pub token: String,
    /// Database name on the server.
    pub database: String,
}

/// How `INTEGER PRIMARY KEY` values are chosen so devices do not collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowidStrategy {
    /// Uniformly random positive 63-bit ids. Two devices collide with probability about
    /// n² / 2⁶⁴ for n ids in one table (1 in 18 million for a million rows); a collision is a
    /// CONFLICT on the server, resolved by policy and reported, never silently merged.
    Random,
    /// Ids from ranges leased from the server and persisted locally. A new range is leased
    /// when fewer than `refill_below` ids remain; offline, the client works until the lease is
    /// used up, then `new_id` fails with [`crate::ErrorKind::RowidsExhausted`].
    Ranges {
        /// Ids per lease.
        lease_size: i64,
        /// Lease more when fewer than this remain.
        refill_below: i64,
    },
}

/// One table indexed for full-text search (in a separate attached database that is never
/// synced). The table must have an `INTEGER PRIMARY KEY`.
///
/// Written `TABLE:COLUMN,COLUMN…` on command lines (`notes:title,body`); [`FromStr`] and
/// [`Display`](fmt::Display) convert between the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtsTable {
    /// The app table.
    pub table: String,
    /// Its text columns to index.
    pub columns: Vec<String>,
}

impl FromStr for FtsTable {
    type Err = String;

    /// Parses `TABLE:COLUMN,COLUMN…`; names are taken as written (no quoting), so a name
    /// cannot contain `:` or `,`.
    fn from_str(s: &str) -> Result<FtsTable, String> {
        let (table, columns) = s
            .split_once(':')
            .ok_or_else(|| format!("expected TABLE:COLUMN,COLUMN…, got {s:?}"))?;
        let columns: Vec<String> = columns.split(',').map(|c| c.trim().to_string()).collect();
        if table.trim().is_empty() || columns.iter().any(String::is_empty) {
            return Err(format!(
                "expected TABLE:COLUMN,COLUMN… with no empty names, got {s:?}"
            ));
        }
        Ok(FtsTable {
            table: table.trim().to_string(),
            columns,
        })
    }
}

impl fmt::Display for FtsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table, self.columns.join(","))
    }
}

/// How hard each local commit is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a write that returned Ok survives power loss.
    Full,
    /// `synchronous=NORMAL`: survives an app crash; the last writes may be lost on power loss.
    Normal,
}

/// Everything [`crate::SyncClient::open`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server; `None` reads the settings stored by `init`, or works local-only.
    pub remote: Option<RemoteConfig>,
    /// Rowid strategy.
    pub rowids: RowidStrategy,
    /// Full-text indexed tables. A non-empty list is also stored in the database; an empty
    /// list uses the stored one (if any). So every program that opens the database — the app,
    /// `sync-cli` — installs the same change tracking and keeps the one index up to date.
    pub fts: Vec<FtsTable>,
    /// Read-only connections in the pool.
    pub read_connections: usize,
    /// Durability of local commits.
    pub durability: Durability,
    /// How long a connection waits for a lock before failing (SQLite's busy handler backs off
    /// within this bound).
    pub busy_timeout: Duration,
    /// Background sync interval (also syncs on local writes and server events).
    pub sync_interval: Duration,
    /// Upper bound on one pushed batch, before compression.
    pub push_max_bytes: usize,
    /// About the most bytes asked for per pull page (an entry whose effect alone is larger
    /// comes without it and is fetched in ranges).
    pub pull_max_bytes: usize,
    /// The largest changeset one local write may produce: a larger write fails when it
    /// commits ([`crate::ErrorKind::TooLarge`]) instead of waiting for a push the server would
    /// refuse. The server's own limit (learnt on the first sync, and remembered) applies too,
    /// whichever is smaller. `None`: the server's limit, or 512 MiB until it is known.
    pub max_transaction_bytes: Option<u64>,
    /// Timeout of one HTTP request.
    pub http_timeout: Duration,
    /// Attempts per request for retryable failures within one sync (exponential backoff
    /// with jitter between them).
    pub retries: u32,
    /// Where the bearer token comes from, instead of [`RemoteConfig::token`]: asked at first
    /// use and again after a `401` (the request is then retried once). With a provider the
    /// token is not stored in the database file, so every open of the copy must configure
    /// one (the URL and database name are still stored).
    pub credentials: Option<std::sync::Arc<dyn crate::credentials::Credentials>>,
    /// The database's encryption key (builds with the `encryption` feature): every file the
    /// client writes — the database and its WAL, the search index, a snapshot being
    /// downloaded, spooled changesets — is encrypted. The app supplies it at every open (from
    /// the platform's keystore, say); the library never stores it. `None`: a plain database.
    /// A key that does not fit the file is [`crate::ErrorKind::WrongKey`].
    pub encryption_key: Option<crate::EncryptionKey>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            remote: None,
            rowids: RowidStrategy::Random,
            fts: Vec::new(),
            read_connections: 4,
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            sync_interval: Duration::from_secs(30),
            push_max_bytes: 1 << 20,
            pull_max_bytes: sync_core::protocol::pull::DEFAULT_MAX_BYTES,
            max_transaction_bytes: None,
            http_timeout: Duration::from_secs(30),
            retries: 4,
            credentials: None,
            encryption_key: None,
        }
    }
}
