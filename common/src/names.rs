//! The one naming scheme of configuration resources. A name starts with its kind's prefix, so names
//! are unique across kinds and the kind can be read back from a name.
//!
//! This module only formats and parses names; it does not decide which resources exist.

use crate::ResourceKind;

/// `listener/<namespace>/<gateway>/<port>`: one socket of a Gateway.
pub fn listener(namespace: &str, gateway: &str, port: u16) -> String {
    format!(
        "{}/{namespace}/{gateway}/{port}",
        ResourceKind::Listener.prefix()
    )
}

/// `routeconfig/<namespace>/<gateway>/<port>`: the routes of one HTTP listener socket.
pub fn route_config(namespace: &str, gateway: &str, port: u16) -> String {
    format!(
        "{}/{namespace}/{gateway}/{port}",
        ResourceKind::RouteConfig.prefix()
    )
}

/// `attachedroute/<gateway namespace>/<gateway>/<kind>/<namespace>/<name>`: one HTTPRoute or
/// GRPCRoute (`kind`, lower-cased) as attached to one Gateway.
pub fn attached_route(
    gateway_namespace: &str,
    gateway: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> String {
    format!(
        "{}/{gateway_namespace}/{gateway}/{}/{namespace}/{name}",
        ResourceKind::AttachedRoute.prefix(),
        kind.to_ascii_lowercase()
    )
}

/// `route/<namespace>/<kind>/<name>/rule/<rule>/match/<match>`: one match of one route rule
/// (not a resource of its own: a `Route` inside an `AttachedRoute`).
pub fn route(namespace: &str, kind: &str, name: &str, rule: usize, match_index: usize) -> String {
    format!(
        "route/{namespace}/{}/{name}/rule/{rule}/match/{match_index}",
        kind.to_ascii_lowercase()
    )
}

/// `cluster/<namespace>/<service>/<port>`: one Service port.
pub fn cluster(namespace: &str, service: &str, port: u16) -> String {
    format!(
        "{}/{namespace}/{service}/{port}",
        ResourceKind::Cluster.prefix()
    )
}

/// `endpoints/<namespace>/<service>/<port>`: the ready endpoints of one Service port.
pub fn load_assignment(namespace: &str, service: &str, port: u16) -> String {
    format!(
        "{}/{namespace}/{service}/{port}",
        ResourceKind::ClusterLoadAssignment.prefix()
    )
}

/// `secret/<namespace>/<name>`: one Kubernetes Secret.
pub fn secret(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", ResourceKind::Secret.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_kind() {
        let cases = [
            (listener("ns", "gw", 80), ResourceKind::Listener),
            (route_config("ns", "gw", 80), ResourceKind::RouteConfig),
            (
                attached_route("ns", "gw", "HTTPRoute", "app", "web"),
                ResourceKind::AttachedRoute,
            ),
            (cluster("ns", "svc", 8080), ResourceKind::Cluster),
            (
                load_assignment("ns", "svc", 8080),
                ResourceKind::ClusterLoadAssignment,
            ),
            (secret("ns", "tls"), ResourceKind::Secret),
        ];
        for (name, kind) in cases {
            assert_eq!(ResourceKind::of_name(&name), Some(kind), "{name}");
        }
        assert_eq!(
            ResourceKind::of_name("route/ns/httproute/x/rule/0/match/0"),
            None
        );
        assert_eq!(listener("a", "b", 8080), "listener/a/b/8080");
        assert_eq!(
            route("a", "HTTPRoute", "web", 1, 2),
            "route/a/httproute/web/rule/1/match/2"
        );
    }
}
