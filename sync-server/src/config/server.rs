//! [`ServerConfig`]: flags/env, the file and the defaults merged, then checked.

use super::args::{GlobalArgs, ServeArgs};
use super::error::ConfigError;
use super::file::FileConfig;
use super::kinds::{Durability, LogFormat};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_core::engine::cipher::EncryptionKey;
use sync_core::engine::policy::{Policy, PolicySet};

/// The resolved configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (catalog.db, dbs/, snapshots/).
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Migrations directory; `None` serves the embedded demo schema.
    pub schema_dir: Option<PathBuf>,
    /// Conflict policies per table.
    pub policies: PolicySet,
    /// Largest push body (compressed and decompressed), in bytes.
    pub max_body_bytes: usize,
    /// Log entries kept per database at least.
    pub log_keep: i64,
    /// Most databases open at once.
    pub cache_capacity: usize,
    /// Idle time before a database is closed.
    pub idle: Duration,
    /// Page cache per connection, KiB.
    pub page_cache_kib: u32,
    /// Idle readers kept per database.
    pub readers: usize,
    /// Commit durability.
    pub durability: Durability,
    /// Threads of the blocking pool, where all SQLite work runs (the binary's runtime; an
    /// embedder sizes its own runtime).
    pub blocking_threads: usize,
    /// Request-body bytes in flight across all requests, in memory and spool files.
    pub body_budget_bytes: usize,
    /// Time a whole request body may take.
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up in every 5-second window.
    pub body_min_rate: u64,
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// Idle time of a keep-alive connection between requests.
    pub idle_timeout: Duration,
    /// How long a response may wait for a client that reads nothing.
    pub send_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Event streams open at once, server-wide.
    pub max_event_streams: usize,
    /// Event streams one device may hold open.
    pub max_event_streams_per_device: usize,
    /// The largest transaction (batch body) a device may upload.
    pub max_transaction_bytes: u64,
    /// Bytes all uploads in progress may declare together.
    pub upload_budget_bytes: u64,
    /// How long an upload may go without a part before it is removed.
    pub upload_ttl: Duration,
    /// Create the demo user, database and token on a first start with the embedded schema.
    pub demo: bool,
    /// Interval of SSE keep-alive comments.
    pub events_keepalive: Duration,
    /// Interval of maintenance passes.
    pub maintenance: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
    /// JWT verification, when enabled (a secret or a JWKS file is configured).
    pub jwt: Option<super::jwt::JwtConfig>,
    /// The key every SQLite file of the data directory is encrypted with (`None`: plain).
    pub encryption_key: Option<EncryptionKey>,
    /// The PostgreSQL store's URL (`None`: the data directory is the store).
    pub store: Option<String>,
    /// Most connections to the PostgreSQL store at once.
    pub store_pool: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./sync-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            schema_dir: None,
            policies: PolicySet::uniform(Policy::Replace),
            max_body_bytes: 8 * 1024 * 1024,
            log_keep: 10_000,
            cache_capacity: 1024,
            idle: Duration::from_secs(300),
            page_cache_kib: 256,
            readers: 2,
            durability: Durability::Normal,
            blocking_threads: 64,
            body_budget_bytes: 256 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_event_streams: 2048,
            max_event_streams_per_device: 4,
            max_transaction_bytes: 512 * 1024 * 1024,
            upload_budget_bytes: 4 * 1024 * 1024 * 1024,
            upload_ttl: Duration::from_secs(24 * 3600),
            demo: true,
            events_keepalive: Duration::from_secs(15),
            maintenance: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log: "info".into(),
            jwt: None,
            encryption_key: None,
            store: None,
            store_pool: 16,
        }
    }
}

/// Reads `--config` if given, with the directory its relative paths are relative to.
fn load_file(global: &GlobalArgs) -> Result<(FileConfig, PathBuf), ConfigError> {
    match &global.config {
        Some(path) => Ok((
            FileConfig::load(path)?,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        )),
        None => Ok((FileConfig::default(), PathBuf::new())),
    }
}

fn relative_to(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_relative() { base.join(p) } else { p }
}

/// The data directory for admin commands: flag/env, then the file, then `./sync-data`.
pub fn data_dir(global: &GlobalArgs) -> Result<PathBuf, ConfigError> {
    let (file, base) = load_file(global)?;
    Ok(global
        .data
        .clone()
        .or_else(|| file.data.map(|p| relative_to(&base, p)))
        .unwrap_or_else(|| ServerConfig::default().data_dir))
}

/// The data directory's encryption key: `--encryption-key-file` / `SYNC_ENCRYPTION_KEY_FILE`,
/// then `SYNC_ENCRYPTION_KEY`, then the file's `encryption_key_file`.
pub fn encryption_key(global: &GlobalArgs) -> Result<Option<EncryptionKey>, ConfigError> {
    let (file, base) = load_file(global)?;
    key_from(global, file, &base)
}

fn key_from(
    global: &GlobalArgs,
    file: FileConfig,
    base: &Path,
) -> Result<Option<EncryptionKey>, ConfigError> {
    super::key::resolve(
        global.encryption_key_file.as_deref(),
        std::env::var(super::key::KEY_ENV).ok(),
        file.encryption_key_file.map(|p| relative_to(base, p)),
    )
}

/// The PostgreSQL store's URL: `--store` / `SYNC_STORE`, then the file's `store`.
pub fn store_url(global: &GlobalArgs) -> Result<Option<String>, ConfigError> {
    let (file, _) = load_file(global)?;
    Ok(global.store.clone().or(file.store))
}

/// The data directory, its key and its store, for admin commands (connects to the store).
pub fn data_dir_keyed(global: &GlobalArgs) -> Result<crate::datadir::DataDir, ConfigError> {
    let dir = crate::datadir::DataDir::new(data_dir(global)?, encryption_key(global)?);
    match store_url(global)? {
        Some(url) => {
            if dir.key().is_some() {
                return Err(ConfigError::Invalid(
                    "--store and an encryption key: the PostgreSQL store keeps no encrypted copies yet"
                        .into(),
                ));
            }
            let store = crate::store::PgStore::connect(&url, 4)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            Ok(dir.with_store(std::sync::Arc::new(store)))
        }
        None => Ok(dir),
    }
}

fn secs(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_secs)
}

fn parse_policy(table: &str, text: &str) -> Result<Policy, ConfigError> {
    Policy::parse(text.trim())
        .map_err(|e| ConfigError::Invalid(format!("policy for {table:?}: {e}")))
}

impl ServerConfig {
    /// Merges flags/env (already merged by clap), the file and the defaults.
    pub fn resolve(global: &GlobalArgs, serve: &ServeArgs) -> Result<ServerConfig, ConfigError> {
        let (file, base) = load_file(global)?;
        let d = ServerConfig::default();
        let mut policies = PolicySet::uniform(d.policies.default.clone());
        for (table, text) in &file.policies {
            let p = parse_policy(table, text)?;
            if table == "default" {
                policies.default = p;
            } else {
                policies.tables.insert(table.clone(), p);
            }
        }
        for entry in serve.policies.iter().filter(|e| !e.trim().is_empty()) {
            let (table, text) = entry.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--policy {entry:?}: expected TABLE=POLICY, e.g. notes=newest-wins:updated_at"
                ))
            })?;
            let table = table.trim();
            let p = parse_policy(table, text)?;
            if table == "default" {
                policies.default = p;
            } else {
                policies.tables.insert(table.to_string(), p);
            }
        }
        let encryption_key = key_from(global, file.clone(), &base)?;
        let config = ServerConfig {
            data_dir: global
                .data
                .clone()
                .or_else(|| file.data.map(|p| relative_to(&base, p)))
                .unwrap_or(d.data_dir),
            listen: serve.listen.or(file.listen).unwrap_or(d.listen),
            schema_dir: serve
                .schema
                .clone()
                .or_else(|| file.schema.map(|p| relative_to(&base, p))),
            policies,
            max_body_bytes: serve
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            log_keep: serve.log_keep.or(file.log_keep).unwrap_or(d.log_keep),
            cache_capacity: serve
                .cache_capacity
                .or(file.cache_capacity)
                .unwrap_or(d.cache_capacity),
            idle: serve
                .idle_secs
                .or(file.idle_secs)
                .map(Duration::from_secs)
                .unwrap_or(d.idle),
            page_cache_kib: serve
                .page_cache_kib
                .or(file.page_cache_kib)
                .unwrap_or(d.page_cache_kib),
            readers: serve.readers.or(file.readers).unwrap_or(d.readers),
            durability: serve.durability.or(file.durability).unwrap_or(d.durability),
            blocking_threads: serve
                .blocking_threads
                .or(file.blocking_threads)
                .unwrap_or(d.blocking_threads),
            body_budget_bytes: serve
                .body_budget_bytes
                .or(file.body_budget_bytes)
                .unwrap_or(d.body_budget_bytes),
            body_timeout: secs(serve.body_timeout_secs.or(file.body_timeout_secs))
                .unwrap_or(d.body_timeout),
            body_min_rate: serve
                .body_min_rate
                .or(file.body_min_rate)
                .unwrap_or(d.body_min_rate),
            header_timeout: secs(serve.header_timeout_secs.or(file.header_timeout_secs))
                .unwrap_or(d.header_timeout),
            idle_timeout: secs(serve.idle_timeout_secs.or(file.idle_timeout_secs))
                .unwrap_or(d.idle_timeout),
            send_timeout: secs(serve.send_timeout_secs.or(file.send_timeout_secs))
                .unwrap_or(d.send_timeout),
            max_connections: serve
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_event_streams: serve
                .max_event_streams
                .or(file.max_event_streams)
                .unwrap_or(d.max_event_streams),
            max_event_streams_per_device: serve
                .max_event_streams_per_device
                .or(file.max_event_streams_per_device)
                .unwrap_or(d.max_event_streams_per_device),
            max_transaction_bytes: serve
                .max_transaction_bytes
                .or(file.max_transaction_bytes)
                .unwrap_or(d.max_transaction_bytes),
            upload_budget_bytes: serve
                .upload_budget_bytes
                .or(file.upload_budget_bytes)
                .unwrap_or(d.upload_budget_bytes),
            upload_ttl: secs(serve.upload_ttl_secs.or(file.upload_ttl_secs))
                .unwrap_or(d.upload_ttl),
            demo: !(serve.no_demo || file.no_demo.unwrap_or(false)),
            events_keepalive: file
                .events_keepalive_secs
                .map(Duration::from_secs)
                .unwrap_or(d.events_keepalive),
            maintenance: file
                .maintenance_secs
                .map(Duration::from_secs)
                .unwrap_or(d.maintenance),
            log_format: serve.log_format.or(file.log_format).unwrap_or(d.log_format),
            log: serve.log.clone().or(file.log).unwrap_or(d.log),
            encryption_key,
            store: global.store.clone().or(file.store.clone()),
            store_pool: serve
                .store_pool
                .or(file.store_pool)
                .unwrap_or(d.store_pool)
                .max(1),
            jwt: super::jwt::JwtConfig::resolve(
                &serve.jwt,
                file.jwt.as_ref(),
                &base,
                std::env::var(super::jwt::SECRET_ENV).ok(),
            )?,
        };
        config.check()?;
        Ok(config)
    }

    /// Rejects values the server cannot work with.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024");
        }
        if self.log_keep < 0 {
            return bad("log_keep must not be negative");
        }
        if self.cache_capacity == 0 {
            return bad("cache_capacity must be at least 1");
        }
        if self.blocking_threads == 0 {
            return bad("blocking_threads must be at least 1");
        }
        if self.events_keepalive.is_zero() || self.maintenance.is_zero() {
            return bad("events_keepalive_secs and maintenance_secs must be at least 1");
        }
        if self.body_budget_bytes < self.max_body_bytes {
            return bad("body_budget_bytes must be at least max_body_bytes");
        }
        if [
            self.body_timeout,
            self.header_timeout,
            self.idle_timeout,
            self.send_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return bad(
                "body_timeout_secs, header_timeout_secs, idle_timeout_secs and send_timeout_secs must be at least 1",
            );
        }
        if self.max_connections == 0
            || self.max_event_streams == 0
            || self.max_event_streams_per_device == 0
        {
            return bad(
                "max_connections, max_event_streams and max_event_streams_per_device must be at least 1",
            );
        }
        Ok(())
    }
}
