//! TCP and UDP proxying (TCPRoute, UDPRoute): each TCP connection, or each UDP client's flow of
//! datagrams, goes to one endpoint of a backend picked by weight, bytes copied both ways.
//!
//! UDP keeps one session per client address (at most [`MAX_UDP_SESSIONS`] per listener): an
//! upstream socket connected to the picked endpoint, whose replies are sent back to the client from
//! the listener's socket. A session ends after [`UDP_SESSION_IDLE`] without datagrams in either
//! direction, or when a new configuration no longer has its endpoint.

use crate::{config::ConfigStore, upstream::Cluster};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::net::{TcpStream, UdpSocket};

/// How long a UDP session lives without traffic.
pub const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);
/// Time allowed to connect to a TCP endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// UDP sessions per listener at most; datagrams of further clients are dropped.
pub const MAX_UDP_SESSIONS: usize = 1024;

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

/// One UDP client's flow.
struct Session {
    upstream: Arc<UdpSocket>,
    /// The backends the session was picked from, and what it picked.
    backends: Arc<L4Backends>,
    cluster: String,
    endpoint: SocketAddr,
    /// Milliseconds since `epoch` of the last datagram in either direction.
    last_seen: Arc<AtomicU64>,
    relay: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Whether `backends` (a newer configuration) still has this session's endpoint.
    fn still_valid(&self, backends: &Arc<L4Backends>) -> bool {
        Arc::ptr_eq(&self.backends, backends)
            || backends.cumulative.iter().any(|(_, c)| {
                c.as_ref().is_some_and(|c| {
                    c.name == self.cluster && c.endpoints.iter().any(|e| e.addr == self.endpoint)
                })
            })
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
    let epoch = Instant::now();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
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
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        sessions.retain(|_, s| !s.relay.is_finished());
        let config = store.load();
        let Some(backends) = config.udp.get(&addr).map(|l| Arc::clone(&l.backends)) else {
            continue;
        };
        // A session whose endpoint the configuration no longer has is ended, and re-picked.
        if sessions
            .get(&client)
            .is_some_and(|s| !s.still_valid(&backends))
            && let Some(s) = sessions.remove(&client)
        {
            s.relay.abort();
        }
        if !sessions.contains_key(&client) {
            if sessions.len() >= MAX_UDP_SESSIONS {
                tracing::debug!(%addr, %client, "UDP datagram dropped: too many sessions");
                continue;
            }
            let Some(session) = open_session(&socket, client, backends, now).await else {
                continue;
            };
            sessions.insert(client, session);
        }
        let Some(session) = sessions.get(&client) else {
            continue;
        };
        session.last_seen.store(now, Ordering::Relaxed);
        if let Err(error) = session.upstream.send(&buf[..n]).await {
            tracing::debug!(%error, %client, "UDP send upstream failed");
        }
    }
    for (_, s) in sessions {
        s.relay.abort();
    }
}

async fn open_session(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    backends: Arc<L4Backends>,
    now: u64,
) -> Option<Session> {
    let Some((cluster, endpoint)) = backends.pick() else {
        tracing::debug!(%client, "UDP datagram dropped: no usable backend");
        return None;
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
            return None;
        }
    };
    let last_seen = Arc::new(AtomicU64::new(now));
    let relay = tokio::spawn(relay_replies(
        Arc::clone(&upstream),
        Arc::clone(listener),
        client,
        Arc::clone(&last_seen),
    ));
    Some(Session {
        upstream,
        backends,
        cluster: cluster.name.clone(),
        endpoint,
        last_seen,
        relay,
    })
}

/// Sends the upstream's replies back to `client` until the session has been idle (no datagram
/// either way) for [`UDP_SESSION_IDLE`].
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    last_seen: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut seen_at_wait = last_seen.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(UDP_SESSION_IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if listener.send_to(&buf[..n], client).await.is_err() {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Err(_) => {
                // No reply for a whole idle period: the session ends unless the client spoke.
                let seen = last_seen.load(Ordering::Relaxed);
                if seen == seen_at_wait {
                    return;
                }
                seen_at_wait = seen;
            }
        }
    }
}
