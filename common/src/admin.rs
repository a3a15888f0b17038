//! The admin HTTP server both binaries run: `GET /healthz`, `GET /readyz`, `GET /metrics`
//! (Prometheus text) and extra read-only routes each binary adds (`/status`, `/config_dump`).
//!
//! The admin server never changes state; it only reports it.

use crate::{readiness::Readiness, shutdown};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use std::{convert::Infallible, fmt, net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// A response to an extra admin route.
#[derive(Debug)]
pub struct Reply {
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply of `value`.
    pub fn json(value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec_pretty(value)
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
        Self {
            content_type: "application/json",
            body,
        }
    }
}

/// Extra routes: path → reply, or `None` for 404.
pub type Routes = Arc<dyn Fn(&str) -> Option<Reply> + Send + Sync>;

/// What the admin server reports.
#[derive(Clone)]
pub struct Admin {
    readiness: Readiness,
    registry: Arc<Mutex<Registry>>,
    routes: Routes,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// An admin server over `readiness`, `registry` and the extra `routes`.
    pub fn new(readiness: Readiness, registry: Arc<Mutex<Registry>>, routes: Routes) -> Self {
        Self {
            readiness,
            registry,
            routes,
        }
    }

    /// Binds `addr`; returns the bound address (useful with port 0) and the server task.
    pub async fn bind(
        self,
        addr: SocketAddr,
        shutdown: shutdown::Watch,
    ) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((local, self.serve(listener, shutdown)))
    }

    async fn serve(self, listener: TcpListener, mut shutdown: shutdown::Watch) {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.fired() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        continue;
                    }
                },
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(&req)) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "admin connection ended");
                }
            });
        }
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => {
                let mut body = String::new();
                if let Err(error) =
                    prometheus_client::encoding::text::encode(&mut body, &self.registry.lock())
                {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n"));
                }
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body.into_bytes(),
                )
            }
            path => match (self.routes)(path) {
                Some(r) => reply(StatusCode::OK, r.content_type, r.body),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}
