//! `translate`: the pure, total function from Gateway API objects to proxy configuration and
//! status.
//!
//! ```text
//! Inputs ─► gateway_class ─► gateway (listeners, conflicts) ─► http_route (attach, matches,
//!           backends → Cluster + ClusterLoadAssignment) ─► route_config (Listener + RouteConfig)
//!        ─► Output { resources, statuses, diagnostics }
//! ```
//!
//! No I/O, no clock (the time for conditions comes in [`Options::now`]), no randomness: the same
//! inputs give byte-identical outputs whatever their order. Bad user input never fails: it becomes
//! status conditions, and the rest of the configuration is still produced.

mod attach;
mod backends;
mod certificates;
mod filters;
mod gateway;
mod gateway_class;
mod grpc_route;
pub use serval_common::hostname;
mod http_route;
pub mod incremental;
pub mod inputs;
mod kind_conflicts;
mod l4_route;
mod matching;
mod policy;
mod reference_grant;
mod route_config;
pub mod status;

pub use incremental::Incremental;
use incremental::Reuse;
pub use inputs::Inputs;
pub use status::ObjectStatus;

use serval_common::Resource;
use std::sync::Arc;

/// Configuration resources by name: a persistent (structurally shared) map, so the next
/// translation can start from this one's and [`imbl::OrdMap::diff`] finds what changed without
/// visiting what did not.
pub type Resources = imbl::OrdMap<String, Arc<Resource>>;

/// What translate needs besides the objects.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `controllerName` of GatewayClasses Serval owns.
    pub controller_name: String,
    /// RFC 3339 time written as `lastTransitionTime`.
    pub now: String,
    /// Addresses where the proxy fleet is reachable (in Kubernetes, its Service's load-balancer
    /// ingress or cluster IP), reported in `status.addresses` of Gateways whose `spec.addresses`
    /// is empty. Empty in standalone.
    pub fleet_addresses: Vec<GatewayAddress>,
}

/// One `status.addresses` entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayAddress {
    /// `IPAddress` or `Hostname`.
    pub r#type: &'static str,
    /// The address.
    pub value: String,
}

/// Everything translate produces.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Configuration resources by name (shared: a resource reused from the previous translation
    /// is the same `Arc`).
    pub resources: Resources,
    /// Status of every object of ours, sorted by kind, namespace, name (shared: an unchanged
    /// route's status is the one computed before).
    pub statuses: Vec<Arc<ObjectStatus>>,
    /// Warnings that are not status (duplicates, skipped objects).
    pub diagnostics: Vec<String>,
    /// HTTPRoutes and GRPCRoutes whose translation was reused from the previous one
    /// ([`Incremental`]; always 0 for [`translate`]).
    pub reused_routes: usize,
}

/// Translates `inputs` from scratch ([`Incremental`] reuses the previous translation).
pub fn translate(inputs: &Inputs, opts: &Options) -> Output {
    run(
        inputs,
        opts,
        &mut incremental::Memos::default(),
        &Reuse::nothing(),
    )
}

fn run(
    inputs: &Inputs,
    opts: &Options,
    memos: &mut incremental::Memos,
    reuse: &Reuse<'_>,
) -> Output {
    let mut out = Output {
        diagnostics: inputs.diagnostics.clone(),
        ..Output::default()
    };
    let (classes, class_statuses) = gateway_class::translate(inputs, opts);
    out.statuses
        .extend(class_statuses.into_iter().map(Arc::new));
    let mut gateways = gateway::analyze(inputs, &classes);
    let (mut entries, mut route_statuses) = http_route::translate(
        http_route::HTTP_ROUTE,
        &inputs.http_routes,
        |_, route| Some((std::borrow::Cow::Borrowed(route), None)),
        &mut memos.http_routes,
        reuse,
        inputs,
        opts,
        &mut gateways,
        &mut out.resources,
    );
    let (grpc_entries, grpc_statuses) = grpc_route::translate(
        inputs,
        opts,
        (&mut memos.grpc_routes, reuse),
        &mut gateways,
        &mut out.resources,
    );
    entries.extend(grpc_entries);
    route_statuses.extend(grpc_statuses);
    kind_conflicts::resolve(&mut entries, &mut route_statuses, &mut gateways);
    // TCP, UDP and TLS routes write after the HTTP and gRPC ones (a ClusterLoadAssignment both
    // name is theirs), into their own map, kept for incremental translation.
    let mut l4 = Resources::new();
    route_statuses.extend(l4_route::translate(
        l4_route::TCP_ROUTE,
        &inputs.tcp_routes,
        inputs,
        opts,
        &mut gateways,
        &mut l4,
    ));
    route_statuses.extend(l4_route::translate(
        l4_route::UDP_ROUTE,
        &inputs.udp_routes,
        inputs,
        opts,
        &mut gateways,
        &mut l4,
    ));
    route_statuses.extend(l4_route::translate(
        l4_route::TLS_ROUTE,
        &inputs.tls_routes,
        inputs,
        opts,
        &mut gateways,
        &mut l4,
    ));
    for (name, resource) in &l4 {
        out.resources.insert(name.clone(), Arc::clone(resource));
    }
    memos.l4 = l4;
    memos.grpc_entries = entries
        .iter()
        .any(|e| e.owner.kind == grpc_route::GRPC_ROUTE.name);
    route_config::build(
        &gateways,
        &entries,
        &mut out.resources,
        (&mut memos.attached_routes, reuse.enabled()),
    );
    out.statuses
        .extend(gateways.iter().map(|g| Arc::new(g.status(opts))));
    out.statuses.extend(route_statuses);
    out.statuses.sort_by(|a, b| {
        (&a.kind, &a.metadata.namespace, &a.metadata.name).cmp(&(
            &b.kind,
            &b.metadata.namespace,
            &b.metadata.name,
        ))
    });
    out.diagnostics.extend(class_diagnostics(inputs, &classes));
    memos.counts = attached_counts(&gateways);
    out.reused_routes = reuse.reused.get();
    out
}

/// "GatewayClass not found" for Gateways naming no class we know.
fn class_diagnostics(inputs: &Inputs, classes: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for ((ns, name), gw) in &inputs.gateways {
        if !classes.contains(&gw.spec.gateway_class_name)
            && !inputs
                .gateway_classes
                .contains_key(&gw.spec.gateway_class_name)
        {
            out.push(format!(
                "Gateway {ns}/{name}: GatewayClass {:?} not found; ignored",
                gw.spec.gateway_class_name
            ));
        }
    }
    out
}

/// `attachedRoutes` of every listener of every Gateway.
fn attached_counts(gateways: &[gateway::GatewayModel]) -> Vec<Vec<u32>> {
    gateways
        .iter()
        .map(|g| g.listeners.iter().map(|l| l.attached_routes).collect())
        .collect()
}

/// Where a proxy fleet behind `service` is reachable: its load-balancer ingress (IPs and
/// hostnames), else its cluster IPs. Reported as the `status.addresses` of Gateways that ask for
/// no address ([`Options::fleet_addresses`]).
pub fn fleet_addresses(service: &k8s_openapi::api::core::v1::Service) -> Vec<GatewayAddress> {
    let mut addresses = Vec::new();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for entry in ingress.into_iter().flatten() {
        if let Some(ip) = entry.ip.as_ref().filter(|ip| !ip.is_empty()) {
            addresses.push(GatewayAddress {
                r#type: "IPAddress",
                value: ip.clone(),
            });
        } else if let Some(host) = entry.hostname.as_ref().filter(|h| !h.is_empty()) {
            addresses.push(GatewayAddress {
                r#type: "Hostname",
                value: host.clone(),
            });
        }
    }
    if addresses.is_empty() {
        let spec = service.spec.as_ref();
        let ips = spec
            .and_then(|s| s.cluster_ips.clone())
            .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default();
        addresses.extend(
            ips.into_iter()
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .map(|value| GatewayAddress {
                    r#type: "IPAddress",
                    value,
                }),
        );
    }
    addresses
}

#[cfg(test)]
mod fleet_address_tests {
    use super::*;

    fn service(json: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(json).expect("a Service")
    }

    #[test]
    fn load_balancer_ingress_first_then_cluster_ips() {
        let lb = service(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"hostname": "lb.example"}]}}
        }));
        assert_eq!(
            fleet_addresses(&lb),
            vec![
                GatewayAddress {
                    r#type: "IPAddress",
                    value: "203.0.113.1".to_owned()
                },
                GatewayAddress {
                    r#type: "Hostname",
                    value: "lb.example".to_owned()
                },
            ]
        );
        let pending = service(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9", "fd00::9"]}
        }));
        assert_eq!(
            fleet_addresses(&pending)
                .iter()
                .map(|a| a.value.as_str())
                .collect::<Vec<_>>(),
            vec!["10.0.0.9", "fd00::9"]
        );
        let headless = service(serde_json::json!({
            "metadata": {"name": "p"}, "spec": {"clusterIP": "None"}
        }));
        assert!(fleet_addresses(&headless).is_empty());
    }
}
