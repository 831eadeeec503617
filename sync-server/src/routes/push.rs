//! Writes: `POST /v1/databases/{db}/push` and `POST /v1/databases/{db}/rowid-ranges`.
//!
//! A push is checked in the order `docs/protocol.md` gives — name, token and grant,
//! read-only, media type and headers, body size (by `Content-Length` before reading anything,
//! then while streaming, then after decompression) — and only then handed to
//! [`sync_core::server::push`], which does the rest in one transaction on the database's
//! writer connection.

use super::DbName;
use crate::catalog::now_ms;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::io::Read;
use std::time::Duration;
use sync_core::changeset::Changeset;
use sync_core::protocol::push::{PushHeaders, PushStatus};
use sync_core::protocol::rowid::{Lease, LeaseRequest};
use sync_core::protocol::{CHANGESET_MEDIA_TYPE, VERSION};
use sync_core::server;

/// Largest JSON body of a lease request.
const MAX_JSON_BODY: usize = 16 * 1024;

/// After refusing an oversized body, the server still reads (and discards) up to this much of
/// it, for at most [`DRAIN_TIME`], so that the client sees the 413 instead of a connection
/// reset while it is still sending.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Zstd,
}

fn media_checks(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != CHANGESET_MEDIA_TYPE && essence != "application/octet-stream" {
            return Err(ApiError::unsupported(format!(
                "Content-Type {essence:?} is not accepted; send {CHANGESET_MEDIA_TYPE}"
            )));
        }
    }
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Ok(Encoding::Identity),
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("zstd") => Ok(Encoding::Zstd),
        Some(v) => Err(ApiError::unsupported(format!(
            "Content-Encoding {:?} is not supported (use zstd or none)",
            v.unwrap_or("?")
        ))),
    }
}

/// Reads a body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before reading; a stream that grows past it is refused as soon as it does. Either
/// way the rest is drained in the background (bounded) so the client can read the answer.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        tokio::spawn(drain(stream));
        return Err(ApiError::too_large(limit));
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if out.len() + chunk.len() > limit {
            tokio::spawn(drain(stream));
            return Err(ApiError::too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn drain(mut stream: axum::body::BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Decompresses a zstd body, refusing output beyond `limit` (a small body may expand
/// enormously: the output is capped, never the input trusted).
fn decompress(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let bad = |e: std::io::Error| ApiError::bad_request(format!("the body is not valid zstd: {e}"));
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(bad)?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(bad)?;
    if out.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(out)
}

/// `POST /v1/databases/{db}/push`.
pub async fn push(
    State(state): State<AppState>,
    DbName(name): DbName,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let grant = state.authorize(&headers, &name).await?;
    state.shared().authorize_write(&grant, &name)?;
    let encoding = media_checks(&headers)?;
    let push_headers = PushHeaders::parse(|n| headers.get(n).and_then(|v| v.to_str().ok()))
        .map_err(ApiError::Wire)?;
    let limit = state.shared().config.max_body_bytes;
    let raw = read_limited(&headers, body, limit).await?;
    state.shared().metrics.bytes_in(raw.len());

    let response = state
        .blocking(move |s| {
            let bytes = match encoding {
                Encoding::Zstd => decompress(&raw, limit)?,
                Encoding::Identity => raw,
            };
            let changeset = Changeset::from_bytes(bytes);
            let db = s.storage.get(grant.database_id)?;
            let response = db.write(|conn| {
                let r = server::push(
                    server::PushTarget {
                        conn,
                        shapes: db.shapes(),
                    },
                    &grant.device,
                    &push_headers,
                    &changeset,
                    &s.push,
                    now_ms(),
                )?;
                if !r.duplicate {
                    s.maybe_compact(conn, r.seq);
                }
                Ok::<_, ApiError>(r)
            })?;
            let changes = if response.status == PushStatus::Applied && !response.duplicate {
                changeset.validate().map(|x| x.changes()).unwrap_or(0)
            } else {
                0
            };
            s.metrics.push(&response, changes);
            if !response.duplicate {
                s.hub.publish(grant.database_id, response.seq);
            }
            Ok(response)
        })
        .await?;
    tracing::debug!(
        database = %name,
        batch = %response.batch_id,
        seq = response.seq,
        status = ?response.status,
        duplicate = response.duplicate,
        "push"
    );
    match response.status {
        PushStatus::Applied => Ok(Json(response).into_response()),
        PushStatus::Rejected => Err(ApiError::Wire(response.to_rejection())),
    }
}

/// `POST /v1/databases/{db}/rowid-ranges`.
pub async fn rowid_ranges(
    State(state): State<AppState>,
    DbName(name): DbName,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Lease>, ApiError> {
    let grant = state.authorize(&headers, &name).await?;
    state.shared().authorize_write(&grant, &name)?;
    let raw = read_limited(&headers, body, MAX_JSON_BODY).await?;
    let request: LeaseRequest = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"v\":1,\"size\":N}}: {e}")))?;
    if request.v != VERSION {
        return Err(ApiError::bad_request(format!(
            "unsupported envelope version {} (this server speaks {VERSION})",
            request.v
        )));
    }
    let lease = state
        .blocking(move |s| {
            let db = s.storage.get(grant.database_id)?;
            Ok(db.write(|conn| server::lease_rowids(conn, &grant.device, request.size, now_ms()))?)
        })
        .await?;
    Ok(Json(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_output_is_capped() {
        let bomb = zstd::encode_all(&vec![0u8; 1 << 20][..], 19).unwrap();
        assert!(bomb.len() < 1024);
        assert!(
            matches!(decompress(&bomb, 4096), Err(ApiError::Wire(b)) if b.code.as_str() == "payload_too_large")
        );
        assert_eq!(decompress(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert!(
            matches!(decompress(b"garbage", 4096), Err(ApiError::Wire(b)) if b.code.as_str() == "bad_request")
        );
    }
}
