//! Head notifications: one `tokio::sync::watch` channel per database that has listeners,
//! carrying the newest log seq. A push publishes its seq after COMMIT; each `/events` stream
//! waits on its receiver and sends a `head` event whenever the value moved past what it last
//! sent. A watch channel keeps only the latest value, so a slow client skips intermediate
//! seqs instead of queueing them — events are hints to pull, never data.
//!
//! Channels live here, not in the open-database cache, so that evicting a database does not
//! disconnect its listeners; channels without receivers are pruned periodically.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The per-database channels.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<i64, watch::Sender<i64>>>,
}

impl Hub {
    /// Announces that database `id`'s head is now `head` (no-op without listeners).
    pub fn publish(&self, id: i64, head: i64) {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&id) {
            tx.send_if_modified(|v| {
                let newer = head > *v;
                if newer {
                    *v = head;
                }
                newer
            });
        }
    }

    /// A receiver for database `id`. Subscribe *before* reading the current head from the
    /// database and then [`publish`](Hub::publish) it, so no advance can slip in between.
    pub fn subscribe(&self, id: i64) -> watch::Receiver<i64> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops channels nobody listens to; returns how many remain.
    pub fn prune(&self) -> usize {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_subscribers_and_never_goes_back() {
        let hub = Hub::default();
        hub.publish(1, 5); // nobody listens: nothing kept
        assert_eq!(hub.prune(), 0);
        let mut rx = hub.subscribe(1);
        assert_eq!(*rx.borrow_and_update(), 0);
        hub.publish(1, 3);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        hub.publish(1, 2);
        assert!(!rx.has_changed().unwrap());
        drop(rx);
        assert_eq!(hub.prune(), 0);
    }
}
