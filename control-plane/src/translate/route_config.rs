//! Listeners, RouteConfigs and AttachedRoutes: one `Listener` and one `RouteConfig` per Gateway
//! port (naming the programmed listeners on it with their hostnames; on an HTTPS port the
//! Listener also names each listener's certificates, whose `Secret` resources are added here, so
//! only Secrets a served listener uses exist), and one `AttachedRoute` per
//! route and Gateway (its matches with their precedence, and the listeners and hostnames they are
//! reachable through).
//!
//! Routes are separate resources so that changing one route sends only that route: the proxy
//! assembles the virtual hosts of a port from its RouteConfig and the AttachedRoutes that join it
//! (`serval-proxy`, `config::compile::route_table`). This module decides nothing about order
//! between routes; it only carries each match's precedence.
//!
//! In an incremental translation ([`super::Incremental`]) an AttachedRoute whose entries are the
//! same (by identity: the route's translation was reused) as last time is the same resource.

use super::{
    gateway::GatewayModel,
    http_route::{RouteEntry, RouteOwner},
};
use serval_common::{Resource, names, proto::config::v1 as pb};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

/// The AttachedRoutes of the previous translation, by Gateway and route, with the entries each
/// was built from.
#[derive(Debug, Default)]
pub(super) struct Built {
    /// Hashed: only looked up, never iterated, so its order cannot reach the output. The owner is
    /// held in the value, so the address in the key is never reused while it is a key.
    routes: HashMap<OwnerKey, BuiltRoute>,
}

/// One AttachedRoute as built.
#[derive(Debug)]
struct BuiltRoute {
    /// Keeps the owner (and so the address in its key) alive.
    _owner: Arc<RouteOwner>,
    /// The entries it was built from.
    entries: Vec<EntryId>,
    /// Its name.
    name: String,
    /// The resource.
    resource: Arc<Resource>,
}

/// (index of the Gateway, address of the route's [`RouteOwner`]): a reused route translation
/// keeps its owner, and the Gateways are the same whenever `Built` is consulted.
type OwnerKey = (usize, usize);

/// One entry of an AttachedRoute: (listener, hostname, match), the match compared by identity.
type EntryId = (usize, Arc<str>, Arc<pb::Route>);

fn same_entries(a: &[EntryId], b: &[EntryId]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((la, ha, ra), (lb, hb, rb))| la == lb && ha == hb && Arc::ptr_eq(ra, rb))
}

/// Adds the Listener, RouteConfig and AttachedRoute resources of every Gateway. With `reuse`
/// (the Gateways are the same as in the translation `built` comes from), an AttachedRoute built
/// from the same entries is taken from `built`.
pub(super) fn build(
    gateways: &[GatewayModel],
    entries: &[RouteEntry],
    resources: &mut super::Resources,
    (built, reuse): (&mut Built, bool),
) {
    let served = served(gateways);
    for gateway in gateways {
        let Some(ip) = gateway.bind_ip else { continue };
        let mut ports: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, l) in gateway.listeners.iter().enumerate() {
            if l.is_programmed() && l.serves_http() {
                ports.entry(l.port).or_default().push(i);
            }
        }
        for (port, listeners) in ports {
            let (ns, name) = (&gateway.key.0, &gateway.key.1);
            let route_config_name = names::route_config(ns, name, port);
            let mut hosts: Vec<pb::ListenerHost> = listeners
                .iter()
                .map(|i| {
                    let l = &gateway.listeners[*i];
                    pb::ListenerHost {
                        section_name: l.name.clone(),
                        hostname: l.hostname.clone().unwrap_or_else(|| "*".to_owned()),
                    }
                })
                .collect();
            hosts.sort_by(|a, b| a.section_name.cmp(&b.section_name));
            let tls = tls_termination(gateway, &listeners, resources);
            let listener_name = names::listener(ns, name, port);
            resources.insert(
                listener_name.clone(),
                Arc::new(Resource::Listener(pb::Listener {
                    name: listener_name,
                    address: Some(pb::SocketAddress {
                        ip: ip.to_string(),
                        port: u32::from(port),
                    }),
                    gateway: gateway.id(),
                    gateway_class: gateway.class.clone(),
                    section_names: hosts.iter().map(|h| h.section_name.clone()).collect(),
                    protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                        route_config_name: route_config_name.clone(),
                        tls,
                    })),
                })),
            );
            resources.insert(
                route_config_name.clone(),
                Arc::new(Resource::RouteConfig(pb::RouteConfig {
                    name: route_config_name,
                    listeners: hosts,
                    ..Default::default()
                })),
            );
        }
    }
    let mut next = Built::default();
    for ((g, _), (owner, attached)) in by_route(gateways, entries, &served) {
        let key: OwnerKey = (g, Arc::as_ptr(owner) as usize);
        let (name, resource) = match built.routes.get(&key) {
            Some(b) if reuse && same_entries(&b.entries, &attached.ids) => {
                (b.name.clone(), Arc::clone(&b.resource))
            }
            _ => {
                let route = attached_route(gateways, g, owner, &attached);
                (route.name.clone(), Arc::new(Resource::AttachedRoute(route)))
            }
        };
        resources.insert(name.clone(), Arc::clone(&resource));
        next.routes.insert(
            key,
            BuiltRoute {
                _owner: Arc::clone(owner),
                entries: attached.ids,
                name,
                resource,
            },
        );
    }
    *built = next;
}

/// How the HTTPS `listeners` (indexes into `gateway.listeners`, all on one port) terminate TLS,
/// with their `Secret` resources added to `resources`; `None` on an HTTP port.
fn tls_termination(
    gateway: &GatewayModel,
    listeners: &[usize],
    resources: &mut super::Resources,
) -> Option<pb::TlsTermination> {
    let mut certificates = Vec::new();
    for l in listeners.iter().map(|i| &gateway.listeners[*i]) {
        if l.protocol != "HTTPS" {
            continue;
        }
        for secret in &l.certificates {
            resources.insert(secret.name().to_owned(), Arc::clone(secret));
        }
        certificates.push(pb::SniCertificates {
            section_name: l.name.clone(),
            hostname: l.hostname.clone().unwrap_or_else(|| "*".to_owned()),
            secrets: l.certificates.iter().map(|s| s.name().to_owned()).collect(),
        });
    }
    certificates.sort_by(|a, b| a.section_name.cmp(&b.section_name));
    (!certificates.is_empty()).then_some(pb::TlsTermination { certificates })
}

/// (gateway, listener) → the RouteConfig serving it, for programmed HTTP and HTTPS listeners.
pub(super) fn served(gateways: &[GatewayModel]) -> Served {
    let mut served = Served::new();
    for (g, gateway) in gateways.iter().enumerate() {
        if gateway.bind_ip.is_none() {
            continue;
        }
        for (i, l) in gateway.listeners.iter().enumerate() {
            if l.is_programmed() && l.serves_http() {
                let (ns, name) = (&gateway.key.0, &gateway.key.1);
                served.insert((g, i), names::route_config(ns, name, l.port));
            }
        }
    }
    served
}

/// See [`served`].
pub(super) type Served = BTreeMap<(usize, usize), String>;

/// Removes the AttachedRoutes built from one route's `entries` (its previous translation).
pub(super) fn forget(entries: &[RouteEntry], resources: &mut super::Resources, built: &mut Built) {
    let keys: BTreeSet<OwnerKey> = entries
        .iter()
        .map(|e| (e.gateway, Arc::as_ptr(&e.owner) as usize))
        .collect();
    for key in keys {
        if let Some(b) = built.routes.remove(&key) {
            resources.remove(&b.name);
        }
    }
}

/// Adds the AttachedRoutes of one route's `entries` (its new translation).
pub(super) fn remember(
    gateways: &[GatewayModel],
    served: &Served,
    entries: &[RouteEntry],
    resources: &mut super::Resources,
    built: &mut Built,
) {
    for ((g, ptr), (owner, attached)) in by_route(gateways, entries, served) {
        let route = attached_route(gateways, g, owner, &attached);
        let resource = Arc::new(Resource::AttachedRoute(route));
        let name = resource.name().to_owned();
        resources.insert(name.clone(), Arc::clone(&resource));
        built.routes.insert(
            (g, ptr),
            BuiltRoute {
                _owner: Arc::clone(owner),
                entries: attached.ids,
                name,
                resource,
            },
        );
    }
}

/// One route's entries on one Gateway.
#[derive(Default)]
struct Attached<'a> {
    /// Matches in the order they were translated (rule, then match), each once.
    routes: Vec<&'a pb::Route>,
    seen: BTreeSet<&'a str>,
    /// (RouteConfig, listener name) → hostnames.
    attachments: BTreeMap<(&'a str, &'a str), BTreeSet<&'a str>>,
    /// The entries, in order.
    ids: Vec<EntryId>,
}

/// The entries of each route on each Gateway, for listeners a RouteConfig serves.
/// Keyed by Gateway and owner address (every entry of a route shares its owner); the order does
/// not matter: each group becomes its own resource.
fn by_route<'a>(
    gateways: &'a [GatewayModel],
    entries: &'a [RouteEntry],
    served: &'a Served,
) -> HashMap<OwnerKey, (&'a Arc<RouteOwner>, Attached<'a>)> {
    let mut by_route: HashMap<OwnerKey, (&Arc<RouteOwner>, Attached<'_>)> = HashMap::new();
    for e in entries {
        let Some(route_config) = served.get(&(e.gateway, e.listener)) else {
            continue;
        };
        let (_, attached) = by_route
            .entry((e.gateway, Arc::as_ptr(&e.owner) as usize))
            .or_insert_with(|| (&e.owner, Attached::default()));
        attached
            .ids
            .push((e.listener, Arc::clone(&e.hostname), Arc::clone(&e.route)));
        if attached.seen.insert(&e.route.name) {
            attached.routes.push(&e.route);
        }
        attached
            .attachments
            .entry((
                route_config,
                &gateways[e.gateway].listeners[e.listener].name,
            ))
            .or_default()
            .insert(&e.hostname);
    }
    by_route
}

/// The AttachedRoute of `owner` on Gateway `g`.
fn attached_route(
    gateways: &[GatewayModel],
    g: usize,
    owner: &RouteOwner,
    attached: &Attached<'_>,
) -> pb::AttachedRoute {
    let (gw_ns, gw_name) = &gateways[g].key;
    let (ns, name) = &owner.key;
    pb::AttachedRoute {
        name: names::attached_route(gw_ns, gw_name, owner.kind, ns, name),
        routes: attached.routes.iter().map(|r| (*r).clone()).collect(),
        attachments: attached
            .attachments
            .iter()
            .map(
                |((route_config, section_name), hostnames)| pb::RouteAttachment {
                    route_config: (*route_config).to_owned(),
                    section_name: (*section_name).to_owned(),
                    hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
                },
            )
            .collect(),
    }
}
