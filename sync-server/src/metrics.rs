//! Counters and a latency histogram, rendered as Prometheus text by hand: a few atomics are all
//! the server needs, and they cost nothing on the request path.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sync_pushes_total` | counter | `result` = `applied`, `partial`, `rejected`, `duplicate` (batches) |
//! | `sync_transactions_total` | counter | `result` = `applied`, `rejected` (transactions of processed batches) |
//! | `sync_push_bytes_total` | counter | — (bytes received in push bodies, as sent) |
//! | `sync_response_bytes_total` | counter | — (pull pages and snapshots sent) |
//! | `sync_changes_applied_total` | counter | — (row changes written by pushes) |
//! | `sync_conflicts_total` | counter | `kind` = `DATA`, `NOTFOUND`, `CONFLICT`, `CONSTRAINT`, `FOREIGN_KEY` |
//! | `sync_errors_total` | counter | `code` (the wire error code) |
//! | `sync_snapshots_total` | counter | `reason` = `new`, `cursor`, `lineage`, `chain`, `checksum`, `diverged`, `other` (snapshots served; `checksum` and `diverged` are repairs of a device whose synced state differed) |
//! | `sync_open_databases` | gauge | — |
//! | `sync_db_cache_total` | counter | `result` = `hit`, `miss`, `evicted` |
//! | `sync_event_streams` | gauge | — (connected SSE clients) |
//! | `sync_connections` | gauge | — (open client connections) |
//! | `sync_refused_connections_total` | counter | — (refused past `max_connections`) |
//! | `sync_body_bytes_in_flight` | gauge | — (request-body bytes held, against the budget) |
//! | `sync_http_request_duration_seconds` | histogram | `route` |
//! | `sync_http_responses_total` | counter | `route`, `class` = `2xx`, `3xx`, `4xx`, `5xx` |

use crate::storage::CacheStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::conflict::Resolution;
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::routes;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Routes with their own latency series: every route of the API, then `other` (anything
/// else, e.g. unknown paths).
const ROUTES: [&str; routes::ALL.len() + 1] = {
    let mut all = [OTHER; routes::ALL.len() + 1];
    let mut i = 0;
    while i < routes::ALL.len() {
        all[i] = routes::ALL[i];
        i += 1;
    }
    all
};
const OTHER: &str = "other";

const CONFLICT_KINDS: [ConflictKind; 5] = [
    ConflictKind::Data,
    ConflictKind::NotFound,
    ConflictKind::Conflict,
    ConflictKind::Constraint,
    ConflictKind::ForeignKey,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct RouteMetrics {
    latency: Histogram,
    classes: [AtomicU64; 4],
}

use sync_core::protocol::push::PushResponse;
use sync_core::protocol::push::PushStatus;

/// All counters of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    pushes_applied: AtomicU64,
    pushes_partial: AtomicU64,
    pushes_rejected: AtomicU64,
    transactions_applied: AtomicU64,
    transactions_rejected: AtomicU64,
    pushes_duplicate: AtomicU64,
    push_bytes: AtomicU64,
    response_bytes: AtomicU64,
    changes_applied: AtomicU64,
    conflicts: [AtomicU64; 5],
    event_streams: AtomicI64,
    connections: AtomicI64,
    refused_connections: AtomicU64,
    routes: [RouteMetrics; ROUTES.len()],
    errors: Mutex<BTreeMap<&'static str, u64>>,
    snapshots: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a processed push: its outcome and its transactions', the rows they wrote
    /// (`changes` minus those omitted by conflicts) and the conflicts met.
    pub fn push(&self, result: &PushResponse) {
        let counter = if result.duplicate {
            &self.pushes_duplicate
        } else {
            match result.status {
                PushStatus::Applied => &self.pushes_applied,
                PushStatus::Partial => &self.pushes_partial,
                PushStatus::Rejected => &self.pushes_rejected,
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if result.duplicate {
            return;
        }
        for t in &result.transactions {
            if t.applied() {
                self.transactions_applied.fetch_add(1, Ordering::Relaxed);
                let omitted = t
                    .conflicts
                    .iter()
                    .filter(|c| c.resolution == Resolution::Omit)
                    .count() as u64;
                self.changes_applied
                    .fetch_add(t.changes.saturating_sub(omitted), Ordering::Relaxed);
            } else {
                self.transactions_rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        for c in result.conflicts() {
            let i = CONFLICT_KINDS
                .iter()
                .position(|k| *k == c.kind)
                .unwrap_or(0);
            self.conflicts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts bytes received in a push body.
    pub fn bytes_in(&self, n: usize) {
        self.push_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes sent in pull pages and snapshots.
    pub fn bytes_out(&self, n: u64) {
        self.response_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a snapshot served, by the client's reason.
    pub fn snapshot_served(&self, reason: &'static str) {
        let mut s = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        *s.entry(reason).or_default() += 1;
    }

    /// Counts an error answer.
    pub fn error(&self, code: ErrorCode) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(code.as_str()).or_default() += 1;
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a connection refused because `max_connections` were open.
    pub fn refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// An SSE client connected (`+1`) or left (`-1`).
    pub fn event_streams(&self, delta: i64) {
        self.event_streams.fetch_add(delta, Ordering::Relaxed);
    }

    /// Records one request's latency and status.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let i = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        let r = &self.routes[i];
        r.latency.observe(elapsed);
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        r.classes[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        open_databases: usize,
        cache: &CacheStats,
        body_bytes_in_flight: usize,
    ) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP sync_pushes_total Pushes processed, by result.\n# TYPE sync_pushes_total counter"
        );
        for (result, c) in [
            ("applied", &self.pushes_applied),
            ("partial", &self.pushes_partial),
            ("rejected", &self.pushes_rejected),
            ("duplicate", &self.pushes_duplicate),
        ] {
            let _ = writeln!(out, "sync_pushes_total{{result=\"{result}\"}} {}", get(c));
        }
        let _ = writeln!(
            out,
            "# HELP sync_transactions_total Transactions of processed batches, by outcome.\n\
             # TYPE sync_transactions_total counter"
        );
        for (result, c) in [
            ("applied", &self.transactions_applied),
            ("rejected", &self.transactions_rejected),
        ] {
            let _ = writeln!(
                out,
                "sync_transactions_total{{result=\"{result}\"}} {}",
                get(c)
            );
        }
        for (name, help, c) in [
            (
                "sync_push_bytes_total",
                "Bytes received in push bodies (as sent, possibly compressed).",
                &self.push_bytes,
            ),
            (
                "sync_response_bytes_total",
                "Bytes sent in pull pages and snapshots.",
                &self.response_bytes,
            ),
            (
                "sync_changes_applied_total",
                "Row changes written by pushes.",
                &self.changes_applied,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sync_conflicts_total Conflicts met while applying pushes, by kind.\n# TYPE sync_conflicts_total counter"
        );
        for (kind, c) in CONFLICT_KINDS.iter().zip(&self.conflicts) {
            let _ = writeln!(
                out,
                "sync_conflicts_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sync_errors_total Error answers, by wire code.\n# TYPE sync_errors_total counter"
        );
        for (code, n) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "sync_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sync_snapshots_total Snapshots served, by the client's reason.\n# TYPE sync_snapshots_total counter"
        );
        for (reason, n) in self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "sync_snapshots_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sync_open_databases Databases open in the cache.\n# TYPE sync_open_databases gauge\nsync_open_databases {open_databases}"
        );
        let _ = writeln!(
            out,
            "# HELP sync_db_cache_total Database cache lookups and evictions.\n# TYPE sync_db_cache_total counter"
        );
        for (result, c) in [
            ("hit", &cache.hits),
            ("miss", &cache.misses),
            ("evicted", &cache.evictions),
        ] {
            let _ = writeln!(out, "sync_db_cache_total{{result=\"{result}\"}} {}", get(c));
        }
        let _ = writeln!(
            out,
            "# HELP sync_event_streams Connected event-stream (SSE) clients.\n# TYPE sync_event_streams gauge\nsync_event_streams {}",
            self.event_streams.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sync_connections Open client connections.\n# TYPE sync_connections gauge\nsync_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sync_refused_connections_total Connections answered 503 because max_connections were open.\n# TYPE sync_refused_connections_total counter\nsync_refused_connections_total {}",
            get(&self.refused_connections)
        );
        let _ = writeln!(
            out,
            "# HELP sync_body_bytes_in_flight Request-body bytes held (memory and spool files), against body_budget_bytes.\n# TYPE sync_body_bytes_in_flight gauge\nsync_body_bytes_in_flight {body_bytes_in_flight}"
        );
        let _ = writeln!(
            out,
            "# HELP sync_http_request_duration_seconds Time to answer a request (to the response head).\n# TYPE sync_http_request_duration_seconds histogram"
        );
        for (route, r) in ROUTES.iter().zip(&self.routes) {
            let mut cumulative = 0;
            for (le, b) in BUCKETS.iter().zip(&r.latency.buckets) {
                cumulative += get(b);
                let _ = writeln!(
                    out,
                    "sync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += get(&r.latency.buckets[BUCKETS.len()]);
            let _ = writeln!(
                out,
                "sync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}\n\
                 sync_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 sync_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}",
                get(&r.latency.sum_us) as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "# HELP sync_http_responses_total Responses by route and status class.\n# TYPE sync_http_responses_total counter"
        );
        for (route, r) in ROUTES.iter().zip(&self.routes) {
            for (class, c) in ["2xx", "3xx", "4xx", "5xx"].iter().zip(&r.classes) {
                let n = get(c);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sync_http_responses_total{{route=\"{route}\",class=\"{class}\"}} {n}"
                    );
                }
            }
        }
        out
    }
}
