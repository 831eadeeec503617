//! Reading the server's HTTP answers: transport failures, error envelopes (with
//! `Retry-After`) and JSON bodies, mapped to the client's [`Error`].

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;
use sync_core::protocol::error::ErrorBody;

pub(crate) fn network(e: reqwest::Error) -> Error {
    Error::network("cannot reach the server", e)
}

pub(crate) fn error_response(resp: reqwest::blocking::Response) -> Error {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(300)));
    let text = resp.text().unwrap_or_default();
    let error = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => Error::from_server(status, body),
        Err(_) if status >= 500 || status == 429 => Error::new(
            ErrorKind::Network,
            format!(
                "server answered {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        ),
        Err(_) => Error::new(
            ErrorKind::Internal,
            format!(
                "unexpected answer {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        ),
    };
    error.with_retry_after(retry_after)
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("unreadable answer from server: {e}"),
        )
        .with_source(e)
    })
}
