//! HTTP/2 keepalive on the delta protocol: a proxy that stops answering (SIGSTOP: its sockets stay
//! open, its process does nothing) is noticed by the control plane within the keepalive interval
//! plus timeout, and its stream is dropped; resumed, it reconnects.

use serval_e2e::harness::{ControlPlane, Proxy, Scenario, wait_until};
use std::{
    process::Command,
    time::{Duration, Instant},
};

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_answering_is_dropped_within_seconds() {
    let s = Scenario::two_backends("keepalive", &[]).await;
    let cp = ControlPlane::start(
        s.dir.path(),
        s.logs.path(),
        None,
        &[
            "--no-proxy",
            "--xds-keepalive-interval",
            "1s",
            "--xds-keepalive-timeout",
            "1s",
        ],
    )
    .await;
    let proxy = Proxy::start(cp.xds, "keepalive-proxy", s.logs.path()).await;
    let pid = proxy.process.id().expect("pid");
    assert_eq!(cp.metric("serval_xds_streams").await, Some(1.0));

    signal(pid, "STOP");
    let stopped = Instant::now();
    let dropped = wait_until(Duration::from_secs(15), || async {
        cp.metric("serval_xds_streams").await == Some(0.0)
    })
    .await;
    let took = stopped.elapsed();
    signal(pid, "CONT");
    assert!(
        dropped,
        "the control plane still holds the silent proxy's stream"
    );
    assert!(
        took < Duration::from_secs(10),
        "noticed after {took:?} (keepalive 1 s + 1 s)"
    );

    let back = wait_until(Duration::from_secs(15), || async {
        cp.metric("serval_xds_streams").await == Some(1.0)
    })
    .await;
    assert!(back, "the resumed proxy reconnects");
}
