//! Which trace-context headers the proxy reads and writes: W3C Trace Context (`traceparent`,
//! `tracestate`; the default), B3 single-header (`b3`) and B3 multi-header (`X-B3-TraceId`,
//! `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`), chosen with the standard `OTEL_PROPAGATORS`
//! (`tracecontext`, `b3`, `b3multi`, comma-separated; others are ignored). A request's parent is
//! taken from the first format, in that order, that it carries; an upstream request gets every
//! configured format (and no stale `X-B3-ParentSpanId` or `X-B3-Flags`). B3's sampling state is
//! kept: `1` or debug samples, `0` does not, and an absent one defers to the proxy's ratio, as do
//! requests without a parent; `b3: 0` and `b3: 1` decide without a parent.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    propagation::{Extractor, TextMapPropagator},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// One header format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// `b3: {trace}-{span}-{sampled}`.
    B3Single,
    /// `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`.
    B3Multi,
}

/// A request's sampling decision, as its headers carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Trace it.
    Sampled,
    /// Do not.
    NotSampled,
    /// Up to the proxy (no decision, or no parent).
    Deferred,
}

/// The parent a request's headers name (an empty context for none) and its sampling decision.
#[derive(Debug)]
pub struct Extracted {
    /// The parent context.
    pub cx: Context,
    /// The sampling decision.
    pub sampling: Sampling,
}

/// The configured formats.
#[derive(Clone, Debug)]
pub struct Propagation {
    formats: Vec<Format>,
    w3c: TraceContextPropagator,
}

impl Propagation {
    /// The formats `OTEL_PROPAGATORS` names (W3C when unset or naming none Serval knows).
    pub fn from_env() -> Self {
        Self::parse(std::env::var("OTEL_PROPAGATORS").ok().as_deref())
    }

    /// The formats a `OTEL_PROPAGATORS` value names.
    pub fn parse(value: Option<&str>) -> Self {
        let mut formats = Vec::new();
        for name in value.unwrap_or("tracecontext").split(',').map(str::trim) {
            let format = match name {
                "tracecontext" => Format::TraceContext,
                "b3" => Format::B3Single,
                "b3multi" => Format::B3Multi,
                _ => continue,
            };
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        if formats.is_empty() {
            formats.push(Format::TraceContext);
        }
        Self {
            formats,
            w3c: TraceContextPropagator::new(),
        }
    }

    /// True if `headers` may carry a parent (a header of a configured format is present).
    pub fn carried(&self, headers: &HeaderMap) -> bool {
        self.formats.iter().any(|f| match f {
            Format::TraceContext => headers.contains_key("traceparent"),
            Format::B3Single => headers.contains_key("b3"),
            Format::B3Multi => headers.contains_key("x-b3-traceid"),
        })
    }

    /// The parent `headers` carry, from the first configured format that names a valid one.
    pub fn extract(&self, headers: &HeaderMap) -> Extracted {
        for format in &self.formats {
            let found = match format {
                Format::TraceContext => {
                    let sc = self
                        .w3c
                        .extract(&Headers(headers))
                        .span()
                        .span_context()
                        .clone();
                    let sampling = if sc.is_sampled() {
                        Sampling::Sampled
                    } else {
                        Sampling::NotSampled
                    };
                    sc.is_valid().then_some((sc, sampling))
                }
                // `b3: 0`, `b3: 1`, `b3: d`: a decision without a parent.
                Format::B3Single => match header(headers, "b3") {
                    Some("0") => return extracted(None, Sampling::NotSampled),
                    Some("1" | "d") => return extracted(None, Sampling::Sampled),
                    _ => b3_single(headers),
                },
                Format::B3Multi => b3_multi(headers),
            };
            if let Some((sc, sampling)) = found {
                return extracted(Some(sc), sampling);
            }
        }
        extracted(None, Sampling::Deferred)
    }

    /// Writes the span `sc` into `headers` in every configured format.
    pub fn inject(&self, sc: &SpanContext, headers: &mut HeaderMap) {
        for format in &self.formats {
            match format {
                Format::TraceContext => {
                    if let Ok(value) = HeaderValue::from_bytes(&traceparent(sc)) {
                        headers.insert(HeaderName::from_static("traceparent"), value);
                    }
                    let state = sc.trace_state().header();
                    if state.is_empty() {
                        headers.remove("tracestate");
                    } else {
                        set(headers, "tracestate", state);
                    }
                }
                Format::B3Single => set(
                    headers,
                    "b3",
                    format!(
                        "{}-{}-{}",
                        sc.trace_id(),
                        sc.span_id(),
                        u8::from(sc.is_sampled())
                    ),
                ),
                Format::B3Multi => {
                    set(headers, "x-b3-traceid", sc.trace_id().to_string());
                    set(headers, "x-b3-spanid", sc.span_id().to_string());
                    set(
                        headers,
                        "x-b3-sampled",
                        u8::from(sc.is_sampled()).to_string(),
                    );
                    // The client's parent and debug flag describe its span, not ours.
                    headers.remove("x-b3-parentspanid");
                    headers.remove("x-b3-flags");
                }
            }
        }
    }
}

fn extracted(sc: Option<SpanContext>, sampling: Sampling) -> Extracted {
    Extracted {
        cx: sc.map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        }),
        sampling,
    }
}

/// `00-{trace id}-{span id}-{flags}`, in lowercase hex (written without the formatter: this
/// runs for every upstream attempt of a traced request).
fn traceparent(sc: &SpanContext) -> [u8; 55] {
    fn hex(bytes: &[u8], out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&sc.trace_id().to_bytes(), &mut out[3..35]);
    hex(&sc.span_id().to_bytes(), &mut out[36..52]);
    hex(&[sc.trace_flags().to_u8()], &mut out[53..55]);
    out
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A 64- or 128-bit B3 trace id.
fn trace_id(hex: &str) -> Option<TraceId> {
    if !matches!(hex.len(), 16 | 32) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    TraceId::from_hex(&format!("{hex:0>32}")).ok()
}

fn span_id(hex: &str) -> Option<SpanId> {
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    SpanId::from_hex(hex).ok()
}

/// `1` and `d` (debug) sample; `0` does not; absent defers.
fn sampling(sampled: Option<&str>) -> Option<Sampling> {
    match sampled {
        Some("1" | "d" | "true") => Some(Sampling::Sampled),
        Some("0" | "false") => Some(Sampling::NotSampled),
        None => Some(Sampling::Deferred),
        Some(_) => None,
    }
}

fn context(trace: TraceId, span: SpanId, sampling: Sampling) -> Option<(SpanContext, Sampling)> {
    let flags = if sampling == Sampling::Sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    sc.is_valid().then_some((sc, sampling))
}

fn b3_single(headers: &HeaderMap) -> Option<(SpanContext, Sampling)> {
    let value = header(headers, "b3")?;
    let mut parts = value.split('-');
    let trace = trace_id(parts.next()?)?;
    let span = span_id(parts.next()?)?;
    context(trace, span, sampling(parts.next())?)
}

fn b3_multi(headers: &HeaderMap) -> Option<(SpanContext, Sampling)> {
    let trace = trace_id(header(headers, "x-b3-traceid")?)?;
    let span = span_id(header(headers, "x-b3-spanid")?)?;
    let sampled = if header(headers, "x-b3-flags") == Some("1") {
        Some("d")
    } else {
        header(headers, "x-b3-sampled")
    };
    context(trace, span, sampling(sampled)?)
}

/// Reads propagation headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).expect("value"),
                )
            })
            .collect()
    }

    fn parent(p: &Propagation, h: &HeaderMap) -> SpanContext {
        p.extract(h).cx.span().span_context().clone()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn b3_single_and_multi_are_read_and_written_when_configured() {
        let both = Propagation::parse(Some("b3multi, b3"));
        let single = headers(&[("b3", &format!("{TRACE}-{SPAN}-1"))]);
        let sc = parent(&both, &single);
        assert_eq!(sc.trace_id().to_string(), TRACE);
        assert_eq!(sc.span_id().to_string(), SPAN);
        assert!(sc.is_sampled() && sc.is_remote());
        // A 64-bit trace id is left-padded; the debug flag samples.
        let multi = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ]);
        let sc = parent(&both, &multi);
        assert_eq!(
            sc.trace_id().to_string(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled());
        let unsampled = headers(&[("b3", &format!("{TRACE}-{SPAN}-0"))]);
        assert!(!parent(&both, &unsampled).is_sampled());
        // Malformed values are no parent.
        for bad in [
            "xyz",
            &format!("{TRACE}-short-1"),
            &format!("{TRACE}-{SPAN}-7"),
        ] {
            assert!(!parent(&both, &headers(&[("b3", bad)])).is_valid(), "{bad}");
        }
        // W3C is not configured here: a traceparent is ignored.
        let w3c = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]);
        assert!(!parent(&both, &w3c).is_valid());
        assert!(!both.carried(&w3c) && both.carried(&single) && both.carried(&multi));

        // No sampling state defers; `b3: 0` and `b3: 1` decide without a parent.
        let deferred = headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]);
        assert_eq!(both.extract(&deferred).sampling, Sampling::Deferred);
        assert!(parent(&both, &deferred).is_valid());
        let deny = both.extract(&headers(&[("b3", "0")]));
        assert_eq!(deny.sampling, Sampling::NotSampled);
        assert!(!deny.cx.span().span_context().is_valid());
        assert_eq!(
            both.extract(&headers(&[("b3", "1")])).sampling,
            Sampling::Sampled
        );
        assert_eq!(both.extract(&HeaderMap::new()).sampling, Sampling::Deferred);

        let mut out = headers(&[
            ("x-b3-parentspanid", "1111111111111111"),
            ("x-b3-flags", "1"),
        ]);
        both.inject(both.extract(&single).cx.span().span_context(), &mut out);
        assert!(!out.contains_key("x-b3-parentspanid") && !out.contains_key("x-b3-flags"));
        assert_eq!(out["b3"], format!("{TRACE}-{SPAN}-1").as_str());
        assert_eq!(out["x-b3-traceid"], TRACE);
        assert_eq!(out["x-b3-spanid"], SPAN);
        assert_eq!(out["x-b3-sampled"], "1");
        assert!(!out.contains_key("traceparent"));
    }

    #[test]
    fn w3c_is_the_default_and_comes_first_when_listed() {
        let default = Propagation::parse(None);
        assert_eq!(default.formats, [Format::TraceContext]);
        assert_eq!(
            Propagation::parse(Some("jaeger")).formats,
            [Format::TraceContext]
        );
        let both = Propagation::parse(Some("tracecontext,b3"));
        let h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("tracestate", "vendor=abc"),
            ("b3", &format!("{}-{SPAN}-1", "1".repeat(32))),
        ]);
        assert_eq!(parent(&both, &h).trace_id().to_string(), TRACE);
        let mut out = HeaderMap::new();
        both.inject(both.extract(&h).cx.span().span_context(), &mut out);
        assert_eq!(out["traceparent"], format!("00-{TRACE}-{SPAN}-01").as_str());
        assert_eq!(out["tracestate"], "vendor=abc");
        assert_eq!(out["b3"], format!("{TRACE}-{SPAN}-1").as_str());
        // An unsampled context is written as such; an empty trace state removes the header.
        let unsampled = SpanContext::new(
            TraceId::from_hex(TRACE).expect("hex"),
            SpanId::from_hex(SPAN).expect("hex"),
            TraceFlags::NOT_SAMPLED,
            false,
            TraceState::default(),
        );
        default.inject(&unsampled, &mut out);
        assert_eq!(out["traceparent"], format!("00-{TRACE}-{SPAN}-00").as_str());
        assert!(!out.contains_key("tracestate"));
    }
}
