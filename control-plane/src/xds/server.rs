//! The gRPC side of the delta server: one task per `DeltaConfig` stream driving a
//! [`StreamState`], plus the health service, server reflection (v1 and v1alpha) and the admin
//! debug service on the same port.
//!
//! Protocol decisions live in [`super::stream`]; this module only moves messages.

use super::stream::StreamState;
use crate::{metrics::Metrics, snapshot::Snapshot};
use futures::Stream;
use parking_lot::Mutex;
use serval_common::{
    proto::{
        self,
        admin::v1::{
            ListProxiesRequest, ListProxiesResponse, ProxyStatus,
            admin_service_server::{AdminService, AdminServiceServer},
        },
        discovery::v1::{
            DeltaConfigRequest, DeltaConfigResponse,
            config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer},
        },
    },
    shutdown,
};
use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// The status of every open stream, by stream id.
pub type Streams = Arc<Mutex<BTreeMap<u64, ProxyStatus>>>;

/// The `ConfigDiscovery` service.
#[derive(Clone, Debug)]
pub struct DeltaServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    streams: Streams,
    metrics: Arc<Metrics>,
    next_id: Arc<AtomicU64>,
    shutdown: shutdown::Watch,
}

impl DeltaServer {
    /// A server of the snapshots published on `snapshots`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
        shutdown: shutdown::Watch,
    ) -> Self {
        Self {
            snapshots,
            streams: Streams::default(),
            metrics,
            next_id: Arc::new(AtomicU64::new(1)),
            shutdown,
        }
    }

    /// Serves the delta protocol, health, reflection and the admin service on `listener` until
    /// shutdown.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ConfigDiscoveryServer<DeltaServer>>()
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let admin = Admin {
            streams: Arc::clone(&self.streams),
        };
        let mut shutdown = self.shutdown.clone();
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(AdminServiceServer::new(admin))
            .add_service(ConfigDiscoveryServer::new(self))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                shutdown.fired().await
            })
            .await?;
        Ok(())
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DeltaConfigResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for DeltaServer {
    type DeltaConfigStream = ResponseStream;

    async fn delta_config(
        &self,
        request: Request<Streaming<DeltaConfigRequest>>,
    ) -> Result<Response<Self::DeltaConfigStream>, Status> {
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        // Capacity 2: at most one response is in flight, plus a closing error.
        let (tx, rx) = mpsc::channel(2);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let task = StreamTask {
            id,
            inbound,
            tx,
            snapshots: self.snapshots.clone(),
            streams: Arc::clone(&self.streams),
            metrics: Arc::clone(&self.metrics),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(tracing::Instrument::instrument(
            task.run(),
            tracing::info_span!("delta_stream", id, peer = ?peer),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct StreamTask {
    id: u64,
    inbound: Streaming<DeltaConfigRequest>,
    tx: mpsc::Sender<Result<DeltaConfigResponse, Status>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    streams: Streams,
    metrics: Arc<Metrics>,
    shutdown: shutdown::Watch,
}

impl StreamTask {
    async fn run(mut self) {
        self.metrics.xds_streams.inc();
        let mut state = StreamState::default();
        self.snapshots.borrow_and_update();
        loop {
            let response = tokio::select! {
                _ = self.shutdown.fired() => break,
                _ = self.tx.closed() => break,
                message = self.inbound.message() => match message {
                    Ok(Some(request)) => {
                        let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
                        let before = state.answers();
                        let result = state.on_request(&request, &snapshot);
                        let after = state.answers();
                        self.metrics.xds_acks.inc_by(after.0 - before.0);
                        self.metrics.xds_nacks.inc_by(after.1 - before.1);
                        if after.1 > before.1 {
                            tracing::warn!(error = state.last_error().unwrap_or_default(), "proxy rejected a configuration (NACK)");
                        }
                        match result {
                            Ok(response) => response,
                            Err(error) => {
                                tracing::warn!(%error, "closing stream");
                                let _ = self.tx.send(Err(Status::invalid_argument(error.to_string()))).await;
                                break;
                            }
                        }
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
                    state.on_snapshot(&snapshot)
                }
            };
            self.record(&state);
            if let Some(response) = response {
                tracing::debug!(
                    version = %response.system_version_info,
                    upserts = response.resources.len(),
                    removals = response.removed_resources.len(),
                    "sending delta"
                );
                self.metrics.xds_responses.inc();
                if self.tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        }
        self.streams.lock().remove(&self.id);
        self.metrics.xds_streams.dec();
    }

    fn record(&self, state: &StreamState) {
        let Some(node) = state.node() else { return };
        let status = ProxyStatus {
            node_id: node.id.clone(),
            gateways: node.gateways.clone(),
            acked_version: state.acked().map(|v| v.to_string()).unwrap_or_default(),
            nacked_version: state.nacked().map(|v| v.to_string()).unwrap_or_default(),
            last_error: state.last_error().unwrap_or_default().to_owned(),
            resource_count: u32::try_from(state.held_count()).unwrap_or(u32::MAX),
        };
        self.streams.lock().insert(self.id, status);
    }
}

/// The `AdminService`: what each connected proxy holds.
#[derive(Clone, Debug)]
struct Admin {
    streams: Streams,
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_proxies(
        &self,
        _request: Request<ListProxiesRequest>,
    ) -> Result<Response<ListProxiesResponse>, Status> {
        let mut proxies: Vec<ProxyStatus> = self.streams.lock().values().cloned().collect();
        proxies.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(Response::new(ListProxiesResponse { proxies }))
    }
}
