//! Where Gateway API and Kubernetes objects come from: a folder of YAML files ([`file`]) or the
//! Kubernetes API ([`kubernetes`]). Both produce the same [`objects::Object`]s and publish complete
//! object sets ([`SourceState`]) for translation.
//!
//! Sources own nothing downstream: they read, report bad input, and hand complete object sets on.

pub mod file;
pub mod kubernetes;
pub mod objects;

use objects::{Object, ObjectRef};
use std::{collections::BTreeMap, time::Duration};

/// What a source currently holds.
#[derive(Debug, Default)]
pub struct SourceState {
    /// Every object (files: the last good version of files that now fail, in file then document
    /// order; Kubernetes: by kind, namespace, name).
    pub objects: Vec<Object>,
    /// One message per file that currently fails to read or parse (file source only).
    pub errors: Vec<String>,
    /// Notes about skipped documents.
    pub skipped: Vec<String>,
    /// Kubernetes only: the `resourceVersion` and raw `status` the API server holds, for every
    /// object whose newest version decoded (an object whose newest version does not decode has
    /// none, so no status is written over it).
    pub observed: BTreeMap<ObjectRef, ObservedStatus>,
    /// Kubernetes only: counts the changes that can affect configuration; changes that touched
    /// only the status (and resourceVersion) of GatewayClasses, Gateways and routes — typically the
    /// echo of Serval's own status writes — leave it as it is. A state whose generation was already
    /// translated needs no translation (states are coalesced, so a skipped state never hides a
    /// configuration change: the generation covers every change before it).
    pub config_generation: u64,
    /// When the earliest change this state carries was received (`None` for a first listing or
    /// a resync): convergence is measured from here.
    pub observed_at: Option<std::time::Instant>,
}

/// What the API server holds of one object: its `resourceVersion` and its `status` exactly as
/// served (fields Serval's types do not know included); `null` when it has no status.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedStatus {
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `status`, raw.
    pub status: serde_json::Value,
}

/// Timing of reloads (file source) and of translations after changes (both sources).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Quiet time after the last change before publishing.
    pub debounce: Duration,
    /// Longest a publish waits while changes keep arriving.
    pub max_delay: Duration,
    /// Re-read this often even without events (file source only).
    pub resync: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            resync: Duration::from_secs(10),
        }
    }
}
