//! Full-text search in a separate database file that is never synced.
//!
//! The index lives in `<database>.fts` (FTS5, contentless, keyed by the app row's rowid) and
//! may lag behind the data. What needs indexing is recorded exactly: TEMP triggers on the
//! writer connection add every inserted, updated or deleted row of an indexed table to
//! `_sync_fts_dirty` — an internal table of the main database, written in the same transaction
//! as the change, whether the change is a local write or a remote apply (and never captured
//! into a changeset). The indexer drains that table into the index in the background. If the
//! index file is deleted or its configuration changes, it is rebuilt from scratch.

use crate::config::FtsTable;
use crate::error::{Error, ErrorKind, Result};
use crate::readers::Readers;
use crate::writer::Writer;
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use sync_core::engine::schema;
use sync_core::engine::value::Value;

/// Rows indexed per batch.
const BATCH: usize = 500;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The table the row is in.
    pub table: String,
    /// Its `INTEGER PRIMARY KEY`.
    pub id: i64,
    /// FTS5 rank (lower is better).
    pub rank: f64,
    /// The indexed columns' current values.
    pub columns: Vec<(String, Value)>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The index and its indexer.
pub(crate) struct Fts {
    path: PathBuf,
    tables: Vec<FtsTable>,
    conn: Mutex<Option<Connection>>,
}

impl Fts {
    /// The FTS file for the database at `db_path`.
    pub(crate) fn path_for(db_path: &Path) -> PathBuf {
        let mut p = db_path.as_os_str().to_owned();
        p.push(".fts");
        PathBuf::from(p)
    }

    fn fingerprint(tables: &[FtsTable]) -> String {
        tables
            .iter()
            .map(|t| format!("{}({})", t.table, t.columns.join(",")))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Checks the configuration against the schema, installs the dirty table and the
    /// triggers on the writer connection, and opens (or rebuilds) the index file. Returns
    /// whether a rebuild was started.
    pub(crate) fn open(
        db_path: &Path,
        tables: Vec<FtsTable>,
        writer_conn: &Connection,
        key: Option<&sync_core::engine::cipher::EncryptionKey>,
    ) -> Result<(Fts, bool)> {
        Fts::check(&tables, writer_conn)?;
        writer_conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _sync_fts_dirty (
                 tbl TEXT    NOT NULL,
                 rid INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 PRIMARY KEY (tbl, rid)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS _sync_fts_dirty_seq ON _sync_fts_dirty(seq);",
        )?;
        for t in &tables {
            let table = quote(&t.table);
            let lit = t.table.replace('\'', "''");
            let mark = |row: &str| {
                format!(
                    "INSERT OR REPLACE INTO _sync_fts_dirty(tbl, rid, seq) VALUES ('{lit}', {row}.rowid, \
                     (SELECT coalesce(max(seq), 0) + 1 FROM _sync_fts_dirty));"
                )
            };
            let name = |suffix: &str| quote(&format!("_sync_fts_{}_{suffix}", t.table));
            writer_conn.execute_batch(&format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS {ai} AFTER INSERT ON main.{table} BEGIN {new} END;
                 CREATE TEMP TRIGGER IF NOT EXISTS {au} AFTER UPDATE ON main.{table} BEGIN {old} {new} END;
                 CREATE TEMP TRIGGER IF NOT EXISTS {ad} AFTER DELETE ON main.{table} BEGIN {old} END;",
                ai = name("ai"),
                au = name("au"),
                ad = name("ad"),
                new = mark("new"),
                old = mark("old"),
            ))?;
        }
        let path = Fts::path_for(db_path);
        let fingerprint = Fts::fingerprint(&tables);
        let existing: Option<String> = if path.exists() {
            // The index has the database's key; a copy of it that does not open with the key
            // (or a plain one left by an unencrypted run) is rebuilt.
            sync_core::engine::cipher::open(&path, rusqlite::OpenFlags::default(), key)
                .ok()
                .and_then(|c| {
                    c.query_row(
                        "SELECT value FROM _fts_meta WHERE key = 'config'",
                        [],
                        |r| r.get(0),
                    )
                    .ok()
                })
        } else {
            None
        };
        let rebuild = existing.as_deref() != Some(fingerprint.as_str());
        if rebuild {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        let conn = Connection::open(&path)?;
        sync_core::engine::cipher::set_key(&conn, key)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        if rebuild {
            let mut ddl = String::from(
                "BEGIN; CREATE TABLE _fts_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            );
            for t in &tables {
                let cols = t
                    .columns
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                ddl.push_str(&format!(
                    "CREATE VIRTUAL TABLE {} USING fts5({cols}, content='', contentless_delete=1);",
                    quote(&t.table)
                ));
            }
            ddl.push_str("COMMIT;");
            conn.execute_batch(&ddl)?;
            // Everything must be (re)indexed.
            for t in &tables {
                writer_conn.execute(
                    &format!(
                        "INSERT OR REPLACE INTO _sync_fts_dirty(tbl, rid, seq)
                         SELECT ?1, rowid, (SELECT coalesce(max(seq), 0) + 1 FROM _sync_fts_dirty) FROM main.{}",
                        quote(&t.table)
                    ),
                    [&t.table],
                )?;
            }
            // Last: an index is taken as built for this configuration only once every row is
            // marked for indexing (a process killed before this point rebuilds next time).
            conn.execute(
                "INSERT INTO _fts_meta(key, value) VALUES ('config', ?1)",
                [&fingerprint],
            )?;
        }
        Ok((
            Fts {
                path,
                tables,
                conn: Mutex::new(Some(conn)),
            },
            rebuild,
        ))
    }

    /// Checks that every table and column of `tables` exists in `conn`'s database and can be
    /// indexed (an `INTEGER PRIMARY KEY`, at least one column).
    pub(crate) fn check(tables: &[FtsTable], conn: &Connection) -> Result<()> {
        let writer_conn = conn;
        for t in tables {
            let shape = schema::table_shape(writer_conn, &t.table)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("FTS table {:?} does not exist", t.table),
                )
            })?;
            if shape.rowid_alias().is_none() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("FTS table {:?} needs an INTEGER PRIMARY KEY", t.table),
                ));
            }
            if t.columns.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("FTS table {:?} has no columns", t.table),
                ));
            }
            for c in &t.columns {
                if !shape.columns.iter().any(|sc| &sc.name == c) {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("FTS column {:?}.{c:?} does not exist", t.table),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The indexed tables.
    pub(crate) fn tables(&self) -> &[FtsTable] {
        &self.tables
    }

    /// The index file.
    pub(crate) fn file(&self) -> &Path {
        &self.path
    }

    /// Rows waiting to be indexed.
    pub(crate) fn lag(&self, readers: &Readers) -> Result<u64> {
        readers.with(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM _sync_fts_dirty", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
    }

    /// Indexes one batch of dirty rows; returns how many were processed (0 = caught up).
    pub(crate) fn index_batch(&self, readers: &Readers, writer: &Writer) -> Result<usize> {
        struct Job {
            table: String,
            rid: i64,
            seq: i64,
            values: Option<Vec<Value>>,
        }
        let jobs: Vec<Job> = readers.with(|c| {
            let mut dirty = c.prepare_cached(
                "SELECT tbl, rid, seq FROM _sync_fts_dirty ORDER BY seq LIMIT ?1",
            )?;
            let rows = dirty
                .query_map([BATCH as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut jobs = Vec::with_capacity(rows.len());
            for (table, rid, seq) in rows {
                let values = match self.tables.iter().find(|t| t.table == table) {
                    Some(t) => {
                        let cols = t
                            .columns
                            .iter()
                            .map(|c| quote(c))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let sql = format!(
                            "SELECT {cols} FROM main.{} WHERE rowid = ?1",
                            quote(&t.table)
                        );
                        let mut stmt = c.prepare_cached(&sql)?;
                        let mut rows = stmt.query([rid])?;
                        match rows.next()? {
                            Some(row) => Some(
                                (0..t.columns.len())
                                    .map(|i| {
                                        row.get::<_, rusqlite::types::Value>(i).map(Value::from)
                                    })
                                    .collect::<Result<Vec<_>, _>>()?,
                            ),
                            None => None,
                        }
                    }
                    None => None, // a table no longer configured: just clear its marks
                };
                jobs.push(Job {
                    table,
                    rid,
                    seq,
                    values,
                });
            }
            Ok(jobs)
        })?;
        if jobs.is_empty() {
            return Ok(0);
        }
        {
            let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let Some(conn) = guard.as_ref() else {
                return Err(Error::new(ErrorKind::Closed, "the database was closed"));
            };
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| -> rusqlite::Result<()> {
                for job in &jobs {
                    let Some(t) = self.tables.iter().find(|t| t.table == job.table) else {
                        continue;
                    };
                    conn.prepare_cached(&format!(
                        "DELETE FROM {} WHERE rowid = ?1",
                        quote(&t.table)
                    ))?
                    .execute([job.rid])?;
                    if let Some(values) = &job.values {
                        let cols = t
                            .columns
                            .iter()
                            .map(|c| quote(c))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let marks = (2..=t.columns.len() + 1)
                            .map(|i| format!("?{i}"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let mut stmt = conn.prepare_cached(&format!(
                            "INSERT INTO {}(rowid, {cols}) VALUES (?1, {marks})",
                            quote(&t.table)
                        ))?;
                        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&job.rid];
                        params.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
                        stmt.execute(params.as_slice())?;
                    }
                }
                Ok(())
            })();
            match result {
                Ok(()) => conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
        }
        let done: Vec<(String, i64, i64)> = jobs
            .iter()
            .map(|j| (j.table.clone(), j.rid, j.seq))
            .collect();
        let n = done.len();
        writer.run(move |c| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            {
                // Only marks not renewed meanwhile: a row changed again stays dirty.
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM _sync_fts_dirty WHERE tbl = ?1 AND rid = ?2 AND seq = ?3",
                )?;
                for (t, rid, seq) in &done {
                    stmt.execute(params![t, rid, seq])?;
                }
            }
            tx.commit()
        })??;
        Ok(n)
    }

    /// Closes the index's read-write connection (indexing fails with `Closed` afterwards).
    pub(crate) fn close(&self) {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Searches every indexed table; best matches first.
    pub(crate) fn search(
        &self,
        readers: &Readers,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        search(&self.tables, readers, query, limit)
    }
}

/// Searches `tables` through `readers` (the index attached as `fts`); best matches first.
pub(crate) fn search(
    tables: &[FtsTable],
    readers: &Readers,
    query: &str,
    limit: usize,
) -> Result<Vec<SearchHit>> {
    let mut hits = Vec::new();
    readers.with(|c| {
        for t in tables {
            let cols = t.columns.iter().map(|col| format!("m.{}", quote(col))).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT s.rowid, s.rank, {cols} FROM
                   (SELECT rowid, rank FROM fts.{table} WHERE {table} MATCH ?1 ORDER BY rank LIMIT ?2) s
                 JOIN main.{table} m ON m.rowid = s.rowid ORDER BY s.rank",
                table = quote(&t.table)
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![query, limit as i64], |r| {
                let columns = t
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, name)| Ok((name.clone(), Value::from(r.get::<_, rusqlite::types::Value>(i + 2)?))))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(SearchHit {
                    table: t.table.clone(),
                    id: r.get(0)?,
                    rank: r.get(1)?,
                    columns,
                })
            })?;
            for row in rows {
                hits.push(row?);
            }
        }
        Ok(())
    })?;
    hits.sort_by(|a, b| a.rank.total_cmp(&b.rank));
    hits.truncate(limit);
    Ok(hits)
}
