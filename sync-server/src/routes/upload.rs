//! Large transactions: `PUT …/uploads/{batch}` (a part of a batch body), `GET …/uploads/{batch}`
//! (how much arrived) and `GET …/log/{seq}/effect` (a range of a large effect). The push that
//! completes an upload is in `push`.

use super::DbName;
use super::read::query;
use crate::body;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sync_core::engine::spool::Spool;
use sync_core::protocol::upload::{self, EffectQuery, PartQuery, UploadStatus};
use sync_core::protocol::valid_batch_id;
use sync_core::server;

/// A path parameter by name.
fn param(params: &RawPathParams, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn batch_of(params: &RawPathParams) -> Result<String, ApiError> {
    param(params, "batch")
        .filter(|b| valid_batch_id(b))
        .ok_or_else(|| ApiError::bad_request("batch ids are 1-64 characters of [A-Za-z0-9_-]"))
}

/// `PUT /v1/databases/{db}/uploads/{batch}?offset=O&total=T`.
pub async fn put_part(
    State(state): State<AppState>,
    DbName(name): DbName,
    params: RawPathParams,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<PartQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<UploadStatus>, ApiError> {
    let batch = batch_of(&params)?;
    let q = query(q)?;
    let grant = state.authorize(&headers, &name, &note).await?;
    state.shared().authorize_write(&grant, &name)?;
    let shared = state.shared();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let received = body::receive(body, declared, &shared.body_limits, &shared.budget).await?;
    shared.metrics.bytes_in(received.body.len() as usize);
    let status = state
        .blocking(move |s| {
            let body::Received { body, reservation } = received;
            let status = s.uploads.put(
                grant.database_id,
                &grant.device,
                &batch,
                q.offset,
                q.total,
                body.source(),
            )?;
            drop(reservation);
            Ok(status)
        })
        .await?;
    Ok(Json(status))
}

/// `GET /v1/databases/{db}/uploads/{batch}`.
pub async fn status(
    State(state): State<AppState>,
    DbName(name): DbName,
    params: RawPathParams,
    note: RequestNote,
    headers: HeaderMap,
) -> Result<Json<UploadStatus>, ApiError> {
    let batch = batch_of(&params)?;
    let grant = state.authorize(&headers, &name, &note).await?;
    state.shared().authorize_write(&grant, &name)?;
    let status = state
        .blocking(move |s| {
            s.uploads
                .status(grant.database_id, &grant.device, &batch)?
                .ok_or_else(|| {
                    ApiError::Wire(sync_core::protocol::error::ErrorBody::new(
                        sync_core::protocol::error::ErrorCode::NotFound,
                        format!("no upload of batch {batch} is in progress"),
                    ))
                })
        })
        .await?;
    Ok(Json(status))
}

/// `GET /v1/databases/{db}/log/{seq}/effect?offset=O&len=N`.
pub async fn effect(
    State(state): State<AppState>,
    DbName(name): DbName,
    params: RawPathParams,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<EffectQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let seq: i64 = param(&params, "seq")
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| ApiError::bad_request("the log seq must be a positive integer"))?;
    let mut q = query(q)?;
    q.len = q.len.min(upload::MAX_EFFECT_PART);
    let token = crate::state::bearer(&headers)?;
    let (total, body) = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            // Into a spool, so the read transaction ends before the first byte is sent.
            let mut spool = Spool::new(&s.body_limits.spool_dir, crate::body::SPOOL_IN_MEMORY);
            let total = db.read(|c| server::pull::effect_range(c, seq, &q, &mut spool))??;
            let io = |e| ApiError::from_io("writing an effect range", e);
            let part = spool.finish().map_err(io)?;
            s.metrics.bytes_out(part.len());
            Ok((total, crate::body::spooled_body(part).map_err(io)?))
        })
        .await?;
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(upload::MEDIA_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        h.insert(upload::HEADER_EFFECT_LENGTH, v);
    }
    Ok(response)
}
