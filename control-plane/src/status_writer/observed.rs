//! What the API server holds: each status-bearing object's `resourceVersion` and `status`, taken
//! from the watched objects, and the normal form both sides are compared in.

use crate::sources::objects::Object;
use gateway_api::{
    experimental::{
        httproutes::HttpRouteStatus, tcproutes::TcpRouteStatus, udproutes::UdpRouteStatus,
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

/// One object's status as the API server holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `metadata.resourceVersion` (the precondition of the write).
    pub resource_version: String,
    /// `status`, in normal form ([`normalize`]); `null` when absent.
    pub status: Value,
}

/// The observed status of every status-bearing object in `objects`.
pub fn observe(objects: &[Object]) -> BTreeMap<StatusKey, Observed> {
    let mut observed = BTreeMap::new();
    for object in objects {
        let (meta, status) = match object {
            Object::GatewayClass(o) => (&o.metadata, to_value(&o.status)),
            Object::Gateway(o) => (&o.metadata, to_value(&o.status)),
            Object::HttpRoute(o) => (&o.metadata, to_value(&o.status)),
            Object::GrpcRoute(o) => (&o.metadata, to_value(&o.status)),
            Object::TcpRoute(o) => (&o.metadata, to_value(&o.status)),
            Object::UdpRoute(o) => (&o.metadata, to_value(&o.status)),
            _ => continue,
        };
        let reference = object.object_ref();
        observed.insert(
            StatusKey {
                kind: reference.kind.to_owned(),
                namespace: reference.namespace,
                name: reference.name,
            },
            Observed {
                resource_version: meta.resource_version.clone().unwrap_or_default(),
                status,
            },
        );
    }
    observed
}

fn to_value<T: Serialize>(status: &Option<T>) -> Value {
    status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
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
        _ => None,
    };
    normal.unwrap_or_else(|| status.clone())
}
