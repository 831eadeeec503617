//! The flags and `SYNC_*` environment variables, parsed by clap.

use super::kinds::{Durability, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// TOML configuration file; flags and SYNC_* variables override its settings.
    #[arg(long, env = "SYNC_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory holding catalog.db and the database files [default: ./sync-data].
    #[arg(long, env = "SYNC_DATA", global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// File holding the data directory's encryption key: a passphrase, or 64 hex digits (a
    /// raw key). The key itself may come in SYNC_ENCRYPTION_KEY instead; never on the command
    /// line. Needs a build with the `encryption` feature.
    #[arg(
        long,
        env = "SYNC_ENCRYPTION_KEY_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub encryption_key_file: Option<PathBuf>,
    /// PostgreSQL store, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE: everything that
    /// must survive lives there and the data directory holds only caches, so several nodes can
    /// serve the same databases [default: none — the data directory is the store].
    #[arg(long, env = "SYNC_STORE", global = true, value_name = "URL")]
    pub store: Option<String>,
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
    /// Most connections to the PostgreSQL store (`--store`) at once [default: 16].
    #[arg(long, env = "SYNC_STORE_POOL", value_name = "N")]
    pub store_pool: Option<usize>,
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
    /// The largest transaction (batch body) a device may upload, in bytes; bigger ones are
    /// refused with 413, and clients refuse to commit them [default: 536870912 (512 MiB)].
    #[arg(long, env = "SYNC_MAX_TRANSACTION_BYTES", value_name = "BYTES")]
    pub max_transaction_bytes: Option<u64>,
    /// Bytes all uploads in progress may declare together; past it new uploads get 507
    /// [default: 4294967296 (4 GiB)].
    #[arg(long, env = "SYNC_UPLOAD_BUDGET_BYTES", value_name = "BYTES")]
    pub upload_budget_bytes: Option<u64>,
    /// Seconds an upload may go without a part before it is removed [default: 86400].
    #[arg(long, env = "SYNC_UPLOAD_TTL_SECS", value_name = "SECS")]
    pub upload_ttl_secs: Option<u64>,
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
    /// JWT verification (bring-your-own identity provider).
    #[command(flatten)]
    pub jwt: super::jwt::JwtArgs,
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
            store_pool: self.store_pool.or(fallback.store_pool),
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
            max_transaction_bytes: self
                .max_transaction_bytes
                .or(fallback.max_transaction_bytes),
            upload_budget_bytes: self.upload_budget_bytes.or(fallback.upload_budget_bytes),
            upload_ttl_secs: self.upload_ttl_secs.or(fallback.upload_ttl_secs),
            no_demo: self.no_demo || fallback.no_demo,
            log_format: self.log_format.or(fallback.log_format),
            log: self.log.or(fallback.log),
            jwt: self.jwt.or(fallback.jwt),
        }
    }
}
