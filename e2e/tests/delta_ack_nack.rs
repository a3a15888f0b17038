//! The real `serval-proxy` against a scripted delta server: a valid response is applied and ACKed,
//! responses that fail validation or decoding are NACKed with an `error_detail` naming the
//! resource and the reason while the last good configuration keeps serving, and a later valid
//! response is applied.

use futures_util::StreamExt as _;
use serval_common::{
    Resource, names,
    proto::{
        config::v1 as pb,
        discovery::v1::{
            self as discovery, DeltaConfigRequest, DeltaConfigResponse,
            config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer},
        },
    },
};
use serval_e2e::harness::{EchoBackend, HttpClient, Proxy, TempDir, free_port, unique_loopback_ip};
use std::{net::SocketAddr, pin::Pin, time::Duration};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type Out = Pin<Box<dyn futures_util::Stream<Item = Result<DeltaConfigResponse, Status>> + Send>>;

/// A delta server whose responses the test sends by hand and whose requests it reads.
struct Scripted {
    responses: Mutex<Option<mpsc::Receiver<DeltaConfigResponse>>>,
    requests: mpsc::Sender<DeltaConfigRequest>,
}

#[tonic::async_trait]
impl ConfigDiscovery for Scripted {
    type DeltaConfigStream = Out;

    async fn delta_config(
        &self,
        request: Request<Streaming<DeltaConfigRequest>>,
    ) -> Result<Response<Out>, Status> {
        let Some(responses) = self.responses.lock().await.take() else {
            return Err(Status::unavailable("one stream only"));
        };
        let mut inbound = request.into_inner();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                if requests.send(req).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            ReceiverStream::new(responses).map(Ok),
        )))
    }
}

fn resource(r: Resource) -> discovery::Resource {
    discovery::Resource {
        name: r.name().to_owned(),
        version: r.version().to_string(),
        resource: Some(r.to_any()),
    }
}

/// The route `default/web` on Gateway `default/gw`, for `domains`, to `cluster`.
fn attached_route(domains: &[&str], cluster: &str) -> Resource {
    Resource::AttachedRoute(pb::AttachedRoute {
        name: ATTACHED.into(),
        attachments: vec![pb::RouteAttachment {
            route_config: names::route_config("default", "gw", 8080),
            section_name: "http".into(),
            hostnames: domains.iter().map(|d| d.to_string()).collect(),
        }],
        routes: vec![pb::Route {
            name: "route/default/httproute/web/rule/0/match/0".into(),
            precedence: Some(pb::Precedence {
                path_kind: 2,
                namespace: "default".into(),
                route: "web".into(),
                ..Default::default()
            }),
            r#match: Some(pb::RouteMatch {
                path: Some(pb::PathMatch {
                    kind: Some(pb::path_match::Kind::Prefix("/".into())),
                }),
                ..Default::default()
            }),
            action: Some(pb::route::Action::Route(pb::RouteAction {
                backends: vec![pb::WeightedBackend {
                    weight: 1,
                    target: Some(pb::weighted_backend::Target::Cluster(cluster.into())),
                    filters: None,
                }],
            })),
            ..Default::default()
        }],
    })
}

const ATTACHED: &str = "attachedroute/default/gw/httproute/default/web";

fn initial(ip: std::net::Ipv4Addr, echo: SocketAddr) -> Vec<discovery::Resource> {
    let cluster = names::cluster("default", "svc-a", 80);
    let cla = names::load_assignment("default", "svc-a", 80);
    vec![
        resource(Resource::Listener(pb::Listener {
            name: names::listener("default", "gw", 8080),
            address: Some(pb::SocketAddress {
                ip: ip.to_string(),
                port: 8080,
            }),
            gateway: "default/gw".into(),
            gateway_class: String::new(),
            section_names: vec!["http".into()],
            protocol: Some(pb::listener::Protocol::Http(pb::HttpListener {
                route_config_name: names::route_config("default", "gw", 8080),
                ..Default::default()
            })),
        })),
        resource(Resource::RouteConfig(pb::RouteConfig {
            name: names::route_config("default", "gw", 8080),
            listeners: vec![pb::ListenerHost {
                section_name: "http".into(),
                hostname: "*".into(),
            }],
            ..Default::default()
        })),
        resource(attached_route(&["good.example"], &cluster)),
        resource(Resource::Cluster(pb::Cluster {
            name: cluster.clone(),
            load_assignment_name: cla.clone(),
            service: "default/svc-a".into(),
            port: 80,
            ..Default::default()
        })),
        resource(Resource::ClusterLoadAssignment(pb::ClusterLoadAssignment {
            name: cla,
            cluster_name: cluster,
            endpoints: vec![pb::Endpoint {
                address: Some(pb::SocketAddress {
                    ip: echo.ip().to_string(),
                    port: u32::from(echo.port()),
                }),
                hostname: "svc-a-pod-0".into(),
                zone: String::new(),
            }],
        })),
    ]
}

async fn next(requests: &mut mpsc::Receiver<DeltaConfigRequest>) -> DeltaConfigRequest {
    tokio::time::timeout(Duration::from_secs(10), requests.recv())
        .await
        .expect("the proxy answers within 10s")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_responses_are_nacked_and_the_last_good_config_keeps_serving() {
    let logs = TempDir::new("fake-cp-logs");
    let echo = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let ip = unique_loopback_ip();
    let gateway: SocketAddr = (ip, 8080).into();

    let (resp_tx, resp_rx) = mpsc::channel(4);
    let (req_tx, mut requests) = mpsc::channel(16);
    let scripted = Scripted {
        responses: Mutex::new(Some(resp_rx)),
        requests: req_tx,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
        .await
        .expect("bind");
    let xds = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ConfigDiscoveryServer::new(scripted))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // The proxy's /readyz waits for the first ACK, so start it without waiting and script first.
    let proxy_task = tokio::spawn({
        let logs = logs.path().to_path_buf();
        async move { Proxy::start(xds, "fake-cp-proxy", &logs).await }
    });
    let hello = next(&mut requests).await;
    assert_eq!(
        hello.node.as_ref().map(|n| n.id.as_str()),
        Some("fake-cp-proxy")
    );
    assert!(hello.initial_resource_versions.is_empty());

    let send =
        |version: &str, nonce: &str, resources: Vec<discovery::Resource>| DeltaConfigResponse {
            system_version_info: version.into(),
            resources,
            removed_resources: vec![],
            nonce: nonce.into(),
            ..Default::default()
        };
    resp_tx
        .send(send("v1", "n1", initial(ip, echo.addr)))
        .await
        .expect("send v1");
    let ack = next(&mut requests).await;
    assert_eq!(
        (ack.response_nonce.as_str(), ack.error_detail.is_none()),
        ("n1", true),
        "{ack:?}"
    );
    let proxy = proxy_task.await.expect("proxy started");
    let client = HttpClient::http1();
    let serves = |host: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(gateway, host, "/", &[])
                .await
                .map(|r| r.status.as_u16())
        }
    };
    assert_eq!(serves("good.example").await, Ok(200));

    // v2: a route to a cluster the proxy does not hold.
    let missing = names::cluster("default", "missing", 80);
    resp_tx
        .send(send(
            "v2",
            "n2",
            vec![resource(attached_route(&["good.example"], &missing))],
        ))
        .await
        .expect("send v2");
    let nack = next(&mut requests).await;
    assert_eq!(nack.response_nonce, "n2");
    let detail = nack.error_detail.expect("v2 is NACKed");
    assert_eq!(detail.resource_errors.len(), 1, "{detail:?}");
    assert_eq!(detail.resource_errors[0].name, ATTACHED);
    assert!(detail.message.contains(&missing), "{}", detail.message);
    assert_eq!(serves("good.example").await, Ok(200), "v1 keeps serving");
    assert_eq!(proxy.config_dump().await["version"], "v1");

    // v3: a payload of an unknown type.
    let mut bogus = resource(attached_route(&["good.example"], &missing));
    if let Some(any) = bogus.resource.as_mut() {
        any.type_url = "type.googleapis.com/serval.config.v1.Teapot".into();
    }
    resp_tx
        .send(send("v3", "n3", vec![bogus]))
        .await
        .expect("send v3");
    let nack = next(&mut requests).await;
    let detail = nack.error_detail.expect("v3 is NACKed");
    assert!(
        detail.message.contains("unknown type") && detail.message.contains(ATTACHED),
        "{}",
        detail.message
    );
    assert_eq!(serves("good.example").await, Ok(200), "v1 keeps serving");

    // v4: a valid change is applied.
    let cluster = names::cluster("default", "svc-a", 80);
    resp_tx
        .send(send(
            "v4",
            "n4",
            vec![resource(attached_route(
                &["good.example", "new.example"],
                &cluster,
            ))],
        ))
        .await
        .expect("send v4");
    let ack = next(&mut requests).await;
    assert_eq!(
        (ack.response_nonce.as_str(), ack.error_detail.is_none()),
        ("n4", true)
    );
    assert_eq!(serves("new.example").await, Ok(200));
    assert_eq!(proxy.config_dump().await["version"], "v4");
    assert_eq!(
        proxy.metric("serval_config_rejected_total").await,
        Some(2.0)
    );
    server.abort();
}
