//! End-to-end tooling for Serval: the echo backend ([`echo`]), the harness ([`harness`]) that
//! starts the real binaries on loopback, waits on their admin endpoints and kills them on drop, and
//! an HTTPS client with certificates ([`https`]), an OTLP trace receiver ([`otlp`]), a Kubernetes API emulator ([`kube_emulator`]) for the control plane's Kubernetes mode, and a
//! fleet simulator ([`fleet_sim`]) for the delta server at scale.

pub mod echo;
pub mod fleet_sim;
pub mod harness;
pub mod https;
pub mod kube_emulator;
pub mod kube_world;
pub mod load;
pub mod otlp;
