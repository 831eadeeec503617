//! The TOML file (`--config PATH`).

use super::error::ConfigError;
use super::kinds::{Durability, LogFormat};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The TOML file. Every key is optional; unknown keys are errors (a typo must not be ignored).
/// Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// File holding the data directory's encryption key.
    pub encryption_key_file: Option<PathBuf>,
    /// PostgreSQL store URL.
    pub store: Option<String>,
    /// Most connections to the store.
    pub store_pool: Option<usize>,
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Migrations directory.
    pub schema: Option<PathBuf>,
    /// Largest push body in bytes.
    pub max_body_bytes: Option<usize>,
    /// Log entries kept per database.
    pub log_keep: Option<i64>,
    /// Most open databases.
    pub cache_capacity: Option<usize>,
    /// Idle seconds before a database is closed.
    pub idle_secs: Option<u64>,
    /// Page cache per connection in KiB.
    pub page_cache_kib: Option<u32>,
    /// Idle readers per database.
    pub readers: Option<usize>,
    /// `normal` or `full`.
    pub durability: Option<Durability>,
    /// Threads for SQLite work.
    pub blocking_threads: Option<usize>,
    /// Request-body bytes in flight, server-wide.
    pub body_budget_bytes: Option<usize>,
    /// Seconds a body may take.
    pub body_timeout_secs: Option<u64>,
    /// Bytes per second a body must keep up.
    pub body_min_rate: Option<u64>,
    /// Seconds for a request's headers.
    pub header_timeout_secs: Option<u64>,
    /// Seconds a keep-alive connection may be idle.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a response may wait for a client that reads nothing.
    pub send_timeout_secs: Option<u64>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Event streams open at once.
    pub max_event_streams: Option<usize>,
    /// Event streams per device.
    pub max_event_streams_per_device: Option<usize>,
    /// The largest transaction a device may upload, bytes.
    pub max_transaction_bytes: Option<u64>,
    /// Bytes all uploads in progress may declare together.
    pub upload_budget_bytes: Option<u64>,
    /// Seconds an upload may go without a part.
    pub upload_ttl_secs: Option<u64>,
    /// `true` disables the first-start demo.
    pub no_demo: Option<bool>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Log filter.
    pub log: Option<String>,
    /// Seconds between SSE keep-alive comments.
    pub events_keepalive_secs: Option<u64>,
    /// Seconds between maintenance passes (idle databases closed, freed memory returned).
    pub maintenance_secs: Option<u64>,
    /// `default = "…"` and `TABLE = "…"`.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// The `[jwt]` table.
    pub jwt: Option<super::jwt::JwtFile>,
}

impl FileConfig {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}
