//! Reads on read-only connections: `GET /v1/databases/{db}` (info), `…/pull` (the log in
//! its binary framing, zstd on request, with the database's schema version in a header),
//! `…/position` and `…/conflicts`.

use super::DbName;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use sync_core::engine::spool::Spool;
use sync_core::protocol::conflicts::{self, ConflictPage, ConflictsQuery};
use sync_core::protocol::info::{DatabaseInfo, Limits};
use sync_core::protocol::lineage::{PositionAnswer, PositionQuery};
use sync_core::protocol::pull::{self, PullQuery};
use sync_core::protocol::{HEADER_SCHEMA_VERSION, VERSION};
use sync_core::server;

/// zstd level for pull pages: fast, and effects compress well.
const ZSTD_LEVEL: i32 = 3;

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

/// `GET /v1/databases/{db}`.
pub async fn info(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
) -> Result<Json<DatabaseInfo>, ApiError> {
    let token = crate::state::bearer(&headers)?;
    let info = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            let (bounds, schema_version) = db
                .read(|c| {
                    Ok::<_, rusqlite::Error>((server::bounds(c)?, server::schema_version(c)?))
                })?
                .map_err(server::ServerError::from)?;
            Ok(DatabaseInfo {
                v: VERSION,
                database: name,
                schema_version,
                head_seq: bounds.head_seq,
                oldest_seq: bounds.oldest_seq,
                access: grant.access,
                device: grant.device,
                limits: Some(Limits {
                    max_body_bytes: s.config.max_body_bytes as u64,
                    max_transaction_bytes: s.config.max_transaction_bytes,
                }),
            })
        })
        .await?;
    Ok(Json(info))
}

fn accepts_zstd(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            coding.eq_ignore_ascii_case("zstd") && !refused
        })
}

/// `GET /v1/databases/{db}/pull?since=SEQ[&limit=N][&max_bytes=B]`.
pub async fn pull(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let since = q.effective().0;
    if since < 0 {
        return Err(ApiError::bad_request("since must not be negative"));
    }
    let zstd = accepts_zstd(&headers);
    let token = crate::state::bearer(&headers)?;
    let (body, schema_version) = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            // Sent with the page: a device behind learns here that it should upgrade.
            let schema_version = db
                .read(server::schema_version)?
                .map_err(server::ServerError::from)?;
            // The page goes to a spool (a file once large) and the read transaction ends
            // before the first byte is sent: a slow client holds neither memory nor a
            // snapshot of the database.
            let io = |e| ApiError::from_io("writing a pull page", e);
            let mut spool = Spool::new(&s.body_limits.spool_dir, crate::body::SPOOL_IN_MEMORY);
            if zstd {
                let mut encoder =
                    zstd::stream::write::Encoder::new(spool, ZSTD_LEVEL).map_err(io)?;
                db.read(|c| server::pull::pull_into(c, &q, &mut encoder))??;
                spool = encoder.finish().map_err(io)?;
            } else {
                db.read(|c| server::pull::pull_into(c, &q, &mut spool))??;
            }
            let page = spool.finish().map_err(io)?;
            s.metrics.bytes_out(page.len());
            Ok((crate::body::spooled_body(page).map_err(io)?, schema_version))
        })
        .await?;
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(pull::MEDIA_TYPE),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(HEADER_SCHEMA_VERSION, HeaderValue::from(schema_version));
    if zstd {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    }
    Ok(response)
}

/// `GET /v1/databases/{db}/conflicts?after=ID&limit=N`.
pub async fn conflicts(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<ConflictsQuery>, QueryRejection>,
) -> Result<Json<ConflictPage>, ApiError> {
    let q = query(q)?;
    let after = q.after.unwrap_or(0);
    let limit = q
        .limit
        .unwrap_or(conflicts::DEFAULT_LIMIT)
        .clamp(1, conflicts::MAX_LIMIT);
    let token = crate::state::bearer(&headers)?;
    let page = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            let (conflicts, more) =
                db.read(|c| server::conflicts::conflicts(c, after, limit))??;
            Ok(ConflictPage {
                v: VERSION,
                conflicts,
                more,
            })
        })
        .await?;
    Ok(Json(page))
}

/// `GET /v1/databases/{db}/position?seq=N`: lineage, chain value and checksum at `seq`
/// (`404 not_found` outside the retained log).
pub async fn position(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<PositionQuery>, QueryRejection>,
) -> Result<Json<PositionAnswer>, ApiError> {
    let seq = query(q)?.seq;
    let token = crate::state::bearer(&headers)?;
    let tip = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            Ok(db.read(|c| server::lineage::at(c, seq))??)
        })
        .await?
        .ok_or_else(|| ApiError::from(server::ServerError::NoSuchEntry { seq }))?;
    Ok(Json(PositionAnswer { v: VERSION, tip }))
}
