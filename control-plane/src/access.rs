//! What the control plane asks of the Kubernetes API server, as RBAC rules: derived from the watched
//! kinds, the status writer and the leader elector, so the ClusterRole and Role in `manifests/` can
//! be checked against it (they must grant exactly this).
//!
//! Discovery (`/api`, `/apis`) needs no grant: every authenticated client may read it.

use crate::sources::kubernetes::kinds::{LEASE, STATUS_VERB, WATCH_VERBS, WATCHED};
use std::collections::BTreeSet;

/// Where a grant applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every namespace (a ClusterRole).
    Cluster,
    /// Only the control plane's own namespace (a Role).
    OwnNamespace,
}

/// One verb on one resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// Where.
    pub scope: Scope,
    /// API group (`""` for core).
    pub group: String,
    /// Resource, with `/status` for the status subresource.
    pub resource: String,
    /// Verb.
    pub verb: String,
}

impl Grant {
    fn new(scope: Scope, group: &str, resource: &str, verb: &str) -> Self {
        Self {
            scope,
            group: group.to_owned(),
            resource: resource.to_owned(),
            verb: verb.to_owned(),
        }
    }
}

/// Every grant the control plane needs, and nothing more.
pub fn required() -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for kind in WATCHED {
        for verb in WATCH_VERBS {
            grants.insert(Grant::new(Scope::Cluster, kind.group, kind.plural, verb));
        }
        if kind.writes_status {
            let status = format!("{}/status", kind.plural);
            grants.insert(Grant::new(Scope::Cluster, kind.group, &status, STATUS_VERB));
        }
    }
    let (group, resource, verbs) = LEASE;
    for verb in verbs {
        grants.insert(Grant::new(Scope::OwnNamespace, group, resource, verb));
    }
    grants
}
