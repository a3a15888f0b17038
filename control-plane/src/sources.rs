//! Where Gateway API and Kubernetes objects come from. Today: a folder of YAML files
//! ([`file`]); the Kubernetes watch source comes later and produces the same [`objects::Object`]s.
//!
//! Sources own nothing: they parse, report bad input, and hand complete object sets on.

pub mod file;
pub mod objects;
