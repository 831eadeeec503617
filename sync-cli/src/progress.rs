//! Progress on standard error, while a long step runs: a one-line bar redrawn in place
//! (`pushing  [########--------]  52%  1,204 / 2,310 transactions`), only when standard error
//! is a terminal — piped or redirected output stays quiet, so scripts and logs see only the
//! final report. The line is erased when the step ends.
//!
//! Where a client is open, the bar follows its status subscription
//! ([`SyncClient::watch_status`]: push, pull, bootstrap and upgrade phases with their
//! progress); `init` feeds it the snapshot download's bytes, and `init --adopt`, which has no
//! measurable steps, shows the time spent.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_client::{Progress, ProgressUnit, Subscription, SyncClient, SyncPhase, SyncStatus};

/// Redraws at most this often.
const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 24;

/// A progress line on standard error (does nothing when it is not a terminal).
#[derive(Clone)]
pub struct Bar {
    state: Option<Arc<Mutex<State>>>,
}

struct State {
    drawn_at: Option<Instant>,
    drawn: bool,
    done: bool,
    started: Instant,
}

impl Bar {
    /// A bar if standard error is a terminal, otherwise one that stays silent.
    pub fn new() -> Bar {
        Bar {
            state: std::io::stderr().is_terminal().then(|| {
                Arc::new(Mutex::new(State {
                    drawn_at: None,
                    drawn: false,
                    done: false,
                    started: Instant::now(),
                }))
            }),
        }
    }

    /// Shows `label` at `progress` (redraws at most every 100 ms; the first time and the
    /// last step, the whole done, at once).
    pub fn show(&self, label: &str, progress: Option<Progress>) {
        let Some(state) = &self.state else { return };
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let complete = progress.is_some_and(|p| p.total.is_some_and(|t| p.done >= t));
        if s.done || (!complete && s.drawn_at.is_some_and(|t| t.elapsed() < REDRAW)) {
            return;
        }
        let text = line(label, progress, s.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        s.drawn_at = Some(Instant::now());
        s.drawn = true;
    }

    /// Erases the line; nothing is drawn after this.
    pub fn finish(&self) {
        let Some(state) = &self.state else { return };
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.done = true;
        if s.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    /// Whether anything is ever drawn.
    pub fn enabled(&self) -> bool {
        self.state.is_some()
    }
}

/// Redraws a [`Bar`] with no counts (the time spent) from a thread, until dropped.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking `label` on `bar` (no thread when the bar is silent).
    pub fn start(bar: Bar, label: &'static str) -> Ticker {
        if !bar.enabled() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            loop {
                bar.show(label, None);
                match stopped.recv_timeout(REDRAW) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Follows `client`'s sync status on a [`Bar`] until the guard is dropped.
pub struct Follow {
    bar: Bar,
    _subscription: Option<Subscription>,
}

impl Follow {
    /// Starts following (nothing when standard error is not a terminal).
    pub fn start(client: &SyncClient) -> Follow {
        let bar = Bar::new();
        let subscription = if bar.enabled() {
            let shown = bar.clone();
            client
                .watch_status(move |s: &SyncStatus| {
                    if let Some(label) = phase_label(s.phase) {
                        shown.show(label, s.progress);
                    }
                })
                .ok()
        } else {
            None
        };
        Follow {
            bar,
            _subscription: subscription,
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.bar.finish();
    }
}

fn phase_label(phase: SyncPhase) -> Option<&'static str> {
    Some(match phase {
        SyncPhase::Pushing => "pushing",
        SyncPhase::Pulling => "pulling",
        SyncPhase::Bootstrapping => "downloading snapshot",
        SyncPhase::Upgrading => "upgrading",
        _ => return None,
    })
}

/// The text of one progress line.
fn line(label: &str, progress: Option<Progress>, elapsed: Duration) -> String {
    let secs = format!("{:.0}s", elapsed.as_secs_f64());
    let Some(p) = progress else {
        return format!("{label}…  {secs}");
    };
    let amount = |n: u64| match p.unit {
        ProgressUnit::Bytes => bytes(n),
        _ => n.to_string(),
    };
    let unit = match p.unit {
        ProgressUnit::Bytes => "",
        ProgressUnit::Transactions => " transactions",
        ProgressUnit::Entries => " log entries",
    };
    match p.total.filter(|&t| t > 0) {
        Some(total) => {
            let done = p.done.min(total);
            let filled = (done as u128 * WIDTH as u128 / total as u128) as usize;
            format!(
                "{label:<8} [{}{}] {:>3}%  {} / {}{unit}  {secs}",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                done as u128 * 100 / total as u128,
                amount(done),
                amount(total),
            )
        }
        None => format!("{label:<8} {}{unit}  {secs}", amount(p.done)),
    }
}

/// `1.5 MiB`, `812 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_the_share_done_and_the_amounts() {
        let p = Progress {
            done: 3 * 1024 * 1024 / 2,
            total: Some(3 * 1024 * 1024),
            unit: ProgressUnit::Bytes,
        };
        let text = line("snapshot", Some(p), Duration::from_secs(2));
        assert!(text.contains("[############------------]  50%"), "{text}");
        assert!(text.contains("1.5 MiB / 3.0 MiB"), "{text}");
        let p = Progress {
            done: 7,
            total: None,
            unit: ProgressUnit::Entries,
        };
        assert_eq!(
            line("pulling", Some(p), Duration::ZERO),
            "pulling  7 log entries  0s"
        );
        assert_eq!(bytes(812), "812 B");
    }
}
