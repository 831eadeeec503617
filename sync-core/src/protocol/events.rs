//! `GET /v1/databases/{db}/events[?since=SEQ]`: server-sent events telling a client that the
//! log advanced. Events are hints to pull, never data.

use serde::{Deserialize, Serialize};

/// SSE event name sent whenever the head advances (and once on connect).
pub const HEAD_EVENT: &str = "head";

/// Data of a [`HEAD_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadEvent {
    /// Protocol version.
    pub v: u32,
    /// The newest seq.
    pub head_seq: i64,
}

/// The query of the events route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsQuery {
    /// The client's cursor. Accepted (and checked) for symmetry with pull; every stream starts
    /// with the current head whatever it is.
    pub since: Option<i64>,
}
