//! `POST /v1/databases/{db}/rowid-ranges`: lease a block of ids no other device will use.

use serde::{Deserialize, Serialize};

/// Largest range one request may lease.
pub const MAX_LEASE: i64 = 1 << 20;

/// Request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Protocol version.
    pub v: u32,
    /// How many ids are wanted (1..=[`MAX_LEASE`]; the server may grant fewer).
    pub size: i64,
}

/// Response body: ids `start..end` (end exclusive) belong to the caller's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Protocol version.
    pub v: u32,
    /// First id of the range.
    pub start: i64,
    /// One past the last id.
    pub end: i64,
}
