//! What the request log knows about a request beyond its URL: the device of its token, noted
//! by the handler once authorised; and the header that carries the request's id.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::{Arc, OnceLock};

/// What a handler learns about its request that the request log reports: the device of the
/// token, once authorised. The log middleware puts one in every request's extensions;
/// handlers take it as an extractor and pass it to the state's `authorize`.
#[derive(Debug, Clone, Default)]
pub struct RequestNote {
    device: Arc<OnceLock<String>>,
}

impl RequestNote {
    /// Records the device the request acts for.
    pub fn device(&self, device: &str) {
        let _ = self.device.set(device.to_string());
    }

    /// The device recorded, if any.
    pub fn recorded_device(&self) -> Option<&str> {
        self.device.get().map(String::as_str)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestNote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestNote>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Response header carrying the request's id (also in its log line).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
