//! The Kubernetes API emulator itself: resourceVersions and generations as the API server assigns
//! them, the status subresource, optimistic concurrency, watch events, left-out kinds and the
//! request log. Needs `python3` with kmock (`python3 -m pip install kmock`).

use http::{Method, StatusCode};
use serde_json::{Value, json};
use serval_e2e::{harness::TempDir, kube_emulator::KubeEmulator};

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric resourceVersion in {object}"))
}

fn route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "12345"},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["a.example"]},
    })
}

#[tokio::test]
async fn versions_generations_status_and_conflicts() {
    let logs = TempDir::new("kube-emulator-logs");
    let kube = KubeEmulator::start(logs.path(), &[]).await;

    let created = kube.create(route()).await.expect("create");
    let v1 = rv(&created);
    assert_ne!(v1, 12345, "the client's resourceVersion is overridden");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let again = kube.create(route()).await.expect_err("a second create");
    assert!(
        again.contains("409") && again.contains("AlreadyExists"),
        "{again}"
    );

    // A spec change: new resourceVersion, generation 2. Merge patch replaces arrays.
    let patched = kube
        .patch(
            "HTTPRoute",
            Some("default"),
            "web",
            json!({"spec": {"hostnames": ["b.example"]}}),
        )
        .await
        .expect("patch");
    let v2 = rv(&patched);
    assert!(v2 > v1, "{v2} > {v1}");
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_eq!(patched["spec"]["hostnames"], json!(["b.example"]));

    // A status patch changes only .status: not spec, not generation.
    let status = kube
        .patch_status(
            "HTTPRoute",
            Some("default"),
            "web",
            json!({"spec": {"hostnames": []}, "status": {"parents": [{"controllerName": "x"}]}}),
        )
        .await
        .expect("status patch");
    let v3 = rv(&status);
    assert!(v3 > v2, "{v3} > {v2}");
    assert_eq!(status["metadata"]["generation"], 2);
    assert_eq!(status["spec"]["hostnames"], json!(["b.example"]));
    assert_eq!(status["status"]["parents"][0]["controllerName"], "x");

    // An object patch keeps .status; a metadata-only change keeps the generation.
    let labelled = kube
        .patch(
            "HTTPRoute",
            Some("default"),
            "web",
            json!({"metadata": {"labels": {"team": "a"}}, "status": null}),
        )
        .await
        .expect("label patch");
    assert!(rv(&labelled) > v3);
    assert_eq!(labelled["metadata"]["generation"], 2);
    assert_eq!(labelled["status"], status["status"]);

    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict, the current one works.
    let stale = kube
        .patch_status(
            "HTTPRoute",
            Some("default"),
            "web",
            json!({"metadata": {"resourceVersion": v1.to_string()}, "status": {"parents": []}}),
        )
        .await
        .expect_err("stale patch");
    assert!(
        stale.contains("409") && stale.contains("Conflict"),
        "{stale}"
    );
    let current = rv(&labelled).to_string();
    kube.patch_status(
        "HTTPRoute",
        Some("default"),
        "web",
        json!({"metadata": {"resourceVersion": current}, "status": {"parents": []}}),
    )
    .await
    .expect("patch with the current resourceVersion");

    // Missing objects.
    assert_eq!(
        kube.get("HTTPRoute", Some("default"), "nope")
            .await
            .expect("get"),
        None
    );
    let missing = kube
        .patch("HTTPRoute", Some("default"), "nope", json!({}))
        .await
        .expect_err("patch of a missing object");
    assert!(
        missing.contains("404") && missing.contains("NotFound"),
        "{missing}"
    );

    // The list carries the latest resourceVersion.
    let items = kube.list("HTTPRoute").await.expect("list");
    assert_eq!(items.len(), 1);
    let (status_code, list) = kube
        .request(
            Method::GET,
            "/apis/gateway.networking.k8s.io/v1/httproutes",
            None,
            Vec::new(),
        )
        .await
        .expect("list");
    assert_eq!(status_code, StatusCode::OK);
    assert_eq!(
        list["metadata"]["resourceVersion"],
        items[0]["metadata"]["resourceVersion"]
    );

    // The request log: every write in order, bodies as JSON.
    let requests = kube.requests().await.expect("requests");
    let methods: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or("?"),
                r["path"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let route = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes";
    assert_eq!(
        methods,
        vec![
            format!("POST {route}"),
            format!("POST {route}"),
            format!("PATCH {route}/web"),
            format!("PATCH {route}/web/status"),
            format!("PATCH {route}/web"),
            format!("PATCH {route}/web/status"),
            format!("PATCH {route}/web/status"),
            format!("PATCH {route}/nope"),
        ]
    );
    assert_eq!(requests[3]["contentType"], "application/merge-patch+json");
    assert_eq!(
        requests[3]["body"]["status"]["parents"][0]["controllerName"],
        "x"
    );
    kube.clear_requests().await.expect("clear");
    assert!(kube.requests().await.expect("requests").is_empty());

    kube.delete("HTTPRoute", Some("default"), "web")
        .await
        .expect("delete");
    assert_eq!(
        kube.get("HTTPRoute", Some("default"), "web")
            .await
            .expect("get"),
        None
    );
}

#[tokio::test]
async fn watch_streams_every_change_with_increasing_versions() {
    let logs = TempDir::new("kube-emulator-watch-logs");
    let kube = KubeEmulator::start(logs.path(), &[]).await;
    let (_, list) = kube
        .request(
            Method::GET,
            "/apis/gateway.networking.k8s.io/v1/httproutes",
            None,
            Vec::new(),
        )
        .await
        .expect("list");
    let since = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();

    kube.create(route()).await.expect("create");
    kube.patch_status("HTTPRoute", None, "web", json!({"status": {"parents": []}}))
        .await
        .expect("status patch");
    // The same status again is no change: no new resourceVersion, no event (as in Kubernetes).
    kube.patch_status("HTTPRoute", None, "web", json!({"status": {"parents": []}}))
        .await
        .expect("same status patch");
    kube.delete("HTTPRoute", None, "web").await.expect("delete");

    // A watch from the list's resourceVersion replays every change since; timeoutSeconds ends it.
    let stream = watch_lines(&kube, &since).await;
    let events: Vec<(String, u64)> = stream
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?").to_owned(),
                rv(&e["object"]),
            )
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    assert!(
        events.windows(2).all(|w| w[0].1 < w[1].1),
        "resourceVersions increase: {events:?}"
    );
    assert!(events[0].1 > since.parse::<u64>().expect("numeric resourceVersion"));
}

/// The events of a watch from `since` that ends after one second.
async fn watch_lines(kube: &KubeEmulator, since: &str) -> Vec<Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], kube.port()));
    let reply = serval_e2e::harness::HttpClient::http1()
        .get(
            addr,
            &addr.to_string(),
            &format!(
                "/apis/gateway.networking.k8s.io/v1/httproutes?watch=true&resourceVersion={since}&timeoutSeconds=1"
            ),
            &[],
        )
        .await
        .expect("watch");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("event {line}: {e}")))
        .collect()
}

#[tokio::test]
async fn a_left_out_kind_is_not_discovered_and_its_urls_are_404() {
    let logs = TempDir::new("kube-emulator-without-logs");
    let kube = KubeEmulator::start(logs.path(), &["gateway.networking.k8s.io/tcproutes"]).await;
    let (status, v1alpha2) = kube
        .request(
            Method::GET,
            "/apis/gateway.networking.k8s.io/v1alpha2",
            None,
            Vec::new(),
        )
        .await
        .expect("discovery");
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = v1alpha2["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["udproutes", "udproutes/status"]);
    let (status, _) = kube
        .request(
            Method::GET,
            "/apis/gateway.networking.k8s.io/v1alpha2/tcproutes",
            None,
            Vec::new(),
        )
        .await
        .expect("list");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(kube.list("UDPRoute").await.expect("list").is_empty());

    let dir = TempDir::new("kube-emulator-kubeconfig");
    let path = kube.write_kubeconfig(dir.path());
    let text = std::fs::read_to_string(path).expect("kubeconfig");
    assert!(text.contains(&format!("server: {}", kube.url())), "{text}");
}
