//! TCPRoute and UDPRoute through the real `serval-control-plane standalone` (with its in-process
//! proxy): bytes reach a TCP echo and datagrams a UDP echo (both in this test, on loopback) and
//! come back, and a removed route stops the traffic.

use serval_e2e::harness::{ControlPlane, TempDir, free_port, unique_loopback_ip, wait_until};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};

fn config(
    ip: std::net::Ipv4Addr,
    tcp_port: u16,
    udp_port: u16,
    tcp: SocketAddr,
    udp: SocketAddr,
) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: serval}}
spec: {{controllerName: serval.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: serval
  addresses: [{{type: IPAddress, value: "{ip}"}}]
  listeners:
  - {{name: tcp, protocol: TCP, port: {tcp_port}}}
  - {{name: udp, protocol: UDP, port: {udp_port}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  ports:
  - {{name: tcp, port: 7000, protocol: TCP}}
  - {{name: udp, port: 7000, protocol: UDP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-1, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports:
- {{name: tcp, port: {tcp_backend}, protocol: TCP}}
- {{name: udp, port: {udp_backend}, protocol: UDP}}
endpoints:
- addresses: ["127.0.0.1"]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: tcp, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules:
  - backendRefs: [{{name: echo, port: 7000}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: udp, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: udp}}]
  rules:
  - backendRefs: [{{name: echo, port: 7000}}]
"#,
        tcp_backend = tcp.port(),
        udp_backend = udp.port(),
    )
}

async fn tcp_round_trip(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(payload).await.map_err(|e| e.to_string())?;
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut back))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(back)
}

async fn udp_round_trip(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, String> {
    let s = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    s.send_to(payload, addr).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(buf[..n].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_routes_carry_traffic_both_ways() {
    // Echo backends inside the test.
    let tcp_echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_addr = tcp_echo.local_addr().expect("addr");
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp_echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let udp_echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let udp_addr = udp_echo.local_addr().expect("addr");
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = udp_echo.recv_from(&mut buf).await {
            let _ = udp_echo.send_to(&buf[..n], from).await;
        }
    });

    let logs = TempDir::new("l4-logs");
    let dir = TempDir::new("l4");
    let ip = unique_loopback_ip();
    let (tcp_port, udp_port) = (free_port(), free_port());
    dir.write(
        "all.yaml",
        &config(ip, tcp_port, udp_port, tcp_addr, udp_addr),
    );
    let _cp = ControlPlane::start(dir.path(), logs.path(), None, &[]).await;
    let gateway_tcp: SocketAddr = (ip, tcp_port).into();
    let gateway_udp: SocketAddr = (ip, udp_port).into();

    let tcp_ok = wait_until(Duration::from_secs(10), || async {
        tcp_round_trip(gateway_tcp, b"hello over tcp")
            .await
            .as_deref()
            == Ok(b"hello over tcp")
    })
    .await;
    assert!(tcp_ok, "TCP bytes did not come back through the gateway");
    let udp_ok = wait_until(Duration::from_secs(10), || async {
        udp_round_trip(gateway_udp, b"hello over udp")
            .await
            .as_deref()
            == Ok(b"hello over udp")
    })
    .await;
    assert!(udp_ok, "UDP datagram did not come back through the gateway");
    // Several datagrams of one client use one session and all come back.
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for i in 0..5u8 {
        client.send_to(&[i; 16], gateway_udp).await.expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .expect("reply in time")
            .expect("recv");
        assert_eq!(&buf[..n], &[i; 16]);
    }

    // Removing the TCPRoute leaves the listener refusing connections (closed without bytes).
    let text = config(ip, tcp_port, udp_port, tcp_addr, udp_addr);
    let without_tcp_route = text
        .split("---\n")
        .filter(|doc| !doc.contains("kind: TCPRoute"))
        .collect::<Vec<_>>()
        .join("---\n");
    dir.write("all.yaml", &without_tcp_route);
    let refused = wait_until(Duration::from_secs(10), || async {
        tcp_round_trip(gateway_tcp, b"x").await.is_err()
    })
    .await;
    assert!(
        refused,
        "connections still reach the backend without a TCPRoute"
    );
    tcp_task.abort();
    udp_task.abort();
}
