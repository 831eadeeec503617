//! Every route of the API, written once: the router mounts these paths, the client builds its
//! URLs from them, the metrics label requests with them.

/// `GET`: database metadata ([`super::info`]).
pub const INFO: &str = "/v1/databases/{db}";
/// `POST`: push a batch ([`super::push`]).
pub const PUSH: &str = "/v1/databases/{db}/push";
/// `GET`: pull a page of the log ([`super::pull`]).
pub const PULL: &str = "/v1/databases/{db}/pull";
/// `GET`: the position at a seq: lineage, chain value, checksum ([`super::lineage`]).
pub const POSITION: &str = "/v1/databases/{db}/position";
/// `GET`: conflict records ([`super::conflicts`]).
pub const CONFLICTS: &str = "/v1/databases/{db}/conflicts";
/// `POST`: lease a range of rowids ([`super::rowid`]).
pub const ROWID_RANGES: &str = "/v1/databases/{db}/rowid-ranges";
/// `PUT` a part / `GET` the status of an upload ([`super::upload`]).
pub const UPLOAD: &str = "/v1/databases/{db}/uploads/{batch}";
/// `GET`: a range of a log entry's effect ([`super::upload`]).
pub const EFFECT: &str = "/v1/databases/{db}/log/{seq}/effect";
/// `GET`: a snapshot file ([`super::snapshot`]).
pub const SNAPSHOT: &str = "/v1/databases/{db}/snapshot";
/// `GET`: the app schema's migration scripts after a version ([`super::migrations`]).
pub const MIGRATIONS: &str = "/v1/databases/{db}/migrations";
/// `GET`: server-sent events ([`super::events`]).
pub const EVENTS: &str = "/v1/databases/{db}/events";
/// `GET`: liveness, no token.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: Prometheus metrics, no token.
pub const METRICS: &str = "/metrics";

/// Every route, for per-route metrics.
pub const ALL: [&str; 13] = [
    PUSH,
    PULL,
    POSITION,
    UPLOAD,
    EFFECT,
    EVENTS,
    SNAPSHOT,
    ROWID_RANGES,
    CONFLICTS,
    MIGRATIONS,
    INFO,
    HEALTHZ,
    METRICS,
];

/// `route` with its `{db}` filled in (the name must be valid: see
/// [`super::valid_database_name`], which keeps it free of characters URLs would escape).
pub fn path(route: &str, db: &str) -> String {
    route.replace("{db}", db)
}

/// The upload route for `batch` (a valid batch id: URL-safe by its alphabet).
pub fn upload_path(db: &str, batch: &str) -> String {
    path(UPLOAD, db).replace("{batch}", batch)
}

/// The effect route for log entry `seq`.
pub fn effect_path(db: &str, seq: i64) -> String {
    path(EFFECT, db).replace("{seq}", &seq.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_in_the_database() {
        assert_eq!(path(PULL, "notes"), "/v1/databases/notes/pull");
        assert_eq!(path(INFO, "notes"), "/v1/databases/notes");
        assert!(ALL.iter().all(|r| r.starts_with('/')));
    }
}
