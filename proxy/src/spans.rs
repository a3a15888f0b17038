//! Request spans (OpenTelemetry HTTP semantic conventions): a server span per request, child of
//! the trace context it arrived with (W3C `traceparent`/`tracestate`, or B3: [`propagation`]),
//! and a client span per upstream attempt (so retries show), whose context is sent to the backend
//! in place of the client's.
//!
//! Server span: named `{method} {route}` once routed (`{method}` before), attributes
//! `http.request.method`, `url.path`, `url.scheme`, `server.address`, `network.protocol.version`,
//! `client.address`, `http.route` (the route, `namespace/name`), `serval.gateway`,
//! `serval.listener`, `serval.rule`, `serval.backend`, `http.response.status_code`; status Error on
//! a 5xx or a request dropped before its response. Client span: `{method}`, `server.address`,
//! `server.port` (the endpoint), `http.request.method`, `http.request.resend_count` on retries,
//! `http.response.status_code` or `error.type`.
//!
//! Sampling is decided here, first, parent-based: a request whose `traceparent` is sampled is
//! traced, one whose `traceparent` is not is not, and a new trace is with the configured ratio. A
//! request that is not traced costs a header lookup and a random number: no span is made and its
//! `traceparent`, if any, goes to the backend unchanged, as without tracing.
//!
//! Recording is lean: a traced request keeps ids, clock readings and the strings it already
//! holds (route labels are shared `Arc<str>`s), and queues one record per span when it ends; the
//! OTLP spans are built in the export task (`serval_common::traces::batch`), not on the request
//! path. The SDK is used only for the configuration-apply span ([`apply_span`]).

pub mod propagation;

use crate::metrics::requests::RouteId;
use http::{HeaderMap, Method, Version};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use propagation::Propagation;
use serval_common::traces::{
    batch::{Record, SpanQueue},
    encode::{Kind, SpanWriter},
};
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};

/// Starts request spans.
#[derive(Debug)]
pub struct Spans {
    queue: SpanQueue<Finished>,
    propagation: Propagation,
    /// Probability that a new trace is sampled.
    ratio: f64,
}

/// What a server span is started from.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a Method,
    /// HTTP version.
    pub version: Version,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The request's host (without port).
    pub host: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The client.
    pub client: SocketAddr,
    /// The request's headers (for `traceparent` and `tracestate`).
    pub headers: &'a HeaderMap,
}

/// The span of one request, queued for export when it ends (or is dropped: then as a request
/// that got no response).
#[derive(Debug)]
pub struct ServerSpan {
    queue: SpanQueue<Finished>,
    record: Option<ServerRecord>,
}

/// The span of one upstream attempt.
#[derive(Debug)]
pub struct ClientSpan {
    queue: SpanQueue<Finished>,
    record: Option<ClientRecord>,
}

/// A finished span, waiting for export.
#[derive(Debug)]
pub enum Finished {
    /// A request.
    Server(ServerRecord),
    /// An upstream attempt.
    Client(ClientRecord),
}

/// What a server span recorded.
#[derive(Debug)]
pub struct ServerRecord {
    trace: TraceId,
    span: SpanId,
    /// The caller's span, if the request carried one.
    parent: Option<SpanId>,
    trace_state: TraceState,
    start: SystemTime,
    end: SystemTime,
    method: &'static str,
    path: String,
    scheme: &'static str,
    host: String,
    version: &'static str,
    client: IpAddr,
    route: Option<Routed>,
    backend: Option<Arc<str>>,
    /// 0: no response was sent.
    status: u16,
}

#[derive(Debug)]
struct Routed {
    route: Arc<str>,
    gateway: Arc<str>,
    listener: Arc<str>,
    rule: Arc<str>,
}

/// What a client span recorded.
#[derive(Debug)]
pub struct ClientRecord {
    trace: TraceId,
    span: SpanId,
    parent: SpanId,
    trace_state: TraceState,
    start: SystemTime,
    end: SystemTime,
    method: &'static str,
    endpoint: SocketAddr,
    attempt: u32,
    outcome: Result<u16, &'static str>,
}

impl Spans {
    /// Spans queued on `queue`; new traces are sampled with probability `ratio`; headers as
    /// `OTEL_PROPAGATORS` says.
    pub fn new(queue: SpanQueue<Finished>, ratio: f64) -> Self {
        Self {
            queue,
            propagation: Propagation::from_env(),
            ratio,
        }
    }

    /// The server span of a request that just arrived, if it is traced.
    pub fn server(&self, req: &Incoming<'_>) -> Option<ServerSpan> {
        let extracted = if self.propagation.carried(req.headers) {
            self.propagation.extract(req.headers)
        } else {
            propagation::Extracted {
                cx: opentelemetry::Context::new(),
                sampling: propagation::Sampling::Deferred,
            }
        };
        let traced = match extracted.sampling {
            propagation::Sampling::Sampled => true,
            propagation::Sampling::NotSampled => false,
            propagation::Sampling::Deferred => self.ratio >= 1.0 || fastrand::f64() < self.ratio,
        };
        if !traced {
            return None;
        }
        // A deferred parent that the ratio sampled is recorded as a sampled child of it.
        let remote = extracted.cx.span();
        let remote = remote.span_context();
        let (trace, parent, trace_state) = if remote.is_valid() {
            (
                remote.trace_id(),
                Some(remote.span_id()),
                remote.trace_state().clone(),
            )
        } else {
            (new_trace_id(), None, TraceState::NONE)
        };
        let version = match req.version {
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2",
            Version::HTTP_3 => "3",
            _ => "1.1",
        };
        let now = SystemTime::now();
        Some(ServerSpan {
            queue: self.queue.clone(),
            record: Some(ServerRecord {
                trace,
                span: new_span_id(),
                parent,
                trace_state,
                start: now,
                end: now,
                method: method_str(req.method),
                path: req.path.to_owned(),
                scheme: req.scheme,
                host: req.host.to_owned(),
                version,
                client: req.client.ip(),
                route: None,
                backend: None,
                status: 0,
            }),
        })
    }

    /// The span of one attempt of the request of `server` to `endpoint` (`attempt` 0 first).
    pub fn client(&self, server: &ServerSpan, endpoint: SocketAddr, attempt: u32) -> ClientSpan {
        let record = server.record.as_ref().map(|s| ClientRecord {
            trace: s.trace,
            span: new_span_id(),
            parent: s.span,
            trace_state: s.trace_state.clone(),
            start: SystemTime::now(),
            end: SystemTime::UNIX_EPOCH,
            method: s.method,
            endpoint,
            attempt,
            outcome: Err("no answer"),
        });
        ClientSpan {
            queue: self.queue.clone(),
            record,
        }
    }

    /// Writes `client`'s context into an upstream request's headers (replacing the client's).
    pub fn inject(&self, client: &ClientSpan, headers: &mut HeaderMap) {
        if let Some(c) = &client.record {
            let sc = SpanContext::new(
                c.trace,
                c.span,
                TraceFlags::SAMPLED,
                false,
                c.trace_state.clone(),
            );
            self.propagation.inject(&sc, headers);
        }
    }
}

impl ServerSpan {
    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.record
            .as_ref()
            .map(|r| r.trace.to_string())
            .unwrap_or_default()
    }

    /// The request matched `route` through `listener`.
    pub fn routed(&mut self, route: &RouteId, listener: &Arc<str>) {
        if let Some(r) = &mut self.record {
            r.route = Some(Routed {
                route: Arc::clone(&route.route),
                gateway: Arc::clone(&route.gateway),
                listener: Arc::clone(listener),
                rule: Arc::clone(&route.rule),
            });
        }
    }

    /// The request goes to the Service port `backend`.
    pub fn backend(&mut self, backend: &Arc<str>) {
        if let Some(r) = &mut self.record {
            r.backend = Some(Arc::clone(backend));
        }
    }

    /// Ends the span: `status` was sent (0: none, the client went away first).
    pub fn end(mut self, status: u16) {
        if let Some(mut record) = self.record.take() {
            record.status = status;
            record.end = SystemTime::now();
            self.queue.push(Finished::Server(record));
        }
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.end = SystemTime::now();
            self.queue.push(Finished::Server(record));
        }
    }
}

impl ClientSpan {
    /// Ends the attempt: the backend answered `status`, or failed with `error`.
    pub fn end(mut self, outcome: Result<u16, &'static str>) {
        if let Some(mut record) = self.record.take() {
            record.outcome = outcome;
            record.end = SystemTime::now();
            self.queue.push(Finished::Client(record));
        }
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        // An attempt abandoned with its request (the client went away): no answer.
        if let Some(mut record) = self.record.take() {
            record.end = SystemTime::now();
            self.queue.push(Finished::Client(record));
        }
    }
}

impl Record for Finished {
    fn encode(&self, span: &mut SpanWriter<'_>) {
        match self {
            Finished::Server(r) => r.encode(span),
            Finished::Client(r) => r.encode(span),
        }
    }
}

impl ServerRecord {
    fn encode(&self, span: &mut SpanWriter<'_>) {
        span.ids(
            self.trace.to_bytes(),
            self.span.to_bytes(),
            self.parent.map(|p| p.to_bytes()),
        )
        .trace_state(&self.trace_state.header())
        .flags(self.parent.is_some());
        match &self.route {
            Some(routed) => span.name(&[self.method, " ", &routed.route]),
            None => span.name(&[self.method]),
        };
        span.kind(Kind::Server)
            .times(unix_nanos(self.start), unix_nanos(self.end))
            .text("http.request.method", self.method)
            .text("url.path", &self.path)
            .text("url.scheme", self.scheme)
            .text("server.address", &self.host)
            .text("network.protocol.version", self.version)
            .text("client.address", &ip_text(self.client));
        if let Some(routed) = &self.route {
            span.text("http.route", &routed.route)
                .text("serval.gateway", &routed.gateway)
                .text("serval.listener", &routed.listener)
                .text("serval.rule", &routed.rule);
        }
        if let Some(backend) = &self.backend {
            span.text("serval.backend", backend);
        }
        match self.status {
            0 => {
                span.error("no response sent");
            }
            status => {
                span.int("http.response.status_code", u64::from(status));
                if status >= 500 {
                    span.error("");
                }
            }
        }
    }
}

impl ClientRecord {
    fn encode(&self, span: &mut SpanWriter<'_>) {
        span.ids(
            self.trace.to_bytes(),
            self.span.to_bytes(),
            Some(self.parent.to_bytes()),
        )
        .trace_state(&self.trace_state.header())
        .flags(false)
        .name(&[self.method])
        .kind(Kind::Client)
        .times(unix_nanos(self.start), unix_nanos(self.end))
        .text("http.request.method", self.method)
        .text("server.address", &ip_text(self.endpoint.ip()))
        .int("server.port", u64::from(self.endpoint.port()));
        if self.attempt > 0 {
            span.int("http.request.resend_count", u64::from(self.attempt));
        }
        match self.outcome {
            Ok(status) => {
                span.int("http.response.status_code", u64::from(status));
                if status >= 500 {
                    span.error("");
                }
            }
            Err(kind) => {
                span.text("error.type", kind).error(kind);
            }
        }
    }
}

/// An address as text, without allocating.
fn ip_text(ip: IpAddr) -> IpText {
    use std::io::Write as _;
    let mut text = IpText([0; 48], 0);
    let mut cursor = std::io::Cursor::new(&mut text.0[..]);
    let _ = write!(cursor, "{ip}");
    text.1 = usize::try_from(cursor.position()).unwrap_or(0);
    text
}

/// An address formatted on the stack (an IPv6 address is at most 45 characters).
struct IpText([u8; 48], usize);

impl std::ops::Deref for IpText {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0[..self.1]).unwrap_or_default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random, valid (non-zero) trace id.
fn new_trace_id() -> TraceId {
    TraceId::from_bytes(fastrand::u128(1..).to_be_bytes())
}

/// A random, valid (non-zero) span id.
fn new_span_id() -> SpanId {
    SpanId::from_bytes(fastrand::u64(1..).to_be_bytes())
}

/// The method as a `'static` string (no allocation for the standard ones).
fn method_str(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The span of applying a delta response that carries the control plane's trace context
/// (`config.apply`, a child of its push span), when traces are exported.
pub fn apply_span(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    response: &serval_common::proto::discovery::v1::DeltaConfigResponse,
    node: &str,
) -> Option<opentelemetry_sdk::trace::Span> {
    use opentelemetry::trace::Tracer as _;
    if response.trace_context.is_empty() {
        return None;
    }
    let parent = serval_common::traces::context_from_map(&response.trace_context);
    if !parent.span().span_context().is_valid() {
        return None;
    }
    Some(
        tracer
            .span_builder("config.apply")
            .with_kind(opentelemetry::trace::SpanKind::Consumer)
            .with_attributes(serval_common::traces::response_attributes(node, response))
            .start_with_context(tracer, &parent),
    )
}
