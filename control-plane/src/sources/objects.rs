//! The object kinds Serval reads, decoded into the `gateway-api` and `k8s-openapi` types, and the
//! parser from multi-document YAML text to [`Object`]s.
//!
//! Documents of kinds Serval does not read are skipped with a note, never an error. A document of a
//! known kind that does not decode is an error naming the document and the field.

use gateway_api::{
    experimental::{
        httproutes::HttpRoute, tcproutes::TcpRoute, tlsroutes::TlsRoute, udproutes::UdpRoute,
    },
    gatewayclasses::GatewayClass,
    gateways::Gateway,
    grpcroutes::GrpcRoute,
    referencegrants::ReferenceGrant,
};
use k8s_openapi::api::{
    core::v1::{Namespace, Secret, Service},
    discovery::v1::EndpointSlice,
};
use serde::de::DeserializeOwned;
use std::{fmt, sync::Arc};

/// A decoded object of a kind Serval reads. Shared (`Arc`): sources, inputs and the translation
/// memo hold the same object, so a new source state costs no copies, and an object that did not
/// change is recognised by pointer.
#[derive(Clone, Debug)]
pub enum Object {
    /// `gateway.networking.k8s.io/v1 GatewayClass`.
    GatewayClass(Arc<GatewayClass>),
    /// `gateway.networking.k8s.io/v1 Gateway`.
    Gateway(Arc<Gateway>),
    /// `gateway.networking.k8s.io/v1 HTTPRoute`.
    HttpRoute(Arc<HttpRoute>),
    /// `gateway.networking.k8s.io/v1 GRPCRoute`.
    GrpcRoute(Arc<GrpcRoute>),
    /// `gateway.networking.k8s.io/v1alpha2 TCPRoute`.
    TcpRoute(Arc<TcpRoute>),
    /// `gateway.networking.k8s.io/v1 TLSRoute` (status only: no listener accepts it yet).
    TlsRoute(Arc<TlsRoute>),
    /// `gateway.networking.k8s.io/v1alpha2 UDPRoute`.
    UdpRoute(Arc<UdpRoute>),
    /// `gateway.networking.k8s.io/v1beta1|v1 ReferenceGrant`.
    ReferenceGrant(Arc<ReferenceGrant>),
    /// `v1 Service`.
    Service(Arc<Service>),
    /// `discovery.k8s.io/v1 EndpointSlice`.
    EndpointSlice(Arc<EndpointSlice>),
    /// `v1 Namespace`.
    Namespace(Arc<Namespace>),
    /// `v1 Secret`.
    Secret(Arc<Secret>),
}

/// Kind, namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The kind, e.g. `HTTPRoute`.
    pub kind: &'static str,
    /// The namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not valid YAML.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File (or other origin) of the text.
        origin: String,
        /// The parser's message, with its location.
        message: String,
    },
    /// A document of a known kind does not match its schema.
    #[error("{origin}: document {index} ({kind} {name:?}): {message}")]
    Schema {
        /// File of the document.
        origin: String,
        /// Position of the document in the file, from 0.
        index: usize,
        /// Its kind.
        kind: String,
        /// Its `metadata.name`, if readable.
        name: String,
        /// What is wrong, naming the field.
        message: String,
    },
}

/// The objects of one text, and the documents that were skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Decoded objects, in document order.
    pub objects: Vec<Object>,
    /// One note per skipped document (unknown kind or apiVersion).
    pub skipped: Vec<String>,
}

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Parses multi-document YAML. Any invalid document makes the whole text invalid, so a half-written
/// file never replaces the last good version of itself with part of its objects.
///
/// The parser's budget is raised for large fleets of objects (its defaults stop at 1,024 documents
/// and 250,000 nodes a file); it still bounds what one file can cost.
pub fn parse_documents(origin: &str, text: &str) -> Result<Parsed, ParseError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 200_000,
            max_nodes: 40_000_000,
            max_events: 100_000_000,
            max_total_scalar_bytes: 1 << 30,
        },
    };
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| ParseError::Yaml {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
    parse_values(origin, documents)
}

/// Decodes already-parsed documents (`null` documents, from empty `---` sections, are ignored).
pub fn parse_values(origin: &str, documents: Vec<serde_json::Value>) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    for (index, doc) in documents.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let kind = doc
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        let api_version = doc
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        let schema_error = |message: String| ParseError::Schema {
            origin: origin.to_owned(),
            index,
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        if !doc.is_object() {
            return Err(schema_error("a document must be a mapping".to_owned()));
        }
        if kind.is_empty() || api_version.is_empty() {
            return Err(schema_error("missing kind or apiVersion".to_owned()));
        }
        if name.is_empty() {
            return Err(schema_error("missing metadata.name".to_owned()));
        }
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let object = match (group, kind.as_str()) {
            (GATEWAY_GROUP, "GatewayClass") => decode(doc).map(Arc::new).map(Object::GatewayClass),
            (GATEWAY_GROUP, "Gateway") => decode(doc).map(Arc::new).map(Object::Gateway),
            (GATEWAY_GROUP, "HTTPRoute") => decode(doc).map(Arc::new).map(Object::HttpRoute),
            (GATEWAY_GROUP, "GRPCRoute") => decode(doc).map(Arc::new).map(Object::GrpcRoute),
            (GATEWAY_GROUP, "TCPRoute") => decode(doc).map(Arc::new).map(Object::TcpRoute),
            (GATEWAY_GROUP, "TLSRoute") => decode(doc).map(Arc::new).map(Object::TlsRoute),
            (GATEWAY_GROUP, "UDPRoute") => decode(doc).map(Arc::new).map(Object::UdpRoute),
            (GATEWAY_GROUP, "ReferenceGrant") => {
                decode(doc).map(Arc::new).map(Object::ReferenceGrant)
            }
            ("", "Service") => decode(doc).map(Arc::new).map(Object::Service),
            ("", "Namespace") => decode(doc).map(Arc::new).map(Object::Namespace),
            ("", "Secret") => decode(doc).map(Arc::new).map(Object::Secret),
            ("discovery.k8s.io", "EndpointSlice") => {
                decode(doc).map(Arc::new).map(Object::EndpointSlice)
            }
            _ => {
                parsed.skipped.push(format!(
                    "{origin}: document {index} ({api_version} {kind} {name:?}): kind not read by Serval, skipped"
                ));
                continue;
            }
        };
        parsed.objects.push(object.map_err(schema_error)?);
    }
    Ok(parsed)
}

fn decode<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(doc).map_err(|e| e.to_string())
}

impl Object {
    /// True when `other` is this very object (the same shared value), not merely equal.
    pub fn is_same(&self, other: &Object) -> bool {
        match (self, other) {
            (Self::GatewayClass(a), Self::GatewayClass(b)) => Arc::ptr_eq(a, b),
            (Self::Gateway(a), Self::Gateway(b)) => Arc::ptr_eq(a, b),
            (Self::HttpRoute(a), Self::HttpRoute(b)) => Arc::ptr_eq(a, b),
            (Self::GrpcRoute(a), Self::GrpcRoute(b)) => Arc::ptr_eq(a, b),
            (Self::TcpRoute(a), Self::TcpRoute(b)) => Arc::ptr_eq(a, b),
            (Self::TlsRoute(a), Self::TlsRoute(b)) => Arc::ptr_eq(a, b),
            (Self::UdpRoute(a), Self::UdpRoute(b)) => Arc::ptr_eq(a, b),
            (Self::ReferenceGrant(a), Self::ReferenceGrant(b)) => Arc::ptr_eq(a, b),
            (Self::Service(a), Self::Service(b)) => Arc::ptr_eq(a, b),
            (Self::EndpointSlice(a), Self::EndpointSlice(b)) => Arc::ptr_eq(a, b),
            (Self::Namespace(a), Self::Namespace(b)) => Arc::ptr_eq(a, b),
            (Self::Secret(a), Self::Secret(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// True when `other` differs from `self` at most in `status` and `metadata.resourceVersion`,
    /// for kinds whose status does not feed translation (GatewayClass, Gateway, routes). A
    /// Service's status (load-balancer ingress) does, so for other kinds any difference counts.
    pub fn same_but_status(&self, other: &Object) -> bool {
        fn strip(object: &Object) -> Option<serde_json::Value> {
            let mut value = match object {
                Object::GatewayClass(o) => serde_json::to_value(&**o),
                Object::Gateway(o) => serde_json::to_value(&**o),
                Object::HttpRoute(o) => serde_json::to_value(&**o),
                Object::GrpcRoute(o) => serde_json::to_value(&**o),
                Object::TcpRoute(o) => serde_json::to_value(&**o),
                Object::UdpRoute(o) => serde_json::to_value(&**o),
                Object::TlsRoute(o) => serde_json::to_value(&**o),
                _ => return None,
            }
            .ok()?;
            let map = value.as_object_mut()?;
            map.remove("status");
            if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("resourceVersion");
            }
            Some(value)
        }
        match (strip(self), strip(other)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Kind, namespace and name. Namespaced objects without a namespace are in `default`.
    pub fn object_ref(&self) -> ObjectRef {
        let (kind, meta) = match self {
            Self::GatewayClass(o) => ("GatewayClass", &o.metadata),
            Self::Gateway(o) => ("Gateway", &o.metadata),
            Self::HttpRoute(o) => ("HTTPRoute", &o.metadata),
            Self::GrpcRoute(o) => ("GRPCRoute", &o.metadata),
            Self::TcpRoute(o) => ("TCPRoute", &o.metadata),
            Self::TlsRoute(o) => ("TLSRoute", &o.metadata),
            Self::UdpRoute(o) => ("UDPRoute", &o.metadata),
            Self::ReferenceGrant(o) => ("ReferenceGrant", &o.metadata),
            Self::Service(o) => ("Service", &o.metadata),
            Self::EndpointSlice(o) => ("EndpointSlice", &o.metadata),
            Self::Namespace(o) => ("Namespace", &o.metadata),
            Self::Secret(o) => ("Secret", &o.metadata),
        };
        let cluster_scoped = matches!(self, Self::GatewayClass(_) | Self::Namespace(_));
        ObjectRef {
            kind,
            namespace: if cluster_scoped {
                String::new()
            } else {
                meta.namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned())
            },
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests;
