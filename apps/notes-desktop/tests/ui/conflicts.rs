//! A conflict the server settles by rejecting a transaction shows in the panel, and the panel's
//! Redo and Discard act on it.

use super::*;
use sync_core::engine::policy::{Policy, PolicySet};

/// Windows that sync only on "Sync now", so the test decides whose push comes first.
const MANUAL: Options = Options { background: false };

fn sync(h: &mut Harness<'_, NotesApp>) {
    click(h, "Sync now");
    wait_for(h, "the sync to finish", |h| !h.state().syncing);
    let message = h.state().message.clone().unwrap_or_default();
    assert!(message.starts_with("synced"), "{message}");
}

fn edit(h: &mut Harness<'_, NotesApp>, note: &str, body: &str) {
    click(h, note);
    type_into(h, "Body", body);
    click(h, "Save");
}

#[test]
fn a_rejected_edit_waits_in_the_panel_to_be_redone_or_discarded() {
    let server = Server::start(|c| {
        c.policies = PolicySet::uniform(Policy::Replace).with_table("notes", Policy::Abort);
    });
    let tokens = server.tokens(&["laptop", "desktop"]);
    let dir = tempfile::tempdir().unwrap();
    let mut a = window(&server, dir.path(), "a.db", &tokens[0], MANUAL);
    let mut b = window(&server, dir.path(), "b.db", &tokens[1], MANUAL);
    add_note(&mut a, "Plan", "draft");
    sync(&mut a);
    sync(&mut b);
    assert!(shows(&b, "Plan"));
    assert!(shows(&b, "None: every change was kept."));

    // Both edit the note; a's edit reaches the server first, so b's meets a conflict and the
    // `reject` policy refuses b's transaction, whole.
    edit(&mut a, "Plan", "a's plan");
    edit(&mut b, "Plan", "b's plan");
    sync(&mut a);
    sync(&mut b);
    let rejected = b.state().details.as_ref().unwrap().rejected.clone();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let id = rejected[0].id;
    wait_for(&mut b, "the rejection in the panel", |b| {
        shows(b, "Rejected: 1")
            && b.query_by_label_contains(&format!("Rejected #{id} by the server: policy"))
                .is_some()
    });
    // b shows the server's row now; its own edit waits in the queue.
    wait_for(&mut b, "the server's row in b", |b| {
        b.state().editor.body == "a's plan"
    });
    assert!(shows(&b, &format!("Discard #{id}")));

    // Redo: b's edit goes again, over the current row, and lands everywhere.
    click(&mut b, &format!("Redo #{id}"));
    assert!(!shows(&b, &format!("Redo #{id}")), "gone from the panel");
    wait_for(&mut b, "the redone edit in b's editor", |b| {
        b.state().editor.body == "b's plan"
    });
    sync(&mut b);
    sync(&mut a);
    wait_for(&mut a, "b's redone edit in a", |a| {
        a.state().notes[0].body == "b's plan"
    });

    // Another rejection, discarded this time: b keeps the server's row and the panel empties.
    edit(&mut a, "Plan", "a again");
    edit(&mut b, "Plan", "b again");
    sync(&mut a);
    sync(&mut b);
    let id = b.state().details.as_ref().unwrap().rejected[0].id;
    wait_for(&mut b, "the second rejection", |b| {
        shows(b, &format!("Discard #{id}"))
    });
    click(&mut b, &format!("Discard #{id}"));
    wait_for(&mut b, "an empty panel", |b| {
        shows(b, "Rejected: 0") && !shows(b, &format!("Discard #{id}"))
    });
    assert_eq!(b.state().notes[0].body, "a again");
    assert_eq!(b.state().status.pending_transactions, 0);
}
