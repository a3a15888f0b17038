//! [`Inputs`]: the objects translate reads, indexed by namespace and name. Built from the objects of
//! a source (the file source and the golden harness use the same code).
//!
//! Building inputs never fails: a later object with the same kind, namespace and name replaces an
//! earlier one, with a diagnostic.

use crate::sources::objects::{Object, ObjectRef};
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
use std::{collections::BTreeMap, sync::Arc};

/// `(namespace, name)`.
pub type Key = (String, String);

/// Everything translate reads, in sorted maps so iteration order never depends on input order.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// GatewayClasses by name.
    pub gateway_classes: BTreeMap<String, Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: BTreeMap<Key, Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: BTreeMap<Key, Arc<HttpRoute>>,
    /// GRPCRoutes.
    pub grpc_routes: BTreeMap<Key, Arc<GrpcRoute>>,
    /// TCPRoutes.
    pub tcp_routes: BTreeMap<Key, Arc<TcpRoute>>,
    /// UDPRoutes.
    pub udp_routes: BTreeMap<Key, Arc<UdpRoute>>,
    /// TLSRoutes: only their status is translated (no listener accepts them yet).
    pub tls_routes: BTreeMap<Key, Arc<TlsRoute>>,
    /// ReferenceGrants.
    pub reference_grants: BTreeMap<Key, Arc<ReferenceGrant>>,
    /// Services.
    pub services: BTreeMap<Key, Arc<Service>>,
    /// EndpointSlices by the Service they belong to (label `kubernetes.io/service-name`), then by
    /// slice name.
    pub endpoint_slices: BTreeMap<Key, BTreeMap<String, Arc<EndpointSlice>>>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Secrets.
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    /// Notes about the inputs themselves (duplicates, slices without a Service label).
    pub diagnostics: Vec<String>,
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl Inputs {
    /// Indexes `objects`; later duplicates win.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut inputs = Self::default();
        let mut seen = BTreeMap::<ObjectRef, ()>::new();
        for object in objects {
            let r = object.object_ref();
            if seen.insert(r.clone(), ()).is_some() {
                inputs.diagnostics.push(format!(
                    "{r}: defined more than once; the last definition wins"
                ));
            }
            let key = (r.namespace.clone(), r.name.clone());
            match object {
                Object::GatewayClass(o) => {
                    inputs.gateway_classes.insert(r.name, o);
                }
                Object::Gateway(o) => {
                    inputs.gateways.insert(key, o);
                }
                Object::HttpRoute(o) => {
                    inputs.http_routes.insert(key, o);
                }
                Object::GrpcRoute(o) => {
                    inputs.grpc_routes.insert(key, o);
                }
                Object::TcpRoute(o) => {
                    inputs.tcp_routes.insert(key, o);
                }
                Object::UdpRoute(o) => {
                    inputs.udp_routes.insert(key, o);
                }
                Object::TlsRoute(o) => {
                    inputs.tls_routes.insert(key, o);
                }
                Object::ReferenceGrant(o) => {
                    inputs.reference_grants.insert(key, o);
                }
                Object::Service(o) => {
                    inputs.services.insert(key, o);
                }
                Object::Namespace(o) => {
                    inputs.namespaces.insert(r.name, o);
                }
                Object::Secret(o) => {
                    inputs.secrets.insert(key, o);
                }
                Object::EndpointSlice(o) => {
                    let service = o
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .cloned();
                    match service {
                        Some(service) => {
                            inputs
                                .endpoint_slices
                                .entry((r.namespace, service))
                                .or_default()
                                .insert(r.name, o);
                        }
                        None => inputs.diagnostics.push(format!(
                            "{r}: no {SERVICE_NAME_LABEL} label, belongs to no Service; ignored"
                        )),
                    }
                }
            }
        }
        inputs
    }

    /// Labels of a namespace; always includes `kubernetes.io/metadata.name`, as Kubernetes sets it.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(namespace)
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert(
            "kubernetes.io/metadata.name".to_owned(),
            namespace.to_owned(),
        );
        labels
    }
}
