//! HTTPS listeners through the real binaries: TLS terminated with the certificate of the listener
//! the client's SNI names, HTTP/2 by ALPN, `x-forwarded-proto` and redirects keeping `https`,
//! certificates rotated without dropping open connections, a broken Secret reported on the
//! listener; and Secret scoping across a fleet: a proxy holds only the Secrets of its own
//! Gateways' listeners, and a change to another Gateway's Secret never reaches it.

use serval_e2e::{
    harness::{
        ControlPlane, EchoBackend, Proxy, TempDir, free_port, service_yaml, unique_loopback_ip,
        wait_until,
    },
    https::{Certificate, TlsClient},
};
use std::{net::SocketAddr, time::Duration};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

fn gateway_yaml(name: &str, ip: &str, port: u16, listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gatewayClassName: serval\n  addresses: [{{type: IPAddress, value: \"{ip}\"}}]\n  listeners:\n{}",
        listeners.replace("PORT", &port.to_string())
    )
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: serval}\nspec: {controllerName: serval.dev/gateway-controller}\n";

/// The value of request header `name` the echo backend saw.
fn seen_header(reply: &serval_e2e::harness::Reply, name: &str) -> Option<String> {
    let echo = reply.echo()?;
    echo.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_terminates_tls_by_sni_and_rotates_certificates() {
    let logs = TempDir::new("https-logs");
    let dir = TempDir::new("https");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let ip = unique_loopback_ip();
    let ip_text = ip.to_string();
    let port = free_port();
    let gateway: SocketAddr = (ip, port).into();
    let default_cert = Certificate::self_signed(&[&ip_text, "default.example"]);
    let a_cert = Certificate::self_signed(&["a.example.com"]);
    let wild_cert = Certificate::self_signed(&["*.wild.example"]);
    dir.write("class.yaml", CLASS);
    dir.write(
        "gateway.yaml",
        &gateway_yaml(
            "gw",
            &ip_text,
            port,
            "  - {name: https, protocol: HTTPS, port: PORT, tls: {certificateRefs: [{name: default-cert}]}}\n  - {name: https-a, protocol: HTTPS, port: PORT, hostname: a.example.com, tls: {certificateRefs: [{name: a-cert}]}}\n  - {name: https-wild, protocol: HTTPS, port: PORT, hostname: \"*.wild.example\", tls: {certificateRefs: [{name: wild-cert}]}}\n",
        ),
    );
    dir.write(
        "default-cert.yaml",
        &default_cert.secret_yaml("default", "default-cert"),
    );
    dir.write("a-cert.yaml", &a_cert.secret_yaml("default", "a-cert"));
    dir.write(
        "wild-cert.yaml",
        &wild_cert.secret_yaml("default", "wild-cert"),
    );
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /moved}}]\n    filters: [{type: RequestRedirect, requestRedirect: {hostname: elsewhere.example}}]\n  - backendRefs: [{name: svc-a, port: 80}]\n",
    );
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let proxy = Proxy::start(cp.xds, "https-proxy", logs.path()).await;

    let trusting = TlsClient::trusting(&[&default_cert, &a_cert, &wild_cert], H2_AND_H1);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            trusting
                .get(gateway, "a.example.com", "a.example.com", "/")
                .await
                .is_ok_and(|(_, r)| r.status == 200)
        })
        .await,
        "HTTPS never served on {gateway}"
    );

    // Each SNI gets its listener's certificate; HTTP/2 is agreed by ALPN.
    for (sni, cert) in [
        ("a.example.com", &a_cert),
        ("x.wild.example", &wild_cert),
        ("default.example", &default_cert),
        // An IP address sends no SNI: the listener without hostname answers.
        (ip_text.as_str(), &default_cert),
    ] {
        let (conn, reply) = trusting
            .get(gateway, sni, sni, "/path")
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(conn.leaf, cert.der, "{sni}: certificate presented");
        assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]), "{sni}: ALPN");
        assert_eq!(reply.status, 200, "{sni}");
        let echo = reply.echo().expect("echo body");
        assert_eq!(echo.pod, "svc-a-pod-0");
        assert_eq!(echo.path, "/path");
        assert_eq!(
            seen_header(&reply, "x-forwarded-proto").as_deref(),
            Some("https")
        );
    }
    // A client offering only HTTP/1.1 is served HTTP/1.1.
    let h1 = TlsClient::trusting(&[&a_cert], &[b"http/1.1"]);
    let (conn, reply) = h1
        .get(gateway, "a.example.com", "a.example.com", "/")
        .await
        .expect("HTTP/1.1 over TLS");
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(reply.status, 200);
    // A redirect without a scheme keeps https (and the listener's port, not https's 443).
    let (_, moved) = trusting
        .get(gateway, "a.example.com", "a.example.com", "/moved/x")
        .await
        .expect("redirect");
    assert_eq!(moved.status, 302);
    assert_eq!(
        moved.header("location"),
        Some(format!("https://elsewhere.example:{port}/moved/x").as_str())
    );
    let dump = proxy.config_dump().await;
    let sockets = dump["sockets"].as_array().cloned().unwrap_or_default();
    assert!(
        sockets
            .iter()
            .any(|s| s["address"] == gateway.to_string() && s["tls"] == true),
        "{dump}"
    );

    // Rotation: a new certificate in the Secret is presented to new connections; a connection
    // opened before keeps working.
    let (mut old, _) = h1
        .get(gateway, "a.example.com", "a.example.com", "/")
        .await
        .expect("before the rotation");
    let a_next = Certificate::self_signed(&["a.example.com"]);
    dir.write("a-cert.yaml", &a_next.secret_yaml("default", "a-cert"));
    let rotated = TlsClient::trusting(&[&a_next], H2_AND_H1);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            rotated
                .connect(gateway, "a.example.com")
                .await
                .is_ok_and(|c| c.leaf == a_next.der)
        })
        .await,
        "the rotated certificate was never presented"
    );
    assert_eq!(old.leaf, a_cert.der);
    let still = old
        .get("a.example.com", "/after")
        .await
        .expect("old connection");
    assert_eq!(still.status, 200, "a connection opened before the rotation");

    // A broken Secret: the control plane reports it on the listener and sends nothing the proxy
    // would have to reject; a.example.com falls back to the listener without hostname.
    dir.write(
        "a-cert.yaml",
        &Certificate {
            key_pem: default_cert.key_pem.clone(),
            ..a_next.clone()
        }
        .secret_yaml("default", "a-cert"),
    );
    let reported = wait_until(Duration::from_secs(15), || async {
        let status = cp.status_of("Gateway", "default", "gw").await;
        let listeners = status
            .as_ref()
            .and_then(|s| s["listeners"].as_array().cloned())
            .unwrap_or_default();
        listeners.iter().any(|l| {
            l["name"] == "https-a"
                && l["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "ResolvedRefs"
                            && c["status"] == "False"
                            && c["reason"] == "InvalidCertificateRef"
                            && c["message"].as_str().is_some_and(|m| {
                                m.contains("default/a-cert") && m.contains("tls.key")
                            })
                    })
                })
        })
    })
    .await;
    assert!(reported, "InvalidCertificateRef never reported on https-a");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            trusting.connect(gateway, "default.example").await.is_ok()
                && TlsClient::trusting(&[&default_cert], H2_AND_H1)
                    .connect(gateway, "a.example.com")
                    .await
                    .is_err_and(|e| e.contains("certificate"))
        })
        .await,
        "a.example.com still served with the broken Secret's listener"
    );
    assert_eq!(
        proxy.metric("serval_config_rejected_total").await,
        Some(0.0)
    );
    assert!(proxy.metric("serval_tls_handshake_failures_total").await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_never_receives_another_gateways_secret() {
    let logs = TempDir::new("secret-scope-logs");
    let dir = TempDir::new("secret-scope");
    let backend = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
    let (ip_a, ip_b, ip_all) = (
        unique_loopback_ip(),
        unique_loopback_ip(),
        unique_loopback_ip(),
    );
    let port = free_port();
    let cert_a = Certificate::self_signed(&["a.example"]);
    let cert_b = Certificate::self_signed(&["b.example"]);
    let unused = Certificate::self_signed(&["unused.example"]);
    dir.write("class.yaml", CLASS);
    let listener = |host: &str, secret: &str| {
        format!(
            "  - {{name: https, protocol: HTTPS, port: PORT, hostname: {host}, tls: {{certificateRefs: [{{name: {secret}}}]}}}}\n"
        )
    };
    dir.write(
        "gateways.yaml",
        &[
            gateway_yaml(
                "gw-a",
                &ip_a.to_string(),
                port,
                &listener("a.example", "cert-a"),
            ),
            gateway_yaml(
                "gw-b",
                &ip_b.to_string(),
                port,
                &listener("b.example", "cert-b"),
            ),
        ]
        .join("---\n"),
    );
    dir.write("cert-a.yaml", &cert_a.secret_yaml("default", "cert-a"));
    dir.write("cert-b.yaml", &cert_b.secret_yaml("default", "cert-b"));
    dir.write("unused.yaml", &unused.secret_yaml("default", "unused"));
    dir.write("services.yaml", &service_yaml("svc-a", &[backend.addr]));
    dir.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: default}\nspec:\n  parentRefs: [{name: gw-a}, {name: gw-b}]\n  rules:\n  - backendRefs: [{name: svc-a, port: 80}]\n",
    );
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let pa = Proxy::start_with(
        cp.xds,
        "proxy-a",
        logs.path(),
        &["--gateway", "default/gw-a"],
    )
    .await;
    let pb = Proxy::start_with(
        cp.xds,
        "proxy-b",
        logs.path(),
        &["--gateway", "default/gw-b"],
    )
    .await;
    // Serves both Gateways on one socket of its own address: the certificates merge by SNI.
    let all_ip = ip_all.to_string();
    let pall = Proxy::start_with(
        cp.xds,
        "proxy-all",
        logs.path(),
        &["--bind-address", &all_ip],
    )
    .await;

    let client = TlsClient::trusting(&[&cert_a, &cert_b], H2_AND_H1);
    let serves = |addr: SocketAddr, sni: &'static str, cert: Certificate| {
        let client = client.clone();
        async move {
            wait_until(Duration::from_secs(15), || async {
                client
                    .get(addr, sni, sni, "/")
                    .await
                    .is_ok_and(|(c, r)| r.status == 200 && c.leaf == cert.der)
            })
            .await
        }
    };
    assert!(
        serves((ip_a, port).into(), "a.example", cert_a.clone()).await,
        "proxy-a"
    );
    assert!(
        serves((ip_b, port).into(), "b.example", cert_b.clone()).await,
        "proxy-b"
    );
    assert!(
        serves((ip_all, port).into(), "a.example", cert_a.clone()).await,
        "proxy-all, a"
    );
    assert!(
        serves((ip_all, port).into(), "b.example", cert_b.clone()).await,
        "proxy-all, b"
    );

    let secrets = |dump: &serde_json::Value| -> Vec<String> {
        dump["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == "Secret")
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (dump_a, dump_b, dump_all) = (
        pa.config_dump().await,
        pb.config_dump().await,
        pall.config_dump().await,
    );
    assert_eq!(secrets(&dump_a), ["secret/default/cert-a"]);
    assert_eq!(secrets(&dump_b), ["secret/default/cert-b"]);
    assert_eq!(
        secrets(&dump_all),
        ["secret/default/cert-a", "secret/default/cert-b"]
    );
    // Private keys are never shown in a dump.
    for (dump, key) in [
        (&dump_a, &cert_a),
        (&dump_b, &cert_b),
        (&dump_all, &cert_a),
        (&dump_all, &cert_b),
    ] {
        let text = dump.to_string();
        let key_line = key.key_pem.lines().nth(1).expect("a base64 line");
        assert!(!text.contains(key_line), "a private key in a dump");
    }

    // Rotating gw-b's certificate reaches proxy-b and proxy-all, never proxy-a.
    let responses_a = pa.metric("serval_xds_responses_total").await;
    let version_a = dump_a["version"].clone();
    let cert_b2 = Certificate::self_signed(&["b.example"]);
    dir.write("cert-b.yaml", &cert_b2.secret_yaml("default", "cert-b"));
    let client_b2 = TlsClient::trusting(&[&cert_b2], H2_AND_H1);
    for addr in [SocketAddr::from((ip_b, port)), (ip_all, port).into()] {
        assert!(
            wait_until(Duration::from_secs(15), || async {
                client_b2
                    .connect(addr, "b.example")
                    .await
                    .is_ok_and(|c| c.leaf == cert_b2.der)
            })
            .await,
            "{addr} never presented the rotated certificate"
        );
    }
    // Then a change to gw-a's certificate: proxy-a gets exactly that one response, holding
    // only its own Secret (a push for gw-b's Secret would have been a response before it, or
    // coalesced into it and visible in the dump).
    let cert_a2 = Certificate::self_signed(&["a.example"]);
    dir.write("cert-a.yaml", &cert_a2.secret_yaml("default", "cert-a"));
    let client_a2 = TlsClient::trusting(&[&cert_a2], H2_AND_H1);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            client_a2
                .connect((ip_a, port).into(), "a.example")
                .await
                .is_ok_and(|c| c.leaf == cert_a2.der)
        })
        .await,
        "proxy-a never presented its rotated certificate"
    );
    let dump_a = pa.config_dump().await;
    assert_ne!(dump_a["version"], version_a);
    assert_eq!(secrets(&dump_a), ["secret/default/cert-a"]);
    assert_eq!(
        pa.metric("serval_xds_responses_total").await,
        responses_a.map(|n| n + 1.0),
        "proxy-a received a response for another Gateway's Secret"
    );
    assert!(
        !secrets(&pb.config_dump().await).contains(&"secret/default/unused".to_owned()),
        "a Secret no listener uses was sent"
    );
}
