//! The resources reachable from a proxy's Gateways: their Listeners, then everything those refer
//! to (Listener → RouteConfig → the AttachedRoutes that join it → Cluster →
//! ClusterLoadAssignment; later Secrets), transitively.
//!
//! This is how "a Secret goes only to proxies whose listeners use it" holds: nothing unreferenced
//! is ever in a view.

use super::{Held, Index, Scope, Versioned};
use serval_common::Resource;
use std::sync::Arc;

/// Resources by name, with the reverse indexes: the names of the resources that join each (the
/// reverse of [`Resource::attaches_to`]) and that refer to each (of [`Resource::references`]).
#[derive(Clone, Copy, Debug)]
pub struct Graph<'a> {
    /// Every resource.
    pub all: &'a Held<Arc<Versioned>>,
    /// RouteConfig name → the AttachedRoutes joining it.
    pub joined_by: &'a Index,
    /// Name → the resources referring to it.
    pub referenced_by: &'a Index,
}

/// The closure of the Listeners in `scope` in `graph`.
pub fn closure(graph: &Graph<'_>, scope: &Scope) -> Held<Arc<Versioned>> {
    let mut out = Held::new();
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
