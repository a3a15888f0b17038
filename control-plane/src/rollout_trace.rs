//! A configuration rollout as one trace: when the control plane exports traces, each published
//! snapshot gets a `config.rollout` span (from the change being observed to the snapshot being
//! published, with a `config.translate` child), each response pushing it to a proxy a
//! `config.push` child (ended by the proxy's ACK or NACK: `serval_common::traces::end_with_answer`), and the response carries the push's
//! W3C trace context, which the proxy's `config.apply` span joins (`serval-proxy`, `spans`).
//!
//! Rollouts are always traced (they are rare); the spans carry the snapshot version, the node and
//! what the response held. Without a tracer nothing here runs.

use opentelemetry::{
    KeyValue,
    trace::{Span as _, SpanContext, SpanKind, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use serval_common::proto::discovery::v1::DeltaConfigResponse;
use std::time::{Instant, SystemTime};

/// The wall-clock time of `at`.
fn wall(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or_else(SystemTime::now)
}

/// Records the rollout of snapshot `version` (`resources` in all): observed at `observed`,
/// translated from `translate_started` until now. Returns the rollout span's context, the parent
/// of its pushes.
pub fn rollout(
    tracer: &SdkTracer,
    version: &str,
    resources: usize,
    observed: Instant,
    translate_started: Instant,
) -> SpanContext {
    let attributes = [
        KeyValue::new("serval.snapshot.version", version.to_owned()),
        KeyValue::new("serval.snapshot.resources", resources as i64),
    ];
    let mut root = tracer
        .span_builder("config.rollout")
        .with_kind(SpanKind::Internal)
        .with_start_time(wall(observed.min(translate_started)))
        .with_attributes(attributes.clone())
        .start(tracer);
    let context = root.span_context().clone();
    let parent = opentelemetry::Context::new().with_remote_span_context(context.clone());
    let mut translate = tracer
        .span_builder("config.translate")
        .with_kind(SpanKind::Internal)
        .with_start_time(wall(translate_started))
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    translate.end();
    root.end();
    context
}

/// Starts the span of pushing `response` to `node` as part of the rollout `parent`, and writes
/// its context into the response.
pub fn push(
    tracer: &SdkTracer,
    parent: &SpanContext,
    node: &str,
    response: &mut DeltaConfigResponse,
) -> Span {
    let cx = opentelemetry::Context::new().with_remote_span_context(parent.clone());
    let span = tracer
        .span_builder("config.push")
        .with_kind(SpanKind::Producer)
        .with_attributes(serval_common::traces::response_attributes(node, response))
        .start_with_context(tracer, &cx);
    response.trace_context = serval_common::traces::context_map(span.span_context());
    span
}
