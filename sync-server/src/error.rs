//! The HTTP error type: every handler returns [`ApiError`], which becomes a JSON
//! [`ErrorBody`] with a stable code and the HTTP status that code is sent with. Internal
//! failures are logged here, with their details, and answered as a bare `500 internal`.

use crate::catalog::CatalogError;
use crate::storage::StorageError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sync_core::protocol::error::{ErrorBody, ErrorCode};
use sync_core::server::ServerError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A ready answer for the client (4xx, or a rejected push).
    #[error("{0}")]
    Wire(ErrorBody),
    /// A server-side protocol step failed ([`ServerError::to_body`] maps it).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Opening or using a database file failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::BadRequest, message))
    }

    /// `400 invalid_database_name`.
    pub fn invalid_name() -> Self {
        ApiError::Wire(ErrorBody::new(
            ErrorCode::InvalidDatabaseName,
            "database names are 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
        ))
    }

    /// `401 unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::Unauthorized, message))
    }

    /// `404 database_not_found` (also for databases the token has no grant on).
    pub fn not_found(name: &str) -> Self {
        ApiError::Wire(ErrorBody::new(
            ErrorCode::DatabaseNotFound,
            format!("no database {name:?} for this token"),
        ))
    }

    /// `403 read_only`.
    pub fn read_only(name: &str) -> Self {
        ApiError::Wire(ErrorBody::new(
            ErrorCode::ReadOnly,
            format!("this token may read database {name:?} but not write it"),
        ))
    }

    /// `413 payload_too_large`.
    pub fn too_large(limit: usize) -> Self {
        ApiError::Wire(
            ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds the server's limit of {limit} bytes; split the batch"),
            )
            .with("limit", limit as u64),
        )
    }

    /// `415 unsupported_media_type`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::UnsupportedMediaType, message))
    }

    /// `503 unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::Unavailable, message))
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Wire(body) => body.clone(),
            ApiError::Server(e) => e.to_body(),
            ApiError::Storage(_) | ApiError::Catalog(_) | ApiError::Internal(_) => {
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// Renders an error body as a response with the code's status.
pub fn error_response(body: &ErrorBody) -> Response {
    let status =
        StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        if body.code == ErrorCode::Internal {
            // The only place internals are written down: the log, never the response.
            tracing::error!(error = %self, debug = ?self, "request failed");
        } else {
            tracing::debug!(code = %body.code, message = %body.message, "request refused");
        }
        let mut response = error_response(&body);
        response.extensions_mut().insert(body.code);
        response
    }
}
