//! The load itself: the databases pushed to, one push, the warm-up and the measured phase over
//! one or more nodes.

use crate::notes::insert_notes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How the pushes to one database are spread over several nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Spread {
    /// Each database's pushes rotate over the nodes: every push lands on another node than
    /// the database's previous push (a load balancer without affinity; the worst case for the
    /// nodes' copies, which must catch up on every push).
    Push,
    /// Each database always goes to the same node (`database index % nodes`: a load balancer
    /// with affinity); the other nodes never see it.
    Database,
}

/// One database under load, with its token and what it was acknowledged.
pub(crate) struct Target {
    pub name: String,
    pub token: String,
    /// The next `notes` id (each push inserts fresh rows).
    pub next_id: AtomicU64,
    /// Acknowledged pushes, warm-up included.
    pub acks: AtomicU64,
    /// Pushes sent so far (the rotation over the nodes with [`Spread::Push`]).
    pub turn: AtomicU64,
    /// Its node with [`Spread::Database`].
    pub home: usize,
}

/// The nodes pushes go to, and how.
#[derive(Clone)]
pub(crate) struct Nodes {
    /// `http://ADDR` of each node.
    pub bases: Arc<Vec<String>>,
    pub spread: Spread,
    pub http: reqwest::Client,
    pub rows: usize,
    pub stamp: i64,
    pub errors: Arc<AtomicU64>,
}

impl Nodes {
    /// The node the next push to `t` goes to.
    fn pick(&self, t: &Target) -> &str {
        let n = self.bases.len();
        let i = match self.spread {
            Spread::Push => t.turn.fetch_add(1, Ordering::Relaxed) as usize % n,
            Spread::Database => t.home % n,
        };
        &self.bases[i]
    }

    /// The nodes a database is pushed on during the measured phase (each is warmed up).
    fn serving(&self, t: &Target) -> Vec<usize> {
        match self.spread {
            Spread::Push => (0..self.bases.len()).collect(),
            Spread::Database => vec![t.home % self.bases.len()],
        }
    }

    /// Warm-up, not measured: one push per database on every node that will serve it, node
    /// by node (the first creates the files; on the others the first push also brings the
    /// node's copy in). Returns the seconds it took.
    pub async fn warm_up(
        &self,
        targets: &[Arc<Target>],
        concurrency: usize,
    ) -> anyhow::Result<f64> {
        let warm = Instant::now();
        for node in 0..self.bases.len() {
            let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut tasks = Vec::new();
            for t in targets.iter().filter(|t| self.serving(t).contains(&node)) {
                let permit = sem.clone().acquire_owned().await?;
                let (t, me) = (t.clone(), self.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let base = me.bases[node].clone();
                    if !me.push(&base, &t, "warm").await {
                        me.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
        }
        Ok(warm.elapsed().as_secs_f64())
    }

    /// The measured phase: `concurrency` clients, each rotating over its share of the
    /// databases, one push at a time, for `seconds`. Returns every acknowledged push's
    /// latency in µs, sorted.
    pub async fn measure(
        &self,
        targets: &[Arc<Target>],
        concurrency: usize,
        seconds: u64,
    ) -> anyhow::Result<Vec<u32>> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let mine: Vec<Arc<Target>> = targets
                .iter()
                .skip(w % targets.len())
                .step_by(concurrency)
                .cloned()
                .collect();
            let mine = if mine.is_empty() {
                vec![targets[w % targets.len()].clone()]
            } else {
                mine
            };
            let (me, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(64 * 1024);
                let mut i = 0usize;
                let who = format!("w{w}");
                while !stop.load(Ordering::Relaxed) {
                    let t = &mine[i % mine.len()];
                    i += 1;
                    let base = me.pick(t).to_string();
                    let begun = Instant::now();
                    if me.push(&base, t, &who).await {
                        lat.push(begun.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        me.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await?);
        }
        all.sort_unstable();
        Ok(all)
    }

    /// One push of a fresh batch to `base`; counts the ack. Returns whether it was
    /// acknowledged.
    async fn push(&self, base: &str, t: &Target, who: &str) -> bool {
        let id = t.next_id.fetch_add(self.rows as u64, Ordering::Relaxed) as i64;
        let body = insert_notes(id, self.rows, self.stamp);
        let sent = self
            .http
            .post(format!("{base}/v1/databases/{}/push", t.name))
            .bearer_auth(&t.token)
            .header("content-type", "application/vnd.sqlite-changeset")
            .header("sync-batch-id", format!("{who}-{id}"))
            .header("sync-cursor", "0")
            .header("sync-schema-version", "1")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                if r.bytes().await.is_ok() {
                    t.acks.fetch_add(1, Ordering::Relaxed);
                    true
                } else {
                    false
                }
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                eprintln!("push to {} on {base} failed: {status} {text}", t.name);
                false
            }
            Err(e) => {
                eprintln!("push to {} on {base} failed: {e}", t.name);
                false
            }
        }
    }
}
