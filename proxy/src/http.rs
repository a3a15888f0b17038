//! The request path: load the configuration once, route by host then path, pick a backend by
//! weight and an endpoint by the cluster's policy, rewrite the request (hop-by-hop headers out,
//! `Host` kept, `X-Forwarded-For`/`-Proto` added) and stream it to the endpoint.
//!
//! Errors become responses here (see [`crate::errors`]); nothing on this path panics or blocks.

use crate::{
    config::ConfigStore,
    errors::ProxyError,
    metrics::Metrics,
    router::{Action, DirectResponse, Target},
    upstream::{Protocol, Upstream},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, Version, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use std::{net::SocketAddr, sync::Arc};

/// Body type on both sides of the proxy.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// What the request path needs; shared by every connection of a proxy.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub store: Arc<ConfigStore>,
    /// Upstream clients.
    pub upstream: Upstream,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Per-connection facts.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    /// The configured address of the socket (the key of `Config::listeners`).
    pub listener: SocketAddr,
    /// The client.
    pub peer: SocketAddr,
}

/// Handles one request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Connection,
    req: Request<Incoming>,
) -> Response<Body> {
    let result = proxy(&shared, conn, req).await;
    let response = result.unwrap_or_else(|error| {
        let status = error.status();
        match error.source() {
            crate::errors::ErrorSource::Upstream => tracing::warn!(%error, "upstream error"),
            _ => tracing::debug!(%error, "request not forwarded"),
        }
        text_response(status, error.public_message().to_owned())
    });
    shared.metrics.record_response(response.status());
    response
}

async fn proxy(
    shared: &Shared,
    conn: Connection,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let config = shared.store.load();
    let listener = config
        .listeners
        .get(&conn.listener)
        .ok_or(ProxyError::NoListener)?;
    let authority =
        request_authority(&req).ok_or_else(|| ProxyError::BadRequest("no host".into()))?;
    let host = host_of(&authority);
    let route = listener
        .router
        .route(&host, &req)
        .ok_or_else(|| ProxyError::NoRoute {
            host: host.clone(),
            path: req.uri().path().to_owned(),
        })?;
    let backends = match &route.action {
        Action::Direct(d) => return Ok(direct(d)),
        Action::Forward(backends) => backends,
    };
    let cluster = match backends.pick() {
        None => {
            return Err(ProxyError::NoBackend {
                route: route.name.clone(),
            });
        }
        Some(Target::Direct(d)) => return Ok(direct(d)),
        Some(Target::Cluster(c)) => Arc::clone(c),
    };
    let endpoint = cluster.pick().ok_or_else(|| ProxyError::NoEndpoints {
        cluster: cluster.name.clone(),
    })?;
    let endpoint_addr = endpoint.addr;
    let upstream_req = rewrite(req, &authority, endpoint_addr, cluster.protocol, conn.peer)?;
    let response = shared
        .upstream
        .send(cluster.protocol, endpoint_addr, upstream_req)
        .await
        .map_err(|source| ProxyError::Upstream {
            cluster: cluster.name.clone(),
            endpoint: endpoint_addr,
            source,
        })?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
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

/// Lower-cased host without port (IPv6 literals keep their brackets).
fn host_of(authority: &str) -> String {
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .to_owned()
            + "]"
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned()
    };
    host.to_ascii_lowercase()
}

fn rewrite(
    req: Request<Incoming>,
    authority: &str,
    endpoint: SocketAddr,
    protocol: Protocol,
    peer: SocketAddr,
) -> Result<Request<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // HTTP/1.1: the URI names the endpoint (the pooled client connects there) and Host carries the
    // client's authority. HTTP/2: `:authority` (from the URI) carries it and Host is dropped, as
    // RFC 9113 §8.3.1 wants them to agree; the pool connects to the endpoint.
    let uri_authority = match protocol {
        Protocol::Http1 => endpoint.to_string(),
        Protocol::H2c => authority.to_owned(),
    };
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(uri_authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    parts.version = match protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::H2c => Version::HTTP_2,
    };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    match protocol {
        Protocol::Http1 => {
            let host = HeaderValue::from_str(authority)
                .map_err(|_| ProxyError::BadRequest("invalid host".into()))?;
            headers.insert(header::HOST, host);
        }
        Protocol::H2c => {
            headers.remove(header::HOST);
        }
    }
    append_forwarded_for(headers, peer);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    Ok(Request::from_parts(parts, body.boxed()))
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    // Several header lines are one list (RFC 9110 §5.3).
    let prior: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, including those named in `Connection`.
/// `TE: trailers` is kept, as gRPC needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn direct(d: &DirectResponse) -> Response<Body> {
    let mut resp = Response::new(full(d.body.clone()));
    *resp.status_mut() = d.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A plain-text response.
pub fn text_response(status: http::StatusCode, body: String) -> Response<Body> {
    direct(&DirectResponse {
        status,
        body: Bytes::from(body),
    })
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-keep"]);
        assert_eq!(
            h.get(header::TE).map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
    }

    #[test]
    fn forwarded_for_appends() {
        let peer: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, peer);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"10.0.0.1"[..])
        );
        append_forwarded_for(&mut h, peer);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"10.0.0.1, 10.0.0.1"[..])
        );
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host_of("Foo.COM:8080"), "foo.com");
        assert_eq!(host_of("foo.com"), "foo.com");
        assert_eq!(host_of("[::1]:80"), "[::1]");
    }
}
