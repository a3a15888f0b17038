//! The control plane's metric families (registered with the `serval_` prefix).
//!
//! Only definitions; the components update them.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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
    /// Translations run.
    pub translations: Counter,
    /// Time one translation took.
    pub translate_seconds: Histogram,
    /// Snapshots published (a translation whose result changed).
    pub snapshots: Counter,
    /// Resources in the latest snapshot.
    pub snapshot_resources: Gauge,
    /// Config files that currently fail to load.
    pub config_file_errors: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            xds_streams: Gauge::default(),
            xds_responses: Counter::default(),
            xds_acks: Counter::default(),
            xds_nacks: Counter::default(),
            translations: Counter::default(),
            translate_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            snapshots: Counter::default(),
            snapshot_resources: Gauge::default(),
            config_file_errors: Gauge::default(),
        };
        registry.register("xds_streams", "Open delta streams", m.xds_streams.clone());
        registry.register(
            "xds_responses",
            "Delta responses sent",
            m.xds_responses.clone(),
        );
        registry.register("xds_acks", "ACKs received", m.xds_acks.clone());
        registry.register("xds_nacks", "NACKs received", m.xds_nacks.clone());
        registry.register("translations", "Translations run", m.translations.clone());
        registry.register(
            "translate_duration_seconds",
            "Time one translation took",
            m.translate_seconds.clone(),
        );
        registry.register("snapshots", "Snapshots published", m.snapshots.clone());
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
        m
    }
}
