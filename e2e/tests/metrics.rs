//! The proxy's request metrics through the real binaries: `/metrics` parsed as Prometheus text,
//! counters moving with traffic by route, rule, listener, backend and status class, 10,000
//! distinct request paths and hosts adding no series, a removed route's series going away, and the
//! applied version as an info metric; and the control plane's resources by kind, folder events
//! and debounce delay.

use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, Proxy, TempDir, admin_get, free_port, gateway_yaml,
    service_yaml, unique_loopback_ip, wait_until,
};
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [\"*.example\"]
  rules:
  - name: api
    matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: svc-a, port: 80}]
  - backendRefs: [{name: svc-a, port: 80}]
";

const DOWN: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: down, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [down.test]
  rules:
  - backendRefs: [{name: svc-down, port: 80}]
";

const GONE: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gone, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [gone.test]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {hostname: elsewhere.test}}]
";

/// Every sample of `/metrics`: `name{labels}` → value (OpenMetrics text).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The request samples (`serval_http_*`).
async fn request_samples(proxy: &Proxy) -> BTreeMap<String, f64> {
    let reply = admin_get(proxy.admin, "/metrics").await.expect("/metrics");
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    samples(&text)
        .into_iter()
        .filter(|(k, _)| k.starts_with("serval_http_request"))
        .collect()
}

fn labels(route: &str, rule: &str, backend: &str) -> String {
    format!(
        "gateway=\"default/gw\",listener=\"http\",route=\"default/{route}\",route_kind=\"httproute\",rule=\"{rule}\",backend=\"{backend}\""
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_move_with_traffic_and_stay_bounded() {
    let logs = TempDir::new("metrics-logs");
    let dir = TempDir::new("metrics");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let ip = unique_loopback_ip();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, port));
    // svc-down's only endpoint is a port nobody listens on.
    let nobody: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    dir.write(
        "services.yaml",
        &[
            service_yaml("svc-a", &[backend.addr]),
            service_yaml("svc-down", &[nobody]),
        ]
        .join("---\n"),
    );
    dir.write("routes.yaml", &format!("{ROUTES}{DOWN}{GONE}"));
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let proxy = Proxy::start_with(
        cp.xds,
        "metrics-proxy",
        logs.path(),
        &["--access-log", "off"],
    )
    .await;
    let client = HttpClient::http1();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            client
                .get(gateway, "gone.test", "/", &[])
                .await
                .is_ok_and(|r| r.status == 302)
        })
        .await,
        "routes never served"
    );

    // One request of each kind creates the series.
    for (host, path, status) in [
        ("a.example", "/api/x", 200),
        ("a.example", "/other", 200),
        ("gone.test", "/", 302),
        ("nothing.test", "/", 404),
    ] {
        let r = client.get(gateway, host, path, &[]).await.expect("request");
        assert_eq!(r.status, status, "{host}{path}");
    }
    let before = request_samples(&proxy).await;
    let api = labels("web", "api", "default/svc-a:80");
    let api_2xx = format!("serval_http_requests_total{{{api},status_class=\"2xx\"}}");
    assert_eq!(before.get(&api_2xx), Some(&1.0), "{before:#?}");
    let rest_2xx = format!(
        "serval_http_requests_total{{{},status_class=\"2xx\"}}",
        labels("web", "1", "default/svc-a:80")
    );
    assert_eq!(before.get(&rest_2xx), Some(&1.0), "{before:#?}");
    let redirect = format!(
        "serval_http_requests_total{{{},status_class=\"3xx\"}}",
        labels("gone", "0", "")
    );
    // The wait for the routes made one or more of these.
    assert!(before.get(&redirect) >= Some(&2.0), "{before:#?}");
    let no_route = "serval_http_requests_total{gateway=\"\",listener=\"\",route=\"\",route_kind=\"\",rule=\"\",backend=\"\",status_class=\"4xx\"}";
    assert_eq!(before.get(no_route), Some(&1.0), "{before:#?}");

    // 10,000 requests, each with its own host and path, half to each rule, with bodies.
    const N: usize = 10_000;
    const TASKS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let client = client.clone();
        tasks.spawn(async move {
            for i in (t..N).step_by(TASKS) {
                let host = format!("h{i}.example");
                let path = if i % 2 == 0 {
                    format!("/api/p{i}?q={i}")
                } else {
                    format!("/p{i}")
                };
                let reply = client
                    .send(
                        http::Method::POST,
                        gateway,
                        &host,
                        &path,
                        &[],
                        bytes::Bytes::from_static(&[b'x'; 10]),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{host}{path}: {e}"));
                assert_eq!(reply.status, 200, "{host}{path}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }
    let after = request_samples(&proxy).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "distinct paths and hosts added series"
    );
    assert_eq!(after[&api_2xx], 1.0 + (N / 2) as f64);
    assert_eq!(after[&rest_2xx], 1.0 + (N / 2) as f64);
    let api_count = format!("serval_http_request_duration_seconds_count{{{api}}}");
    assert_eq!(after[&api_count], 1.0 + (N / 2) as f64);
    let api_body = format!("serval_http_request_body_bytes_total{{{api}}}");
    assert_eq!(after[&api_body] - before[&api_body], 10.0 * (N / 2) as f64);
    let text = after.keys().cloned().collect::<Vec<_>>().join("\n");
    assert!(
        !text.contains("h4242") && !text.contains("/p4242"),
        "request data in labels"
    );

    // The applied version is an info metric.
    let reply = admin_get(proxy.admin, "/metrics").await.expect("/metrics");
    let all = samples(&String::from_utf8_lossy(&reply.body));
    let version = proxy.config_dump().await["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let info: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.starts_with("serval_config_info"))
        .collect();
    assert_eq!(
        info,
        [(
            &format!("serval_config_info{{version=\"{version}\"}}"),
            &1.0
        )]
    );

    // Route `gone` leaves the configuration: its series go, the others stay.
    // Connections: the client's keep-alive ones are open, and so are the proxy's to svc-a.
    assert!(
        all.get("serval_downstream_connections") >= Some(&1.0),
        "{all:#?}"
    );
    assert!(all.get("serval_downstream_connections_accepted_total") >= Some(&(TASKS as f64)));
    assert!(
        all.get("serval_upstream_connections") >= Some(&1.0),
        "{all:#?}"
    );
    // A backend that refuses connections: 503, counted as a connect failure of that backend.
    let down = client
        .get(gateway, "down.test", "/", &[])
        .await
        .expect("request");
    assert_eq!(down.status, 503);
    let reply = admin_get(proxy.admin, "/metrics").await.expect("/metrics");
    let all = samples(&String::from_utf8_lossy(&reply.body));
    assert!(
        all.get("serval_upstream_connect_failures_total{backend=\"default/svc-down:80\"}")
            >= Some(&1.0),
        "{all:#?}"
    );

    dir.write("routes.yaml", &format!("{ROUTES}{DOWN}"));
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let now = request_samples(&proxy).await;
            !now.contains_key(&redirect) && now.contains_key(&api_2xx)
        })
        .await,
        "series of a removed route stayed"
    );
    let now = request_samples(&proxy).await;
    assert!(
        !now.keys().any(|k| k.contains("route=\"default/gone\"")),
        "{now:#?}"
    );
    assert_eq!(now.get(no_route), Some(&1.0));

    // The control plane: resources by kind (counted at scrape), folder events, debounce delay.
    let reply = admin_get(cp.admin, "/metrics")
        .await
        .expect("control plane /metrics");
    let cp_samples = samples(&String::from_utf8_lossy(&reply.body));
    let by_kind = |kind: &str| {
        cp_samples
            .get(&format!(
                "serval_snapshot_resources_by_kind{{kind=\"{kind}\"}}"
            ))
            .copied()
    };
    assert_eq!(by_kind("AttachedRoute"), Some(2.0), "{cp_samples:#?}");
    assert_eq!(by_kind("Listener"), Some(1.0));
    assert_eq!(by_kind("Secret"), Some(0.0));
    assert!(cp_samples.get("serval_config_file_events_total") >= Some(&1.0));
    assert!(cp_samples.get("serval_debounce_delay_seconds_count") >= Some(&1.0));
}
