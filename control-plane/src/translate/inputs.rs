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

/// A sorted, persistent (structurally shared) map: cloned in O(1), so a translation can keep
/// the inputs it read and the next one can start from them ([`Inputs::patched`]).
pub type Map<K, V> = imbl::OrdMap<K, V>;

/// Everything translate reads, in sorted maps so iteration order never depends on input order.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// GatewayClasses by name.
    pub gateway_classes: Map<String, Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: Map<Key, Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: Map<Key, Arc<HttpRoute>>,
    /// GRPCRoutes.
    pub grpc_routes: Map<Key, Arc<GrpcRoute>>,
    /// TCPRoutes.
    pub tcp_routes: Map<Key, Arc<TcpRoute>>,
    /// UDPRoutes.
    pub udp_routes: Map<Key, Arc<UdpRoute>>,
    /// TLSRoutes: only their status is translated (no listener accepts them yet).
    pub tls_routes: Map<Key, Arc<TlsRoute>>,
    /// ReferenceGrants.
    pub reference_grants: Map<Key, Arc<ReferenceGrant>>,
    /// Services.
    pub services: Map<Key, Arc<Service>>,
    /// EndpointSlices by the Service they belong to (label `kubernetes.io/service-name`), then by
    /// slice name.
    pub endpoint_slices: Map<Key, Map<String, Arc<EndpointSlice>>>,
    /// Namespaces by name.
    pub namespaces: Map<String, Arc<Namespace>>,
    /// Secrets.
    pub secrets: Map<Key, Arc<Secret>>,
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

    /// The inputs of `objects`, made from `previous` (the inputs of `before`) when the two
    /// object lists differ in one stretch (what one changed file or one watch event gives):
    /// the objects before and after it are the same ones (by identity), so only the stretch is
    /// indexed again. `None` when that does not hold or the stretch involves a duplicate or an
    /// EndpointSlice (then [`Inputs::from_objects`] gives the diagnostics). Equal to
    /// `from_objects(objects)` whenever it is `Some`.
    pub fn patched(previous: &Inputs, before: &[Object], objects: &[Object]) -> Option<Inputs> {
        if previous
            .diagnostics
            .iter()
            .any(|d| d.contains("defined more than once"))
        {
            return None;
        }
        let prefix = before
            .iter()
            .zip(objects)
            .take_while(|(a, b)| a.is_same(b))
            .count();
        let suffix = before[prefix..]
            .iter()
            .rev()
            .zip(objects[prefix..].iter().rev())
            .take_while(|(a, b)| a.is_same(b))
            .count();
        let removed = &before[prefix..before.len() - suffix];
        let added = &objects[prefix..objects.len() - suffix];
        let mut inputs = previous.clone();
        for object in removed {
            if !inputs.take(object) {
                return None;
            }
        }
        for object in added {
            if !inputs.put(object) {
                return None;
            }
        }
        Some(inputs)
    }

    /// Removes `object`, which must be the one held under its key.
    fn take(&mut self, object: &Object) -> bool {
        fn out<K: Ord + Clone, T>(map: &mut Map<K, Arc<T>>, key: &K, o: &Arc<T>) -> bool {
            match map.get(key) {
                Some(held) if Arc::ptr_eq(held, o) => map.remove(key).is_some(),
                _ => false,
            }
        }
        let r = object.object_ref();
        let key = (r.namespace, r.name);
        match object {
            Object::GatewayClass(o) => out(&mut self.gateway_classes, &key.1, o),
            Object::Gateway(o) => out(&mut self.gateways, &key, o),
            Object::HttpRoute(o) => out(&mut self.http_routes, &key, o),
            Object::GrpcRoute(o) => out(&mut self.grpc_routes, &key, o),
            Object::TcpRoute(o) => out(&mut self.tcp_routes, &key, o),
            Object::UdpRoute(o) => out(&mut self.udp_routes, &key, o),
            Object::TlsRoute(o) => out(&mut self.tls_routes, &key, o),
            Object::ReferenceGrant(o) => out(&mut self.reference_grants, &key, o),
            Object::Service(o) => out(&mut self.services, &key, o),
            Object::Namespace(o) => out(&mut self.namespaces, &key.1, o),
            Object::Secret(o) => out(&mut self.secrets, &key, o),
            Object::EndpointSlice(_) => false,
        }
    }

    /// Adds `object`, whose key must be free.
    fn put(&mut self, object: &Object) -> bool {
        fn add<K: Ord + Clone, T>(map: &mut Map<K, Arc<T>>, key: K, o: &Arc<T>) -> bool {
            map.insert(key, Arc::clone(o)).is_none()
        }
        let r = object.object_ref();
        let key = (r.namespace, r.name);
        match object {
            Object::GatewayClass(o) => add(&mut self.gateway_classes, key.1, o),
            Object::Gateway(o) => add(&mut self.gateways, key, o),
            Object::HttpRoute(o) => add(&mut self.http_routes, key, o),
            Object::GrpcRoute(o) => add(&mut self.grpc_routes, key, o),
            Object::TcpRoute(o) => add(&mut self.tcp_routes, key, o),
            Object::UdpRoute(o) => add(&mut self.udp_routes, key, o),
            Object::TlsRoute(o) => add(&mut self.tls_routes, key, o),
            Object::ReferenceGrant(o) => add(&mut self.reference_grants, key, o),
            Object::Service(o) => add(&mut self.services, key, o),
            Object::Namespace(o) => add(&mut self.namespaces, key.1, o),
            Object::Secret(o) => add(&mut self.secrets, key, o),
            Object::EndpointSlice(_) => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::objects::parse_documents;

    fn objects(yaml: &str) -> Vec<Object> {
        parse_documents("test", yaml).expect("valid").objects
    }

    fn route(name: &str, host: &str) -> String {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  hostnames: [\"{host}\"]\n"
        )
    }

    fn service(name: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\n")
    }

    #[test]
    fn one_changed_stretch_is_patched_like_a_full_index() {
        let head = objects(&[route("ra", "a.example"), service("svc-s")].join("---\n"));
        let tail = objects(&[route("rz", "z.example"), service("svc-t")].join("---\n"));
        let middle = objects(&[route("rm", "m.example"), route("rn", "n.example")].join("---\n"));
        let all = |parts: &[&[Object]]| -> Vec<Object> { parts.concat() };
        let before = all(&[&head, &middle, &tail]);
        let previous = Inputs::from_objects(before.clone());
        let debug = |i: &Inputs| format!("{i:?}");
        // Changed, added, removed in the middle.
        let changed =
            objects(&[route("rm", "other.example"), route("rn", "n.example")].join("---\n"));
        for now in [
            all(&[&head, &changed, &tail]),
            all(&[&head, &middle, &objects(&route("ro", "o.example")), &tail]),
            all(&[&head, &tail]),
            all(&[&head, &middle, &tail]),
        ] {
            let patched = Inputs::patched(&previous, &before, &now).expect("one stretch");
            assert_eq!(debug(&patched), debug(&Inputs::from_objects(now.clone())));
        }
        // A duplicate takes the full path (which reports it).
        let duplicate = all(&[&head, &middle, &objects(&route("ra", "x.example")), &tail]);
        assert!(Inputs::patched(&previous, &before, &duplicate).is_none());
        assert!(
            Inputs::from_objects(duplicate)
                .diagnostics
                .iter()
                .any(|d| d.contains("defined more than once"))
        );
    }
}
