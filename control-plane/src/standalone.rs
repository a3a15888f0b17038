//! `serval-control-plane standalone`: the file source, translation, the delta server, the admin
//! server and (unless `--no-proxy`) an in-process proxy connected over loopback gRPC, all in one
//! process: a complete gateway from one command.
//!
//! The in-process proxy is the same code as `serval-proxy` and speaks the same delta protocol over
//! a real socket, so what standalone serves is what a fleet would.

use crate::{
    admin::StatusBoard,
    metrics::Metrics,
    pipeline::Pipeline,
    servers,
    snapshot::Snapshot,
    sources::file::{FileSource, SourceState, Timing},
    xds::{fleet::Fleet, server::Limits},
};
use serval_common::{proto::discovery::v1::Node, readiness::Readiness, shutdown, telemetry};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::sync::watch;

/// Validated standalone settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The folder of YAML files.
    pub config_dir: PathBuf,
    /// Delta server address.
    pub xds_addr: SocketAddr,
    /// Delta server limits.
    pub xds_limits: Limits,
    /// Mutual TLS material of the delta server; `None`: plaintext.
    pub xds_tls: Option<serval_common::tls::TlsFiles>,
    /// Admin address.
    pub admin_addr: SocketAddr,
    /// Admin address of the in-process proxy.
    pub proxy_admin_addr: Option<SocketAddr>,
    /// Whether to run the in-process proxy.
    pub run_proxy: bool,
    /// The in-process proxy's access log.
    pub access_log: serval_proxy::access_log::Format,
    /// The in-process proxy's traces.
    pub traces: serval_common::traces::TraceArgs,
    /// Reload timing of the file source.
    pub timing: Timing,
    /// The controllerName to own.
    pub controller_name: String,
}

/// Runs until `shutdown` fires.
pub async fn run(config: Config, shutdown: shutdown::Watch) -> anyhow::Result<()> {
    let mut registry = telemetry::registry("control-plane");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let traces = serval_common::traces::Traces::start(
        &config.traces,
        "serval-control-plane",
        metrics.trace_spans_dropped.clone(),
    )?;
    let tracer = traces.as_ref().map(|t| t.tracer.clone());
    let (readiness, latch) = Readiness::new();

    let (source_tx, source_rx) = watch::channel(Arc::new(SourceState::default()));
    let source =
        FileSource::new(&config.config_dir).counting_events(metrics.config_file_events.clone());
    let source_task = tokio::spawn(source.run(config.timing, source_tx, shutdown.clone()));

    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let board: StatusBoard = Arc::default();
    let fleet = Arc::new(Fleet::new(Arc::clone(&metrics)));
    let (synced_tx, synced_rx) = watch::channel(false);
    let pipeline = Pipeline {
        controller_name: config.controller_name.clone(),
        metrics: Arc::clone(&metrics),
        board: Arc::clone(&board),
        snapshots: snapshot_tx,
        fleet: Arc::clone(&fleet),
        tracer: tracer.clone(),
        kubernetes: None,
    };
    tokio::spawn(pipeline.run(source_rx, (latch, synced_tx)));

    let servers = servers::start(
        servers::Inputs {
            xds_addr: config.xds_addr,
            admin_addr: config.admin_addr,
            readiness,
            registry,
            board,
            snapshots: snapshot_rx,
            fleet: Arc::clone(&fleet),
            limits: config.xds_limits,
            tls: config.xds_tls.clone(),
            loopback_plaintext: config.run_proxy,
            metrics,
            tracer,
            synced: synced_rx,
        },
        shutdown.clone(),
    )
    .await?;
    // The in-process proxy connects over loopback in plaintext: to the public port when it is
    // plaintext, else to the loopback port served for it.
    let xds_local = servers.loopback_local.unwrap_or(servers.xds_local);

    let proxy_task = config.run_proxy.then(|| {
        let connect_ip = match xds_local.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let proxy = serval_proxy::ProxyConfig {
            connector: serval_proxy::xds::tls::Connector::Plaintext {
                url: format!("http://{}", SocketAddr::new(connect_ip, xds_local.port())),
            },
            config_cache: None,
            node: Node {
                id: "standalone".to_owned(),
                gateways: Vec::new(),
                gateway_class: String::new(),
                build_version: serval_common::BUILD_VERSION.to_owned(),
                zone: String::new(),
            },
            admin_addr: config.proxy_admin_addr,
            bind_ip: None,
            drain_timeout: Duration::from_secs(10),
            upstream: serval_proxy::upstream::Settings::default(),
            access_log: config.access_log,
            traces: config.traces.clone(),
        };
        tokio::spawn(serval_proxy::run(proxy, shutdown.clone()))
    });

    let mut watch = shutdown.clone();
    tokio::select! {
        _ = watch.fired() => {}
        result = source_task => {
            match result {
                Ok(Err(error)) => return Err(error.into()),
                Ok(Ok(())) => {}
                Err(error) => return Err(anyhow::anyhow!("file source task failed: {error}")),
            }
        }
    }
    if let Some(task) = proxy_task {
        match task.await {
            Ok(Err(error)) => tracing::warn!(%error, "in-process proxy failed"),
            Err(error) => tracing::warn!(%error, "in-process proxy task failed"),
            Ok(Ok(())) => {}
        }
    }
    servers.stopped().await;
    if let Some(traces) = traces {
        // Shutting the exporter down flushes it, and waits: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(traces)).await;
    }
    Ok(())
}
