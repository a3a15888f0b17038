//! OTLP protobuf written straight from span records: [`SpanWriter`] writes one
//! `opentelemetry.proto.trace.v1.Span`'s fields, [`export_request`] wraps a batch of them in an
//! `ExportTraceServiceRequest` with the resource and instrumentation scope (encoded once, with
//! `opentelemetry-proto`'s types).
//!
//! Building `opentelemetry-proto` structs per span and encoding them costs an allocation per
//! attribute key and value plus prost's nested length computations; writing the wire format
//! from the record costs neither, and that is the hot half of the lean span path. Field numbers
//! are those of the OTLP protos; the tests decode what is written with `opentelemetry-proto`'s
//! types, so a mistake here fails them. Only the fields Serval's spans use are written (no
//! events or links).

use bytes::{BufMut, Bytes, BytesMut};
use prost::{encode_length_delimiter, length_delimiter_len};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// OTLP `SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `SPAN_KIND_SERVER`.
    Server = 2,
    /// `SPAN_KIND_CLIENT`.
    Client = 3,
}

/// Writes the fields of one OTLP `Span` message (the caller frames it).
#[derive(Debug)]
pub struct SpanWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> SpanWriter<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    /// `trace_id`, `span_id` and, if any, `parent_span_id`.
    pub fn ids(&mut self, trace: [u8; 16], span: [u8; 8], parent: Option<[u8; 8]>) -> &mut Self {
        self.bytes(1, &trace);
        self.bytes(2, &span);
        if let Some(parent) = parent {
            self.bytes(4, &parent);
        }
        self
    }

    /// `trace_state` (W3C `tracestate` form), skipped when empty.
    pub fn trace_state(&mut self, state: &str) -> &mut Self {
        if !state.is_empty() {
            self.bytes(3, state.as_bytes());
        }
        self
    }

    /// `flags`: sampled, and whether the parent is remote (and that this is known).
    pub fn flags(&mut self, remote_parent: bool) -> &mut Self {
        const SAMPLED: u32 = 0x1;
        const HAS_IS_REMOTE: u32 = 0x100;
        const IS_REMOTE: u32 = 0x200;
        key(self.buf, 16, FIXED32);
        self.buf
            .put_u32_le(SAMPLED | HAS_IS_REMOTE | if remote_parent { IS_REMOTE } else { 0 });
        self
    }

    /// `name`, the concatenation of `parts`.
    pub fn name(&mut self, parts: &[&str]) -> &mut Self {
        key(self.buf, 5, LEN);
        varint(self.buf, parts.iter().map(|p| p.len()).sum());
        for part in parts {
            self.buf.extend_from_slice(part.as_bytes());
        }
        self
    }

    /// `kind`.
    pub fn kind(&mut self, kind: Kind) -> &mut Self {
        key(self.buf, 6, VARINT);
        varint(self.buf, kind as usize);
        self
    }

    /// `start_time_unix_nano` and `end_time_unix_nano`.
    pub fn times(&mut self, start: u64, end: u64) -> &mut Self {
        key(self.buf, 7, FIXED64);
        self.buf.put_u64_le(start);
        key(self.buf, 8, FIXED64);
        self.buf.put_u64_le(end);
        self
    }

    /// A string attribute.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        // KeyValue { key = 1, value = 2: AnyValue { string_value = 1 } }
        let any = 1 + length_delimiter_len(value.len()) + value.len();
        self.attribute(name, any);
        key(self.buf, 1, LEN);
        varint(self.buf, value.len());
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    /// An integer attribute (not negative).
    pub fn int(&mut self, name: &str, value: u64) -> &mut Self {
        // AnyValue { int_value = 3 }
        let value = usize::try_from(value).unwrap_or(usize::MAX);
        self.attribute(name, 1 + length_delimiter_len(value));
        key(self.buf, 3, VARINT);
        varint(self.buf, value);
        self
    }

    /// `status` with code `STATUS_CODE_ERROR` and `message`.
    pub fn error(&mut self, message: &str) -> &mut Self {
        // Status { message = 2, code = 3 }
        let message_len = if message.is_empty() {
            0
        } else {
            1 + length_delimiter_len(message.len()) + message.len()
        };
        key(self.buf, 15, LEN);
        varint(self.buf, message_len + 2);
        if !message.is_empty() {
            key(self.buf, 2, LEN);
            varint(self.buf, message.len());
            self.buf.extend_from_slice(message.as_bytes());
        }
        key(self.buf, 3, VARINT);
        varint(self.buf, 2);
        self
    }

    /// The framing of an attribute whose `AnyValue` is `any` bytes long; the caller writes
    /// the `AnyValue`'s content.
    fn attribute(&mut self, name: &str, any: usize) {
        let kv =
            1 + length_delimiter_len(name.len()) + name.len() + 1 + length_delimiter_len(any) + any;
        key(self.buf, 9, LEN);
        varint(self.buf, kv);
        key(self.buf, 1, LEN);
        varint(self.buf, name.len());
        self.buf.extend_from_slice(name.as_bytes());
        key(self.buf, 2, LEN);
        varint(self.buf, any);
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        key(self.buf, field, LEN);
        varint(self.buf, value.len());
        self.buf.extend_from_slice(value);
    }
}

/// Appends one span (the fields a [`SpanWriter`] wrote into `span`) to `spans`, as an entry of
/// `ScopeSpans.spans`.
pub fn push_span(spans: &mut Vec<u8>, span: &[u8]) {
    key(spans, 2, LEN);
    varint(spans, span.len());
    spans.extend_from_slice(span);
}

/// An `ExportTraceServiceRequest` with one `ResourceSpans` (the encoded `resource`) holding one
/// `ScopeSpans` (the encoded `scope`) with `spans` (entries from [`push_span`]).
pub fn export_request(resource: &[u8], scope: &[u8], spans: &[u8]) -> Bytes {
    let scope_spans = 1 + length_delimiter_len(scope.len()) + scope.len() + spans.len();
    let resource_spans = 1
        + length_delimiter_len(resource.len())
        + resource.len()
        + 1
        + length_delimiter_len(scope_spans)
        + scope_spans;
    let mut out =
        BytesMut::with_capacity(1 + length_delimiter_len(resource_spans) + resource_spans);
    key(&mut out, 1, LEN);
    varint(&mut out, resource_spans);
    key(&mut out, 1, LEN);
    varint(&mut out, resource.len());
    out.extend_from_slice(resource);
    key(&mut out, 2, LEN);
    varint(&mut out, scope_spans);
    key(&mut out, 1, LEN);
    varint(&mut out, scope.len());
    out.extend_from_slice(scope);
    out.extend_from_slice(spans);
    out.freeze()
}

/// A field's key: its number and wire type, as a varint.
fn key(buf: &mut impl BufMut, field: u32, wire: u32) {
    varint(buf, ((field << 3) | wire) as usize);
}

fn varint(buf: &mut impl BufMut, value: usize) {
    // Cannot fail: a BytesMut or Vec grows.
    let _ = encode_length_delimiter(value, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{Span, Status, status::StatusCode},
    };
    use prost::Message as _;

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn what_is_written_decodes_as_the_otlp_types() {
        let long = "x".repeat(300); // lengths of two varint bytes
        let mut first = Vec::new();
        SpanWriter::new(&mut first)
            .ids([7; 16], [8; 8], Some([9; 8]))
            .trace_state("vendor=abc")
            .flags(true)
            .name(&["GET", " ", "default/web"])
            .kind(Kind::Server)
            .times(1_700_000_000_000_000_001, 1_700_000_000_500_000_002)
            .text("url.path", &long)
            .int("http.response.status_code", 503)
            .error("");
        let mut second = Vec::new();
        SpanWriter::new(&mut second)
            .ids([1; 16], [2; 8], None)
            .flags(false)
            .name(&["GET"])
            .kind(Kind::Client)
            .times(5, 6)
            .int("server.port", 0)
            .error("timeout");
        let mut spans = Vec::new();
        push_span(&mut spans, &first);
        push_span(&mut spans, &second);
        let resource = Resource {
            attributes: vec![text("service.name", "serval-proxy")],
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "serval-proxy".to_owned(),
            version: "1".to_owned(),
            ..Default::default()
        };
        let bytes = export_request(&resource.encode_to_vec(), &scope.encode_to_vec(), &spans);
        let request = ExportTraceServiceRequest::decode(bytes).expect("valid protobuf");
        assert_eq!(request.resource_spans.len(), 1);
        let rs = &request.resource_spans[0];
        assert_eq!(rs.resource.as_ref(), Some(&resource));
        assert_eq!(rs.scope_spans.len(), 1);
        assert_eq!(rs.scope_spans[0].scope.as_ref(), Some(&scope));
        let decoded = &rs.scope_spans[0].spans;
        let int = |key: &str, v: i64| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(v)),
            }),
            ..Default::default()
        };
        assert_eq!(
            decoded[0],
            Span {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                trace_state: "vendor=abc".to_owned(),
                parent_span_id: vec![9; 8],
                flags: 0x301,
                name: "GET default/web".to_owned(),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_001,
                end_time_unix_nano: 1_700_000_000_500_000_002,
                attributes: vec![
                    text("url.path", &long),
                    int("http.response.status_code", 503)
                ],
                status: Some(Status {
                    message: String::new(),
                    code: StatusCode::Error as i32,
                }),
                ..Default::default()
            }
        );
        assert_eq!(
            decoded[1],
            Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                flags: 0x101,
                name: "GET".to_owned(),
                kind: 3,
                start_time_unix_nano: 5,
                end_time_unix_nano: 6,
                attributes: vec![int("server.port", 0)],
                status: Some(Status {
                    message: "timeout".to_owned(),
                    code: StatusCode::Error as i32,
                }),
                ..Default::default()
            }
        );
        assert_eq!(decoded.len(), 2);
    }
}
