//! The server side of the delta protocol (`serval.discovery.v1.ConfigDiscovery/DeltaConfig`),
//! following DESIGN.md "The delta protocol":
//!
//! - the first request carries `node` and `initial_resource_versions`; the server answers with
//!   only the difference ([`stream`]);
//! - every response carries a fresh `nonce`; a request echoing it without `error_detail` is an
//!   ACK, with `error_detail` a NACK;
//! - at most one response is unacknowledged per stream; snapshots that arrive meanwhile coalesce
//!   into the next response;
//! - after a NACK the same view version is never resent;
//! - a proxy receives only the resources its Gateways need ([`crate::snapshot::closure`]).
//!
//! [`server`] does the gRPC plumbing and runs one task per stream; [`stream`] is the pure state
//! machine, tested without gRPC; [`fleet`] records every stream for the admin service, the
//! convergence metric and the NACKs shown on Gateway status.

pub mod fleet;
pub mod framing;
pub mod server;
pub mod stream;
pub mod tls;
