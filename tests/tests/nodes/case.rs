//! The steps of a nodes-world case and its quiescence (the checks are in `checks`).

use crate::cluster::NODES;
use crate::faults::{FaultRates, FaultyTransport, HookAt};
use crate::transport::{Kill, NodesTransport, http_to};
use crate::workload::{apply_mutation, random_mutations};
use crate::world::{Case, Failure, Stats};
use rand::RngExt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use sync_client::{HttpTransport, RemoteConfig, SyncClient, Transport};
use sync_core::protocol::error::ErrorCode;

impl Case {
    pub(crate) fn note(&self, s: String) {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    pub(crate) fn failure(&self, what: String) -> Failure {
        let trace = self.trace.lock().unwrap_or_else(|p| p.into_inner());
        let skipped = trace.len().saturating_sub(80);
        let mut out = format!(
            "nodes convergence seed {} failed: {what}\n{}\nlast steps (oldest first, {skipped} \
             earlier omitted):\n",
            self.seed, self.policies
        );
        for line in &trace[skipped..] {
            let _ = writeln!(out, "  {line}");
        }
        let _ = write!(
            out,
            "replay with SYNC_NODES_CONVERGENCE_SEED={} SYNC_NODES_CONVERGENCE_STEPS={} \
             cargo test -p session-sync-tests --test nodes -- --nocapture",
            self.seed, self.steps
        );
        Failure(out)
    }

    fn remote(&self, d: usize, node: usize) -> RemoteConfig {
        RemoteConfig {
            url: self.nodes.base(node),
            token: self.tokens[d].clone(),
            database: self.db.clone(),
        }
    }

    fn attach(&mut self, d: usize, client: SyncClient) -> crate::world::Client {
        let remote = self.remote(d, 0);
        let dev = &mut self.devices[d];
        dev.incarnations += 1;
        let seed = self.seed ^ ((d as u64 + 1) << 56) ^ (dev.incarnations << 40);
        let nodes = NodesTransport::new(
            Arc::clone(&self.nodes),
            d,
            Arc::clone(&self.http),
            remote,
            dev.config.http_timeout,
            seed ^ 0x6e6f_6465,
            Arc::clone(&self.answers),
            Arc::clone(&self.kills),
            Arc::clone(&self.trace),
            format!("d{d}"),
        );
        let transport = Arc::new(FaultyTransport::new(
            nodes,
            format!("d{d}"),
            seed,
            Arc::clone(&self.trace),
            Arc::clone(&self.carriers),
            Arc::clone(&self.uploads),
        ));
        transport.set_rates(self.rates);
        let client = client
            .with_transport(Arc::clone(&transport) as Arc<dyn Transport>)
            .unwrap();
        (client, transport)
    }

    /// A new device: `init` from a snapshot of a random node that is up (retried: the node
    /// may be killed meanwhile, PostgreSQL may be restarting).
    pub(crate) fn join(&mut self, d: usize) -> Result<(), Failure> {
        let mut last = String::new();
        for _ in 0..100 {
            let down = self.nodes.down();
            let up: Vec<usize> = (0..NODES).filter(|i| !down.contains(i)).collect();
            let node = up[self.rng.random_range(0..up.len())];
            let _ = std::fs::remove_file(&self.devices[d].path);
            match SyncClient::init(
                &self.devices[d].path,
                self.remote(d, node),
                self.devices[d].config.clone(),
            ) {
                Ok(client) => {
                    let attached = self.attach(d, client);
                    let cursor = attached.0.status().unwrap().cursor;
                    self.devices[d].client = Some(attached);
                    self.note(format!("d{d} joins at seq {cursor} via node {node}"));
                    return Ok(());
                }
                Err(e) if e.kind() == sync_client::ErrorKind::Network => {
                    last = e.to_string();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(self.failure(format!("init of device {d} failed: {e}"))),
            }
        }
        Err(self.failure(format!("device {d} could not join: {last}")))
    }

    fn reopen(&mut self, d: usize) -> Result<(), Failure> {
        let Some((client, transport)) = self.devices[d].client.take() else {
            return Ok(());
        };
        transport.clear_hook();
        client.close();
        drop(client);
        let config = sync_client::ClientConfig {
            remote: None,
            ..self.devices[d].config.clone()
        };
        // The writer lock is an flock: a process another thread forks meanwhile (pg_ctl, psql
        // or a node) shares the lock file's descriptor until it execs, and with it the lock.
        // So InUse right after a close can be that fork's moment; it passes in milliseconds.
        let mut opened = SyncClient::open(&self.devices[d].path, config.clone());
        for _ in 0..100 {
            match &opened {
                Err(e) if e.kind() == sync_client::ErrorKind::InUse => {
                    std::thread::sleep(Duration::from_millis(10));
                    opened = SyncClient::open(&self.devices[d].path, config.clone());
                }
                _ => break,
            }
        }
        let client =
            opened.map_err(|e| self.failure(format!("device {d} did not open again: {e}")))?;
        let attached = self.attach(d, client);
        self.devices[d].client = Some(attached);
        self.stats.reopens += 1;
        self.note(format!("d{d} reopened"));
        Ok(())
    }

    pub fn run(mut self) -> Result<Stats, Failure> {
        for step in 0..self.steps {
            if self.pg_restart_at == Some(step) {
                self.restart_pg();
            }
            self.step()?;
        }
        self.quiesce()?;
        self.check()?;
        let kills = *self.kills.lock().unwrap();
        self.stats.kills_cutting_a_push = kills[0];
        self.stats.kills_after_an_answer = kills[1];
        if self.print_trace {
            println!("{}", self.trace.lock().unwrap().join("\n"));
        }

        Ok(self.stats.clone())
    }

    /// `pg_ctl restart -m immediate` in the background: the steps go on meanwhile, and the
    /// nodes answer 503 until it is back.
    fn restart_pg(&mut self) {
        let pg = Arc::clone(&self.pg);
        self.note("PostgreSQL restart (immediate) begins".into());
        self.stats.pg_restarts += 1;
        self.pg_restarting = Some(std::thread::spawn(move || pg.restart()));
    }

    /// Waits for a PostgreSQL restart under way.
    fn pg_back(&mut self) {
        if let Some(t) = self.pg_restarting.take() {
            t.join().expect("PostgreSQL restarted");
            self.note("PostgreSQL is back".into());
        }
    }

    fn restart_node(&mut self, i: usize) -> Result<(), Failure> {
        self.pg_back();
        let wipe = self.rng.random_range(0..3) == 0;
        self.stats.wiped_restarts += u64::from(wipe);
        self.nodes
            .restart(i, wipe)
            .map_err(|e| self.failure(format!("node {i} did not start again: {e}")))?;
        self.note(format!(
            "node {i} started again{} at {}",
            if wipe { " with an empty cache" } else { "" },
            self.nodes.base(i)
        ));
        Ok(())
    }

    fn step(&mut self) -> Result<(), Failure> {
        self.now += 1;
        if let Some(c) = self.nodes.crashed().first() {
            return Err(self.failure(format!("a node crashed: {c}")));
        }
        // A killed node comes back after a few steps (not while PostgreSQL is restarting).
        if self.pg_restarting.as_ref().is_none_or(|t| t.is_finished()) {
            for i in self.nodes.down() {
                if self.rng.random_range(0..3) == 0 {
                    self.restart_node(i)?;
                }
            }
        }
        let d = self.rng.random_range(0..self.devices.len());
        if self.devices[d].client.is_none() {
            if self.rng.random_range(0..4) == 0 {
                self.join(d)?;
            }
            return Ok(());
        }
        match self.rng.random_range(0..100) {
            0..=44 => self.write(d),
            45..=79 => self.sync(d, None, None),
            80..=87 => {
                let at = if self.rng.random() {
                    HookAt::Push
                } else {
                    HookAt::Pull
                };
                self.sync(d, Some(at), None)
            }
            88..=96 => {
                let kill = Kill {
                    node: (self.rng.random_range(0..3) == 0)
                        .then(|| self.rng.random_range(0..NODES)),
                    after_ms: self.rng.random_range(0..10),
                };
                self.sync(d, None, Some(kill))
            }
            _ => self.reopen(d),
        }
    }

    fn write_job(&mut self, d: usize) -> (String, Box<dyn FnOnce() + Send>) {
        let (mutations, bulk) = random_mutations(&mut self.rng);
        self.stats.bulk_writes += u64::from(bulk);
        let now = self.now;
        let dev = &mut self.devices[d];
        dev.writes += 1;
        let journal = (d as i64 + 1) * 1_000_000 + dev.writes;
        let n = dev.writes;
        let client = dev.client.as_ref().expect("joined").0.clone();
        let acknowledged = Arc::clone(&dev.acknowledged);
        let what = format!("write {mutations:?} journal {journal}");
        let job = Box::new(move || {
            let result = client.write(move |c| {
                for m in &mutations {
                    apply_mutation(c, m, now)?;
                }
                c.execute(
                    "INSERT INTO journal(id, device, n) VALUES (?1, ?2, ?3)",
                    rusqlite::params![journal, d as i64, n],
                )?;
                Ok(())
            });
            acknowledged.lock().unwrap_or_else(|p| p.into_inner()).push(
                result
                    .map(|()| journal)
                    .map_err(|e| format!("journal {journal}: {e}")),
            );
        });
        (what, job)
    }

    fn write(&mut self, d: usize) -> Result<(), Failure> {
        let (what, job) = self.write_job(d);
        self.note(format!("d{d} {what}"));
        job();
        self.stats.writes += 1;
        self.check_writes(d)
    }

    fn check_writes(&self, d: usize) -> Result<(), Failure> {
        let acked = self.devices[d].acknowledged.lock().unwrap();
        match acked.iter().find_map(|r| r.as_ref().err()) {
            Some(e) => Err(self.failure(format!("device {d}: a local write failed: {e}"))),
            None => Ok(()),
        }
    }

    /// One `sync_now`; `hook` runs a local write while a request is out, `kill` SIGKILLs a
    /// node during the next push.
    fn sync(&mut self, d: usize, hook: Option<HookAt>, kill: Option<Kill>) -> Result<(), Failure> {
        if let Some(at) = hook {
            let (what, job) = self.write_job(d);
            self.note(format!("d{d} sync, with a {what} during the next {at:?}"));
            let transport = &self.devices[d].client.as_ref().expect("joined").1;
            transport.set_hook(at, job);
        } else if let Some(k) = kill {
            self.note(format!(
                "d{d} sync, killing a node during the next push: {k:?}"
            ));
            self.devices[d]
                .client
                .as_ref()
                .expect("joined")
                .1
                .inner()
                .plan_kill(k);
        } else {
            self.note(format!("d{d} sync"));
        }
        let (client, transport) = self.devices[d].client.as_ref().expect("joined");
        let result = client.sync_now();
        if hook.is_some() && !transport.clear_hook() {
            self.stats.writes += 1;
        }
        if kill.is_some() && !transport.inner().clear_kill() {
            self.stats.node_kills += 1;
        }
        self.stats.syncs += 1;
        match result {
            Ok(r) => {
                self.note(format!(
                    "  d{d} synced: cursor {} pushed {} pulled {} bootstrapped {}",
                    r.cursor, r.pushed_batches, r.pulled_entries, r.bootstrapped
                ));
                self.stats.pushed_batches += r.pushed_batches as u64;
                self.stats.bootstraps += u64::from(r.bootstrapped);
            }
            Err(e) if e.kind() == sync_client::ErrorKind::Network => {
                self.stats.failed_syncs += 1;
                self.note(format!("  d{d} sync failed: {e}"));
            }
            Err(e)
                if e.server_body()
                    .is_some_and(|b| b.code == ErrorCode::PayloadTooLarge) =>
            {
                // A client learns the body limit from `info` at its first sync; when that
                // request meets a dead node it pushes with the default limit, and a large
                // batch is refused 413 (kind Internal, not retried in that sync). The next
                // sync asks again and uploads the batch in parts — quiescence checks that it
                // does. (Reported: sync-client could re-ask and upload in the same sync.)
                self.stats.failed_syncs += 1;
                self.stats.limit_unknown_413 += 1;
                self.note(format!("  d{d} sync failed, body limit unknown: {e}"));
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
        self.check_writes(d)
    }

    /// A plain HTTP transport to node `i` with device 0's token.
    pub(crate) fn http(&self, i: usize) -> Arc<HttpTransport> {
        let remote = self.remote(0, i);
        http_to(&self.http, 0, &remote.url, &remote, Duration::from_secs(30))
    }

    /// The head seq as node `i` answers it.
    pub(crate) fn head(&self, i: usize) -> Result<i64, Failure> {
        self.http(i)
            .info()
            .map(|info| info.head_seq)
            .map_err(|e| self.failure(format!("node {i} did not answer info: {e}")))
    }

    /// PostgreSQL back, every node up, faults off, every device joined; then sync until every
    /// outbox is empty and every cursor is the head.
    fn quiesce(&mut self) -> Result<(), Failure> {
        self.pg_back();
        if let Some(c) = self.nodes.crashed().first() {
            return Err(self.failure(format!("a node crashed: {c}")));
        }
        for i in self.nodes.down() {
            self.restart_node(i)?;
        }
        self.note("quiescence: faults off, every node up".into());
        for d in 0..self.devices.len() {
            if self.devices[d].client.is_none() {
                self.join(d)?;
            }
            let transport = &self.devices[d].client.as_ref().expect("joined").1;
            transport.set_rates(FaultRates::default());
            transport.inner().clear_kill();
        }
        for _round in 0..6 {
            for d in 0..self.devices.len() {
                for attempt in 0.. {
                    if attempt == 10 {
                        return Err(self.failure(format!(
                            "device {d} did not settle in 10 syncs without faults"
                        )));
                    }
                    self.sync(d, None, None)?;
                    let status = self.devices[d].client.as_ref().unwrap().0.status().unwrap();
                    let node = self.rng.random_range(0..NODES);
                    let head = self.head(node)?;
                    if status.pending_changesets == 0
                        && status.inflight_batch.is_none()
                        && status.cursor == head
                    {
                        break;
                    }
                }
            }
            let node = self.rng.random_range(0..NODES);
            let head = self.head(node)?;
            let settled = self.devices.iter().all(|dev| {
                let status = dev.client.as_ref().unwrap().0.status().unwrap();
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
}
