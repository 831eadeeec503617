//! The HTTP API (`docs/protocol.md`): the router, the database-name extractor, and the
//! request-tracking middleware. Handlers live in one file per concern:
//!
//! | module | endpoints |
//! |---|---|
//! | `push` | `POST …/push`, `POST …/rowid-ranges` (writes) |
//! | `read` | `GET …/{db}`, `GET …/pull`, `GET …/conflicts` |
//! | `snapshot` | `GET …/snapshot` |
//! | `events` | `GET …/events` (server-sent events) |
//! | `migrations` | `GET …/migrations` (the app schema's scripts, for devices that upgrade) |
//! | `upload` | `PUT`/`GET …/uploads/{batch}`, `GET …/log/{seq}/effect` (large transactions) |

mod events;
mod migrations;
mod push;
mod read;
mod snapshot;
mod upload;

use crate::error::{ApiError, error_response};
use crate::request::{REQUEST_ID_HEADER, RequestNote};
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use sync_core::protocol::error::ErrorBody;
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::{routes, valid_database_name};

/// The whole HTTP API over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(routes::INFO, get(read::info))
        .route(routes::PUSH, post(push::push))
        .route(routes::PULL, get(read::pull))
        .route(routes::POSITION, get(read::position))
        .route(routes::UPLOAD, put(upload::put_part).get(upload::status))
        .route(routes::EFFECT, get(upload::effect))
        .route(routes::CONFLICTS, get(read::conflicts))
        .route(routes::ROWID_RANGES, post(push::rowid_ranges))
        .route(routes::SNAPSHOT, get(snapshot::snapshot))
        .route(routes::EVENTS, get(events::events))
        .route(routes::MIGRATIONS, get(migrations::migrations))
        .route(routes::HEALTHZ, get(healthz))
        .route(routes::METRICS, get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A database name from the URL, checked against the naming rule before anything else
/// happens. Percent-decoding runs first, so `%2e%2e` and `%00` are refused like `..` and NUL.
#[derive(Debug, Clone)]
pub struct DbName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for DbName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid_name())?;
        let name = params
            .iter()
            .find(|(k, _)| *k == "db")
            .map(|(_, v)| v)
            .ok_or_else(ApiError::invalid_name)?;
        if !valid_database_name(name) {
            return Err(ApiError::invalid_name());
        }
        Ok(DbName(name.to_string()))
    }
}

/// Gives every request an id, times it, counts its answer, and logs it: every refused or
/// failed request (status 400 and up) is one `info` line with its id, status, code, database
/// and device; others are `debug`. A handler that panics is answered `500 internal`.
async fn track(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = format!("{:016x}", rand::random::<u64>());
    let note = RequestNote::default();
    request.extensions_mut().insert(note.clone());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let database = database_of(request.uri().path()).map(str::to_string);
    let method = request.method().clone();
    let mut response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(request_id = %id, panic = %what, "a handler panicked");
            error_response(&ErrorBody::new(ErrorCode::Internal, "internal error"))
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let metrics = &state.shared().metrics;
    let route = route.as_deref().unwrap_or("other");
    metrics.request(route, status, elapsed);
    let code = response.extensions().get::<ErrorCode>().copied();
    if let Some(code) = code {
        metrics.error(code);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let micros = elapsed.as_micros() as u64;
    let device = note.recorded_device().unwrap_or("");
    if status >= 400 {
        tracing::info!(
            request_id = %id,
            %method,
            route,
            status,
            code = code.map(ErrorCode::as_str).unwrap_or(""),
            database = database.as_deref().unwrap_or(""),
            device,
            micros,
            "request refused"
        );
    } else {
        tracing::debug!(request_id = %id, %method, route, status, device, micros, "request");
    }
    response
}

/// The database name in an API path (`/v1/databases/{db}…`), if it is a valid name.
fn database_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/databases/")?;
    let name = rest.split('/').next()?;
    valid_database_name(name).then_some(name)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.shared();
    let text = s
        .metrics
        .render(s.storage.open_count(), s.storage.stats(), s.budget.used());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(request: Request) -> Response {
    error_response(&ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ),
    ))
}

async fn method_not_allowed(request: Request) -> Response {
    error_response(&ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    ))
}
