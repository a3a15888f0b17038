//! Snapshots: the immutable, content-versioned set of every resource translate produced, and the
//! per-proxy [`View`] of it (only what the proxy's Gateways need).
//!
//! A snapshot is published through a `watch` channel as an `Arc<Snapshot>`; nothing mutates it.

pub mod closure;
pub mod diff;

use pbjson_types::Any;
use serval_common::{Resource, SnapshotVersion, Version};
use std::{collections::BTreeMap, sync::Arc};

/// One resource with its version and its wire form, encoded once per snapshot.
#[derive(Debug)]
pub struct Versioned {
    /// The resource.
    pub resource: Resource,
    /// Hash of its encoded payload.
    pub version: Version,
    /// Its payload as sent.
    pub any: Any,
}

/// Every resource, by name.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Hash of the sorted (name, version) pairs.
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: BTreeMap<String, Arc<Versioned>>,
}

impl Snapshot {
    /// Versions and encodes `resources`.
    pub fn new(resources: BTreeMap<String, Resource>) -> Self {
        let resources: BTreeMap<String, Arc<Versioned>> = resources
            .into_iter()
            .map(|(name, resource)| {
                let payload = resource.encode_payload();
                let versioned = Versioned {
                    version: Version::of_bytes(&payload),
                    any: Any {
                        type_url: resource.kind().type_url(),
                        value: payload.into(),
                    },
                    resource,
                };
                (name, Arc::new(versioned))
            })
            .collect();
        Self {
            version: version_of(&resources),
            resources,
        }
    }

    /// The resources a proxy serving `gateways` (`namespace/name`; empty: all) needs.
    pub fn view(&self, gateways: &[String]) -> View {
        let resources = closure::closure(&self.resources, gateways);
        View {
            version: version_of(&resources),
            resources,
        }
    }
}

/// The part of a snapshot one proxy receives.
#[derive(Debug)]
pub struct View {
    /// Hash of the view's sorted (name, version) pairs.
    pub version: SnapshotVersion,
    /// Resources by name.
    pub resources: BTreeMap<String, Arc<Versioned>>,
}

fn version_of(resources: &BTreeMap<String, Arc<Versioned>>) -> SnapshotVersion {
    SnapshotVersion::of(resources.iter().map(|(n, v)| (n.as_str(), &v.version)))
}
