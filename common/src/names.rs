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

/// The parts of a [`route`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteName<'a> {
    /// The route's namespace.
    pub namespace: &'a str,
    /// Its kind, lower-cased (`httproute`, `grpcroute`).
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The rule's index.
    pub rule: u32,
}

/// Reads a [`route`] name back; `None` for anything else.
pub fn parse_route(name: &str) -> Option<RouteName<'_>> {
    let mut parts = name.strip_prefix("route/")?.split('/');
    let (namespace, kind, route) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next()? == "rule").then_some(())?;
    let rule = parts.next()?.parse().ok()?;
    Some(RouteName {
        namespace,
        kind,
        name: route,
        rule,
    })
}

/// `<namespace>/<gateway>` of an [`attached_route`] name.
pub fn gateway_of_attached_route(name: &str) -> Option<&str> {
    let rest = name
        .strip_prefix(ResourceKind::AttachedRoute.prefix())?
        .strip_prefix('/')?;
    let second_slash = rest.match_indices('/').nth(1)?.0;
    Some(&rest[..second_slash])
}

/// `<namespace>/<service>:<port>` of a [`cluster`] name.
pub fn service_of_cluster(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix(ResourceKind::Cluster.prefix())?
        .strip_prefix('/')?;
    let (service, port) = rest.rsplit_once('/')?;
    Some(format!("{service}:{port}"))
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

    #[test]
    fn names_read_back() {
        let route_name = route("app", "GRPCRoute", "web", 3, 1);
        assert_eq!(
            parse_route(&route_name),
            Some(RouteName {
                namespace: "app",
                kind: "grpcroute",
                name: "web",
                rule: 3
            })
        );
        assert_eq!(parse_route("route/a/b"), None);
        assert_eq!(parse_route("cluster/a/b/80"), None);
        let ar = attached_route("infra", "gw", "HTTPRoute", "app", "web");
        assert_eq!(gateway_of_attached_route(&ar), Some("infra/gw"));
        assert_eq!(gateway_of_attached_route("attachedroute/x"), None);
        assert_eq!(
            service_of_cluster(&cluster("app", "svc", 8080)).as_deref(),
            Some("app/svc:8080")
        );
        assert_eq!(service_of_cluster("listener/a/b/80"), None);
    }
}
