//! `serval-control-plane kubernetes`: the Kubernetes source, translation, the delta server and the
//! admin server — on every replica — plus leader election and the status writer, which writes
//! only while this replica leads.
//!
//! ```text
//! API server ══watch══► sources::kubernetes ─► pipeline (translate) ─► snapshot ─► delta server ══► proxies
//!      ▲                                            │
//!      └──────── PATCH …/status ◄── status_writer ◄─┘ (leader only, see leader)
//! ```
//!
//! `/readyz` turns true, and proxies are served, only after every kind has been listed and the
//! complete world translated once. An API server that is not reachable yet is retried with
//! backoff meanwhile.

use crate::{
    admin::StatusBoard,
    leader,
    metrics::Metrics,
    pipeline::{KubernetesOutputs, Pipeline},
    servers,
    snapshot::Snapshot,
    sources::{SourceState, Timing, kubernetes as source},
    status_writer::{self, Round},
    xds::{fleet::Fleet, server::Limits},
};
use serval_common::{readiness::Readiness, shutdown, telemetry};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tokio::sync::watch;

/// Validated `kubernetes` settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// Delta server address.
    pub xds_addr: SocketAddr,
    /// Delta server limits.
    pub xds_limits: Limits,
    /// Mutual TLS material of the delta server; `None`: plaintext.
    pub xds_tls: Option<serval_common::tls::TlsFiles>,
    /// Admin address.
    pub admin_addr: SocketAddr,
    /// The controllerName to own.
    pub controller_name: String,
    /// The proxy fleet's Service.
    pub proxy_service: Option<(String, String)>,
    /// Debounce of changes.
    pub timing: Timing,
    /// Leader election.
    pub lease: leader::Settings,
    /// Rollout traces (OTLP export).
    pub traces: serval_common::traces::TraceArgs,
    /// Status writing.
    pub status: status_writer::Settings,
}

/// Runs until `shutdown` fires.
pub async fn run(config: Config, shutdown: shutdown::Watch) -> anyhow::Result<()> {
    let client =
        source::client::build(config.kubeconfig.as_deref(), &config.lease.identity).await?;
    let mut registry = telemetry::registry("control-plane");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let traces = serval_common::traces::Traces::start(
        &config.traces,
        "serval-control-plane",
        metrics.trace_spans_dropped.clone(),
    )?;
    let tracer = traces.as_ref().map(|t| t.tracer.clone());
    let (readiness, latch) = Readiness::new();
    tracing::info!(identity = %config.lease.identity, namespace = %config.lease.namespace, "starting");

    let (source_tx, source_rx) = watch::channel(Arc::new(SourceState::default()));
    tokio::spawn(source::run(
        client.clone(),
        config.timing,
        source_tx,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));

    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (rounds_tx, rounds_rx) = watch::channel(Arc::new(Round::default()));
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
        kubernetes: Some(KubernetesOutputs {
            proxy_service: config.proxy_service.clone(),
            rounds: rounds_tx,
        }),
    };
    tokio::spawn(pipeline.run(source_rx, (latch, synced_tx)));

    // Campaign only once synced: a replica that cannot list everything must not hold the Lease
    // (it would write nothing while a healthy replica waits).
    let (leader_tx, leader_rx) = watch::channel(false);
    let elector = {
        let (client, lease, metrics, shutdown) = (
            client.clone(),
            config.lease.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        let mut synced = synced_rx.clone();
        tokio::spawn(async move {
            if synced.wait_for(|s| *s).await.is_ok() {
                leader::run(client, lease, leader_tx, metrics, shutdown).await;
            }
        })
    };
    tokio::spawn(status_writer::run(
        client,
        config.status.clone(),
        rounds_rx,
        leader_rx,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));

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
            loopback_plaintext: false,
            metrics,
            tracer,
            synced: synced_rx,
        },
        shutdown.clone(),
    )
    .await?;

    let mut watch = shutdown;
    watch.fired().await;
    // The elector releases the Lease on shutdown, so another replica takes over at once.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), elector).await;
    servers.stopped().await;
    if let Some(traces) = traces {
        // Shutting the exporter down flushes it, and waits: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(traces)).await;
    }
    Ok(())
}
