//! Mutual TLS on the delta server's port: the TLS handshake for every accepted connection (client
//! certificate required, verified against `--xds-ca`), the peer's [`Identity`] attached to every
//! request of that connection ([`PeerInfo`]), and the reload of the certificate, key and CA when
//! their files change (polled; a bad new file is logged and the old material kept).
//!
//! What an identity allows is decided in [`allowed`]; this module only establishes it.

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serval_common::{
    proto::discovery::v1::Node,
    tls::{self, Identity, TlsFiles},
};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Connected;

/// Handshakes in progress at once; more connections wait in the accept queue.
const HANDSHAKES: usize = 1024;
/// A handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS material, reloaded when its files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: arc_swap::ArcSwap<rustls::ServerConfig>,
    stamp: Mutex<Vec<Option<SystemTime>>>,
}

impl Reloading {
    /// Loads `files`; fails when they do not make a valid configuration.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, tls::TlsError> {
        let stamp = tls::modified(&files);
        let config = tls::server_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: arc_swap::ArcSwap::new(config),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Reloads when a file changed since the last look; returns whether new material is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = tls::modified(&self.files);
        if *self.stamp.lock() == now {
            return false;
        }
        *self.stamp.lock() = now;
        match tls::server_config(&self.files) {
            Ok(config) => {
                self.current.store(config);
                tracing::info!(cert = %self.files.cert.display(), "delta server TLS material reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "new delta server TLS material is invalid; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every `every` until the returned task is dropped or aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.reload_if_changed();
            }
        })
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// What the delta server knows about the peer of a TLS connection (in each request's extensions).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// What its certificate allows; `Err` says why it could not be read.
    pub identity: Arc<Result<Identity, String>>,
}

/// One accepted TLS connection.
#[derive(Debug)]
pub struct TlsConnection {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl TlsConnection {
    fn new(inner: TlsStream<TcpStream>) -> Self {
        let (tcp, session) = inner.get_ref();
        let identity = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map_or_else(
                || Err("no client certificate".to_owned()),
                |cert| Identity::from_certificate(cert),
            );
        let info = PeerInfo {
            remote_addr: tcp.peer_addr().ok(),
            identity: Arc::new(identity),
        };
        Self { inner, info }
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The TLS connections accepted on `listener`: handshakes run concurrently (at most
/// [`HANDSHAKES`], each within [`HANDSHAKE_TIMEOUT`]); failed ones are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    material: Arc<Reloading>,
) -> impl Stream<Item = Result<TlsConnection, std::io::Error>> {
    TcpListenerStream::new(listener)
        .filter_map(|accepted| async move {
            match accepted {
                Ok(tcp) => Some(tcp),
                Err(error) => {
                    // E.g. out of file descriptors: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    None
                }
            }
        })
        .map(move |tcp| {
            let acceptor = material.acceptor();
            async move {
                let peer = tcp.peer_addr().ok();
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => Some(TlsConnection::new(stream)),
                    Ok(Err(error)) => {
                        tracing::info!(?peer, %error, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::info!(?peer, "TLS handshake timed out");
                        None
                    }
                }
            }
        })
        .buffer_unordered(HANDSHAKES)
        .filter_map(|c| async move { c.map(Ok) })
}

/// Whether `identity` may ask for what `node` asks: the Gateways it names (each allowed by name, by
/// `*`, or by its class in `classes`), else every Gateway of its class, else every Gateway.
/// `Err` names what is not allowed.
pub fn allowed(
    identity: &Identity,
    node: &Node,
    classes: &BTreeMap<String, String>,
) -> Result<(), String> {
    if identity.all_gateways {
        return Ok(());
    }
    if !node.gateways.is_empty() {
        let denied: Vec<&str> = node
            .gateways
            .iter()
            .filter(|g| {
                !identity.gateways.contains(*g)
                    && !classes
                        .get(*g)
                        .is_some_and(|c| identity.gateway_classes.contains(c))
            })
            .map(String::as_str)
            .collect();
        return if denied.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the client certificate ({}) does not allow Gateway(s) {}",
                identity.subject,
                denied.join(", ")
            ))
        };
    }
    if !node.gateway_class.is_empty() && identity.gateway_classes.contains(&node.gateway_class) {
        return Ok(());
    }
    let asked = if node.gateway_class.is_empty() {
        "every Gateway".to_owned()
    } else {
        format!("every Gateway of class {}", node.gateway_class)
    };
    Err(format!(
        "the client certificate ({}) does not allow {asked}",
        identity.subject
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_material_is_loaded_when_the_files_change_and_bad_material_is_not() {
        let dir = std::env::temp_dir().join(format!("serval-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let request = |names: &[&str]| crate::certgen::Request {
            out_dir: dir.clone(),
            server_names: names.iter().map(|n| n.to_string()).collect(),
            proxy_name: "proxy".into(),
            proxy_gateways: vec![],
            proxy_gateway_classes: vec![],
            valid_days: 1,
            kubernetes_namespace: None,
        };
        crate::certgen::run(&request(&["a.example"])).expect("certs");
        let files = TlsFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            ca: dir.join("ca.crt"),
        };
        let material = Reloading::load(files).expect("loads");
        assert!(!material.reload_if_changed(), "nothing changed");
        let before = material.current.load_full();
        // Modification times have a granularity: make sure the new files look newer.
        std::thread::sleep(Duration::from_millis(1100));
        crate::certgen::run(&request(&["b.example"])).expect("new certs");
        assert!(material.reload_if_changed(), "new files are loaded");
        assert!(!Arc::ptr_eq(&before, &material.current.load_full()));
        let good = material.current.load_full();
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(dir.join("server.key"), "not a key").expect("write");
        assert!(!material.reload_if_changed(), "a bad key is refused");
        assert!(
            Arc::ptr_eq(&good, &material.current.load_full()),
            "the old material stays"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn node(gateways: &[&str], class: &str) -> Node {
        Node {
            id: "p".into(),
            gateways: gateways.iter().map(|g| g.to_string()).collect(),
            gateway_class: class.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_identity_allows_only_what_its_certificate_names() {
        let classes = BTreeMap::from([("ns/a".to_owned(), "serval".to_owned())]);
        let only_b = Identity {
            gateways: ["ns/b".to_owned()].into(),
            subject: "CN=p".into(),
            ..Identity::default()
        };
        assert!(allowed(&only_b, &node(&["ns/b"], ""), &classes).is_ok());
        let err = allowed(&only_b, &node(&["ns/a", "ns/b"], ""), &classes).expect_err("a");
        assert!(err.contains("ns/a") && !err.contains("ns/b"), "{err}");
        assert!(allowed(&only_b, &node(&[], ""), &classes).is_err(), "all");
        let class = Identity {
            gateway_classes: ["serval".to_owned()].into(),
            ..Identity::default()
        };
        assert!(allowed(&class, &node(&["ns/a"], ""), &classes).is_ok());
        assert!(allowed(&class, &node(&[], "serval"), &classes).is_ok());
        assert!(allowed(&class, &node(&[], "other"), &classes).is_err());
        assert!(allowed(&class, &node(&["ns/unknown"], ""), &classes).is_err());
        let all = Identity {
            all_gateways: true,
            ..Identity::default()
        };
        assert!(allowed(&all, &node(&[], ""), &classes).is_ok());
    }
}
