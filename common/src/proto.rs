//! Generated protobuf types of `proto/`: the delta protocol (`discovery::v1`), the configuration
//! resources (`config::v1`, with proto3 JSON serde impls) and the admin service (`admin::v1`).
//!
//! Nothing here is hand-written beyond the module tree; domain code converts these wire types into
//! its own types at the boundary.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `serval.config.v1`: the resource types a proxy is configured with.
pub mod config {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/serval.config.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/serval.config.v1.serde.rs"));
    }
}

/// `serval.discovery.v1`: the delta configuration protocol.
pub mod discovery {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/serval.discovery.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/serval.discovery.v1.serde.rs"));
    }
}

/// `serval.admin.v1`: the control plane's debug service.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/serval.admin.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/serval.admin.v1.serde.rs"));
    }
}

/// Encoded `FileDescriptorSet` of every Serval proto (and its imports), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/serval_descriptor.bin"));
