//! A [`Transport`] that wraps the real [`HttpTransport`] and injects the failures a phone on a
//! bad network meets: a request that never leaves, an answer lost *after* the server acted on
//! the request, and a local write landing while a request is on the wire.
//!
//! Decisions come from a seeded generator, and the sync engine calls the transport from the
//! test's own thread (no background sync), so a case replays exactly from its seed.
//!
//! It also watches for a bootstrap nobody asked for: the engine re-bases on a snapshot when an
//! integrate finds the local database diverged, which would hide the very bug this test hunts.
//! A snapshot requested without a preceding `cursor_too_old`/`cursor_ahead` answer is recorded
//! as a divergence.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use sync_client::transport::EventStream;
use sync_client::{Error, ErrorKind, HttpTransport, Transport};
use sync_core::engine::changeset::Changeset;
use sync_core::engine::decode::Op;
use sync_core::engine::value::Value;
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::info::DatabaseInfo;
use sync_core::protocol::pull::LogPage;
use sync_core::protocol::pull::PullQuery;
use sync_core::protocol::push::PushHeaders;
use sync_core::protocol::push::PushResponse;
use sync_core::protocol::rowid::Lease;

/// Percent chances of each fault, per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    /// A request that is never sent.
    pub drop_request: u32,
    /// A push, pull or snapshot whose answer is lost after the server produced it.
    pub lose_answer: u32,
}

/// The step log shared by the world and every transport of a case (printed on failure).
pub type Trace = Arc<Mutex<Vec<String>>>;

/// For every journal id, the ids of the batches that carried its row and that the server
/// processed (answered, whether or not the answer reached the client). Shared by the
/// transports of a case. More than one batch id for a journal row means the same write was
/// pushed again under a new id — applied twice, which DESIGN invariant 2 forbids (the server's
/// idempotency only catches a retry under the *same* id).
pub type Carriers = Arc<Mutex<HashMap<i64, BTreeSet<String>>>>;

/// Batch bodies uploaded in parts, assembled as the parts went by (by batch id, over every
/// transport of a case: an upload a closed client started is finished by its next
/// incarnation).
pub type Uploads = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A local write to run while a request is on the wire.
pub type Hook = Box<dyn FnOnce() + Send>;

/// Which request a [`Hook`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAt {
    /// After the server answered a push, before the engine sees the answer.
    Push,
    /// After the server answered a pull, before the engine integrates it.
    Pull,
}

struct State {
    rng: StdRng,
    rates: FaultRates,
    /// Fates of the next requests, used before the rates (scripted scenarios).
    script: VecDeque<Fate>,
    hook: Option<(HookAt, Hook)>,
    /// A pull was answered `cursor_too_old`/`cursor_ahead` and no pull succeeded since.
    bootstrap_expected: bool,
    /// Snapshots requested while no bootstrap was expected.
    unexpected_bootstraps: usize,
}

/// The fault-injecting transport of one device, around the real HTTP transport (or, in the
/// nodes world, around a transport that picks one of several nodes per request).
pub struct FaultyTransport<T: Transport = HttpTransport> {
    inner: T,
    name: String,
    trace: Trace,
    carriers: Carriers,
    state: Mutex<State>,
    /// Parts of batches uploaded through this transport, assembled: what a pushed upload
    /// carried.
    uploads: Uploads,
    /// Upload parts and effect ranges sent since the last [`FaultyTransport::take_large_counts`].
    large: Mutex<(u64, u64)>,
}

/// What happens to one push, pull or snapshot request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Sent and answered.
    Deliver,
    /// Never sent.
    Drop,
    /// Sent and acted on by the server; the answer is lost.
    LoseAnswer,
}

impl<T: Transport> FaultyTransport<T> {
    pub fn new(
        inner: T,
        name: String,
        seed: u64,
        trace: Trace,
        carriers: Carriers,
        uploads: Uploads,
    ) -> FaultyTransport<T> {
        FaultyTransport {
            inner,
            name,
            trace,
            carriers,
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                rates: FaultRates::default(),
                script: VecDeque::new(),
                hook: None,
                bootstrap_expected: false,
                unexpected_bootstraps: 0,
            }),
            uploads,
            large: Mutex::default(),
        }
    }

    /// The transport it wraps.
    #[allow(dead_code)] // the nodes world's
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Upload parts and effect ranges sent since the last call.
    pub fn take_large_counts(&self) -> (u64, u64) {
        std::mem::take(&mut *self.large.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs one request of the large-transaction routes under its fate.
    fn faulty<R>(
        &self,
        what: String,
        call: impl FnOnce() -> sync_client::Result<R>,
    ) -> sync_client::Result<R> {
        let fate = self.fate();
        if let Fate::Drop = fate {
            self.note(format!("{what} dropped"));
            return Err(injected("request dropped"));
        }
        let result = call();
        self.note(match &result {
            Ok(_) if matches!(fate, Fate::LoseAnswer) => format!("{what} (answer lost)"),
            Ok(_) => what,
            Err(e) => format!("{what} failed: {e}"),
        });
        match fate {
            Fate::LoseAnswer if result.is_ok() => Err(injected("answer lost")),
            _ => result,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the fault rates (all zero: faults off).
    pub fn set_rates(&self, rates: FaultRates) {
        self.state().rates = rates;
    }

    /// The fates of the next push, pull and snapshot requests, in order; after them the rates
    /// decide again.
    #[allow(dead_code)] // the scenarios' (the nodes world has none)
    pub fn script(&self, fates: impl IntoIterator<Item = Fate>) {
        self.state().script.extend(fates);
    }

    /// Runs `hook` during the next request of kind `at` (replacing any hook not yet run).
    pub fn set_hook(&self, at: HookAt, hook: Hook) {
        self.state().hook = Some((at, hook));
    }

    /// Removes a hook that did not run (the engine made no such request); true if one was
    /// pending. Also breaks the reference cycle a hook holding the client would make.
    pub fn clear_hook(&self) -> bool {
        self.state().hook.take().is_some()
    }

    /// Snapshots requested that no `cursor_too_old`/`cursor_ahead` explained.
    pub fn unexpected_bootstraps(&self) -> usize {
        self.state().unexpected_bootstraps
    }

    fn note(&self, what: String) {
        self.trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("  {} {what}", self.name));
    }

    fn fate(&self) -> Fate {
        let mut s = self.state();
        if let Some(fate) = s.script.pop_front() {
            return fate;
        }
        let rates = s.rates;
        let roll = s.rng.random_range(0..100);
        if roll < rates.drop_request {
            Fate::Drop
        } else if roll < rates.drop_request + rates.lose_answer {
            Fate::LoseAnswer
        } else {
            Fate::Deliver
        }
    }

    /// Notes which journal rows the transactions of a batch the server applied carried (a
    /// rejected transaction carried nothing: it may come back, redone, in a later batch).
    fn record_carried(&self, batch_id: &str, body: &[u8], answer: &PushResponse) {
        let mut carriers = self.carriers.lock().unwrap_or_else(|p| p.into_inner());
        let ranges = sync_core::protocol::batch::decode_index(body.into())
            .expect("reading memory")
            .expect("a pushed batch decodes");
        for r in ranges {
            let applied = answer
                .transactions
                .iter()
                .any(|t| t.id == r.id && t.applied());
            if !applied {
                continue;
            }
            let bytes = &body[r.offset as usize..(r.offset + r.len) as usize];
            for change in Changeset::from_bytes(bytes.to_vec())
                .changes()
                .map(|c| c.expect("a pushed changeset decodes"))
            {
                if change.table == "journal"
                    && change.op == Op::Insert
                    && let Some(Value::Integer(id)) = change.pk_values().first()
                {
                    carriers
                        .entry(*id)
                        .or_default()
                        .insert(batch_id.to_string());
                }
            }
        }
    }

    fn run_hook(&self, at: HookAt) {
        let hook = {
            let mut s = self.state();
            match s.hook.take() {
                Some((when, hook)) if when == at => Some(hook),
                other => {
                    s.hook = other;
                    None
                }
            }
        };
        if let Some(hook) = hook {
            self.note(format!("write during {at:?}"));
            hook();
        }
    }
}

fn injected(what: &str) -> Error {
    Error::new(ErrorKind::Network, format!("injected fault: {what}"))
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn info(&self) -> sync_client::Result<DatabaseInfo> {
        self.inner.info()
    }

    fn push(&self, headers: &PushHeaders, body: &[u8]) -> sync_client::Result<PushResponse> {
        let fate = self.fate();
        if let Fate::Drop = fate {
            self.note(format!("push {} dropped", short(&headers.batch_id)));
            return Err(injected("push request dropped"));
        }
        let result = self.inner.push(headers, body);
        if let Ok(answer) = &result {
            self.record_carried(&headers.batch_id, body, answer);
        }
        self.note(match &result {
            Ok(r) => format!(
                "push {} cursor {} -> seq {} {:?} clean={} dup={} conflicts={}{}",
                short(&headers.batch_id),
                headers.cursor,
                r.seq,
                r.status,
                r.clean,
                r.duplicate,
                r.conflicts().count(),
                if matches!(fate, Fate::LoseAnswer) {
                    " (answer lost)"
                } else {
                    ""
                }
            ),
            Err(e) => format!("push {} failed: {e}", short(&headers.batch_id)),
        });
        self.run_hook(HookAt::Push);
        match fate {
            Fate::LoseAnswer => Err(injected("push answer lost after the server committed")),
            _ => result,
        }
    }

    fn upload_status(&self, batch_id: &str) -> sync_client::Result<Option<u64>> {
        self.faulty(format!("upload status {}", short(batch_id)), || {
            self.inner.upload_status(batch_id)
        })
    }

    fn upload_part(
        &self,
        batch_id: &str,
        offset: u64,
        total: u64,
        part: &[u8],
    ) -> sync_client::Result<u64> {
        self.faulty(
            format!("upload {} at {offset} of {total}", short(batch_id)),
            || {
                self.large.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
                let received = self.inner.upload_part(batch_id, offset, total, part)?;
                let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
                let body = uploads.entry(batch_id.to_string()).or_default();
                body.truncate(offset as usize);
                body.extend_from_slice(part);
                Ok(received)
            },
        )
    }

    fn push_uploaded(&self, headers: &PushHeaders) -> sync_client::Result<PushResponse> {
        let result = self.faulty(
            format!("push uploaded {}", short(&headers.batch_id)),
            || {
                let answer = self.inner.push_uploaded(headers)?;
                let body = self
                    .uploads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&headers.batch_id)
                    .cloned();
                if let Some(body) = body {
                    self.record_carried(&headers.batch_id, &body, &answer);
                }
                Ok(answer)
            },
        );
        self.run_hook(HookAt::Push);
        result
    }

    fn effect(
        &self,
        seq: i64,
        query: &sync_core::protocol::upload::EffectQuery,
    ) -> sync_client::Result<Vec<u8>> {
        self.faulty(format!("effect {seq} at {}", query.offset), || {
            self.large.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
            self.inner.effect(seq, query)
        })
    }

    fn pull(&self, query: &PullQuery) -> sync_client::Result<LogPage> {
        let since = query.effective().0;
        let fate = self.fate();
        if let Fate::Drop = fate {
            self.note(format!("pull since {since} dropped"));
            return Err(injected("pull request dropped"));
        }
        let result = self.inner.pull(query);
        {
            let mut s = self.state();
            match &result {
                Ok(_) => s.bootstrap_expected = false,
                Err(e)
                    if e.server_body().is_some_and(|b| {
                        matches!(b.code, ErrorCode::CursorTooOld | ErrorCode::CursorAhead)
                    }) =>
                {
                    s.bootstrap_expected = true
                }
                Err(_) => {}
            }
        }
        self.note(match &result {
            Ok(page) => format!(
                "pull since {since}: {:?}{}",
                page.entries
                    .iter()
                    .map(|e| (e.seq, e.origin.clone(), short(&e.batch_id)))
                    .collect::<Vec<_>>(),
                if matches!(fate, Fate::LoseAnswer) {
                    " (answer lost)"
                } else {
                    ""
                }
            ),
            Err(e) => format!("pull since {since} failed: {e}"),
        });
        self.run_hook(HookAt::Pull);
        match fate {
            Fate::LoseAnswer => Err(injected("pull answer lost")),
            _ => result,
        }
    }

    fn snapshot(
        &self,
        dest: &Path,
        request: &sync_client::transport::SnapshotRequest<'_>,
    ) -> sync_client::Result<sync_client::transport::SnapshotGot> {
        {
            let mut s = self.state();
            if !s.bootstrap_expected {
                s.unexpected_bootstraps += 1;
            }
        }
        let fate = self.fate();
        if let Fate::Drop = fate {
            self.note("snapshot dropped".into());
            return Err(injected("snapshot request dropped"));
        }
        let result = self.inner.snapshot(dest, request);
        self.note(match &result {
            Ok(got) => format!(
                "snapshot at seq {}{}",
                got.seq,
                if matches!(fate, Fate::LoseAnswer) {
                    " (download lost)"
                } else {
                    ""
                }
            ),
            Err(e) => format!("snapshot failed: {e}"),
        });
        match fate {
            Fate::LoseAnswer => Err(injected("snapshot download broke")),
            _ => result,
        }
    }

    fn lease(&self, size: i64) -> sync_client::Result<Lease> {
        self.inner.lease(size)
    }

    fn events(&self) -> sync_client::Result<Box<dyn EventStream>> {
        self.inner.events()
    }
}

/// The first 8 characters of a batch id (enough to tell batches apart in a trace).
fn short(batch_id: &str) -> &str {
    &batch_id[..batch_id.len().min(8)]
}
