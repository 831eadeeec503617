//! Writes: `POST /v1/databases/{db}/push` and `POST /v1/databases/{db}/rowid-ranges`.
//!
//! A push is checked in the order `docs/protocol.md` gives — name, token and grant,
//! read-only, media type and headers, body size (by `Content-Length` before reading anything,
//! then while streaming, then after decompression) — and only then handed to
//! [`sync_core::server::push::push`], which does the rest in one transaction on the database's
//! writer connection.

use super::DbName;
use crate::body;
use crate::catalog::Grant;
use crate::catalog::now_ms;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use crate::state::Shared;
use crate::uploads::Found;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use sync_core::protocol::VERSION;
use sync_core::protocol::batch;
use sync_core::protocol::error::{ErrorBody, ErrorCode};
use sync_core::protocol::push::MEDIA_TYPE;
use sync_core::protocol::push::PushHeaders;
use sync_core::protocol::push::PushResponse;
use sync_core::protocol::push::PushStatus;
use sync_core::protocol::rowid::Lease;
use sync_core::protocol::rowid::LeaseRequest;
use sync_core::protocol::upload;
use sync_core::server;
use sync_core::server::push::PushBody;

/// Largest JSON body of a lease request.
const MAX_JSON_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Zstd,
}

/// How the body is framed: a batch of transactions, or one plain changeset (tools, curl;
/// also when no type is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Batch,
    Changeset,
}

fn media_checks(headers: &HeaderMap) -> Result<(Framing, Encoding), ApiError> {
    let framing = match headers.get(header::CONTENT_TYPE) {
        None => Framing::Changeset,
        Some(ct) => {
            let essence = ct
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence == batch::MEDIA_TYPE {
                Framing::Batch
            } else if essence == MEDIA_TYPE || essence == "application/octet-stream" {
                Framing::Changeset
            } else {
                return Err(ApiError::unsupported(format!(
                    "Content-Type {essence:?} is not accepted; send {} or {MEDIA_TYPE}",
                    batch::MEDIA_TYPE
                )));
            }
        }
    };
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Ok((framing, Encoding::Identity)),
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("identity") => {
            Ok((framing, Encoding::Identity))
        }
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("zstd") => Ok((framing, Encoding::Zstd)),
        Some(v) => Err(ApiError::unsupported(format!(
            "Content-Encoding {:?} is not supported (use zstd or none)",
            v.unwrap_or("?")
        ))),
    }
}

/// The declared `Content-Length`, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// `POST /v1/databases/{db}/push`.
pub async fn push(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let grant = state.authorize(&headers, &name, &note).await?;
    state.shared().authorize_write(&grant, &name)?;
    let push_headers = PushHeaders::parse(|n| headers.get(n).and_then(|v| v.to_str().ok()))
        .map_err(ApiError::Wire)?;
    if headers.contains_key(upload::HEADER_UPLOAD) {
        if declared_length(&headers).is_some_and(|n| n > 0) {
            return Err(ApiError::bad_request(
                "a push of an uploaded batch has no body",
            ));
        }
        let response = state
            .blocking(move |s| push_uploaded(s, &grant, &push_headers))
            .await?;
        return Ok(answer(&name, response));
    }
    let (framing, encoding) = media_checks(&headers)?;
    let shared = state.shared();
    let received = body::receive(
        body,
        declared_length(&headers),
        &shared.body_limits,
        &shared.budget,
    )
    .await?;
    shared.metrics.bytes_in(received.body.len() as usize);

    let response = state
        .blocking(move |s| {
            let body::Received {
                body: raw,
                mut reservation,
            } = received;
            let dir = s.body_limits.spool_dir.as_path();
            let changeset = match encoding {
                Encoding::Zstd => {
                    body::decompress(&raw, s.body_limits.max_bytes, &mut reservation, dir)?
                }
                Encoding::Identity => raw,
            };
            let body = match framing {
                Framing::Batch => PushBody::Batch(changeset.source()),
                Framing::Changeset => PushBody::Changeset(changeset.source()),
            };
            let outcome = apply(s, &grant, &push_headers, body)?;
            drop(reservation);
            Ok(outcome)
        })
        .await?;
    Ok(answer(&name, response))
}

/// Applies a push body on the database's writer, then counts and announces it.
fn apply(
    s: &Shared,
    grant: &Grant,
    headers: &PushHeaders,
    body: PushBody<'_>,
) -> Result<PushResponse, ApiError> {
    let db = s.storage.get(grant.database_id)?;
    let outcome = db.write(|conn| {
        let r = server::push::push(
            server::push::PushTarget {
                conn,
                shapes: db.shapes(),
                scratch: Some(s.body_limits.spool_dir.as_path()),
            },
            &grant.device,
            headers,
            body,
            &s.push,
            now_ms(),
        )?;
        if !r.duplicate {
            s.maybe_compact(conn, r.seq);
        }
        Ok::<_, ApiError>(r)
    })??;
    s.metrics.push(&outcome);
    if !outcome.duplicate {
        s.hub.publish(grant.database_id, outcome.seq);
    }
    Ok(outcome)
}

/// The push of a batch uploaded in parts: the upload is the body (its file, or its parts read
/// back from the PostgreSQL store), removed once the push committed. Without an upload, a
/// batch that was pushed before gets its stored answer (the upload went with that push);
/// anything else is not complete yet.
fn push_uploaded(
    s: &Shared,
    grant: &Grant,
    headers: &PushHeaders,
) -> Result<PushResponse, ApiError> {
    let incomplete = |received: u64, total: u64| {
        ApiError::Wire(
            ErrorBody::new(
                ErrorCode::UploadIncomplete,
                format!(
                    "batch {} is not fully uploaded ({received} of {total} bytes)",
                    headers.batch_id
                ),
            )
            .with("received", received)
            .with("total", total),
        )
    };
    match s
        .uploads
        .complete(grant.database_id, &grant.device, &headers.batch_id)?
    {
        Found::Complete(upload) => {
            let outcome = apply(s, grant, headers, PushBody::Batch(upload.source()))?;
            upload.remove();
            Ok(outcome)
        }
        Found::Partial(status) => Err(incomplete(status.received, status.total)),
        Found::None => {
            let db = s.storage.get(grant.database_id)?;
            let stored =
                db.write(|conn| server::push::stored(conn, &grant.device, &headers.batch_id))??;
            stored.ok_or_else(|| incomplete(0, 0))
        }
    }
}

/// The push answer: 200, or 409 `push_rejected` when every transaction was rejected.
fn answer(name: &str, response: PushResponse) -> Response {
    tracing::debug!(
        database = %name,
        batch = %response.batch_id,
        seq = response.seq,
        status = ?response.status,
        duplicate = response.duplicate,
        "push"
    );
    match response.status {
        PushStatus::Applied | PushStatus::Partial => Json(response).into_response(),
        PushStatus::Rejected => ApiError::Wire(response.to_rejection()).into_response(),
    }
}

/// `POST /v1/databases/{db}/rowid-ranges`.
pub async fn rowid_ranges(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Lease>, ApiError> {
    let grant = state.authorize(&headers, &name, &note).await?;
    state.shared().authorize_write(&grant, &name)?;
    let limits = body::BodyLimits {
        max_bytes: MAX_JSON_BODY,
        ..state.shared().body_limits.clone()
    };
    let raw = body::receive(
        body,
        declared_length(&headers),
        &limits,
        &state.shared().budget,
    )
    .await?
    .body
    .into_bytes()
    .map_err(body::spool_error)?;
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
            Ok(db.write(|conn| {
                server::rowid::lease_rowids(conn, &grant.device, request.size, now_ms())
            })??)
        })
        .await?;
    Ok(Json(lease))
}
