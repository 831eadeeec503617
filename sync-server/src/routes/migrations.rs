//! `GET /v1/databases/{db}/migrations?after=N`: the app schema's scripts after version `N`,
//! each with the log head it was applied at on this database, for a device that upgrades its
//! local copy in place (`docs/protocol.md`).

use super::DbName;
use super::read::query;
use crate::error::ApiError;
use crate::request::RequestNote;
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use sync_core::protocol::migrations::{Migrations, MigrationsQuery};
use sync_core::server;

/// `GET /v1/databases/{db}/migrations?after=N` (read access is enough).
pub async fn migrations(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<MigrationsQuery>, QueryRejection>,
) -> Result<Json<Migrations>, ApiError> {
    let after = query(q)?.after;
    let token = crate::state::bearer(&headers)?;
    let answer = state
        .blocking(move |s| {
            let grant = s.authorize(&token, &name, &note)?;
            let db = s.storage.get(grant.database_id)?;
            let scripts = s.storage.schema();
            let answer = db
                .read(|c| server::migrations::migrations(c, scripts.scripts(), after))?
                .map_err(server::ServerError::from)?;
            Ok(answer)
        })
        .await?;
    Ok(Json(answer))
}
