//! Incremental translation: each HTTPRoute's and GRPCRoute's translation (its entries, the
//! Clusters it resolved, its `attachedRoutes` contributions and its status) is kept with the
//! object it came from, and reused while nothing it reads changed — so a change to one route
//! among thousands translates that route, not all of them.
//!
//! What a route's translation reads besides the route itself: the GatewayClasses, Gateways,
//! Namespaces, ReferenceGrants and Secrets (any change there drops every memo), the controller
//! name, and the Services (with their EndpointSlices) it looked up, whether found or not (a change
//! there drops the memos of the routes that looked it up). The result is the same as translating
//! from scratch, which `tests` and the golden tests check over sequences of changes.
//!
//! A change to a few HTTPRoutes alone is cheaper still: `routes_only` patches the previous
//! output instead of assembling a new one. Otherwise the global passes (kind conflicts,
//! Listeners, RouteConfigs, grouping the entries into AttachedRoutes — an AttachedRoute built from
//! the same entries is reused, see `route_config::Built` — and Gateway status) walk every entry,
//! and TCP, UDP and TLS routes are translated every time.

use super::{
    Options, Output,
    http_route::RouteEntry,
    inputs::{Inputs, Key, Map},
    route_config,
    status::ObjectStatus,
};
use gateway_api::{experimental::httproutes::HttpRoute, grpcroutes::GrpcRoute};
use serval_common::Resource;
use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

/// What translating one route produced.
#[derive(Debug, Default)]
pub(super) struct Translated {
    /// Its route entries.
    pub(super) entries: Vec<RouteEntry>,
    /// The (Gateway, listener) pairs whose `attachedRoutes` it counts in.
    pub(super) counted: Vec<(usize, usize)>,
    /// The Cluster and ClusterLoadAssignment resources it resolved.
    pub(super) names: Vec<String>,
    /// The Services it looked up.
    pub(super) services: Vec<Key>,
    /// Its status (none when it names no Gateway of ours).
    pub(super) status: Option<Arc<ObjectStatus>>,
}

/// The translations of one route kind, with the object each came from (hashed: only looked up,
/// never iterated, so its order cannot reach the output).
#[derive(Debug)]
pub(super) struct Memo<S> {
    routes: HashMap<Key, (Arc<S>, Arc<Translated>)>,
}

impl<S> Default for Memo<S> {
    fn default() -> Self {
        Self {
            routes: HashMap::new(),
        }
    }
}

impl<S: PartialEq> Memo<S> {
    /// The translation of `source` kept from last time, if `reuse` allows it.
    pub(super) fn get(
        &self,
        key: &Key,
        source: &Arc<S>,
        reuse: &Reuse<'_>,
    ) -> Option<Arc<Translated>> {
        let (was, translated) = self.routes.get(key)?;
        let same = Arc::ptr_eq(was, source) || **was == **source;
        (same && reuse.allows(translated)).then(|| Arc::clone(translated))
    }

    /// Takes the translation kept for `key` out.
    pub(super) fn remove(&mut self, key: &Key) -> Option<Arc<Translated>> {
        self.routes.remove(key).map(|(_, t)| t)
    }

    /// Every translation kept (in no particular order).
    pub(super) fn translations(&self) -> impl Iterator<Item = &Translated> {
        self.routes.values().map(|(_, t)| &**t)
    }

    /// Keeps `translated` for `source`.
    pub(super) fn insert(&mut self, key: &Key, source: &Arc<S>, translated: &Arc<Translated>) {
        self.routes
            .insert(key.clone(), (Arc::clone(source), Arc::clone(translated)));
    }
}

/// What may be reused in one translation.
#[derive(Debug)]
pub(super) struct Reuse<'a> {
    /// False: translate everything.
    enabled: bool,
    /// Services (or their EndpointSlices) that changed: routes that looked them up are translated
    /// again.
    changed_services: BTreeSet<Key>,
    /// The Clusters and ClusterLoadAssignments of the last translation.
    clusters: &'a Clusters,
    /// Routes whose translation was reused so far.
    pub(super) reused: Cell<usize>,
}

impl Reuse<'_> {
    /// Nothing reused.
    pub(super) fn nothing() -> Reuse<'static> {
        static EMPTY: std::sync::OnceLock<Clusters> = std::sync::OnceLock::new();
        Reuse {
            enabled: false,
            changed_services: BTreeSet::new(),
            clusters: EMPTY.get_or_init(Clusters::new),
            reused: Cell::new(0),
        }
    }

    /// False when nothing may be reused (the first translation, or the Gateways changed).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    fn allows(&self, translated: &Translated) -> bool {
        self.enabled
            && translated
                .services
                .iter()
                .all(|s| !self.changed_services.contains(s))
            && translated
                .names
                .iter()
                .all(|n| self.clusters.contains_key(n))
    }

    /// Puts the Clusters and ClusterLoadAssignments `translated` resolved into `resources`.
    pub(super) fn replay(&self, translated: &Translated, resources: &mut super::Resources) {
        self.reused.set(self.reused.get() + 1);
        for name in &translated.names {
            if !resources.contains_key(name)
                && let Some(resource) = self.clusters.get(name)
            {
                resources.insert(name.clone(), Arc::clone(resource));
            }
        }
    }
}

/// The memos of every route kind that has one.
#[derive(Debug, Default)]
pub(super) struct Memos {
    pub(super) http_routes: Memo<HttpRoute>,
    pub(super) grpc_routes: Memo<GrpcRoute>,
    pub(super) attached_routes: route_config::Built,
    /// What the TCP, UDP and TLS routes produced (written after the others).
    pub(super) l4: super::Resources,
    /// Whether any GRPCRoute has entries (then HTTPRoutes and GRPCRoutes may conflict).
    pub(super) grpc_entries: bool,
    /// `attachedRoutes` of every listener of every Gateway, after the translation.
    pub(super) counts: Vec<Vec<u32>>,
}

/// A translator that remembers its last inputs and each route's translation (see the module
/// docs). `translate` on the same inputs gives the same output as [`super::translate`].
#[derive(Debug, Default)]
pub struct Incremental {
    previous: Option<(Inputs, String)>,
    memos: Memos,
    clusters: Clusters,
    last: Option<routes_only::Last>,
}

/// Clusters and ClusterLoadAssignments by name (hashed: only looked up).
type Clusters = HashMap<String, Arc<Resource>>;

impl Incremental {
    /// Translates `inputs`, reusing what it can from the last call.
    pub fn translate(&mut self, inputs: Inputs, opts: &Options) -> Output {
        if let Some(output) = routes_only::translate(self, &inputs, opts) {
            self.previous = Some((inputs, opts.controller_name.clone()));
            return output;
        }
        let changed_services = match &self.previous {
            Some((previous, controller))
                if *controller == opts.controller_name && same_context(previous, &inputs) =>
            {
                Some(changed_services(previous, &inputs))
            }
            _ => None,
        };
        let reuse = Reuse {
            enabled: changed_services.is_some(),
            changed_services: changed_services.unwrap_or_default(),
            clusters: &self.clusters,
            reused: Cell::new(0),
        };
        let output = super::run(&inputs, opts, &mut self.memos, &reuse);
        self.clusters = output
            .resources
            .iter()
            .filter(|(_, r)| {
                matches!(
                    &***r,
                    Resource::Cluster(_) | Resource::ClusterLoadAssignment(_)
                )
            })
            .map(|(n, r)| (n.clone(), Arc::clone(r)))
            .collect();
        let mut producers: BTreeMap<String, usize> = BTreeMap::new();
        let translations = self
            .memos
            .http_routes
            .translations()
            .chain(self.memos.grpc_routes.translations());
        for translated in translations {
            let names: BTreeSet<&String> = translated.names.iter().collect();
            for name in names {
                *producers.entry(name.clone()).or_default() += 1;
            }
        }
        for name in self.memos.l4.keys() {
            *producers.entry(name.clone()).or_default() += 1;
        }
        self.last = Some(routes_only::Last {
            output: output.clone(),
            producers,
        });
        self.previous = Some((inputs, opts.controller_name.clone()));
        output
    }
}

/// True when everything a route's translation reads, Services aside, is the same.
fn same_context(a: &Inputs, b: &Inputs) -> bool {
    same(&a.gateway_classes, &b.gateway_classes)
        && same(&a.gateways, &b.gateways)
        && same(&a.namespaces, &b.namespaces)
        && same(&a.reference_grants, &b.reference_grants)
        && same(&a.secrets, &b.secrets)
}

/// Services whose object or EndpointSlices differ between `a` and `b` (added and removed ones
/// included).
fn changed_services(a: &Inputs, b: &Inputs) -> BTreeSet<Key> {
    let mut changed = BTreeSet::new();
    differing(&a.services, &b.services, |k| changed.insert(k.clone()));
    let keys: BTreeSet<&Key> = a
        .endpoint_slices
        .keys()
        .chain(b.endpoint_slices.keys())
        .collect();
    for key in keys {
        let same_slices = match (a.endpoint_slices.get(key), b.endpoint_slices.get(key)) {
            (Some(x), Some(y)) => same(x, y),
            (None, None) => true,
            _ => false,
        };
        if !same_slices {
            changed.insert(key.clone());
        }
    }
    changed
}

/// Equal maps; shared objects compare by pointer first.
fn same<K: Ord + Clone, T: PartialEq>(a: &Map<K, Arc<T>>, b: &Map<K, Arc<T>>) -> bool {
    a.ptr_eq(b)
        || a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| ka == kb && (Arc::ptr_eq(va, vb) || **va == **vb))
}

/// Calls `found` for every key whose value differs between `a` and `b` or is in one only (a
/// merge of the two sorted maps: no lookups).
fn differing<K: Ord + Clone, T: PartialEq>(
    a: &Map<K, Arc<T>>,
    b: &Map<K, Arc<T>>,
    mut found: impl FnMut(&K) -> bool,
) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    found(ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    found(kb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !(Arc::ptr_eq(va, vb) || ***va == ***vb) {
                        found(ka);
                    }
                    a.next();
                    b.next();
                }
            },
            (Some((ka, _)), None) => {
                found(ka);
                a.next();
            }
            (None, Some((kb, _))) => {
                found(kb);
                b.next();
            }
            (None, None) => return,
        }
    }
}

mod routes_only;

#[cfg(test)]
mod tests;
