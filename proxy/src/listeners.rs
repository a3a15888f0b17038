//! Bound sockets, reconciled with each configuration: sockets of a new version are bound *before*
//! it is swapped in (a bind failure rejects the version and changes nothing), sockets no longer
//! configured stop accepting after the swap while their open connections finish.
//!
//! Each connection is served with hyper's auto builder: HTTP/1.1 and HTTP/2 with prior knowledge.

use crate::{
    config::Config,
    http::{self, Connection, Shared},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use parking_lot::Mutex;
use serval_common::shutdown;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::{TcpListener, TcpSocket};

/// A socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{listeners}: cannot bind {addr}: {source}")]
pub struct BindError {
    /// The Listener resources of the socket.
    pub listeners: String,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Sockets bound for a configuration but not yet serving.
#[derive(Debug, Default)]
pub struct Prepared {
    sockets: Vec<(SocketAddr, TcpListener)>,
}

/// The proxy's bound sockets.
#[derive(Debug)]
pub struct Listeners {
    shared: Arc<Shared>,
    bound: Mutex<BTreeMap<SocketAddr, shutdown::Trigger>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Process shutdown: every accept loop stops and drains.
    shutdown: shutdown::Watch,
    drain_timeout: Duration,
}

impl Listeners {
    /// No sockets yet.
    pub fn new(shared: Arc<Shared>, shutdown: shutdown::Watch, drain_timeout: Duration) -> Self {
        Self {
            shared,
            bound: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            shutdown,
            drain_timeout,
        }
    }

    /// Binds the sockets `config` needs that are not bound yet.
    pub fn prepare(&self, config: &Config) -> Result<Prepared, BindError> {
        let bound = self.bound.lock();
        let mut prepared = Prepared::default();
        for (addr, listener) in &config.listeners {
            if bound.contains_key(addr) {
                continue;
            }
            let socket = bind(*addr).map_err(|source| BindError {
                listeners: listener.names.join(", "),
                addr: *addr,
                source,
            })?;
            prepared.sockets.push((*addr, socket));
        }
        Ok(prepared)
    }

    /// Starts serving the prepared sockets and stops sockets `config` no longer has. Call after the
    /// swap.
    pub fn commit(&self, prepared: Prepared, config: &Config) {
        let mut bound = self.bound.lock();
        for (addr, socket) in prepared.sockets {
            let (trigger, watch) = shutdown::channel();
            tracing::info!(%addr, "listening");
            let task = tokio::spawn(accept_loop(
                socket,
                addr,
                Arc::clone(&self.shared),
                watch,
                self.shutdown.clone(),
                self.drain_timeout,
            ));
            let mut tasks = self.tasks.lock();
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
            bound.insert(addr, trigger);
        }
        bound.retain(|addr, trigger| {
            let keep = config.listeners.contains_key(addr);
            if !keep {
                tracing::info!(%addr, "listener removed; draining its connections");
                trigger.fire();
            }
            keep
        });
    }

    /// Waits until every accept loop has stopped and drained (after process shutdown).
    pub async fn drained(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Addresses currently bound.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.bound.lock().keys().copied().collect()
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    socket: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut removed: shutdown::Watch,
    mut process: shutdown::Watch,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = removed.fired() => break,
            _ = process.fired() => break,
            accepted = socket.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(%addr, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            listener: addr,
            peer,
        };
        let shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, std::convert::Infallible>(http::handle(shared, conn, req).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(socket);
    // Let in-flight requests finish (keep-alive connections are told to close).
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(%addr, "connections still open after the drain timeout");
    }
}
