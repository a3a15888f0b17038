//! HTTP/2 prior-knowledge (h2c) upstream connections: one multiplexed connection per endpoint,
//! opened on first use and replaced when it closes. Requests keep the client's host as
//! `:authority`, so the backend sees the host that was asked for, not the endpoint address.

use super::counted::{ConnectFailed, Counted};
use crate::http::Body;
use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use std::{collections::HashMap, net::SocketAddr, time::Duration};
use tokio::net::TcpStream;

/// An error reaching an h2c endpoint.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Open h2c connections by endpoint.
#[derive(Debug)]
pub struct H2Pool {
    connections: Mutex<HashMap<SocketAddr, SendRequest<Body>>>,
    connect_timeout: Duration,
    open: Gauge,
}

impl H2Pool {
    /// An empty pool; its connections are counted in `open` while they live.
    pub fn new(connect_timeout: Duration, open: Gauge) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            connect_timeout,
            open,
        }
    }

    /// Sends `req` (absolute URI with the client's authority) to `endpoint`.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Error> {
        let mut sender = self.sender(endpoint).await?;
        Ok(sender.send_request(req).await?)
    }

    async fn sender(&self, endpoint: SocketAddr) -> Result<SendRequest<Body>, Error> {
        let existing = self.connections.lock().get(&endpoint).cloned();
        if let Some(mut sender) = existing.filter(|s| !s.is_closed())
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(Box::new(ConnectFailed(Box::new(e)))),
                Err(_) => {
                    let timed_out = format!("connect to {endpoint} timed out");
                    return Err(Box::new(ConnectFailed(timed_out.into())));
                }
            };
        stream.set_nodelay(true)?;
        let io = Counted::new(TokioIo::new(stream), self.open.clone());
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %endpoint, "h2c upstream connection ended");
            }
        });
        self.connections.lock().insert(endpoint, sender.clone());
        Ok(sender)
    }
}
