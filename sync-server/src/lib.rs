//! # sync-server
//!
//! The self-hosted sync service of session-sync: an axum HTTP API (`docs/protocol.md`) over
//! one SQLite file per database, plus the admin CLI that manages users, databases, grants and
//! tokens in the same data directory. The protocol steps themselves (apply a push, read the
//! log, snapshot, lease rowids) are `sync_core::server`; this crate adds auth, storage,
//! transport, events and metrics around them.
//!
//! | module | its one job |
//! |---|---|
//! | [`config`] | flags > `SYNC_*` env > TOML file > defaults, resolved into [`ServerConfig`] |
//! | [`migrations`] | the app schema: numbered SQL migrations or the embedded demo, applied at open |
//! | [`catalog`] | `catalog.db`: users, devices, token hashes, databases (name → id), grants |
//! | [`admin`] | the `user` / `db` / `token` commands and the first-start bootstrap |
//! | [`lifecycle`] | `db backup`, `db restore` (to a seq or a time, with a new lineage), `db revert` |
//! | [`lifecycle_store`] | the same three with a PostgreSQL store: through the store, from any machine |
//! | [`store`] | the PostgreSQL store (`--store`): the catalog and databases as local copies of histories in PostgreSQL |
//! | [`import`] | `db import`: an existing SQLite file's schema and rows become a new database |
//! | [`datadir`] | [`datadir::DataDir`]: the data directory and its encryption key |
//! | [`conn`] | the accept loop: a cap on connections, header / idle / send timeouts |
//! | [`body`] | request bodies under a size limit, a server-wide budget and timeouts, spooled to disk when large |
//! | [`uploads`] | large batches uploaded in parts: files on disk or rows of the PostgreSQL store, bounded in size, count, total and age |
//! | [`auth`] | bearer-token checks with a cache invalidated by the catalog's change counter |
//! | [`jwt`] | JWTs of the operator's identity provider (HS256, RS256/ES256 by JWKS): claims → user, device, grants |
//! | [`storage`] | database files, one writer + read-only connections each, bounded LRU cache |
//! | [`memory`] | freed heap memory back to the OS after databases were closed |
//! | [`events`] | per-database `watch` channels carrying the head seq for SSE |
//! | [`metrics`] | atomic counters and a latency histogram, Prometheus text |
//! | [`error`] | [`ApiError`]: one error type, stable wire codes, internals only in the log |
//! | [`request`] | what the request log learns of a request: its device, its id header |
//! | [`state`] | [`AppState`]: what handlers share; SQLite work goes to the blocking pool |
//! | [`routes`] | the router and the handlers |
//!
//! Tests and embedders run the server in-process: build an [`AppState`] from a
//! [`ServerConfig`], bind a listener (port 0 works) and call [`serve`].

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod datadir;
pub mod error;
pub mod events;
pub mod import;
pub mod jwt;
pub mod lifecycle;
pub mod lifecycle_store;
pub mod memory;
pub mod metrics;
pub mod migrations;
pub mod request;
pub mod routes;
pub mod state;
pub mod storage;
pub mod store;
pub mod uploads;

pub use config::ServerConfig;
pub use error::ApiError;
pub use routes::app;
pub use state::{AppState, StartError};

use std::future::Future;
use tokio::net::TcpListener;

/// Serves `state` on `listener` until `shutdown` resolves, then stops accepting, ends event
/// streams, waits for requests in flight and closes every database (checkpointing and
/// truncating its WAL). Also runs the periodic maintenance (idle databases closed, the memory
/// of closed databases returned to the OS, unused event channels dropped). Connections are
/// limited and timed as [`conn`] describes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let maintenance = tokio::spawn(maintenance(state.clone()));
    let c = &state.shared().config;
    let limits = conn::ConnLimits {
        max_connections: c.max_connections,
        header_timeout: c.header_timeout,
        idle_timeout: c.idle_timeout,
        send_timeout: c.send_timeout,
    };
    let result = conn::serve(
        listener,
        app(state.clone()),
        state.clone(),
        limits,
        shutdown,
    )
    .await;
    maintenance.abort();
    let closing = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        closing.shared().storage.close_all();
        closing.shared().auth.checkpoint();
    })
    .await;
    tracing::info!("stopped");
    result
}

async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(state.shared().config.maintenance);
    tick.tick().await;
    let mut last_churn = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shared().storage.churned() => {
                // Many databases were closed (cache churn): return their memory now rather
                // than at the next tick, but at most once a second however fast they go.
                tokio::time::sleep_until(last_churn + std::time::Duration::from_secs(1)).await;
                last_churn = tokio::time::Instant::now();
            }
        }
        let s = state.clone();
        let (closed, returned, expired) = tokio::task::spawn_blocking(move || {
            let shared = s.shared();
            let closed = shared.storage.evict_idle();
            // On a blocking thread that may wait for the store in place (uploads in PostgreSQL).
            let expired = store::may_block(|| shared.uploads.expire(shared.config.upload_ttl));
            // After closing: their memory went back to the allocator, not to the OS.
            (closed, shared.storage.return_freed_memory(), expired)
        })
        .await
        .unwrap_or((0, false, 0));
        if expired > 0 {
            tracing::info!(expired, "maintenance: removed abandoned uploads");
        }
        let channels = state.shared().hub.prune();
        if closed > 0 || returned {
            tracing::debug!(
                closed,
                returned,
                channels,
                "maintenance: closed idle databases, returned freed memory"
            );
        }
    }
}
