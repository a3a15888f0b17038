//! The echo backend: answers every request (HTTP/1.1 or HTTP/2 prior knowledge) with JSON naming
//! the method, path, host and headers it received and the namespace, service and pod it was told
//! it is, the same shape as the Gateway API conformance `echo-basic` backend.

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// Who this echo backend claims to be.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// Namespace.
    pub namespace: String,
    /// Service.
    pub service: String,
    /// Pod.
    pub pod: String,
}

/// The JSON answer.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Echo {
    /// Request path with query.
    pub path: String,
    /// Host header (or :authority).
    pub host: String,
    /// Method.
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub proto: String,
    /// Headers by canonical name, every value.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Namespace.
    pub namespace: String,
    /// Service.
    pub service: String,
    /// Pod.
    pub pod: String,
}

/// Serves `listener` forever.
pub async fn serve(listener: TcpListener, identity: Identity) {
    let identity = Arc::new(identity);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let identity = Arc::clone(&identity);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let identity = Arc::clone(&identity);
                async move { Ok::<_, Infallible>(answer(req, &identity).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, identity: Identity) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, identity));
    Ok(local)
}

async fn answer(req: Request<Incoming>, identity: &Identity) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Drain the body so keep-alive connections stay usable.
    let _ = body.collect().await;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let echo = Echo {
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        host,
        method: parts.method.to_string(),
        proto: format!("{:?}", parts.version),
        headers,
        namespace: identity.namespace.clone(),
        service: identity.service.clone(),
        pod: identity.pod.clone(),
    };
    let body = serde_json::to_vec(&echo).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `x-forwarded-for` → `X-Forwarded-For`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
