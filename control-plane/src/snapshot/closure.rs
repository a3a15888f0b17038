//! The resources reachable from a proxy's Gateways: their Listeners, then everything those refer to
//! (RouteConfig → Cluster → ClusterLoadAssignment; later Secrets), transitively.
//!
//! This is how "a Secret goes only to proxies whose listeners use it" holds: nothing unreferenced
//! is ever in a view.

use super::Versioned;
use serval_common::Resource;
use std::{collections::BTreeMap, sync::Arc};

/// The closure of the Listeners of `gateways` (empty: every Listener) in `all`.
pub fn closure(
    all: &BTreeMap<String, Arc<Versioned>>,
    gateways: &[String],
) -> BTreeMap<String, Arc<Versioned>> {
    let mut out = BTreeMap::new();
    let mut pending: Vec<String> = all
        .iter()
        .filter(|(_, v)| match &v.resource {
            Resource::Listener(l) => gateways.is_empty() || gateways.contains(&l.gateway),
            _ => false,
        })
        .map(|(name, _)| name.clone())
        .collect();
    while let Some(name) = pending.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(versioned) = all.get(&name) else {
            continue;
        };
        pending.extend(versioned.resource.references());
        out.insert(name, Arc::clone(versioned));
    }
    out
}
