//! The world the Kubernetes-mode scenarios and benchmarks start from, in a Kubernetes API emulator
//! ([`crate::kube_emulator`]), and a running `serval-control-plane kubernetes` replica.

use crate::{
    harness::{
        EchoBackend, HttpClient, Process, Proxy, TempDir, admin_get, binary, free_port,
        service_yaml, unique_loopback_ip, wait_until,
    },
    kube_emulator::KubeEmulator,
};
use serde_json::{Value, json};
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

/// Our controllerName.
pub const CONTROLLER: &str = "serval.dev/gateway-controller";
/// The fleet Service's load-balancer address.
pub const FLEET_IP: &str = "203.0.113.10";
/// The bound of every wait.
pub const WAIT: Duration = Duration::from_secs(20);

/// The emulator with the world the scenarios start from: GatewayClass `serval`, Gateway
/// `default/gw` (no `spec.addresses`: it reports the fleet Service's address), Services `svc-a`
/// and `svc-b` with one echo backend each, the fleet Service `serval-system/serval-proxy` with a
/// load-balancer address, and HTTPRoute `web` (`a.example` → `svc-a`).
#[derive(Debug)]
pub struct World {
    /// Backend of `svc-a` (pod `svc-a-pod-0`).
    pub a: EchoBackend,
    /// Backend of `svc-b` (pod `svc-b-pod-0`).
    pub b: EchoBackend,
    /// Where the proxy serves the Gateway's listener (`--bind-address` IP, listener port).
    pub gateway: SocketAddr,
    /// Logs of every process.
    pub logs: TempDir,
}

impl World {
    /// Starts the echo backends and picks the Gateway's address.
    pub async fn start(tag: &str) -> Self {
        let logs = TempDir::new(tag);
        let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
        let b = EchoBackend::start("svc-b", "svc-b-pod-0", logs.path()).await;
        let gateway = SocketAddr::new(IpAddr::V4(unique_loopback_ip()), free_port());
        Self {
            a,
            b,
            gateway,
            logs,
        }
    }

    /// Creates the world in the emulator.
    pub async fn seed(&self, em: &KubeEmulator) {
        let mut objects = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "serval-system"}}),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "serval"}, "spec": {"controllerName": CONTROLLER}
            }),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": "default"},
                "spec": {"gatewayClassName": "serval", "listeners": [
                    {"name": "http", "protocol": "HTTP", "port": self.gateway.port()}
                ]}
            }),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "serval-proxy", "namespace": "serval-system"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20",
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }),
            route("web", "a.example", "svc-a"),
        ];
        for (name, backend) in [("svc-a", &self.a), ("svc-b", &self.b)] {
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&service_yaml(name, &[backend.addr]))
                    .expect("service YAML parses");
            objects.extend(docs);
        }
        for object in objects {
            em.create(object).await.expect("seed object");
        }
        em.patch_status(
            "Service",
            Some("serval-system"),
            "serval-proxy",
            json!({"status": {"loadBalancer": {"ingress": [{"ip": FLEET_IP}]}}}),
        )
        .await
        .expect("fleet Service status");
    }

    /// Starts a proxy for `cp` serving the Gateway on its address.
    pub async fn proxy(&self, cp: &KubeControlPlane, node: &str) -> Proxy {
        let ip = self.gateway.ip().to_string();
        Proxy::start_with(cp.xds, node, self.logs.path(), &["--bind-address", &ip]).await
    }

    /// Starts a control-plane replica `cp-0` on `em` and a proxy, and waits until the seeded route
    /// `web` is served.
    pub async fn serve(&self, em: &KubeEmulator) -> (KubeControlPlane, Proxy) {
        let kubeconfig = em.write_kubeconfig(self.logs.path());
        let cp = KubeControlPlane::start(&kubeconfig, "cp-0", self.logs.path());
        cp.wait_ready().await;
        let proxy = self.proxy(&cp, "proxy-0").await;
        assert!(
            self.wait_pod("a.example", "svc-a-pod-0").await,
            "web → svc-a"
        );
        (cp, proxy)
    }

    /// The pod answering `host` through the proxy, or the HTTP status if no echo answered.
    pub async fn pod_for(&self, host: &str) -> Result<String, String> {
        let reply = HttpClient::http1()
            .get(self.gateway, host, "/", &[])
            .await?;
        reply
            .echo()
            .map(|e| e.pod)
            .ok_or_else(|| format!("HTTP {}", reply.status))
    }

    /// Waits (bounded by [`WAIT`]) until `host` is answered by `pod`.
    pub async fn wait_pod(&self, host: &str, pod: &str) -> bool {
        wait_until(WAIT, || async {
            self.pod_for(host).await.ok().as_deref() == Some(pod)
        })
        .await
    }
}

/// HTTPRoute `default/NAME` on Gateway `gw` sending `host` to `service` port 80.
pub fn route(name: &str, host: &str, service: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": service, "port": 80}]}]
        }
    })
}

/// A running `serval-control-plane kubernetes`.
#[derive(Debug)]
pub struct KubeControlPlane {
    /// Delta server address.
    pub xds: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The process.
    pub process: Process,
}

impl KubeControlPlane {
    /// Starts a replica named `identity` against the API server of `kubeconfig` (not waiting for
    /// readiness).
    pub fn start(kubeconfig: &Path, identity: &str, logs: &Path) -> Self {
        Self::start_with(kubeconfig, identity, logs, &[])
    }

    /// Like [`KubeControlPlane::start`], with extra arguments.
    pub fn start_with(kubeconfig: &Path, identity: &str, logs: &Path, extra: &[&str]) -> Self {
        let xds = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args: Vec<String> = [
            "kubernetes",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--xds-addr",
            &xds.to_string(),
            "--admin-addr",
            &admin.to_string(),
            "--xds-plaintext",
            "--namespace",
            "serval-system",
            "--identity",
            identity,
            "--proxy-service",
            "serval-system/serval-proxy",
            "--lease-duration",
            "3s",
            "--lease-renew-deadline",
            "2s",
            "--lease-retry-period",
            "250ms",
            "--debounce-ms",
            "50",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let process = Process::start(identity, &binary("serval-control-plane"), &args, logs);
        Self {
            xds,
            admin,
            process,
        }
    }

    /// `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        admin_get(self.admin, "/readyz")
            .await
            .is_ok_and(|r| r.status.is_success())
    }

    /// Waits (bounded) for `/readyz`.
    pub async fn wait_ready(&self) {
        assert!(
            wait_until(WAIT, || self.ready()).await,
            "control plane not ready on {}",
            self.admin
        );
    }

    /// A metric, summed over the label sets whose text contains `labels` (`""`: all).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let Ok(reply) = admin_get(self.admin, "/metrics").await else {
            return f64::NAN;
        };
        String::from_utf8_lossy(&reply.body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(key, _)| key.split('{').next() == Some(name) && key.contains(labels))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    }
}

/// The `parents[]` entry of ours in a route's status, with its `Accepted` condition status.
pub async fn route_accepted(em: &KubeEmulator, name: &str) -> Option<String> {
    let route = em.get("HTTPRoute", Some("default"), name).await.ok()??;
    let parents = route.pointer("/status/parents")?.as_array()?.clone();
    let ours = parents.iter().find(|p| p["controllerName"] == CONTROLLER)?;
    condition(ours, "Accepted")
}

/// The `status` of condition `kind` in `holder["conditions"]`.
pub fn condition(holder: &Value, kind: &str) -> Option<String> {
    holder["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_owned)
}
