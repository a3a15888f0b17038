//! The client side of the delta protocol: connect with jittered backoff, announce the node and
//! what is held, then apply each response atomically and ACK or NACK it (DESIGN.md "The delta
//! protocol"). While disconnected the last configuration keeps serving.

pub mod apply;
pub mod client;
