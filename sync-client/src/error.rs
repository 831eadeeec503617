//! The client's error: a struct with a `#[non_exhaustive]` kind, so callers match on what to do
//! (retry, re-authenticate, upgrade, fix the SQL) and read the message for the details.

use sync_core::protocol::error::ErrorBody;
use sync_core::protocol::error::ErrorCode;

/// What went wrong, by what a caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached or did not answer in time; retry later. Local writes
    /// keep working offline.
    Network,
    /// The token is missing, unknown or revoked.
    Auth,
    /// The token's grant is read-only; local writes cannot be pushed.
    ReadOnly,
    /// The database does not exist on the server, or the token has no grant on it; or a local
    /// record asked for by id (a rejected transaction) does not exist.
    NotFound,
    /// The local schema version differs from the server's and the local copy could not be
    /// upgraded in place (a sync upgrades it automatically; `upgrade` does it on demand): a
    /// migration script failed here, or the server does not serve its scripts.
    SchemaMismatch,
    /// The local database cannot be synced as it is: a table without a primary key, a
    /// virtual table in the main database, or a changeset the server found malformed.
    Schema,
    /// A transaction is rejected (a `reject` policy conflict, foreign-key violations) and
    /// stays in the rejected queue: redoing it over the current state would be rejected too.
    Rejected,
    /// The SQL given to `write`/`read`/`query` failed (syntax, constraint, wrong parameter).
    InvalidSql,
    /// The local database is not consistent with the server (divergence) or is damaged.
    Corruption,
    /// Range rowids are used up and no new lease could be obtained (offline).
    RowidsExhausted,
    /// A write produced a changeset larger than one transaction may hold (the server's
    /// `max_transaction_bytes`, or [`crate::ClientConfig::max_transaction_bytes`]); nothing was
    /// written. Split it into smaller transactions.
    TooLarge,
    /// Bad configuration (missing server settings, invalid URL, unknown FTS table).
    Config,
    /// A file could not be read or written.
    Io,
    /// The client was closed.
    Closed,
    /// The database file is already open by another client, in this process or another
    /// (one writer per database); close that one first.
    InUse,
    /// The database's encryption key does not fit: a wrong key, no key for an encrypted
    /// file, a key for a plain one, or a key given to a build without the `encryption`
    /// feature. Nothing was opened or changed; open again with the right key
    /// ([`crate::ClientConfig::encryption_key`]).
    WrongKey,
    /// A bug or an unexpected server answer.
    Internal,
}

/// A client error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The server's error body, when the error came from the server.
    server: Option<ErrorBody>,
    /// How long the server asked the client to wait before retrying (`Retry-After`).
    retry_after: Option<std::time::Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            server: None,
            retry_after: None,
            source: None,
        }
    }

    /// Notes the server's `Retry-After`.
    pub fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// How long the server asked to wait before a retry, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A [`ErrorKind::Network`] error: `context`, then `source` and each of its causes
    /// (`std::error::Error::source`), so that the message tells a refused connection from a
    /// DNS failure or a TLS handshake with a plain-HTTP port. A cause whose text its parent
    /// already shows is skipped.
    pub fn network(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let message = format!("{context}: {}", cause_chain(&source));
        Error::new(ErrorKind::Network, message).with_source(source)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's error envelope, when the server answered with one.
    pub fn server_body(&self) -> Option<&ErrorBody> {
        self.server.as_ref()
    }

    /// The SQLite error code behind this error, if SQLite produced it.
    pub fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        self.source
            .as_ref()
            .and_then(|s| s.downcast_ref::<rusqlite::Error>())
            .and_then(rusqlite::Error::sqlite_error_code)
    }

    /// True for failures worth retrying later with backoff: the network, and a server that is
    /// busy (`503 overloaded`/`unavailable`, `408`, `429`), out of disk (`507`) or failing
    /// (`500`). Never bad input, auth or schema errors: those answer the same every time.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Network
    }

    /// Maps a server error envelope to a client error.
    pub fn from_server(status: u16, body: ErrorBody) -> Self {
        let kind = match body.code {
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::TokenInvalid => {
                ErrorKind::Auth
            }
            ErrorCode::ReadOnly => ErrorKind::ReadOnly,
            ErrorCode::DatabaseNotFound | ErrorCode::InvalidDatabaseName => ErrorKind::NotFound,
            ErrorCode::SchemaMismatch => ErrorKind::SchemaMismatch,
            ErrorCode::InvalidChangeset
            | ErrorCode::ChangesetSchemaMismatch
            | ErrorCode::TypeMismatch
            | ErrorCode::InternalTable => ErrorKind::Schema,
            ErrorCode::PushRejected => ErrorKind::Rejected,
            ErrorCode::Unavailable
            | ErrorCode::Overloaded
            | ErrorCode::RequestTimeout
            | ErrorCode::TooManyStreams
            | ErrorCode::TooManyUploads
            | ErrorCode::InsufficientStorage
            | ErrorCode::Internal => ErrorKind::Network,
            _ => ErrorKind::Internal,
        };
        Error {
            kind,
            message: format!("server answered {status} {}: {}", body.code, body.message),
            server: Some(body),
            retry_after: None,
            source: None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseCorrupt | C::NotADatabase) => ErrorKind::Corruption,
            Some(
                C::CannotOpen
                | C::SystemIoFailure
                | C::DiskFull
                | C::ReadOnly
                | C::PermissionDenied,
            ) => ErrorKind::Io,
            Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorKind::Internal,
            _ => ErrorKind::InvalidSql,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

impl From<sync_core::client::ClientError> for Error {
    fn from(e: sync_core::client::ClientError) -> Self {
        use sync_core::client::ClientError as E;
        let kind = match &e {
            E::Diverged { .. } | E::Gap { .. } | E::CorruptEntry { .. } => ErrorKind::Corruption,
            E::InvalidSnapshot(_) | E::Schema(_) => ErrorKind::Schema,
            E::Sqlite(_) => ErrorKind::Io,
            E::NoSuchRejected { .. } => ErrorKind::NotFound,
            E::StillRejected { .. } => ErrorKind::Rejected,
            E::Upgrade { .. } => ErrorKind::SchemaMismatch,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

impl From<sync_core::engine::cipher::CipherError> for Error {
    fn from(e: sync_core::engine::cipher::CipherError) -> Self {
        use sync_core::engine::cipher::CipherError as E;
        match e {
            E::Sqlite(e) => Error::from(e),
            E::BadKey(_) => Error::new(ErrorKind::Config, e.to_string()).with_source(e),
            _ => Error::new(ErrorKind::WrongKey, e.to_string()).with_source(e),
        }
    }
}

impl From<sync_core::engine::schema::SchemaError> for Error {
    fn from(e: sync_core::engine::schema::SchemaError) -> Self {
        Error::new(ErrorKind::Schema, e.to_string()).with_source(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string()).with_source(e)
    }
}

/// `error` and its causes, `": "`-separated; a cause already contained in the text before it
/// (libraries often repeat their source in their own message) is left out.
pub(crate) fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_failing_or_unreachable_server_is_retried() {
        let retried = [
            (503, ErrorCode::Overloaded),
            (503, ErrorCode::Unavailable),
            (408, ErrorCode::RequestTimeout),
            (429, ErrorCode::TooManyStreams),
            (507, ErrorCode::InsufficientStorage),
            (500, ErrorCode::Internal),
        ];
        for (status, code) in retried {
            let e = Error::from_server(status, ErrorBody::new(code, "x"));
            assert!(e.is_retryable(), "{code}");
        }
        let final_ = [
            (400, ErrorCode::TypeMismatch),
            (400, ErrorCode::InternalTable),
            (400, ErrorCode::InvalidChangeset),
            (400, ErrorCode::BadRequest),
            (401, ErrorCode::Unauthorized),
            (403, ErrorCode::ReadOnly),
            (404, ErrorCode::NotFound),
            (404, ErrorCode::DatabaseNotFound),
            (409, ErrorCode::SchemaMismatch),
            (413, ErrorCode::PayloadTooLarge),
        ];
        for (status, code) in final_ {
            let e = Error::from_server(status, ErrorBody::new(code, "x"));
            assert!(!e.is_retryable(), "{code}");
        }
        let e = Error::from_server(503, ErrorBody::new(ErrorCode::Overloaded, "busy"))
            .with_retry_after(Some(std::time::Duration::from_secs(1)));
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(1)));
    }

    #[test]
    fn a_network_error_names_its_cause() {
        // A port nobody listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).unwrap_err();
        let e = Error::network("cannot reach the server", err);
        assert_eq!(e.kind(), ErrorKind::Network);
        let text = e.to_string().to_lowercase();
        assert!(text.starts_with("cannot reach the server: "), "{text}");
        assert!(text.contains("refused"), "{text}");
    }
}
