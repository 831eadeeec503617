//! `GET /v1/databases/{db}/snapshot`: a consistent copy of the app tables as an SQLite file,
//! streamed from disk (never read into memory; an encrypted data directory's is built in memory), with `Sync-Seq` and `Sync-Schema-Version`.

use super::DbName;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use crate::storage::SnapshotBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sync_core::protocol::HEADER_SCHEMA_VERSION;
use sync_core::protocol::lineage::{HEADER_CHAIN, HEADER_LINEAGE, HEADER_REASON, HEADER_SUM};
use sync_core::protocol::snapshot::MEDIA_TYPE;
use sync_core::protocol::snapshot::{HEADER_BATCH_ID, HEADER_BATCH_SEQ, HEADER_SEQ};

/// `GET /v1/databases/{db}/snapshot`.
pub async fn snapshot(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = crate::state::bearer(&headers)?;
    let reason = snapshot_reason(&headers);
    let batch = match headers.get(HEADER_BATCH_ID).map(|v| v.to_str()) {
        None => None,
        Some(Ok(b)) if sync_core::protocol::valid_batch_id(b) => Some(b.to_string()),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "header {HEADER_BATCH_ID}: must be 1-64 characters of [A-Za-z0-9_-]"
            )));
        }
    };
    let (snap, batch_seq) = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            let snap = db.snapshot()?;
            // Looked up in the same database (id) the snapshot came from: a restore swaps in
            // another one.
            let batch_seq = match &batch {
                Some(b) => Some(
                    db.read(|c| sync_core::server::push::stored(c, &grant.device, b))??
                        .map(|r| r.seq),
                ),
                None => None,
            };
            Ok((snap, batch_seq))
        })
        .await?;
    state.shared().metrics.bytes_out(snap.len);
    state.shared().metrics.snapshot_served(reason);
    let body = match snap.body {
        SnapshotBody::File(file) => crate::body::file_body(file),
        SnapshotBody::Memory(bytes) => axum::body::Body::from(bytes),
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(snap.len));
    h.insert(HEADER_SEQ, HeaderValue::from(snap.seq));
    h.insert(
        HEADER_SCHEMA_VERSION,
        HeaderValue::from(snap.schema_version),
    );
    let text = |v: String| HeaderValue::from_str(&v).expect("hex digits");
    h.insert(HEADER_LINEAGE, text(snap.tip.lineage.to_string()));
    h.insert(HEADER_CHAIN, text(snap.tip.chain.to_string()));
    if let Some(seq) = batch_seq {
        // Asked about a batch: its seq in this history, or `none`.
        let value = seq.map_or_else(|| "none".to_string(), |s| s.to_string());
        h.insert(
            HEADER_BATCH_SEQ,
            HeaderValue::from_str(&value).expect("ASCII"),
        );
    }
    if let Some(sum) = snap.tip.sum {
        h.insert(HEADER_SUM, text(sum.to_string()));
    }
    Ok(response)
}

/// The client's reason for a snapshot (`Sync-Reason`), one of a fixed set for the metrics;
/// anything else counts as `other`.
fn snapshot_reason(headers: &HeaderMap) -> &'static str {
    let given = headers.get(HEADER_REASON).and_then(|v| v.to_str().ok());
    ["new", "cursor", "lineage", "chain", "checksum", "diverged"]
        .into_iter()
        .find(|r| Some(*r) == given)
        .unwrap_or("other")
}
