//! Configuration: command-line flags, `SYNC_*` environment variables and an optional TOML file
//! (`--config PATH`), with that precedence (flags > env > file > defaults). clap handles flags
//! and env; the file and the defaults fill what neither set. `docs/operations.md` has the
//! reference.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_core::apply::{Policy, PolicySet};

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
