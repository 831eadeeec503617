//! Seeded convergence property test over real HTTP — the end-to-end sibling of
//! `sync-core/tests/engine/convergence.rs`.
//!
//! Every case: a new database on a real in-process `sync-server` (127.0.0.1:0), 3–5 real
//! `SyncClient` databases on disk initialised from it (some join late, from a snapshot),
//! random write transactions (inserts, updates and deletes of the same few rows, tags with a
//! UNIQUE name, `note_tags` with ON DELETE CASCADE) interleaved with `sync_now` on random
//! devices, under random conflict policies. Failures are injected by a [`faults`] transport
//! around the real HTTP transport: requests dropped before sending, answers lost after the
//! server committed, local writes landing while a push or pull is on the wire, clients
//! closed and reopened, the server restarted, the server's log compacted so devices must
//! bootstrap. Then faults go off and every device syncs until its outbox is empty and its
//! cursor is the server's head, and:
//!
//! * every device's app tables equal the server's, row for row;
//! * no acknowledged write is lost: each write transaction also inserts a never-modified
//!   `journal` row, which must be on the server or inside a changeset the device recorded as
//!   a local conflict — and the server has no journal row nobody wrote;
//! * no write is applied twice: a journal row travels in at most one batch id the server
//!   processed (the transport decodes every push), and never meets a conflict on the server;
//! * no device ever re-based on a snapshot to recover from a divergence.
//!
//! `SYNC_HTTP_CONVERGENCE_SEED=N` replays one case; `SYNC_HTTP_CONVERGENCE_CASES=N` sets the
//! count, `SYNC_HTTP_CONVERGENCE_BASE=N` the first seed (default random),
//! `SYNC_HTTP_CONVERGENCE_KEEP_GOING=1` runs every case and lists all failing seeds,
//! `SYNC_HTTP_CONVERGENCE_STEPS=N` makes each case longer or shorter (default 100; a replay
//! needs the same value).
//! docs/testing.md has the long-run command.

mod faults;
mod scenarios;
mod workload;
mod world;

use std::time::Instant;
use world::{CaseOptions, Fleet, Stats};

/// Cases in a default (CI) run.
const DEFAULT_CASES: u64 = 100;
/// Steps of random activity per case before quiescence.
const STEPS: usize = 100;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an unsigned integer, got {s:?}"))
    })
}

#[test]
fn devices_converge_over_http_under_random_interleavings_and_faults() {
    let mut fleet = Fleet::new();
    let opts = CaseOptions {
        steps: env_u64("SYNC_HTTP_CONVERGENCE_STEPS").map_or(STEPS, |s| s as usize),
        sqldiff: false,
    };
    if let Some(seed) = env_u64("SYNC_HTTP_CONVERGENCE_SEED") {
        println!("HTTP convergence: replaying seed {seed}");
        let opts = CaseOptions {
            sqldiff: true,
            ..opts
        };
        if let Err(f) = fleet.case(seed).run(opts) {
            panic!("{}", f.0);
        }
        return;
    }
    let cases = env_u64("SYNC_HTTP_CONVERGENCE_CASES").unwrap_or(DEFAULT_CASES);
    let base = env_u64("SYNC_HTTP_CONVERGENCE_BASE").unwrap_or_else(rand::random);
    let keep_going = std::env::var("SYNC_HTTP_CONVERGENCE_KEEP_GOING").is_ok_and(|v| v == "1");
    println!(
        "HTTP convergence: {cases} cases, seeds {base}..{} (replay one with SYNC_HTTP_CONVERGENCE_SEED)",
        base.wrapping_add(cases)
    );
    let started = Instant::now();
    let mut totals = Stats::default();
    let mut failed: Vec<u64> = Vec::new();
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        // The first case also compares with sqldiff, so the two checks stay in agreement.
        let opts = CaseOptions {
            sqldiff: i == 0,
            ..opts
        };
        match fleet.case(seed).run(opts) {
            Ok(stats) => totals.add(&stats),
            Err(f) if keep_going => {
                eprintln!("{}\n", f.0);
                failed.push(seed);
            }
            Err(f) => panic!("{}", f.0),
        }
        if (i + 1) % 500 == 0 {
            eprintln!(
                "HTTP convergence: {} cases in {:.0?}, {} failed",
                i + 1,
                started.elapsed(),
                failed.len()
            );
        }
    }
    println!(
        "HTTP convergence: {cases} cases in {:.1?}, {} failed; totals: {totals:?}",
        started.elapsed(),
        failed.len()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    // A run that never took the large-transaction paths proves nothing about them.
    if cases >= 50 {
        assert!(
            totals.bulk_writes > 0 && totals.upload_parts > 0 && totals.effect_ranges > 0,
            "{totals:?}"
        );
    }
}
