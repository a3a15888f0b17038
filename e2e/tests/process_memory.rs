//! Both binaries run with transparent huge pages off (`serval_common::memory`): the kernel's view
//! of each started process, `THP_enabled` in `/proc/PID/status`, is 0. Linux only.

#![cfg(target_os = "linux")]

use serval_e2e::harness::{
    ControlPlane, Process, Proxy, TempDir, gateway_yaml, unique_loopback_ip,
};

/// `THP_enabled` of a running process, from `/proc/PID/status` (Linux 5.0 and later).
fn thp_enabled(process: &Process) -> String {
    let pid = process.id().expect("process runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_owned())
        .expect("THP_enabled in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_proxy_run_without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        eprintln!(
            "MIMALLOC_ALLOW_THP is set: the binaries leave huge pages to it; nothing to check"
        );
        return;
    }
    let logs = TempDir::new("memory-logs");
    let dir = TempDir::new("memory");
    dir.write("gateway.yaml", &gateway_yaml(unique_loopback_ip(), 8080));
    let cp = ControlPlane::start(dir.path(), logs.path(), None, &["--no-proxy"]).await;
    let proxy = Proxy::start(cp.xds, "memory-proxy", logs.path()).await;
    assert_eq!(thp_enabled(&cp.process), "0", "control plane");
    assert_eq!(thp_enabled(&proxy.process), "0", "proxy");
    assert!(
        proxy
            .process
            .log()
            .contains("transparent huge pages off for this process"),
        "the proxy logs what it did"
    );
}
