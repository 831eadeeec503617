//! `GET /v1/databases/{db}/pull?since=SEQ[&limit=N][&max_bytes=B]`: the query, and the pull
//! page: a compact, versioned binary framing of log entries, because effects are changesets
//! and travel as bytes (never base64 in JSON).
//!
//! The framing is specified in docs/protocol.md (version 3: version 2's entries, and a
//! trailer that ends with the position after the last entry — see [`super::lineage`]).
//!
//! Integers are big-endian. `status` is 0 applied, 1 rejected. `origin` is the device that
//! pushed the batch (UTF-8, ≤ 255 bytes); `batch_id` follows the push rules. `effect` is the
//! changeset the server's session recorded (possibly empty). `head_seq` is the newest seq when
//! the page was read; `more` is 1 when the page was cut short by its count or byte limit.
//! Entries are in increasing seq order. Anything after the trailer is an error.

use super::lineage::{Hex64, Position, Tip};
use super::push::{PushStatus, RejectReason};
use crate::engine::changeset::Changeset;
use crate::engine::checksum::Checksum;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// The query of the pull route. Unset fields take the defaults below; the server clamps
/// `limit` and `max_bytes` to the maxima.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullQuery {
    /// The client's cursor: entries after it are sent (default 0).
    pub since: Option<i64>,
    /// Most entries in the page.
    pub limit: Option<usize>,
    /// About the most bytes in the page (one entry is always sent, however large).
    pub max_bytes: Option<usize>,
    /// The page format the client reads: 3 for pages with the position trailer (lineage,
    /// chain value, checksum); absent or 2 for the older format without it.
    pub v: Option<u8>,
    /// The lineage of the client's cursor; a different one is `409 lineage_mismatch`.
    pub lineage: Option<Hex64>,
    /// The chain value at the client's cursor; a different one is `409 chain_mismatch`.
    pub chain: Option<Hex64>,
    /// The client's schema version: entries logged after the server migrated past it are not
    /// sent (the page ends at the migration's position; a cursor at or past it is
    /// `409 schema_mismatch`: upgrade first).
    pub schema: Option<u32>,
}

/// Entries per page unless the query says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The most entries one page holds.
pub const MAX_LIMIT: usize = 10_000;
/// Bytes per page unless the query says otherwise.
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes a page is filled to (beyond its first entry).
pub const MAX_MAX_BYTES: usize = 16 * 1024 * 1024;

impl PullQuery {
    /// A query for the page after `since`.
    pub fn after(since: i64, limit: usize, max_bytes: usize) -> PullQuery {
        PullQuery {
            since: Some(since),
            limit: Some(limit),
            max_bytes: Some(max_bytes),
            v: Some(FORMAT_VERSION),
            lineage: None,
            chain: None,
            schema: None,
        }
    }

    /// This query, from a client at schema version `version`.
    pub fn schema(mut self, version: u32) -> PullQuery {
        self.schema = Some(version);
        self
    }

    /// This query, claiming the cursor is at `position` (checked by the server).
    pub fn at(mut self, position: Option<Position>) -> PullQuery {
        self.lineage = position.map(|p| Hex64(p.lineage));
        self.chain = position.map(|p| Hex64(p.chain));
        self
    }

    /// Whether the answer should be in the current format (with the position trailer).
    pub fn wants_positions(&self) -> bool {
        self.v.is_some_and(|v| v >= 3)
    }

    /// The query string (without `?`), as a client sends it.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.since {
            parts.push(format!("since={s}"));
        }
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        if let Some(b) = self.max_bytes {
            parts.push(format!("max_bytes={b}"));
        }
        if let Some(v) = self.v {
            parts.push(format!("v={v}"));
        }
        if let Some(l) = self.lineage {
            parts.push(format!("lineage={l}"));
        }
        if let Some(c) = self.chain {
            parts.push(format!("chain={c}"));
        }
        if let Some(s) = self.schema {
            parts.push(format!("schema={s}"));
        }
        parts.join("&")
    }

    /// The values the server uses: defaults filled in, limits clamped.
    pub fn effective(&self) -> (i64, usize, usize) {
        (
            self.since.unwrap_or(0),
            self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
            self.max_bytes
                .unwrap_or(DEFAULT_MAX_BYTES)
                .clamp(1, MAX_MAX_BYTES),
        )
    }
}

/// Magic bytes at the start of a page.
pub const MAGIC: &[u8; 5] = b"SSLOG";
/// The framing version this code reads and writes.
pub const FORMAT_VERSION: u8 = 3;
/// The older page format (no position trailer), still served to clients that ask for it.
pub const FORMAT_VERSION_2: u8 = 2;
/// Media type of a page.
pub const MEDIA_TYPE: &str = "application/vnd.session-sync.log";

const TAG_ENTRY: u8 = b'E';
const TAG_LARGE: u8 = b'L';
const TAG_END: u8 = b'Z';

/// A transaction of a batch that the server rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedTx {
    /// The client's id for it (as in the batch).
    pub id: i64,
    /// Why.
    pub reason: RejectReason,
}

/// One log entry: the effect of one processed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the database's log; starts at 1, no gaps.
    pub seq: i64,
    /// Applied, partial or rejected.
    pub status: PushStatus,
    /// The device that pushed the batch.
    pub origin: String,
    /// The batch's id.
    pub batch_id: String,
    /// The batch's rejected transactions.
    pub rejected: Vec<RejectedTx>,
    /// What applying the batch changed on the server (empty if nothing, if every transaction
    /// was rejected, or if the effect is [`large`](Self::large)).
    pub effect: Changeset,
    /// For an effect too large for the page: its size. It is not in `effect`; fetch it on its
    /// own.
    pub large: Option<u64>,
}

/// A page of log entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    /// The server's newest seq when the page was read.
    pub head_seq: i64,
    /// Entries after the requested seq, in order.
    pub entries: Vec<LogEntry>,
    /// True when more entries follow (ask again with `since` = the last seq here).
    pub more: bool,
    /// The position after the page's last entry (at `since` for an empty page): lineage,
    /// chain value, checksum. `None` in a version-2 page.
    pub tip: Option<Tip>,
}

/// Why a page does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log page at byte {offset}: {what}")]
pub struct LogDecodeError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub what: String,
}

/// Writes the page header: version 3 when the page will end with a position trailer
/// (`positions`), else version 2.
pub fn encode_header(head_seq: i64, positions: bool, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&[if positions {
        FORMAT_VERSION
    } else {
        FORMAT_VERSION_2
    }])?;
    out.write_all(&head_seq.to_be_bytes())
}

/// An entry without its effect bytes: what is written before them, so that a server can
/// stream an effect from its storage right after ([`EntryHead::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHead {
    /// The entry's seq.
    pub seq: i64,
    /// Applied, partial or rejected.
    pub status: PushStatus,
    /// The device that pushed the batch.
    pub origin: String,
    /// The batch's id.
    pub batch_id: String,
    /// The batch's rejected transactions.
    pub rejected: Vec<RejectedTx>,
    /// Size of the effect.
    pub effect_len: usize,
    /// The effect is not in the page (an `'L'` entry).
    pub large: bool,
}

impl EntryHead {
    /// Writes everything of the entry up to its effect bytes, which the caller writes next
    /// (exactly `effect_len` of them, none for a large entry). Origins and batch ids longer
    /// than 255 bytes are a caller bug (they are validated on the way in) and are truncated
    /// to keep the framing.
    pub fn encode(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut head = Vec::with_capacity(64 + 9 * self.rejected.len());
        head.push(if self.large { TAG_LARGE } else { TAG_ENTRY });
        head.extend_from_slice(&self.seq.to_be_bytes());
        head.push(self.status.code());
        for s in [&self.origin, &self.batch_id] {
            let bytes = truncate_utf8(s, 255);
            head.push(bytes.len() as u8);
            head.extend_from_slice(bytes);
        }
        head.extend_from_slice(&(self.rejected.len() as u32).to_be_bytes());
        for r in &self.rejected {
            head.extend_from_slice(&r.id.to_be_bytes());
            head.push(r.reason.code());
        }
        if self.large {
            head.extend_from_slice(&(self.effect_len as u64).to_be_bytes());
        } else {
            let len = u32::try_from(self.effect_len)
                .map_err(|_| io::Error::other("an inline effect larger than 4 GiB"))?;
            head.extend_from_slice(&len.to_be_bytes());
        }
        out.write_all(&head)
    }

    /// Bytes the whole entry takes in a page, effect included (for paging by size).
    pub fn encoded_len(&self) -> usize {
        1 + 8
            + 1
            + 2
            + self.origin.len().min(255)
            + self.batch_id.len().min(255)
            + 4
            + 9 * self.rejected.len()
            + if self.large { 8 } else { 4 + self.effect_len }
    }
}

impl LogEntry {
    fn head(&self) -> EntryHead {
        EntryHead {
            seq: self.seq,
            status: self.status,
            origin: self.origin.clone(),
            batch_id: self.batch_id.clone(),
            rejected: self.rejected.clone(),
            effect_len: match self.large {
                Some(n) => n as usize,
                None => self.effect.len(),
            },
            large: self.large.is_some(),
        }
    }
}

/// Writes one entry.
pub fn encode_entry(entry: &LogEntry, out: &mut Vec<u8>) {
    entry.head().encode(out).expect("writing to memory");
    if entry.large.is_none() {
        out.extend_from_slice(entry.effect.as_bytes());
    }
}

/// Writes the trailer; with a tip (version 3) it carries the position after the last entry.
pub fn encode_trailer(more: bool, tip: Option<&Tip>, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&[TAG_END, u8::from(more)])?;
    if let Some(tip) = tip {
        let mut t = Vec::with_capacity(58);
        t.extend_from_slice(&tip.lineage.0.to_be_bytes());
        t.extend_from_slice(&tip.seq.to_be_bytes());
        t.extend_from_slice(&tip.chain.0.to_be_bytes());
        match tip.sum {
            Some(sum) => {
                t.push(1);
                t.extend_from_slice(&sum.to_bytes());
            }
            None => t.push(0),
        }
        out.write_all(&t)?;
    }
    Ok(())
}

/// Encodes a whole page.
pub fn encode(page: &LogPage) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(page.head_seq, page.tip.is_some(), &mut out).expect("writing to memory");
    for e in &page.entries {
        encode_entry(e, &mut out);
    }
    encode_trailer(page.more, page.tip.as_ref(), &mut out).expect("writing to memory");
    out
}

/// Bytes an entry takes in a page (for paging by size).
pub fn encoded_len(entry: &LogEntry) -> usize {
    entry.head().encoded_len()
}

fn truncate_utf8(s: &str, max: usize) -> &[u8] {
    if s.len() <= max {
        return s.as_bytes();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// Decodes a page. Never panics; checks the magic, the version, every length, seq order, and
/// that nothing follows the trailer. Effects are not validated here (see
/// [`crate::engine::decode::validate`]).
pub fn decode(bytes: &[u8]) -> Result<LogPage, LogDecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.take(MAGIC.len(), "magic")?;
    if magic != MAGIC {
        return Err(r.err_at(0, "not a session-sync log page (bad magic)"));
    }
    let version = r.u8("version")?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
        return Err(r.err_at(
            MAGIC.len(),
            format!("unsupported log page version {version} (this client reads {FORMAT_VERSION})"),
        ));
    }
    let head_seq = r.i64("head_seq")?;
    let mut entries: Vec<LogEntry> = Vec::new();
    loop {
        let at = r.pos;
        match r.u8("entry tag")? {
            tag @ (TAG_ENTRY | TAG_LARGE) => {
                let seq = r.i64("seq")?;
                if seq <= entries.last().map_or(0, |e| e.seq) {
                    return Err(r.err_at(at, format!("seq {seq} is not increasing")));
                }
                let code = r.u8("status")?;
                let status = PushStatus::from_code(code)
                    .ok_or_else(|| r.err_at(at + 9, format!("unknown status {code}")))?;
                let origin = r.string("origin")?;
                let batch_id = r.string("batch_id")?;
                let count = r.u32("rejected count")? as usize;
                // Each takes 9 bytes: a count the page cannot hold is refused before any
                // allocation.
                if count > (bytes.len() - r.pos) / 9 {
                    return Err(r.err_at(r.pos - 4, "truncated inside the rejected list"));
                }
                let mut rejected = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = r.i64("rejected transaction id")?;
                    let at = r.pos;
                    let code = r.u8("reject reason")?;
                    let reason = RejectReason::from_code(code)
                        .ok_or_else(|| r.err_at(at, format!("unknown reject reason {code}")))?;
                    rejected.push(RejectedTx { id, reason });
                }
                let (effect, large) = if tag == TAG_ENTRY {
                    let len = r.u32("effect length")? as usize;
                    (Changeset::from_bytes(r.take(len, "effect")?.to_vec()), None)
                } else {
                    (Changeset::default(), Some(r.u64("effect length")?))
                };
                entries.push(LogEntry {
                    seq,
                    status,
                    origin,
                    batch_id,
                    rejected,
                    effect,
                    large,
                });
            }
            TAG_END => {
                let more = match r.u8("more flag")? {
                    0 => false,
                    1 => true,
                    other => return Err(r.err_at(r.pos - 1, format!("bad more flag {other}"))),
                };
                let tip = if version == FORMAT_VERSION {
                    let lineage = Hex64(r.i64("lineage")?);
                    let seq = r.i64("tip seq")?;
                    let chain = Hex64(r.i64("chain value")?);
                    let sum = match r.u8("checksum flag")? {
                        0 => None,
                        1 => Checksum::from_bytes(r.take(32, "checksum")?),
                        other => {
                            return Err(r.err_at(r.pos - 1, format!("bad checksum flag {other}")));
                        }
                    };
                    Some(Tip {
                        lineage,
                        seq,
                        chain,
                        sum,
                    })
                } else {
                    None
                };
                if r.pos != bytes.len() {
                    return Err(r.err_at(r.pos, "bytes after the trailer"));
                }
                return Ok(LogPage {
                    head_seq,
                    entries,
                    more,
                    tip,
                });
            }
            other => return Err(r.err_at(at, format!("unknown tag 0x{other:02x}"))),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err_at(&self, offset: usize, what: impl Into<String>) -> LogDecodeError {
        LogDecodeError {
            offset,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], LogDecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.err_at(self.pos, format!("truncated inside {what}")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, LogDecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, LogDecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, LogDecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(b))
    }

    fn i64(&mut self, what: &str) -> Result<i64, LogDecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(i64::from_be_bytes(b))
    }

    fn string(&mut self, what: &str) -> Result<String, LogDecodeError> {
        let at = self.pos;
        let len = usize::from(self.u8(what)?);
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.err_at(at, format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
#[path = "pull_tests.rs"]
mod tests;
