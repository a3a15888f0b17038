//! Endpoint picking within a cluster: round robin (default) or random.

use super::{Cluster, Endpoint};
use std::sync::atomic::Ordering;

/// How a cluster picks an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Each endpoint in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
}

impl Cluster {
    /// The next endpoint, or `None` if the cluster has none.
    pub fn pick(&self) -> Option<&Endpoint> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let i = match self.lb {
            Policy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            Policy::Random => fastrand::usize(0..n),
        };
        self.endpoints.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Protocol;
    use std::sync::atomic::AtomicUsize;

    fn cluster(n: u16) -> Cluster {
        Cluster {
            backend: std::sync::Arc::from("ns/svc:80"),
            name: "c".into(),
            service: "ns/s".into(),
            protocol: Protocol::Http1,
            endpoints: (0..n)
                .map(|i| Endpoint {
                    addr: ([127, 0, 0, 1], 1000 + i).into(),
                    hostname: String::new(),
                })
                .collect(),
            lb: Policy::RoundRobin,
            cursor: AtomicUsize::new(0),
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let c = cluster(3);
        let ports: Vec<u16> = (0..6)
            .filter_map(|_| c.pick())
            .map(|e| e.addr.port())
            .collect();
        assert_eq!(ports, [1000, 1001, 1002, 1000, 1001, 1002]);
        assert!(cluster(0).pick().is_none());
    }
}
