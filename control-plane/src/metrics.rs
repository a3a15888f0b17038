//! The control plane's metric families (registered with the `serval_` prefix).
//!
//! Only definitions; the components update them. Resources by kind are counted at scrape time
//! ([`snapshot_resources`]).

pub mod snapshot_resources;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of per-kind Kubernetes source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind, e.g. `HTTPRoute`.
    pub kind: String,
}

impl KindLabels {
    /// Labels for `kind`.
    pub fn of(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
        }
    }
}

/// Labels of status-write metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `succeeded`, `failed`, `conflict` (retried from the newer object) or `skipped_unchanged`
    /// (the API server already holds that status).
    pub result: &'static str,
}

/// Every control-plane metric.
#[derive(Debug)]
pub struct Metrics {
    /// Open delta streams.
    pub xds_streams: Gauge,
    /// Responses sent on delta streams.
    pub xds_responses: Counter,
    /// ACKs received.
    pub xds_acks: Counter,
    /// NACKs received.
    pub xds_nacks: Counter,
    /// Time from sending a response to its ACK or NACK.
    pub xds_push_seconds: Histogram,
    /// Time from observing a change to every affected proxy having ACKed it.
    pub xds_convergence_seconds: Histogram,
    /// Time from publishing a snapshot to every affected proxy having ACKed it (the distribution
    /// part of convergence: no debounce, no translation).
    pub xds_rollout_seconds: Histogram,
    /// Rollouts given up before every proxy ACKed (more than the tracked number in progress).
    pub xds_rollouts_abandoned: Counter,
    /// Streams refused (stream limit or identity).
    pub xds_rejected_streams: Counter,
    /// Proxies whose latest answer was a NACK.
    pub xds_rejecting_proxies: Gauge,
    /// Translations run.
    pub translations: Counter,
    /// Time one translation took.
    pub translate_seconds: Histogram,
    /// Source changes that were only statuses (Kubernetes), so no translation was needed.
    pub translations_skipped: Counter,
    /// HTTPRoutes and GRPCRoutes whose previous translation was reused (nothing they read changed).
    pub translate_reused_routes: Counter,
    /// Snapshots published (a translation whose result changed).
    pub snapshots: Counter,
    /// Resources in the latest snapshot.
    pub snapshot_resources: Gauge,
    /// From the first change observed (file event, watch event) to its translation starting:
    /// the quiet period and maximum delay, and reading the change.
    pub debounce_delay_seconds: Histogram,
    /// Change events from the config folder (standalone).
    pub config_file_events: Counter,
    /// Finished spans dropped because the export queue was full.
    pub trace_spans_dropped: Counter,
    /// Config files that currently fail to load.
    pub config_file_errors: Gauge,
    /// Kubernetes watch events received, by kind.
    pub kubernetes_events: Family<KindLabels, Counter>,
    /// Objects that did not decode and were skipped, by kind.
    pub kubernetes_decode_errors: Family<KindLabels, Counter>,
    /// Failed watch or discovery calls (each is retried with backoff), by kind.
    pub kubernetes_watch_errors: Family<KindLabels, Counter>,
    /// 1 while a kind's CRD is not installed (the kind is skipped).
    pub kubernetes_kind_missing: Family<KindLabels, Gauge>,
    /// Objects held, by kind.
    pub kubernetes_objects: Family<KindLabels, Gauge>,
    /// Complete listings (the first, and re-lists after a watch could not resume), by kind.
    pub kubernetes_listings: Family<KindLabels, Counter>,
    /// Status writes, by result.
    pub status_writes: Family<WriteLabels, Counter>,
    /// Time one status write took.
    pub status_write_seconds: Histogram,
    /// 1 while this replica holds the leader Lease (and writes status).
    pub leader: Gauge,
    /// Times this replica became leader.
    pub leader_acquisitions: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            xds_streams: Gauge::default(),
            xds_responses: Counter::default(),
            xds_acks: Counter::default(),
            xds_nacks: Counter::default(),
            xds_push_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            xds_convergence_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            xds_rollout_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            xds_rollouts_abandoned: Counter::default(),
            xds_rejected_streams: Counter::default(),
            xds_rejecting_proxies: Gauge::default(),
            translations: Counter::default(),
            translate_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            translations_skipped: Counter::default(),
            translate_reused_routes: Counter::default(),
            snapshots: Counter::default(),
            snapshot_resources: Gauge::default(),
            debounce_delay_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            config_file_events: Counter::default(),
            trace_spans_dropped: Counter::default(),
            config_file_errors: Gauge::default(),
            kubernetes_events: Family::default(),
            kubernetes_decode_errors: Family::default(),
            kubernetes_watch_errors: Family::default(),
            kubernetes_kind_missing: Family::default(),
            kubernetes_objects: Family::default(),
            kubernetes_listings: Family::default(),
            status_writes: Family::default(),
            status_write_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            leader: Gauge::default(),
            leader_acquisitions: Counter::default(),
        };
        registry.register("xds_streams", "Open delta streams", m.xds_streams.clone());
        registry.register(
            "xds_responses",
            "Delta responses sent",
            m.xds_responses.clone(),
        );
        registry.register("xds_acks", "ACKs received", m.xds_acks.clone());
        registry.register("xds_nacks", "NACKs received", m.xds_nacks.clone());
        registry.register(
            "xds_push_duration_seconds",
            "Time from sending a delta response to its ACK or NACK",
            m.xds_push_seconds.clone(),
        );
        registry.register(
            "xds_convergence_seconds",
            "Time from observing a change to every proxy whose view it changed having ACKed it",
            m.xds_convergence_seconds.clone(),
        );
        registry.register(
            "xds_rollout_seconds",
            "Time from publishing a snapshot to every proxy whose view it changed having ACKed it",
            m.xds_rollout_seconds.clone(),
        );
        registry.register(
            "xds_rollouts_abandoned",
            "Rollouts no longer tracked before every proxy ACKed (too many in progress)",
            m.xds_rollouts_abandoned.clone(),
        );
        registry.register(
            "xds_rejected_streams",
            "Delta streams refused (stream limit reached or identity not allowed)",
            m.xds_rejected_streams.clone(),
        );
        registry.register(
            "xds_rejecting_proxies",
            "Connected proxies whose latest answer was a NACK",
            m.xds_rejecting_proxies.clone(),
        );
        registry.register("translations", "Translations run", m.translations.clone());
        registry.register(
            "translate_duration_seconds",
            "Time one translation took",
            m.translate_seconds.clone(),
        );
        registry.register(
            "translations_skipped",
            "Source changes that were only statuses, so no translation was needed",
            m.translations_skipped.clone(),
        );
        registry.register(
            "translate_reused_routes",
            "HTTPRoutes and GRPCRoutes whose previous translation was reused",
            m.translate_reused_routes.clone(),
        );
        registry.register("snapshots", "Snapshots published", m.snapshots.clone());
        registry.register(
            "debounce_delay_seconds",
            "From the first change observed to its translation starting (quiet period, maximum delay, reading the change)",
            m.debounce_delay_seconds.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Finished spans dropped because the export queue was full",
            m.trace_spans_dropped.clone(),
        );
        registry.register(
            "config_file_events",
            "Change events from the config folder",
            m.config_file_events.clone(),
        );
        registry.register(
            "snapshot_resources",
            "Resources in the latest snapshot",
            m.snapshot_resources.clone(),
        );
        registry.register(
            "config_file_errors",
            "Config files that currently fail to load",
            m.config_file_errors.clone(),
        );
        registry.register(
            "kubernetes_events",
            "Kubernetes watch events received",
            m.kubernetes_events.clone(),
        );
        registry.register(
            "kubernetes_decode_errors",
            "Kubernetes objects that did not decode and were skipped",
            m.kubernetes_decode_errors.clone(),
        );
        registry.register(
            "kubernetes_watch_errors",
            "Failed Kubernetes watch or discovery calls (retried with backoff)",
            m.kubernetes_watch_errors.clone(),
        );
        registry.register(
            "kubernetes_kind_missing",
            "1 while a kind's CRD is not installed and the kind is skipped",
            m.kubernetes_kind_missing.clone(),
        );
        registry.register(
            "kubernetes_objects",
            "Kubernetes objects held",
            m.kubernetes_objects.clone(),
        );
        registry.register(
            "kubernetes_listings",
            "Complete listings of a kind (the first, and re-lists after a watch could not resume)",
            m.kubernetes_listings.clone(),
        );
        registry.register(
            "status_writes",
            "Status subresource writes by result",
            m.status_writes.clone(),
        );
        registry.register(
            "status_write_duration_seconds",
            "Time one status write took",
            m.status_write_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        registry.register(
            "leader_acquisitions",
            "Times this replica became leader",
            m.leader_acquisitions.clone(),
        );
        m
    }
}
