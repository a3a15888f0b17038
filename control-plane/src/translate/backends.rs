//! backendRef → Service → EndpointSlices: resolves a reference (kind, ReferenceGrant, Service,
//! port) and produces the `Cluster` and `ClusterLoadAssignment` resources for it.
//!
//! EndpointSlices are read as Kubernetes defines them: the Service port is found by number, its
//! name selects the slice port of the same name, and only endpoints whose `ready` condition is not
//! false are used (first address of each endpoint).

use super::{
    inputs::{Inputs, Key},
    reference_grant,
    status::reason,
};
use k8s_openapi::api::core::v1::ServicePort;
use serval_common::{Resource, names, proto::config::v1 as pb};
use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

/// A backendRef with defaults applied.
#[derive(Clone, Debug)]
pub(super) struct BackendRef<'a> {
    pub(super) group: &'a str,
    pub(super) kind: &'a str,
    pub(super) name: &'a str,
    pub(super) namespace: &'a str,
    pub(super) port: Option<i32>,
}

impl<'a> BackendRef<'a> {
    /// A backendRef as written in a route in `route_ns`, with the defaults applied (core group,
    /// kind Service, the route's namespace).
    pub(super) fn with_defaults(
        (group, kind): (Option<&'a str>, Option<&'a str>),
        name: &'a str,
        namespace: Option<&'a str>,
        port: Option<i32>,
        route_ns: &'a str,
    ) -> Self {
        Self {
            group: group.unwrap_or_default(),
            kind: kind.unwrap_or("Service"),
            name,
            namespace: namespace.unwrap_or(route_ns),
            port,
        }
    }
}

/// Displays as `backendRef <namespace>/<name>`.
struct Named<'a, 'b>(&'a BackendRef<'b>);

impl std::fmt::Display for Named<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backendRef {}/{}", self.0.namespace, self.0.name)
    }
}

/// How the referring route reaches the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    /// HTTP over TCP; `h2_default`: HTTP/2 when the port has no appProtocol (GRPCRoute).
    Http {
        /// Speak HTTP/2 to ports without an appProtocol.
        h2_default: bool,
    },
    /// Raw TCP (TCPRoute).
    Tcp,
    /// UDP datagrams (UDPRoute): the Service port and the EndpointSlice ports must be UDP.
    Udp,
}

impl Transport {
    fn port_protocol(self) -> &'static str {
        if self == Self::Udp { "UDP" } else { "TCP" }
    }
}

/// Where resolving writes: the Cluster and ClusterLoadAssignment resources, and what a
/// route's translation read and used, so that it can be reused while those are unchanged
/// (`translate::incremental`).
#[derive(Debug)]
pub(super) struct Produced<'a> {
    /// Every resource of the translation.
    pub(super) resources: &'a mut super::Resources,
    /// The Services looked up, found or not (in the order looked up; repeats possible).
    pub(super) services: Vec<Key>,
    /// The Cluster and ClusterLoadAssignment names resolved.
    pub(super) names: Vec<String>,
}

impl<'a> Produced<'a> {
    /// Writes into `resources`.
    pub(super) fn new(resources: &'a mut super::Resources) -> Self {
        Self {
            resources,
            services: Vec::new(),
            names: Vec::new(),
        }
    }
}

/// Why a backendRef is invalid: (reason, message).
pub(super) type Invalid = (&'static str, String);

/// Resolves `backend` referenced from a `from_kind` in `from_ns`; on success adds the Cluster and
/// ClusterLoadAssignment to `resources` and returns the cluster name. With `h2_default` (GRPCRoute)
/// a port without an appProtocol is spoken to over HTTP/2; that cluster gets its own name
/// (`.../h2c`), as HTTPRoutes may use the same port over HTTP/1.1.
pub(super) fn resolve(
    inputs: &Inputs,
    from_kind: &str,
    transport: Transport,
    from_ns: &str,
    backend: &BackendRef<'_>,
    out: &mut Produced<'_>,
) -> Result<String, Invalid> {
    // Formatted only into error messages: resolving must not allocate on success.
    let what = Named(backend);
    if !(backend.group.is_empty() || backend.group == "core") || backend.kind != "Service" {
        return Err((
            reason::INVALID_KIND,
            format!(
                "{what}: kind {}/{} is not supported; use Service",
                backend.group, backend.kind
            ),
        ));
    }
    if backend.namespace != from_ns
        && !reference_grant::permits(
            inputs,
            from_kind,
            from_ns,
            "",
            "Service",
            backend.namespace,
            backend.name,
        )
    {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "{what}: no ReferenceGrant in namespace {:?} allows {from_kind}s from {from_ns:?} to use it",
                backend.namespace
            ),
        ));
    }
    let key = (backend.namespace.to_owned(), backend.name.to_owned());
    out.services.push(key.clone());
    let Some(service) = inputs.services.get(&key) else {
        return Err((
            reason::BACKEND_NOT_FOUND,
            format!("{what}: Service not found"),
        ));
    };
    let Some(port) = backend.port else {
        return Err((
            reason::UNSUPPORTED_VALUE,
            format!("{what}: port is required for a Service"),
        ));
    };
    let service_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| {
            ports.iter().find(|p| {
                p.port == port
                    && p.protocol.as_deref().unwrap_or("TCP") == transport.port_protocol()
            })
        });
    let (Some(service_port), Ok(port16)) = (service_port, u16::try_from(port)) else {
        return Err((
            reason::BACKEND_NOT_FOUND,
            format!(
                "{what}: Service has no {} port {port}",
                transport.port_protocol()
            ),
        ));
    };
    let forced_h2 =
        transport == (Transport::Http { h2_default: true }) && service_port.app_protocol.is_none();
    let protocol = match transport {
        _ if forced_h2 => Some(pb::UpstreamProtocol::H2c),
        Transport::Http { .. } => upstream_protocol(service_port),
        // L4 backends carry bytes, whatever the appProtocol says.
        Transport::Tcp | Transport::Udp => Some(pb::UpstreamProtocol::Unspecified),
    };
    let protocol = protocol.ok_or_else(|| {
        (
            reason::UNSUPPORTED_PROTOCOL,
            format!(
                "{what}: port {port} has appProtocol {:?}, which Serval cannot speak to a backend (supported: http, kubernetes.io/h2c, kubernetes.io/ws)",
                service_port.app_protocol.as_deref().unwrap_or_default()
            ),
        )
    })?;
    if service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err((
            reason::UNSUPPORTED_VALUE,
            format!("{what}: ExternalName Services are not supported"),
        ));
    }
    let mut cluster_name = names::cluster(backend.namespace, backend.name, port16);
    if forced_h2 {
        cluster_name.push_str("/h2c");
    }
    match transport {
        Transport::Tcp => cluster_name.push_str("/tcp"),
        Transport::Udp => cluster_name.push_str("/udp"),
        Transport::Http { .. } => {}
    }
    let mut load_assignment_name = names::load_assignment(backend.namespace, backend.name, port16);
    // UDP endpoints are other ports than the TCP ones of the same Service port number.
    if transport == Transport::Udp {
        load_assignment_name.push_str("/udp");
    }
    if !out.resources.contains_key(&cluster_name) {
        let cluster = pb::Cluster {
            name: cluster_name.clone(),
            load_assignment_name: load_assignment_name.clone(),
            service: format!("{}/{}", backend.namespace, backend.name),
            port: u32::from(port16),
            lb_policy: pb::LbPolicy::RoundRobin.into(),
            protocol: protocol.into(),
            connect_timeout: None,
        };
        let endpoints = endpoints(inputs, &key, service_port, transport.port_protocol());
        out.resources
            .insert(cluster_name.clone(), Arc::new(Resource::Cluster(cluster)));
        out.resources.insert(
            load_assignment_name.clone(),
            Arc::new(Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
                name: load_assignment_name.clone(),
                cluster_name: cluster_name.clone(),
                endpoints,
            })),
        );
    }
    out.names.push(cluster_name.clone());
    out.names.push(load_assignment_name);
    Ok(cluster_name)
}

/// The protocol for a Service port's `appProtocol` (GEP-1911); `None` when Serval cannot speak it.
/// WebSocket (`kubernetes.io/ws`) is HTTP/1.1 with an upgrade.
fn upstream_protocol(port: &ServicePort) -> Option<pb::UpstreamProtocol> {
    match port
        .app_protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "http" | "kubernetes.io/ws") => Some(pb::UpstreamProtocol::Http1),
        Some("kubernetes.io/h2c" | "h2c") => Some(pb::UpstreamProtocol::H2c),
        Some(_) => None,
    }
}

/// Ready endpoints of `service_port`, sorted by address, without duplicates.
fn endpoints(
    inputs: &Inputs,
    key: &(String, String),
    service_port: &ServicePort,
    protocol: &str,
) -> Vec<pb::Endpoint> {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let mut out: BTreeMap<(IpAddr, u16), pb::Endpoint> = BTreeMap::new();
    for slice in inputs
        .endpoint_slices
        .get(key)
        .into_iter()
        .flat_map(|s| s.values())
    {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == protocol)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok().filter(|p| *p != 0))
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let hostname = endpoint
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .or_else(|| endpoint.hostname.clone())
                .unwrap_or_default();
            out.entry((ip, port)).or_insert(pb::Endpoint {
                address: Some(pb::SocketAddress {
                    ip: ip.to_string(),
                    port: u32::from(port),
                }),
                hostname,
                zone: endpoint.zone.clone().unwrap_or_default(),
            });
        }
    }
    out.into_values().collect()
}
