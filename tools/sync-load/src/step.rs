//! `--step-only`: the push step alone on one database file, no HTTP and no threads, to show
//! what the protocol step costs.

use crate::notes::insert_notes;
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Instant;
use sync_server::ServerConfig;

/// Times the push step alone: same files, pragmas and schema as the server, no HTTP.
pub(crate) fn step_only(data: &std::path::Path, pushes: usize) -> anyhow::Result<bool> {
    use sync_server::storage::{Storage, StorageConfig};
    // The server's own storage, so the connection is set up exactly as the server's are
    // (pragmas, page cache, lookaside, migrations).
    let d = ServerConfig::default();
    let storage = Storage::new(
        StorageConfig {
            data_dir: data.to_path_buf(),
            capacity: 1,
            idle: d.idle,
            page_cache_kib: d.page_cache_kib,
            readers: d.readers,
            synchronous: d.durability.pragma(),
            key: None,
            store: None,
        },
        Arc::new(sync_server::migrations::AppSchema::embedded()),
    )?;
    let db = storage.get(1)?;
    db.write(|conn| time_push_step(conn, db.shapes(), pushes))?
}

fn time_push_step(
    conn: &Connection,
    shapes: &sync_core::engine::schema::ShapeCache,
    pushes: usize,
) -> anyhow::Result<bool> {
    use sync_core::engine::changeset::Changeset;
    use sync_core::protocol::push::PushHeaders;
    use sync_core::server::push::{PushBody, PushConfig, PushTarget, push};
    let config = PushConfig {
        policies: ServerConfig::default().policies,
    };
    let started = Instant::now();
    for i in 0..pushes {
        let headers = PushHeaders {
            batch_id: format!("b{i}"),
            cursor: i as i64,
            schema_version: 1,
            lineage: None,
            chain: None,
        };
        let cs = Changeset::from_bytes(insert_notes(i as i64 + 1, 1, 0));
        let target = PushTarget {
            conn,
            shapes,
            scratch: None,
        };
        let r = push(
            target,
            "dev",
            &headers,
            PushBody::Changeset(cs.as_bytes().into()),
            &config,
            0,
        )?;
        anyhow::ensure!(r.seq == i as i64 + 1);
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / pushes as f64;
    println!(
        "sync_core::server::push alone: {pushes} pushes, {per:.0} µs each ({:.0} pushes/s on one thread)",
        1e6 / per
    );
    // Two of its parts. Every apply sets PRAGMA defer_foreign_keys, which expires the
    // connection's prepared statements; the same pragma is run here before each iteration
    // (and timed alone, to subtract it).
    let cs = Changeset::from_bytes(insert_notes(1, 1, 0));
    let summary = cs.validate()?;
    let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            conn.execute_batch("PRAGMA defer_foreign_keys = 0")?;
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    let pragma = time(&|| Ok(()))?;
    let fits = time(&|| {
        Ok(sync_core::engine::schema::check_changeset_fits(
            conn, &summary,
        )?)
    })?;
    let meta = time(&|| Ok(sync_core::server::bounds(conn).map(|_| ())?))?;
    println!(
        "  of which: schema check {:.0} µs (two pragma queries per table, compiled every time); \
         one small cached query after an expiry {:.0} µs",
        fits - pragma,
        (meta - pragma) / 2.0
    );
    Ok(true)
}
