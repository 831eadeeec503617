//! Where each migration was applied: the log's head when the server ran it on this database,
//! kept in `_sync_meta` (`migrated_at_seq.N`), and the answer of `GET …/migrations` built
//! from it and the scripts the server was started with ([`crate::protocol::migrations`]).

use crate::protocol::VERSION;
use crate::protocol::migrations::{MigrationScript, Migrations};
use rusqlite::{Connection, OptionalExtension};

fn key(version: u32) -> String {
    format!("migrated_at_seq.{version}")
}

/// Records that migration `version` runs now, at the log's current head. Call inside the
/// transaction that runs it.
pub fn record_applied(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    let head = super::bounds(conn)?.head_seq;
    super::set_meta(conn, &key(version), head)
}

/// The log head migration `version` was applied at (`None`: not recorded, the migration ran
/// on a server older than this record).
pub fn applied_at(conn: &Connection, version: u32) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM _sync_meta WHERE key = ?1")?
        .query_row([key(version)], |r| r.get(0))
        .optional()
}

/// One of the server's scripts: its version, file name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Script<'a> {
    /// The version it produces.
    pub version: u32,
    /// Its file name.
    pub name: &'a str,
    /// Its SQL.
    pub sql: &'a str,
}

/// The answer to `GET …/migrations?after=N`: the scripts after `after` up to the database's
/// version, each with where it was applied.
pub fn migrations<'a>(
    conn: &Connection,
    scripts: impl IntoIterator<Item = Script<'a>>,
    after: u32,
) -> rusqlite::Result<Migrations> {
    let schema_version = super::schema_version(conn)?;
    let mut out = Vec::new();
    for s in scripts {
        if s.version <= after || s.version > schema_version {
            continue;
        }
        out.push(MigrationScript {
            version: s.version,
            name: s.name.to_string(),
            sql: s.sql.to_string(),
            at_seq: applied_at(conn, s.version)?,
        });
    }
    Ok(Migrations {
        v: VERSION,
        schema_version,
        migrations: out,
    })
}
