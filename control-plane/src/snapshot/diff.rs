//! The difference between what a proxy holds and a view: resources to send (new or changed
//! version) and names to remove. Pure; the delta server decides when to send it, and
//! [`super::View::delta_from`] shares one between the proxies that hold the same view.

use super::{Versioned, View};
use imbl::ordmap::DiffItem;
use serval_common::Version;
use std::{collections::BTreeMap, sync::Arc};

/// What a response must carry to bring a proxy from what it holds to a view.
#[derive(Debug, Default)]
pub struct Delta {
    /// Resources whose version differs from the held one, or that are not held, by name.
    pub upserts: Vec<(String, Arc<Versioned>)>,
    /// Held names the view does not have.
    pub removals: Vec<String>,
}

impl Delta {
    /// True if nothing would change.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// `held` (name → version) → `view`.
pub fn diff(held: &BTreeMap<String, Version>, view: &View) -> Delta {
    let upserts = view
        .resources
        .iter()
        .filter(|(name, v)| held.get(*name) != Some(&v.version))
        .map(|(name, v)| (name.clone(), Arc::clone(v)))
        .collect();
    let removals = held
        .keys()
        .filter(|name| !view.resources.contains_key(*name))
        .cloned()
        .collect();
    Delta { upserts, removals }
}

/// `held` → `view`, both views: the diff of two persistent maps, which skips the parts they
/// share (a view patched from the one held shares all but the change).
pub fn between(held: &View, view: &View) -> Delta {
    let mut delta = Delta::default();
    if held.version == view.version {
        return delta;
    }
    for item in held.resources.diff(&view.resources) {
        match item {
            DiffItem::Add(name, v) | DiffItem::Update { new: (name, v), .. } => {
                delta.upserts.push((name.clone(), Arc::clone(v)));
            }
            DiffItem::Remove(name, _) => delta.removals.push(name.clone()),
        }
    }
    delta
}
