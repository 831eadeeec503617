//! `GET /v1/databases/{db}/migrations?after=N`: the app schema's migration scripts after
//! version `N`, so that a device whose local copy is behind upgrades it in place (its pending
//! transactions kept) instead of starting a new copy.
//!
//! Each script comes with the log position it was applied at on this database (`at_seq`: the
//! log's head when the server ran it — every entry up to it was written under the version
//! before, every later one under this version or a newer one). A device integrates the log up
//! to that seq, runs the script, and goes on; its local copy then went through exactly the
//! server's history. `at_seq` is absent for a migration run by a server older than this route
//! (a device then runs the script where its cursor is).

use serde::{Deserialize, Serialize};

/// The query: scripts after this version (`0`: all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationsQuery {
    /// The version the caller has.
    #[serde(default)]
    pub after: u32,
}

impl MigrationsQuery {
    /// `after=N`, for the URL.
    pub fn to_query_string(self) -> String {
        format!("after={}", self.after)
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrations {
    /// Protocol version.
    pub v: u32,
    /// The database's schema version (the last script's version, when any are listed).
    pub schema_version: u32,
    /// The scripts after the asked version, oldest first, numbered without gaps.
    pub migrations: Vec<MigrationScript>,
}

/// One migration script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationScript {
    /// The version it produces (it turns version `version - 1` into `version`).
    pub version: u32,
    /// Its file name (`0002_add_color.sql`), for messages.
    pub name: String,
    /// The SQL, run as it is (no `BEGIN`/`COMMIT`: the caller's transaction holds it).
    pub sql: String,
    /// The log head when the server applied it to this database (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_seq: Option<i64>,
}

impl Migrations {
    /// Checks the answer is usable by a caller at version `after`: scripts numbered
    /// `after + 1, after + 2, …` up to `schema_version`, positions not going backwards.
    pub fn check(&self, after: u32) -> Result<(), String> {
        let mut expected = after + 1;
        let mut last_seq = 0;
        for m in &self.migrations {
            if m.version != expected {
                return Err(format!(
                    "migration {} listed where {expected} was expected",
                    m.version
                ));
            }
            if let Some(seq) = m.at_seq {
                if seq < last_seq {
                    return Err(format!(
                        "migration {} applied at seq {seq}, before an older one (seq {last_seq})",
                        m.version
                    ));
                }
                last_seq = seq;
            }
            expected += 1;
        }
        if expected - 1 != self.schema_version.max(after) {
            return Err(format!(
                "the scripts end at version {} but the database is at {}",
                expected - 1,
                self.schema_version
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(version: u32, at_seq: Option<i64>) -> MigrationScript {
        MigrationScript {
            version,
            name: format!("{version:04}_x.sql"),
            sql: "SELECT 1;".into(),
            at_seq,
        }
    }

    #[test]
    fn answers_round_trip_and_are_checked() {
        let answer = Migrations {
            v: 1,
            schema_version: 3,
            migrations: vec![script(2, Some(5)), script(3, None)],
        };
        let json = serde_json::to_string(&answer).unwrap();
        assert!(json.contains(r#""at_seq":5"#), "{json}");
        assert_eq!(serde_json::from_str::<Migrations>(&json).unwrap(), answer);
        answer.check(1).unwrap();
        assert!(answer.check(0).is_err());
        let gap = Migrations {
            migrations: vec![script(3, None)],
            ..answer.clone()
        };
        assert!(gap.check(1).is_err());
        let short = Migrations {
            migrations: vec![script(2, None)],
            ..answer.clone()
        };
        assert!(short.check(1).is_err());
        let backwards = Migrations {
            migrations: vec![script(2, Some(5)), script(3, Some(4))],
            ..answer
        };
        assert!(backwards.check(1).is_err());
        let none = Migrations {
            v: 1,
            schema_version: 3,
            migrations: vec![],
        };
        none.check(3).unwrap();
        assert_eq!(MigrationsQuery { after: 2 }.to_query_string(), "after=2");
    }
}
