//! The workload both convergence worlds run and the checks they share: the schema (the demo
//! schema plus a journal), the random local changes of a write transaction, and readers of a
//! database file (journal ids, the rejected queue, row dumps).

use rand::RngExt;
use rand::rngs::StdRng;
use rusqlite::{Connection, OpenFlags};
use session_sync_tests::sqldiff;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;

/// The demo schema plus a journal: every write transaction also inserts one journal row that
/// nothing ever modifies, so each acknowledged write can be traced to the server.
pub const SCHEMA: &str = concat!(
    include_str!("../../../sync-server/schema/0001_init.sql"),
    "\nCREATE TABLE journal (id INTEGER PRIMARY KEY, device INTEGER NOT NULL, n INTEGER NOT NULL);\n"
);

/// The mutation kind of a bulk write.
pub const BULK: u8 = 100;

/// One local change inside a write transaction.
#[derive(Debug, Clone, Copy)]
pub struct Mutation {
    pub kind: u8,
    pub note: i64,
    pub tag: i64,
    pub r: i64,
}

pub fn apply_mutation(c: &Connection, m: &Mutation, now: i64) -> rusqlite::Result<()> {
    let Mutation { kind, note, tag, r } = *m;
    let updated = now * 10 + r % 10;
    match kind {
        BULK => {
            // `tag` rows of ~1 KB from id `note`: inserted, or their bodies rewritten.
            let body = format!("{r:04}").repeat(250);
            for i in 0..tag {
                c.execute(
                    "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, 'bulk', ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    rusqlite::params![note + i, format!("{body}{i}"), updated],
                )?;
            }
        }
        0 | 1 => {
            c.execute(
                "INSERT OR IGNORE INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', ?3)",
                rusqlite::params![note, format!("t{r}"), updated],
            )?;
        }
        2 => {
            c.execute(
                "UPDATE notes SET title = ?2, updated_at = ?3 WHERE id = ?1",
                rusqlite::params![note, format!("t{r}"), updated],
            )?;
        }
        3 => {
            c.execute(
                "UPDATE notes SET body = ?2 WHERE id = ?1",
                rusqlite::params![note, format!("b{r}")],
            )?;
        }
        4 => {
            c.execute("DELETE FROM notes WHERE id = ?1", [note])?;
        }
        5 => {
            // Tag names are UNIQUE and drawn from a small pool: devices collide on them.
            c.execute(
                "INSERT OR IGNORE INTO tags(id, name) VALUES (?1, ?2)",
                rusqlite::params![tag, format!("tag{}", r % 4)],
            )?;
        }
        6 => {
            c.execute(
                "INSERT OR IGNORE INTO note_tags(note_id, tag_id)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM notes WHERE id = ?1)
                                 AND EXISTS (SELECT 1 FROM tags WHERE id = ?2)",
                rusqlite::params![note, tag],
            )?;
        }
        7 => {
            c.execute(
                "UPDATE OR IGNORE tags SET name = ?2 WHERE id = ?1",
                rusqlite::params![tag, format!("tag{}", r % 4)],
            )?;
        }
        _ => {
            if r % 2 == 0 {
                c.execute("DELETE FROM tags WHERE id = ?1", [tag])?;
            } else {
                c.execute(
                    "DELETE FROM note_tags WHERE note_id = ?1 AND tag_id = ?2",
                    rusqlite::params![note, tag],
                )?;
            }
        }
    }
    Ok(())
}

pub fn read_only(path: &Path) -> Connection {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

pub fn journal_ids(path: &Path) -> HashSet<i64> {
    read_only(path)
        .prepare("SELECT id FROM journal")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Journal ids inside changesets a device recorded as dropped (local conflicts).
/// Journal ids inside the transactions of a device's rejected queue.
pub fn dropped_journal_ids(path: &Path) -> HashSet<i64> {
    let conn = read_only(path);
    let mut out = HashSet::new();
    for r in sync_core::client::rejected::list(&conn).unwrap() {
        let r = sync_core::client::rejected::get(&conn, r.id)
            .unwrap()
            .unwrap();
        if r.changeset.is_empty() {
            continue;
        }
        for change in r.changeset.inspect().unwrap() {
            if change.table == "journal"
                && change.op == Op::Insert
                && let Some(Value::Integer(id)) = change.pk_values().first()
            {
                out.insert(*id);
            }
        }
    }
    out
}

pub type Dump = Vec<(String, Vec<Vec<rusqlite::types::Value>>)>;

pub fn describe_diff(expected: &Dump, got: &Dump) -> String {
    let mut out = String::new();
    for ((table, want), (_, have)) in expected.iter().zip(got) {
        for row in want {
            if !have.contains(row) {
                let _ = write!(out, "\n  {table}: server has {row:?}, device lacks it");
            }
        }
        for row in have {
            if !want.contains(row) {
                let _ = write!(out, "\n  {table}: device has {row:?}, server lacks it");
            }
        }
    }
    out
}

/// `sqldiff` output for a failure report, if the tool is installed.
pub fn sqldiff_or_none(a: &Path, b: &Path) -> Option<String> {
    std::panic::catch_unwind(|| sqldiff(a, b)).ok()
}

/// The changes of one random write transaction: usually 1–3 small changes of the same few
/// rows, sometimes (1 in 25) a bulk write several times the server's body limit — then
/// `true`.
pub fn random_mutations(rng: &mut StdRng) -> (Vec<Mutation>, bool) {
    if rng.random_range(0..25) == 0 {
        let bulk = Mutation {
            kind: BULK,
            note: rng.random_range(1..=4i64) * 100,
            tag: rng.random_range(20..=40i64),
            r: rng.random_range(0..1000i64),
        };
        return (vec![bulk], true);
    }
    let n = rng.random_range(1..=3);
    let changes = (0..n)
        .map(|_| Mutation {
            kind: rng.random_range(0..9u8),
            note: rng.random_range(1..=6i64),
            tag: rng.random_range(1..=3i64),
            r: rng.random_range(0..1000i64),
        })
        .collect();
    (changes, false)
}
