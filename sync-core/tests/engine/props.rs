//! Property tests: arbitrary bytes and mutated real changesets never make the engine panic,
//! and an apply that fails leaves the database exactly as it was.
//!
//! Cases default to a CI-friendly count; run more with `PROPTEST_CASES=20000`. A failure is
//! shrunk, printed and saved under `tests/proptest-regressions/` (replayed first on the next
//! run); `PROPTEST_RNG_SEED=<n>` fixes the generator's seed. The pool of valid changesets the
//! mutations start from is built with a fixed seed, so a saved case means the same bytes.

use crate::common::{dump, file_bytes, newest, without_change_counter};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::Config as ProptestConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::OnceLock;
use sync_core::engine::apply::ApplyError;
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::apply::apply;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::decode::Change;
use sync_core::engine::decode::Op;
use sync_core::engine::encode::encode;
use sync_core::engine::encode::put_varint;
use sync_core::engine::ffi::session::Session;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::value::Value;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Every column named `v` so that `NewestWins { column: "v" }` is valid on every table.
const SCHEMA: &str = "
    CREATE TABLE a(id INTEGER PRIMARY KEY, v, w TEXT);
    CREATE TABLE b(k1 TEXT NOT NULL, k2 INTEGER NOT NULL, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;
    CREATE TABLE p(id INTEGER PRIMARY KEY, v);
    CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) ON DELETE CASCADE,
                   v UNIQUE);
    INSERT INTO a VALUES (1, 1, 'one'), (2, 2.5, 'two'), (3, NULL, NULL);
    INSERT INTO b VALUES ('x', 1, 'bx'), ('y', 2, x'00');
    INSERT INTO p VALUES (1, 'p1'), (2, 'p2');
    INSERT INTO c VALUES (1, 1, 'c1'), (2, 1, 'c2'), (3, 2, 'c3');
";

/// The target database every apply starts from, as file bytes.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("template.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(SCHEMA)
            .unwrap();
        std::fs::read(&path).unwrap()
    })
}

/// Valid changesets recorded by real sessions over the template's data (fixed seed).
fn pool() -> &'static [Vec<u8>] {
    static POOL: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut pool = Vec::new();
        while pool.len() < 24 {
            let mut session = Session::new(&conn).unwrap();
            session.attach(None).unwrap();
            for _ in 0..rng.random_range(1..6) {
                random_write(&conn, &mut rng);
            }
            let mut bytes = Vec::new();
            session.changeset_strm(&mut bytes).unwrap();
            if !bytes.is_empty() {
                pool.push(bytes);
            }
        }
        pool
    })
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => Value::Null,
        1 => Value::Integer(rng.random_range(-3..1000)),
        2 => Value::Real(rng.random::<f64>() * 100.0),
        3 | 4 => Value::Text("t".repeat(rng.random_range(0..20))),
        _ => Value::Blob(vec![rng.random(); rng.random_range(0..10)]),
    }
}

fn random_write(conn: &Connection, rng: &mut StdRng) {
    let k = rng.random_range(1..8i64);
    let v = random_value(rng);
    let sql = match rng.random_range(0..9) {
        0 | 1 => "INSERT OR REPLACE INTO a VALUES (?1, ?2, 'w')",
        2 => "UPDATE a SET v = ?2 WHERE id = ?1",
        3 => "DELETE FROM a WHERE id = ?1 AND (?2 IS NULL OR 1)",
        4 => "INSERT OR REPLACE INTO b VALUES ('k' || ?1, ?1, ?2)",
        5 => "UPDATE b SET v = ?2 WHERE k2 = ?1",
        6 => "INSERT OR IGNORE INTO p VALUES (?1 % 3, ?2)",
        7 => "INSERT OR REPLACE INTO c VALUES (?1, (SELECT max(id) FROM p), ?2)",
        _ => "DELETE FROM p WHERE id = ?1 % 3 AND (?2 IS NULL OR 1)",
    };
    conn.execute(sql, rusqlite::params![k, v]).unwrap();
}

/// One edit of a byte string; positions are relative so they fit any length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Copies a slice of the input over another place (repeats records and headers).
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        (
            any::<Index>(),
            prop_oneof![Just(0u8), Just(0xff), 1u8..6, any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match m {
            Mutation::Flip(i, mask) => bytes[i.index(len)] ^= mask,
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
            Mutation::Splice(from, n, to) => {
                let start = from.index(len);
                let end = start + n.index(len - start + 1).min(16);
                let chunk = bytes[start..end].to_vec();
                let at = to.index(len + 1);
                bytes.splice(at..at, chunk);
            }
        }
    }
    bytes
}

/// A change-level edit: the result is well-formed but says something no session would (wrong
/// old values, changed types, NULL keys, swapped operations, repeated rows...).
#[derive(Debug, Clone)]
enum Edit {
    /// Sets column `col` of one record of a change (`None`: makes the field undefined).
    Value(Index, Index, Option<Value>),
    /// INSERT <-> DELETE (moving the record), UPDATE old <-> new.
    SwapOp(Index),
    FlipIndirect(Index),
    Duplicate(Index, Index),
    Drop(Index),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (-3i64..10).prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Real),
        "[a-z']{0,8}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Blob),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), prop::option::weighted(0.9, value()))
            .prop_map(|(c, col, v)| Edit::Value(c, col, v)),
        1 => any::<Index>().prop_map(Edit::SwapOp),
        1 => any::<Index>().prop_map(Edit::FlipIndirect),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Duplicate(a, b)),
        1 => any::<Index>().prop_map(Edit::Drop),
    ]
}

fn apply_edit(changes: &mut Vec<Change>, edit: &Edit) {
    if changes.is_empty() {
        return;
    }
    let n = changes.len();
    match edit {
        Edit::Value(c, col, v) => {
            let change = &mut changes[c.index(n)];
            let record = match (&mut change.old, &mut change.new) {
                (Some(old), Some(new)) => {
                    if col.index(2) == 0 {
                        old
                    } else {
                        new
                    }
                }
                (Some(r), None) | (None, Some(r)) => r,
                (None, None) => return,
            };
            let i = col.index(record.len());
            record[i] = v.clone();
        }
        Edit::SwapOp(c) => {
            let change = &mut changes[c.index(n)];
            change.op = match change.op {
                Op::Insert => Op::Delete,
                Op::Delete => Op::Insert,
                Op::Update => Op::Update,
            };
            std::mem::swap(&mut change.old, &mut change.new);
        }
        Edit::FlipIndirect(c) => changes[c.index(n)].indirect ^= true,
        Edit::Duplicate(c, at) => {
            let copy = changes[c.index(n)].clone();
            changes.insert(at.index(n + 1), copy);
        }
        Edit::Drop(c) => {
            changes.remove(c.index(n));
        }
    }
}

/// A real changeset with byte-level mutations, or with change-level edits (then perhaps a
/// byte-level mutation on top).
fn mutated_changeset() -> impl Strategy<Value = Vec<u8>> {
    let bytes = (any::<Index>(), prop::collection::vec(mutation(), 1..4))
        .prop_map(|(i, ms)| mutate(i.get(pool()).clone(), &ms));
    let edited = (
        any::<Index>(),
        prop::collection::vec(edit(), 1..4),
        prop::collection::vec(mutation(), 0..2),
    )
        .prop_map(|(i, edits, ms)| {
            let mut changes = sync_core::engine::decode::decode(i.get(pool()).as_slice()).unwrap();
            for e in &edits {
                apply_edit(&mut changes, e);
            }
            mutate(encode(&changes), &ms)
        });
    prop_oneof![bytes, edited]
}

/// Unstructured bytes, or the start of a real changeset (so the header is plausible) followed
/// by random bytes.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (
            any::<Index>(),
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(which, cut, tail)| {
                let real = which.get(pool());
                let mut bytes = real[..cut.index(real.len())].to_vec();
                bytes.extend(tail);
                bytes
            }),
    ]
}

fn policies() -> impl Strategy<Value = ApplyOptions> {
    let policy = prop_oneof![
        Just(Policy::Omit),
        Just(Policy::Replace),
        Just(Policy::Abort),
        Just(newest("v")),
    ];
    (policy.clone(), policy, any::<bool>()).prop_map(|(default, for_c, fk_no_action)| {
        ApplyOptions {
            fk_no_action,
            ..ApplyOptions::with_policies(PolicySet::uniform(default).with_table("c", for_c))
        }
    })
}

/// A fresh copy of the template database for one case.
struct Target {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
}

fn target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.sqlite");
    std::fs::write(&path, template()).unwrap();
    let conn = Connection::open(&path).unwrap();
    Target {
        _dir: dir,
        path,
        conn,
    }
}

/// Everything the engine offers on untrusted bytes: none of it may panic, and the decoders
/// must agree with each other.
fn exercise_without_applying(bytes: &[u8]) {
    let cs = Changeset::from_bytes(bytes.to_vec());
    let validated = cs.validate();
    let inspected = cs.inspect();
    if let Err(e) = &validated {
        assert!(
            e.offset <= bytes.len(),
            "{e} is past the end ({})",
            bytes.len()
        );
        // `validate` checks everything `inspect` does, and table shapes across headers.
        if let Err(i) = &inspected {
            assert_eq!(e, i);
        }
    } else {
        let summary = validated.as_ref().unwrap();
        assert_eq!(summary.changes(), inspected.as_ref().unwrap().len() as u64);
    }
    // The streaming validator (spooled uploads) agrees with the in-memory one, whatever the
    // window and however short the reads.
    for (window, piece) in [(16, 1), (37, 5), (64, 64), (4096, 7)] {
        let streamed = sync_core::engine::decode::validate_reader(Trickle { bytes, piece }, window)
            .expect("reading memory cannot fail");
        assert_eq!(streamed, validated, "window {window}, reads of {piece}");
        // The pieces a chunked apply works on are changesets of their own that, one after
        // the other, hold exactly the input's changes in its order.
        let mut pieces = Vec::new();
        let walked =
            sync_core::engine::decode::validate_pieces(Trickle { bytes, piece }, window, |p| {
                pieces.push(p.to_vec());
                Ok::<_, std::io::Error>(())
            })
            .expect("reading memory cannot fail");
        assert_eq!(walked, validated);
        if validated.is_ok() {
            let mut changes = Vec::new();
            for p in &pieces {
                changes.extend(Changeset::from_bytes(p.clone()).inspect().unwrap());
            }
            assert_eq!(changes, inspected.clone().unwrap(), "window {window}");
        }
    }
    let lazily: Vec<_> = cs.changes().collect();
    assert!(lazily.iter().filter(|c| c.is_err()).count() <= 1);

    let inverted = cs.invert();
    let concatenated = cs.concat(&cs);
    let with_real = Changeset::concat_all([&Changeset::from_bytes(pool()[0].clone()), &cs]);
    if validated.is_err() && !bytes.is_empty() {
        assert!(inverted.is_err() && concatenated.is_err() && with_real.is_err());
    }
    if let (Ok(inverse), Ok(summary)) = (inverted, &validated) {
        // What SQLite produced from bytes we accepted, we accept too, change for change.
        let back = if inverse.is_empty() {
            0
        } else {
            inverse.validate().unwrap().changes()
        };
        assert_eq!(back, summary.changes());
    }
}

/// A reader that hands out at most `piece` bytes per call.
struct Trickle<'a> {
    bytes: &'a [u8],
    piece: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Applies `bytes` to a fresh target and checks the outcome. Returns whether it applied.
fn apply_and_check(bytes: &[u8], options: &ApplyOptions) -> bool {
    let t = target();
    let before_dump = dump(&t.conn);
    let before_bytes = file_bytes(&t.path);
    let cs = Changeset::from_bytes(bytes.to_vec());
    let valid = cs.validate().is_ok();
    match apply(&t.conn, &cs, options) {
        Ok(report) => {
            assert!(
                valid || bytes.is_empty(),
                "applied bytes that do not validate"
            );
            assert!(report.applied <= report.changes);
            let ok: String = t
                .conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            true
        }
        Err(e) => {
            assert!(t.conn.is_autocommit(), "transaction left open after {e}");
            assert_eq!(dump(&t.conn), before_dump, "content changed after {e}");
            let after = file_bytes(&t.path);
            if valid {
                // SQLite may have written and rolled back; only the change counter may move.
                assert!(
                    without_change_counter(&after) == without_change_counter(&before_bytes),
                    "file changed after {e}"
                );
            } else {
                assert!(matches!(e, ApplyError::Decode(_)), "{e:?}");
                assert!(
                    after == before_bytes,
                    "file touched by an invalid changeset"
                );
            }
            false
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_bytes_never_panic_and_change_nothing(
        bytes in random_bytes(),
        options in policies(),
    ) {
        exercise_without_applying(&bytes);
        apply_and_check(&bytes, &options);
    }

    #[test]
    fn mutated_changesets_never_panic(bytes in mutated_changeset()) {
        exercise_without_applying(&bytes);
    }

    #[test]
    fn mutated_changesets_apply_entirely_or_not_at_all(
        bytes in mutated_changeset(),
        options in policies(),
    ) {
        apply_and_check(&bytes, &options);
    }
}

#[test]
fn the_test_encoder_writes_what_sessions_write() {
    for bytes in pool() {
        let changes = sync_core::engine::decode::decode(bytes).unwrap();
        assert_eq!(&encode(&changes), bytes);
    }
    let mut long = Vec::new();
    put_varint(&mut long, 20_000);
    assert_eq!(long, [0x81, 0x9c, 0x20]);
}

/// The generators must reach the interesting paths, or the properties above prove little:
/// some mutated changesets must still validate and some of those must apply.
#[test]
fn mutations_reach_both_valid_and_invalid_changesets() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (mutated_changeset(), policies());
    let (mut valid, mut invalid, mut applied) = (0, 0, 0);
    for _ in 0..300 {
        let (bytes, options) = strategy.new_tree(&mut runner).unwrap().current();
        if Changeset::from_bytes(bytes.clone()).validate().is_ok() {
            valid += 1;
            applied += usize::from(apply_and_check(&bytes, &options));
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid >= 60 && invalid >= 60 && applied >= 20,
        "{valid} valid ({applied} applied), {invalid} invalid"
    );
    eprintln!("{valid} valid ({applied} applied), {invalid} invalid");
    // The untouched pool applies under a forgiving policy.
    for bytes in pool() {
        let options = ApplyOptions {
            fk_no_action: true,
            ..ApplyOptions::with_policies(PolicySet::uniform(Policy::Omit))
        };
        apply_and_check(bytes, &options);
    }
}
