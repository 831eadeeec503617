//! The vocabulary of conflicts: what SQLite reports while applying a changeset
//! ([`ConflictKind`]) and what a handler may answer ([`Resolution`]), with the codes of
//! SQLite's C API they stand for.

use crate::names::named_enum;
use rusqlite::ffi;
use std::ffi::c_int;

named_enum! {
    /// The five conflict types SQLite reports while applying a changeset.
    pub enum ConflictKind {
        /// The row exists but its values differ from the change's old values (UPDATE/DELETE).
        Data = "DATA",
        /// The row to UPDATE or DELETE does not exist.
        NotFound = "NOTFOUND",
        /// An INSERT's primary key already exists.
        Conflict = "CONFLICT",
        /// Applying the change violates a constraint (UNIQUE, CHECK, NOT NULL).
        Constraint = "CONSTRAINT",
        /// Foreign-key violations remain once every change has been applied.
        ForeignKey = "FOREIGN_KEY",
    }
}

impl ConflictKind {
    pub(crate) fn from_code(code: c_int) -> Option<Self> {
        Some(match code {
            ffi::SQLITE_CHANGESET_DATA => ConflictKind::Data,
            ffi::SQLITE_CHANGESET_NOTFOUND => ConflictKind::NotFound,
            ffi::SQLITE_CHANGESET_CONFLICT => ConflictKind::Conflict,
            ffi::SQLITE_CHANGESET_CONSTRAINT => ConflictKind::Constraint,
            ffi::SQLITE_CHANGESET_FOREIGN_KEY => ConflictKind::ForeignKey,
            _ => return None,
        })
    }
}

named_enum! {
    /// What a conflict handler tells SQLite to do.
    pub enum Resolution {
        /// Skip the change (keep the target's row).
        Omit = "omit",
        /// Apply the change over the target's row. Legal only for DATA and CONFLICT.
        Replace = "replace",
        /// Roll back the whole apply.
        Abort = "abort",
    }
}

impl Resolution {
    pub(crate) fn code(self) -> c_int {
        match self {
            Resolution::Omit => ffi::SQLITE_CHANGESET_OMIT,
            Resolution::Replace => ffi::SQLITE_CHANGESET_REPLACE,
            Resolution::Abort => ffi::SQLITE_CHANGESET_ABORT,
        }
    }
}
