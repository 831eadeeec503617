//! [`PgStore`]: the connection pool and every statement the store runs. PostgreSQL work runs on
//! a small runtime of the store's own, so the blocking code that holds a database's writer can
//! wait for it ([`PgStore::run`]) whatever runtime, if any, the caller is on.

use super::StoreError;
use super::schema::{MIGRATION_LOCK, MIGRATIONS};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// How long a request waits for a pooled connection, for a new one, and for a statement.
pub const WAIT: Duration = Duration::from_secs(5);
/// Statements are cancelled by PostgreSQL after this long (`statement_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies fetched per round trip while catching up (beyond the first frame).
pub const FETCH_BYTES: usize = 8 << 20;
/// Images are stored in parts of this size.
pub const IMAGE_PART: usize = 1 << 20;
/// What [`PgStore::append`] runs: the frame, a log entry, an idempotency record, the
/// announcement.
const APPEND_SQL: [&str; 4] = [
    "INSERT INTO sync_frames(file, version, kind, body) VALUES ($1, $2, $3, $4)",
    "INSERT INTO sync_entries(database, seq, version, device, batch_id) VALUES ($1, $2, $3, $4, $5)",
    "INSERT INTO sync_batches(database, device, batch_id, seq) VALUES ($1, $2, $3, $4)",
    "SELECT pg_notify($1, $2)",
];
/// The channel frames are announced on (payload `file version seq`, seq 0 when none).
pub const CHANNEL: &str = "sync_frames";

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The patchset of one write transaction.
    Patch = 0,
    /// The file was replaced by the image stored at this version (schema change, import).
    Image = 1,
}

/// One frame of a file's history.
#[derive(Debug)]
pub struct Frame {
    /// Its version (1, 2, …).
    pub version: i64,
    /// What it is.
    pub kind: FrameKind,
    /// The patchset (empty for an image frame).
    pub body: Vec<u8>,
}

/// Where a file's history stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// The newest version (0: the store has never seen the file).
    pub version: i64,
    /// The newest version an image is stored at (0: none).
    pub image: i64,
}

/// A log entry a frame appends: (database, seq) must be new.
#[derive(Debug, Clone)]
pub struct EntryKey {
    /// The log seq.
    pub seq: i64,
    /// The pushing device.
    pub device: String,
    /// Its batch id.
    pub batch_id: String,
}

/// The answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The frame is the file's new head.
    Done,
    /// Another node appended this version first: catch up and try again.
    Stale,
}

/// The PostgreSQL store: a bounded pool on a runtime of its own.
pub struct PgStore {
    /// `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    config: tokio_postgres::Config,
    /// The URL without its password, for logs and errors.
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Not `Runtime::drop`, which blocks and panics when the last handle goes in async code.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

thread_local! {
    static MAY_BLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread marked as one that may block in place (the server's blocking
/// pool): [`PgStore::run`] then waits without a thread of its own.
pub fn may_block<T>(f: impl FnOnce() -> T) -> T {
    let was = MAY_BLOCK.replace(true);
    let out = f();
    MAY_BLOCK.set(was);
    out
}

pub(super) fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`) with at most
    /// `pool_size` connections, and runs the store's pending migrations.
    pub fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("not a PostgreSQL URL: {e}")))?;
        config
            .connect_timeout(WAIT)
            .keepalives(true)
            .application_name("sync-server")
            .options(format!(
                "-c statement_timeout={}",
                STATEMENT_TIMEOUT.as_millis()
            ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot start the store's runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _in_rt = rt.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(1))
                .wait_timeout(Some(WAIT))
                .create_timeout(Some(WAIT))
                .recycle_timeout(Some(WAIT))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Invalid(format!("connection pool: {e}")))?
        };
        let shown = shown_url(url);
        let store = PgStore {
            rt: Some(rt),
            pool,
            config,
            shown,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Runs `f` to completion on the store's runtime, blocking the calling thread. On a
    /// thread that may block (no runtime, or one marked by [`may_block`]) it waits right
    /// there; anywhere else (async code at startup, tests) on a short-lived thread of its own,
    /// since a runtime's worker must not be blocked in place.
    pub fn run<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        let handle = self.rt().handle();
        if MAY_BLOCK.get() || tokio::runtime::Handle::try_current().is_err() {
            return handle.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| handle.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives until drop")
    }

    /// Spawns `f` on the store's runtime.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt().spawn(f)
    }

    /// The connection settings (for the LISTEN connection, which is not pooled).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::pg)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(StoreError::pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(StoreError::pg)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS sync_store_version (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(StoreError::pg)?;
            let row = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM sync_store_version",
                    &[],
                )
                .await
                .map_err(StoreError::pg)?;
            let have: i32 = row.get(0);
            let known = MIGRATIONS.len() as i32;
            if have > known {
                return Err(StoreError::Invalid(format!(
                    "the store's schema is version {have}; this build knows up to {known}"
                )));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
                tx.batch_execute(sql).await.map_err(StoreError::pg)?;
                let v = i as i32 + 1;
                tx.execute("INSERT INTO sync_store_version(version) VALUES ($1)", &[&v])
                    .await
                    .map_err(StoreError::pg)?;
            }
            tx.commit().await.map_err(StoreError::pg)
        })
    }

    /// The schema version of the store (the migrations applied).
    pub fn schema_version(&self) -> Result<i32, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let row = c
                .query_one("SELECT max(version) FROM sync_store_version", &[])
                .await
                .map_err(StoreError::pg)?;
            Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
        })
    }

    /// Where `file`'s history stands.
    pub fn head(&self, file: i64) -> Result<Head, StoreError> {
        self.run(async {
            let c = self.client().await?;
            // Prepared once per pooled connection: every request asks (one round trip, not two).
            let stmt = c
                .prepare_cached(
                    "SELECT (SELECT coalesce(max(version), 0) FROM sync_frames WHERE file = $1),
                            (SELECT coalesce(max(version), 0) FROM sync_images WHERE file = $1)",
                )
                .await
                .map_err(StoreError::pg)?;
            let row = c.query_one(&stmt, &[&file]).await.map_err(StoreError::pg)?;
            Ok(Head {
                version: row.get(0),
                image: row.get(1),
            })
        })
    }

    /// Frames of `file` after `version`, oldest first: at most `limit`, and no more than
    /// [`FETCH_BYTES`] of bodies beyond the first (so catching up holds little in memory).
    pub fn frames_after(
        &self,
        file: i64,
        version: i64,
        limit: i64,
    ) -> Result<Vec<Frame>, StoreError> {
        let budget = FETCH_BYTES as i64;
        self.run(async {
            let c = self.client().await?;
            let stmt = c
                .prepare_cached(
                    "SELECT version, kind, body FROM (
                         SELECT version, kind, body,
                                sum(octet_length(body)) OVER (ORDER BY version) AS run
                         FROM sync_frames WHERE file = $1 AND version > $2
                         ORDER BY version LIMIT $3) t
                     WHERE run - octet_length(body) < $4 ORDER BY version",
                )
                .await
                .map_err(StoreError::pg)?;
            let rows = c
                .query(&stmt, &[&file, &version, &limit, &budget])
                .await
                .map_err(StoreError::pg)?;
            Ok(rows
                .into_iter()
                .map(|r| Frame {
                    version: r.get(0),
                    kind: if r.get::<_, i16>(1) == FrameKind::Image as i16 {
                        FrameKind::Image
                    } else {
                        FrameKind::Patch
                    },
                    body: r.get(2),
                })
                .collect())
        })
    }

    /// Appends the patchset of one write as `version` of `file`, with the log entries and
    /// idempotency records it adds, in one PostgreSQL transaction; announced on [`CHANNEL`]
    /// when it commits. [`Appended::Stale`] when `version` was taken.
    pub fn append(
        &self,
        file: i64,
        version: i64,
        patch: &[u8],
        entries: &[EntryKey],
    ) -> Result<Appended, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            // Prepared once per pooled connection; after the frame, the entries, idempotency
            // records and notification go out pipelined: BEGIN, frame, the rest, COMMIT.
            let mut st = Vec::with_capacity(APPEND_SQL.len());
            for sql in APPEND_SQL {
                st.push(c.prepare_cached(sql).await.map_err(StoreError::pg)?);
            }
            let owned = c.transaction().await.map_err(StoreError::pg)?;
            let kind = FrameKind::Patch as i16;
            match owned
                .execute(&st[0], &[&file, &version, &kind, &patch])
                .await
            {
                Ok(_) => {}
                Err(e) if unique_violation(&e) => return Ok(Appended::Stale),
                Err(e) => return Err(StoreError::pg(e)),
            }
            let payload = format!("{file} {version} {}", entries.last().map_or(0, |e| e.seq));
            let (tx, st) = (&owned, &st);
            let rows = entries.iter().map(|e| async move {
                futures_util::future::try_join(
                    tx.execute(&st[1], &[&file, &e.seq, &version, &e.device, &e.batch_id]),
                    tx.execute(&st[2], &[&file, &e.device, &e.batch_id, &e.seq]),
                )
                .await
            });
            // Polled together, tokio-postgres sends them back to back, then reads the answers.
            let (written, notified) = futures_util::future::join(
                futures_util::future::join_all(rows),
                tx.execute(&st[3], &[&CHANNEL, &payload]),
            )
            .await;
            for r in written {
                r.map_err(|e| refused(file, &e))?;
            }
            notified.map_err(StoreError::pg)?;
            owned.commit().await.map_err(StoreError::pg)?;
            Ok(Appended::Done)
        })
    }

    /// The newest log seq the store indexed for each of `databases` that has one.
    pub fn log_heads(&self, databases: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT database, max(seq) FROM sync_entries
                     WHERE database = ANY($1) GROUP BY database",
                    &[&databases],
                )
                .await
                .map_err(StoreError::pg)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Every log entry of `database` the store has indexed, as (seq, device, batch id), in
    /// seq order (for checks: each acknowledged push exactly once).
    pub fn entries(&self, database: i64) -> Result<Vec<EntryKey>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT seq, device, batch_id FROM sync_entries
                     WHERE database = $1 ORDER BY seq",
                    &[&database],
                )
                .await
                .map_err(StoreError::pg)?;
            Ok(rows
                .into_iter()
                .map(|r| EntryKey {
                    seq: r.get(0),
                    device: r.get(1),
                    batch_id: r.get(2),
                })
                .collect())
        })
    }
}

/// A unique violation on the log index or the idempotency table: the cache was behind in a way
/// the version check did not catch — never expected; refused rather than appended twice.
fn refused(file: i64, e: &tokio_postgres::Error) -> StoreError {
    if unique_violation(e) {
        StoreError::Invalid(format!(
            "database {file}: a log entry or batch the store already holds: {e}"
        ))
    } else {
        StoreError::pg(e)
    }
}

/// Inserts frame `version` of `file`; [`Appended::Stale`] when another node took it.
pub(super) async fn insert_frame(
    tx: &deadpool_postgres::Transaction<'_>,
    file: i64,
    version: i64,
    kind: FrameKind,
    body: &[u8],
) -> Result<Appended, StoreError> {
    let kind = kind as i16;
    match tx
        .execute(
            "INSERT INTO sync_frames(file, version, kind, body) VALUES ($1, $2, $3, $4)",
            &[&file, &version, &kind, &body],
        )
        .await
    {
        Ok(_) => Ok(Appended::Done),
        Err(e) if unique_violation(&e) => Ok(Appended::Stale),
        Err(e) => Err(StoreError::pg(e)),
    }
}

pub(super) async fn notify(
    tx: &deadpool_postgres::Transaction<'_>,
    file: i64,
    version: i64,
    seq: i64,
) -> Result<(), StoreError> {
    let payload = format!("{file} {version} {seq}");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(StoreError::pg)?;
    Ok(())
}

/// `url` without the password.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
