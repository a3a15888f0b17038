//! Listeners and RouteConfigs: one `Listener` and one `RouteConfig` per Gateway port, holding the
//! virtual hosts of every programmed listener on that port.
//!
//! A request on a port belongs to the listener with the most specific hostname matching its host;
//! within it, rules of routes with more specific hostnames come first, then Gateway API match
//! precedence. Each virtual host's route list is complete (the proxy picks one virtual host and
//! never falls through to another), so routes of less specific hostnames of the same listener are
//! repeated after the more specific ones.

use super::{gateway::GatewayModel, hostname, http_route::RouteEntry};
use serval_common::{Resource, names, proto::config::v1 as pb};
use std::collections::{BTreeMap, BTreeSet};

/// Adds the Listener and RouteConfig resources of every Gateway.
pub(super) fn build(
    gateways: &[GatewayModel],
    entries: &[RouteEntry],
    resources: &mut BTreeMap<String, Resource>,
) {
    for (g, gateway) in gateways.iter().enumerate() {
        let Some(ip) = gateway.bind_ip else { continue };
        let mut ports: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, l) in gateway.listeners.iter().enumerate() {
            if l.is_programmed() && l.protocol == "HTTP" {
                ports.entry(l.port).or_default().push(i);
            }
        }
        for (port, listeners) in ports {
            let (ns, name) = (&gateway.key.0, &gateway.key.1);
            let route_config_name = names::route_config(ns, name, port);
            let port_entries: Vec<&RouteEntry> = entries
                .iter()
                .filter(|e| e.gateway == g && listeners.contains(&e.listener))
                .collect();
            let virtual_hosts = virtual_hosts(gateway, &listeners, &port_entries);
            let mut section_names: Vec<String> = listeners
                .iter()
                .map(|i| gateway.listeners[*i].name.clone())
                .collect();
            section_names.sort();
            let listener_name = names::listener(ns, name, port);
            resources.insert(
                listener_name.clone(),
                Resource::Listener(pb::Listener {
                    name: listener_name,
                    address: Some(pb::SocketAddress {
                        ip: ip.to_string(),
                        port: u32::from(port),
                    }),
                    gateway: gateway.id(),
                    section_names,
                    protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                        route_config_name: route_config_name.clone(),
                    })),
                }),
            );
            resources.insert(
                route_config_name.clone(),
                Resource::RouteConfig(pb::RouteConfig {
                    name: route_config_name,
                    virtual_hosts,
                }),
            );
        }
    }
}

fn virtual_hosts(
    gateway: &GatewayModel,
    listeners: &[usize],
    entries: &[&RouteEntry],
) -> Vec<pb::VirtualHost> {
    let pattern_of = |i: usize| {
        gateway.listeners[i]
            .hostname
            .clone()
            .unwrap_or_else(|| "*".to_owned())
    };
    let mut patterns: BTreeSet<String> = listeners.iter().map(|i| pattern_of(*i)).collect();
    patterns.extend(entries.iter().map(|e| e.hostname.clone()));
    let mut by_hostname: BTreeMap<&str, Vec<&RouteEntry>> = BTreeMap::new();
    for e in entries {
        by_hostname.entry(e.hostname.as_str()).or_default().push(e);
    }

    let mut out = Vec::new();
    for pattern in patterns {
        // The listener that owns requests for this pattern: the most specific one covering it.
        let Some(owner) = listeners
            .iter()
            .copied()
            .filter(|i| hostname::covers(&pattern_of(*i), &pattern))
            .min_by(|a, b| hostname::by_specificity(&pattern_of(*a), &pattern_of(*b)))
        else {
            continue;
        };
        // Entries whose hostname covers the pattern, found by lookups (not a scan of every entry).
        let mut matching: Vec<&RouteEntry> = hostname::covering_patterns(&pattern)
            .iter()
            .filter_map(|h| by_hostname.get(h.as_str()))
            .flatten()
            .copied()
            .filter(|e| e.listener == owner)
            .collect();
        matching.sort_by(|a, b| {
            hostname::by_specificity(&a.hostname, &b.hostname)
                .then_with(|| a.precedence.cmp(&b.precedence))
        });
        let mut seen = BTreeSet::new();
        let routes: Vec<pb::Route> = matching
            .into_iter()
            .filter(|e| seen.insert(e.route.name.as_str()))
            .map(|e| (*e.route).clone())
            .collect();
        out.push(pb::VirtualHost {
            name: pattern.clone(),
            domains: vec![pattern],
            routes,
        });
    }
    out
}
