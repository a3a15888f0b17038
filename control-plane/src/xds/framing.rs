//! The `DeltaConfig` method as a tower service that writes each response as one exactly-sized gRPC
//! frame, instead of tonic's generated server.
//!
//! Why: tonic encodes a streaming response into one growing buffer per stream and keeps that
//! buffer's allocation after the bytes are sent. A stream's first response is its whole view
//! (about 2 MB at 5,000 routes), so every idle proxy would pin megabytes in the control plane. Here
//! each response is encoded into its own allocation (`5-byte gRPC prefix + message`), handed to
//! HTTP/2, and freed once written: an idle stream holds no response bytes.
//!
//! Requests are decoded by tonic's `Streaming`, but with an empty initial buffer instead of
//! tonic's 8 KiB: a request (an ACK, a subscription) is a few hundred bytes, and the buffer grows
//! to the largest request the stream has sent, so an idle proxy no longer pins 8 KiB here.
//!
//! Everything else is tonic's: the server, health, reflection, and the protocol logic behind
//! [`ConfigDiscovery::delta_config`].

use super::server::DeltaServer;
use bytes::{BufMut, Bytes};
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use prost::Message;
use serval_common::proto::discovery::v1::{
    DeltaConfigRequest, DeltaConfigResponse, config_discovery_server::ConfigDiscovery,
};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tonic::{Status, body::Body, codec::BufferSettings, server::NamedService};

/// tonic's default (32 KiB): how much a decode may do before it yields. Only the initial buffer
/// size differs from tonic's defaults.
const DECODE_YIELD_THRESHOLD: usize = 32 * 1024;

/// The one method this service answers.
const PATH: &str = "/serval.discovery.v1.ConfigDiscovery/DeltaConfig";

/// `serval.discovery.v1.ConfigDiscovery` over [`DeltaServer`].
#[derive(Clone, Debug)]
pub struct ConfigDiscoveryService {
    server: DeltaServer,
    max_message_size: usize,
}

impl ConfigDiscoveryService {
    /// Serves `server`, refusing messages larger than `max_message_size` either way.
    pub fn new(server: DeltaServer, max_message_size: usize) -> Self {
        Self {
            server,
            max_message_size,
        }
    }
}

impl NamedService for ConfigDiscoveryService {
    const NAME: &'static str = "serval.discovery.v1.ConfigDiscovery";
}

impl tower::Service<http::Request<Body>> for ConfigDiscoveryService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.uri().path() != PATH {
                return Ok(Status::unimplemented(format!(
                    "{} is not a method of {}",
                    request.uri().path(),
                    Self::NAME
                ))
                .into_http());
            }
            let (parts, body) = request.into_parts();
            let inbound = tonic::Streaming::new_request(
                tonic_prost::ProstCodec::<DeltaConfigResponse, DeltaConfigRequest>::raw_decoder(
                    BufferSettings::new(0, DECODE_YIELD_THRESHOLD),
                ),
                body,
                None,
                Some(this.max_message_size),
            );
            let request = tonic::Request::from_http(http::Request::from_parts(parts, inbound));
            let responses = match this.server.delta_config(request).await {
                Ok(r) => r.into_inner(),
                Err(status) => return Ok(status.into_http()),
            };
            let limit = this.max_message_size;
            // Data frames, then the trailers: `grpc-status: 0` at the end, or the error that ended
            // the stream.
            let frames = futures::stream::unfold(Some(responses), move |state| async move {
                let mut responses = state?;
                let end = |status: &Status| Some((Ok(Frame::trailers(trailers(status))), None));
                match responses.next().await {
                    Some(Ok(message)) => match frame(&message, limit) {
                        Ok(data) => Some((Ok::<_, Status>(Frame::data(data)), Some(responses))),
                        Err(status) => end(&status),
                    },
                    Some(Err(status)) => end(&status),
                    None => end(&Status::ok("")),
                }
            });
            let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            Ok(response)
        })
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, the message, in one allocation.
fn frame(message: &DeltaConfigResponse, limit: usize) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "the response is {len} bytes, more than --xds-max-message-bytes {limit}"
        )));
    }
    let mut buf = Vec::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).map_err(|_| Status::resource_exhausted("response too large"))?);
    message
        .encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding a response: {e}")))?;
    Ok(Bytes::from(buf))
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_the_prefix_and_the_message_exactly() {
        let message = DeltaConfigResponse {
            system_version_info: "v".into(),
            nonce: "1".into(),
            ..Default::default()
        };
        let bytes = frame(&message, 1024).expect("fits");
        assert_eq!(bytes[0], 0);
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, message.encoded_len());
        assert_eq!(bytes.len(), 5 + len);
        assert_eq!(
            DeltaConfigResponse::decode(&bytes[5..]).expect("decodes"),
            message
        );
        let err = frame(&message, 2).expect_err("over the limit");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
}
