//! An OTLP trace receiver for tests and benchmarks: a tonic server (OTLP/gRPC) or an HTTP server
//! (OTLP/HTTP, `POST /v1/traces` with a protobuf body) on a loopback port that keeps every span
//! it is sent (or, for benchmarks, only counts them).

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

    /// Listens for OTLP/HTTP (protobuf) on a free loopback port; `keep` as in [`Self::start`].
    pub async fn start_http(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the OTLP/HTTP receiver");
        let addr = listener.local_addr().expect("address");
        let store = Arc::new(Store {
            keep,
            ..Store::default()
        });
        let shared = Arc::clone(&store);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = Arc::clone(&shared);
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = Arc::clone(&store);
                        async move {
                            use http_body_util::BodyExt;
                            use prost::Message;
                            let path_ok = req.method() == http::Method::POST
                                && req.uri().path() == "/v1/traces";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let status =
                                match (path_ok, body.map(ExportTraceServiceRequest::decode)) {
                                    (true, Ok(Ok(request))) => {
                                        store.add(request);
                                        http::StatusCode::OK
                                    }
                                    (false, _) => http::StatusCode::NOT_FOUND,
                                    _ => http::StatusCode::BAD_REQUEST,
                                };
                            let body = http_body_util::Full::new(bytes::Bytes::from(
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            ));
                            let mut response = http::Response::new(body);
                            *response.status_mut() = status;
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
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

impl Store {
    /// Keeps (or counts) the spans of `request`.
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
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
        self.count
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        if self.keep {
            self.spans.lock().extend(received);
        }
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
