//! The delta stream to the control plane: connect (jittered exponential backoff; plaintext or
//! mutual TLS), send the node and `initial_resource_versions` (what the running config holds, so a
//! reconnect after a control plane restart, or a start from `--config-cache`, transfers nothing
//! when nothing changed), then answer every response. HTTP/2 keepalive notices a dead control
//! plane within seconds.

use super::{apply::Applier, tls::Connector};
use crate::{config::Config, metrics::Metrics};
use serval_common::{
    proto::discovery::v1::{
        DeltaConfigRequest, DeltaConfigResponse, Node,
        config_discovery_client::ConfigDiscoveryClient,
    },
    readiness::Latch,
    shutdown,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// How to reach the control plane.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `http://host:port` of the delta server.
    pub server: String,
    /// The node this proxy announces.
    pub node: Node,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// HTTP/2 PING interval.
    pub keepalive_interval: Duration,
    /// The connection is dropped when a PING is not answered within this.
    pub keepalive_timeout: Duration,
    /// Largest response accepted, in bytes.
    pub max_message_size: usize,
    /// Plaintext or mutual TLS.
    pub connector: Connector,
}

/// The delta protocol client.
#[derive(Debug)]
pub struct Client {
    settings: Settings,
    applier: Applier,
    metrics: Arc<Metrics>,
    /// Each ACKed configuration, for `--config-cache`.
    acked: Option<watch::Sender<Option<Arc<Config>>>>,
    /// Apply spans joining the control plane's rollout traces, when traces are exported.
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

/// Why one stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("stream closed by the server")]
    Closed,
}

impl Client {
    /// A client applying responses with `applier`; every ACKed configuration is also sent on
    /// `acked` (for the config cache).
    pub fn new(
        settings: Settings,
        applier: Applier,
        metrics: Arc<Metrics>,
        acked: Option<watch::Sender<Option<Arc<Config>>>>,
    ) -> Self {
        Self {
            settings,
            applier,
            metrics,
            acked,
            tracer: None,
        }
    }

    /// The same client, recording an apply span for each traced response.
    pub fn with_tracer(mut self, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> Self {
        self.tracer = tracer;
        self
    }

    /// Runs until shutdown, reconnecting as needed. `ready` (if still held) is released after the
    /// first configuration was applied and ACKed.
    pub async fn run(self, mut shutdown: shutdown::Watch, ready: Option<Latch>) {
        let mut ready = ready;
        let mut delay = self.settings.backoff_min;
        loop {
            let mut opened = false;
            let result = tokio::select! {
                _ = shutdown.fired() => return,
                r = self.stream(&mut ready, &mut opened) => r,
            };
            self.metrics.xds_connected.set(0);
            if shutdown.is_fired() {
                return;
            }
            if opened {
                // The server was reachable: start over from the shortest delay.
                delay = self.settings.backoff_min;
            }
            let error = match result {
                Ok(()) => StreamError::Closed,
                Err(e) => e,
            };
            // Full jitter: a fleet reconnecting after a control-plane restart spreads out.
            let sleep = Duration::from_millis(fastrand::u64(
                delay.as_millis() as u64 / 2..=delay.as_millis() as u64,
            ));
            tracing::warn!(error = %chain(&error), server = %self.settings.server, retry_in = ?sleep, "delta stream down; serving the last configuration");
            tokio::select! {
                _ = shutdown.fired() => return,
                _ = tokio::time::sleep(sleep) => {}
            }
            delay = (delay * 2).min(self.settings.backoff_max);
        }
    }

    async fn stream(
        &self,
        ready: &mut Option<Latch>,
        opened: &mut bool,
    ) -> Result<(), StreamError> {
        let endpoint = Endpoint::from_shared(self.settings.connector.endpoint_uri())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.settings.keepalive_interval)
            .keep_alive_timeout(self.settings.keepalive_timeout)
            .keep_alive_while_idle(true);
        let channel = self.settings.connector.connect(endpoint).await?;
        // A full view of a large gateway can pass tonic's 4 MiB default.
        let mut client = ConfigDiscoveryClient::new(channel)
            .max_decoding_message_size(self.settings.max_message_size);
        let (tx, rx) = mpsc::channel::<DeltaConfigRequest>(4);
        let held = self.applier.store.load();
        let hello = DeltaConfigRequest {
            node: Some(self.settings.node.clone()),
            initial_resource_versions: held
                .versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        };
        tx.send(hello).await.map_err(|_| StreamError::Closed)?;
        let mut inbound = client
            .delta_config(ReceiverStream::new(rx))
            .await?
            .into_inner();
        self.metrics.xds_connects.inc();
        self.metrics.xds_connected.set(1);
        tracing::info!(server = %self.settings.server, held = held.versions.len(), "delta stream open");
        while let Some(response) = inbound.message().await? {
            // The server answered: the next reconnect starts from the shortest delay.
            *opened = true;
            let answer = self.answer(&response).await;
            let acked = answer.error_detail.is_none();
            tx.send(answer).await.map_err(|_| StreamError::Closed)?;
            if acked && let Some(cache) = &self.acked {
                cache.send_replace(Some(self.applier.store.load()));
            }
            if acked && let Some(latch) = ready.take() {
                latch.release();
            }
        }
        Ok(())
    }

    async fn answer(&self, response: &DeltaConfigResponse) -> DeltaConfigRequest {
        self.metrics.xds_responses.inc();
        self.metrics
            .xds_resources_received
            .inc_by(response.resources.len() as u64);
        let span = self
            .tracer
            .as_ref()
            .and_then(|t| crate::spans::apply_span(t, response, &self.settings.node.id));
        let started = std::time::Instant::now();
        let applied = self.applier.apply(response).await;
        if let Some(span) = span {
            let error = applied.as_ref().err().map(|d| d.message.as_str());
            serval_common::traces::end_with_answer(span, error);
        }
        let took = started.elapsed();
        self.metrics
            .config_apply_seconds
            .observe(took.as_secs_f64());
        let error_detail = match applied {
            Ok(()) => {
                self.metrics.config_applied.inc();
                // Off the ACK's path: dropping the series of removed routes walks the series.
                let (metrics, store) = (Arc::clone(&self.metrics), Arc::clone(&self.applier.store));
                tokio::spawn(async move { metrics.applied(&store.load()) });
                tracing::info!(
                    took_ms = took.as_secs_f64() * 1e3,
                    version = %response.system_version_info,
                    upserts = response.resources.len(),
                    removals = response.removed_resources.len(),
                    "configuration applied"
                );
                None
            }
            Err(detail) => {
                self.metrics.config_rejected.inc();
                tracing::warn!(version = %response.system_version_info, error = %detail.message, "configuration rejected (NACK); keeping the last good one");
                Some(detail)
            }
        };
        DeltaConfigRequest {
            response_nonce: response.nonce.clone(),
            error_detail,
            ..Default::default()
        }
    }
}

/// An error with its causes, `outer: inner: innermost` (tonic's transport error hides its cause
/// otherwise, e.g. which TLS file could not be read).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
