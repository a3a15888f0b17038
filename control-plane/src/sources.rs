//! Where Gateway API and Kubernetes objects come from: a folder of YAML files ([`file`]) or the
//! Kubernetes API ([`kubernetes`]). Both produce the same [`objects::Object`]s and publish complete
//! object sets ([`SourceState`]) for translation.
//!
//! Sources own nothing downstream: they read, report bad input, and hand complete object sets on.

pub mod file;
pub mod kubernetes;
pub mod objects;

use objects::Object;
use std::time::Duration;

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
