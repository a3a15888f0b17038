//! The access log of a real `serval-proxy`: one JSON line per request on its stdout, with the
//! Gateway, route, rule, backend and endpoint from the configuration, the request's method, host,
//! path and trace id, the status, durations and bytes both ways; none with `--access-log off`.

use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, Proxy, TempDir, gateway_yaml, service_yaml,
    unique_loopback_ip,
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: logged, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [logged.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /other}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /items}}]
    backendRefs: [{name: svc, port: 80}]
"#;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The JSON lines of `proxy`'s output whose `path` is `path`, once there are `n` of them (waits
/// up to 10 s).
async fn lines_for(proxy: &Proxy, path: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<serde_json::Value> = proxy
            .process
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["path"] == path)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} access-log lines for {path} expected; log:\n{}",
            proxy.process.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn each_request_is_one_json_line_with_route_backend_and_trace() {
    let logs = TempDir::new("access-log-logs");
    let dir = TempDir::new("access-log");
    let backend = EchoBackend::start("svc", "svc-pod-0", logs.path()).await;
    dir.write(
        "gateway.yaml",
        &gateway_yaml(Ipv4Addr::new(127, 0, 0, 1), 8080),
    );
    dir.write("service.yaml", &service_yaml("svc", &[backend.addr]));
    dir.write("route.yaml", ROUTE);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let ip = unique_loopback_ip();
    let proxy = Proxy::start_with(
        cp.xds,
        "logging",
        logs.path(),
        &["--bind-address", &ip.to_string()],
    )
    .await;
    let quiet_ip = unique_loopback_ip();
    let mut quiet = Proxy::start_with(
        cp.xds,
        "quiet",
        logs.path(),
        &[
            "--bind-address",
            &quiet_ip.to_string(),
            "--access-log",
            "off",
        ],
    )
    .await;
    let gateway: SocketAddr = (ip, 8080).into();
    let client = HttpClient::http1();

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let reply = client
        .send(
            http::Method::POST,
            gateway,
            "logged.example",
            "/items/7?color=red",
            &[("traceparent", &traceparent)],
            bytes::Bytes::from_static(b"hello world"),
        )
        .await
        .expect("routed request");
    assert_eq!(reply.status, 200);
    let missing = client
        .get(gateway, "nowhere.example", "/nothing", &[])
        .await
        .expect("unrouted request");
    assert_eq!(missing.status, 404);

    let line = &lines_for(&proxy, "/items/7", 1).await[0];
    assert_eq!(line["gateway"], "default/gw");
    assert_eq!(line["route"], "default/logged");
    assert_eq!(line["route_kind"], "httproute");
    assert_eq!(line["rule"], 1);
    assert_eq!(line["backend"], "default/svc:80");
    assert_eq!(line["endpoint"], backend.addr.to_string());
    assert_eq!(line["upstream_attempts"], 1);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["host"], "logged.example");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_received"], 11);
    assert_eq!(
        line["bytes_sent"].as_u64(),
        Some(reply.body.len() as u64),
        "{line}"
    );
    assert_eq!(line["trace_id"], TRACE_ID);
    let client_ip = line["client_address"].as_str().expect("client address");
    assert!(client_ip.starts_with("127."), "{client_ip}");
    let (total, upstream) = (
        line["duration_ms"].as_f64().expect("duration"),
        line["upstream_duration_ms"]
            .as_f64()
            .expect("upstream duration"),
    );
    assert!(upstream > 0.0 && total >= upstream, "{line}");

    let unrouted = &lines_for(&proxy, "/nothing", 1).await[0];
    assert_eq!(unrouted["status"], 404);
    assert_eq!(unrouted["host"], "nowhere.example");
    assert!(unrouted["route"].is_null() && unrouted["backend"].is_null());

    // The quiet proxy serves the same request and logs nothing, even after a graceful stop
    // (which writes out whatever a log holds).
    let quiet_gateway: SocketAddr = (quiet_ip, 8080).into();
    let reply = client
        .get(quiet_gateway, "logged.example", "/items/quiet", &[])
        .await
        .expect("request through the quiet proxy");
    assert_eq!(reply.status, 200);
    let pid = quiet.process.id().expect("quiet proxy runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while quiet.process.is_running() {
        assert!(Instant::now() < deadline, "quiet proxy did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quiet_lines = quiet
        .process
        .log()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert_eq!(quiet_lines, 0, "--access-log off: {}", quiet.process.log());
}
