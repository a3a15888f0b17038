//! The control plane killed and restarted: the proxy serves throughout, reconnects, converges, and
//! when nothing changed receives no resources again (content-hash versions).

use serval_e2e::{
    harness::{ControlPlane, Proxy, Scenario, route_yaml, wait_until},
    load::RequestLoop,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_through_a_control_plane_restart_and_resyncs_nothing() {
    let s = Scenario::two_backends("restart", &[]).await;
    let (dir, logs) = (&s.dir, &s.logs);
    let mut cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let xds = cp.xds;
    let proxy = Proxy::start(xds, "restart-proxy", logs.path()).await;
    let received = proxy
        .metric("serval_xds_resources_received_total")
        .await
        .expect("metric");
    // Listener, RouteConfig, the AttachedRoute, and svc-a's Cluster and ClusterLoadAssignment
    // (svc-b is unreferenced).
    assert_eq!(received, 5.0, "first sync sends the whole view");
    let version = proxy.config_dump().await["version"].clone();

    let requests = RequestLoop::start(
        s.gateway,
        "any.example",
        "/",
        2,
        200_000,
        Duration::from_secs(60),
    );
    assert!(wait_until(Duration::from_secs(10), || async { requests.sent() >= 50 }).await);

    // Kill the control plane; the proxy notices and keeps serving.
    cp.process.kill();
    let down = wait_until(Duration::from_secs(10), || async {
        proxy.metric("serval_xds_connected").await == Some(0.0)
    })
    .await;
    assert!(down, "proxy did not notice the control plane was gone");
    let during = requests.sent();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            requests.sent() >= during + 200
        })
        .await,
        "requests stalled"
    );

    // Restart it on the same address: the proxy reconnects and, nothing having changed, receives
    // one empty response (its versions confirmed) and no resources.
    drop(cp);
    let cp = ControlPlane::start(dir.path(), logs.path(), Some(xds), &["--no-proxy"]).await;
    let reconnected = wait_until(Duration::from_secs(20), || async {
        proxy.metric("serval_xds_connects_total").await == Some(2.0)
            && proxy.metric("serval_xds_connected").await == Some(1.0)
    })
    .await;
    assert!(reconnected, "proxy did not reconnect");
    let streams_up = wait_until(Duration::from_secs(5), || async {
        cp.metric("serval_xds_streams").await == Some(1.0)
    })
    .await;
    assert!(streams_up, "control plane does not see the stream");
    let answered = wait_until(Duration::from_secs(5), || async {
        cp.metric("serval_xds_acks_total").await == Some(1.0)
    })
    .await;
    assert!(
        answered,
        "the first request is answered, and the proxy ACKs it"
    );
    assert_eq!(
        cp.metric("serval_xds_responses_total").await,
        Some(1.0),
        "one response, carrying nothing"
    );
    assert_eq!(
        proxy.metric("serval_xds_resources_received_total").await,
        Some(received)
    );
    assert_eq!(proxy.config_dump().await["version"], version);

    // And it converges on the next change.
    dir.write("route.yaml", &route_yaml("svc-b", &[]));
    let moved = wait_until(Duration::from_secs(10), || async {
        requests.last_pod().await == "svc-b-pod-0"
    })
    .await;
    assert!(moved, "proxy did not converge after the restart");
    let after = proxy
        .metric("serval_xds_resources_received_total")
        .await
        .unwrap_or(0.0);
    // Only the changed RouteConfig and svc-b's Cluster and ClusterLoadAssignment are sent.
    assert_eq!(after, received + 3.0, "only the difference is sent");

    let report = requests.stop().await;
    report.assert_no_failures();
    eprintln!("restart: {} requests, 0 failed", report.sent);
}
