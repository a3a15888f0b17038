//! `serval-control-plane standalone`: the file source, translation, the delta server, the admin
//! server and (unless `--no-proxy`) an in-process proxy connected over loopback gRPC, all in one
//! process: a complete gateway from one command.
//!
//! The in-process proxy is the same code as `serval-proxy` and speaks the same delta protocol over
//! a real socket, so what standalone serves is what a fleet would.

use crate::{
    admin::{self, StatusBoard},
    metrics::Metrics,
    snapshot::Snapshot,
    sources::file::{FileSource, SourceState, Timing},
    translate::{self, Inputs, Options, status},
    xds::server::DeltaServer,
};
use parking_lot::Mutex;
use serval_common::{
    admin::Admin,
    proto::discovery::v1::Node,
    readiness::{Latch, Readiness},
    shutdown, telemetry,
};
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, sync::watch};

/// Validated standalone settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The folder of YAML files.
    pub config_dir: PathBuf,
    /// Delta server address.
    pub xds_addr: SocketAddr,
    /// Admin address.
    pub admin_addr: SocketAddr,
    /// Admin address of the in-process proxy.
    pub proxy_admin_addr: Option<SocketAddr>,
    /// Whether to run the in-process proxy.
    pub run_proxy: bool,
    /// Reload timing of the file source.
    pub timing: Timing,
    /// The controllerName to own.
    pub controller_name: String,
}

/// Runs until `shutdown` fires.
pub async fn run(config: Config, shutdown: shutdown::Watch) -> anyhow::Result<()> {
    let mut registry = telemetry::registry("control-plane");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (readiness, latch) = Readiness::new();

    let (source_tx, source_rx) = watch::channel(Arc::new(SourceState::default()));
    let source = FileSource::new(&config.config_dir);
    let source_task = tokio::spawn(source.run(config.timing, source_tx, shutdown.clone()));

    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let board: StatusBoard = Arc::default();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(translator(
        source_rx,
        snapshot_tx,
        Arc::clone(&board),
        Arc::clone(&metrics),
        config.controller_name.clone(),
        (latch, synced_tx),
    ));

    let xds_listener = TcpListener::bind(config.xds_addr)
        .await
        .map_err(|e| anyhow::anyhow!("--xds-addr {}: {e}", config.xds_addr))?;
    let xds_local = xds_listener.local_addr()?;
    tracing::info!(addr = %xds_local, "delta server listening");
    let server = DeltaServer::new(snapshot_rx.clone(), Arc::clone(&metrics), shutdown.clone());
    // Serve the delta protocol only once the folder was translated, so no proxy is ever told the
    // empty configuration that precedes the first sync. Connections wait in the backlog meanwhile.
    let xds_task = tokio::spawn(async move {
        if synced_rx.await.is_err() {
            return Ok(());
        }
        server.serve(xds_listener).await
    });

    let admin = Admin::new(
        readiness,
        Arc::new(Mutex::new(registry)),
        admin::routes(board, snapshot_rx),
    );
    let (admin_local, admin_task) = admin
        .bind(config.admin_addr, shutdown.clone())
        .await
        .map_err(|e| anyhow::anyhow!("--admin-addr {}: {e}", config.admin_addr))?;
    tracing::info!(addr = %admin_local, "admin listening");
    tokio::spawn(admin_task);

    let proxy_task = config.run_proxy.then(|| {
        let connect_ip = match xds_local.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let proxy = serval_proxy::ProxyConfig {
            xds_server: format!("http://{}", SocketAddr::new(connect_ip, xds_local.port())),
            node: Node {
                id: "standalone".to_owned(),
                gateways: Vec::new(),
                build_version: serval_common::BUILD_VERSION.to_owned(),
                zone: String::new(),
            },
            admin_addr: config.proxy_admin_addr,
            bind_ip: None,
            drain_timeout: Duration::from_secs(10),
            upstream: serval_proxy::upstream::Settings::default(),
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
    match tokio::time::timeout(Duration::from_secs(5), xds_task).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "delta server failed"),
        Err(_) => tracing::warn!("delta server did not stop within 5s"),
        _ => {}
    }
    Ok(())
}

/// Translates every new source state and publishes the snapshot (when its version changed) and
/// the statuses. After the first translation of a loaded folder it releases the readiness latch and
/// signals `synced`.
async fn translator(
    mut source: watch::Receiver<Arc<SourceState>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    board: StatusBoard,
    metrics: Arc<Metrics>,
    controller_name: String,
    first_sync: (Latch, tokio::sync::oneshot::Sender<()>),
) {
    let mut first_sync = Some(first_sync);
    let mut reported = BTreeSet::new();
    while source.changed().await.is_ok() {
        let state = Arc::clone(&source.borrow_and_update());
        metrics.config_file_errors.set(state.errors.len() as i64);
        let started = Instant::now();
        let inputs = Inputs::from_objects(state.objects.iter().cloned());
        let options = Options {
            controller_name: controller_name.clone(),
            now: now_rfc3339(),
        };
        let output = translate::translate(&inputs, &options);
        metrics.translations.inc();
        metrics
            .translate_seconds
            .observe(started.elapsed().as_secs_f64());
        // Log each diagnostic once, not on every reload.
        let current: BTreeSet<String> = output.diagnostics.iter().cloned().collect();
        for d in current.difference(&reported) {
            tracing::warn!(diagnostic = %d, "translate");
        }
        reported = current;

        let snapshot = Snapshot::new(output.resources);
        metrics
            .snapshot_resources
            .set(snapshot.resources.len() as i64);
        if snapshot.version != snapshots.borrow().version {
            tracing::info!(version = %snapshot.version, resources = snapshot.resources.len(), "new snapshot");
            metrics.snapshots.inc();
            snapshots.send_replace(Arc::new(snapshot));
        }
        let mut statuses = output.statuses;
        {
            let mut board = board.lock();
            status::carry_transition_times(&board, &mut statuses);
            *board = Arc::new(statuses);
        }
        if let Some((latch, synced)) = first_sync.take() {
            latch.release();
            let _ = synced.send(());
        }
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
