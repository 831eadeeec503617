//! `GET /v1/databases/{db}/snapshot`: a consistent copy of the app tables as an SQLite file,
//! streamed from disk (never read into memory), with `Sync-Seq` and `Sync-Schema-Version`.

use super::DbName;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sync_core::protocol::{HEADER_SCHEMA_VERSION, HEADER_SEQ, SNAPSHOT_MEDIA_TYPE};
use tokio::io::AsyncReadExt;

const CHUNK: usize = 64 * 1024;

/// `GET /v1/databases/{db}/snapshot`.
pub async fn snapshot(
    State(state): State<AppState>,
    DbName(name): DbName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = crate::state::bearer(&headers)?;
    let snap = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name)?;
            let db = s.storage.get(grant.database_id)?;
            Ok(db.snapshot()?)
        })
        .await?;
    state.shared().metrics.bytes_out(snap.len);
    let file = tokio::fs::File::from_std(snap.file);
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SNAPSHOT_MEDIA_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(snap.len));
    h.insert(HEADER_SEQ, HeaderValue::from(snap.seq));
    h.insert(
        HEADER_SCHEMA_VERSION,
        HeaderValue::from(snap.schema_version),
    );
    Ok(response)
}
