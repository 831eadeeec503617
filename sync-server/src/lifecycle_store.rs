//! `db backup | restore | revert` with a PostgreSQL store (`--store`), from any machine that
//! reaches PostgreSQL. The data directory is only a cache: each command first brings its copy
//! of the database to the store's head, and every change goes through the store.
//!
//! - **backup**: the caught-up copy, backed up as without a store (the same file format:
//!   restorable with or without a store).
//! - **revert**: the undo of one entry, appended like a push (a stale append is redone on the
//!   newer copy).
//! - **restore**: the live database is first retired *in the store* (a frame; a push on any
//!   node after it is refused, `503 unavailable`, and retried by the client), the restored file
//!   is built from the backup and the final live history, stored under a newly reserved id,
//!   and only then does the catalog swap the name to that id. A failure before the swap takes
//!   the retirement back.

use crate::catalog::{self, CatalogError};
use crate::datadir::DataDir;
use crate::lifecycle::{self, LifecycleError, RestorePoint, sqlite};
use crate::storage::IMAGES_DIR;
use crate::store::Replica;
use rusqlite::Connection;
use std::io::Write;
use std::path::Path;
use sync_core::server::rewind;

/// The database `name`'s local copy in `dir`, caught up, and its replica.
fn live_copy(
    dir: &DataDir,
    cat: &Connection,
    name: &str,
) -> Result<(i64, Connection, Replica), LifecycleError> {
    let store = dir
        .store()
        .ok_or_else(|| LifecycleError::Invalid("no store".into()))?;
    let id = catalog::database_id(cat, name)?;
    let replica = Replica::new(store.clone(), id, true, dir.path().join(IMAGES_DIR));
    if replica.is_new().map_err(CatalogError::from)? {
        return Err(LifecycleError::Invalid(format!(
            "database {name} has never been used: it has no history yet"
        )));
    }
    let path = dir.db_file(id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LifecycleError::Io {
            what: format!("cannot create {}", parent.display()),
            source,
        })?;
    }
    let mut conn = Connection::open(&path).map_err(sqlite("cannot open the local copy"))?;
    conn.execute_batch("PRAGMA journal_mode = WAL")
        .map_err(sqlite("cannot open the local copy"))?;
    replica.catch_up(&mut conn).map_err(CatalogError::from)?;
    Ok((id, conn, replica))
}

/// `db backup NAME -o FILE` with a store.
pub fn backup(
    dir: &DataDir,
    name: &str,
    output: &Path,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let cat = dir.open_catalog()?;
    let (_, conn, _) = live_copy(dir, &cat, name)?;
    drop(conn);
    lifecycle::backup(dir, name, output, out)
}

/// `db revert NAME --seq N` with a store.
pub fn revert(
    dir: &DataDir,
    name: &str,
    seq: i64,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let cat = dir.open_catalog()?;
    let (_, mut conn, replica) = live_copy(dir, &cat, name)?;
    let now = catalog::now_ms();
    let batch_id = format!("revert-{seq}-{now}");
    let answer = replica
        .write(&mut conn, |c| rewind::revert(c, seq, &batch_id, now))
        .map_err(CatalogError::from)??;
    lifecycle::print_reverted(out, name, seq, &answer)
}

fn set_retired(
    replica: &Replica,
    conn: &mut Connection,
    retired: bool,
) -> Result<(), LifecycleError> {
    let sql = if retired {
        "INSERT OR REPLACE INTO _sync_meta(key, value) VALUES ('retired', 1)"
    } else {
        "DELETE FROM _sync_meta WHERE key = 'retired'"
    };
    replica
        .write(conn, |c| c.execute(sql, []))
        .map_err(CatalogError::from)?
        .map_err(sqlite("cannot mark the live database"))?;
    Ok(())
}

/// `db restore NAME --from FILE [--to-seq N | --to-time T]` with a store.
pub fn restore(
    dir: &DataDir,
    name: &str,
    from: &Path,
    point: RestorePoint,
    out: &mut dyn Write,
) -> Result<(), LifecycleError> {
    let mut cat = dir.open_catalog()?;
    let (_, mut live, live_replica) = live_copy(dir, &cat, name)?;
    let owner: String = cat
        .query_row(
            "SELECT u.name FROM databases d JOIN users u ON u.id = d.owner_id WHERE d.name = ?1",
            [name],
            |r| r.get(0),
        )
        .map_err(sqlite("cannot read the catalog"))?;
    set_retired(&live_replica, &mut live, true)?;
    let done = (|| {
        let tmp = lifecycle::restore_scratch(dir)?;
        let built = lifecycle::build_restored(dir, from, point, Some(&live), &tmp);
        let placed = built.and_then(|(restored, lineage)| {
            let nonce: u64 = rand::random();
            let id =
                dir.catalog_write(&mut cat, |c| catalog::reserve_database_id(c, &owner, nonce))?;
            let target = dir.db_file(id);
            std::fs::rename(&tmp, &target).map_err(|source| LifecycleError::Io {
                what: "cannot move the restored file".into(),
                source,
            })?;
            let mut conn =
                Connection::open(&target).map_err(sqlite("cannot open the restored file"))?;
            let replica = Replica::new(
                live_replica.store().clone(),
                id,
                true,
                dir.path().join(IMAGES_DIR),
            );
            replica
                .reshape(&mut conn, |_| ())
                .map_err(CatalogError::from)?;
            dir.catalog_write(&mut cat, |c| catalog::replace_with_reserved(c, name, id))?;
            Ok((restored, lineage, id))
        });
        if placed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        placed
    })();
    match done {
        Ok((restored, lineage, id)) => {
            lifecycle::print_restored(out, name, restored.seq, from, lineage, id)
        }
        Err(e) => {
            if let Err(undo) = set_retired(&live_replica, &mut live, false) {
                tracing::error!(error = %undo, "the restore failed and the live database stays retired");
            }
            let _ = dir.catalog_write(&mut cat, catalog::remove_placeholders);
            Err(e)
        }
    }
}
