//! The access log: one JSON line per request on standard output (`--access-log json`, the
//! default; `--access-log off` writes nothing). Process logs go to standard error, so the two
//! never mix.
//!
//! A line is written when the response has been sent (its last byte, or the client going away),
//! so it carries the total duration and the bytes both ways. The request path never waits for
//! the log: lines go into a bounded buffer that a thread of its own writes out every 50 ms and,
//! when that thread falls behind (a slow or blocked stdout), are dropped and counted in
//! `serval_access_log_dropped_total`.
//!
//! The fields are the Gateway, route, rule and backend from the configuration, the endpoint the
//! request went to, what the request itself said (method, host, path, protocol, the trace id of
//! a W3C `traceparent`), the status, durations and byte counts. This module formats and writes;
//! the facts are collected by the request path (`http`, `forward`).

use crate::{
    body::{Body, BoxError},
    metrics::{
        Metrics,
        requests::{Finished, RouteStats, Series},
    },
};
use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::{
    io::Write,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::Receiver,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

/// Bytes of lines waiting for the writer at most (about 10,000 lines); more are dropped.
pub const BUFFER_LIMIT: usize = 4 << 20;

/// How often the writer wakes to write what accumulated.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Buffered bytes that wake the writer before its interval.
const WAKE_AT: usize = 256 << 10;

/// `--access-log`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line on stdout.
    #[default]
    Json,
    /// No access log.
    Off,
}

/// Where access-log lines go; cheap to clone.
///
/// Lines are appended to one shared buffer (a short lock, no allocation per line once the
/// buffers have grown); the writer thread swaps it out every [`FLUSH_INTERVAL`], or sooner when
/// [`WAKE_AT`] bytes are waiting, and writes it in one go. So a request costs a serialization and
/// a copy, not a thread wake-up and a system call.
#[derive(Clone, Debug)]
pub struct AccessLog {
    shared: Option<Arc<Handle>>,
    dropped: Counter,
}

/// The buffer the request path appends to and the writer drains.
#[derive(Debug, Default)]
struct Buffer {
    lines: parking_lot::Mutex<Vec<u8>>,
    wake: parking_lot::Condvar,
    closed: std::sync::atomic::AtomicBool,
    limit: usize,
}

impl Buffer {
    /// Tells the writer to write what is left and stop. Under the lock, so the writer cannot
    /// miss the wake-up between its check and its wait.
    fn close(&self) {
        let _lines = self.lines.lock();
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Held by every [`AccessLog`] clone; the last one dropped stops the writer (after it wrote
/// what is buffered).
#[derive(Debug)]
struct Handle {
    buffer: Arc<Buffer>,
    /// Disconnected when the writer thread has ended.
    finished: parking_lot::Mutex<Option<Receiver<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.buffer.close();
    }
}

thread_local! {
    /// The line being serialized, reused across requests on this thread.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// An access log in `format` written to stdout by a thread of its own; lines the writer
    /// cannot keep up with count on `dropped`.
    pub fn stdout(format: Format, dropped: Counter) -> std::io::Result<Self> {
        match format {
            Format::Off => Ok(Self::off()),
            Format::Json => Self::to_writer(std::io::stdout(), dropped, BUFFER_LIMIT),
        }
    }

    /// No access log.
    pub fn off() -> Self {
        Self {
            shared: None,
            dropped: Counter::default(),
        }
    }

    /// An access log written to `out` by a thread of its own, `limit` bytes buffered at most.
    pub fn to_writer(
        out: impl Write + Send + 'static,
        dropped: Counter,
        limit: usize,
    ) -> std::io::Result<Self> {
        let buffer = Arc::new(Buffer {
            limit,
            ..Buffer::default()
        });
        let writer = Arc::clone(&buffer);
        let (finished_tx, finished) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || {
                write_batches(&writer, out);
                drop(finished_tx);
            })?;
        Ok(Self {
            shared: Some(Arc::new(Handle {
                buffer,
                finished: parking_lot::Mutex::new(Some(finished)),
            })),
            dropped,
        })
    }

    /// Writes out what is buffered and stops the writer, waiting for it up to `wait` (at
    /// shutdown, so the last requests' lines are not lost). Lines written afterwards are
    /// dropped.
    pub fn close(&self, wait: Duration) {
        let Some(handle) = &self.shared else { return };
        handle.buffer.close();
        if let Some(finished) = handle.finished.lock().take() {
            let _ = finished.recv_timeout(wait);
        }
    }

    /// True when lines are written.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Buffers `entry`'s line; never waits for the writer.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(handle) = &self.shared else { return };
        let buffer = &handle.buffer;
        LINE.with_borrow_mut(|line| {
            line.clear();
            if let Err(error) = serde_json::to_writer(&mut *line, entry) {
                tracing::warn!(%error, "access log entry not serializable");
                return;
            }
            line.push(b'\n');
            let mut lines = buffer.lines.lock();
            if lines.len() + line.len() > buffer.limit || buffer.closed.load(Ordering::Acquire) {
                drop(lines);
                self.dropped.inc();
                return;
            }
            lines.extend_from_slice(line);
            if lines.len() >= WAKE_AT {
                buffer.wake.notify_one();
            }
        });
    }
}

/// Writes what accumulated every [`FLUSH_INTERVAL`] (sooner when [`WAKE_AT`] bytes wait), until
/// the log is closed and the buffer is empty, or the output fails.
fn write_batches(buffer: &Buffer, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        {
            let mut lines = buffer.lines.lock();
            if !buffer.closed.load(Ordering::Acquire) && lines.len() < WAKE_AT {
                buffer.wake.wait_for(&mut lines, FLUSH_INTERVAL);
            }
            if lines.is_empty() && buffer.closed.load(Ordering::Acquire) {
                return;
            }
            std::mem::swap(&mut *lines, &mut batch);
        }
        if batch.is_empty() {
            continue;
        }
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            return;
        }
        batch.clear();
    }
}

/// One line of the access log.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `<namespace>/<name>` of the Gateway, once a route matched.
    pub gateway: Option<&'a str>,
    /// `<namespace>/<name>` of the matched route.
    pub route: Option<String>,
    /// Its kind (`httproute`, `grpcroute`).
    pub route_kind: Option<&'a str>,
    /// The index of the matched rule.
    pub rule: Option<u32>,
    /// The backend Service, `<namespace>/<name>:<port>`.
    pub backend: Option<String>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<String>,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: &'static str,
    /// The request method.
    pub method: &'a str,
    /// The request's host (authority).
    pub host: &'a str,
    /// The request path (no query).
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Request arrival to the last response byte, in milliseconds.
    pub duration_ms: f64,
    /// Sending the request upstream to its response headers (every attempt), in milliseconds.
    pub upstream_duration_ms: Option<f64>,
    /// Upstream attempts (more than 1 after retries).
    pub upstream_attempts: Option<u32>,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// The trace id of the request's W3C `traceparent`, if valid.
    pub trace_id: Option<&'a str>,
    /// The client's address.
    pub client_address: String,
}

/// What the request path learned while serving a request. `series` (the metrics' labels) is
/// always filled; the rest, for the log line, only when the access log is on (`enabled`), so a
/// proxy without one copies nothing more.
#[derive(Debug, Default)]
pub struct Facts {
    /// The labels of the request's metrics (route, listener, backend).
    pub series: Series,
    /// The matched route rule's series handles.
    pub route_stats: Option<Arc<RouteStats>>,
    /// The request's server span (tracing on).
    pub span: Option<crate::spans::ServerSpan>,
    /// The access log is on.
    pub enabled: bool,
    /// The matched route.
    pub route: Option<RouteFacts>,
    /// The upstream exchange.
    pub upstream: Option<UpstreamFacts>,
}

impl Facts {
    /// Facts to fill when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }
}

/// The matched route.
#[derive(Clone, Debug)]
pub struct RouteFacts {
    /// `route/<ns>/<kind>/<name>/rule/<i>/match/<j>`.
    pub name: String,
    /// `<namespace>/<name>` of its Gateway.
    pub gateway: Arc<str>,
}

/// The upstream exchange.
#[derive(Clone, Debug)]
pub struct UpstreamFacts {
    /// The Cluster (`cluster/<namespace>/<service>/<port>`).
    pub cluster: String,
    /// The endpoint of the last attempt (none when the Service had no endpoint).
    pub endpoint: Option<SocketAddr>,
    /// Time spent waiting for upstream response headers, all attempts.
    pub duration: Duration,
    /// Attempts made.
    pub attempts: u32,
}

/// What is known of a request when it arrives.
#[derive(Debug)]
pub struct Request {
    arrived: Instant,
    time: SystemTime,
    method: Method,
    version: Version,
    host: String,
    path: String,
    trace_id: Option<String>,
    client: SocketAddr,
    received: Arc<AtomicU64>,
}

impl Request {
    /// The facts of a request that just arrived; `received` counts its body bytes.
    pub fn arrived(
        method: &Method,
        version: Version,
        host: &str,
        path: &str,
        headers: &HeaderMap,
        client: SocketAddr,
        received: Arc<AtomicU64>,
    ) -> Self {
        Self {
            arrived: Instant::now(),
            time: SystemTime::now(),
            method: method.clone(),
            version,
            host: host.to_owned(),
            path: path.to_owned(),
            trace_id: trace_id(headers).map(str::to_owned),
            client,
            received,
        }
    }

    /// Logs `trace_id` (the request's span's) instead of the one its `traceparent` carried.
    pub fn with_trace_id(mut self, trace_id: Option<String>) -> Self {
        if trace_id.is_some() {
            self.trace_id = trace_id;
        }
        self
    }
}

/// Where a request's metrics go when it ends, and what they need besides its [`Facts`].
#[derive(Debug)]
pub struct Metered {
    /// The per-route request metrics.
    pub metrics: Arc<Metrics>,
    /// When the request arrived.
    pub arrived: Instant,
    /// Request body bytes received so far.
    pub received: Arc<AtomicU64>,
}

/// What is recorded when a request ends: its access-log line (when the log is on) and its
/// metrics (when metered).
#[derive(Debug)]
pub struct Ending {
    log: AccessLog,
    request: Option<Request>,
    metered: Option<Metered>,
    status: u16,
    /// What the request path learned.
    pub facts: Facts,
}

impl Ending {
    /// A request that arrived: `request` is `None` when the log is off, `metered` when no
    /// metrics are kept.
    pub fn new(
        log: &AccessLog,
        request: Option<Request>,
        metered: Option<Metered>,
        facts: Facts,
    ) -> Self {
        Self {
            log: log.clone(),
            request,
            metered,
            status: 0,
            facts,
        }
    }

    /// Records the request, `sent` response body bytes after it ended.
    fn finish(mut self, sent: u64) {
        if let Some(span) = self.facts.span.take() {
            span.end(self.status);
        }
        if let Some(m) = &self.metered {
            m.metrics.requests.record(
                self.facts.route_stats.as_deref(),
                &Finished {
                    series: &self.facts.series,
                    status: self.status,
                    duration: m.arrived.elapsed(),
                    received: m.received.load(Ordering::Relaxed),
                    sent,
                },
            );
        }
        if let Some(request) = self.request {
            Unwritten {
                log: self.log,
                request,
                status: self.status,
                route: self.facts.route,
                upstream: self.facts.upstream,
            }
            .write(sent);
        }
    }
}

/// A request being served: recorded through [`Logged`] once there is a response, or with
/// status 0 when it is dropped before (the client went away, or the connection was closed,
/// before the response headers). The request path fills [`InFlight::facts`] meanwhile.
#[derive(Debug)]
pub struct InFlight {
    ending: Option<Ending>,
    /// What the request path learned (moved into the ending when there is a response).
    pub facts: Facts,
}

impl InFlight {
    /// A request that arrived; `request` is `None` when the log is off (then nothing is
    /// recorded for it but its metrics).
    pub fn new(log: &AccessLog, request: Option<Request>, metered: Option<Metered>) -> Self {
        let facts = Facts::new(request.is_some());
        Self {
            ending: Some(Ending::new(log, request, metered, Facts::default())),
            facts,
        }
    }

    /// `response`, recorded when its body ends.
    pub fn respond(mut self, response: http::Response<Body>) -> http::Response<Body> {
        match self.ending.take() {
            Some(mut ending) if ending.request.is_some() || ending.metered.is_some() => {
                ending.facts = std::mem::take(&mut self.facts);
                Logged::wrap(ending, response)
            }
            _ => response,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(mut ending) = self.ending.take() {
            ending.facts = std::mem::take(&mut self.facts);
            ending.finish(0);
        }
    }
}

/// A response body that records its request (access-log line, metrics) once its last byte is
/// sent, or when it is dropped before that (the client went away).
pub struct Logged {
    inner: Body,
    sent: u64,
    pending: Option<Ending>,
}

/// A line still to be written when the response ends.
struct Unwritten {
    log: AccessLog,
    request: Request,
    status: u16,
    route: Option<RouteFacts>,
    upstream: Option<UpstreamFacts>,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged").field("sent", &self.sent).finish()
    }
}

impl Logged {
    /// `response` whose body records `ending` (with the response's status) when it ends.
    pub fn wrap(mut ending: Ending, response: http::Response<Body>) -> http::Response<Body> {
        ending.status = response.status().as_u16();
        response.map(|inner| {
            use http_body_util::BodyExt;
            Logged {
                inner,
                sent: 0,
                pending: Some(ending),
            }
            .boxed()
        })
    }

    fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish(self.sent);
        }
    }
}

impl Unwritten {
    fn write(self, sent: u64) {
        let r = &self.request;
        let route = self
            .route
            .as_ref()
            .and_then(|f| serval_common::names::parse_route(&f.name));
        let trace_id = r.trace_id.as_deref();
        self.log.write(&Entry {
            time: rfc3339_millis(r.time),
            gateway: self
                .route
                .as_ref()
                .map(|f| &*f.gateway)
                .filter(|g| !g.is_empty()),
            route: route.map(|n| format!("{}/{}", n.namespace, n.name)),
            route_kind: route.map(|n| n.kind),
            rule: route.map(|n| n.rule),
            backend: self
                .upstream
                .as_ref()
                .and_then(|u| serval_common::names::service_of_cluster(&u.cluster)),
            endpoint: self
                .upstream
                .as_ref()
                .and_then(|u| u.endpoint)
                .map(|e| e.to_string()),
            protocol: protocol(r.version),
            method: r.method.as_str(),
            host: &r.host,
            path: &r.path,
            status: self.status,
            duration_ms: millis(r.arrived.elapsed()),
            upstream_duration_ms: self.upstream.as_ref().map(|u| millis(u.duration)),
            upstream_attempts: self.upstream.as_ref().map(|u| u.attempts),
            bytes_received: r.received.load(Ordering::Relaxed),
            bytes_sent: sent,
            trace_id,
            client_address: r.client.to_string(),
        });
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, not all zeros).
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn rfc3339_millis(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
