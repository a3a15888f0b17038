//! How the proxy reaches the delta server: plaintext (`--xds-plaintext`) or mutual TLS
//! (`--xds-cert`, `--xds-key`, `--xds-ca`). The TLS files are read again at every connection, so
//! rotated certificates are used from the next reconnect on without a restart.

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serval_common::tls::{self, TlsFiles};
use std::sync::Arc;
use tonic::transport::{Channel, Endpoint, Uri};

/// Plaintext or mutual TLS to `host:port`.
#[derive(Clone, Debug)]
pub enum Connector {
    /// `http://host:port`.
    Plaintext {
        /// The URL.
        url: String,
    },
    /// `https://host:port`, verified against the CA, presenting our certificate.
    Tls {
        /// `host:port`.
        authority: String,
        /// The name the server's certificate must carry (the URL's host unless overridden).
        server_name: String,
        /// The files.
        files: TlsFiles,
    },
}

impl Connector {
    /// The URI tonic's endpoint is built from (TLS is done by [`Connector::connect`], so the
    /// scheme stays `http`).
    pub fn endpoint_uri(&self) -> String {
        match self {
            Self::Plaintext { url } => url.clone(),
            Self::Tls { authority, .. } => format!("http://{authority}"),
        }
    }

    /// Connects `endpoint`.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        match self {
            Self::Plaintext { .. } => endpoint.connect().await,
            Self::Tls {
                server_name, files, ..
            } => {
                let (files, server_name) = (files.clone(), server_name.clone());
                let connector = tower::service_fn(move |uri: Uri| {
                    let (files, server_name) = (files.clone(), server_name.clone());
                    async move { connect_tls(uri, &files, server_name).await }
                });
                endpoint.connect_with_connector(connector).await
            }
        }
    }
}

async fn connect_tls(
    uri: Uri,
    files: &TlsFiles,
    server_name: String,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, std::io::Error> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let config = tls::client_config(files).map_err(|e| invalid(e.to_string()))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(format!("{uri}: no host")))?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.clone())
        .map_err(|e| invalid(format!("server name {server_name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(stream))
}
