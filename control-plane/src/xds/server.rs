//! The gRPC side of the delta server: one task per `DeltaConfig` stream driving a
//! [`StreamState`], plus the health service, server reflection (v1 and v1alpha) and the admin
//! debug service (`serval.admin.v1`) on the same port.
//!
//! Limits: HTTP/2 keepalive (a dead proxy is noticed within interval + timeout), a message-size
//! limit each way, a cap on streams per connection and on streams in total, and a bound on
//! responses being prepared at once (`max_concurrent_pushes`). A proxy that stops reading holds at
//! most its one unacknowledged response: it never delays the others.
//!
//! With mutual TLS ([`super::tls`]) a proxy may only ask for the Gateways its certificate names
//! (else PERMISSION_DENIED), and the admin service needs an admin certificate.
//!
//! Protocol decisions live in [`super::stream`]; this module only moves messages.

use super::{
    fleet::{self, Fleet, Rejection},
    framing::ConfigDiscoveryService,
    stream::{Answer, StreamState},
    tls::{self, PeerInfo, Reloading},
};
use crate::{metrics::Metrics, snapshot::Snapshot};
use futures::{Stream, StreamExt};
use serval_common::{
    proto::{
        self,
        admin::v1::{
            GetProxyConfigRequest, GetProxyConfigResponse, ListProxiesRequest, ListProxiesResponse,
            admin_service_server::{AdminService, AdminServiceServer},
        },
        discovery::v1::{
            DeltaConfigRequest, DeltaConfigResponse, Resource,
            config_discovery_server::ConfigDiscovery,
        },
    },
    shutdown,
};
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Limits of the delta server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// HTTP/2 PING interval on idle connections.
    pub keepalive_interval: Duration,
    /// A connection whose PING is not answered within this is closed.
    pub keepalive_timeout: Duration,
    /// Largest message accepted or sent, in bytes.
    pub max_message_size: usize,
    /// Streams open at once, in total (a proxy holds one).
    pub max_streams: usize,
    /// Streams per HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// Responses being prepared or waiting to be written at once.
    pub max_concurrent_pushes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            max_message_size: 64 * 1024 * 1024,
            max_streams: 20_000,
            max_streams_per_connection: 16,
            max_concurrent_pushes: 64,
        }
    }
}

/// The `ConfigDiscovery` service.
#[derive(Clone, Debug)]
pub struct DeltaServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    limits: Limits,
    next_id: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    pushes: Arc<Semaphore>,
    tls: Option<Arc<Reloading>>,
    shutdown: shutdown::Watch,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

impl DeltaServer {
    /// The same server, tracing its pushes with `tracer` (see `rollout_trace`).
    pub fn with_tracer(mut self, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> Self {
        self.tracer = tracer;
        self
    }

    /// A server of the snapshots published on `snapshots`, recording its streams in `fleet`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        limits: Limits,
        tls: Option<Arc<Reloading>>,
        shutdown: shutdown::Watch,
    ) -> Self {
        Self {
            tls,
            snapshots,
            fleet,
            metrics,
            limits,
            next_id: Arc::new(AtomicU64::new(1)),
            open: Arc::new(AtomicUsize::new(0)),
            pushes: Arc::new(Semaphore::new(limits.max_concurrent_pushes.max(1))),
            shutdown,
            tracer: None,
        }
    }

    /// The same server (same fleet, limits and counters) without TLS.
    pub fn plaintext(&self) -> Self {
        Self {
            tls: None,
            ..self.clone()
        }
    }

    /// Serves the delta protocol, health, reflection and the admin service on `listener` until
    /// shutdown: over mutual TLS when the server has TLS material, else in plaintext.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let tls = self.tls.clone();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status(
                <ConfigDiscoveryService as tonic::server::NamedService>::NAME,
                tonic_health::ServingStatus::Serving,
            )
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let admin = Admin {
            fleet: Arc::clone(&self.fleet),
            snapshots: self.snapshots.clone(),
        };
        let limits = self.limits;
        let mut shutdown = self.shutdown.clone();
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .tcp_keepalive(Some(limits.keepalive_interval))
            .max_concurrent_streams(Some(limits.max_streams_per_connection))
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(tonic::service::interceptor::InterceptedService::new(
                AdminServiceServer::new(admin).max_encoding_message_size(limits.max_message_size),
                admin_only,
            ))
            .add_service(ConfigDiscoveryService::new(self, limits.max_message_size));
        let stop = async move { shutdown.fired().await };
        match tls {
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
                    .await?
            }
            Some(material) => {
                let _reload = AbortOnDrop(material.watch(Duration::from_secs(2)));
                router
                    .serve_with_incoming_shutdown(tls::incoming(listener, material), stop)
                    .await?
            }
        }
        Ok(())
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Over TLS, the admin service answers only certificates naming `urn:serval:admin`: what proxies
/// hold includes other Gateways' material.
fn admin_only(request: Request<()>) -> Result<Request<()>, Status> {
    match request.extensions().get::<PeerInfo>() {
        None => Ok(request),
        Some(peer) => match peer.identity.as_ref() {
            Ok(identity) if identity.admin => Ok(request),
            Ok(identity) => Err(Status::permission_denied(format!(
                "the admin service needs a certificate with {} (this one: {})",
                serval_common::tls::ADMIN_URI,
                identity.subject
            ))),
            Err(error) => Err(Status::permission_denied(error.clone())),
        },
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DeltaConfigResponse, Status>> + Send>>;

/// A response with the push permit it holds until gRPC takes it for encoding. Boxed: a channel
/// allocates room for 32 items up front, which unboxed is about 5 KiB per connected proxy.
type Outbound = Box<(
    Result<DeltaConfigResponse, Status>,
    Option<OwnedSemaphorePermit>,
)>;

#[tonic::async_trait]
impl ConfigDiscovery for DeltaServer {
    type DeltaConfigStream = ResponseStream;

    async fn delta_config(
        &self,
        request: Request<Streaming<DeltaConfigRequest>>,
    ) -> Result<Response<Self::DeltaConfigStream>, Status> {
        let tls_peer = request.extensions().get::<PeerInfo>().cloned();
        let peer = request
            .remote_addr()
            .or_else(|| tls_peer.as_ref().and_then(|p| p.remote_addr));
        let identity = match tls_peer.map(|p| p.identity) {
            None => None,
            Some(identity) => match identity.as_ref() {
                Ok(id) => Some(id.clone()),
                Err(error) => {
                    self.metrics.xds_rejected_streams.inc();
                    return Err(Status::permission_denied(error.clone()));
                }
            },
        };
        let open = OpenStream::try_new(&self.open, self.limits.max_streams).ok_or_else(|| {
            self.metrics.xds_rejected_streams.inc();
            Status::resource_exhausted(format!(
                "this control plane serves at most {} streams",
                self.limits.max_streams
            ))
        })?;
        let inbound = request.into_inner();
        // Capacity 2: at most one response is in flight, plus a closing error.
        let (tx, rx) = mpsc::channel::<Outbound>(2);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let task = StreamTask {
            id,
            peer,
            identity,
            inbound,
            tx,
            snapshots: self.snapshots.clone(),
            fleet: Arc::clone(&self.fleet),
            metrics: Arc::clone(&self.metrics),
            pushes: Arc::clone(&self.pushes),
            shutdown: self.shutdown.clone(),
            tracer: self.tracer.clone(),
            _open: open,
        };
        tokio::spawn(tracing::Instrument::instrument(
            task.run(),
            tracing::info_span!("delta_stream", id, peer = ?peer),
        ));
        // The permit is dropped as gRPC takes the response to encode it.
        let outbound = ReceiverStream::new(rx).map(|outbound| {
            let (response, _permit) = *outbound;
            response
        });
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Counts an open stream while alive.
#[derive(Debug)]
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn try_new(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        Some(Self(Arc::clone(open)))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct StreamTask {
    id: u64,
    peer: Option<std::net::SocketAddr>,
    /// The client certificate's identity (TLS only).
    identity: Option<serval_common::tls::Identity>,
    inbound: Streaming<DeltaConfigRequest>,
    tx: mpsc::Sender<Outbound>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    pushes: Arc<Semaphore>,
    shutdown: shutdown::Watch,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    _open: OpenStream,
}

impl StreamTask {
    async fn run(mut self) {
        self.metrics.xds_streams.inc();
        let mut state = StreamState::default();
        let mut sent_at: Option<Instant> = None;
        // The span of the response awaiting its answer (traces on, the snapshot traced).
        let mut push_span: Option<opentelemetry_sdk::trace::Span> = None;
        self.snapshots.borrow_and_update();
        loop {
            // The rollout the response belongs to: that of the snapshot it was computed from.
            let rollout;
            let response = tokio::select! {
                _ = self.shutdown.fired() => break,
                _ = self.tx.closed() => break,
                message = self.inbound.message() => match message {
                    Ok(Some(request)) => {
                        let first = state.node().is_none();
                        let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
                        if first && let Err(denied) = self.check_identity(&request, &snapshot) {
                            tracing::warn!(node = ?request.node.as_ref().map(|n| &n.id), %denied, "stream refused");
                            self.metrics.xds_rejected_streams.inc();
                            let _ = self.tx.send(Box::new((Err(Status::permission_denied(denied)), None))).await;
                            break;
                        }
                        let _permit = self.permit().await;
                        rollout = snapshot.trace.clone();
                        let step = match state.on_request(&request, &snapshot) {
                            Ok(step) => step,
                            Err(error) => {
                                tracing::warn!(%error, "closing stream");
                                let _ = self.tx.send(Box::new((Err(Status::invalid_argument(error.to_string())), None))).await;
                                break;
                            }
                        };
                        if first && let Some(node) = state.node() {
                            tracing::info!(node = %node.id, gateways = ?node.gateways, "proxy connected");
                            self.fleet.connect(self.id, node.clone(), self.peer, &state);
                        }
                        if let Some(answer) = step.answer {
                            if let Some(at) = sent_at.take() {
                                self.metrics.xds_push_seconds.observe(at.elapsed().as_secs_f64());
                            }
                            if let Some(span) = push_span.take() {
                                let error = match &answer {
                                    Answer::Nack { error, .. } => Some(error.message.as_str()),
                                    Answer::Ack { .. } => None,
                                };
                                serval_common::traces::end_with_answer(span, error);
                            }
                            self.answered(answer, &state, &snapshot);
                        }
                        step.response
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "stream ended by the proxy");
                        break;
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
                    let _permit = self.permit().await;
                    rollout = snapshot.trace.clone();
                    state.on_snapshot(&snapshot)
                }
            };
            if let Some(mut response) = response {
                if let (Some(tracer), Some(parent), Some(node)) =
                    (&self.tracer, rollout, state.node())
                {
                    push_span = Some(crate::rollout_trace::push(
                        tracer,
                        &parent,
                        &node.id,
                        &mut response,
                    ));
                }
                tracing::debug!(
                    version = %response.system_version_info,
                    upserts = response.resources.len(),
                    removals = response.removed_resources.len(),
                    "sending delta"
                );
                self.metrics.xds_responses.inc();
                sent_at = Some(Instant::now());
                let permit = self.permit().await;
                if self
                    .tx
                    .send(Box::new((Ok(response), permit)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        self.fleet.disconnect(self.id);
        self.metrics.xds_streams.dec();
    }

    /// Over TLS: whether the certificate allows the Gateways the first request asks for.
    fn check_identity(
        &self,
        request: &DeltaConfigRequest,
        snapshot: &Snapshot,
    ) -> Result<(), String> {
        let (Some(identity), Some(node)) = (&self.identity, &request.node) else {
            return Ok(());
        };
        tls::allowed(identity, node, snapshot.gateway_classes())
    }

    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.pushes).acquire_owned().await.ok()
    }

    fn answered(&self, answer: Answer, state: &StreamState, snapshot: &Snapshot) {
        let Some(node) = state.node() else { return };
        match answer {
            Answer::Ack { sequence } => {
                self.metrics.xds_acks.inc();
                self.fleet.acked(self.id, sequence, state);
            }
            Answer::Nack { version, error } => {
                self.metrics.xds_nacks.inc();
                let resources: Vec<String> = error
                    .resource_errors
                    .iter()
                    .map(|e| e.name.clone())
                    .collect();
                let view = snapshot.view(state.scope());
                let gateways = fleet::rejected_gateways(node, &error, &view);
                tracing::warn!(
                    node = %node.id,
                    version = %version,
                    resources = ?resources,
                    gateways = ?gateways,
                    error = %error.message,
                    "proxy rejected a configuration (NACK)"
                );
                self.fleet.nacked(
                    self.id,
                    Rejection {
                        node: node.id.clone(),
                        version,
                        message: error.message,
                        resources,
                        gateways,
                    },
                );
            }
        }
    }
}

/// The `AdminService`: which proxies are connected and what they hold.
#[derive(Clone, Debug)]
struct Admin {
    fleet: Arc<Fleet>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_proxies(
        &self,
        _request: Request<ListProxiesRequest>,
    ) -> Result<Response<ListProxiesResponse>, Status> {
        let snapshot = Arc::clone(&self.snapshots.borrow());
        Ok(Response::new(ListProxiesResponse {
            proxies: self.fleet.list(&snapshot),
            snapshot_version: snapshot.version.to_string(),
        }))
    }

    async fn get_proxy_config(
        &self,
        request: Request<GetProxyConfigRequest>,
    ) -> Result<Response<GetProxyConfigResponse>, Status> {
        let node_id = request.into_inner().node_id;
        let record = self
            .fleet
            .get(&node_id)
            .ok_or_else(|| Status::not_found(format!("no proxy {node_id:?} is connected")))?;
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let proxy = self
            .fleet
            .list(&snapshot)
            .into_iter()
            .rev()
            .find(|p| p.node_id == node_id);
        let resources = match (&record.acked, &record.initial) {
            (Some(view), _) => view
                .resources
                .iter()
                .map(|(name, v)| match v.resource.redacted() {
                    // Private keys are never shown, even to an operator.
                    std::borrow::Cow::Owned(redacted) => {
                        serval_common::proto::discovery::v1::Resource {
                            name: name.clone(),
                            version: v.version.to_string(),
                            resource: Some(redacted.to_any()),
                        }
                    }
                    std::borrow::Cow::Borrowed(_) => v.to_wire(name),
                })
                .collect(),
            (None, Some(initial)) => initial
                .iter()
                .map(|(name, version)| Resource {
                    name: name.clone(),
                    version: version.clone(),
                    resource: None,
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        Ok(Response::new(GetProxyConfigResponse { proxy, resources }))
    }
}
