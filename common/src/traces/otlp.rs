//! Sending encoded spans to an OTLP endpoint: over gRPC (unary
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` through tonic, with a codec that
//! passes the already-encoded request through) or over HTTP with a protobuf body
//! (`POST …/v1/traces`). This is the transport of the lean span path ([`super::batch`]), which
//! writes OTLP straight from its records ([`super::encode`]) instead of going through the SDK's
//! span objects; the SDK's own spans keep `opentelemetry-otlp`. Answers are decoded with
//! `opentelemetry-proto`'s types.
//!
//! An export is tried once: a failure is returned, and the caller counts the spans as dropped
//! (a collector that is down costs spans, never memory or the request path). Headers come from
//! `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`; the timeout from `OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`.

use super::{OtlpProtocol, encode::export_request};
use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
    common::v1::{InstrumentationScope, KeyValue},
    resource::v1::Resource,
};
use prost::Message as _;
use std::time::Duration;

/// The gRPC method OTLP exports call.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where and how spans are sent: resolved once from flags and the environment.
#[derive(Clone, Debug)]
pub struct Target {
    /// For gRPC the endpoint (`http://host:4317`); for HTTP the full URL (`…/v1/traces`).
    pub url: String,
    /// gRPC or HTTP.
    pub protocol: OtlpProtocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`), names lowercase.
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
    /// The resource's attributes (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`, SDK facts).
    pub resource: Vec<KeyValue>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not a valid URL.
    #[error("OTLP endpoint {url}: {reason}")]
    Endpoint {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The collector answered with an error, or could not be reached.
    #[error("OTLP export to {url} failed: {reason}")]
    Failed {
        /// The endpoint.
        url: String,
        /// The gRPC status or HTTP status, or the connection error.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("OTLP export to {url} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The limit.
        timeout: Duration,
    },
}

/// A connection (made lazily, re-made after failures by the transports) to the endpoint.
#[derive(Clone, Debug)]
pub struct Sender {
    target: Target,
    /// The target's headers that are valid HTTP headers (the others are skipped, with a warning).
    headers: http::HeaderMap,
    /// The encoded `Resource` and `InstrumentationScope` every request carries.
    resource: Vec<u8>,
    scope: Vec<u8>,
    transport: Transport,
}

/// Both boxed: each is large.
#[derive(Clone, Debug)]
enum Transport {
    Grpc(Box<tonic::client::Grpc<tonic::transport::Channel>>),
    Http {
        client: Box<
            hyper_util::client::legacy::Client<
                hyper_util::client::legacy::connect::HttpConnector,
                Full<Bytes>,
            >,
        >,
        uri: http::Uri,
    },
}

impl Sender {
    /// A sender to `target`, for spans of the instrumentation scope `scope` (e.g.
    /// `serval-proxy`). Connects on first use; needs a Tokio runtime.
    pub fn new(target: Target, scope: &str) -> Result<Self, ExportError> {
        let bad = |reason: String| ExportError::Endpoint {
            url: target.url.clone(),
            reason,
        };
        let transport = match target.protocol {
            OtlpProtocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(target.url.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .connect_timeout(target.timeout)
                    .tcp_nodelay(true);
                Transport::Grpc(Box::new(tonic::client::Grpc::new(endpoint.connect_lazy())))
            }
            OtlpProtocol::HttpProtobuf => {
                let uri: http::Uri = target.url.parse().map_err(|e| bad(format!("{e}")))?;
                if uri.scheme_str() != Some("http") {
                    return Err(bad("only http:// endpoints are supported".to_owned()));
                }
                let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(target.timeout));
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build(connector);
                Transport::Http {
                    client: Box::new(client),
                    uri,
                }
            }
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &target.headers {
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => {
                    tracing::warn!(header = %name, "skipping an OTLP header that is not a valid HTTP header")
                }
            }
        }
        Ok(Self {
            headers,
            resource: Resource {
                attributes: target.resource.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            scope: InstrumentationScope {
                name: scope.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            }
            .encode_to_vec(),
            target,
            transport,
        })
    }

    /// Sends `spans` (`ScopeSpans.spans` entries: [`super::encode::push_span`]) as one export
    /// request, within the target's timeout.
    pub async fn export(&mut self, spans: &[u8]) -> Result<(), ExportError> {
        let request = export_request(&self.resource, &self.scope, spans);
        let timeout = self.target.timeout;
        match tokio::time::timeout(timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(ExportError::Timeout {
                url: self.target.url.clone(),
                timeout,
            }),
        }
    }

    async fn send(&mut self, request: Bytes) -> Result<(), ExportError> {
        let failed = |reason: String| ExportError::Failed {
            url: self.target.url.clone(),
            reason,
        };
        match &mut self.transport {
            Transport::Grpc(client) => {
                let mut request = tonic::Request::new(request);
                *request.metadata_mut() =
                    tonic::metadata::MetadataMap::from_headers(self.headers.clone());
                let status = |s: tonic::Status| failed(format!("{:?}: {}", s.code(), s.message()));
                client.ready().await.map_err(|e| failed(e.to_string()))?;
                let answer = client
                    .unary(
                        request,
                        http::uri::PathAndQuery::from_static(EXPORT_PATH),
                        Encoded,
                    )
                    .await
                    .map_err(status)?
                    .into_inner();
                partial(answer.partial_success);
                Ok(())
            }
            Transport::Http { client, uri } => {
                let mut req = http::Request::post(uri.clone())
                    .body(Full::new(request))
                    .map_err(|e| failed(e.to_string()))?;
                req.headers_mut().extend(self.headers.clone());
                req.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(failed(format!("HTTP {status}")));
                }
                if let Ok(answer) = ExportTraceServiceResponse::decode(body) {
                    partial(answer.partial_success);
                }
                Ok(())
            }
        }
    }
}

/// Logs spans a collector rejected (the export itself succeeded: not retried, as the spec says).
fn partial(partial: Option<ExportTracePartialSuccess>) {
    if let Some(p) = partial.filter(|p| p.rejected_spans > 0 || !p.error_message.is_empty()) {
        tracing::warn!(
            rejected = p.rejected_spans,
            message = %p.error_message,
            "the OTLP collector rejected spans"
        );
    }
}

/// The gRPC codec of an export: the request is already encoded; the answer is decoded.
#[derive(Clone, Copy, Debug)]
struct Encoded;

impl tonic::codec::Codec for Encoded {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Encoded;
    type Decoder = Encoded;

    fn encoder(&mut self) -> Self::Encoder {
        Encoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        Encoded
    }
}

impl tonic::codec::Encoder for Encoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Encoded {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        let answer = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(format!("export answer: {e}")))?;
        Ok(Some(answer))
    }
}

/// `key1=value1,key2=value2` (values percent-decoded), as `OTEL_EXPORTER_OTLP_HEADERS` is
/// written; malformed entries are skipped.
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let value = percent_decode(value.trim())?;
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_as_the_spec_writes_them() {
        assert_eq!(
            parse_headers("api-key=abc%20def, X-Tenant = t1,broken,=x,bad=%zz"),
            vec![
                ("api-key".to_owned(), "abc def".to_owned()),
                ("x-tenant".to_owned(), "t1".to_owned()),
            ]
        );
        assert!(parse_headers("").is_empty());
    }

    #[tokio::test]
    async fn headers_that_are_not_valid_http_headers_are_skipped_once() {
        let target = Target {
            url: "http://127.0.0.1:4318/v1/traces".to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: parse_headers("x-ok=1,bad name=2,x-bad-value=a%0Ab"),
            timeout: Duration::from_secs(1),
            resource: Vec::new(),
        };
        let sender = Sender::new(target, "test").expect("sender");
        assert_eq!(sender.headers.len(), 1);
        assert_eq!(sender.headers["x-ok"], "1");
    }
}
