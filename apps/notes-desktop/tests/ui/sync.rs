//! Notes travel between windows, live and after an offline stretch.

use super::*;

#[test]
fn a_note_typed_in_one_window_appears_in_the_other() {
    let server = Server::start(|_| {});
    let tokens = server.tokens(&["laptop", "desktop"]);
    let dir = tempfile::tempdir().unwrap();
    let mut a = window(&server, dir.path(), "a.db", &tokens[0], Options::default());
    let mut b = window(&server, dir.path(), "b.db", &tokens[1], Options::default());
    wait_for(&mut b, "b synced", |b| shows(b, "Status: synced"));

    add_note(&mut a, "Groceries", "oat milk, lemons, basil");
    // The save is local: a's own watched query delivers it, whatever the network does.
    wait_for(&mut a, "the note in a's list", |a| shows(a, "Groceries"));

    // No click in b: a's background sync pushes, the server's event stream wakes b's sync,
    // and b's watched query delivers the new row.
    wait_for(&mut b, "the note in b's list", |b| shows(b, "Groceries"));
    click(&mut b, "Groceries");
    assert_eq!(b.state().editor.body, "oat milk, lemons, basil");
    assert_eq!(
        b.get_by_label("Body").value().as_deref(),
        Some("oat milk, lemons, basil")
    );

    // Full-text search in b finds it by a word of its body, and not another word.
    add_note(&mut b, "Reading list", "The Dispossessed");
    type_into(&mut b, "Search", "lemons");
    wait_for(&mut b, "one match", |b| shows(b, "1 found"));
    assert!(shows(&b, "Groceries") && !shows(&b, "Reading list"));
    type_into(&mut b, "Search", "");
    wait_for(&mut b, "every note listed", |b| shows(b, "2 notes"));

    // An edit of the note in b shows in a's editor (a is not typing in it). (Wait for b's
    // second note first: a list that grows under the pointer moves the rows.)
    wait_for(&mut a, "b's note in a", |a| shows(a, "Reading list"));
    click(&mut a, "Groceries");
    assert_eq!(a.state().editor.title, "Groceries");
    click(&mut b, "Groceries");
    type_into(&mut b, "Body", "oat milk, lemons, basil, coffee");
    click(&mut b, "Save");
    wait_for(&mut a, "b's edit in a's editor", |a| {
        a.state().editor.body == "oat milk, lemons, basil, coffee"
    });
}

#[test]
fn an_offline_edit_is_pending_then_synced_after_reconnecting() {
    let mut server = Server::start(|_| {});
    let tokens = server.tokens(&["laptop", "desktop"]);
    let dir = tempfile::tempdir().unwrap();
    let mut a = window(&server, dir.path(), "a.db", &tokens[0], Options::default());
    let mut b = window(&server, dir.path(), "b.db", &tokens[1], Options::default());
    add_note(&mut a, "Trip", "train at 9");
    wait_for(&mut b, "the note in b", |b| shows(b, "Trip"));
    wait_for(&mut a, "a synced", |a| {
        shows(a, "Trip") && shows(a, "Status: synced") && shows(a, "Pending: 0")
    });

    server.stop();
    click(&mut a, "Trip");
    type_into(&mut a, "Body", "train at 10, platform 4");
    click(&mut a, "Save");
    // The write is local and durable; the status subscription says it waits, and the failed
    // attempt says offline.
    wait_for(&mut a, "pending while offline", |a| {
        shows(a, "Pending: 1") && shows(a, "Status: offline")
    });
    assert_eq!(a.state().status.online, Some(false));
    assert!(a.state().status.last_error.is_some());
    assert_eq!(b.state().notes[0].body, "train at 9", "b has not seen it");

    server.restart();
    click(&mut a, "Sync now");
    wait_for(&mut a, "synced after reconnecting", |a| {
        shows(a, "Pending: 0") && shows(a, "Status: synced")
    });
    assert_eq!(a.state().status.last_error, None);
    // b reconnects by itself (its event stream and sync back off and retry).
    wait_for(&mut b, "the edit in b", |b| {
        b.state().notes.first().map(|n| n.body.as_str()) == Some("train at 10, platform 4")
    });
}
