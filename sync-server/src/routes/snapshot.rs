//! `GET /v1/databases/{db}/snapshot`: a consistent copy of the app tables as an SQLite file,
//! streamed from disk (never read into memory), with `Sync-Seq` and `Sync-Schema-Version`.

use super::DbName;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sync_core::protocol::HEADER_SCHEMA_VERSION;
use sync_core::protocol::snapshot::HEADER_SEQ;
use sync_core::protocol::snapshot::MEDIA_TYPE;

/// `GET /v1/databases/{db}/snapshot`.
pub async fn snapshot(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = crate::state::bearer(&headers)?;
    let snap = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            Ok(db.snapshot()?)
        })
        .await?;
    state.shared().metrics.bytes_out(snap.len);
    let mut response = Response::new(crate::body::file_body(snap.file));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(snap.len));
    h.insert(HEADER_SEQ, HeaderValue::from(snap.seq));
    h.insert(
        HEADER_SCHEMA_VERSION,
        HeaderValue::from(snap.schema_version),
    );
    Ok(response)
}
