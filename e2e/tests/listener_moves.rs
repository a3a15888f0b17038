//! Listeners follow the configuration: a Gateway that moves from every address (no
//! `spec.addresses`, bound on 0.0.0.0) to one address on the same port is rebound there without a
//! NACK, and the old socket is closed.

use serval_e2e::harness::{
    ControlPlane, EchoBackend, HttpClient, TempDir, admin_get, free_port, metric, route_yaml,
    service_yaml, unique_loopback_ip, wait_until,
};
use std::time::Duration;

fn gateway(address: Option<std::net::Ipv4Addr>, port: u16) -> String {
    let addresses = address
        .map(|ip| format!("  addresses: [{{type: IPAddress, value: \"{ip}\"}}]\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: serval}}\nspec: {{controllerName: serval.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  gatewayClassName: serval\n{addresses}  listeners:\n  - {{name: http, protocol: HTTP, port: {port}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_moving_from_all_addresses_to_one_is_rebound() {
    let logs = TempDir::new("moves-logs");
    let dir = TempDir::new("moves");
    let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let port = free_port();
    dir.write("gateway.yaml", &gateway(None, port));
    dir.write("services.yaml", &service_yaml("svc-a", &[a.addr]));
    dir.write("route.yaml", &route_yaml("svc-a", &[]));
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &[]).await;
    let client = HttpClient::http1();
    let ip = unique_loopback_ip();
    let serves = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            client
                .get(addr, "x.example", "/", &[])
                .await
                .is_ok_and(|r| r.status == 200)
        }
    };
    assert!(
        serves((ip, port).into()).await,
        "0.0.0.0 serves every loopback address"
    );

    dir.write("gateway.yaml", &gateway(Some(ip), port));
    let proxy_admin = cp.proxy_admin.expect("in-process proxy admin");
    let applied = wait_until(Duration::from_secs(10), || async {
        let text = admin_get(proxy_admin, "/metrics")
            .await
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .unwrap_or_default();
        metric(&text, "serval_config_applied_total") == Some(2.0)
    })
    .await;
    let text = admin_get(proxy_admin, "/metrics")
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    assert!(applied, "the move was not applied: {text}");
    assert_eq!(
        metric(&text, "serval_config_rejected_total"),
        Some(0.0),
        "no NACK"
    );
    assert!(serves((ip, port).into()).await, "served on the new address");
    let other = unique_loopback_ip();
    assert!(
        !serves((other, port).into()).await,
        "the 0.0.0.0 socket is closed"
    );
}
