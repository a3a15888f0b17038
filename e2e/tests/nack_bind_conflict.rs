//! A configuration the proxy cannot apply (a listener whose address is taken) is NACKed with an
//! error naming the listener, the previous configuration keeps serving, the control plane does not
//! resend that version, and the next change is applied. The NACK shows on the Gateway's
//! `Programmed` condition, in `ListProxies` (state NACKED) and in `proxy-status`, and clears once
//! the proxy ACKs a later version.

use serval_common::proto::admin::v1::{
    ListProxiesRequest, SyncState, admin_service_client::AdminServiceClient,
};
use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, Proxy, TempDir, binary, service_yaml,
    unique_loopback_ip, wait_until,
};
use std::time::Duration;

fn gateway(name: &str, ip: std::net::Ipv4Addr) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: serval\n  addresses: [{{type: IPAddress, value: \"{ip}\"}}]\n  listeners:\n  - {{name: http, protocol: HTTP, port: 8080}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}-route, namespace: default}}\nspec:\n  parentRefs: [{{name: {name}}}]\n  rules:\n  - backendRefs: [{{name: svc-a, port: 80}}]\n"
    )
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: serval}\nspec: {controllerName: serval.dev/gateway-controller}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbindable_listener_is_nacked_and_last_good_config_keeps_serving() {
    let logs = TempDir::new("nack-logs");
    let dir = TempDir::new("nack");
    let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let (ip1, ip2) = (unique_loopback_ip(), unique_loopback_ip());
    dir.write("class.yaml", CLASS);
    dir.write("services.yaml", &service_yaml("svc-a", &[a.addr]));
    dir.write("gw1.yaml", &gateway("gw1", ip1));
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let proxy = Proxy::start(cp.xds, "nack-proxy", logs.path()).await;
    let client = HttpClient::http1();
    let ok = |ip| {
        let client = client.clone();
        async move {
            client
                .get((ip, 8080).into(), "x.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        }
    };
    assert!(ok(ip1).await, "gw1 serves");
    let good_version = proxy.config_dump().await["version"].clone();

    // Someone else holds ip2:8080; a Gateway there cannot be bound.
    let squatter = std::net::TcpListener::bind((ip2, 8080)).expect("occupy ip2:8080");
    dir.write("gw2.yaml", &gateway("gw2", ip2));
    let nacked = wait_until(Duration::from_secs(10), || async {
        proxy.metric("serval_config_rejected_total").await == Some(1.0)
    })
    .await;
    assert!(nacked, "the proxy did not reject the configuration");
    assert!(cp.metric("serval_xds_nacks_total").await >= Some(1.0));
    let mut admin = AdminServiceClient::connect(format!("http://{}", cp.xds))
        .await
        .expect("admin client");
    let proxies = admin
        .list_proxies(ListProxiesRequest {})
        .await
        .expect("list")
        .into_inner()
        .proxies;
    assert_eq!(proxies.len(), 1, "{proxies:?}");
    assert!(
        proxies[0].last_error.contains("listener/default/gw2/8080")
            && proxies[0].last_error.contains("cannot bind"),
        "NACK must name the listener and the reason: {:?}",
        proxies[0].last_error
    );
    assert!(!proxies[0].nacked_version.is_empty());
    assert_eq!(proxies[0].state, i32::from(SyncState::Nacked));

    // The Gateway whose listener was rejected says so; the other is untouched.
    let programmed = |status: Option<serde_json::Value>| {
        status.and_then(|s| {
            s["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Programmed")
                .cloned()
        })
    };
    let shows = wait_until(Duration::from_secs(10), || async {
        programmed(cp.status_of("Gateway", "default", "gw2").await)
            .is_some_and(|c| c["status"] == "False")
    })
    .await;
    assert!(shows, "the NACK does not show on gw2's status");
    let c = programmed(cp.status_of("Gateway", "default", "gw2").await).expect("condition");
    assert_eq!(c["reason"], "Invalid");
    let message = c["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("proxy nack-proxy rejected configuration")
            && message.contains("listener/default/gw2/8080"),
        "{message}"
    );
    let gw1 = programmed(cp.status_of("Gateway", "default", "gw1").await).expect("gw1");
    assert_eq!(gw1["status"], "True", "gw1 is not affected");
    assert_eq!(cp.metric("serval_xds_rejecting_proxies").await, Some(1.0));

    // proxy-status prints the fleet as a table.
    let out = std::process::Command::new(binary("serval-control-plane"))
        .args(["proxy-status", "--xds-plaintext", "--xds-server"])
        .arg(format!("http://{}", cp.xds))
        .output()
        .expect("proxy-status runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("nack-proxy"))
        .unwrap_or_default();
    assert!(
        row.contains("NACKED") && row.contains("cannot bind"),
        "{table}"
    );

    // The last good configuration keeps serving, and the NACKed version is not resent.
    assert_eq!(proxy.config_dump().await["version"], good_version);
    for _ in 0..20 {
        assert!(ok(ip1).await, "gw1 keeps serving after the NACK");
    }
    assert_eq!(
        proxy.metric("serval_xds_responses_total").await,
        Some(2.0),
        "initial + the rejected one, no resend"
    );

    // Once the address is free, the next change (a new version) is applied.
    drop(squatter);
    dir.write(
        "gw2.yaml",
        &gateway("gw2", ip2).replace("gw2-route", "gw2-route-renamed"),
    );
    let applied = wait_until(Duration::from_secs(10), || async { ok(ip2).await }).await;
    assert!(applied, "the next version was not applied");
    assert!(ok(ip1).await);
    let cleared = wait_until(Duration::from_secs(10), || async {
        programmed(cp.status_of("Gateway", "default", "gw2").await)
            .is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert!(cleared, "gw2 is Programmed again once the proxy ACKed");
    assert_eq!(cp.metric("serval_xds_rejecting_proxies").await, Some(0.0));
    let state = admin
        .list_proxies(ListProxiesRequest {})
        .await
        .expect("list")
        .into_inner()
        .proxies[0]
        .state;
    assert_eq!(state, i32::from(SyncState::Synced));
}
