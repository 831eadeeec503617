//! [`NodesTransport`]: the real HTTP transport to a node picked at random (seeded) for every
//! request — a client behind a load balancer with no affinity — which can also SIGKILL a node
//! while a push is on the wire.
//!
//! Uploads in parts stay on the node the batch id hashes to: a partial upload lives in that
//! node's data directory, not in the store.

use crate::cluster::{NODES, Nodes};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use sync_client::transport::{EventStream, SnapshotGot, SnapshotRequest};
use sync_client::{HttpTransport, RemoteConfig, Transport};
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::lineage::Tip;
use sync_core::protocol::pull::{LogPage, PullQuery};
use sync_core::protocol::push::{PushHeaders, PushResponse};
use sync_core::protocol::rowid::Lease;
use sync_core::protocol::upload::EffectQuery;

use crate::faults::Trace;

/// Every push answer any transport of a case received: (batch id, seq). The store must hold
/// each of these batches exactly once, at that seq.
pub type Answers = Arc<Mutex<Vec<(String, i64)>>>;

/// HTTP transports by (device, node URL), shared by a device's incarnations and the checks:
/// building one costs tens of milliseconds (reqwest loads the system's root certificates).
pub type HttpCache = Arc<Mutex<HashMap<(usize, String), Arc<HttpTransport>>>>;

/// Kills carried out during pushes: [the push failed (the kill cut it, or it met the dead
/// node), the push was answered first].
pub type KillOutcomes = Arc<Mutex<[u64; 2]>>;

/// A node kill planned for the next push: which node, after how long.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    /// `None`: the node serving the push.
    pub node: Option<usize>,
    /// Milliseconds after the push was sent.
    pub after_ms: u64,
}

/// The transport of one device incarnation.
pub struct NodesTransport {
    nodes: Arc<Nodes>,
    remote: RemoteConfig,
    timeout: Duration,
    /// The device's number (its key in `http`).
    device: usize,
    /// Transports per node URL (a node restarted on a new port gets a new one).
    http: HttpCache,
    rng: Mutex<StdRng>,
    kill: Mutex<Option<Kill>>,
    answers: Answers,
    kills: KillOutcomes,
    trace: Trace,
    name: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodesTransport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nodes: Arc<Nodes>,
        device: usize,
        http: HttpCache,
        remote: RemoteConfig,
        timeout: Duration,
        seed: u64,
        answers: Answers,
        kills: KillOutcomes,
        trace: Trace,
        name: String,
    ) -> NodesTransport {
        NodesTransport {
            nodes,
            remote,
            timeout,
            device,
            http,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            kill: Mutex::new(None),
            answers,
            kills,
            trace,
            name,
        }
    }

    /// Kills a node during the next push (replacing a plan not yet carried out).
    pub fn plan_kill(&self, kill: Kill) {
        *lock(&self.kill) = Some(kill);
    }

    /// Drops a kill plan no push carried out; true if there was one.
    pub fn clear_kill(&self) -> bool {
        lock(&self.kill).take().is_some()
    }

    fn note(&self, what: String) {
        lock(&self.trace).push(format!("  {} {what}", self.name));
    }

    /// The transport to node `i` (at its current port).
    fn node(&self, i: usize) -> Arc<HttpTransport> {
        http_to(
            &self.http,
            self.device,
            &self.nodes.base(i),
            &self.remote,
            self.timeout,
        )
    }

    fn pick(&self) -> usize {
        lock(&self.rng).random_range(0..NODES)
    }

    /// Runs a push on node `i`, carrying out a planned kill while it is on the wire, and
    /// records its answer.
    fn pushing(
        &self,
        i: usize,
        batch_id: &str,
        call: impl FnOnce(&HttpTransport) -> sync_client::Result<PushResponse>,
    ) -> sync_client::Result<PushResponse> {
        let http = self.node(i);
        let killer = lock(&self.kill).take().map(|k| {
            let victim = k.node.unwrap_or(i);
            let nodes = Arc::clone(&self.nodes);
            self.note(format!(
                "push {} via node {i}: node {victim} SIGKILLed {} ms after it was sent",
                short(batch_id),
                k.after_ms
            ));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(k.after_ms));
                nodes.kill(victim);
            })
        });
        let result = call(&http);
        if let Some(k) = killer {
            k.join().unwrap();
            lock(&self.kills)[usize::from(result.is_ok())] += 1;
        }
        match &result {
            Ok(r) => {
                lock(&self.answers).push((r.batch_id.clone(), r.seq));
                self.note(format!("  (node {i} answered push {})", short(batch_id)));
            }
            Err(e) => self.note(format!(
                "  (node {i}: push {} failed: {e})",
                short(batch_id)
            )),
        }
        result
    }
}

impl Transport for NodesTransport {
    fn info(&self) -> sync_client::Result<DatabaseInfo> {
        let i = self.pick();
        let result = self.node(i).info();
        if let Err(e) = &result {
            self.note(format!("info via node {i} failed: {e}"));
        }
        result
    }

    fn push(&self, headers: &PushHeaders, body: &[u8]) -> sync_client::Result<PushResponse> {
        let i = self.pick();
        self.pushing(i, &headers.batch_id, |t| t.push(headers, body))
    }

    fn upload_status(&self, batch_id: &str) -> sync_client::Result<Option<u64>> {
        // Uploads live in the store: any node takes any part.
        self.node(self.pick()).upload_status(batch_id)
    }

    fn upload_part(
        &self,
        batch_id: &str,
        offset: u64,
        total: u64,
        part: &[u8],
    ) -> sync_client::Result<u64> {
        self.node(self.pick())
            .upload_part(batch_id, offset, total, part)
    }

    fn push_uploaded(&self, headers: &PushHeaders) -> sync_client::Result<PushResponse> {
        let i = self.pick();
        self.pushing(i, &headers.batch_id, |t| t.push_uploaded(headers))
    }

    fn pull(&self, query: &PullQuery) -> sync_client::Result<LogPage> {
        self.node(self.pick()).pull(query)
    }

    fn effect(&self, seq: i64, query: &EffectQuery) -> sync_client::Result<Vec<u8>> {
        self.node(self.pick()).effect(seq, query)
    }

    fn snapshot(
        &self,
        dest: &Path,
        request: &SnapshotRequest<'_>,
    ) -> sync_client::Result<SnapshotGot> {
        self.node(self.pick()).snapshot(dest, request)
    }

    fn lease(&self, size: i64) -> sync_client::Result<Lease> {
        self.node(self.pick()).lease(size)
    }

    fn position(&self, seq: i64) -> sync_client::Result<Tip> {
        self.node(self.pick()).position(seq)
    }

    fn events(&self) -> sync_client::Result<Box<dyn EventStream>> {
        self.node(self.pick()).events()
    }
}

/// The cached transport of `device` to the node at `base`, made on first use.
pub fn http_to(
    cache: &HttpCache,
    device: usize,
    base: &str,
    remote: &RemoteConfig,
    timeout: Duration,
) -> Arc<HttpTransport> {
    let mut cache = lock(cache);
    let t = cache.entry((device, base.to_string())).or_insert_with(|| {
        let remote = RemoteConfig {
            url: base.to_string(),
            ..remote.clone()
        };
        Arc::new(HttpTransport::new(&remote, timeout).unwrap())
    });
    Arc::clone(t)
}

/// The first 8 characters of a batch id.
fn short(batch_id: &str) -> &str {
    &batch_id[..batch_id.len().min(8)]
}
