//! HTTPRoute semantics through the real `serval-control-plane standalone` (with its in-process
//! proxy) and real echo backends: match precedence across routes, redirects, rewrites and header
//! changes, mirrors, retries, timeouts, CORS and WebSocket upgrades.
//!
//! Every test starts its own backends and control plane (free ports, its own loopback address);
//! everything is killed when the test ends, also when it fails.

use http::Method;
use serval_e2e::harness::{
    ControlPlane, HttpClient, Reply, Scenario, free_port, service_yaml, wait_until,
};
use std::{net::SocketAddr, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running scenario: backends `svc-a`, `svc-b`, the given routes and a control plane.
struct Setup {
    s: Scenario,
    _cp: ControlPlane,
    client: HttpClient,
}

async fn setup(tag: &str, routes: &str) -> Setup {
    let s = Scenario::two_backends(tag, &["unused.example"]).await;
    s.dir.write("route.yaml", routes);
    let cp = ControlPlane::start(s.dir.path(), s.logs.path(), None, &[]).await;
    let setup = Setup {
        s,
        _cp: cp,
        client: HttpClient::http1(),
    };
    // Routes are applied once the first request on the host finds one.
    let gw = setup.s.gateway;
    let client = setup.client.clone();
    let ready = wait_until(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client
                .get(gw, "ready.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        }
    })
    .await;
    assert!(ready, "routes were not applied");
    setup
}

/// A route for `ready.example` so setup can tell the configuration is applied.
const READY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ready, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [ready.example]
  rules:
  - backendRefs: [{name: svc-a, port: 80}]
"#;

impl Setup {
    async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.client
            .request(method, self.s.gateway, host, path, headers)
            .await
            .unwrap_or_else(|e| panic!("{host}{path}: {e}"))
    }

    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, host, path, headers).await
    }

    /// The pod that answered, or the status when no echo body came back.
    async fn pod(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let reply = self.get(host, path, headers).await;
        reply
            .echo()
            .map_or_else(|| format!("status {}", reply.status.as_u16()), |e| e.pod)
    }
}

fn routes(body: &str) -> String {
    format!("{READY}---\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_across_routes_sharing_a_hostname() {
    // Two routes on one hostname; the older one (created first) wins exact ties.
    let t = setup(
        "precedence",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: newer, namespace: default, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  hostnames: [p.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /app}}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /app/v2}}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /m}, method: POST}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h}, headers: [{name: x-a, value: "1"}, {name: x-b, value: "1"}]}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: a, value: "1"}]}]
    backendRefs: [{name: svc-b, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: older, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  hostnames: [p.example]
  rules:
  - matches: [{path: {type: Exact, value: /app/exact}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /app}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /m}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h}, headers: [{name: x-a, value: "1"}]}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /q}}]
    backendRefs: [{name: svc-a, port: 80}]
"#,
        ),
    )
    .await;
    let (a, b) = ("svc-a-pod-0", "svc-b-pod-0");
    assert_eq!(
        t.pod("p.example", "/app/exact", &[]).await,
        a,
        "Exact beats every prefix"
    );
    assert_eq!(
        t.pod("p.example", "/app/v2/x", &[]).await,
        b,
        "the longest prefix wins"
    );
    assert_eq!(
        t.pod("p.example", "/app/other", &[]).await,
        a,
        "equal prefixes: the oldest route"
    );
    assert_eq!(
        t.pod("p.example", "/app2", &[]).await,
        "status 404",
        "prefixes are segment-wise"
    );
    let post = t.send(Method::POST, "p.example", "/m", &[]).await;
    assert_eq!(
        post.echo().map(|e| e.pod).as_deref(),
        Some(b),
        "a method match beats none"
    );
    assert_eq!(t.pod("p.example", "/m", &[]).await, a);
    let both = [("x-a", "1"), ("x-b", "1")];
    assert_eq!(
        t.pod("p.example", "/h", &both).await,
        b,
        "more header matches win"
    );
    assert_eq!(t.pod("p.example", "/h", &[("x-a", "1")]).await, a);
    assert_eq!(
        t.pod("p.example", "/q?a=1", &[]).await,
        b,
        "more query matches win"
    );
    assert_eq!(t.pod("p.example", "/q?a=2", &[]).await, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_follow_the_default_port_rules() {
    let t = setup(
        "redirects",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirects, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [r.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /to-https}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /same-scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: other.example}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 80}}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 308}}]
  - matches: [{path: {type: PathPrefix, value: /backend}}]
    backendRefs:
    - name: svc-a
      port: 80
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /moved}}}]
"#,
        ),
    )
    .await;
    let check = |path: &'static str, status: u16, location: &'static str| {
        let t = &t;
        async move {
            let r = t.get("r.example", path, &[]).await;
            assert_eq!(r.status, status, "{path}");
            assert_eq!(r.header("location"), Some(location), "{path}");
        }
    };
    // A new scheme without a port: its well-known port, left out of Location.
    check("/to-https/x?q=1", 301, "https://r.example/to-https/x?q=1").await;
    // No scheme and no port: the listener's port (8080), kept because it is not 80.
    check("/same-scheme", 302, "http://other.example:8080/same-scheme").await;
    // Port 80 with http is left out.
    check("/port/a", 302, "http://r.example/port/a").await;
    check("/old/page", 308, "http://r.example:8080/new/page").await;
    check("/old", 308, "http://r.example:8080/new").await;
    check("/backend/x", 302, "http://r.example:8080/moved").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_header_modifiers() {
    let t = setup(
        "rewrites",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rewrites, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [w.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: backend.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}]
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Response, value: "yes"}]
        remove: [Content-Type]
    backendRefs:
    - name: svc-b
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Backend, value: b}]}}]
"#,
        ),
    )
    .await;
    let echo = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let t = &t;
        async move {
            t.get("w.example", path, headers)
                .await
                .echo()
                .unwrap_or_else(|| panic!("{path}: no echo"))
        }
    };
    let e = echo("/prefix/one/two?x=1", &[]).await;
    assert_eq!(
        (e.path.as_str(), e.host.as_str()),
        ("/one/two?x=1", "backend.example")
    );
    assert_eq!(echo("/strip/a/b", &[]).await.path, "/a/b");
    assert_eq!(echo("/strip", &[]).await.path, "/");
    assert_eq!(echo("/full/any?k=v", &[]).await.path, "/replaced?k=v");

    let sent = [
        ("X-Set", "client"),
        ("X-Add", "client"),
        ("X-Remove", "gone"),
    ];
    let reply = t.get("w.example", "/headers", &sent).await;
    assert_eq!(reply.header("x-response"), Some("yes"));
    assert_eq!(
        reply.header("content-type"),
        None,
        "removed from the response"
    );
    let e = reply.echo().expect("echo");
    let h = |name: &str| e.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(h("X-Set"), ["set"]);
    assert_eq!(h("X-Add"), ["client", "added"]);
    assert!(h("X-Remove").is_empty());
    assert_eq!(h("X-Backend"), ["b"], "backendRef filters apply too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_a_copy_and_never_hold_up_the_request() {
    // A mirror target that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(stream);
        }
    });
    let t = setup(
        "mirrors",
        &routes(&format!(
            r#"
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: mirrors, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [m.example]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /mirror}}}}]
    filters:
    - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Mirrored, value: "1"}}]}}}}
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: svc-b, port: 80}}}}}}
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: svc-silent, port: 80}}}}}}
    backendRefs: [{{name: svc-a, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /never}}}}]
    filters:
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: svc-b, port: 80}}, percent: 0}}}}
    backendRefs: [{{name: svc-a, port: 80}}]
"#,
            service_yaml("svc-silent", &[silent_addr])
        )),
    )
    .await;
    // The main request is answered by svc-a although one mirror never answers.
    for i in 0..5 {
        assert_eq!(
            t.pod("m.example", &format!("/mirror/{i}"), &[]).await,
            "svc-a-pod-0"
        );
    }
    assert_eq!(t.pod("m.example", "/never/1", &[]).await, "svc-a-pod-0");
    // svc-b receives every mirrored request, with the rule's header change, and none at 0%.
    let b: SocketAddr = t.s.b.addr;
    let seen_all = wait_until(Duration::from_secs(10), || async move {
        let seen = HttpClient::http1().get(b, "b", "/__seen", &[]).await;
        let seen: Vec<String> = seen
            .ok()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or_default();
        (0..5).all(|i| seen.contains(&format!("/mirror/{i}")))
    })
    .await;
    assert!(seen_all, "svc-b did not receive every mirrored request");
    let seen: Vec<String> = serde_json::from_slice(
        &HttpClient::http1()
            .get(b, "b", "/__seen", &[])
            .await
            .expect("seen")
            .body,
    )
    .expect("json");
    assert!(!seen.iter().any(|p| p.starts_with("/never")), "{seen:?}");
    // The silent mirror was really sent copies (and holds them unanswered).
    let reached = wait_until(Duration::from_secs(10), || async {
        accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    assert!(reached, "the silent mirror never received a copy");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_codes_and_connection_errors() {
    let t = setup(
        "retries",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retries, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [retry.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [500, 503], attempts: 2, backoff: 10ms}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /once}}]
    backendRefs: [{name: svc-a, port: 80}]
"#,
        ),
    )
    .await;
    let status = |path: String| {
        let t = &t;
        async move { t.get("retry.example", &path, &[]).await.status.as_u16() }
    };
    let key = |tag: &str| format!("{tag}-{}", free_port());
    // Two failures then success: within 2 retries.
    assert_eq!(status(format!("/retry?fail=2&key={}", key("a"))).await, 200);
    // Three failures: retries exhausted, the last answer is passed on.
    assert_eq!(
        status(format!("/retry?fail=3&status=503&key={}", key("b"))).await,
        503
    );
    // A code not in the list is not retried.
    assert_eq!(
        status(format!("/retry?fail=1&status=502&key={}", key("c"))).await,
        502
    );
    // Connection errors are retried without being listed.
    assert_eq!(
        status(format!("/retry?reset=2&key={}", key("d"))).await,
        200
    );
    // Without a retry policy the first failure is the answer.
    assert_eq!(status(format!("/once?fail=1&key={}", key("e"))).await, 500);
    assert_eq!(status(format!("/once?reset=1&key={}", key("f"))).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_backend_timeouts_answer_504() {
    let t = setup(
        "timeouts",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: timeouts, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [t.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /request}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /backend}}]
    timeouts: {backendRequest: 300ms}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /disabled}}]
    timeouts: {request: 0s}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retried}}]
    timeouts: {request: 3s, backendRequest: 300ms}
    retry: {codes: [504], attempts: 2, backoff: 10ms}
    backendRefs: [{name: svc-a, port: 80}]
"#,
        ),
    )
    .await;
    let status = |path: &'static str| {
        let t = &t;
        async move { t.get("t.example", path, &[]).await.status.as_u16() }
    };
    assert_eq!(status("/request?delay=1500ms").await, 504);
    assert_eq!(status("/request?delay=10ms").await, 200);
    assert_eq!(status("/backend?delay=1500ms").await, 504);
    assert_eq!(status("/backend").await, 200);
    assert_eq!(status("/disabled?delay=800ms").await, 200);
    // A per-attempt timeout listed as a retry code is retried: the slow first attempt is cut off
    // and the second (fast: the delay applies to the first request of the key only) succeeds.
    let path = format!("/retried?delay=1500ms&slow=1&key=slow-{}", free_port());
    let r = t.get("t.example", &path, &[]).await;
    assert_eq!(r.status, 200, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_and_actual_requests_get_headers() {
    let t = setup(
        "cors",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [c.example]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: [https://app.example, "https://*.trusted.example"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-token]
        exposeHeaders: [x-trace]
        allowCredentials: true
        maxAge: 600
    backendRefs: [{name: svc-a, port: 80}]
"#,
        ),
    )
    .await;
    let preflight = |origin: &'static str| {
        let t = &t;
        async move {
            t.send(
                Method::OPTIONS,
                "c.example",
                "/api",
                &[("origin", origin), ("access-control-request-method", "PUT")],
            )
            .await
        }
    };
    let ok = preflight("https://a.b.trusted.example").await;
    assert_eq!(ok.status, 204);
    assert!(ok.body.is_empty(), "a preflight is answered by the gateway");
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://a.b.trusted.example")
    );
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(ok.header("access-control-allow-headers"), Some("x-token"));
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    let denied = preflight("https://evil.example").await;
    assert_eq!(denied.status, 204);
    assert_eq!(denied.header("access-control-allow-origin"), None);

    let actual = t
        .get("c.example", "/api", &[("origin", "https://app.example")])
        .await;
    assert_eq!(actual.status, 200);
    assert!(actual.echo().is_some(), "actual requests reach the backend");
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        actual.header("access-control-expose-headers"),
        Some("x-trace")
    );
    let other = t
        .get("c.example", "/api", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_tunnelled() {
    let t = setup(
        "websocket",
        &routes(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ws, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [ws.example]
  rules:
  - backendRefs: [{name: svc-a, port: 80}]
"#,
        ),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(t.s.gateway)
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
            stream.read_exact(&mut byte).await.expect("read");
            head.push(byte[0]);
        }
    })
    .await;
    assert!(read_head.is_ok(), "no upgrade response");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // Bytes now flow both ways through the tunnel (the backend echoes them).
    stream
        .write_all(b"ping through the tunnel")
        .await
        .expect("write");
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&echoed, b"ping through the tunnel");
}
