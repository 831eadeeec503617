//! The conflict matrix: every conflict type SQLite reports (DATA, NOTFOUND, CONFLICT,
//! CONSTRAINT, FOREIGN_KEY) under every policy, plus per-table overrides, foreign-key actions
//! and schema mismatches. Each case checks the report *and* the rows left in the target; every
//! failed apply must leave the target exactly as it was (content and file bytes).
//!
//! Each scenario starts two devices from the same state: the source records a write with a
//! real session, the target makes its own concurrent edit, then the source's changeset is
//! applied to the target.

use crate::common::{TempDb, int, newest, null, record, text, uniform};
use sync_core::engine::apply::ApplyError;
use sync_core::engine::apply::ApplyOptions;
use sync_core::engine::apply::ApplyReport;
use sync_core::engine::apply::Conflict;
use sync_core::engine::apply::apply;
use sync_core::engine::changeset::Changeset;
use sync_core::engine::conflict::ConflictKind;
use sync_core::engine::conflict::Resolution;
use sync_core::engine::decode::Op;
use sync_core::engine::policy::Policy;
use sync_core::engine::policy::PolicySet;
use sync_core::engine::schema::SchemaError;
use sync_core::engine::value::Value;

const SCHEMA: &str = "
    CREATE TABLE item(
        id      INTEGER PRIMARY KEY,
        name    TEXT    NOT NULL,
        qty     INTEGER NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE TABLE person(
        id      INTEGER PRIMARY KEY,
        email   TEXT    NOT NULL UNIQUE,
        updated INTEGER NOT NULL
    );
    CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE child(
        id        INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
        label     TEXT
    );
    INSERT INTO item VALUES (1, 'apple', 5, 100), (2, 'banana', 3, 100);
    INSERT INTO person VALUES (1, 'ann@example.com', 100);
    INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
    INSERT INTO child VALUES (10, 1, 'a'), (11, 1, 'b'), (20, 2, 'c');
";

/// Two devices that start from the same data.
struct Devices {
    source: TempDb,
    target: TempDb,
}

fn devices() -> Devices {
    Devices {
        source: TempDb::new(SCHEMA),
        target: TempDb::new(SCHEMA),
    }
}

impl Devices {
    /// Records `sql` on the source.
    fn source_writes(&self, sql: &str) -> Changeset {
        record(&self.source.conn, sql)
    }

    /// The target's own concurrent edit (not recorded).
    fn target_writes(&self, sql: &str) {
        self.target.conn.execute_batch(sql).unwrap();
    }

    fn apply(&self, cs: &Changeset, options: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
        apply(&self.target.conn, cs, options)
    }

    /// Applies and expects success.
    fn apply_ok(&self, cs: &Changeset, options: &ApplyOptions) -> ApplyReport {
        self.apply(cs, options)
            .unwrap_or_else(|e| panic!("apply failed: {e}"))
    }

    /// Applies, expects an abort, checks that the target did not change at all, and returns
    /// the conflicts the aborted report lists.
    fn apply_aborts(&self, cs: &Changeset, options: &ApplyOptions) -> Vec<Conflict> {
        let before = self.target.snapshot();
        let err = self.apply(cs, options).unwrap_err();
        before.assert_unchanged(&self.target);
        match err {
            ApplyError::Aborted { report } => report.conflicts,
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    fn item(&self, id: i64) -> Option<Vec<Value>> {
        self.target
            .rows("item")
            .into_iter()
            .find(|r| r[0] == int(id))
    }
}

fn conflict(
    kind: ConflictKind,
    table: &str,
    op: Op,
    pk: Vec<Value>,
    resolution: Resolution,
    current: Option<Vec<Value>>,
) -> Conflict {
    Conflict {
        kind,
        table: table.to_string(),
        op: Some(op),
        pk,
        resolution,
        current,
        fk_violations: None,
    }
}

/// SQLite passes the FOREIGN_KEY handler `SQLITE_DBSTATUS_DEFERRED_FKS`, which is a flag (1 =
/// "some violation remains"), not a count: two orphans still report 1.
fn fk_conflict() -> Conflict {
    Conflict {
        kind: ConflictKind::ForeignKey,
        table: String::new(),
        op: None,
        pk: Vec::new(),
        resolution: Resolution::Abort,
        current: None,
        fk_violations: Some(1),
    }
}

fn item_row(id: i64, name: &str, qty: i64, updated: i64) -> Vec<Value> {
    vec![int(id), text(name), int(qty), int(updated)]
}

// ---------------------------------------------------------------------------------------------
// DATA: the row exists but no longer holds the values the change expects.

/// Source sets qty and updated of item 1; the target meanwhile renamed it and changed qty.
/// The changeset also inserts item 3, which applies cleanly under every policy.
fn data_update_scenario(target_updated: i64) -> (Devices, Changeset) {
    let d = devices();
    let cs = d.source_writes(
        "UPDATE item SET qty = 7, updated = 200 WHERE id = 1;
         INSERT INTO item VALUES (3, 'cherry', 1, 200);",
    );
    d.target_writes(&format!(
        "UPDATE item SET name = 'APPLE', qty = 6, updated = {target_updated} WHERE id = 1"
    ));
    (d, cs)
}

fn data_update_conflict(resolution: Resolution, target_updated: i64) -> Conflict {
    conflict(
        ConflictKind::Data,
        "item",
        Op::Update,
        vec![int(1)],
        resolution,
        Some(item_row(1, "APPLE", 6, target_updated)),
    )
}

#[test]
fn data_on_update_omit_keeps_the_target_row() {
    let (d, cs) = data_update_scenario(150);
    let report = d.apply_ok(&cs, &uniform(Policy::Omit));
    assert_eq!(report.changes, 2);
    assert_eq!(report.applied, 1);
    assert_eq!(
        report.conflicts,
        vec![data_update_conflict(Resolution::Omit, 150)]
    );
    assert_eq!(d.item(1), Some(item_row(1, "APPLE", 6, 150)));
    assert_eq!(d.item(3), Some(item_row(3, "cherry", 1, 200)));
}

#[test]
fn data_on_update_replace_writes_only_the_changed_columns() {
    let (d, cs) = data_update_scenario(150);
    let report = d.apply_ok(&cs, &uniform(Policy::Replace));
    assert_eq!((report.changes, report.applied), (2, 2));
    assert_eq!(
        report.conflicts,
        vec![data_update_conflict(Resolution::Replace, 150)]
    );
    // qty and updated come from the source; the target's rename survives (columns merge).
    assert_eq!(d.item(1), Some(item_row(1, "APPLE", 7, 200)));
    assert_eq!(d.item(3), Some(item_row(3, "cherry", 1, 200)));
}

#[test]
fn data_on_update_abort_changes_nothing() {
    let (d, cs) = data_update_scenario(150);
    let conflicts = d.apply_aborts(&cs, &uniform(Policy::Abort));
    assert_eq!(
        conflicts,
        vec![data_update_conflict(Resolution::Abort, 150)]
    );
    assert_eq!(d.item(3), None);
}

#[test]
fn data_on_update_newest_wins_compares_the_timestamp_column() {
    // Incoming updated = 200 beats the target's 150.
    let (d, cs) = data_update_scenario(150);
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!((report.changes, report.applied), (2, 2));
    assert_eq!(
        report.conflicts,
        vec![data_update_conflict(Resolution::Replace, 150)]
    );
    assert_eq!(d.item(1), Some(item_row(1, "APPLE", 7, 200)));

    // The target's 250 beats the incoming 200; a tie (200 vs 200) also keeps the target.
    for target_updated in [250, 200] {
        let (d, cs) = data_update_scenario(target_updated);
        let report = d.apply_ok(&cs, &uniform(newest("updated")));
        assert_eq!((report.changes, report.applied), (2, 1));
        assert_eq!(
            report.conflicts,
            vec![data_update_conflict(Resolution::Omit, target_updated)]
        );
        assert_eq!(d.item(1), Some(item_row(1, "APPLE", 6, target_updated)));
        assert_eq!(d.item(3), Some(item_row(3, "cherry", 1, 200)));
    }
}

#[test]
fn data_on_update_newest_wins_loses_when_the_change_does_not_carry_the_column() {
    let d = devices();
    let cs = d.source_writes("UPDATE item SET qty = 9 WHERE id = 1");
    d.target_writes("UPDATE item SET qty = 6 WHERE id = 1");
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(
        report.conflicts,
        vec![conflict(
            ConflictKind::Data,
            "item",
            Op::Update,
            vec![int(1)],
            Resolution::Omit,
            Some(item_row(1, "apple", 6, 100)),
        )]
    );
    assert_eq!(d.item(1), Some(item_row(1, "apple", 6, 100)));
}

/// Source deletes item 1 (having seen updated = 100); the target edited it meanwhile.
fn data_delete_scenario(target_edit: &str) -> (Devices, Changeset) {
    let d = devices();
    let cs = d.source_writes("DELETE FROM item WHERE id = 1");
    d.target_writes(target_edit);
    (d, cs)
}

#[test]
fn data_on_delete_under_each_policy() {
    let edit = "UPDATE item SET qty = 6, updated = 150 WHERE id = 1";
    let current = Some(item_row(1, "apple", 6, 150));
    let expect = |resolution| {
        vec![conflict(
            ConflictKind::Data,
            "item",
            Op::Delete,
            vec![int(1)],
            resolution,
            current.clone(),
        )]
    };

    let (d, cs) = data_delete_scenario(edit);
    let report = d.apply_ok(&cs, &uniform(Policy::Omit));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(report.conflicts, expect(Resolution::Omit));
    assert_eq!(d.item(1), Some(item_row(1, "apple", 6, 150)));

    let (d, cs) = data_delete_scenario(edit);
    let report = d.apply_ok(&cs, &uniform(Policy::Replace));
    assert_eq!((report.changes, report.applied), (1, 1));
    assert_eq!(report.conflicts, expect(Resolution::Replace));
    assert_eq!(d.item(1), None);

    let (d, cs) = data_delete_scenario(edit);
    assert_eq!(
        d.apply_aborts(&cs, &uniform(Policy::Abort)),
        expect(Resolution::Abort)
    );

    // NewestWins: the target's edit (150) is newer than what the deleter saw (100): keep.
    let (d, cs) = data_delete_scenario(edit);
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(report.conflicts, expect(Resolution::Omit));
    assert_eq!(d.item(1), Some(item_row(1, "apple", 6, 150)));

    // ...but an edit that left the timestamp alone is not newer: the delete wins.
    let (d, cs) = data_delete_scenario("UPDATE item SET qty = 6 WHERE id = 1");
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!((report.changes, report.applied), (1, 1));
    assert_eq!(
        report.conflicts,
        vec![conflict(
            ConflictKind::Data,
            "item",
            Op::Delete,
            vec![int(1)],
            Resolution::Replace,
            Some(item_row(1, "apple", 6, 100)),
        )]
    );
    assert_eq!(d.item(1), None);
}

// ---------------------------------------------------------------------------------------------
// NOTFOUND: the row to update or delete is gone. No policy can replace it (SQLite forbids
// REPLACE here), so every policy but Abort omits the change.

#[test]
fn notfound_under_each_policy() {
    let scenario = || {
        let d = devices();
        let cs = d.source_writes(
            "UPDATE item SET qty = 7, updated = 200 WHERE id = 1;
             DELETE FROM item WHERE id = 2;",
        );
        d.target_writes("DELETE FROM item WHERE id IN (1, 2)");
        (d, cs)
    };
    let expect = |resolution| {
        let mut v = vec![
            conflict(
                ConflictKind::NotFound,
                "item",
                Op::Update,
                vec![int(1)],
                resolution,
                None,
            ),
            conflict(
                ConflictKind::NotFound,
                "item",
                Op::Delete,
                vec![int(2)],
                resolution,
                None,
            ),
        ];
        v.sort_by_key(|c| format!("{:?}", c.pk));
        v
    };
    let sorted = |mut v: Vec<Conflict>| {
        v.sort_by_key(|c| format!("{:?}", c.pk));
        v
    };

    for policy in [Policy::Omit, Policy::Replace, newest("updated")] {
        let (d, cs) = scenario();
        let report = d.apply_ok(&cs, &uniform(policy.clone()));
        assert_eq!((report.changes, report.applied), (2, 0), "{policy:?}");
        assert_eq!(
            sorted(report.conflicts),
            expect(Resolution::Omit),
            "{policy:?}"
        );
        assert_eq!(d.target.rows("item"), Vec::<Vec<Value>>::new());
    }

    let (d, cs) = scenario();
    let conflicts = d.apply_aborts(&cs, &uniform(Policy::Abort));
    assert_eq!(
        conflicts.len(),
        1,
        "the first conflict aborts: {conflicts:?}"
    );
    assert!(expect(Resolution::Abort).contains(&conflicts[0]));
}

// ---------------------------------------------------------------------------------------------
// CONFLICT: an inserted primary key already exists.

fn conflict_scenario(target_updated: i64) -> (Devices, Changeset) {
    let d = devices();
    let cs = d.source_writes("INSERT INTO item VALUES (3, 'pear', 1, 300)");
    d.target_writes(&format!(
        "INSERT INTO item VALUES (3, 'plum', 9, {target_updated})"
    ));
    (d, cs)
}

fn insert_conflict(resolution: Resolution, target_updated: i64) -> Vec<Conflict> {
    vec![conflict(
        ConflictKind::Conflict,
        "item",
        Op::Insert,
        vec![int(3)],
        resolution,
        Some(item_row(3, "plum", 9, target_updated)),
    )]
}

#[test]
fn conflict_under_each_policy() {
    let (d, cs) = conflict_scenario(200);
    let report = d.apply_ok(&cs, &uniform(Policy::Omit));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(report.conflicts, insert_conflict(Resolution::Omit, 200));
    assert_eq!(d.item(3), Some(item_row(3, "plum", 9, 200)));

    let (d, cs) = conflict_scenario(200);
    let report = d.apply_ok(&cs, &uniform(Policy::Replace));
    assert_eq!((report.changes, report.applied), (1, 1));
    assert_eq!(report.conflicts, insert_conflict(Resolution::Replace, 200));
    assert_eq!(d.item(3), Some(item_row(3, "pear", 1, 300)));

    let (d, cs) = conflict_scenario(200);
    assert_eq!(
        d.apply_aborts(&cs, &uniform(Policy::Abort)),
        insert_conflict(Resolution::Abort, 200)
    );

    // NewestWins: 300 beats 200 ...
    let (d, cs) = conflict_scenario(200);
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!(report.conflicts, insert_conflict(Resolution::Replace, 200));
    assert_eq!(d.item(3), Some(item_row(3, "pear", 1, 300)));
    // ... and loses to 400.
    let (d, cs) = conflict_scenario(400);
    let report = d.apply_ok(&cs, &uniform(newest("updated")));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(report.conflicts, insert_conflict(Resolution::Omit, 400));
    assert_eq!(d.item(3), Some(item_row(3, "plum", 9, 400)));
}

// ---------------------------------------------------------------------------------------------
// CONSTRAINT: the change would violate a constraint other than the primary key (here UNIQUE).
// REPLACE is not allowed, so every policy but Abort omits.

#[test]
fn constraint_under_each_policy() {
    let scenario = || {
        let d = devices();
        let cs = d.source_writes(
            "INSERT INTO person VALUES (2, 'bob@example.com', 200);
             INSERT INTO item VALUES (3, 'cherry', 1, 200);",
        );
        d.target_writes("INSERT INTO person VALUES (5, 'bob@example.com', 150)");
        (d, cs)
    };
    let expect = |resolution| {
        vec![conflict(
            ConflictKind::Constraint,
            "person",
            Op::Insert,
            vec![int(2)],
            resolution,
            None,
        )]
    };
    for policy in [Policy::Omit, Policy::Replace, newest("updated")] {
        let (d, cs) = scenario();
        let report = d.apply_ok(&cs, &uniform(policy.clone()));
        assert_eq!((report.changes, report.applied), (2, 1), "{policy:?}");
        assert_eq!(report.conflicts, expect(Resolution::Omit), "{policy:?}");
        assert_eq!(
            d.target.rows("person"),
            vec![
                vec![int(1), text("ann@example.com"), int(100)],
                vec![int(5), text("bob@example.com"), int(150)],
            ]
        );
        assert_eq!(d.item(3), Some(item_row(3, "cherry", 1, 200)));
    }

    let (d, cs) = scenario();
    assert_eq!(
        d.apply_aborts(&cs, &uniform(Policy::Abort)),
        expect(Resolution::Abort)
    );
}

#[test]
fn constraint_from_an_update() {
    let d = devices();
    let cs = d.source_writes("UPDATE person SET email = 'carl@example.com' WHERE id = 1");
    d.target_writes("INSERT INTO person VALUES (7, 'carl@example.com', 150)");
    let report = d.apply_ok(&cs, &uniform(Policy::Replace));
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(
        report.conflicts,
        vec![conflict(
            ConflictKind::Constraint,
            "person",
            Op::Update,
            vec![int(1)],
            Resolution::Omit,
            None,
        )]
    );
    assert_eq!(
        d.target.rows("person")[0],
        vec![int(1), text("ann@example.com"), int(100)]
    );
}

// ---------------------------------------------------------------------------------------------
// FOREIGN_KEY: violations left after the whole changeset. Reported once, and always fatal:
// committing would leave orphans. The apply reports it as an abort with its report (SQLite
// itself returns SQLITE_CONSTRAINT here, not SQLITE_ABORT).

#[test]
fn foreign_key_violation_aborts_under_every_policy_and_fk_mode() {
    for fk_no_action in [false, true] {
        for policies in [
            PolicySet::uniform(Policy::Omit),
            PolicySet::uniform(Policy::Replace),
            PolicySet::uniform(Policy::Abort),
            PolicySet::uniform(newest("updated")).with_table("child", newest("label")),
        ] {
            let d = devices();
            // The source adds two children to parent 1 ...
            let cs = d.source_writes(
                "INSERT INTO child VALUES (12, 1, 'new1'), (13, 1, 'new2');
                 INSERT INTO item VALUES (3, 'cherry', 1, 200);",
            );
            // ... which the target has deleted (its children cascade away).
            d.target_writes("DELETE FROM parent WHERE id = 1");
            let options = ApplyOptions {
                fk_no_action,
                ..ApplyOptions::with_policies(policies.clone())
            };
            let conflicts = d.apply_aborts(&cs, &options);
            assert_eq!(
                conflicts,
                vec![fk_conflict()],
                "{policies:?}, fk_no_action={fk_no_action}"
            );
            assert_eq!(d.item(3), None);
        }
    }
}

#[test]
fn foreign_keys_are_enforced_by_default_in_the_bundled_sqlite() {
    let d = devices();
    let on: i64 = d
        .target
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(on, 1, "the FOREIGN_KEY tests rely on this");
}

/// The source deletes parent 1; the session records the cascaded child deletes as indirect
/// changes.
fn cascade_delete_scenario() -> (Devices, Changeset) {
    let d = devices();
    let cs = d.source_writes("DELETE FROM parent WHERE id = 1");
    let changes = cs.inspect().unwrap();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|c| c.op == Op::Delete && c.indirect == (c.table == "child"))
    );
    (d, cs)
}

fn children(d: &Devices) -> Vec<Vec<Value>> {
    d.target.rows("child")
}

#[test]
fn cascaded_delete_applies_cleanly_with_fk_no_action() {
    let (d, cs) = cascade_delete_scenario();
    let options = ApplyOptions {
        fk_no_action: true,
        ..uniform(Policy::Abort)
    };
    let report = d.apply_ok(&cs, &options);
    assert_eq!((report.changes, report.applied), (3, 3));
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(d.target.rows("parent"), vec![vec![int(2), text("p2")]]);
    assert_eq!(children(&d), vec![vec![int(20), int(2), text("c")]]);
}

#[test]
fn cascaded_delete_with_fk_actions_runs_the_cascade_first() {
    // With FK actions on, deleting the parent cascades to its children before SQLite reaches
    // the changeset's own child deletes, which then find nothing.
    let (d, cs) = cascade_delete_scenario();
    let report = d.apply_ok(&cs, &uniform(Policy::Omit));
    assert_eq!((report.changes, report.applied), (3, 1));
    let mut conflicts = report.conflicts;
    conflicts.sort_by_key(|c| format!("{:?}", c.pk));
    assert_eq!(
        conflicts,
        vec![
            conflict(
                ConflictKind::NotFound,
                "child",
                Op::Delete,
                vec![int(10)],
                Resolution::Omit,
                None
            ),
            conflict(
                ConflictKind::NotFound,
                "child",
                Op::Delete,
                vec![int(11)],
                Resolution::Omit,
                None
            ),
        ]
    );
    assert_eq!(d.target.rows("parent"), vec![vec![int(2), text("p2")]]);
    assert_eq!(children(&d), vec![vec![int(20), int(2), text("c")]]);

    // Under Abort that NOTFOUND rejects the whole (perfectly consistent) changeset.
    let (d, cs) = cascade_delete_scenario();
    let conflicts = d.apply_aborts(&cs, &uniform(Policy::Abort));
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].kind, ConflictKind::NotFound);
    assert_eq!(conflicts[0].table, "child");
}

#[test]
fn deleting_a_parent_that_gained_a_child_on_the_target() {
    // The target added child 12 to parent 1; the source's changeset does not know it.
    let scenario = || {
        let (d, cs) = cascade_delete_scenario();
        d.target_writes("INSERT INTO child VALUES (12, 1, 'late')");
        (d, cs)
    };

    // FK actions on: the cascade removes the unknown child too.
    let (d, cs) = scenario();
    let report = d.apply_ok(&cs, &uniform(Policy::Omit));
    assert_eq!(report.changes, 3);
    assert_eq!(children(&d), vec![vec![int(20), int(2), text("c")]]);

    // FK actions off: the late child would be orphaned, so the apply is rejected whole.
    let (d, cs) = scenario();
    let options = ApplyOptions {
        fk_no_action: true,
        ..uniform(Policy::Omit)
    };
    assert_eq!(d.apply_aborts(&cs, &options), vec![fk_conflict()]);
}

#[test]
fn replacing_a_conflicting_parent_insert_cascades_unless_fk_no_action() {
    // Both devices created parent 3; the target also gave it a child.
    let scenario = || {
        let d = devices();
        let cs = d.source_writes("INSERT INTO parent VALUES (3, 'from source')");
        d.target_writes(
            "INSERT INTO parent VALUES (3, 'from target');
             INSERT INTO child VALUES (30, 3, 'kid');",
        );
        (d, cs)
    };
    let expected = vec![conflict(
        ConflictKind::Conflict,
        "parent",
        Op::Insert,
        vec![int(3)],
        Resolution::Replace,
        Some(vec![int(3), text("from target")]),
    )];

    // REPLACE is executed as DELETE + INSERT: with FK actions on, the delete cascades.
    let (d, cs) = scenario();
    let report = d.apply_ok(&cs, &uniform(Policy::Replace));
    assert_eq!(report.conflicts, expected);
    assert_eq!(
        d.target.rows("parent")[2],
        vec![int(3), text("from source")]
    );
    assert!(!children(&d).iter().any(|c| c[0] == int(30)), "child wiped");

    let (d, cs) = scenario();
    let options = ApplyOptions {
        fk_no_action: true,
        ..uniform(Policy::Replace)
    };
    let report = d.apply_ok(&cs, &options);
    assert_eq!(report.conflicts, expected);
    assert_eq!(
        d.target.rows("parent")[2],
        vec![int(3), text("from source")]
    );
    assert!(children(&d).contains(&vec![int(30), int(3), text("kid")]));
}

// ---------------------------------------------------------------------------------------------
// Per-table overrides.

/// DATA conflicts on `item` and on `person` in one changeset.
fn two_table_scenario() -> (Devices, Changeset) {
    let d = devices();
    let cs = d.source_writes(
        "UPDATE item SET qty = 7, updated = 200 WHERE id = 1;
         UPDATE person SET email = 'ann@source.org', updated = 200 WHERE id = 1;",
    );
    d.target_writes(
        "UPDATE item SET qty = 6, updated = 150 WHERE id = 1;
         UPDATE person SET email = 'ann@target.org', updated = 300 WHERE id = 1;",
    );
    (d, cs)
}

#[test]
fn per_table_override_decides_for_its_table_only() {
    let (d, cs) = two_table_scenario();
    let policies = PolicySet::uniform(Policy::Omit).with_table("item", Policy::Replace);
    let report = d.apply_ok(&cs, &ApplyOptions::with_policies(policies));
    assert_eq!((report.changes, report.applied), (2, 1));
    let mut conflicts = report.conflicts;
    conflicts.sort_by(|a, b| a.table.cmp(&b.table));
    assert_eq!(
        conflicts,
        vec![
            conflict(
                ConflictKind::Data,
                "item",
                Op::Update,
                vec![int(1)],
                Resolution::Replace,
                Some(item_row(1, "apple", 6, 150)),
            ),
            conflict(
                ConflictKind::Data,
                "person",
                Op::Update,
                vec![int(1)],
                Resolution::Omit,
                Some(vec![int(1), text("ann@target.org"), int(300)]),
            ),
        ]
    );
    assert_eq!(d.item(1), Some(item_row(1, "apple", 7, 200)));
    assert_eq!(
        d.target.rows("person"),
        vec![vec![int(1), text("ann@target.org"), int(300)]]
    );

    // NewestWins as an override: person's target (300) is newer than the source (200).
    let (d, cs) = two_table_scenario();
    let policies = PolicySet::uniform(Policy::Replace).with_table("person", newest("updated"));
    let report = d.apply_ok(&cs, &ApplyOptions::with_policies(policies));
    assert_eq!((report.changes, report.applied), (2, 1));
    assert_eq!(d.item(1), Some(item_row(1, "apple", 7, 200)));
    assert_eq!(
        d.target.rows("person"),
        vec![vec![int(1), text("ann@target.org"), int(300)]]
    );
}

#[test]
fn an_abort_override_rejects_the_whole_changeset() {
    let (d, cs) = two_table_scenario();
    let policies = PolicySet::uniform(Policy::Replace).with_table("person", Policy::Abort);
    let conflicts = d.apply_aborts(&cs, &ApplyOptions::with_policies(policies));
    let last = conflicts.last().unwrap();
    assert_eq!(
        (last.table.as_str(), last.resolution),
        ("person", Resolution::Abort)
    );
}

#[test]
fn a_changeset_without_conflicts_reports_none() {
    let d = devices();
    let cs = d.source_writes(
        "UPDATE item SET qty = 0 WHERE id = 2;
         INSERT INTO child VALUES (21, 2, NULL);
         DELETE FROM person WHERE id = 1;",
    );
    let report = d.apply_ok(&cs, &uniform(Policy::Abort));
    assert_eq!(
        report,
        ApplyReport {
            changes: 3,
            applied: 3,
            conflicts: vec![],
        }
    );
    assert_eq!(d.target.dump(), d.source.dump());
    assert!(children(&d).contains(&vec![int(21), int(2), null()]));
}

// ---------------------------------------------------------------------------------------------
// Schema mismatches are refused before SQLite sees the changeset (SQLite itself would skip the
// table silently).

fn schema_error(target_schema: &str, cs_sql: &str) -> SchemaError {
    let source = TempDb::new(SCHEMA);
    let cs = record(&source.conn, cs_sql);
    let target = TempDb::new(target_schema);
    let before = target.snapshot();
    let err = apply(&target.conn, &cs, &uniform(Policy::Replace)).unwrap_err();
    before.assert_unchanged(&target);
    match err {
        ApplyError::Schema(e) => e,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[test]
fn unknown_table_changes_nothing() {
    // `item` is missing; `parent`'s change would apply, but nothing may.
    let err = schema_error(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        "INSERT INTO parent VALUES (3, 'p3'); INSERT INTO item VALUES (3, 'x', 1, 1);",
    );
    assert!(
        matches!(&err, SchemaError::UnknownTable { table } if table == "item"),
        "{err:?}"
    );
}

#[test]
fn column_count_mismatch_changes_nothing() {
    let err = schema_error(
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, updated INTEGER,
                           extra TEXT);
         INSERT INTO item VALUES (1, 'apple', 5, 100, NULL);",
        "UPDATE item SET qty = 1 WHERE id = 1",
    );
    assert!(
        matches!(
            &err,
            SchemaError::ColumnCountMismatch { table, changeset: 4, database: 5 } if table == "item"
        ),
        "{err:?}"
    );
}

#[test]
fn primary_key_mismatch_changes_nothing() {
    let err = schema_error(
        "CREATE TABLE item(id INTEGER, name TEXT PRIMARY KEY, qty INTEGER, updated INTEGER);
         INSERT INTO item VALUES (1, 'apple', 5, 100);",
        "UPDATE item SET qty = 1 WHERE id = 1",
    );
    assert!(
        matches!(
            &err,
            SchemaError::PrimaryKeyMismatch { table, changeset, database }
                if table == "item" && changeset == &vec![0] && database == &vec![1]
        ),
        "{err:?}"
    );
}

#[test]
fn newest_wins_on_a_missing_column_changes_nothing() {
    let d = devices();
    let cs = d.source_writes("UPDATE item SET qty = 7 WHERE id = 1");
    let before = d.target.snapshot();
    let err = d
        .apply(&cs, &uniform(newest("no_such_column")))
        .unwrap_err();
    before.assert_unchanged(&d.target);
    assert!(
        matches!(
            &err,
            ApplyError::Schema(SchemaError::UnknownColumn { table, column })
                if table == "item" && column == "no_such_column"
        ),
        "{err:?}"
    );
}

#[test]
fn undecodable_changeset_changes_nothing() {
    let d = devices();
    let cs = d.source_writes("INSERT INTO item VALUES (3, 'cherry', 1, 200)");
    let mut bytes = cs.into_bytes();
    bytes.truncate(bytes.len() - 3);
    let before = d.target.snapshot();
    let err = d
        .apply(&Changeset::from_bytes(bytes), &uniform(Policy::Replace))
        .unwrap_err();
    before.assert_unchanged(&d.target);
    assert!(matches!(err, ApplyError::Decode(_)), "{err:?}");
}

#[test]
fn table_names_match_without_regard_to_case_as_in_sqlite() {
    // SQLite resolves `Item` and `item` to the same table, and so does its apply.
    let source = TempDb::new("CREATE TABLE Item(id INTEGER PRIMARY KEY, v TEXT);");
    let cs = record(&source.conn, "INSERT INTO item VALUES (1, 'x')");
    assert_eq!(cs.inspect().unwrap()[0].table, "Item");
    let target = TempDb::new("CREATE TABLE item(id INTEGER PRIMARY KEY, v TEXT);");
    let report = apply(&target.conn, &cs, &uniform(Policy::Abort)).unwrap();
    assert_eq!((report.changes, report.applied), (1, 1));
    assert_eq!(target.rows("item"), vec![vec![int(1), text("x")]]);
}

#[test]
fn conflicts_while_undoing_describe_the_inverted_change() {
    // A device undoes its own insert (ApplyOptions::invert) after the row was edited remotely:
    // the undo is a DELETE whose old values no longer match.
    let d = devices();
    let cs = d.source_writes("INSERT INTO item VALUES (3, 'pear', 1, 300)");
    d.target_writes("INSERT INTO item VALUES (3, 'pear', 2, 400)");
    let options = ApplyOptions {
        invert: true,
        ..uniform(Policy::Omit)
    };
    let report = d.apply_ok(&cs, &options);
    assert_eq!((report.changes, report.applied), (1, 0));
    assert_eq!(
        report.conflicts,
        vec![conflict(
            ConflictKind::Data,
            "item",
            Op::Delete,
            vec![int(3)],
            Resolution::Omit,
            Some(item_row(3, "pear", 2, 400)),
        )]
    );
    assert_eq!(d.item(3), Some(item_row(3, "pear", 2, 400)));

    // Replace forces the undo through.
    let options = ApplyOptions {
        invert: true,
        ..uniform(Policy::Replace)
    };
    let report = d.apply_ok(&cs, &options);
    assert_eq!((report.changes, report.applied), (1, 1));
    assert_eq!(d.item(3), None);
}

#[test]
fn changesets_may_not_touch_internal_tables() {
    // A session that does not filter internal tables (a buggy or hostile client) records its
    // outbox; applied on a server, it would rewrite the server's own bookkeeping.
    let schema = "CREATE TABLE _sync_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                  INSERT INTO _sync_meta VALUES ('head_seq', 7);
                  CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);";
    let source = TempDb::new(schema);
    let cs = record(
        &source.conn,
        "UPDATE _sync_meta SET value = 0 WHERE key = 'head_seq';
         INSERT INTO notes VALUES (1, 'hello');",
    );
    let target = TempDb::new(schema);
    let before = target.snapshot();
    let err = apply(&target.conn, &cs, &uniform(Policy::Replace)).unwrap_err();
    before.assert_unchanged(&target);
    assert!(
        matches!(&err, ApplyError::Schema(SchemaError::InternalTable { table }) if table == "_sync_meta"),
        "{err:?}"
    );
}
