//! Head notifications: one `tokio::sync::watch` channel per database that has listeners,
//! carrying the newest log seq. A push publishes its seq after COMMIT; each `/events` stream
//! waits on its receiver and sends a `head` event whenever the value moved past what it last
//! sent. A watch channel keeps only the latest value, so a slow client skips intermediate
//! seqs instead of queueing them — events are hints to pull, never data.
//!
//! Channels live here, not in the open-database cache, so that evicting a database does not
//! disconnect its listeners; channels without receivers are pruned periodically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

    /// The databases someone listens to.
    pub fn listened(&self) -> Vec<i64> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drops channels nobody listens to; returns how many remain.
    pub fn prune(&self) -> usize {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.len()
    }
}

/// The caps on open event streams: server-wide and per device. A stream holds a
/// [`StreamSlot`] for as long as it is connected.
#[derive(Debug)]
pub struct StreamSlots {
    total: usize,
    per_device: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_device: HashMap<String, usize>,
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// The server holds as many streams as it allows.
    ServerFull(usize),
    /// The device holds as many streams as one device may.
    DeviceFull(usize),
}

/// One admitted stream; released when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    device: String,
    open: Arc<Mutex<Open>>,
}

impl StreamSlots {
    /// Caps of `total` streams and `per_device` streams per device.
    pub fn new(total: usize, per_device: usize) -> StreamSlots {
        StreamSlots {
            total,
            per_device,
            open: Arc::default(),
        }
    }

    /// Admits a stream of `device`, or says which cap it hit.
    pub fn admit(&self, device: &str) -> Result<StreamSlot, StreamRefused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.total {
            return Err(StreamRefused::ServerFull(self.total));
        }
        let mine = open.by_device.entry(device.to_string()).or_default();
        if *mine >= self.per_device {
            return Err(StreamRefused::DeviceFull(self.per_device));
        }
        *mine += 1;
        open.total += 1;
        Ok(StreamSlot {
            device: device.to_string(),
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_device.get_mut(&self.device) {
            *n -= 1;
            if *n == 0 {
                open.by_device.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_cap_the_server_and_each_device_and_are_given_back() {
        let slots = StreamSlots::new(3, 2);
        let a1 = slots.admit("a").unwrap();
        let _a2 = slots.admit("a").unwrap();
        assert_eq!(slots.admit("a").unwrap_err(), StreamRefused::DeviceFull(2));
        let _b1 = slots.admit("b").unwrap();
        assert_eq!(slots.admit("c").unwrap_err(), StreamRefused::ServerFull(3));
        drop(a1);
        let _c1 = slots.admit("c").unwrap();
        assert_eq!(slots.admit("a").unwrap_err(), StreamRefused::ServerFull(3));
    }

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
