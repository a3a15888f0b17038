//! End-to-end tooling for Serval: the echo backend ([`echo`]) and the harness ([`harness`]) that
//! starts the real binaries on loopback, waits on their admin endpoints and kills them on drop.

pub mod echo;
pub mod harness;
pub mod load;
