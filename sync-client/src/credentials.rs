//! Bring-your-own auth on the client: a [`Credentials`] provider hands out the bearer token
//! (a JWT of the app's identity provider, say) instead of a token stored in the database.
//!
//! The transport asks the provider at first use (`refresh = false`) and remembers the token;
//! when the server answers `401` it asks again with `refresh = true` and retries that request
//! once — a second `401` is the [`ErrorKind::Auth`](crate::ErrorKind::Auth) error. A
//! configured provider also means the token is never written into the database file.

use crate::error::{Error, ErrorKind, Result};
use std::sync::{Arc, Mutex};

/// Gives the client its bearer token. Called from the client's sync threads (never while a
/// database transaction is open), so it may block, e.g. on a refresh request to the identity
/// provider.
pub trait Credentials: Send + Sync {
    /// The token to send. `refresh` is false at first use and true after the server refused
    /// the last token (`401`): return a new one then, not a cached one. An error fails the
    /// request with that error (an [`ErrorKind::Auth`] one for "signed out").
    fn token(&self, refresh: bool) -> Result<String>;
}

impl std::fmt::Debug for dyn Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<credentials provider>")
    }
}

/// Any `Fn(refresh) -> Result<String>` closure is a provider.
impl<F> Credentials for F
where
    F: Fn(bool) -> Result<String> + Send + Sync,
{
    fn token(&self, refresh: bool) -> Result<String> {
        self(refresh)
    }
}

/// Where a transport's token comes from: the remote's static token, or a provider with the
/// token it last gave.
pub(crate) enum TokenSource {
    Static(String),
    Provider {
        provider: Arc<dyn Credentials>,
        current: Mutex<Option<String>>,
    },
}

impl TokenSource {
    pub(crate) fn new(token: &str, provider: Option<Arc<dyn Credentials>>) -> TokenSource {
        match provider {
            Some(provider) => TokenSource::Provider {
                provider,
                current: Mutex::new(None),
            },
            None => TokenSource::Static(token.to_string()),
        }
    }

    /// True when a refused token can be replaced by asking again.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self, TokenSource::Provider { .. })
    }

    /// The token to send; `refresh` asks the provider for a new one.
    pub(crate) fn token(&self, refresh: bool) -> Result<String> {
        match self {
            TokenSource::Static(t) if t.is_empty() => Err(Error::new(
                ErrorKind::Auth,
                "no token: this copy stores none (it was set up with a credentials provider); \
                 configure ClientConfig::credentials",
            )),
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::Provider { provider, current } => {
                if !refresh
                    && let Some(t) = current.lock().unwrap_or_else(|e| e.into_inner()).clone()
                {
                    return Ok(t);
                }
                let fresh = provider.token(refresh)?;
                *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }
}
