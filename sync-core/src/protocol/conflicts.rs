//! Conflicts on the wire: the record push answers carry for each conflict met, and
//! `GET /v1/databases/{db}/conflicts?after=ID&limit=N`, the server's records of every conflict
//! with its resolution.
//!
//! [`Conflict`] is the wire form of the engine's [`crate::engine::apply::Conflict`]: the same
//! facts, serialised as `docs/protocol.md` documents them (values in the JSON value form of
//! `docs/changeset-json.md`). The engine type carries no serde, so a change there cannot change
//! the wire by accident.

use crate::engine::apply;
use crate::engine::conflict::{ConflictKind, Resolution};
use crate::engine::decode::Op;
use crate::engine::value::Value;
use serde::{Deserialize, Serialize};

/// One conflict met while applying, and how it was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// DATA, NOTFOUND, CONFLICT, CONSTRAINT or FOREIGN_KEY.
    pub kind: ConflictKind,
    /// The table (empty for FOREIGN_KEY, which concerns the whole apply).
    pub table: String,
    /// The incoming change's operation (absent for FOREIGN_KEY).
    pub op: Option<Op>,
    /// Primary-key values of the row (empty for FOREIGN_KEY).
    pub pk: Vec<Value>,
    /// What was done.
    pub resolution: Resolution,
    /// The target row as it was (DATA and CONFLICT only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub current: Option<Vec<Value>>,
    /// Number of foreign-key violations (FOREIGN_KEY only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fk_violations: Option<i64>,
}

impl From<&apply::Conflict> for Conflict {
    fn from(c: &apply::Conflict) -> Self {
        Conflict {
            kind: c.kind,
            table: c.table.clone(),
            op: c.op,
            pk: c.pk.clone(),
            resolution: c.resolution,
            current: c.current.clone(),
            fk_violations: c.fk_violations,
        }
    }
}

/// The query of the conflicts route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictsQuery {
    /// Records with a larger id (default 0: from the start).
    pub after: Option<i64>,
    /// Most records in the page (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// Records per page unless the query says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most records one page holds.
pub const MAX_LIMIT: usize = 10_000;

/// One recorded conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Increasing id; page with `after`.
    pub id: i64,
    /// Log seq of the batch that met it.
    pub seq: i64,
    /// The batch.
    pub batch_id: String,
    /// The transaction of the batch (the client's id for it); absent for conflicts recorded
    /// before batches held transactions.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tx: Option<i64>,
    /// The device that pushed the batch.
    pub device: String,
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: i64,
    /// The conflict and its resolution.
    #[serde(flatten)]
    pub conflict: Conflict,
}

/// Response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictPage {
    /// Protocol version.
    pub v: u32,
    /// Oldest first.
    pub conflicts: Vec<ConflictRecord>,
    /// True when more follow.
    pub more: bool,
}
