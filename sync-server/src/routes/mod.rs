//! The HTTP API (`docs/protocol.md`): the router, the database-name extractor, and the
//! request-tracking middleware. Handlers live in one file per concern:
//!
//! | module | endpoints |
//! |---|---|
//! | `push` | `POST …/push`, `POST …/rowid-ranges` (writes) |
//! | `read` | `GET …/{db}`, `GET …/pull`, `GET …/conflicts` |
//! | `snapshot` | `GET …/snapshot` |
//! | `events` | `GET …/events` (server-sent events) |

mod events;
mod push;
mod read;
mod snapshot;

use crate::error::{ApiError, error_response};
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::time::Instant;
use sync_core::protocol::error::{ErrorBody, ErrorCode};
use sync_core::protocol::valid_database_name;

/// The whole HTTP API over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/databases/{db}", get(read::info))
        .route("/v1/databases/{db}/push", post(push::push))
        .route("/v1/databases/{db}/pull", get(read::pull))
        .route("/v1/databases/{db}/conflicts", get(read::conflicts))
        .route("/v1/databases/{db}/rowid-ranges", post(push::rowid_ranges))
        .route("/v1/databases/{db}/snapshot", get(snapshot::snapshot))
        .route("/v1/databases/{db}/events", get(events::events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(fallback)
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

/// Times every request and counts its answer.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let metrics = &state.shared().metrics;
    let route = route.as_deref().unwrap_or("other");
    metrics.request(route, response.status().as_u16(), elapsed);
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        metrics.error(*code);
    }
    tracing::debug!(%method, route, status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "request");
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.shared();
    let text = s.metrics.render(s.storage.open_count(), s.storage.stats());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn fallback(request: Request) -> Response {
    let body = ErrorBody::new(
        ErrorCode::BadRequest,
        format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ),
    );
    let mut response = error_response(&body);
    response.extensions_mut().insert(body.code);
    response
}
