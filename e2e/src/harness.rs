//! The e2e harness: runs the real binaries (`serval-control-plane`, `serval-proxy`, `serval-echo`)
//! on loopback, each test on its own addresses, waits on conditions (never fixed sleeps), and kills
//! every process it started when dropped, printing their logs if the test failed.
//!
//! Binaries are taken from the target directory the tests run from; `cargo test --workspace`
//! builds them.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// A path to a binary of this workspace, next to the running test's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo test --workspace` (or `cargo build --workspace`) first",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A loopback IP no other test of this run uses: 127.<pid-derived>.<counter>.<1..254>.
pub fn unique_loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let b = 100 + (pid % 100) as u8;
    let c = ((pid / 100) % 250) as u8;
    Ipv4Addr::new(127, b, c, 1 + (n % 254) as u8)
}

/// A folder removed on drop, unless `SERVAL_E2E_KEEP` is set (then its path is printed, to read
/// the logs of a test or a benchmark afterwards).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty folder.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("serval-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` atomically (write a hidden temp file, then rename).
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, self.0.join(name)).unwrap_or_else(|e| panic!("rename {name}: {e}"));
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SERVAL_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop; its output goes to a log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args`, logging to `log_dir/<name>.log`.
    pub fn start(name: &str, binary: &Path, args: &[String], log_dir: &Path) -> Self {
        Self::start_with_env(name, binary, args, &[], log_dir)
    }

    /// Like [`Process::start`], with extra environment variables.
    pub fn start_with_env(
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("clone log: {e}"));
        let child = Command::new(binary)
            .args(args)
            .env(
                "SERVAL_LOG",
                "info,serval_proxy=debug,serval_control_plane=debug",
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A response as tests see it.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The first value of response header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Reply {
    /// The body as echo JSON, if it is one.
    pub fn echo(&self) -> Option<crate::echo::Echo> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// An HTTP client for tests: HTTP/1.1 or HTTP/2 prior knowledge.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// HTTP/1.1 with keep-alive.
    pub fn http1() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// GET `http://addr{path}` with `Host: host` and extra headers; errors are strings.
    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.request(http::Method::GET, addr, host, path, headers)
            .await
    }

    /// `method` `http://addr{path}` with `Host: host` and extra headers; errors are strings.
    pub async fn request(
        &self,
        method: http::Method,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.send(method, addr, host, path, headers, Bytes::new())
            .await
    }

    /// Like [`HttpClient::request`], with a request body.
    pub async fn send(
        &self,
        method: http::Method,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(http::header::HOST, host);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        into_reply(resp).await
    }
}

/// A response read whole into a [`Reply`].
pub async fn into_reply(resp: http::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// One HTTP/2 prior-knowledge GET to `addr` with `:authority` = `host` (what real HTTP/2 clients
/// send instead of a Host header).
pub async fn h2c_get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = Request::get(format!("http://{host}{path}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let reply = into_reply(resp).await;
    driver.abort();
    reply
}

/// Waits (up to 20 s) until the admin server at `addr` answers `/readyz` with 200.
pub async fn wait_ready(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(20), || async {
        admin_get(addr, "/readyz")
            .await
            .is_ok_and(|r| r.status == StatusCode::OK)
    })
    .await
}

/// Text of `http://addr{path}` (admin endpoints), or an error.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    HttpClient::http1()
        .get(addr, &addr.to_string(), path, &[])
        .await
}

/// The value of a counter or gauge in Prometheus text, summed over label sets.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric_name = key.split('{').next().unwrap_or(key);
        if metric_name == name {
            let v: f64 = value.parse().ok()?;
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// An echo backend process.
#[derive(Debug)]
pub struct EchoBackend {
    /// Its address.
    pub addr: SocketAddr,
    /// The process.
    pub process: Process,
}

impl EchoBackend {
    /// Starts `serval-echo` for `service`/`pod` on a free port and waits until it answers.
    pub async fn start(service: &str, pod: &str, log_dir: &Path) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let process = Process::start(
            pod,
            &binary("serval-echo"),
            &[
                "--listen".into(),
                addr.to_string(),
                "--namespace".into(),
                "default".into(),
                "--service".into(),
                service.into(),
                "--pod".into(),
                pod.into(),
            ],
            log_dir,
        );
        let up = wait_until(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        assert!(up, "echo {pod} did not start on {addr}");
        Self { addr, process }
    }
}

/// YAML for a Service named `name` (port 80, port name `http`) and an EndpointSlice with `backends`
/// as ready endpoints (pod names from the backends' order).
pub fn service_yaml(name: &str, backends: &[SocketAddr]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    );
    for (i, b) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {name}-pod-{i}, namespace: default}}\n",
            port = b.port(),
            ip = b.ip(),
        ));
    }
    yaml
}

/// YAML for the `serval` GatewayClass and a Gateway `gw` on `ip:port` with one HTTP listener.
pub fn gateway_yaml(ip: Ipv4Addr, port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: serval}}\nspec: {{controllerName: serval.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  gatewayClassName: serval\n  addresses: [{{type: IPAddress, value: \"{ip}\"}}]\n  listeners:\n  - {{name: http, protocol: HTTP, port: {port}}}\n"
    )
}

/// YAML for an HTTPRoute `web` on Gateway `gw` sending everything to `service` port 80.
pub fn route_yaml(service: &str, hostnames: &[&str]) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{}]\n  rules:\n  - backendRefs: [{{name: {service}, port: 80}}]\n",
        hostnames.join(", ")
    )
}

/// A running `serval-control-plane standalone`.
#[derive(Debug)]
pub struct ControlPlane {
    /// Delta server address.
    pub xds: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Admin address of the in-process proxy (none with `--no-proxy`).
    pub proxy_admin: Option<SocketAddr>,
    /// The process.
    pub process: Process,
}

impl ControlPlane {
    /// Starts standalone on `config_dir` with free ports (or `xds` if given) and waits for `/readyz`.
    pub async fn start(
        config_dir: &Path,
        log_dir: &Path,
        xds: Option<SocketAddr>,
        extra: &[&str],
    ) -> Self {
        Self::start_with_env(config_dir, log_dir, xds, extra, &[]).await
    }

    /// Like [`ControlPlane::start`], with extra environment variables.
    pub async fn start_with_env(
        config_dir: &Path,
        log_dir: &Path,
        xds: Option<SocketAddr>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let xds = xds.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut args: Vec<String> = vec![
            "standalone".into(),
            "--config-dir".into(),
            config_dir.display().to_string(),
            "--xds-addr".into(),
            xds.to_string(),
            "--admin-addr".into(),
            admin.to_string(),
        ];
        if !extra.contains(&"--debounce-ms") {
            args.extend(["--debounce-ms".into(), "50".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let proxy_admin = (!extra.contains(&"--no-proxy"))
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        if let Some(a) = proxy_admin {
            args.push("--proxy-admin-addr".into());
            args.push(a.to_string());
        }
        let process = Process::start_with_env(
            "control-plane",
            &binary("serval-control-plane"),
            &args,
            env,
            log_dir,
        );
        let cp = Self {
            xds,
            admin,
            proxy_admin,
            process,
        };
        for addr in std::iter::once(admin).chain(proxy_admin) {
            assert!(wait_ready(addr).await, "standalone not ready on {addr}");
        }
        cp
    }

    /// The `status` the control plane computed for `kind` `namespace/name` (from `/status`).
    pub async fn status_of(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let reply = admin_get(self.admin, "/status").await.ok()?;
        let all: Vec<serde_json::Value> = serde_json::from_slice(&reply.body).ok()?;
        all.into_iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"].as_str().unwrap_or("") == namespace
            })
            .map(|o| o["status"].clone())
    }

    /// A metric of the control plane.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = admin_get(self.admin, "/metrics").await.ok()?;
        metric(&String::from_utf8_lossy(&text.body), name)
    }
}

/// A running `serval-proxy`.
#[derive(Debug)]
pub struct Proxy {
    /// Admin address.
    pub admin: SocketAddr,
    /// The process.
    pub process: Process,
}

impl Proxy {
    /// Starts a proxy against `xds` and waits for `/readyz`.
    pub async fn start(xds: SocketAddr, node_id: &str, log_dir: &Path) -> Self {
        Self::start_with(xds, node_id, log_dir, &[]).await
    }

    /// Like [`Proxy::start`], with extra command-line arguments.
    pub async fn start_with(
        xds: SocketAddr,
        node_id: &str,
        log_dir: &Path,
        extra: &[&str],
    ) -> Self {
        Self::start_with_env(xds, node_id, log_dir, extra, &[]).await
    }

    /// Like [`Proxy::start_with`], with extra environment variables.
    pub async fn start_with_env(
        xds: SocketAddr,
        node_id: &str,
        log_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut args: Vec<String> = vec![
            "--xds-server".into(),
            format!("http://{xds}"),
            "--xds-plaintext".into(),
            "--node-id".into(),
            node_id.into(),
            "--admin-addr".into(),
            admin.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let process =
            Process::start_with_env(node_id, &binary("serval-proxy"), &args, env, log_dir);
        let proxy = Self { admin, process };
        assert!(
            wait_ready(admin).await,
            "proxy {node_id} not ready on {admin}"
        );
        proxy
    }

    /// Starts a proxy with `args` (its transport and the rest) besides `--node-id` and
    /// `--admin-addr`; does not wait for it to be ready.
    pub fn spawn(node_id: &str, log_dir: &Path, args: &[String]) -> Self {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut all: Vec<String> = vec![
            "--node-id".into(),
            node_id.into(),
            "--admin-addr".into(),
            admin.to_string(),
        ];
        all.extend(args.iter().cloned());
        let process = Process::start(node_id, &binary("serval-proxy"), &all, log_dir);
        Self { admin, process }
    }

    /// Whether `/readyz` answers 200 within 20 s.
    pub async fn ready(&self) -> bool {
        wait_ready(self.admin).await
    }

    /// A metric of the proxy.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = admin_get(self.admin, "/metrics").await.ok()?;
        metric(&String::from_utf8_lossy(&text.body), name)
    }

    /// The proxy's `/config_dump` as JSON.
    pub async fn config_dump(&self) -> serde_json::Value {
        let reply = admin_get(self.admin, "/config_dump")
            .await
            .unwrap_or_else(|e| panic!("config_dump: {e}"));
        serde_json::from_slice(&reply.body).unwrap_or_default()
    }
}

/// The common starting point of the e2e scenarios: echo backends `svc-a` and `svc-b`, and a config
/// folder with Gateway `gw` on a fresh loopback IP, port 8080, those two Services, and HTTPRoute
/// `web` sending `hostnames` to `svc-a`. Fields drop in order: processes before their folders.
#[derive(Debug)]
pub struct Scenario {
    /// Backend of `svc-a` (pod `svc-a-pod-0`).
    pub a: EchoBackend,
    /// Backend of `svc-b` (pod `svc-b-pod-0`).
    pub b: EchoBackend,
    /// Where the Gateway listens.
    pub gateway: SocketAddr,
    /// The config folder.
    pub dir: TempDir,
    /// Logs of every process.
    pub logs: TempDir,
}

impl Scenario {
    /// Starts the backends and writes the folder.
    pub async fn two_backends(tag: &str, hostnames: &[&str]) -> Self {
        let logs = TempDir::new(&format!("{tag}-logs"));
        let dir = TempDir::new(tag);
        let a = EchoBackend::start("svc-a", "svc-a-pod-0", logs.path()).await;
        let b = EchoBackend::start("svc-b", "svc-b-pod-0", logs.path()).await;
        let ip = unique_loopback_ip();
        dir.write("gateway.yaml", &gateway_yaml(ip, 8080));
        dir.write(
            "services.yaml",
            &[
                service_yaml("svc-a", &[a.addr]),
                service_yaml("svc-b", &[b.addr]),
            ]
            .join("---\n"),
        );
        dir.write("route.yaml", &route_yaml("svc-a", hostnames));
        Self {
            a,
            b,
            gateway: (ip, 8080).into(),
            dir,
            logs,
        }
    }
}
