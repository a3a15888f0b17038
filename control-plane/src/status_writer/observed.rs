//! What the API server holds: each status-bearing object's `resourceVersion` and raw `status`, as
//! the watcher saw them, and the normal form computed and observed statuses are compared in.

use crate::sources::{SourceState, kubernetes::kinds};
use gateway_api::{
    experimental::{
        httproutes::HttpRouteStatus, tcproutes::TcpRouteStatus, tlsroutes::TlsRouteStatus,
        udproutes::UdpRouteStatus,
    },
    gatewayclasses::GatewayClassStatus,
    gateways::GatewayStatus,
    grpcroutes::GrpcRouteStatus,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::{collections::BTreeMap, fmt};

/// Kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusKey {
    /// Kind, e.g. `HTTPRoute`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for StatusKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One object's status as the API server holds it (raw, as served).
pub use crate::sources::ObservedStatus as Observed;

/// The observed status of every object whose status Serval writes.
pub fn observe(state: &SourceState) -> BTreeMap<StatusKey, Observed> {
    state
        .observed
        .iter()
        .filter(|(r, _)| kinds::by_name(r.kind).is_some_and(|k| k.writes_status))
        .map(|(r, o)| {
            let key = StatusKey {
                kind: r.kind.to_owned(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            };
            (key, o.clone())
        })
        .collect()
}

/// `status` as the API server would hand it back: passed through the kind's typed status, so a
/// computed status and an observed one compare equal exactly when the API server holds the same.
/// A status that does not decode is returned as it is.
pub fn normalize(kind: &str, status: &Value) -> Value {
    fn through<T: DeserializeOwned + Serialize>(status: &Value) -> Option<Value> {
        let typed: T = serde_json::from_value(status.clone()).ok()?;
        serde_json::to_value(typed).ok()
    }
    let normal = match kind {
        "GatewayClass" => through::<GatewayClassStatus>(status),
        "Gateway" => through::<GatewayStatus>(status),
        "HTTPRoute" => through::<HttpRouteStatus>(status),
        "GRPCRoute" => through::<GrpcRouteStatus>(status),
        "TCPRoute" => through::<TcpRouteStatus>(status),
        "UDPRoute" => through::<UdpRouteStatus>(status),
        "TLSRoute" => through::<TlsRouteStatus>(status),
        _ => None,
    };
    normal.unwrap_or_else(|| status.clone())
}
