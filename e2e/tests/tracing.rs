//! Request tracing through the real binaries: a proxy exporting OTLP to a receiver inside the test.
//! A request sent with a `traceparent` yields a server span in that trace (child of the caller's
//! span) and one client span per upstream attempt (children of the server span); the backend
//! receives a `traceparent` of that trace naming the client span; the access log carries the
//! trace id. Without a `traceparent`, and with sampling at 0, nothing is exported. And a
//! configuration change is one trace: the control plane's rollout and push spans, and each
//! proxy's apply span under its push.

use serval_e2e::{
    harness::{
        ControlPlane, EchoBackend, HttpClient, Process, Proxy, TempDir, binary, free_port,
        gateway_yaml, service_yaml, unique_loopback_ip, wait_ready, wait_until,
    },
    otlp::{OtlpReceiver, Received},
};
use std::{net::SocketAddr, time::Duration};

const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: flaky
    matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [500], attempts: 2, backoff: 10ms}
    backendRefs: [{name: svc-a, port: 80}]
  - backendRefs: [{name: svc-a, port: 80}]
";

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a proxy exporting to `receiver`, with `env` besides.
async fn traced_proxy(
    xds: SocketAddr,
    name: &str,
    logs: &std::path::Path,
    receiver: &OtlpReceiver,
    sampling: &str,
    propagators: &str,
    extra: &[&str],
) -> Proxy {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args: Vec<String> = [
        "--xds-server",
        &format!("http://{xds}"),
        "--xds-plaintext",
        "--node-id",
        name,
        "--admin-addr",
        &admin.to_string(),
        "--otlp-endpoint",
        &receiver.endpoint(),
        "--trace-sampling",
        sampling,
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect();
    // Export every 50 ms instead of every 5 s, so the test waits for spans, not for the timer.
    let process = Process::start_with_env(
        name,
        &binary("serval-proxy"),
        &args,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_PROPAGATORS", propagators),
        ],
        logs,
    );
    assert!(wait_ready(admin).await, "proxy {name} not ready");
    Proxy { admin, process }
}

fn seen_traceparent(reply: &serval_e2e::harness::Reply) -> Option<String> {
    let echo = reply.echo()?;
    echo.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        .and_then(|(_, v)| v.first().cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_join_the_callers_trace_and_reach_the_backend() {
    let logs = TempDir::new("tracing-logs");
    let dir = TempDir::new("tracing");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let receiver = OtlpReceiver::start(true).await;
    let ip = unique_loopback_ip();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, port));
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write("routes.yaml", ROUTES);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    // Sampling 0 for new traces: only requests whose caller sampled them are traced.
    let proxy = traced_proxy(
        cp.xds,
        "traced-proxy",
        logs.path(),
        &receiver,
        "0",
        "tracecontext",
        &[],
    )
    .await;
    let client = HttpClient::http1();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            client
                .get(gateway, "a.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "route never served"
    );

    // A sampled caller: the request fails once, then succeeds on the retry.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let key = format!("k{}", free_port());
    let reply = client
        .get(
            gateway,
            "a.example",
            &format!("/retry/x?fail=1&key={key}"),
            &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
        )
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
    let sent = seen_traceparent(&reply).expect("the backend received a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        parts[1], CALLER_TRACE,
        "the backend is in the caller's trace"
    );
    assert_ne!(
        parts[2], CALLER_SPAN,
        "the backend's parent is the proxy's span"
    );

    let ours = |spans: &[Received]| -> Vec<Received> {
        spans
            .iter()
            .filter(|s| hex(&s.span.trace_id) == CALLER_TRACE)
            .cloned()
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || async {
            ours(&receiver.spans()).len() >= 3
        })
        .await,
        "spans never exported: {:?}",
        receiver.spans()
    );
    let spans = ours(&receiver.spans());
    assert_eq!(
        spans.len(),
        3,
        "one server span, two client spans: {spans:#?}"
    );
    let server: Vec<&Received> = spans.iter().filter(|s| s.span.kind == 2).collect();
    let clients: Vec<&Received> = spans.iter().filter(|s| s.span.kind == 3).collect();
    assert_eq!((server.len(), clients.len()), (1, 2), "{spans:#?}");
    let server = server[0];
    assert_eq!(server.service, "serval-proxy");
    assert_eq!(hex(&server.span.parent_span_id), CALLER_SPAN);
    assert_eq!(server.span.name, "GET default/web");
    assert_eq!(
        server.attribute("http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(server.attribute("url.path").as_deref(), Some("/retry/x"));
    assert_eq!(
        server.attribute("http.route").as_deref(),
        Some("default/web")
    );
    assert_eq!(server.attribute("serval.rule").as_deref(), Some("flaky"));
    assert_eq!(
        server.attribute("serval.gateway").as_deref(),
        Some("default/gw")
    );
    assert_eq!(
        server.attribute("serval.backend").as_deref(),
        Some("default/svc-a:80")
    );
    assert_eq!(
        server.attribute("server.address").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        server.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.span.trace_state, "vendor=abc");
    let mut by_attempt: Vec<&&Received> = clients.iter().collect();
    by_attempt.sort_by_key(|c| c.span.start_time_unix_nano);
    for client_span in &by_attempt {
        assert_eq!(client_span.span.parent_span_id, server.span.span_id);
        assert_eq!(
            client_span.attribute("server.port"),
            Some(backend.addr.port().to_string())
        );
    }
    assert_eq!(
        by_attempt[0]
            .attribute("http.response.status_code")
            .as_deref(),
        Some("500")
    );
    assert_eq!(
        by_attempt[1]
            .attribute("http.response.status_code")
            .as_deref(),
        Some("200")
    );
    assert_eq!(
        by_attempt[1]
            .attribute("http.request.resend_count")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        hex(&by_attempt[1].span.span_id),
        parts[2],
        "the backend's parent is the attempt that reached it"
    );
    // The access log line carries the trace id.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            proxy
                .process
                .log()
                .contains(&format!("\"trace_id\":\"{CALLER_TRACE}\""))
        })
        .await,
        "no access-log line with the trace id"
    );

    // Not sampled by the caller, and new traces sampled at 0: nothing is exported, and the
    // backend still gets a traceparent of the (unsampled) trace.
    let before = receiver.count();
    let unsampled = format!("00-{}-{CALLER_SPAN}-00", "a".repeat(32));
    let reply = client
        .get(gateway, "a.example", "/", &[("traceparent", &unsampled)])
        .await
        .expect("request");
    let sent = seen_traceparent(&reply).expect("traceparent");
    assert!(
        sent.starts_with(&format!("00-{}-", "a".repeat(32))) && sent.ends_with("-00"),
        "{sent}"
    );
    for _ in 0..20 {
        let r = client
            .get(gateway, "a.example", "/", &[])
            .await
            .expect("request");
        assert_eq!(r.status, 200);
    }
    // A sampled request after them: once its spans are in, nothing else came.
    let marker = "b".repeat(32);
    client
        .get(
            gateway,
            "a.example",
            "/",
            &[("traceparent", &format!("00-{marker}-{CALLER_SPAN}-01"))],
        )
        .await
        .expect("request");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            receiver
                .spans()
                .iter()
                .any(|s| hex(&s.span.trace_id) == marker && s.span.kind == 2)
        })
        .await,
        "the marker request's spans never came"
    );
    assert_eq!(
        receiver.count() - before,
        2,
        "only the marker's server and client spans"
    );
    assert_eq!(
        proxy.metric("serval_trace_spans_dropped_total").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_rollout_is_one_trace_from_the_control_plane_to_each_proxy() {
    let logs = TempDir::new("rollout-trace-logs");
    let dir = TempDir::new("rollout-trace");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let receiver = OtlpReceiver::start(true).await;
    let ip = unique_loopback_ip();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, port));
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write("routes.yaml", ROUTES);
    let endpoint = receiver.endpoint();
    let cp = ControlPlane::start_with_env(
        dir.path(),
        logs.path(),
        None,
        &["--no-proxy", "--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    )
    .await;
    let p1 = traced_proxy(
        cp.xds,
        "rollout-1",
        logs.path(),
        &receiver,
        "0",
        "tracecontext",
        &[],
    )
    .await;
    // The second proxy serves the same Gateway on its own address.
    let other_ip = unique_loopback_ip();
    let p2 = {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args: Vec<String> = [
            "--xds-server",
            &format!("http://{}", cp.xds),
            "--xds-plaintext",
            "--node-id",
            "rollout-2",
            "--admin-addr",
            &admin.to_string(),
            "--bind-address",
            &other_ip.to_string(),
            "--otlp-endpoint",
            &endpoint,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let process = Process::start_with_env(
            "rollout-2",
            &binary("serval-proxy"),
            &args,
            &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
            logs.path(),
        );
        assert!(wait_ready(admin).await, "rollout-2 not ready");
        Proxy { admin, process }
    };
    let client = HttpClient::http1();
    for addr in [gateway, SocketAddr::from((other_ip, port))] {
        assert!(
            wait_until(Duration::from_secs(15), || async {
                client
                    .get(addr, "a.example", "/", &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await,
            "{addr} never served"
        );
    }

    // A new route: one rollout.
    let before = [
        p1.config_dump().await["version"].clone(),
        p2.config_dump().await["version"].clone(),
    ];
    dir.write(
        "new-route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: added, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: [added.example]\n  rules:\n  - backendRefs: [{name: svc-a, port: 80}]\n",
    );
    let mut versions = Vec::new();
    for ((proxy, addr), version) in [(&p1, gateway), (&p2, SocketAddr::from((other_ip, port)))]
        .into_iter()
        .zip(before)
    {
        assert!(
            wait_until(Duration::from_secs(15), || async {
                client
                    .get(addr, "added.example", "/", &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
                    && proxy.config_dump().await["version"] != version
            })
            .await,
            "the new route never reached {addr}"
        );
        versions.push(
            proxy.config_dump().await["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    // Each proxy's apply span of its new version, under a push of the control plane, under a
    // rollout: all in one trace.
    let find_applies = || {
        let spans = receiver.spans();
        versions
            .iter()
            .zip(["rollout-1", "rollout-2"])
            .map(|(v, node)| {
                spans
                    .iter()
                    .find(|s| {
                        s.span.name == "config.apply"
                            && s.attribute("serval.snapshot.version").as_deref() == Some(v.as_str())
                            && s.attribute("serval.node").as_deref() == Some(node)
                    })
                    .cloned()
            })
            .collect::<Option<Vec<Received>>>()
    };
    assert!(
        wait_until(Duration::from_secs(15), || async {
            find_applies().is_some()
        })
        .await,
        "no apply span for the new versions: {:#?}",
        receiver
            .spans()
            .iter()
            .map(|s| (&s.service, &s.span.name))
            .collect::<Vec<_>>()
    );
    let applies = find_applies().expect("apply spans");
    assert_eq!(
        applies[0].span.trace_id, applies[1].span.trace_id,
        "one trace for the rollout"
    );
    let trace = applies[0].span.trace_id.clone();
    let in_trace = |want: usize| {
        let receiver = &receiver;
        let trace = trace.clone();
        async move {
            wait_until(Duration::from_secs(15), || async {
                receiver
                    .spans()
                    .iter()
                    .filter(|s| s.span.trace_id == trace)
                    .count()
                    >= want
            })
            .await
        }
    };
    // rollout + translate + 2 pushes + 2 applies.
    assert!(in_trace(6).await, "the control plane's spans never came");
    let spans: Vec<Received> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.span.trace_id == trace)
        .collect();
    let named =
        |name: &str| -> Vec<&Received> { spans.iter().filter(|s| s.span.name == name).collect() };
    let rollout = named("config.rollout");
    assert_eq!(rollout.len(), 1, "{spans:#?}");
    assert_eq!(rollout[0].service, "serval-control-plane");
    assert!(
        rollout[0].span.parent_span_id.is_empty(),
        "the rollout is the root"
    );
    assert_eq!(
        named("config.translate")[0].span.parent_span_id,
        rollout[0].span.span_id
    );
    let pushes = named("config.push");
    assert_eq!(pushes.len(), 2, "{spans:#?}");
    for (apply, node) in applies.iter().zip(["rollout-1", "rollout-2"]) {
        assert_eq!(apply.service, "serval-proxy");
        assert_eq!(apply.attribute("serval.node").as_deref(), Some(node));
        assert_eq!(apply.attribute("serval.answer").as_deref(), Some("ACK"));
        let push = pushes
            .iter()
            .find(|p| p.span.span_id == apply.span.parent_span_id)
            .expect("the apply span's parent is a push");
        assert_eq!(push.attribute("serval.node").as_deref(), Some(node));
        assert_eq!(push.span.parent_span_id, rollout[0].span.span_id);
        assert_eq!(push.attribute("serval.answer").as_deref(), Some("ACK"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_headers_are_read_and_written_when_configured() {
    let logs = TempDir::new("b3-logs");
    let dir = TempDir::new("b3");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let receiver = OtlpReceiver::start(true).await;
    let ip = unique_loopback_ip();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, port));
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write("routes.yaml", ROUTES);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let _proxy = traced_proxy(
        cp.xds,
        "b3-proxy",
        logs.path(),
        &receiver,
        "0",
        "b3multi",
        &[],
    )
    .await;
    let client = HttpClient::http1();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            client
                .get(gateway, "a.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "route never served"
    );
    let reply = client
        .get(
            gateway,
            "a.example",
            "/",
            &[
                ("x-b3-traceid", CALLER_TRACE),
                ("x-b3-spanid", CALLER_SPAN),
                ("x-b3-sampled", "1"),
            ],
        )
        .await
        .expect("request");
    let echo = reply.echo().expect("echo");
    let seen = |name: &str| {
        echo.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
    };
    assert_eq!(seen("x-b3-traceid").as_deref(), Some(CALLER_TRACE));
    assert_eq!(seen("x-b3-sampled").as_deref(), Some("1"));
    let forwarded_span = seen("x-b3-spanid").expect("a span id");
    assert_ne!(
        forwarded_span, CALLER_SPAN,
        "the proxy's client span is the backend's parent"
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            receiver.spans().iter().any(|s| {
                s.span.kind == 2
                    && hex(&s.span.trace_id) == CALLER_TRACE
                    && hex(&s.span.parent_span_id) == CALLER_SPAN
            })
        })
        .await,
        "no server span under the B3 parent"
    );
    assert!(
        receiver
            .spans()
            .iter()
            .any(|s| s.span.kind == 3 && hex(&s.span.span_id) == forwarded_span),
        "the forwarded span id is the client span's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http_with_protobuf_too() {
    let logs = TempDir::new("otlp-http-logs");
    let dir = TempDir::new("otlp-http");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let receiver = OtlpReceiver::start_http(true).await;
    let ip = unique_loopback_ip();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    dir.write("gateway.yaml", &gateway_yaml(ip, port));
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write("routes.yaml", ROUTES);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let _proxy = traced_proxy(
        cp.xds,
        "http-export-proxy",
        logs.path(),
        &receiver,
        "1",
        "tracecontext",
        &["--otlp-protocol", "http/protobuf"],
    )
    .await;
    let client = HttpClient::http1();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            client
                .get(gateway, "a.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "route never served"
    );
    // Sampling 1: this request starts a trace of its own.
    client
        .get(gateway, "a.example", "/over-http", &[])
        .await
        .expect("request");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            receiver.spans().iter().any(|s| {
                s.span.kind == 2
                    && s.service == "serval-proxy"
                    && s.attribute("url.path").as_deref() == Some("/over-http")
            })
        })
        .await,
        "no span arrived over OTLP/HTTP"
    );
}
