//! `POST /v1/databases/{db}/push`: the body is a batch of transactions
//! ([`crate::protocol::batch`]; or, for tools, one plain SQLite changeset), optionally
//! `Content-Encoding: zstd`; the headers carry the batch id, the cursor and the schema
//! version; the answer is [`PushResponse`], with every transaction's outcome: 200 when at
//! least one transaction applied, or an error envelope with code `push_rejected` (409)
//! carrying the same fields when every one was rejected.

use super::conflicts::Conflict;
use super::error::{ErrorBody, ErrorCode};
use super::lineage::{HEADER_CHAIN, HEADER_LINEAGE, Hex64, Tip};
use super::{HEADER_SCHEMA_VERSION, valid_batch_id};
use crate::names::named_enum;
use serde::{Deserialize, Serialize};

/// Header: the idempotency key of a push.
pub const HEADER_BATCH_ID: &str = "sync-batch-id";
/// Header: the client's cursor (the last log seq it has applied).
pub const HEADER_CURSOR: &str = "sync-cursor";
/// Media type of a push body: a plain SQLite changeset.
pub const MEDIA_TYPE: &str = "application/vnd.sqlite-changeset";

/// The push headers, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushHeaders {
    /// Idempotency key, unique per device for the life of the device (clients use 128 random
    /// bits in hex). A retry of the same batch carries the same id.
    pub batch_id: String,
    /// The last log seq the client had applied when it built the batch (0 for none).
    pub cursor: i64,
    /// Schema version of the client's database.
    pub schema_version: u32,
    /// The lineage of the client's cursor (`None`: not checked).
    pub lineage: Option<Hex64>,
    /// The chain value at the client's cursor (`None`: not checked).
    pub chain: Option<Hex64>,
}

impl PushHeaders {
    /// Parses the headers through `get` (a case-insensitive header lookup).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ErrorBody> {
        let required = |name: &str| {
            get(name).map(str::trim).ok_or_else(|| {
                ErrorBody::new(ErrorCode::BadRequest, format!("missing header {name}"))
                    .with("header", name)
            })
        };
        let bad = |name: &str, why: &str| {
            ErrorBody::new(ErrorCode::BadRequest, format!("header {name}: {why}"))
                .with("header", name)
        };
        let batch_id = required(HEADER_BATCH_ID)?;
        if !valid_batch_id(batch_id) {
            return Err(bad(
                HEADER_BATCH_ID,
                "must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        let cursor: i64 = required(HEADER_CURSOR)?
            .parse()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| bad(HEADER_CURSOR, "must be a non-negative integer"))?;
        let schema_version: u32 = required(HEADER_SCHEMA_VERSION)?
            .parse()
            .map_err(|_| bad(HEADER_SCHEMA_VERSION, "must be a non-negative integer"))?;
        let hex = |name: &str| -> Result<Option<Hex64>, ErrorBody> {
            get(name)
                .map(|v| v.parse::<Hex64>().map_err(|why| bad(name, &why)))
                .transpose()
        };
        Ok(PushHeaders {
            batch_id: batch_id.to_string(),
            cursor,
            schema_version,
            lineage: hex(HEADER_LINEAGE)?,
            chain: hex(HEADER_CHAIN)?,
        })
    }

    /// The headers as name/value pairs, for a client to send.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (HEADER_BATCH_ID, self.batch_id.clone()),
            (HEADER_CURSOR, self.cursor.to_string()),
            (HEADER_SCHEMA_VERSION, self.schema_version.to_string()),
        ];
        if let Some(l) = self.lineage {
            pairs.push((HEADER_LINEAGE, l.to_string()));
        }
        if let Some(c) = self.chain {
            pairs.push((HEADER_CHAIN, c.to_string()));
        }
        pairs
    }
}

named_enum! {
    /// What the server did with a batch, summed over its transactions.
    pub enum PushStatus {
        /// Every transaction applied (possibly with conflicts resolved by policy); the
        /// effect is in the log at `seq`.
        Applied = "applied",
        /// Some transactions applied, some were rejected; the log entry at `seq` holds the
        /// effects of those that applied.
        Partial = "partial",
        /// Every transaction was rejected; nothing was applied. The batch still has a log
        /// entry at `seq` (with an empty effect) so that the client learns the outcome even
        /// if this answer is lost.
        Rejected = "rejected",
    }
}

impl PushStatus {
    /// The status as one byte: in the log page framing and in the server's log table.
    pub fn code(self) -> u8 {
        match self {
            PushStatus::Applied => 0,
            PushStatus::Rejected => 1,
            PushStatus::Partial => 2,
        }
    }

    /// The status of a [`code`](Self::code), if it is one.
    pub fn from_code(code: u8) -> Option<PushStatus> {
        match code {
            0 => Some(PushStatus::Applied),
            1 => Some(PushStatus::Rejected),
            2 => Some(PushStatus::Partial),
            _ => None,
        }
    }

    /// The status of a batch whose transactions had these outcomes.
    pub fn of(outcomes: &[TxOutcome]) -> PushStatus {
        let rejected = outcomes.iter().filter(|t| t.reason.is_some()).count();
        match rejected {
            0 => PushStatus::Applied,
            n if n == outcomes.len() => PushStatus::Rejected,
            _ => PushStatus::Partial,
        }
    }
}

named_enum! {
    /// Why a transaction was rejected.
    pub enum RejectReason {
        /// A table with the `reject` policy had a conflict.
        Policy = "policy",
        /// Applying the transaction would leave foreign-key violations.
        ForeignKey = "foreign_key",
    }
}

impl RejectReason {
    /// The reason as one byte, in the log page framing.
    pub fn code(self) -> u8 {
        match self {
            RejectReason::Policy => 1,
            RejectReason::ForeignKey => 2,
        }
    }

    /// The reason of a [`code`](Self::code), if it is one.
    pub fn from_code(code: u8) -> Option<RejectReason> {
        match code {
            1 => Some(RejectReason::Policy),
            2 => Some(RejectReason::ForeignKey),
            _ => None,
        }
    }
}

/// What happened to one transaction of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// The client's id for the transaction (as in the batch).
    pub id: i64,
    /// Present when the transaction was rejected (nothing of it was applied).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<RejectReason>,
    /// Changes in the transaction as received (those written are `changes` minus the
    /// conflicts resolved by omission).
    pub changes: u64,
    /// Every conflict met while applying it, with its resolution; for a rejected one, the
    /// last is the one that rejected it (the row that blocked it, or the foreign-key count).
    pub conflicts: Vec<Conflict>,
}

impl TxOutcome {
    /// True when the transaction applied.
    pub fn applied(&self) -> bool {
        self.reason.is_none()
    }
}

/// The server's answer to a push. A retry of the same batch id gets the same answer with
/// `duplicate: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Protocol version.
    pub v: u32,
    /// The batch this answers.
    pub batch_id: String,
    /// The log seq recorded for this batch (every processed batch gets exactly one).
    pub seq: i64,
    /// Applied, partial or rejected (see [`PushStatus::of`]).
    pub status: PushStatus,
    /// True when every transaction applied with no conflict *and* nothing was interleaved
    /// between the client's cursor and this batch (`seq == cursor + 1`): the client's local
    /// state then equals the server's at `seq` plus its later pending changes, so it may skip
    /// the undo/redo of a rebase.
    pub clean: bool,
    /// True when this is the stored answer to an earlier delivery of the same batch.
    pub duplicate: bool,
    /// Changes in the transactions that applied.
    #[serde(default)]
    pub changes: u64,
    /// Every transaction's outcome, in batch order.
    pub transactions: Vec<TxOutcome>,
    /// The position after this batch's log entry: lineage, chain value and content checksum
    /// (absent from answers stored before positions existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip: Option<Tip>,
}

impl PushResponse {
    /// Conflicts of every transaction, in batch order.
    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.transactions.iter().flat_map(|t| t.conflicts.iter())
    }

    /// The 409 error envelope for a batch whose every transaction was rejected: code
    /// `push_rejected` with the response's fields as data.
    pub fn to_rejection(&self) -> ErrorBody {
        let why = match self.transactions.first().and_then(|t| t.reason) {
            Some(RejectReason::ForeignKey) => "it would leave foreign-key violations",
            _ => "a table with the reject policy had a conflict",
        };
        let mut body = ErrorBody::new(
            ErrorCode::PushRejected,
            format!(
                "every transaction of batch {} was rejected (the first: {why})",
                self.batch_id
            ),
        );
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) {
            for (k, v) in fields {
                if k != "v" {
                    body.data.insert(k, v);
                }
            }
        }
        body
    }

    /// Reads a rejection envelope back into a response; `None` if it is not one.
    pub fn from_rejection(body: &ErrorBody) -> Option<PushResponse> {
        if body.code != ErrorCode::PushRejected {
            return None;
        }
        let mut fields = body.data.clone();
        fields.insert("v".into(), body.v.into());
        serde_json::from_value(serde_json::Value::Object(fields)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conflict::{ConflictKind, Resolution};
    use crate::engine::decode::Op;
    use crate::engine::value::Value;
    use std::collections::HashMap;

    #[test]
    fn headers_parse_and_reject_bad_values() {
        let mut h: HashMap<&str, &str> = HashMap::from([
            (HEADER_BATCH_ID, "abc-1"),
            (HEADER_CURSOR, "7"),
            (HEADER_SCHEMA_VERSION, "2"),
        ]);
        let parsed = PushHeaders::parse(|n| h.get(n).copied()).unwrap();
        assert_eq!(parsed.cursor, 7);
        assert_eq!(parsed.schema_version, 2);
        for (name, value) in [
            (HEADER_BATCH_ID, "has space"),
            (HEADER_CURSOR, "-1"),
            (HEADER_CURSOR, "x"),
            (HEADER_SCHEMA_VERSION, "-3"),
        ] {
            let saved = h.insert(name, value).unwrap();
            let err = PushHeaders::parse(|n| h.get(n).copied()).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{name}={value}");
            h.insert(name, saved);
        }
        h.remove(HEADER_CURSOR);
        let err = PushHeaders::parse(|n| h.get(n).copied()).unwrap_err();
        assert!(err.message.contains(HEADER_CURSOR));
    }

    #[test]
    fn rejection_round_trips() {
        let response = PushResponse {
            v: 1,
            batch_id: "b1".into(),
            seq: 9,
            status: PushStatus::Rejected,
            clean: false,
            duplicate: false,
            changes: 0,
            transactions: vec![TxOutcome {
                id: 3,
                reason: Some(RejectReason::Policy),
                changes: 1,
                conflicts: vec![Conflict {
                    kind: ConflictKind::Data,
                    table: "notes".into(),
                    op: Some(Op::Update),
                    pk: vec![Value::Integer(1)],
                    resolution: Resolution::Abort,
                    current: None,
                    fk_violations: None,
                }],
            }],
            tip: None,
        };
        let body = response.to_rejection();
        assert_eq!(body.code, ErrorCode::PushRejected);
        let json = serde_json::to_string(&body).unwrap();
        let back: ErrorBody = serde_json::from_str(&json).unwrap();
        assert_eq!(PushResponse::from_rejection(&back), Some(response));
    }
}
