//! `serval-proxy --config-cache`: a proxy writes its last ACKed configuration to disk; a new proxy
//! started from that file while the control plane is down serves at once (and is ready), and when
//! the control plane returns with the same configuration it receives no resources at all.

use serval_e2e::harness::{
    ControlPlane, HttpClient, Proxy, Scenario, unique_loopback_ip, wait_until,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_starts_from_its_cache_during_a_control_plane_outage() {
    let s = Scenario::two_backends("cache", &[]).await;
    let cp = ControlPlane::start(s.dir.path(), s.logs.path(), None, &["--no-proxy"]).await;
    let xds = cp.xds;
    let cache = s.logs.path().join("first.pb");
    let (ip1, ip2) = (unique_loopback_ip(), unique_loopback_ip());
    let first = Proxy::start_with(
        xds,
        "cache-first",
        s.logs.path(),
        &[
            "--bind-address",
            &ip1.to_string(),
            "--config-cache",
            &cache.display().to_string(),
        ],
    )
    .await;
    let client = HttpClient::http1();
    let serves = |ip: std::net::Ipv4Addr| {
        let client = client.clone();
        async move {
            client
                .get((ip, s.gateway.port()).into(), "any.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        }
    };
    assert!(serves(ip1).await);
    let written = wait_until(Duration::from_secs(10), || async { cache.exists() }).await;
    assert!(written, "the ACKed configuration was not cached");
    drop(first);

    // The control plane goes away; a new proxy starts from a copy of the cache.
    drop(cp);
    let copy = s.logs.path().join("second.pb");
    std::fs::copy(&cache, &copy).expect("copy the cache");
    let second = Proxy::start_with(
        xds,
        "cache-second",
        s.logs.path(),
        &[
            "--bind-address",
            &ip2.to_string(),
            "--config-cache",
            &copy.display().to_string(),
        ],
    )
    .await;
    assert_eq!(second.metric("serval_config_cache_loaded").await, Some(1.0));
    assert_eq!(second.metric("serval_xds_connected").await, Some(0.0));
    assert!(serves(ip2).await, "serves the cached configuration");

    // The control plane returns with the same configuration: nothing is sent again.
    let cp = ControlPlane::start(s.dir.path(), s.logs.path(), Some(xds), &["--no-proxy"]).await;
    let synced = wait_until(Duration::from_secs(20), || async {
        cp.metric("serval_xds_acks_total").await == Some(1.0)
    })
    .await;
    assert!(synced, "the proxy reconnected and ACKed");
    assert_eq!(
        second.metric("serval_xds_resources_received_total").await,
        Some(0.0),
        "the cached versions were current"
    );
    assert!(serves(ip2).await);
}
