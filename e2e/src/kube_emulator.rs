//! A Kubernetes API server for e2e tests: `e2e/kube-emulator/emulator.py`, a kmock-based emulator
//! (`pip install kmock`) that serves the kinds the control plane watches over plain HTTP on
//! loopback, with resourceVersions, generations, the status subresource, optimistic concurrency
//! and watches as the real API server has them. The script's docstring lists what it emulates and
//! what it does not.
//!
//! [`KubeEmulator`] starts it, waits until it answers, writes a kubeconfig for the control plane,
//! and reads and writes objects as JSON. Every non-GET request the emulator served is recorded:
//! [`KubeEmulator::requests`] shows what the control plane wrote (status patches, Lease updates).

use crate::harness::{HttpClient, Process, Reply, free_port, wait_until};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// Kinds the emulator serves: kind, apiVersion, plural, namespaced.
const KINDS: &[(&str, &str, &str, bool)] = &[
    (
        "GatewayClass",
        "gateway.networking.k8s.io/v1",
        "gatewayclasses",
        false,
    ),
    ("Gateway", "gateway.networking.k8s.io/v1", "gateways", true),
    (
        "HTTPRoute",
        "gateway.networking.k8s.io/v1",
        "httproutes",
        true,
    ),
    (
        "GRPCRoute",
        "gateway.networking.k8s.io/v1",
        "grpcroutes",
        true,
    ),
    (
        "TLSRoute",
        "gateway.networking.k8s.io/v1",
        "tlsroutes",
        true,
    ),
    (
        "ReferenceGrant",
        "gateway.networking.k8s.io/v1",
        "referencegrants",
        true,
    ),
    (
        "TCPRoute",
        "gateway.networking.k8s.io/v1alpha2",
        "tcproutes",
        true,
    ),
    (
        "UDPRoute",
        "gateway.networking.k8s.io/v1alpha2",
        "udproutes",
        true,
    ),
    ("Service", "v1", "services", true),
    ("Secret", "v1", "secrets", true),
    ("Namespace", "v1", "namespaces", false),
    (
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "endpointslices",
        true,
    ),
    ("Lease", "coordination.k8s.io/v1", "leases", true),
];

const MERGE_PATCH: &str = "application/merge-patch+json";

/// A running emulator, killed on drop (its log is printed if the test is failing).
#[derive(Debug)]
pub struct KubeEmulator {
    addr: SocketAddr,
    client: HttpClient,
    /// The emulator process (kill it to take the API server away).
    pub process: Process,
}

impl KubeEmulator {
    /// Starts the emulator on a free port, serving every kind except `without` (`GROUP/PLURAL`,
    /// e.g. `gateway.networking.k8s.io/tcproutes`, as if that CRD were not installed; core kinds
    /// as `/PLURAL`). Panics, with the emulator's log, if it does not answer within 20 s.
    pub async fn start(log_dir: &Path, without: &[&str]) -> Self {
        Self::start_on(free_port(), log_dir, without).await
    }

    /// Like [`KubeEmulator::start`] on `port`, e.g. one given to a control plane started first
    /// (see [`kubeconfig_for_port`]).
    pub async fn start_on(port: u16, log_dir: &Path, without: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kube-emulator/emulator.py");
        let mut args = vec![
            script.display().to_string(),
            "--port".into(),
            port.to_string(),
        ];
        for kind in without {
            args.push("--without".into());
            args.push((*kind).to_owned());
        }
        let mut process = Process::start("kube-emulator", Path::new("python3"), &args, log_dir);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = HttpClient::http1();
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(20), || {
            exited = !process.is_running();
            let (client, exited) = (&client, exited);
            async move {
                exited
                    || client
                        .get(addr, &addr.to_string(), "/api", &[])
                        .await
                        .is_ok_and(|r| r.status == StatusCode::OK)
            }
        })
        .await;
        assert!(
            ready && !exited,
            "kube emulator did not start on {addr} (is kmock installed? `python3 -m pip install kmock`); log:\n{}",
            process.log()
        );
        Self {
            addr,
            client,
            process,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes `dir/kubeconfig` pointing at the emulator and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig_for_port(self.port(), dir)
    }

    /// Creates `object` (POST); the URL comes from its `apiVersion`, `kind` and
    /// `metadata.namespace` (`default` if a namespaced kind has none). Returns the stored object.
    /// A `.status` is dropped on create for kinds with a status subresource: use
    /// [`KubeEmulator::patch_status`].
    pub async fn create(&self, object: Value) -> Result<Value, String> {
        let kind = object["kind"].as_str().ok_or("object without kind")?;
        let (_, default_version, plural, namespaced) = kind_info(kind)?;
        let api_version = object["apiVersion"].as_str().unwrap_or(default_version);
        let namespace = namespaced.then(|| {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
        });
        let path = collection_path(api_version, plural, namespace);
        let body = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
        self.call(Method::POST, &path, Some("application/json"), body)
            .await
    }

    /// Applies a JSON merge patch (RFC 7386) to an object. A `metadata.resourceVersion` in the
    /// patch that is not the stored one fails with 409 Conflict, as in Kubernetes.
    pub async fn patch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        merge_patch: Value,
    ) -> Result<Value, String> {
        let path = object_path(kind, namespace, name)?;
        self.patch_path(&path, merge_patch).await
    }

    /// Applies a JSON merge patch to an object's `status` subresource (only `.status` changes).
    pub async fn patch_status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        merge_patch: Value,
    ) -> Result<Value, String> {
        let path = format!("{}/status", object_path(kind, namespace, name)?);
        self.patch_path(&path, merge_patch).await
    }

    /// Deletes an object.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), String> {
        let path = object_path(kind, namespace, name)?;
        self.call(Method::DELETE, &path, None, Vec::new())
            .await
            .map(drop)
    }

    /// An object, or `None` if there is none.
    pub async fn get(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let path = object_path(kind, namespace, name)?;
        match self.request(Method::GET, &path, None, Vec::new()).await? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, body) if status.is_success() => Ok(Some(body)),
            (status, body) => Err(format!("GET {path}: HTTP {status}: {body}")),
        }
    }

    /// Every object of `kind`, in every namespace, sorted by namespace and name.
    pub async fn list(&self, kind: &str) -> Result<Vec<Value>, String> {
        let (_, api_version, plural, _) = kind_info(kind)?;
        let path = collection_path(api_version, plural, None);
        let list = self.call(Method::GET, &path, None, Vec::new()).await?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Every non-GET request served since the start (or [`KubeEmulator::clear_requests`]), in
    /// order: `{"method", "path", "query", "contentType", "body", "userAgent", "status"}` (`body` as JSON or null; `status`: the HTTP status answered).
    pub async fn requests(&self) -> Result<Vec<Value>, String> {
        let log = self
            .call(Method::GET, "/__emulator/requests", None, Vec::new())
            .await?;
        Ok(log.as_array().cloned().unwrap_or_default())
    }

    /// Forgets the requests recorded so far.
    pub async fn clear_requests(&self) -> Result<(), String> {
        self.call(Method::DELETE, "/__emulator/requests", None, Vec::new())
            .await
            .map(drop)
    }

    /// Ends every open watch, as an API server restart would; clients watch again.
    pub async fn close_watches(&self) -> Result<(), String> {
        self.call(Method::POST, "/__emulator/close-watches", None, Vec::new())
            .await
            .map(drop)
    }

    /// From now on, a watch from an older resourceVersion gets `410 Expired` (clients re-list).
    pub async fn compact(&self) -> Result<(), String> {
        self.call(Method::POST, "/__emulator/compact", None, Vec::new())
            .await
            .map(drop)
    }

    /// Any request: the status and the body as JSON (`Null` if it is not JSON). Only transport
    /// failures are errors.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value), String> {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        let reply: Reply = self
            .client
            .send(
                method.clone(),
                self.addr,
                &self.addr.to_string(),
                path,
                &headers,
                Bytes::from(body),
            )
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok((reply.status, json))
    }

    /// [`KubeEmulator::request`] where any status but 2xx is an error with the status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, String> {
        match self
            .request(method.clone(), path, content_type, body)
            .await?
        {
            (status, body) if status.is_success() => Ok(body),
            (status, body) => Err(format!("{method} {path}: HTTP {status}: {body}")),
        }
    }

    async fn patch_path(&self, path: &str, merge_patch: Value) -> Result<Value, String> {
        let body = serde_json::to_vec(&merge_patch).map_err(|e| e.to_string())?;
        self.call(Method::PATCH, path, Some(MERGE_PATCH), body)
            .await
    }
}

/// Writes `dir/kubeconfig` for an emulator on `port` (running or not yet started): server
/// `http://127.0.0.1:PORT`, no credentials, namespace `default`. Returns its path.
pub fn kubeconfig_for_port(port: u16, dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: emulator\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\n"
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn kind_info(kind: &str) -> Result<(&'static str, &'static str, &'static str, bool), String> {
    KINDS
        .iter()
        .find(|k| k.0 == kind)
        .copied()
        .ok_or_else(|| format!("kind {kind} is not served by the kube emulator"))
}

/// `/api/v1[/namespaces/NS]/PLURAL` or `/apis/GROUP/VERSION[/namespaces/NS]/PLURAL`.
fn collection_path(api_version: &str, plural: &str, namespace: Option<&str>) -> String {
    let root = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    match namespace {
        Some(ns) => format!("{root}/namespaces/{ns}/{plural}"),
        None => format!("{root}/{plural}"),
    }
}

/// The URL of an object; `namespace` is ignored for cluster-scoped kinds and defaults to
/// `default` for namespaced ones.
fn object_path(kind: &str, namespace: Option<&str>, name: &str) -> Result<String, String> {
    let (_, api_version, plural, namespaced) = kind_info(kind)?;
    let namespace = namespaced.then(|| namespace.unwrap_or("default"));
    Ok(format!(
        "{}/{name}",
        collection_path(api_version, plural, namespace)
    ))
}
