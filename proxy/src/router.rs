//! The compiled, immutable routing table of one listener socket: host → virtual host (exact, then
//! the longest wildcard suffix, then `*`), then the first route whose match holds.
//!
//! Built by `config::compile`; read per request. No allocation on the lookup path beyond
//! lower-casing the host when it has upper-case letters.

pub mod host;
pub mod matching;

use crate::upstream::Cluster;
use bytes::Bytes;
use http::Request;
use std::sync::Arc;

pub use host::HostTable;
pub use matching::RouteMatch;

/// The routing table of one socket.
#[derive(Debug, Default)]
pub struct Router {
    /// Virtual hosts by domain pattern.
    pub hosts: HostTable<Arc<VirtualHost>>,
}

/// Routes for one host pattern, in precedence order.
#[derive(Debug)]
pub struct VirtualHost {
    /// The virtual host's name.
    pub name: String,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// `route/<ns>/<kind>/<name>/rule/<i>/match/<j>`.
    pub name: String,
    /// What a request must look like.
    pub matcher: RouteMatch,
    /// What to do with it.
    pub action: Action,
}

/// What a route does.
#[derive(Debug)]
pub enum Action {
    /// Forward to one of the backends, picked by weight.
    Forward(WeightedBackends),
    /// Answer directly.
    Direct(DirectResponse),
}

/// A fixed answer.
#[derive(Clone, Debug)]
pub struct DirectResponse {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Body.
    pub body: Bytes,
}

/// Backends with weights; `total` is their sum.
#[derive(Debug)]
pub struct WeightedBackends {
    /// `(cumulative weight, target)`, ascending.
    pub cumulative: Vec<(u64, Target)>,
    /// Sum of weights; 0 means no backend can be picked.
    pub total: u64,
}

/// Where a picked backend sends the request.
#[derive(Debug)]
pub enum Target {
    /// An upstream cluster.
    Cluster(Arc<Cluster>),
    /// A fixed answer (an invalid backendRef).
    Direct(DirectResponse),
}

impl Router {
    /// The route for a request to `host` (lower-case, without port).
    pub fn route<B>(&self, host: &str, req: &Request<B>) -> Option<&Route> {
        let vhost = self.hosts.get(host)?;
        let path = req.uri().path();
        let query = req.uri().query();
        vhost
            .routes
            .iter()
            .find(|r| r.matcher.matches(req.method(), path, query, req.headers()))
    }
}

impl WeightedBackends {
    /// Picks a backend with probability weight / total; `None` when every weight is 0.
    pub fn pick(&self) -> Option<&Target> {
        if self.total == 0 {
            return None;
        }
        let n = fastrand::u64(0..self.total);
        self.cumulative
            .iter()
            .find(|(upto, _)| n < *upto)
            .map(|(_, t)| t)
    }
}
