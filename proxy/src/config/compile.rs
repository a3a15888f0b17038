//! `serval.config.v1` resources → a runtime [`Config`]: decode first (done by the caller), then
//! validate, then compile. Every error names the resource and the field.
//!
//! Consistency is checked here: every name a Listener, RouteConfig or Cluster refers to must be
//! held, so a configuration is applied whole or not at all.

use super::{Config, ListenerConfig, UdpListenerConfig};
use crate::{l4::L4Backends, tls};
use crate::{
    router::{
        Action, Backend, DirectResponse, Route, Router, Target, WeightedBackends,
        matching::{PathMatch, RouteMatch, ValueMatch},
    },
    upstream::{Cluster, Endpoint, Protocol, lb},
};
use bytes::Bytes;
use filters::At;
use serval_common::{Resource, proto::config::v1 as pb, validate};
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::AtomicUsize},
};

/// Why a set of resources cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// A resource refers to a name that is not held.
    #[error("{resource}: refers to {missing}, which was not received")]
    Missing {
        /// The referring resource.
        resource: String,
        /// The missing name.
        missing: String,
    },
    /// A resource's content is invalid.
    #[error("{resource}: {field}: {reason}")]
    Invalid {
        /// The resource.
        resource: String,
        /// The field, e.g. `virtual_hosts[0].routes[2].match.path.regex`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl CompileError {
    /// The resource at fault.
    pub fn resource(&self) -> &str {
        match self {
            Self::Missing { resource, .. } | Self::Invalid { resource, .. } => resource,
        }
    }
}

pub(crate) fn invalid(
    resource: &str,
    field: impl Into<String>,
    reason: impl Into<String>,
) -> CompileError {
    CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// A persistent (structurally shared) map by resource name: cloned in O(1), a changed copy
/// shares every unchanged entry with the original.
pub type Held<T> = imbl::OrdMap<String, T>;

/// Compiled Clusters by name.
pub type ClusterMap = Held<Arc<Cluster>>;

/// The compiled routes of one AttachedRoute.
#[derive(Debug)]
pub struct CompiledAttachedRoute {
    /// The AttachedRoute's version.
    pub version: String,
    /// Its routes, in resource order.
    pub routes: Arc<Vec<Arc<Route>>>,
    /// Each route's precedence, in the same order.
    pub keys: Vec<route_table::PrecedenceKey>,
    /// The Clusters they were compiled with.
    pub clusters: Vec<(String, Arc<Cluster>)>,
}

/// The compiled routes of each AttachedRoute, by name.
pub type CompiledRoutes = Held<Arc<CompiledAttachedRoute>>;

/// What one virtual host was built from: the RouteConfig's version, the listener owning the
/// host, and the compiled routes of each AttachedRoute serving it (with the index of the covering
/// hostname they serve it through), in the order they were gathered.
#[derive(Debug)]
pub struct HostInputs {
    /// Version of the RouteConfig.
    pub route_config_version: String,
    /// `section_name` of the owning listener.
    pub owner: String,
    /// (covering hostname index, compiled routes), compared by identity.
    pub routes: Vec<(usize, Arc<Vec<Arc<Route>>>)>,
}

impl PartialEq for HostInputs {
    fn eq(&self, other: &Self) -> bool {
        self.route_config_version == other.route_config_version
            && self.owner == other.owner
            && self.routes.len() == other.routes.len()
            && self
                .routes
                .iter()
                .zip(&other.routes)
                .all(|((i, a), (j, b))| i == j && Arc::ptr_eq(a, b))
    }
}

/// One virtual host with what it was built from.
#[derive(Debug)]
pub struct CompiledHost {
    /// Its inputs.
    pub inputs: HostInputs,
    /// The virtual host.
    pub host: Arc<crate::router::VirtualHost>,
}

/// The (AttachedRoute, listener `section_name`) pairs attached to one RouteConfig with one
/// hostname, sorted by AttachedRoute name (then in attachment order).
pub type AttachedWith = Arc<Vec<(String, String)>>;

/// One served RouteConfig: which AttachedRoutes join it with which hostname, and its virtual
/// hosts.
#[derive(Clone, Debug, Default)]
pub struct RouteConfigHosts {
    /// Hostname → what is attached with it.
    pub attached: Held<AttachedWith>,
    /// Host pattern → virtual host (patterns no listener owns have none).
    pub hosts: Held<Arc<CompiledHost>>,
}

/// Compiled clusters, routes and virtual hosts of one configuration, with the versions they were
/// compiled from and the indexes that let a delta be applied without recompiling the rest
/// (see `delta`).
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Every Cluster, compiled.
    pub clusters: ClusterMap,
    /// Cluster name → (its version, its assignment's version), empty when not sent.
    pub cluster_versions: Held<(String, String)>,
    /// ClusterLoadAssignment name → the Clusters using it.
    pub assignments: Held<imbl::OrdSet<String>>,
    /// AttachedRoute name → its compiled routes (those joining a served RouteConfig).
    pub routes: CompiledRoutes,
    /// Cluster name → the compiled AttachedRoutes using it.
    pub users: Held<imbl::OrdSet<String>>,
    /// RouteConfig name → its index and virtual hosts (RouteConfigs an HTTP listener serves).
    pub hosts: Held<RouteConfigHosts>,
    /// Secret name → (its version, its compiled key), for the Secrets HTTPS listeners use.
    pub secrets: Held<(String, Arc<rustls::sign::CertifiedKey>)>,
}

/// Adds `value` to the set at `key`.
pub(super) fn add_to(map: &mut Held<imbl::OrdSet<String>>, key: &str, value: &str) {
    let mut set = map.get(key).cloned().unwrap_or_default();
    if set.insert(value.to_owned()).is_none() {
        map.insert(key.to_owned(), set);
    }
}

/// Removes `value` from the set at `key` (and the key when the set is empty).
pub(super) fn remove_from(map: &mut Held<imbl::OrdSet<String>>, key: &str, value: &str) {
    let Some(mut set) = map.get(key).cloned() else {
        return;
    };
    if set.remove(value).is_some() {
        if set.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), set);
        }
    }
}

/// Compiles `resources`. `bind_ip` replaces every Listener's IP (`--bind-address`).
pub fn compile<R: Into<Arc<Resource>>>(
    version: String,
    resources: impl IntoIterator<Item = (String, R)>,
    versions: impl IntoIterator<Item = (String, String)>,
    bind_ip: Option<IpAddr>,
) -> Result<Config, CompileError> {
    let resources = resources
        .into_iter()
        .map(|(name, r)| (name, r.into()))
        .collect();
    compile_with(
        None,
        version,
        resources,
        versions.into_iter().collect(),
        bind_ip,
    )
}

/// Like [`compile`], reusing what `previous` compiled where the versions the control plane sent
/// are unchanged: a Cluster whose version and assignment version are the same, and an
/// AttachedRoute whose version is the same and whose Clusters were all reused. [`delta::apply`]
/// is the faster way when only routes and endpoints changed; this one handles everything.
pub fn compile_with(
    previous: Option<&Compiled>,
    version: String,
    resources: Held<Arc<Resource>>,
    versions: Held<String>,
    bind_ip: Option<IpAddr>,
) -> Result<Config, CompileError> {
    let known = |name: &str| versions.get(name).filter(|v| !v.is_empty()).cloned();
    let mut compiled = Compiled::default();
    for resource in resources.values() {
        if let Resource::Cluster(c) = &**resource {
            let key = (known(&c.name), known(&c.load_assignment_name));
            let before = previous
                .and_then(|p| Some((p.cluster_versions.get(&c.name)?, p.clusters.get(&c.name)?)));
            let reused = match (&key, before) {
                ((Some(v), Some(cla)), Some(((pv, pcla), arc))) if v == pv && cla == pcla => {
                    Some(Arc::clone(arc))
                }
                _ => None,
            };
            let arc = match reused {
                Some(arc) => arc,
                None => Arc::new(cluster(c, &resources)?),
            };
            let (v, cla) = key;
            compiled.cluster_versions.insert(
                c.name.clone(),
                (v.unwrap_or_default(), cla.unwrap_or_default()),
            );
            add_to(&mut compiled.assignments, &c.load_assignment_name, &c.name);
            compiled.clusters.insert(c.name.clone(), arc);
        }
    }
    let mut routes = route_table::RouteCache::new(previous, &versions, &compiled.clusters);
    let route_configs: BTreeMap<&str, &pb::RouteConfig> = resources
        .values()
        .filter_map(|r| match &**r {
            Resource::RouteConfig(rc) => Some((rc.name.as_str(), rc)),
            _ => None,
        })
        .collect();
    let attached = route_table::index(
        resources.values().filter_map(|r| match &**r {
            Resource::AttachedRoute(ar) => Some(ar),
            _ => None,
        }),
        &route_configs,
    )?;
    // Sockets, each with the Listener resources bound to it (by name, so the first name wins a
    // host pattern that two of them define).
    let mut sockets: BTreeMap<SocketAddr, Vec<&pb::Listener>> = BTreeMap::new();
    let mut udp_sockets: BTreeMap<SocketAddr, Vec<&pb::Listener>> = BTreeMap::new();
    for resource in resources.values() {
        if let Resource::Listener(l) = &**resource {
            let addr = listener_addr(l, bind_ip)?;
            if matches!(l.protocol, Some(pb::listener::Protocol::Udp(_))) {
                udp_sockets.entry(addr).or_default().push(l);
            } else {
                sockets.entry(addr).or_default().push(l);
            }
        }
    }
    let mut listeners = BTreeMap::new();
    for (addr, ls) in sockets {
        let mut router = Router::default();
        let mut names = Vec::new();
        let mut tcp = None;
        // HTTPS: the certificates of every Listener on the socket; plain HTTP seen too.
        let mut https: Option<tls::SniResolver> = None;
        let mut plain_http = false;
        for l in ls {
            names.push(l.name.clone());
            match &l.protocol {
                None => return Err(invalid(&l.name, "protocol", "must be set")),
                Some(pb::listener::Protocol::Udp(_)) => {}
                Some(pb::listener::Protocol::Tcp(l4)) => {
                    // Two TCP proxies on one socket (shared addresses): the first name wins.
                    if tcp.is_none() {
                        tcp = Some(Arc::new(l4_backends(&l.name, l4, &compiled.clusters)?));
                    }
                }
                Some(pb::listener::Protocol::Http(http)) => {
                    let Some(Resource::RouteConfig(rc)) =
                        resources.get(&http.route_config_name).map(|r| &**r)
                    else {
                        return Err(CompileError::Missing {
                            resource: l.name.clone(),
                            missing: http.route_config_name.clone(),
                        });
                    };
                    let attached = attached
                        .get(rc.name.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    route_table::add(&mut router, rc, attached, &mut routes)?;
                    match &http.tls {
                        None => plain_http = true,
                        Some(termination) => {
                            let resolver = https.get_or_insert_with(Default::default);
                            for (i, sni) in termination.certificates.iter().enumerate() {
                                let mut keys = Vec::with_capacity(sni.secrets.len());
                                for secret in &sni.secrets {
                                    keys.push(secret_key(
                                        (&l.name, i),
                                        secret,
                                        (&resources, &versions),
                                        previous,
                                        &mut compiled.secrets,
                                    )?);
                                }
                                resolver.add(&sni.hostname, keys);
                            }
                        }
                    }
                }
            }
        }
        if https.is_some() && (plain_http || tcp.is_some()) {
            return Err(invalid(
                &names.join(", "),
                "protocol",
                format!("{addr} is both an HTTPS and an HTTP or TCP listener"),
            ));
        }
        let tls = match https {
            None => None,
            Some(resolver) => Some(tls::server_config(resolver).map_err(|e| {
                invalid(
                    &names.join(", "),
                    "http.tls",
                    format!("TLS configuration: {e}"),
                )
            })?),
        };
        if tcp.is_some() && !router.hosts.is_empty() {
            return Err(invalid(
                &names.join(", "),
                "protocol",
                format!("{addr} is both an HTTP and a TCP listener"),
            ));
        }
        listeners.insert(
            addr,
            ListenerConfig {
                names,
                router,
                tcp,
                tls,
            },
        );
    }
    let mut udp = BTreeMap::new();
    for (addr, ls) in udp_sockets {
        let names: Vec<String> = ls.iter().map(|l| l.name.clone()).collect();
        let Some(pb::listener::Protocol::Udp(l4)) = &ls[0].protocol else {
            continue;
        };
        let backends = Arc::new(l4_backends(&ls[0].name, l4, &compiled.clusters)?);
        udp.insert(addr, UdpListenerConfig { names, backends });
    }
    (compiled.routes, compiled.hosts) = routes.into_compiled();
    for (name, route) in &compiled.routes {
        for (cluster, _) in &route.clusters {
            add_to(&mut compiled.users, cluster, name);
        }
    }
    Ok(Config {
        version,
        resources,
        versions,
        listeners,
        udp,
        compiled,
    })
}

/// The compiled key of the Secret `name` that certificate entry `i` of Listener `listener`
/// names: reused from `previous` when its version is unchanged, recorded in `secrets`.
fn secret_key(
    (listener, i): (&str, usize),
    name: &str,
    (resources, versions): (&Held<Arc<Resource>>, &Held<String>),
    previous: Option<&Compiled>,
    secrets: &mut Held<(String, Arc<rustls::sign::CertifiedKey>)>,
) -> Result<Arc<rustls::sign::CertifiedKey>, CompileError> {
    let version = versions.get(name).cloned().unwrap_or_default();
    // Compiled already for another listener of this configuration.
    if let Some((_, key)) = secrets.get(name) {
        return Ok(Arc::clone(key));
    }
    let reused = previous
        .and_then(|p| p.secrets.get(name))
        .filter(|(v, _)| !version.is_empty() && *v == version)
        .map(|(_, key)| Arc::clone(key));
    let key = match reused {
        Some(key) => key,
        None => {
            let Some(Resource::Secret(secret)) = resources.get(name).map(|r| &**r) else {
                return Err(CompileError::Missing {
                    resource: format!("{listener} (http.tls.certificates[{i}])"),
                    missing: name.to_owned(),
                });
            };
            tls::certified_key(secret)?
        }
    };
    secrets.insert(name.to_owned(), (version, Arc::clone(&key)));
    Ok(key)
}

fn l4_backends(
    resource: &str,
    l4: &pb::L4Listener,
    clusters: &ClusterMap,
) -> Result<L4Backends, CompileError> {
    let mut out = L4Backends::default();
    for backend in &l4.backends {
        let cluster = if backend.cluster.is_empty() {
            None
        } else {
            Some(Arc::clone(clusters.get(&backend.cluster).ok_or_else(
                || CompileError::Missing {
                    resource: resource.to_owned(),
                    missing: backend.cluster.clone(),
                },
            )?))
        };
        if backend.weight == 0 {
            continue;
        }
        out.total += u64::from(backend.weight);
        out.cumulative.push((out.total, cluster));
    }
    Ok(out)
}

fn listener_addr(l: &pb::Listener, bind_ip: Option<IpAddr>) -> Result<SocketAddr, CompileError> {
    let Some(address) = &l.address else {
        return Err(invalid(&l.name, "address", "must be set"));
    };
    let ip: IpAddr = address.ip.parse().map_err(|_| {
        invalid(
            &l.name,
            "address.ip",
            format!("{:?} is not an IP address", address.ip),
        )
    })?;
    let port = u16::try_from(address.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            invalid(
                &l.name,
                "address.port",
                format!("{} is not a port", address.port),
            )
        })?;
    Ok(SocketAddr::new(bind_ip.unwrap_or(ip), port))
}

pub(super) fn cluster(
    c: &pb::Cluster,
    resources: &Held<Arc<Resource>>,
) -> Result<Cluster, CompileError> {
    let Some(Resource::ClusterLoadAssignment(cla)) =
        resources.get(&c.load_assignment_name).map(|r| &**r)
    else {
        return Err(CompileError::Missing {
            resource: c.name.clone(),
            missing: c.load_assignment_name.clone(),
        });
    };
    let mut endpoints = Vec::with_capacity(cla.endpoints.len());
    for (i, e) in cla.endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}].address");
        let address = e
            .address
            .as_ref()
            .ok_or_else(|| invalid(&cla.name, &field, "must be set"))?;
        let ip: IpAddr = address.ip.parse().map_err(|_| {
            invalid(
                &cla.name,
                &field,
                format!("{:?} is not an IP address", address.ip),
            )
        })?;
        let port = u16::try_from(address.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(&cla.name, &field, format!("{} is not a port", address.port)))?;
        endpoints.push(Endpoint {
            addr: SocketAddr::new(ip, port),
            hostname: e.hostname.clone(),
        });
    }
    let protocol = match pb::UpstreamProtocol::try_from(c.protocol) {
        Ok(pb::UpstreamProtocol::H2c) => Protocol::H2c,
        Ok(_) => Protocol::Http1,
        Err(_) => {
            return Err(invalid(
                &c.name,
                "protocol",
                format!("unknown value {}", c.protocol),
            ));
        }
    };
    let lb = match pb::LbPolicy::try_from(c.lb_policy) {
        Ok(pb::LbPolicy::Random) => lb::Policy::Random,
        Ok(_) => lb::Policy::RoundRobin,
        Err(_) => {
            return Err(invalid(
                &c.name,
                "lb_policy",
                format!("unknown value {}", c.lb_policy),
            ));
        }
    };
    Ok(Cluster {
        backend: Arc::from(format!("{}:{}", c.service, c.port)),
        name: c.name.clone(),
        service: c.service.clone(),
        protocol,
        endpoints,
        lb,
        cursor: AtomicUsize::new(0),
    })
}

pub(super) fn compile_route(
    resource: &str,
    field: &str,
    route: &pb::Route,
    clusters: &ClusterMap,
) -> Result<Route, CompileError> {
    let matcher = compile_match(resource, &format!("{field}.match"), route.r#match.as_ref())?;
    let at = At {
        resource,
        field: field.to_owned(),
    };
    let action = match &route.action {
        None => return Err(invalid(resource, format!("{field}.action"), "must be set")),
        Some(pb::route::Action::DirectResponse(d)) => {
            Action::Direct(direct(resource, &format!("{field}.direct_response"), d)?)
        }
        Some(pb::route::Action::Redirect(r)) => {
            Action::Redirect(filters::redirect(&at, "redirect", r)?)
        }
        Some(pb::route::Action::Route(a)) => {
            let mut cumulative = Vec::with_capacity(a.backends.len());
            let mut total = 0u64;
            for (b, backend) in a.backends.iter().enumerate() {
                let bfield = format!("route.backends[{b}]");
                let target = match &backend.target {
                    None => {
                        return Err(invalid(
                            resource,
                            format!("{field}.{bfield}"),
                            "target must be set",
                        ));
                    }
                    Some(pb::weighted_backend::Target::Cluster(name)) => {
                        let cluster = clusters.get(name).ok_or_else(|| CompileError::Missing {
                            resource: resource.to_owned(),
                            missing: name.clone(),
                        })?;
                        Target::Cluster(Arc::clone(cluster))
                    }
                    Some(pb::weighted_backend::Target::DirectResponse(d)) => Target::Direct(
                        direct(resource, &format!("{field}.{bfield}.direct_response"), d)?,
                    ),
                    Some(pb::weighted_backend::Target::Redirect(r)) => {
                        Target::Redirect(filters::redirect(&at, &format!("{bfield}.redirect"), r)?)
                    }
                };
                let backend_at = At {
                    resource,
                    field: format!("{field}.{bfield}.filters"),
                };
                let backend_filters =
                    filters::filters(&backend_at, backend.filters.as_ref(), clusters)?;
                if backend.weight == 0 {
                    continue;
                }
                total += u64::from(backend.weight);
                cumulative.push((
                    total,
                    Backend {
                        target,
                        filters: backend_filters,
                    },
                ));
            }
            Action::Forward(WeightedBackends { cumulative, total })
        }
    };
    let filter_at = At {
        resource,
        field: format!("{field}.filters"),
    };
    let gateway: Arc<str> =
        Arc::from(serval_common::names::gateway_of_attached_route(resource).unwrap_or_default());
    Ok(Route {
        name: route.name.clone(),
        stats: Arc::new(crate::metrics::requests::RouteStats::new(
            crate::metrics::requests::RouteId::new(
                &route.name,
                Arc::clone(&gateway),
                &route.rule_name,
            ),
        )),
        gateway,
        matcher,
        filters: filters::filters(&filter_at, route.filters.as_ref(), clusters)?,
        timeouts: filters::timeouts(&at, route.timeouts.as_ref())?,
        retry: filters::retry(&at, route.retry.as_ref())?,
        action,
    })
}

fn direct(
    resource: &str,
    field: &str,
    d: &pb::DirectResponse,
) -> Result<DirectResponse, CompileError> {
    let status = u16::try_from(d.status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            invalid(
                resource,
                format!("{field}.status"),
                format!("{} is not an HTTP status", d.status),
            )
        })?;
    Ok(DirectResponse {
        status,
        body: Bytes::from(d.body.clone()),
    })
}

fn compile_match(
    resource: &str,
    field: &str,
    m: Option<&pb::RouteMatch>,
) -> Result<RouteMatch, CompileError> {
    let Some(m) = m else {
        return Ok(RouteMatch::default());
    };
    let regex = |f: String, pattern: &str| {
        validate::whole_value_regex(pattern).map_err(|e| invalid(resource, f, e))
    };
    let path = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
        None => None,
        Some(pb::path_match::Kind::Exact(v)) if v.starts_with('/') => {
            Some(PathMatch::Exact(v.clone()))
        }
        Some(pb::path_match::Kind::Prefix(v)) if v.starts_with('/') => Some(PathMatch::prefix(v)),
        Some(pb::path_match::Kind::Exact(v) | pb::path_match::Kind::Prefix(v)) => {
            return Err(invalid(
                resource,
                format!("{field}.path"),
                format!("{v:?} must start with \"/\""),
            ));
        }
        Some(pb::path_match::Kind::Regex(v)) => {
            Some(PathMatch::Regex(regex(format!("{field}.path.regex"), v)?))
        }
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.iter().enumerate() {
        let f = format!("{field}.headers[{i}]");
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            invalid(
                resource,
                format!("{f}.name"),
                format!("{:?} is not a header name", h.name),
            )
        })?;
        headers.push((
            name,
            value_match(
                resource,
                &f,
                h.kind.as_ref().map(|k| match k {
                    pb::header_match::Kind::Exact(v) => (false, v.as_str()),
                    pb::header_match::Kind::Regex(v) => (true, v.as_str()),
                }),
            )?,
        ));
    }
    let mut query_params = Vec::with_capacity(m.query_params.len());
    for (i, q) in m.query_params.iter().enumerate() {
        let f = format!("{field}.query_params[{i}]");
        query_params.push((
            q.name.clone(),
            value_match(
                resource,
                &f,
                q.kind.as_ref().map(|k| match k {
                    pb::query_param_match::Kind::Exact(v) => (false, v.as_str()),
                    pb::query_param_match::Kind::Regex(v) => (true, v.as_str()),
                }),
            )?,
        ));
    }
    let method = if m.method.is_empty() {
        None
    } else {
        Some(http::Method::from_bytes(m.method.as_bytes()).map_err(|_| {
            invalid(
                resource,
                format!("{field}.method"),
                format!("{:?} is not a method", m.method),
            )
        })?)
    };
    Ok(RouteMatch {
        path,
        headers,
        query_params,
        method,
    })
}

fn value_match(
    resource: &str,
    field: &str,
    kind: Option<(bool, &str)>,
) -> Result<ValueMatch, CompileError> {
    match kind {
        None => Err(invalid(resource, format!("{field}.kind"), "must be set")),
        Some((false, v)) => Ok(ValueMatch::Exact(v.to_owned())),
        Some((true, v)) => validate::whole_value_regex(v)
            .map(ValueMatch::Regex)
            .map_err(|e| invalid(resource, format!("{field}.regex"), e)),
    }
}

pub mod delta;
mod filters;
mod route_table;

pub use route_table::PrecedenceKey;
#[cfg(test)]
mod tests;
