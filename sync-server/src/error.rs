//! The HTTP error type: every handler returns [`ApiError`], which becomes a JSON
//! [`ErrorBody`] with a stable code and the HTTP status that code is sent with. Internal
//! failures are logged here, with their details, and answered as a bare `500 internal`.

use crate::catalog::CatalogError;
use crate::storage::StorageError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sync_core::protocol::error::ErrorBody;
use sync_core::protocol::error::ErrorCode;
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
    /// A file-system failure (spooling a body, a snapshot file).
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
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

    /// `401 token_expired` / `401 token_invalid` for a refused JWT.
    pub fn jwt(e: crate::jwt::JwtError) -> Self {
        let code = match e {
            crate::jwt::JwtError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::TokenInvalid,
        };
        ApiError::Wire(ErrorBody::new(code, e.to_string()))
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

    /// `503 overloaded` (sent with `Retry-After`).
    pub fn overloaded(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::Overloaded, message))
    }

    /// `408 request_timeout` (sent with `Connection: close`).
    pub fn request_timeout(message: impl Into<String>) -> Self {
        ApiError::Wire(ErrorBody::new(ErrorCode::RequestTimeout, message))
    }

    /// A file-system failure while `doing` something: `507` when the disk is full, else a
    /// `500` whose cause goes to the log.
    pub fn from_io(doing: &str, e: std::io::Error) -> Self {
        ApiError::Io {
            doing: doing.to_string(),
            source: e,
        }
    }

    /// The body sent to the client. A full disk is `507 insufficient_storage` whichever layer
    /// met it; every other server fault is a bare `500 internal`.
    pub fn body(&self) -> ErrorBody {
        if self.is_disk_full() {
            return ErrorBody::new(
                ErrorCode::InsufficientStorage,
                "the server's disk is full; nothing was changed, retry later",
            );
        }
        if let Some(e) = self.store_error()
            && matches!(e, StoreError::Unavailable(_) | StoreError::Contended { .. })
        {
            return ErrorBody::new(
                ErrorCode::Unavailable,
                "the server's store is unavailable; nothing was acknowledged, retry later",
            );
        }
        match self {
            ApiError::Wire(body) => body.clone(),
            ApiError::Server(e) => e.to_body(),
            ApiError::Storage(_)
            | ApiError::Catalog(_)
            | ApiError::Io { .. }
            | ApiError::Internal(_) => ErrorBody::new(ErrorCode::Internal, "internal error"),
        }
    }

    /// The PostgreSQL store's error behind this one, if any.
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            ApiError::Storage(crate::storage::StorageError::Store(e)) => Some(e),
            ApiError::Catalog(CatalogError::Store(e)) => Some(e),
            _ => None,
        }
    }

    /// True when the failure comes from a full disk (SQLite's `SQLITE_FULL`, or `ENOSPC`,
    /// `EDQUOT`, `EFBIG` from a file write), at any depth of the error's causes.
    pub fn is_disk_full(&self) -> bool {
        let root: &(dyn std::error::Error + 'static) = match self {
            ApiError::Wire(_) => return false,
            ApiError::Server(e) => e,
            ApiError::Storage(e) => e,
            ApiError::Catalog(e) => e,
            ApiError::Io { source, .. } => source,
            ApiError::Internal(_) => return false,
        };
        let mut next = Some(root);
        while let Some(e) = next {
            if let Some(s) = e.downcast_ref::<rusqlite::Error>()
                && s.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull
                        | std::io::ErrorKind::QuotaExceeded
                        | std::io::ErrorKind::FileTooLarge
                )
            {
                return true;
            }
            if let Some(ServerError::Sqlite(s)) = e.downcast_ref::<ServerError>()
                && s.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// Renders an error body as a response with the code's status, and the headers some codes
/// need: `Retry-After` for the ones a client should retry soon, `Connection: close` where the
/// connection cannot be reused (a body that did not arrive). The code is also left in the
/// response's extensions, for the request log and the metrics.
pub fn error_response(body: &ErrorBody) -> Response {
    let status =
        StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, json).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match body.code {
        ErrorCode::Overloaded | ErrorCode::Unavailable | ErrorCode::TooManyStreams => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ErrorCode::InsufficientStorage => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        ErrorCode::RequestTimeout => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response.extensions_mut().insert(body.code);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        if matches!(
            body.code,
            ErrorCode::Internal | ErrorCode::InsufficientStorage
        ) {
            // The only place internals are written down: the log, never the response. (The
            // request's own line, with its id, follows from the request log.)
            tracing::error!(error = %self, cause = ?self, "request failed");
        }
        error_response(&body)
    }
}
