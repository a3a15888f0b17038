//! OpenTelemetry traces for both binaries: a tracer provider exporting over OTLP, configured from
//! the standard environment (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`,
//! `OTEL_SDK_DISABLED`) or the flags that override it (`--otlp-endpoint`, `--trace-sampling`).
//!
//! Tracing is off unless an endpoint is configured: then no span is ever made and the request
//! path pays nothing. When on, finished SDK spans go to a bounded queue that a background thread
//! exports in batches, over OTLP/gRPC or OTLP/HTTP with protobuf (`--otlp-protocol`, else
//! `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`); a span that finds the queue full is dropped and
//! counted in `serval_trace_spans_dropped_total`, so export never blocks or slows the caller.
//! The exports themselves run on the Tokio runtime that started the exporter.
//!
//! What the spans are is the components' business (the proxy's request spans, the control plane's
//! rollout spans). Spans made through the SDK (rollouts, configuration applies) are exported by
//! `opentelemetry-otlp`; a component that makes a span per request records them on the lean path
//! instead ([`batch`], [`otlp`]): same endpoint, protocol, resource and queue settings, a fraction
//! of the cost per span.

pub mod batch;
pub mod encode;
pub mod otlp;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span,
        SpanData, SpanExporter, SpanProcessor,
    },
};
use prometheus_client::metrics::counter::Counter;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Finished spans waiting for export at most, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
const DEFAULT_QUEUE: usize = 2048;

/// Trace settings from flags (they win over the environment).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TraceArgs {
    /// OTLP/gRPC endpoint to export traces to (e.g. `http://otel-collector:4317`); default
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`. Without one,
    /// tracing is off.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces to sample, 0 to 1 (parent-based: a request that arrives with a
    /// sampled `traceparent` is always traced). Default: `OTEL_TRACES_SAMPLER[_ARG]`, else every
    /// trace.
    #[arg(long, value_name = "RATIO", value_parser = ratio)]
    pub trace_sampling: Option<f64>,
    /// OTLP transport; default `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`.
    #[arg(long, value_enum)]
    pub otlp_protocol: Option<OtlpProtocol>,
}

/// How spans are sent to the OTLP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, `POST {endpoint}/v1/traces` (port 4318 by convention).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The protocol an `OTEL_EXPORTER_OTLP_*_PROTOCOL` value names.
    fn parse(value: &str) -> Option<Self> {
        match value {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

fn ratio(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint}: {reason}")]
pub struct TraceError {
    /// The endpoint.
    pub endpoint: String,
    /// What went wrong.
    pub reason: String,
}

/// A running tracer: its provider (shut down on drop, flushing what is queued) and a tracer.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    /// Where the lean path sends spans.
    target: otlp::Target,
    batch: batch::BatchSettings,
    dropped: Counter,
    /// The tracer the component starts spans with. It records every span it is asked for
    /// (parent-based: children of a recorded span are recorded); whether to start a trace is
    /// the caller's decision, with [`Traces::ratio`].
    pub tracer: SdkTracer,
    /// Probability with which a new trace should be started: `--trace-sampling`, else from
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (`always_on` and `parentbased_always_on`
    /// 1, `always_off` and `parentbased_always_off` 0, `traceidratio` and
    /// `parentbased_traceidratio` the argument), else 1.
    pub ratio: f64,
}

impl Traces {
    /// Starts exporting if an endpoint is configured; `None` when tracing is off. `service` is
    /// the default `service.name` (`OTEL_SERVICE_NAME` wins); dropped spans are counted in
    /// `dropped`. Needs a Tokio runtime (the exporter's gRPC channel).
    pub fn start(
        args: &TraceArgs,
        service: &'static str,
        dropped: Counter,
    ) -> Result<Option<Self>, TraceError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        // The traces-specific endpoint is the full URL; a base one gets `/v1/traces` over HTTP.
        let (endpoint, is_base) = match (
            args.otlp_endpoint.clone(),
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(flag), _, _) => (flag, true),
            (None, Some(traces), _) => (traces, false),
            (None, None, Some(base)) => (base, true),
            (None, None, None) => return Ok(None),
        };
        let insecure = env("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
            .or_else(|| env("OTEL_EXPORTER_OTLP_INSECURE"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = with_scheme(endpoint, insecure)?;
        let protocol = args
            .otlp_protocol
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
                    .and_then(|p| OtlpProtocol::parse(&p))
            })
            .unwrap_or(OtlpProtocol::Grpc);
        let http_url = if is_base && !endpoint.trim_end_matches('/').ends_with("/v1/traces") {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        } else {
            endpoint.clone()
        };
        use opentelemetry_otlp::WithExportConfig;
        let built = match protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(http_url.clone())
                .build(),
        };
        let exporter = built.map_err(|e| TraceError {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let cap = env("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_QUEUE);
        let number = |name: &str| env(name).and_then(|v| v.parse::<u64>().ok());
        let batch = batch::BatchSettings {
            queue: cap,
            batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(512),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY").unwrap_or(5000)),
        };
        let headers = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|h| otlp::parse_headers(&h))
            .unwrap_or_default();
        let timeout = Duration::from_millis(
            number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .or_else(|| number("OTEL_EXPORTER_OTLP_TIMEOUT"))
                .unwrap_or(10_000),
        );
        let pending = Arc::new(AtomicUsize::new(0));
        let batches = BatchSpanProcessor::builder(Counting {
            inner: Arc::new(exporter),
            pending: Arc::clone(&pending),
            runtime: tokio::runtime::Handle::try_current().map_err(|e| TraceError {
                endpoint: endpoint.clone(),
                reason: format!("no Tokio runtime to export on: {e}"),
            })?,
        })
        // Room for twice the cap: the bound is enforced in front of it, where drops are counted.
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(cap * 2)
                .build(),
        )
        .build();
        let processor = Bounded {
            inner: batches,
            pending,
            cap,
            dropped: dropped.clone(),
        };
        let resource = match env("OTEL_SERVICE_NAME") {
            Some(_) => Resource::builder().build(),
            None => Resource::builder().with_service_name(service).build(),
        };
        let target = otlp::Target {
            url: match protocol {
                OtlpProtocol::Grpc => endpoint.clone(),
                OtlpProtocol::HttpProtobuf => http_url,
            },
            protocol,
            headers,
            timeout,
            resource:
                opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                    &resource,
                )
                .attributes
                .0,
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .build();
        let tracer = provider.tracer(service);
        let ratio = args.trace_sampling.unwrap_or_else(|| {
            env_ratio(
                env("OTEL_TRACES_SAMPLER").as_deref(),
                env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            )
        });
        tracing::info!(%endpoint, ?protocol, ratio, "exporting traces over OTLP");
        Ok(Some(Self {
            provider,
            target,
            batch,
            dropped,
            tracer,
            ratio,
        }))
    }

    /// A lean-path queue for spans of the instrumentation scope `scope`, exporting to the same
    /// endpoint from a task on the current Tokio runtime (see [`batch`]).
    pub fn span_queue<R: batch::Record>(
        &self,
        scope: &str,
    ) -> Result<batch::SpanQueue<R>, TraceError> {
        let sender = otlp::Sender::new(self.target.clone(), scope).map_err(|e| TraceError {
            endpoint: self.target.url.clone(),
            reason: e.to_string(),
        })?;
        Ok(batch::SpanQueue::start(
            sender,
            self.batch,
            self.dropped.clone(),
        ))
    }

    /// Exports what is queued now (blocks: call from a blocking context).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The attributes of a configuration span (the control plane's push, a proxy's apply) about
/// `response` to `node`.
pub fn response_attributes(
    node: &str,
    response: &crate::proto::discovery::v1::DeltaConfigResponse,
) -> [opentelemetry::KeyValue; 4] {
    use opentelemetry::KeyValue;
    [
        KeyValue::new("serval.node", node.to_owned()),
        KeyValue::new(
            "serval.snapshot.version",
            response.system_version_info.clone(),
        ),
        KeyValue::new("serval.upserts", response.resources.len() as i64),
        KeyValue::new("serval.removals", response.removed_resources.len() as i64),
    ]
}

/// Ends a configuration span (the control plane's push, a proxy's apply) with the proxy's
/// answer: `serval.answer` ACK, or NACK with `error` as the span's error status.
pub fn end_with_answer(mut span: opentelemetry_sdk::trace::Span, error: Option<&str>) {
    use opentelemetry::{
        KeyValue,
        trace::{Span as _, Status},
    };
    match error {
        None => span.set_attribute(KeyValue::new("serval.answer", "ACK")),
        Some(message) => {
            span.set_attribute(KeyValue::new("serval.answer", "NACK"));
            span.set_status(Status::error(message.to_owned()));
        }
    }
    span.end();
}

/// `span`'s W3C trace context as `traceparent` (and `tracestate`) entries, for the delta
/// protocol's `trace_context`.
pub fn context_map(span: &opentelemetry::trace::SpanContext) -> BTreeMap<String, String> {
    use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
    let cx = opentelemetry::Context::new().with_remote_span_context(span.clone());
    let mut map = MapCarrier(BTreeMap::new());
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&cx, &mut map);
    map.0
}

/// The context `map` (a `trace_context`) names; an empty context if it names none.
pub fn context_from_map(map: &BTreeMap<String, String>) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator;
    opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&MapCarrier(map.clone()))
}

/// A `trace_context` map as a propagation carrier.
struct MapCarrier(BTreeMap<String, String>);

impl opentelemetry::propagation::Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl opentelemetry::propagation::Extractor for MapCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The ratio of new traces to sample that `OTEL_TRACES_SAMPLER` and its argument ask for.
/// `endpoint` with its scheme: as `opentelemetry-otlp` does, one without is `https://` unless
/// `insecure`. Only `http://` is supported (no TLS to the collector yet).
fn with_scheme(endpoint: String, insecure: bool) -> Result<String, TraceError> {
    let endpoint = match (endpoint.contains("://"), insecure) {
        (true, _) => endpoint,
        (false, true) => format!("http://{endpoint}"),
        (false, false) => format!("https://{endpoint}"),
    };
    if endpoint.starts_with("http://") {
        return Ok(endpoint);
    }
    Err(TraceError {
        endpoint,
        reason: "only http:// endpoints are supported (no TLS to the collector yet); for an \
                 endpoint without a scheme, set OTEL_EXPORTER_OTLP_INSECURE=true"
            .to_owned(),
    })
}

fn env_ratio(sampler: Option<&str>, arg: Option<&str>) -> f64 {
    let arg = || {
        arg.and_then(|a| ratio(a).ok()).unwrap_or_else(|| {
            tracing::warn!(
                "OTEL_TRACES_SAMPLER_ARG is not a ratio between 0 and 1; sampling every trace"
            );
            1.0
        })
    };
    match sampler {
        Some("always_off" | "parentbased_always_off") => 0.0,
        Some("traceidratio" | "parentbased_traceidratio") => arg(),
        Some("always_on" | "parentbased_always_on") | None => 1.0,
        Some(other) => {
            tracing::warn!(
                sampler = other,
                "OTEL_TRACES_SAMPLER not supported; sampling every trace"
            );
            1.0
        }
    }
}

/// Lets at most `cap` finished spans wait for export; drops (and counts) the rest.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    cap: usize,
    dropped: Counter,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that runs each export on the Tokio runtime (the batch processor's own thread has
/// none, and the HTTP client needs one) and tells [`Bounded`] when spans have left the queue.
#[derive(Debug)]
struct Counting<E> {
    inner: Arc<E>,
    pending: Arc<AtomicUsize>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let inner = Arc::clone(&self.inner);
        let result = match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(e) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                e.to_string(),
            )),
        };
        self.pending.fetch_sub(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_environment_gives_the_ratio() {
        assert_eq!(env_ratio(None, None), 1.0);
        assert_eq!(env_ratio(Some("always_off"), None), 0.0);
        assert_eq!(env_ratio(Some("parentbased_always_on"), None), 1.0);
        assert_eq!(
            env_ratio(Some("parentbased_traceidratio"), Some("0.25")),
            0.25
        );
        assert_eq!(env_ratio(Some("traceidratio"), Some("2")), 1.0);
        assert_eq!(env_ratio(Some("xray"), None), 1.0);
        assert!(ratio("0.5").is_ok() && ratio("-1").is_err() && ratio("x").is_err());
    }

    #[test]
    fn endpoints_get_a_scheme_and_only_http_is_accepted() {
        let ok = |e: &str, insecure| with_scheme(e.to_owned(), insecure).ok();
        assert_eq!(ok("http://c:4317", false).as_deref(), Some("http://c:4317"));
        assert_eq!(ok("c:4317", true).as_deref(), Some("http://c:4317"));
        let refused = with_scheme("c:4317".to_owned(), false).expect_err("https");
        assert_eq!(refused.endpoint, "https://c:4317");
        assert!(ok("https://c:4317", true).is_none());
    }
}
