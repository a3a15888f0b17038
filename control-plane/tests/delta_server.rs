//! The delta server at scale, in process: what one route change costs on the wire among 10,000
//! routes, and that a proxy that stops reading neither delays the others nor makes the server keep
//! what it would have sent it (real gRPC over a loopback socket).

use prometheus_client::registry::Registry;
use prost::Message;
use serde_json::json;
use serval_common::{
    Resource, names,
    proto::{
        config::v1 as pb,
        discovery::v1::{
            DeltaConfigRequest, DeltaConfigResponse, Node,
            config_discovery_client::ConfigDiscoveryClient,
        },
    },
};
use serval_control_plane::{
    metrics::Metrics,
    snapshot::{Scope, Snapshot},
    sources::objects,
    translate::{self, Inputs, Options},
    xds::{
        fleet::Fleet,
        server::{DeltaServer, Limits},
        stream::StreamState,
    },
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// A Gateway, a Service and `n` HTTPRoutes, each with its own hostname and path; route `changed`
/// gets another path.
fn world(n: usize, changed: Option<usize>) -> Snapshot {
    let mut docs = vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "serval"}, "spec": {"controllerName": serval_common::CONTROLLER_NAME}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"gatewayClassName": "serval", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "default"},
               "spec": {"ports": [{"port": 80}]}}),
    ];
    for i in 0..n {
        let path = if changed == Some(i) {
            format!("/changed/{i}")
        } else {
            format!("/app/{i}")
        };
        docs.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": format!("route-{i}"), "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [format!("app-{i}.example.com")],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "svc", "port": 80}]}]}
        }));
    }
    let objects = objects::parse_values("test", docs).expect("valid").objects;
    let inputs = Inputs::from_objects(objects);
    let options = Options {
        controller_name: serval_common::CONTROLLER_NAME.to_owned(),
        now: "2026-01-01T00:00:00Z".to_owned(),
        fleet_addresses: Vec::new(),
    };
    Snapshot::new(translate::translate(&inputs, &options).resources)
}

fn hello(id: &str) -> DeltaConfigRequest {
    DeltaConfigRequest {
        node: Some(Node {
            id: id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ack(nonce: &str) -> DeltaConfigRequest {
    DeltaConfigRequest {
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

#[test]
fn one_route_change_among_ten_thousand_sends_that_route_only() {
    let before = world(10_000, None);
    let after = world(10_000, Some(4_242));
    let mut stream = StreamState::default();
    let first = stream
        .on_request(&hello("p"), &before)
        .expect("ok")
        .response
        .expect("first response");
    assert!(first.resources.len() > 10_000, "the whole view first");
    stream.on_request(&ack(&first.nonce), &before).expect("ack");
    let response = stream
        .on_snapshot(&after)
        .expect("a response for the change");

    let changed: Vec<&String> = after
        .resources
        .iter()
        .filter(|(name, v)| before.resources.get(*name).map(|b| &b.version) != Some(&v.version))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        changed,
        vec!["attachedroute/default/gw/httproute/default/route-4242"],
        "one route changed, one resource"
    );
    assert_eq!(response.resources.len(), 1);
    assert!(response.removed_resources.is_empty());
    let payload = after.resources[changed[0]].any.value.len();
    // What goes on the wire: the message, gRPC's 5-byte prefix and one HTTP/2 DATA frame header.
    let wire = response.encoded_len() + 5 + 9;
    let whole = first.encoded_len();
    println!(
        "one-route change: {wire} bytes on the wire, payload {payload} bytes, first sync {whole} bytes"
    );
    assert!(
        wire <= 2 * payload,
        "{wire} bytes on the wire for a {payload}-byte resource"
    );
}

/// A snapshot whose one route answers with a body of `size` bytes saying `version`.
fn big(version: usize, size: usize) -> Snapshot {
    let rc = names::route_config("ns", "gw", 80);
    let body = format!("{version:08}").repeat(size / 8);
    let resources: BTreeMap<String, Resource> = [
        Resource::Listener(pb::Listener {
            name: names::listener("ns", "gw", 80),
            address: Some(pb::SocketAddress {
                ip: "127.0.0.1".into(),
                port: 80,
            }),
            gateway: "ns/gw".into(),
            protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                route_config_name: rc.clone(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        Resource::RouteConfig(pb::RouteConfig {
            name: rc.clone(),
            listeners: vec![pb::ListenerHost {
                section_name: "http".into(),
                hostname: "*".into(),
            }],
            ..Default::default()
        }),
        Resource::AttachedRoute(pb::AttachedRoute {
            name: names::attached_route("ns", "gw", "HTTPRoute", "ns", "r"),
            attachments: vec![pb::RouteAttachment {
                route_config: rc,
                section_name: "http".into(),
                hostnames: vec!["*".into()],
            }],
            routes: vec![pb::Route {
                name: "route/ns/httproute/r/rule/0/match/0".into(),
                action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
                    status: 200,
                    body,
                })),
                ..Default::default()
            }],
        }),
    ]
    .into_iter()
    .map(|r| (r.name().to_owned(), r))
    .collect();
    Snapshot::new(resources).sequence(version as u64)
}

/// A delta server on a free loopback port serving `first` and later what is sent on the returned
/// channel; fire the trigger to stop it.
struct Running {
    snapshots: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    fleet: Arc<Fleet>,
    trigger: serval_common::shutdown::Trigger,
    url: String,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(first: Snapshot, limits: Limits) -> Running {
    let (snapshots, snapshots_rx) = watch::channel(Arc::new(first));
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let fleet = Arc::new(Fleet::new(Arc::clone(&metrics)));
    let (trigger, shutdown) = serval_common::shutdown::channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = DeltaServer::new(
        snapshots_rx,
        Arc::clone(&fleet),
        Arc::clone(&metrics),
        limits,
        None,
        shutdown,
    );
    let serving = tokio::spawn(server.serve(listener));
    Running {
        snapshots,
        metrics,
        fleet,
        trigger,
        url,
        serving,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_reading_holds_back_nobody_and_nothing_piles_up() {
    const SIZE: usize = 512 * 1024;
    const VERSIONS: usize = 40;
    let Running {
        snapshots: snapshots_tx,
        metrics,
        fleet,
        trigger,
        url,
        serving,
    } = start(big(0, SIZE), Limits::default()).await;

    // The stuck proxy: opens its stream, then never reads a response.
    let mut stuck_client = ConfigDiscoveryClient::connect(url.clone())
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20);
    let (stuck_tx, stuck_rx) = mpsc::channel(1);
    stuck_tx.send(hello("stuck")).await.expect("hello");
    let _stuck_stream = stuck_client
        .delta_config(ReceiverStream::new(stuck_rx))
        .await
        .expect("stream");

    // The reader: answers everything.
    let mut client = ConfigDiscoveryClient::connect(url)
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello("reader")).await.expect("hello");
    let mut inbound = client
        .delta_config(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let (versions_tx, mut versions) = mpsc::unbounded_channel::<DeltaConfigResponse>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(response)) = inbound.message().await {
            let nonce = response.nonce.clone();
            let _ = versions_tx.send(response);
            if tx.send(ack(&nonce)).await.is_err() {
                break;
            }
        }
    });

    let mut published_views = Vec::new();
    let mut published_snapshots = Vec::new();
    let mut last = String::new();
    let mut received = 0;
    for v in 1..=VERSIONS {
        let snapshot = Arc::new(big(v, SIZE));
        published_views.push(Arc::downgrade(&snapshot.view(&Scope::default())));
        published_snapshots.push(Arc::downgrade(&snapshot));
        last = snapshot.view(&Scope::default()).version.to_string();
        snapshots_tx.send_replace(snapshot);
        // The reader keeps converging while the stuck proxy holds its first response.
        let expected = last.clone();
        let converged = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(r) = versions.recv().await {
                received += 1;
                if r.system_version_info == expected {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(converged, Ok(true), "the reader did not get version {v}");
    }

    let acked_last = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let acked = fleet
                .get("reader")
                .and_then(|r| r.acked)
                .map(|v| v.version.to_string());
            if acked.as_deref() == Some(last.as_str()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(acked_last.is_ok(), "the reader's last ACK did not arrive");
    // Once the reader's last ACK is in, nothing the stuck proxy was not sent is kept for it: of the 40 published snapshots and their
    // views, only the latest (held by the reader and the channel) is alive.
    fn alive<T>(weak: &[Weak<T>]) -> usize {
        weak.iter().filter(|w| w.strong_count() > 0).count()
    }
    assert!(
        alive(&published_snapshots) <= 1,
        "snapshots kept: {}",
        alive(&published_snapshots)
    );
    assert!(
        alive(&published_views) <= 1,
        "views kept: {}",
        alive(&published_views)
    );
    // And nothing was queued for it: one response (its first), while the reader got every one.
    assert_eq!(
        metrics.xds_responses.get(),
        received + 1,
        "responses sent: the reader's {received} and the stuck proxy's first"
    );
    let stuck = fleet.get("stuck").expect("the stuck proxy is connected");
    assert!(stuck.acked.is_none(), "it never ACKed");
    assert_eq!(
        fleet
            .get("reader")
            .and_then(|r| r.acked)
            .map(|v| v.version.to_string()),
        Some(last)
    );

    trigger.fire();
    reader.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_cap_are_refused() {
    let limits = Limits {
        max_streams: 1,
        ..Limits::default()
    };
    let Running {
        snapshots: _snapshots,
        metrics,
        trigger,
        url,
        serving,
        ..
    } = start(big(0, 16), limits).await;
    let open = |id: &'static str| {
        let url = url.clone();
        async move {
            let mut client = ConfigDiscoveryClient::connect(url).await.expect("connect");
            let (tx, rx) = mpsc::channel(1);
            tx.send(hello(id)).await.expect("hello");
            let result = client.delta_config(ReceiverStream::new(rx)).await;
            (result, tx)
        }
    };
    let (first, _keep) = open("first").await;
    let mut first = first.expect("the first stream is accepted").into_inner();
    let response = tokio::time::timeout(Duration::from_secs(10), first.message())
        .await
        .expect("in time")
        .expect("ok");
    assert!(response.is_some(), "the first stream is served");
    let (second, _keep2) = open("second").await;
    let status = match second {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .message()
            .await
            .expect_err("the second stream is refused"),
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert_eq!(metrics.xds_rejected_streams.get(), 1);
    trigger.fire();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
}
