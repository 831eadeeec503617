//! The shared state of a running server, and how handlers reach SQLite: every catalog or
//! database call goes through [`AppState::blocking`], which runs it on tokio's blocking pool
//! so that no SQLite work (disk I/O, locks) ever stalls the async threads.

use crate::auth::Auth;
use crate::body::{BodyLimits, Budget};
use crate::catalog::{Authorization, CatalogError, Grant};
use crate::config::ServerConfig;
use crate::datadir::DataDir;
use crate::error::ApiError;
use crate::events::Hub;
use crate::metrics::Metrics;
use crate::migrations::{AppSchema, MigrationError};
use crate::request::RequestNote;
use crate::storage::{Storage, StorageConfig, StorageError};
use crate::store::{CATALOG_FILE, PgStore, StoreError};
use axum::http::HeaderMap;
use rusqlite::Connection;
use std::sync::Arc;
use sync_core::protocol::info::Access;
use sync_core::server;
use sync_core::server::push::PushConfig;
use tokio::sync::watch;

/// Every this many seqs, the push that reached it compacts the log to the configured window.
const COMPACT_EVERY: i64 = 64;

/// Why a server cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The app schema or the policies are unusable.
    #[error(transparent)]
    Schema(#[from] MigrationError),
    /// The catalog cannot be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The data directory cannot be prepared.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The JWT keys are unusable.
    #[error(transparent)]
    Jwt(#[from] crate::jwt::JwtError),
    /// The PostgreSQL store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

/// The parts of the state.
#[derive(Debug)]
pub struct Shared {
    /// The resolved configuration.
    pub config: ServerConfig,
    /// Token checks.
    pub auth: Auth,
    /// Open databases.
    pub storage: Storage,
    /// Head notifications.
    pub hub: Hub,
    /// Counters.
    pub metrics: Metrics,
    /// Conflict policies, as the push step takes them.
    pub push: PushConfig,
    /// Limits every push body is received under.
    pub body_limits: BodyLimits,
    /// The server-wide budget of request-body bytes in flight.
    pub budget: Arc<Budget>,
    /// Event streams open, server-wide and per device.
    pub streams: crate::events::StreamSlots,
    /// Uploads of large batches in progress.
    pub uploads: crate::uploads::Uploads,
    /// JWT verification, when enabled.
    pub jwt: Option<crate::jwt::Verifier>,
    /// The data directory, its key and its PostgreSQL store, if any.
    pub data: DataDir,
    shutdown: watch::Sender<bool>,
}

/// The data directory of `config`, connected to its PostgreSQL store if it has one.
fn data_dir(config: &ServerConfig) -> Result<DataDir, StartError> {
    let dir = DataDir::new(&config.data_dir, config.encryption_key.clone());
    let Some(url) = &config.store else {
        return Ok(dir);
    };
    if dir.key().is_some() {
        return Err(StartError::Store(StoreError::Invalid(
            "--store and an encryption key: the PostgreSQL store keeps no encrypted copies yet"
                .into(),
        )));
    }
    let store = PgStore::connect(url, config.store_pool)?;
    tracing::info!(store = store.shown_url(), "PostgreSQL store");
    Ok(dir.with_store(Arc::new(store)))
}

/// Frames other nodes append reach this node as events: a log entry wakes the database's
/// event streams, a catalog write marks the catalog copy stale.
fn listen_to(store: &Arc<PgStore>, shared: &Arc<Shared>) {
    let on_frame = Arc::downgrade(shared);
    let on_reconnect = Arc::downgrade(shared);
    crate::store::listen::spawn(
        store,
        move |a| {
            let Some(s) = on_frame.upgrade() else { return };
            if a.file == CATALOG_FILE {
                s.auth.mark_stale();
            } else if a.seq > 0 {
                s.hub.publish(a.file, a.seq);
            }
        },
        move || {
            let Some(s) = on_reconnect.upgrade() else {
                return;
            };
            s.auth.mark_stale();
            // Announcements made while the connection was down are lost: tell the streams
            // the heads now (off the store's runtime: these calls block).
            let listened = s.hub.listened();
            if listened.is_empty() {
                return;
            }
            std::thread::spawn(
                move || match s.data.store().map(|st| st.log_heads(&listened)) {
                    Some(Ok(heads)) => {
                        for (id, seq) in heads {
                            s.hub.publish(id, seq);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the heads after reconnecting")
                    }
                    None => {}
                },
            );
        },
    );
}

/// The uploads of large batches: in the PostgreSQL store when there is one (any node takes
/// any part), else files under the data directory.
fn uploads(config: &ServerConfig, data: &DataDir) -> crate::uploads::Uploads {
    let (max_total, budget) = (config.max_transaction_bytes, config.upload_budget_bytes);
    match data.store() {
        Some(store) => crate::uploads::Uploads::in_store(
            store.clone(),
            config.data_dir.join(TMP_DIR),
            max_total,
            budget,
        ),
        None => crate::uploads::Uploads::new(&config.data_dir, max_total, budget),
    }
}

/// Directory of spool files (large request bodies, effects, pull pages) inside the data
/// directory. Its files are unlinked when created; it is emptied at startup anyway.
pub const TMP_DIR: &str = "tmp";

impl AppState {
    /// Loads the schema (the `--schema` directory or the embedded demo), checks it and the
    /// policies against it, opens the catalog and prepares the data directory.
    pub fn new(config: ServerConfig) -> Result<AppState, StartError> {
        let schema = match &config.schema_dir {
            Some(dir) => AppSchema::from_dir(dir)?,
            None => AppSchema::embedded(),
        };
        schema.validate(&config.policies)?;
        let data = data_dir(&config)?;
        let auth = Auth::open_dir(&data)?;
        let jwt = match &config.jwt {
            Some(c) => Some(crate::jwt::Verifier::new(c.clone())?),
            None => None,
        };
        let tmp = config.data_dir.join(TMP_DIR);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|source| {
            StartError::Storage(StorageError::Io {
                path: tmp.clone(),
                source,
            })
        })?;
        let storage = Storage::new(
            StorageConfig {
                data_dir: config.data_dir.clone(),
                capacity: config.cache_capacity,
                idle: config.idle,
                page_cache_kib: config.page_cache_kib,
                synchronous: config.durability.pragma(),
                readers: config.readers,
                key: config.encryption_key.clone(),
                store: data.store().cloned(),
            },
            Arc::new(schema),
        )?;
        let state = AppState {
            inner: Arc::new(Shared {
                push: PushConfig {
                    policies: config.policies.clone(),
                },
                body_limits: BodyLimits {
                    max_bytes: config.max_body_bytes,
                    timeout: config.body_timeout,
                    min_rate: config.body_min_rate,
                    spool_dir: tmp,
                },
                budget: Budget::new(config.body_budget_bytes),
                streams: crate::events::StreamSlots::new(
                    config.max_event_streams,
                    config.max_event_streams_per_device,
                ),
                uploads: uploads(&config, &data),
                jwt,
                config,
                auth,
                storage,
                data,
                hub: Hub::default(),
                metrics: Metrics::default(),
                shutdown: watch::channel(false).0,
            }),
        };
        if let Some(store) = state.inner.data.store() {
            listen_to(store, &state.inner);
        }
        Ok(state)
    }

    /// The shared parts.
    pub fn shared(&self) -> &Shared {
        &self.inner
    }

    /// Runs `f` on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
    {
        let state = self.inner.clone();
        tokio::task::spawn_blocking(move || crate::store::may_block(|| f(&state)))
            .await
            .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
    }

    /// Checks the bearer token of `headers` against `database` (on the blocking pool).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        database: &str,
        note: &RequestNote,
    ) -> Result<Grant, ApiError> {
        let token = bearer(headers)?;
        let database = database.to_string();
        let note = note.clone();
        self.blocking(move |s| s.authorize(&token, &database, &note))
            .await
    }

    /// Tells long-lived responses (event streams) to end: the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves when [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }
}

impl Shared {
    /// Checks a token against a database, and notes the token's device for the request log.
    /// Blocks.
    pub fn authorize(
        &self,
        token: &Bearer,
        database: &str,
        note: &RequestNote,
    ) -> Result<Grant, ApiError> {
        if let Some(jwt) = &self.jwt
            && crate::jwt::looks_like_jwt(&token.token)
        {
            let identity = jwt.verify(&token.token).map_err(ApiError::jwt)?;
            let device = identity
                .device_name(token.device.as_deref())
                .map_err(ApiError::jwt)?;
            note.device(&device);
            let access = identity.databases.get(database).copied();
            let id = match access {
                Some(_) => self.auth.database_id(database)?,
                None => None,
            };
            return match (access, id) {
                (Some(access), Some(database_id)) => Ok(Grant {
                    database_id,
                    access,
                    device,
                }),
                _ => Err(ApiError::not_found(database)),
            };
        }
        match self.auth.authorize(&token.token, database)? {
            Authorization::Granted(g) => {
                note.device(&g.device);
                Ok(g)
            }
            Authorization::NoGrant => Err(ApiError::not_found(database)),
            Authorization::BadToken => {
                Err(ApiError::unauthorized("the token is unknown or revoked"))
            }
        }
    }

    /// Refuses a read-only grant with `403 read_only` (pushes, rowid leases).
    pub fn authorize_write(&self, grant: &Grant, database: &str) -> Result<(), ApiError> {
        if grant.access == Access::ReadWrite {
            Ok(())
        } else {
            Err(ApiError::read_only(database))
        }
    }

    /// After a push recorded `seq`: every 64th seq, drops log entries beyond
    /// the configured window. Runs on the writer, after the push committed; a failure is
    /// logged and retried at the next opportunity, never failing the push.
    pub fn maybe_compact(&self, conn: &Connection, seq: i64) {
        if seq % COMPACT_EVERY != 0 || seq <= self.config.log_keep {
            return;
        }
        if let Err(e) = server::pull::compact(conn, self.config.log_keep) {
            tracing::warn!(error = %e, "log compaction failed");
        }
    }
}

/// The longest bearer token accepted (JWTs with RSA signatures run to about a kilobyte).
const MAX_TOKEN_BYTES: usize = 8192;

/// The header a client may name its device with, for JWTs that carry no device claim.
pub const DEVICE_HEADER: &str = sync_core::protocol::HEADER_DEVICE;

/// What a request presents: its bearer token, and the device it names (`Sync-Device`).
#[derive(Debug, Clone)]
pub struct Bearer {
    /// The token.
    pub token: String,
    /// The `Sync-Device` header, if sent (used only for JWTs without a device claim).
    pub device: Option<String>,
}

/// The token of an `Authorization: Bearer …` header, and the `Sync-Device` header.
pub fn bearer(headers: &HeaderMap) -> Result<Bearer, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::unauthorized(
            "expected Authorization: Bearer <token>",
        ));
    }
    let device = headers
        .get(DEVICE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    Ok(Bearer {
        token: token.to_string(),
        device,
    })
}
