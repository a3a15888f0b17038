//! The echo backend: answers every request (HTTP/1.1 or HTTP/2 prior knowledge) with JSON naming
//! the method, path, host and headers it received and the namespace, service and pod it was told
//! it is, the same shape as the Gateway API conformance `echo-basic` backend.
//!
//! Query parameters steer the answer, for tests of timeouts and retries:
//! - `delay=<n>ms`: wait that long before answering (with `slow=<n>&key=<k>`: only the first `n`
//!   requests carrying key `k`);
//! - `status=<code>`: answer with that status;
//! - `fail=<n>&key=<k>`: the first `n` requests carrying key `k` answer `status` (default 500),
//!   later ones 200;
//! - `reset=<n>&key=<k>`: the first `n` requests carrying key `k` get their connection closed
//!   without an answer (a connection error for the proxy).
//!
//! `GET /__seen` lists the paths (with query) of every request answered so far, which lets tests
//! check what a mirror received. WebSocket upgrades (`Upgrade: websocket`) are accepted and the
//! connection then echoes every byte back.

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::Mutex};

/// What an echo process remembers across requests.
#[derive(Debug, Default)]
struct State {
    identity: Identity,
    /// Requests seen per `key` query parameter.
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    /// Paths of every request answered.
    seen: Mutex<Vec<String>>,
}

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
    let state = Arc::new(State {
        identity,
        ..State::default()
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { answer(req, &state).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The value of query parameter `name`.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, identity: Identity) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, identity));
    Ok(local)
}

async fn answer(
    mut req: Request<Incoming>,
    state: &State,
) -> Result<Response<Full<Bytes>>, &'static str> {
    let query = req.uri().query().unwrap_or_default().to_owned();
    if req.uri().path() == "/__seen" {
        let seen = serde_json::to_vec(&*state.seen.lock().await).unwrap_or_default();
        return Ok(Response::new(Full::new(Bytes::from(seen))));
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let count = match query_param(&query, "key") {
        Some(key) => {
            let counter = Arc::clone(
                state
                    .counters
                    .lock()
                    .await
                    .entry(key.to_owned())
                    .or_default(),
            );
            counter.fetch_add(1, Ordering::SeqCst) + 1
        }
        None => 1,
    };
    let below = |param: &str| {
        query_param(&query, param)
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| count <= n)
    };
    if below("reset") {
        // An error from the service makes hyper close the connection without an answer.
        return Err("reset requested");
    }
    let slow = query_param(&query, "slow").is_none() || below("slow");
    if let Some(ms) = query_param(&query, "delay")
        .filter(|_| slow)
        .and_then(|d| d.strip_suffix("ms"))
        .and_then(|d| d.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    state.seen.lock().await.push(path_and_query);
    let status = query_param(&query, "status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok());
    let status = match (query_param(&query, "fail"), status) {
        (Some(_), failure) if below("fail") => {
            failure.unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
        }
        (Some(_), _) => http::StatusCode::OK,
        (None, s) => s.unwrap_or(http::StatusCode::OK),
    };
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        resp.headers_mut().insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        return Ok(resp);
    }
    let identity = &state.identity;
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
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
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
