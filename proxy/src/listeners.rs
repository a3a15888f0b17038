//! Bound sockets, reconciled with each configuration: sockets of a new version are bound *before*
//! it is swapped in (a bind failure rejects the version and changes nothing), sockets no longer
//! configured stop accepting after the swap while their open connections finish, for up to the
//! drain timeout, after which they are closed. A dropped socket that overlaps an added one is
//! closed before the bind (see `xds::apply`).
//!
//! Each connection is served with hyper's auto builder: HTTP/1.1 and HTTP/2 with prior knowledge,
//! or, on an HTTPS socket, after a TLS handshake (run in the connection's own task, bounded by
//! [`TLS_HANDSHAKE_TIMEOUT`], with the certificates of the configuration current at accept; see
//! `tls`).

use crate::{
    config::Config,
    http::{self, Connection, Shared},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use parking_lot::Mutex;
use serval_common::shutdown;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    net::{TcpListener, TcpSocket, UdpSocket},
    sync::oneshot,
};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to complete a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A serving socket: fire `stop` and `closed` resolves once the socket is closed (its open
/// connections drain after that).
#[derive(Debug)]
struct Bound {
    stop: shutdown::Trigger,
    closed: oneshot::Receiver<()>,
}

/// How long removing a socket waits for it to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// True if sockets bound to `a` and `b` cannot coexist (same port, same IP or a wildcard IP).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Sockets bound for a configuration but not yet serving.
#[derive(Debug, Default)]
pub struct Prepared {
    sockets: Vec<(SocketAddr, TcpListener)>,
    udp: Vec<(SocketAddr, UdpSocket)>,
}

/// The proxy's bound sockets.
#[derive(Debug)]
pub struct Listeners {
    shared: Arc<Shared>,
    bound: Mutex<BTreeMap<SocketAddr, Bound>>,
    udp_bound: Mutex<BTreeMap<SocketAddr, Bound>>,
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
            udp_bound: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            shutdown,
            drain_timeout,
        }
    }

    /// Closes the sockets that `config` drops *and* that overlap a socket it adds (moving a Gateway
    /// from `0.0.0.0:80` to `10.0.0.1:80`, say), so the new one can be bound. Other removed
    /// sockets keep serving until [`Listeners::commit`].
    pub async fn release_overlapping(&self, config: &Config) {
        let tcp = released(&self.bound, &config.listeners.keys().copied().collect());
        let udp = released(&self.udp_bound, &config.udp.keys().copied().collect());
        close_all(tcp).await;
        close_all(udp).await;
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
        drop(bound);
        let udp_bound = self.udp_bound.lock();
        for (addr, listener) in &config.udp {
            if udp_bound.contains_key(addr) {
                continue;
            }
            let socket = bind_udp(*addr).map_err(|source| BindError {
                listeners: listener.names.join(", "),
                addr: *addr,
                source,
            })?;
            prepared.udp.push((*addr, socket));
        }
        Ok(prepared)
    }

    /// Starts serving the prepared sockets, then closes the sockets `config` no longer has (their
    /// open connections drain in the background). Call after the swap.
    pub async fn commit(&self, prepared: Prepared, config: &Config) {
        for (addr, socket) in prepared.udp {
            tracing::info!(%addr, "listening (UDP)");
            let store = Arc::clone(&self.shared.store);
            let process = self.shutdown.clone();
            self.start(&self.udp_bound, addr, move |watch, closed_tx| async move {
                crate::l4::serve_udp(socket, addr, store, (watch, process)).await;
                let _ = closed_tx.send(());
            });
        }
        for (addr, socket) in prepared.sockets {
            tracing::info!(%addr, "listening");
            let shared = Arc::clone(&self.shared);
            let (process, drain) = (self.shutdown.clone(), self.drain_timeout);
            self.start(&self.bound, addr, move |watch, closed_tx| {
                accept_loop(socket, addr, shared, (watch, closed_tx), process, drain)
            });
        }
        let keep_udp = config.udp.keys().copied().collect();
        close_all(take_unwanted(&self.udp_bound, &keep_udp)).await;
        let keep_tcp = config.listeners.keys().copied().collect();
        close_all(take_unwanted(&self.bound, &keep_tcp)).await;
    }

    /// Spawns the task serving `addr` (made by `serve` from its stop watch and its closed signal)
    /// and records it in `bound`.
    fn start<F, Fut>(&self, bound: &Mutex<BTreeMap<SocketAddr, Bound>>, addr: SocketAddr, serve: F)
    where
        F: FnOnce(shutdown::Watch, oneshot::Sender<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, watch) = shutdown::channel();
        let (closed_tx, closed) = oneshot::channel();
        let task = tokio::spawn(serve(watch, closed_tx));
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        bound.lock().insert(addr, Bound { stop, closed });
    }

    /// Waits until every accept loop has stopped and drained (after process shutdown).
    pub async fn drained(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    /// TCP addresses currently bound.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.bound.lock().keys().copied().collect()
    }
}

/// Removes from `bound` every socket `wanted` does not have.
fn take_unwanted(
    bound: &Mutex<BTreeMap<SocketAddr, Bound>>,
    wanted: &std::collections::BTreeSet<SocketAddr>,
) -> Vec<(SocketAddr, Bound)> {
    let mut bound = bound.lock();
    let gone: Vec<SocketAddr> = bound
        .keys()
        .filter(|a| !wanted.contains(*a))
        .copied()
        .collect();
    gone.into_iter()
        .filter_map(|a| bound.remove(&a).map(|b| (a, b)))
        .collect()
}

/// Removes from `bound` the sockets `wanted` drops and that overlap a socket it adds.
fn released(
    bound: &Mutex<BTreeMap<SocketAddr, Bound>>,
    wanted: &std::collections::BTreeSet<SocketAddr>,
) -> Vec<(SocketAddr, Bound)> {
    let mut bound = bound.lock();
    let added: Vec<SocketAddr> = wanted
        .iter()
        .filter(|a| !bound.contains_key(*a))
        .copied()
        .collect();
    let doomed: Vec<SocketAddr> = bound
        .keys()
        .filter(|old| !wanted.contains(*old))
        .filter(|old| added.iter().any(|new| overlaps(**old, *new)))
        .copied()
        .collect();
    doomed
        .into_iter()
        .filter_map(|a| bound.remove(&a).map(|b| (a, b)))
        .collect()
}

/// Stops the accept loops of `sockets` and waits (bounded) until each socket is closed.
async fn close_all(sockets: Vec<(SocketAddr, Bound)>) {
    for (addr, bound) in sockets {
        tracing::info!(%addr, "listener removed; draining its connections");
        bound.stop.fire();
        if tokio::time::timeout(CLOSE_TIMEOUT, bound.closed)
            .await
            .is_err()
        {
            tracing::warn!(%addr, "listener did not close in time");
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
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

/// The HTTP service of one connection.
fn service(
    shared: &Arc<Shared>,
    conn: Connection,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<crate::body::Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<hyper::Response<crate::body::Body>, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    let shared = Arc::clone(shared);
    hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, std::convert::Infallible>(http::handle(shared, conn, req).await) }
    })
}

async fn accept_loop(
    socket: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    (mut removed, closed): (shutdown::Watch, oneshot::Sender<()>),
    mut process: shutdown::Watch,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header-read timeout: a silent client would hold its
    // connection (and a file descriptor) forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
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
        shared.metrics.downstream_connections_accepted.inc();
        let open = crate::upstream::counted::Counted::new(
            (),
            shared.metrics.downstream_connections.clone(),
        );
        // Reap finished connections so the set only holds open ones.
        while connections.try_join_next().is_some() {}
        // A TCPRoute listener proxies bytes; an HTTPS one terminates TLS first. The configuration
        // is read once per connection.
        let (tcp, tls) = shared
            .store
            .load()
            .listeners
            .get(&addr)
            .map(|l| (l.tcp.clone(), l.tls.clone()))
            .unwrap_or_default();
        if let Some(backends) = tcp {
            connections.spawn(async move {
                crate::l4::proxy_tcp(stream, peer, backends).await;
                drop(open);
            });
            continue;
        }
        let conn = Connection {
            listener: addr,
            peer,
            tls: tls.is_some(),
        };
        let service = service(&shared, conn);
        match tls {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let watched = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                    drop(open);
                });
            }
            Some(tls) => {
                let (builder, watcher) = (Arc::clone(&builder), graceful.watcher());
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            shared.metrics.tls_handshake_failures.inc();
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            shared.metrics.tls_handshake_failures.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                    drop(open);
                });
            }
        }
    }
    drop(socket);
    let _ = closed.send(());
    // Let in-flight requests finish (keep-alive connections are told to close), and proxied TCP
    // connections end on their own.
    let drained = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!(%addr, open = connections.len(), "connections still open after the drain timeout; closing them");
        connections.abort_all();
    }
}
