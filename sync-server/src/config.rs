//! Configuration: command-line flags, `SYNC_*` environment variables and an optional TOML file
//! (`--config PATH`), with that precedence (flags > env > file > defaults). clap handles flags
//! and env; the file and the defaults fill what neither set. `docs/operations.md` has the
//! reference.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting has a bad value.
    #[error("{0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How hard a commit waits for the disk (`PRAGMA synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous = NORMAL`: a commit is in the WAL (the OS page cache) before the answer;
    /// it survives a killed server, and the WAL is synced at checkpoints. A power loss or OS
    /// crash can lose the last commits.
    #[default]
    Normal,
    /// `synchronous = FULL`: the WAL is synced at every commit; survives power loss, costs an
    /// fsync per push.
    Full,
}

impl Durability {
    /// The `PRAGMA synchronous` value.
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

/// Options every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// TOML configuration file; flags and SYNC_* variables override its settings.
    #[arg(long, env = "SYNC_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory holding catalog.db and the database files [default: ./sync-data].
    #[arg(long, env = "SYNC_DATA", global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Options of `serve`. Unset options come from the configuration file, then the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8787]. Use port 0 for any free port.
    #[arg(long, env = "SYNC_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of numbered SQL migrations (0001_init.sql, 0002_….sql) [default: the
    /// embedded demo schema, a notes app].
    #[arg(long, env = "SYNC_SCHEMA", value_name = "DIR")]
    pub schema: Option<PathBuf>,
    /// Conflict policy of a table, TABLE=POLICY (repeatable; env: comma-separated); the
    /// table name `default` sets the default. Policies: last-push-wins, first-write-wins,
    /// reject, newest-wins:COLUMN [default: default=last-push-wins].
    #[arg(
        long = "policy",
        env = "SYNC_POLICY",
        value_delimiter = ',',
        value_name = "TABLE=POLICY"
    )]
    pub policies: Vec<String>,
    /// Largest push body, in bytes, before and after decompression [default: 8388608].
    #[arg(long, env = "SYNC_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log entries every database keeps at least; older ones are compacted away and clients
    /// that fell further behind bootstrap from a snapshot [default: 10000].
    #[arg(long, env = "SYNC_LOG_KEEP", value_name = "ENTRIES")]
    pub log_keep: Option<i64>,
    /// Most databases held open at once [default: 1024].
    #[arg(long, env = "SYNC_CACHE_CAPACITY", value_name = "N")]
    pub cache_capacity: Option<usize>,
    /// Close a database after this many seconds without requests [default: 300].
    #[arg(long, env = "SYNC_IDLE_SECS", value_name = "SECS")]
    pub idle_secs: Option<u64>,
    /// SQLite page cache per connection, in KiB [default: 256].
    #[arg(long, env = "SYNC_PAGE_CACHE_KIB", value_name = "KIB")]
    pub page_cache_kib: Option<u32>,
    /// Idle read-only connections kept per open database [default: 2].
    #[arg(long, env = "SYNC_READERS", value_name = "N")]
    pub readers: Option<usize>,
    /// normal: commits survive a killed process; full: also power loss (fsync per push)
    /// [default: normal].
    #[arg(long, env = "SYNC_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Request-body bytes in flight across all requests (memory and spool files); past it
    /// uploads get 503 overloaded with Retry-After [default: 268435456].
    #[arg(long, env = "SYNC_BODY_BUDGET_BYTES", value_name = "BYTES")]
    pub body_budget_bytes: Option<usize>,
    /// Seconds a request body may take in all [default: 60].
    #[arg(long, env = "SYNC_BODY_TIMEOUT_SECS", value_name = "SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Bytes per second a request body must keep up, in every 5-second window [default: 1024].
    #[arg(long, env = "SYNC_BODY_MIN_RATE", value_name = "BYTES_PER_SEC")]
    pub body_min_rate: Option<u64>,
    /// Seconds from a request's first byte to the end of its headers [default: 10].
    #[arg(long, env = "SYNC_HEADER_TIMEOUT_SECS", value_name = "SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a keep-alive connection may sit idle between requests [default: 60].
    #[arg(long, env = "SYNC_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a response may wait for a client that reads nothing [default: 60].
    #[arg(long, env = "SYNC_SEND_TIMEOUT_SECS", value_name = "SECS")]
    pub send_timeout_secs: Option<u64>,
    /// Connections open at once; more get 503 overloaded [default: 4096].
    #[arg(long, env = "SYNC_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Event streams open at once, server-wide; more get 503 overloaded [default: 2048].
    #[arg(long, env = "SYNC_MAX_EVENT_STREAMS", value_name = "N")]
    pub max_event_streams: Option<usize>,
    /// Event streams one device may hold open; more get 429 too_many_streams [default: 4].
    #[arg(long, env = "SYNC_MAX_EVENT_STREAMS_PER_DEVICE", value_name = "N")]
    pub max_event_streams_per_device: Option<usize>,
    /// Do not create the demo user, database and token on first start (they are created
    /// only when the embedded demo schema is served, never with --schema).
    #[arg(long, env = "SYNC_NO_DEMO")]
    pub no_demo: bool,
    /// Threads for SQLite work (tokio's blocking pool) [default: 64].
    #[arg(long, env = "SYNC_BLOCKING_THREADS", value_name = "N")]
    pub blocking_threads: Option<usize>,
    /// Log format [default: text].
    #[arg(long, env = "SYNC_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, tracing's EnvFilter syntax (e.g. `info`, `sync_server=debug`) [default: info].
    #[arg(long, env = "SYNC_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

impl ServeArgs {
    /// These options, with unset ones taken from `fallback` (`sync-server --listen X serve`
    /// means the same as `sync-server serve --listen X`).
    pub fn or(self, fallback: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(fallback.listen),
            schema: self.schema.or(fallback.schema),
            policies: if self.policies.is_empty() {
                fallback.policies
            } else {
                self.policies
            },
            max_body_bytes: self.max_body_bytes.or(fallback.max_body_bytes),
            log_keep: self.log_keep.or(fallback.log_keep),
            cache_capacity: self.cache_capacity.or(fallback.cache_capacity),
            idle_secs: self.idle_secs.or(fallback.idle_secs),
            page_cache_kib: self.page_cache_kib.or(fallback.page_cache_kib),
            readers: self.readers.or(fallback.readers),
            durability: self.durability.or(fallback.durability),
            blocking_threads: self.blocking_threads.or(fallback.blocking_threads),
            body_budget_bytes: self.body_budget_bytes.or(fallback.body_budget_bytes),
            body_timeout_secs: self.body_timeout_secs.or(fallback.body_timeout_secs),
            body_min_rate: self.body_min_rate.or(fallback.body_min_rate),
            header_timeout_secs: self.header_timeout_secs.or(fallback.header_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(fallback.idle_timeout_secs),
            send_timeout_secs: self.send_timeout_secs.or(fallback.send_timeout_secs),
            max_connections: self.max_connections.or(fallback.max_connections),
            max_event_streams: self.max_event_streams.or(fallback.max_event_streams),
            max_event_streams_per_device: self
                .max_event_streams_per_device
                .or(fallback.max_event_streams_per_device),
            no_demo: self.no_demo || fallback.no_demo,
            log_format: self.log_format.or(fallback.log_format),
            log: self.log.or(fallback.log),
        }
    }
}

/// The TOML file. Every key is optional; unknown keys are errors (a typo must not be ignored).
/// Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
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
            demo: true,
            events_keepalive: Duration::from_secs(15),
            maintenance: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log: "info".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sync.toml");
        std::fs::write(
            &file,
            r#"
            data = "data"
            listen = "0.0.0.0:9000"
            log_keep = 50
            [policies]
            default = "reject"
            notes = "newest-wins:updated_at"
            "#,
        )
        .unwrap();
        let cli = Cli::parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
            "--policy",
            "tags=first-write-wins",
        ]);
        let c = ServerConfig::resolve(&cli.global, &cli.serve).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.log_keep, 50);
        assert_eq!(c.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.policies.default, Policy::Abort);
        assert_eq!(c.policies.for_table("tags"), &Policy::Omit);
        assert!(matches!(
            c.policies.for_table("notes"),
            Policy::NewestWins { .. }
        ));
    }

    #[test]
    fn unknown_keys_and_bad_policies_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sync.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let global = GlobalArgs {
            config: Some(file.clone()),
            data: None,
        };
        assert!(matches!(
            ServerConfig::resolve(&global, &ServeArgs::default()),
            Err(ConfigError::Parse { .. })
        ));
        let serve = ServeArgs {
            policies: vec!["notes=sometimes".into()],
            ..ServeArgs::default()
        };
        assert!(ServerConfig::resolve(&GlobalArgs::default(), &serve).is_err());
    }
}
