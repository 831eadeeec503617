//! Conflict policies: what SQLite may be told to do with a conflict, and the one place that
//! decides it. A [`Policy`] is data; [`Policy::resolve`] turns a policy and a conflict into a
//! [`Resolution`]; [`PolicySet::check`] states a policy set's preconditions against a schema
//! (every table it names exists, every `newest-wins` column too), and the server checks them at
//! startup with the same function the apply relies on.
//!
//! SQLite allows REPLACE only for DATA and CONFLICT conflicts, so a policy that would replace
//! anything else omits instead, and a FOREIGN_KEY conflict always aborts (no policy can repair
//! dangling references, and committing them would leave orphans).

use crate::engine::conflict::{ConflictKind, Resolution};
use crate::engine::decode::Op;
use crate::engine::ffi::ConflictItem;
use crate::engine::schema::{self, SchemaError, TableShape};
use crate::engine::value::sql_cmp;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How conflicts on a table are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Policy {
    /// Keep the target's row: skip the incoming change (a.k.a. first-write-wins).
    Omit,
    /// The incoming change wins where SQLite allows REPLACE (DATA, CONFLICT); otherwise the
    /// change is omitted (a.k.a. last-push-wins). For an UPDATE only the columns the change
    /// carries are written, so edits to different columns of one row merge.
    Replace,
    /// Any conflict rolls back the whole apply (a.k.a. reject).
    Abort,
    /// Compare `column` (a timestamp or version): the incoming change wins a DATA or CONFLICT
    /// conflict only when its value is strictly greater than the target's (SQLite ordering:
    /// NULL < numbers < text < blob). A change that does not carry the column loses. A DELETE
    /// wins only if the target row's value is not newer than the value the deleter saw.
    NewestWins {
        /// The column to compare.
        column: String,
    },
}

impl Policy {
    /// Parses `omit` / `first-write-wins`, `replace` / `last-push-wins`, `abort` / `reject`,
    /// or `newest-wins:COLUMN`.
    pub fn parse(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "omit" | "first-write-wins" => Policy::Omit,
            "replace" | "last-push-wins" => Policy::Replace,
            "abort" | "reject" => Policy::Abort,
            other => match other.strip_prefix("newest-wins:") {
                Some(column) if !column.is_empty() => Policy::NewestWins {
                    column: column.to_string(),
                },
                _ => {
                    return Err(format!(
                        "unknown conflict policy {other:?} (expected omit, replace, abort, \
                         first-write-wins, last-push-wins, reject or newest-wins:COLUMN)"
                    ));
                }
            },
        })
    }

    /// Decides one conflict. `newest` is the index of the `NewestWins` column in the table,
    /// resolved before the apply starts.
    pub(crate) fn resolve(
        &self,
        kind: ConflictKind,
        item: &ConflictItem,
        newest: Option<usize>,
    ) -> Resolution {
        if kind == ConflictKind::ForeignKey {
            return Resolution::Abort;
        }
        let wanted = match self {
            Policy::Omit => Resolution::Omit,
            Policy::Replace => Resolution::Replace,
            Policy::Abort => Resolution::Abort,
            Policy::NewestWins { .. } => newest_wins(kind, item, newest),
        };
        match (wanted, kind) {
            (Resolution::Replace, ConflictKind::Data | ConflictKind::Conflict) => {
                Resolution::Replace
            }
            (Resolution::Replace, _) => Resolution::Omit,
            (other, _) => other,
        }
    }
}

fn newest_wins(kind: ConflictKind, item: &ConflictItem, column: Option<usize>) -> Resolution {
    let Some(col) = column else {
        return Resolution::Omit;
    };
    let Some(current) = item.current_value(col) else {
        return Resolution::Omit;
    };
    let op = item.op().and_then(|o| o.op);
    match (kind, op) {
        (ConflictKind::Data, Some(Op::Delete)) => match item.old_value(col) {
            Some(seen) if sql_cmp(&current, &seen) != Ordering::Greater => Resolution::Replace,
            _ => Resolution::Omit,
        },
        (ConflictKind::Data | ConflictKind::Conflict, _) => match item.new_value(col) {
            Some(incoming) if sql_cmp(&incoming, &current) == Ordering::Greater => {
                Resolution::Replace
            }
            _ => Resolution::Omit,
        },
        _ => Resolution::Omit,
    }
}

/// A default policy plus per-table overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    /// Used for tables without an override.
    pub default: Policy,
    /// Overrides by table name.
    #[serde(default)]
    pub tables: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// One policy for every table.
    pub fn uniform(policy: Policy) -> Self {
        PolicySet {
            default: policy,
            tables: BTreeMap::new(),
        }
    }

    /// Adds or replaces a per-table override.
    pub fn with_table(mut self, table: impl Into<String>, policy: Policy) -> Self {
        self.tables.insert(table.into(), policy);
        self
    }

    /// The policy for `table`. Table names match as SQLite matches them (ASCII
    /// case-insensitively), so a changeset naming `NOTES` gets the policy of `notes`.
    pub fn for_table(&self, table: &str) -> &Policy {
        self.tables
            .get(table)
            .or_else(|| {
                self.tables
                    .iter()
                    .find(|(name, _)| schema::same_name(name, table))
                    .map(|(_, p)| p)
            })
            .unwrap_or(&self.default)
    }
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::uniform(Policy::Abort)
    }
}

impl PolicySet {
    /// The policy for `table`, and for a `newest-wins` policy the index of its column in
    /// `shape` — the one precondition a policy has on a table. Errors name the table and the
    /// missing column.
    pub fn resolved_for(
        &self,
        table: &str,
        shape: &TableShape,
    ) -> Result<(&Policy, Option<usize>), SchemaError> {
        let policy = self.for_table(table);
        let column = match policy {
            Policy::NewestWins { column } => Some(
                shape
                    .columns
                    .iter()
                    .position(|c| schema::same_name(&c.name, column))
                    .ok_or_else(|| SchemaError::UnknownColumn {
                        table: table.to_string(),
                        column: column.clone(),
                    })?,
            ),
            _ => None,
        };
        Ok((policy, column))
    }

    /// Checks every precondition of the set against a schema's synced tables: each table with
    /// its own policy exists (names compared as SQLite does), and every table's `newest-wins`
    /// column — its own policy's or the default's — exists.
    pub fn check(&self, tables: &[TableShape]) -> Result<(), PolicyError> {
        for name in self.tables.keys() {
            if !tables.iter().any(|t| schema::same_name(&t.name, name)) {
                return Err(PolicyError::UnknownTable {
                    table: name.clone(),
                    tables: tables.iter().map(|t| t.name.clone()).collect(),
                });
            }
        }
        for shape in tables {
            if let Err(SchemaError::UnknownColumn { table, column }) =
                self.resolved_for(&shape.name, shape)
            {
                return Err(PolicyError::UnknownColumn {
                    table,
                    column,
                    by_default: !self
                        .tables
                        .keys()
                        .any(|name| schema::same_name(name, &shape.name)),
                });
            }
        }
        Ok(())
    }
}

/// A policy set whose preconditions a schema does not meet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy names a table the schema does not have.
    #[error("a policy is set for table {table:?}, which the schema does not have (tables: {})", tables.join(", "))]
    UnknownTable {
        /// The table named.
        table: String,
        /// The schema's tables.
        tables: Vec<String>,
    },
    /// A `newest-wins` policy names a column its table does not have.
    #[error("{}newest-wins:{column} for table {table:?}: the table has no column {column:?}{}",
        if *by_default { "the default policy " } else { "policy " },
        if *by_default { "; give that table its own policy" } else { "" })]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Whether the policy is the default one (the table has none of its own).
        by_default: bool,
    },
}
