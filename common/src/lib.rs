//! Shared by both Serval binaries: the generated protocol types, the one naming scheme for
//! resources, content-hash versions, and the telemetry, admin, readiness and shutdown plumbing.
//!
//! This crate holds no policy: it does not translate Gateway API objects (the control plane does)
//! and does not route traffic (the proxy does).

pub mod admin;
pub mod hostname;
pub mod memory;
pub mod names;
pub mod proto;
pub mod readiness;
pub mod resource;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod validate;
pub mod version;

pub use resource::{Resource, ResourceKind};
pub use version::{SnapshotVersion, Version};

/// The Gateway API controller name Serval answers to.
pub const CONTROLLER_NAME: &str = "serval.dev/gateway-controller";

/// Version of the Serval binaries, sent to the control plane as `Node.build_version`.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
