//! Several proxies of one fleet on one machine: each runs with `--bind-address` on its own loopback
//! IP, receives the same configuration from one control plane, and serves the Gateway's port there.
//! A proxy announcing `--gateway` for another Gateway receives nothing of this one.

use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, Proxy, TempDir, gateway_yaml, route_yaml, service_yaml,
    unique_loopback_ip,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_serve_the_same_gateway_on_their_own_bind_addresses() {
    let logs = TempDir::new("fleet-logs");
    let dir = TempDir::new("fleet");
    let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let gateway_ip = unique_loopback_ip();
    dir.write("gateway.yaml", &gateway_yaml(gateway_ip, 8080));
    dir.write("services.yaml", &service_yaml("svc-a", &[a.addr]));
    dir.write("route.yaml", &route_yaml("svc-a", &[]));
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;

    let (ip1, ip2) = (unique_loopback_ip(), unique_loopback_ip());
    let ip1_text = ip1.to_string();
    let ip2_text = ip2.to_string();
    let p1 = Proxy::start_with(
        cp.xds,
        "fleet-1",
        logs.path(),
        &["--bind-address", &ip1_text, "--gateway", "default/gw"],
    )
    .await;
    let p2 = Proxy::start_with(
        cp.xds,
        "fleet-2",
        logs.path(),
        &["--bind-address", &ip2_text],
    )
    .await;
    let other = Proxy::start_with(
        cp.xds,
        "fleet-other",
        logs.path(),
        &["--gateway", "default/not-this-one"],
    )
    .await;

    let client = HttpClient::http1();
    for ip in [ip1, ip2] {
        let reply = client
            .get((ip, 8080).into(), "x.example", "/", &[])
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "proxy on {ip}");
        assert_eq!(reply.echo().map(|e| e.pod).as_deref(), Some("svc-a-pod-0"));
    }
    assert!(
        client
            .get((gateway_ip, 8080).into(), "x.example", "/", &[])
            .await
            .is_err(),
        "nothing binds the Gateway's own address"
    );
    let v1 = p1.config_dump().await["version"].clone();
    assert_eq!(
        v1,
        p2.config_dump().await["version"],
        "one view, one version"
    );
    let dump = other.config_dump().await;
    assert_eq!(
        dump["resources"].as_array().map(Vec::len),
        Some(0),
        "{dump}"
    );
    assert_eq!(
        other.metric("serval_config_applied_total").await,
        Some(1.0),
        "an empty view is still acknowledged"
    );
}
