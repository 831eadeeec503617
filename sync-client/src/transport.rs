//! The boundary to the server: a [`Transport`] trait (so tests can inject faults around the
//! real thing) and [`HttpTransport`], its implementation over HTTP with reqwest.

use crate::config::RemoteConfig;
use crate::credentials::{Credentials, TokenSource};
use crate::error::{Error, ErrorKind, Result};
use crate::http_answer::{error_response, json, network};
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use sync_core::protocol::error::ErrorCode;
use sync_core::protocol::events::{HEAD_EVENT, HeadEvent};
use sync_core::protocol::lineage::{HEADER_REASON, PositionAnswer, Tip};
use sync_core::protocol::pull::{self, PullQuery};
use sync_core::protocol::rowid::LeaseRequest;
use sync_core::protocol::{self, HEADER_SCHEMA_VERSION, VERSION, routes, snapshot};

/// The types in [`Transport`]'s signature, for implementing one (a test double).
pub use std::path::Path;
pub use sync_core::engine::changeset::Changeset;
pub use sync_core::protocol::info::DatabaseInfo;
pub use sync_core::protocol::migrations::Migrations;
use sync_core::protocol::migrations::MigrationsQuery;
pub use sync_core::protocol::pull::{LogEntry, LogPage};
pub use sync_core::protocol::push::{PushHeaders, PushResponse, PushStatus};
pub use sync_core::protocol::rowid::Lease;
use sync_core::protocol::upload::{self, EffectQuery, PartQuery, UploadStatus};

/// Bodies smaller than this are sent uncompressed (zstd would not pay).
const COMPRESS_ABOVE: usize = 512;

/// What a snapshot is asked with.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotRequest<'a> {
    /// Why (`Sync-Reason`: `new`, `cursor`, `lineage`, `chain`, `checksum`, `diverged`).
    pub reason: &'a str,
    /// The batch in flight, to be told where it stands in the snapshot's history.
    pub batch: Option<&'a str>,
    /// Store the snapshot encrypted with this key (the local database's): the plain bytes
    /// are held in memory and never written.
    pub key: Option<&'a crate::EncryptionKey>,
    /// Told the bytes received so far and the whole when known, as the download goes.
    pub progress: Option<OnBytes<'a>>,
}

/// A download's progress callback: bytes received so far, and the whole when known.
#[derive(Clone, Copy)]
pub struct OnBytes<'a>(pub &'a (dyn Fn(u64, Option<u64>) + Sync));

impl std::fmt::Debug for OnBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnBytes")
    }
}

/// What a downloaded snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotGot {
    /// Its seq.
    pub seq: i64,
    /// Its schema version.
    pub schema_version: u32,
    /// Where the batch asked about stands in the snapshot's history: `Some(Some(seq))`,
    /// `Some(None)` not in it, `None` not told.
    pub batch_seq: Option<Option<i64>>,
}

/// What the sync engine needs from a server.
pub trait Transport: Send + Sync {
    /// `GET /v1/databases/{db}`.
    fn info(&self) -> Result<DatabaseInfo>;
    /// `POST /v1/databases/{db}/push` of a batch body ([`sync_core::protocol::batch`]). A
    /// batch whose every transaction was rejected (409 `push_rejected`) is an `Ok` answer with
    /// status `rejected`.
    fn push(&self, headers: &PushHeaders, body: &[u8]) -> Result<PushResponse>;
    /// `GET /v1/databases/{db}/uploads/{batch}`: how many bytes of the upload of `batch_id`
    /// the server has (`None`: no upload).
    fn upload_status(&self, batch_id: &str) -> Result<Option<u64>>;
    /// `PUT /v1/databases/{db}/uploads/{batch}`: one part of a batch body of `total` bytes,
    /// at `offset`; returns the bytes the server has received from the start.
    fn upload_part(&self, batch_id: &str, offset: u64, total: u64, part: &[u8]) -> Result<u64>;
    /// `POST /v1/databases/{db}/push` of an uploaded batch (header `sync-upload`, no body).
    fn push_uploaded(&self, headers: &PushHeaders) -> Result<PushResponse>;
    /// `GET /v1/databases/{db}/pull`.
    fn pull(&self, query: &PullQuery) -> Result<LogPage>;
    /// `GET /v1/databases/{db}/log/{seq}/effect`: bytes `offset..offset+len` of a large
    /// effect.
    fn effect(&self, seq: i64, query: &EffectQuery) -> Result<Vec<u8>>;
    /// `GET /v1/databases/{db}/snapshot`, written to `dest`; returns (seq, schema version).
    fn snapshot(&self, dest: &Path, request: &SnapshotRequest<'_>) -> Result<SnapshotGot>;
    /// `POST /v1/databases/{db}/rowid-ranges`.
    fn lease(&self, size: i64) -> Result<Lease>;
    /// `GET /v1/databases/{db}/position?seq=N`: lineage, chain value and checksum at `seq`.
    fn position(&self, seq: i64) -> Result<Tip> {
        let _ = seq;
        Err(Error::new(
            ErrorKind::Internal,
            "this transport cannot ask for a position",
        ))
    }
    /// `GET /v1/databases/{db}/events`: a blocking stream of head seqs.
    fn events(&self) -> Result<Box<dyn EventStream>>;
    /// `GET /v1/databases/{db}/migrations?after=N`: the app schema's scripts after version
    /// `after`. (The default answers that the server has none to give, for test doubles of
    /// servers that predate the route.)
    fn migrations(&self, after: u32) -> Result<Migrations> {
        Err(Error::new(
            ErrorKind::SchemaMismatch,
            format!("this server does not serve its schema migrations (after version {after})"),
        ))
    }
    /// The newest schema version the server's answers have shown so far (pull answers and
    /// database info carry it), if any.
    fn schema_version_seen(&self) -> Option<u32> {
        None
    }
}

/// Server-sent head events.
pub trait EventStream: Send {
    /// Blocks until the next head seq; `Ok(None)` when the server closed the stream.
    fn next_head(&mut self) -> Result<Option<i64>>;
}

/// Bytes moved by a transport, for benchmarks and status.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Request body bytes sent (after compression).
    pub bytes_up: AtomicU64,
    /// Response body bytes received (before decompression).
    pub bytes_down: AtomicU64,
}

/// [`Transport`] over HTTP/1.1 (TLS by rustls when the URL is `https`).
pub struct HttpTransport {
    /// The server's URL, without a trailing `/`.
    base: String,
    database: String,
    token: TokenSource,
    /// This copy's device id, sent as `Sync-Device` (a JWT without a device claim needs it).
    device: Option<String>,
    http: reqwest::blocking::Client,
    streaming: reqwest::blocking::Client,
    stats: TransferStats,
    /// The newest schema version an answer showed (0: none yet).
    schema_seen: AtomicU32,
}

impl HttpTransport {
    /// A transport for `remote`, with `timeout` per request.
    pub fn new(remote: &RemoteConfig, timeout: Duration) -> Result<HttpTransport> {
        HttpTransport::with_credentials(remote, timeout, None)
    }

    /// A transport for `remote` whose token comes from `credentials` when given (asked at
    /// first use and after a `401`, the request then retried once), else `remote.token`.
    pub fn with_credentials(
        remote: &RemoteConfig,
        timeout: Duration,
        credentials: Option<std::sync::Arc<dyn Credentials>>,
    ) -> Result<HttpTransport> {
        if !protocol::valid_database_name(&remote.database) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid database name {:?}", remote.database),
            ));
        }
        let url = remote.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("server URL must start with http:// or https://, got {url:?}"),
            ));
        }
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true);
            b = b.timeout(timeout);
            b.build().map_err(|e| {
                Error::new(ErrorKind::Config, format!("HTTP client: {e}")).with_source(e)
            })
        };
        Ok(HttpTransport {
            base: url.to_string(),
            database: remote.database.clone(),
            token: TokenSource::new(&remote.token, credentials),
            device: None,
            http: build(Some(timeout))?,
            streaming: build(None)?,
            stats: TransferStats::default(),
            schema_seen: AtomicU32::new(0),
        })
    }

    /// Names this copy's device in every request (`Sync-Device`).
    pub fn with_device(mut self, device: impl Into<String>) -> HttpTransport {
        self.device = Some(device.into());
        self
    }

    /// Bytes moved so far.
    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    /// The URL of `route` for this database.
    fn url(&self, route: &str) -> String {
        format!("{}{}", self.base, routes::path(route, &self.database))
    }

    fn get(&self, route: &str) -> reqwest::blocking::RequestBuilder {
        self.http.get(self.url(route))
    }

    fn post(&self, route: &str) -> reqwest::blocking::RequestBuilder {
        self.http.post(self.url(route))
    }

    /// Sends with the bearer token, maps transport failures and error statuses, returns the
    /// successful response. With a credentials provider, a `401` asks it for a fresh token and
    /// sends the request once more; the second answer stands.
    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let req = match &self.device {
            Some(d) => req.header(sync_core::protocol::HEADER_DEVICE, d),
            None => req,
        };
        let again = if self.token.can_refresh() {
            req.try_clone()
        } else {
            None
        };
        let resp = req
            .bearer_auth(self.token.token(false)?)
            .send()
            .map_err(network)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some(again) = again
        {
            drop(resp);
            let resp = again
                .bearer_auth(self.token.token(true)?)
                .send()
                .map_err(network)?;
            if resp.status().is_success() {
                return Ok(resp);
            }
            return Err(error_response(resp));
        }
        Err(error_response(resp))
    }

    fn body(&self, resp: reqwest::blocking::Response) -> Result<Vec<u8>> {
        let zstd = resp
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"));
        let raw = resp.bytes().map_err(network)?;
        self.stats
            .bytes_down
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        if zstd {
            zstd::stream::decode_all(raw.as_ref()).map_err(|e| {
                Error::new(
                    ErrorKind::Network,
                    format!("bad zstd body from server: {e}"),
                )
                .with_source(e)
            })
        } else {
            Ok(raw.to_vec())
        }
    }
}

/// `std::io::copy`, telling `progress` after each chunk.
fn copy_reporting(
    from: &mut impl std::io::Read,
    to: &mut impl std::io::Write,
    total: Option<u64>,
    progress: Option<OnBytes<'_>>,
) -> std::io::Result<u64> {
    let Some(OnBytes(progress)) = progress else {
        return std::io::copy(from, to);
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        done += n as u64;
        progress(done, total);
    }
}

impl Transport for HttpTransport {
    fn info(&self) -> Result<DatabaseInfo> {
        let resp = self.send(self.get(routes::INFO))?;
        let info: DatabaseInfo = json(&self.body(resp)?)?;
        self.schema_seen
            .fetch_max(info.schema_version, Ordering::Relaxed);
        Ok(info)
    }

    fn position(&self, seq: i64) -> Result<Tip> {
        let url = format!("{}?seq={seq}", self.url(routes::POSITION));
        let resp = self.send(self.http.get(url))?;
        let answer: PositionAnswer = json(&self.body(resp)?)?;
        Ok(answer.tip)
    }

    fn push(&self, headers: &PushHeaders, batch: &[u8]) -> Result<PushResponse> {
        let mut req = self
            .post(routes::PUSH)
            .header(reqwest::header::CONTENT_TYPE, protocol::batch::MEDIA_TYPE);
        for (name, value) in headers.to_pairs() {
            req = req.header(name, value);
        }
        let body = if batch.len() > COMPRESS_ABOVE {
            req = req.header(reqwest::header::CONTENT_ENCODING, "zstd");
            zstd::bulk::compress(batch, 3)?
        } else {
            batch.to_vec()
        };
        self.stats
            .bytes_up
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        match self.send(req.body(body)) {
            Ok(resp) => json(&self.body(resp)?),
            Err(e) => match e.server_body().and_then(PushResponse::from_rejection) {
                Some(rejected) => Ok(rejected),
                None => Err(e),
            },
        }
    }

    fn upload_status(&self, batch_id: &str) -> Result<Option<u64>> {
        let url = format!(
            "{}{}",
            self.base,
            routes::upload_path(&self.database, batch_id)
        );
        match self.send(self.http.get(url)) {
            Ok(resp) => Ok(Some(json::<UploadStatus>(&self.body(resp)?)?.received)),
            Err(e)
                if e.server_body()
                    .is_some_and(|b| b.code == ErrorCode::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn upload_part(&self, batch_id: &str, offset: u64, total: u64, part: &[u8]) -> Result<u64> {
        let query = PartQuery { offset, total }.to_query_string();
        let url = format!(
            "{}{}?{query}",
            self.base,
            routes::upload_path(&self.database, batch_id)
        );
        self.stats
            .bytes_up
            .fetch_add(part.len() as u64, Ordering::Relaxed);
        let resp = self.send(
            self.http
                .put(url)
                .header(reqwest::header::CONTENT_TYPE, upload::MEDIA_TYPE)
                .body(part.to_vec()),
        )?;
        Ok(json::<UploadStatus>(&self.body(resp)?)?.received)
    }

    fn push_uploaded(&self, headers: &PushHeaders) -> Result<PushResponse> {
        let mut req = self
            .post(routes::PUSH)
            .header(upload::HEADER_UPLOAD, "1")
            .header(reqwest::header::CONTENT_LENGTH, "0");
        for (name, value) in headers.to_pairs() {
            req = req.header(name, value);
        }
        match self.send(req) {
            Ok(resp) => json(&self.body(resp)?),
            Err(e) => match e.server_body().and_then(PushResponse::from_rejection) {
                Some(rejected) => Ok(rejected),
                None => Err(e),
            },
        }
    }

    fn effect(&self, seq: i64, query: &EffectQuery) -> Result<Vec<u8>> {
        let query = query.to_query_string();
        let url = format!(
            "{}{}?{query}",
            self.base,
            routes::effect_path(&self.database, seq)
        );
        let resp = self.send(self.http.get(url))?;
        self.body(resp)
    }

    fn pull(&self, query: &PullQuery) -> Result<LogPage> {
        let query = query.to_query_string();
        let req = self
            .http
            .get(format!("{}?{query}", self.url(routes::PULL)))
            .header(reqwest::header::ACCEPT_ENCODING, "zstd");
        let resp = self.send(req)?;
        if let Some(version) = resp
            .headers()
            .get(HEADER_SCHEMA_VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            self.schema_seen.fetch_max(version, Ordering::Relaxed);
        }
        let bytes = self.body(resp)?;
        pull::decode(&bytes).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("unreadable log page: {e}")).with_source(e)
        })
    }

    fn snapshot(&self, dest: &Path, request: &SnapshotRequest<'_>) -> Result<SnapshotGot> {
        let mut req = self
            .streaming
            .get(self.url(routes::SNAPSHOT))
            .header(HEADER_REASON, request.reason);
        if let Some(batch) = request.batch {
            req = req.header(snapshot::HEADER_BATCH_ID, batch);
        }
        let resp = self.send(req)?;
        // Absent: not told (an older server); `none`: not in this history.
        let batch_seq = resp
            .headers()
            .get(snapshot::HEADER_BATCH_SEQ)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.parse().ok());
        let header = |name: &str| -> Result<i64> {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("snapshot without a valid {name} header"),
                    )
                })
        };
        let seq = header(snapshot::HEADER_SEQ)?;
        let version = u32::try_from(header(HEADER_SCHEMA_VERSION)?)
            .map_err(|_| Error::new(ErrorKind::Internal, "snapshot schema version out of range"))?;
        let total = resp.content_length();
        let mut reader = resp;
        let n = crate::snapshot_store::store(dest, request.key, |mut to| {
            copy_reporting(&mut reader, &mut to, total, request.progress)
        })?;
        self.stats.bytes_down.fetch_add(n, Ordering::Relaxed);
        Ok(SnapshotGot {
            seq,
            schema_version: version,
            batch_seq,
        })
    }

    fn migrations(&self, after: u32) -> Result<Migrations> {
        let query = MigrationsQuery { after }.to_query_string();
        let resp = self.send(
            self.http
                .get(format!("{}?{query}", self.url(routes::MIGRATIONS))),
        )?;
        json(&self.body(resp)?)
    }

    fn schema_version_seen(&self) -> Option<u32> {
        match self.schema_seen.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v),
        }
    }

    fn lease(&self, size: i64) -> Result<Lease> {
        let body = serde_json::to_vec(&LeaseRequest { v: VERSION, size }).expect("serializable");
        let resp = self.send(
            self.post(routes::ROWID_RANGES)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )?;
        json(&self.body(resp)?)
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        let resp = self.send(
            self.streaming
                .get(self.url(routes::EVENTS))
                .header(reqwest::header::ACCEPT, "text/event-stream"),
        )?;
        Ok(Box::new(SseStream {
            reader: BufReader::new(Box::new(resp)),
        }))
    }
}

/// Parses `text/event-stream`: `event:` and `data:` lines, events ended by a blank line.
struct SseStream {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl EventStream for SseStream {
    fn next_head(&mut self) -> Result<Option<i64>> {
        let mut event = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(|e| {
                Error::new(ErrorKind::Network, format!("event stream broke: {e}")).with_source(e)
            })?;
            if n == 0 {
                return Ok(None);
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if event == HEAD_EVENT
                    && let Ok(head) = serde_json::from_str::<HeadEvent>(&data)
                {
                    return Ok(Some(head.head_seq));
                }
                event.clear();
                data.clear();
            } else if let Some(v) = l.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.trim_start());
            }
        }
    }
}
