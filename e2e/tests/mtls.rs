//! The delta protocol over mutual TLS with certificates from `serval-control-plane certgen`: a proxy
//! whose certificate names its Gateway is served; one asking for a Gateway its certificate does not
//! name is refused with PERMISSION_DENIED; a client certificate from another CA does not get
//! through the handshake; `proxy-status` works with the admin certificate and is refused with a proxy's.

use serval_e2e::harness::{ControlPlane, HttpClient, Proxy, Scenario, binary, wait_until};
use std::{path::Path, process::Command, time::Duration};

fn certgen(dir: &Path, extra: &[&str]) {
    let out = Command::new(binary("serval-control-plane"))
        .arg("certgen")
        .arg("--out-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("certgen runs");
    assert!(
        out.status.success(),
        "certgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_args(certs: &Path, name: &str) -> Vec<String> {
    ["cert", "key"]
        .iter()
        .zip([format!("{name}.crt"), format!("{name}.key")])
        .flat_map(|(flag, file)| {
            [
                format!("--xds-{flag}"),
                certs.join(file).display().to_string(),
            ]
        })
        .chain([
            "--xds-ca".to_owned(),
            certs.join("ca.crt").display().to_string(),
        ])
        .collect()
}

fn proxy_status(xds: std::net::SocketAddr, certs: &Path, name: &str) -> std::process::Output {
    Command::new(binary("serval-control-plane"))
        .args(["proxy-status", "--xds-server"])
        .arg(format!("https://{xds}"))
        .args(tls_args(certs, name))
        .output()
        .expect("proxy-status runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_are_served_only_the_gateways_their_certificate_names() {
    let s = Scenario::two_backends("mtls", &[]).await;
    let certs = s.logs.path().join("certs");
    certgen(
        &certs,
        &["--proxy-name", "proxy-gw", "--proxy-gateway", "default/gw"],
    );
    let server: Vec<String> = tls_args(&certs, "server");
    let mut extra: Vec<&str> = vec!["--no-proxy"];
    extra.extend(server.iter().map(String::as_str));
    let cp = ControlPlane::start(s.dir.path(), s.logs.path(), None, &extra).await;
    let url = format!("https://{}", cp.xds);

    // Allowed: the certificate names default/gw.
    let mut args = vec![
        "--xds-server".to_owned(),
        url.clone(),
        "--gateway".into(),
        "default/gw".into(),
    ];
    args.extend(tls_args(&certs, "proxy-gw"));
    let allowed = Proxy::spawn("mtls-allowed", s.logs.path(), &args);
    assert!(allowed.ready().await, "the allowed proxy is served");
    let reply = HttpClient::http1()
        .get(s.gateway, "any.example", "/", &[])
        .await
        .expect("request through the proxy");
    assert_eq!(reply.status, 200);

    // Refused: the same certificate asking for every Gateway.
    let mut args = vec!["--xds-server".to_owned(), url.clone()];
    args.extend(tls_args(&certs, "proxy-gw"));
    let mut greedy = Proxy::spawn("mtls-greedy", s.logs.path(), &args);
    let refused = wait_until(Duration::from_secs(10), || async {
        cp.metric("serval_xds_rejected_streams_total").await >= Some(1.0)
    })
    .await;
    assert!(refused, "the control plane did not refuse the stream");
    let logged = wait_until(Duration::from_secs(10), || async {
        greedy
            .process
            .log()
            .contains("does not allow every Gateway")
    })
    .await;
    assert!(
        logged,
        "the proxy was not told why: {}",
        greedy.process.log()
    );
    assert_eq!(greedy.metric("serval_xds_connected").await, Some(0.0));
    greedy.process.kill();

    // A certificate from another CA: the server refuses the handshake, no stream opens.
    let foreign = s.logs.path().join("foreign");
    certgen(&foreign, &[]);
    let mut args = vec!["--xds-server".to_owned(), url.clone()];
    args.extend(tls_args(&foreign, "proxy"));
    // Trust the real server, so only the client side is wrong.
    let ca = args.len() - 1;
    args[ca] = certs.join("ca.crt").display().to_string();
    let mut stranger = Proxy::spawn("mtls-stranger", s.logs.path(), &args);
    let failed = wait_until(Duration::from_secs(10), || async {
        stranger.process.log().matches("delta stream down").count() >= 2
    })
    .await;
    assert!(failed, "{}", stranger.process.log());
    assert_eq!(
        stranger.metric("serval_xds_connects_total").await,
        Some(0.0)
    );
    stranger.process.kill();
    let cp_log = cp.process.log();
    assert!(
        cp_log.contains("TLS handshake failed"),
        "the server refused the handshake: {cp_log}"
    );
    assert_eq!(
        cp.metric("serval_xds_streams").await,
        Some(1.0),
        "only the allowed proxy"
    );

    // proxy-status: the admin certificate may list the fleet; a proxy certificate may not.
    let out = proxy_status(cp.xds, &certs, "admin");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("mtls-allowed"))
        .unwrap_or_default();
    assert!(
        row.contains("SYNCED") && row.contains("default/gw"),
        "{table}"
    );
    let out = proxy_status(cp.xds, &certs, "proxy-gw");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("urn:serval:admin"), "{err}");
}
