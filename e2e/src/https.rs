//! HTTPS for tests: self-signed certificates as TLS Secrets (YAML), and a client that opens one TLS
//! connection with a chosen SNI, verifies the server against given roots, and reports the
//! certificate it was shown and the protocol ALPN agreed, then sends requests over it (HTTP/2 when
//! `h2` was agreed, else HTTP/1.1 keep-alive).

use crate::harness::Reply;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// A self-signed certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// DER of the certificate (what a client is shown).
    pub der: Vec<u8>,
}

impl Certificate {
    /// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[&str]) -> Self {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).expect("names");
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// YAML of a `kubernetes.io/tls` Secret `namespace/name` holding this certificate.
    pub fn secret_yaml(&self, namespace: &str, name: &str) -> String {
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&self.cert_pem),
            indent(&self.key_pem)
        )
    }
}

/// Opens TLS connections trusting some roots and offering some ALPN protocols.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts `roots` (PEM certificates) and offers `alpn`.
    pub fn trusting(roots: &[&Certificate], alpn: &[&[u8]]) -> Self {
        let mut store = RootCertStore::empty();
        for root in roots {
            let der = CertificateDer::from_pem_slice(root.cert_pem.as_bytes()).expect("PEM");
            store.add(der).expect("a usable root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Self {
            config: Arc::new(config),
        }
    }

    /// Connects to `addr` and handshakes for `server_name` (a DNS name is sent as SNI, an IP
    /// address is not), verifying the server's certificate for that name.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<HttpsConnection, String> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {addr} as {server_name}: {e}"))
        };
        let stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "handshake timed out".to_owned())??;
        let (_, session) = stream.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            (
                Sender::H2(sender),
                tokio::spawn(async move { drop(conn.await) }),
            )
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            (
                Sender::H1(sender),
                tokio::spawn(async move { drop(conn.await) }),
            )
        };
        Ok(HttpsConnection {
            leaf,
            alpn,
            sender,
            driver,
        })
    }

    /// One GET over a new connection.
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        host: &str,
        path: &str,
    ) -> Result<(HttpsConnection, Reply), String> {
        let mut conn = self.connect(addr, server_name).await?;
        let reply = conn.get(host, path).await?;
        Ok((conn, reply))
    }
}

#[derive(Debug)]
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One open TLS connection.
#[derive(Debug)]
pub struct HttpsConnection {
    /// DER of the certificate the server presented.
    pub leaf: Vec<u8>,
    /// The protocol ALPN agreed, if any.
    pub alpn: Option<Vec<u8>>,
    sender: Sender,
    driver: tokio::task::JoinHandle<()>,
}

impl HttpsConnection {
    /// GET `https://host{path}` on this connection.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, String> {
        let send = async {
            match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    let req = Request::get(path)
                        .header(http::header::HOST, host)
                        .body(Full::new(Bytes::new()))
                        .map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| e.to_string())
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    let req = Request::get(format!("https://{host}{path}"))
                        .body(Full::new(Bytes::new()))
                        .map_err(|e| e.to_string())?;
                    s.send_request(req).await.map_err(|e| e.to_string())
                }
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(5), send)
            .await
            .map_err(|_| "timed out".to_owned())??;
        crate::harness::into_reply(resp).await
    }
}

impl Drop for HttpsConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
