//! Routing through the real `serval-control-plane standalone` (with its in-process proxy) to real
//! echo backends: by host and path, weights, the error statuses, header rewriting and HTTP/2.

use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, TempDir, free_port, gateway_yaml, h2c_get, service_yaml,
    unique_loopback_ip,
};
use std::{collections::BTreeMap, net::SocketAddr};

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-host, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.example]
  rules:
  - backendRefs: [{name: svc-a, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: by-path, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [paths.example]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /prefix/longer}}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /weighted}}]
    backendRefs: [{name: svc-a, port: 80, weight: 3}, {name: svc-b, port: 80, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: [{name: svc-empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: no-such-service, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /down}}]
    backendRefs: [{name: svc-down, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h2c}}]
    backendRefs: [{name: svc-h2c, port: 80}]
"#;

struct Setup {
    gateway: SocketAddr,
    _a: EchoBackend,
    _b: EchoBackend,
    _cp: ControlPlane,
    _dir: TempDir,
    _logs: TempDir,
}

async fn setup() -> Setup {
    let logs = TempDir::new("routing-logs");
    let dir = TempDir::new("routing");
    let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let b = EchoBackend::start("svc-b", "svc-b-pod-0", logs.path()).await;
    let ip = unique_loopback_ip();
    let down: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, 8080));
    dir.write(
        "services.yaml",
        &[
            service_yaml("svc-a", &[a.addr]),
            service_yaml("svc-b", &[b.addr]),
            service_yaml("svc-empty", &[]),
            service_yaml("svc-down", &[down]),
            service_yaml("svc-h2c", &[b.addr]).replace(
                "{name: http, port: 80}",
                "{name: http, port: 80, appProtocol: kubernetes.io/h2c}",
            ),
        ]
        .join("---\n"),
    );
    dir.write("routes.yaml", ROUTES);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &[]).await;
    Setup {
        gateway: (ip, 8080).into(),
        _a: a,
        _b: b,
        _cp: cp,
        _dir: dir,
        _logs: logs,
    }
}

async fn pod(client: &HttpClient, gw: SocketAddr, host: &str, path: &str) -> String {
    let reply = client
        .get(gw, host, path, &[])
        .await
        .unwrap_or_else(|e| panic!("{host}{path}: {e}"));
    assert_eq!(
        reply.status,
        200,
        "{host}{path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let echo = reply
        .echo()
        .unwrap_or_else(|| panic!("{host}{path}: not echo JSON"));
    assert_eq!(echo.path, path);
    assert_eq!(echo.host, host);
    echo.pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_then_path_and_reports_errors() {
    let s = setup().await;
    let c = HttpClient::http1();
    assert_eq!(
        pod(&c, s.gateway, "a.example", "/anything").await,
        "svc-a-pod-0"
    );
    assert_eq!(
        pod(&c, s.gateway, "a.example:8080", "/x?y=1").await,
        "svc-a-pod-0"
    );
    assert_eq!(
        pod(&c, s.gateway, "paths.example", "/exact").await,
        "svc-b-pod-0"
    );
    assert_eq!(
        pod(&c, s.gateway, "paths.example", "/prefix/x").await,
        "svc-a-pod-0"
    );
    assert_eq!(
        pod(&c, s.gateway, "paths.example", "/prefix/longer/x").await,
        "svc-b-pod-0"
    );

    let status = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let gw = s.gateway;
        async move { c.get(gw, host, path, &[]).await.map(|r| r.status.as_u16()) }
    };
    assert_eq!(
        status("unknown.example", "/").await,
        Ok(404),
        "no virtual host"
    );
    assert_eq!(
        status("paths.example", "/exact/more").await,
        Ok(404),
        "exact is exact"
    );
    assert_eq!(
        status("paths.example", "/prefixed").await,
        Ok(404),
        "prefix is element-wise"
    );
    assert_eq!(
        status("paths.example", "/empty").await,
        Ok(503),
        "no endpoints"
    );
    assert_eq!(
        status("paths.example", "/missing").await,
        Ok(500),
        "invalid backend"
    );
    assert_eq!(
        status("paths.example", "/down").await,
        Ok(503),
        "connection refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_roughly_honoured() {
    let s = setup().await;
    let c = HttpClient::http1();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..400 {
        *counts
            .entry(pod(&c, s.gateway, "paths.example", "/weighted").await)
            .or_default() += 1;
    }
    let a = counts.get("svc-a-pod-0").copied().unwrap_or(0);
    let b = counts.get("svc-b-pod-0").copied().unwrap_or(0);
    assert_eq!(a + b, 400, "{counts:?}");
    // Expected 300/100; the bounds are more than 5 standard deviations (σ ≈ 8.7) wide.
    assert!((255..=345).contains(&a), "weights 3:1 gave {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_headers_and_serves_http2_prior_knowledge() {
    let s = setup().await;
    let c = HttpClient::http1();
    let reply = c
        .get(
            s.gateway,
            "a.example",
            "/h",
            &[
                ("connection", "x-private"),
                ("x-private", "secret"),
                ("x-forwarded-for", "192.0.2.7"),
                ("x-keep", "1"),
            ],
        )
        .await
        .expect("request");
    let echo = reply.echo().expect("echo JSON");
    assert_eq!(echo.headers.get("X-Keep"), Some(&vec!["1".to_owned()]));
    assert_eq!(
        echo.headers.get("X-Private"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(
        echo.headers.get("X-Forwarded-For"),
        Some(&vec!["192.0.2.7, 127.0.0.1".to_owned()])
    );
    assert_eq!(
        echo.headers.get("X-Forwarded-Proto"),
        Some(&vec!["http".to_owned()])
    );

    let reply = h2c_get(s.gateway, "paths.example", "/exact")
        .await
        .expect("h2c request");
    assert_eq!(reply.status, 200);
    let echo = reply.echo().expect("echo JSON");
    assert_eq!(echo.pod, "svc-b-pod-0");
    assert_eq!(echo.host, "paths.example");
    assert_eq!(echo.proto, "HTTP/1.1", "the upstream speaks HTTP/1.1");

    // appProtocol kubernetes.io/h2c: HTTP/2 to the backend, with the client's host as :authority.
    for client_h2 in [false, true] {
        let reply = if client_h2 {
            h2c_get(s.gateway, "paths.example", "/h2c/x").await
        } else {
            c.get(s.gateway, "paths.example", "/h2c/x", &[]).await
        }
        .expect("request");
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let echo = reply.echo().expect("echo JSON");
        assert_eq!(echo.proto, "HTTP/2.0");
        assert_eq!(echo.host, "paths.example");
        assert_eq!(
            echo.headers.get("Host"),
            None,
            "HTTP/2 carries the host in :authority only"
        );
        assert_eq!(echo.path, "/h2c/x");
    }
}
