//! The Serval control plane.
//!
//! ```text
//!  sources (file) ──► translate (pure fn) ──► snapshot ──► xds (delta server) ══gRPC══► proxies
//!  watch + debounce   Gateway API → config     content-      per-stream acked
//!                     resources + status       hashed        versions, nonces
//!                          │
//!                          └──► status (GET /status on the admin server)
//! ```
//!
//! `standalone` wires these together with an in-process proxy (see [`standalone`]).

pub mod access;
pub mod admin;
pub mod args;
pub mod certgen;
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod proxy_status;
pub mod rollout_trace;
pub mod servers;
pub mod snapshot;
pub mod sources;
pub mod standalone;
pub mod status_writer;
pub mod translate;
pub mod xds;
