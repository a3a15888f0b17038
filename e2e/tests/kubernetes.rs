//! `serval-control-plane kubernetes` against a Kubernetes API server over real HTTP (the kmock-based
//! emulator, `e2e/kube-emulator/emulator.py`), with real `serval-proxy` and echo processes:
//!
//! - objects created, changed and deleted while the control plane runs: the proxy's routing
//!   follows, status appears on the API server's objects, unchanged status is not rewritten;
//! - an object that does not decode is skipped while the others keep flowing;
//! - two replicas: only the leader writes status; kill it and the other takes over;
//! - started before the API server is reachable: it retries, and becomes ready only after its
//!   first full sync.

use serde_json::{Value, json};
use serval_e2e::{
    harness::{admin_get, free_port, wait_until},
    kube_emulator::{KubeEmulator, kubeconfig_for_port},
    kube_world::{
        CONTROLLER, FLEET_IP, KubeControlPlane, WAIT, World, condition, route, route_accepted,
    },
};
use std::time::Duration;

/// Status PATCHes of the control plane the API server accepted so far: (path, status written).
async fn status_writes(em: &KubeEmulator) -> Vec<(String, Value)> {
    em.requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .filter(|r| {
            r["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .filter(|r| {
            r["userAgent"]
                .as_str()
                .is_some_and(|a| a.starts_with("serval-control-plane/"))
        })
        .filter_map(|r| Some((r["path"].as_str()?.to_owned(), r["body"]["status"].clone())))
        .filter(|(p, _)| p.ends_with("/status"))
        .collect()
}

/// Labels Service `default/SERVICE` (a change that alters no status) and waits until `cp`
/// translated after it; false if it did not within [`WAIT`].
async fn retranslate(em: &KubeEmulator, cp: &KubeControlPlane, service: &str) -> bool {
    let before = cp.metric("serval_translations_total", "").await;
    let label = format!("{}", before as u64);
    em.patch(
        "Service",
        Some("default"),
        service,
        json!({"metadata": {"labels": {"serval-test-touch": label}}}),
    )
    .await
    .expect("label the Service");
    wait_until(WAIT, || async {
        cp.metric("serval_translations_total", "").await > before
    })
    .await
}

/// Non-GET requests made by control-plane replica `identity` (its User-Agent names it).
async fn writes_by(em: &KubeEmulator, identity: &str) -> Vec<Value> {
    let agent = format!("({identity})");
    em.requests()
        .await
        .expect("request log")
        .into_iter()
        .filter(|r| {
            r["userAgent"]
                .as_str()
                .is_some_and(|a| a.starts_with("serval-control-plane/") && a.ends_with(&agent))
        })
        .collect()
}

/// The RBAC grant a request needs: (group, resource[/subresource], verb).
fn grant_of(request: &Value) -> (String, String, String) {
    let path = request["path"].as_str().unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let (group, rest) = match parts.first() {
        Some(&"api") => ("", &parts[2..]),
        _ => (
            parts.get(1).copied().unwrap_or_default(),
            &parts[3.min(parts.len())..],
        ),
    };
    let rest: Vec<&str> = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail.to_vec(),
        other => other.to_vec(),
    };
    let resource = match rest.as_slice() {
        [resource, _, sub] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => String::new(),
    };
    let verb = match request["method"].as_str() {
        Some("POST") => "create",
        Some("PATCH") => "patch",
        Some("PUT") => "update",
        Some("DELETE") => "delete",
        other => other.unwrap_or_default(),
    };
    (group.to_owned(), resource, verb.to_owned())
}

#[tokio::test]
async fn objects_flow_to_the_proxy_and_status_is_written_once() {
    let world = World::start("k8s-flow").await;
    let em = KubeEmulator::start(world.logs.path(), &[]).await;
    world.seed(&em).await;
    // Another implementation's entry on web: Serval must leave it as it is.
    let theirs = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "their-gw"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    });
    em.patch_status(
        "HTTPRoute",
        Some("default"),
        "web",
        json!({"status": {"parents": [theirs.clone()]}}),
    )
    .await
    .expect("their status");
    let (cp, _proxy) = world.serve(&em).await;

    // Status on the API server's objects.
    assert!(
        wait_until(WAIT, || async {
            route_accepted(&em, "web").await.as_deref() == Some("True")
        })
        .await,
        "HTTPRoute web Accepted=True in the API server"
    );
    let ok = wait_until(WAIT, || async {
        let Ok(Some(gw)) = em.get("Gateway", Some("default"), "gw").await else {
            return false;
        };
        condition(&gw["status"], "Programmed").as_deref() == Some("True")
            && gw.pointer("/status/addresses/0/value") == Some(&json!(FLEET_IP))
            && gw.pointer("/status/listeners/0/attachedRoutes") == Some(&json!(1))
    })
    .await;
    assert!(
        ok,
        "Gateway Programmed with the fleet Service's address and 1 attached route"
    );
    let web = em
        .get("HTTPRoute", Some("default"), "web")
        .await
        .expect("get web")
        .expect("web exists");
    assert_eq!(
        web.pointer("/status/parents/0"),
        Some(&theirs),
        "the other controller's entry is untouched and first"
    );
    // The other controller now puts its entry last and adds a field Serval's types do not know.
    let mut theirs = theirs;
    theirs["futureField"] = json!("kept");
    let ours = web
        .pointer("/status/parents/1")
        .cloned()
        .expect("our entry");
    em.patch_status(
        "HTTPRoute",
        Some("default"),
        "web",
        json!({"status": {"parents": [ours, theirs.clone()]}}),
    )
    .await
    .expect("their rewrite");
    let class_ok = wait_until(WAIT, || async {
        em.get("GatewayClass", None, "serval")
            .await
            .ok()
            .flatten()
            .and_then(|c| condition(&c["status"], "Accepted"))
            .as_deref()
            == Some("True")
    })
    .await;
    assert!(class_ok, "GatewayClass Accepted");

    // A TLSRoute is not served (no TLS listener yet) but says so in its status.
    em.create(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
        "metadata": {"name": "tls", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["secure.example"],
                 "rules": [{"backendRefs": [{"name": "svc-a", "port": 80}]}]}
    }))
    .await
    .expect("create TLSRoute");
    let tls_refused = wait_until(WAIT, || async {
        let Ok(Some(route)) = em.get("TLSRoute", Some("default"), "tls").await else {
            return false;
        };
        let parents = route.pointer("/status/parents").and_then(Value::as_array);
        parents.is_some_and(|p| {
            p.iter().any(|e| {
                e["controllerName"] == CONTROLLER
                    && condition(e, "Accepted").as_deref() == Some("False")
            })
        })
    })
    .await;
    assert!(tls_refused, "TLSRoute status Accepted=False written");

    // Created, changed, deleted: routing follows.
    em.create(route("second", "b.example", "svc-b"))
        .await
        .expect("create second");
    assert!(
        world.wait_pod("b.example", "svc-b-pod-0").await,
        "new route served"
    );
    em.patch(
        "HTTPRoute",
        Some("default"),
        "web",
        json!({"spec": {"rules": [{"backendRefs": [{"name": "svc-b", "port": 80}]}]}}),
    )
    .await
    .expect("patch web");
    assert!(
        world.wait_pod("a.example", "svc-b-pod-0").await,
        "changed route served"
    );
    // Our entry follows the new generation in place; theirs stays as they wrote it, last.
    let rewritten = wait_until(WAIT, || async {
        let Ok(Some(web)) = em.get("HTTPRoute", Some("default"), "web").await else {
            return false;
        };
        web.pointer("/status/parents/0/conditions/0/observedGeneration") == Some(&json!(2))
    })
    .await;
    assert!(rewritten, "our entry rewritten for generation 2");
    let web = em
        .get("HTTPRoute", Some("default"), "web")
        .await
        .expect("get web")
        .expect("web exists");
    assert_eq!(
        web.pointer("/status/parents/0/controllerName"),
        Some(&json!(CONTROLLER))
    );
    assert_eq!(
        web.pointer("/status/parents/1"),
        Some(&theirs),
        "their entry untouched: position and unknown field"
    );
    assert_eq!(web["status"]["parents"].as_array().map(Vec::len), Some(2));
    em.delete("HTTPRoute", Some("default"), "second")
        .await
        .expect("delete second");
    let gone = wait_until(WAIT, || async {
        world.pod_for("b.example").await == Err("HTTP 404 Not Found".to_owned())
    })
    .await;
    assert!(gone, "deleted route no longer served");
    let attached_one = wait_until(WAIT, || async {
        em.get("Gateway", Some("default"), "gw")
            .await
            .ok()
            .flatten()
            .and_then(|gw| gw.pointer("/status/listeners/0/attachedRoutes").cloned())
            == Some(json!(1))
    })
    .await;
    assert!(attached_one, "attachedRoutes back to 1 after the delete");

    // Unchanged status is not rewritten: a change that alters no status (a label on a Service)
    // makes the control plane translate and compare again, and write nothing.
    // Settled: no status write during a quiet window of 300 ms.
    let settle = || async {
        wait_until(WAIT, || async {
            let before = status_writes(&em).await.len();
            tokio::time::sleep(Duration::from_millis(300)).await;
            status_writes(&em).await.len() == before
        })
        .await
    };
    assert!(settle().await, "status writes settle");
    // The watch events of our own writes changed only statuses: no translation for them.
    assert!(
        cp.metric("serval_translations_skipped_total", "").await >= 1.0,
        "status-only changes skip translation"
    );
    let writes_before = status_writes(&em).await;
    let unchanged_before = cp
        .metric("serval_status_writes_total", "skipped_unchanged")
        .await;
    assert!(
        retranslate(&em, &cp, "svc-a").await,
        "a Service label makes the control plane translate"
    );
    let compared = wait_until(WAIT, || async {
        cp.metric("serval_status_writes_total", "skipped_unchanged")
            .await
            > unchanged_before
    })
    .await;
    let metrics = admin_get(cp.admin, "/metrics")
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    assert!(
        compared,
        "the control plane translated and compared again; metrics:\n{metrics}"
    );
    // A wrong write would follow the comparison: let any write land before looking.
    assert!(settle().await, "status writes settle again");
    assert_eq!(
        status_writes(&em).await,
        writes_before,
        "no status was rewritten"
    );
    // Each object was written only when its status changed: no two consecutive writes of one
    // object carry the same status.
    let mut last: std::collections::BTreeMap<&str, &Value> = Default::default();
    for (path, status) in &writes_before {
        if let Some(previous) = last.insert(path, status) {
            assert_ne!(
                previous, status,
                "{path}: the same status written twice in a row"
            );
        }
    }
    assert!(
        writes_before
            .iter()
            .any(|(p, _)| p.ends_with("/httproutes/web/status")),
        "web's status was written"
    );
}

#[tokio::test]
async fn an_object_that_does_not_decode_is_skipped_and_the_rest_flows() {
    let world = World::start("k8s-decode").await;
    let em = KubeEmulator::start(world.logs.path(), &[]).await;
    world.seed(&em).await;
    // Present at the first listing: it must not hold the first sync back.
    let mut broken = route("broken", "broken.example", "svc-a");
    broken["spec"]["rules"] = json!("not a list");
    em.create(broken).await.expect("create broken");
    let (cp, _proxy) = world.serve(&em).await;
    assert!(
        cp.metric("serval_kubernetes_decode_errors_total", "HTTPRoute")
            .await
            >= 1.0
    );

    // Another broken object while running, then a good one: the watch keeps flowing.
    let mut broken_later = route("broken-later", "later.example", "svc-a");
    broken_later["spec"]["hostnames"] = json!({"not": "a list"});
    em.create(broken_later).await.expect("create broken-later");
    em.create(route("good", "good.example", "svc-b"))
        .await
        .expect("create good");
    assert!(
        world.wait_pod("good.example", "svc-b-pod-0").await,
        "good route served"
    );
    assert!(
        cp.metric("serval_kubernetes_decode_errors_total", "HTTPRoute")
            .await
            >= 2.0
    );
    // A good object turned bad keeps its last good version.
    em.patch(
        "HTTPRoute",
        Some("default"),
        "good",
        json!({"spec": {"parentRefs": "not a list"}}),
    )
    .await
    .expect("break good");
    assert!(
        wait_until(WAIT, || async {
            cp.metric("serval_kubernetes_decode_errors_total", "HTTPRoute")
                .await
                >= 3.0
        })
        .await
    );
    // Force a translation of everything (a Service label) so the store's view of "good" is what
    // gets translated, then check it is still served.
    assert!(retranslate(&em, &cp, "svc-b").await, "translated again");
    assert_eq!(
        world.pod_for("good.example").await.as_deref(),
        Ok("svc-b-pod-0"),
        "last good version still served"
    );
    assert!(cp.ready().await);
    assert!(
        route_accepted(&em, "broken").await.is_none(),
        "no status for an undecodable object"
    );
}

#[tokio::test]
async fn only_the_leader_writes_status_and_another_replica_takes_over() {
    let world = World::start("k8s-leader").await;
    let em = KubeEmulator::start(world.logs.path(), &[]).await;
    world.seed(&em).await;
    let kubeconfig = em.write_kubeconfig(world.logs.path());
    let mut first = KubeControlPlane::start(&kubeconfig, "cp-first", world.logs.path());
    first.wait_ready().await;
    let holder = || async {
        em.get("Lease", Some("serval-system"), "serval-control-plane")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.pointer("/spec/holderIdentity").cloned())
            .and_then(|h| h.as_str().map(str::to_owned))
    };
    assert!(
        wait_until(WAIT, || async {
            holder().await.as_deref() == Some("cp-first")
        })
        .await,
        "the first replica takes the Lease"
    );
    let second = KubeControlPlane::start(&kubeconfig, "cp-second", world.logs.path());
    second.wait_ready().await;
    assert!(
        wait_until(WAIT, || async {
            route_accepted(&em, "web").await.as_deref() == Some("True")
        })
        .await,
        "the leader wrote status"
    );
    // A change while both run: only the leader writes it.
    em.create(route("both-running", "both.example", "svc-b"))
        .await
        .expect("create both-running");
    assert!(
        wait_until(WAIT, || async {
            route_accepted(&em, "both-running").await.as_deref() == Some("True")
        })
        .await
    );
    // The follower computed the same statuses (its /status) but wrote none, and is not leader.
    assert!(
        wait_until(WAIT, || async {
            admin_get(second.admin, "/status")
                .await
                .is_ok_and(|r| String::from_utf8_lossy(&r.body).contains("both-running"))
        })
        .await,
        "the follower translates too"
    );
    assert!(
        wait_until(WAIT, || async {
            second.metric("serval_leader", "").await == 0.0
                && first.metric("serval_leader", "").await == 1.0
        })
        .await,
        "the first replica leads, the second does not"
    );
    assert_eq!(
        second
            .metric("serval_status_writes_total", "succeeded")
            .await,
        0.0,
        "the follower wrote no status"
    );
    let follower_status_writes: Vec<Value> = writes_by(&em, "cp-second")
        .await
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/status")))
        .collect();
    assert!(
        follower_status_writes.is_empty(),
        "the follower sent no status write at all: {follower_status_writes:?}"
    );
    assert!(
        first
            .metric("serval_status_writes_total", "succeeded")
            .await
            >= 2.0
    );
    assert_eq!(holder().await.as_deref(), Some("cp-first"));

    // Kill the leader (no release): the other takes over within the lease duration and writes
    // what became stale meanwhile.
    first.process.kill();
    let killed = std::time::Instant::now();
    em.create(route("after-failover", "after.example", "svc-a"))
        .await
        .expect("create after-failover");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            holder().await.as_deref() == Some("cp-second")
        })
        .await,
        "the second replica takes the Lease over"
    );
    // The Lease was renewed at most one retry period (250 ms) before the kill, so the takeover
    // comes one lease duration (3 s) after that plus the follower's retry period; the bound of
    // two lease durations leaves room for a loaded machine.
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(6),
        "takeover took {takeover:?}, lease duration 3 s"
    );
    assert!(
        wait_until(WAIT, || async {
            route_accepted(&em, "after-failover").await.as_deref() == Some("True")
        })
        .await,
        "the new leader writes the stale status"
    );
    assert!(
        wait_until(WAIT, || async {
            second.metric("serval_leader", "").await == 1.0
        })
        .await,
        "the second replica leads"
    );
    assert!(
        second
            .metric("serval_status_writes_total", "succeeded")
            .await
            >= 1.0
    );

    // Every write either replica made is one the ClusterRole/Role grants (access::required(), which
    // the manifests test checks against manifests/10-rbac.yaml).
    let granted: std::collections::BTreeSet<(String, String, String)> =
        serval_control_plane::access::required()
            .into_iter()
            .map(|g| (g.group, g.resource, g.verb))
            .collect();
    let mut made = std::collections::BTreeSet::new();
    for identity in ["cp-first", "cp-second"] {
        for request in writes_by(&em, identity).await {
            made.insert(grant_of(&request));
        }
    }
    for call in &made {
        assert!(granted.contains(call), "{call:?} is made but not granted");
    }
    for expected in [
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "patch"),
        ("gateway.networking.k8s.io", "httproutes/status", "patch"),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(
            made.contains(&expected),
            "{expected:?} not seen in {made:?}"
        );
    }
}

#[tokio::test]
async fn waits_for_an_unreachable_api_server_and_is_ready_only_after_the_first_sync() {
    let world = World::start("k8s-late").await;
    let port = free_port();
    let kubeconfig = kubeconfig_for_port(port, world.logs.path());
    let cp = KubeControlPlane::start(&kubeconfig, "cp-0", world.logs.path());
    // It runs, retries, and is not ready.
    assert!(
        wait_until(WAIT, || async {
            cp.metric("serval_kubernetes_watch_errors_total", "\"GatewayClass\"")
                .await
                >= 3.0
        })
        .await,
        "discovery of one kind retried (3 failures) against the unreachable API server"
    );
    assert!(!cp.ready().await, "not ready before the first sync");

    // The API server appears with a missing CRD (TCPRoute), and the world is seeded while the
    // control plane keeps retrying with backoff.
    let em = KubeEmulator::start_on(
        port,
        world.logs.path(),
        &["gateway.networking.k8s.io/tcproutes"],
    )
    .await;
    world.seed(&em).await;
    cp.wait_ready().await;
    // Ready means every kind was listed and translated at least once: what it serves now comes
    // from a complete listing (the seed finished before this check, but possibly after the
    // listing, so wait for the route rather than assume it).
    let _proxy = world.proxy(&cp, "proxy-0").await;
    assert!(
        world.wait_pod("a.example", "svc-a-pod-0").await,
        "web served"
    );
    assert_eq!(
        cp.metric("serval_kubernetes_kind_missing", "TCPRoute")
            .await,
        1.0,
        "the missing CRD is skipped, not waited for"
    );
    assert!(
        wait_until(WAIT, || async {
            route_accepted(&em, "web").await.as_deref() == Some("True")
        })
        .await
    );
}

#[tokio::test]
async fn watches_that_cannot_resume_re_list_and_changes_keep_flowing() {
    let world = World::start("k8s-relist").await;
    let em = KubeEmulator::start(world.logs.path(), &[]).await;
    world.seed(&em).await;
    let (cp, _proxy) = world.serve(&em).await;
    let listings = cp
        .metric("serval_kubernetes_listings_total", "HTTPRoute")
        .await;
    assert_eq!(listings, 1.0);

    // A write to another kind moves the API server's resourceVersion past the last HTTPRoute
    // event; compaction then makes the HTTPRoute watch's resourceVersion too old, and the
    // dropped watches must re-list (410 Expired) rather than resume.
    em.patch(
        "Service",
        Some("default"),
        "svc-b",
        json!({"metadata": {"labels": {"moved": "on"}}}),
    )
    .await
    .expect("advance the resourceVersion");
    em.compact().await.expect("compact");
    em.close_watches().await.expect("close watches");
    let relisted = wait_until(WAIT, || async {
        cp.metric("serval_kubernetes_listings_total", "HTTPRoute")
            .await
            >= 2.0
    })
    .await;
    assert!(relisted, "the HTTPRoute watch re-listed");

    // Changes after the re-list flow: one route deleted, one created.
    em.delete("HTTPRoute", Some("default"), "web")
        .await
        .expect("delete web");
    em.create(route("after", "after.example", "svc-b"))
        .await
        .expect("create after");
    assert!(
        world.wait_pod("after.example", "svc-b-pod-0").await,
        "new route served"
    );
    let gone = wait_until(WAIT, || async {
        world.pod_for("a.example").await == Err("HTTP 404 Not Found".to_owned())
    })
    .await;
    assert!(gone, "deleted route no longer served");
    assert!(cp.ready().await);
}
