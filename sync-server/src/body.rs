//! Request bodies under limits. A body is received into a spool (memory up to
//! [`SPOOL_IN_MEMORY`], then an unlinked file under the data directory's `tmp/`), within:
//!
//! - **its size limit** (`max_body_bytes`): a larger `Content-Length` is refused before
//!   anything is read, a stream as soon as it crosses the limit (`413`);
//! - **the server-wide budget** of body bytes in flight (`body_budget_bytes`, memory and
//!   spool files together): a body that would exceed it is refused with `503 overloaded` and
//!   `Retry-After`, so many large or stalled uploads make clients back off instead of growing
//!   the server. The last eighth of the budget is kept for small bodies (≤ [`SMALL_BODY`]),
//!   so ordinary pushes keep working while large uploads fill the rest;
//! - **time**: the whole body within `body_timeout`, and at least `body_min_rate` bytes per
//!   second in every [`RATE_WINDOW`] (a client that stalls mid-body is cut within one window).
//!   Past either: `408 request_timeout` and the connection is closed.
//!
//! Decompression (zstd) streams from one spool into another under the same size limit and
//! budget, so a small body that expands enormously is refused the same way.

use crate::error::ApiError;
use axum::body::Body;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_core::engine::spool::Spool;
use sync_core::engine::spool::Spooled;
use tokio::time::Instant;

/// Bodies up to this size stay in memory; larger ones continue in a temporary file.
pub const SPOOL_IN_MEMORY: usize = 1 << 20;
/// A body whose total reservation stays at or below this may use the whole budget.
pub const SMALL_BODY: usize = 64 * 1024;
/// Largest zstd window a push body may use: 8 MiB, what `zstd -19` uses (levels 20-22 and
/// `--long` go beyond; clients of this library compress at level 3, 2 MiB at most).
pub const ZSTD_WINDOW_LOG: u32 = 23;
/// Bytes received are written to the spool file in batches of about this size.
const WRITE_BATCH: usize = 256 * 1024;
/// The minimum rate is checked over windows of this length.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
/// After refusing an oversized or unaffordable body, the server still reads (and discards)
/// up to this much of it, for at most [`DRAIN_TIME`], so that the client sees the answer
/// instead of a connection reset while it is still sending.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The body limits (from [`crate::ServerConfig`]).
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Largest body, before and after decompression.
    pub max_bytes: usize,
    /// The whole body must arrive within this.
    pub timeout: Duration,
    /// Bytes per second a body must keep up, measured over each [`RATE_WINDOW`].
    pub min_rate: u64,
    /// Where spool files go.
    pub spool_dir: PathBuf,
}

/// The server-wide budget of request-body bytes in flight.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            held: 0,
        }
    }
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    held: usize,
}

/// The budget is spent.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded;

impl Reservation {
    /// Holds `n` more bytes, or fails without holding anything more.
    pub fn grow(&mut self, n: usize) -> Result<(), Overloaded> {
        let total = self.held.saturating_add(n);
        // Large bodies may use only seven eighths; the rest is kept for small ones.
        let ceiling = if total <= SMALL_BODY {
            self.budget.limit
        } else {
            self.budget.limit - self.budget.limit / 8
        };
        let before = self.budget.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > ceiling {
            self.budget.used.fetch_sub(n, Ordering::Relaxed);
            return Err(Overloaded);
        }
        self.held = total;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// A body received whole, with the budget it holds (keep it until the request is done).
#[derive(Debug)]
pub struct Received {
    /// The bytes.
    pub body: Spooled,
    /// Its share of the budget.
    pub reservation: Reservation,
}

fn overloaded() -> ApiError {
    ApiError::overloaded("the server is receiving too many large requests; retry shortly")
}

/// Receives `body` under `limits` and the `budget` (see the module docs). `declared` is the
/// request's `Content-Length`, if any.
pub async fn receive(
    body: Body,
    declared: Option<u64>,
    limits: &BodyLimits,
    budget: &Arc<Budget>,
) -> Result<Received, ApiError> {
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        tokio::spawn(drain(stream));
        return Err(ApiError::too_large(limits.max_bytes));
    }
    let mut reservation = budget.reserve();
    if let Some(n) = declared
        && reservation.grow(n as usize).is_err()
    {
        tokio::spawn(drain(stream));
        return Err(overloaded());
    }
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let window_need = limits.min_rate.saturating_mul(RATE_WINDOW.as_secs().max(1));
    let mut window_end = started + RATE_WINDOW;
    let mut window_bytes = 0u64;
    let mut window_start_received = 0u64;
    let mut spool = Spool::new(&limits.spool_dir, SPOOL_IN_MEMORY);
    let mut pending: Vec<u8> = Vec::new();
    let mut received = 0usize;
    loop {
        let next = tokio::time::timeout_at(deadline.min(window_end), stream.next()).await;
        let chunk = match next {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the body: {e}"
                )));
            }
            Ok(None) => break,
            Err(_) if Instant::now() >= deadline => {
                return Err(ApiError::request_timeout(format!(
                    "the body did not arrive within {} s",
                    limits.timeout.as_secs()
                )));
            }
            Err(_) => {
                // A rate window ended. A body that was nearly complete need only have sent
                // what was left.
                let left = declared.map_or(u64::MAX, |n| n - window_start_received);
                if window_bytes < window_need.min(left) {
                    return Err(ApiError::request_timeout(format!(
                        "the body arrived slower than {} bytes/s",
                        limits.min_rate
                    )));
                }
                window_end += RATE_WINDOW;
                window_bytes = 0;
                window_start_received = received as u64;
                continue;
            }
        };
        if received + chunk.len() > limits.max_bytes {
            tokio::spawn(drain(stream));
            return Err(ApiError::too_large(limits.max_bytes));
        }
        received += chunk.len();
        window_bytes += chunk.len() as u64;
        if declared.is_none() && reservation.grow(chunk.len()).is_err() {
            tokio::spawn(drain(stream));
            return Err(overloaded());
        }
        pending.extend_from_slice(&chunk);
        if received > SPOOL_IN_MEMORY && pending.len() >= WRITE_BATCH {
            spool = match write_batch(spool, std::mem::take(&mut pending)).await {
                Ok(spool) => spool,
                Err(e) => {
                    // A full disk mid-body: the client is still sending; let it read the
                    // answer instead of a reset.
                    tokio::spawn(drain(stream));
                    return Err(e);
                }
            };
        }
    }
    if declared.is_some_and(|n| n != received as u64) {
        return Err(ApiError::bad_request(format!(
            "the body has {received} bytes but Content-Length said {}",
            declared.unwrap_or(0)
        )));
    }
    if !pending.is_empty() {
        spool = write_batch(spool, pending).await?;
    }
    let body = spool.finish().map_err(spool_error)?;
    Ok(Received { body, reservation })
}

/// Writes to the spool on the blocking pool (it may be a file).
async fn write_batch(mut spool: Spool, bytes: Vec<u8>) -> Result<Spool, ApiError> {
    tokio::task::spawn_blocking(move || {
        spool.write_all(&bytes).map_err(spool_error)?;
        Ok(spool)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("spool task failed: {e}")))?
}

/// A failure writing a spool file: a full disk is `507`, anything else `500`.
pub fn spool_error(e: std::io::Error) -> ApiError {
    ApiError::from_io("spooling a request body", e)
}

async fn drain(mut stream: axum::body::BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Decompresses a zstd body into a new spool, refusing output beyond `limit` (a small body
/// may expand enormously: the output is capped, never the input trusted) and holding the
/// output's size in `reservation` as it grows. Blocks.
pub fn decompress(
    raw: &Spooled,
    limit: usize,
    reservation: &mut Reservation,
    dir: &Path,
) -> Result<Spooled, ApiError> {
    let bad = |e: std::io::Error| ApiError::bad_request(format!("the body is not valid zstd: {e}"));
    // The decoder allocates the window a frame declares (up to 128 MiB by default): cap it,
    // and count what it may allocate against the budget like body bytes — the window, or the
    // frame's declared content size when smaller (a small body needs a small window).
    let mut head = [0u8; 18];
    let n = raw.source().reader().read(&mut head).map_err(spool_error)?;
    let window = zstd::zstd_safe::get_frame_content_size(&head[..n])
        .ok()
        .flatten()
        .unwrap_or(u64::MAX)
        .min(1 << ZSTD_WINDOW_LOG);
    reservation
        .grow(window as usize)
        .map_err(|_| overloaded())?;
    let mut decoder = zstd::stream::read::Decoder::new(raw.source().reader()).map_err(bad)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG).map_err(bad)?;
    let mut out = Spool::new(dir, SPOOL_IN_MEMORY);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(e)),
        };
        if n == 0 {
            break;
        }
        if out.len() as usize + n > limit {
            return Err(ApiError::too_large(limit));
        }
        reservation.grow(n).map_err(|_| overloaded())?;
        out.write_all(&buf[..n]).map_err(spool_error)?;
    }
    out.finish().map_err(spool_error)
}

/// A response body over spooled bytes: from memory, or read from the file in pieces as the
/// client takes them (never loaded whole).
pub fn spooled_body(spooled: Spooled) -> std::io::Result<Body> {
    Ok(match spooled.into_file()? {
        Err(bytes) => Body::from(bytes),
        Ok(file) => file_body(file),
    })
}

/// A response body that streams `file` from its current position to its end.
pub fn file_body(file: std::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 * 1024;
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_released_and_keeps_room_for_small_bodies() {
        let budget = Budget::new(800 * 1024);
        let mut large = budget.reserve();
        large.grow(600 * 1024).unwrap();
        // 750 KiB would pass the seven-eighths ceiling (700 KiB) for a large body…
        let mut other = budget.reserve();
        assert!(other.grow(150 * 1024).is_err());
        assert_eq!(budget.used(), 600 * 1024);
        // …but a small one still fits in the reserved eighth.
        let mut small = budget.reserve();
        small.grow(SMALL_BODY).unwrap();
        drop(large);
        assert_eq!(budget.used(), SMALL_BODY);
        other.grow(150 * 1024).unwrap();
        drop((small, other));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn zstd_output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(1 << 30);
        let code = |r: Result<Spooled, ApiError>| match r {
            Err(ApiError::Wire(b)) => b.code.as_str().to_string(),
            Err(e) => format!("{e}"),
            Ok(_) => "ok".into(),
        };
        let bomb = zstd::encode_all(&vec![0u8; 1 << 20][..], 19).unwrap();
        assert!(bomb.len() < 1024);
        let bomb = Spooled::from_bytes(bomb);
        let try_with = |raw: &Spooled, limit: usize, budget: &Arc<Budget>| {
            let mut r = budget.reserve();
            code(decompress(raw, limit, &mut r, dir.path()))
        };
        assert_eq!(try_with(&bomb, 4096, &budget), "payload_too_large");
        assert_eq!(try_with(&bomb, 1 << 20, &budget), "ok");
        assert_eq!(budget.used(), 0, "every reservation was given back");
        {
            let mut r = budget.reserve();
            decompress(&bomb, 1 << 20, &mut r, dir.path()).unwrap();
            assert_eq!(
                budget.used(),
                (1 << 20) + (1 << ZSTD_WINDOW_LOG),
                "the output and the window (the frame declares no size) are held in the budget"
            );
        }
        let garbage = Spooled::from_bytes(b"garbage".to_vec());
        assert_eq!(try_with(&garbage, 4096, &budget), "bad_request");
        // A frame that declares a window beyond the cap is refused.
        let mut wide = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        wide.window_log(27).unwrap();
        wide.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut wide, &vec![7u8; 1 << 20]).unwrap();
        let wide = Spooled::from_bytes(wide.finish().unwrap());
        assert_eq!(try_with(&wide, 1 << 21, &budget), "bad_request");
        // A small frame that says its size holds only that much for its window.
        let small = Spooled::from_bytes(zstd::bulk::compress(&[1u8; 600], 3).unwrap());
        {
            let mut r = budget.reserve();
            decompress(&small, 4096, &mut r, dir.path()).unwrap();
            assert_eq!(budget.used(), 1200);
        }
        // Over the budget: overloaded, not too large.
        assert_eq!(
            try_with(&bomb, 1 << 20, &Budget::new(100_000)),
            "overloaded"
        );
    }
}
