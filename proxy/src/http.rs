//! The request path: load the configuration once, route by host then path, run the route's filters
//! (CORS, header changes, URL rewrite, mirrors), then its action: a direct response, a redirect, or
//! forwarding to a backend picked by weight (see [`crate::forward`]). The request timeout covers all
//! of it, up to the end of the response body.
//!
//! Errors become responses here (see [`crate::errors`]); nothing on this path panics or blocks.

use crate::{
    access_log::{self, AccessLog, Facts, RouteFacts},
    body::Inbound,
    config::ConfigStore,
    errors::{ProxyError, TimeoutKind},
    filters::{Filters, cors, redirect::RequestFacts},
    forward::{self, Outgoing, Policy},
    metrics::Metrics,
    router::{Action, DirectResponse, Route, Target},
    upstream::Upstream,
};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header, request::Parts};
use hyper::body::Incoming;
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

pub use crate::body::Body;

/// Mirrored requests in flight at most, per proxy; more are dropped.
pub const MAX_MIRRORS_IN_FLIGHT: usize = 1024;

/// What the request path needs; shared by every connection of a proxy.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub store: Arc<ConfigStore>,
    /// Upstream clients.
    pub upstream: Upstream,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Slots for mirrored requests in flight.
    pub mirror_slots: Arc<tokio::sync::Semaphore>,
    /// The access log (`--access-log`).
    pub access_log: AccessLog,
    /// Request spans, when tracing is on.
    pub spans: Option<crate::spans::Spans>,
}

impl Shared {
    /// Request-path state around a configuration store, without an access log.
    pub fn new(store: Arc<ConfigStore>, upstream: Upstream, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            upstream,
            metrics,
            mirror_slots: Arc::new(tokio::sync::Semaphore::new(MAX_MIRRORS_IN_FLIGHT)),
            access_log: AccessLog::off(),
            spans: None,
        }
    }

    /// The same, with request spans.
    pub fn with_spans(mut self, spans: Option<crate::spans::Spans>) -> Self {
        self.spans = spans;
        self
    }

    /// The same, writing the access log to `log`.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access_log = log;
        self
    }
}

/// Per-connection facts.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    /// The configured address of the socket (the key of `Config::listeners`).
    pub listener: SocketAddr,
    /// The client.
    pub peer: SocketAddr,
    /// The connection came through TLS (an HTTPS listener).
    pub tls: bool,
}

impl Connection {
    /// `https` on a TLS connection, else `http`: what redirects keep and `x-forwarded-proto`
    /// says.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Handles one request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Connection,
    req: Request<Incoming>,
) -> Response<Body> {
    let received = Arc::new(AtomicU64::new(0));
    let authority = request_authority(&req).unwrap_or_default();
    let span = shared.spans.as_ref().and_then(|spans| {
        spans.server(&crate::spans::Incoming {
            method: req.method(),
            version: req.version(),
            scheme: conn.scheme(),
            host: host_of_str(&authority),
            path: req.uri().path(),
            client: conn.peer,
            headers: req.headers(),
        })
    });
    let arrived = shared.access_log.is_on().then(|| {
        access_log::Request::arrived(
            req.method(),
            req.version(),
            &authority,
            req.uri().path(),
            req.headers(),
            conn.peer,
            Arc::clone(&received),
        )
        .with_trace_id(span.as_ref().map(crate::spans::ServerSpan::trace_id))
    });
    let metered = access_log::Metered {
        metrics: Arc::clone(&shared.metrics),
        arrived: Instant::now(),
        received: Arc::clone(&received),
    };
    // Dropped with this future if the client goes away first: then it records the request itself.
    let mut in_flight = access_log::InFlight::new(&shared.access_log, arrived, Some(metered));
    in_flight.facts.span = span;
    let req = req.map(|body| Inbound::new(body, Some(received)));
    let result = proxy(&shared, conn, req, &mut in_flight.facts).await;
    let response = result.unwrap_or_else(|error| {
        let trace_id = in_flight
            .facts
            .span
            .as_ref()
            .map(crate::spans::ServerSpan::trace_id);
        error_response(&error, trace_id.as_deref())
    });
    shared.metrics.record_response(response.status());
    in_flight.respond(response)
}

/// The response for a request that failed, logged by who is at fault.
fn error_response(error: &ProxyError, trace_id: Option<&str>) -> Response<Body> {
    let trace_id = trace_id.unwrap_or_default();
    match error.source() {
        crate::errors::ErrorSource::Upstream => {
            tracing::warn!(%error, trace_id, "upstream error");
        }
        _ => tracing::debug!(%error, trace_id, "request not forwarded"),
    }
    text_response(error.status(), error.public_message().to_owned())
}

async fn proxy(
    shared: &Shared,
    conn: Connection,
    req: Request<Inbound>,
    log_facts: &mut Facts,
) -> Result<Response<Body>, ProxyError> {
    let config = shared.store.load();
    let listener = config
        .listeners
        .get(&conn.listener)
        .ok_or(ProxyError::NoListener)?;
    let authority =
        request_authority(&req).ok_or_else(|| ProxyError::BadRequest("no host".into()))?;
    let host = host_of(&authority);
    let (vhost, route) =
        listener
            .router
            .route_in(&host, &req)
            .ok_or_else(|| ProxyError::NoRoute {
                host: host.clone(),
                path: req.uri().path().to_owned(),
            })?;
    log_facts.series.route = Arc::clone(&route.stats.id);
    log_facts.route_stats = Some(Arc::clone(&route.stats));
    if let Some(span) = &mut log_facts.span {
        span.routed(&route.stats.id, &vhost.listener);
    }
    log_facts.series.listener = Arc::clone(&vhost.listener);
    if log_facts.enabled {
        log_facts.route = Some(RouteFacts {
            name: route.name.clone(),
            gateway: Arc::clone(&route.gateway),
        });
    }
    let Some(limit) = route.timeouts.request else {
        return serve_route(shared, conn, route, authority, req, log_facts).await;
    };
    let deadline = tokio::time::Instant::now() + limit;
    let served = serve_route(shared, conn, route, authority, req, log_facts);
    match tokio::time::timeout_at(deadline, served).await {
        Ok(response) => response.map(|r| r.map(|b| crate::body::Deadline::wrap(b, deadline))),
        Err(_) => {
            shared.metrics.record_timeout("request");
            Err(ProxyError::Timeout {
                kind: TimeoutKind::Request,
            })
        }
    }
}

/// Runs `route` for a request: filters, then the action.
async fn serve_route(
    shared: &Shared,
    conn: Connection,
    route: &Route,
    mut authority: String,
    req: Request<Inbound>,
    log_facts: &mut Facts,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let mut cors_headers = None;
    if let Some(policy) = &route.filters.cors {
        match policy.decide(&parts.method, &parts.headers) {
            cors::Decision::Preflight(headers) => {
                let mut response = Response::new(crate::body::empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                cors::add_headers(response.headers_mut(), headers);
                return Ok(respond(&route.filters, None, response));
            }
            cors::Decision::Actual(headers) => cors_headers = Some(headers),
            cors::Decision::None => {}
        }
    }
    let prefix = route.matched_prefix();
    apply_request_filters(&route.filters, &mut parts, &mut authority, prefix)?;
    let port = conn.listener.port();
    let scheme = conn.scheme();
    let facts = |parts, authority| request_facts(parts, authority, (scheme, port), prefix);
    let response = match &route.action {
        Action::Direct(d) => direct(d),
        Action::Redirect(r) => redirect_response(r.status, &r.location(facts(&parts, &authority))),
        Action::Forward(backends) => {
            let backend = backends.pick().ok_or_else(|| ProxyError::NoBackend {
                route: route.name.clone(),
            })?;
            match &backend.target {
                Target::Direct(d) => direct(d),
                Target::Redirect(r) => {
                    redirect_response(r.status, &r.location(facts(&parts, &authority)))
                }
                Target::Cluster(cluster) => {
                    log_facts.series.backend = Arc::clone(&cluster.backend);
                    if let Some(span) = &mut log_facts.span {
                        span.backend(&cluster.backend);
                    }
                    apply_request_filters(&backend.filters, &mut parts, &mut authority, prefix)?;
                    let mirrors = route
                        .filters
                        .mirrors
                        .iter()
                        .chain(&backend.filters.mirrors)
                        .filter(|m| m.sampled())
                        .collect();
                    let policy = Policy {
                        backend_timeout: route.timeouts.backend_request,
                        retry: route.retry.as_ref(),
                        mirrors,
                    };
                    let out = Outgoing {
                        parts,
                        authority,
                        body,
                    };
                    let response =
                        forward::forward(shared, conn, out, cluster, policy, log_facts).await?;
                    respond(&backend.filters, None, response)
                }
            }
        }
    };
    Ok(respond(&route.filters, cors_headers, response))
}

/// What a redirect needs from the request.
fn request_facts<'a>(
    parts: &'a Parts,
    authority: &'a str,
    (scheme, listener_port): (&'static str, u16),
    matched_prefix: Option<&'a str>,
) -> RequestFacts<'a> {
    RequestFacts {
        scheme,
        host: host_of_str(authority),
        listener_port,
        path: parts.uri.path(),
        query: parts.uri.query(),
        matched_prefix,
    }
}

/// Applies a rule's or backend's request header changes and URL rewrite.
fn apply_request_filters(
    filters: &Filters,
    parts: &mut Parts,
    authority: &mut String,
    matched_prefix: Option<&str>,
) -> Result<(), ProxyError> {
    if let Some(m) = &filters.request_headers {
        m.apply(&mut parts.headers);
    }
    let Some(rewrite) = &filters.url_rewrite else {
        return Ok(());
    };
    if let Some(hostname) = &rewrite.hostname {
        hostname.clone_into(authority);
    }
    if let Some(path) = &rewrite.path {
        let mut new = path.apply(parts.uri.path(), matched_prefix);
        if let Some(q) = parts.uri.query() {
            new.push('?');
            new.push_str(q);
        }
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query =
            Some(new.parse().map_err(|_| {
                ProxyError::BadRequest(format!("rewritten path {new:?} is invalid"))
            })?);
        parts.uri = Uri::from_parts(uri).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    }
    Ok(())
}

/// Applies response header changes and CORS headers to a response.
fn respond(
    filters: &Filters,
    cors_headers: Option<http::HeaderMap>,
    mut response: Response<Body>,
) -> Response<Body> {
    if let Some(m) = &filters.response_headers {
        m.apply(response.headers_mut());
    }
    if let Some(headers) = cors_headers {
        cors::add_headers(response.headers_mut(), headers);
    }
    response
}

fn redirect_response(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// The authority the client asked for: the URI's (HTTP/2, absolute-form) or the Host header.
fn request_authority<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

/// The host part of an authority, without port (IPv6 literals keep their brackets).
fn host_of_str(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Lower-cased host without port.
fn host_of(authority: &str) -> String {
    host_of_str(authority).to_ascii_lowercase()
}

fn direct(d: &DirectResponse) -> Response<Body> {
    let mut resp = Response::new(crate::body::full(d.body.clone()));
    *resp.status_mut() = d.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: String) -> Response<Body> {
    direct(&DirectResponse {
        status,
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        assert_eq!(host_of("Foo.COM:8080"), "foo.com");
        assert_eq!(host_of("foo.com"), "foo.com");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
    }
}
