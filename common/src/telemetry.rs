//! Logging and metrics setup shared by both binaries: a `tracing` subscriber (plain or JSON, filter
//! from `SERVAL_LOG`/`RUST_LOG`) and a prometheus-client registry with a `serval_build_info` metric.
//!
//! Component metrics are registered by the components themselves.

use prometheus_client::{
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber. The filter comes from `SERVAL_LOG`, else `RUST_LOG`,
/// else `info`. Calling it twice is harmless (the second call does nothing).
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("SERVAL_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed (e.g. standalone runs the proxy in-process): keep the first.
    let _ = result;
}

/// A metrics registry with the `serval` prefix and a `serval_build_info{component,version} 1` gauge.
pub fn registry(component: &str) -> Registry {
    let mut registry = Registry::with_prefix("serval");
    let info: Family<Vec<(String, String)>, Gauge> = Family::default();
    info.get_or_create(&vec![
        ("component".to_owned(), component.to_owned()),
        ("version".to_owned(), crate::BUILD_VERSION.to_owned()),
    ])
    .set(1);
    registry.register("build_info", "Serval build information", info);
    registry
}
