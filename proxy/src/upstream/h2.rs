//! HTTP/2 prior-knowledge (h2c) upstream connections: one multiplexed connection per endpoint,
//! opened on first use and replaced when it closes. Requests keep the client's host as
//! `:authority`, so the backend sees the host that was asked for, not the endpoint address.

use crate::http::Body;
use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::{collections::HashMap, net::SocketAddr, time::Duration};
use tokio::net::TcpStream;

/// An error reaching an h2c endpoint.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Open h2c connections by endpoint.
#[derive(Debug)]
pub struct H2Pool {
    connections: Mutex<HashMap<SocketAddr, SendRequest<Body>>>,
    connect_timeout: Duration,
}

impl H2Pool {
    /// An empty pool.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            connect_timeout,
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
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| format!("connect to {endpoint} timed out"))??;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .handshake(TokioIo::new(stream))
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
