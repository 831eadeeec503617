//! The error envelope: `{"v":1,"code":"…","message":"…", …data}` with a stable `code`.

use crate::names::named_enum;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

named_enum! {
    /// Stable error codes. Clients match on these, never on messages.
    #[non_exhaustive]
    pub enum ErrorCode {
        /// 401: no bearer token, an unknown one, or a revoked one.
        Unauthorized = "unauthorized",
        /// 401: the JWT's `exp` has passed; get a fresh token and retry.
        TokenExpired = "token_expired",
        /// 401: the JWT does not verify (signature, `kid`, algorithm), is of another audience
        /// or issuer, not valid yet (`nbf`), or its claims are malformed (`message` says which).
        TokenInvalid = "token_invalid",
        /// 403: the token may read this database but not write it.
        ReadOnly = "read_only",
        /// 404: no such database, or the token has no grant on it (the two are not told apart).
        DatabaseNotFound = "database_not_found",
        /// 400: the database name in the URL is not valid.
        InvalidDatabaseName = "invalid_database_name",
        /// 400: a required header or query parameter is missing or malformed.
        BadRequest = "bad_request",
        /// 404: no such endpoint (the path is not part of the API).
        NotFound = "not_found",
        /// 405: the endpoint exists but not with this method.
        MethodNotAllowed = "method_not_allowed",
        /// 408: the request's body did not arrive in time (the whole of it within the body
        /// timeout, at the minimum rate in every window); the connection is closed.
        RequestTimeout = "request_timeout",
        /// 400: the push body is not a valid changeset (`offset` says where).
        InvalidChangeset = "invalid_changeset",
        /// 400: the push body is not a valid batch (`offset`): bad magic or version, an index
        /// that does not match the body's size, a transaction id given twice.
        InvalidBatch = "invalid_batch",
        /// 400: the changeset names an unknown table or has the wrong columns or key.
        ChangesetSchemaMismatch = "changeset_schema_mismatch",
        /// 400: a value in the changeset has a type its column cannot hold (TEXT for an
        /// `INTEGER PRIMARY KEY`, say).
        TypeMismatch = "type_mismatch",
        /// 400: the changeset writes a table internal to session-sync or SQLite (`_sync_*`,
        /// `sqlite_*`, in any letter case); no client of this library produces one.
        InternalTable = "internal_table",
        /// 409: the client's schema version is not the server's (`server_version`,
        /// `client_version`); the batch was not processed. Upgrade the local copy in place
        /// with the scripts of `GET …/migrations`, then push again.
        SchemaMismatch = "schema_mismatch",
        /// 409: every transaction of the push was rejected (a `reject` policy conflict,
        /// foreign-key violations); the data is the push answer. It is recorded as processed
        /// and answers the same on retry.
        PushRejected = "push_rejected",
        /// 409: a push names an upload that has not fully arrived (`received`, `total`);
        /// upload the rest, then push again.
        UploadIncomplete = "upload_incomplete",
        /// 409: the client's cursor is ahead of the server's head (`head_seq`): the server was
        /// restored from an older backup. Bootstrap from a snapshot.
        CursorAhead = "cursor_ahead",
        /// 409: the client's cursor is in another history of the database (`lineage`, the
        /// server's): it was restored, rewound to a point in time, or imported over.
        /// Bootstrap from a snapshot, keeping pending transactions.
        LineageMismatch = "lineage_mismatch",
        /// 409: the log entry at the client's cursor (`seq`) is not the one the client
        /// integrated: the server's log lost its tail (an OS crash under relaxed durability)
        /// and grew again. Bootstrap from a snapshot, keeping pending transactions.
        ChainMismatch = "chain_mismatch",
        /// 410: `since` is older than the retained log (`oldest_seq`); bootstrap from a snapshot.
        CursorTooOld = "cursor_too_old",
        /// 413: the body exceeds the server's limit (`limit`).
        PayloadTooLarge = "payload_too_large",
        /// 415: an unsupported `Content-Encoding` or content type.
        UnsupportedMediaType = "unsupported_media_type",
        /// 429: this device already has as many event streams open as the server allows
        /// (`limit`); close one first.
        TooManyStreams = "too_many_streams",
        /// 429: this device already has as many uploads in progress as the server allows
        /// (`limit`); finish one first.
        TooManyUploads = "too_many_uploads",
        /// 503: the server is shutting down; retry later.
        Unavailable = "unavailable",
        /// 503: the server is at a capacity limit (request bodies in flight, connections, event
        /// streams); retry after the `Retry-After` header's seconds, with backoff.
        Overloaded = "overloaded",
        /// 507: the server's disk is full; nothing was changed. Retry later, with backoff.
        InsufficientStorage = "insufficient_storage",
        /// 500: something failed inside the server; details are in its log, not here.
        Internal = "internal",
    }
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::TokenInvalid => 401,
            ErrorCode::ReadOnly => 403,
            ErrorCode::DatabaseNotFound => 404,
            ErrorCode::InvalidDatabaseName
            | ErrorCode::BadRequest
            | ErrorCode::InvalidChangeset
            | ErrorCode::InvalidBatch
            | ErrorCode::ChangesetSchemaMismatch
            | ErrorCode::TypeMismatch
            | ErrorCode::InternalTable => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::TooManyStreams | ErrorCode::TooManyUploads => 429,
            ErrorCode::Overloaded => 503,
            ErrorCode::InsufficientStorage => 507,
            ErrorCode::SchemaMismatch
            | ErrorCode::PushRejected
            | ErrorCode::UploadIncomplete
            | ErrorCode::CursorAhead
            | ErrorCode::LineageMismatch
            | ErrorCode::ChainMismatch => 409,
            ErrorCode::CursorTooOld => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Protocol version.
    pub v: u32,
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// Code-specific fields (`offset`, `oldest_seq`, `server_version`, …), flattened into the
    /// envelope.
    #[serde(flatten)]
    pub data: Map<String, Json>,
}

impl ErrorBody {
    /// An envelope with no extra data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            v: super::VERSION,
            code,
            message: message.into(),
            data: Map::new(),
        }
    }

    /// Adds a data field.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }

    /// A data field as an integer.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.data.get(key).and_then(Json::as_i64)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_flattened_data() {
        let body = ErrorBody::new(ErrorCode::CursorTooOld, "cursor 3 is older than 10")
            .with("oldest_seq", 10);
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"code":"cursor_too_old","message":"cursor 3 is older than 10","oldest_seq":10}"#
        );
        let back: ErrorBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back, body);
        assert_eq!(back.get_i64("oldest_seq"), Some(10));
    }

    #[test]
    fn serde_names_match_as_str() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::TokenExpired,
            ErrorCode::TokenInvalid,
            ErrorCode::ReadOnly,
            ErrorCode::DatabaseNotFound,
            ErrorCode::InvalidDatabaseName,
            ErrorCode::BadRequest,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTimeout,
            ErrorCode::TypeMismatch,
            ErrorCode::TooManyStreams,
            ErrorCode::TooManyUploads,
            ErrorCode::Overloaded,
            ErrorCode::InsufficientStorage,
            ErrorCode::InvalidChangeset,
            ErrorCode::InvalidBatch,
            ErrorCode::ChangesetSchemaMismatch,
            ErrorCode::InternalTable,
            ErrorCode::SchemaMismatch,
            ErrorCode::PushRejected,
            ErrorCode::UploadIncomplete,
            ErrorCode::CursorTooOld,
            ErrorCode::CursorAhead,
            ErrorCode::LineageMismatch,
            ErrorCode::ChainMismatch,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
    }
}
