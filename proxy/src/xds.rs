//! The client side of the delta protocol: connect with jittered backoff (plaintext or mutual TLS,
//! [`tls`]), announce the node and what is held, then apply each response atomically and ACK or
//! NACK it (DESIGN.md "The delta protocol"). While disconnected the last configuration keeps
//! serving; with `--config-cache` it survives a restart too ([`cache`]).

pub mod apply;
pub mod cache;
pub mod client;
pub mod tls;
