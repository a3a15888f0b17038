//! Upstream connections counted while open: a connector wrapper whose connections decrement a
//! gauge when dropped (`serval_upstream_connections`), and which counts failed connects
//! ([`ConnectFailed`] marks them, so the request path can tell a refused or timed-out connect
//! from a reset).

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use prometheus_client::metrics::gauge::Gauge;
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

/// A connection that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("connect: {0}")]
pub struct ConnectFailed(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Wraps a connector: its connections are counted in `open` while they live.
#[derive(Clone, Debug)]
pub struct Counting<C> {
    inner: C,
    open: Gauge,
}

impl<C> Counting<C> {
    /// `inner`, counting its connections in `open`.
    pub fn new(inner: C, open: Gauge) -> Self {
        Self { inner, open }
    }
}

impl<C> tower::Service<http::Uri> for Counting<C>
where
    C: tower::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Counted<C::Response>;
    type Error = ConnectFailed;
    type Future = Pin<Box<dyn Future<Output = Result<Counted<C::Response>, ConnectFailed>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailed>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ConnectFailed(e.into()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let open = self.open.clone();
        Box::pin(async move {
            let io = connecting.await.map_err(|e| ConnectFailed(e.into()))?;
            Ok(Counted::new(io, open))
        })
    }
}

/// A connection counted in a gauge until dropped.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    open: Gauge,
}

impl<T> Counted<T> {
    /// `inner`, counted in `open` from now until dropped.
    pub fn new(inner: T, open: Gauge) -> Self {
        open.inc();
        Self { inner, open }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<T: Read + Unpin> Read for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Counted<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// True if `error` (from either upstream client) is a connection that could not be opened.
pub fn is_connect_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<ConnectFailed>() {
            return true;
        }
        if let Some(legacy) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && legacy.is_connect()
        {
            return true;
        }
        current = e.source();
    }
    false
}
