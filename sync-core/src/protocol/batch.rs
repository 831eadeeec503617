//! The push body: a **batch**, an ordered list of local transactions, each a changeset of its
//! own that the server applies — or rejects — on its own.
//!
//! ```text
//! batch = magic "SSBAT" version:u8(=1) count:u32 (id:i64 len:u64){count} changeset{count}
//! ```
//!
//! Integers are big-endian. The index comes first so that a reader knows where every
//! transaction starts before reading any of them (a large batch is read from a file by
//! position); the changesets follow back to back, in index order, and nothing follows them.
//! `id` is the client's name for the transaction (its outbox seq), echoed in the answer; ids
//! are unique within a batch. A changeset may be empty (a transaction whose effect a rebase
//! reduced to nothing is still settled like any other).
//!
//! A body of media type [`crate::protocol::push::MEDIA_TYPE`] (a plain changeset, for tools and
//! `curl`) is a batch of one transaction with id 0.

use crate::engine::spool::Source;
use std::io::{self, Read, Write};

/// Media type of a batch body.
pub const MEDIA_TYPE: &str = "application/vnd.session-sync.batch";
/// Magic bytes at the start of a batch.
pub const MAGIC: &[u8; 5] = b"SSBAT";
/// The framing version this code reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// The most transactions one batch may hold.
pub const MAX_TRANSACTIONS: usize = 100_000;

const FIXED: usize = MAGIC.len() + 1 + 4;
const PER_TX: usize = 8 + 8;

/// Where one transaction's changeset lies in a batch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRange {
    /// The client's id for it.
    pub id: i64,
    /// Byte offset in the body.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Why a batch body does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid batch at byte {offset}: {what}")]
pub struct BatchError {
    /// Byte offset of the problem.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// The size of the header (magic, version, index) of a batch of `count` transactions.
pub fn header_len(count: usize) -> u64 {
    (FIXED + PER_TX * count) as u64
}

/// Writes the header of a batch whose transactions are `(id, len)`, in order; the caller then
/// writes the changesets themselves, in the same order.
pub fn encode_header(txs: &[(i64, u64)], out: &mut dyn Write) -> io::Result<()> {
    let mut head = Vec::with_capacity(header_len(txs.len()) as usize);
    head.extend_from_slice(MAGIC);
    head.push(FORMAT_VERSION);
    head.extend_from_slice(&(txs.len() as u32).to_be_bytes());
    for (id, len) in txs {
        head.extend_from_slice(&id.to_be_bytes());
        head.extend_from_slice(&len.to_be_bytes());
    }
    out.write_all(&head)
}

/// A whole batch in memory (small batches, tests).
pub fn encode(txs: &[(i64, &[u8])]) -> Vec<u8> {
    let index: Vec<(i64, u64)> = txs.iter().map(|(id, c)| (*id, c.len() as u64)).collect();
    let mut out = Vec::new();
    encode_header(&index, &mut out).expect("writing to memory");
    for (_, c) in txs {
        out.extend_from_slice(c);
    }
    out
}

/// Reads the index of the batch in `body` and checks it against the body's size; the
/// changesets themselves are not read. Each range lies inside `body`.
pub fn decode_index(body: Source<'_>) -> Result<Result<Vec<TxRange>, BatchError>, io::Error> {
    let bad = |offset: u64, what: &str| {
        Ok(Err(BatchError {
            offset,
            what: what.to_string(),
        }))
    };
    let total = body.len();
    let mut reader = body.reader();
    let mut fixed = [0u8; FIXED];
    if total < FIXED as u64 {
        return bad(0, "shorter than the batch header");
    }
    reader.read_exact(&mut fixed)?;
    if &fixed[..MAGIC.len()] != MAGIC {
        return bad(0, "not a batch (bad magic)");
    }
    if fixed[MAGIC.len()] != FORMAT_VERSION {
        return bad(
            MAGIC.len() as u64,
            &format!("unsupported batch version {}", fixed[MAGIC.len()]),
        );
    }
    let count = u32::from_be_bytes(fixed[MAGIC.len() + 1..].try_into().expect("4 bytes")) as usize;
    if count > MAX_TRANSACTIONS {
        return bad(
            (MAGIC.len() + 1) as u64,
            &format!("{count} transactions (at most {MAX_TRANSACTIONS})"),
        );
    }
    let head = header_len(count);
    if head > total {
        return bad(FIXED as u64, "the index is longer than the body");
    }
    let mut index = vec![0u8; PER_TX * count];
    reader.read_exact(&mut index)?;
    let mut ranges = Vec::with_capacity(count);
    let mut offset = head;
    let mut ids = std::collections::HashSet::with_capacity(count);
    for (i, entry) in index.chunks_exact(PER_TX).enumerate() {
        let at = (FIXED + PER_TX * i) as u64;
        let id = i64::from_be_bytes(entry[..8].try_into().expect("8 bytes"));
        let len = u64::from_be_bytes(entry[8..].try_into().expect("8 bytes"));
        if !ids.insert(id) {
            return bad(at, &format!("transaction id {id} appears twice"));
        }
        if len > total - offset {
            return bad(at, "a transaction runs past the end of the body");
        }
        ranges.push(TxRange { id, offset, len });
        offset += len;
    }
    if offset != total {
        return bad(offset, "bytes after the last transaction");
    }
    Ok(Ok(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_every_damage_is_named() {
        let body = encode(&[(7, b"abc"), (9, b""), (12, b"defgh")]);
        let ranges = decode_index(Source::Bytes(&body)).unwrap().unwrap();
        assert_eq!(
            ranges,
            [
                TxRange {
                    id: 7,
                    offset: header_len(3),
                    len: 3
                },
                TxRange {
                    id: 9,
                    offset: header_len(3) + 3,
                    len: 0
                },
                TxRange {
                    id: 12,
                    offset: header_len(3) + 3,
                    len: 5
                },
            ]
        );
        let slice = |r: &TxRange| &body[r.offset as usize..(r.offset + r.len) as usize];
        assert_eq!(slice(&ranges[2]), b"defgh");

        let mut longer = body.clone();
        longer.push(0);
        let mut wrong_magic = body.clone();
        wrong_magic[0] = b'X';
        let mut wrong_version = body.clone();
        wrong_version[5] = 9;
        let twice = encode(&[(1, b"a"), (1, b"b")]);
        for (bytes, what) in [
            (&body[..body.len() - 1], "past the end"),
            (&longer[..], "after the last"),
            (&wrong_magic[..], "magic"),
            (&wrong_version[..], "version"),
            (&twice[..], "twice"),
            (&body[..4], "shorter"),
            (&body[..12], "index is longer"),
        ] {
            let err = decode_index(Source::Bytes(bytes)).unwrap().unwrap_err();
            assert!(err.what.contains(what), "{what}: {err}");
        }
    }
}
