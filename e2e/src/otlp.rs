//! An OTLP/gRPC trace receiver for tests and benchmarks: a tonic server on a loopback port that
//! keeps every span it is sent (or, for benchmarks, only counts them).

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use parking_lot::Mutex;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// One received span with the `service.name` of its resource.
#[derive(Clone, Debug)]
pub struct Received {
    /// `service.name`.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl Received {
    /// The string value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            })
    }
}

#[derive(Debug, Default)]
struct Store {
    keep: bool,
    spans: Mutex<Vec<Received>>,
    count: AtomicU64,
}

/// A running receiver (stopped on drop).
#[derive(Debug)]
pub struct OtlpReceiver {
    /// Where it listens (`http://{addr}` is the exporter endpoint).
    pub addr: SocketAddr,
    store: Arc<Store>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port; `keep`: store the spans (else only count them).
    pub async fn start(keep: bool) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), keep).await
    }

    /// Listens on `addr`; `keep`: store the spans (else only count them).
    pub async fn start_on(addr: SocketAddr, keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("address");
        let store = Arc::new(Store {
            keep,
            ..Store::default()
        });
        let service = TraceServiceServer::new(Service(Arc::clone(&store)));
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self { addr, store, task }
    }

    /// The exporter endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.store.spans.lock().clone()
    }

    /// How many spans were received.
    pub fn count(&self) -> u64 {
        self.store.count.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Service(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        self.0
            .count
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        if self.0.keep {
            self.0.spans.lock().extend(received);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
