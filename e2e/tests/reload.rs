//! Live reload: editing the YAML folder changes routing without a restart, a request loop running
//! through the edits sees zero failed requests, and a half-written file keeps its last good
//! objects while it is reported.

use serval_e2e::{
    harness::{ControlPlane, Scenario, route_yaml, wait_until},
    load::RequestLoop,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_yaml_reroutes_with_zero_failed_requests() {
    let s = Scenario::two_backends("reload", &["reload.example"]).await;
    let (dir, logs) = (&s.dir, &s.logs);
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &[]).await;
    let gateway = s.gateway;

    let requests = RequestLoop::start(
        gateway,
        "reload.example",
        "/",
        4,
        200_000,
        Duration::from_secs(60),
    );
    let warm = wait_until(Duration::from_secs(10), || async { requests.sent() >= 100 }).await;
    assert!(warm, "request loop did not get going");
    assert_eq!(requests.last_pod().await, "svc-a-pod-0");

    // Edit 1: route to svc-b.
    let edited = std::time::Instant::now();
    dir.write("route.yaml", &route_yaml("svc-b", &["reload.example"]));
    let moved = wait_until(Duration::from_secs(10), || async {
        requests.last_pod().await == "svc-b-pod-0"
    })
    .await;
    assert!(moved, "routing did not follow the edit");
    // Measured, not asserted: file write → debounce (50 ms here) → translate → delta → applied.
    eprintln!("reload: edit reached traffic after {:?}", edited.elapsed());

    // Edit 2: a half-written file is reported and its last good objects keep serving.
    let before = requests.sent();
    std::fs::write(
        dir.path().join("route.yaml"),
        &route_yaml("svc-a", &["reload.example"])[..60],
    )
    .expect("write");
    let reported = wait_until(Duration::from_secs(10), || async {
        cp.metric("serval_config_file_errors").await == Some(1.0)
    })
    .await;
    assert!(reported, "the broken file was not reported");
    let more = wait_until(Duration::from_secs(10), || async {
        requests.sent() >= before + 200
    })
    .await;
    assert!(more, "request loop stalled");
    assert_eq!(
        requests.last_pod().await,
        "svc-b-pod-0",
        "last good objects keep serving"
    );

    // Edit 3: fixing the file applies it.
    dir.write("route.yaml", &route_yaml("svc-a", &["reload.example"]));
    let back = wait_until(Duration::from_secs(10), || async {
        requests.last_pod().await == "svc-a-pod-0"
    })
    .await;
    assert!(back, "routing did not follow the fixed file");
    let before = requests.sent();
    let more = wait_until(Duration::from_secs(10), || async {
        requests.sent() >= before + 100
    })
    .await;
    assert!(more, "request loop stalled");

    let report = requests.stop().await;
    report.assert_no_failures();
    assert!(
        report.pods.get("svc-a-pod-0").copied().unwrap_or(0) > 0
            && report.pods.get("svc-b-pod-0").copied().unwrap_or(0) > 0,
        "{:?}",
        report.pods
    );
    eprintln!(
        "reload: {} requests, 0 failed, pods {:?}",
        report.sent, report.pods
    );
}
