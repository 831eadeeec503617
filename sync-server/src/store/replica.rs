//! [`Replica`]: one SQLite file (a database, or the catalog) kept as a cache of its history in
//! the store. Every write runs inside one local transaction with a session attached to every
//! table; its patchset is appended to the store as the file's next version — PostgreSQL's
//! unique key on (file, version) refuses it when another node wrote first — and only then is
//! the local transaction committed. A refused write is rolled back, the copy catches up, and
//! the write runs again (bounded). A node killed between the two commits leaves a copy one
//! version behind, which the next catch-up repairs: the store is the truth.
//!
//! Schema changes are not in patchsets: a write that changes the schema (a migration, a new
//! file) stores an image of the whole file as its version instead. Images are also stored every
//! [`CHECKPOINT_EVERY`] versions, and what lies before the newest image is pruned; a node with
//! no copy (new, replaced, or one whose copy diverged) starts from the newest image.

use super::StoreError;
use super::pg::{Appended, EntryKey, FrameKind, PgStore};
use rusqlite::{Connection, MAIN_DB, OptionalExtension};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use sync_core::engine::conflict::Resolution;
use sync_core::engine::ffi::session::Session;
use sync_core::engine::ffi::{self, ApplyFlags};

/// The node-local table holding the version the copy is at (never in a patchset).
pub const LOCAL_TABLE: &str = "_sync_replica";
/// A write that keeps losing the race to other nodes gives up after this many attempts.
pub const MAX_ATTEMPTS: u32 = 16;
/// An image is stored after this many versions since the last one.
pub const CHECKPOINT_EVERY: i64 = 500;
/// Frames fetched per round trip while catching up.
const FRAMES_PER_FETCH: i64 = 32;

/// One replicated file.
#[derive(Debug, Clone)]
pub struct Replica {
    store: Arc<PgStore>,
    file: i64,
    /// The file has a sync log (a database, not the catalog): its new entries are indexed.
    log: bool,
    /// Where images are staged.
    scratch: PathBuf,
    /// The newest image version seen (for checkpoints).
    image: Arc<AtomicI64>,
}

/// The catalog's file number (database ids start at 1).
pub const CATALOG_FILE: i64 = 0;

impl Replica {
    /// Database `id` (`log`: it is a sync database with a log) replicated through `store`,
    /// staging images in `scratch`.
    pub fn new(store: Arc<PgStore>, file: i64, log: bool, scratch: PathBuf) -> Replica {
        Replica {
            store,
            file,
            log,
            scratch,
            image: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The file's number in the store.
    pub fn file(&self) -> i64 {
        self.file
    }

    /// The store.
    pub fn store(&self) -> &Arc<PgStore> {
        &self.store
    }

    fn local(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Local {
            file: self.file,
            source,
        }
    }

    /// True when the store has never seen this file.
    pub fn is_new(&self) -> Result<bool, StoreError> {
        Ok(self.store.head(self.file)?.version == 0)
    }

    /// Brings the copy on `conn` to the store's newest version; returns it. Replays the
    /// frames after the copy's version, or starts from the newest image when the copy is
    /// older than it, has diverged, or is ahead of the store (a store put back from a backup).
    pub fn catch_up(&self, conn: &mut Connection) -> Result<i64, StoreError> {
        let mut local = local_version(conn).map_err(|e| self.local(e))?;
        let mut stalled = 0;
        loop {
            let head = self.store.head(self.file)?;
            self.image.fetch_max(head.image, Ordering::Relaxed);
            if head.version == local {
                return Ok(local);
            }
            if head.version == 0 {
                return Err(StoreError::Invalid(format!(
                    "file {}: the store does not have it (the local copy is at version {local})",
                    self.file
                )));
            }
            if head.image > local || head.version < local {
                self.load_image(conn, head.image)?;
                local = head.image;
                continue;
            }
            let frames = self
                .store
                .frames_after(self.file, local, FRAMES_PER_FETCH)?;
            let before = local;
            for frame in frames {
                if frame.version != local + 1 {
                    break;
                }
                match frame.kind {
                    FrameKind::Image => self.load_image(conn, frame.version)?,
                    FrameKind::Patch => match apply_patch(conn, frame.version, &frame.body) {
                        Ok(true) => {}
                        Ok(false) => {
                            // Another connection to the same copy moved it meanwhile.
                            local = local_version(conn).map_err(|e| self.local(e))?;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(file = self.file, version = frame.version, error = %e,
                                "a frame did not apply to the local copy; starting from the image");
                            set_local_version(conn, -1).map_err(|e| self.local(e))?;
                            local = -1;
                            break;
                        }
                    },
                }
                local = frame.version;
            }
            if local == before {
                stalled += 1;
                if stalled > 3 {
                    return Err(StoreError::Invalid(format!(
                        "file {}: no frame after version {local} although the head is {}",
                        self.file, head.version
                    )));
                }
            }
        }
    }

    /// Replaces the copy with the image at `version`.
    fn load_image(&self, conn: &mut Connection, version: i64) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.scratch).map_err(|source| StoreError::Io {
            path: self.scratch.display().to_string(),
            source,
        })?;
        let staged = tempfile::Builder::new()
            .prefix(&format!("image-{}-", self.file))
            .tempfile_in(&self.scratch)
            .map_err(|source| StoreError::Io {
                path: self.scratch.display().to_string(),
                source,
            })?;
        let mut out = std::io::BufWriter::new(staged.as_file());
        self.store.image(self.file, version, &mut out)?;
        drop(out);
        conn.restore(
            MAIN_DB,
            staged.path(),
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|e| self.local(e))?;
        set_local_version(conn, version).map_err(|e| self.local(e))?;
        tracing::debug!(
            file = self.file,
            version,
            "local copy started from the store's image"
        );
        Ok(())
    }

    /// Runs the write `f` against the caught-up copy and appends what it changed to the store
    /// before committing it locally (see the module doc). `f` may run more than once: when
    /// another node appended first, its work is rolled back and done again on the newer copy.
    pub fn write<T>(
        &self,
        conn: &mut Connection,
        mut f: impl FnMut(&Connection) -> T,
    ) -> Result<T, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let base = self.catch_up(conn)?;
            let head_before = if self.log { head_seq(conn) } else { Ok(0) };
            let head_before = head_before.map_err(|e| self.local(e))?;
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.local(e))?;
            if local_version(conn).map_err(|e| self.local(e))? != base {
                // Another connection to the same copy caught it up meanwhile.
                rollback(conn);
                continue;
            }
            let run = (|| {
                let mut session = Session::new(conn)?;
                session.table_filter(Some(|t: &str| !t.eq_ignore_ascii_case(LOCAL_TABLE)));
                session.attach(None)?;
                let out = f(conn);
                let mut patch = Vec::new();
                session.patchset_strm(&mut patch)?;
                Ok::<_, rusqlite::Error>((out, patch))
            })();
            let (out, patch) = match run {
                Ok(v) => v,
                Err(e) => {
                    rollback(conn);
                    return Err(self.local(e));
                }
            };
            if patch.is_empty() {
                conn.execute_batch("COMMIT").map_err(|e| self.local(e))?;
                return Ok(out);
            }
            let entries = if self.log {
                match new_entries(conn, head_before) {
                    Ok(v) => v,
                    Err(e) => {
                        rollback(conn);
                        return Err(self.local(e));
                    }
                }
            } else {
                Vec::new()
            };
            let version = base + 1;
            match self.store.append(self.file, version, &patch, &entries) {
                Ok(Appended::Done) => {
                    let committed =
                        set_local_version(conn, version).and_then(|_| conn.execute_batch("COMMIT"));
                    if let Err(e) = committed {
                        // The store has it; the next catch-up brings it.
                        rollback(conn);
                        tracing::warn!(file = self.file, version, error = %e,
                            "committed to the store but not locally");
                    }
                    self.maybe_checkpoint(conn, version);
                    return Ok(out);
                }
                Ok(Appended::Stale) => rollback(conn),
                Err(e) => {
                    rollback(conn);
                    return Err(e);
                }
            }
        }
        Err(StoreError::Contended {
            file: self.file,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Runs `f`, which may change the schema (migrations) outside any transaction, on the
    /// caught-up copy; if the schema changed, or the store had no version yet, stores an image
    /// of the file as the next version. When another node stored that version first, the copy
    /// starts again from the store and `f` runs again.
    pub fn reshape<T>(
        &self,
        conn: &mut Connection,
        mut f: impl FnMut(&Connection) -> T,
    ) -> Result<T, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let base = if self.is_new()? {
                0
            } else {
                self.catch_up(conn)?
            };
            let before = schema_cookie(conn).map_err(|e| self.local(e))?;
            let out = f(conn);
            let after = schema_cookie(conn).map_err(|e| self.local(e))?;
            if base > 0 && after == before {
                return Ok(out);
            }
            let version = base + 1;
            set_local_version(conn, version).map_err(|e| self.local(e))?;
            let image = self.make_image(conn)?;
            match self.store.put_image(self.file, version, &image, true) {
                Ok(Appended::Done) => {
                    self.image.fetch_max(version, Ordering::Relaxed);
                    return Ok(out);
                }
                Ok(Appended::Stale) => {
                    // The local schema change is not the store's: start from the store.
                    set_local_version(conn, -1).map_err(|e| self.local(e))?;
                }
                Err(e) => {
                    set_local_version(conn, -1).map_err(|e| self.local(e))?;
                    return Err(e);
                }
            }
        }
        Err(StoreError::Contended {
            file: self.file,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// A compact copy of the whole file, as bytes.
    fn make_image(&self, conn: &Connection) -> Result<Vec<u8>, StoreError> {
        std::fs::create_dir_all(&self.scratch).map_err(|source| StoreError::Io {
            path: self.scratch.display().to_string(),
            source,
        })?;
        let path = self.scratch.join(format!(
            "image-{}-{:016x}.db",
            self.file,
            rand::random::<u64>()
        ));
        let made = conn
            .execute("VACUUM INTO ?1", [path.display().to_string()])
            .map_err(|e| self.local(e));
        let bytes = made.and_then(|_| {
            std::fs::read(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })
        });
        let _ = std::fs::remove_file(&path);
        bytes
    }

    fn maybe_checkpoint(&self, conn: &Connection, version: i64) {
        if version - self.image.load(Ordering::Relaxed) < CHECKPOINT_EVERY {
            return;
        }
        let stored = self
            .make_image(conn)
            .and_then(|image| self.store.put_image(self.file, version, &image, false));
        match stored {
            Ok(_) => {
                self.image.fetch_max(version, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(file = self.file, version, error = %e, "checkpoint image not stored");
            }
        }
    }
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Applies one frame's patchset exactly: foreign keys off (the patchset already holds what
/// their actions did), triggers off (likewise), any conflict aborts (the copy is not at the
/// frame's base).
/// `Ok(false)`: the copy is no longer at the frame's base (another connection moved it).
fn apply_patch(conn: &Connection, version: i64, patch: &[u8]) -> Result<bool, rusqlite::Error> {
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    set_triggers(conn, false)?;
    let applied = (|| {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        if local_version(conn)? != version - 1 {
            conn.execute_batch("ROLLBACK")?;
            return Ok(false);
        }
        let flags = ApplyFlags {
            no_savepoint: true,
            ..ApplyFlags::default()
        };
        ffi::apply_v2(conn, patch, flags, None, &mut |_, _| Resolution::Abort).map_err(
            |e| match e {
                ffi::RawApplyError::Sqlite(e) => e,
                other => rusqlite::Error::UserFunctionError(Box::new(other)),
            },
        )?;
        set_local_version(conn, version)?;
        conn.execute_batch("COMMIT")?;
        Ok(true)
    })();
    if applied.is_err() {
        rollback(conn);
    }
    let restored =
        set_triggers(conn, true).and_then(|_| conn.execute_batch("PRAGMA foreign_keys = ON"));
    restored.and(applied)
}

fn set_triggers(conn: &Connection, on: bool) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
        on,
    )
    .map(|_| ())
}

/// The version the copy is at (0: a file that never was replicated; -1: start over).
pub fn local_version(conn: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [LOCAL_TABLE],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            &format!("SELECT value FROM {LOCAL_TABLE} WHERE key = 'version'"),
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn set_local_version(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {LOCAL_TABLE} (key TEXT PRIMARY KEY, value INTEGER NOT NULL) \
         WITHOUT ROWID"
    ))?;
    conn.execute(
        &format!("INSERT OR REPLACE INTO {LOCAL_TABLE}(key, value) VALUES ('version', ?1)"),
        [version],
    )?;
    Ok(())
}

fn schema_cookie(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}

fn head_seq(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(sync_core::server::bounds(conn)?.head_seq)
}

/// The log entries after `after` (what this write appended).
fn new_entries(conn: &Connection, after: i64) -> rusqlite::Result<Vec<EntryKey>> {
    let mut stmt =
        conn.prepare("SELECT seq, device, batch_id FROM _sync_log WHERE seq > ?1 ORDER BY seq")?;
    let rows = stmt.query_map([after], |r| {
        Ok(EntryKey {
            seq: r.get(0)?,
            device: r.get(1)?,
            batch_id: r.get(2)?,
        })
    })?;
    rows.collect()
}
