//! Snapshots: the immutable, content-versioned set of every resource translate produced, and the
//! per-proxy [`View`] of it (only what the proxy's Gateways need).
//!
//! A snapshot is published through a `watch` channel as an `Arc<Snapshot>`; nothing mutates it.
//! What a fleet needs is computed once and shared, so the cost of a change does not grow with
//! the number of proxies: one [`View`] per set of Gateways per snapshot (proxies serving the same
//! Gateways share it), and one [`Delta`] per pair of views (proxies that hold the same view share
//! the difference to the next). A proxy's state is then an `Arc<View>`, not a copy of its
//! resources.

pub mod closure;
pub mod diff;

pub use diff::Delta;

use parking_lot::Mutex;
use pbjson_types::Any;
use serval_common::{Resource, SnapshotVersion, Version, proto::discovery::v1::Node};
use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

/// Deltas kept per view: proxies rarely hold more than a few different earlier views.
const DELTAS_PER_VIEW: usize = 8;

/// A view computed at most once (others asking meanwhile wait for it).
type ViewCell = Arc<OnceLock<Arc<View>>>;

/// One resource with its version and its wire form, encoded once per snapshot.
#[derive(Debug)]
pub struct Versioned {
    /// The resource (shared with the translation that produced it).
    pub resource: Arc<Resource>,
    /// Hash of its encoded payload.
    pub version: Version,
    /// Its payload as sent.
    pub any: Any,
}

impl Versioned {
    /// Versions and encodes `resource`.
    pub fn new(resource: Resource) -> Self {
        Self::shared(Arc::new(resource))
    }

    /// Versions and encodes a shared `resource`.
    pub fn shared(resource: Arc<Resource>) -> Self {
        let payload = resource.encode_payload();
        Self {
            version: Version::of_bytes(&payload),
            any: Any {
                type_url: resource.kind().type_url(),
                value: payload.into(),
            },
            resource,
        }
    }
}

impl Versioned {
    /// The resource as the delta protocol carries it, under `name`.
    pub fn to_wire(&self, name: &str) -> serval_common::proto::discovery::v1::Resource {
        serval_common::proto::discovery::v1::Resource {
            name: name.to_owned(),
            version: self.version.to_string(),
            resource: Some(self.any.clone()),
        }
    }
}

/// Every resource, by name.
#[derive(Debug)]
pub struct Snapshot {
    /// Hash of the sorted (name, version) pairs.
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: BTreeMap<String, Arc<Versioned>>,
    /// When the earliest change this snapshot carries was observed (convergence is measured
    /// from here).
    pub observed: Instant,
    /// Place in the sequence of published snapshots (0 before the first).
    pub sequence: u64,
    /// RouteConfig → the AttachedRoutes joining it.
    joined_by: BTreeMap<String, Vec<String>>,
    /// Gateway (`namespace/name`) → its GatewayClass, from the Listeners; computed on first use.
    classes: OnceLock<BTreeMap<String, String>>,
    /// Views computed so far, by scope.
    views: Mutex<BTreeMap<Scope, ViewCell>>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new(BTreeMap::<String, Resource>::new())
    }
}

impl Snapshot {
    /// Versions and encodes `resources`.
    pub fn new<R: Into<Arc<Resource>>>(resources: BTreeMap<String, R>) -> Self {
        Self::from_versioned(
            resources
                .into_iter()
                .map(|(name, resource)| (name, Arc::new(Versioned::shared(resource.into()))))
                .collect(),
        )
    }

    /// Like [`Snapshot::new`], sharing with `previous` the encoding of every resource that is
    /// equal to the one of the same name there (a change to one route among thousands encodes
    /// and hashes that route only). The result is the same as [`Snapshot::new`]'s.
    pub fn next(previous: &Snapshot, resources: BTreeMap<String, Arc<Resource>>) -> Self {
        Self::from_versioned(
            resources
                .into_iter()
                .map(|(name, resource)| {
                    let versioned = match previous.resources.get(&name) {
                        Some(was)
                            if Arc::ptr_eq(&was.resource, &resource)
                                || *was.resource == *resource =>
                        {
                            Arc::clone(was)
                        }
                        _ => Arc::new(Versioned::shared(resource)),
                    };
                    (name, versioned)
                })
                .collect(),
        )
    }

    /// A snapshot of already encoded resources (unchanged ones can be shared with the previous
    /// snapshot).
    pub fn from_versioned(resources: BTreeMap<String, Arc<Versioned>>) -> Self {
        Self {
            version: version_of(&resources),
            joined_by: closure::joined_by(&resources),
            resources,
            observed: Instant::now(),
            sequence: 0,
            classes: OnceLock::new(),
            views: Mutex::default(),
        }
    }

    /// Sets when the change was observed.
    pub fn observed_at(mut self, at: Instant) -> Self {
        self.observed = at;
        self
    }

    /// Sets the place in the sequence of published snapshots.
    pub fn sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    /// Gateway (`namespace/name`) → GatewayClass, for every Gateway with a Listener.
    pub fn gateway_classes(&self) -> &BTreeMap<String, String> {
        self.classes.get_or_init(|| {
            self.resources
                .values()
                .filter_map(|v| match &*v.resource {
                    Resource::Listener(l) => Some((l.gateway.clone(), l.gateway_class.clone())),
                    _ => None,
                })
                .collect()
        })
    }

    /// The resources a proxy serving `scope` needs; computed once per snapshot and scope.
    pub fn view(&self, scope: &Scope) -> Arc<View> {
        let cell = Arc::clone(self.views.lock().entry(scope.clone()).or_default());
        Arc::clone(cell.get_or_init(|| {
            let graph = closure::Graph {
                all: &self.resources,
                joined_by: &self.joined_by,
            };
            Arc::new(View::new(closure::closure(&graph, scope)))
        }))
    }
}

/// Which Gateways a proxy serves: the listed ones; else every Gateway of `gateway_class`; else
/// every Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// `namespace/name`, sorted, without duplicates.
    pub gateways: Vec<String>,
    /// A GatewayClass name, used when `gateways` is empty.
    pub gateway_class: String,
}

impl Scope {
    /// The scope of a node.
    pub fn of(node: &Node) -> Self {
        Self::new(node.gateways.clone(), node.gateway_class.clone())
    }

    /// A scope, normalised.
    pub fn new(mut gateways: Vec<String>, gateway_class: String) -> Self {
        gateways.sort();
        gateways.dedup();
        Self {
            gateways,
            gateway_class,
        }
    }

    /// Whether a Listener of `gateway` (of `class`) is in scope.
    pub fn covers(&self, gateway: &str, class: &str) -> bool {
        if !self.gateways.is_empty() {
            return self
                .gateways
                .binary_search_by(|g| g.as_str().cmp(gateway))
                .is_ok();
        }
        self.gateway_class.is_empty() || self.gateway_class == class
    }
}

/// The part of a snapshot one proxy receives.
#[derive(Debug)]
pub struct View {
    /// Hash of the view's sorted (name, version) pairs.
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: BTreeMap<String, Arc<Versioned>>,
    /// Differences from earlier views, by their version (most recent last).
    deltas: Mutex<Vec<(SnapshotVersion, Arc<Delta>)>>,
}

impl View {
    /// A view of `resources`.
    pub fn new(resources: BTreeMap<String, Arc<Versioned>>) -> Self {
        Self {
            version: version_of(&resources),
            resources,
            deltas: Mutex::default(),
        }
    }

    /// The empty view.
    pub fn empty() -> Arc<Self> {
        Arc::new(Self::new(BTreeMap::new()))
    }

    /// What a proxy holding `held` must receive to hold this view; computed once per pair.
    pub fn delta_from(&self, held: &View) -> Arc<Delta> {
        if let Some((_, d)) = self.deltas.lock().iter().find(|(v, _)| *v == held.version) {
            return Arc::clone(d);
        }
        let delta = Arc::new(diff::between(held, self));
        let mut deltas = self.deltas.lock();
        if deltas.len() >= DELTAS_PER_VIEW {
            deltas.remove(0);
        }
        deltas.push((held.version.clone(), Arc::clone(&delta)));
        delta
    }

    /// Name → version of every resource.
    pub fn versions(&self) -> impl Iterator<Item = (&str, &Version)> {
        self.resources.iter().map(|(n, v)| (n.as_str(), &v.version))
    }
}

fn version_of(resources: &BTreeMap<String, Arc<Versioned>>) -> SnapshotVersion {
    SnapshotVersion::of(resources.iter().map(|(n, v)| (n.as_str(), &v.version)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_common::{names, proto::config::v1 as pb};

    fn listener(gateway: &str, class: &str) -> Resource {
        let (ns, name) = gateway.split_once('/').unwrap_or_default();
        Resource::Listener(pb::Listener {
            name: names::listener(ns, name, 80),
            gateway: gateway.into(),
            gateway_class: class.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_scope_selects_listed_gateways_else_a_class_else_all() {
        let snapshot = Snapshot::new(
            [
                listener("ns/a", "internal"),
                listener("ns/b", "internal"),
                listener("ns/c", "public"),
            ]
            .into_iter()
            .map(|r| (r.name().to_owned(), r))
            .collect(),
        );
        let names = |scope: Scope| -> Vec<String> {
            snapshot.view(&scope).resources.keys().cloned().collect()
        };
        assert_eq!(
            names(Scope::new(vec!["ns/c".into()], "internal".into())),
            vec!["listener/ns/c/80"],
            "listed Gateways win over the class"
        );
        assert_eq!(
            names(Scope::new(vec![], "internal".into())),
            vec!["listener/ns/a/80", "listener/ns/b/80"]
        );
        assert_eq!(names(Scope::default()).len(), 3);
        assert_eq!(
            snapshot.gateway_classes().get("ns/c").map(String::as_str),
            Some("public")
        );
        // Proxies with the same scope share one view.
        let scope = Scope::new(
            vec!["ns/b".into(), "ns/a".into(), "ns/a".into()],
            String::new(),
        );
        assert!(Arc::ptr_eq(
            &snapshot.view(&scope),
            &snapshot.view(&Scope::new(
                vec!["ns/a".into(), "ns/b".into()],
                String::new()
            ))
        ));
    }

    #[test]
    fn a_next_snapshot_shares_unchanged_encodings_and_versions_like_a_new_one() {
        let resources = |class_c: &str| -> BTreeMap<String, Resource> {
            [
                listener("ns/a", "internal"),
                listener("ns/b", "internal"),
                listener("ns/c", class_c),
            ]
            .into_iter()
            .map(|r| (r.name().to_owned(), r))
            .collect()
        };
        let first = Snapshot::new(resources("public"));
        let shared = |r: BTreeMap<String, Resource>| -> BTreeMap<String, Arc<Resource>> {
            r.into_iter().map(|(n, r)| (n, Arc::new(r))).collect()
        };
        let next = Snapshot::next(&first, shared(resources("internal")));
        assert_eq!(next.version, Snapshot::new(resources("internal")).version);
        assert_ne!(next.version, first.version);
        let shared = |name: &str| Arc::ptr_eq(&first.resources[name], &next.resources[name]);
        assert!(shared("listener/ns/a/80") && shared("listener/ns/b/80"));
        assert!(
            !shared("listener/ns/c/80"),
            "a changed resource is encoded anew"
        );
    }
}
