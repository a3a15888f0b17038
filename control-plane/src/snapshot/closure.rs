//! The resources reachable from a proxy's Gateways: their Listeners, then everything those refer
//! to (Listener → RouteConfig → the AttachedRoutes that join it → Cluster →
//! ClusterLoadAssignment; later Secrets), transitively.
//!
//! This is how "a Secret goes only to proxies whose listeners use it" holds: nothing unreferenced
//! is ever in a view.

use super::{Scope, Versioned};
use serval_common::Resource;
use std::{collections::BTreeMap, sync::Arc};

/// Resources by name, with the names of the resources that join each (the reverse of
/// [`Resource::attaches_to`]).
#[derive(Debug)]
pub struct Graph<'a> {
    /// Every resource.
    pub all: &'a BTreeMap<String, Arc<Versioned>>,
    /// RouteConfig name → the AttachedRoutes joining it.
    pub joined_by: &'a BTreeMap<String, Vec<String>>,
}

/// The reverse index of [`Resource::attaches_to`] over `all`.
pub fn joined_by(all: &BTreeMap<String, Arc<Versioned>>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in all {
        for target in v.resource.attaches_to() {
            out.entry(target).or_default().push(name.clone());
        }
    }
    out
}

/// The closure of the Listeners in `scope` in `graph`.
pub fn closure(graph: &Graph<'_>, scope: &Scope) -> BTreeMap<String, Arc<Versioned>> {
    let mut out = BTreeMap::new();
    let mut pending: Vec<&str> = graph
        .all
        .iter()
        .filter(|(_, v)| match &*v.resource {
            Resource::Listener(l) => scope.covers(&l.gateway, &l.gateway_class),
            _ => false,
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let mut references = Vec::new();
    while let Some(name) = pending.pop() {
        if out.contains_key(name) {
            continue;
        }
        let Some((name, versioned)) = graph.all.get_key_value(name) else {
            continue;
        };
        references.clear();
        references.extend(versioned.resource.references());
        for reference in &references {
            if let Some((key, _)) = graph.all.get_key_value(reference.as_str()) {
                pending.push(key);
            }
        }
        if let Some(joining) = graph.joined_by.get(name) {
            pending.extend(joining.iter().map(String::as_str));
        }
        out.insert(name.clone(), Arc::clone(versioned));
    }
    out
}
