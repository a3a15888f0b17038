//! End-to-end tooling for Serval: the echo backend ([`echo`]), the harness ([`harness`]) that
//! starts the real binaries on loopback, waits on their admin endpoints and kills them on drop, and
//! a Kubernetes API emulator ([`kube_emulator`]) for the control plane's Kubernetes mode.

pub mod echo;
pub mod harness;
pub mod kube_emulator;
pub mod kube_world;
pub mod load;
