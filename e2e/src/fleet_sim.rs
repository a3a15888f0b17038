//! A fleet simulator: N lightweight clients in one process, each speaking the real delta protocol
//! over its own TCP connection (its own HTTP/2 connection and stream), ACKing every response and
//! recording when each configuration version arrived.
//!
//! A simulated proxy decodes only what it needs — `system_version_info`, `nonce`, and per resource
//! its name (the payload is skipped, not copied) — so thousands fit in one process; it applies
//! nothing. It is a load and latency probe for the control plane, not a proxy.

use bytes::Buf;
use parking_lot::Mutex;
use serval_common::proto::discovery::v1::{DeltaConfigRequest, Node};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{sync::Semaphore, task::JoinSet};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Endpoint,
};

/// The parts of a `DeltaConfigResponse` a simulated proxy reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ThinResponse {
    /// `system_version_info`.
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    /// `resources`, names only.
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<ThinResource>,
    /// `removed_resources`.
    #[prost(string, repeated, tag = "3")]
    pub removed_resources: Vec<String>,
    /// `nonce`.
    #[prost(string, tag = "4")]
    pub nonce: String,
}

/// A resource's name (its version and payload are skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ThinResource {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// Requests encoded with prost; responses decoded as [`ThinResponse`] with their size.
#[derive(Clone, Copy, Debug, Default)]
struct ThinCodec;

#[derive(Debug)]
struct RequestEncoder;

#[derive(Debug)]
struct ThinDecoder;

impl Codec for ThinCodec {
    type Encode = DeltaConfigRequest;
    type Decode = (ThinResponse, usize);
    type Encoder = RequestEncoder;
    type Decoder = ThinDecoder;

    fn encoder(&mut self) -> RequestEncoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> ThinDecoder {
        ThinDecoder
    }
}

impl Encoder for RequestEncoder {
    type Item = DeltaConfigRequest;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst).map_err(|e| Status::internal(e.to_string()))?;
        Ok(())
    }
}

impl Decoder for ThinDecoder {
    type Item = (ThinResponse, usize);
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let size = src.remaining();
        let message = <ThinResponse as prost::Message>::decode(src)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Some((message, size)))
    }
}

/// One response as a simulated proxy saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When it arrived.
    pub at: Instant,
    /// Its size in bytes (the protobuf message; gRPC and HTTP/2 framing add 14 bytes).
    pub bytes: usize,
    /// Resources it carried.
    pub resources: usize,
    /// Names of the resources it carried when there were at most 16 (for checks).
    pub names: Vec<String>,
}

/// What every simulated proxy has received, by version.
#[derive(Debug, Default)]
pub struct Received {
    /// version → one arrival per proxy that received it.
    pub by_version: Mutex<HashMap<String, Vec<Arrival>>>,
    /// Streams open now.
    pub connected: AtomicUsize,
    /// Responses received in all.
    pub responses: AtomicU64,
    /// Streams that ended with an error (each reconnects).
    pub errors: AtomicU64,
}

impl Received {
    /// How many proxies received `version`.
    pub fn count(&self, version: &str) -> usize {
        self.by_version.lock().get(version).map_or(0, Vec::len)
    }

    /// The arrivals of `version`.
    pub fn arrivals(&self, version: &str) -> Vec<Arrival> {
        self.by_version
            .lock()
            .get(version)
            .cloned()
            .unwrap_or_default()
    }

    /// Versions received, with how many proxies received each.
    pub fn versions(&self) -> Vec<(String, usize)> {
        self.by_version
            .lock()
            .iter()
            .map(|(v, a)| (v.clone(), a.len()))
            .collect()
    }
}

/// A running simulated fleet; dropping it disconnects every client.
#[derive(Debug)]
pub struct SimFleet {
    /// What was received.
    pub received: Arc<Received>,
    tasks: JoinSet<()>,
}

impl SimFleet {
    /// Starts `n` simulated proxies against `url` (`http://host:port`), each serving `gateways`,
    /// connecting at most 64 at a time.
    pub async fn start(url: &str, n: usize, gateways: &[String]) -> Self {
        let received = Arc::new(Received::default());
        let mut tasks = JoinSet::new();
        let connecting = Arc::new(Semaphore::new(64));
        for i in 0..n {
            let node = Node {
                id: format!("sim-{i:05}"),
                gateways: gateways.to_vec(),
                build_version: "fleet-sim".into(),
                ..Default::default()
            };
            let (url, received, connecting) = (
                url.to_owned(),
                Arc::clone(&received),
                Arc::clone(&connecting),
            );
            tasks.spawn(async move {
                // Bounded: a simulated proxy reconnects at most 100 times.
                for _ in 0..100 {
                    let result = run(&url, node.clone(), &received, &connecting).await;
                    if result.is_ok() {
                        return;
                    }
                    received.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        Self { received, tasks }
    }

    /// Waits (up to `timeout`) until `n` proxies received `version`.
    pub async fn wait_for(&self, version: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.received.count(version) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// Disconnects every client.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn run(
    url: &str,
    node: Node,
    received: &Received,
    connecting: &Semaphore,
) -> Result<(), Status> {
    let permit = connecting.acquire().await;
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(512 << 20);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<DeltaConfigRequest>(2);
    tx.send(DeltaConfigRequest {
        node: Some(node),
        ..Default::default()
    })
    .await
    .map_err(|_| Status::cancelled("closed"))?;
    let path =
        http::uri::PathAndQuery::from_static("/serval.discovery.v1.ConfigDiscovery/DeltaConfig");
    let mut inbound = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            ThinCodec,
        )
        .await?
        .into_inner();
    drop(permit);
    received.connected.fetch_add(1, Ordering::Relaxed);
    let result = async {
        while let Some((response, bytes)) = inbound.message().await? {
            let at = Instant::now();
            received.responses.fetch_add(1, Ordering::Relaxed);
            let names = if response.resources.len() <= 16 {
                response.resources.iter().map(|r| r.name.clone()).collect()
            } else {
                Vec::new()
            };
            received
                .by_version
                .lock()
                .entry(response.system_version_info.clone())
                .or_default()
                .push(Arrival {
                    at,
                    bytes,
                    resources: response.resources.len(),
                    names,
                });
            tx.send(DeltaConfigRequest {
                response_nonce: response.nonce,
                ..Default::default()
            })
            .await
            .map_err(|_| Status::cancelled("closed"))?;
        }
        Ok(())
    }
    .await;
    received.connected.fetch_sub(1, Ordering::Relaxed);
    result
}

/// The `q`-quantile (0..=1) of `values` (sorted in place), or 0 for none.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i.min(values.len() - 1)]
}

/// Resident memory (KiB) and CPU seconds (user + system) of process `pid`, from `/proc`.
pub fn process_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((rss, ticks / 100.0))
}
