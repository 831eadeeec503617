//! One case of the HTTP convergence test: a fresh server database, 3–5 real `SyncClient`
//! databases on disk talking to it over HTTP through [`FaultyTransport`]s, a seeded sequence of
//! steps, then quiescence and the checks.
//!
//! Servers are shared between cases ([`Fleet`]): conflict policies are server-wide settings, so
//! there is one lazily started server per policy combination, and every case gets a new
//! database on it.

use crate::faults::{Carriers, FaultRates, FaultyTransport, HookAt, Trace, Uploads};
use crate::workload::{
    Mutation, SCHEMA, apply_mutation, describe_diff, dropped_journal_ids, journal_ids,
    random_mutations, read_only, sqldiff_or_none,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;
use session_sync_tests::{Server, dump, sqldiff};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_client::{
    ClientConfig, Durability, HttpTransport, RemoteConfig, Rows, Subscription, SyncClient,
};
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_server::{ServerConfig, catalog};

/// The server keeps this few log entries when it compacts (every 64 seqs), so long cases also
/// meet the server's own compaction.
const LOG_KEEP: i64 = 4;

const USER: &str = "fleet";
const MAX_DEVICES: usize = 5;

/// Policies of the notes table a case may run under (the other tables use the default).
const NOTES_POLICIES: [&str; 4] = [
    "last-push-wins",
    "first-write-wins",
    "newest-wins:updated_at",
    "reject",
];
/// Default policies.
const DEFAULT_POLICIES: [&str; 2] = ["last-push-wins", "first-write-wins"];

/// A running server with the fleet's user and device tokens.
struct Host {
    server: Server,
    /// Indexes into [`DEFAULT_POLICIES`] and [`NOTES_POLICIES`].
    policies: (usize, usize),
    schema_dir: PathBuf,
    catalog: Connection,
    data_dir: PathBuf,
    tokens: Vec<String>,
}

/// The servers of a test run, one per policy combination, started on first use.
pub struct Fleet {
    schema_dir: tempfile::TempDir,
    hosts: Vec<Option<Host>>,
    cases: usize,
}

impl Fleet {
    pub fn new() -> Fleet {
        let schema_dir = tempfile::tempdir().unwrap();
        std::fs::write(schema_dir.path().join("0001_init.sql"), SCHEMA).unwrap();
        Fleet {
            schema_dir,
            hosts: (0..NOTES_POLICIES.len() * DEFAULT_POLICIES.len())
                .map(|_| None)
                .collect(),
            cases: 0,
        }
    }

    fn host(&mut self, default: usize, notes: usize) -> &mut Host {
        let schema_dir = self.schema_dir.path().to_path_buf();
        self.hosts[default * NOTES_POLICIES.len() + notes].get_or_insert_with(|| {
            let server = Server::start_with(|cfg| configure(cfg, &schema_dir, (default, notes)));
            let data_dir = server.state.shared().config.data_dir.clone();
            let catalog = catalog::open(&data_dir).unwrap();
            catalog::add_user(&catalog, USER).unwrap();
            let tokens = (0..MAX_DEVICES)
                .map(|d| {
                    catalog::issue_token(&catalog, USER, &format!("dev{d}"))
                        .unwrap()
                        .token
                })
                .collect();
            Host {
                server,
                policies: (default, notes),
                schema_dir,
                catalog,
                data_dir,
                tokens,
            }
        })
    }
}

/// The server's request-body limit in this test: bulk writes are several times larger.
const BODY_LIMIT: usize = 16 * 1024;

/// The configuration of the server for one policy combination.
fn configure(cfg: &mut ServerConfig, schema_dir: &Path, (default, notes): (usize, usize)) {
    cfg.schema_dir = Some(schema_dir.to_path_buf());
    cfg.log_keep = LOG_KEEP;
    // Small request bodies: bulk writes (and larger batches) are uploaded in parts.
    cfg.max_body_bytes = BODY_LIMIT;
    cfg.policies = PolicySet::uniform(Policy::parse(DEFAULT_POLICIES[default]).unwrap())
        .with_table("notes", Policy::parse(NOTES_POLICIES[notes]).unwrap());
}

impl Host {
    /// Stops the server (gracefully) and starts it again on the same data and port.
    fn restart(&mut self) {
        let (schema_dir, policies) = (self.schema_dir.clone(), self.policies);
        self.server
            .restart_with(|cfg| configure(cfg, &schema_dir, policies));
    }
}

/// Knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct CaseOptions {
    pub steps: usize,
    /// Also compare every device with the server by `sqldiff --primarykey` (slower: a process
    /// per table and device).
    pub sqldiff: bool,
}

/// Totals over cases, to show what the cases exercised.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub cases: u64,
    pub writes: u64,
    pub syncs: u64,
    pub failed_syncs: u64,
    pub pushed_batches: u64,
    pub rejected_transactions: u64,
    pub bootstraps: u64,
    pub local_conflicts: u64,
    pub server_conflicts: u64,
    pub writes_during_requests: u64,
    pub reopens: u64,
    pub late_joins: u64,
    pub compactions: u64,
    pub server_restarts: u64,
    pub rejected_journal_rows: u64,
    pub bulk_writes: u64,
    pub upload_parts: u64,
    pub effect_ranges: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.writes += o.writes;
        self.syncs += o.syncs;
        self.failed_syncs += o.failed_syncs;
        self.pushed_batches += o.pushed_batches;
        self.rejected_transactions += o.rejected_transactions;
        self.bootstraps += o.bootstraps;
        self.local_conflicts += o.local_conflicts;
        self.server_conflicts += o.server_conflicts;
        self.writes_during_requests += o.writes_during_requests;
        self.reopens += o.reopens;
        self.late_joins += o.late_joins;
        self.compactions += o.compactions;
        self.server_restarts += o.server_restarts;
        self.rejected_journal_rows += o.rejected_journal_rows;
        self.bulk_writes += o.bulk_writes;
        self.upload_parts += o.upload_parts;
        self.effect_ranges += o.effect_ranges;
    }
}

/// What a device's writes left behind; shared with write hooks that run inside a request.
#[derive(Default)]
struct Ledger {
    /// Journal ids of writes whose `write` returned Ok.
    acknowledged: Vec<i64>,
    /// Writes that failed (none should).
    errors: Vec<String>,
}

struct Device {
    id: usize,
    path: PathBuf,
    /// `None` until the device joins.
    client: Option<(SyncClient, Arc<FaultyTransport>)>,
    ledger: Arc<Mutex<Ledger>>,
    writes: i64,
    /// Transports made so far (each reopen makes one), to seed each differently.
    incarnations: u64,
    config: ClientConfig,
    /// What the device's watch on [`WATCHED`] last delivered (an error as its message), and
    /// the watch (renewed with each client).
    watched: Arc<Mutex<Option<Result<Rows, String>>>>,
    watch: Option<Subscription>,
}

/// The query every device watches: once the devices settle, its last delivery must be what
/// the query reads then (local writes, pulls, rebases, restores and upgrades all re-run it).
const WATCHED: &str = "SELECT * FROM notes ORDER BY id";

/// A failed case: what went wrong, with the trace.
#[derive(Debug)]
pub struct Failure(pub String);

/// One case.
pub struct Case<'f> {
    seed: u64,
    rng: StdRng,
    host: &'f mut Host,
    db: String,
    server_db: PathBuf,
    /// Holds the device databases; removed when the case ends.
    _dir: tempfile::TempDir,
    devices: Vec<Device>,
    trace: Trace,
    carriers: Carriers,
    uploads: Uploads,
    rates: FaultRates,
    policies: String,
    /// Steps of this run (for the replay command).
    steps: usize,
    now: i64,
    stats: Stats,
}

impl Fleet {
    /// Sets up the case of `seed`: policies, a new server database, devices (some join later).
    pub fn case(&mut self, seed: u64) -> Case<'_> {
        let mut rng = StdRng::seed_from_u64(seed);
        let notes = match rng.random_range(0..10) {
            0..=4 => 0,
            5 | 6 => 1,
            7 | 8 => 2,
            _ => 3,
        };
        let default = usize::from(rng.random_range(0..4) == 0);
        let policies = format!(
            "default={} notes={}",
            DEFAULT_POLICIES[default], NOTES_POLICIES[notes]
        );
        self.cases += 1;
        let db = format!("case{}", self.cases);
        let host = self.host(default, notes);
        let id = catalog::create_database(&host.catalog, &db, USER).unwrap();
        let server_db = host.data_dir.join("dbs").join(format!("{id}.db"));
        let rates = FaultRates {
            drop_request: rng.random_range(0..=15),
            lose_answer: rng.random_range(0..=20),
        };
        let dir = tempfile::tempdir().unwrap();
        let n = rng.random_range(3..=MAX_DEVICES);
        let devices = (0..n)
            .map(|id| Device {
                id,
                path: dir.path().join(format!("dev{id}.db")),
                client: None,
                ledger: Arc::default(),
                writes: 0,
                incarnations: 0,
                watched: Arc::default(),
                watch: None,
                config: ClientConfig {
                    durability: Durability::Normal,
                    read_connections: 1,
                    // Every failure reaches the test; the next sync is the retry.
                    retries: 1,
                    http_timeout: Duration::from_secs(30),
                    // Small batches: a sync pushes several, and a rebase meets a batch in
                    // flight behind later pending entries.
                    push_max_bytes: rng.random_range(64..=2048),
                    // Small pages: bulk writes' effects come on their own, in ranges.
                    pull_max_bytes: rng.random_range(2048..=16384),
                    ..ClientConfig::default()
                },
            })
            .collect();
        let mut case = Case {
            seed,
            rng,
            host,
            db,
            server_db,
            _dir: dir,
            devices,
            trace: Trace::default(),
            carriers: Carriers::default(),
            uploads: Uploads::default(),
            rates,
            policies,
            steps: 0,
            now: 1,
            stats: Stats {
                cases: 1,
                ..Stats::default()
            },
        };
        case.note(format!(
            "seed {seed}: {n} devices, {}, faults {:?}",
            case.policies, case.rates
        ));
        let initial = case.rng.random_range(1..=n);
        for d in 0..initial {
            case.join(d);
        }
        case
    }
}

impl Case<'_> {
    fn note(&self, s: String) {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    fn failure(&self, what: String) -> Failure {
        let trace = self.trace.lock().unwrap_or_else(|p| p.into_inner());
        let skipped = trace.len().saturating_sub(80);
        let mut out = format!(
            "HTTP convergence seed {} failed: {what}\n{}\nlast steps (oldest first{}):\n",
            self.seed,
            self.policies,
            if skipped > 0 {
                format!(", {skipped} earlier omitted")
            } else {
                String::new()
            }
        );
        for line in &trace[skipped..] {
            let _ = writeln!(out, "  {line}");
        }
        let _ = write!(
            out,
            "replay with SYNC_HTTP_CONVERGENCE_SEED={} SYNC_HTTP_CONVERGENCE_STEPS={} \
             cargo test -p session-sync-tests --test convergence -- --nocapture",
            self.seed, self.steps
        );
        Failure(out)
    }

    fn remote(&self, d: usize) -> RemoteConfig {
        self.host.server.remote(&self.host.tokens[d], &self.db)
    }

    /// Wraps a freshly opened client's transport in a fault injector.
    fn attach(&mut self, d: usize, client: SyncClient) -> (SyncClient, Arc<FaultyTransport>) {
        let remote = self.remote(d);
        let dev = &mut self.devices[d];
        dev.incarnations += 1;
        let http = HttpTransport::new(&remote, dev.config.http_timeout).unwrap();
        let transport = Arc::new(FaultyTransport::new(
            http,
            format!("d{d}"),
            self.seed ^ ((d as u64 + 1) << 56) ^ (dev.incarnations << 40),
            Arc::clone(&self.trace),
            Arc::clone(&self.carriers),
            Arc::clone(&self.uploads),
        ));
        transport.set_rates(self.rates);
        let client = client
            .with_transport(Arc::clone(&transport) as Arc<dyn sync_client::Transport>)
            .unwrap();
        let watched = Arc::clone(&dev.watched);
        dev.watch = Some(
            client
                .watch(WATCHED, vec![], move |rows| {
                    *watched.lock().unwrap() = Some(rows.map_err(|e| e.to_string()));
                })
                .unwrap(),
        );
        (client, transport)
    }

    /// A new device: `init` from the server's current snapshot.
    fn join(&mut self, d: usize) {
        let client = SyncClient::init(
            &self.devices[d].path,
            self.remote(d),
            self.devices[d].config.clone(),
        )
        .unwrap_or_else(|e| panic!("seed {}: init of device {d} failed: {e}", self.seed));
        let attached = self.attach(d, client);
        let cursor = attached.0.status().unwrap().cursor;
        self.devices[d].client = Some(attached);
        self.note(format!("d{d} joins at seq {cursor}"));
    }

    /// Closes and reopens a device's database (its outbox, cursor and batch in flight must
    /// survive).
    fn reopen(&mut self, d: usize) {
        let Some((client, transport)) = self.devices[d].client.take() else {
            return;
        };
        transport.clear_hook();
        client.close();
        drop(client);
        let config = ClientConfig {
            remote: None,
            ..self.devices[d].config.clone()
        };
        let client = SyncClient::open(&self.devices[d].path, config).unwrap();
        let attached = self.attach(d, client);
        self.devices[d].client = Some(attached);
        self.stats.reopens += 1;
        self.note(format!("d{d} reopened"));
    }

    pub fn run(mut self, opts: CaseOptions) -> Result<Stats, Failure> {
        self.steps = opts.steps;
        for _ in 0..opts.steps {
            self.step()?;
        }
        self.quiesce()?;
        self.check(opts)?;
        Ok(self.stats.clone())
    }

    fn step(&mut self) -> Result<(), Failure> {
        self.now += 1;
        let d = self.rng.random_range(0..self.devices.len());
        if self.devices[d].client.is_none() {
            // A device joins late (from a snapshot of whatever the server has by now).
            if self.rng.random_range(0..4) == 0 {
                self.join(d);
                self.stats.late_joins += 1;
            }
            return Ok(());
        }
        match self.rng.random_range(0..100) {
            0..=44 => self.write(d),
            45..=84 => self.sync(d, None),
            85..=92 => {
                let at = if self.rng.random() {
                    HookAt::Push
                } else {
                    HookAt::Pull
                };
                self.sync(d, Some(at))
            }
            93..=95 => {
                self.compact();
                Ok(())
            }
            96 => {
                // Its log, idempotency records and conflict records must survive; its
                // snapshot cache and open databases do not.
                self.host.restart();
                self.stats.server_restarts += 1;
                self.note("server restarted".into());
                Ok(())
            }
            _ => {
                self.reopen(d);
                Ok(())
            }
        }
    }

    fn mutations(&mut self) -> Vec<Mutation> {
        let (mutations, bulk) = random_mutations(&mut self.rng);
        self.stats.bulk_writes += u64::from(bulk);
        mutations
    }

    /// A write transaction of 1–3 random changes and its journal row, run now (`None`) or
    /// handed to the transport to run during the next push or pull.
    fn write_job(&mut self, d: usize) -> (String, Box<dyn FnOnce() + Send>) {
        let mutations = self.mutations();
        let now = self.now;
        let dev = &mut self.devices[d];
        dev.writes += 1;
        let journal = (dev.id as i64 + 1) * 1_000_000 + dev.writes;
        let (n, id) = (dev.writes, dev.id as i64);
        let client = dev.client.as_ref().expect("joined").0.clone();
        let ledger = Arc::clone(&dev.ledger);
        let what = format!("write {mutations:?} journal {journal}");
        let job = Box::new(move || {
            let result = client.write(move |c| {
                for m in &mutations {
                    apply_mutation(c, m, now)?;
                }
                c.execute(
                    "INSERT INTO journal(id, device, n) VALUES (?1, ?2, ?3)",
                    rusqlite::params![journal, id, n],
                )?;
                Ok(())
            });
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => ledger.acknowledged.push(journal),
                Err(e) => ledger.errors.push(format!("journal {journal}: {e}")),
            }
        });
        (what, job)
    }

    fn write(&mut self, d: usize) -> Result<(), Failure> {
        let (what, job) = self.write_job(d);
        self.note(format!("d{d} {what}"));
        job();
        self.stats.writes += 1;
        self.check_ledger(d)
    }

    /// Every settled device's watch has delivered what its query reads now (bounded wait:
    /// deliveries come from the notifier thread just after the commits).
    fn check_watches(&self) -> Result<(), Failure> {
        for dev in &self.devices {
            let Some((client, _)) = &dev.client else {
                continue;
            };
            let fresh = client
                .read(|c| {
                    let mut stmt = c.prepare(WATCHED)?;
                    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
                    let n = columns.len();
                    let rows = stmt
                        .query_map([], |r| (0..n).map(|i| r.get(i)).collect())?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(Rows { columns, rows })
                })
                .map_err(|e| self.failure(format!("device {}: {e}", dev.id)))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let got = dev.watched.lock().unwrap().clone();
                if got.as_ref() == Some(&Ok(fresh.clone())) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(self.failure(format!(
                        "device {}: its watch of {WATCHED:?} last delivered {} rows ({:?}), the \
                         query reads {} rows ({:?})",
                        dev.id,
                        got.as_ref()
                            .and_then(|r| r.as_ref().ok())
                            .map_or(0, |r| r.rows.len()),
                        got.as_ref().map(|r| r.as_ref().map(|r| r.columns.clone())),
                        fresh.rows.len(),
                        fresh.columns,
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    fn check_ledger(&self, d: usize) -> Result<(), Failure> {
        let ledger = self.devices[d].ledger.lock().unwrap();
        match ledger.errors.first() {
            Some(e) => Err(self.failure(format!("device {d}: a local write failed: {e}"))),
            None => Ok(()),
        }
    }

    /// One `sync_now` with faults on; `hook` runs a local write while a request is out.
    fn sync(&mut self, d: usize, hook: Option<HookAt>) -> Result<(), Failure> {
        if let Some(at) = hook {
            let (what, job) = self.write_job(d);
            self.note(format!("d{d} sync, with a {what} during the next {at:?}"));
            let transport = &self.devices[d].client.as_ref().expect("joined").1;
            transport.set_hook(at, job);
        } else {
            self.note(format!("d{d} sync"));
        }
        let (client, transport) = self.devices[d].client.as_ref().expect("joined");
        let result = client.sync_now();
        if hook.is_some() {
            if transport.clear_hook() {
                self.note(format!(
                    "  d{d} (no such request: the write did not happen)"
                ));
            } else {
                self.stats.writes += 1;
                self.stats.writes_during_requests += 1;
            }
        }
        self.stats.syncs += 1;
        match result {
            Ok(r) => {
                self.note(format!(
                    "  d{d} synced: cursor {} pushed {} rejected {} pulled {} bootstrapped {} conflicts {} local / {} server",
                    r.cursor,
                    r.pushed_batches,
                    r.rejected_transactions,
                    r.pulled_entries,
                    r.bootstrapped,
                    r.new_conflicts,
                    r.server_conflicts
                ));
                self.stats.pushed_batches += r.pushed_batches as u64;
                self.stats.rejected_transactions += r.rejected_transactions as u64;
                self.stats.bootstraps += u64::from(r.bootstrapped);
                self.stats.local_conflicts += r.new_conflicts as u64;
                self.stats.server_conflicts += r.server_conflicts as u64;
            }
            Err(e) if e.kind() == sync_client::ErrorKind::Network => {
                self.stats.failed_syncs += 1;
                self.note(format!("  d{d} sync failed: {e}"));
            }
            Err(e) => {
                return Err(
                    self.failure(format!("device {d}: sync failed with {:?}: {e}", e.kind()))
                );
            }
        }
        let (parts, ranges) = transport.take_large_counts();
        self.stats.upload_parts += parts;
        self.stats.effect_ranges += ranges;
        if transport.unexpected_bootstraps() > 0 {
            return Err(self.failure(format!(
                "device {d} re-based on a snapshot without being told its cursor was out of \
                 the log: the engine found its database diverged from the server"
            )));
        }
        self.check_ledger(d)
    }

    /// Compacts the server's log the way the server does every 64 pushes, but now, keeping
    /// 0–3 entries: devices behind it must bootstrap from a snapshot.
    fn compact(&mut self) {
        let keep = self.rng.random_range(0..4);
        let conn = Connection::open(&self.server_db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let oldest = sync_core::server::pull::compact(&conn, keep).unwrap();
        self.stats.compactions += 1;
        self.note(format!(
            "server log compacted, keep {keep}: oldest seq {oldest}"
        ));
    }

    fn server_head(&self) -> i64 {
        let conn = read_only(&self.server_db);
        sync_core::server::bounds(&conn).unwrap().head_seq
    }

    /// Faults off, every device joined, sync until every outbox is empty and every cursor is
    /// the server's head.
    fn quiesce(&mut self) -> Result<(), Failure> {
        self.note("quiescence: faults off".into());
        for d in 0..self.devices.len() {
            if self.devices[d].client.is_none() {
                self.join(d);
            }
            let transport = &self.devices[d].client.as_ref().expect("joined").1;
            transport.set_rates(FaultRates::default());
        }
        for _round in 0..6 {
            for d in 0..self.devices.len() {
                for attempt in 0.. {
                    if attempt == 10 {
                        return Err(self.failure(format!(
                            "device {d} did not settle in 10 syncs without faults"
                        )));
                    }
                    self.sync(d, None)?;
                    let status = self.devices[d]
                        .client
                        .as_ref()
                        .expect("joined")
                        .0
                        .status()
                        .unwrap();
                    if status.pending_changesets == 0
                        && status.inflight_batch.is_none()
                        && status.cursor == self.server_head()
                    {
                        break;
                    }
                }
            }
            let head = self.server_head();
            let settled = self.devices.iter().all(|dev| {
                let status = dev.client.as_ref().expect("joined").0.status().unwrap();
                status.pending_changesets == 0
                    && status.inflight_batch.is_none()
                    && status.cursor == head
            });
            if settled {
                return Ok(());
            }
        }
        Err(self.failure("devices did not settle in 6 rounds without faults".into()))
    }

    fn check(&mut self, opts: CaseOptions) -> Result<(), Failure> {
        self.check_watches()?;
        for dev in &mut self.devices {
            if let Some((client, transport)) = dev.client.take() {
                transport.clear_hook();
                client.close();
            }
        }
        // Every device equals the server, row for row.
        let expected = dump(&self.server_db);
        for dev in &self.devices {
            let got = dump(&dev.path);
            if got != expected {
                let mut diff = describe_diff(&expected, &got);
                if let Some(out) = sqldiff_or_none(&self.server_db, &dev.path) {
                    diff.push_str(&format!("\nsqldiff --primarykey server device:\n{out}"));
                }
                return Err(
                    self.failure(format!("device {} differs from the server:{diff}", dev.id))
                );
            }
            if opts.sqldiff {
                let out = sqldiff(&self.server_db, &dev.path);
                if !out.is_empty() {
                    return Err(self.failure(format!(
                        "sqldiff finds device {} different from the server:\n{out}",
                        dev.id
                    )));
                }
            }
        }
        // No acknowledged write is missing: its journal row is on the server, or else inside a
        // transaction in the device's rejected queue — exactly one of the two. And nothing is
        // invented.
        let on_server = journal_ids(&self.server_db);
        let mut acknowledged_anywhere = HashSet::new();
        for dev in &self.devices {
            let dropped = dropped_journal_ids(&dev.path);
            self.stats.rejected_journal_rows += dropped.len() as u64;
            let ledger = dev.ledger.lock().unwrap();
            for id in &ledger.acknowledged {
                acknowledged_anywhere.insert(*id);
                match (on_server.contains(id), dropped.contains(id)) {
                    (true, false) | (false, true) => {}
                    (false, false) => {
                        return Err(self.failure(format!(
                            "device {}: the acknowledged write with journal id {id} is neither \
                             on the server nor in the rejected queue",
                            dev.id
                        )));
                    }
                    (true, true) => {
                        return Err(self.failure(format!(
                            "device {}: the write with journal id {id} is on the server and in \
                             the rejected queue",
                            dev.id
                        )));
                    }
                }
            }
        }
        if let Some(id) = on_server.difference(&acknowledged_anywhere).next() {
            return Err(self.failure(format!(
                "the server has journal id {id}, which no device acknowledged"
            )));
        }
        // No write was pushed twice: every journal row travelled in at most one batch the
        // server processed (a retry reuses the batch id; a new id would apply it again).
        let carriers = self.carriers.lock().unwrap();
        let mut twice: Vec<_> = carriers.iter().filter(|(_, b)| b.len() > 1).collect();
        twice.sort();
        if let Some((id, batches)) = twice.first() {
            let what = format!(
                "the write with journal id {id} reached the server in {} batches with different \
                 ids ({batches:?}): it was applied twice",
                batches.len()
            );
            drop(carriers);
            return Err(self.failure(what));
        }
        drop(carriers);
        // Journal rows are written once and never changed, so the server never meets a
        // conflict on one (an identical re-insert is a no-op, not a conflict).
        let (records, _) =
            sync_core::server::conflicts::conflicts(&read_only(&self.server_db), 0, 10_000)
                .unwrap();
        if let Some(r) = records.iter().find(|r| r.conflict.table == "journal") {
            return Err(self.failure(format!(
                "journal row {:?} met a {} conflict on the server (log seq {}, batch {} of {})",
                r.conflict.pk, r.conflict.kind, r.seq, r.batch_id, r.device
            )));
        }
        Ok(())
    }
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        for dev in &mut self.devices {
            if let Some((client, transport)) = dev.client.take() {
                transport.clear_hook();
                client.close();
            }
        }
    }
}
