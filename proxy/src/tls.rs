//! HTTPS termination: the server side of TLS on an HTTPS socket.
//!
//! - [`certified_key`] compiles a `Secret` resource into a rustls key (the checks are
//!   `serval_common::tls::serving`'s, so the proxy agrees with the control plane).
//! - [`SniResolver`] picks the certificate for each handshake by the client's SNI among the
//!   Gateway listeners on the socket: an exact hostname first, then the most specific wildcard
//!   (`*.example.com` covers one or more labels), then `*` (a listener without hostname, which
//!   also serves clients that send no SNI). Among a listener's certificates it presents the first
//!   whose key can sign with a scheme the client offers (RSA and ECDSA side by side). A name no
//!   listener covers fails the handshake.
//! - [`server_config`] makes the rustls configuration of one socket: TLS 1.2 and 1.3, ALPN `h2`
//!   and `http/1.1`, session tickets and a session cache shared by every configuration version
//!   (a configuration change does not end resumption).
//!
//! The handshake itself runs in `listeners`, per connection, with the configuration current when
//! the connection was accepted.

use crate::config::compile::{CompileError, invalid};
use rustls::{
    ServerConfig,
    server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions},
    sign::CertifiedKey,
};
use serval_common::{hostname, proto::config::v1 as pb, tls::serving};
use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

/// ALPN protocols offered on HTTPS sockets, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Sessions remembered for resumption by session id (TLS 1.2) per process.
const SESSION_CACHE_SIZE: usize = 4096;

/// A compiled `Secret` (`tls_certificate`).
pub fn certified_key(secret: &pb::Secret) -> Result<Arc<CertifiedKey>, CompileError> {
    let Some(pb::secret::Kind::TlsCertificate(tls)) = &secret.kind else {
        return Err(invalid(
            &secret.name,
            "tls_certificate",
            "must be set: only certificate Secrets are served",
        ));
    };
    serving::certified_key(&tls.certificate_chain, &tls.private_key)
        .map(Arc::new)
        .map_err(|e| {
            invalid(
                &secret.name,
                format!("tls_certificate.{}", e.field),
                e.reason,
            )
        })
}

/// The certificates of one HTTPS socket by SNI pattern.
#[derive(Debug, Default)]
pub struct SniResolver {
    /// Pattern (exact, `*.suffix` or `*`) → certificates in preference order.
    by_pattern: BTreeMap<String, Vec<Arc<CertifiedKey>>>,
}

impl SniResolver {
    /// Adds the certificates of a listener serving `pattern`; a pattern defined already (by
    /// another Listener resource on the socket) keeps its first definition.
    pub fn add(&mut self, pattern: &str, certificates: Vec<Arc<CertifiedKey>>) {
        if !certificates.is_empty() {
            self.by_pattern
                .entry(pattern.to_ascii_lowercase())
                .or_insert(certificates);
        }
    }

    /// True if no listener has a certificate.
    pub fn is_empty(&self) -> bool {
        self.by_pattern.is_empty()
    }

    /// The certificates for a client asking for `server_name` (`None`: no SNI), most specific
    /// pattern first.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<&[Arc<CertifiedKey>]> {
        let Some(name) = server_name else {
            return self.by_pattern.get("*").map(Vec::as_slice);
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        hostname::covering_patterns(&name)
            .iter()
            .find_map(|p| self.by_pattern.get(p))
            .map(Vec::as_slice)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let candidates = self.lookup(hello.server_name())?;
        let offered = hello.signature_schemes();
        candidates
            .iter()
            .find(|c| c.key.choose_scheme(offered).is_some())
            .or_else(|| candidates.first())
            .cloned()
    }
}

/// The rustls server configuration of an HTTPS socket.
pub fn server_config(resolver: SniResolver) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    let (sessions, ticketer) = shared_resumption();
    config.session_storage = Arc::clone(sessions);
    if let Some(ticketer) = ticketer {
        config.ticketer = Arc::clone(ticketer);
    }
    Ok(Arc::new(config))
}

/// A session cache and a ticketer (`None` if it cannot be made: then only session ids resume).
type Resumption = (
    Arc<dyn StoresServerSessions>,
    Option<Arc<dyn ProducesTickets>>,
);

/// The process's [`Resumption`], shared by every configuration version.
fn shared_resumption() -> &'static Resumption {
    static SHARED: OnceLock<Resumption> = OnceLock::new();
    SHARED.get_or_init(|| {
        let sessions: Arc<dyn StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .inspect_err(|error| tracing::warn!(%error, "no TLS session tickets"))
            .ok();
        (sessions, ticketer)
    })
}

#[cfg(test)]
mod tests;
