//! Integrating pulled log entries, in one local transaction: undo the pending transactions
//! (newest first), apply the pulled effects in order, settle this device's own batch if it is
//! among them (applied transactions leave the outbox, rejected ones move to the rejected
//! queue), redo the remaining pending transactions one by one, move the cursor.
//!
//! Nothing here needs a transaction or an effect in memory whole: a large effect (pulled into
//! a file, [`LargeEffects`]) and a large pending transaction (copied out of the outbox into a
//! scratch file) are validated, inverted and applied from files, in pieces.

use super::ClientError;
use super::push::settle_batch;
use super::redo::redo_each;
use super::report::{IntegrateReport, Touched};
use super::state::{clear_inflight, cursor, inflight};
use crate::engine::apply::{ApplyError, ApplyOptions, apply_source};
use crate::engine::changeset::Changeset;
use crate::engine::checksum::{self, Checksum};
use crate::engine::decode;
use crate::engine::outbox::{self, OutboxEntry};
use crate::engine::policy::{Policy, PolicySet};
use crate::engine::schema;
use crate::engine::spool::{self, Source, Spool, Spooled};
use crate::engine::tx::Tx;
use crate::protocol::lineage::Tip;
use crate::protocol::pull::LogEntry;
use crate::protocol::push::PushStatus;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;

/// Effects too large for a pull page, fetched on their own (into files), by log seq.
#[derive(Debug, Default)]
pub struct LargeEffects {
    files: HashMap<i64, Spooled>,
}

impl LargeEffects {
    /// Adds the fetched effect of entry `seq`.
    pub fn insert(&mut self, seq: i64, effect: Spooled) {
        self.files.insert(seq, effect);
    }

    /// The effect of entry `seq`, if fetched.
    pub fn get(&self, seq: i64) -> Option<Source<'_>> {
        self.files.get(&seq).map(Spooled::source)
    }

    /// Forgets every effect (their files go with them).
    pub fn clear(&mut self) {
        self.files.clear();
    }
}

/// What the server said about the position after the pulled entries, to check against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// The page's tip: lineage, chain value and checksum after the last entry (`None`: a
    /// server of the older page format; nothing is checked).
    pub tip: Option<&'a Tip>,
    /// Recompute the synced state's checksum from the tables instead of following it through
    /// the effects — catches a row changed behind the library's back that no pulled entry
    /// touches.
    pub full: bool,
}

/// [`integrate_with`] for entries whose effects are all in memory, no scratch directory and
/// nothing to check against.
pub fn integrate(
    conn: &Connection,
    entries: &[LogEntry],
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    integrate_with(
        conn,
        entries,
        &LargeEffects::default(),
        None,
        Expect::default(),
        now_ms,
    )
}

/// Integrates pulled log entries in one transaction: undo pending, apply the entries'
/// effects (the large ones from `large`), settle our own batch if it is among them, redo the
/// remaining pending transactions one by one under a session and store their captured
/// effects, move the cursor. Entries at or below the cursor are skipped; a gap is an error.
/// Foreign-key actions are off throughout: every effect already carries its cascaded rows.
/// `scratch` is where large pending transactions are copied to be undone and redone (`None`:
/// in memory). Once the effects are applied the tables hold the synced state at the last
/// entry: its checksum (followed through the effects, or recomputed: `expect.full`) must be
/// the server's there, else nothing is kept ([`ClientError::ChecksumMismatch`]: bootstrap).
pub fn integrate_with(
    conn: &Connection,
    entries: &[LogEntry],
    large: &LargeEffects,
    scratch: Option<&Path>,
    expect: Expect<'_>,
    now_ms: i64,
) -> Result<IntegrateReport, ClientError> {
    let tx = Tx::begin(conn)?;
    let cursor = cursor(conn)?;
    let entries: Vec<&LogEntry> = entries.iter().filter(|e| e.seq > cursor).collect();
    let Some(last) = entries.last() else {
        tx.commit()?;
        return Ok(IntegrateReport {
            cursor,
            ..IntegrateReport::default()
        });
    };
    let mut effects = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if e.seq != cursor + 1 + i as i64 {
            return Err(ClientError::Gap { cursor, got: e.seq });
        }
        let effect = match e.large {
            None => Effect::Memory(&e.effect),
            Some(len) => {
                Effect::File(large.get(e.seq).filter(|s| s.len() == len).ok_or_else(|| {
                    ClientError::CorruptEntry {
                        seq: e.seq,
                        what: format!("its large effect of {len} bytes was not fetched whole"),
                    }
                })?)
            }
        };
        check_pulled(e, effect.source())?;
        effects.push(effect);
    }
    let last_seq = last.seq;
    let inflight = inflight(conn)?;
    let own = inflight
        .as_ref()
        .and_then(|f| entries.iter().find(|e| e.batch_id == f.batch_id));
    // An answer naming a seq these entries cover, where another batch stands: it came from a
    // history the server no longer has. The batch is pushed again (same id).
    let stale_answer = own.is_none()
        && inflight
            .as_ref()
            .and_then(|f| f.acked_seq)
            .is_some_and(|a| a > cursor && a <= last.seq);
    let mut report = IntegrateReport {
        entries: entries.len(),
        cursor: last_seq,
        own_batch: own.map(|e| e.status),
        ..IntegrateReport::default()
    };
    let mut touched = Touched::default();
    let pending = outbox::entries(conn)?;
    if !pending.is_empty() {
        report.rebased = true;
        undo_all(conn, &pending, scratch, &mut touched)?;
    }
    let delta = apply_remote(conn, &effects, &mut touched)?;
    let sum = synced_sum_after(conn, delta, last_seq, expect)?;
    if pending.is_empty() {
        if own.is_some() {
            clear_inflight(conn)?;
        }
    } else {
        if let (Some(own), Some(f)) = (own, &inflight) {
            report.new_rejected += settle_batch(conn, f, Some(&own.rejected), own.seq, now_ms)?;
        }
        let remaining: Vec<OutboxEntry> = outbox::entries(conn)?;
        let redid = redo_each(conn, &remaining, scratch, now_ms, &mut touched)?;
        report.new_conflicts += redid.conflicts;
        report.new_rejected += redid.rejected;
    }
    if stale_answer {
        super::state::forget_answer(conn)?;
    }
    match expect.tip {
        Some(tip) => super::state::set_synced(conn, tip, sum)?,
        None => {
            // No position came with the entries (an older server): the chain value at the new
            // cursor is unknown, so is the lineage until a page says.
            super::state::set_state(conn, "cursor", last_seq)?;
            super::state::set_state(conn, "lineage", 0)?;
            super::state::set_sum(conn, sum)?;
        }
    }
    tx.commit()?;
    (report.touched, report.touched_tables) = touched.into_parts();
    Ok(report)
}

/// The synced state's checksum at `seq` (the tables hold that state now): the one before plus
/// `delta`, or recomputed when asked or when the one before is unknown and the server's is
/// known. Checked against the server's.
fn synced_sum_after(
    conn: &Connection,
    delta: Checksum,
    seq: i64,
    expect: Expect<'_>,
) -> Result<Option<Checksum>, ClientError> {
    let before = super::state::synced(conn)?.sum;
    let server = expect.tip.and_then(|t| t.sum);
    if let Some(tip) = expect.tip
        && tip.seq != seq
    {
        return Err(ClientError::CorruptEntry {
            seq,
            what: format!(
                "the page's position is at seq {}, its last entry at {seq}",
                tip.seq
            ),
        });
    }
    let sum = if expect.full || (before.is_none() && server.is_some()) {
        Some(checksum::table_sum(conn)?)
    } else {
        before.map(|mut s| {
            s.add(&delta);
            s
        })
    };
    if let (Some(expected), Some(found)) = (server, sum)
        && expected != found
    {
        return Err(ClientError::ChecksumMismatch {
            seq,
            expected,
            found,
        });
    }
    Ok(sum)
}

/// A pulled entry's effect: with the page, or fetched into a file.
#[derive(Clone, Copy)]
enum Effect<'a> {
    Memory(&'a Changeset),
    File(Source<'a>),
}

impl<'a> Effect<'a> {
    fn source(self) -> Source<'a> {
        match self {
            Effect::Memory(c) => Source::Bytes(c.as_bytes()),
            Effect::File(s) => s,
        }
    }
}

/// Applies the entries' effects in order: runs of in-memory ones concatenated (one apply),
/// large ones from their files. Returns how they changed the tables' checksum (each applied
/// changeset followed right after its apply: a concatenation holds one change per row).
fn apply_remote(
    conn: &Connection,
    effects: &[Effect<'_>],
    touched: &mut Touched,
) -> Result<Checksum, ClientError> {
    let mut run: Vec<&Changeset> = Vec::new();
    let mut delta = Checksum::EMPTY;
    let flush = |run: &mut Vec<&Changeset>,
                 touched: &mut Touched,
                 delta: &mut Checksum|
     -> Result<(), ClientError> {
        if run.is_empty() {
            return Ok(());
        }
        let together = Changeset::concat_all(run.iter().copied())?;
        run.clear();
        touched.add(&together);
        let source = Source::Bytes(together.as_bytes());
        apply_exact(conn, source, "remote")?;
        delta.add(&checksum::delta(source)?);
        Ok(())
    };
    for effect in effects {
        match *effect {
            Effect::Memory(c) if c.is_empty() => {}
            Effect::Memory(c) => run.push(c),
            Effect::File(source) => {
                flush(&mut run, touched, &mut delta)?;
                touched.add_source(source).map_err(ClientError::Io)?;
                apply_exact(conn, source, "remote")?;
                delta.add(&checksum::delta(source)?);
            }
        }
    }
    flush(&mut run, touched, &mut delta)?;
    Ok(delta)
}

/// Refuses a pulled entry whose effect does not decode or writes an internal table: the
/// server never logs such an effect (its apply refuses them), so one arriving means a damaged
/// or hostile log, and applying it could rewrite this device's outbox or cursor.
fn check_pulled(entry: &LogEntry, effect: Source<'_>) -> Result<(), ClientError> {
    if effect.is_empty() {
        return Ok(());
    }
    let corrupt = |what: String| ClientError::CorruptEntry {
        seq: entry.seq,
        what,
    };
    let summary = match effect.as_bytes() {
        Some(bytes) => decode::validate(bytes),
        None => decode::validate_reader(effect.reader(), decode::STREAM_WINDOW)
            .map_err(ClientError::Io)?,
    }
    .map_err(|e| corrupt(e.to_string()))?;
    if entry.status == PushStatus::Rejected {
        return Err(corrupt(
            "a wholly rejected batch with a non-empty effect".into(),
        ));
    }
    match summary.tables.keys().find(|t| schema::is_internal_table(t)) {
        Some(table) => Err(corrupt(format!(
            "it writes {table:?}, a table internal to session-sync or SQLite"
        ))),
        None => Ok(()),
    }
}

/// Options for applying changes that must apply exactly (undo, remote effects).
fn exact_options() -> ApplyOptions {
    ApplyOptions {
        policies: PolicySet::uniform(Policy::Abort),
        fk_no_action: true,
        ignore_noop: false,
        invert: false,
        no_savepoint: false,
        piece_bytes: None,
    }
}

/// Applies `changeset` (in memory or in a file) exactly: any conflict means local state is
/// not what the protocol says it is ([`ClientError::Diverged`]).
pub(crate) fn apply_exact(
    conn: &Connection,
    changeset: Source<'_>,
    step: &'static str,
) -> Result<(), ClientError> {
    if changeset.is_empty() {
        return Ok(());
    }
    match apply_source(conn, changeset, &exact_options(), None) {
        Ok(_) => Ok(()),
        Err(ApplyError::Aborted { report }) => Err(ClientError::Diverged {
            step,
            conflicts: report.conflicts,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Undoes every pending transaction, newest first: runs of in-memory ones by the inverse of
/// their concatenation (one apply), large ones inverted from file to file.
pub(crate) fn undo_all(
    conn: &Connection,
    pending: &[OutboxEntry],
    scratch: Option<&Path>,
    touched: &mut Touched,
) -> Result<(), ClientError> {
    let mut run: Vec<&Changeset> = Vec::new();
    let flush = |run: &mut Vec<&Changeset>, touched: &mut Touched| -> Result<(), ClientError> {
        if run.is_empty() {
            return Ok(());
        }
        run.reverse(); // oldest first, as concatenation wants them
        let undo = Changeset::concat_all(run.iter().copied())?.invert()?;
        run.clear();
        touched.add(&undo);
        apply_exact(conn, Source::Bytes(undo.as_bytes()), "undo")
    };
    for entry in pending.iter().rev() {
        match outbox::spool_large(conn, entry, scratch).map_err(ClientError::Io)? {
            None => run.push(&entry.changeset),
            Some(copy) => {
                flush(&mut run, touched)?;
                let mut inverse = match scratch {
                    Some(dir) => Spool::new(dir, spool::DEFAULT_THRESHOLD),
                    None => Spool::in_memory(),
                };
                crate::engine::ffi::session::invert_strm(
                    &mut copy.source().reader(),
                    &mut inverse,
                )?;
                let inverse = inverse.finish().map_err(ClientError::Io)?;
                touched
                    .add_source(inverse.source())
                    .map_err(ClientError::Io)?;
                apply_exact(conn, inverse.source(), "undo")?;
            }
        }
    }
    flush(&mut run, touched)
}
