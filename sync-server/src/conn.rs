//! Connections: the accept loop, a cap on open connections, and the timeouts that keep a slow
//! or silent client from holding a connection (and what it pins) forever.
//!
//! axum's own `serve` has no header timeout and no idle timeout, so this module serves the
//! router over hyper's HTTP/1.1 connections itself. Each connection is watched by a small
//! state machine fed from two places: the socket wrapper ([`Tracked`]) sees bytes arrive and
//! writes block; the service wrapper sees a request start and its response end. The watchdog
//! then closes a connection that
//!
//! - is idle between requests for longer than `idle_timeout` (gracefully: nothing is lost),
//! - has started sending a request's headers but not finished them within `header_timeout`
//!   (a slow-loris client: dropped),
//! - cannot take a response's bytes for `send_timeout` (a client that stopped reading).
//!
//! Bodies have their own limits (total time and a minimum rate, see [`crate::body`]). Past
//! `max_connections`, a new connection is answered `503 overloaded` and closed at once.

use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use sync_core::protocol::error::ErrorBody;
use sync_core::protocol::error::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long the server waits for connections to finish after it stopped accepting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often each connection's watchdog looks at its state.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The connection limits (from [`crate::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// Between the end of a response and the next request's first byte.
    pub idle_timeout: Duration,
    /// How long a response write may stay blocked (the client reads nothing).
    pub send_timeout: Duration,
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// What a connection is doing, shared by its socket, its service and its watchdog.
#[derive(Debug)]
struct Activity {
    born: Instant,
    phase: AtomicU8,
    /// Milliseconds since `born` when `phase` last changed.
    since_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds since `born` when a write started blocking (0 = not blocked).
    write_blocked_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            phase: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            write_blocked_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, so that 0 can mean "not blocked".
        self.born.elapsed().as_millis() as u64 + 1
    }

    fn enter(&self, phase: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.enter(BUSY);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(IDLE);
        }
    }

    /// What the watchdog should do now.
    fn verdict(&self, limits: &ConnLimits) -> Verdict {
        let now = self.now_ms();
        let blocked = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked != 0 && now - blocked >= limits.send_timeout.as_millis() as u64 {
            return Verdict::Drop("the client stopped reading the response");
        }
        let age = now.saturating_sub(self.since_ms.load(Ordering::Relaxed));
        match self.phase.load(Ordering::Relaxed) {
            IDLE if age >= limits.idle_timeout.as_millis() as u64 => Verdict::CloseIdle,
            HEAD if age >= limits.header_timeout.as_millis() as u64 => {
                Verdict::Drop("the request headers did not arrive in time")
            }
            _ => Verdict::Keep,
        }
    }
}

enum Verdict {
    Keep,
    CloseIdle,
    Drop(&'static str),
}

/// A socket that reports to its connection's [`Activity`].
struct Tracked {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before
            && self
                .activity
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The first byte of a new request: its headers are now on the clock.
            self.activity
                .since_ms
                .store(self.activity.now_ms(), Ordering::Relaxed);
        }
        polled
    }
}

impl Tracked {
    fn note_write<T>(&self, polled: &Poll<io::Result<T>>) {
        let blocked = &self.activity.write_blocked_ms;
        if polled.is_pending() {
            if blocked.load(Ordering::Relaxed) == 0 {
                blocked.store(self.activity.now_ms(), Ordering::Relaxed);
            }
        } else {
            blocked.store(0, Ordering::Relaxed);
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP flush is a no-op that is always ready: it says nothing about whether the
        // client takes bytes, so it must not clear a blocked write.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Ends a request's time on the connection when dropped: with its response body (once hyper
/// has written it), or with the request future if the connection dies first.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that carries its request's [`InFlight`] guard.
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, tells every
/// connection to finish its request in flight and close, and waits for them (at most
/// [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                // Out of file descriptors (or a connection reset before accept): back off
                // briefly instead of spinning; established connections keep working.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                state.shared().metrics.connections(1);
                let app = app.clone();
                let state = state.clone();
                let closing = closing_rx.clone();
                tokio::spawn(async move {
                    connection(tcp, app, limits, closing).await;
                    state.shared().metrics.connections(-1);
                    drop(slot);
                });
            }
            Err(_) => {
                state.shared().metrics.refused_connection();
                tokio::spawn(refuse(tcp));
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    state.begin_shutdown();
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// One connection: hyper's HTTP/1.1 state machine over the tracked socket, and its watchdog.
async fn connection(
    tcp: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        io: tcp,
        activity: Arc::clone(&activity),
    };
    let on_request = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        on_request.request_started();
        let guard = InFlight(Arc::clone(&on_request));
        let app = app.clone();
        async move {
            let response: Response = tower::ServiceExt::oneshot(app, request.map(Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(response.map(|inner| {
                Body::new(Guarded {
                    inner,
                    _in_flight: guard,
                })
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The watchdog times headers from their first byte; hyper's own timer would also
        // count the idle time before them.
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let mut closing_down = *closing.borrow();
    if closing_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => match activity.verdict(&limits) {
                Verdict::Keep => {}
                Verdict::CloseIdle => conn.as_mut().graceful_shutdown(),
                Verdict::Drop(why) => {
                    tracing::debug!(why, "closing a connection");
                    return;
                }
            },
            changed = closing.changed(), if !closing_down => {
                if changed.is_err() || *closing.borrow() {
                    closing_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answers a connection over the limit with `503 overloaded` and closes it.
async fn refuse(mut tcp: TcpStream) {
    let body = ErrorBody::new(
        ErrorCode::Overloaded,
        "the server has too many open connections; retry shortly",
    );
    let json = serde_json::to_string(&body).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
