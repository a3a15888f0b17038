//! TCP and UDP proxying (TCPRoute, UDPRoute): each TCP connection, or each UDP client's flow of
//! datagrams, goes to one endpoint of a backend picked by weight, bytes copied both ways.
//!
//! UDP keeps one session per client address: an upstream socket connected to the picked endpoint,
//! whose replies are sent back to the client from the listener's socket. A session ends after
//! [`UDP_SESSION_IDLE`] without datagrams in either direction.

use crate::{config::ConfigStore, upstream::Cluster};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};
use tokio::net::{TcpStream, UdpSocket};

/// How long a UDP session lives without traffic.
pub const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);
/// Time allowed to connect to a TCP endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;

/// The weighted backends of an L4 listener; `None` marks an invalid backendRef.
#[derive(Debug, Default)]
pub struct L4Backends {
    /// `(cumulative weight, cluster)`, ascending.
    pub cumulative: Vec<(u64, Option<Arc<Cluster>>)>,
    /// Sum of the weights.
    pub total: u64,
}

impl L4Backends {
    /// An endpoint of a backend picked by weight; `None` when there is none to use.
    pub fn pick(&self) -> Option<(Arc<Cluster>, SocketAddr)> {
        if self.total == 0 {
            return None;
        }
        let n = fastrand::u64(0..self.total);
        let cluster = self
            .cumulative
            .iter()
            .find(|(upto, _)| n < *upto)
            .and_then(|(_, c)| c.clone())?;
        let endpoint = cluster.pick()?.addr;
        Some((cluster, endpoint))
    }
}

/// Proxies one TCP connection until either side closes.
pub async fn proxy_tcp(mut client: TcpStream, peer: SocketAddr, backends: Arc<L4Backends>) {
    let Some((cluster, endpoint)) = backends.pick() else {
        tracing::debug!(%peer, "TCP connection refused: no usable backend");
        return;
    };
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tracing::warn!(%error, cluster = %cluster.name, %endpoint, "TCP upstream connect failed");
            return;
        }
        Err(_) => {
            tracing::warn!(cluster = %cluster.name, %endpoint, "TCP upstream connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, %peer, "TCP connection ended with an error");
    }
}

/// Serves one UDP listener socket until the listener is removed or the process stops.
pub async fn serve_udp(
    socket: UdpSocket,
    addr: SocketAddr,
    store: Arc<ConfigStore>,
    (mut removed, mut process): (
        serval_common::shutdown::Watch,
        serval_common::shutdown::Watch,
    ),
) {
    let socket = Arc::new(socket);
    let mut sessions: HashMap<SocketAddr, (Arc<UdpSocket>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = removed.fired() => break,
            _ = process.fired() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    tracing::debug!(%addr, %error, "UDP receive failed");
                    continue;
                }
            },
        };
        sessions.retain(|_, (_, task)| !task.is_finished());
        let upstream = match sessions.get(&client) {
            Some((upstream, _)) => Arc::clone(upstream),
            None => {
                let config = store.load();
                let Some(backends) = config.udp.get(&addr).map(|l| Arc::clone(&l.backends)) else {
                    continue;
                };
                let Some((cluster, endpoint)) = backends.pick() else {
                    tracing::debug!(%client, "UDP datagram dropped: no usable backend");
                    continue;
                };
                let local: IpAddr = if endpoint.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    Ipv6Addr::UNSPECIFIED.into()
                };
                let upstream = match UdpSocket::bind((local, 0)).await {
                    Ok(u) if u.connect(endpoint).await.is_ok() => Arc::new(u),
                    _ => {
                        tracing::warn!(cluster = %cluster.name, %endpoint, "UDP upstream socket failed");
                        continue;
                    }
                };
                let task = tokio::spawn(relay_replies(
                    Arc::clone(&upstream),
                    Arc::clone(&socket),
                    client,
                ));
                sessions.insert(client, (Arc::clone(&upstream), task));
                upstream
            }
        };
        if let Err(error) = upstream.send(&buf[..n]).await {
            tracing::debug!(%error, %client, "UDP send upstream failed");
        }
    }
    for (_, (_, task)) in sessions {
        task.abort();
    }
}

/// Sends the upstream's replies back to `client` until the session is idle.
async fn relay_replies(upstream: Arc<UdpSocket>, listener: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_SESSION_IDLE, upstream.recv(&mut buf)).await {
        if listener.send_to(&buf[..n], client).await.is_err() {
            break;
        }
    }
}
