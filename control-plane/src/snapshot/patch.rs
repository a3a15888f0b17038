//! A view patched from the previous snapshot's view of the same scope, when only AttachedRoutes,
//! Clusters and ClusterLoadAssignments changed (route and endpoint churn): the Listeners and
//! RouteConfigs in the view are then the ones it had, and membership of each changed resource —
//! and of what it refers to, before and after — is decided from the reverse indexes:
//! - an AttachedRoute is in the view when a RouteConfig it joins is;
//! - a Cluster when a resource in the view refers to it;
//! - a ClusterLoadAssignment when a Cluster in the view refers to it.
//!
//! Anything else (a Listener, a RouteConfig, a Secret changed, or a changed AttachedRoute that
//! joins a RouteConfig outside the view, or one only an AttachedRoute brought in) returns `None`, and the view is computed from scratch
//! ([`super::closure`]). The result equals the closure (tests check it over random changes).

use super::{Held, Versioned, closure::Graph};
use serval_common::{Resource, ResourceKind};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// The previous snapshot's computed views and what changed since.
#[derive(Debug)]
pub(super) struct Base {
    /// Views by scope.
    pub(super) views: std::collections::BTreeMap<super::Scope, Arc<super::View>>,
    /// Every name whose resource was added, changed or removed.
    pub(super) changed: Vec<Change>,
}

/// One changed name.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) name: String,
    pub(super) old: Option<Arc<Versioned>>,
    pub(super) new: Option<Arc<Versioned>>,
}

/// `before` brought up to `graph`, or `None` when the change is not one this handles.
pub(super) fn view(
    graph: Graph<'_>,
    before: &super::View,
    changed: &[Change],
) -> Option<Held<Arc<Versioned>>> {
    let mut routes = BTreeSet::new();
    let mut clusters = BTreeSet::new();
    let mut assignments = BTreeSet::new();
    for c in changed {
        for v in c.old.iter().chain(&c.new) {
            match v.resource.kind() {
                ResourceKind::AttachedRoute => routes.insert(c.name.as_str()),
                ResourceKind::Cluster => clusters.insert(c.name.as_str()),
                ResourceKind::ClusterLoadAssignment => assignments.insert(c.name.as_str()),
                ResourceKind::Listener | ResourceKind::RouteConfig | ResourceKind::Secret => {
                    return None;
                }
            };
        }
    }
    let mut view = before.resources.clone();
    let by_name: BTreeMap<&str, &Change> = changed.iter().map(|c| (c.name.as_str(), c)).collect();
    // What a changed resource referred to before may leave the view; what it refers to now may
    // join it.
    let old_of = |name: &str| match by_name.get(name) {
        Some(c) => c.old.clone(),
        None => before.resources.get(name).cloned(),
    };
    let mut referred: Vec<Arc<Versioned>> = Vec::new();
    // A RouteConfig in the view that no Listener in it names came in through an AttachedRoute
    // joining two Gateways; a changed route touching it may take it out again: not a patch.
    // (Listener names share their kind's prefix, so the view's Listeners are one range.)
    let prefix = format!("{}/", ResourceKind::Listener.prefix());
    let anchored: BTreeSet<String> = before
        .resources
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .filter(|(_, v)| matches!(&*v.resource, Resource::Listener(_)))
        .flat_map(|(_, v)| v.resource.references())
        .collect();
    let anchored = |rc: &str| anchored.contains(rc);
    for name in &routes {
        for v in old_of(name)
            .into_iter()
            .chain(graph.all.get(*name).cloned())
        {
            if v.resource
                .attaches_to()
                .iter()
                .any(|rc| view.contains_key(rc) && !anchored(rc))
            {
                return None;
            }
        }
    }
    for name in &routes {
        let now = graph.all.get(*name);
        let joins = now.is_some_and(|v| {
            v.resource
                .attaches_to()
                .iter()
                .any(|rc| view.contains_key(rc))
        });
        match now {
            Some(v) if joins => {
                // It would pull a RouteConfig outside the view in: not a patch.
                let outside = v.resource.references().into_iter().any(|r| {
                    graph.all.get(&r).is_some_and(|t| {
                        matches!(&*t.resource, Resource::RouteConfig(_)) && !view.contains_key(&r)
                    })
                });
                if outside {
                    return None;
                }
                view.insert((*name).to_owned(), Arc::clone(v));
            }
            _ => {
                view.remove(*name);
            }
        }
        referred.extend(old_of(name).into_iter().chain(now.cloned()));
    }
    let mut more: BTreeSet<String> = BTreeSet::new();
    for v in &referred {
        more.extend(v.resource.references());
    }
    let more_clusters: BTreeSet<String> = more
        .into_iter()
        .filter(|n| is_kind(graph, n, &by_name, ResourceKind::Cluster))
        .collect();
    let clusters: BTreeSet<String> = clusters
        .into_iter()
        .map(str::to_owned)
        .chain(more_clusters)
        .collect();
    let mut more_assignments: BTreeSet<String> = BTreeSet::new();
    for name in &clusters {
        for v in old_of(name).into_iter().chain(graph.all.get(name).cloned()) {
            more_assignments.extend(v.resource.references());
        }
        decide(graph, &mut view, name);
    }
    let assignments: BTreeSet<String> = assignments
        .into_iter()
        .map(str::to_owned)
        .chain(
            more_assignments
                .into_iter()
                .filter(|n| is_kind(graph, n, &by_name, ResourceKind::ClusterLoadAssignment)),
        )
        .collect();
    for name in &assignments {
        decide(graph, &mut view, name);
    }
    #[cfg(test)]
    PATCHED.with(|p| p.set(p.get() + 1));
    Some(view)
}

#[cfg(test)]
thread_local! {
    /// Views patched on this thread (tests check the path is taken).
    pub(super) static PATCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Puts `name` in the view when it exists and something in the view refers to it; else takes
/// it out.
fn decide(graph: Graph<'_>, view: &mut Held<Arc<Versioned>>, name: &str) {
    let referred = graph
        .referenced_by
        .get(name)
        .is_some_and(|by| by.iter().any(|r| view.contains_key(r)));
    match graph.all.get(name) {
        Some(v) if referred => {
            view.insert(name.to_owned(), Arc::clone(v));
        }
        _ => {
            view.remove(name);
        }
    }
}

/// True when `name` is (or was, if just removed) a resource of `kind`.
fn is_kind(
    graph: Graph<'_>,
    name: &str,
    changed: &BTreeMap<&str, &Change>,
    kind: ResourceKind,
) -> bool {
    graph
        .all
        .get(name)
        .map(|v| v.resource.kind() == kind)
        .or_else(|| {
            let old = changed.get(name)?.old.as_ref()?;
            Some(old.resource.kind() == kind)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
