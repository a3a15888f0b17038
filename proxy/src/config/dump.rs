//! The `GET /config_dump` view: the applied version and every held resource as proto3 JSON
//! (private keys redacted).

use super::Config;
use serde::Serialize;

/// What `/config_dump` returns.
#[derive(Debug, Serialize)]
pub struct Dump {
    /// The applied `system_version_info`.
    pub version: String,
    /// Bound sockets and the Listener resources on each.
    pub sockets: Vec<DumpSocket>,
    /// Every resource, sorted by name.
    pub resources: Vec<DumpResource>,
}

/// One bound socket.
#[derive(Debug, Serialize)]
pub struct DumpSocket {
    /// `ip:port`.
    pub address: String,
    /// Listener resources served there.
    pub listeners: Vec<String>,
    /// TLS is terminated there (HTTPS).
    pub tls: bool,
}

/// One resource.
#[derive(Debug, Serialize)]
pub struct DumpResource {
    /// Name.
    pub name: String,
    /// Kind (message name).
    pub kind: String,
    /// Version sent by the control plane.
    pub version: String,
    /// Payload as proto3 JSON.
    pub resource: serde_json::Value,
}

impl Dump {
    /// The dump of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            version: config.version.clone(),
            sockets: config
                .listeners
                .iter()
                .map(|(addr, l)| DumpSocket {
                    address: addr.to_string(),
                    listeners: l.names.clone(),
                    tls: l.tls.is_some(),
                })
                .collect(),
            resources: config
                .resources
                .iter()
                .map(|(name, r)| DumpResource {
                    name: name.clone(),
                    kind: r.kind().to_string(),
                    version: config.versions.get(name).cloned().unwrap_or_default(),
                    resource: r.to_json(),
                })
                .collect(),
        }
    }
}
