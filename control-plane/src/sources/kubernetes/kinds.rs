//! The kinds the Kubernetes source watches: API group, resource, the versions Serval decodes (the
//! first one the API server serves is watched), whether the kind comes from a CRD that may be
//! missing, its field selector, and whether Serval writes its status subresource.
//!
//! This table is the single description of what the control plane asks of the API server:
//! watchers, the status writer and the RBAC test ([`crate::access`]) all read it.

/// One watched kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `kind`, e.g. `HTTPRoute`.
    pub kind: &'static str,
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Plural resource name, e.g. `httproutes`.
    pub plural: &'static str,
    /// Versions Serval decodes, preferred first; the first one the API server serves is watched.
    pub versions: &'static [&'static str],
    /// Namespaced (else cluster-scoped).
    pub namespaced: bool,
    /// Installed by a CRD: when the API server does not serve it, the kind is skipped with a
    /// warning instead of blocking the first sync.
    pub crd: bool,
    /// Field selector of the list/watch (the API server filters; the source checks again).
    pub field_selector: Option<&'static str>,
    /// Serval writes this kind's `status` subresource.
    pub writes_status: bool,
}

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The field selector for Secrets: only TLS Secrets are read.
pub const TLS_SECRETS: &str = "type=kubernetes.io/tls";

const fn gateway_kind(
    kind: &'static str,
    plural: &'static str,
    versions: &'static [&'static str],
    namespaced: bool,
    writes_status: bool,
) -> Kind {
    Kind {
        kind,
        group: GATEWAY_GROUP,
        plural,
        versions,
        namespaced,
        crd: true,
        field_selector: None,
        writes_status,
    }
}

const fn core_kind(
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        kind,
        group,
        plural,
        versions: &["v1"],
        namespaced,
        crd: false,
        field_selector: None,
        writes_status: false,
    }
}

/// Every watched kind. TLSRoutes get status (never accepted: no TLS listener is supported yet)
/// but are not served.
pub const WATCHED: &[Kind] = &[
    gateway_kind("GatewayClass", "gatewayclasses", &["v1"], false, true),
    gateway_kind("Gateway", "gateways", &["v1"], true, true),
    gateway_kind("HTTPRoute", "httproutes", &["v1"], true, true),
    gateway_kind("GRPCRoute", "grpcroutes", &["v1"], true, true),
    gateway_kind("TLSRoute", "tlsroutes", &["v1"], true, true),
    gateway_kind("TCPRoute", "tcproutes", &["v1alpha2"], true, true),
    gateway_kind("UDPRoute", "udproutes", &["v1alpha2"], true, true),
    gateway_kind(
        "ReferenceGrant",
        "referencegrants",
        &["v1", "v1beta1"],
        true,
        false,
    ),
    core_kind("Service", "", "services", true),
    core_kind("EndpointSlice", "discovery.k8s.io", "endpointslices", true),
    core_kind("Namespace", "", "namespaces", false),
    Kind {
        field_selector: Some(TLS_SECRETS),
        ..core_kind("Secret", "", "secrets", true)
    },
];

/// The kind named `kind`, if watched.
pub fn by_name(kind: &str) -> Option<&'static Kind> {
    WATCHED.iter().find(|k| k.kind == kind)
}

/// The Lease used for leader election: group, resource and the verbs the elector uses.
pub const LEASE: (&str, &str, &[&str]) =
    ("coordination.k8s.io", "leases", &["get", "create", "patch"]);

/// Verbs a watcher uses.
pub const WATCH_VERBS: &[&str] = &["list", "watch"];

/// Verb the status writer uses on `<plural>/status` (a JSON merge patch).
pub const STATUS_VERB: &str = "patch";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_whose_status_is_written_have_one_version() {
        // The status writer patches `versions[0]`; with several versions it would have to use
        // the one discovery found.
        for kind in WATCHED.iter().filter(|k| k.writes_status) {
            assert_eq!(kind.versions.len(), 1, "{}", kind.kind);
        }
    }

    #[test]
    fn every_kind_appears_once() {
        let mut names: Vec<&str> = WATCHED.iter().map(|k| k.kind).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WATCHED.len());
        assert_eq!(by_name("HTTPRoute").map(|k| k.plural), Some("httproutes"));
        assert_eq!(by_name("Lease"), None, "the Lease is not watched");
    }
}
