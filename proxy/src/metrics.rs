//! The proxy's metric families (registered with the `serval_` prefix). Per-route request
//! metrics are in [`requests`].

pub mod requests;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Every proxy metric.
#[derive(Debug)]
pub struct Metrics {
    /// Responses by status code.
    pub responses: Family<Vec<(String, String)>, Counter>,
    /// 1 while a delta stream to the control plane is open.
    pub xds_connected: Gauge,
    /// Delta responses received.
    pub xds_responses: Counter,
    /// Resources received in delta responses (upserts).
    pub xds_resources_received: Counter,
    /// Configuration versions applied (ACKed).
    pub config_applied: Counter,
    /// Configuration versions rejected (NACKed).
    pub config_rejected: Counter,
    /// Streams opened to the control plane.
    pub xds_connects: Counter,
    /// 1 when the proxy started from its `--config-cache`.
    pub config_cache_loaded: Gauge,
    /// Time to decode, validate, compile and swap in one response.
    pub config_apply_seconds: Histogram,
    /// Upstream requests retried (HTTPRoute retry).
    pub upstream_retries: Counter,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Requests that ran out of time, by `kind` (`request` or `backend_request`).
    pub timeouts: Family<Vec<(String, String)>, Counter>,
    /// Mirrored requests by `result` (`sent`, `failed`, `dropped`).
    pub mirrors: Family<Vec<(String, String)>, Counter>,
    /// WebSocket (HTTP/1.1 upgrade) tunnels opened.
    pub upgrades: Counter,
    /// TLS handshakes on HTTPS sockets that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Requests, durations and bytes by route.
    pub requests: requests::RequestMetrics,
    /// 1 for the applied configuration version (label `version`), the only series.
    pub config_info: Family<Vec<(String, String)>, Gauge>,
    /// Open connections to backends (both upstream clients).
    pub upstream_connections: Gauge,
    /// Connections to a backend that could not be opened (refused, unreachable, timed out), by
    /// backend Service.
    pub upstream_connect_failures: Family<BackendLabels, Counter>,
    /// Open client connections (TCP, with or without TLS; TCPRoute connections too).
    pub downstream_connections: Gauge,
    /// Client connections accepted.
    pub downstream_connections_accepted: Counter,
    /// Finished spans dropped because the export queue was full.
    pub trace_spans_dropped: Counter,
}

/// The `backend` label: a Service port, `namespace/name:port`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct BackendLabels {
    /// `namespace/name:port`.
    pub backend: std::sync::Arc<str>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            responses: Family::default(),
            xds_connected: Gauge::default(),
            xds_responses: Counter::default(),
            xds_resources_received: Counter::default(),
            config_applied: Counter::default(),
            config_rejected: Counter::default(),
            xds_connects: Counter::default(),
            config_cache_loaded: Gauge::default(),
            config_apply_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            upstream_retries: Counter::default(),
            access_log_dropped: Counter::default(),
            timeouts: Family::default(),
            mirrors: Family::default(),
            upgrades: Counter::default(),
            tls_handshake_failures: Counter::default(),
            requests: requests::RequestMetrics::register(registry),
            config_info: Family::default(),
            upstream_connections: Gauge::default(),
            upstream_connect_failures: Family::default(),
            downstream_connections: Gauge::default(),
            downstream_connections_accepted: Counter::default(),
            trace_spans_dropped: Counter::default(),
        };
        registry.register(
            "trace_spans_dropped",
            "Finished spans dropped because the export queue was full",
            m.trace_spans_dropped.clone(),
        );
        registry.register(
            "upstream_connections",
            "Open connections to backends",
            m.upstream_connections.clone(),
        );
        registry.register(
            "upstream_connect_failures",
            "Connections to a backend that could not be opened, by backend Service",
            m.upstream_connect_failures.clone(),
        );
        registry.register(
            "downstream_connections",
            "Open client connections",
            m.downstream_connections.clone(),
        );
        registry.register(
            "downstream_connections_accepted",
            "Client connections accepted",
            m.downstream_connections_accepted.clone(),
        );
        registry.register(
            "config_info",
            "The applied configuration version (system_version_info), as a label; value 1",
            m.config_info.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses sent, by status code",
            m.responses.clone(),
        );
        registry.register(
            "config_apply_duration_seconds",
            "Time to decode, validate, compile and swap in one delta response",
            m.config_apply_seconds.clone(),
        );
        registry.register(
            "config_cache_loaded",
            "1 when the proxy started serving from its --config-cache",
            m.config_cache_loaded.clone(),
        );
        registry.register(
            "xds_connected",
            "1 while the delta stream is open",
            m.xds_connected.clone(),
        );
        registry.register(
            "xds_responses",
            "Delta responses received",
            m.xds_responses.clone(),
        );
        registry.register(
            "xds_resources_received",
            "Resources received in delta responses",
            m.xds_resources_received.clone(),
        );
        registry.register(
            "config_applied",
            "Configuration versions applied",
            m.config_applied.clone(),
        );
        registry.register(
            "config_rejected",
            "Configuration versions rejected",
            m.config_rejected.clone(),
        );
        registry.register(
            "xds_connects",
            "Delta streams opened",
            m.xds_connects.clone(),
        );
        registry.register(
            "upstream_retries",
            "Upstream requests retried",
            m.upstream_retries.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "timeouts",
            "Requests that ran out of time, by kind (request, backend_request)",
            m.timeouts.clone(),
        );
        registry.register(
            "mirrors",
            "Mirrored requests, by result (sent, failed, dropped)",
            m.mirrors.clone(),
        );
        registry.register(
            "upgrades",
            "WebSocket upgrade tunnels opened",
            m.upgrades.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on HTTPS listeners that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        m
    }

    /// Records that `config` is now applied: its version in `config_info`, and the request
    /// series of route rules it no longer has removed.
    pub fn applied(&self, config: &crate::config::Config) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&vec![("version".to_owned(), config.version.clone())])
            .set(1);
        let removed = self.requests.retain(|id| config.has_route_rule(id));
        if removed > 0 {
            tracing::debug!(removed, "request metrics of removed routes dropped");
        }
    }

    /// Counts a timeout of `kind`.
    pub fn record_timeout(&self, kind: &str) {
        self.timeouts
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }

    /// Counts a mirrored request's `result`.
    pub fn record_mirror(&self, result: &str) {
        self.mirrors
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
    }

    /// Counts one response.
    pub fn record_response(&self, status: http::StatusCode) {
        self.responses
            .get_or_create(&vec![("code".to_owned(), status.as_u16().to_string())])
            .inc();
    }
}
