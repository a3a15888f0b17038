//! Mutual TLS for the delta protocol (rustls with ring): loading the certificate, key and CA files
//! both sides name with `--xds-cert`, `--xds-key` and `--xds-ca`, building the server and client
//! configurations (TLS 1.2+, ALPN `h2`, client certificates required and verified against the CA),
//! and reading a peer's [`Identity`] from its certificate.
//!
//! An identity is carried in URI subject alternative names that `serval-control-plane certgen`
//! writes:
//! - `urn:serval:gateway:NAMESPACE/NAME`: a proxy that may serve this Gateway;
//! - `urn:serval:gateway:*`: a proxy that may serve every Gateway;
//! - `urn:serval:gatewayclass:NAME`: a proxy that may serve every Gateway of this class;
//! - `urn:serval:admin`: an operator who may use the admin service (`proxy-status`).
//!
//! This module does not decide what an identity allows; the delta server does. Certificates of
//! HTTPS listeners are in [`serving`].

pub mod serving;

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::{CryptoProvider, ring},
    server::WebPkiClientVerifier,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

/// URI SAN prefix of a Gateway a certificate allows.
pub const GATEWAY_URI: &str = "urn:serval:gateway:";
/// URI SAN prefix of a GatewayClass a certificate allows.
pub const GATEWAY_CLASS_URI: &str = "urn:serval:gatewayclass:";
/// URI SAN of an operator allowed to use the admin service.
pub const ADMIN_URI: &str = "urn:serval:admin";

/// The three files of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s) the peer's certificate must chain to.
    pub ca: PathBuf,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the expected kind.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built from the CA.
    #[error("--xds-ca: {0}")]
    Verifier(String),
}

/// What a peer's certificate allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Gateways (`namespace/name`) it may serve.
    pub gateways: BTreeSet<String>,
    /// It may serve every Gateway.
    pub all_gateways: bool,
    /// GatewayClasses whose Gateways it may serve.
    pub gateway_classes: BTreeSet<String>,
    /// It may use the admin service.
    pub admin: bool,
    /// The certificate's subject, for logs.
    pub subject: String,
}

impl Identity {
    /// Reads the identity from a DER certificate's URI SANs.
    pub fn from_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut identity = Self {
            subject: cert.subject().to_string(),
            ..Self::default()
        };
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| format!("subjectAltName: {e}"))?;
        for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
            let x509_parser::extensions::GeneralName::URI(uri) = name else {
                continue;
            };
            if *uri == ADMIN_URI {
                identity.admin = true;
            } else if let Some(g) = uri.strip_prefix(GATEWAY_URI) {
                if g == "*" {
                    identity.all_gateways = true;
                } else {
                    identity.gateways.insert(g.to_owned());
                }
            } else if let Some(c) = uri.strip_prefix(GATEWAY_CLASS_URI) {
                identity.gateway_classes.insert(c.to_owned());
            }
        }
        Ok(identity)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        flag,
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no CERTIFICATE in the file".to_owned()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let error = |reason: String| TlsError::File {
        flag: "--xds-key",
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| error(format!("no private key: {e}")))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates("--xds-ca", path)? {
        store.add(cert).map_err(|e| TlsError::File {
            flag: "--xds-ca",
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// The server side: presents `files.cert`, requires a client certificate chaining to `files.ca`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates("--xds-cert", &files.cert)?,
            private_key(&files.key)?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: verifies the server against `files.ca`, presents `files.cert`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(
            certificates("--xds-cert", &files.cert)?,
            private_key(&files.key)?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// When each file last changed (to notice rotations).
pub fn modified(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.cert, &files.key, &files.ca]
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}
