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
mod patch;

pub use diff::Delta;

use parking_lot::Mutex;
use pbjson_types::Any;
use serval_common::{
    Resource, SnapshotVersion, Version, proto::discovery::v1::Node, version::VersionTree,
};
use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Instant,
};

/// Deltas kept per view: proxies rarely hold more than a few different earlier views.
const DELTAS_PER_VIEW: usize = 8;

/// A view computed at most once (others asking meanwhile wait for it).
type ViewCell = Arc<OnceLock<Arc<View>>>;

/// A persistent (structurally shared) map by resource name: cloned in O(1); a changed copy
/// shares every unchanged entry, and [`imbl::OrdMap::diff`] between the two visits only what
/// changed.
pub type Held<T> = imbl::OrdMap<String, T>;

/// Names by name (a reverse index), persistent.
pub type Index = Held<imbl::OrdSet<String>>;

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

/// Two encodings are equal when their versions (content hashes) are.
impl PartialEq for Versioned {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Eq for Versioned {}

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
    /// Hash of the (name, version) pairs (see `VersionTree`).
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: Held<Arc<Versioned>>,
    /// The (name, version) pairs the version is computed from, updated by each change.
    tree: VersionTree,
    /// When the earliest change this snapshot carries was observed (convergence is measured
    /// from here).
    pub observed: Instant,
    /// Place in the sequence of published snapshots (0 before the first).
    pub sequence: u64,
    /// The rollout span's context, when the control plane exports traces (its pushes join it).
    pub trace: Option<opentelemetry::trace::SpanContext>,
    /// The resources as translate produced them (the next translation is diffed against these).
    sources: crate::translate::Resources,
    /// RouteConfig → the AttachedRoutes joining it.
    joined_by: Index,
    /// Name → the resources referring to it.
    referenced_by: Index,
    /// Gateway (`namespace/name`) → its GatewayClass, from the Listeners; computed on first use.
    classes: OnceLock<BTreeMap<String, String>>,
    /// Views computed so far, by scope.
    views: Mutex<BTreeMap<Scope, ViewCell>>,
    /// The views of the snapshot this one followed (when computed) and what changed since: a view
    /// is patched from its predecessor when the change allows it (see `patch`).
    base: Option<patch::Base>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new(BTreeMap::<String, Resource>::new())
    }
}

impl Snapshot {
    /// Versions and encodes `resources`.
    pub fn new<R: Into<Arc<Resource>>>(resources: impl IntoIterator<Item = (String, R)>) -> Self {
        let sources: crate::translate::Resources = resources
            .into_iter()
            .map(|(name, resource)| (name, resource.into()))
            .collect();
        let versioned = sources
            .iter()
            .map(|(name, resource)| {
                (
                    name.clone(),
                    Arc::new(Versioned::shared(Arc::clone(resource))),
                )
            })
            .collect();
        Self::build(versioned, sources, None)
    }

    /// Like [`Snapshot::new`], starting from `previous`: only the resources that differ from
    /// the ones it was made from are encoded and indexed (found by diffing the two persistent
    /// maps, which skips what they share), and views are patched from `previous`'s where the
    /// change allows. The result is the same as [`Snapshot::new`]'s.
    pub fn next(previous: &Snapshot, resources: crate::translate::Resources) -> Self {
        let mut versioned = previous.resources.clone();
        let mut joined_by = previous.joined_by.clone();
        let mut referenced_by = previous.referenced_by.clone();
        let mut changed = Vec::new();
        for item in previous.sources.diff(&resources) {
            let (name, new) = match item {
                imbl::ordmap::DiffItem::Add(name, r)
                | imbl::ordmap::DiffItem::Update { new: (name, r), .. } => (name, Some(r)),
                imbl::ordmap::DiffItem::Remove(name, _) => (name, None),
            };
            let old = versioned.get(name).cloned();
            if let Some(old) = &old {
                unindex(&mut joined_by, &mut referenced_by, name, &old.resource);
            }
            let new = new.map(|r| Arc::new(Versioned::shared(Arc::clone(r))));
            match &new {
                Some(v) => {
                    index(&mut joined_by, &mut referenced_by, name, &v.resource);
                    versioned.insert(name.clone(), Arc::clone(v));
                }
                None => {
                    versioned.remove(name);
                }
            }
            changed.push(patch::Change {
                name: name.clone(),
                old,
                new,
            });
        }
        let views = previous
            .views
            .lock()
            .iter()
            .filter_map(|(scope, cell)| Some((scope.clone(), Arc::clone(cell.get()?))))
            .collect();
        let mut tree = previous.tree.clone();
        tree.apply(
            changed
                .iter()
                .map(|c| (c.name.as_str(), c.new.as_ref().map(|v| &v.version))),
        );
        let mut out = Self::build(
            versioned,
            resources,
            Some((tree, patch::Base { views, changed })),
        );
        out.joined_by = joined_by;
        out.referenced_by = referenced_by;
        out
    }

    /// The snapshot of `resources`; `next` passes the version tree and the base it patched.
    fn build(
        resources: Held<Arc<Versioned>>,
        sources: crate::translate::Resources,
        patched: Option<(VersionTree, patch::Base)>,
    ) -> Self {
        let (joined_by, referenced_by) = if patched.is_some() {
            (Index::new(), Index::new()) // set by `next`
        } else {
            let (mut joined_by, mut referenced_by) = (Index::new(), Index::new());
            for (name, v) in &resources {
                index(&mut joined_by, &mut referenced_by, name, &v.resource);
            }
            (joined_by, referenced_by)
        };
        let (tree, base) = match patched {
            Some((tree, base)) => (tree, Some(base)),
            None => (tree_of(&resources), None),
        };
        Self {
            version: tree.version().clone(),
            tree,
            joined_by,
            referenced_by,
            resources,
            sources,
            observed: Instant::now(),
            sequence: 0,
            trace: None,
            classes: OnceLock::new(),
            views: Mutex::default(),
            base,
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

    /// Sets the rollout span's context.
    pub fn traced(mut self, trace: Option<opentelemetry::trace::SpanContext>) -> Self {
        self.trace = trace;
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
            let patched = self.base.as_ref().and_then(|base| {
                let before = base.views.get(scope)?;
                Some((before, patch::view(self.graph(), before, &base.changed)?))
            });
            // A view of everything has the snapshot's version tree (a view is a subset).
            let everything =
                |resources: &Held<Arc<Versioned>>| resources.len() == self.resources.len();
            let view = match patched {
                Some((_, resources)) if everything(&resources) => {
                    View::with_tree(self.tree.clone(), resources)
                }
                Some((before, resources)) => View::patched(before, resources),
                None => {
                    let resources = closure::closure(&self.graph(), scope);
                    if everything(&resources) {
                        View::with_tree(self.tree.clone(), resources)
                    } else {
                        View::new(resources)
                    }
                }
            };
            Arc::new(view)
        }))
    }

    fn graph(&self) -> closure::Graph<'_> {
        closure::Graph {
            all: &self.resources,
            joined_by: &self.joined_by,
            referenced_by: &self.referenced_by,
        }
    }
}

/// Adds `resource` (named `name`) to the reverse indexes.
fn index(joined_by: &mut Index, referenced_by: &mut Index, name: &str, resource: &Resource) {
    for target in resource.attaches_to() {
        add_to(joined_by, &target, name);
    }
    for target in resource.references() {
        add_to(referenced_by, &target, name);
    }
}

/// Removes `resource` (named `name`) from the reverse indexes.
fn unindex(joined_by: &mut Index, referenced_by: &mut Index, name: &str, resource: &Resource) {
    for target in resource.attaches_to() {
        remove_from(joined_by, &target, name);
    }
    for target in resource.references() {
        remove_from(referenced_by, &target, name);
    }
}

fn add_to(index: &mut Index, key: &str, name: &str) {
    let mut set = index.get(key).cloned().unwrap_or_default();
    if set.insert(name.to_owned()).is_none() {
        index.insert(key.to_owned(), set);
    }
}

fn remove_from(index: &mut Index, key: &str, name: &str) {
    let Some(mut set) = index.get(key).cloned() else {
        return;
    };
    if set.remove(name).is_some() {
        if set.is_empty() {
            index.remove(key);
        } else {
            index.insert(key.to_owned(), set);
        }
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
    /// Hash of the view's (name, version) pairs (see `VersionTree`).
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: Held<Arc<Versioned>>,
    /// The (name, version) pairs the version is computed from.
    tree: VersionTree,
    /// Differences from earlier views, by their version (most recent last).
    deltas: Mutex<Vec<(SnapshotVersion, Arc<Delta>)>>,
}

impl View {
    /// A view of `resources`.
    pub fn new(resources: Held<Arc<Versioned>>) -> Self {
        Self::with_tree(tree_of(&resources), resources)
    }

    /// A view of `resources` whose version tree is known.
    fn with_tree(tree: VersionTree, resources: Held<Arc<Versioned>>) -> Self {
        Self {
            version: tree.version().clone(),
            tree,
            resources,
            deltas: Mutex::default(),
        }
    }

    /// A view of `resources`, which differ from `before`'s in a few entries: the version tree
    /// is `before`'s with those entries changed (found by diffing the persistent maps).
    fn patched(before: &View, resources: Held<Arc<Versioned>>) -> Self {
        let mut tree = before.tree.clone();
        tree.apply(before.resources.diff(&resources).map(|item| match item {
            imbl::ordmap::DiffItem::Add(name, v)
            | imbl::ordmap::DiffItem::Update { new: (name, v), .. } => {
                (name.as_str(), Some(&v.version))
            }
            imbl::ordmap::DiffItem::Remove(name, _) => (name.as_str(), None),
        }));
        Self::with_tree(tree, resources)
    }

    /// The empty view.
    pub fn empty() -> Arc<Self> {
        Arc::new(Self::new(Held::new()))
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

fn tree_of(resources: &Held<Arc<Versioned>>) -> VersionTree {
    VersionTree::new(resources.iter().map(|(n, v)| (n.as_str(), &v.version)))
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
            .map(|r| (r.name().to_owned(), r)),
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
        let shared = |r: BTreeMap<String, Resource>| -> crate::translate::Resources {
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
