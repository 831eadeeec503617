//! [`Changeset`]: owned changeset bytes, and the operations SQLite provides on them.

use crate::engine::decode::{self, Change, Changes, DecodeError, Summary};
use crate::engine::ffi::session::{Changegroup, concat_strm, invert_strm};

/// Errors from changeset operations that go through SQLite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangesetError {
    /// The input does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// SQLite refused the operation (for example, two changesets for the same table with
    /// different column counts cannot be combined).
    #[error("SQLite could not {operation} the changeset(s): {source}")]
    Sqlite {
        /// What was being done (`invert`, `concat`).
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

/// A changeset in SQLite's binary format, owning its bytes.
///
/// Construction does not validate (a changeset may come from anywhere); use
/// [`Changeset::validate`] or [`Changeset::from_validated`] at trust boundaries. Every
/// operation that SQLite performs (`invert`, `concat`, apply) tolerates invalid bytes by
/// returning an error, never by crashing.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Changeset {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Changeset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Changeset({} bytes)", self.bytes.len())
    }
}

impl Changeset {
    /// Wraps bytes without checking them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Changeset { bytes }
    }

    /// Wraps bytes after walking them completely; returns the summary alongside.
    pub fn from_validated(bytes: Vec<u8>) -> Result<(Self, Summary), DecodeError> {
        let summary = decode::validate(&bytes)?;
        Ok((Changeset { bytes }, summary))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives the bytes back.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the changeset holds no change (zero bytes).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Walks every change; see [`decode::validate`].
    pub fn validate(&self) -> Result<Summary, DecodeError> {
        decode::validate(&self.bytes)
    }

    /// Decodes every change into owned records.
    pub fn inspect(&self) -> Result<Vec<Change>, DecodeError> {
        decode::decode(&self.bytes)
    }

    /// Decodes lazily.
    pub fn changes(&self) -> Changes<'_> {
        decode::changes(&self.bytes)
    }

    /// The changeset that undoes this one (INSERT ↔ DELETE, UPDATE old ↔ new). The input is
    /// validated first so SQLite never sees malformed bytes here.
    pub fn invert(&self) -> Result<Changeset, ChangesetError> {
        if self.is_empty() {
            return Ok(Changeset::default());
        }
        decode::validate(&self.bytes)?;
        let mut out = Vec::with_capacity(self.bytes.len());
        invert_strm(&mut self.bytes.as_slice(), &mut out).map_err(|source| {
            ChangesetError::Sqlite {
                operation: "invert",
                source,
            }
        })?;
        Ok(Changeset { bytes: out })
    }

    /// `self` followed by `other`, combined as SQLite's changegroup does: changes to the same
    /// row merge into one (INSERT then UPDATE → one INSERT; INSERT then DELETE → nothing).
    pub fn concat(&self, other: &Changeset) -> Result<Changeset, ChangesetError> {
        if self.is_empty() {
            return Ok(other.clone());
        }
        if other.is_empty() {
            return Ok(self.clone());
        }
        decode::validate(&self.bytes)?;
        decode::validate(&other.bytes)?;
        let mut out = Vec::with_capacity(self.bytes.len() + other.bytes.len());
        concat_strm(
            &mut self.bytes.as_slice(),
            &mut other.bytes.as_slice(),
            &mut out,
        )
        .map_err(|source| ChangesetError::Sqlite {
            operation: "concat",
            source,
        })?;
        Ok(Changeset { bytes: out })
    }

    /// Combines many changesets, in order, through one changegroup. Empty inputs are skipped;
    /// the result is empty when all are.
    pub fn concat_all<'a, I>(changesets: I) -> Result<Changeset, ChangesetError>
    where
        I: IntoIterator<Item = &'a Changeset>,
    {
        let sqlite = |source| ChangesetError::Sqlite {
            operation: "concat",
            source,
        };
        let mut group = Changegroup::new().map_err(sqlite)?;
        let mut total = 0;
        for cs in changesets {
            if cs.is_empty() {
                continue;
            }
            decode::validate(&cs.bytes)?;
            total += cs.len();
            group.add(cs.bytes.as_slice()).map_err(sqlite)?;
        }
        let mut out = Vec::with_capacity(total);
        group.output_strm(&mut out).map_err(sqlite)?;
        Ok(Changeset { bytes: out })
    }
}

impl From<Vec<u8>> for Changeset {
    fn from(bytes: Vec<u8>) -> Self {
        Changeset::from_bytes(bytes)
    }
}

impl<'a> From<&'a Changeset> for crate::engine::spool::Source<'a> {
    fn from(changeset: &'a Changeset) -> Self {
        crate::engine::spool::Source::Bytes(changeset.as_bytes())
    }
}

impl AsRef<[u8]> for Changeset {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}
