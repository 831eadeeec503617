//! One case of the nodes world: a new database on the three nodes of its policy combination,
//! 3–5 real `SyncClient` databases whose every request goes to a random node, seeded steps
//! (writes, syncs, writes during a request, reopens, a node SIGKILLed during a push and
//! started again, sometimes a PostgreSQL restart), then quiescence and the checks.

use crate::cluster::Nodes;
use crate::faults::{Carriers, FaultRates, FaultyTransport, Trace, Uploads};
use crate::transport::{Answers, HttpCache, KillOutcomes, NodesTransport};
use crate::workload::SCHEMA;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use sync_client::{ClientConfig, Durability, SyncClient};
use sync_testkit::pg::PgCluster;

const USER: &str = "fleet";
const MAX_DEVICES: usize = 5;
const NOTES_POLICIES: [&str; 4] = [
    "last-push-wins",
    "first-write-wins",
    "newest-wins:updated_at",
    "reject",
];
const DEFAULT_POLICIES: [&str; 2] = ["last-push-wins", "first-write-wins"];
/// Log entries kept at compaction (every 64 seqs): long cases meet it.
const LOG_KEEP: i64 = 4;
/// The nodes' request-body limit: bulk writes are uploaded in parts.
const BODY_LIMIT: usize = 16 * 1024;

/// A device's client and its transport.
pub type Client = (SyncClient, Arc<FaultyTransport<NodesTransport>>);

/// The PostgreSQL cluster and the nodes of a run, one set per policy combination, started
/// on first use.
pub struct Fleet {
    pg: Arc<PgCluster>,
    schema_dir: tempfile::TempDir,
    hosts: Vec<Option<Arc<Nodes>>>,
    cases: usize,
}

/// Knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct CaseOptions {
    pub steps: usize,
    /// The cases whose seed is 7 modulo this restart PostgreSQL (at a random step).
    pub pg_restart_every: u64,
    /// Print the case's steps when it passes too (a replay).
    pub print_trace: bool,
}

/// Totals over cases.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub cases: u64,
    pub writes: u64,
    pub syncs: u64,
    pub failed_syncs: u64,
    pub limit_unknown_413: u64,
    pub pushed_batches: u64,
    pub acknowledged_batches: u64,
    pub bootstraps: u64,
    pub node_kills: u64,
    pub kills_cutting_a_push: u64,
    pub kills_after_an_answer: u64,
    pub wiped_restarts: u64,
    pub pg_restarts: u64,
    pub reopens: u64,
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
        self.limit_unknown_413 += o.limit_unknown_413;
        self.pushed_batches += o.pushed_batches;
        self.acknowledged_batches += o.acknowledged_batches;
        self.bootstraps += o.bootstraps;
        self.node_kills += o.node_kills;
        self.kills_cutting_a_push += o.kills_cutting_a_push;
        self.kills_after_an_answer += o.kills_after_an_answer;
        self.wiped_restarts += o.wiped_restarts;
        self.pg_restarts += o.pg_restarts;
        self.reopens += o.reopens;
        self.bulk_writes += o.bulk_writes;
        self.upload_parts += o.upload_parts;
        self.effect_ranges += o.effect_ranges;
    }
}

impl Fleet {
    pub fn new() -> Fleet {
        let schema_dir = tempfile::tempdir().unwrap();
        std::fs::write(schema_dir.path().join("0001_init.sql"), SCHEMA).unwrap();
        let pg = PgCluster::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        Fleet {
            pg: Arc::new(pg),
            schema_dir,
            hosts: (0..NOTES_POLICIES.len() * DEFAULT_POLICIES.len())
                .map(|_| None)
                .collect(),
            cases: 0,
        }
    }

    fn nodes(&mut self, default: usize, notes: usize) -> Arc<Nodes> {
        let (pg, schema) = (&self.pg, self.schema_dir.path());
        let slot = &mut self.hosts[default * NOTES_POLICIES.len() + notes];
        Arc::clone(slot.get_or_insert_with(|| {
            let args = [
                "--no-demo".to_string(),
                "--schema".into(),
                schema.display().to_string(),
                "--policy".into(),
                format!("default={}", DEFAULT_POLICIES[default]),
                "--policy".into(),
                format!("notes={}", NOTES_POLICIES[notes]),
                "--log-keep".into(),
                LOG_KEEP.to_string(),
                "--max-body-bytes".into(),
                BODY_LIMIT.to_string(),
                "--log".into(),
                "warn".into(),
            ];
            Arc::new(Nodes::start(pg, args.to_vec()))
        }))
    }

    /// Sets up the case of `seed`.
    pub fn case(&mut self, seed: u64, opts: CaseOptions) -> Case {
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
        let nodes = self.nodes(default, notes);
        let n = rng.random_range(3..=MAX_DEVICES);
        let names: Vec<String> = (0..n).map(|d| format!("dev{d}")).collect();
        let (db_id, tokens) = nodes.setup(USER, &db, &names);
        let rates = FaultRates {
            drop_request: rng.random_range(0..=10),
            lose_answer: rng.random_range(0..=15),
        };
        let restart_step = rng.random_range(0..opts.steps.max(1));
        let every = opts.pg_restart_every.max(1);
        let pg_restart_at = (seed % every == 7 % every).then_some(restart_step);
        let dir = tempfile::tempdir().unwrap();
        let devices = (0..n)
            .map(|id| Device {
                path: dir.path().join(format!("dev{id}.db")),
                client: None,
                acknowledged: Arc::default(),
                writes: 0,
                incarnations: 0,
                config: ClientConfig {
                    durability: Durability::Normal,
                    read_connections: 1,
                    retries: 1,
                    http_timeout: Duration::from_secs(30),
                    push_max_bytes: rng.random_range(64..=2048),
                    pull_max_bytes: rng.random_range(2048..=16384),
                    ..ClientConfig::default()
                },
            })
            .collect();
        let mut case = Case {
            seed,
            rng,
            pg: Arc::clone(&self.pg),
            nodes,
            db,
            db_id,
            tokens,
            _dir: dir,
            devices,
            trace: Trace::default(),
            carriers: Carriers::default(),
            uploads: Uploads::default(),
            answers: Answers::default(),
            http: HttpCache::default(),
            kills: KillOutcomes::default(),
            rates,
            policies,
            steps: opts.steps,
            print_trace: opts.print_trace,
            pg_restart_at,
            pg_restarting: None,
            now: 1,
            stats: Stats {
                cases: 1,
                ..Stats::default()
            },
        };
        case.note(format!(
            "seed {seed}: {n} devices, {}, faults {:?}, PostgreSQL restart at step {:?}",
            case.policies, case.rates, case.pg_restart_at
        ));
        let initial = case.rng.random_range(1..=n);
        for d in 0..initial {
            if let Err(f) = case.join(d) {
                panic!("{}", f.0);
            }
        }
        case
    }
}

pub(crate) struct Device {
    pub(crate) path: PathBuf,
    pub(crate) client: Option<Client>,
    /// Journal ids of writes whose `write` returned Ok (or the error of one that failed).
    pub(crate) acknowledged: Arc<Mutex<Vec<Result<i64, String>>>>,
    pub(crate) writes: i64,
    pub(crate) incarnations: u64,
    pub(crate) config: ClientConfig,
}

/// A failed case: what went wrong, with the trace.
#[derive(Debug)]
pub struct Failure(pub String);

/// One case.
pub struct Case {
    pub(crate) seed: u64,
    pub(crate) rng: StdRng,
    pub(crate) pg: Arc<PgCluster>,
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) db: String,
    pub(crate) db_id: i64,
    pub(crate) tokens: Vec<String>,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) devices: Vec<Device>,
    pub(crate) trace: Trace,
    pub(crate) carriers: Carriers,
    pub(crate) uploads: Uploads,
    pub(crate) answers: Answers,
    pub(crate) http: HttpCache,
    pub(crate) kills: KillOutcomes,
    pub(crate) rates: FaultRates,
    pub(crate) policies: String,
    pub(crate) steps: usize,
    pub(crate) print_trace: bool,
    pub(crate) pg_restart_at: Option<usize>,
    /// The PostgreSQL restart under way (in the background: steps go on while it is down).
    pub(crate) pg_restarting: Option<JoinHandle<()>>,
    pub(crate) now: i64,
    pub(crate) stats: Stats,
}
