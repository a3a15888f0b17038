//! HTTPRoute filters as the proxy runs them: header modifiers, redirects, URL rewrites, mirrors and
//! CORS, compiled from `serval.config.v1.Filters` by `config::compile`.
//!
//! Order on the request path (see `http`): CORS (a preflight is answered), request headers, URL
//! rewrite, mirrors, then the route's action; response headers on the way back. Backend-level
//! filters run after the rule's.

pub mod cors;
pub mod headers;
pub mod path;
pub mod redirect;

use crate::upstream::Cluster;
use std::sync::Arc;

pub use cors::CorsPolicy;
pub use headers::HeaderModifier;
pub use path::PathModifier;
pub use redirect::Redirect;

/// The filters of a rule or a backendRef.
#[derive(Debug, Default)]
pub struct Filters {
    /// RequestHeaderModifier.
    pub request_headers: Option<HeaderModifier>,
    /// ResponseHeaderModifier.
    pub response_headers: Option<HeaderModifier>,
    /// URLRewrite.
    pub url_rewrite: Option<UrlRewrite>,
    /// RequestMirror filters.
    pub mirrors: Vec<Mirror>,
    /// CORS.
    pub cors: Option<CorsPolicy>,
}

/// A compiled URL rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// New Host, if any.
    pub hostname: Option<String>,
    /// Path change, if any.
    pub path: Option<PathModifier>,
}

/// A compiled request mirror.
#[derive(Debug)]
pub struct Mirror {
    /// Where copies go.
    pub cluster: Arc<Cluster>,
    /// Mirrored share: numerator / denominator.
    pub numerator: u32,
    /// Denominator of the share (never 0).
    pub denominator: u32,
}

impl Mirror {
    /// Whether this request is mirrored.
    pub fn sampled(&self) -> bool {
        self.numerator >= self.denominator || fastrand::u32(0..self.denominator) < self.numerator
    }
}
