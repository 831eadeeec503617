//! The desktop app's real UI, driven headlessly with `egui_kittest` (through AccessKit, as a
//! screen reader would find the widgets): two app instances — two devices of one user, each
//! with its own local copy — against a real sync-server on 127.0.0.1:0 (in-process), real
//! SQLite files, real HTTP.
//!
//! | test | what a user would notice |
//! |---|---|
//! | `a_note_typed_in_one_window_appears_in_the_other` | a note typed and saved in one window shows in the other's list, no click there (background sync, server events, the watched query); found by search there |
//! | `an_offline_edit_is_pending_then_synced_after_reconnecting` | with the server down the status says offline and `Pending: 1`; once it is back, "Sync now" pushes it: `Pending: 0`, synced, and the other window shows the edit |
//! | `cli`: `the_first_run_makes_the_copy_and_later_runs_open_it_offline`, `a_first_run_without_settings_names_them_and_creates_nothing` | the command line: init, then open offline; a first run without `--server`/`--token`/`--database` names the missing ones, exits non-zero, creates no file |
//! | `a_rejected_edit_waits_in_the_panel_to_be_redone_or_discarded` | two windows edit one note under the server's `reject` policy: the later one's edit is rejected and listed with Redo/Discard; Redo lands it everywhere, Discard of another leaves the server's row |

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use notes_desktop::config::client_config;
use notes_desktop::{NotesApp, Options, ui};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use sync_client::{RemoteConfig, SyncClient};
use sync_server::ServerConfig;
use sync_testkit::{Admin, Blocking};

mod cli;
mod conflicts;
mod sync;

/// A sync-server in this process, on a data directory of its own, that can be stopped and
/// started again on the same port (so the windows' stored URL stays valid).
pub struct Server {
    data: tempfile::TempDir,
    addr: SocketAddr,
    running: Blocking,
    adjust: fn(&mut ServerConfig),
}

impl Server {
    pub fn start(adjust: fn(&mut ServerConfig)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = sync_testkit::config(data.path());
        adjust(&mut config);
        let running = Blocking::start(config);
        let addr = running.server().expect("started").addr;
        Server {
            data,
            addr,
            running,
            adjust,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: clients get "connection refused".
    pub fn stop(&mut self) {
        self.running.stop();
    }

    /// Serves again, same data, same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut config = sync_testkit::config(self.data.path());
        config.listen = self.addr;
        (self.adjust)(&mut config);
        self.running = Blocking::start(config);
    }

    /// Database `notes` of user alice, and a token for each of her `devices`.
    pub fn tokens(&self, devices: &[&str]) -> Vec<String> {
        let admin = Admin(self.data.path());
        let mut tokens = vec![admin.setup("alice", "notes", devices[0])];
        for d in &devices[1..] {
            tokens.push(admin.token("alice", d));
        }
        tokens
    }
}

/// One app window on a new local copy `dir/file`, initialised from `server` with `token` as
/// the binary does on its first run.
pub fn window(
    server: &Server,
    dir: &Path,
    file: &str,
    token: &str,
    options: Options,
) -> Harness<'static, NotesApp> {
    let remote = RemoteConfig {
        url: server.base(),
        token: token.to_string(),
        database: "notes".into(),
    };
    let client = SyncClient::init(dir.join(file), remote, client_config()).expect("init");
    let app = NotesApp::new(client, options).expect("the app starts");
    let mut h = Harness::builder()
        .with_size([1000.0, 680.0])
        .build_ui_state(|ui, app: &mut NotesApp| ui::draw(ui, app), app);
    settle(&mut h);
    h
}

/// A few frames: enough for queued input to be handled and the result drawn.
pub fn settle(h: &mut Harness<'_, NotesApp>) {
    h.run_steps(3);
}

/// Steps the window until `cond` holds (deliveries from the client's threads land between
/// frames), or fails after 20 s naming `what`.
pub fn wait_for(
    h: &mut Harness<'_, NotesApp>,
    what: &str,
    cond: impl Fn(&Harness<'_, NotesApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.step();
        if cond(h) {
            return;
        }
        if Instant::now() > deadline {
            let labels: Vec<String> = h
                .query_all_by(|_| true)
                .filter_map(|n| n.accesskit_node().label())
                .collect();
            panic!(
                "timed out waiting for {what}; state: {:?}, message: {:?}; labels: {labels:?}",
                h.state().status,
                h.state().message
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a widget labelled exactly `label` is on screen.
pub fn shows(h: &Harness<'_, NotesApp>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

/// Clicks the widget labelled `label` and lets the window handle it.
pub fn click(h: &mut Harness<'_, NotesApp>, label: &str) {
    h.get_by_label(label).click();
    settle(h);
}

/// Types `text` into the text field labelled `label` (after clearing it), as a user would.
pub fn type_into(h: &mut Harness<'_, NotesApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    settle(h);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.key_press(egui::Key::Backspace);
    settle(h);
    h.get_by_label(label).type_text(text);
    settle(h);
}

/// Types a new note and saves it.
pub fn add_note(h: &mut Harness<'_, NotesApp>, title: &str, body: &str) {
    click(h, "New note");
    type_into(h, "Title", title);
    type_into(h, "Body", body);
    click(h, "Save");
    assert!(!h.state().editor.dirty, "saved: {:?}", h.state().message);
}
