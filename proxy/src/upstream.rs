//! Upstreams: compiled clusters (endpoints + load balancing) and the shared HTTP clients whose
//! keep-alive pools outlive configuration swaps (pools are keyed by endpoint address, so a swap that
//! keeps an endpoint keeps its warm connections).
//!
//! Health checking and outlier ejection are not done yet.

pub mod counted;
pub mod h2;
pub mod lb;

use crate::http::Body;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

/// Application protocol spoken to a cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 prior knowledge, no TLS.
    H2c,
}

/// One compiled cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Resource name.
    pub name: String,
    /// `namespace/service:port`, the `backend` label of request metrics.
    pub backend: Arc<str>,
    /// The Service, `namespace/name`.
    pub service: String,
    /// Protocol to the endpoints.
    pub protocol: Protocol,
    /// Ready endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Endpoint picking.
    pub lb: lb::Policy,
    /// Round-robin cursor.
    pub(crate) cursor: AtomicUsize,
}

/// One endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Pod name, for logs.
    pub hostname: String,
}

/// Tunables of the upstream clients.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Time allowed to open a TCP connection.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Idle connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_endpoint: 64,
        }
    }
}

/// The shared upstream HTTP clients (one per protocol), each with its own connection pool.
#[derive(Clone, Debug)]
pub struct Upstream {
    http1: Client<counted::Counting<HttpConnector>, Body>,
    h2c: Arc<h2::H2Pool>,
}

impl Upstream {
    /// Clients with `settings`, counting their open connections in `open`.
    pub fn new(settings: Settings, open: prometheus_client::metrics::gauge::Gauge) -> Self {
        let connector = || {
            let mut c = HttpConnector::new();
            c.set_connect_timeout(Some(settings.connect_timeout));
            c.set_nodelay(true);
            c.enforce_http(true);
            c
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_endpoint)
            // The proxy sets Host itself from the downstream request.
            .set_host(false);
        Self {
            http1: builder.build(counted::Counting::new(connector(), open.clone())),
            h2c: Arc::new(h2::H2Pool::new(settings.connect_timeout, open)),
        }
    }

    /// Sends `req` to `endpoint` over `protocol`. For HTTP/1.1 the URI names the endpoint; for h2c
    /// it carries the client's authority and `endpoint` says where to connect.
    pub async fn send(
        &self,
        protocol: Protocol,
        endpoint: SocketAddr,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, h2::Error> {
        match protocol {
            Protocol::Http1 => Ok(self.http1.request(req).await?),
            Protocol::H2c => self.h2c.send(endpoint, req).await,
        }
    }
}
