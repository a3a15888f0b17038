//! Errors on the request path, each mapped to the HTTP status the client sees and tagged with who
//! is at fault (pingora's `ErrorSource`).

use http::StatusCode;

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself (bad host, no route).
    Downstream,
    /// The backend (connection refused, reset).
    Upstream,
    /// Configuration (invalid backends).
    Internal,
}

/// A request that could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No listener configuration for the socket (it is being removed).
    #[error("no listener configuration for this socket")]
    NoListener,
    /// No virtual host or route matched.
    #[error("no route matches host {host:?} path {path:?}")]
    NoRoute {
        /// Request host.
        host: String,
        /// Request path.
        path: String,
    },
    /// Every backend of the rule has weight 0 or is invalid.
    #[error("route {route}: no valid backend")]
    NoBackend {
        /// Route name.
        route: String,
    },
    /// The cluster has no ready endpoint.
    #[error("cluster {cluster}: no ready endpoints")]
    NoEndpoints {
        /// Cluster name.
        cluster: String,
    },
    /// Connecting to or talking to the endpoint failed.
    #[error("cluster {cluster}: endpoint {endpoint}: {source}")]
    Upstream {
        /// Cluster name.
        cluster: String,
        /// Endpoint address.
        endpoint: std::net::SocketAddr,
        /// The client error.
        #[source]
        source: crate::upstream::h2::Error,
    },
    /// The request could not be rewritten for the upstream.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A route timeout ran out.
    #[error("{kind} timeout reached")]
    Timeout {
        /// Which timeout.
        kind: TimeoutKind,
    },
}

/// The HTTPRoute timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// `timeouts.request`: the whole request.
    Request,
    /// `timeouts.backendRequest`: one attempt to a backend.
    BackendRequest,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::BackendRequest => "backend request",
        })
    }
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoListener | Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::NoBackend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // As Envoy: a connection that failed or was reset before a response is 503.
            Self::Upstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The body the client gets: no cluster names or endpoint addresses (those go to the log).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::NoListener | Self::NoRoute { .. } => "no route\n",
            Self::NoBackend { .. } => "no valid backend\n",
            Self::NoEndpoints { .. } => "no healthy upstream\n",
            Self::Upstream { .. } => "upstream connect error\n",
            Self::BadRequest(_) => "bad request\n",
            Self::Timeout { .. } => "upstream request timeout\n",
        }
    }

    /// Who is at fault.
    pub fn source(&self) -> ErrorSource {
        match self {
            Self::NoListener | Self::NoRoute { .. } | Self::BadRequest(_) => {
                ErrorSource::Downstream
            }
            Self::NoBackend { .. } => ErrorSource::Internal,
            Self::NoEndpoints { .. } | Self::Upstream { .. } | Self::Timeout { .. } => {
                ErrorSource::Upstream
            }
        }
    }

    /// Whether the backend was not reached or dropped the connection before answering; such
    /// requests are retried by a route's retry policy.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Upstream { .. })
    }
}
