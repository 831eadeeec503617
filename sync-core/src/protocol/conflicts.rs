//! `GET /v1/databases/{db}/conflicts?after=ID&limit=N`: conflicts the server recorded while
//! applying pushes, with their resolutions.

use crate::apply::Conflict;
use serde::{Deserialize, Serialize};

/// One recorded conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Increasing id; page with `after`.
    pub id: i64,
    /// Log seq of the batch that met it.
    pub seq: i64,
    /// The batch.
    pub batch_id: String,
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
