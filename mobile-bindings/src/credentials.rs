//! Bring-your-own auth in the bindings: the app implements [`CredentialsProvider`] (a Kotlin
//! or Swift interface, a Python class) to hand out bearer tokens — JWTs of its own identity
//! provider — and opens with [`SyncDatabase::open_with_credentials`]. The provider is asked
//! at first use and again, with `refresh = true`, after the server refused a token (the
//! request is then retried once); the token is never stored in the database file.

use crate::database::SyncDatabase;
use crate::error::SyncError;
use crate::types::DatabaseConfig;
use std::sync::Arc;
use sync_client::{Error, ErrorKind};

/// Gives the database its bearer token. Called on the library's sync threads, never on the
/// caller's; it may block (a refresh request to the identity provider).
#[uniffi::export(with_foreign)]
pub trait CredentialsProvider: Send + Sync {
    /// The token to send. `refresh` is false at first use and true after the server refused
    /// the last token: return a new one then. Throw [`CredentialsError`] when there is none
    /// (signed out); the sync fails with `SyncError.Auth`.
    fn token(&self, refresh: bool) -> Result<String, CredentialsError>;
}

/// A provider's failure.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CredentialsError {
    /// No token can be given (signed out, the identity provider is unreachable).
    #[error("{reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CredentialsError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CredentialsError::Unavailable { reason: e.reason }
    }
}

/// The foreign provider as the client library's [`sync_client::Credentials`].
struct Foreign(Arc<dyn CredentialsProvider>);

impl sync_client::Credentials for Foreign {
    fn token(&self, refresh: bool) -> sync_client::Result<String> {
        self.0.token(refresh).map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                format!("the credentials provider gave no token: {e}"),
            )
        })
    }
}

#[uniffi::export]
impl SyncDatabase {
    /// [`SyncDatabase::open`] with tokens from `credentials` instead of `config.token`
    /// (leave it unset): `server_url` and `database` are needed only to make the local copy,
    /// later opens find them stored.
    #[uniffi::constructor]
    pub fn open_with_credentials(
        path: String,
        config: DatabaseConfig,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> Result<Arc<Self>, SyncError> {
        SyncDatabase::open_with(path, config, Some(Arc::new(Foreign(credentials))))
    }
}
