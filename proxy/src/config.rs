//! The proxy's configuration: one immutable [`Config`] value behind one `ArcSwap`
//! ([`ConfigStore`]). A new version is compiled beside the old one and swapped in one step; a
//! request loads the config once and finishes on it.
//!
//! This module does not talk to the control plane (see `xds`) or bind sockets (see `listeners`).

pub mod compile;
pub mod dump;

use crate::{l4::L4Backends, router::Router};
use arc_swap::ArcSwap;
use serval_common::Resource;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

/// One applied configuration version.
#[derive(Debug, Default)]
pub struct Config {
    /// `system_version_info` of the response that produced it (empty before the first).
    pub version: String,
    /// Every resource held, by name (shared with the next configuration where unchanged).
    pub resources: compile::Held<Arc<Resource>>,
    /// The version of each held resource, as the control plane sent it.
    pub versions: compile::Held<String>,
    /// TCP sockets to serve (HTTP or TCP proxying), by the address they are bound to.
    pub listeners: BTreeMap<SocketAddr, ListenerConfig>,
    /// UDP sockets to serve, by the address they are bound to.
    pub udp: BTreeMap<SocketAddr, UdpListenerConfig>,
    /// Compiled clusters and routes, reused by the next compile where their inputs are unchanged.
    pub compiled: compile::Compiled,
}

/// What one bound UDP socket serves.
#[derive(Clone, Debug)]
pub struct UdpListenerConfig {
    /// The Listener resources served on this socket.
    pub names: Vec<String>,
    /// Where datagrams go.
    pub backends: Arc<L4Backends>,
}

/// What one bound socket serves.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// The Listener resources served on this socket (several when `--bind-address` or shared
    /// addresses put them on one socket), sorted.
    pub names: Vec<String>,
    /// Routing table (empty for a TCP proxy socket).
    pub router: Router,
    /// Set for a TCP proxy socket (TCPRoute): connections go to these backends, not to HTTP.
    pub tcp: Option<Arc<L4Backends>>,
    /// Set for an HTTPS socket: TLS is terminated with this configuration before HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Config {
    /// True if the route rule `id` is still configured (its AttachedRoute is held and has a
    /// route of that rule).
    pub fn has_route_rule(&self, id: &crate::metrics::requests::RouteId) -> bool {
        let (Some((gw_ns, gw)), Some((ns, name))) =
            (id.gateway.split_once('/'), id.route.split_once('/'))
        else {
            return false;
        };
        let attached = serval_common::names::attached_route(gw_ns, gw, &id.route_kind, ns, name);
        self.compiled
            .routes
            .get(&attached)
            .is_some_and(|c| c.routes.iter().any(|r| r.stats.id.rule == id.rule))
    }
}

/// Holds the current configuration.
#[derive(Debug, Default)]
pub struct ConfigStore {
    current: ArcSwap<Config>,
}

impl ConfigStore {
    /// The current configuration; load once per request or connection.
    pub fn load(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Replaces the configuration in one step.
    pub fn swap(&self, config: Arc<Config>) {
        self.current.store(config);
    }
}
