//! Which history a position belongs to. Every server database has a **lineage** id, replaced
//! whenever its history is rewound (a restore, a point-in-time restore, an import over it), and
//! its log is **hash-chained**: each entry's chain value covers the previous one and the entry.
//! A client's cursor carries both, so a reused seq — from a restore, or from a log that lost its
//! tail in an OS crash — is told apart from the entry the client integrated. With every
//! position also goes the content checksum of the app tables there
//! ([`crate::engine::checksum`]), which the client compares with its own after each pull.
//!
//! On the wire, ids and chain values are 16 hex digits (a JSON number would lose bits in
//! JavaScript); checksums are 64 hex digits.

use crate::engine::checksum::Checksum;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Header (push) and query parameter (pull): the lineage of the client's cursor.
pub const HEADER_LINEAGE: &str = "sync-lineage";
/// Header (push) and query parameter (pull): the chain value at the client's cursor.
pub const HEADER_CHAIN: &str = "sync-chain";
/// Header (snapshot): the content checksum at the snapshot's seq.
pub const HEADER_SUM: &str = "sync-sum";
/// Header (snapshot request): why the client asks for a snapshot (`new`, `cursor`,
/// `lineage`, `chain`, `checksum`, `diverged`), for the server's metrics.
pub const HEADER_REASON: &str = "sync-reason";

/// A 64-bit id or chain value, written as 16 hex digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Hex64(pub i64);

impl fmt::Display for Hex64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0 as u64)
    }
}

impl std::str::FromStr for Hex64 {
    type Err = String;
    fn from_str(s: &str) -> Result<Hex64, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 16 {
            return Err(format!("{s:?} is not 1-16 hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(|v| Hex64(v as i64))
            .map_err(|_| format!("{s:?} is not 1-16 hex digits"))
    }
}

impl Serialize for Hex64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hex64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hex64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A log position as the client holds it: the seq, the lineage it is in and the chain value
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The lineage.
    pub lineage: i64,
    /// The seq (0: before the first entry).
    pub seq: i64,
    /// The chain value at `seq`.
    pub chain: i64,
}

/// What the server knows at a log position: its chain value and the content checksum after
/// that entry (`None` for entries logged before checksums existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// The lineage.
    pub lineage: Hex64,
    /// The seq.
    pub seq: i64,
    /// The chain value at `seq`.
    pub chain: Hex64,
    /// The checksum of the app tables after entry `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<Checksum>,
}

impl Tip {
    /// The position this tip is at.
    pub fn position(&self) -> Position {
        Position {
            lineage: self.lineage.0,
            seq: self.seq,
            chain: self.chain.0,
        }
    }
}

/// The query of the position route: `?seq=N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionQuery {
    /// The seq asked about.
    pub seq: i64,
}

/// The answer of the position route: [`Tip`] in an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionAnswer {
    /// Protocol version.
    pub v: u32,
    /// The position.
    #[serde(flatten)]
    pub tip: Tip,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip_including_the_sign_bit() {
        for v in [0, 1, -1, i64::MIN, i64::MAX, 0x1234_5678_9abc_def0] {
            let h = Hex64(v);
            assert_eq!(h.to_string().len(), 16);
            assert_eq!(h.to_string().parse::<Hex64>().unwrap(), h);
            let json = serde_json::to_string(&h).unwrap();
            assert_eq!(serde_json::from_str::<Hex64>(&json).unwrap(), h);
        }
        for bad in ["", "xyz", "12345678901234567", "-1"] {
            assert!(bad.parse::<Hex64>().is_err(), "{bad}");
        }
    }
}
