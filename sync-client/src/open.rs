//! Opening a local copy: [`SyncClient::init`] makes a new one from a server's snapshot,
//! [`SyncClient::open`] opens an existing one (or a local-only database).

use crate::client::{Inner, SyncClient};
use crate::config::{ClientConfig, Durability, RemoteConfig};
use crate::engine::{Engine, EngineConfig, Syncer};
use crate::error::{Error, ErrorKind, Result};
use crate::fts::Fts;
use crate::limits::Limits;
use crate::live::Activity;
use crate::notify::Notifier;
use crate::readers::Readers;
use crate::rowid::Rowids;
use crate::settings;
use crate::signal::Signal;
use crate::transport::{HttpTransport, Transport};
use crate::writer::Writer;
use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use sync_core::client::bootstrap::init_from_snapshot;
use sync_core::client::cycle::CycleConfig;
use sync_core::engine::cipher;

/// Removes a database `init` created (with its WAL files and search index) unless kept.
struct Created<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        remove_database_files(self.path);
        remove_database_files(&Fts::path_for(self.path));
    }
}

/// Removes a database file and its companions (WAL, shared memory, journal).
pub(crate) fn remove_database_files(base: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = base.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Removes the scratch directories of earlier, killed inits of the same target.
pub(crate) fn remove_stale_scratch(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Puts the finished copy at `path` in one step, never over an existing file: a hard link
/// (which fails if `path` exists), or — where the file system has none — a rename after a
/// last check. Then the directory entry is made durable.
fn publish(staged: &Path, path: &Path) -> Result<()> {
    match std::fs::hard_link(staged, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} already exists; init creates a new local copy",
                    path.display()
                ),
            ));
        }
        Err(_) if !path.exists() => std::fs::rename(staged, path)?,
        Err(e) => return Err(e.into()),
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl SyncClient {
    /// Creates a new local copy of a server database at `path` (which must not exist): reads
    /// the database's info, downloads a snapshot, and stores the server settings in the
    /// database so later opens need no remote configuration. The copy is built in a scratch
    /// directory beside `path` and put in place in one step: on failure — even a killed
    /// process — there is no file at `path`, or a complete copy.
    pub fn init(
        path: impl AsRef<Path>,
        remote: RemoteConfig,
        config: ClientConfig,
    ) -> Result<SyncClient> {
        SyncClient::init_with_progress(path, remote, config, &|_, _| {})
    }

    /// [`init`](Self::init), telling `progress` how the snapshot download goes: the bytes
    /// received so far and the snapshot's size when the server told it (`progress(0, total)`
    /// first, then after each chunk). It runs on the calling thread; keep it short (a
    /// terminal's progress bar, say).
    pub fn init_with_progress(
        path: impl AsRef<Path>,
        remote: RemoteConfig,
        config: ClientConfig,
        progress: &(dyn Fn(u64, Option<u64>) + Sync),
    ) -> Result<SyncClient> {
        let path = path.as_ref();
        // The writer lock first: a concurrent first open of the same path fails here with
        // `InUse` and never reaches any clean-up, which would delete the winner's files.
        let mut writer_lock = crate::lock::acquire(path)?;
        let result = SyncClient::init_locked(path, remote, config, progress, &mut writer_lock);
        if result.is_err() && writer_lock.is_some() && !path.exists() {
            // Nothing was made, and the lock is still ours: its file goes too (before the
            // lock is released, so nobody can be holding it).
            let _ = std::fs::remove_file(crate::lock::lock_path(path));
        }
        result
    }

    fn init_locked(
        path: &Path,
        remote: RemoteConfig,
        mut config: ClientConfig,
        progress: &(dyn Fn(u64, Option<u64>) + Sync),
        writer_lock: &mut Option<crate::lock::WriterLock>,
    ) -> Result<SyncClient> {
        if path.exists() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} already exists; init creates a new local copy",
                    path.display()
                ),
            ));
        }
        let device = settings::new_device_id();
        let transport = HttpTransport::with_credentials(
            &remote,
            config.http_timeout,
            config.credentials.clone(),
        )?
        .with_device(device.clone());
        transport.info()?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // The copy is made whole in a scratch directory beside the target and then linked
        // into place in one step: a killed init leaves no file at `path`, or a complete one.
        // What a killed earlier init left in its scratch directory goes now (the writer
        // lock, held, says no other init of this path is running).
        let prefix = format!(
            ".{}.sync-init",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        remove_stale_scratch(dir, &prefix);
        let scratch = tempfile::Builder::new().prefix(&prefix).tempdir_in(dir)?;
        let snap = scratch.path().join("snapshot.db");
        transport.snapshot(
            &snap,
            &crate::transport::SnapshotRequest {
                reason: "new",
                batch: None,
                key: config.encryption_key.as_ref(),
                progress: Some(crate::transport::OnBytes(progress)),
            },
        )?;
        let staged = scratch.path().join("local.db");
        {
            let conn = init_from_snapshot(&snap, &staged, config.encryption_key.as_ref())?;
            settings::install(&conn)?;
            settings::store_remote(&conn, &remote, config.credentials.is_none())?;
            settings::store_device_id(&conn, &device)?;
            // The search configuration is part of the copy: checked and stored before it
            // is published (the index itself is built when the copy opens).
            if !config.fts.is_empty() {
                Fts::check(&config.fts, &conn)?;
                settings::store_fts(&conn, &config.fts)?;
            }
            // One file, complete on disk, before it is published.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        std::fs::File::open(&staged)?.sync_all()?;
        // A search index at the target belongs to no copy (the target does not exist).
        remove_database_files(&crate::fts::Fts::path_for(path));
        publish(&staged, path)?;
        // From here on the file exists: a failure (a bad FTS table, say) must not leave a
        // copy behind that the retry would refuse as "already exists".
        let mut created = Created { path, keep: false };
        config.remote = Some(remote);
        let client = SyncClient::open_locked(path.to_path_buf(), config, writer_lock)?;
        created.keep = true;
        Ok(client)
    }

    /// Opens (creating if needed) the local database at `path`.
    ///
    /// Sets WAL mode, installs the internal tables, refuses schemas with tables sync cannot
    /// track (naming them), registers `sync_id()`, starts the writer thread, and — with FTS
    /// configured — opens or rebuilds the index. Sync settings come from `config.remote`, else
    /// from what `init` stored; without either the database works local-only. FTS tables
    /// likewise come from `config.fts` (then stored), else from the stored list.
    ///
    /// A database has exactly one writer: while a client has the file open (until
    /// [`close`](Self::close) or drop), another `open` of it — in this process or another —
    /// fails with [`ErrorKind::InUse`].
    pub fn open(path: impl AsRef<Path>, config: ClientConfig) -> Result<SyncClient> {
        let path = path.as_ref().to_path_buf();
        // Before anything touches the file: one writer per database (see `lock`).
        let mut writer_lock = crate::lock::acquire(&path)?;
        SyncClient::open_locked(path, config, &mut writer_lock)
    }

    /// [`open`](Self::open) with the writer lock already held; the lock moves into the client
    /// on success and stays with the caller on failure.
    pub(crate) fn open_locked(
        path: PathBuf,
        config: ClientConfig,
        writer_lock: &mut Option<crate::lock::WriterLock>,
    ) -> Result<SyncClient> {
        // The key first: nothing else reads the file before it (a wrong one is `WrongKey`).
        let key = config.encryption_key.as_ref();
        let conn = cipher::open(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            key,
        )?;
        conn.busy_timeout(config.busy_timeout)?;
        let sync = match config.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))?;
        sync_core::engine::schema::check_trackable(&conn)?;
        sync_core::client::install(&conn)?;
        settings::install(&conn)?;
        let remote = match &config.remote {
            Some(r) => {
                settings::store_remote(&conn, r, config.credentials.is_none())?;
                Some(r.clone())
            }
            None => {
                let stored = settings::remote(&conn)?;
                if stored.is_some() && config.credentials.is_some() {
                    // A provider gives the token from now on: none stays in the file (its
                    // bytes overwritten, not only unlinked).
                    conn.execute_batch("PRAGMA secure_delete = ON")?;
                    settings::set(&conn, "token", None)?;
                    conn.execute_batch("PRAGMA secure_delete = OFF")?;
                }
                stored
            }
        };
        let fts_tables = if config.fts.is_empty() {
            settings::fts(&conn)?
        } else {
            config.fts.clone()
        };
        let rowids = Rowids::load(&conn, config.rowids)?;
        let limits = Arc::new(Limits::load(&conn, config.max_transaction_bytes)?);
        rowids.register_function(&conn)?;
        let fts = if fts_tables.is_empty() {
            None
        } else {
            let fts = Fts::open(&path, fts_tables.clone(), &conn, key)?.0;
            // Stored only once the tables proved valid, so a typo is not remembered.
            settings::store_fts(&conn, &fts_tables)?;
            Some(Arc::new(fts))
        };
        let device = match &remote {
            Some(_) => settings::device_id(&conn)?,
            None => String::new(),
        };
        let readers = Arc::new(Readers::new(
            &path,
            fts.as_ref().map(|f| f.file().to_path_buf()),
            config.read_connections,
            config.busy_timeout,
            config.encryption_key.clone(),
        ));
        let wake = Arc::new(Signal::default());
        let activity = Arc::new(Activity::new(Arc::clone(&wake)));
        let notifier = Arc::new(Notifier::new(
            Arc::clone(&readers),
            Arc::clone(&activity),
            wake,
        ));
        let told = Arc::clone(&notifier);
        let writer = Arc::new(Writer::start(
            conn,
            Box::new(move |tables, reshaped| told.written(&tables, reshaped)),
        )?);
        let engine = match &remote {
            Some(r) => {
                let transport: Arc<dyn Transport> = Arc::new(
                    HttpTransport::with_credentials(
                        r,
                        config.http_timeout,
                        config.credentials.clone(),
                    )?
                    .with_device(device.clone()),
                );
                Some(Engine::new(
                    Arc::clone(&writer),
                    transport,
                    Arc::clone(&rowids),
                    Arc::clone(&limits),
                    EngineConfig {
                        cycle: CycleConfig {
                            push_max_bytes: config.push_max_bytes,
                            pull_max_bytes: config.pull_max_bytes,
                            key: config.encryption_key.clone(),
                            ..CycleConfig::default()
                        },
                        retries: config.retries.max(1),
                        scratch_dir: path
                            .parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .unwrap_or(Path::new("."))
                            .to_path_buf(),
                    },
                    Arc::clone(&activity),
                ))
            }
            None => None,
        };
        let syncer = Arc::new(Syncer {
            engine,
            writer: Arc::clone(&writer),
            listener: Mutex::new(None),
            indexer: Arc::default(),
            sync_interval: config.sync_interval,
            notifier: Arc::clone(&notifier),
        });
        Ok(SyncClient {
            inner: Arc::new(Inner {
                path,
                writer,
                readers,
                rowids,
                limits,
                syncer,
                fts,
                background: Mutex::new(None),
                remote,
                notifier,
                writer_lock: Mutex::new(writer_lock.take()),
            }),
        })
    }

    /// Replaces the transport (tests inject faults around the real HTTP transport this way).
    /// Call it before anything else uses the client: it needs the only handle, background
    /// stopped.
    #[doc(hidden)]
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Result<SyncClient> {
        let only = || Error::new(ErrorKind::Internal, "with_transport needs the only handle");
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(only)?;
        let syncer = Arc::get_mut(&mut inner.syncer).ok_or_else(only)?;
        if let Some(e) = syncer.engine.take() {
            syncer.engine = Some(Engine::new(
                e.writer, transport, e.rowids, e.limits, e.config, e.activity,
            ));
        }
        Ok(self)
    }
}
