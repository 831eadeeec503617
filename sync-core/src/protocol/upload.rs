//! Large transactions: a batch body larger than the server's body limit is uploaded in parts,
//! then pushed by name; an effect larger than a pull page is fetched in ranges.
//!
//! - `PUT /v1/databases/{db}/uploads/{batch}?offset=O&total=T`: bytes `O..O+len` of the batch
//!   body of `total` bytes. A part may start anywhere up to what has arrived (so a retried or
//!   overlapping part is harmless: the bytes are the same) and must not pass `total`. The
//!   answer is [`UploadStatus`]. Each part is one request within the body limit, so memory is
//!   bounded on both sides; parts are kept on the server's disk.
//! - `GET /v1/databases/{db}/uploads/{batch}`: how much has arrived (`404 not_found` for an
//!   upload the server does not have), to resume after a failure.
//! - `POST …/push` with header [`HEADER_UPLOAD`]` = 1` and no body: push the uploaded batch. The
//!   push is answered as any other (its retry gets the stored answer, also after the upload
//!   files are gone); an upload that is not complete is `409 upload_incomplete` with
//!   `received` and `total`. Abandoned uploads expire (`upload_ttl_secs` on the server).
//! - `GET /v1/databases/{db}/log/{seq}/effect?offset=O&len=N`: bytes of a log entry's effect,
//!   for an `'L'` entry of a pull page ([`crate::protocol::pull`]); at most
//!   [`MAX_EFFECT_PART`] per request. Header [`HEADER_EFFECT_LENGTH`] gives the whole size.

use serde::{Deserialize, Serialize};

/// Header of the push that completes an upload.
pub const HEADER_UPLOAD: &str = "sync-upload";
/// Header of an effect range: the effect's whole size.
pub const HEADER_EFFECT_LENGTH: &str = "sync-effect-length";
/// Media type of an upload part (raw bytes of a batch body).
pub const MEDIA_TYPE: &str = "application/octet-stream";
/// The most bytes of an effect one request returns.
pub const MAX_EFFECT_PART: u64 = 16 * 1024 * 1024;

/// The query of an upload part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartQuery {
    /// Where the part's bytes go in the batch body.
    pub offset: u64,
    /// Size of the whole batch body.
    pub total: u64,
}

impl PartQuery {
    /// The query string (without `?`).
    pub fn to_query_string(&self) -> String {
        format!("offset={}&total={}", self.offset, self.total)
    }
}

/// How far an upload has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// Protocol version.
    pub v: u32,
    /// The batch being uploaded.
    pub batch_id: String,
    /// Bytes received from the start, without a gap.
    pub received: u64,
    /// Size of the whole batch body.
    pub total: u64,
}

/// The query of an effect range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectQuery {
    /// First byte.
    pub offset: u64,
    /// Most bytes (clamped to [`MAX_EFFECT_PART`]).
    pub len: u64,
    /// The lineage of the page the entry came in (`409 lineage_mismatch` if another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<crate::protocol::lineage::Hex64>,
    /// A seq of that page, with [`EffectQuery::chain`]: its chain value there
    /// (`409 chain_mismatch` if another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// The chain value at [`EffectQuery::at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::protocol::lineage::Hex64>,
}

impl EffectQuery {
    /// The query string (without `?`).
    pub fn to_query_string(&self) -> String {
        let mut q = format!("offset={}&len={}", self.offset, self.len);
        if let Some(l) = self.lineage {
            q.push_str(&format!("&lineage={l}"));
        }
        if let (Some(at), Some(c)) = (self.at, self.chain) {
            q.push_str(&format!("&at={at}&chain={c}"));
        }
        q
    }
}
