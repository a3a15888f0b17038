//! The compiled, immutable routing table of one listener socket: host → virtual host (exact, then
//! the longest wildcard suffix, then `*`), then the first route whose match holds.
//!
//! Built by `config::compile`; read per request. The host is a hash lookup ([`HostTable`]) and the
//! route a lookup in the virtual host's [`PathIndex`], so the cost does not grow with the number
//! of routes. No allocation on the lookup path.

pub mod host;
pub mod matching;
pub mod path_index;

use crate::{
    filters::{Filters, Redirect},
    upstream::Cluster,
};
use bytes::Bytes;
use http::Request;
use std::{sync::Arc, time::Duration};

pub use host::HostTable;
pub use matching::RouteMatch;
pub use path_index::PathIndex;

/// Virtual hosts with at most this many routes are scanned instead of looked up in the index.
const SCAN_LIMIT: usize = 4;

/// The routing table of one socket (cloned in O(1), see [`HostTable`]).
#[derive(Clone, Debug, Default)]
pub struct Router {
    /// Virtual hosts by domain pattern.
    pub hosts: HostTable<Arc<VirtualHost>>,
}

/// Routes for one host pattern, in precedence order.
#[derive(Debug)]
pub struct VirtualHost {
    /// The virtual host's name.
    pub name: String,
    /// The Gateway listener (`sectionName`) that owns this host pattern.
    pub listener: Arc<str>,
    /// Routes, first match wins (shared with the other virtual hosts they are in).
    pub routes: Vec<Arc<Route>>,
    /// The routes indexed by path.
    pub index: PathIndex,
}

impl VirtualHost {
    /// A virtual host owned by `listener`, with its path index.
    pub fn new(name: String, listener: Arc<str>, routes: Vec<Arc<Route>>) -> Self {
        let index = PathIndex::build(routes.iter().map(|r| r.matcher.path.as_ref()));
        Self {
            name,
            listener,
            routes,
            index,
        }
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// `route/<ns>/<kind>/<name>/rule/<i>/match/<j>`.
    pub name: String,
    /// `<namespace>/<name>` of the Gateway the route is attached to (empty if unknown).
    pub gateway: Arc<str>,
    /// Its metric labels (Gateway, route, kind, rule) and series handles.
    pub stats: Arc<crate::metrics::requests::RouteStats>,
    /// What a request must look like.
    pub matcher: RouteMatch,
    /// The rule's filters.
    pub filters: Filters,
    /// The rule's timeouts.
    pub timeouts: Timeouts,
    /// The rule's retry policy.
    pub retry: Option<RetryPolicy>,
    /// What to do with it.
    pub action: Action,
}

impl Route {
    /// The path prefix the route matches (without a trailing `/`), for `ReplacePrefixMatch`.
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.matcher.path {
            Some(matching::PathMatch::Prefix(p)) => Some(p),
            _ => None,
        }
    }
}

/// HTTPRouteTimeouts; `None` means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request, until the end of the response.
    pub request: Option<Duration>,
    /// Each attempt to a backend, until its response headers.
    pub backend_request: Option<Duration>,
}

/// HTTPRouteRetry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retried response codes.
    pub codes: Vec<http::StatusCode>,
    /// Retries allowed.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

/// What a route does.
#[derive(Debug)]
pub enum Action {
    /// Forward to one of the backends, picked by weight.
    Forward(WeightedBackends),
    /// Answer directly.
    Direct(DirectResponse),
    /// Answer with a redirect.
    Redirect(Redirect),
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
    /// `(cumulative weight, backend)`, ascending.
    pub cumulative: Vec<(u64, Backend)>,
    /// Sum of weights; 0 means no backend can be picked.
    pub total: u64,
}

/// One backendRef.
#[derive(Debug)]
pub struct Backend {
    /// Where requests that pick it go.
    pub target: Target,
    /// The backendRef's filters.
    pub filters: Filters,
}

/// Where a picked backend sends the request.
#[derive(Debug)]
pub enum Target {
    /// An upstream cluster.
    Cluster(Arc<Cluster>),
    /// A fixed answer (an invalid backendRef).
    Direct(DirectResponse),
    /// A redirect (a RequestRedirect filter on the backendRef).
    Redirect(Redirect),
}

impl Router {
    /// The route for a request to `host` (lower-case, without port).
    pub fn route<B>(&self, host: &str, req: &Request<B>) -> Option<&Route> {
        self.route_in(host, req).map(|(_, route)| route)
    }

    /// The route for a request to `host` with the virtual host it was found in.
    pub fn route_in<B>(&self, host: &str, req: &Request<B>) -> Option<(&VirtualHost, &Route)> {
        let vhost = self.hosts.get(host)?;
        let path = req.uri().path();
        let query = req.uri().query();
        let holds = |r: &Route| r.matcher.matches(req.method(), path, query, req.headers());
        // A short list is scanned: cheaper than the index's hash lookups.
        let route = if vhost.routes.len() <= SCAN_LIMIT {
            vhost.routes.iter().find(|r| holds(r))
        } else {
            let i = vhost.index.first(path, |i| holds(&vhost.routes[i]))?;
            vhost.routes.get(i)
        }?;
        Some((&**vhost, &**route))
    }
}

impl WeightedBackends {
    /// Picks a backend with probability weight / total; `None` when every weight is 0.
    pub fn pick(&self) -> Option<&Backend> {
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
