//! Seeded convergence property test of the sync protocol, in process.
//!
//! 3–5 devices run the real client steps (`sync_core::client`) against the real server steps
//! (`sync_core::server`) — no network, no mocks of the logic under test. Random local writes
//! (inserts, updates, deletes on the same small set of rows, with ON DELETE CASCADE foreign
//! keys) interleave with pushes and pulls; failures are injected (a push request dropped, a
//! push answer lost after the server committed, a pull answer lost, log compaction forcing a
//! bootstrap from a snapshot). In some cases the operator deploys a schema migration mid-run
//! (a column, a table and a data migration that fills the column); devices upgrade in place
//! as their syncs learn of it, pending writes kept. Then every device syncs until quiet, and:
//!
//! * every device's app tables equal the server's, row for row;
//! * no write acknowledged locally is missing: each write transaction also inserts a unique,
//!   never-modified `journal` row, which must be on the server or else inside a transaction in
//!   the device's rejected queue — exactly one of the two, never silently gone;
//! * outboxes are empty, cursors equal the server's head, schema versions the server's.
//!
//! `SYNC_CONVERGENCE_SEED=N` replays one case; `SYNC_CONVERGENCE_CASES=N` runs more (CI runs a
//! few hundred; `SYNC_CONVERGENCE_CASES=10000 cargo test --release -p sync-core convergence`
//! is the long run documented in docs/testing.md).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;
use sync_core::client;
use sync_core::client::ClientError;
use sync_core::client::conflicts::{LocalConflictKind, local_conflicts};
use sync_core::client::cycle::{Cycle, CycleConfig, CycleError, Reply, Step};
use sync_core::client::push::{on_push_response, prepare_push};
use sync_core::client::state::{cursor, inflight, set_schema_version};
use sync_core::engine::capture::capture;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::decode::Op;
use sync_core::engine::policy::{Policy, PolicySet};
use sync_core::engine::value::Value;
use sync_core::protocol::push::PushResponse;
use sync_core::server;
use sync_core::server::push::{PushBody, PushConfig, PushTarget, push};

const SCHEMA: &str = "
    CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL DEFAULT '',
                       updated_at INTEGER NOT NULL);
    CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE note_tags(
        note_id INTEGER NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
        tag_id  INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
        PRIMARY KEY (note_id, tag_id));
    CREATE TABLE journal(id INTEGER PRIMARY KEY, device INTEGER NOT NULL, n INTEGER NOT NULL);";

const APP_TABLES: [&str; 4] = ["notes", "tags", "note_tags", "journal"];

/// The migration some cases deploy mid-run: a column, a table, and a data migration whose
/// result depends on the rows at the moment it runs (so a device that ran it anywhere but at
/// the server's position would differ).
const MIGRATION_2: &str = "
    ALTER TABLE notes ADD COLUMN color TEXT NOT NULL DEFAULT 'none';
    CREATE TABLE notebooks(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    UPDATE notes SET color = 'c' || (length(title) + id) % 4;";

struct Device {
    id: usize,
    conn: Connection,
    /// Journal ids of writes whose `capture` returned Ok.
    acknowledged: Vec<i64>,
    writes: i64,
    next_batch: u64,
    /// The sync in progress, advanced one step at a time between other devices' steps.
    cycle: Option<Cycle>,
}

struct World {
    rng: StdRng,
    seed: u64,
    dir: tempfile::TempDir,
    server: Connection,
    shapes: sync_core::engine::schema::ShapeCache,
    config: PushConfig,
    devices: Vec<Device>,
    now: i64,
    snapshots: u64,
    log: Vec<String>,
    /// Uploads in progress, by device and batch id: what the server's upload store holds.
    uploads: std::collections::HashMap<(usize, String), (u64, Vec<u8>)>,
    /// The request-body limit of this world's server: larger batches are uploaded.
    max_body: usize,
    /// What the case exercised.
    stats: Stats,
    /// A backup of the server taken mid-run (SQLite's backup API), restorable later.
    backup: Option<Connection>,
    /// Journal ids that a restore took off the server: on it before, not in the backup, and
    /// pending on no device (so no device pushes them again). Their loss is what a restore
    /// means; every other acknowledged write must survive it.
    lost_to_restores: std::collections::HashSet<i64>,
    /// The step at which the server deploys migration 2 (`None`: this case never does).
    migrate_at: Option<usize>,
    steps: usize,
}

/// What a case exercised, summed over a run and printed, so a run that never reached a path
/// shows it.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acknowledged: u64,
    bulk_writes: u64,
    uploaded_batches: u64,
    upload_parts: u64,
    large_effect_ranges: u64,
    rejected_foreign_key: u64,
    rejected_policy: u64,
    rejected_schema: u64,
    bootstraps: u64,
    restores: u64,
    lost_tails: u64,
    migrations: u64,
    upgrades: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.acknowledged += o.acknowledged;
        self.bulk_writes += o.bulk_writes;
        self.uploaded_batches += o.uploaded_batches;
        self.upload_parts += o.upload_parts;
        self.large_effect_ranges += o.large_effect_ranges;
        self.rejected_foreign_key += o.rejected_foreign_key;
        self.rejected_policy += o.rejected_policy;
        self.bootstraps += o.bootstraps;
        self.restores += o.restores;
        self.lost_tails += o.lost_tails;
        self.rejected_schema += o.rejected_schema;
        self.migrations += o.migrations;
        self.upgrades += o.upgrades;
    }
}

fn open_db(schema: &str) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(schema).unwrap();
    conn
}

fn random_policy(rng: &mut StdRng) -> Policy {
    match rng.random_range(0..10) {
        0..=4 => Policy::Replace,
        5 | 6 => Policy::Omit,
        7 | 8 => Policy::NewestWins {
            column: "updated_at".into(),
        },
        _ => Policy::Abort,
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let server = open_db(SCHEMA);
        server::install(&server, 1).unwrap();
        let notes_policy = random_policy(&mut rng);
        let default = match rng.random_range(0..4) {
            0 => Policy::Omit,
            _ => Policy::Replace,
        };
        let config = PushConfig {
            policies: PolicySet::uniform(default).with_table("notes", notes_policy),
        };
        let n = rng.random_range(3..=5);
        let devices = (0..n)
            .map(|id| {
                let conn = open_db(SCHEMA);
                client::install(&conn).unwrap();
                set_schema_version(&conn, 1).unwrap();
                Device {
                    id,
                    conn,
                    acknowledged: Vec::new(),
                    writes: 0,
                    next_batch: 0,
                    cycle: None,
                }
            })
            .collect();
        World {
            rng,
            seed,
            dir: tempfile::tempdir().unwrap(),
            server,
            shapes: sync_core::engine::schema::ShapeCache::new(),
            config,
            devices,
            now: 1,
            snapshots: 0,
            log: Vec::new(),
            uploads: Default::default(),
            max_body: 0,
            stats: Stats::default(),
            backup: None,
            lost_to_restores: Default::default(),
            migrate_at: None,
            steps: 0,
        }
        .with_body_limit()
        .with_migration()
    }

    fn with_body_limit(mut self) -> World {
        self.max_body = self.rng.random_range(1500..6000);
        self
    }

    /// Half the cases deploy migration 2 at a random step.
    fn with_migration(mut self) -> World {
        if self.rng.random_range(0..2) == 0 {
            self.migrate_at = Some(self.rng.random_range(0..120));
        }
        self
    }

    /// The operator's migrations, as the server serves them.
    fn scripts(&self) -> Vec<server::migrations::Script<'static>> {
        vec![
            server::migrations::Script {
                version: 1,
                name: "0001_init.sql",
                sql: SCHEMA,
            },
            server::migrations::Script {
                version: 2,
                name: "0002_color.sql",
                sql: MIGRATION_2,
            },
        ]
    }

    /// The server restarts with migration 2: run under the same checks and bookkeeping as
    /// `sync-server`'s startup migration (one transaction; where it ran recorded).
    fn deploy_migration(&mut self) {
        let head = server::bounds(&self.server).unwrap().head_seq;
        self.server.execute_batch("BEGIN IMMEDIATE").unwrap();
        sync_core::engine::migration::run_script(&self.server, MIGRATION_2).unwrap();
        server::set_schema_version(&self.server, 2).unwrap();
        server::migrations::record_applied(&self.server, 2).unwrap();
        server::lineage::forget_head_sum(&self.server).unwrap();
        self.server.execute_batch("COMMIT").unwrap();
        self.stats.migrations += 1;
        self.log
            .push(format!("server migrated to version 2 at seq {head}"));
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(400).collect();
        panic!(
            "convergence seed {} failed: {what}\npolicies: {:?}\nlast steps (newest first):\n{}\nreplay with SYNC_CONVERGENCE_SEED={}",
            self.seed,
            self.config.policies,
            tail.iter()
                .map(|s| format!("  {s}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.seed
        );
    }

    fn step(&mut self) {
        self.now += 1;
        self.steps += 1;
        if self.migrate_at == Some(self.steps) {
            self.deploy_migration();
        }
        let d = self.rng.random_range(0..self.devices.len());
        match self.rng.random_range(0..100) {
            0..=49 => self.write(d),
            50..=96 => {
                let fault = self.rng.random_range(0..20);
                self.advance(d, fault);
            }
            97 => self.take_backup(),
            98 => self.restore(),
            _ => {
                let keep = self.rng.random_range(0..4);
                let oldest = server::pull::compact(&self.server, keep).unwrap();
                self.log
                    .push(format!("compact keep={keep} -> oldest {oldest}"));
            }
        }
    }

    fn take_backup(&mut self) {
        let mut copy = Connection::open_in_memory().unwrap();
        rusqlite::backup::Backup::new(&self.server, &mut copy)
            .unwrap()
            .step(-1)
            .unwrap();
        let head = server::bounds(&copy).unwrap().head_seq;
        self.log.push(format!("backup at seq {head}"));
        self.backup = Some(copy);
    }

    /// Puts the backup back as the server's database: with a new lineage (what `db restore`
    /// does) or without (a log that lost its tail, as after an OS crash).
    fn restore(&mut self) {
        let Some(backup) = &self.backup else {
            return;
        };
        let mut restored = Connection::open_in_memory().unwrap();
        rusqlite::backup::Backup::new(backup, &mut restored)
            .unwrap()
            .step(-1)
            .unwrap();
        let journal = |c: &Connection| -> std::collections::HashSet<i64> {
            c.prepare("SELECT id FROM journal")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = journal(&self.server);
        let kept = journal(&restored);
        let pending: std::collections::HashSet<i64> = self
            .devices
            .iter()
            .flat_map(|d| pending_journal_ids(&d.conn))
            .collect();
        self.lost_to_restores.extend(
            before
                .difference(&kept)
                .filter(|id| !pending.contains(id))
                .copied(),
        );
        let lineage = self.rng.random_range(0..3) > 0;
        if lineage {
            server::lineage::new_lineage(&restored).unwrap();
            self.stats.restores += 1;
        } else {
            self.stats.lost_tails += 1;
        }
        let head = server::bounds(&restored).unwrap().head_seq;
        self.log.push(format!(
            "server {} at seq {head}",
            if lineage { "restored" } else { "lost its tail" }
        ));
        self.server = restored;
        self.shapes = sync_core::engine::schema::ShapeCache::new();
        // The server migrates what it opens: a backup from before the migration comes back
        // at version 2.
        if self.stats.migrations > 0 && server::schema_version(&self.server).unwrap() < 2 {
            self.deploy_migration();
        }
    }

    fn write(&mut self, d: usize) {
        if self.rng.random_range(0..20) == 0 {
            return self.bulk_write(d);
        }
        let mutations: Vec<(u8, i64, i64, i64)> = (0..self.rng.random_range(1..=3))
            .map(|_| {
                (
                    self.rng.random_range(0..8u8),
                    self.rng.random_range(1..=6i64),
                    self.rng.random_range(1..=3i64),
                    self.rng.random_range(0..1000i64),
                )
            })
            .collect();
        let now = self.now;
        let dev = &mut self.devices[d];
        dev.writes += 1;
        let journal_id = (dev.id as i64 + 1) * 1_000_000 + dev.writes;
        let v2 = client::state::schema_version(&dev.conn).unwrap() >= 2;
        let result = capture(&dev.conn, |c| {
            for (kind, a, b, r) in &mutations {
                match kind {
                    0 | 1 => {
                        c.execute(
                            "INSERT OR IGNORE INTO notes(id, title, body, updated_at) VALUES (?1, ?2, '', ?3)",
                            rusqlite::params![a, format!("t{r}"), now * 10 + *r % 10],
                        )?;
                    }
                    2 => {
                        c.execute(
                            "UPDATE notes SET title = ?2, updated_at = ?3 WHERE id = ?1",
                            rusqlite::params![a, format!("t{r}"), now * 10 + *r % 10],
                        )?;
                    }
                    3 if v2 && r % 2 == 0 => {
                        c.execute(
                            "UPDATE notes SET color = ?2 WHERE id = ?1",
                            rusqlite::params![a, format!("k{r}")],
                        )?;
                    }
                    3 => {
                        c.execute(
                            "UPDATE notes SET body = ?2 WHERE id = ?1",
                            rusqlite::params![a, format!("b{r}")],
                        )?;
                    }
                    5 if v2 && r % 3 == 0 => {
                        c.execute(
                            "INSERT OR REPLACE INTO notebooks(id, name) VALUES (?1, ?2)",
                            rusqlite::params![b, format!("nb{r}")],
                        )?;
                    }
                    4 => {
                        c.execute("DELETE FROM notes WHERE id = ?1", [a])?;
                    }
                    5 => {
                        c.execute(
                            "INSERT OR IGNORE INTO tags(id, name) VALUES (?1, ?2)",
                            rusqlite::params![b, format!("tag{r}")],
                        )?;
                    }
                    6 => {
                        c.execute(
                            "INSERT OR IGNORE INTO note_tags(note_id, tag_id)
                             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM notes WHERE id = ?1)
                                             AND EXISTS (SELECT 1 FROM tags WHERE id = ?2)",
                            rusqlite::params![a, b],
                        )?;
                    }
                    _ => {
                        if r % 2 == 0 {
                            c.execute("DELETE FROM tags WHERE id = ?1", [b])?;
                        } else {
                            c.execute(
                                "DELETE FROM note_tags WHERE note_id = ?1 AND tag_id = ?2",
                                rusqlite::params![a, b],
                            )?;
                        }
                    }
                }
            }
            c.execute(
                "INSERT INTO journal(id, device, n) VALUES (?1, ?2, ?3)",
                rusqlite::params![journal_id, dev.id as i64, dev.writes],
            )
        });
        match result {
            Ok(_) => dev.acknowledged.push(journal_id),
            Err(e) => self.fail(format!("device {d}: local write failed: {e}")),
        }
        self.log
            .push(format!("d{d} write {mutations:?} journal {journal_id}"));
    }

    /// A transaction several times the server's body limit (a bulk import or edit of long
    /// notes): uploaded in parts, and logged as an effect too large for a pull page.
    fn bulk_write(&mut self, d: usize) {
        let rows = self.rng.random_range(5..=12i64);
        let base = self.rng.random_range(1..=6i64) * 100;
        let len = self.rng.random_range(300..900usize);
        let fill = self.rng.random_range(0..26u8);
        let now = self.now;
        let dev = &mut self.devices[d];
        dev.writes += 1;
        let journal_id = (dev.id as i64 + 1) * 1_000_000 + dev.writes;
        let body = String::from_utf8(vec![b'a' + fill; len]).unwrap();
        let result = capture(&dev.conn, |c| {
            for i in 0..rows {
                c.execute(
                    "INSERT INTO notes(id, title, body, updated_at) VALUES (?1, 'bulk', ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    rusqlite::params![base + i, format!("{body}{i}"), now * 10],
                )?;
            }
            c.execute(
                "INSERT INTO journal(id, device, n) VALUES (?1, ?2, ?3)",
                rusqlite::params![journal_id, dev.id as i64, dev.writes],
            )
        });
        match result {
            Ok(c) => {
                dev.acknowledged.push(journal_id);
                self.stats.bulk_writes += 1;
                self.log.push(format!(
                    "d{d} bulk write {rows} rows of {len} B at {base}: {} bytes, journal {journal_id}",
                    c.len
                ));
            }
            Err(e) => self.fail(format!("device {d}: bulk write failed: {e}")),
        }
    }

    /// A new batch id for device `d` (deterministic, never repeating).
    fn batch_label(&mut self, d: usize) -> String {
        let dev = &mut self.devices[d];
        dev.next_batch += 1;
        format!("d{d}-b{}", dev.next_batch - 1)
    }

    /// The server's answer to `batch`, or `None` when the request is dropped (fault 0).
    fn serve_push(
        &mut self,
        d: usize,
        batch: &client::push::PushBatch,
        fault: u32,
    ) -> Option<Result<PushResponse, sync_core::protocol::error::ErrorCode>> {
        if fault == 0 {
            self.log
                .push(format!("d{d} push {} dropped", batch.headers.batch_id));
            return None;
        }
        let response = match push(
            PushTarget {
                conn: &self.server,
                shapes: &self.shapes,
                scratch: None,
            },
            &format!("device-{d}"),
            &batch.headers,
            match &batch.body {
                client::push::BatchBody::Inline(body) => PushBody::Batch(body.as_slice().into()),
                client::push::BatchBody::Upload(_) => {
                    self.fail(format!("device {d}: an upload body pushed inline"))
                }
            },
            &self.config,
            self.now,
        ) {
            Ok(r) => r,
            // The cursor is in another history (a restore, a lost tail): the cycle re-bases.
            Err(
                e @ (server::ServerError::LineageMismatch { .. }
                | server::ServerError::ChainMismatch { .. }),
            ) => {
                let code = e.to_body().code;
                self.log
                    .push(format!("d{d} push {}: {code}", batch.headers.batch_id));
                return Some(Err(code));
            }
            Err(e) if e.to_body().code == sync_core::protocol::error::ErrorCode::SchemaMismatch => {
                self.log.push(format!(
                    "d{d} push {}: schema_mismatch",
                    batch.headers.batch_id
                ));
                return Some(Err(e.to_body().code));
            }
            Err(e) => self.fail(format!("device {d}: server refused a push: {e}")),
        };
        self.log.push(format!(
            "d{d} push {} -> seq {} {:?} clean={} dup={} conflicts={}{}",
            batch.headers.batch_id,
            response.seq,
            response.status,
            response.clean,
            response.duplicate,
            response.conflicts().count(),
            if fault == 1 { " (answer lost)" } else { "" }
        ));
        (fault != 1).then_some(Ok(response))
    }

    /// Advances device `d`'s sync by one step of [`Cycle`], starting one if none is running.
    /// fault: 0 = the request is dropped, 1 = the answer is lost after the server acted on it
    /// (for a push: after it committed); either ends the cycle, as a network failure ends a
    /// sync. Otherwise the answer is delivered.
    fn advance(&mut self, d: usize, fault: u32) {
        let mut cycle = self.devices[d]
            .cycle
            .take()
            .unwrap_or_else(|| Cycle::new(self.cycle_config()));
        let label = format!("d{d}-b{}", self.devices[d].next_batch);
        let mut used_label = false;
        let step = cycle
            .next(&self.devices[d].conn, &mut || {
                used_label = true;
                label.clone()
            })
            .unwrap_or_else(|e| self.fail(format!("device {d}: cycle.next: {e}")));
        if used_label {
            self.devices[d].next_batch += 1;
        }
        let reply_ok = match step {
            Step::Done => {
                let r = cycle.report();
                if r.upgraded_to.is_some() {
                    self.stats.upgrades += 1;
                }
                self.log.push(format!(
                    "d{d} sync done: pushed {} pulled {} bootstrapped={} conflicts={}",
                    r.pushed_batches, r.pulled_entries, r.bootstrapped, r.new_conflicts
                ));
                return;
            }
            Step::Push(batch) => match self.serve_push(d, &batch, fault) {
                Some(Ok(response)) => {
                    cycle.feed(&self.devices[d].conn, Reply::Pushed(response), self.now)
                }
                Some(Err(code)) => {
                    cycle.feed(&self.devices[d].conn, Reply::Refused(code), self.now)
                }
                None => return,
            },
            Step::Migrations { after } => {
                if fault <= 1 {
                    self.log
                        .push(format!("d{d} migrations after {after}: lost"));
                    return;
                }
                let answer =
                    server::migrations::migrations(&self.server, self.scripts(), after).unwrap();
                self.log.push(format!(
                    "d{d} migrations after {after}: {:?}",
                    answer
                        .migrations
                        .iter()
                        .map(|m| (m.version, m.at_seq))
                        .collect::<Vec<_>>()
                ));
                cycle.feed(&self.devices[d].conn, Reply::Migrations(answer), self.now)
            }
            Step::UploadStatus { batch_id } => {
                if fault == 0 {
                    self.log
                        .push(format!("d{d} upload status {batch_id}: dropped"));
                    return;
                }
                let have = self
                    .uploads
                    .get(&(d, batch_id.clone()))
                    .map(|(_, b)| b.len() as u64);
                self.log
                    .push(format!("d{d} upload status {batch_id}: {have:?}"));
                cycle.feed(&self.devices[d].conn, Reply::UploadStatus(have), self.now)
            }
            Step::Upload {
                batch_id,
                offset,
                total,
                bytes,
            } => {
                if fault == 0 {
                    self.log
                        .push(format!("d{d} upload {batch_id} at {offset}: dropped"));
                    return;
                }
                let (have_total, have) = self
                    .uploads
                    .get(&(d, batch_id.clone()))
                    .map_or((total, 0), |(t, b)| (*t, b.len() as u64));
                if have_total != total || offset > have {
                    self.fail(format!(
                        "device {d}: upload part at {offset} of {total} does not continue {have} of {have_total}"
                    ));
                }
                let up = self
                    .uploads
                    .entry((d, batch_id.clone()))
                    .or_insert_with(|| (total, Vec::new()));
                // Bytes before `offset` are the same on a retry; what follows is replaced.
                up.1.truncate(offset as usize);
                up.1.extend_from_slice(&bytes);
                let received = up.1.len() as u64;
                self.stats.upload_parts += 1;
                self.log.push(format!(
                    "d{d} upload {batch_id} at {offset}: {received} of {total}{}",
                    if fault == 1 { " (answer lost)" } else { "" }
                ));
                if fault == 1 {
                    return;
                }
                cycle.feed(&self.devices[d].conn, Reply::Uploaded(received), self.now)
            }
            Step::PushUploaded(headers) => match self.serve_uploaded(d, &headers, fault) {
                Some(Ok(response)) => {
                    cycle.feed(&self.devices[d].conn, Reply::Pushed(response), self.now)
                }
                Some(Err(code)) => {
                    cycle.feed(&self.devices[d].conn, Reply::Refused(code), self.now)
                }
                None => return,
            },
            Step::Effect { seq, query } => {
                let offset = query.offset;
                let mut bytes = Vec::new();
                match server::pull::effect_range(&self.server, seq, &query, &mut bytes) {
                    Ok(_) if fault <= 1 => {
                        self.log
                            .push(format!("d{d} effect {seq} at {offset}: lost"));
                        return;
                    }
                    Ok(total) => {
                        self.stats.large_effect_ranges += 1;
                        self.log.push(format!(
                            "d{d} effect {seq} at {offset}: {} of {total}",
                            bytes.len()
                        ));
                        cycle.feed(&self.devices[d].conn, Reply::Effect(bytes), self.now)
                    }
                    Err(e) => {
                        let code = e.to_body().code;
                        self.log.push(format!("d{d} effect {seq}: {code}"));
                        cycle.feed(&self.devices[d].conn, Reply::Refused(code), self.now)
                    }
                }
            }
            Step::Pull(query) => {
                let (since, limit, _) = query.effective();
                let limit = limit.min(self.rng.random_range(1..=6));
                let query = sync_core::protocol::pull::PullQuery {
                    limit: Some(limit),
                    max_bytes: Some(4096),
                    ..query
                };
                match server::pull::pull_query(&self.server, &query) {
                    Ok(_) if fault <= 1 => {
                        self.log
                            .push(format!("d{d} pull since {since}: answer lost"));
                        return;
                    }
                    Ok(page) => {
                        let seqs: Vec<i64> = page.entries.iter().map(|e| e.seq).collect();
                        self.log.push(format!("d{d} pull since {since}: {seqs:?}"));
                        // Pull answers carry the server's schema version.
                        cycle.server_schema_version(server::schema_version(&self.server).unwrap());
                        cycle.feed(&self.devices[d].conn, Reply::Page(page), self.now)
                    }
                    Err(e) => {
                        let code = e.to_body().code;
                        self.log.push(format!("d{d} pull since {since}: {code}"));
                        cycle.feed(&self.devices[d].conn, Reply::Refused(code), self.now)
                    }
                }
            }
            Step::Snapshot { batch } => {
                self.snapshots += 1;
                let path = self.dir.path().join(format!("snap-{}.db", self.snapshots));
                let seq = server::snapshot::snapshot(&self.server, &path).unwrap().seq;
                let batch_seq = batch.map(|b| {
                    server::push::stored(&self.server, &format!("device-{d}"), &b)
                        .unwrap()
                        .map(|r| r.seq)
                });
                self.stats.bootstraps += 1;
                self.log.push(format!(
                    "d{d} bootstrap at seq {seq} (batch at {batch_seq:?})"
                ));
                let reply = Reply::Snapshot { path, batch_seq };
                cycle.feed(&self.devices[d].conn, reply, self.now)
            }
        };
        match reply_ok {
            Ok(()) => self.devices[d].cycle = Some(cycle),
            // A refusal the cycle does not recover from ends this sync, as it would in the
            // client library; the next sync starts afresh (and `check` proves it converges).
            Err(CycleError::Refused(code)) => {
                self.log.push(format!("d{d} sync failed: {code}"));
            }
            Err(e) => self.fail(format!("device {d}: cycle.feed: {e}")),
        }
    }

    fn cycle_config(&self) -> CycleConfig {
        CycleConfig {
            push_max_bytes: 2048,
            max_body_bytes: self.max_body,
            effect_part_bytes: (self.max_body / 2) as u64,
            scratch_dir: Some(self.dir.path().to_path_buf()),
            ..CycleConfig::default()
        }
    }

    /// The push of an uploaded batch, as the server's route does it: the upload is the body
    /// (and goes once pushed); without one, a batch pushed before gets its stored answer.
    fn serve_uploaded(
        &mut self,
        d: usize,
        headers: &sync_core::protocol::push::PushHeaders,
        fault: u32,
    ) -> Option<Result<PushResponse, sync_core::protocol::error::ErrorCode>> {
        if fault == 0 {
            self.log
                .push(format!("d{d} push uploaded {} dropped", headers.batch_id));
            return None;
        }
        let key = (d, headers.batch_id.clone());
        let device = format!("device-{d}");
        let response = match self.uploads.get(&key) {
            Some((total, body)) if body.len() as u64 == *total => {
                let r = push(
                    PushTarget {
                        conn: &self.server,
                        shapes: &self.shapes,
                        scratch: Some(self.dir.path()),
                    },
                    &device,
                    headers,
                    PushBody::Batch(body.as_slice().into()),
                    &self.config,
                    self.now,
                );
                self.uploads.remove(&key);
                self.stats.uploaded_batches += 1;
                r
            }
            Some(_) => {
                return Some(Err(sync_core::protocol::error::ErrorCode::UploadIncomplete));
            }
            None => match server::push::stored(&self.server, &device, &headers.batch_id) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => {
                    return Some(Err(sync_core::protocol::error::ErrorCode::UploadIncomplete));
                }
                Err(e) => Err(e),
            },
        };
        let response = match response {
            Ok(r) => r,
            Err(
                e @ (server::ServerError::LineageMismatch { .. }
                | server::ServerError::ChainMismatch { .. }),
            ) => {
                let code = e.to_body().code;
                self.log
                    .push(format!("d{d} push uploaded {}: {code}", headers.batch_id));
                return Some(Err(code));
            }
            Err(e) if e.to_body().code == sync_core::protocol::error::ErrorCode::SchemaMismatch => {
                self.log.push(format!(
                    "d{d} push uploaded {}: schema_mismatch",
                    headers.batch_id
                ));
                return Some(Err(e.to_body().code));
            }
            Err(e) => self.fail(format!("device {d}: server refused an uploaded push: {e}")),
        };
        self.log.push(format!(
            "d{d} push uploaded {} -> seq {} {:?} dup={}{}",
            headers.batch_id,
            response.seq,
            response.status,
            response.duplicate,
            if fault == 1 { " (answer lost)" } else { "" }
        ));
        (fault != 1).then_some(Ok(response))
    }

    /// fault: 0 = request dropped, 1 = answer lost after commit, else delivered.
    fn push(&mut self, d: usize, fault: u32) {
        let label = self.batch_label(d);
        let batch = prepare_push(&self.devices[d].conn, 2048, usize::MAX, || label)
            .unwrap_or_else(|e| panic!("seed {}: prepare_push: {e}", self.seed));
        let Some(batch) = batch else {
            self.log.push(format!("d{d} push: nothing"));
            return;
        };
        if let Some(Ok(response)) = self.serve_push(d, &batch, fault) {
            self.ack(d, &response);
        }
    }

    fn ack(&mut self, d: usize, response: &PushResponse) {
        if let Err(e) = on_push_response(&self.devices[d].conn, response, self.now) {
            self.fail(format!("device {d}: on_push_response: {e}"));
        }
    }

    fn pull(&mut self, d: usize, lose: bool) {
        let cursor = cursor(&self.devices[d].conn).unwrap();
        let limit = self.rng.random_range(1..=6);
        match server::pull::pull(&self.server, cursor, limit, 4096) {
            Ok(page) => {
                if lose {
                    self.log
                        .push(format!("d{d} pull since {cursor}: answer lost"));
                    return;
                }
                let seqs: Vec<i64> = page.entries.iter().map(|e| e.seq).collect();
                match client::integrate::integrate(&self.devices[d].conn, &page.entries, self.now) {
                    Ok(r) => self.log.push(format!(
                        "d{d} pull since {cursor}: {seqs:?} own={:?} rebased={} conflicts={}",
                        r.own_batch, r.rebased, r.new_conflicts
                    )),
                    Err(e) => self.fail(format!("device {d}: integrate {seqs:?}: {e}")),
                }
            }
            Err(e) => self.fail(format!("device {d}: pull: {e}")),
        }
    }

    /// Pulls every available entry in one page.
    fn pull_all(&mut self, d: usize) {
        let cursor = cursor(&self.devices[d].conn).unwrap();
        let page = server::pull::pull(&self.server, cursor, 10_000, usize::MAX).unwrap();
        assert!(!page.more);
        client::integrate::integrate(&self.devices[d].conn, &page.entries, self.now).unwrap();
    }

    /// Syncs device `d` without faults — whole cycles, as a client does — until it has nothing
    /// to push and nothing to pull.
    fn sync_until_quiet(&mut self, d: usize) {
        self.devices[d].cycle = None;
        for _ in 0..100 {
            let head = server::bounds(&self.server).unwrap().head_seq;
            let dev = &self.devices[d];
            // At the head of the server's history as it is now (a cursor at the same seq in a
            // history a restore replaced is not quiet: only a sync finds that out).
            let at_head = client::state::synced(&dev.conn).unwrap().position
                == Some(server::lineage::head(&self.server).unwrap());
            let quiet = cursor(&dev.conn).unwrap() == head
                && at_head
                && client::state::schema_version(&dev.conn).unwrap()
                    == server::schema_version(&self.server).unwrap()
                && inflight(&dev.conn).unwrap().is_none()
                && sync_core::engine::outbox::stats(&dev.conn).unwrap().0 == 0;
            if quiet {
                return;
            }
            // One whole cycle: advance until it reports done.
            for _ in 0..1000 {
                self.advance(d, 2);
                if self.devices[d].cycle.is_none() {
                    break;
                }
            }
        }
        self.fail(format!("device {d} did not become quiet in 100 syncs"));
    }

    fn check(&mut self) {
        for round in 0..5 {
            for d in 0..self.devices.len() {
                self.sync_until_quiet(d);
            }
            let head = server::bounds(&self.server).unwrap().head_seq;
            let settled = self.devices.iter().all(|dev| {
                cursor(&dev.conn).unwrap() == head
                    && client::state::synced(&dev.conn).unwrap().position
                        == Some(server::lineage::head(&self.server).unwrap())
                    && sync_core::engine::outbox::stats(&dev.conn).unwrap().0 == 0
            });
            if settled {
                break;
            }
            if round == 4 {
                self.fail("devices did not settle".into());
            }
        }
        let expected = dump(&self.server);
        let version = server::schema_version(&self.server).unwrap();
        for dev in &self.devices {
            let local = client::state::schema_version(&dev.conn).unwrap();
            if local != version {
                self.fail(format!(
                    "device {} is at schema version {local}, the server at {version}",
                    dev.id
                ));
            }
            let got = dump(&dev.conn);
            if got != expected {
                let diff = describe_diff(&expected, &got);
                self.fail(format!("device {} differs from the server: {diff}", dev.id));
            }
        }
        let on_server: std::collections::HashSet<i64> = self
            .server
            .prepare("SELECT id FROM journal")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for dev in &self.devices {
            let rejected = rejected_journal_ids(&dev.conn);
            for id in &dev.acknowledged {
                if self.lost_to_restores.contains(id) && !on_server.contains(id) {
                    continue;
                }
                match (on_server.contains(id), rejected.contains(id)) {
                    (true, false) | (false, true) => {}
                    (false, false) => self.fail(format!(
                        "device {}: acknowledged write with journal id {id} is neither on the server nor in the rejected queue",
                        dev.id
                    )),
                    (true, true) => self.fail(format!(
                        "device {}: write with journal id {id} is on the server and in the rejected queue",
                        dev.id
                    )),
                }
            }
        }
    }
}

/// Journal ids inside a device's pending transactions (those in memory; a large one is
/// skipped, which only widens what a restore may be said to have lost).
fn pending_journal_ids(conn: &Connection) -> Vec<i64> {
    let mut out = Vec::new();
    for entry in sync_core::engine::outbox::entries(conn).unwrap() {
        if entry.changeset.is_empty() {
            continue;
        }
        for change in entry.changeset.inspect().unwrap() {
            if change.table == "journal"
                && change.op == Op::Insert
                && let Some(Value::Integer(id)) = change.pk_values().first()
            {
                out.push(*id);
            }
        }
    }
    out
}

/// Journal ids inside the transactions of a device's rejected queue.
fn rejected_journal_ids(conn: &Connection) -> std::collections::HashSet<i64> {
    let mut out = std::collections::HashSet::new();
    for r in client::rejected::list(conn).unwrap() {
        let r = client::rejected::get(conn, r.id).unwrap().unwrap();
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

type Dump = Vec<(String, Vec<Vec<Value>>)>;

fn dump(conn: &Connection) -> Dump {
    let migrated = sync_core::engine::schema::table_shape(conn, "notebooks")
        .unwrap()
        .is_some();
    APP_TABLES
        .iter()
        .chain(migrated.then_some(&"notebooks"))
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i).map(Value::from))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (t.to_string(), rows)
        })
        .collect()
}

fn describe_diff(expected: &Dump, got: &Dump) -> String {
    let mut out = String::new();
    for ((table, want), (_, have)) in expected.iter().zip(got) {
        for row in want {
            if !have.contains(row) {
                out.push_str(&format!("\n  {table}: server has {row:?}, device lacks it"));
            }
        }
        for row in have {
            if !want.contains(row) {
                out.push_str(&format!("\n  {table}: device has {row:?}, server lacks it"));
            }
        }
    }
    out
}

fn run_case(seed: u64, steps: usize) -> Stats {
    let mut world = World::new(seed);
    // Half the cases keep only small transactions in memory, so pending bulk writes take the
    // large path (copied out of the outbox, inverted and applied from files).
    if seed.is_multiple_of(2) {
        sync_core::engine::outbox::set_load_max(1024);
    } else {
        sync_core::engine::outbox::set_load_max(sync_core::engine::outbox::LOAD_MAX);
    }
    for _ in 0..steps {
        world.step();
    }
    world.check();
    let mut stats = world.stats;
    for dev in &world.devices {
        stats.acknowledged += dev.acknowledged.len() as u64;
        for r in client::rejected::list(&dev.conn).unwrap() {
            match r.reason {
                client::rejected::RejectedReason::ForeignKey => stats.rejected_foreign_key += 1,
                client::rejected::RejectedReason::Policy => stats.rejected_policy += 1,
                client::rejected::RejectedReason::Schema => stats.rejected_schema += 1,
            }
        }
    }
    stats
}

#[test]
fn devices_converge_under_random_interleavings_and_faults() {
    if let Ok(seed) = std::env::var("SYNC_CONVERGENCE_SEED") {
        let seed: u64 = seed.parse().expect("SYNC_CONVERGENCE_SEED must be a u64");
        println!("convergence: replaying seed {seed}");
        println!("{:?}", run_case(seed, 120));
        return;
    }
    let cases: u64 = std::env::var("SYNC_CONVERGENCE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base: u64 = rand::rng().random();
    println!(
        "convergence: {cases} cases from base seed {base} (replay one with SYNC_CONVERGENCE_SEED)"
    );
    let mut total = Stats::default();
    for i in 0..cases {
        total += run_case(base.wrapping_add(i), 120);
    }
    println!("convergence: {cases} cases passed; exercised {total:?}");
    // A world that never takes these paths proves nothing about them.
    if cases >= 100 {
        assert!(
            total.uploaded_batches > 0 && total.large_effect_ranges > 0,
            "{total:?}"
        );
        assert!(total.rejected_foreign_key > 0, "{total:?}");
        assert!(total.restores > 0 && total.lost_tails > 0, "{total:?}");
        assert!(total.migrations > 0 && total.upgrades > 0, "{total:?}");
    }
}

#[test]
fn an_update_of_a_row_deleted_remotely_is_a_local_conflict_not_silent_loss() {
    let mut world = World::new(7);
    world.config.policies = PolicySet::uniform(Policy::Replace);
    let (a, b) = (0, 1);
    capture(&world.devices[a].conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'n', '', 1)", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    world.sync_until_quiet(b);
    capture(&world.devices[a].conn, |c| {
        c.execute("DELETE FROM notes WHERE id = 1", [])
    })
    .unwrap();
    capture(&world.devices[b].conn, |c| {
        c.execute("UPDATE notes SET title = 'edited' WHERE id = 1", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    // b pushes before it has pulled the delete: the server meets the race. Then b pulls
    // everything at once: its own batch settles its update, nothing is redone.
    world.push(b, 2);
    world.pull_all(b);
    world.sync_until_quiet(b);
    let conflicts = local_conflicts(&world.devices[b].conn, 0).unwrap();
    assert!(
        conflicts.is_empty(),
        "the server arbitrates a delete/update race: {conflicts:?}"
    );
    // The server omitted b's update of a deleted row (NOTFOUND) and recorded it.
    let (records, _) = server::conflicts::conflicts(&world.server, 0, 10).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].conflict.kind, ConflictKind::NotFound);
    world.check();

    // Now the other order: b edits offline, a's delete reaches b by pull before b pushes.
    capture(&world.devices[a].conn, |c| {
        c.execute("INSERT INTO notes VALUES (2, 'n', '', 1)", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    world.sync_until_quiet(b);
    capture(&world.devices[a].conn, |c| {
        c.execute("DELETE FROM notes WHERE id = 2", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    capture(&world.devices[b].conn, |c| {
        c.execute("UPDATE notes SET title = 'offline edit' WHERE id = 2", [])
    })
    .unwrap();
    world.pull(b, false);
    let conflicts = local_conflicts(&world.devices[b].conn, 0).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, LocalConflictKind::RowDeletedRemotely);
    assert_eq!(conflicts[0].pk, vec![Value::Integer(2)]);
    world.check();
}

#[test]
fn a_rejected_transaction_is_queued_with_its_changes_and_the_row_that_blocked_it() {
    let mut world = World::new(11);
    world.config.policies = PolicySet::uniform(Policy::Abort);
    let (a, b) = (0, 1);
    capture(&world.devices[a].conn, |c| {
        c.execute("INSERT INTO notes VALUES (1, 'a', '', 1)", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    world.sync_until_quiet(b);
    capture(&world.devices[a].conn, |c| {
        c.execute("UPDATE notes SET title = 'x' WHERE id = 1", [])
    })
    .unwrap();
    capture(&world.devices[b].conn, |c| {
        c.execute("UPDATE notes SET title = 'y' WHERE id = 1", [])
    })
    .unwrap();
    world.sync_until_quiet(a);
    // b pushes before pulling a's update: a DATA conflict under `reject`.
    world.push(b, 2);
    world.sync_until_quiet(b);
    assert!(
        local_conflicts(&world.devices[b].conn, 0)
            .unwrap()
            .is_empty()
    );
    let rejected = client::rejected::list(&world.devices[b].conn).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, client::rejected::RejectedReason::Policy);
    assert_eq!(rejected[0].by, client::rejected::RejectedBy::Server);
    // The row that blocked it: a's update, already on the server.
    let blocking = rejected[0].conflicts.last().unwrap();
    assert_eq!(blocking.kind, ConflictKind::Data);
    assert_eq!(blocking.pk, vec![Value::Integer(1)]);
    let dropped = client::rejected::get(&world.devices[b].conn, rejected[0].id)
        .unwrap()
        .unwrap()
        .changeset
        .inspect()
        .unwrap();
    assert_eq!(
        dropped[0].new.as_ref().unwrap()[1],
        Some(Value::Text("y".into()))
    );
    world.check();
    let title: String = world.devices[b]
        .conn
        .query_row("SELECT title FROM notes WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(title, "x");
}

#[test]
fn integrate_refuses_a_gap_in_the_log() {
    let mut world = World::new(3);
    for d in [0, 0] {
        world.write(d);
        world.push(d, 2);
        world.pull(d, false);
    }
    let page = server::pull::pull(&world.server, 1, 10, 1 << 20).unwrap();
    let err = client::integrate::integrate(&world.devices[1].conn, &page.entries, 0).unwrap_err();
    assert!(
        matches!(err, ClientError::Gap { cursor: 0, got: 2 }),
        "{err}"
    );
}
