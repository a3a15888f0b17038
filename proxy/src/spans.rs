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
//! `traceparent`, if any, goes to the backend unchanged, as without tracing. Export is
//! `serval_common::traces`'.

pub mod propagation;

use crate::metrics::requests::RouteId;
use http::{HeaderMap, Method, Version};
use opentelemetry::{
    Context, KeyValue,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use propagation::Propagation;
use std::net::SocketAddr;

/// Starts request spans.
#[derive(Debug)]
pub struct Spans {
    tracer: SdkTracer,
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

/// The span of one request, ended when its response has been sent.
#[derive(Debug)]
pub struct ServerSpan {
    span: Span,
    /// Its context, the parent of its client spans.
    cx: Context,
    method: &'static str,
}

/// The span of one upstream attempt.
#[derive(Debug)]
pub struct ClientSpan {
    span: Span,
    cx: Context,
}

impl Spans {
    /// Spans started with `tracer` (which records whatever it is given); new traces are sampled
    /// with probability `ratio`; headers as `OTEL_PROPAGATORS` says.
    pub fn new(tracer: SdkTracer, ratio: f64) -> Self {
        Self {
            tracer,
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
                cx: Context::new(),
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
        // A deferred parent that the ratio sampled: recorded as a sampled child of it.
        let remote = extracted.cx.span().span_context().clone();
        let parent = if remote.is_valid() && !remote.is_sampled() {
            Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
                remote.trace_id(),
                remote.span_id(),
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                remote.trace_state().clone(),
            ))
        } else {
            extracted.cx
        };
        let version = match req.version {
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2",
            Version::HTTP_3 => "3",
            _ => "1.1",
        };
        let method = method_str(req.method);
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", req.path.to_owned()),
                KeyValue::new("url.scheme", req.scheme),
                KeyValue::new("server.address", req.host.to_owned()),
                KeyValue::new("network.protocol.version", version),
                KeyValue::new("client.address", req.client.ip().to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        Some(ServerSpan { span, cx, method })
    }

    /// The span of one attempt of the request of `server` to `endpoint` (`attempt` 0 first).
    pub fn client(&self, server: &ServerSpan, endpoint: SocketAddr, attempt: u32) -> ClientSpan {
        let mut attributes = vec![
            KeyValue::new("http.request.method", server.method),
            KeyValue::new("server.address", endpoint.ip().to_string()),
            KeyValue::new("server.port", i64::from(endpoint.port())),
        ];
        if attempt > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt),
            ));
        }
        let span = self
            .tracer
            .span_builder(server.method)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &server.cx);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        ClientSpan { span, cx }
    }

    /// Writes `client`'s context into an upstream request's headers (replacing the client's).
    pub fn inject(&self, client: &ClientSpan, headers: &mut HeaderMap) {
        self.propagation.inject(&client.cx, headers);
    }
}

impl ServerSpan {
    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.span.span_context().trace_id().to_string()
    }

    /// The request matched `route` through `listener`.
    pub fn routed(&mut self, route: &RouteId, listener: &str) {
        self.span
            .update_name(format!("{} {}", self.method, route.route));
        self.span.set_attributes([
            KeyValue::new("http.route", route.route.to_string()),
            KeyValue::new("serval.gateway", route.gateway.to_string()),
            KeyValue::new("serval.listener", listener.to_owned()),
            KeyValue::new("serval.rule", route.rule.to_string()),
        ]);
    }

    /// The request goes to the Service port `backend`.
    pub fn backend(&mut self, backend: &str) {
        self.span
            .set_attribute(KeyValue::new("serval.backend", backend.to_owned()));
    }

    /// Ends the span: `status` was sent (0: none, the client went away first).
    pub fn end(mut self, status: u16) {
        if status == 0 {
            self.span.set_status(Status::error("no response sent"));
        } else {
            self.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                self.span.set_status(Status::error(""));
            }
        }
        self.span.end();
    }
}

impl ClientSpan {
    /// Ends the attempt: the backend answered `status`, or failed with `error`.
    pub fn end(mut self, outcome: Result<u16, &'static str>) {
        match outcome {
            Ok(status) => {
                self.span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 500 {
                    self.span.set_status(Status::error(""));
                }
            }
            Err(kind) => {
                self.span.set_attribute(KeyValue::new("error.type", kind));
                self.span.set_status(Status::error(kind));
            }
        }
        self.span.end();
    }
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
    tracer: &SdkTracer,
    response: &serval_common::proto::discovery::v1::DeltaConfigResponse,
    node: &str,
) -> Option<Span> {
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
            .with_kind(SpanKind::Consumer)
            .with_attributes(serval_common::traces::response_attributes(node, response))
            .start_with_context(tracer, &parent),
    )
}
