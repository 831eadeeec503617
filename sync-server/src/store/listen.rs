//! Frames announced by other nodes: one LISTEN connection per node (not pooled), reconnected
//! after a PostgreSQL restart, each notification handed to a callback — the event hub for log
//! entries, the catalog's staleness flag for catalog writes. A notification lost while the
//! connection was down costs only latency: every request catches its file up from the store
//! anyway; the `/events` streams also re-read the head when the listener reconnects.

use super::pg::{CHANNEL, PgStore};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// One announced frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// The file (0: the catalog).
    pub file: i64,
    /// Its new version.
    pub version: i64,
    /// The log seq the frame appended (0: none).
    pub seq: i64,
}

fn parse(payload: &str) -> Option<Announced> {
    let mut it = payload.split(' ').map(str::parse::<i64>);
    Some(Announced {
        file: it.next()?.ok()?,
        version: it.next()?.ok()?,
        seq: it.next()?.ok()?,
    })
}

/// Listens until the store is dropped, calling `on_frame` for each announced frame and
/// `on_reconnect` each time the connection is (re-)established.
pub fn spawn(
    store: &Arc<PgStore>,
    on_frame: impl Fn(Announced) + Send + Sync + 'static,
    on_reconnect: impl Fn() + Send + Sync + 'static,
) {
    let config = store.config().clone();
    store.spawn(async move {
        loop {
            match listen_once(&config, &on_frame, &on_reconnect).await {
                Ok(()) => tracing::warn!("the store's LISTEN connection ended; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "the store's LISTEN connection failed; reconnecting")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

async fn listen_once(
    config: &tokio_postgres::Config,
    on_frame: &(impl Fn(Announced) + Send + Sync),
    on_reconnect: &(impl Fn() + Send + Sync),
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    on_reconnect();
    while let Some(payload) = rx.recv().await {
        if let Some(a) = parse(&payload) {
            on_frame(a);
        }
    }
    driver.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_parse() {
        let a = super::parse("7 12 5").unwrap();
        assert_eq!((a.file, a.version, a.seq), (7, 12, 5));
        assert!(super::parse("7 x 5").is_none());
        assert!(super::parse("7").is_none());
    }
}
