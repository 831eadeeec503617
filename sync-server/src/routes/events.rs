//! `GET /v1/databases/{db}/events`: server-sent events. A `head` event on connect and
//! whenever the database's head seq moves past what this stream last sent, a `: keep-alive`
//! comment at the configured interval, and the end of the stream when the server shuts down.
//! Streams are capped server-wide (`503 overloaded`) and per device (`429 too_many_streams`).

use super::DbName;
use crate::error::ApiError;
use crate::events::{StreamRefused, StreamSlot};
use crate::request::RequestNote;
use crate::state::{AppState, Shared};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use sync_core::protocol::VERSION;
use sync_core::protocol::error::ErrorBody;
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::events::{EventsQuery, HEAD_EVENT, HeadEvent};
use tokio::sync::watch;

/// Counts a connected stream for `/metrics` while it lives.
struct Connected(AppState);

impl Connected {
    fn new(state: AppState) -> Self {
        state.shared().metrics.event_streams(1);
        Connected(state)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.shared().metrics.event_streams(-1);
    }
}

struct StreamState {
    head: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    last_sent: Option<i64>,
    _connected: Connected,
    _slot: StreamSlot,
}

/// `GET /v1/databases/{db}/events[?since=SEQ]`.
pub async fn events(
    State(state): State<AppState>,
    DbName(name): DbName,
    note: RequestNote,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))?;
    if q.since.is_some_and(|s| s < 0) {
        return Err(ApiError::bad_request("since must not be negative"));
    }
    let token = crate::state::bearer(&headers)?;
    let (head, slot) = state
        .blocking(move |s: &Shared| {
            let grant = s.authorize(&token, &name, &note)?;
            let slot = s.streams.admit(&grant.device).map_err(|refused| match refused {
                StreamRefused::ServerFull(n) => ApiError::overloaded(format!(
                    "the server has {n} event streams open, its limit; retry shortly"
                )),
                StreamRefused::DeviceFull(n) => ApiError::Wire(
                    ErrorBody::new(
                        ErrorCode::TooManyStreams,
                        format!(
                            "device {:?} already has {n} event streams open, the most one device may; close one",
                            grant.device
                        ),
                    )
                    .with("limit", n as u64),
                ),
            })?;
            // Subscribe first, then read and publish the head: an advance that lands in
            // between is still seen.
            let rx = s.hub.subscribe(grant.database_id);
            let db = s.storage.get(grant.database_id)?;
            let head = db.bounds()?.head_seq;
            s.hub.publish(grant.database_id, head);
            Ok((rx, slot))
        })
        .await?;
    let initial = StreamState {
        head,
        _slot: slot,
        shutdown: state.shutdown_signal(),
        last_sent: None,
        _connected: Connected::new(state.clone()),
    };
    let stream = futures_util::stream::unfold(initial, |mut s| async move {
        loop {
            let current = *s.head.borrow_and_update();
            if s.last_sent.is_none_or(|last| current > last) {
                s.last_sent = Some(current);
                let data = serde_json::to_string(&HeadEvent {
                    v: VERSION,
                    head_seq: current,
                })
                .unwrap_or_default();
                let event = Event::default().event(HEAD_EVENT).data(data);
                return Some((Ok(event), s));
            }
            tokio::select! {
                changed = s.head.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = s.shutdown.wait_for(|down| *down) => return None,
            }
        }
    });
    let keepalive = state.shared().config.events_keepalive;
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive")))
}
