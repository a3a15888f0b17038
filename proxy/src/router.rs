//! The compiled, immutable routing table of one listener socket: host → virtual host (exact, then
//! the longest wildcard suffix, then `*`), then the first route whose match holds.
//!
//! Built by `config::compile`; read per request. No allocation on the lookup path beyond
//! lower-casing the host when it has upper-case letters.

pub mod host;
pub mod matching;

use crate::{
    filters::{Filters, Redirect},
    upstream::Cluster,
};
use bytes::Bytes;
use http::Request;
use std::{sync::Arc, time::Duration};

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
