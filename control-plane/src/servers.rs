//! The two servers every control-plane mode runs: the delta server (gRPC) and the admin server
//! (HTTP `/healthz`, `/readyz`, `/metrics`, `/status`, `/debug/snapshot`).
//!
//! The delta server accepts connections from the start but serves them only after the first
//! complete sync, so no proxy is ever told the empty configuration that precedes it: connections
//! wait in the backlog meanwhile.

use crate::{
    admin::{self, StatusBoard},
    metrics::Metrics,
    snapshot::Snapshot,
    xds::{
        fleet::Fleet,
        server::{DeltaServer, Limits},
        tls::Reloading,
    },
};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serval_common::{admin::Admin, readiness::Readiness, shutdown, tls::TlsFiles};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// What the servers need.
#[derive(Debug)]
pub struct Inputs {
    /// Delta server address.
    pub xds_addr: SocketAddr,
    /// Admin address.
    pub admin_addr: SocketAddr,
    /// `/readyz`.
    pub readiness: Readiness,
    /// `/metrics`.
    pub registry: Registry,
    /// `/status`.
    pub board: StatusBoard,
    /// Snapshots to serve.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The proxies' streams.
    pub fleet: Arc<Fleet>,
    /// Delta server limits.
    pub limits: Limits,
    /// Mutual TLS material for the delta server; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// Also serve the delta protocol in plaintext on a loopback port of its own (standalone's
    /// in-process proxy, when the public port speaks TLS).
    pub loopback_plaintext: bool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Push spans, when traces are exported.
    pub tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    /// Turns true after the first complete sync.
    pub synced: watch::Receiver<bool>,
}

/// The bound servers.
#[derive(Debug)]
pub struct Servers {
    /// Where the delta server listens.
    pub xds_local: SocketAddr,
    /// The loopback plaintext delta port, when asked for.
    pub loopback_local: Option<SocketAddr>,
    /// Where the admin server listens.
    pub admin_local: SocketAddr,
    xds_task: JoinHandle<anyhow::Result<()>>,
}

/// Binds both servers and serves them until `shutdown`.
pub async fn start(inputs: Inputs, shutdown: shutdown::Watch) -> anyhow::Result<Servers> {
    let xds_listener = TcpListener::bind(inputs.xds_addr)
        .await
        .map_err(|e| anyhow::anyhow!("--xds-addr {}: {e}", inputs.xds_addr))?;
    let xds_local = xds_listener.local_addr()?;
    tracing::info!(addr = %xds_local, "delta server listening");
    let material = inputs
        .tls
        .map(Reloading::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("delta server TLS: {e}"))?;
    let server = DeltaServer::new(
        inputs.snapshots.clone(),
        inputs.fleet,
        Arc::clone(&inputs.metrics),
        inputs.limits,
        material.clone(),
        shutdown.clone(),
    )
    .with_tracer(inputs.tracer);
    let loopback = if inputs.loopback_plaintext && material.is_some() {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        Some(listener)
    } else {
        None
    };
    let loopback_local = loopback.as_ref().map(TcpListener::local_addr).transpose()?;
    let mut synced = inputs.synced;
    let xds_task = tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_err() {
            return Ok(());
        }
        if let Some(listener) = loopback {
            let plaintext = server.plaintext();
            tokio::spawn(async move {
                if let Err(error) = plaintext.serve(listener).await {
                    tracing::warn!(%error, "loopback delta server failed");
                }
            });
        }
        server.serve(xds_listener).await
    });

    let mut registry = inputs.registry;
    registry.register_collector(Box::new(
        crate::metrics::snapshot_resources::ResourcesByKind(inputs.snapshots.clone()),
    ));
    let admin = Admin::new(
        inputs.readiness,
        Arc::new(Mutex::new(registry)),
        admin::routes(inputs.board, inputs.snapshots),
    );
    let (admin_local, admin_task) = admin
        .bind(inputs.admin_addr, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("--admin-addr {}: {e}", inputs.admin_addr))?;
    tracing::info!(addr = %admin_local, "admin listening");
    tokio::spawn(admin_task);
    Ok(Servers {
        xds_local,
        loopback_local,
        admin_local,
        xds_task,
    })
}

impl Servers {
    /// Waits (at most 5 s) for the delta server to finish after shutdown fired.
    pub async fn stopped(self) {
        match tokio::time::timeout(Duration::from_secs(5), self.xds_task).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "delta server failed"),
            Err(_) => tracing::warn!("delta server did not stop within 5s"),
            _ => {}
        }
    }
}
