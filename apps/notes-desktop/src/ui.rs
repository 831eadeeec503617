//! Draws a [`NotesApp`] with egui, and turns clicks and typing into its actions. Every widget
//! has an accessible name (the label next to a text field names it), which is how a screen
//! reader — and the UI tests, through AccessKit — find them.
//!
//! | where | what |
//! |---|---|
//! | top bar | "Sync now", `Status: …` (from the status subscription), `Pending: N`, rejected and conflict counts, the last message |
//! | left | `Search` (full-text, titles and bodies), "New note", the notes list (newest first, or the matches) |
//! | bottom | the conflicts panel: rejected transactions with "Redo #id" / "Discard #id", conflict records with "Clear conflicts" |
//! | centre | the editor: `Title`, `Body`, "Save", "Delete" |

use crate::app::NotesApp;
use egui::{Align, Layout, RichText, ScrollArea, TextEdit};

/// The label of a note in the list (its title, or a stand-in for an empty one).
pub fn list_label(title: &str) -> String {
    if title.trim().is_empty() {
        "(untitled)".into()
    } else {
        title.to_string()
    }
}

/// Draws the whole window into `ui` and applies what the user did.
pub fn draw(ui: &mut egui::Ui, app: &mut NotesApp) {
    app.poll(ui.ctx());
    egui::Panel::top("status").show(ui, |ui| status_bar(ui, app));
    egui::Panel::left("notes")
        .default_size(260.0)
        .show(ui, |ui| notes_list(ui, app));
    egui::Panel::bottom("conflicts")
        .resizable(true)
        .show(ui, |ui| conflicts_panel(ui, app));
    egui::CentralPanel::default().show(ui, |ui| editor(ui, app));
}

fn status_bar(ui: &mut egui::Ui, app: &mut NotesApp) {
    ui.horizontal(|ui| {
        let sync = ui.add_enabled(!app.syncing, egui::Button::new("Sync now"));
        if sync.clicked() {
            app.sync_now();
        }
        ui.separator();
        ui.label(format!("Status: {}", app.sync_state()));
        ui.separator();
        ui.label(format!("Pending: {}", app.status.pending_transactions));
        ui.separator();
        ui.label(format!("Rejected: {}", app.status.rejected));
        ui.label(format!("Conflicts: {}", app.status.conflicts));
        if let Some(e) = &app.status.last_error {
            ui.separator();
            ui.label(RichText::new(format!("Last error: {e}")).weak())
                .on_hover_text(e.as_str());
        }
    });
    if let Some(m) = &app.message {
        ui.label(RichText::new(m).italics());
    }
}

fn notes_list(ui: &mut egui::Ui, app: &mut NotesApp) {
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        let mut text = app.search.clone();
        let field = ui.add(
            TextEdit::singleline(&mut text)
                .hint_text("words, \"phrase\", prefix*")
                .desired_width(f32::INFINITY),
        );
        if field.labelled_by(label.id).changed() {
            app.set_search(&text);
        }
    });
    ui.horizontal(|ui| {
        if ui.button("New note").clicked() {
            app.new_note();
        }
        let shown = app.visible_notes().len();
        match &app.hits {
            Some(_) => ui.label(format!("{shown} found")),
            None => ui.label(format!("{shown} notes")),
        };
    });
    ui.separator();
    let mut picked = None;
    ScrollArea::vertical().show(ui, |ui| {
        for note in app.visible_notes() {
            let selected = app.editor.id == Some(note.id);
            if ui
                .selectable_label(selected, list_label(&note.title))
                .clicked()
            {
                picked = Some(note.id);
            }
        }
    });
    if let Some(id) = picked {
        app.select(id);
    }
}

fn editor(ui: &mut egui::Ui, app: &mut NotesApp) {
    let heading = match app.editor.id {
        Some(_) => "Edit note",
        None => "New note (not saved yet)",
    };
    ui.heading(heading);
    let title = ui.label("Title");
    let t = ui.add(TextEdit::singleline(&mut app.editor.title).desired_width(f32::INFINITY));
    if t.labelled_by(title.id).changed() {
        app.editor.dirty = true;
    }
    let body = ui.label("Body");
    let b = ui.add(
        TextEdit::multiline(&mut app.editor.body)
            .desired_rows(12)
            .desired_width(f32::INFINITY),
    );
    if b.labelled_by(body.id).changed() {
        app.editor.dirty = true;
    }
    ui.horizontal(|ui| {
        if ui.button("Save").clicked() {
            app.save();
        }
        if ui.button("Delete").clicked() {
            app.delete();
        }
        if app.editor.dirty {
            ui.label(RichText::new("unsaved").weak());
        }
    });
}

fn conflicts_panel(ui: &mut egui::Ui, app: &mut NotesApp) {
    ui.heading("Conflicts and rejected transactions");
    let Some(details) = app.details.clone() else {
        return;
    };
    if details.rejected.is_empty()
        && details.local_conflicts.is_empty()
        && details.server_conflicts.is_empty()
    {
        ui.label("None: every change was kept.");
        return;
    }
    ScrollArea::vertical().max_height(180.0).show(ui, |ui| {
        for r in &details.rejected {
            ui.horizontal(|ui| {
                let blocked = r
                    .conflicts
                    .last()
                    .map(|c| format!(" ({:?} on {})", c.kind, c.table))
                    .unwrap_or_default();
                ui.label(format!(
                    "Rejected #{} by the {}: {}{blocked} — {} change(s)",
                    r.id,
                    r.by.as_str(),
                    r.reason.as_str(),
                    r.changes
                ))
                .on_hover_text(&r.detail);
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if ui.button(format!("Discard #{}", r.id)).clicked() {
                        app.discard(r.id);
                    }
                    if ui.button(format!("Redo #{}", r.id)).clicked() {
                        app.redo(r.id);
                    }
                });
            });
        }
        for c in &details.server_conflicts {
            ui.label(format!(
                "Server conflict on {} ({:?}): {:?}",
                c.conflict.table, c.conflict.kind, c.conflict.resolution
            ));
        }
        for c in &details.local_conflicts {
            ui.label(format!(
                "Local conflict on {}: {} — {}",
                c.table,
                c.kind.as_str(),
                c.detail
            ));
        }
        if !(details.server_conflicts.is_empty() && details.local_conflicts.is_empty())
            && ui.button("Clear conflicts").clicked()
        {
            app.clear_conflicts();
        }
    });
}
