//! The Serval proxy.
//!
//! ```text
//!  xds (delta client) ─► config::compile ─► ArcSwap<Config> ─► listeners (accept, h1/h2)
//!   ACK / NACK             validate + build     one swap per     ─► http: route ─► upstream
//!                                                version               (host, path)   (LB, pools)
//! ```
//!
//! [`run`] wires these together; `serval-control-plane standalone` calls it in-process.

pub mod access_log;
pub mod admin;
pub mod args;
pub mod body;
pub mod config;
pub mod errors;
pub mod filters;
pub mod forward;
pub mod http;
pub mod l4;
pub mod listeners;
pub mod metrics;
pub mod router;
pub mod spans;
pub mod tls;
pub mod upstream;
pub mod xds;

use parking_lot::Mutex;
use serval_common::{
    admin::Admin, proto::discovery::v1::Node, readiness::Readiness, shutdown, telemetry,
};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

/// Everything the proxy needs, validated.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// How to reach the delta server.
    pub connector: xds::tls::Connector,
    /// `--config-cache`.
    pub config_cache: Option<PathBuf>,
    /// The node announced to the control plane.
    pub node: Node,
    /// Admin address; `None` runs no admin server.
    pub admin_addr: Option<SocketAddr>,
    /// `--bind-address`.
    pub bind_ip: Option<IpAddr>,
    /// How long removed listeners and shutdown wait for open requests.
    pub drain_timeout: Duration,
    /// Upstream client tunables.
    pub upstream: upstream::Settings,
    /// `--access-log`.
    pub access_log: access_log::Format,
    /// `--otlp-endpoint`, `--trace-sampling` (and the `OTEL_*` environment).
    pub traces: serval_common::traces::TraceArgs,
}

/// Runs the proxy until `shutdown` fires, then drains.
pub async fn run(config: ProxyConfig, shutdown: shutdown::Watch) -> anyhow::Result<()> {
    let mut registry = telemetry::registry("proxy");
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));
    let store = Arc::new(config::ConfigStore::default());
    let access_log =
        access_log::AccessLog::stdout(config.access_log, metrics.access_log_dropped.clone())
            .map_err(|e| anyhow::anyhow!("access log writer: {e}"))?;
    let traces = serval_common::traces::Traces::start(
        &config.traces,
        "serval-proxy",
        metrics.trace_spans_dropped.clone(),
    )?;
    // Request spans take the lean path; this handle also flushes it at shutdown.
    let span_queue = match &traces {
        Some(t) => Some(t.span_queue::<spans::Finished>("serval-proxy")?),
        None => None,
    };
    let spans = traces
        .as_ref()
        .zip(span_queue.clone())
        .map(|(t, queue)| spans::Spans::new(queue, t.ratio));
    let shared = Arc::new(
        http::Shared::new(
            Arc::clone(&store),
            upstream::Upstream::new(config.upstream, metrics.upstream_connections.clone()),
            Arc::clone(&metrics),
        )
        .with_access_log(access_log.clone())
        .with_spans(spans),
    );
    let listeners = Arc::new(listeners::Listeners::new(
        shared,
        shutdown.clone(),
        config.drain_timeout,
    ));
    let (readiness, latch) = Readiness::new();
    if let Some(addr) = config.admin_addr {
        let admin = Admin::new(
            readiness,
            Arc::new(Mutex::new(registry)),
            admin::routes(Arc::clone(&store)),
        );
        let (bound, task) = admin
            .bind(addr, shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("proxy admin address {addr}: {e}"))?;
        tracing::info!(%bound, "proxy admin listening");
        tokio::spawn(task);
    }
    let applier = xds::apply::Applier {
        store,
        listeners: Arc::clone(&listeners),
        bind_ip: config.bind_ip,
    };
    let mut latch = Some(latch);
    let mut cache = None;
    if let Some(path) = config.config_cache {
        start_from_cache(&path, &applier, &metrics, &mut latch).await;
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(xds::cache::run_writer(path, rx));
        cache = Some(tx);
    }
    let client = xds::client::Client::new(
        xds::client::Settings {
            server: config.connector.endpoint_uri(),
            node: config.node,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            max_message_size: 256 << 20,
            connector: config.connector,
        },
        applier,
        metrics,
        cache,
    )
    .with_tracer(traces.as_ref().map(|t| t.tracer.clone()));
    client.run(shutdown, latch).await;
    listeners.drained().await;
    // The requests that ended while draining are logged too, and their spans exported.
    access_log.close(Duration::from_secs(2));
    if let Some(queue) = &span_queue {
        queue.close(Duration::from_secs(5)).await;
    }
    if let Some(traces) = traces {
        // Shutting the exporter down flushes it, and waits: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(traces)).await;
    }
    Ok(())
}

/// Applies the configuration cached at `path`, if any: the proxy then serves (and is ready) at
/// once, before the control plane is reached. A cache that cannot be read or applied is logged and
/// ignored.
async fn start_from_cache(
    path: &std::path::Path,
    applier: &xds::apply::Applier,
    metrics: &metrics::Metrics,
    latch: &mut Option<serval_common::readiness::Latch>,
) {
    let cached = match xds::cache::load(path) {
        Ok(Some(cached)) => cached,
        Ok(None) => {
            tracing::info!(path = %path.display(), "no cached configuration yet");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "ignoring the config cache");
            return;
        }
    };
    match applier.apply(&cached).await {
        Ok(()) => {
            metrics.config_cache_loaded.set(1);
            metrics.applied(&applier.store.load());
            tracing::info!(
                version = %cached.system_version_info,
                resources = cached.resources.len(),
                "serving the cached configuration until the control plane answers"
            );
            if let Some(latch) = latch.take() {
                latch.release();
            }
        }
        Err(detail) => {
            tracing::warn!(error = %detail.message, "the cached configuration does not apply; ignored")
        }
    }
}
