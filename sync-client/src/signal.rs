//! [`Signal`]: a wake-up flag a thread can wait on with a timeout — how the client and a
//! finished sync tell the background threads there is work, without sharing any lock with
//! them.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A wake-up flag threads can wait on with a timeout.
#[derive(Default)]
pub(crate) struct Signal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    pub(crate) fn wake(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until woken or `timeout`; clears the flag. True when woken.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |set| !*set)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, false)
    }
}
