//! Forwarding one request to a cluster: the upstream request (hop-by-hop headers out, `Host` or
//! `:authority` set, `X-Forwarded-For`/`-Proto` added), HTTPRoute retries with backoff and
//! per-attempt (`backendRequest`) timeouts, fire-and-forget mirrors, and WebSocket upgrades.
//!
//! Retries need the request body again, so they apply only to bodies [`body::prepare`] keeps in
//! memory (empty, or of a known small length); a streaming body is sent once. Mirrors never delay
//! the main request: they run in their own tasks, bounded in number, and get a copy of the body
//! that is abandoned if the mirror falls behind.

use crate::access_log::{Facts, UpstreamFacts};
use crate::{
    body::{self, Body, Deadline, RequestBody, Tee},
    errors::{ProxyError, TimeoutKind},
    filters::Mirror,
    http::Shared,
    router::RetryPolicy,
    upstream::{Cluster, Protocol, Upstream},
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// Longest a mirrored request may take before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// A request ready to forward (rule and backend filters applied).
#[derive(Debug)]
pub struct Outgoing {
    /// Method, URI, version, headers and extensions of the client's request.
    pub parts: http::request::Parts,
    /// The host the backend sees (the client's, or a URLRewrite hostname).
    pub authority: String,
    /// The client's body.
    pub body: crate::body::Inbound,
}

/// How to forward.
#[derive(Debug, Default)]
pub struct Policy<'a> {
    /// Per-attempt timeout, until the response headers.
    pub backend_timeout: Option<Duration>,
    /// Retries.
    pub retry: Option<&'a RetryPolicy>,
    /// Mirrors that sampled this request.
    pub mirrors: Vec<&'a Mirror>,
}

/// Everything of the upstream request except where it goes and its body.
#[derive(Debug)]
struct Template {
    method: Method,
    path_and_query: String,
    authority: String,
    headers: HeaderMap,
}

impl Template {
    /// The request for one attempt (or mirror); `headers` are this attempt's copy.
    fn request(
        &self,
        endpoint: SocketAddr,
        protocol: Protocol,
        mut headers: HeaderMap,
        body: Body,
    ) -> Result<Request<Body>, ProxyError> {
        // HTTP/1.1: the URI names the endpoint (the pooled client connects there) and Host carries
        // the authority. HTTP/2: `:authority` (from the URI) carries it and Host is dropped, as RFC
        // 9113 §8.3.1 wants them to agree; the pool connects to the endpoint.
        let (uri_authority, version) = match protocol {
            Protocol::Http1 => (endpoint.to_string(), Version::HTTP_11),
            Protocol::H2c => (self.authority.clone(), Version::HTTP_2),
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(uri_authority)
            .path_and_query(self.path_and_query.as_str())
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        match protocol {
            Protocol::Http1 => {
                let host = HeaderValue::from_str(&self.authority)
                    .map_err(|_| ProxyError::BadRequest("invalid host".into()))?;
                headers.insert(header::HOST, host);
            }
            Protocol::H2c => {
                for name in [header::HOST, header::CONNECTION, header::UPGRADE] {
                    headers.remove(name);
                }
            }
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        Ok(req)
    }
}

/// Forwards `out` to `cluster`.
pub async fn forward(
    shared: &Shared,
    conn: crate::http::Connection,
    out: Outgoing,
    cluster: &Arc<Cluster>,
    policy: Policy<'_>,
    facts: &mut Facts,
) -> Result<Response<Body>, ProxyError> {
    let Outgoing {
        mut parts,
        authority,
        body,
    } = out;
    let upgrade = upgrade_protocol(&parts);
    let on_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    append_forwarded_for(&mut headers, conn.peer);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(conn.scheme()),
    );
    let mut template = Template {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        authority,
        headers,
    };
    // An upgrade is neither retried nor mirrored: its body is the tunnel.
    let (retry, mirrors) = if upgrade.is_some() {
        (None, Vec::new())
    } else {
        (policy.retry.filter(|r| r.attempts > 0), policy.mirrors)
    };
    let prepared = body::prepare(
        body,
        &template.headers,
        retry.is_some() || !mirrors.is_empty(),
    )
    .await
    .map_err(|e| ProxyError::BadRequest(format!("reading the request body: {e}")))?;
    let (replay, mut once) = match prepared {
        RequestBody::Replayable(r) => {
            for m in &mirrors {
                spawn_mirror(shared, &template, m, r.body());
            }
            (Some(r), None)
        }
        RequestBody::Streaming(incoming) if mirrors.is_empty() => {
            (None, Some(body::incoming(incoming)))
        }
        RequestBody::Streaming(incoming) => {
            let (main, copies) = Tee::split(incoming, mirrors.len());
            for (m, copy) in mirrors.iter().zip(copies) {
                spawn_mirror(shared, &template, m, copy);
            }
            (None, Some(main))
        }
    };
    let retries = match (&replay, retry) {
        (Some(_), Some(r)) => r.attempts,
        _ => 0,
    };
    let mut attempt = 0u32;
    loop {
        let body = match (&replay, once.take()) {
            (Some(r), _) => r.body(),
            (None, Some(b)) => b,
            // A streaming body is only ever sent once (`retries` is 0 for it).
            (None, None) => return Err(ProxyError::BadRequest("request body already sent".into())),
        };
        if facts.enabled {
            facts
                .upstream
                .get_or_insert_with(|| UpstreamFacts {
                    cluster: cluster.name.clone(),
                    endpoint: None,
                    duration: Duration::ZERO,
                    attempts: 0,
                })
                .attempts = attempt + 1;
        }
        let endpoint = cluster.pick().ok_or_else(|| ProxyError::NoEndpoints {
            cluster: cluster.name.clone(),
        })?;
        if let Some(upstream) = &mut facts.upstream {
            upstream.endpoint = Some(endpoint.addr);
        }
        // The last attempt takes the headers; earlier ones (there are retries left) copy them.
        let mut headers = if attempt < retries {
            template.headers.clone()
        } else {
            std::mem::take(&mut template.headers)
        };
        // Traced: this attempt's span, whose context the backend receives.
        let client_span = match (&shared.spans, &facts.span) {
            (Some(spans), Some(server)) => {
                let span = spans.client(server, endpoint.addr, attempt);
                spans.inject(&span, &mut headers);
                Some(span)
            }
            _ => None,
        };
        let req = template.request(endpoint.addr, cluster.protocol, headers, body)?;
        let started = tokio::time::Instant::now();
        let result = send(
            (&shared.upstream, &shared.metrics),
            cluster,
            endpoint.addr,
            req,
            policy.backend_timeout,
        )
        .await;
        if let Some(upstream) = &mut facts.upstream {
            upstream.duration += started.elapsed();
        }
        if let Some(span) = client_span {
            span.end(match &result {
                Ok(resp) => Ok(resp.status().as_u16()),
                Err(ProxyError::Timeout { .. }) => Err("timeout"),
                Err(_) => Err("connection"),
            });
        }
        let retryable = match (&result, retry) {
            (_, None) => false,
            (Ok(resp), Some(r)) => r.codes.contains(&resp.status()),
            (Err(ProxyError::Timeout { .. }), Some(r)) => {
                r.codes.contains(&StatusCode::GATEWAY_TIMEOUT)
            }
            (Err(e), Some(_)) => e.is_connection_error(),
        };
        if let Err(ProxyError::Timeout { .. }) = &result {
            shared.metrics.record_timeout("backend_request");
        }
        if !(retryable && attempt < retries) {
            let response = result.map(|resp| finish(shared, resp, on_upgrade))?;
            // backendRequest runs until the whole response is received (GEP-1742).
            return Ok(match policy.backend_timeout {
                Some(limit) => response.map(|b| Deadline::wrap(b, started + limit)),
                None => response,
            });
        }
        attempt += 1;
        shared.metrics.upstream_retries.inc();
        if let Err(error) = &result {
            tracing::debug!(%error, attempt, "retrying after an upstream error");
        }
        // Drop the failed response (and its connection's claim) before waiting.
        drop(result);
        if let Some(r) = retry {
            tokio::time::sleep(backoff(r.backoff, attempt)).await;
        }
    }
}

/// Wait before retry number `attempt` (1-based): `base` doubled for each earlier retry, capped at
/// ten times `base`, plus up to a quarter more of jitter. Never less than `base`.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(4);
    let wait = base.saturating_mul(factor).min(base.saturating_mul(10));
    let jitter_ms = u64::try_from(wait.as_millis() / 4).unwrap_or(0);
    wait + Duration::from_millis(fastrand::u64(0..=jitter_ms))
}

async fn send(
    (upstream, metrics): (&Upstream, &crate::metrics::Metrics),
    cluster: &Cluster,
    endpoint: SocketAddr,
    req: Request<Body>,
    timeout: Option<Duration>,
) -> Result<Response<Incoming>, ProxyError> {
    let sent = upstream.send(cluster.protocol, endpoint, req);
    let result = match timeout {
        None => sent.await,
        Some(limit) => {
            tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| ProxyError::Timeout {
                    kind: TimeoutKind::BackendRequest,
                })?
        }
    };
    result.map_err(|source| {
        if crate::upstream::counted::is_connect_failure(&*source) {
            metrics
                .upstream_connect_failures
                .get_or_create(&crate::metrics::BackendLabels {
                    backend: Arc::clone(&cluster.backend),
                })
                .inc();
        }
        ProxyError::Upstream {
            cluster: cluster.name.clone(),
            endpoint,
            source,
        }
    })
}

fn finish(
    shared: &Shared,
    mut response: Response<Incoming>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let upgrade = (response.status() == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| response.headers().get(header::UPGRADE).cloned())
        .flatten();
    let tunnel_ends = match (&upgrade, on_upgrade) {
        (Some(_), Some(downstream)) => Some((downstream, hyper::upgrade::on(&mut response))),
        _ => None,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let (Some(protocol), Some((downstream, upstream))) = (upgrade, tunnel_ends) {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        shared.metrics.upgrades.inc();
        tokio::spawn(tunnel(downstream, upstream));
        return Response::from_parts(parts, body::empty());
    }
    Response::from_parts(parts, body.map_err(body::BoxError::from).boxed())
}

/// Copies bytes both ways between an upgraded client connection and its upstream connection until
/// either side closes.
async fn tunnel(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let mut downstream = hyper_util::rt::TokioIo::new(downstream);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(%error, "upgraded connection ended with an error");
    }
}

/// Sends a copy of the request to `mirror` in its own task; the response is read and discarded.
/// When too many mirrored requests are in flight the copy is dropped (and counted).
fn spawn_mirror(shared: &Shared, template: &Template, mirror: &Mirror, body: Body) {
    let Ok(permit) = Arc::clone(&shared.mirror_slots).try_acquire_owned() else {
        shared.metrics.record_mirror("dropped");
        return;
    };
    let Some(endpoint) = mirror.cluster.pick() else {
        shared.metrics.record_mirror("failed");
        return;
    };
    let headers = template.headers.clone();
    let Ok(req) = template.request(endpoint.addr, mirror.cluster.protocol, headers, body) else {
        shared.metrics.record_mirror("failed");
        return;
    };
    let upstream = shared.upstream.clone();
    let metrics = Arc::clone(&shared.metrics);
    let cluster = Arc::clone(&mirror.cluster);
    let addr = endpoint.addr;
    tokio::spawn(async move {
        let _permit = permit;
        let sent = async {
            let response = upstream.send(cluster.protocol, addr, req).await?;
            response.into_body().collect().await?;
            Ok::<_, body::BoxError>(())
        };
        match tokio::time::timeout(MIRROR_TIMEOUT, sent).await {
            Ok(Ok(())) => metrics.record_mirror("sent"),
            Ok(Err(error)) => {
                tracing::debug!(%error, cluster = %cluster.name, "mirrored request failed");
                metrics.record_mirror("failed");
            }
            Err(_) => metrics.record_mirror("failed"),
        }
    });
}

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection: upgrade` and `Upgrade`).
fn upgrade_protocol(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let asks = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
}

pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
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
    fn backoff_doubles_is_capped_and_never_below_the_base() {
        let base = Duration::from_millis(100);
        for attempt in 1..=8 {
            let b = backoff(base, attempt);
            let floor = base * (1 << (attempt - 1).min(4)).min(10);
            assert!(
                b >= floor && b <= floor + floor / 4,
                "attempt {attempt}: {b:?}"
            );
        }
    }
}
