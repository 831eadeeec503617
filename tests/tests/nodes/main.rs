//! The seeded HTTP convergence test over several nodes — the multi-node sibling of
//! `tests/tests/convergence/`.
//!
//! One PostgreSQL cluster of the test's own (`sync_testkit::pg`), and per conflict-policy
//! combination three real `sync-server` processes (`serve --store URL`, each with a data
//! directory of its own) on one store database. Every case: a new database, 3–5 real
//! `SyncClient` databases whose every request goes to a node picked at random (seeded),
//! random write transactions and syncs under the convergence world's faults (requests
//! dropped, answers lost after the server acted, local writes landing while a request is on
//! the wire, clients reopened) plus the nodes world's own: a node SIGKILLed while a push is on
//! the wire (the node serving it, or another), started again a few steps later on its port
//! with its cache kept or wiped; and in some cases PostgreSQL restarted in immediate mode in
//! the middle of the steps (the nodes answer 503 `unavailable` until it is back; clients
//! retry at their next sync). Then faults go off, every node comes up, every device syncs until
//! it is settled, and:
//!
//! * every node answers the same head and position, and every node's copy has the same rows;
//! * every device's app tables equal the server's, row for row;
//! * no acknowledged write is lost or invented (journal rows, as in the convergence world),
//!   none is pushed under two batch ids, and journal rows never meet a conflict;
//! * exactly once in the store: `sync_entries` holds seqs 1..=head with no gap and no batch
//!   twice, and every batch any push answer named is in `sync_batches` once, at the seq the
//!   answer gave.
//!
//! `SYNC_NODES_CONVERGENCE_SEED=N` replays one case and prints its steps (the decisions
//! replay; where a kill lands within a push is timing), `SYNC_NODES_CONVERGENCE_CASES=N` sets the count (default
//! [`DEFAULT_CASES`]), `SYNC_NODES_CONVERGENCE_BASE=N` the first seed (default random),
//! `SYNC_NODES_CONVERGENCE_STEPS=N` the steps per case (default [`STEPS`]; a replay needs the
//! same value), `SYNC_NODES_CONVERGENCE_KEEP_GOING=1` runs every case and lists all failing
//! seeds. docs/testing.md has the long-run command.

#[path = "../convergence/faults.rs"]
mod faults;
#[path = "../convergence/workload.rs"]
mod workload;

mod case;
mod checks;
mod cluster;
mod transport;
mod world;

use std::time::Instant;
use world::{CaseOptions, Fleet, Stats};

/// Cases in a default (CI) run.
const DEFAULT_CASES: u64 = 200;
/// Steps of random activity per case before quiescence.
const STEPS: usize = 30;
/// One case in this many (by seed) restarts PostgreSQL: each costs about 3 s.
const PG_RESTART_EVERY: u64 = 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an unsigned integer, got {s:?}"))
    })
}

#[test]
fn devices_converge_over_several_nodes_with_nodes_killed_and_postgres_restarted() {
    if !sync_testkit::pg::available() {
        panic!(
            "PostgreSQL is not installed (this test runs its own cluster): \
             sudo apt-get install postgresql"
        );
    }
    let mut fleet = Fleet::new();
    let opts = CaseOptions {
        steps: env_u64("SYNC_NODES_CONVERGENCE_STEPS").map_or(STEPS, |s| s as usize),
        pg_restart_every: PG_RESTART_EVERY,
        print_trace: false,
    };
    if let Some(seed) = env_u64("SYNC_NODES_CONVERGENCE_SEED") {
        println!("nodes convergence: replaying seed {seed}");
        let opts = CaseOptions {
            print_trace: true,
            ..opts
        };
        if let Err(f) = fleet.case(seed, opts).run() {
            panic!("{}", f.0);
        }
        return;
    }
    let cases = env_u64("SYNC_NODES_CONVERGENCE_CASES").unwrap_or(DEFAULT_CASES);
    let base = env_u64("SYNC_NODES_CONVERGENCE_BASE").unwrap_or_else(rand::random);
    let keep_going = std::env::var("SYNC_NODES_CONVERGENCE_KEEP_GOING").is_ok_and(|v| v == "1");
    println!(
        "nodes convergence: {cases} cases, seeds {base}..{} (replay one with \
         SYNC_NODES_CONVERGENCE_SEED)",
        base.wrapping_add(cases)
    );
    let started = Instant::now();
    let mut totals = Stats::default();
    let mut failed: Vec<u64> = Vec::new();
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        match fleet.case(seed, opts).run() {
            Ok(stats) => totals.add(&stats),
            Err(f) if keep_going => {
                eprintln!("{}\n", f.0);
                failed.push(seed);
            }
            Err(f) => panic!("{}", f.0),
        }
        if (i + 1) % 100 == 0 {
            eprintln!(
                "nodes convergence: {} cases in {:.0?}, {} failed",
                i + 1,
                started.elapsed(),
                failed.len()
            );
        }
    }
    println!(
        "nodes convergence: {cases} cases in {:.1?}, {} failed; totals: {totals:?}",
        started.elapsed(),
        failed.len()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    // A run that never killed a node or restarted PostgreSQL proves nothing about them.
    if cases >= 50 {
        assert!(
            totals.kills_cutting_a_push > 0
                && totals.pg_restarts > 0
                && totals.acknowledged_batches > 0,
            "{totals:?}"
        );
    }
}
