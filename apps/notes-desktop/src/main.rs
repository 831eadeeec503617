//! `notes-desktop DB [--server URL --token TOKEN --database NAME]`: opens the window.

use clap::Parser;
use notes_desktop::config::{Args, open};
use notes_desktop::{NotesApp, Options, ui};

/// The window: eframe calls `ui` for every frame.
struct Window(NotesApp);

impl eframe::App for Window {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        ui::draw(ui, &mut self.0);
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = open(&args)?;
    let app = NotesApp::new(
        client,
        Options {
            background: !args.no_background,
        },
    )?;
    let title = format!("Notes — {}", args.db.display());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(title.clone())
            .with_inner_size([1000.0, 680.0]),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(&title, options, Box::new(|_cc| Ok(Box::new(Window(app)))))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
