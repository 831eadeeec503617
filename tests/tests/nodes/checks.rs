//! The checks of a settled nodes-world case: the nodes agree, every device equals the
//! server, no acknowledged write is lost or applied twice, and the store holds every
//! acknowledged batch exactly once.

use crate::cluster::NODES;
use crate::workload::{
    describe_diff, dropped_journal_ids, journal_ids, read_only, sqldiff_or_none,
};
use crate::world::{Case, Failure};
use rand::RngExt;
use session_sync_tests::dump;
use std::collections::{HashMap, HashSet};
use sync_client::Transport;

impl Case {
    pub(crate) fn check(&mut self) -> Result<(), Failure> {
        for dev in &mut self.devices {
            if let Some((client, transport)) = dev.client.take() {
                transport.clear_hook();
                client.close();
            }
        }
        // Every node at the same head and position; every node's copy has the same rows.
        let head = self.head(0)?;
        let mut tips = Vec::new();
        for i in 0..NODES {
            let h = self.head(i)?;
            let tip = self
                .http(i)
                .position(h)
                .map_err(|e| self.failure(format!("node {i}: position: {e}")))?;
            tips.push((h, format!("{tip:?}")));
        }
        if tips.iter().any(|t| *t != tips[0]) {
            return Err(self.failure(format!("the nodes disagree: {tips:?}")));
        }
        let node = self.rng.random_range(0..NODES);
        let server_db = self.nodes.db_file(node, self.db_id);
        let expected = dump(&server_db);
        for i in 0..NODES {
            if dump(&self.nodes.db_file(i, self.db_id)) != expected {
                return Err(self.failure(format!(
                    "node {i}'s copy differs from node {node}'s at head {head}"
                )));
            }
        }
        // Every device equals the server, row for row.
        for (d, dev) in self.devices.iter().enumerate() {
            let got = dump(&dev.path);
            if got != expected {
                let mut diff = describe_diff(&expected, &got);
                if let Some(out) = sqldiff_or_none(&server_db, &dev.path) {
                    diff.push_str(&format!("\nsqldiff --primarykey server device:\n{out}"));
                }
                return Err(
                    self.failure(format!("device {d} differs from node {node}'s copy:{diff}"))
                );
            }
        }
        // No acknowledged write lost, none invented.
        let on_server = journal_ids(&server_db);
        let mut acknowledged_anywhere = HashSet::new();
        for (d, dev) in self.devices.iter().enumerate() {
            let dropped = dropped_journal_ids(&dev.path);
            for id in dev.acknowledged.lock().unwrap().iter().flatten() {
                acknowledged_anywhere.insert(*id);
                if on_server.contains(id) == dropped.contains(id) {
                    return Err(self.failure(format!(
                        "device {d}: the acknowledged write with journal id {id} is on the \
                         server: {}, in the rejected queue: {}",
                        on_server.contains(id),
                        dropped.contains(id)
                    )));
                }
            }
        }
        if let Some(id) = on_server.difference(&acknowledged_anywhere).next() {
            return Err(self.failure(format!(
                "the server has journal id {id}, which no device acknowledged"
            )));
        }
        // No write pushed under two batch ids.
        let twice = {
            let carriers = self.carriers.lock().unwrap();
            carriers
                .iter()
                .filter(|(_, b)| b.len() > 1)
                .map(|(id, b)| format!("journal {id} in batches {b:?}"))
                .next()
        };
        if let Some(t) = twice {
            return Err(self.failure(format!("a write was applied twice: {t}")));
        }
        // Journal rows never meet a conflict on the server.
        let (records, _) =
            sync_core::server::conflicts::conflicts(&read_only(&server_db), 0, 10_000).unwrap();
        if let Some(r) = records.iter().find(|r| r.conflict.table == "journal") {
            return Err(self.failure(format!(
                "journal row {:?} met a {} conflict on the server (seq {})",
                r.conflict.pk, r.conflict.kind, r.seq
            )));
        }
        self.check_store(head)
    }

    /// Exactly once in the store: the log index has seqs 1..=head without a gap, no batch
    /// twice, and every batch a push answer named is recorded once, at the answered seq.
    fn check_store(&mut self, head: i64) -> Result<(), Failure> {
        let pg = &self.pg;
        let db = &self.nodes.store_db;
        let id = self.db_id;
        let entries = pg.psql(
            db,
            &format!(
                "SELECT count(*), count(DISTINCT (device, batch_id)), coalesce(max(seq), 0), \
                 coalesce(min(seq), 1) FROM sync_entries WHERE database = {id}"
            ),
        );
        let want = format!("{head}|{head}|{head}|1");
        if entries.trim() != want {
            return Err(self.failure(format!(
                "the store's log index (count, distinct batches, max seq, min seq) is {}, \
                 expected {want}",
                entries.trim()
            )));
        }
        let batches: HashMap<String, i64> = pg
            .psql(
                db,
                &format!("SELECT batch_id, seq FROM sync_batches WHERE database = {id}"),
            )
            .lines()
            .map(|l| {
                let (b, s) = l.split_once('|').unwrap();
                (b.to_string(), s.parse().unwrap())
            })
            .collect();
        let answers = self.answers.lock().unwrap().clone();
        self.stats.acknowledged_batches += answers.len() as u64;
        for (batch, seq) in &answers {
            match batches.get(batch) {
                Some(s) if s == seq => {}
                other => {
                    return Err(self.failure(format!(
                        "batch {batch} was answered with seq {seq}; the store has {other:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}
