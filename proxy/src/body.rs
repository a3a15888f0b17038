//! Request and response bodies on the proxy path: the boxed [`Body`] type, request bodies kept in
//! memory so retries and mirrors can replay them, a tee that copies a streaming body to mirrors
//! without ever waiting for them, and a deadline for the request timeout.
//!
//! Only bodies of a known length up to [`REPLAY_LIMIT`] are buffered, and only when a retry or a
//! mirror needs them; everything else streams, so a client that streams (gRPC, uploads) is never
//! held back waiting for its own end of stream.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};
use tokio::sync::mpsc;

/// An error inside a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body type on both sides of the proxy.
pub type Body = BoxBody<Bytes, BoxError>;

/// Largest request body kept in memory for retries and mirrors.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// Frames a mirror may lag behind the main request before its copy is abandoned.
const TEE_BUFFER: usize = 64;

/// A request body after [`prepare`].
#[derive(Debug)]
pub enum RequestBody {
    /// Held in memory: can be sent any number of times.
    Replayable(Replayable),
    /// Streams from the client: can be sent once.
    Streaming(Inbound),
}

/// A complete request body with its trailers.
#[derive(Clone, Debug, Default)]
pub struct Replayable {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Replayable {
    /// A body that yields this data and trailers.
    pub fn body(&self) -> Body {
        match &self.trailers {
            None if self.data.is_empty() => empty(),
            None => full(self.data.clone()),
            Some(trailers) => {
                let frames = [
                    Frame::data(self.data.clone()),
                    Frame::trailers(trailers.clone()),
                ];
                http_body_util::StreamBody::new(futures::stream::iter(
                    frames.into_iter().map(Ok::<_, BoxError>),
                ))
                .boxed()
            }
        }
    }
}

/// Reads the body into memory when `want_replay` and it is empty or of a known length up to
/// [`REPLAY_LIMIT`]; otherwise leaves it streaming.
pub async fn prepare(
    body: Inbound,
    headers: &HeaderMap,
    want_replay: bool,
) -> Result<RequestBody, hyper::Error> {
    if body.is_end_stream() {
        return Ok(RequestBody::Replayable(Replayable::default()));
    }
    let known_small = body.size_hint().exact().is_some_and(|n| n <= REPLAY_LIMIT)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= REPLAY_LIMIT);
    if !(want_replay && known_small) {
        return Ok(RequestBody::Streaming(body));
    }
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(RequestBody::Replayable(Replayable {
        data: collected.to_bytes(),
        trailers,
    }))
}

/// A client's request body as the proxy reads it, adding the size of each data frame to a shared
/// counter (the access log's `bytes_received`).
#[derive(Debug)]
pub struct Inbound {
    inner: Incoming,
    received: Option<Arc<AtomicU64>>,
}

impl Inbound {
    /// `inner`, counting into `received` (if any: nothing is counted when no one reads it).
    pub fn new(inner: Incoming, received: Option<Arc<AtomicU64>>) -> Self {
        Self { inner, received }
    }
}

impl HttpBody for Inbound {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(received) = &self.received
        {
            received.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `bytes`.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A client body as a [`Body`].
pub fn incoming(body: Inbound) -> Body {
    body.map_err(BoxError::from).boxed()
}

/// Copies a streaming body to mirrors. A mirror that cannot keep up loses its copy (its request
/// ends early and fails); the main request is never delayed.
#[derive(Debug)]
pub struct Tee {
    inner: Inbound,
    mirrors: Vec<mpsc::Sender<Frame<Bytes>>>,
    /// Set once the client's body ended cleanly: a copy whose channel closes before that was cut
    /// short and must end with an error, not look complete.
    complete: Arc<AtomicBool>,
}

impl Tee {
    /// Wraps `inner`; returns the body for the main request and one for each of `n` mirrors.
    pub fn split(inner: Inbound, n: usize) -> (Body, Vec<Body>) {
        let complete = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(n);
        let mut copies = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(TEE_BUFFER);
            senders.push(tx);
            copies.push(BodyExt::boxed(Copy {
                rx,
                complete: Arc::clone(&complete),
            }));
        }
        (
            Self {
                inner,
                mirrors: senders,
                complete,
            }
            .boxed(),
            copies,
        )
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let copy = |frame: &Frame<Bytes>| {
                if let Some(data) = frame.data_ref() {
                    Some(Frame::data(data.clone()))
                } else {
                    frame.trailers_ref().map(|t| Frame::trailers(t.clone()))
                }
            };
            self.mirrors
                .retain(|m| copy(frame).is_some_and(|c| m.try_send(c).is_ok()));
        }
        match &polled {
            Poll::Ready(None) => {
                self.complete.store(true, Ordering::Release);
                self.mirrors.clear();
            }
            Poll::Ready(Some(Err(_))) => self.mirrors.clear(),
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A mirror's copy of a teed body.
struct Copy {
    rx: mpsc::Receiver<Frame<Bytes>>,
    complete: Arc<AtomicBool>,
}

impl HttpBody for Copy {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|frame| match frame {
            Some(f) => Some(Ok(f)),
            None if self.complete.load(Ordering::Acquire) => None,
            // The tee let go of this copy early (it fell behind, or the client's body failed).
            None => Some(Err("mirror copy cut short".into())),
        })
    }
}

/// Ends a body with an error at a deadline (the request timeout covers the whole response).
#[derive(Debug)]
pub struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    /// `inner`, cut off at `deadline`.
    pub fn wrap(inner: Body, deadline: tokio::time::Instant) -> Body {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
        .boxed()
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(
                "request timeout reached while streaming the response".into(),
            )));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
